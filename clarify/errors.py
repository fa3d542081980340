"""Clarify's errors (mapped to HTTP by mlgov.errors): analysis configs that do not validate, datasets that do not
read, model artifacts that cannot or may not be loaded."""

from __future__ import annotations

from clarify.loaders import FORMATS, ModelLoadError, UntrustedModel
from clarify.metrics.config import ConfigError
from mlgov.errors import Forbidden, Invalid

__all__ = ["ArtifactNotLoadable", "ArtifactOutsideStore", "ArtifactUntrusted", "ConfigError", "ConfigInvalid",
           "DatasetUnreadable"]


class ConfigInvalid(Invalid):
    """A 422 listing every problem of an analysis config (``ConfigError.problems``), each with its field path."""

    def __init__(self, exc: ConfigError) -> None:
        super().__init__(f"analysis config: {exc}", errors=exc.problems,
                         fix="correct each listed field of analysis_config.json (SageMaker Clarify's format: label, "
                             "label_values_or_threshold, facet, methods.pre_training_bias/post_training_bias)")


class DatasetUnreadable(Invalid):
    def __init__(self, exc: Exception) -> None:
        super().__init__(f"the dataset is not a readable CSV: {exc}", fix="upload a CSV with a header row")


class ArtifactOutsideStore(Invalid):
    def __init__(self, uri: str) -> None:
        super().__init__(f"the artifact {uri} is outside mlgov's object store",
                         fix="upload it as the `model` part (it must match the registered sha256)")


class ArtifactUntrusted(Forbidden):
    """403 naming the refused types; the fix says how to save the model safely, or how an admin trusts it."""

    def __init__(self, exc: UntrustedModel, *, group: str, version: int, artifact_sha256: str | None) -> None:
        super().__init__(str(exc), untrusted_types=exc.types, artifact_sha256=artifact_sha256,
                         fix="save the model without functions stored as data (plain scikit-learn estimators) "
                             "or in a native format (xgboost, lightgbm, onnx); or, if you vouch for this exact "
                             f"artifact, have an admin POST /api/v1/model-groups/{group}/versions/{version}"
                             "/artifact-trust")


class ArtifactNotLoadable(Invalid):
    """Bytes that are not the named format, or do not hash to the registered sha256."""

    def __init__(self, exc: ModelLoadError) -> None:
        super().__init__(str(exc), fix="upload the registered artifact and name its format in model_format "
                                       f"({', '.join(FORMATS)})")
