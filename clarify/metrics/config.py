"""SageMaker Clarify's analysis_config.json as a typed model, validated whole before any computation.

Every problem is reported at once, each with its field path (``facet.0.value_or_threshold``), so a user fixes
a config in one round trip. Field shapes follow the documented config (reference/sagemaker.md, "analysis_config
.json"); documented fields mlgov does not act on (predictor, shap, pdp, report, dataset URIs) are still
type-checked so a typo is caught. Unknown keys are refused: a misspelt ``facets`` must not be ignored silently.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, NoReturn

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from clarify.metrics.bias import POST, PRE


class ConfigError(ValueError):
    """The analysis config is malformed or does not fit the data; ``problems`` lists each with its field."""

    def __init__(self, problems: list[dict[str, str]] | str) -> None:
        self.problems = [{"field": "", "message": problems}] if isinstance(problems, str) else problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" if p["field"] else p["message"]
                                   for p in self.problems))


def _column_ref(v: Any) -> str | int:
    if isinstance(v, str) and v:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    raise ValueError("must be a column name (non-empty string) or a 0-based column index")


def _scalar(v: Any) -> str | int | float:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError(f"{v!r} is not a value (string or number)")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def _values_or_threshold(v: Any) -> list[str | int | float] | float:
    """A non-empty list of values, or one number (values above it are positive)."""
    if isinstance(v, list):
        if not v:
            raise ValueError("must not be an empty list")
        return [_scalar(x) for x in v]
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    raise ValueError("must be a list of values (e.g. [1] or [\"yes\"]) or a finite number threshold")


ColumnRef = Annotated[Any, AfterValidator(_column_ref)]
ValuesOrThreshold = Annotated[Any, AfterValidator(_values_or_threshold)]
Strict = ConfigDict(extra="forbid", allow_inf_nan=False)


class Facet(BaseModel):
    model_config = Strict
    name_or_index: ColumnRef
    value_or_threshold: ValuesOrThreshold | None = None


def _codes(allowed: tuple[str, ...]) -> AfterValidator:
    def check(v: Any) -> Literal["all"] | list[str]:
        if v == "all":
            return "all"
        if not isinstance(v, list) or not v:
            raise ValueError(f"must be \"all\" or a non-empty list of {', '.join(allowed)}")
        unknown = [m for m in v if m not in allowed]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(allowed)} or \"all\"")
        return list(dict.fromkeys(v))
    return AfterValidator(check)


class PreTraining(BaseModel):
    model_config = Strict
    methods: Annotated[Any, _codes(PRE)]


class PostTraining(BaseModel):
    model_config = Strict
    methods: Annotated[Any, _codes(POST)]


class Shap(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    baseline: str | list[list[Any]] | None = None
    num_clusters: Annotated[int, Field(ge=1, le=12)] | None = None
    num_samples: Annotated[int, Field(ge=1)] | None = None
    agg_method: Literal["mean_abs", "mean_sq", "median"] | None = None
    use_logit: bool | None = None
    save_local_shap_values: bool | None = None
    seed: int | None = None


class Methods(BaseModel):
    model_config = Strict
    pre_training_bias: PreTraining | None = None
    post_training_bias: PostTraining | None = None
    shap: Shap | None = None
    pdp: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    asymmetric_shapley_value: dict[str, Any] | None = None   # time-series explanations (not computed here)


class AnalysisConfig(BaseModel):
    """The bias part of analysis_config.json (label, facets, methods), plus the documented data fields."""

    model_config = Strict
    version: str | None = None
    dataset_type: Literal["text/csv", "application/jsonlines", "application/json", "application/x-parquet",
                          "application/x-image"] | None = None
    dataset_uri: str | None = None
    headers: list[str] | None = None
    features: str | None = None
    label: ColumnRef
    label_values_or_threshold: ValuesOrThreshold
    facet: Annotated[list[Facet], Field(min_length=1)]
    predicted_label: ColumnRef | None = None
    probability_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    group_variable: ColumnRef | None = None
    excluded_columns: list[ColumnRef] | None = None
    joinsource_name_or_index: ColumnRef | None = None
    predicted_label_dataset_uri: str | None = None
    predicted_label_headers: list[str] | None = None
    facet_dataset_uri: str | None = None
    predictor: dict[str, Any] | None = None
    time_series_data_config: dict[str, Any] | None = None
    methods: Methods

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_object(cls, v: Any) -> dict[Any, Any]:
        if not isinstance(v, dict):
            raise ValueError(f"must be an object of sections, not {json.dumps(v)[:40]}; \"all\" goes inside a "
                             "section: {\"pre_training_bias\": {\"methods\": \"all\"}}")
        return v

    def as_dict(self) -> dict[str, Any]:
        """The config as SageMaker writes it (unset fields left out), for storing and for ``analyze``."""
        return self.model_dump(exclude_none=True)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _message(err: Any) -> str:
    msg = str(err.get("msg", ""))
    return msg.removeprefix("Value error, ")


def _cross_checks(raw: dict[str, Any]) -> list[dict[str, str]]:
    """Rules between fields, checked on the raw document so they are reported with the field errors."""
    out = []
    methods = raw.get("methods")
    if isinstance(methods, dict):
        if not methods.get("pre_training_bias") and not methods.get("post_training_bias"):
            out.append({"field": "methods", "message": "ask for pre_training_bias and/or post_training_bias, e.g. "
                                                       "{\"pre_training_bias\": {\"methods\": \"all\"}}"})
        if methods.get("post_training_bias") and raw.get("predicted_label") is None:
            out.append({"field": "predicted_label", "message": "post-training metrics need predicted_label (the "
                                                               "column of predicted labels or scores)"})
    return out


def parse_config(raw: Any) -> AnalysisConfig:
    """The validated config, or ConfigError listing every problem with its field path."""
    if isinstance(raw, AnalysisConfig):
        return raw
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw, parse_constant=_no_constant)
        except RecursionError:
            raise ConfigError("the config is nested too deeply to be an analysis_config.json") from None
        except ValueError as exc:
            raise ConfigError(f"the config is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object (analysis_config.json), not {type(raw).__name__}")
    problems: list[dict[str, str]] = []
    model = None
    try:
        model = AnalysisConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [{"field": _field(e["loc"]), "message": _message(e)} for e in exc.errors()]
    problems += [p for p in _cross_checks(raw) if p not in problems]
    if problems or model is None:
        raise ConfigError(problems)
    return model


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (RFC 8259); write a number or leave the field out")
