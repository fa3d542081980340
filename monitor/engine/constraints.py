"""SageMaker constraints.json: suggestion from a baseline profile, and the six checks that produce
constraint_violations.json, with SageMaker's thresholds, overrides and message wording."""

from __future__ import annotations

import math
from typing import Any

from monitor.engine import drift
from monitor.engine.columns import FRACTIONAL, INTEGRAL, STRING, UNKNOWN, ColumnData, TypeCounts
from monitor.engine.stats import CategoricalSummary, FeatureProfile, NumericSummary

DOMAIN_MAX_DISTINCT = 64   # a String column with at most this many values gets a domain constraint

DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.1,
                                 "comparison_method": "Robust"},
}


def suggest(profiles: list[FeatureProfile]) -> dict[str, Any]:
    features = []
    for p in profiles:
        f: dict[str, Any] = {"name": p.name, "inferred_type": p.inferred_type,
                             "completeness": _completeness(p)}
        s = p.summary
        if isinstance(s, NumericSummary):
            f["num_constraints"] = {"is_non_negative": bool(s.finite == 0 or s.min >= 0)}
        elif isinstance(s, CategoricalSummary) and 0 < len(s.counts) <= DOMAIN_MAX_DISTINCT:
            f["string_constraints"] = {"domains": sorted(s.counts)}
        features.append(f)
    import copy

    return {"version": 0.0, "features": features, "monitoring_config": copy.deepcopy(DEFAULT_MONITORING_CONFIG)}


def _completeness(p: FeatureProfile) -> float:
    if p.rows == 0:
        return 1.0
    s = p.summary
    present = 0 if s is None else s.present
    return present / p.rows


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _pct_below(x: float, expected: float) -> str:
    """An observed share that fell short of ``expected``, with one decimal as SageMaker writes it, or as many more as
    it takes to read below it: 1 bad value in 3,003 is 99.97%, not "Only 100.0%" under "Expected match: 100.0%"."""
    digits = 1
    while digits < 6 and round(x * 100, digits) >= round(expected * 100, digits):
        digits += 1
    return f"{x * 100:.{digits}f}%"


def _setting(cfg: dict[str, Any], overrides: dict[str, Any], key: str, default: Any) -> Any:
    if key in overrides:
        return overrides[key]
    dc = cfg.get("distribution_constraints", {})
    if key in dc:
        return dc[key]
    return cfg.get(key, default)


def monitoring_config(constraints: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_MONITORING_CONFIG, **constraints.get("monitoring_config", {})}


def enabled(constraints: dict[str, Any]) -> bool:
    return str(monitoring_config(constraints).get("evaluate_constraints", "Enabled")).lower() != "disabled"


def check_columns(constraints: dict[str, Any], current_names: list[str]) -> list[dict[str, Any]]:
    """missing_column_check and extra_column_check."""
    if not enabled(constraints):
        return []
    cons = [f["name"] for f in constraints.get("features", [])]
    counts = (f"Number of columns in current dataset: {len(set(current_names))}, Number of columns in baseline "
              f"constraints: {len(cons)}")
    present, known = set(current_names), set(cons)
    return [{"feature_name": n, "constraint_check_type": check,
             "description": f"There are {which} columns in current dataset. {counts}"}
            for check, which, names, other in (("missing_column_check", "missing", cons, present),
                                               ("extra_column_check", "extra", current_names, known))
            for n in names if n not in other]


def check_feature(constraints: dict[str, Any], fc: dict[str, Any], ref: FeatureProfile | None,
                  p: FeatureProfile, col: ColumnData | TypeCounts, pair: drift.Comparison | None = None
                  ) -> list[dict[str, Any]]:
    """data_type, completeness, categorical_values and baseline_drift checks for one feature (``col``: the column
    read whole, or its merged type counts when it was summarised in partitions)."""
    if not enabled(constraints):
        return []
    cfg = monitoring_config(constraints)
    out: list[dict[str, Any]] = []
    name = p.name
    overrides = fc.get("monitoringConfigOverrides", {}) or {}
    expected = fc.get("inferred_type", UNKNOWN)
    thr = float(_setting(cfg, overrides, "datatype_check_threshold", 1.0))
    if expected in (INTEGRAL, FRACTIONAL, STRING) and col.present:
        share = col.share_matching(expected)
        if share < thr:
            out.append({"feature_name": name, "constraint_check_type": "data_type_check",
                        "description": f"Data type match requirement is not met. Expected data type: {expected}, "
                                       f"Expected match: {_pct(thr)}. Observed: Only {_pct_below(share, thr)} of "
                                       f"data is {expected}."})
    if "completeness" in fc and p.rows:
        observed = _completeness(p)
        if observed < float(fc["completeness"]) - 1e-12:
            out.append({"feature_name": name, "constraint_check_type": "completeness_check",
                        "description": f"Data completeness requirement is not met. Expected: "
                                       f"{_pct(float(fc['completeness']))} of data is non-null. Observed: Only "
                                       f"{_pct_below(observed, float(fc['completeness']))} of data is non-null."})
    domains = (fc.get("string_constraints") or {}).get("domains")
    if domains is not None and isinstance(p.summary, CategoricalSummary) and p.summary.present:
        allowed = set(map(str, domains))
        inside = sum(v for k, v in p.summary.counts.items() if k in allowed)
        share = inside / p.summary.present
        dthr = float(_setting(cfg, overrides, "domain_content_threshold", 1.0))
        if share < dthr:
            unknown = sorted(k for k in p.summary.counts if k not in allowed)[:10]
            out.append({"feature_name": name, "constraint_check_type": "categorical_values_check",
                        "description": f"Data content requirement is not met. Expected: {_pct(dthr)} of data "
                                       f"in the baseline domain. Observed: Only {_pct_below(share, dthr)} of data is "
                                       f"in the domain; values outside it include {unknown}."})
    if ref is not None and str(_setting(cfg, overrides, "perform_comparison", "Enabled")).lower() != "disabled":
        v = baseline_drift(ref, p, cfg, overrides, pair)
        if v is not None:
            out.append(v)
    return out


def check(constraints: dict[str, Any], baseline: list[FeatureProfile] | None, current: list[FeatureProfile],
          current_columns: list[ColumnData],
          pairs: dict[str, drift.Comparison | None] | None = None) -> list[dict[str, Any]]:
    """All violations of ``constraints`` by the current data (SageMaker's decision rules)."""
    out = check_columns(constraints, [p.name for p in current])
    cur = {p.name: p for p in current}
    cols = {c.name: c for c in current_columns}
    base = {p.name: p for p in baseline or []}
    for fc in constraints.get("features", []):
        name = fc["name"]
        if name in cur:
            out += check_feature(constraints, fc, base.get(name), cur[name], cols[name], (pairs or {}).get(name))
    return out


def baseline_drift(ref: FeatureProfile, cur: FeatureProfile, cfg: dict[str, Any],
                   overrides: dict[str, Any], pair: drift.Comparison | None = None) -> dict[str, Any] | None:
    rs, cs = ref.summary, cur.summary
    simple = str(_setting(cfg, overrides, "comparison_method", "Robust")).lower() == "simple"
    method = "linf_simple" if simple else "linf_robust"
    if isinstance(rs, NumericSummary) and isinstance(cs, NumericSummary):
        thr = float(_setting(cfg, overrides, "comparison_threshold", 0.1))
        res = drift.compare_numeric(ref.name, rs, cs, method, thr, pair=pair)
        label = "Numerical"
    elif isinstance(rs, CategoricalSummary) and isinstance(cs, CategoricalSummary):
        thr = float(_setting(cfg, overrides, "categorical_comparison_threshold",
                             _setting(cfg, overrides, "comparison_threshold", 0.1)))
        cat_method = str(_setting(cfg, overrides, "categorical_drift_method", "LInfinity"))
        if cat_method.lower() == "chisquared":
            p_value = drift.regrouped_chi2(rs.counts, cs.counts)
            if not math.isnan(p_value) and p_value < thr:
                return {"feature_name": ref.name, "constraint_check_type": "baseline_drift_check",
                        "description": f"Categorical chi-squared p-value: {p_value:.4g} is below threshold: {thr}"}
            return None
        res = drift.compare_categorical(ref.name, rs, cs, method, thr)
        label = "Categorical"
    else:
        return None
    if math.isnan(res.statistic) or res.statistic <= thr:
        return None
    return {"feature_name": ref.name, "constraint_check_type": "baseline_drift_check",
            "description": f"{label} distance: {res.statistic:.4g} exceeds {label.lower()} threshold: {thr}"}
