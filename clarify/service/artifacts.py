"""What both halves of the service read: registered versions' model artifacts (the bytes checked against the
registered sha256, loaded through ``clarify.loaders``' exact-type allow-lists unless an admin trusted them) and
uploaded CSV datasets."""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from clarify import loaders, sandbox
from clarify.errors import (
    ArtifactNotLoadable,
    ArtifactOutsideStore,
    ArtifactUntrusted,
    ConfigError,
    ConfigInvalid,
    DatasetUnreadable,
)
from clarify.metrics.analysis import some_values, unfilled
from clarify.metrics.shap_values import OutputSpaceUnavailable, ShapResult, in_model_order
from mlgov import inputs
from mlgov.errors import DomainError, Invalid
from mlgov.storage import ObjectStore
from registry import service as registry

CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)


def load_model(session: Session, store: ObjectStore, group: str, version: int, fmt: str,
               artifact: bytes | None) -> tuple[Any, bytes, str]:
    """The registered version's model: uploaded bytes or its artifact in mlgov's store, checked against the
    registered sha256, loaded through the exact-type allow-lists (anything else only if an admin trusted
    this exact artifact), with the bytes and the version row's id. Refusal is 403 naming the refused types; bytes
    of another format are 422."""
    _, v = registry.get_version(session, group, version)
    if artifact is None:
        key = store.key_of(v.artifact_uri)
        if key is None:
            raise ArtifactOutsideStore(v.artifact_uri)
        artifact = store.get(key)
    try:
        loaders.check_digest(artifact, v.artifact_sha256)
        return loaders.load(artifact, fmt, trusted=bool(v.artifact_trusted)), artifact, v.id
    except loaders.UntrustedModel as exc:
        raise ArtifactUntrusted(exc, group=group, version=version, artifact_sha256=v.artifact_sha256) from None
    except loaders.ModelLoadError as exc:
        raise ArtifactNotLoadable(exc) from None


def explained(model: Any, df: pd.DataFrame, **kwargs: Any) -> ShapResult:
    """SHAP of ``model`` on ``df`` (`sandbox.explain`); what the model cannot do on this data is a 422 saying
    what (a failed remote call keeps its own error)."""
    df = in_order(model, df)
    if kwargs.get("background") is not None:
        kwargs["background"] = kwargs["background"][list(df.columns)]
    try:
        return sandbox.explain(model, df, **kwargs)
    except DomainError:   # a remote call that failed: its message already says what failed, without the reply
        raise
    except OutputSpaceUnavailable as exc:
        raise Invalid(str(exc), possible=exc.possible,
                      fix=f"ask for one of {', '.join(exc.possible)}, or leave output_space out") from None
    except loaders.ModelLoadError as exc:   # the child's library failed on the model
        raise ArtifactNotLoadable(exc) from None
    except Exception as exc:
        what = str(exc) if isinstance(exc, sandbox.ModelFailed) else f"{type(exc).__name__}: {exc}"
        raise Invalid(f"the model could not be explained on this data: {what}",
                      fix="check the feature columns match the model's inputs") from None


def in_order(model: Any, df: pd.DataFrame) -> pd.DataFrame:
    """The feature table as the model reads it (`shap_values.in_model_order`): numbers, none infinite, and none
    empty unless the model takes empty values (XGBoost and LightGBM route them down their trees)."""
    try:
        df = in_model_order(model, df)
    except ValueError as exc:
        raise Invalid(str(exc), fix="send the columns the model was fitted on, named as they were then") from None
    text = [c for c in df.columns if df[c].dtype.kind not in "biuf"]
    if text:
        raise Invalid(f"feature {text[0]!r} holds text ({some_values(df[text[0]])}): the model takes numbers",
                      fix="encode it as the model expects, or leave the column out (a bias config: list it in "
                          "excluded_columns)")
    takes_empty = isinstance(model, sandbox.NativeModel) and model.fmt in ("xgboost", "lightgbm")
    found = unfilled(df, empty_allowed=takes_empty)
    if found is not None:
        raise Invalid(f"feature {found[0]!r} has {found[1]} {'infinite' if takes_empty else 'empty or infinite'} "
                      "value(s): the model's output for those rows would be undefined",
                      fix="fill or drop those rows first (as the model's own preprocessing would)")
    return df


def read_csv(data: bytes, headers: list[str] | None = None) -> pd.DataFrame:
    """An uploaded CSV: with a header row, or without one when the analysis config names the columns in
    ``headers`` (SageMaker's convention)."""
    inputs.check_csv(data, "the dataset")
    if headers and _first_row(data) == [h.strip().casefold() for h in headers]:
        shown = ", ".join(headers[:8]) + (", …" if len(headers) > 8 else "")
        raise Invalid(f"the dataset's first row repeats config.headers ({shown}): with `headers` set the file is "
                      "read without a header row (SageMaker's convention), so that row would be read as data and "
                      "turn numeric columns into text",
                      fix="drop one of the two: remove the header row from the file, or remove `headers` from "
                          "analysis_config.json (the file's header row then names the columns)")
    try:
        df = pd.read_csv(io.BytesIO(data), header=None if headers else "infer")
    except CSV_ERRORS as exc:
        raise DatasetUnreadable(exc) from None
    if df.empty:
        raise Invalid("the dataset has no rows", fix="upload at least one row")
    if headers:
        if len(headers) != df.shape[1]:
            raise ConfigInvalid(ConfigError([{"field": "headers", "message": f"lists {len(headers)} names for "
                                                                             f"{df.shape[1]} columns"}]))
        df.columns = headers
    return df


def _first_row(data: bytes) -> list[str]:
    """The first CSV record's fields, trimmed and case-folded (empty when the first line is not UTF-8)."""
    end = data.find(b"\n")
    try:
        line = data[: end if end >= 0 else len(data)].decode("utf-8-sig")
    except UnicodeDecodeError:
        return []
    return [f.strip().casefold() for f in next(csv.reader([line]), [])]
