"""The human-readable analysis report: summary, violations, drift table and per-feature distribution charts
(inline SVG, so the page is one self-contained file that renders without scripts or network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"]))


def _bars(feature: dict[str, Any] | None) -> list[tuple[str, float]]:
    if feature is None:
        return []
    if "numerical_statistics" in feature:
        buckets = feature["numerical_statistics"].get("distribution", {}).get("kll", {}).get("buckets", [])
        return [(f"{b['lower_bound']:.3g}", float(b["count"])) for b in buckets]
    if "string_statistics" in feature:
        buckets = feature["string_statistics"].get("distribution", {}).get("categorical", {}).get("buckets", [])
        return [(str(b["value"]), float(b["count"])) for b in buckets[:20]]
    return []


def chart(baseline: dict[str, Any] | None, current: dict[str, Any] | None) -> Markup:
    """Side-by-side bars of baseline vs current shares (each normalised to its own total)."""
    base, cur = _bars(baseline), _bars(current)
    labels = [label for label, _ in (base or cur)]
    if not labels:
        return Markup("<p class='muted'>no distribution</p>")
    bt = sum(c for _, c in base) or 1.0
    ct = sum(c for _, c in cur) or 1.0
    bmap, cmap = dict(base), dict(cur)
    if "string_statistics" in (current or baseline or {}):
        labels = list(dict.fromkeys(labels + [lab for lab, _ in cur]))[:20]
    w, h, pad = 36 * len(labels) + 40, 160, 20
    top = max([bmap.get(lab, 0) / bt for lab in labels] + [cmap.get(lab, 0) / ct for lab in labels] + [1e-9])
    parts = [f"<svg role='img' width='{w}' height='{h + 40}' viewBox='0 0 {w} {h + 40}' class='chart'>"]
    for i, lab in enumerate(labels):
        x = pad + i * 36
        for j, (share, cls) in enumerate(((bmap.get(lab, 0) / bt, "base"), (cmap.get(lab, 0) / ct, "cur"))):
            bh = share / top * (h - 10)
            parts.append(f"<rect class='{cls}' x='{x + j * 14}' y='{h - bh:.1f}' width='12' height='{bh:.1f}'>"
                         f"<title>{'baseline' if cls == 'base' else 'current'} {lab}: {share:.1%}</title></rect>")
        label = Markup.escape(lab[:6])
        parts.append(f"<text x='{x + 13}' y='{h + 14}' text-anchor='middle'>{label}</text>")
    parts.append("</svg>")
    # Every interpolated text above is escaped (labels) or a number we formatted, so the SVG is safe markup.
    return Markup("".join(parts))  # noqa: S704


def render(rep: dict[str, Any]) -> str:
    base = {f["name"]: f for f in rep.get("baseline_statistics", {}).get("features", [])}
    cur = {f["name"]: f for f in rep.get("statistics", {}).get("features", [])}
    drift = {d["feature"]: d for d in rep.get("drift", {}).get("features", [])}
    names = list(dict.fromkeys(list(base) + list(cur)))
    features = [{"name": n, "drift": drift.get(n), "chart": chart(base.get(n), cur.get(n)),
                 "violations": [v for v in rep["violations"] if v["feature_name"] == n]} for n in names]
    return _env.get_template("analysis.html").render(r=rep, features=features,
                                                      summary=rep.get("drift", {}).get("summary", {}))
