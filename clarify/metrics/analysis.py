"""SageMaker's analysis_config.json in, analysis.json out (bias sections), from a table of columns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from clarify.metrics import bias
from clarify.metrics.config import AnalysisConfig, ConfigError, parse_config

__all__ = ["ConfigError", "analyze", "facet_groups", "metric_entry", "metric_value", "parse_config"]


def _column(df: pd.DataFrame, ref: Any, what: str) -> pd.Series:
    if isinstance(ref, int) and not isinstance(ref, bool):
        if not 0 <= ref < df.shape[1]:
            raise ConfigError([{"field": what, "message": f"index {ref} is outside the {df.shape[1]} columns"}])
        return df.iloc[:, ref]
    if ref not in df.columns:
        raise ConfigError([{"field": what, "message": f"{ref!r} is not a column (columns: {list(df.columns)[:20]})"}])
    return df[ref]


def _columns(df: pd.DataFrame, refs: dict[str, Any]) -> dict[str, pd.Series]:
    """Each named column, or one ConfigError listing every reference that is not in the data."""
    out, problems = {}, []
    for field, ref in refs.items():
        try:
            out[field] = _column(df, ref, field)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return out


def _methods(spec: Any, allowed: tuple[str, ...]) -> list[str]:
    if spec is None:
        return []
    return list(allowed) if spec.methods == "all" else list(spec.methods)


def facet_groups(values: pd.Series, spec: Any) -> list[tuple[str, np.ndarray]]:
    """(label for analysis.json, boolean sensitive mask) for each facet group to report."""
    if spec is None:
        uniq = values.dropna().unique()
        return [(str(u), (values == u).to_numpy()) for u in sorted(uniq, key=str)]
    if isinstance(spec, list):
        return [(",".join(str(v) for v in spec), bias.positive(values.to_numpy(), spec))]
    thr = float(spec)
    nums = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    top = float(np.nanmax(nums)) if len(nums) else thr
    return [(f"({thr}, {top}]", nums > thr)]


MAX_FACET_GROUPS = 1000
"""A facet without value_or_threshold reports each of its values as a group; more than this is a continuous column
(one group per row took minutes) and needs a threshold, as SageMaker Clarify requires for continuous facets."""


def some_values(col: pd.Series) -> str:
    """A few of a column's values, for a message."""
    values = [str(v) for v in col.dropna().unique()[:6]]
    return ", ".join(values[:5]) + (", …" if len(values) > 5 else "") if values else "no values"


def _is(spec: Any) -> str:
    return f"is one of {spec}" if isinstance(spec, list) else f"is above the threshold {spec}"


def _spelt_apart(pred: pd.Series, labels: pd.Series) -> bool:
    """Predictions that cannot be labels: text against numbers (or the reverse), or text sharing no value with
    the labels'. All-negative predictions spelt as labels are are a real (if alarming) answer."""
    numeric = pred.dtype.kind in "biuf", labels.dtype.kind in "biuf"
    if numeric[0] != numeric[1]:
        return True
    return not numeric[0] and not set(pred.astype(str)) & set(labels.astype(str))


def check_labels(col: pd.Series, spec: Any, field: str, what: str) -> None:
    """Labels that can be read for ``spec``: none empty (an empty one counted as negative), numbers for a
    threshold (text made a 500)."""
    empty = int(col.isna().sum())
    if empty:
        raise ConfigError([{"field": field, "message": (
            f"{empty} row(s) have no {what}: drop or fill them (an empty {what} is neither positive nor negative)")}])
    if not isinstance(spec, list) and col.dtype.kind not in "biuf" and \
            pd.to_numeric(col, errors="coerce").isna().any():
        raise ConfigError([{"field": "label_values_or_threshold", "message": (
            f"{spec!r} is a threshold, but the {what} column holds text ({some_values(col)}): list the positive label "
            "values instead, e.g. [\"yes\"]")}])


def unfilled(frame: pd.DataFrame, *, empty_allowed: bool = False) -> tuple[str, int, bool] | None:
    """The first numeric column holding a value a model cannot compute on: (its name, how many such values, whether
    one is empty rather than infinite); None when every value is finite (or empty, with ``empty_allowed``)."""
    values = frame.to_numpy(dtype=float)
    bad = np.isinf(values) if empty_allowed else ~np.isfinite(values)
    if not bad.any():
        return None
    at = int(np.argmax(bad.any(axis=0)))
    return str(frame.columns[at]), int(bad[:, at].sum()), bool(np.isnan(values[bad[:, at], at]).any())


def _check_filled(frame: pd.DataFrame) -> None:
    """The flip test's nearest neighbours need every feature of every row (an empty one was a 500)."""
    found = unfilled(frame)
    if found is None:
        return
    column, count, empty = found
    state = f"is empty in {count} row(s): fill the features" if empty else \
        f"is infinite in {count} row(s): clip the features"
    raise ConfigError([{"field": "methods.post_training_bias.methods", "message": (
        f"the flip test (FT) compares rows by every numeric feature, and {column!r} {state}, or leave FT out of "
        "the methods")}])


def _checked_groups(values: pd.Series, spec: Any, field: str) -> list[tuple[str, np.ndarray]]:
    """`facet_groups`, each of which must have rows in it and beside it: a value no row has (a typo, another
    spelling) or a group holding every row left every metric a number compared with nothing."""
    check_facet_column(values, spec, field)
    groups = facet_groups(values, spec)
    for text, sensitive in groups:
        check_group_size(int(sensitive.sum()), len(sensitive), str(values.name), text, field, some_values(values))
    return groups


def check_group_size(rows: int, total: int, facet: str, text: str, field: str, holds: str = "") -> None:
    """A facet group needs rows in it and rows beside it (`_checked_groups`; the partitioned path's merged
    counts too)."""
    if rows == 0:
        raise ConfigError([{"field": f"{field}.value_or_threshold", "message": (
            f"no row of facet {facet!r} is in the group {text}" + (f" (the column holds {holds})" if holds else "")
            + ": name a value the data has, spelt as it is spelt there")}])
    if rows == total:
        raise ConfigError([{"field": f"{field}.value_or_threshold", "message": (
            f"every row of facet {facet!r} is in the group {text}: there is no other group to compare it with")}])


def check_facet_column(values: pd.Series, spec: Any, field: str) -> None:
    """A facet column every row fills, with a threshold when it holds continuous numbers or too many values."""
    empty = int(values.isna().sum())
    if empty:
        raise ConfigError([{"field": f"{field}.name_or_index", "message": (
            f"facet {values.name!r} is empty in {empty} row(s): drop or fill them (they were counted in the "
            "other group)")}])
    if spec is None and values.dtype.kind == "f" and not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
        raise ConfigError([{"field": f"{field}.value_or_threshold", "message": (
            f"facet {values.name!r} holds continuous numbers: give a threshold in value_or_threshold "
            "(SageMaker Clarify requires one for continuous facets)")}])
    if spec is None and values.nunique() > MAX_FACET_GROUPS:
        raise ConfigError([{"field": f"{field}.value_or_threshold", "message": (
            f"facet {values.name!r} has {values.nunique()} distinct values, each of which would be a group: give "
            f"value_or_threshold (the sensitive values, or a threshold) for more than {MAX_FACET_GROUPS}")}])


def _label_text(spec: Any) -> str:
    return ",".join(str(v) for v in spec) if isinstance(spec, list) else str(spec)


def analyze(df: pd.DataFrame, config: dict[str, Any] | AnalysisConfig) -> dict[str, Any]:
    """analysis.json's bias sections; ConfigError lists every config problem (shape first, then the data's fit)."""
    cfg = parse_config(config)
    pre = _methods(cfg.methods.pre_training_bias, bias.PRE)
    post = _methods(cfg.methods.post_training_bias, bias.POST)
    spec = cfg.label_values_or_threshold
    refs = {"label": cfg.label, **{f"facet.{i}.name_or_index": f.name_or_index for i, f in enumerate(cfg.facet)}}
    if post:
        refs["predicted_label"] = cfg.predicted_label
    if cfg.group_variable is not None:
        refs["group_variable"] = cfg.group_variable
    cols = _columns(df, refs)
    label_col = cols["label"]
    check_labels(label_col, spec, "label", "label")
    y = bias.positive(label_col.to_numpy(), spec)
    if not y.any():
        raise ConfigError([{"field": "label_values_or_threshold", "message": (
            f"no row's label {_is(spec)} (the label column holds {some_values(label_col)}): name the positive label "
            "as the data spells it")}])
    yhat = None
    if post:
        pcol = cols["predicted_label"]
        check_labels(pcol, spec, "predicted_label", "predicted label")
        if pcol.dtype.kind == "f" and not isinstance(spec, list):
            yhat = pcol.to_numpy(dtype=float) > float(spec)
        elif pcol.dtype.kind == "f" and set(np.unique(pcol.dropna())) - {0.0, 1.0}:
            threshold = cfg.probability_threshold if cfg.probability_threshold is not None else 0.5
            yhat = pcol.to_numpy(dtype=float) > threshold
        else:
            yhat = bias.positive(pcol.to_numpy(), spec)
            if not yhat.any() and _spelt_apart(pcol, label_col):   # e.g. "yes" against 0/1: every one negative
                raise ConfigError([{"field": "predicted_label", "message": (
                    f"no predicted label {_is(spec)} (the column holds {some_values(pcol)}): predictions must be "
                    "spelt as the labels are, or be probabilities")}])
    group = cols["group_variable"].to_numpy() if "group_variable" in cols else None
    excluded = {cfg.label, cfg.predicted_label, cfg.group_variable, *(cfg.excluded_columns or [])}
    out: dict[str, Any] = {"version": "1.0"}
    sections = {"pre_training_bias_metrics": pre, "post_training_bias_metrics": post}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k, v in sections.items() if v}
    for i, f in enumerate(cfg.facet):
        name = f.name_or_index
        values = cols[f"facet.{i}.name_or_index"]
        for text, sensitive in _checked_groups(values, f.value_or_threshold, f"facet.{i}"):
            counts = bias.Counts.of(sensitive, y, yhat)
            if pre:
                cdd = bias.conditional_disparity(sensitive, y, group) if group is not None and "CDDL" in pre else None
                m = bias.pre_training(counts, cdd)
                results["pre_training_bias_metrics"].setdefault(str(name), []).append(
                    {"value_or_threshold": text, "metrics": _listed(m, pre)})
            if post:
                assert yhat is not None
                cdd = bias.conditional_disparity(sensitive, yhat, group) \
                    if group is not None and "CDDPL" in post else None
                ft = None
                if "FT" in post:
                    frame = df[[c for c in df.columns if c not in excluded and c != name
                                and df[c].dtype.kind in "fiub"]]
                    _check_filled(frame)
                    feats = frame.to_numpy(dtype=float)
                    ft = bias.flip_test(feats, sensitive, yhat) if feats.shape[1] else float("nan")
                m = bias.post_training(counts, y, yhat, cdd, ft)
                results["post_training_bias_metrics"].setdefault(str(name), []).append(
                    {"value_or_threshold": text, "metrics": _listed(m, post)})
    label_name = str(cfg.label) if not isinstance(cfg.label, int) else str(label_col.name)
    for key, facet_map in results.items():
        out[key] = {"label": label_name, "facets": facet_map, "label_value_or_threshold": _label_text(spec)}
    return out


UNDEFINED = {
    "CDDL": "CDDL needs group_variable in the config",
    "CDDPL": "CDDPL needs group_variable in the config",
    "FT": "the flip test needs rows in both groups and at least one numeric feature",
    "GE": "every prediction is a false negative, so the mean benefit is 0",
}
INFINITE = {"DI": "group a has no positive predictions (x/0)"}


def metric_entry(name: str, value: float | None) -> dict[str, Any]:
    """One analysis.json metric. Undefined or infinite values are JSON null with a `note` saying why (RFC 8259
    has no NaN or Infinity; the drift results of the monitor engine use the same null + note)."""
    entry: dict[str, Any] = {"name": name, "description": bias.DESCRIPTIONS[name]}
    if value is None or math.isnan(value):
        return {**entry, "value": None, "note": f"undefined: {UNDEFINED.get(name, 'no value for this data')}"}
    if math.isinf(value):
        why = INFINITE.get(name, "a rate in the formula divides by zero")
        return {**entry, "value": None, "note": f"{'' if value > 0 else '-'}Infinity: {why} "
                                                "(smclarify's x/0 = ±∞ convention)"}
    return {**entry, "value": float(value)}


def metric_value(entry: dict[str, Any]) -> float:
    """The float a stored metric stands for: null reads back as NaN, or ±inf when its note says so."""
    value = entry.get("value")
    if isinstance(value, int | float):
        return float(value)
    note = str(entry.get("note", ""))
    return -math.inf if note.startswith("-Infinity") else math.inf if note.startswith("Infinity") else math.nan


def _listed(values: dict[str, float], wanted: list[str]) -> list[dict[str, Any]]:
    return [metric_entry(k, values.get(k)) for k in sorted(wanted) if k in values or k in ("CDDL", "CDDPL", "FT")]


