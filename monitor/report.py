"""The human-readable analysis reports of monitor's kinds, and the layout every kind's report extends.

Data quality: summary, violations, drift table, per-feature distribution charts. Model quality: its metrics against
the baseline's and the constraint thresholds, the confusion matrices, and the ROC and precision-recall curves of
binary models. Both are inline SVG drawn here, no script. A model-quality window estimated without labels also
lists each metric's estimate, band and calibration, and its realised value once labels exist. A kind registered by
another domain (``monitor.kinds``) brings its own renderer; ``generic`` is the report of a kind without one.

Category values, feature names and class labels come from captured traffic, so nothing here builds markup:
Python computes the chart geometry as numbers and plain-text labels, and the autoescaped template emits
every element. (An earlier version concatenated SVG and marked it safe; a captured value
``</title><img onerror=…>`` ran script in the page.)"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlgov.web import templates
from monitor.engine import histogram
from monitor.engine.drift import judged as has_verdict

TEMPLATES = Path(__file__).parent / "templates"
"""The layout (``analysis_base.html``) that other domains' report templates extend."""
_env = templates(TEMPLATES)

BAR_STEP, BAR_WIDTH, CHART_HEIGHT, PAD, MAX_CATEGORIES = 36, 12, 160, 20, 20
LABEL_CHARS = 6   # what fits under a pair of bars at 9 px
MAX_NUMERIC_BUCKETS = 20
PLOT, PLOT_PAD, MAX_CURVE_POINTS = 240, 36, 300


@dataclass(frozen=True)
class Bar:
    cls: str         # "base" or "cur"
    x: float
    y: float
    height: float
    title: str       # plain text; the template escapes it


@dataclass(frozen=True)
class Label:
    x: float
    text: str
    full: str
    """The whole label (``text`` is cut to fit under its bars; the full one is its tooltip)."""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    axis_y: int
    bar_width: int
    bars: list[Bar]
    labels: list[Label]
    note: str = ""   # how the bars were binned, when it is not simply each sketch's own buckets


@dataclass(frozen=True)
class Series:
    cls: str          # "base" or "cur"
    who: str          # "baseline" or "current"
    shares: list[float]


def number(value: Any) -> float | None:
    """A stored metric as a float, None for what is not a finite number (null, "NaN", a curve, a flag)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _shares(counts: Sequence[float] | np.ndarray) -> list[float]:
    total = float(np.sum(counts))
    return [float(c) / total if total else 0.0 for c in counts]


def _bars_chart(labels: list[str], tips: list[str], series: list[Series], note: str = "") -> Chart:
    """Side-by-side bars, one pair per label, heights relative to the tallest share."""
    h = CHART_HEIGHT
    top = max([s for one in series for s in one.shares] + [1e-9])
    bars: list[Bar] = []
    marks: list[Label] = []
    for i, (lab, tip) in enumerate(zip(labels, tips, strict=True)):
        x = PAD + i * BAR_STEP
        for one in series:
            j = 0 if one.cls == "base" else 1
            share = one.shares[i]
            bh = round(share / top * (h - 10), 1)
            bars.append(Bar(one.cls, x + j * (BAR_WIDTH + 2), round(h - bh, 1), bh, f"{one.who} {tip}: {share:.1%}"))
        marks.append(Label(x + BAR_WIDTH + 1, lab if len(lab) <= LABEL_CHARS else lab[:LABEL_CHARS - 1] + "…", lab))
    return Chart(width=BAR_STEP * len(labels) + 2 * PAD, height=h + 40, axis_y=h + 14, bar_width=BAR_WIDTH,
                 bars=bars, labels=marks, note=note)


def _binning_note(b: histogram.Binned) -> str:
    if b.baseline is None or b.current is None:
        return ""
    parts = []
    if b.widened > 0:
        parts.append(f"Baseline's buckets, widened by {b.widened} to cover the current range.")
    elif b.widened < 0:
        parts.append(f"The current range lies far from the baseline's: both re-binned onto {len(b.edges) - 1} "
                     "equal buckets over both ranges.")
    if b.current_rebinned:
        parts.append("Current counts re-binned from its KLL sketch: " + (
            "exact (it holds every value)." if b.current_exact else "within about 0.2 points per bar."))
    return " ".join(parts)


def _numeric_chart(baseline: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> Chart | None:
    """Both distributions on one set of edges (the baseline's, widened to the current range)."""
    b = histogram.numeric(baseline, current, MAX_NUMERIC_BUCKETS)
    if b is None:
        return None
    e = b.edges
    labels = [f"{x:.3g}" for x in e[:-1]]
    tips = [f"{lo:.3g} to {hi:.3g}" for lo, hi in itertools.pairwise(e)]
    series = [Series(cls, who, _shares(c)) for cls, who, c in (("base", "baseline", b.baseline),
                                                                 ("cur", "current", b.current)) if c is not None]
    return _bars_chart(labels, tips, series, _binning_note(b))


def _categories(feature: Mapping[str, Any] | None) -> list[tuple[str, float]]:
    if feature is None:
        return []
    if "numerical_statistics" in feature:
        buckets = feature["numerical_statistics"].get("distribution", {}).get("kll", {}).get("buckets", [])
        return [(f"{b['lower_bound']:.3g}", float(b["count"])) for b in buckets]
    if "string_statistics" in feature:
        buckets = feature["string_statistics"].get("distribution", {}).get("categorical", {}).get("buckets", [])
        return [(str(b["value"]), float(b["count"])) for b in buckets[:MAX_CATEGORIES]]
    return []


def chart(baseline: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> Chart | None:
    """Side-by-side bars of baseline vs current shares (each normalised to its own total), as geometry.

    Numeric features share one set of bucket edges; categories are matched by value (the baseline's, then the
    window's new ones)."""
    numeric = [f.get("numerical_statistics") for f in (baseline, current) if f is not None]
    if numeric and all(n is not None for n in numeric):
        return _numeric_chart(baseline.get("numerical_statistics") if baseline else None,
                              current.get("numerical_statistics") if current else None)
    base, cur = _categories(baseline), _categories(current)
    labels = list(dict.fromkeys([lab for lab, _ in base] + [lab for lab, _ in cur]))[:MAX_CATEGORIES]
    if not labels:
        return None
    bt = sum(c for _, c in base) or 1.0
    ct = sum(c for _, c in cur) or 1.0
    bmap, cmap = dict(base), dict(cur)
    return _bars_chart(labels, labels, [Series("base", "baseline", [bmap.get(lab, 0) / bt for lab in labels]),
                                        Series("cur", "current", [cmap.get(lab, 0) / ct for lab in labels])])


# --- model quality ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    cls: str         # "base", "cur" or "ref" (the chance line)
    points: str      # "x,y x,y …" in SVG coordinates
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    text: str
    anchor: str
    upright: bool = False   # the y axis's title, turned to read bottom to top


@dataclass(frozen=True)
class Plot:
    id: str
    title: str
    caption: str
    size: int
    lines: list[Line]
    ticks: list[Tick]
    frame: tuple[float, float, float, float]   # x, y, width, height of the unit square


def _points(xs: Sequence[float], ys: Sequence[float]) -> str:
    """Unit-square points in SVG coordinates (y up), at most MAX_CURVE_POINTS of them, ends kept."""
    n = min(len(xs), len(ys))
    idx: list[int] = np.unique(np.round(np.linspace(0, n - 1, min(n, MAX_CURVE_POINTS))).astype(int)).tolist()
    return " ".join(f"{PLOT_PAD + float(xs[i]) * PLOT:.1f},{PLOT_PAD / 2 + (1 - float(ys[i])) * PLOT:.1f}"
                    for i in idx)


Curve = tuple[str, str, list[float], list[float]]   # css class, who, xs, ys


def _plot(pid: str, title: str, caption: str, x_label: str, y_label: str, curves: list[Curve],
          chance: tuple[list[float], list[float]] | None) -> Plot:
    lines = [Line("ref", _points(*chance), "chance")] if chance else []
    lines += [Line(cls, _points(xs, ys), who) for cls, who, xs, ys in curves]
    top, left = PLOT_PAD / 2, PLOT_PAD
    ticks = [Tick(left + v * PLOT, top + PLOT + 14, f"{v:g}", "middle") for v in (0, 0.5, 1)]
    ticks += [Tick(left - 4, top + (1 - v) * PLOT + 3, f"{v:g}", "end") for v in (0, 0.5, 1)]
    ticks += [Tick(left + PLOT / 2, top + PLOT + 30, x_label, "middle"),
              Tick(left - 24, top + PLOT / 2, y_label, "middle", upright=True)]
    return Plot(pid, title, caption, PLOT + 2 * PLOT_PAD, lines, ticks, (left, top, PLOT, PLOT))


def _curve(metrics: Mapping[str, Any] | None, name: str, x: str, y: str) -> tuple[list[float], list[float]] | None:
    value = (metrics or {}).get(name, {}).get("value")
    if not isinstance(value, dict) or not value.get(x) or not value.get(y):
        return None
    return [float(v) for v in value[x]], [float(v) for v in value[y]]


def _curves(base: Mapping[str, Any] | None, cur: Mapping[str, Any] | None) -> list[Plot]:
    """ROC and precision-recall curves of a binary model, window over baseline (as statistics.json stores them)."""
    plots = []
    for pid, title, name, x, y, xl, yl, chance in (
            ("roc", "ROC curve", "receiver_operating_characteristic_curve", "false_positive_rates",
             "true_positive_rates", "false positive rate", "true positive rate", ([0.0, 1.0], [0.0, 1.0])),
            ("pr", "Precision-recall curve", "precision_recall_curve", "recalls", "precisions", "recall", "precision",
             None)):
        found = [(cls, who, *c) for cls, who, m in (("base", "baseline", base), ("cur", "current", cur))
                 if (c := _curve(m, name, x, y)) is not None]
        aucs = [f"{who} {auc:.3g}" for who, m in (("baseline", base), ("this window", cur))
                if pid == "roc" and (auc := number((m or {}).get("auc", {}).get("value"))) is not None]
        if found:
            plots.append(_plot(pid, title, f"AUC: {', '.join(aucs)}" if aucs else "", xl, yl, found, chance))
    return plots


def _matrix(value: Any, classes: list[str]) -> list[list[int]] | None:
    if not isinstance(value, dict):
        return None
    return [[int(value.get(a, {}).get(b, 0)) for b in classes] for a in classes]


def quality_view(rep: Mapping[str, Any]) -> dict[str, Any] | None:
    """Model-quality statistics of the window beside the baseline's and the constraint thresholds, as rows."""
    stats = rep.get("statistics")
    key = next((k for k in stats or {} if k.endswith("_metrics")), None)
    if stats is None or key is None:
        return None
    cur: dict[str, Any] = stats[key]
    base: dict[str, Any] = (rep.get("baseline_statistics") or {}).get(key, {})
    ckey = key.replace("_metrics", "_constraints")
    limits: dict[str, Any] = (rep.get("constraints") or {}).get(ckey, {})
    violated = {v.get("metric_name") for v in rep.get("violations", [])}
    metrics = []
    for name in dict.fromkeys([*cur, *base]):
        if name.endswith("_best_constant_classifier"):
            continue
        if isinstance(cur.get(name, base.get(name, {})).get("value"), dict):
            continue   # curves and matrices are drawn, not listed
        value, before = number(cur.get(name, {}).get("value")), number(base.get(name, {}).get("value"))
        limit = limits.get(name, {})
        metrics.append({"name": name, "current": value, "baseline": before,
                        "std": number(cur.get(name, {}).get("standard_deviation")),
                        "best_constant": number(cur.get(f"{name}_best_constant_classifier", {}).get("value")),
                        "threshold": number(limit.get("threshold")), "operator": limit.get("comparison_operator"),
                        "violated": name in violated})
    matrices = [(who, cm) for who, cm in (("this window", cur.get("confusion_matrix", {}).get("value")),
                                          ("baseline", base.get("confusion_matrix", {}).get("value")))
                if isinstance(cm, dict)]
    classes = list(dict.fromkeys(str(c) for _, cm in matrices for row in (cm, *cm.values()) for c in row))
    confusion = [{"who": who, "rows": _matrix(cm, classes)} for who, cm in matrices]
    return {"problem": key.removesuffix("_metrics"), "metrics": metrics, "classes": classes,
            "confusion": confusion, "curves": _curves(base, cur)}


def estimate_view(rep: Mapping[str, Any]) -> dict[str, Any] | None:
    """The window's label-free estimate (estimate.json) as rows: per metric the estimate, its band, how scores
    were calibrated (or which loss model estimated it), and once labels exist the realised value and whether it
    fell in the band. None when the window was not estimated."""
    est = rep.get("estimate")
    if not isinstance(est, Mapping) or not isinstance(est.get("estimated"), Mapping):
        return None
    rows = []
    for name, e in est["estimated"].items():
        if not isinstance(e, Mapping):
            continue
        cal: Mapping[str, Any] = e["calibrated"] if isinstance(e.get("calibrated"), Mapping) else {}
        raw, fixed = number(cal.get("ece_raw")), number(cal.get("ece_calibrated"))
        if cal.get("loss_model"):
            how = f"loss model: {cal['loss_model']}"
        elif cal.get("applied"):
            how = f"{cal.get('method')}" + (f" (ECE {raw:.3g} → {fixed:.3g})" if raw is not None and fixed is not None
                                            else "")
        else:
            how = "raw scores" + (f" (ECE {raw:.3g})" if raw is not None else "")
        inside = e.get("within_band")
        rows.append({"name": str(name), "estimate": number(e.get("estimate")), "lower": number(e.get("lower")),
                     "upper": number(e.get("upper")), "calibration": how,
                     "realised": number(e.get("realised", e.get("realized"))),
                     "within_band": inside if isinstance(inside, bool) else None})
    decisions: Mapping[str, Any] = est["decisions"] if isinstance(est.get("decisions"), Mapping) else {}
    return {"rows": rows, "problem": str(est.get("problem_type", "")), "labelled": est.get("labelled_rows"),
            "total": est.get("rows"), "threshold": number(est.get("threshold")),
            "decisions": [f"{k.replace('_', ' ')}: {v}" for k, v in decisions.items()]}


# --- rendering --------------------------------------------------------------------------------------------------

def data_quality(rep: Mapping[str, Any]) -> str:
    base = {f["name"]: f for f in rep.get("baseline_statistics", {}).get("features", [])}
    cur = {f["name"]: f for f in rep.get("statistics", {}).get("features", [])}
    drift = {d["feature"]: d for d in rep.get("drift", {}).get("features", [])}
    names = list(dict.fromkeys(list(base) + list(cur)))
    # "judged": a small-sample or valueless feature's drifted=False is no verdict, and must not read "ok"
    features = [{"name": n, "drift": drift.get(n), "judged": n in drift and has_verdict(drift[n]),
                 "chart": chart(base.get(n), cur.get(n)),
                 "violations": [v for v in rep["violations"] if v.get("feature_name") == n]} for n in names]
    return _env.get_template("data_quality.html").render(r=rep, features=features,
                                                         summary=rep.get("drift", {}).get("summary", {}))


def model_quality(rep: Mapping[str, Any]) -> str:
    return _env.get_template("model_quality.html").render(r=rep, quality=quality_view(rep),
                                                          estimate=estimate_view(rep))


def generic(rep: Mapping[str, Any]) -> str:
    """The report of a kind that brings no renderer of its own: status, window and violations."""
    return _env.get_template("analysis_base.html").render(r=rep, heading=f"{rep.get('kind', 'Monitoring')} analysis")
