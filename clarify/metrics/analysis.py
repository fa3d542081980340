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
    y = bias.positive(label_col.to_numpy(), spec)
    yhat = None
    if post:
        pcol = cols["predicted_label"]
        if pcol.dtype.kind == "f" and not isinstance(spec, list):
            yhat = pcol.to_numpy(dtype=float) > float(spec)
        elif pcol.dtype.kind == "f" and set(np.unique(pcol.dropna())) - {0.0, 1.0}:
            threshold = cfg.probability_threshold if cfg.probability_threshold is not None else 0.5
            yhat = pcol.to_numpy(dtype=float) > threshold
        else:
            yhat = bias.positive(pcol.to_numpy(), spec)
    group = cols["group_variable"].to_numpy() if "group_variable" in cols else None
    excluded = {cfg.label, cfg.predicted_label, cfg.group_variable, *(cfg.excluded_columns or [])}
    out: dict[str, Any] = {"version": "1.0"}
    sections = {"pre_training_bias_metrics": pre, "post_training_bias_metrics": post}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k, v in sections.items() if v}
    for i, f in enumerate(cfg.facet):
        name = f.name_or_index
        values = cols[f"facet.{i}.name_or_index"]
        for text, sensitive in facet_groups(values, f.value_or_threshold):
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
                    feats = df[[c for c in df.columns if c not in excluded and c != name
                                and df[c].dtype.kind in "fiub"]].to_numpy(dtype=float)
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


