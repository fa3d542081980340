"""The SageMaker documents users upload or edit (constraints.json), as typed shapes.

Baselines are judged by these files on every later run, so a wrong type (``"completeness": "x"``) must be
refused when the file arrives, with every problem listed, not discovered as a 500 in a scheduled execution.
Unknown keys are kept (SageMaker adds keys over time and users annotate their files); known keys must have
SageMaker's types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlgov.errors import Invalid, field_message, field_path

Ratio = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Switch = Literal["Enabled", "Disabled"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class DistributionConstraints(_Doc):
    perform_comparison: Switch | None = None
    comparison_threshold: Number | None = None
    comparison_method: Literal["Simple", "Robust"] | None = None
    categorical_comparison_threshold: Number | None = None
    categorical_drift_method: Literal["LInfinity", "ChiSquared"] | None = None


class MonitoringConfig(_Doc):
    evaluate_constraints: Switch | None = None
    emit_metrics: Switch | None = None
    datatype_check_threshold: Number | None = None
    domain_content_threshold: Number | None = None
    distribution_constraints: DistributionConstraints | None = None


class NumConstraints(_Doc):
    is_non_negative: bool | None = None


class StringConstraints(_Doc):
    domains: list[str] | None = None


class FeatureConstraints(_Doc):
    name: str = Field(min_length=1, max_length=1024)
    inferred_type: Literal["Integral", "Fractional", "String", "Unknown"] | None = None
    completeness: Ratio | None = None
    num_constraints: NumConstraints | None = None
    string_constraints: StringConstraints | None = None
    monitoringConfigOverrides: MonitoringConfig | None = None  # SageMaker spells it so


class DataQualityConstraints(_Doc):
    version: Number | None = None
    features: list[FeatureConstraints]
    monitoring_config: MonitoringConfig | None = None


class MetricConstraint(_Doc):
    threshold: Number
    comparison_operator: Literal["GreaterThanThreshold", "LessThanThreshold", "GreaterThanOrEqualToThreshold",
                                 "LessThanOrEqualToThreshold"]


class ModelQualityConstraints(_Doc):
    version: Number | None = None
    binary_classification_constraints: dict[str, MetricConstraint] | None = None
    multiclass_classification_constraints: dict[str, MetricConstraint] | None = None
    regression_constraints: dict[str, MetricConstraint] | None = None


Count = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]


class Common(_Doc):
    num_present: Count | None = None
    num_missing: Count | None = None


class KllBucket(_Doc):
    lower_bound: Number
    upper_bound: Number
    count: Number


class KllSketch(_Doc):
    parameters: dict[str, Number] | None = None
    data: list[list[Number]]


class Kll(_Doc):
    buckets: list[KllBucket] | None = None
    sketch: KllSketch | None = None


class NumericDistribution(_Doc):
    kll: Kll | None = None


class NumericalStatistics(_Doc):
    common: Common | None = None
    mean: Number | None = None
    sum: Number | None = None
    std_dev: Number | None = None
    min: Number | None = None
    max: Number | None = None
    distribution: NumericDistribution | None = None


class CategoricalBucket(_Doc):
    value: str | int | float | bool | None
    count: Number


class Categorical(_Doc):
    buckets: list[CategoricalBucket] | None = None


class StringDistribution(_Doc):
    categorical: Categorical | None = None


class StringStatistics(_Doc):
    common: Common | None = None
    distinct_count: Number | None = None
    distribution: StringDistribution | None = None


class FeatureStatistics(_Doc):
    name: str = Field(min_length=1, max_length=1024)
    inferred_type: Literal["Integral", "Fractional", "String", "Unknown"] | None = None
    numerical_statistics: NumericalStatistics | None = None
    string_statistics: StringStatistics | None = None


class Dataset(_Doc):
    item_count: Count | None = None


class DataQualityStatistics(_Doc):
    version: Number | None = None
    dataset: Dataset | None = None
    features: list[FeatureStatistics]


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": field_path(e), "message": field_message(e)} for e in exc.errors()]


def validate_constraints(doc: Any, kind: str) -> dict[str, Any]:
    """A constraints.json for a baseline of ``kind``, checked against SageMaker's shape; 422 lists every problem."""
    model: type[BaseModel] = ModelQualityConstraints if kind == "ModelQuality" else DataQualityConstraints
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        problems = _problems(exc)
        summary = "; ".join(f"{p['field'] or '(document)'}: {p['message']}" for p in problems[:5])
        raise Invalid(f"constraints.json does not match SageMaker's {kind} constraints shape: {summary}",
                      fix="start from GET …/constraints.json and change only values (numbers stay numbers)",
                      errors=problems) from None
    if kind == "ModelQuality" and not any(k.endswith("_constraints") and doc.get(k) for k in doc):
        raise Invalid("constraints.json has no *_constraints block",
                      fix="send binary_classification_constraints, multiclass_classification_constraints or "
                          "regression_constraints")
    return dict(doc)


def validate_statistics(doc: Any) -> dict[str, Any]:
    """A data-quality statistics.json, checked against SageMaker's shape; 422 lists every problem."""
    try:
        DataQualityStatistics.model_validate(doc)
    except ValidationError as exc:
        problems = _problems(exc)
        summary = "; ".join(f"{p['field'] or '(document)'}: {p['message']}" for p in problems[:5])
        raise Invalid(f"statistics.json does not match SageMaker's data-quality statistics shape: {summary}",
                      fix="upload statistics.json as written by SageMaker or mlgov (numbers stay numbers)",
                      errors=problems) from None
    return dict(doc)
