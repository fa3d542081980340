"""Bias from partitions: per-partition group counts that merge into the analysis.json of the whole dataset.

Every pre- and post-training metric except the flip test is a function of counts: rows per (facet group, label,
predicted label), per (subgroup, facet group, outcome) for CDDL/CDDPL, and per benefit ŷ − y + 1 for GE. A
partition keeps those counts (never its rows); merged, they give exactly the counts of one pass over the whole
data, so every metric equals ``analysis.analyze`` on it (CDD and GE up to the order of a floating-point sum). The
flip test needs every row's features together (a kNN over group a): it is not computed from partitions and says so.

Two choices of ``analyze`` read the whole prediction column: a float column of only 0/1 is read as labels,
otherwise as probabilities. A partition counts both readings when it cannot tell, and the merged summary keeps the
one the whole column calls for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clarify.metrics import bias
from clarify.metrics.analysis import (
    _columns,
    _label_text,
    _listed,
    _methods,
    check_facet_column,
    check_group_size,
    check_labels,
    facet_groups,
    metric_entry,
)
from clarify.metrics.config import AnalysisConfig, ConfigError, parse_config

FT_NOTE = "not computed from partitions: the flip test needs every row's features together (MLGOV_COMPUTE=local)"
Cells = dict[str, np.ndarray]   # reading of the predictions → counts


def _add(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _add(out[k], v) if isinstance(v, dict) and k in out else out[k] + v if k in out else v
    return out


@dataclass
class BiasSummary:
    """Counts of one partition (or of merged partitions)."""

    rows: int = 0
    total: Cells = field(default_factory=dict)                      # reading → [label, predicted]
    groups: dict[tuple[int, str], Cells] = field(default_factory=dict)   # (facet, group) → reading → [label, pred]
    order: dict[int, list[str]] = field(default_factory=dict)       # facet → its groups, sorted as analyze does
    cdd: dict[tuple[int, str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    top: dict[int, float] = field(default_factory=dict)            # threshold facets: the largest value
    probabilities: bool = False                                      # a float prediction column held non-0/1 values
    label_name: str = ""

    def merge(self, o: BiasSummary) -> BiasSummary:
        order = {f: sorted(set(self.order.get(f, [])) | set(o.order.get(f, [])))
                 for f in {*self.order, *o.order}}
        top = {f: max(v for v in (self.top.get(f), o.top.get(f)) if v is not None) for f in {*self.top, *o.top}}
        return BiasSummary(self.rows + o.rows, _add(self.total, o.total), _add(self.groups, o.groups), order,
                           _add(self.cdd, o.cdd), top,
                           self.probabilities or o.probabilities, self.label_name or o.label_name)


def entropy(cells: np.ndarray) -> float:
    """GE from ``cells[label, predicted]``: benefit ŷ − y + 1 is 0 for (1, 0), 2 for (0, 1), 1 otherwise."""
    return bias.entropy_of_counts(np.array([cells[1, 0], cells[0, 0] + cells[1, 1], cells[0, 1]]))


def _readings(pcol: pd.Series, spec: Any, cfg: AnalysisConfig) -> tuple[dict[str, np.ndarray], bool]:
    """Each way ``analyze`` may read the predictions, and whether this partition shows probabilities."""
    if pcol.dtype.kind == "f" and not isinstance(spec, list):
        return {"threshold": pcol.to_numpy(dtype=float) > float(spec)}, False
    probs = pcol.dtype.kind == "f" and bool(set(np.unique(pcol.dropna())) - {0.0, 1.0})
    out = {"labels": bias.positive(pcol.to_numpy(), spec)}
    if pcol.dtype.kind == "f":
        threshold = cfg.probability_threshold if cfg.probability_threshold is not None else 0.5
        out["probabilities"] = pcol.to_numpy(dtype=float) > threshold
    return out, probs


def summarise(df: pd.DataFrame, config: dict[str, Any] | AnalysisConfig) -> BiasSummary:
    """One partition's counts (the columns ``analyze`` reads; ConfigError when the partition lacks one)."""
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
    check_labels(cols["label"], spec, "label", "label")   # what `analyze` checks of rows (groups: `analysis`)
    if post:
        check_labels(cols["predicted_label"], spec, "predicted_label", "predicted label")
    for i, f in enumerate(cfg.facet):
        check_facet_column(cols[f"facet.{i}.name_or_index"], f.value_or_threshold, f"facet.{i}")
    y = bias.positive(cols["label"].to_numpy(), spec)
    readings, probs = _readings(cols["predicted_label"], spec, cfg) if post else ({"none": y}, False)
    group = cols["group_variable"].astype(str).to_numpy() if "group_variable" in cols else None
    out = BiasSummary(rows=len(df), probabilities=probs, label_name=str(cols["label"].name))

    def cells(mask: np.ndarray | None, yhat: np.ndarray) -> np.ndarray:
        yy, pp = (y, yhat) if mask is None else (y[mask], yhat[mask])
        return np.bincount(yy.astype(np.int64) * 2 + pp.astype(np.int64), minlength=4).reshape(2, 2)

    def disparity(sensitive: np.ndarray, outcome: np.ndarray) -> dict[str, np.ndarray]:
        assert group is not None
        found: dict[str, np.ndarray] = {}
        for g in np.unique(group):
            m = group == g
            found[str(g)] = np.bincount(sensitive[m].astype(np.int64) * 2 + outcome[m].astype(np.int64),
                                        minlength=4).reshape(2, 2)
        return found

    out.total = {r: cells(None, yhat) for r, yhat in readings.items()}
    for i, f in enumerate(cfg.facet):
        values = cols[f"facet.{i}.name_or_index"]
        spec_f = f.value_or_threshold
        groups = facet_groups(values, spec_f)
        if spec_f is not None and not isinstance(spec_f, list):
            nums = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            if len(nums) and not np.all(np.isnan(nums)):
                out.top[i] = float(np.nanmax(nums))
            groups = [(f"> {float(spec_f)}", groups[0][1])]   # named once the largest value is known
        out.order[i] = [t for t, _ in groups]
        for text, sensitive in groups:
            out.groups[(i, text)] = {r: cells(sensitive, yhat) for r, yhat in readings.items()}
            if group is not None:
                if "CDDL" in pre:
                    out.cdd[(i, text, "label")] = disparity(sensitive, y)
                if "CDDPL" in post:
                    out.cdd.update({(i, text, r): disparity(sensitive, yhat) for r, yhat in readings.items()})
    return out


def _reading(s: BiasSummary) -> str:
    keys = set(s.total)
    for r in ("threshold", "none"):
        if r in keys:
            return r
    return "probabilities" if s.probabilities and "probabilities" in keys else "labels"


def _cdd(counts: dict[str, np.ndarray] | None) -> float | None:
    if counts is None:
        return None
    names = sorted(counts)
    return bias.disparity_of_counts(np.stack([counts[g] for g in names])) if names else 0.0


def analysis(s: BiasSummary, config: dict[str, Any] | AnalysisConfig) -> dict[str, Any]:
    """analysis.json's bias sections from merged counts (the shape ``analysis.analyze`` writes)."""
    cfg = parse_config(config)
    pre = _methods(cfg.methods.pre_training_bias, bias.PRE)
    post = _methods(cfg.methods.post_training_bias, bias.POST)
    r = _reading(s)
    if not s.total[r][1].sum():
        raise ConfigError([{"field": "label_values_or_threshold", "message": (
            f"no row's label is one of {cfg.label_values_or_threshold}: name the positive label as the data spells "
            "it") if isinstance(cfg.label_values_or_threshold, list) else (
            f"no row's label is above the threshold {cfg.label_values_or_threshold}")}])
    for i, f in enumerate(cfg.facet):
        for text in s.order.get(i, []):
            check_group_size(int(s.groups[(i, text)][r].sum()), int(s.total[r].sum()), str(f.name_or_index), text,
                             f"facet.{i}")
    grouped = cfg.group_variable is not None
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k, v in (
        ("pre_training_bias_metrics", pre), ("post_training_bias_metrics", post)) if v}
    for i, f in enumerate(cfg.facet):
        name = str(f.name_or_index)
        for text in s.order.get(i, []):
            d = s.groups[(i, text)][r]
            counts = bias.Counts.of_cells(np.stack([s.total[r] - d, d]))
            shown = text
            if text.startswith("> "):
                thr = float(text[2:])
                shown = f"({thr}, {s.top.get(i, thr)}]"
            if pre:
                cdd = _cdd(s.cdd.get((i, text, "label"), {} if grouped else None)) if "CDDL" in pre else None
                results["pre_training_bias_metrics"].setdefault(name, []).append(
                    {"value_or_threshold": shown, "metrics": _listed(bias.pre_training(counts, cdd), pre)})
            if post:
                cdd = _cdd(s.cdd.get((i, text, r), {} if grouped else None)) if "CDDPL" in post else None
                m = bias.post_training(counts, None, None, cdd, None, ge=entropy(s.total[r]))
                listed = [metric_entry(k, m.get(k)) if k != "FT" else
                          {"name": "FT", "description": bias.DESCRIPTIONS["FT"], "value": None, "note": FT_NOTE}
                          for k in sorted(post) if k in m or k in ("CDDL", "CDDPL", "FT")]
                results["post_training_bias_metrics"].setdefault(name, []).append(
                    {"value_or_threshold": shown, "metrics": listed})
    label_name = str(cfg.label) if not isinstance(cfg.label, int) else s.label_name
    out: dict[str, Any] = {"version": "1.0"}
    for key, facet_map in results.items():
        out[key] = {"label": label_name, "facets": facet_map,
                    "label_value_or_threshold": _label_text(cfg.label_values_or_threshold)}
    return out


def group_cells(s: BiasSummary, facet: int, text: str) -> np.ndarray:
    """``cells[group, label, predicted]`` of one facet group (group 1 is d), for resampling."""
    r = _reading(s)
    d = s.groups[(facet, text)][r]
    return np.stack([s.total[r] - d, d])


def summarise_captured(table: Any, *, config: dict[str, Any]) -> BiasSummary:
    """One row group of a captured window joined to its labels (``__label``) on a worker: the label read as the
    bias monitor reads it (numbers where they parse, text for listed label values), then ``summarise``."""
    df = table.to_pandas()
    df[config["label"]], spec = bias.captured_labels(df["__label"], config["label_values_or_threshold"])
    config = {**config, "label_values_or_threshold": spec}
    return summarise(df.drop(columns=[c for c in df.columns if c.startswith("__")]), config)


def summarise_table(table: Any, *, config: dict[str, Any]) -> BiasSummary:
    """One row group of an uploaded dataset on a worker."""
    return summarise(table.to_pandas(), config)
