"""Clarify's API shapes: the analysis_config.json model, one typed request per kind of Clarify request, and the
multipart forms as the OpenAPI document shows them.

The analysis_config.json model itself lives in ``clarify.metrics.config``: the pure computation validates the
config it is given (``analyze`` accepts a dict or the model), and ``clarify/metrics`` imports nothing of the
domain's other layers. It is re-exported here, where the API's shapes are looked for.

The requests are plain dataclasses, built by the router from multipart parts it has already checked; they are not
validated a second time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from clarify.metrics.config import AnalysisConfig, ConfigError, PostTraining, PreTraining, parse_config
from mlgov.openapi import BINARY, request_body

__all__ = ["BIAS_FORM", "EXPLAIN_FORM", "JSON_ANALYSIS", "AnalysisConfig", "BiasAnalysisRequest", "CapturedWindow",
           "ClarifyAnalysis", "ConfigError", "ExplainRequest", "PostTraining", "PreTraining", "StoredAnalysis",
           "StoredReport", "parse_config"]


@dataclass(frozen=True)
class CapturedWindow:
    """An endpoint's captured records between two times (UTC when the client gave no zone)."""

    endpoint: str
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class BiasAnalysisRequest:
    """POST /clarify/bias: the config and exactly one data source (a window wins over a file over a URI)."""

    config: AnalysisConfig
    file: bytes | None = None
    dataset_uri: str | None = None
    window: CapturedWindow | None = None
    model_group: str | None = None        # with model_version: attach the report to this version
    model_version: int | None = None
    predict_with_model: bool = False      # replace the predictions by the registered artifact's own
    model_format: str = "skops"
    model: bytes | None = None            # the artifact, when it is not in mlgov's object store


@dataclass(frozen=True)
class ExplainRequest:
    """POST /clarify/explain. ``predict_url``, ``agg_method`` and ``num_clusters`` are checked by the service in
    their turn (after the version is found), so errors keep the order they always had."""

    model_group: str
    model_version: int
    file: bytes
    model: bytes | None = None
    model_format: str = "skops"
    predict_url: str | None = None
    baseline: bytes | None = None
    agg_method: str = "mean_abs"
    label: str | None = None
    num_clusters: str | None = None       # the part's text; default 10


@dataclass(frozen=True)
class StoredAnalysis:
    """A Clarify analysis as stored: its id (X-Mlgov-Analysis-Id) and its analysis.json (RFC 8259 bytes)."""

    id: str
    body: bytes


class ClarifyAnalysis(BaseModel):
    """A Clarify answer as a client reads it: the body of POST /clarify/bias or /clarify/explain and the id the
    server stored it under (header X-Mlgov-Analysis-Id)."""

    id: str = Field(description="GET /api/v1/clarify/reports/{id} shows it again")
    analysis: dict[str, Any] = Field(description="SageMaker Clarify's analysis.json")


@dataclass(frozen=True)
class StoredReport:
    """A stored analysis.json and, when it was attached to a version, its policy verdict."""

    id: str
    analysis: dict[str, Any]
    verdict: dict[str, Any] | None


_ANALYSIS_ID = {"X-Mlgov-Analysis-Id": {"description": "id of the stored analysis (GET /api/v1/clarify/reports/{id})",
                                        "schema": {"type": "string"}}}
JSON_ANALYSIS: dict[int | str, dict[str, Any]] = {
    200: {"description": "SageMaker Clarify analysis.json", "headers": _ANALYSIS_ID,
          "content": {"application/json": {"schema": {"type": "object"}}}}}
BIAS_FORM = request_body(multipart={
    "type": "object", "required": ["config"],
    "anyOf": [{"required": ["file"]}, {"required": ["dataset_uri"]}, {"required": ["endpoint", "start", "end"]}],
    "properties": {
        "config": {"type": "object", "description": "SageMaker analysis_config.json"},
        "file": {**BINARY, "description": "the dataset (CSV; header row unless config.headers names the columns)"},
        "dataset_uri": {"type": "string", "minLength": 1,
                        "description": "a dataset in mlgov's object store, instead of file"},
        "endpoint": {"type": "string", "description": "a captured window joined to ground truth, instead of file"},
        "start": {"type": "string", "format": "date-time", "description": "window start (with endpoint)"},
        "end": {"type": "string", "format": "date-time", "description": "window end (with endpoint)"},
        "model_group": {"type": "string", "description": "attach the report to this version (with model_version)"},
        "model_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    }},
    encoding={"config": "application/json"},
    description="analysis_config.json and the data: a `file`, a `dataset_uri`, or an `endpoint` window")
EXPLAIN_FORM = request_body(multipart={
    "type": "object", "required": ["model_group", "model_version", "file"],
    "properties": {
        "model_group": {"type": "string", "minLength": 1},
        "model_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "file": {**BINARY, "description": "the rows to explain: all-numeric CSV with header"},
        "model": {**BINARY, "description": "the artifact (checked against the registered sha256), unless it is "
                                           "in mlgov's object store"},
        "model_format": {"type": "string", "enum": ["skops", "xgboost", "lightgbm", "onnx", "pickle", "joblib"]},
        "predict_url": {"type": "string", "format": "uri", "description": "a model server instead of the artifact"},
        "baseline": {**BINARY, "description": "reference rows (CSV with the same columns)"},
        "agg_method": {"type": "string", "enum": ["mean_abs", "mean_sq", "median"]},
        "label": {"type": "string", "description": "a column to drop before explaining"},
        "num_clusters": {"type": "integer", "minimum": 1, "description": "k-means background size (default 10)"},
    }},
    description="a registered version's model and the rows to explain")
