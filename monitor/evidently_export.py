"""A drift analysis as an Evidently 0.7 snapshot, for users whose dashboards live in ``evidently ui``.

Built from what mlgov stored for the analysis (drift.json and both statistics.json files), never by running
Evidently: the server does not depend on it, and the values shown must be mlgov's own. The shape is Evidently's
``SnapshotModel`` (what ``Snapshot.load`` reads and a local workspace keeps under
``<project>/snapshots/<id>.json``): one ``DriftedColumnsCount`` result (count and share of drifted columns) and one
``ValueDrift`` result per judged column (its statistic, method and threshold as Evidently names them), so a
project dashboard plots them like Evidently's own DataDriftPreset runs; plus the summary counters and the
per-column table the snapshot page shows. Pure: dicts in, a dict out.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.engine.drift import judged as has_verdict

# mlgov's method names → the stattest display names Evidently writes in ValueDrift's ``method`` (SageMaker's L∞
# has no Evidently counterpart; its name says what it is)
METHOD_NAMES = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "psi": "PSI",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "linf_simple": "L-infinity distance (SageMaker, simple)",
    "linf_robust": "L-infinity distance (SageMaker, robust)",
}
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
SINGLE = "evidently:metric_result_v2:SingleValue"
COUNT = "evidently:metric_result_v2:CountValue"
_NS = uuid.UUID("6f1d8a52-6c1e-4d43-9a59-7d0f3b7c2e11")  # widget ids: stable for one analysis, unique across


def _metric_id(params: Mapping[str, Any]) -> str:
    """A stable id per metric configuration (Evidently fingerprints a metric's parameters the same way)."""
    return hashlib.md5(json.dumps(params, sort_keys=True).encode(), usedforsecurity=False).hexdigest()


def _widget(
    analysis_id: str,
    key: str,
    kind: str,
    params: Any,
    *,
    title: str = "",
    size: int = 2,
    linked: list[str] | None = None,
    tabs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "size": size,
        "id": str(uuid.uuid5(_NS, f"{analysis_id}/{key}")),
        "details": "",
        "alertsPosition": None,
        "alertStats": None,
        "params": params,
        "insights": [],
        "additionalGraphs": [],
        "alerts": [],
        "tabs": tabs or [],
        "widgets": [],
        "pageSize": 5,
        "source_fingerprint": None,
        "linked_metrics": linked,
    }


def _single(
    metric: dict[str, Any],
    display: str,
    value: float,
    param: dict[str, Any] | None = None,
    widget: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": SINGLE,
        "display_name": display,
        "metric_value_location": {"metric": metric, "param": param or {}},
        "widget": widget,
        "tests": [],
        "value": value,
    }


def _histogram(feature: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """A statistics.json feature's distribution as the table's {x, y} (bucket midpoints or category values)."""
    if not feature:
        return {"x": [], "y": []}
    numeric = feature.get("numerical_statistics", {}).get("distribution", {}).get("kll", {}).get("buckets")
    if numeric:
        return {"x": [(b["lower_bound"] + b["upper_bound"]) / 2 for b in numeric], "y": [b["count"] for b in numeric]}
    cats = feature.get("string_statistics", {}).get("distribution", {}).get("categorical", {}).get("buckets", [])
    return {"x": [str(b.get("value")) for b in cats], "y": [b.get("count", 0) for b in cats]}


def _by_name(statistics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(f.get("name")): f for f in statistics.get("features", [])}


def snapshot(
    analysis: Mapping[str, Any],
    drift: Mapping[str, Any],
    statistics: Mapping[str, Any],
    baseline_statistics: Mapping[str, Any],
    drift_share_threshold: float,
) -> dict[str, Any]:
    """The snapshot of one drift analysis. ``analysis``: id, baseline_id, timestamp (ISO-8601: the window's end,
    else when it ran), and optional endpoint/source; ``drift``: the stored drift.json."""
    aid = str(analysis["id"])
    features: Sequence[Mapping[str, Any]] = drift.get("features", [])
    summary = drift.get("summary", {})
    judged = [f for f in features if has_verdict(f)]   # as the summary's share counts them
    drifted = [f for f in judged if f.get("drifted")]
    # a feature whose type changed is drifted without a score: counted, but it has no ValueDrift metric or table row
    scored = [f for f in judged if isinstance(f.get("statistic"), int | float) and math.isfinite(f["statistic"])]
    unscored = [str(f["feature"]) for f in judged if f not in scored]
    results: dict[str, dict[str, Any]] = {}
    count_params = {"type": DRIFTED_COUNT, "drift_share": drift_share_threshold}
    count_id = _metric_id(count_params)
    count_metric = {"metric_id": count_id, "params": count_params}
    # from the counts shown beside it: an analysis stored before type-changed features counted in the share
    # carries an older drift_share, and "0% of columns (2 out of 3)" would contradict itself
    share = len(drifted) / len(judged) if judged else 0.0
    results[count_id] = {
        "type": COUNT,
        "display_name": "Count of Drifted Columns",
        "metric_value_location": {"metric": count_metric, "param": {}},
        "widget": [
            _widget(
                aid,
                "count",
                "counter",
                {"counters": [{"value": str(len(drifted)), "label": ""}]},
                title="Count of Drifted Columns: count",
                size=1,
                linked=[count_id],
            ),
            _widget(
                aid,
                "share",
                "counter",
                {"counters": [{"value": f"{share:.2f}", "label": ""}]},
                title="Count of Drifted Columns: share",
                size=1,
                linked=[count_id],
            ),
        ],
        "tests": [],
        "count": _single(count_metric, "Count of Drifted Columns", float(len(drifted)), {"value_type": "count"}),
        "share": _single(count_metric, "Share of Drifted Columns", share, {"value_type": "share"}),
    }
    current, reference = _by_name(statistics), _by_name(baseline_statistics)
    rows = []
    for f in scored:
        name, method = str(f["feature"]), METHOD_NAMES.get(str(f["method"]), str(f["method"]))
        params = {"type": VALUE_DRIFT, "column": name, "method": method, "threshold": float(f["threshold"])}
        mid = _metric_id(params)
        verdict = "detected" if f.get("drifted") else "not detected"
        label = f"Data drift {verdict}. Drift detection method: {method}. Drift score: {f['statistic']:.3g}" + (
            "" if f.get("exact", True) else f" (from a summary; CDF error bound {f.get('bound', 0):.2g})"
        )
        widget = [
            _widget(
                aid,
                f"drift/{name}",
                "counter",
                {
                    "counters": [
                        {"value": f"{'Drift' if f.get('drifted') else 'No drift'} in column '{name}'", "label": label}
                    ]
                },
                linked=[mid],
            )
        ]
        results[mid] = _single(
            {"metric_id": mid, "params": params}, f"Value drift for {name}", float(f["statistic"]), widget=widget
        )
        rows.append(
            {
                "column_name": name,
                "column_type": "num" if f.get("kind") == "numerical" else "cat",
                "stattest_name": method,
                "reference_distribution": _histogram(reference.get(name)),
                "current_distribution": _histogram(current.get(name)),
                "data_drift": "Detected" if f.get("drifted") else "Not Detected",
                "drift_score": round(float(f["statistic"]), 6),
            }
        )
    dataset_drift = bool(summary.get("dataset_drift"))
    skipped = [str(f["feature"]) for f in features if f not in judged]
    widgets = [
        _widget(
            aid,
            "dataset",
            "counter",
            {
                "counters": [
                    {
                        "value": "Dataset Drift",
                        "label": f"Dataset Drift is {'detected' if dataset_drift else 'NOT detected'}. "
                        f"Dataset drift detection threshold is {drift_share_threshold}",
                    }
                ]
            },
        ),
        _widget(
            aid,
            "columns",
            "counter",
            {
                "counters": [
                    {"value": str(len(judged)), "label": "Columns"},
                    {"value": str(len(drifted)), "label": "Drifted Columns"},
                    {"value": f"{share:.3g}", "label": "Share of Drifted Columns"},
                ]
            },
        ),
        _widget(
            aid,
            "table",
            "big_table",
            {
                "rowsPerPage": min(max(len(rows), 1), 10),
                "columns": [
                    {"title": "Column", "field": "column_name"},
                    {"title": "Type", "field": "column_type"},
                    {
                        "title": "Reference Distribution",
                        "field": "reference_distribution",
                        "type": "histogram",
                        "options": {"xField": "x", "yField": "y", "color": "#ed0400"},
                    },
                    {
                        "title": "Current Distribution",
                        "field": "current_distribution",
                        "type": "histogram",
                        "options": {"xField": "x", "yField": "y", "color": "#ed0400"},
                    },
                    {"title": "Data Drift", "field": "data_drift"},
                    {"title": "Stat Test", "field": "stattest_name"},
                    {"title": "Drift Score", "field": "drift_score"},
                ],
                "data": rows,
            },
            title=f"Drift is detected for {share:.1%} of columns ({len(drifted)} out of {len(judged)})."
            + (f" Not judged (no values, or too few for their method): {', '.join(skipped)}." if skipped else "")
            + (f" Type changed (drifted, no drift score): {', '.join(unscored)}." if unscored else ""),
        ),
    ]
    metadata = {"mlgov_analysis_id": aid, "mlgov_baseline_id": str(analysis["baseline_id"])}
    metadata.update({f"mlgov_{k}": str(analysis[k]) for k in ("endpoint", "source") if analysis.get(k)})
    return {
        "report": {"items": []},
        "name": f"mlgov drift analysis {aid}",
        "timestamp": str(analysis["timestamp"]),
        "metadata": metadata,
        "tags": ["mlgov", "data-drift"],
        "metric_results": results,
        "top_level_metrics": list(results),
        "widgets": widgets,
        "tests_widgets": [],
    }
