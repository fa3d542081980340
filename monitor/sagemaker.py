"""Monitor's SageMaker operations (monitoring schedules, job definitions, executions, alerts, the model-monitor
analyzer's processing jobs): shapes translated, monitor's services called. No rule lives here: schedules,
executions, alerts and baselines are the ones the native API shows, and the other way round.

What differs from SageMaker, refused by name (ValidationException) rather than silently dropped:
- the only container is SageMaker's model-monitor analyzer, named by one of its published image URIs; mlgov
  runs its own engine in its place (the image is never pulled), so user scripts (record preprocessor,
  post-analytics processor), entrypoints and arguments are not run;
- endpoints named in job definitions are mlgov endpoints (``POST /api/v1/endpoints``), whose traffic arrives
  through mlgov's capture API; batch-transform inputs are not read;
- S3 URIs (baselines, datasets, outputs) must lie in mlgov's object store.

Other domains register job definitions of their monitor kinds with :func:`register_job_definitions` (Clarify:
ModelBias and ModelExplainability), so monitor never imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mlgov.auth import PUBLISHERS, READERS
from mlgov.aws import (
    AwsError,
    AwsService,
    Call,
    ThenRecord,
    drop_empty,
    failure_reason,
    from_epoch,
    keyset_paged,
    page_after,
    page_offset,
    paged,
    require_absent,
    sort_of,
    validation,
)
from mlgov.errors import Invalid, NotFound
from mlgov.storage import ObjectStore
from monitor import definitions, kinds, schedules, service
from monitor.orm import Execution, JobDefinition, ProcessingJob, Schedule

SCHEDULE = "monitoring-schedule"
PROCESSING_JOB = "processing-job"
EXECUTION_JOB = "execution-"   # the processing job of a monitoring execution: execution-<id>

# SageMaker's model-monitor analyzer: the account of its registry in each region, as the SageMaker Python SDK v2
# publishes them (sagemaker/image_uri_config/model-monitor.json, repository sagemaker-model-monitor-analyzer).
ANALYZER_REPOSITORY = "sagemaker-model-monitor-analyzer"
ANALYZER_REGISTRIES = {
    "af-south-1": "875698925577", "ap-east-1": "001633400207", "ap-northeast-1": "574779866223",
    "ap-northeast-2": "709848358524", "ap-northeast-3": "990339680094", "ap-south-1": "126357580389",
    "ap-southeast-1": "245545462676", "ap-southeast-2": "563025443158", "ap-southeast-3": "669540362728",
    "ca-central-1": "536280801234", "cn-north-1": "453000072557", "cn-northwest-1": "453252182341",
    "eu-central-1": "048819808253", "eu-central-2": "590183933784", "eu-north-1": "895015795356",
    "eu-south-1": "933208885752", "eu-south-2": "437450045455", "eu-west-1": "468650794304",
    "eu-west-2": "749857270468", "eu-west-3": "680080141114", "il-central-1": "843974653677",
    "me-central-1": "588750061953", "me-south-1": "607024016150", "sa-east-1": "539772159869",
    "us-east-1": "156813124566", "us-east-2": "777275614652", "us-west-1": "890145073186",
    "us-west-2": "159807026194",
}


def ecr_images(registries: dict[str, str], repository: str) -> frozenset[str]:
    """The exact image URIs of one SageMaker repository (``name`` or ``name:tag``) in every region listed."""
    return frozenset(f"{account}.dkr.ecr.{region}.amazonaws.com{'.cn' if region.startswith('cn-') else ''}/"
                     f"{repository}" for region, account in registries.items())


def check_image(image: str, allowed: frozenset[str], *, member: str, what: str, repository: str, sdk: str) -> None:
    """ValidationException naming ``image`` unless it is one of ``allowed`` (exactly: no prefix matching)."""
    if image not in allowed:
        raise validation(
            f"{member} {image!r} is not {what}: mlgov runs it with its own engine and runs no other container. Use "
            f"its URI for your region, <account>.dkr.ecr.<region>.amazonaws.com/{repository} (the SageMaker Python "
            f"SDK's image_uris.retrieve({sdk!r}, region))")


ANALYZER_IMAGES = ecr_images(ANALYZER_REGISTRIES, ANALYZER_REPOSITORY)
CONTAINER_OUTPUT = "/opt/ml/processing/output"
CONTAINER_ENDPOINT_INPUT = "/opt/ml/processing/input/endpoint"


CLARIFY_REPOSITORY = "sagemaker-clarify-processing"


def check_analyzer(image: str, member: str) -> None:
    if image.rsplit("/", 1)[-1].split(":", 1)[0] == CLARIFY_REPOSITORY:
        # SageMakerClarifyProcessor's jobs: pointing them at the analyzer image would not run a bias analysis
        raise validation(
            f"{member} {image!r} is SageMaker Clarify's processing container: mlgov computes bias and explanations "
            "itself and runs no Clarify processing job (SageMakerClarifyProcessor). For a report, send the data to "
            "mlgov's POST /api/v1/clarify/bias or /api/v1/clarify/explain; to monitor an endpoint, use "
            "CreateModelBiasJobDefinition or CreateModelExplainabilityJobDefinition")
    check_image(image, ANALYZER_IMAGES, member=member, what="SageMaker's model-monitor analyzer image",
                repository=ANALYZER_REPOSITORY, sdk="model-monitor")


def _store(call: Call) -> ObjectStore:
    store: ObjectStore = call.extras["store"]()
    return store


def _page(p: dict[str, Any], default: int = 10) -> tuple[int, int]:
    return page_offset(p), p.get("MaxResults") or default


_SORTS = {"Name": "name", "CreationTime": "created", "Status": "status", "ScheduledTime": "scheduled"}


def _between(p: dict[str, Any], after: str, before: str) -> tuple[Any, Any]:
    return from_epoch(p.get(after)), from_epoch(p.get(before))


# --- job definitions ---------------------------------------------------------------------------------------------

BaselineOf = Callable[[Call, dict[str, Any]], str]
"""The id of the baseline a Create<Type>JobDefinition request names (imported from the object store, or the
baseline of a baselining job); ValidationException naming what is missing."""


@dataclass(frozen=True)
class DefinitionKind:
    monitoring_type: str          # DataQuality | ModelQuality | ModelBias | ModelExplainability
    arn_kind: str                 # data-quality-job-definition …
    baseline: BaselineOf
    check_app: Callable[[dict[str, Any]], None]

    def member(self, part: str) -> str:
        return f"{self.monitoring_type}{part}"


_KINDS: dict[str, DefinitionKind] = {}


def _definition_arn(call: Call, row: JobDefinition) -> str:
    kind = _KINDS.get(row.type)
    return call.arn(f"{kind.arn_kind if kind else 'monitoring-job-definition'}/{row.name}")


def register_job_definitions(api: AwsService, kind: DefinitionKind) -> None:
    """Create/Describe/Delete/List<Type>JobDefinition(s) for one monitor kind."""
    _KINDS[kind.monitoring_type] = kind
    t = kind.monitoring_type

    def no_tags(call: Call, name: str) -> dict[str, str]:
        definitions.get_definition(call.session, name, t)     # ResourceNotFound when there is none
        return {}                                              # Create refuses Tags: a definition has none

    api.tags_of(kind.arn_kind, no_tags)

    @api.operation(f"Create{t}JobDefinition", roles=PUBLISHERS, write=True)
    def create(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["Tags"], "tag the endpoint's model group instead")
        require_absent(p, ["NetworkConfig"], "mlgov runs no container, so it has no network to configure")
        app = p[kind.member("AppSpecification")]
        require_absent(app, ["RecordPreprocessorSourceUri", "PostAnalyticsProcessorSourceUri", "ContainerEntrypoint",
                             "ContainerArguments"], "mlgov runs its own engine, not user scripts or containers")
        kind.check_app(app)
        job_input = p[kind.member("JobInput")]
        require_absent(job_input, ["BatchTransformInput"], "mlgov monitors the traffic its endpoints capture")
        endpoint = job_input.get("EndpointInput")
        if not endpoint:
            raise validation(f"{kind.member('JobInput')}.EndpointInput is required: mlgov monitors the traffic of "
                             "its endpoints (create the endpoint with POST /api/v1/endpoints first)")
        if (labels := definitions.ground_truth_prefix(p)) is not None:   # read by every run (`jobs.import_labels`)
            definitions.check_label_source(call.session, _store(call), labels, endpoint["EndpointName"],
                                           call.principal, f"{kind.member('JobInput')}.GroundTruthS3Input.S3Uri")
        output = p[kind.member("JobOutputConfig")]
        require_absent(output, ["KmsKeyId"], "the object store's own encryption applies")
        outputs = output["MonitoringOutputs"]
        if len(outputs) != 1:
            raise validation(f"{kind.member('JobOutputConfig')}.MonitoringOutputs must hold exactly one output "
                             f"(it holds {len(outputs)})")
        baseline_id = kind.baseline(call, p)
        row = definitions.create_definition(
            call.session, _store(call), name=p["JobDefinitionName"], monitoring_type=t,
            endpoint=endpoint["EndpointName"], baseline_id=baseline_id, output_uri=outputs[0]["S3Output"]["S3Uri"],
            window_start=endpoint.get("StartTimeOffset") or "-PT1H", window_end=endpoint.get("EndTimeOffset") or "PT0S",
            spec=p, actor=call.principal)
        return {"JobDefinitionArn": _definition_arn(call, row)}

    @api.operation(f"Describe{t}JobDefinition", roles=READERS, write=False)
    def describe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        row = definitions.get_definition(call.session, p["JobDefinitionName"], t)
        return {**row.spec, "JobDefinitionArn": _definition_arn(call, row), "JobDefinitionName": row.name,
                "CreationTime": row.created_at}

    @api.operation(f"Delete{t}JobDefinition", roles=PUBLISHERS, write=True)
    def delete(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        definitions.delete_definition(call.session, p["JobDefinitionName"], t, call.principal)
        return {}

    @api.operation(f"List{t}JobDefinitions", roles=READERS, write=False)
    def listed(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sort = sort_of(p, _SORTS, "CreationTime")
        rows, remaining = definitions.list_definitions(
            call.session, monitoring_type=t, endpoint=p.get("EndpointName"), name_contains=p.get("NameContains"),
            created_after=from_epoch(p.get("CreationTimeAfter")),
            created_before=from_epoch(p.get("CreationTimeBefore")), sort=sort,
            limit=p.get("MaxResults") or 10, offset=0, after=page_after(p))
        summaries = [{"MonitoringJobDefinitionName": r.name, "MonitoringJobDefinitionArn": _definition_arn(call, r),
                      "CreationTime": r.created_at, "EndpointName": r.endpoint} for r in rows]
        return {"JobDefinitionSummaries": summaries,
                **drop_empty({"NextToken": keyset_paged(rows, remaining, definitions.definition_order(sort), p)})}


def _data_quality_baseline(call: Call, p: dict[str, Any]) -> str:
    """A baselining job's baseline, or SageMaker's statistics.json + constraints.json in the object store."""
    cfg = p.get("DataQualityBaselineConfig") or {}
    constraints = (cfg.get("ConstraintsResource") or {}).get("S3Uri")
    statistics = (cfg.get("StatisticsResource") or {}).get("S3Uri")
    if cfg.get("BaseliningJobName"):
        job = definitions.get_processing_job(call.session, cfg["BaseliningJobName"])   # or ResourceNotFound
        if not (constraints or statistics):
            if job.baseline_id is None:
                raise validation(f"baselining job {job.name!r} is {job.status}, so it has no baseline"
                                 + (f" ({job.failure_reason})" if job.failure_reason else ""))
            return job.baseline_id
        # The SageMaker SDK names the baselining job and its files together (create_monitoring_schedule after
        # suggest_baseline): the files named are what every run is judged against.
    if not (constraints and statistics):
        raise validation("mlgov judges every run against a baseline: give DataQualityBaselineConfig with "
                         "ConstraintsResource and StatisticsResource S3Uri (suggest_baseline's constraints.json and "
                         "statistics.json), or BaseliningJobName")
    return definitions.import_baseline(call.session, _store(call), statistics_uri=statistics,
                                       constraints_uri=constraints, name=p["JobDefinitionName"],
                                       actor=call.principal).id


DATA_QUALITY = DefinitionKind("DataQuality", "data-quality-job-definition", _data_quality_baseline,
                              lambda app: check_analyzer(app["ImageUri"], "DataQualityAppSpecification.ImageUri"))


def _model_quality_baseline(call: Call, p: dict[str, Any]) -> str:
    """SageMaker's model-quality constraints.json (and the statistics.json beside it) in the object store; the
    endpoint input names the captured prediction and probability columns."""
    cfg = p.get("ModelQualityBaselineConfig") or {}
    uri = (cfg.get("ConstraintsResource") or {}).get("S3Uri")
    if cfg.get("BaseliningJobName"):
        job = definitions.get_processing_job(call.session, cfg["BaseliningJobName"])   # or ResourceNotFound
        # The SageMaker SDK names the baselining job beside its constraints (create_monitoring_schedule after
        # suggest_baseline on the same monitor), as for data quality: the file named is what runs are judged by.
        if not uri:
            if job.status != "Completed":
                raise validation(f"baselining job {job.name!r} is {job.status}, so it wrote no constraints.json"
                                 + (f" ({job.failure_reason})" if job.failure_reason else ""))
            if ((job.spec or {}).get("Environment") or {}).get("analysis_type") != "MODEL_QUALITY":
                raise validation(f"baselining job {job.name!r} profiled data quality (DefaultModelMonitor's "
                                 "suggest_baseline): name ModelQualityMonitor's baselining job, or its "
                                 "constraints.json as ConstraintsResource")
            uri = f"{job.output_uri.rstrip('/')}/constraints.json"
    if not uri:
        raise validation("mlgov judges every run against a baseline: give ModelQualityBaselineConfig."
                         "ConstraintsResource.S3Uri (statistics.json is read from beside it) or the "
                         "BaseliningJobName of ModelQualityMonitor.suggest_baseline")
    problem = p["ModelQualityAppSpecification"].get("ProblemType")
    if not problem:
        raise validation("ModelQualityAppSpecification.ProblemType is required")
    endpoint = p["ModelQualityJobInput"].get("EndpointInput") or {}
    return definitions.import_quality_baseline(
        call.session, _store(call), constraints_uri=uri, problem_type=problem,
        prediction=endpoint.get("InferenceAttribute"), probability=endpoint.get("ProbabilityAttribute"),
        threshold=float(endpoint.get("ProbabilityThresholdAttribute", 0.5)), name=p["JobDefinitionName"],
        actor=call.principal).id


def _model_quality_app(app: dict[str, Any]) -> None:
    check_analyzer(app["ImageUri"], "ModelQualityAppSpecification.ImageUri")


MODEL_QUALITY = DefinitionKind("ModelQuality", "model-quality-job-definition", _model_quality_baseline,
                               _model_quality_app)


# --- schedules ---------------------------------------------------------------------------------------------------

def _schedule_arn(call: Call, name: str) -> str:
    return call.arn(f"{SCHEDULE}/{name}")


def _execution_job(call: Call, ex: Execution, sched: Schedule) -> str | None:
    return call.arn(f"{PROCESSING_JOB}/{EXECUTION_JOB}{ex.id}") if sched.job_definition else None


def _execution_out(call: Call, ex: Execution, sched: Schedule) -> dict[str, Any]:
    return drop_empty({
        "MonitoringScheduleName": sched.name, "ScheduledTime": ex.scheduled_for, "CreationTime": ex.created_at,
        "LastModifiedTime": ex.ended_at or ex.started_at or ex.created_at, "MonitoringExecutionStatus": ex.status,
        "ProcessingJobArn": _execution_job(call, ex, sched), "EndpointName": sched.endpoint,
        "FailureReason": failure_reason(ex.failure_reason), "MonitoringJobDefinitionName": sched.job_definition,
        "MonitoringType": sched.type})


def _schedule_config(sched: Schedule) -> dict[str, Any]:
    return drop_empty({"ScheduleConfig": {"ScheduleExpression": sched.expression,
                                          "DataAnalysisStartTime": sched.window_start,
                                          "DataAnalysisEndTime": sched.window_end},
                       "MonitoringJobDefinitionName": sched.job_definition, "MonitoringType": sched.type})


def _schedule_summary(call: Call, sched: Schedule) -> dict[str, Any]:
    return drop_empty({"MonitoringScheduleName": sched.name, "MonitoringScheduleArn": _schedule_arn(call, sched.name),
                       "CreationTime": sched.created_at, "LastModifiedTime": sched.updated_at,
                       "MonitoringScheduleStatus": sched.status, "EndpointName": sched.endpoint,
                       "MonitoringJobDefinitionName": sched.job_definition, "MonitoringType": sched.type})


def _definition_of(call: Call, config: dict[str, Any]) -> tuple[JobDefinition, str, str | None, str | None]:
    """The job definition a MonitoringScheduleConfig names, its expression and window offsets."""
    require_absent(config, ["MonitoringJobDefinition"], "create a job definition (Create<Type>JobDefinition) and "
                   "name it with MonitoringJobDefinitionName and MonitoringType")
    name = config.get("MonitoringJobDefinitionName")
    if not name:
        raise validation("MonitoringScheduleConfig.MonitoringJobDefinitionName is required: name the job definition "
                         "the schedule runs")
    schedule = config.get("ScheduleConfig")
    if not schedule:
        raise validation("MonitoringScheduleConfig.ScheduleConfig.ScheduleExpression is required (cron(0 * ? * * *), "
                         "NOW, …)")
    definition = definitions.get_definition(call.session, name, config.get("MonitoringType") or "DataQuality")
    return (definition, schedule["ScheduleExpression"], schedule.get("DataAnalysisStartTime"),
            schedule.get("DataAnalysisEndTime"))


def _schedule_tags(call: Call, name: str) -> dict[str, str]:
    """None: CreateMonitoringSchedule refuses Tags (the SDK's attach lists them, so the answer is an empty list)."""
    schedules.get(call.session, name)
    return {}


def _register_schedules(api: AwsService) -> None:
    api.tags_of(SCHEDULE, _schedule_tags)

    @api.operation("CreateMonitoringSchedule", roles=PUBLISHERS, write=True)
    def create(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["Tags"], "tag the endpoint's model group instead")
        definition, expression, start, end = _definition_of(call, p["MonitoringScheduleConfig"])
        sched = definitions.schedule_from_definition(call.session, _store(call), name=p["MonitoringScheduleName"],
                                                     definition=definition, expression=expression, window_start=start,
                                                     window_end=end, actor=call.principal)
        return {"MonitoringScheduleArn": _schedule_arn(call, sched.name)}

    @api.operation("UpdateMonitoringSchedule", roles=PUBLISHERS, write=True)
    def update(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        definition, expression, start, end = _definition_of(call, p["MonitoringScheduleConfig"])
        sched = definitions.redefine_schedule(call.session, p["MonitoringScheduleName"], definition=definition,
                                              expression=expression, window_start=start, window_end=end,
                                              actor=call.principal)
        return {"MonitoringScheduleArn": _schedule_arn(call, sched.name)}

    @api.operation("DescribeMonitoringSchedule", roles=READERS, write=False)
    def describe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sched = schedules.get(call.session, p["MonitoringScheduleName"])
        last = schedules.latest_execution(call.session, sched)
        summary = {k: v for k, v in _schedule_summary(call, sched).items() if k != "MonitoringJobDefinitionName"}
        return {**summary, "MonitoringScheduleConfig": _schedule_config(sched),
                **drop_empty({"LastMonitoringExecutionSummary": _execution_out(call, last, sched) if last else None})}

    @api.operation("DeleteMonitoringSchedule", roles=PUBLISHERS, write=True)
    def delete(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        schedules.delete(call.session, p["MonitoringScheduleName"], call.principal)
        return {}

    @api.operation("StartMonitoringSchedule", roles=PUBLISHERS, write=True)
    def start(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        schedules.set_status(call.session, p["MonitoringScheduleName"], "Scheduled", call.principal)
        return {}

    @api.operation("StopMonitoringSchedule", roles=PUBLISHERS, write=True)
    def stop(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        schedules.set_status(call.session, p["MonitoringScheduleName"], "Stopped", call.principal)
        return {}

    @api.operation("ListMonitoringSchedules", roles=READERS, write=False)
    def listed(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sort = sort_of(p, _SORTS, "CreationTime")
        rows, remaining = schedules.find_schedules(
            call.session, endpoint=p.get("EndpointName"), name_contains=p.get("NameContains"),
            status=p.get("StatusEquals"), job_definition=p.get("MonitoringJobDefinitionName"),
            monitoring_type=p.get("MonitoringTypeEquals"),
            created=_between(p, "CreationTimeAfter", "CreationTimeBefore"),
            modified=_between(p, "LastModifiedTimeAfter", "LastModifiedTimeBefore"),
            sort=sort, limit=p.get("MaxResults") or 10, offset=0, after=page_after(p))
        return {"MonitoringScheduleSummaries": [_schedule_summary(call, s) for s in rows],
                **drop_empty({"NextToken": keyset_paged(rows, remaining, schedules.schedule_order(sort), p)})}

    @api.operation("ListMonitoringExecutions", roles=READERS, write=False)
    def executions(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sort = sort_of(p, _SORTS, "ScheduledTime")
        rows, remaining = schedules.find_executions(
            call.session, schedule=p.get("MonitoringScheduleName"), endpoint=p.get("EndpointName"),
            job_definition=p.get("MonitoringJobDefinitionName"), monitoring_type=p.get("MonitoringTypeEquals"),
            status=p.get("StatusEquals"), scheduled=_between(p, "ScheduledTimeAfter", "ScheduledTimeBefore"),
            created=_between(p, "CreationTimeAfter", "CreationTimeBefore"), sort=sort,
            limit=p.get("MaxResults") or 10, offset=0, after=page_after(p))
        out = []
        for ex in rows:
            _, sched = schedules.get_execution(call.session, ex.id)
            out.append(_execution_out(call, ex, sched))
        return {"MonitoringExecutionSummaries": out,
                **drop_empty({"NextToken": keyset_paged(rows, remaining, schedules.execution_order(sort), p)})}


# --- alerts ------------------------------------------------------------------------------------------------------
# One alert per check of the schedule's kind, named by the check (baseline_drift_check → baseline-drift-check):
# InAlert while DatapointsToAlert of the last EvaluationPeriod judged executions breached that check.

def _alert_name(check: str) -> str:
    return check.replace("_", "-")


def _check_of(sched: Schedule, alert: str) -> str:
    for check in kinds.get(sched.type).checks:
        if _alert_name(check) == alert:
            return check
    raise NotFound(f"schedule {sched.name!r} ({sched.type}) has no monitoring alert {alert!r}",
                   fix=f"its alerts: {', '.join(_alert_name(c) for c in kinds.get(sched.type).checks)}")


def _register_alerts(api: AwsService) -> None:
    @api.operation("ListMonitoringAlerts", roles=READERS, write=False)
    def listed(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sched = schedules.get(call.session, p["MonitoringScheduleName"])
        out = [{"MonitoringAlertName": _alert_name(a.check), "CreationTime": sched.created_at,
                "LastModifiedTime": a.modified, "AlertStatus": "InAlert" if a.in_alert else "OK",
                "DatapointsToAlert": a.datapoints, "EvaluationPeriod": a.period,
                "Actions": {"ModelDashboardIndicator": {"Enabled": True}}}
               for a in schedules.alert_states(call.session, _store(call), sched)]
        offset, limit = _page(p)
        page = out[offset:offset + limit]
        return drop_empty({"MonitoringAlertSummaries": page, "NextToken": paged(page, len(out), offset, p)})

    @api.operation("ListMonitoringAlertHistory", roles=READERS, write=False)
    def history(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        scheds: Iterable[Schedule] = [schedules.get(call.session, p["MonitoringScheduleName"])] \
            if p.get("MonitoringScheduleName") else schedules.every_schedule(call.session)
        after, before = _between(p, "CreationTimeAfter", "CreationTimeBefore")
        entries = []
        alert = p.get("MonitoringAlertName")
        if alert and p.get("MonitoringScheduleName"):
            _check_of(next(iter(scheds)), alert)   # a named schedule without that alert is a ResourceNotFound
        for sched in scheds:   # account-wide: the schedules whose kind has that alert
            for a in schedules.alert_states(call.session, _store(call), sched):
                if alert and _alert_name(a.check) != alert:
                    continue
                for when, alerting in a.changes:
                    status = "InAlert" if alerting else "OK"
                    if (after and when <= after) or (before and when >= before) or \
                            (p.get("StatusEquals") and status != p["StatusEquals"]):
                        continue
                    entries.append({"MonitoringScheduleName": sched.name, "MonitoringAlertName": _alert_name(a.check),
                                    "CreationTime": when, "AlertStatus": status})
        key = "AlertStatus" if p.get("SortBy") == "Status" else "CreationTime"
        entries.sort(key=lambda e: (e[key], e["MonitoringScheduleName"], e["MonitoringAlertName"]),
                     reverse=p.get("SortOrder") != "Ascending")
        offset, limit = _page(p)
        page = entries[offset:offset + limit]
        return drop_empty({"MonitoringAlertHistory": page, "NextToken": paged(page, len(entries), offset, p)})

    @api.operation("UpdateMonitoringAlert", roles=PUBLISHERS, write=True)
    def update(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        sched = schedules.get(call.session, p["MonitoringScheduleName"])
        check = _check_of(sched, p["MonitoringAlertName"])
        schedules.set_alert_rule(call.session, sched.name, check, p["DatapointsToAlert"], p["EvaluationPeriod"],
                                 call.principal)
        return {"MonitoringScheduleArn": _schedule_arn(call, sched.name),
                "MonitoringAlertName": p["MonitoringAlertName"]}


# --- processing jobs: the model-monitor analyzer -----------------------------------------------------------------

def _dataset_format(text: str) -> tuple[str, bool]:
    """(format, header) from the analyzer's ``dataset_format``: the SDK's DatasetFormat as JSON,
    ``{"csv": {"header": true}}`` or ``{"parquet": {}}``."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or len(value) != 1:
        raise validation(f"Environment['dataset_format'] {text[:100]!r} is not a DatasetFormat such as "
                         '{"csv": {"header": true}} or {"parquet": {}}')
    (fmt, options), = value.items()
    if fmt not in ("csv", "parquet"):
        raise validation(f"dataset format {fmt!r} is not supported by mlgov's analyzer; use csv or parquet")
    header = (options or {}).get("header", True) if isinstance(options, dict) else True
    return fmt, bool(header)


def _quality_request(env: dict[str, Any]) -> dict[str, Any] | None:
    """The ModelQuality settings of ModelQualityMonitor.suggest_baseline's environment (analysis_type
    MODEL_QUALITY), or None for a data-quality baselining job."""
    kind = env.get("analysis_type")
    if not kind:
        return None
    if kind != "MODEL_QUALITY":
        raise validation(f"Environment['analysis_type'] {str(kind)[:40]!r} is not one mlgov's analyzer runs: it "
                         "runs DefaultModelMonitor's and ModelQualityMonitor's (MODEL_QUALITY) suggest_baseline")
    missing = [k for k in ("problem_type", "ground_truth_attribute") if not env.get(k)]
    if missing or not (env.get("inference_attribute") or env.get("probability_attribute")):
        raise validation("a MODEL_QUALITY baselining job needs Environment problem_type, ground_truth_attribute "
                         "and inference_attribute or probability_attribute (as suggest_baseline sets them)")
    threshold = env.get("probability_threshold_attribute")
    try:
        cut = float(threshold) if threshold not in (None, "") else 0.5
    except ValueError:
        raise validation(f"Environment['probability_threshold_attribute'] {str(threshold)[:40]!r} is not a "
                         "number") from None
    return {"problem_type": env["problem_type"], "label": env["ground_truth_attribute"],
            "prediction": env.get("inference_attribute") or None,
            "probability": env.get("probability_attribute") or None, "threshold": cut}


def _analyzer_request(p: dict[str, Any]) -> tuple[str, str, bool, str]:
    """(dataset URI, format, header, output URI) of a baselining request as DefaultModelMonitor's or
    ModelQualityMonitor's suggest_baseline builds it: the environment names container paths, the inputs and
    outputs map them to S3 URIs."""
    env = p.get("Environment") or {}
    for unsupported in ("record_preprocessor_script", "post_analytics_processor_script", "baseline_constraints",
                        "baseline_statistics"):
        if env.get(unsupported):
            raise validation(f"Environment[{unsupported!r}] is not supported: mlgov's analyzer runs baselining "
                             "(suggest_baseline) jobs; monitoring runs are schedules, user scripts are not run")
    missing = [k for k in ("dataset_format", "dataset_source", "output_path") if not env.get(k)]
    if missing:
        raise validation(f"the analyzer needs Environment {', '.join(missing)} (as suggest_baseline sets them)")
    fmt = _dataset_format(env["dataset_format"])
    inputs = {i.get("S3Input", {}).get("LocalPath"): i for i in p.get("ProcessingInputs") or []}
    source = inputs.get(env["dataset_source"])
    if source is None:
        raise validation(f"no ProcessingInputs entry has S3Input.LocalPath {env['dataset_source']!r} "
                         "(Environment['dataset_source'])")
    if source["S3Input"].get("S3DataType") == "ManifestFile":
        raise validation("S3DataType ManifestFile is not supported; point the input at an object or a prefix")
    outputs = {(o.get("S3Output") or {}).get("LocalPath"): o for o in
               (p.get("ProcessingOutputConfig") or {}).get("Outputs") or []}
    target = outputs.get(env["output_path"])
    if target is None or not target.get("S3Output"):
        raise validation(f"no ProcessingOutputConfig output has S3Output.LocalPath {env['output_path']!r} "
                         "(Environment['output_path'])")
    return source["S3Input"]["S3Uri"], fmt[0], fmt[1], target["S3Output"]["S3Uri"]


def _job_status(status: str) -> str:
    """A monitoring execution's status as its processing job's."""
    return {"Pending": "InProgress", "InProgress": "InProgress", "Completed": "Completed",
            "CompletedWithViolations": "Completed", "Failed": "Failed", "Stopped": "Stopped"}.get(status, "InProgress")


def _job_out(call: Call, job: ProcessingJob) -> dict[str, Any]:
    spec = {k: v for k, v in job.spec.items() if k != "Tags"}   # Describe has no Tags; ExperimentConfig it has
    return {**spec, "ProcessingJobArn": call.arn(f"{PROCESSING_JOB}/{job.name}"), "ProcessingJobStatus": job.status,
            "CreationTime": job.created_at, "LastModifiedTime": job.ended_at or job.created_at,
            **drop_empty({"ProcessingStartTime": job.created_at, "ProcessingEndTime": job.ended_at,
                          "FailureReason": failure_reason(job.failure_reason),
                          "ExitMessage": f"baseline {job.baseline_id}" if job.baseline_id else None})}


def _execution_job_out(call: Call, name: str) -> dict[str, Any]:
    """A monitoring execution seen as the processing job SageMaker would have run for it: the endpoint's capture
    folder in, the published report folder out, the analyzer's environment."""
    ex, sched = schedules.get_execution(call.session, name[len(EXECUTION_JOB):])
    if not sched.job_definition:
        raise NotFound(f"execution {ex.id} belongs to schedule {sched.name!r}, which runs no job definition",
                       fix="read it natively: GET /api/v1/monitoring-schedules/<name>/executions")
    definition = definitions.get_definition(call.session, sched.job_definition)
    store, kind = _store(call), _KINDS[definition.type]
    app, job_input = definition.spec[kind.member("AppSpecification")], definition.spec[kind.member("JobInput")]
    folder = schedules.report_folder(store, sched, ex)
    base = service.get_baseline(call.session, sched.baseline_id)
    status = _job_status(ex.status)
    env = {**(app.get("Environment") or {}),
           "dataset_format": '{"sagemakerCaptureJson":{"captureIndexNames":["endpointInput","endpointOutput"]}}',
           "dataset_source": CONTAINER_ENDPOINT_INPUT, "output_path": CONTAINER_OUTPUT,
           "start_time": f"{ex.window_start:%Y-%m-%dT%H:%M:%SZ}", "end_time": f"{ex.window_end:%Y-%m-%dT%H:%M:%SZ}",
           "sagemaker_endpoint_name": sched.endpoint, "sagemaker_monitoring_schedule_name": sched.name,
           "baseline_constraints": store.uri(f"{base.prefix}/constraints.json"),
           "baseline_statistics": store.uri(f"{base.prefix}/statistics.json")}
    return {
        "ProcessingJobName": name, "ProcessingJobArn": call.arn(f"{PROCESSING_JOB}/{name}"),
        "ProcessingInputs": [{"InputName": "endpoint_input_1", "AppManaged": False, "S3Input": {
            "S3Uri": schedules.capture_uri(call.session, store, sched.endpoint),
            "LocalPath": job_input["EndpointInput"]["LocalPath"], "S3DataType": "S3Prefix", "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "monitoring_output", "AppManaged": False, "S3Output": {
            "S3Uri": store.uri(folder) if folder else sched.output_uri or "", "LocalPath": CONTAINER_OUTPUT,
            "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": definition.spec["JobResources"]["ClusterConfig"]},
        "AppSpecification": {"ImageUri": app["ImageUri"]}, "Environment": env,
        "RoleArn": definition.spec["RoleArn"], "ProcessingJobStatus": status,
        "CreationTime": ex.created_at, "LastModifiedTime": ex.ended_at or ex.started_at or ex.created_at,
        "MonitoringScheduleArn": _schedule_arn(call, sched.name),
        **drop_empty({"StoppingCondition": definition.spec.get("StoppingCondition"),
                      "ProcessingStartTime": ex.started_at, "ProcessingEndTime": ex.ended_at,
                      "FailureReason": failure_reason(ex.failure_reason) if status == "Failed" else None,
                      "ExitMessage": ex.status if status == "Completed" else None}),
    }


def _ended(name: str, status: str) -> AwsError:
    return validation(f"The request was rejected because the processing job {name} is in status {status}: only an "
                      "InProgress job can be stopped")


def _register_processing(api: AwsService) -> None:
    @api.operation("CreateProcessingJob", roles=PUBLISHERS, write=True, computes=True)
    def create(call: Call, p: dict[str, Any]) -> ThenRecord:
        check_analyzer(p["AppSpecification"]["ImageUri"], "AppSpecification.ImageUri")
        require_absent(p["AppSpecification"], ["ContainerEntrypoint", "ContainerArguments"],
                       "mlgov runs its own engine in place of the analyzer")
        require_absent(p, ["NetworkConfig"], "mlgov runs no container, so it has no network to configure")
        if p["ProcessingJobName"].startswith(EXECUTION_JOB):
            raise validation(f"processing job names starting {EXECUTION_JOB!r} are the jobs of monitoring executions; "
                             "pick another name")
        dataset, fmt, header, output = _analyzer_request(p)
        record = definitions.run_baselining_job(call.session, _store(call), name=p["ProcessingJobName"],
                                                dataset_uri=dataset, fmt=fmt, header=header, output_uri=output,
                                                spec=p, actor=call.principal,
                                                quality=_quality_request(p.get("Environment") or {}))
        return ThenRecord(lambda writer: {"ProcessingJobArn": call.arn(f"{PROCESSING_JOB}/{record(writer).name}")})

    @api.operation("DescribeProcessingJob", roles=READERS, write=False)
    def describe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        name = p["ProcessingJobName"]
        if name.startswith(EXECUTION_JOB):
            return _execution_job_out(call, name)
        return _job_out(call, definitions.get_processing_job(call.session, name))

    @api.operation("StopProcessingJob", roles=PUBLISHERS, write=True)
    def stop(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        """A monitoring execution's job stops while its run has not started; a baselining job runs within
        CreateProcessingJob, so it has always ended (ValidationException, as SageMaker answers for an ended job)."""
        name = p["ProcessingJobName"]
        if name.startswith(EXECUTION_JOB):
            ex, sched = schedules.get_execution(call.session, name[len(EXECUTION_JOB):])
            if not sched.job_definition:
                raise NotFound(f"no processing job named {name!r}: execution {ex.id} belongs to schedule "
                               f"{sched.name!r}, which runs no job definition", fix="it is not a SageMaker job")
            try:
                schedules.stop_execution(call.session, ex.id, call.principal)
            except Invalid:
                raise _ended(name, _job_status(ex.status)) from None
            return {}
        raise _ended(name, definitions.get_processing_job(call.session, name).status)

    @api.operation("ListProcessingJobs", roles=READERS, write=False)
    def listed(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        offset, limit = _page(p)
        rows, total = definitions.list_processing_jobs(
            call.session, name_contains=p.get("NameContains"), status=p.get("StatusEquals"),
            created_after=from_epoch(p.get("CreationTimeAfter")),
            created_before=from_epoch(p.get("CreationTimeBefore")),
            sort=sort_of(p, _SORTS, "CreationTime"), limit=limit, offset=offset)
        summaries = [drop_empty({"ProcessingJobName": j.name,
                                 "ProcessingJobArn": call.arn(f"{PROCESSING_JOB}/{j.name}"),
                                 "CreationTime": j.created_at, "ProcessingEndTime": j.ended_at,
                                 "LastModifiedTime": j.ended_at or j.created_at, "ProcessingJobStatus": j.status,
                                 "FailureReason": failure_reason(j.failure_reason)}) for j in rows]
        return {"ProcessingJobSummaries": summaries, **drop_empty({"NextToken": paged(rows, total, offset, p)})}


def register(api: AwsService) -> None:
    register_job_definitions(api, DATA_QUALITY)
    register_job_definitions(api, MODEL_QUALITY)
    _register_schedules(api)
    _register_alerts(api)
    _register_processing(api)
