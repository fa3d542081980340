"""The reports of Clarify's monitor kinds, drawn for monitor's report route (``clarify.kinds`` registers them):
bias drift (per-facet metrics of the window against the baseline, the allowed range and the verdict of each) and
feature-attribution drift (baseline vs window attribution bars, ranks and the nDCG against its threshold).

The templates extend monitor's analysis layout. Facet names, facet values and feature names come from users'
data, so Python computes rows and bar lengths as plain values and the autoescaped templates emit every element.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clarify.metrics.analysis import metric_value
from clarify.metrics.drift import NOT_DRIFT_CHECKED, allowed_range, bias_violation, matching_group
from mlgov.web import templates
from monitor import report as monitor_report

_env = templates(Path(__file__).parent / "templates", monitor_report.TEMPLATES)

BAR_LENGTH = 260
SECTION = "post_training_bias_metrics"


def _shown(entry: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """A stored metric as (finite value or None, text for a value that is not finite)."""
    if entry is None:
        return None, "—"
    v = metric_value(dict(entry))
    if math.isfinite(v):
        return v, ""
    return None, "−∞" if v < 0 else "∞" if v > 0 else f"n/a{': ' + str(entry['note']) if entry.get('note') else ''}"


def _verdict(name: str, base: float | None, cur: float | None, violation: Mapping[str, Any] | None
             ) -> tuple[str, str]:
    """(text, css class) by the rule ``bias_window`` applies: drift only when the 95% bootstrap interval of the
    window's value lies wholly outside the allowed range (``allowed_range``)."""
    if violation is not None:
        return "drift", "bad"
    if name in NOT_DRIFT_CHECKED or base is None:
        return "not compared", "muted"
    if cur is not None and bias_violation(base, cur, metric=name):
        return "outside, not significant", "muted"
    return "within", "ok"


def bias_view(rep: Mapping[str, Any]) -> dict[str, Any] | None:
    """Per facet group: each post-training metric of the window beside the baseline's, its limit and verdict."""
    cur = (rep.get("analysis") or {}).get(SECTION)
    if not cur:
        return None
    base_facets = (rep.get("baseline_analysis") or {}).get(SECTION, {}).get("facets", {})
    violated = {(str(v.get("facet")), str(v.get("facet_value")), v.get("metric_name")): v
                for v in rep.get("violations", [])}
    facets = []
    for facet, groups in cur.get("facets", {}).items():
        for i, group in enumerate(groups):
            base_group = matching_group(base_facets.get(facet, []), group, i, len(groups))
            base_metrics = {m["name"]: m for m in (base_group or {}).get("metrics", [])}
            rows = []
            for m in group["metrics"]:
                (b, b_text), (c, c_text) = _shown(base_metrics.get(m["name"])), _shown(m)
                violation = violated.get((str(facet), str(group["value_or_threshold"]), m["name"]))
                verdict, cls = _verdict(m["name"], b, c, violation)
                rows.append({"name": m["name"], "description": m.get("description") or m["name"],
                             "baseline": b, "baseline_text": b_text, "current": c, "current_text": c_text,
                             "limit": allowed_range(m["name"], b) if b is not None and verdict != "not compared"
                             else None,
                             "verdict": verdict, "cls": cls,
                             "detail": violation.get("description") if violation else None})
            facets.append({"facet": facet, "value": group["value_or_threshold"], "rows": rows,
                           "drifted": sum(r["verdict"] == "drift" for r in rows)})
    return {"label": cur.get("label"), "positive": cur.get("label_value_or_threshold"), "facets": facets}


def _ranks(values: Mapping[str, float]) -> dict[str, int]:
    """1 for the largest attribution (the order nDCG ranks by)."""
    return {f: i + 1 for i, f in enumerate(sorted(values, key=lambda f: values[f], reverse=True))}


def _shap(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    labels = (doc or {}).get("explanations", {}).get("kernel_shap", {})
    found: dict[str, Any] = next(iter(labels.values()), {}) if labels else {}
    return found


def attribution_view(rep: Mapping[str, Any]) -> dict[str, Any] | None:
    """Features in the baseline's order, each with both attributions, ranks and bar lengths; the nDCG verdict."""
    cur, base = _shap(rep.get("analysis")), _shap(rep.get("baseline_analysis"))
    if not cur:
        return None
    cv = {str(k): float(v) for k, v in cur.get("global_shap_values", {}).items()}
    bv = {str(k): float(v) for k, v in base.get("global_shap_values", {}).items()}
    top = max([abs(v) for v in (*cv.values(), *bv.values())] + [1e-12])
    rb, rc = _ranks(bv), _ranks(cv)
    order = sorted(dict.fromkeys([*bv, *cv]), key=lambda f: (rb.get(f, len(rb) + 1), rc.get(f, 0)))
    features = [{"name": f, "baseline": bv.get(f), "current": cv.get(f), "baseline_rank": rb.get(f),
                 "current_rank": rc.get(f),
                 "baseline_length": round(abs(bv.get(f, 0.0)) / top * BAR_LENGTH, 1),
                 "current_length": round(abs(cv.get(f, 0.0)) / top * BAR_LENGTH, 1)} for f in order]
    score = monitor_report.number((rep.get("analysis") or {}).get("ndcg"))
    threshold = monitor_report.number(rep.get("ndcg_threshold"))
    return {"features": features, "ndcg": score, "threshold": threshold,
            "passed": None if score is None or threshold is None else score >= threshold,
            "method": cur.get("method"), "agg_method": cur.get("agg_method"),
            "output_space": cur.get("output_space") or base.get("output_space"),
            "expected": {"baseline": monitor_report.number(base.get("expected_value")),
                         "current": monitor_report.number(cur.get("expected_value"))},
            "bar_length": BAR_LENGTH}


def bias_drift(rep: Mapping[str, Any]) -> str:
    return _env.get_template("bias_drift.html").render(r=rep, bias=bias_view(rep))


def attribution_drift(rep: Mapping[str, Any]) -> str:
    return _env.get_template("attribution_drift.html").render(r=rep, shap=attribution_view(rep))
