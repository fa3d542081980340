"""The SageMaker API drop-in, with the real clients only: boto3 against a live server, S3 on SeaweedFS.

Every response a test receives is also checked against botocore's output shape, strictly (no member the model
lacks, types, enums, lengths and patterns exact): see `_conform`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
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
    bucket = f"sm{uuid.uuid4().hex[:16]}"     # one per test: tmp_path names of short test names collide
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


def test_create_model_package_hashes_its_artifact_holding_no_write_turn(sm: SageMaker, monkeypatch: Any) -> None:
    """CreateModelPackage read and hashed an artifact in mlgov's store inside its write turn (a model of gigabytes:
    seconds of every other write waiting). It hashes on a read session now and registers in a write turn of its
    own: a write made meanwhile goes through, and the version holds the hash."""
    from registry import service

    pat = sm.client("pat")
    pat.create_model_package_group(ModelPackageGroupName="hashed")
    real, made = service.checked_hash, []

    def hashing(*args: Any, **kwargs: Any) -> Any:
        made.append(pat.create_model_package_group(ModelPackageGroupName="made-meanwhile")["ModelPackageGroupArn"])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "checked_hash", hashing)
    request = _package(sm, "hashed", b"weights", ClientToken="hashed-1")
    arn = pat.create_model_package(**request)["ModelPackageArn"]
    assert arn.endswith(":model-package/hashed/1") and len(made) == 1
    assert pat.create_model_package(**request)["ModelPackageArn"] == arn     # the token was remembered
    version = httpx.get(f"{sm.url}/api/v1/model-groups/hashed/versions/1", headers=sm.headers["vic"], timeout=30)
    assert version.json()["artifact_sha256"] == hashlib.sha256(b"weights").hexdigest(), version.text


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
    created = described["CreationTime"]          # botocore's model has the time filters; they were refused
    for after, before, names in ((created - dt.timedelta(seconds=1), None, ["churn"]),
                                 (created + dt.timedelta(seconds=1), None, []),
                                 (None, created - dt.timedelta(seconds=1), [])):
        kw = {k: v for k, v in (("CreationTimeAfter", after), ("CreationTimeBefore", before)) if v is not None}
        assert [g["ModelPackageGroupName"] for g in vic.list_model_package_groups(**kw)[
            "ModelPackageGroupSummaryList"]] == names, kw

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
    with httpx.Client(base_url=sm.url, timeout=60) as native:
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
    # a pipeline's approval step run again: SageMaker accepts the same status (this was a ConflictException)
    assert ann.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Approved",
                                    ApprovalDescription="re-run")["ModelPackageArn"] == v1
    assert vic.describe_model_package(ModelPackageName="churn/1")["ApprovalDescription"] == "validated on holdout"
    # SageMaker code finds a package's lineage artifact by the package's ARN
    found = vic.list_artifacts(SourceUri=v1)["ArtifactSummaries"]
    assert [a["Source"]["SourceUri"] for a in found] == ["mlgov://model-groups/churn/versions/1"]
    with httpx.Client(base_url=sm.url, timeout=60) as native:
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
    foreign = f"arn:aws:sagemaker:{REGION}:999999999999:model-package/churn/1"
    batch = vic.batch_describe_model_package(ModelPackageArnList=[v1, missing, foreign])
    assert batch["ModelPackageSummaries"][v1]["ModelApprovalStatus"] == "Approved"
    assert batch["BatchDescribeModelPackageErrorMap"][missing]["ErrorCode"] == "ResourceNotFound"
    assert batch["BatchDescribeModelPackageErrorMap"][foreign]["ErrorCode"] == "ResourceNotFound"   # as Describe

    pat.add_tags(ResourceArn=arn, Tags=[{"Key": "tier", "Value": "1"}])
    with pytest.raises(ClientError) as exc:     # AWS keeps the aws: prefix for its own tags
        pat.add_tags(ResourceArn=arn, Tags=[{"Key": "AWS:cost", "Value": "1"}])
    assert _code(exc) == "ValidationException" and "reserved prefix aws:" in str(exc.value)
    assert vic.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "risk"}, {"Key": "tier", "Value": "1"}]
    pat.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert vic.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "tier", "Value": "1"}]

    with pytest.raises(ClientError) as exc:     # decided versions are the audit trail
        alice.delete_model_package(ModelPackageName=v1)
    assert _code(exc) == "ConflictException"
    # the fix names SageMaker's operations, not mlgov's native routes (a trial was told "POST …/approval")
    assert "UpdateModelPackage with ModelApprovalStatus Rejected" in str(exc.value) and "…/" not in str(exc.value)
    alice.delete_model_package(ModelPackageName=v2)
    with pytest.raises(ClientError) as exc:
        vic.describe_model_package(ModelPackageName=v2)
    assert _code(exc) == "ValidationException" and "does not exist" in str(exc.value)   # as SageMaker answers
    assert "ListModelPackages" in str(exc.value) and "/api/v1" not in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.delete_model_package_group(ModelPackageGroupName="churn")
    assert _code(exc) == "ConflictException"
    pat.create_model_package_group(ModelPackageGroupName="empty")
    pat.delete_model_package_group(ModelPackageGroupName="empty")
    with pytest.raises(ClientError) as exc:
        vic.describe_model_package_group(ModelPackageGroupName="empty")
    assert _code(exc) == "ValidationException"


def test_deleting_while_paging_skips_nothing_and_tokens_keep_their_request(sm: SageMaker) -> None:
    """A boto3 user deleting each group as the paginator yields it: with NextToken an offset, every deletion
    shifted the rest forward and the next page skipped as many groups. Tokens now carry the last row's sort key
    (keyset), and belong to the request's filters and order: sent with other ones they are refused."""
    pat = sm.client("pat")
    names = [f"pagedel-{i}" for i in range(7)]
    for name in names:
        pat.create_model_package_group(ModelPackageGroupName=name)
    seen = []
    for page in pat.get_paginator("list_model_package_groups").paginate(
            NameContains="pagedel", SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 2}):
        for g in page["ModelPackageGroupSummaryList"]:
            seen.append(g["ModelPackageGroupName"])
            pat.delete_model_package_group(ModelPackageGroupName=g["ModelPackageGroupName"])
    assert seen == names
    for name in names[:3]:
        pat.create_model_package_group(ModelPackageGroupName=name)
    first = pat.list_model_package_groups(NameContains="pagedel", MaxResults=1)
    assert first["NextToken"]
    with pytest.raises(ClientError) as exc:
        pat.list_model_package_groups(NameContains="pagedel-1", MaxResults=1, NextToken=first["NextToken"])
    assert _code(exc) == "ValidationException" and "for another request" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.list_model_package_groups(NameContains="pagedel", NextToken="bm90LWEtdG9rZW4=")
    assert _code(exc) == "ValidationException" and "not one this server returned" in str(exc.value)
    with pytest.raises(ClientError) as exc:   # another list's token, even with the same members
        pat.list_model_cards(NameContains="pagedel", MaxResults=1, NextToken=first["NextToken"])
    assert _code(exc) == "ValidationException" and "for another request" in str(exc.value)
    doc = json.loads(base64.urlsafe_b64decode(first["NextToken"]))
    for edited in ([12345, "x"], [{"t": "2026-01-01T00:00:00"}, "x"], [{"t": "2026-01-01T00:00:00+00:00"}, 7]):
        token = base64.urlsafe_b64encode(json.dumps({**doc, "after": edited}).encode()).decode()
        with pytest.raises(ClientError) as exc:   # was a 500 (InternalFailure, which boto3 retries)
            pat.list_model_package_groups(NameContains="pagedel", MaxResults=1, NextToken=token)
        assert _code(exc) == "ValidationException" and "not one this server returned" in str(exc.value), edited
    rest = pat.list_model_package_groups(NameContains="pagedel", MaxResults=5, NextToken=first["NextToken"])
    both = first["ModelPackageGroupSummaryList"] + rest["ModelPackageGroupSummaryList"]   # the page size changed
    assert sorted(g["ModelPackageGroupName"] for g in both) == names[:3]
    assert "NextToken" not in rest


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
    with pytest.raises(ClientError) as exc:
        pat.create_model_package(ModelPackageGroupName="ext", InferenceSpecification=spec,
                                 CustomerMetadataProperties={"mlgov:artifact-sha256": "abc"})
    assert "CustomerMetadataProperties['mlgov:artifact-sha256'] must be" in str(exc.value)   # not the native field
    arn = pat.create_model_package(ModelPackageGroupName="ext", InferenceSpecification=spec,
                                   CustomerMetadataProperties={"mlgov:artifact-sha256": "CD" * 32,
                                                               "team": "risk"})["ModelPackageArn"]
    assert arn.endswith("model-package/ext/1")
    shown = pat.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert shown == {"team": "risk", "mlgov:artifact-sha256": "cd" * 32}      # the hash as stored
    # from a registry trial: a native registration stated another hash under that key, and SageMaker showed it
    r = httpx.post(f"{sm.url}/api/v1/model-groups/ext/versions", headers=sm.headers["pat"], timeout=10, json={
        "artifact_uri": "s3://elsewhere/m2", "artifact_sha256": "ab" * 32,
        "metadata": {"mlgov:artifact-sha256": "ff" * 32}})
    assert r.status_code == 403 and "mlgov's own facts" in r.text
    r = httpx.post(f"{sm.url}/api/2.0/mlflow/model-versions/set-tag", headers=sm.headers["pat"], timeout=10,
                   json={"name": "ext", "version": "1", "key": "mlgov:artifact-sha256", "value": "ff" * 32})
    assert r.status_code == 403 and "set by mlgov itself" in r.text


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
    r = httpx.post(sm.url, content=json.dumps({"ModelPackageGroupName": "b"}).encode(), headers=_headers(request),
                   timeout=60)
    assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException"
    # no signature at all
    r = httpx.post(sm.url, json={}, headers={"X-Amz-Target": "SageMaker.ListModelPackageGroups",
                                             "Content-Type": "application/x-amz-json-1.1"}, timeout=60)
    assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException"


def test_revoked_key_cannot_sign(sm: SageMaker) -> None:
    sm.client("vic").list_model_package_groups()
    assert httpx.delete(f"{sm.url}/api/v1/keys/vic", headers=sm.headers["root"], timeout=60).status_code == 204
    with pytest.raises(ClientError) as exc:
        sm.client("vic").list_model_package_groups()
    assert _code(exc) == "UnrecognizedClientException"


def _signed(sm: SageMaker, who: str, operation: str, body: dict[str, Any] | bytes) -> AWSRequest:
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest("POST", sm.url + "/", data=data, headers={
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
    r = httpx.post(sm.url, content=request.body, headers=_headers(request), timeout=60)
    body = r.json()
    assert r.status_code == 400 and body["__type"] == "ValidationException"
    assert "ModelPackageGroupName' failed to satisfy constraint: Member must not be null" in body["message"]
    assert "'Extra' is not a member" in body["message"]
    request = _signed(sm, "vic", "ListModelPackageGroups", {"MaxResults": 1000})
    r = httpx.post(sm.url, content=request.body, headers=_headers(request), timeout=60)
    assert "less than or equal to 100" in r.json()["message"]
    # a repeated key: the last value counted (ModelApprovalStatus twice in one UpdateModelPackage)
    request = _signed(sm, "vic", "ListModelPackageGroups", b'{"MaxResults": 5, "MaxResults": 10}')
    r = httpx.post(sm.url, content=request.body, headers=_headers(request), timeout=60)
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException", r.text
    assert "repeats the key 'MaxResults'" in r.json()["message"]
    # a null list item or map value was passed on: 500s (AddTags, QueryLineage, Search, BatchDescribe...) and an
    # artifact property stored as the text "null"; AWS refuses it
    for who, op, params, where in (
            ("pat", "AddTags", {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/g",
                                "Tags": [None]}, "Tags.1.member"),
            ("vic", "QueryLineage", {"StartArns": [None]}, "StartArns.1.member"),
            ("vic", "Search", {"Resource": "ModelPackage", "SearchExpression": {"Filters": [None]}},
             "SearchExpression.Filters.1.member"),
            ("vic", "BatchDescribeModelPackage", {"ModelPackageArnList": [None]}, "ModelPackageArnList.1.member"),
            ("pat", "CreateArtifact", {"Source": {"SourceUri": "s3://b/k"}, "ArtifactType": "DataSet",
                                       "Properties": {"k": None, "j": "v"}}, "Properties.k.value")):
        request = _signed(sm, who, op, params)
        r = httpx.post(sm.url, content=request.body, headers=_headers(request), timeout=60)
        assert r.status_code == 400 and r.json()["__type"] == "ValidationException", (op, r.text)
        assert f"Value null at '{where}' failed to satisfy constraint: Member must not be null" in r.json()["message"]
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


# --- lineage --------------------------------------------------------------------------------------------------

def test_lineage_built_and_queried(sm: SageMaker) -> None:
    pat, vic, ann = sm.client("pat"), sm.client("vic"), sm.client("ann")
    data = pat.create_artifact(ArtifactName="train-data", ArtifactType="DataSet",
                               Source={"SourceUri": "s3://data/train.csv",
                                       "SourceTypes": [{"SourceIdType": "Custom", "Value": "sha256:" + "ef" * 32}]},
                               Properties={"rows": "1000"})["ArtifactArn"]
    assert data.startswith(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:artifact/")
    job = pat.create_action(ActionName="train-42", ActionType="TrainingJob", Status="Completed",
                            Source={"SourceUri": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/t42"},
                            Description="nightly")["ActionArn"]
    model = pat.create_artifact(ArtifactType="Model", Source={"SourceUri": "s3://models/m.tar.gz"})["ArtifactArn"]
    ctx = pat.create_context(ContextName="churn-project", ContextType="Project",
                             Source={"SourceUri": "git@example.com:churn.git"})["ContextArn"]
    pat.add_association(SourceArn=data, DestinationArn=job, AssociationType="ContributedTo")
    pat.add_association(SourceArn=job, DestinationArn=model, AssociationType="Produced")
    pat.add_association(SourceArn=model, DestinationArn=ctx, AssociationType="AssociatedWith")

    d = vic.describe_artifact(ArtifactArn=data)
    assert (d["ArtifactName"], d["ArtifactType"], d["Properties"]) == ("train-data", "DataSet", {"rows": "1000"})
    assert d["Source"]["SourceTypes"] == [{"SourceIdType": "Custom", "Value": "sha256:" + "ef" * 32}]
    a = vic.describe_action(ActionName="train-42")           # by name, as SageMaker does
    assert (a["ActionArn"], a["Status"], a["Description"]) == (job, "Completed", "nightly")
    assert a["Source"]["SourceUri"].endswith("training-job/t42")
    assert vic.describe_context(ContextName=ctx)["ContextName"] == "churn-project"
    pat.update_action(ActionName="train-42", Status="Failed", Properties={"reason": "oom"})
    assert vic.describe_action(ActionName=job)["Properties"] == {"reason": "oom"}

    up = vic.query_lineage(StartArns=[model], Direction="Ascendants", IncludeEdges=True)
    assert {v["Arn"] for v in up["Vertices"]} == {model, job, data}
    assert {(e["SourceArn"], e["AssociationType"], e["DestinationArn"]) for e in up["Edges"]} == \
        {(data, "ContributedTo", job), (job, "Produced", model)}
    # one vertex a page: each edge comes once, on the page of its later end (every page repeated all edges)
    pages, token = [], None
    while True:
        page = vic.query_lineage(StartArns=[model], Direction="Ascendants", IncludeEdges=True, MaxResults=1,
                                 **({"NextToken": token} if token else {}))
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            break
    assert len(pages) == 3 and [v["Arn"] for pg in pages for v in pg["Vertices"]] == [v["Arn"] for v in
                                                                                      up["Vertices"]]
    paged_edges = [(e["SourceArn"], e["AssociationType"], e["DestinationArn"]) for pg in pages for e in pg["Edges"]]
    assert sorted(paged_edges) == sorted({(data, "ContributedTo", job), (job, "Produced", model)})
    # MaxDepth counts associations from the start: 0 is the start alone (it read as the default, 10)
    alone = vic.query_lineage(StartArns=[model], Direction="Ascendants", MaxDepth=0)
    assert [v["Arn"] for v in alone["Vertices"]] == [model] and alone["Edges"] == []
    one = vic.query_lineage(StartArns=[model], Direction="Ascendants", MaxDepth=1)
    assert {v["Arn"] for v in one["Vertices"]} == {model, job}
    # IncludeSource was accepted and ignored
    sourced = vic.query_lineage(StartArns=[model], Direction="Ascendants", IncludeSource=True)["Vertices"]
    assert {v["Arn"]: v["Source"]["SourceUri"] for v in sourced} == {
        model: "s3://models/m.tar.gz", job: "arn:aws:sagemaker:eu-west-1:123456789012:training-job/t42",
        data: "s3://data/train.csv"}
    assert all("Source" not in v for v in vic.query_lineage(StartArns=[model], Direction="Ascendants")["Vertices"])
    only_artifacts = vic.query_lineage(StartArns=[data], Direction="Descendants",
                                       Filters={"LineageTypes": ["Artifact"]})
    assert {v["Arn"] for v in only_artifacts["Vertices"]} == {data, model}
    assert {v["LineageType"] for v in only_artifacts["Vertices"]} == {"Artifact"}

    listed = vic.list_associations(SourceArn=job)["AssociationSummaries"]
    assert [(x["DestinationArn"], x["AssociationType"], x["SourceName"]) for x in listed] == \
        [(model, "Produced", "train-42")]
    arts = vic.list_artifacts(ArtifactType="DataSet")["ArtifactSummaries"]
    assert [x["ArtifactArn"] for x in arts] == [data]
    assert [x["ActionArn"] for x in vic.list_actions(ActionType="TrainingJob")["ActionSummaries"]] == [job]
    assert [x["ContextArn"] for x in vic.list_contexts()["ContextSummaries"]] == [ctx]
    # SortBy was read for its order only: Name came back in creation order; an order mlgov does not keep is refused
    for action in ("b-step", "a-step"):
        pat.create_action(ActionName=action, ActionType="Step", Source={"SourceUri": f"s3://b/{action}"})
    names = [[x["ActionName"] for x in page["ActionSummaries"]] for page in (
        vic.list_actions(SortBy="Name", SortOrder="Ascending"), vic.list_actions(SortBy="Name", SortOrder="Descending"),
        vic.list_actions(SortBy="CreationTime", SortOrder="Ascending"))]
    assert names == [["a-step", "b-step", "train-42"], ["train-42", "b-step", "a-step"],
                     ["train-42", "b-step", "a-step"]]
    first = vic.list_actions(SortBy="Name", SortOrder="Ascending", MaxResults=2)
    rest = vic.list_actions(SortBy="Name", SortOrder="Ascending", MaxResults=2, NextToken=first["NextToken"])
    assert [x["ActionName"] for x in first["ActionSummaries"] + rest["ActionSummaries"]] == names[0]
    assert [x["ContextName"] for x in vic.list_contexts(SortBy="Name")["ContextSummaries"]] == ["churn-project"]
    with pytest.raises(ClientError) as exc:
        vic.list_associations(SortBy="SourceArn")
    assert _code(exc) == "ValidationException" and "CreationTime" in str(exc.value)
    assert len(vic.list_associations(SortBy="CreationTime", SortOrder="Ascending")["AssociationSummaries"]) >= 1
    # the native API keeps descriptions up to 4,000 characters, SageMaker's answer holds 3,072
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        r = native.post("/api/v1/lineage/actions", headers=sm.headers["pat"],
                        json={"type": "Step", "name": "long-said", "description": "d" * 3500})
        assert r.status_code == 201, r.text
    said = vic.describe_action(ActionName="long-said")["Description"]
    assert len(said) == 3072 and said.endswith("…")

    # the same graph natively
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        got = native.post("/api/v1/lineage/query", json={"start": [model.rsplit("/", 1)[1]],
                                                          "direction": "Ascendants"}, headers=sm.headers["vic"])
    assert {v["uri"] for v in got.json()["vertices"] if v["kind"] == "artifact"} == \
        {"s3://data/train.csv", "s3://models/m.tar.gz"}

    with pytest.raises(ClientError) as exc:       # only its creator (or an admin) changes a user entity
        ann.update_artifact(ArtifactArn=data, ArtifactName="x")
    assert _code(exc) == "AccessDeniedException"
    pat.delete_association(SourceArn=model, DestinationArn=ctx)
    pat.delete_context(ContextName="churn-project")
    with pytest.raises(ClientError) as exc:
        vic.describe_context(ContextName="churn-project")
    assert _code(exc) == "ResourceNotFound"


def test_a_new_etag_is_a_new_artifact(sm: SageMaker) -> None:
    """An SDK user's trial: CreateArtifact of a known URI with another S3ETag answered the old artifact (name, type,
    ETag and properties of the first), so lineage attached to the new dataset version landed on the old one."""
    pat, vic = sm.client("pat"), sm.client("vic")

    def create(name: str, etag: str, rows: str) -> str:
        return str(pat.create_artifact(ArtifactName=name, ArtifactType="DataSet", Properties={"rows": rows},
                                       Source={"SourceUri": "s3://data/daily.csv",
                                               "SourceTypes": [{"SourceIdType": "S3ETag", "Value": etag}]})
                   ["ArtifactArn"])

    # the URI recorded before its versions were told apart (a reviewer's finding: the versions were not linked)
    plain = pat.create_artifact(ArtifactType="DataSet", Source={"SourceUri": "s3://data/daily.csv"})["ArtifactArn"]
    v1, v2 = create("daily-1", "etag-v1", "1000"), create("daily-2", "etag-v2", "5000")
    assert [(e["SourceArn"], e["AssociationType"]) for e in vic.list_associations(DestinationArn=v1)[
        "AssociationSummaries"]] == [(plain, "DerivedFrom")]
    assert v1 != v2 and create("daily-2-again", "etag-v2", "5000") == v2     # the same version is the same node
    d2 = vic.describe_artifact(ArtifactArn=v2)
    assert (d2["ArtifactName"], d2["Properties"], d2["Source"]["SourceTypes"]) == \
        ("daily-2", {"rows": "5000"}, [{"SourceIdType": "S3ETag", "Value": "etag-v2"}])
    edges = vic.list_associations(DestinationArn=v2)["AssociationSummaries"]
    assert [(e["SourceArn"], e["AssociationType"]) for e in edges] == [(v1, "DerivedFrom")]
    listed = vic.list_artifacts(SourceUri="s3://data/daily.csv")["ArtifactSummaries"]
    assert sorted(a["ArtifactArn"] for a in listed) == sorted([plain, v1, v2])


def test_native_registration_shows_in_query_lineage(sm: SageMaker) -> None:
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        assert native.post("/api/v1/model-groups", json={"name": "native"}, headers=sm.headers["pat"]).status_code \
            == 201
        r = native.post("/api/v1/model-groups/native/versions", headers=sm.headers["pat"], json={
            "artifact_uri": "s3://models/native.tar.gz", "artifact_sha256": "12" * 32,
            "training_data": ["s3://data/native.csv"], "training_job": {"name": "native-train"}})
        assert r.status_code == 201, r.text
    vic = sm.client("vic")
    model = vic.list_artifacts(SourceUri="s3://models/native.tar.gz")["ArtifactSummaries"]
    assert [m["ArtifactType"] for m in model] == ["Model"]
    assert model[0]["Source"]["SourceTypes"] == [{"SourceIdType": "Custom", "Value": "sha256:" + "12" * 32}]
    # the version is its own node, which the model file ContributedTo; its training hangs off the version
    version = vic.list_artifacts(SourceUri="mlgov://model-groups/native/versions/1")["ArtifactSummaries"]
    assert [v["ArtifactType"] for v in version] == ["ModelPackage"]
    up = vic.query_lineage(StartArns=[version[0]["ArtifactArn"]], Direction="Ascendants", IncludeEdges=True)
    types = {(v["LineageType"], v["Type"]) for v in up["Vertices"]}
    assert {("Artifact", "Dataset"), ("Action", "TrainingJob"), ("Artifact", "Model")} <= types
    # what mlgov recorded itself is evidence: nobody deletes it through this door either
    job = next(v["Arn"] for v in up["Vertices"] if v["Type"] == "TrainingJob")
    with pytest.raises(ClientError) as exc:
        sm.client("alice").delete_action(ActionName=job.rsplit("/", 1)[1])   # Delete takes a name: the id is one
    assert _code(exc) == "AccessDeniedException"
    assert vic.describe_artifact(ArtifactArn=version[0]["ArtifactArn"])["ArtifactName"] == \
        version[0]["ArtifactArn"].rsplit("/", 1)[1]       # "native/1" is no SageMaker name: the id stands in
    d = vic.describe_action(ActionName=job)
    assert d["ActionName"] == "native-train" and d["Source"]["SourceUri"].startswith("mlgov:action/")


def test_cli_issues_aws_credentials_the_server_accepts(tmp_path: Any) -> None:
    import os
    import signal
    import subprocess

    from tests.infra import free_port, wait_healthy
    from tests.test_cli import MLGOV, run

    run(tmp_path, "db", "upgrade")
    out = run(tmp_path, "keys", "create", "--name", "ci", "--role", "publisher", "--aws").stdout.splitlines()
    env = dict(line.split("=", 1) for line in out if line.startswith("AWS_"))
    assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} and out[-1].startswith("mlgov_")
    port = free_port()
    proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")})
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        c = boto3.client("sagemaker", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                         aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                         config=Config(retries={"max_attempts": 1}))
        arn = c.create_model_package_group(ModelPackageGroupName="from-cli")["ModelPackageGroupArn"]
        assert arn == f"arn:aws:sagemaker:{REGION}:000000000000:model-package-group/from-cli"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
