"""One analysis: profile the current window, check constraints, compare distributions with the baseline."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from monitor.engine import constraints as cons
from monitor.engine import drift
from monitor.engine.columns import ColumnData, columns
from monitor.engine.stats import FeatureProfile, profile_column, statistics_json

DEFAULT_DRIFT_SHARE = 0.5


@dataclass
class DriftConfig:
    """Method per feature or per type; None → Evidently's default choice. Thresholds per method or feature."""

    numerical: str | None = None
    categorical: str | None = None
    per_feature: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)   # method name or feature name → threshold
    drift_share: float = DEFAULT_DRIFT_SHARE

    def method_for(self, p: FeatureProfile) -> str | None:
        if p.name in self.per_feature:
            return self.per_feature[p.name]
        from monitor.engine.stats import NumericSummary

        return self.numerical if isinstance(p.summary, NumericSummary) else self.categorical

    def threshold_for(self, name: str, method: str) -> float | None:
        return self.thresholds.get(name, self.thresholds.get(method))


def profile(table: pa.Table, *, keep_values: bool = True, threads: int = 2) -> tuple[list[ColumnData],
                                                                                      list[FeatureProfile]]:
    """Columns and their mergeable profiles; numpy sorts release the GIL, so columns run in parallel."""
    names = table.column_names

    def one(name: str) -> tuple[ColumnData, FeatureProfile]:
        col = columns(table.select([name]))[0]
        return col, profile_column(col, keep_values=keep_values)

    if len(set(names)) != len(names):
        columns(table)  # raises with the duplicate names
    if threads > 1 and len(names) > 1:
        with ThreadPoolExecutor(threads) as pool:
            pairs = list(pool.map(one, names))
    else:
        pairs = [one(n) for n in names]
    return [c for c, _ in pairs], [p for _, p in pairs]


@dataclass
class AnalysisResult:
    violations: list[dict[str, Any]]
    drift: list[drift.DriftResult]
    statistics: dict[str, Any]
    rows: int

    @property
    def drift_share(self) -> float:
        judged = [d for d in self.drift if not math.isnan(d.statistic)]
        return sum(d.drifted for d in judged) / len(judged) if judged else 0.0

    def summary(self, share: float = DEFAULT_DRIFT_SHARE) -> dict[str, Any]:
        drifted = [d.feature for d in self.drift if d.drifted]
        return {"rows": self.rows, "violations": len(self.violations), "drifted_features": drifted,
                "drift_share": self.drift_share, "dataset_drift": bool(self.drift) and self.drift_share >= share}


def analyze(baseline: list[FeatureProfile], constraints: dict[str, Any], current: pa.Table,
            config: DriftConfig | None = None, *, threads: int = 2) -> AnalysisResult:
    config = config or DriftConfig()
    cols, profiles = profile(current, threads=threads)
    by_name = {p.name: p for p in profiles}
    matched = [(ref, by_name[ref.name]) for ref in baseline if ref.name in by_name]

    def judge(pair: tuple[FeatureProfile, FeatureProfile]) -> tuple[drift.Comparison | None, drift.DriftResult]:
        ref, cur = pair
        merged = drift.pair_of(ref, cur)
        chosen = config.method_for(ref) or drift.default_method(ref, cur, merged)
        return merged, drift.compare(ref, cur, chosen, config.threshold_for(ref.name, chosen), merged)

    if threads > 1 and len(matched) > 1:
        with ThreadPoolExecutor(threads) as pool:   # merges and sorts release the GIL
            judged = list(pool.map(judge, matched))
    else:
        judged = [judge(m) for m in matched]
    pairs = {ref.name: merged for (ref, _), (merged, _) in zip(matched, judged, strict=True)}
    violations = cons.check(constraints, baseline, profiles, cols, pairs)
    return AnalysisResult(violations, [r for _, r in judged], statistics_json(profiles), current.num_rows)
