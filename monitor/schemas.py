"""Monitoring API shapes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.capture import CaptureSchema
from monitor.engine.drift import CATEGORICAL_METHODS, NUMERIC_METHODS

Method = Literal["linf_simple", "linf_robust", "ks", "wasserstein", "psi", "jensenshannon", "chisquare", "z"]
assert set(NUMERIC_METHODS) | set(CATEGORICAL_METHODS) == set(Method.__args__)  # type: ignore[attr-defined]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    thresholds: dict[str, float] = Field(default_factory=dict, description="by method name or feature name")
    drift_share: float = Field(default=0.5, gt=0, le=1)


class WindowAnalysis(Strict):
    type: Literal["DataQuality", "ModelQuality"] = "DataQuality"
    baseline_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=63)
    start: dt.datetime
    end: dt.datetime
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
    expectations: dict[str, Any] | None = Field(default=None, description="result of the baseline's GX suite")


class EndpointCreate(Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    model_group: str = Field(min_length=1, max_length=63)
    model_version: int = Field(ge=1)
    variant: str = Field(default="AllTraffic", min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    sampling_percentage: float = Field(default=100.0, ge=0, le=100)
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
    duplicates: int
    rejected: list[dict[str, Any]]
    unmatched: int = Field(description="labels whose id matches no captured request yet (kept, not dropped)")
    unmatched_ids: list[str]


class CaptureResult(BaseModel):
    accepted: int
    sampled_out: int
    duplicates: int
    rejected: list[dict[str, Any]]
