"""The SageMaker API drop-in, with the real clients only: boto3 against a live server, S3 on SeaweedFS.

Every response a test receives is also checked against botocore's output shape, strictly (no member the model
lacks, types, enums, lengths and patterns exact): see `_conform`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlgov import auth
from mlgov.app import create_app
from mlgov.aws import validate
from mlgov.db import Database
from mlgov.storage import ObjectStore, open_store
from tests.conftest import make_settings
from tests.infra import S3_KEY, S3_SECRET, LiveServer, Seaweed

pytestmark = pytest.mark.live
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def _conform(http_response: Any, model: Any, **_: Any) -> None:
    """botocore parsed the answer (boto3 does that); also hold its raw JSON to the output shape, strictly."""
    if http_response.status_code != 200 or model.output_shape is None:
        return
    errors = validate(model.output_shape, json.loads(http_response.content or b"{}"))
    assert not errors, f"{model.name}: {errors}"
    _conform.seen.add(model.name)  # type: ignore[attr-defined]


_conform.seen = set()  # type: ignore[attr-defined]


@dataclass
class SageMaker:
    url: str
    creds: dict[str, tuple[str, str]]
    headers: dict[str, dict[str, str]]
    store: ObjectStore

    def client(self, who: str, *, secret: str | None = None) -> Any:
        akid, real = self.creds[who]
        c = boto3.client("sagemaker", endpoint_url=self.url, region_name=REGION, aws_access_key_id=akid,
                         aws_secret_access_key=secret or real,
                         config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60))
        c.meta.events.register("after-call.sagemaker.*", _conform)
        return c

    def model_file(self, key: str, data: bytes) -> tuple[str, str]:
        self.store.put(key, data)
        return self.store.uri(key), hashlib.sha256(data).hexdigest()


@pytest.fixture
def sm(live_db: Database, tmp_path: Any, seaweed: Seaweed) -> Iterator[SageMaker]:
    bucket = f"sm{tmp_path.name[-8:].lower().replace('_', '')}"
    seaweed.client().create_bucket(Bucket=bucket)
    settings = make_settings(tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=seaweed.endpoint,
                             s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET, aws_account_id=ACCOUNT)
    with live_db.session_scope() as s:
        _, root = auth.create_key(s, "root", "admin", actor="test")
    app = create_app(settings, db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        creds, headers = {}, {}
        for name, role in [("alice", "admin"), ("pat", "publisher"), ("ann", "approver"), ("vic", "viewer")]:
            r = c.post("/api/v1/keys", json={"name": name, "role": role, "aws_credentials": True},
                       headers={"Authorization": f"Bearer {root}"})
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["aws_access_key_id"].startswith("MLGV") and len(body["aws_access_key_id"]) == 20
            creds[name] = (body["aws_access_key_id"], body["aws_secret_access_key"])
            headers[name] = {"Authorization": f"Bearer {body['key']}"}
        listed = c.get("/api/v1/keys", headers={"Authorization": f"Bearer {root}"}).json()
        assert "aws_secret_access_key" not in json.dumps(listed)     # shown once, never listed
        headers["root"] = {"Authorization": f"Bearer {root}"}
        yield SageMaker(srv.url, creds, headers, open_store(settings))


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _package(sm: SageMaker, group: str, data: bytes, **extra: Any) -> dict[str, Any]:
    uri, _ = sm.model_file(f"models/{group}/{hashlib.sha256(data).hexdigest()[:8]}.tar.gz", data)
    return {"ModelPackageGroupName": group, "InferenceSpecification": {
        "Containers": [{"Image": "123.dkr.ecr.eu-west-1.amazonaws.com/xgb:1", "ModelDataUrl": uri,
                        "Framework": "XGBOOST", "FrameworkVersion": "1.7", "Environment": {"A": "1"}}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}, **extra}


def test_registry_and_approval_story(sm: SageMaker) -> None:
    pat, ann, alice, vic = sm.client("pat"), sm.client("ann"), sm.client("alice"), sm.client("vic")
    arn = pat.create_model_package_group(ModelPackageGroupName="churn", ModelPackageGroupDescription="churn model",
                                         Tags=[{"Key": "team", "Value": "risk"}])["ModelPackageGroupArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/churn"
    with pytest.raises(ClientError) as exc:     # the SageMaker SDK recognises this answer as "exists already"
        pat.create_model_package_group(ModelPackageGroupName="churn")
    assert _code(exc) == "ValidationException" and "already exists" in str(exc.value)
    described = vic.describe_model_package_group(ModelPackageGroupName="churn")
    assert described["ModelPackageGroupStatus"] == "Completed" and described["ModelPackageGroupArn"] == arn
    assert [g["ModelPackageGroupName"] for g in vic.list_model_package_groups()["ModelPackageGroupSummaryList"]] \
        == ["churn"]

    card = {"model_overview": {"model_description": "gradient boosting"}}
    metrics_digest = "ab" * 32
    request = _package(sm, "churn", b"model-one", ModelPackageDescription="first",
                       CustomerMetadataProperties={"owner": "risk-team"},
                       MetadataProperties={"CommitId": "abc123", "Repository": "git@example.com:churn.git"},
                       ModelMetrics={"ModelQuality": {"Statistics": {
                           "ContentType": "application/json", "S3Uri": "s3://reports/q/statistics.json",
                           "ContentDigest": f"sha256:{metrics_digest}"}}},
                       ModelCard={"ModelCardContent": json.dumps(card), "ModelCardStatus": "Draft"},
                       Domain="FINANCE", Task="CLASSIFICATION", ClientToken="register-churn-1")
    v1 = pat.create_model_package(**request)["ModelPackageArn"]
    assert v1 == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/1"
    assert pat.create_model_package(**request)["ModelPackageArn"] == v1     # same token: nothing done twice
    with pytest.raises(ClientError) as exc:
        pat.create_model_package(**{**request, "ModelPackageDescription": "changed"})
    assert _code(exc) == "ValidationException" and "ClientToken" in str(exc.value)

    d = vic.describe_model_package(ModelPackageName=v1)
    assert (d["ModelPackageGroupName"], d["ModelPackageVersion"], d["ModelApprovalStatus"]) == \
        ("churn", 1, "PendingManualApproval")
    assert d["CustomerMetadataProperties"] == {"owner": "risk-team"}
    assert d["MetadataProperties"] == {"CommitId": "abc123", "Repository": "git@example.com:churn.git"}
    assert d["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"] == f"sha256:{metrics_digest}"
    assert json.loads(d["ModelCard"]["ModelCardContent"]) == card
    container = d["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert (container["Framework"], container["Environment"]) == ("XGBOOST", {"A": "1"})
    assert isinstance(d["CreationTime"], dt.datetime) and d["CreatedBy"]["IamIdentity"]["PrincipalId"] == "pat"

    # the same version, natively: the hash was computed from the object store
    with httpx.Client(base_url=sm.url) as native:
        got = native.get("/api/v1/model-groups/churn/versions/1", headers=sm.headers["vic"]).json()
    assert got["artifact_sha256"] == hashlib.sha256(b"model-one").hexdigest()
    assert got["metadata"] == {"owner": "risk-team"} and got["domain"] == "FINANCE"

    # a publisher may not decide; an admin who registered may not decide its own version (four-eyes)
    with pytest.raises(ClientError) as exc:
        pat.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Approved", ApprovalDescription="mine")
    assert _code(exc) == "AccessDeniedException"
    v2 = alice.create_model_package(**_package(sm, "churn", b"model-two"))["ModelPackageArn"]
    with pytest.raises(ClientError) as exc:
        alice.update_model_package(ModelPackageArn=v2, ModelApprovalStatus="Approved", ApprovalDescription="mine")
    assert _code(exc) == "AccessDeniedException" and "four-eyes" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        ann.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Approved")
    assert _code(exc) == "ValidationException" and "ApprovalDescription" in str(exc.value)

    assert ann.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Approved",
                                    ApprovalDescription="validated on holdout")["ModelPackageArn"] == v1
    d = vic.describe_model_package(ModelPackageName="churn/1")
    assert (d["ModelApprovalStatus"], d["ApprovalDescription"]) == ("Approved", "validated on holdout")
    assert d["LastModifiedBy"]["IamIdentity"]["PrincipalId"] == "ann"
    with httpx.Client(base_url=sm.url) as native:
        history = native.get("/api/v1/model-groups/churn/versions/1/approvals", headers=sm.headers["vic"]).json()
        events = native.get("/api/v1/audit/events", params={"action": "version.approval_changed"},
                            headers=sm.headers["root"]).json()["items"]
    assert [(h["actor"], h["to_status"], h["comment"]) for h in history] == \
        [("ann", "Approved", "validated on holdout")]
    assert [(e["actor"], e["subject_id"]) for e in events] == [("ann", "churn/1")]

    listed = vic.list_model_packages(ModelPackageGroupName="churn", ModelApprovalStatus="Approved")
    assert [p["ModelPackageArn"] for p in listed["ModelPackageSummaryList"]] == [v1]
    page1 = vic.list_model_packages(ModelPackageGroupName=arn, MaxResults=1, SortBy="CreationTime",
                                    SortOrder="Ascending")
    page2 = vic.list_model_packages(ModelPackageGroupName=arn, MaxResults=1, NextToken=page1["NextToken"],
                                    SortBy="CreationTime", SortOrder="Ascending")
    assert [p["ModelPackageVersion"] for p in page1["ModelPackageSummaryList"] + page2["ModelPackageSummaryList"]] \
        == [1, 2] and "NextToken" not in page2
    missing = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/9"
    batch = vic.batch_describe_model_package(ModelPackageArnList=[v1, missing])
    assert batch["ModelPackageSummaries"][v1]["ModelApprovalStatus"] == "Approved"
    assert batch["BatchDescribeModelPackageErrorMap"][missing]["ErrorCode"] == "ResourceNotFound"

    pat.add_tags(ResourceArn=arn, Tags=[{"Key": "tier", "Value": "1"}])
    assert vic.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "risk"}, {"Key": "tier", "Value": "1"}]
    pat.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert vic.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "tier", "Value": "1"}]

    with pytest.raises(ClientError) as exc:     # decided versions are the audit trail
        alice.delete_model_package(ModelPackageName=v1)
    assert _code(exc) == "ConflictException"
    alice.delete_model_package(ModelPackageName=v2)
    with pytest.raises(ClientError) as exc:
        vic.describe_model_package(ModelPackageName=v2)
    assert _code(exc) == "ResourceNotFound"
    with pytest.raises(ClientError) as exc:
        pat.delete_model_package_group(ModelPackageGroupName="churn")
    assert _code(exc) == "ConflictException"
    pat.create_model_package_group(ModelPackageGroupName="empty")
    pat.delete_model_package_group(ModelPackageGroupName="empty")
    with pytest.raises(ClientError) as exc:
        vic.describe_model_package_group(ModelPackageGroupName="empty")
    assert _code(exc) == "ResourceNotFound"


def test_approval_at_registration_is_the_registrant_deciding(sm: SageMaker) -> None:
    alice = sm.client("alice")
    alice.create_model_package_group(ModelPackageGroupName="g")
    with pytest.raises(ClientError) as exc:
        alice.create_model_package(**_package(sm, "g", b"m"), ModelApprovalStatus="Approved")
    assert _code(exc) == "AccessDeniedException"
    assert alice.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"] == []   # nothing kept


def test_artifact_outside_the_store_needs_its_hash(sm: SageMaker) -> None:
    pat = sm.client("pat")
    pat.create_model_package_group(ModelPackageGroupName="ext")
    spec = {"Containers": [{"ModelDataUrl": "s3://elsewhere/model.tar.gz"}]}
    with pytest.raises(ClientError) as exc:
        pat.create_model_package(ModelPackageGroupName="ext", InferenceSpecification=spec)
    assert _code(exc) == "ValidationException" and "mlgov:artifact-sha256" in str(exc.value)
    arn = pat.create_model_package(ModelPackageGroupName="ext", InferenceSpecification=spec,
                                   CustomerMetadataProperties={"mlgov:artifact-sha256": "cd" * 32})["ModelPackageArn"]
    assert arn.endswith("model-package/ext/1")


def test_members_mlgov_does_not_keep_are_refused_by_name(sm: SageMaker) -> None:
    pat = sm.client("pat")
    pat.create_model_package_group(ModelPackageGroupName="g")
    with pytest.raises(ClientError) as exc:
        pat.create_model_package(**_package(sm, "g", b"m"), SamplePayloadUrl="s3://x/y")
    assert _code(exc) == "ValidationException" and "SamplePayloadUrl" in str(exc.value)


# --- the protocol: signatures, unserved operations, validation ----------------------------------------------------

def test_refused_signatures(sm: SageMaker) -> None:
    with pytest.raises(ClientError) as exc:
        sm.client("vic", secret="not-the-secret").list_model_package_groups()
    assert _code(exc) == "InvalidSignatureException"
    sm.creds["ghost"] = ("MLGVAAAAAAAAAAAAAAAA", "whatever")
    with pytest.raises(ClientError) as exc:
        sm.client("ghost").list_model_package_groups()
    assert _code(exc) == "UnrecognizedClientException"
    late = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=16)
    with mock.patch("botocore.auth.get_current_datetime", return_value=late), pytest.raises(ClientError) as exc:
        sm.client("vic").list_model_package_groups()
    assert _code(exc) == "InvalidSignatureException" and "Signature expired" in str(exc.value)

    # a signed request whose body is changed on the way
    request = _signed(sm, "vic", "CreateModelPackageGroup", {"ModelPackageGroupName": "a"})
    r = httpx.post(sm.url, content=json.dumps({"ModelPackageGroupName": "b"}).encode(), headers=_headers(request))
    assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException"
    # no signature at all
    r = httpx.post(sm.url, json={}, headers={"X-Amz-Target": "SageMaker.ListModelPackageGroups",
                                             "Content-Type": "application/x-amz-json-1.1"})
    assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException"


def test_revoked_key_cannot_sign(sm: SageMaker) -> None:
    sm.client("vic").list_model_package_groups()
    assert httpx.delete(f"{sm.url}/api/v1/keys/vic", headers=sm.headers["root"]).status_code == 204
    with pytest.raises(ClientError) as exc:
        sm.client("vic").list_model_package_groups()
    assert _code(exc) == "UnrecognizedClientException"


def _signed(sm: SageMaker, who: str, operation: str, body: dict[str, Any]) -> AWSRequest:
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials

    request = AWSRequest("POST", sm.url + "/", data=json.dumps(body).encode(), headers={
        "X-Amz-Target": f"SageMaker.{operation}", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(*sm.creds[who]), "sagemaker", REGION).add_auth(request)
    return request


def _headers(request: AWSRequest) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() != "content-length"}


def test_unserved_operation_and_invalid_requests(sm: SageMaker) -> None:
    vic, pat = sm.client("vic"), sm.client("pat")
    with pytest.raises(ClientError) as exc:
        vic.list_training_jobs()
    assert _code(exc) == "ValidationException" and "ListTrainingJobs" in str(exc.value)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as exc:    # the pattern from botocore's model
        pat.create_model_package_group(ModelPackageGroupName="no_underscores")
    assert _code(exc) == "ValidationException" and "regular expression pattern" in str(exc.value)
    assert "ModelPackageGroupName" in str(exc.value)
    with pytest.raises(ClientError) as exc:    # an enum botocore's client does not check, the server does
        vic.list_model_packages(ModelPackageGroupName="g", ModelApprovalStatus="Maybe")
    assert _code(exc) == "ValidationException" and "enum value set" in str(exc.value)
    # what botocore's client would refuse before sending: sent signed by hand
    request = _signed(sm, "pat", "CreateModelPackageGroup", {"ModelPackageGroupDescription": "x", "Extra": 1})
    r = httpx.post(sm.url, content=request.body, headers=_headers(request))
    body = r.json()
    assert r.status_code == 400 and body["__type"] == "ValidationException"
    assert "ModelPackageGroupName' failed to satisfy constraint: Member must not be null" in body["message"]
    assert "'Extra' is not a member" in body["message"]
    request = _signed(sm, "vic", "ListModelPackageGroups", {"MaxResults": 1000})
    r = httpx.post(sm.url, content=request.body, headers=_headers(request))
    assert "less than or equal to 100" in r.json()["message"]
    # a viewer may read, not write
    with pytest.raises(ClientError) as exc:
        vic.create_model_package_group(ModelPackageGroupName="nope")
    assert _code(exc) == "AccessDeniedException"


def test_every_served_operation_declares_its_roles(app: Any) -> None:
    """POST / is one route for every operation, so the roles live on the operations (checked after SigV4)."""
    served = app.state.sagemaker.operations
    assert served and all(op.roles and auth.Role.ingest not in op.roles for op in served.values())
    reads = ("Describe", "BatchDescribe", "List", "Query", "Search")
    assert {name: op.write for name, op in served.items()} == {name: not name.startswith(reads) for name in served}
