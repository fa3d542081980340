"""One analysis: profile the current window, check constraints, compare distributions with the baseline.

Columns are processed one at a time on a small thread pool (numpy sorts and merges release the GIL):
each current column is read, summarised, checked and compared, and its raw values are dropped before the
next, so memory holds the reference summaries plus a few columns, not a second copy of the window.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import pyarrow as pa

from monitor.engine import constraints as cons
from monitor.engine import drift
from monitor.engine.columns import ColumnData, TypeCounts, column, numbers_in, numeric_column, text_column
from monitor.engine.drift import DriftResult
from monitor.engine.stats import CategoricalSummary, FeatureProfile, NumericSummary, feature_statistics, profile_column

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
        return self.numerical if isinstance(p.summary, NumericSummary) else self.categorical

    def threshold_for(self, name: str, method: str) -> float | None:
        return self.thresholds.get(name, self.thresholds.get(method))

    def problems(self, numeric: set[str], categorical: set[str]) -> list[str]:
        """What in this configuration cannot mean what its writer meant, against a reference whose ``numeric``
        and ``categorical`` columns are given (an all-missing column is in neither): a method on a column kind
        it does not apply to (Evidently refuses chisquare and z on numerical features too: on a continuous
        column they compare one value's share), a feature the reference lacks, a threshold named after neither
        a method nor a feature, a negative threshold or a p-value above 1."""
        out = []
        for setting, method in (("numerical", self.numerical), *((f"per_feature.{n}", m) for n, m in
                                                                 self.per_feature.items() if n in numeric)):
            if method in SHARE_METHODS:
                out.append(f"{setting}: {method!r} does not apply to numerical features (use one of "
                           f"{', '.join(m for m in drift.NUMERIC_METHODS if m not in SHARE_METHODS)})")
        for name, method in self.per_feature.items():
            if name in categorical and method not in drift.CATEGORICAL_METHODS:
                out.append(f"per_feature.{name}: {method!r} does not apply to categorical features (use one of "
                           f"{', '.join(drift.CATEGORICAL_METHODS)})")
            elif name not in numeric | categorical:
                out.append(f"per_feature.{name}: the baseline has no column {name!r}")
        for key, value in self.thresholds.items():
            if key not in drift.DEFAULT_THRESHOLDS and key not in numeric | categorical:
                out.append(f"thresholds.{key}: neither a method ({', '.join(drift.DEFAULT_THRESHOLDS)}) nor a "
                           "column of the baseline")
            elif value < 0 or (value > 1 and key in drift.P_VALUE_METHODS):
                out.append(f"thresholds.{key}: {value} is not a threshold (distances are >= 0, p-values in [0, 1])")
        return out


SHARE_METHODS = ("chisquare", "z")
"""Methods that compare category shares: offered for categorical features only (as Evidently does)."""


class Source:
    """Columns of a pandas DataFrame or an Arrow table, converted to Arrow one column at a time."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.names: list[str] = [str(n) for n in (data.column_names if isinstance(data, pa.Table) else data.columns)]
        if len(set(self.names)) != len(self.names):
            from monitor.engine.columns import TableError

            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise TableError(f"duplicate column names: {dupes}")
        self.rows = data.num_rows if isinstance(data, pa.Table) else len(data)

    def column(self, name: str) -> ColumnData:
        if isinstance(self.data, pa.Table):
            return column(name, self.data.column(name))
        series = self.data[name]
        from pandas.api.types import is_string_dtype

        if is_string_dtype(series.dtype) and (text := text_column(name, series)) is not None:
            return text
        if series.dtype.kind in "fiu":
            return numeric_column(name, series.to_numpy(), integral=series.dtype.kind in "iu")
        return column(name, pa.array(series, from_pandas=True))


T = TypeVar("T")
R = TypeVar("R")


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    if threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(fn, items))
    return [fn(i) for i in items]


def profile(data: Any, *, keep_values: bool = True, threads: int = 2) -> tuple[list[ColumnData],
                                                                               list[FeatureProfile]]:
    """Columns and their mergeable profiles (exact sorted values kept for baselines when asked)."""
    src = Source(data)

    def one(name: str) -> tuple[ColumnData, FeatureProfile]:
        col = src.column(name)
        return col, profile_column(col, keep_values=keep_values)

    pairs = _map(one, src.names, threads)
    return [c for c, _ in pairs], [p for _, p in pairs]


class AnalysisSummary(TypedDict):
    rows: int
    violations: int
    drifted_features: list[str]
    drift_share: float
    dataset_drift: bool
    small_sample: bool
    skipped_features: list[str]
    note: str | None


@dataclass
class AnalysisResult:
    violations: list[dict[str, Any]]
    drift: list[drift.DriftResult]
    statistics: dict[str, Any]
    rows: int
    drift_share_threshold: float = DEFAULT_DRIFT_SHARE

    @property
    def judged(self) -> list[DriftResult]:
        """Features with a verdict: not those without values, nor those too small for their method; those whose type
        changed are (drifted, see ``drift.judged``)."""
        return [d for d in self.drift if d.judged]

    @property
    def drift_share(self) -> float:
        judged = self.judged
        return sum(d.drifted for d in judged) / len(judged) if judged else 0.0

    def summary(self) -> AnalysisSummary:
        drifted = [d.feature for d in self.drift if d.drifted]
        skipped = [d.feature for d in self.drift if d.small_sample]
        note = None
        if skipped:
            note = (f"small sample: {len(skipped)} of {len(self.drift)} features have too few current values for "
                    f"their drift method to tell drift from sampling noise and were not judged "
                    f"({', '.join(skipped[:10])}{', …' if len(skipped) > 10 else ''}; each feature's note says how "
                    "many values it needs). " + ("Dataset drift is judged on the other features only."
                                                 if self.judged else "No dataset drift is claimed."))
        return {"rows": self.rows, "violations": len(self.violations), "drifted_features": drifted,
                "drift_share": self.drift_share,
                "dataset_drift": bool(self.judged) and self.drift_share >= self.drift_share_threshold,
                "small_sample": bool(skipped), "skipped_features": skipped, "note": note}


def analyze(baseline: list[FeatureProfile], constraints: dict[str, Any], current: Any,
            config: DriftConfig | None = None, *, threads: int = 2, n_buckets: int = 10) -> AnalysisResult:
    """The current window read whole (a pandas DataFrame or an Arrow table), one column at a time."""
    src = Source(current)
    judge = _Judge(baseline, constraints, config, n_buckets)

    def one(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], drift.DriftResult | None]:
        col = src.column(name)
        return judge(profile_column(col), col)

    return judge.result(src.names, src.rows, _map(one, src.names, threads))


def analyze_profiles(baseline: list[FeatureProfile], constraints: dict[str, Any], current: list[FeatureProfile],
                     types: dict[str, TypeCounts], rows: int, config: DriftConfig | None = None, *,
                     n_buckets: int = 10) -> AnalysisResult:
    """The current window as merged partition summaries (profiles without raw values, type counts): the same
    checks and drift methods; numeric comparisons then read the current side from its sketch, and each result
    states its bound."""
    judge = _Judge(baseline, constraints, config, n_buckets)
    done = [judge(p, types.get(p.name, TypeCounts())) for p in current]
    return judge.result([p.name for p in current], rows, done)


def _numeric_part(ref: FeatureProfile, cur: FeatureProfile) -> tuple[FeatureProfile, str | None]:
    """What to compare with a numeric reference: ``cur``, or, when some current values came as text (which makes the
    whole column text), those that read as numbers, if they are most of the column, with a note saying so. As
    Evidently leaves missing values out of its tests, the drift test measures the values it can and the
    data_type_check reports the others; one "abc" among 3,000 ages no longer hides the ages' drift. A column
    mostly of text stays a type change."""
    rs, cs = ref.summary, cur.summary
    if not (isinstance(rs, NumericSummary) and isinstance(cs, CategoricalSummary)):
        return cur, None
    col = numbers_in(cur.name, cs.counts)
    if 2 * col.rows <= cs.present:
        return cur, None
    if col.rows == cs.present:
        return profile_column(col), "current values arrived as text; drift measured on them as numbers"
    return profile_column(col), (f"{cs.present - col.rows:,} of {cs.present:,} current values not numeric (reported "
                                 f"by the data_type_check): drift measured on the other {col.rows:,}")


Judged = tuple[dict[str, Any], list[dict[str, Any]], "drift.DriftResult | None"]


class _Judge:
    """One current feature's statistics, constraint violations and drift result against the baseline."""

    def __init__(self, baseline: list[FeatureProfile], constraints: dict[str, Any], config: DriftConfig | None,
                 n_buckets: int) -> None:
        self.config = config or DriftConfig()
        self.base = {p.name: p for p in baseline}
        self.constraints = constraints
        self.fcs = {f["name"]: f for f in constraints.get("features", [])}
        self.n_buckets = n_buckets

    def __call__(self, cur: FeatureProfile, col: ColumnData | TypeCounts) -> Judged:
        name = cur.name
        stats = feature_statistics(cur, self.n_buckets)
        ref = self.base.get(name)
        merged = None
        result = None
        if ref is not None:
            seen, part = _numeric_part(ref, cur)
            merged = drift.pair_of(ref, seen)
            chosen = self.config.method_for(ref) or drift.default_method(ref, seen, merged)
            result = drift.compare(ref, seen, chosen, self.config.threshold_for(name, chosen), merged)
            if part is not None:
                result.note = part + (f"; {result.note}" if result.note else "")
                merged = None   # SageMaker's baseline_drift_check compares the column as read (text): no pair
        found = cons.check_feature(self.constraints, self.fcs[name], ref, cur, col, merged) \
            if name in self.fcs else []
        return stats, found, result

    def result(self, names: list[str], rows: int, done: list[Judged]) -> AnalysisResult:
        violations = cons.check_columns(self.constraints, names)
        for _, found, _ in done:
            violations += found
        order = {"missing_column_check": 0, "extra_column_check": 1}
        violations.sort(key=lambda v: (order.get(v["constraint_check_type"], 2), names.index(v["feature_name"])
                                       if v["feature_name"] in names else -1))
        statistics = {"version": 0.0, "dataset": {"item_count": rows}, "features": [s for s, _, _ in done]}
        results = [r for _, _, r in done if r is not None]
        return AnalysisResult(violations, results, statistics, rows, self.config.drift_share)
