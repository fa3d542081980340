"""The SageMaker Python SDK v2, unchanged, against a live mlgov server (S3 on SeaweedFS).

The SDK pins packaging/attrs/importlib-metadata/protobuf below mlgov's, so it lives in its own virtualenv
(``make setup-sagemaker`` → ``.venv-sagemaker/``; the ``sdk_python`` fixture runs that target when the venv is
missing) and each scenario runs there as a script in a subprocess. A script talks to mlgov only through the two
environment variables a migrating user sets (``AWS_ENDPOINT_URL_SAGEMAKER``, ``AWS_ENDPOINT_URL_S3``); every
other AWS endpoint points at a closed local port, and the script reports every AWS call the SDK made, so a test
also proves the SDK needed nothing but SageMaker and S3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.infra import S3_KEY, S3_SECRET, Seaweed, free_port
from tests.test_sagemaker_api import ACCOUNT, REGION, SageMaker
from tests.test_sagemaker_api import sm as sm  # the live-server fixture

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent
SDK_VENV = ROOT / ".venv-sagemaker"


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The SDK venv's interpreter, created by the project's own Makefile target when missing."""
    python = SDK_VENV / "bin" / "python"
    if not (SDK_VENV / ".installed").exists():
        done = subprocess.run(["make", "-s", "setup-sagemaker", f"PYTHON={sys.executable}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"make setup-sagemaker failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return python


# Runs before every scenario, inside the SDK's venv. The Session is built the way the README tells a migrating
# user to: S3 credentials on the boto session (the object store's), mlgov's on the SageMaker client, a
# default_bucket (no STS lookup of the account id) and telemetry off (it calls STS and an AWS URL).
PRELUDE = '''
import json, os, sys
import boto3, sagemaker
from botocore.exceptions import ClientError

CALLS = []

def _record(model, **_):
    CALLS.append(f"{model.service_model.service_name}.{model.name}")

def session(who):
    creds = json.loads(os.environ["MLGOV_SDK_CREDS"])[who]
    boto_session = boto3.Session(aws_access_key_id=os.environ["S3_KEY"],
                                 aws_secret_access_key=os.environ["S3_SECRET"], region_name=os.environ["REGION"])
    boto_session.events.register("before-call", _record)
    client = boto_session.client("sagemaker", aws_access_key_id=creds[0], aws_secret_access_key=creds[1])
    return sagemaker.Session(
        boto_session=boto_session, sagemaker_client=client, default_bucket=os.environ["BUCKET"],
        sagemaker_config={"SchemaVersion": "1.0",
                          "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}})

def error_code(exc):
    return exc.response["Error"]["Code"]

OUT = {}
'''
EPILOGUE = '''
OUT["calls"] = sorted(set(CALLS))
print("\\nRESULT " + json.dumps(OUT, default=str))   # on a line of its own: the SDK's waits print dots and "!"
'''


@dataclass
class Sdk:
    python: Path
    sm: SageMaker
    s3_endpoint: str
    tmp_path: Path

    def run(self, script: str) -> dict[str, Any]:
        return run_sdk(self.python, self.sm, self.s3_endpoint, script, self.tmp_path)


@pytest.fixture
def sdk(sdk_python: Path, sm: SageMaker, seaweed: Seaweed, tmp_path: Path) -> Sdk:
    return Sdk(sdk_python, sm, seaweed.endpoint, tmp_path)


def run_sdk(python: Path, sm: SageMaker, s3_endpoint: str, script: str, tmp_path: Path) -> dict[str, Any]:
    bucket = sm.store.root_uri.removeprefix("s3://").split("/", 1)[0]
    closed = f"http://127.0.0.1:{free_port()}"    # nothing listens: any other AWS service fails at once
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": closed, "AWS_ENDPOINT_URL_SAGEMAKER": sm.url,
        "AWS_ENDPOINT_URL_S3": s3_endpoint, "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "NO_PROXY": "127.0.0.1,localhost",
        "MLGOV_SDK_CREDS": json.dumps(sm.creds), "S3_KEY": S3_KEY, "S3_SECRET": S3_SECRET, "REGION": REGION,
        "BUCKET": bucket, "COLUMNS": "300"}   # wide tracebacks: whole error messages
    code = PRELUDE + textwrap.dedent(script) + EPILOGUE
    done = subprocess.run([str(python), "-c", code], env=environ, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, f"SDK script failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))
    out: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    assert {c.split(".")[0] for c in out["calls"]} <= {"sagemaker", "s3"}, out["calls"]
    return out


def test_sdk_registers_and_approves_model_packages(sdk: Sdk) -> None:
    sm = sdk.sm
    (sdk.tmp_path / "model.tar.gz").write_bytes(b"sdk-model-bytes")
    registered = sdk.run('''
        from sagemaker.model import Model, ModelPackage
        sess = session("pat")
        data = sess.upload_data(os.path.join(os.getcwd(), "model.tar.gz"), key_prefix="mlgov/sdk")
        model = Model(image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/xgboost:1.7", model_data=data,
                      sagemaker_session=sess)
        package = model.register(content_types=["text/csv"], response_types=["text/csv"],
                                 inference_instances=["ml.m5.large"], transform_instances=["ml.m5.large"],
                                 model_package_group_name="sdk-churn", description="registered by the SDK",
                                 customer_metadata_properties={"owner": "risk"}, domain="MACHINE_LEARNING",
                                 task="CLASSIFICATION", approval_status="PendingManualApproval")
        OUT["data"] = data
        OUT["arn"] = package.model_package_arn
        # a second version through the SDK's ModelPackage.create path of the same group
        second = model.register(content_types=["text/csv"], response_types=["text/csv"],
                                model_package_group_name="sdk-churn")
        OUT["second"] = second.model_package_arn
        # the registrant (a publisher) may not decide
        try:
            ModelPackage(role=None, model_package_arn=package.model_package_arn,
                         sagemaker_session=sess).update_approval_status("Approved", "my own model")
            OUT["self_approval"] = "accepted"
        except ClientError as exc:
            OUT["self_approval"] = error_code(exc)
        described = sess.sagemaker_client.describe_model_package(ModelPackageName=package.model_package_arn)
        OUT["status"] = described["ModelApprovalStatus"]
        OUT["metadata"] = described["CustomerMetadataProperties"]
        OUT["container"] = described["InferenceSpecification"]["Containers"][0]
    ''')
    arn = registered["arn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sdk-churn/1"
    assert registered["second"].endswith("model-package/sdk-churn/2")
    assert registered["self_approval"] == "AccessDeniedException"
    assert registered["status"] == "PendingManualApproval" and registered["metadata"] == {"owner": "risk"}
    assert registered["container"]["ModelDataUrl"] == registered["data"]
    # the SDK looked for the group with Search, created it, then registered
    assert {"sagemaker.Search", "sagemaker.CreateModelPackageGroup", "sagemaker.CreateModelPackage",
            "s3.PutObject"} <= set(registered["calls"])

    # the same version natively: mlgov hashed the object the SDK uploaded
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        got = native.get("/api/v1/model-groups/sdk-churn/versions/1", headers=sm.headers["vic"]).json()
    assert got["artifact_sha256"] == hashlib.sha256(b"sdk-model-bytes").hexdigest()
    assert got["registered_by"] == "pat" and got["task"] == "CLASSIFICATION"

    # an admin who registered a version may not approve it either (four-eyes), an independent approver may
    decided = sdk.run(f'''
        from sagemaker.model import Model, ModelPackage
        admin, approver = session("alice"), session("ann")
        mine = Model(image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/xgboost:1.7",
                     model_data={registered["data"]!r}, sagemaker_session=admin).register(
            content_types=["text/csv"], response_types=["text/csv"], model_package_group_name="sdk-churn")
        try:
            ModelPackage(role=None, model_package_arn=mine.model_package_arn,
                         sagemaker_session=admin).update_approval_status("Approved", "mine")
            OUT["four_eyes"] = "accepted"
        except ClientError as exc:
            OUT["four_eyes"] = [error_code(exc), exc.response["Error"]["Message"]]
        ModelPackage(role=None, model_package_arn={arn!r},
                     sagemaker_session=approver).update_approval_status("Approved", "holdout AUC 0.91")
        d = approver.sagemaker_client.describe_model_package(ModelPackageName={arn!r})
        OUT["decided"] = [d["ModelApprovalStatus"], d["ApprovalDescription"]]
    ''')
    assert decided["four_eyes"][0] == "AccessDeniedException" and "four-eyes" in decided["four_eyes"][1]
    assert decided["decided"] == ["Approved", "holdout AUC 0.91"]
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        history = native.get("/api/v1/model-groups/sdk-churn/versions/1/approvals", headers=sm.headers["vic"]).json()
    assert [(h["actor"], h["to_status"]) for h in history] == [("ann", "Approved")]


def test_sdk_lineage_artifacts_and_associations(sdk: Sdk) -> None:
    sm = sdk.sm
    out = sdk.run('''
        from sagemaker.lineage.action import Action
        from sagemaker.lineage.artifact import Artifact
        from sagemaker.lineage.association import Association
        from sagemaker.lineage.query import LineageQuery, LineageQueryDirectionEnum
        sess = session("pat")
        data = Artifact.create(artifact_name="train-data", source_uri="s3://data/train.csv", artifact_type="DataSet",
                               properties={"rows": "1000"}, sagemaker_session=sess)
        model = Artifact.create(artifact_name="model", source_uri="s3://models/m.tar.gz", artifact_type="Model",
                                sagemaker_session=sess)
        job = Action.create(action_name="sdk-train", source_uri="s3://jobs/sdk-train", action_type="TrainingJob",
                            status="Completed", sagemaker_session=sess)
        Association.create(source_arn=data.artifact_arn, destination_arn=job.action_arn,
                           association_type="ContributedTo", sagemaker_session=sess)
        Association.create(source_arn=job.action_arn, destination_arn=model.artifact_arn,
                           association_type="Produced", sagemaker_session=sess)
        OUT["arns"] = {"data": data.artifact_arn, "model": model.artifact_arn, "job": job.action_arn}
        loaded = Artifact.load(artifact_arn=data.artifact_arn, sagemaker_session=sess)
        OUT["loaded"] = [loaded.artifact_name, loaded.artifact_type, loaded.properties]
        OUT["listed"] = [a.artifact_arn for a in Artifact.list(source_uri="s3://data/train.csv",
                                                               sagemaker_session=sess)]
        OUT["from_job"] = [(a.destination_arn, a.association_type)
                           for a in Association.list(source_arn=job.action_arn, sagemaker_session=sess)]
        result = LineageQuery(sess).query(start_arns=[model.artifact_arn],
                                          direction=LineageQueryDirectionEnum.ASCENDANTS, include_edges=True)
        OUT["upstream"] = sorted(v.arn for v in result.vertices)
        OUT["edges"] = sorted((e.source_arn, e.association_type, e.destination_arn) for e in result.edges)
        # what exists already: the SDK's experiments code skips "ValidationException … already exists", as SageMaker
        # answers it where the model declares no ConflictException; mlgov's ConflictException made it raise
        from sagemaker.experiments._helper import _LineageArtifactManager
        from sagemaker.experiments._utils import is_already_exist_error
        tracked = _LineageArtifactManager("tracked", "s3://data/tracked.csv", "etag-1", source_arn=job.action_arn)
        for _ in range(2):   # a run logged again
            tracked.create_artifact(sess)
            tracked.add_association(sess)
        OUT["tracked"] = [(a.source_arn, a.association_type) for a in Association.list(
            destination_arn=tracked.artifact_arn, sagemaker_session=sess)]
        try:
            Action.create(action_name="sdk-train", source_uri="s3://jobs/other", action_type="TrainingJob",
                          sagemaker_session=sess)
        except ClientError as exc:
            OUT["again"] = [error_code(exc), is_already_exist_error(exc.response["Error"])]
        # a viewer may read the graph, not change it
        try:
            Artifact.create(artifact_name="nope", source_uri="s3://x/y", artifact_type="DataSet",
                            sagemaker_session=session("vic"))
            OUT["viewer"] = "accepted"
        except ClientError as exc:
            OUT["viewer"] = error_code(exc)
    ''')
    arns = out["arns"]
    assert out["loaded"] == ["train-data", "DataSet", {"rows": "1000"}]
    assert out["listed"] == [arns["data"]]
    assert out["from_job"] == [[arns["model"], "Produced"]]
    assert out["upstream"] == sorted([arns["data"], arns["job"], arns["model"]])
    assert out["edges"] == sorted([[arns["data"], "ContributedTo", arns["job"]],
                                   [arns["job"], "Produced", arns["model"]]])
    assert out["viewer"] == "AccessDeniedException"
    assert out["tracked"] == [[arns["job"], "Produced"]] and out["again"] == ["ValidationException", True]
    # the same graph natively
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        got = native.post("/api/v1/lineage/query", json={"start": [arns["model"].rsplit("/", 1)[1]],
                                                          "direction": "Ascendants"}, headers=sm.headers["vic"])
    assert "s3://data/train.csv" in {v.get("uri") for v in got.json()["vertices"]}


def test_sdk_model_cards(sdk: Sdk) -> None:
    sm = sdk.sm
    (sdk.tmp_path / "model.tar.gz").write_bytes(b"sdk-carded-model")
    out = sdk.run('''
        from sagemaker.model_card import IntendedUses, ModelCard, ModelCardStatusEnum, ModelOverview
        author, reviewer = session("pat"), session("ann")
        card = ModelCard(name="sdk-card", status=ModelCardStatusEnum.DRAFT,
                         model_overview=ModelOverview(model_description="gradient boosting"),
                         intended_uses=IntendedUses(purpose_of_model="retention campaigns"),
                         sagemaker_session=author)
        OUT["arn"] = card.create()
        card.update(status=ModelCardStatusEnum.PENDING_REVIEW)
        try:                                   # the author cannot approve its own card
            card.update(status=ModelCardStatusEnum.APPROVED)
            OUT["self_review"] = "accepted"
        except ClientError as exc:
            OUT["self_review"] = error_code(exc)
        reviewed = ModelCard.load(name="sdk-card", sagemaker_session=reviewer)
        reviewed.update(status=ModelCardStatusEnum.APPROVED)
        latest = ModelCard.load(name="sdk-card", sagemaker_session=author)
        first = ModelCard.load(name="sdk-card", version=1, sagemaker_session=author)
        OUT["latest"] = [latest.status, latest.version, latest.intended_uses.purpose_of_model]
        OUT["first"] = [first.status, first.version]
        OUT["history"] = [[v["ModelCardVersion"], v["ModelCardStatus"]]
                          for v in latest.get_version_history(SortOrder="Ascending")]
        # an SDK user's trial: the card-to-package link failed, as the SDK asks Search on ModelCard first
        from sagemaker.model import Model
        from sagemaker.model_card import ModelPackage as CardPackage
        data = author.upload_data(os.path.join(os.getcwd(), "model.tar.gz"), key_prefix="mlgov/cards")
        package = Model(image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/xgboost:1.7", model_data=data,
                        sagemaker_session=author).register(content_types=["text/csv"], response_types=["text/csv"],
                                                           model_package_group_name="sdk-carded")
        details = CardPackage.from_model_package_arn(package.model_package_arn, sagemaker_session=author)
        ModelCard(name="sdk-package-card", status=ModelCardStatusEnum.DRAFT, model_package_details=details,
                  sagemaker_session=author).create()
        try:
            CardPackage.from_model_package_arn(package.model_package_arn, sagemaker_session=author)
            OUT["second_card"] = "allowed"
        except ValueError as exc:
            OUT["second_card"] = str(exc)
        described = author.sagemaker_client.describe_model_package(ModelPackageName=package.model_package_arn)
        OUT["package_card"] = json.loads(described["ModelCard"]["ModelCardContent"])["model_package_details"][
            "model_package_arn"] == package.model_package_arn
        draft = ModelCard(name="sdk-scratch", status=ModelCardStatusEnum.DRAFT, sagemaker_session=author)
        draft.create()
        draft.delete()
        try:
            ModelCard.load(name="sdk-scratch", sagemaker_session=author)
            OUT["deleted"] = "still there"
        except ClientError as exc:
            OUT["deleted"] = error_code(exc)
    ''')
    assert out["arn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-card/sdk-card"
    assert out["self_review"] == "AccessDeniedException"
    assert out["latest"] == ["Approved", 3, "retention campaigns"] and out["first"] == ["Draft", 1]
    assert out["history"] == [[1, "Draft"], [2, "PendingReview"], [3, "Approved"]]
    assert out["deleted"] == "ResourceNotFound"
    assert "already been associated with ['sdk-package-card']" in out["second_card"] and out["package_card"]
    with httpx.Client(base_url=sm.url, timeout=60) as native:
        events = native.get("/api/v1/audit/events", params={"action": "model_card.*"},
                            headers=sm.headers["root"]).json()["items"]
    assert sorted((e["action"], e["subject_id"], e["actor"]) for e in events) == [
        ("model_card.created", "sdk-card", "pat"), ("model_card.created", "sdk-package-card", "pat"),
        ("model_card.created", "sdk-scratch", "pat"),
        ("model_card.deleted", "sdk-scratch", "pat"), ("model_card.updated", "sdk-card", "ann"),
        ("model_card.updated", "sdk-card", "pat")]



def test_sdk_default_model_monitor_schedule_executions_and_violations(sdk: Sdk) -> None:
    """suggest_baseline, create_monitoring_schedule, then (captured traffic and two runs later) attach →
    list_executions → constraint_violations()/statistics() read back from S3, as a SageMaker user's code does."""
    from tests.monitor.test_api import csv_bytes, frame
    from tests.test_sagemaker_monitoring import _capture, _endpoint, _ingest_key, _run

    sm = sdk.sm
    _endpoint(sm)
    data_uri, _ = sm.model_file("sdk-monitor/train.csv", csv_bytes(frame(1000, seed=1)))
    root = sm.store.uri("sdk-monitor")
    created = sdk.run(f'''
        from sagemaker.model_monitor import CronExpressionGenerator, DefaultModelMonitor
        from sagemaker.model_monitor.dataset_format import DatasetFormat
        sess = session("pat")
        monitor = DefaultModelMonitor(role="arn:aws:iam::123456789012:role/monitor", instance_count=1,
                                      instance_type="ml.m5.xlarge", sagemaker_session=sess)
        monitor.suggest_baseline(baseline_dataset={data_uri!r}, dataset_format=DatasetFormat.csv(header=True),
                                 output_s3_uri={root + "/baseline"!r}, job_name="sdk-baseline", wait=True,
                                 logs=False)
        OUT["baseline_rows"] = monitor.baseline_statistics().body_dict["dataset"]["item_count"]
        monitor.create_monitoring_schedule(monitor_schedule_name="sdk-hourly", endpoint_input="churn-prod",
                                           output_s3_uri={root + "/reports"!r},
                                           statistics=monitor.baseline_statistics(),
                                           constraints=monitor.suggested_constraints(),
                                           schedule_cron_expression=CronExpressionGenerator.hourly(),
                                           enable_cloudwatch_metrics=False)
        d = monitor.describe_schedule()
        OUT["schedule"] = [d["MonitoringScheduleStatus"], d["MonitoringScheduleConfig"]["MonitoringType"],
                           d["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"] == monitor.job_definition_name]
        OUT["no_executions"] = monitor.list_executions()
    ''')
    assert created["baseline_rows"] == 1000
    assert created["schedule"] == ["Scheduled", "DataQuality", True] and created["no_executions"] == []
    assert {"sagemaker.CreateProcessingJob", "sagemaker.DescribeProcessingJob",
            "sagemaker.CreateDataQualityJobDefinition", "sagemaker.CreateMonitoringSchedule"} <= set(created["calls"])

    ingest = _ingest_key(sm)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    _capture(sm, ingest, t0, shift=0.0, seed=3, first=0)
    _capture(sm, ingest, t0 + dt.timedelta(hours=1), shift=30.0, seed=4, first=1000)
    assert _run(sm, "sdk-hourly", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")["status"] == "Completed"
    assert _run(sm, "sdk-hourly", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")["status"] == \
        "CompletedWithViolations"

    read = sdk.run('''
        from sagemaker.model_monitor import DefaultModelMonitor
        monitor = DefaultModelMonitor.attach("sdk-hourly", sagemaker_session=session("vic"))
        OUT["attached"] = [monitor.monitoring_schedule_name, monitor.job_definition_name, monitor.role]
        executions = monitor.list_executions()          # oldest first
        OUT["count"] = len(executions)
        OUT["outputs"] = [e.outputs[0].destination for e in executions]
        OUT["violations"] = [[v["feature_name"] for v in e.constraint_violations().body_dict["violations"]
                              if v["constraint_check_type"] == "baseline_drift_check"] for e in executions]
        OUT["rows"] = [e.statistics().body_dict["dataset"]["item_count"] for e in executions]
        OUT["statuses"] = [e.describe()["ProcessingJobStatus"] for e in executions]
        latest = monitor.latest_monitoring_constraint_violations()
        OUT["latest"] = sorted({v["feature_name"] for v in latest.body_dict["violations"]})
    ''')
    assert read["attached"][0] == "sdk-hourly" and read["attached"][1]
    assert read["attached"][2] == "arn:aws:iam::123456789012:role/monitor"
    assert read["count"] == 2 and read["statuses"] == ["Completed", "Completed"]
    assert all(o.startswith(f"{root}/reports/churn-prod/sdk-hourly/") for o in read["outputs"])
    assert read["violations"][0] == [] and "income" in read["violations"][1]
    assert read["rows"] == [300, 300] and "income" in read["latest"]
    assert {"sagemaker.DescribeMonitoringSchedule", "sagemaker.DescribeDataQualityJobDefinition",
            "sagemaker.ListMonitoringExecutions", "sagemaker.DescribeProcessingJob", "s3.GetObject"} <= \
        set(read["calls"])


def test_sdk_model_quality_monitor_suggest_baseline(sdk: Sdk) -> None:
    """A migration trial: ModelQualityMonitor.suggest_baseline (analysis_type MODEL_QUALITY) was refused as
    "not supported: mlgov's analyzer runs baselining (suggest_baseline) jobs". It now profiles the labelled
    predictions into a ModelQuality baseline; its statistics match scikit-learn on the same rows."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    rng = np.random.default_rng(5)
    label = rng.integers(0, 2, 600)
    prob = np.clip(label * 0.35 + rng.random(600) * 0.65, 0, 1).round(4)
    frame = pd.DataFrame({"label": label, "prob": prob, "pred": (prob >= 0.5).astype(int)})
    data_uri, _ = sdk.sm.model_file("sdk-mq/labelled.csv", frame.to_csv(index=False).encode())
    out = sdk.sm.store.uri("sdk-mq/baseline")
    got = sdk.run(f'''
        from sagemaker.model_monitor import ModelQualityMonitor
        from sagemaker.model_monitor.dataset_format import DatasetFormat
        monitor = ModelQualityMonitor(role="arn:aws:iam::123456789012:role/monitor", instance_count=1,
                                      instance_type="ml.m5.xlarge", sagemaker_session=session("pat"))
        job = monitor.suggest_baseline(baseline_dataset={data_uri!r}, dataset_format=DatasetFormat.csv(header=True),
                                       problem_type="BinaryClassification", inference_attribute="pred",
                                       probability_attribute="prob", ground_truth_attribute="label",
                                       output_s3_uri={out!r}, job_name="sdk-mq-baseline", wait=True, logs=False)
        OUT["status"] = job.describe()["ProcessingJobStatus"]
        stats = monitor.baseline_statistics().body_dict
        OUT["metrics"] = stats["binary_classification_metrics"]
        OUT["constraints"] = sorted(monitor.suggested_constraints().body_dict["binary_classification_constraints"])
    ''')
    assert got["status"] == "Completed"
    assert got["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(frame.label, frame.pred))
    assert got["metrics"]["auc"]["value"] == pytest.approx(roc_auc_score(frame.label, frame.prob))
    assert {"accuracy", "auc", "f1"} <= set(got["constraints"])


def test_sdk_model_quality_schedule_reads_ground_truth_uploaded_to_s3(sdk: Sdk) -> None:
    """A SageMaker team's model-quality loop kept whole: suggest_baseline, create_monitoring_schedule with
    ground_truth_input, and labels uploaded with the SDK's S3Uploader into that folder's hour partitions (as AWS's
    examples do), never through mlgov's own API. The run reads them and judges the captured predictions."""
    import numpy as np
    import pandas as pd

    from tests.test_sagemaker_monitoring import _capture, _endpoint, _ingest_key, _run

    sm = sdk.sm
    _endpoint(sm)
    rng = np.random.default_rng(5)
    label = rng.integers(0, 2, 600)
    prob = np.clip(label * 0.35 + rng.random(600) * 0.65, 0, 1).round(4)
    frame = pd.DataFrame({"label": label, "prob": prob})
    data_uri, _ = sm.model_file("sdk-gt/labelled.csv", frame.to_csv(index=False).encode())
    root, truth = sm.store.uri("sdk-gt"), sm.store.uri("sdk-gt/ground-truth")
    labels = "\n".join(json.dumps({"groundTruthData": {"data": str(i % 2), "encoding": "CSV"},
                                   "eventMetadata": {"eventId": f"inf-{i}"}, "eventVersion": "0"})
                       for i in range(300))
    got = sdk.run(f'''
        from sagemaker.model_monitor import CronExpressionGenerator, EndpointInput, ModelQualityMonitor
        from sagemaker.model_monitor.dataset_format import DatasetFormat
        from sagemaker.s3 import S3Uploader
        sess = session("pat")
        monitor = ModelQualityMonitor(role="arn:aws:iam::123456789012:role/monitor", instance_count=1,
                                      instance_type="ml.m5.xlarge", sagemaker_session=sess)
        monitor.suggest_baseline(baseline_dataset={data_uri!r}, dataset_format=DatasetFormat.csv(header=True),
                                 problem_type="BinaryClassification", probability_attribute="prob",
                                 ground_truth_attribute="label",
                                 output_s3_uri={root + "/baseline"!r}, job_name="sdk-gt-baseline", wait=True,
                                 logs=False)
        monitor.create_monitoring_schedule(
            monitor_schedule_name="sdk-gt-hourly", problem_type="BinaryClassification",
            endpoint_input=EndpointInput(endpoint_name="churn-prod", destination="/opt/ml/processing/input/endpoint",
                                         probability_attribute="prediction", probability_threshold_attribute=0.5,
                                         start_time_offset="-PT1H", end_time_offset="PT0S"),
            ground_truth_input={truth!r}, output_s3_uri={root + "/reports"!r},
            constraints=monitor.suggested_constraints(), schedule_cron_expression=CronExpressionGenerator.hourly(),
            enable_cloudwatch_metrics=False)
        S3Uploader.upload_string_as_file_body({labels!r}, desired_s3_uri={truth + "/2026/11/20/11/labels.jsonl"!r},
                                              sagemaker_session=sess)
        OUT["definition_truth"] = sess.sagemaker_client.describe_model_quality_job_definition(
            JobDefinitionName=monitor.job_definition_name)["ModelQualityJobInput"]["GroundTruthS3Input"]["S3Uri"]
    ''')
    assert got["definition_truth"] == truth
    assert {"sagemaker.CreateModelQualityJobDefinition", "sagemaker.CreateMonitoringSchedule", "s3.PutObject"} <= \
        set(got["calls"])
    _capture(sm, _ingest_key(sm), dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC), shift=0.0, seed=8, first=0)
    ran = _run(sm, "sdk-gt-hourly", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    assert ran["status"] in ("Completed", "CompletedWithViolations"), ran
    stats = httpx.get(f"{sm.url}/api/v1/analyses/{ran['analysis_id']}/statistics.json", headers=sm.headers["pat"],
                      timeout=60).json()
    assert stats["binary_classification_metrics"]["accuracy"]["value"] == 0.5   # every prediction 1, half the labels
