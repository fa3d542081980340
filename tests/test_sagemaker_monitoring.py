"""SageMaker Model Monitor operations with the real clients only: boto3 against a live server, S3 on SeaweedFS.

The `sm` fixture and the strict response check (`_conform`: every answer parsed by botocore and held to the
operation's output shape) come from tests/test_sagemaker_api.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import func, select

from clarify import sagemaker as clarify_sagemaker
from mlgov.aws import AwsService, botocore_model
from mlgov.db import Database
from monitor import definitions, jobs
from monitor import sagemaker as monitor_sagemaker
from monitor import service as monitor_service
from monitor.engine import quality
from monitor.sagemaker import ANALYZER_IMAGES
from tests import test_sagemaker_api
from tests.monitor.test_api import FEATURES, csv_bytes, frame, record
from tests.test_sagemaker_api import REGION, SageMaker, _code, _conform, _package

sm = test_sagemaker_api.sm   # the live server with boto3 clients per role (the fixture, shared)

pytestmark = pytest.mark.live
ANALYZER = "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
ROLE = "arn:aws:iam::123456789012:role/monitor"
CLUSTER = {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
MONITORING_OPERATIONS = {
    "CreateDataQualityJobDefinition", "DescribeDataQualityJobDefinition", "ListDataQualityJobDefinitions",
    "DeleteDataQualityJobDefinition", "CreateMonitoringSchedule", "DescribeMonitoringSchedule",
    "UpdateMonitoringSchedule", "ListMonitoringSchedules", "StopMonitoringSchedule", "StartMonitoringSchedule",
    "DeleteMonitoringSchedule", "ListMonitoringExecutions", "ListMonitoringAlerts", "ListMonitoringAlertHistory",
    "UpdateMonitoringAlert", "CreateProcessingJob", "DescribeProcessingJob", "ListProcessingJobs",
    "StopProcessingJob"}
MODEL_QUALITY_OPERATIONS = {"CreateModelQualityJobDefinition", "DescribeModelQualityJobDefinition",
                            "ListModelQualityJobDefinitions", "DeleteModelQualityJobDefinition"}


def _baselining_request(name: str, dataset_uri: str, output_uri: str, *, image: str = ANALYZER,
                        dataset_format: dict[str, Any] | None = None) -> dict[str, Any]:
    """CreateProcessingJob as the SageMaker Python SDK v2's DefaultModelMonitor.suggest_baseline builds it."""
    return {
        "ProcessingJobName": name, "RoleArn": ROLE, "AppSpecification": {"ImageUri": image},
        "ProcessingResources": {"ClusterConfig": CLUSTER}, "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Environment": {"dataset_format": json.dumps(dataset_format or {"csv": {"header": True,
                                                                                "output_columns_position": "START"}}),
                        "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
                        "output_path": "/opt/ml/processing/output", "publish_cloudwatch_metrics": "Disabled"},
        "ProcessingInputs": [{"InputName": "baseline_dataset_input", "AppManaged": False, "S3Input": {
            "S3Uri": dataset_uri, "LocalPath": "/opt/ml/processing/input/baseline_dataset_input",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "monitoring_output", "AppManaged": False, "S3Output": {
            "S3Uri": output_uri, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
    }


def _definition(name: str, endpoint: str, output_uri: str, baseline: dict[str, Any],
                image: str = ANALYZER) -> dict[str, Any]:
    """CreateDataQualityJobDefinition as DefaultModelMonitor.create_monitoring_schedule builds it."""
    return {"JobDefinitionName": name, "DataQualityBaselineConfig": baseline,
            "DataQualityAppSpecification": {"ImageUri": image,
                                            "Environment": {"publish_cloudwatch_metrics": "Enabled"}},
            "DataQualityJobInput": {"EndpointInput": {"EndpointName": endpoint, "LocalPath": "/opt/ml/processing/input",
                                                      "S3InputMode": "File",
                                                      "S3DataDistributionType": "FullyReplicated"}},
            "DataQualityJobOutputConfig": {"MonitoringOutputs": [{"S3Output": {
                "S3Uri": output_uri, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
            "JobResources": {"ClusterConfig": CLUSTER}, "RoleArn": ROLE,
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800}}


def _json_at(sm: SageMaker, uri: str) -> Any:
    key = sm.store.key_of(uri)
    assert key is not None, uri
    return json.loads(sm.store.get(key))


def _ingest_key(sm: SageMaker) -> dict[str, str]:
    r = httpx.post(f"{sm.url}/api/v1/keys", json={"name": "capture", "role": "ingest"}, headers=sm.headers["root"],
                   timeout=60)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def _endpoint(sm: SageMaker, name: str = "churn-prod") -> None:
    pat = sm.client("pat")
    pat.create_model_package_group(ModelPackageGroupName="churn")
    pat.create_model_package(**_package(sm, "churn", b"churn-model"))
    r = httpx.post(f"{sm.url}/api/v1/endpoints", headers=sm.headers["pat"], json={
        "name": name, "model_group": "churn", "model_version": 1,
        "schema": {"features": FEATURES, "prediction": {"name": "prediction"}}}, timeout=60)
    assert r.status_code == 201, r.text


def _capture(sm: SageMaker, ingest: dict[str, str], start: dt.datetime, shift: float, seed: int, first: int) -> None:
    rows = frame(300, shift=shift, seed=seed)
    recs = [record(first + i, start + dt.timedelta(seconds=5 * i), tuple(rows.iloc[i])) for i in range(300)]
    r = httpx.post(f"{sm.url}/api/v1/endpoints/churn-prod/capture", json=recs, headers=ingest, timeout=60)
    assert r.status_code == 200 and r.json()["accepted"] == 300, r.text


def _run(sm: SageMaker, schedule: str, start: str, end: str) -> dict[str, Any]:
    r = httpx.post(f"{sm.url}/api/v1/monitoring-schedules/{schedule}/run", json={"start": start, "end": end},
                   headers=sm.headers["pat"], timeout=120)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_baseline_schedule_executions_reports_and_alerts(sm: SageMaker, live_db: Database) -> None:
    _conform.seen.clear()  # type: ignore[attr-defined]
    pat, vic = sm.client("pat"), sm.client("vic")

    # suggest_baseline: the analyzer's processing job, run by mlgov's engine
    data_uri, _ = sm.model_file("datasets/train/part-0.csv", csv_bytes(frame(1500, seed=1)))
    sm.store.put("datasets/train/part-1.csv", csv_bytes(frame(500, seed=2)))
    out = sm.store.uri("baselining/churn-baseline/output")
    arn = pat.create_processing_job(**_baselining_request("churn-baseline", data_uri.rsplit("/", 1)[0], out))[
        "ProcessingJobArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:123456789012:processing-job/churn-baseline"
    job = vic.describe_processing_job(ProcessingJobName="churn-baseline")
    assert job["ProcessingJobStatus"] == "Completed" and job["ProcessingEndTime"] >= job["ProcessingStartTime"]
    assert job["AppSpecification"]["ImageUri"] == ANALYZER
    stats, constraints = _json_at(sm, f"{out}/statistics.json"), _json_at(sm, f"{out}/constraints.json")
    assert stats["dataset"]["item_count"] == 2000      # both objects of the prefix
    by_name = {f["name"]: f for f in stats["features"]}
    assert by_name["income"]["inferred_type"] == "Fractional"
    assert set(by_name["income"]["numerical_statistics"]) >= {"mean", "sum", "std_dev", "min", "max", "distribution"}
    assert by_name["state"]["inferred_type"] == "String" and "string_statistics" in by_name["state"]
    assert {f["name"] for f in constraints["features"]} == {"age", "income", "state"}
    assert "monitoring_config" in constraints and "completeness" in constraints["features"][0]
    baseline_id = job["ExitMessage"].split()[-1]
    native = httpx.get(f"{sm.url}/api/v1/baselines/{baseline_id}", headers=sm.headers["vic"], timeout=60).json()
    assert native["row_count"] == 2000 and native["dataset_uri"] == data_uri.rsplit("/", 1)[0]

    # an endpoint registered natively, a job definition and a schedule through boto3
    _endpoint(sm)
    reports = sm.store.uri("monitoring/reports")
    definition = _definition("churn-dq", "churn-prod", reports, {
        "ConstraintsResource": {"S3Uri": f"{out}/constraints.json"},
        "StatisticsResource": {"S3Uri": f"{out}/statistics.json"}})
    def_arn = pat.create_data_quality_job_definition(**definition)["JobDefinitionArn"]
    assert def_arn.endswith(":data-quality-job-definition/churn-dq")
    described = vic.describe_data_quality_job_definition(JobDefinitionName="churn-dq")
    assert described["DataQualityJobInput"] == definition["DataQualityJobInput"]
    assert described["DataQualityBaselineConfig"] == definition["DataQualityBaselineConfig"]
    assert [d["MonitoringJobDefinitionName"] for d in
            vic.list_data_quality_job_definitions(EndpointName="churn-prod")["JobDefinitionSummaries"]] == ["churn-dq"]
    sched_arn = pat.create_monitoring_schedule(MonitoringScheduleName="churn-hourly", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "churn-dq",
        "MonitoringType": "DataQuality"})["MonitoringScheduleArn"]
    assert sched_arn == f"arn:aws:sagemaker:{REGION}:123456789012:monitoring-schedule/churn-hourly"
    # a name taken is the error the model declares for these operations, the one client code catches
    with pytest.raises(pat.exceptions.ResourceInUse):
        pat.create_monitoring_schedule(MonitoringScheduleName="churn-hourly", MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "churn-dq",
            "MonitoringType": "DataQuality"})
    with pytest.raises(pat.exceptions.ResourceInUse):
        pat.create_data_quality_job_definition(**definition)
    with httpx.Client(base_url=sm.url, headers=sm.headers["vic"], timeout=60) as native_client:
        natively = native_client.get("/api/v1/monitoring-schedules/churn-hourly").json()
    assert (natively["endpoint"], natively["type"], natively["status"]) == ("churn-prod", "DataQuality", "Scheduled")
    imported = httpx.get(f"{sm.url}/api/v1/baselines/{natively['baseline_id']}", headers=sm.headers["vic"],
                         timeout=60).json()
    assert imported["source"] == "imported" and imported["feature_count"] == 3

    # captured traffic, then runs (the native run-now; StartMonitoringSchedule only resumes a stopped schedule)
    ingest = _ingest_key(sm)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    _capture(sm, ingest, t0, shift=0.0, seed=3, first=0)
    _capture(sm, ingest, t0 + dt.timedelta(hours=1), shift=30.0, seed=4, first=1000)
    good = _run(sm, "churn-hourly", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    bad = _run(sm, "churn-hourly", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")
    empty = _run(sm, "churn-hourly", "2026-11-21T00:00:00Z", "2026-11-21T01:00:00Z")
    assert (good["status"], bad["status"], empty["status"]) == ("Completed", "CompletedWithViolations", "Failed")

    listed = vic.list_monitoring_executions(MonitoringScheduleName="churn-hourly", SortBy="CreationTime",
                                            SortOrder="Ascending")["MonitoringExecutionSummaries"]
    assert [e["MonitoringExecutionStatus"] for e in listed] == ["Completed", "CompletedWithViolations", "Failed"]
    assert "no data captured" in listed[2]["FailureReason"] and "FailureReason" not in listed[0]
    # paged newest first while another run lands: the new one sorts before the page read, and nothing repeats
    first = vic.list_monitoring_executions(MonitoringScheduleName="churn-hourly", MaxResults=2)
    _run(sm, "churn-hourly", "2026-11-21T01:00:00Z", "2026-11-21T02:00:00Z")
    rest = vic.list_monitoring_executions(MonitoringScheduleName="churn-hourly", MaxResults=2,
                                          NextToken=first["NextToken"])
    paged = [e["ProcessingJobArn"] for e in first["MonitoringExecutionSummaries"] + rest[
        "MonitoringExecutionSummaries"]]
    assert sorted(paged) == sorted(e["ProcessingJobArn"] for e in listed) and "NextToken" not in rest
    assert all(e["MonitoringJobDefinitionName"] == "churn-dq" and e["EndpointName"] == "churn-prod" for e in listed)
    assert [e["MonitoringExecutionStatus"] for e in vic.list_monitoring_executions(
        EndpointName="churn-prod", StatusEquals="CompletedWithViolations")["MonitoringExecutionSummaries"]] == \
        ["CompletedWithViolations"]
    # each execution's processing job says where its reports are, under MonitoringOutputs' S3Uri
    violated = vic.describe_processing_job(ProcessingJobName=listed[1]["ProcessingJobArn"].rsplit("/", 1)[1])
    assert violated["ProcessingJobStatus"] == "Completed" and violated["ExitMessage"] == "CompletedWithViolations"
    assert violated["MonitoringScheduleArn"] == sched_arn
    folder = violated["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert folder.startswith(f"{reports}/churn-prod/churn-hourly/")
    found = _json_at(sm, f"{folder}/constraint_violations.json")["violations"]
    assert {v["feature_name"] for v in found if v["constraint_check_type"] == "baseline_drift_check"} >= {"income"}
    assert _json_at(sm, f"{folder}/statistics.json")["dataset"]["item_count"] == 300
    assert violated["Environment"]["baseline_constraints"].endswith("/constraints.json")
    assert violated["ProcessingInputs"][0]["S3Input"]["S3Uri"].endswith("/churn-prod/AllTraffic/")
    failed = vic.describe_processing_job(ProcessingJobName=listed[2]["ProcessingJobArn"].rsplit("/", 1)[1])
    assert failed["ProcessingJobStatus"] == "Failed" and "no data captured" in failed["FailureReason"]
    clean = vic.describe_processing_job(ProcessingJobName=listed[0]["ProcessingJobArn"].rsplit("/", 1)[1])
    ok_folder = clean["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert ok_folder != folder and _json_at(sm, f"{ok_folder}/constraint_violations.json")["violations"] == []

    d = vic.describe_monitoring_schedule(MonitoringScheduleName="churn-hourly")
    assert d["MonitoringScheduleStatus"] == "Scheduled" and d["EndpointName"] == "churn-prod"
    assert d["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"] == "churn-dq"
    assert d["LastMonitoringExecutionSummary"]["MonitoringExecutionStatus"] == "Failed"

    # alerts: one per check, in alert while the latest judged run breached it (1 of 1 by default)
    alerts = {a["MonitoringAlertName"]: a for a in
              vic.list_monitoring_alerts(MonitoringScheduleName="churn-hourly")["MonitoringAlertSummaries"]}
    assert alerts["baseline-drift-check"]["AlertStatus"] == "InAlert"
    assert alerts["completeness-check"]["AlertStatus"] == "OK"
    assert (alerts["baseline-drift-check"]["DatapointsToAlert"], alerts["baseline-drift-check"]["EvaluationPeriod"]) \
        == (1, 1)
    history = vic.list_monitoring_alert_history(MonitoringScheduleName="churn-hourly",
                                                MonitoringAlertName="baseline-drift-check")["MonitoringAlertHistory"]
    assert [h["AlertStatus"] for h in history] == ["InAlert"]
    # account-wide, every schedule is read a page at a time (it stopped at the first 1,000 schedules)
    everywhere = vic.list_monitoring_alert_history(MonitoringAlertName="baseline-drift-check")
    assert [h["MonitoringScheduleName"] for h in everywhere["MonitoringAlertHistory"]] == ["churn-hourly"]
    # an alert other kinds have: the data-quality schedule is skipped, not a ResourceNotFound
    assert vic.list_monitoring_alert_history(MonitoringAlertName="bias-drift-check").get(
        "MonitoringAlertHistory", []) == []
    with live_db.session_scope(write=False) as s:
        from monitor import schedules as monitor_schedules

        names = [x.name for x in monitor_schedules.every_schedule(s, chunk=1)]
        assert names == sorted(names) and "churn-hourly" in names and len(names) == len(set(names))
    with pytest.raises(ClientError) as exc:        # a viewer does not tune alerts
        vic.update_monitoring_alert(MonitoringScheduleName="churn-hourly", MonitoringAlertName="baseline-drift-check",
                                    DatapointsToAlert=2, EvaluationPeriod=2)
    assert _code(exc) == "AccessDeniedException"
    with pytest.raises(ClientError) as exc:
        pat.update_monitoring_alert(MonitoringScheduleName="churn-hourly", MonitoringAlertName="baseline-drift-check",
                                    DatapointsToAlert=3, EvaluationPeriod=2)
    assert _code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        pat.update_monitoring_alert(MonitoringScheduleName="churn-hourly", MonitoringAlertName="no-such-check",
                                    DatapointsToAlert=1, EvaluationPeriod=1)
    assert _code(exc) == "ResourceNotFound"
    updated = pat.update_monitoring_alert(MonitoringScheduleName="churn-hourly",
                                          MonitoringAlertName="baseline-drift-check", DatapointsToAlert=2,
                                          EvaluationPeriod=2)
    assert updated["MonitoringScheduleArn"] == sched_arn
    alerts = {a["MonitoringAlertName"]: a for a in
              vic.list_monitoring_alerts(MonitoringScheduleName="churn-hourly")["MonitoringAlertSummaries"]}
    assert alerts["baseline-drift-check"]["AlertStatus"] == "OK"        # 1 of the last 2 judged runs breached
    assert (alerts["baseline-drift-check"]["DatapointsToAlert"], alerts["baseline-drift-check"]["EvaluationPeriod"]) \
        == (2, 2)

    # schedules: listed, updated, stopped, started; visible natively; a one-time NOW schedule run by the scheduler
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _capture(sm, ingest, now - dt.timedelta(minutes=40), shift=0.0, seed=5, first=5000)
    pat.create_monitoring_schedule(MonitoringScheduleName="churn-once", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "NOW", "DataAnalysisStartTime": "-PT1H",
                           "DataAnalysisEndTime": "PT0S"},
        "MonitoringJobDefinitionName": "churn-dq", "MonitoringType": "DataQuality"})
    ran = jobs.tick(live_db, sm.store, dt.datetime.now(dt.UTC))
    assert len(ran) == 1
    once = vic.list_monitoring_executions(MonitoringScheduleName="churn-once")["MonitoringExecutionSummaries"]
    assert [e["MonitoringExecutionStatus"] for e in once] == ["Completed"]
    hour = once[0]["ScheduledTime"].astimezone(dt.UTC)
    assert _json_at(sm, f"{reports}/churn-prod/churn-once/{hour:%Y/%m/%d/%H}/constraint_violations.json") == \
        {"violations": []}                        # a scheduled run: exactly SageMaker's layout
    names = [s["MonitoringScheduleName"] for s in vic.list_monitoring_schedules(
        EndpointName="churn-prod", SortBy="Name", SortOrder="Ascending")["MonitoringScheduleSummaries"]]
    assert names == ["churn-hourly", "churn-once"]
    assert [s["MonitoringScheduleName"] for s in vic.list_monitoring_schedules(
        StatusEquals="Stopped")["MonitoringScheduleSummaries"]] == ["churn-once"]   # a NOW schedule stops after it
    pat.update_monitoring_schedule(MonitoringScheduleName="churn-hourly", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 */2 ? * * *)", "DataAnalysisStartTime": "-PT2H",
                           "DataAnalysisEndTime": "PT0S"},
        "MonitoringJobDefinitionName": "churn-dq", "MonitoringType": "DataQuality"})
    cfg = vic.describe_monitoring_schedule(MonitoringScheduleName="churn-hourly")["MonitoringScheduleConfig"]
    assert cfg["ScheduleConfig"] == {"ScheduleExpression": "cron(0 */2 ? * * *)", "DataAnalysisStartTime": "-PT2H",
                                     "DataAnalysisEndTime": "PT0S"}
    pat.stop_monitoring_schedule(MonitoringScheduleName="churn-hourly")
    assert httpx.get(f"{sm.url}/api/v1/monitoring-schedules/churn-hourly", headers=sm.headers["vic"],
                     timeout=60).json()["status"] == "Stopped"
    pat.start_monitoring_schedule(MonitoringScheduleName="churn-hourly")
    assert vic.describe_monitoring_schedule(MonitoringScheduleName="churn-hourly")["MonitoringScheduleStatus"] == \
        "Scheduled"

    # deleting: a definition in use is refused; schedules go, then the definition
    with pytest.raises(ClientError) as exc:
        pat.delete_data_quality_job_definition(JobDefinitionName="churn-dq")
    # its model declares no ConflictException: SageMaker's ValidationException
    assert _code(exc) == "ValidationException" and "churn-hourly" in str(exc.value)
    pat.delete_monitoring_schedule(MonitoringScheduleName="churn-hourly")
    pat.delete_monitoring_schedule(MonitoringScheduleName="churn-once")
    pat.delete_data_quality_job_definition(JobDefinitionName="churn-dq")
    with pytest.raises(ClientError) as exc:
        vic.describe_monitoring_schedule(MonitoringScheduleName="churn-hourly")
    assert _code(exc) == "ResourceNotFound"
    assert vic.list_processing_jobs(NameContains="churn")["ProcessingJobSummaries"][0]["ProcessingJobStatus"] == \
        "Completed"

    _all_checked(MONITORING_OPERATIONS)


def _all_checked(operations: set[str]) -> None:
    """Every one of ``operations`` that answers something was answered, and held to botocore's output shape."""
    model = botocore_model("sagemaker")
    answering = {op for op in operations if model.operation_model(op).output_shape is not None}
    missing = answering - _conform.seen  # type: ignore[attr-defined]
    assert not missing, f"operations whose answers were never checked against botocore's shapes: {missing}"


def _model_quality_request(sm: SageMaker) -> dict[str, Any]:
    """A ModelQuality job definition on churn-prod, its baseline the files ModelQualityMonitor.suggest_baseline
    writes (mlgov's engine computes the same format), its ground truth uploaded under mq/ground-truth."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    prob = np.clip(y * 0.8 + rng.normal(0.1, 0.05, 500), 0, 1)
    stats = quality.statistics("BinaryClassification", y, probability=prob, threshold=0.5)
    sm.store.put("mq/baseline/statistics.json", json.dumps(stats).encode())
    sm.store.put("mq/baseline/constraints.json", json.dumps(quality.suggest_constraints(stats)).encode())
    reports = sm.store.uri("mq/reports")
    return {
        "JobDefinitionName": "churn-mq", "RoleArn": ROLE, "JobResources": {"ClusterConfig": CLUSTER},
        "ModelQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": sm.store.uri("mq/baseline/constraints.json")}},
        "ModelQualityAppSpecification": {"ImageUri": ANALYZER, "ProblemType": "BinaryClassification"},
        "ModelQualityJobInput": {
            "EndpointInput": {"EndpointName": "churn-prod", "LocalPath": "/opt/ml/processing/input/endpoint",
                              "ProbabilityAttribute": "prediction", "ProbabilityThresholdAttribute": 0.5,
                              "StartTimeOffset": "-PT1H", "EndTimeOffset": "PT0S"},
            "GroundTruthS3Input": {"S3Uri": sm.store.uri("mq/ground-truth")}},
        "ModelQualityJobOutputConfig": {"MonitoringOutputs": [{"S3Output": {
            "S3Uri": reports, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]}}


def test_model_quality_job_definition_judges_captured_predictions_against_ground_truth(sm: SageMaker) -> None:
    _conform.seen.clear()  # type: ignore[attr-defined]
    pat, vic = sm.client("pat"), sm.client("vic")
    _endpoint(sm)
    request = _model_quality_request(sm)
    with pytest.raises(ClientError) as exc:
        pat.create_model_quality_job_definition(**{**request, "ModelQualityJobInput": {
            **request["ModelQualityJobInput"], "EndpointInput": {
                **request["ModelQualityJobInput"]["EndpointInput"], "ProbabilityAttribute": "score"}}})
    assert _code(exc) == "ValidationException" and "score" in str(exc.value)    # not captured by the endpoint
    arn = pat.create_model_quality_job_definition(**request)["JobDefinitionArn"]
    assert arn.endswith(":model-quality-job-definition/churn-mq")
    assert vic.describe_model_quality_job_definition(JobDefinitionName="churn-mq")["ModelQualityJobInput"] == \
        request["ModelQualityJobInput"]
    assert [d["MonitoringJobDefinitionName"] for d in vic.list_model_quality_job_definitions()[
        "JobDefinitionSummaries"]] == ["churn-mq"]
    assert vic.list_data_quality_job_definitions()["JobDefinitionSummaries"] == []
    pat.create_monitoring_schedule(MonitoringScheduleName="churn-quality", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "churn-mq",
        "MonitoringType": "ModelQuality"})

    ingest = _ingest_key(sm)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    _capture(sm, ingest, t0, shift=0.0, seed=8, first=0)        # every prediction is 0.7: class 1
    labels = [{"groundTruthData": {"data": str(i % 2), "encoding": "CSV"},
               "eventMetadata": {"eventId": f"inf-{i}"}, "eventVersion": "0"} for i in range(300)]
    r = httpx.post(f"{sm.url}/api/v1/endpoints/churn-prod/ground-truth", json=labels, headers=ingest, timeout=60)
    assert r.status_code == 200 and r.json()["accepted"] == 300, r.text
    ran = _run(sm, "churn-quality", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    assert ran["status"] == "CompletedWithViolations"
    [ex] = vic.list_monitoring_executions(MonitoringTypeEquals="ModelQuality")["MonitoringExecutionSummaries"]
    assert (ex["MonitoringExecutionStatus"], ex["MonitoringJobDefinitionName"]) == \
        ("CompletedWithViolations", "churn-mq")
    job = vic.describe_processing_job(ProcessingJobName=ex["ProcessingJobArn"].rsplit("/", 1)[1])
    folder = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    violations = _json_at(sm, f"{folder}/constraint_violations.json")["violations"]
    assert "accuracy" in {v["metric_name"] for v in violations}
    breached = {v["constraint_check_type"] for v in violations}
    assert "LessThanThreshold" in breached and breached <= {"LessThanThreshold", "GreaterThanThreshold"}
    assert _json_at(sm, f"{folder}/statistics.json")["binary_classification_metrics"]["accuracy"]["value"] == 0.5
    alerts = {a["MonitoringAlertName"]: a["AlertStatus"] for a in
              vic.list_monitoring_alerts(MonitoringScheduleName="churn-quality")["MonitoringAlertSummaries"]}
    # mlgov's label-free early checks are alerts too; every row of this window has its label, so they stay OK
    assert alerts == {check: "InAlert" if check in breached else "OK"
                      for check in ("LessThanThreshold", "GreaterThanThreshold", "EstimatedLessThanThreshold",
                                    "EstimatedGreaterThanThreshold")}
    pat.delete_monitoring_schedule(MonitoringScheduleName="churn-quality")
    pat.delete_model_quality_job_definition(JobDefinitionName="churn-mq")
    _all_checked(MODEL_QUALITY_OPERATIONS)


def test_a_model_quality_definition_may_name_its_baselining_job(sm: SageMaker) -> None:
    """create_monitoring_schedule after suggest_baseline on one ModelQualityMonitor sends BaseliningJobName beside
    ConstraintsResource, which was refused ("mlgov's analyzer runs data-quality baselining jobs") although mlgov runs
    model-quality ones. The job's constraints are read when no file is named; a job that failed, or a data-quality
    one, is refused."""
    import pandas as pd

    pat, vic = sm.client("pat"), sm.client("vic")
    _endpoint(sm)
    rng = np.random.default_rng(3)
    label = rng.integers(0, 2, 400)
    prob = np.clip(label * 0.4 + rng.random(400) * 0.6, 0, 1).round(4)
    data, _ = sm.model_file("mqjob/labelled.csv", pd.DataFrame({"label": label, "prob": prob}).to_csv(
        index=False).encode())
    env = {"analysis_type": "MODEL_QUALITY", "problem_type": "BinaryClassification", "ground_truth_attribute": "label",
           "probability_attribute": "prob"}
    for name, dataset in (("mq-job", data), ("mq-broken", sm.model_file("mqjob/empty.csv", b"")[0])):
        req = _baselining_request(name, dataset, sm.store.uri(f"mqjob/{name}"))
        pat.create_processing_job(**{**req, "Environment": {**req["Environment"], **env}})
    assert vic.describe_processing_job(ProcessingJobName="mq-broken")["ProcessingJobStatus"] == "Failed"
    pat.create_processing_job(**_baselining_request("dq-job", data, sm.store.uri("mqjob/dq-job")))   # data quality
    request = _model_quality_request(sm)
    for job, constraints in (("mq-job", False), ("mq-job", True)):
        cfg = {"BaseliningJobName": job, **({"ConstraintsResource": request["ModelQualityBaselineConfig"][
            "ConstraintsResource"]} if constraints else {})}
        name = f"mq-{'both' if constraints else 'job'}"
        pat.create_model_quality_job_definition(**{**request, "JobDefinitionName": name,
                                                   "ModelQualityBaselineConfig": cfg})
        assert vic.describe_model_quality_job_definition(JobDefinitionName=name)["ModelQualityBaselineConfig"] == cfg
    with pytest.raises(ClientError) as exc:
        pat.create_model_quality_job_definition(**{**request, "JobDefinitionName": "mq-failed",
                                                   "ModelQualityBaselineConfig": {"BaseliningJobName": "mq-broken"}})
    assert _code(exc) == "ValidationException" and "Failed" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_model_quality_job_definition(**{**request, "JobDefinitionName": "mq-dq",
                                                   "ModelQualityBaselineConfig": {"BaseliningJobName": "dq-job"}})
    assert _code(exc) == "ValidationException" and "profiled data quality" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_model_quality_job_definition(**{**request, "JobDefinitionName": "mq-none",
                                                   "ModelQualityBaselineConfig": {"BaseliningJobName": "never-ran"}})
    assert _code(exc) == "ValidationException" and "never-ran" in str(exc.value)   # the operation's model has no
    # ResourceNotFound


def _labels(first: int, count: int) -> bytes:
    """SageMaker ground-truth records as JSON Lines (labels 0, 1, 0, … by inference id)."""
    return b"".join(json.dumps({"groundTruthData": {"data": str(i % 2), "encoding": "CSV"},
                                "eventMetadata": {"eventId": f"inf-{i}"}, "eventVersion": "0"}).encode() + b"\n"
                    for i in range(first, first + count))


def test_ground_truth_uploaded_to_the_definitions_s3_input_is_read_by_every_run(sm: SageMaker, live_db: Database,
                                                                                monkeypatch: Any) -> None:
    """A SageMaker team's ground-truth upload (JSON Lines into GroundTruthS3Input's hour folders) went unread: mlgov
    took labels only through its own API. Each run, scheduled or manual, now stores the files written there since
    the schedule last listed the folder (its window's start the first time, or a manual run's earlier window), as
    uploads through the API are stored (files read twice are duplicates); a file with no usable label fails the run
    naming it. The folder must lie in the store, outside mlgov's own folders."""
    monkeypatch.setattr(definitions, "LABELS_SETTLE", dt.timedelta(0))   # the margin a next import re-reads
    pat = sm.client("pat")
    _endpoint(sm)
    request = _model_quality_request(sm)
    job_input = request["ModelQualityJobInput"]
    for uri, said in ((sm.store.uri("groundtruth/churn"), "groundtruth/"), ("s3://elsewhere/labels", "outside")):
        with pytest.raises(ClientError) as exc:
            pat.create_model_quality_job_definition(**{**request, "ModelQualityJobInput": {
                **job_input, "GroundTruthS3Input": {"S3Uri": uri}}})
        assert _code(exc) == "ValidationException" and said in str(exc.value), str(exc.value)
    # another publisher may not feed labels to pat's endpoint through a folder (the API's uploads need the ingest
    # role; a planted label would make the true one a duplicate)
    r = httpx.post(f"{sm.url}/api/v1/keys", headers=sm.headers["root"], timeout=60,
                   json={"name": "mallory", "role": "publisher", "aws_credentials": True}).json()
    sm.creds["mallory"] = (r["aws_access_key_id"], r["aws_secret_access_key"])
    with pytest.raises(ClientError) as exc:
        sm.client("mallory").create_model_quality_job_definition(**{
            **request, "JobDefinitionName": "planted",
            "ModelQualityJobInput": {**job_input, "GroundTruthS3Input": {"S3Uri": sm.store.uri("mal/gt")}}})
    assert _code(exc) == "AccessDeniedException" and "churn-prod" in str(exc.value), str(exc.value)
    pat.create_model_quality_job_definition(**request)
    pat.create_monitoring_schedule(MonitoringScheduleName="churn-quality", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "churn-mq",
        "MonitoringType": "ModelQuality"})
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    _capture(sm, _ingest_key(sm), t0, shift=0.0, seed=8, first=0)   # every prediction is 0.7: class 1
    sm.store.put("mq/ground-truth/2026/11/20/11/part-a.jsonl", _labels(0, 150))   # as a SageMaker user uploads
    sm.store.put("mq/ground-truth/2026/11/20/12/part-b.jsonl", _labels(150, 150))
    s3 = sm.store.client  # type: ignore[attr-defined]   # a "folder" an S3 console made: no labels, no failure
    s3.put_object(Bucket=sm.store.bucket, Key=f"{sm.store.prefix}/mq/ground-truth/2026/", Body=b"")  # type: ignore[attr-defined]

    # a scheduled run (the scheduler's path) reads both files, then judges the window
    with live_db.session_scope(write=False) as s:
        from monitor.orm import GroundTruth, Schedule
        sid = s.scalar(select(Schedule.id).where(Schedule.name == "churn-quality"))
    ex_id = jobs.claim(live_db, sid, t0 + dt.timedelta(hours=1), t0, t0 + dt.timedelta(hours=1), "schedule")
    assert ex_id is not None and jobs.run_claimed(live_db, sm.store, sid, ex_id)
    ex = httpx.get(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/executions", headers=sm.headers["pat"],
                   timeout=60).json()["items"][0]
    assert ex["status"] == "CompletedWithViolations", ex
    stats = httpx.get(f"{sm.url}/api/v1/analyses/{ex['analysis_id']}/statistics.json", headers=sm.headers["pat"],
                      timeout=60).json()
    assert stats["binary_classification_metrics"]["accuracy"]["value"] == 0.5
    with live_db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(GroundTruth)) == 300

    # a manual run reads them again (duplicates: nothing changes), and a file with no usable label is named
    assert _run(sm, "churn-quality", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")["status"] == \
        "CompletedWithViolations"
    time.sleep(1.1)   # S3 dates an object to the second: after the last listing's second
    sm.store.put("mq/ground-truth/2026/11/20/13/broken.jsonl", b'{"eventMetadata": {}}\n')
    sm.store.put("mq/ground-truth/2026/11/20/14/later.jsonl", _labels(300, 10))   # not hidden by the broken one
    ex_id = jobs.claim(live_db, sid, t0 + dt.timedelta(hours=2), t0, t0 + dt.timedelta(hours=1), "schedule")
    assert ex_id is not None and jobs.run_claimed(live_db, sm.store, sid, ex_id)
    [failed] = [e for e in httpx.get(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/executions",
                                     headers=sm.headers["pat"], timeout=60).json()["items"] if e["id"] == ex_id]
    assert failed["status"] == "Failed" and "broken.jsonl" in failed["failure_reason"], failed
    # a manual run of an earlier window (a backfill) reads the folder from that window's start
    r = httpx.post(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/run", headers=sm.headers["pat"], timeout=60,
                   json={"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 422 and "broken.jsonl" in r.json()["detail"], r.text
    with live_db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(GroundTruth)) == 310

    # A run reads from where the schedule's last listing began (less LABELS_SETTLE, 0 here), not from its own
    # window's start: a file written while the schedule was stopped, before its next window began, was never read;
    # the files read before are not read again. A manual run's window is checked before any label is read.
    read: list[str] = []
    real_read = monitor_service.read_label_file
    monkeypatch.setattr(monitor_service, "read_label_file",
                        lambda s, store, ep, key: (read.append(key.rsplit("/", 1)[1]), real_read(s, store, ep, key))[1])
    time.sleep(1.1)   # S3 dates an object to the second: after the last listing's second
    httpx.post(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/stop", headers=sm.headers["pat"], timeout=60)
    sm.store.put("mq/ground-truth/2026/11/20/15/while-stopped.jsonl", _labels(310, 5))
    r = httpx.post(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/run", headers=sm.headers["pat"], timeout=60,
                   json={"start": "2026-11-20T12:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 422 and "end is not after start" in r.json()["detail"], r.text
    with live_db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(GroundTruth)) == 310   # nothing read for that window
    httpx.post(f"{sm.url}/api/v1/monitoring-schedules/churn-quality/start", headers=sm.headers["pat"], timeout=60)
    began = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)   # a window beginning after the upload
    ex_id = jobs.claim(live_db, sid, began + dt.timedelta(hours=1), began, began + dt.timedelta(hours=1), "schedule")
    assert ex_id is not None and jobs.run_claimed(live_db, sm.store, sid, ex_id)
    assert read == ["while-stopped.jsonl"]
    with live_db.session_scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(GroundTruth)) == 315
    # a scheduled window that began long before (a delayed or long one) reads from there too, not its whole span
    time.sleep(1.1)
    sm.store.put("mq/ground-truth/2026/11/20/16/later-still.jsonl", _labels(315, 5))
    ex_id = jobs.claim(live_db, sid, t0 + dt.timedelta(hours=3), t0, t0 + dt.timedelta(hours=1), "schedule")
    assert ex_id is not None and jobs.run_claimed(live_db, sm.store, sid, ex_id)
    assert read == ["while-stopped.jsonl", "later-still.jsonl"]
    # where the next import starts never moves back, and a run of a folder the schedule no longer reads leaves it
    with live_db.session_scope(write=False) as s:
        kept = s.get(Schedule, sid)
        assert kept is not None and kept.labels_folder is not None and kept.labels_read_through is not None
        folder, through = kept.labels_folder, kept.labels_read_through
    now = dt.datetime.now(dt.UTC)
    for stale in (definitions.LabelImport(sid, "churn-prod", folder, t0, through - dt.timedelta(seconds=5)),
                  definitions.LabelImport(sid, "churn-prod", "mq/elsewhere", t0, now)):
        with live_db.session_scope() as s:
            definitions.labels_imported(s, sm.store, stale)
        with live_db.session_scope(write=False) as s:
            kept = s.get(Schedule, sid)
            assert kept is not None and (kept.labels_folder, kept.labels_read_through) == (folder, through)


def test_a_baselining_job_that_cannot_profile_its_data_fails_with_the_reason(sm: SageMaker) -> None:
    pat, vic = sm.client("pat"), sm.client("vic")
    empty, _ = sm.model_file("datasets/empty.csv", b"")
    pat.create_processing_job(**_baselining_request("empty-baseline", empty, sm.store.uri("out/empty")))
    job = vic.describe_processing_job(ProcessingJobName="empty-baseline")
    assert job["ProcessingJobStatus"] == "Failed" and "empty" in job["FailureReason"].lower()
    assert [j["ProcessingJobStatus"] for j in vic.list_processing_jobs(StatusEquals="Failed")[
        "ProcessingJobSummaries"]] == ["Failed"]
    data, _ = sm.model_file("datasets/a.csv", csv_bytes(frame(50)))
    pat.create_processing_job(**_baselining_request("a-baseline", data, sm.store.uri("out/a")))

    def names(**sort: str) -> list[str]:
        return [j["ProcessingJobName"] for j in vic.list_processing_jobs(**sort)["ProcessingJobSummaries"]]

    assert names() == ["a-baseline", "empty-baseline"]                             # newest first
    assert names(SortBy="Name", SortOrder="Descending") == ["empty-baseline", "a-baseline"]
    assert names(SortBy="Status", SortOrder="Ascending") == ["a-baseline", "empty-baseline"]   # Completed, Failed
    with pytest.raises(ClientError) as exc:         # a failed job is no baseline
        pat.create_data_quality_job_definition(**_definition("from-failed", "churn-prod", sm.store.uri("r"), {
            "BaseliningJobName": "empty-baseline"}))
    assert _code(exc) == "ValidationException" and "Failed" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        vic.describe_processing_job(ProcessingJobName="never-ran")
    assert _code(exc) == "ResourceNotFound"


def test_a_failure_reason_is_answered_within_sagemakers_length(sm: SageMaker) -> None:
    """A reason quoting a long dataset URI was answered longer than SageMaker's FailureReason may be (1,024)."""
    pat, vic = sm.client("pat"), sm.client("vic")
    prefix = sm.store.uri("datasets") + "/"
    long_uri = prefix + "/".join(["d" * 200] * 5)[:1020 - len(prefix)] + ".csv"
    experiment = {"ExperimentName": "churn", "TrialName": "t1", "TrialComponentDisplayName": "baseline"}
    pat.create_processing_job(**_baselining_request("long-missing", long_uri, sm.store.uri("out/long")),
                              ExperimentConfig=experiment)
    described = vic.describe_processing_job(ProcessingJobName="long-missing")
    assert described["ExperimentConfig"] == experiment   # kept and answered (it was stripped)
    reason = described["FailureReason"]
    assert len(reason) == 1024 and reason.endswith("…") and "d" * 100 in reason
    listed = vic.list_processing_jobs(NameContains="long-missing")["ProcessingJobSummaries"]
    assert [j["FailureReason"] for j in listed] == [reason]


def test_a_baselining_job_holds_no_write_turn_while_it_profiles(sm: SageMaker, monkeypatch: Any) -> None:
    """CreateProcessingJob profiled its dataset while holding the write turn, so every other write (capture,
    registrations) waited for the whole baselining job. It profiles on a read session now and writes the job's row
    after: a registration made meanwhile goes through."""
    from monitor import service

    pat = sm.client("pat")
    real, made = service.create_baseline, []

    def profiling(*args: Any, **kwargs: Any) -> Any:
        made.append(pat.create_model_package_group(ModelPackageGroupName="made-meanwhile")["ModelPackageGroupArn"])
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "create_baseline", profiling)
    data, _ = sm.model_file("datasets/m.csv", csv_bytes(frame(50)))
    pat.create_processing_job(**_baselining_request("meanwhile", data, sm.store.uri("out/m")))
    assert len(made) == 1
    job = sm.client("vic").describe_processing_job(ProcessingJobName="meanwhile")
    assert job["ProcessingJobStatus"] == "Completed" and job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    with pytest.raises(ClientError) as exc:         # the name is taken once the job is on the record
        pat.create_processing_job(**_baselining_request("meanwhile", data, sm.store.uri("out/m")))
    assert "already exists" in str(exc.value)


def test_a_baselining_job_refused_its_name_leaves_the_recorded_jobs_output(live_db: Any, tmp_path: Any) -> None:
    """A stranger's review: two jobs of one name computing at once both wrote statistics.json to the output URI
    while computing; the second, refused its name when it recorded (409), had replaced the first one's files. The
    output is written once the name is the job's own."""
    from mlgov.auth import SYSTEM
    from mlgov.errors import Conflict
    from mlgov.storage import open_store
    from monitor import definitions
    from tests.conftest import make_settings

    store = open_store(make_settings(tmp_path))
    store.put("datasets/a.csv", csv_bytes(frame(50, seed=1)), "text/csv")
    store.put("datasets/b.csv", csv_bytes(frame(80, seed=2)), "text/csv")

    def job(data: str) -> Any:
        with live_db.session_scope(write=False) as r:
            return definitions.run_baselining_job(r, store, name="j", dataset_uri=store.uri(data), fmt="csv",
                                                  header=True, output_uri=store.uri("out/j"), spec={}, actor=SYSTEM)

    first, second = job("datasets/a.csv"), job("datasets/b.csv")   # both computed while the name was free
    with live_db.session_scope() as w:
        assert first(w).status == "Completed"
    with pytest.raises(Conflict), live_db.session_scope() as w:
        second(w)
    assert json.loads(store.get("out/j/statistics.json"))["dataset"]["item_count"] == 50


def test_only_the_analyzer_image_and_what_mlgov_can_honour(sm: SageMaker) -> None:
    pat = sm.client("pat")
    data, _ = sm.model_file("datasets/d.csv", csv_bytes(frame(50)))
    out = sm.store.uri("out/x")
    assert ANALYZER in ANALYZER_IMAGES and len(ANALYZER_IMAGES) >= 28
    for image in ["123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-processor:1",
                  f"{ANALYZER}:latest-evil", f"evil.example.com/{ANALYZER}", ANALYZER.replace("468650794304", "1" * 12),
                  "sagemaker-model-monitor-analyzer"]:
        with pytest.raises(ClientError) as exc:
            pat.create_processing_job(**_baselining_request("x", data, out, image=image))
        assert _code(exc) == "ValidationException" and image in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_processing_job(**_baselining_request("x", data, out, dataset_format={"json": {"lines": True}}))
    assert _code(exc) == "ValidationException" and "json" in str(exc.value)
    with pytest.raises(ClientError) as exc:        # the input must lie in mlgov's object store
        pat.create_processing_job(**_baselining_request("x", "s3://someone-elses-bucket/data.csv", out))
    assert _code(exc) == "ValidationException" and "outside mlgov's object store" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_processing_job(**_baselining_request("execution-abc", data, out))
    assert _code(exc) == "ValidationException"
    # an operator's trial: an output under baselines/<another user's baseline> rewrote its statistics.json and
    # constraints.json with no audit event of that baseline; every folder mlgov writes itself is refused
    for folder in ("baselines/0123456789abcdef0123456789abcdef", "analyses/x", "audit/checkpoints", "capture"):
        with pytest.raises(ClientError) as exc:
            pat.create_processing_job(**_baselining_request("x", data, sm.store.uri(folder)))
        assert _code(exc) == "ValidationException" and f"lies in {folder.split('/')[0]}/" in str(exc.value)
    # an SDK user's trial: prefix//baselines/<id> passed the check, and SeaweedFS wrote the job's files into the
    # baseline (a store that normalises paths reads it as baselines/<id>); '.' and '..' segments likewise
    base_uri = sm.store.uri("baselines/0123456789abcdef0123456789abcdef")
    root = base_uri[:base_uri.index("baselines/")]
    for sneaky, word in [(root + "/baselines/x", "empty path segment"), (root + "./audit/x", "'.' path segment"),
                         (root + "mine/../analyses/x", "'..' path segment")]:
        with pytest.raises(ClientError) as exc:
            pat.create_processing_job(**_baselining_request("x", data, sneaky))
        assert _code(exc) == "ValidationException" and word in str(exc.value), str(exc.value)
    with pytest.raises(ClientError) as exc:       # SageMakerClarifyProcessor's job: say where Clarify lives here
        pat.create_processing_job(**_baselining_request("x", data, out, image=CLARIFY))
    assert _code(exc) == "ValidationException" and "/api/v1/clarify/bias" in str(exc.value), str(exc.value)
    assert "CreateModelBiasJobDefinition" in str(exc.value)
    request = _baselining_request("x", data, out)
    request["Environment"]["record_preprocessor_script"] = "/opt/ml/processing/code/pre.py"
    with pytest.raises(ClientError) as exc:
        pat.create_processing_job(**request)
    assert _code(exc) == "ValidationException" and "record_preprocessor_script" in str(exc.value)
    assert sm.client("vic").list_processing_jobs()["ProcessingJobSummaries"] == []      # nothing ran

    _endpoint(sm)
    pat.create_processing_job(**_baselining_request("b", data, out))
    with pytest.raises(ClientError) as exc:
        pat.create_processing_job(**_baselining_request("b", data, out))
    assert _code(exc) == "ResourceInUse"        # as botocore's model declares for CreateProcessingJob
    good = {"BaseliningJobName": "b"}
    for bad, word in [(_definition("d1", "churn-prod", out, good, image="my/image"), "my/image"),
                      (_definition("d2", "no-such-endpoint", out, good), "no-such-endpoint"),
                      (_definition("d3", "churn-prod", "s3://elsewhere/reports", good), "outside"),
                      (_definition("d4", "churn-prod", out, {}), "baseline"),
                      (_definition("d5", "churn-prod", sm.store.uri("baselines/x"), good), "mlgov keeps its own"),
                      (_definition("d6", "churn-prod", root + "/audit/x", good), "empty path segment"),
                      (_definition("d7", "churn-prod", root + "u/../audit/x", good), "'..' path segment")]:
        with pytest.raises(ClientError) as exc:
            pat.create_data_quality_job_definition(**bad)
        assert _code(exc) in ("ValidationException", "ResourceNotFound") and word in str(exc.value), str(exc.value)
    scripted = _definition("d5", "churn-prod", out, good)
    scripted["DataQualityAppSpecification"]["RecordPreprocessorSourceUri"] = "s3://b/pre.py"
    with pytest.raises(ClientError) as exc:
        pat.create_data_quality_job_definition(**scripted)
    assert _code(exc) == "ValidationException" and "RecordPreprocessorSourceUri" in str(exc.value)
    pat.create_data_quality_job_definition(**_definition("ok", "churn-prod", out, good))
    with pytest.raises(ClientError) as exc:        # a schedule names its job definition; no inline definition
        pat.create_monitoring_schedule(MonitoringScheduleName="s", MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
            "MonitoringJobDefinition": {
                "MonitoringInputs": [{"EndpointInput": {"EndpointName": "churn-prod", "LocalPath": "/x"}}],
                "MonitoringOutputConfig": {"MonitoringOutputs": [{"S3Output": {"S3Uri": out, "LocalPath": "/y"}}]},
                "MonitoringResources": {"ClusterConfig": CLUSTER},
                "MonitoringAppSpecification": {"ImageUri": ANALYZER}, "RoleArn": ROLE}})
    assert _code(exc) == "ValidationException" and "MonitoringJobDefinition" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_monitoring_schedule(MonitoringScheduleName="s", MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "rate(5 minutes)"}, "MonitoringJobDefinitionName": "ok",
            "MonitoringType": "DataQuality"})
    assert _code(exc) == "ValidationException" and "rate(5 minutes)" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_monitoring_schedule(MonitoringScheduleName="s", MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "ok",
            "MonitoringType": "ModelQuality"})
    assert _code(exc) == "ValidationException"


def test_viewers_and_approvers_cannot_change_monitors(sm: SageMaker) -> None:
    vic, ann = sm.client("vic"), sm.client("ann")
    calls = [
        lambda c: c.create_processing_job(**_baselining_request("x", sm.store.uri("d.csv"), sm.store.uri("o"))),
        lambda c: c.create_data_quality_job_definition(**_definition("x", "e", sm.store.uri("o"),
                                                                     {"BaseliningJobName": "b"})),
        lambda c: c.create_monitoring_schedule(MonitoringScheduleName="x", MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "NOW"}, "MonitoringJobDefinitionName": "x"}),
        lambda c: c.stop_monitoring_schedule(MonitoringScheduleName="x"),
        lambda c: c.delete_monitoring_schedule(MonitoringScheduleName="x"),
        lambda c: c.delete_data_quality_job_definition(JobDefinitionName="x"),
        lambda c: c.create_model_explainability_job_definition(**_explainability_request(sm, "x", "e")),
        lambda c: c.delete_model_explainability_job_definition(JobDefinitionName="x"),
        lambda c: c.stop_processing_job(ProcessingJobName="x"),
        lambda c: c.stop_processing_job(ProcessingJobName="execution-x"),
    ]
    for client in (vic, ann):           # viewers and approvers read; publishers and admins change monitors
        for call in calls:
            with pytest.raises(ClientError) as exc:
                call(client)
            assert _code(exc) == "AccessDeniedException"
    assert vic.list_monitoring_schedules()["MonitoringScheduleSummaries"] == []
    assert vic.list_data_quality_job_definitions()["JobDefinitionSummaries"] == []
    assert vic.list_model_explainability_job_definitions()["JobDefinitionSummaries"] == []
    assert vic.list_monitoring_executions()["MonitoringExecutionSummaries"] == []
    assert vic.list_monitoring_alert_history().get("MonitoringAlertHistory", []) == []


def test_the_served_monitoring_operations() -> None:
    """The list the README's table and the conformance check above use is what monitor registers."""
    api = AwsService(botocore_model("sagemaker"), account="000000000000", lookup=lambda session, akid: None)
    monitor_sagemaker.register(api)
    assert set(api.served()) == MONITORING_OPERATIONS | MODEL_QUALITY_OPERATIONS
    clarify_sagemaker.register(api)      # Clarify adds its kinds' job definitions (monitor never imports it)
    assert set(api.served()) == MONITORING_OPERATIONS | MODEL_QUALITY_OPERATIONS | MODEL_BIAS_OPERATIONS | \
        MODEL_EXPLAINABILITY_OPERATIONS
    reads = ("Describe", "List")
    assert all(op.write == (not name.startswith(reads)) for name, op in api.operations.items())


CLARIFY = "131013547314.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-clarify-processing:1.0"
MODEL_BIAS_OPERATIONS = {"CreateModelBiasJobDefinition", "DescribeModelBiasJobDefinition",
                         "ListModelBiasJobDefinitions", "DeleteModelBiasJobDefinition"}
MODEL_EXPLAINABILITY_OPERATIONS = {"CreateModelExplainabilityJobDefinition", "DescribeModelExplainabilityJobDefinition",
                                   "ListModelExplainabilityJobDefinitions", "DeleteModelExplainabilityJobDefinition"}


def test_model_bias_job_definition_from_clarify_files(sm: SageMaker) -> None:
    from clarify.metrics.analysis import analyze

    _conform.seen.clear()  # type: ignore[attr-defined]
    pat, vic = sm.client("pat"), sm.client("vic")
    _endpoint(sm)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "probability_threshold": 0.5, "facet": [{"name_or_index": "state", "value_or_threshold": ["CA"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL", "DI"]}}}
    reference = frame(1500, seed=11)
    reference["label"] = np.random.default_rng(12).integers(0, 2, 1500)
    reference["prediction"] = reference["label"]            # a fair model on the reference data
    sm.store.put("bias/analysis_config.json", json.dumps(cfg).encode())
    sm.store.put("bias/baseline/analysis.json", json.dumps(analyze(reference, cfg)).encode())
    request = {
        "JobDefinitionName": "churn-bias", "RoleArn": ROLE, "JobResources": {"ClusterConfig": CLUSTER},
        "ModelBiasBaselineConfig": {"ConstraintsResource": {"S3Uri": sm.store.uri("bias/baseline/analysis.json")}},
        "ModelBiasAppSpecification": {"ImageUri": CLARIFY, "ConfigUri": sm.store.uri("bias/analysis_config.json")},
        "ModelBiasJobInput": {
            "EndpointInput": {"EndpointName": "churn-prod", "LocalPath": "/opt/ml/processing/input/endpoint"},
            "GroundTruthS3Input": {"S3Uri": sm.store.uri("bias/ground-truth")}},
        "ModelBiasJobOutputConfig": {"MonitoringOutputs": [{"S3Output": {
            "S3Uri": sm.store.uri("bias/reports"), "LocalPath": "/opt/ml/processing/output"}}]}}
    with pytest.raises(ClientError) as exc:         # the analyzer's image is not Clarify's
        pat.create_model_bias_job_definition(**{**request, "ModelBiasAppSpecification": {
            **request["ModelBiasAppSpecification"], "ImageUri": ANALYZER}})
    assert _code(exc) == "ValidationException" and ANALYZER in str(exc.value)
    with pytest.raises(ClientError) as exc:         # a baseline that is not a Clarify bias analysis
        pat.create_model_bias_job_definition(**{**request, "ModelBiasBaselineConfig": {
            "ConstraintsResource": {"S3Uri": sm.store.uri("bias/analysis_config.json")}}})
    assert _code(exc) == "ValidationException" and "post_training_bias_metrics" in str(exc.value)
    arn = pat.create_model_bias_job_definition(**request)["JobDefinitionArn"]
    assert arn.endswith(":model-bias-job-definition/churn-bias")
    assert vic.describe_model_bias_job_definition(JobDefinitionName="churn-bias")["ModelBiasAppSpecification"] == \
        request["ModelBiasAppSpecification"]
    assert [d["EndpointName"] for d in vic.list_model_bias_job_definitions()["JobDefinitionSummaries"]] == \
        ["churn-prod"]
    pat.create_monitoring_schedule(MonitoringScheduleName="churn-bias-hourly", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "churn-bias",
        "MonitoringType": "ModelBias"})

    # the endpoint now disfavours CA: its predictions there are negative
    ingest = _ingest_key(sm)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    rows = frame(300, seed=13)
    recs = []
    for i in range(300):
        rec = record(i, t0 + dt.timedelta(seconds=5 * i), tuple(rows.iloc[i]))
        rec["captureData"]["endpointOutput"]["data"] = "0.1" if rows.iloc[i]["state"] == "CA" else "0.9"
        recs.append(rec)
    assert httpx.post(f"{sm.url}/api/v1/endpoints/churn-prod/capture", json=recs, headers=ingest,
                      timeout=60).json()["accepted"] == 300
    labels = [{"groundTruthData": {"data": str(i % 2), "encoding": "CSV"}, "eventMetadata": {"eventId": f"inf-{i}"},
               "eventVersion": "0"} for i in range(300)]
    assert httpx.post(f"{sm.url}/api/v1/endpoints/churn-prod/ground-truth", json=labels,
                      headers=ingest, timeout=60).json()["accepted"] == 300
    assert _run(sm, "churn-bias-hourly", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")["status"] == \
        "CompletedWithViolations"
    [ex] = vic.list_monitoring_executions(MonitoringTypeEquals="ModelBias")["MonitoringExecutionSummaries"]
    job = vic.describe_processing_job(ProcessingJobName=ex["ProcessingJobArn"].rsplit("/", 1)[1])
    assert job["AppSpecification"]["ImageUri"] == CLARIFY
    folder = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    found = _json_at(sm, f"{folder}/constraint_violations.json")["violations"]
    assert {v["constraint_check_type"] for v in found} == {"bias_drift_check"}
    assert "DPPL" in {v["metric_name"] for v in found}
    alerts = vic.list_monitoring_alerts(MonitoringScheduleName="churn-bias-hourly")["MonitoringAlertSummaries"]
    assert [(a["MonitoringAlertName"], a["AlertStatus"]) for a in alerts] == [("bias-drift-check", "InAlert")]
    pat.delete_monitoring_schedule(MonitoringScheduleName="churn-bias-hourly")
    pat.delete_model_bias_job_definition(JobDefinitionName="churn-bias")
    _all_checked(MODEL_BIAS_OPERATIONS)


def _explainability_request(sm: SageMaker, name: str, endpoint: str, **app: Any) -> dict[str, Any]:
    """CreateModelExplainabilityJobDefinition as ModelExplainabilityMonitor.create_monitoring_schedule builds it."""
    return {
        "JobDefinitionName": name, "RoleArn": ROLE, "JobResources": {"ClusterConfig": CLUSTER},
        "ModelExplainabilityBaselineConfig": {"ConstraintsResource": {
            "S3Uri": sm.store.uri("explain/baseline/analysis.json")}},
        "ModelExplainabilityAppSpecification": {"ImageUri": CLARIFY, "ConfigUri": sm.store.uri(
            "explain/analysis_config.json"), "Environment": {"model_format": "skops"}, **app},
        "ModelExplainabilityJobInput": {"EndpointInput": {
            "EndpointName": endpoint, "LocalPath": "/opt/ml/processing/input/endpoint"}},
        "ModelExplainabilityJobOutputConfig": {"MonitoringOutputs": [{"S3Output": {
            "S3Uri": sm.store.uri("explain/reports"), "LocalPath": "/opt/ml/processing/output"}}]}}


def test_model_explainability_job_definition_judges_attribution_drift(sm: SageMaker) -> None:
    import skops.io as sio
    from sklearn.ensemble import GradientBoostingClassifier

    from clarify.metrics.shap_values import analysis_json, explain

    _conform.seen.clear()  # type: ignore[attr-defined]
    pat, vic = sm.client("pat"), sm.client("vic")
    # the endpoint's registered version is the explained model (SageMaker's predictor.model_name)
    rng = np.random.default_rng(21)
    ref = frame(800, seed=21)[["age", "income"]]
    labels = ((ref.income - 50) / 10 + (ref.age - 54) / 40 + rng.normal(0, 0.3, 800) > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(ref, labels)   # income first, then age
    pat.create_model_package_group(ModelPackageGroupName="credit")
    pat.create_model_package(**_package(sm, "credit", sio.dumps(model)))
    r = httpx.post(f"{sm.url}/api/v1/endpoints", headers=sm.headers["pat"], json={
        "name": "credit-prod", "model_group": "credit", "model_version": 1,
        "schema": {"features": FEATURES, "prediction": {"name": "prediction"}}}, timeout=60)
    assert r.status_code == 201, r.text
    # Clarify's explainability baseline files: analysis.json (global SHAP) and the analysis config
    config = {"headers": ["age", "income", "label"], "label": "label", "predictor": {
        "model_name": "credit-model", "instance_type": "ml.m5.xlarge", "initial_instance_count": 1},
        "methods": {"shap": {"baseline": [[50, 50.0]], "num_samples": 100, "agg_method": "mean_abs"}}}
    sm.store.put("explain/analysis_config.json", json.dumps(config).encode())
    sm.store.put("explain/baseline/analysis.json", json.dumps(analysis_json(explain(model, ref)), default=float)
                 .encode())
    request = _explainability_request(sm, "credit-explain", "credit-prod")
    refusals = [
        ({"ImageUri": ANALYZER}, ANALYZER),                               # not Clarify's image
        ({"Environment": {"model_format": "pmml"}}, "pmml"),              # a format mlgov cannot load
        ({"Environment": {"model_format": "xgboost"}}, "xgboost"),        # the artifact is not of that format
        ({"ConfigUri": sm.store.uri("explain/baseline/analysis.json")}, "methods.shap")]
    for app, word in refusals:
        with pytest.raises(ClientError) as exc:
            pat.create_model_explainability_job_definition(**_explainability_request(sm, "bad", "credit-prod", **app))
        assert _code(exc) == "ValidationException" and word in str(exc.value), str(exc.value)
    with pytest.raises(ClientError) as exc:       # a baseline that is not an explainability analysis
        pat.create_model_explainability_job_definition(**{**request, "ModelExplainabilityBaselineConfig": {
            "ConstraintsResource": {"S3Uri": sm.store.uri("explain/analysis_config.json")}}})
    assert _code(exc) == "ValidationException" and "global_shap_values" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        pat.create_model_explainability_job_definition(**_explainability_request(sm, "bad", "no-such-endpoint"))
    assert _code(exc) == "ValidationException" and "no-such-endpoint" in str(exc.value)
    arn = pat.create_model_explainability_job_definition(**request)["JobDefinitionArn"]
    assert arn.endswith(":model-explainability-job-definition/credit-explain")
    described = vic.describe_model_explainability_job_definition(JobDefinitionName="credit-explain")
    assert described["ModelExplainabilityAppSpecification"] == request["ModelExplainabilityAppSpecification"]
    assert described["ModelExplainabilityBaselineConfig"] == request["ModelExplainabilityBaselineConfig"]
    assert [d["MonitoringJobDefinitionName"] for d in vic.list_model_explainability_job_definitions(
        EndpointName="credit-prod")["JobDefinitionSummaries"]] == ["credit-explain"]
    assert vic.list_model_bias_job_definitions()["JobDefinitionSummaries"] == []
    pat.create_monitoring_schedule(MonitoringScheduleName="credit-attr", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
        "MonitoringJobDefinitionName": "credit-explain", "MonitoringType": "ModelExplainability"})
    with httpx.Client(base_url=sm.url, headers=sm.headers["vic"], timeout=60) as native:
        sched = native.get("/api/v1/monitoring-schedules/credit-attr").json()
        base = native.get(f"/api/v1/baselines/{sched['baseline_id']}").json()
    assert (sched["type"], base["kind"], base["source"]) == ("ModelExplainability", "ModelExplainability",
                                                              "imported")

    # traffic like the reference, then traffic whose income no longer varies: the attributions reorder
    ingest = _ingest_key(sm)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    for hour, df in [(0, frame(300, seed=22)), (1, frame(300, seed=23).assign(income=50.0))]:
        start = t0 + dt.timedelta(hours=hour)
        recs = [record(1000 * hour + i, start + dt.timedelta(seconds=5 * i), tuple(df.iloc[i])) for i in range(300)]
        assert httpx.post(f"{sm.url}/api/v1/endpoints/credit-prod/capture", json=recs, headers=ingest,
                          timeout=60).json()["accepted"] == 300
    assert _run(sm, "credit-attr", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")["status"] == "Completed"
    assert _run(sm, "credit-attr", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z")["status"] == \
        "CompletedWithViolations"
    listed = vic.list_monitoring_executions(MonitoringTypeEquals="ModelExplainability", SortBy="ScheduledTime",
                                            SortOrder="Ascending")["MonitoringExecutionSummaries"]
    assert [e["MonitoringExecutionStatus"] for e in listed] == ["Completed", "CompletedWithViolations"]
    folders = []
    for ex in listed:
        job = vic.describe_processing_job(ProcessingJobName=ex["ProcessingJobArn"].rsplit("/", 1)[1])
        assert job["AppSpecification"]["ImageUri"] == CLARIFY and job["ProcessingJobStatus"] == "Completed"
        folders.append(job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"])
    assert all(f.startswith(sm.store.uri("explain/reports/credit-prod/credit-attr") + "/") for f in folders)
    # SageMaker's file names in MonitoringOutputs: constraint_violations.json and Clarify's analysis.json
    assert _json_at(sm, f"{folders[0]}/constraint_violations.json") == {"violations": []}
    [violation] = _json_at(sm, f"{folders[1]}/constraint_violations.json")["violations"]
    assert (violation["constraint_check_type"], violation["metric_name"]) == ("feature_attribution_drift_check", "shap")
    shap = _json_at(sm, f"{folders[1]}/analysis.json")["explanations"]["kernel_shap"]["label0"]
    assert set(shap["global_shap_values"]) == {"age", "income"}
    alerts = vic.list_monitoring_alerts(MonitoringScheduleName="credit-attr")["MonitoringAlertSummaries"]
    assert [(a["MonitoringAlertName"], a["AlertStatus"]) for a in alerts] == \
        [("feature-attribution-drift-check", "InAlert")]
    with pytest.raises(ClientError) as exc:
        pat.delete_model_explainability_job_definition(JobDefinitionName="credit-explain")
    assert _code(exc) == "ValidationException"
    pat.delete_monitoring_schedule(MonitoringScheduleName="credit-attr")
    pat.delete_model_explainability_job_definition(JobDefinitionName="credit-explain")
    with pytest.raises(ClientError) as exc:
        vic.describe_model_explainability_job_definition(JobDefinitionName="credit-explain")
    assert _code(exc) == "ResourceNotFound"
    _all_checked(MODEL_EXPLAINABILITY_OPERATIONS)


def test_stop_processing_job(sm: SageMaker, live_db: Database) -> None:
    """An execution's job stops while its run has not started (InProgress → Stopped, and no runner takes it);
    an ended job, a baselining job (it runs within CreateProcessingJob) or a stopped one answers
    ValidationException."""
    from sqlalchemy import select

    from monitor.orm import Schedule

    pat, vic = sm.client("pat"), sm.client("vic")
    _endpoint(sm)
    data, _ = sm.model_file("datasets/stop.csv", csv_bytes(frame(300, seed=31)))
    pat.create_processing_job(**_baselining_request("stop-baseline", data, sm.store.uri("stop/baseline")))
    pat.create_data_quality_job_definition(**_definition("stop-dq", "churn-prod", sm.store.uri("stop/reports"),
                                                         {"BaseliningJobName": "stop-baseline"}))
    pat.create_monitoring_schedule(MonitoringScheduleName="stop-hourly", MonitoringScheduleConfig={
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": "stop-dq",
        "MonitoringType": "DataQuality"})
    # the SDK's attach lists a schedule's tags: schedules and job definitions refuse tags, so they have none
    sched_arn = vic.describe_monitoring_schedule(MonitoringScheduleName="stop-hourly")["MonitoringScheduleArn"]
    def_arn = vic.describe_data_quality_job_definition(JobDefinitionName="stop-dq")["JobDefinitionArn"]
    assert vic.list_tags(ResourceArn=sched_arn)["Tags"] == [] and vic.list_tags(ResourceArn=def_arn)["Tags"] == []
    with pytest.raises(ClientError) as exc:
        vic.list_tags(ResourceArn=sched_arn.replace("stop-hourly", "no-such-schedule"))
    assert _code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        vic.list_tags(ResourceArn=sched_arn.replace("monitoring-schedule/stop-hourly", "processing-job/stop-baseline"))
    assert _code(exc) == "ValidationException" and "monitoring-schedule" in str(exc.value)
    _capture(sm, _ingest_key(sm), dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC), shift=0.0, seed=32, first=0)
    ended = _run(sm, "stop-hourly", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    with live_db.session_scope(write=False) as s:
        sid = s.scalar(select(Schedule.id).where(Schedule.name == "stop-hourly"))
    assert sid is not None
    fire = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)    # a run claimed by a runner that has not started it
    waiting = jobs.claim(live_db, sid, fire, fire - dt.timedelta(hours=1), fire, "schedule", worker="runner-a")
    assert waiting is not None
    job = f"execution-{waiting}"
    assert vic.describe_processing_job(ProcessingJobName=job)["ProcessingJobStatus"] == "InProgress"
    assert [e["MonitoringExecutionStatus"] for e in vic.list_monitoring_executions(
        MonitoringScheduleName="stop-hourly", SortBy="ScheduledTime", SortOrder="Ascending")[
        "MonitoringExecutionSummaries"]] == ["Pending", "Completed"]      # the claimed run's hour is earlier
    with pytest.raises(ClientError) as exc:                    # a viewer cannot stop it
        vic.stop_processing_job(ProcessingJobName=job)
    assert _code(exc) == "AccessDeniedException"
    assert set(pat.stop_processing_job(ProcessingJobName=job)) == {"ResponseMetadata"}
    stopped = vic.describe_processing_job(ProcessingJobName=job)
    assert stopped["ProcessingJobStatus"] == "Stopped" and "ProcessingEndTime" in stopped
    statuses = {e["ProcessingJobArn"].rsplit("/", 1)[1]: e["MonitoringExecutionStatus"] for e in
                vic.list_monitoring_executions(MonitoringScheduleName="stop-hourly")["MonitoringExecutionSummaries"]}
    assert statuses == {job: "Stopped", f"execution-{ended['id']}": "Completed"}
    assert vic.list_monitoring_executions(StatusEquals="Stopped")["MonitoringExecutionSummaries"][0][
        "ProcessingJobArn"].endswith(job)
    assert jobs.run_claimed(live_db, sm.store, sid, waiting, "runner-a") is False    # its runner finds it stopped
    assert vic.describe_processing_job(ProcessingJobName=job)["ProcessingJobStatus"] == "Stopped"
    for name, status in [(job, "Stopped"), (f"execution-{ended['id']}", "Completed"),
                         ("stop-baseline", "Completed")]:
        with pytest.raises(ClientError) as exc:
            pat.stop_processing_job(ProcessingJobName=name)
        assert _code(exc) == "ValidationException" and f"is in status {status}" in str(exc.value), str(exc.value)
    for name in ("never-ran", "execution-nope"):
        with pytest.raises(ClientError) as exc:
            pat.stop_processing_job(ProcessingJobName=name)
        assert _code(exc) == "ResourceNotFound"
    events = httpx.get(f"{sm.url}/api/v1/audit/events", params={"action": "execution.stopped"},
                       headers=sm.headers["root"], timeout=60).json()["items"]
    assert [(e["subject_id"], e["actor"]) for e in events] == [(waiting, "pat")]


def test_a_local_store_says_sagemakers_calls_need_an_s3_one(tmp_path):
    """On `make run`'s local store, the fix said "use a URI under file://…", which SageMaker's own request
    validation then refuses (its URIs are s3:// or https://): it now says an S3 store is what these calls need."""
    from mlgov.errors import Invalid
    from mlgov.storage import LocalStore
    from monitor.definitions import store_key

    with pytest.raises(Invalid) as exc:
        store_key(LocalStore(tmp_path), "s3://bucket/data.csv", "the dataset URI")
    assert "MLGOV_STORE_URL=s3://" in (exc.value.fix or "") and "file://" not in (exc.value.fix or "")
