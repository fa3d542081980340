"""SageMaker's analysis_config.json in, analysis.json out (bias sections), from a table of columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clarify.metrics import bias


class ConfigError(ValueError):
    """The analysis config does not fit the data (the message says which field)."""


def _column(df: pd.DataFrame, ref: Any, what: str) -> pd.Series:
    if isinstance(ref, int) and not isinstance(ref, bool):
        if not 0 <= ref < df.shape[1]:
            raise ConfigError(f"{what} index {ref} is outside the {df.shape[1]} columns")
        return df.iloc[:, ref]
    if ref not in df.columns:
        raise ConfigError(f"{what} {ref!r} is not a column (columns: {list(df.columns)[:20]})")
    return df[ref]


def _methods(cfg: dict[str, Any], section: str, allowed: tuple[str, ...]) -> list[str]:
    spec = (cfg.get("methods", {}).get(section) or {}).get("methods")
    if spec is None:
        return []
    if spec == "all":
        return list(allowed)
    if not isinstance(spec, list) or any(m not in allowed for m in spec):
        raise ConfigError(f"methods.{section}.methods must be 'all' or a list of {', '.join(allowed)}")
    return list(spec)


def _facet_groups(values: pd.Series, spec: Any) -> list[tuple[str, np.ndarray]]:
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


def analyze(df: pd.DataFrame, cfg: dict[str, Any]) -> dict[str, Any]:
    if "label" not in cfg:
        raise ConfigError("label is required (the label column's name or index)")
    if "label_values_or_threshold" not in cfg:
        raise ConfigError("label_values_or_threshold is required for bias metrics")
    facets = cfg.get("facet")
    if not isinstance(facets, list) or not facets or any("name_or_index" not in f for f in facets):
        raise ConfigError("facet must be a list of {name_or_index, value_or_threshold?}")
    pre = _methods(cfg, "pre_training_bias", bias.PRE)
    post = _methods(cfg, "post_training_bias", bias.POST)
    if not pre and not post:
        raise ConfigError("methods must ask for pre_training_bias and/or post_training_bias")
    spec = cfg["label_values_or_threshold"]
    label_col = _column(df, cfg["label"], "label")
    y = bias.positive(label_col.to_numpy(), spec)
    yhat = None
    if post:
        if "predicted_label" not in cfg:
            raise ConfigError("post-training metrics need predicted_label (a column of predicted labels or scores)")
        pcol = _column(df, cfg["predicted_label"], "predicted_label")
        if pcol.dtype.kind == "f" and not isinstance(spec, list):
            yhat = pcol.to_numpy(dtype=float) > float(spec)
        elif pcol.dtype.kind == "f" and set(np.unique(pcol.dropna())) - {0.0, 1.0}:
            yhat = pcol.to_numpy(dtype=float) > float(cfg.get("probability_threshold", 0.5))
        else:
            yhat = bias.positive(pcol.to_numpy(), spec)
    group = _column(df, cfg["group_variable"], "group_variable").to_numpy() if cfg.get("group_variable") else None
    excluded = {cfg["label"], cfg.get("predicted_label"), cfg.get("group_variable"), *cfg.get("excluded_columns", [])}
    out: dict[str, Any] = {"version": "1.0"}
    sections = {"pre_training_bias_metrics": pre, "post_training_bias_metrics": post}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k, v in sections.items() if v}
    for f in facets:
        name = f["name_or_index"]
        values = _column(df, name, "facet")
        for text, sensitive in _facet_groups(values, f.get("value_or_threshold")):
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
    label_name = str(cfg["label"]) if not isinstance(cfg["label"], int) else str(label_col.name)
    for key, facet_map in results.items():
        out[key] = {"label": label_name, "facets": facet_map, "label_value_or_threshold": _label_text(spec)}
    return out


def _listed(values: dict[str, float], wanted: list[str]) -> list[dict[str, Any]]:
    return [{"name": k, "description": bias.DESCRIPTIONS[k], "value": float(values.get(k, float("nan")))}
            for k in sorted(wanted) if k in values or k in ("CDDL", "CDDPL", "FT")]
