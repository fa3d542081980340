"""Monitoring API shapes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StrictFloat, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from mlgov.api import Page
from mlgov.db import utcnow
from mlgov.types import Integer, Strict, Timestamp
from mlgov.workers import WorkerStatus
from monitor import kinds, recurrence
from monitor.capture import CaptureSchema
from monitor.engine.drift import CATEGORICAL_METHODS, NUMERIC_METHODS

Method = Literal["linf_simple", "linf_robust", "ks", "wasserstein", "psi", "jensenshannon", "chisquare", "z"]
assert set(NUMERIC_METHODS) | set(CATEGORICAL_METHODS) == set(get_args(Method))


def _registered(name: str) -> str:
    """Checked on each request, so kinds other domains register at composition time are accepted; the error is
    the one a Literal of the registered names would give."""
    if name not in kinds.names():
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": kinds.listed(repr)})
    return name


def _document_registered(schema: dict[str, Any]) -> None:
    schema["enum"] = list(kinds.names())   # when the OpenAPI document is generated, i.e. after composition


def _document_checks(schema: dict[str, Any]) -> None:
    """The checks each registered kind declares its violations carry, for clients routing alerts by check."""
    per_kind = "; ".join(f"{n}: {', '.join(kinds.get(n).checks)}" for n in kinds.names())
    schema["description"] = f"the constraint_check_type of the violations that opened the alert ({per_kind})"


class MonitorType(RootModel[Annotated[str, AfterValidator(_registered)]]):
    """A registered monitor kind (``monitor.kinds``): monitor's own and those other domains add."""

    model_config = ConfigDict(json_schema_extra=_document_registered)


class BaselineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str | None
    source: str
    kind: str
    problem_type: str | None
    dataset_uri: str | None
    dataset_sha256: str | None
    exact: bool
    row_count: int
    feature_count: int
    created_by: str
    created_at: dt.datetime


class AttachBaseline(Strict):
    baseline_id: str = Field(min_length=1, max_length=64)


class AttachedBaseline(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    model_group: str
    model_version: int
    kind: str
    baseline_id: str
    attached_by: str
    attached_at: dt.datetime


class DriftSettings(Strict):
    """Which drift method per type or feature (default: Evidently's choice) and thresholds."""

    numerical: Method | None = None
    categorical: Literal["linf_simple", "linf_robust", "chisquare", "z", "psi", "jensenshannon"] | None = None
    per_feature: dict[str, Method] = Field(default_factory=dict)
    thresholds: dict[str, StrictFloat] = Field(default_factory=dict, description="by method name or feature name")
    drift_share: StrictFloat = Field(default=0.5, gt=0, le=1)


class WindowAnalysis(Strict):
    type: Literal["DataQuality", "ModelQuality"] = "DataQuality"
    baseline_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=63)
    start: Timestamp
    end: Timestamp
    drift: DriftSettings | None = None


class AnalysisRead(BaseModel):
    id: str
    kind: str
    status: str
    failure_reason: str | None
    baseline_id: str
    source: str
    dataset_uri: str | None
    endpoint: str | None
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    rows: int
    violation_count: int
    drift_share: float | None
    dataset_drift: bool | None
    drifted_features: list[str]
    duration_ms: int
    created_by: str
    created_at: dt.datetime
    violations: list[dict[str, Any]] | None = None
    drift: list[dict[str, Any]] | None = None
    small_sample: bool | None = Field(default=None, description=(
        "some features had too few values for their drift method to tell drift from sampling noise and were not "
        "judged (each drift row says so and how many values it needs); shown on single reads"))
    note: str | None = Field(default=None, description="why a drift verdict was limited (small sample)")
    expectations: dict[str, Any] | None = Field(default=None, description="result of the baseline's GX suite")


class EndpointCreate(Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    model_group: str = Field(min_length=1, max_length=256)
    model_version: Integer = Field(ge=1, le=2**31 - 1)  # an INTEGER column
    variant: str = Field(default="AllTraffic", min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    sampling_percentage: StrictFloat = Field(default=100.0, ge=0, le=100)
    schema_: CaptureSchema = Field(alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
    name: str
    model_group: str
    model_version: int
    variant: str
    sampling_percentage: float
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    created_by: str
    created_at: dt.datetime


class GroundTruthResult(BaseModel):
    accepted: int
    replaced: int = Field(0, description="stored labels replaced by a different one (only with replace=true)")
    duplicates: int = Field(description="ids already labelled (with replace=true: with the same label), or repeated "
                                        "in the upload")
    rejected: list[dict[str, Any]]
    unmatched: int = Field(description="labels whose id matched no captured request when the upload was read (kept, "
                                       "not dropped: joined once the capture arrives)")
    unmatched_ids: list[str]


class CaptureResult(BaseModel):
    accepted: int
    sampled_out: int
    duplicates: int
    rejected: list[dict[str, Any]]


SCHEDULE_FORMS = ("when it runs, in UTC: 5-field cron ('*/5 * * * *'), 'hourly', 'daily', SageMaker's "
                  "ScheduleExpression 'cron(Minutes Hours Day-of-month Month Day-of-week Year)' with '?' in one "
                  "day field ('cron(0 * ? * * *)'), or 'NOW' (once, at once; the schedule then stops)")


class AlertRule(Strict):
    """SageMaker's M-of-N rule: in alert while ``datapoints`` of the last ``period`` judged runs breached."""

    datapoints: StrictInt = Field(ge=1, le=1000)
    period: StrictInt = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _m_of_n(self) -> AlertRule:
        if self.datapoints > self.period:
            raise ValueError(f"{self.datapoints} datapoints to alert cannot exceed the evaluation period of "
                             f"{self.period}")
        return self


class Alerting(Strict):
    rules: dict[str, AlertRule] = Field(default_factory=dict, description="check name (of the schedule's type, or "
                                        "execution_failed) → rule; a check without one alerts when the latest run "
                                        "breached it (failed, for execution_failed)")


class ScheduleCreate(Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    endpoint: str = Field(min_length=1, max_length=63)
    type: MonitorType
    schedule: str = Field(min_length=1, max_length=128, description=SCHEDULE_FORMS)
    baseline_id: str = Field(min_length=1, max_length=64)
    window: dict[Literal["start", "end"], str] = Field(default_factory=dict,
                                                       description="ISO-8601 offsets, default -PT1H … PT0S")
    drift: DriftSettings | None = None
    alerting: Alerting | None = None


class ScheduleUpdate(Strict):
    schedule: str | None = Field(default=None, min_length=1, max_length=128, description=SCHEDULE_FORMS)
    baseline_id: str | None = Field(default=None, min_length=1, max_length=64,
                                    description="another baseline of the schedule's type that fits its endpoint")
    window: dict[Literal["start", "end"], str] | None = None
    drift: DriftSettings | None = None
    alerting: Alerting | None = None


class ScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    endpoint: str
    type: str
    expression: str
    window_start: str
    window_end: str
    baseline_id: str
    status: str
    next_run_at: dt.datetime | None = Field(description="when it runs next; null while Stopped (starting it "
                                            "again computes the next fire time)")
    last_run_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    overdue: bool = Field(default=False, description="Scheduled, and due more than one period ago without having "
                          "run: no scheduler is running it (see `scheduler` in the list, and /readyz)")

    @model_validator(mode="after")
    def _overdue(self) -> ScheduleRead:
        if self.status != "Scheduled":   # the row keeps its last fire time; a stopped schedule has no next one
            self.next_run_at = None
        if "overdue" not in self.model_fields_set:   # read from the row (a client parsing a response keeps the value)
            self.overdue = self.next_run_at is not None and recurrence.overdue(self.expression, self.next_run_at,
                                                                               utcnow())
        return self


class SchedulePage(Page[ScheduleRead]):
    scheduler: WorkerStatus = Field(description="whether a scheduler (in `mlgov serve` or `mlgov scheduler`, any "
                                    "replica) is running the schedules: alive, and when it last looked for due runs")


class RunWindow(Strict):
    start: Timestamp
    end: Timestamp


class EstimateRequest(RunWindow):
    threshold: StrictFloat | None = Field(default=None, ge=0, le=1, description=(
        "binary: the cut for rows whose capture carries no 0/1 prediction (default: the baseline's threshold, "
        "else 0.5); the model's captured prediction always wins"))
    baseline_id: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-f]{32}$", description=(
        "the ModelQuality baseline whose estimator (calibration or loss models) to use; default: the baseline "
        "of the endpoint's newest ModelQuality schedule, else raw scores uncalibrated"))


class ExecutionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    scheduled_for: dt.datetime
    trigger: str
    status: str
    failure_reason: str | None
    window_start: dt.datetime
    window_end: dt.datetime
    analysis_id: str | None
    violation_count: int
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    schedule: str = Field(description="the monitoring schedule whose runs opened it")
    check: str = Field(json_schema_extra=_document_checks)
    subject: str = Field(description="the metric or feature that breached (e.g. auc, income); alerts are keyed by "
                         "(schedule, subject, check); empty for an alert opened before alerts had subjects")
    status: str
    model_group: str | None
    model_version: int | None
    opened_execution_id: str
    last_execution_id: str
    details: list[dict[str, Any]]
    occurrences: int
    opened_at: dt.datetime
    resolved_at: dt.datetime | None


def _said(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank: say why the alert is closed")
    return text


class AlertResolve(Strict):
    reason: Annotated[str, AfterValidator(_said)] = Field(
        min_length=1, max_length=1000, description="why the alert is closed (kept in the audit log and sent to "
        "subscribers with alert.resolved), e.g. 'v3 retrained on November data and deployed'")


class TriggerSet(Strict):
    url: str = Field(min_length=8, max_length=2048, pattern="^https?://")
    secret: str = Field(min_length=16, max_length=256)
    cooldown_seconds: Integer = Field(default=3600, ge=0, le=30 * 86400)


class TriggerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    model_group: str
    webhook_id: str
    cooldown_seconds: int
    last_triggered_at: dt.datetime | None
