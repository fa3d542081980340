"""The human-readable analysis report: summary, violations, drift table, per-feature distribution charts
(inline SVG, no script) and, for model-quality analyses, the metrics and confusion matrix.

Category values, feature names and class labels come from captured traffic, so nothing here builds markup:
Python computes the chart geometry as numbers and plain-text labels, and the autoescaped template emits
every element. (An earlier version concatenated SVG and marked it safe; a captured value
``</title><img onerror=…>`` ran script in the page.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgov.web import templates

_env = templates(Path(__file__).parent / "templates")

BAR_STEP, BAR_WIDTH, CHART_HEIGHT, PAD, MAX_CATEGORIES = 36, 12, 160, 20, 20


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


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    axis_y: int
    bar_width: int
    bars: list[Bar]
    labels: list[Label]


def _bars(feature: dict[str, Any] | None) -> list[tuple[str, float]]:
    if feature is None:
        return []
    if "numerical_statistics" in feature:
        buckets = feature["numerical_statistics"].get("distribution", {}).get("kll", {}).get("buckets", [])
        return [(f"{b['lower_bound']:.3g}", float(b["count"])) for b in buckets]
    if "string_statistics" in feature:
        buckets = feature["string_statistics"].get("distribution", {}).get("categorical", {}).get("buckets", [])
        return [(str(b["value"]), float(b["count"])) for b in buckets[:MAX_CATEGORIES]]
    return []


def chart(baseline: dict[str, Any] | None, current: dict[str, Any] | None) -> Chart | None:
    """Side-by-side bars of baseline vs current shares (each normalised to its own total), as geometry."""
    base, cur = _bars(baseline), _bars(current)
    labels = [label for label, _ in (base or cur)]
    if not labels:
        return None
    bt = sum(c for _, c in base) or 1.0
    ct = sum(c for _, c in cur) or 1.0
    bmap, cmap = dict(base), dict(cur)
    if "string_statistics" in (current or baseline or {}):
        labels = list(dict.fromkeys(labels + [lab for lab, _ in cur]))[:MAX_CATEGORIES]
    h = CHART_HEIGHT
    top = max([bmap.get(lab, 0) / bt for lab in labels] + [cmap.get(lab, 0) / ct for lab in labels] + [1e-9])
    bars: list[Bar] = []
    marks: list[Label] = []
    for i, lab in enumerate(labels):
        x = PAD + i * BAR_STEP
        for j, (share, cls, who) in enumerate(((bmap.get(lab, 0) / bt, "base", "baseline"),
                                               (cmap.get(lab, 0) / ct, "cur", "current"))):
            bh = round(share / top * (h - 10), 1)
            bars.append(Bar(cls, x + j * (BAR_WIDTH + 2), round(h - bh, 1), bh, f"{who} {lab}: {share:.1%}"))
        marks.append(Label(x + BAR_WIDTH + 1, lab[:6]))
    return Chart(width=BAR_STEP * len(labels) + 2 * PAD, height=h + 40, axis_y=h + 14, bar_width=BAR_WIDTH,
                 bars=bars, labels=marks)


def _quality(rep: dict[str, Any]) -> dict[str, Any] | None:
    """Model-quality statistics as rows for the template: scalar metrics and the confusion matrix."""
    stats = rep.get("statistics") if rep.get("kind") == "ModelQuality" else None
    key = next((k for k in stats or {} if k.endswith("_metrics")), None)
    if stats is None or key is None:
        return None
    metrics, matrix = [], None
    for name, m in stats[key].items():
        value = m.get("value")
        if name == "confusion_matrix" and isinstance(value, dict):
            classes = list(value)
            matrix = {"classes": classes, "rows": [[value[a].get(b, 0) for b in classes] for a in classes]}
        elif isinstance(value, int | float) and not isinstance(value, bool):
            std = m.get("standard_deviation")
            metrics.append({"name": name, "value": value, "std": std if isinstance(std, int | float) else None})
    return {"problem": key.removesuffix("_metrics"), "metrics": metrics, "confusion": matrix}


def render(rep: dict[str, Any]) -> str:
    base = {f["name"]: f for f in rep.get("baseline_statistics", {}).get("features", [])}
    cur = {f["name"]: f for f in rep.get("statistics", {}).get("features", [])}
    drift = {d["feature"]: d for d in rep.get("drift", {}).get("features", [])}
    names = list(dict.fromkeys(list(base) + list(cur)))
    features = [{"name": n, "drift": drift.get(n), "chart": chart(base.get(n), cur.get(n)),
                 "violations": [v for v in rep["violations"] if v.get("feature_name") == n]} for n in names]
    return _env.get_template("analysis.html").render(r=rep, features=features, quality=_quality(rep),
                                                      summary=rep.get("drift", {}).get("summary", {}))
