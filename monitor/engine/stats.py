"""Mergeable column statistics and SageMaker's statistics.json.

Counts, missing, sums, Chan-merged means and M2, min/max and frequency tables merge exactly; KLL sketches
merge within their rank bound. So partitions summarised apart (threads, processes, Dask workers) combine
into the answer of one pass. The 10 equal-width buckets SageMaker shows depend on the global min/max, so
they are derived at the end: exactly from the values when this process holds them, else from the sketch.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import numpy as np

from monitor.engine import kll
from monitor.engine import quantiles as qs
from monitor.engine.columns import FRACTIONAL, INTEGRAL, STRING, UNKNOWN, ColumnData
from monitor.engine.quantiles import QuantileSummary

MAX_CATEGORICAL_BUCKETS = 1000


def _sum_squares(d: kll.Floats) -> float:
    """Σd² without BLAS: np.dot hands a long vector to OpenBLAS's thread pool, whose spinning workers cost more CPU
    than the sum itself (3x the whole analysis in a process whose BLAS threads are not pinned, as in the service)."""
    np.square(d, out=d)
    return float(d.sum())


@dataclass
class NumericSummary:
    present: int = 0          # non-null values (finite or ±inf)
    missing: int = 0
    finite: int = 0
    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0           # sum of squared deviations from the mean (finite values)
    min: float = math.inf
    max: float = -math.inf
    sketch: kll.KLL = field(default_factory=kll.KLL)
    exact: kll.Floats | None = None   # sorted finite values, while we hold them (never serialised)
    quantiles: QuantileSummary | None = None   # a large baseline's bounded reference, in place of ``exact``

    @classmethod
    def of(cls, col: ColumnData, *, keep_values: bool = True) -> NumericSummary:
        v = col.sorted_values
        assert v is not None
        n = len(v)
        total = float(v.sum()) if n else 0.0
        mean = total / n if n else 0.0
        m2 = _sum_squares(v - mean) if n else 0.0
        return cls(present=col.present, missing=col.missing, finite=n, total=total, mean=mean, m2=m2,
                   min=float(v[0]) if n else math.inf, max=float(v[-1]) if n else -math.inf,
                   sketch=kll.from_values(v, presorted=True), exact=v if keep_values else None)

    def merge(self, other: NumericSummary) -> NumericSummary:
        n = self.finite + other.finite
        delta = other.mean - self.mean
        mean = self.mean + delta * other.finite / n if n else 0.0
        m2 = self.m2 + other.m2 + delta * delta * self.finite * other.finite / n if n else 0.0
        exact = None
        if self.exact is not None and other.exact is not None:
            exact = np.sort(np.concatenate([self.exact, other.exact]))
        return NumericSummary(self.present + other.present, self.missing + other.missing, n,
                              self.total + other.total, mean, m2, min(self.min, other.min),
                              max(self.max, other.max), self.sketch.merge(other.sketch), exact)

    @property
    def std(self) -> float:
        """Population standard deviation, as SageMaker reports it."""
        return math.sqrt(self.m2 / self.finite) if self.finite else math.nan

    def buckets(self, n_buckets: int = 10) -> list[dict[str, float]]:
        if not self.finite:
            return []
        lo, hi = self.min, self.max
        edges = lo + (hi - lo) * np.arange(n_buckets + 1) / n_buckets
        edges[-1] = hi
        if self.exact is not None:
            idx = np.searchsorted(self.exact, edges[:-1], side="left")
            counts = np.diff(np.append(idx, len(self.exact))).astype(float)
        else:
            items, w = self.sketch.weighted()
            scale = self.finite / w.sum() if w.sum() else 0.0
            pos = np.clip(np.searchsorted(edges, items, side="right") - 1, 0, n_buckets - 1)
            counts = np.bincount(pos, weights=w, minlength=n_buckets) * scale
        if hi == lo:
            counts = np.zeros(n_buckets)
            counts[-1] = float(self.finite)
        return [{"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]), "count": float(counts[i])}
                for i in range(n_buckets)]


@dataclass
class CategoricalSummary:
    present: int = 0
    missing: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, col: ColumnData) -> CategoricalSummary:
        return cls(present=col.present, missing=col.missing, counts=dict(col.counts))

    def merge(self, other: CategoricalSummary) -> CategoricalSummary:
        counts = dict(self.counts)
        for k, v in other.counts.items():
            counts[k] = counts.get(k, 0) + v
        return CategoricalSummary(self.present + other.present, self.missing + other.missing, counts)


Summary = NumericSummary | CategoricalSummary


@dataclass
class FeatureProfile:
    name: str
    inferred_type: str
    summary: Summary | None        # None for Unknown (all missing)
    rows: int

    def merge(self, other: FeatureProfile) -> FeatureProfile:
        kind = _merge_types(self.inferred_type, other.inferred_type)
        if self.summary is None or other.summary is None:
            summary = self.summary if other.summary is None else other.summary
            if summary is not None:   # the all-missing side only adds missing rows
                missing_rows = other.rows if other.summary is None else self.rows
                summary = _add_missing(summary, missing_rows)
        else:
            summary = _merge_summaries(self.name, self.summary, other.summary)
        return FeatureProfile(self.name, kind, summary, self.rows + other.rows)


class MixedColumn(ValueError):
    """A column numeric in one partition and text in another (a capture batch that stored a numeric feature's
    unparseable values as text): the partitions are summarised again with it read as text (`compute.Read.text`)."""

    def __init__(self, column: str) -> None:
        super().__init__(f"column {column!r} is numeric in one partition and text in another")
        self.column = column

    def __reduce__(self) -> tuple[Any, ...]:   # raised on a Dask worker, re-raised here with its column
        return MixedColumn, (self.column,)


def _merge_summaries(name: str, a: Summary, b: Summary) -> Summary:
    match a, b:
        case NumericSummary(), NumericSummary():
            return a.merge(b)
        case CategoricalSummary(), CategoricalSummary():
            return a.merge(b)
    raise MixedColumn(name)


def _add_missing(s: Summary, n: int) -> Summary:
    if isinstance(s, NumericSummary):
        return NumericSummary(s.present, s.missing + n, s.finite, s.total, s.mean, s.m2, s.min, s.max, s.sketch,
                              s.exact)
    return CategoricalSummary(s.present, s.missing + n, dict(s.counts))


def _merge_types(a: str, b: str) -> str:
    order = {UNKNOWN: 0, INTEGRAL: 1, FRACTIONAL: 2, STRING: 3}
    return a if order[a] >= order[b] else b


def profile_column(col: ColumnData, *, keep_values: bool = True) -> FeatureProfile:
    if col.inferred_type == UNKNOWN:
        return FeatureProfile(col.name, UNKNOWN, None, col.rows)
    summary: Summary = NumericSummary.of(col, keep_values=keep_values) if col.is_numeric \
        else CategoricalSummary.of(col)
    return FeatureProfile(col.name, col.inferred_type, summary, col.rows)


def merge_profiles(a: list[FeatureProfile], b: list[FeatureProfile]) -> list[FeatureProfile]:
    if [p.name for p in a] != [p.name for p in b]:
        raise ValueError("partitions have different columns")
    return [x.merge(y) for x, y in zip(a, b, strict=True)]


def bounded_reference(profiles: list[FeatureProfile], exact_limit: int = qs.EXACT_LIMIT,
                      points: int = qs.POINTS) -> tuple[list[FeatureProfile], bool]:
    """What a baseline keeps of its profiles: numeric columns with more than ``exact_limit`` finite values trade
    their sorted values for a bounded quantile summary (``quantiles``). Also whether every column stays exact (kept
    whole, or summarised losslessly)."""
    out, exact = [], True
    for p in profiles:
        s = p.summary
        if isinstance(s, NumericSummary) and s.exact is not None:
            summary = qs.bounded(s.exact, exact_limit, points)
            if summary is not None:
                p = replace(p, summary=replace(s, exact=None, quantiles=summary))
                exact = exact and summary.bound == 0.0
        out.append(p)
    return out, exact


# --- SageMaker statistics.json -----------------------------------------------------------------------------

def feature_statistics(p: FeatureProfile, n_buckets: int = 10) -> dict[str, Any]:
    s = p.summary
    if s is None:
        return {"name": p.name, "inferred_type": UNKNOWN,
                "string_statistics": {"common": {"num_present": 0, "num_missing": p.rows}, "distinct_count": 0}}
    if isinstance(s, NumericSummary):
        return {"name": p.name, "inferred_type": p.inferred_type, "numerical_statistics": {
            "common": {"num_present": s.present, "num_missing": s.missing},
            "mean": s.mean if s.finite else math.nan, "sum": s.total, "std_dev": s.std,
            "min": s.min if s.finite else math.nan, "max": s.max if s.finite else math.nan,
            "distribution": {"kll": {"buckets": s.buckets(n_buckets), "sketch": s.sketch.to_json()}}}}
    top = sorted(s.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORICAL_BUCKETS]
    return {"name": p.name, "inferred_type": STRING, "string_statistics": {
        "common": {"num_present": s.present, "num_missing": s.missing},
        "distinct_count": len(s.counts),
        "distribution": {"categorical": {"buckets": [{"value": k, "count": v} for k, v in top]}}}}


def statistics_json(profiles: list[FeatureProfile], n_buckets: int = 10) -> dict[str, Any]:
    rows = profiles[0].rows if profiles else 0
    return {"version": 0.0, "dataset": {"item_count": rows},
            "features": [feature_statistics(p, n_buckets) for p in profiles]}


def _num(v: Any, default: float) -> float:
    return default if v is None else float(v)


def profiles_from_statistics(stats: dict[str, Any]) -> list[FeatureProfile]:
    """Read a SageMaker statistics.json (ours or SageMaker's) back into mergeable profiles (sketch-only)."""
    rows = int(stats.get("dataset", {}).get("item_count", 0))
    out = []
    for f in stats.get("features", []):
        name, kind = f["name"], f.get("inferred_type", UNKNOWN)
        if "numerical_statistics" in f:
            ns = f["numerical_statistics"]
            common = ns.get("common", {})
            dist = ns.get("distribution", {}).get("kll", {})
            sketch = kll.KLL.from_json(dist["sketch"]) if "sketch" in dist else kll.KLL()
            finite = sketch.n
            std = float(ns.get("std_dev", 0.0) or 0.0)
            mean = float(ns.get("mean", 0.0) or 0.0)
            summary: Summary | None = NumericSummary(
                present=int(common.get("num_present", 0)), missing=int(common.get("num_missing", 0)), finite=finite,
                total=float(ns.get("sum", 0.0) or 0.0), mean=mean, m2=std * std * finite,
                min=_num(ns.get("min"), math.inf), max=_num(ns.get("max"), -math.inf), sketch=sketch)
        elif "string_statistics" in f:
            ss = f["string_statistics"]
            common = ss.get("common", {})
            buckets = ss.get("distribution", {}).get("categorical", {}).get("buckets", [])
            summary = CategoricalSummary(int(common.get("num_present", 0)), int(common.get("num_missing", 0)),
                                         {str(b["value"]): int(b["count"]) for b in buckets})
            if kind == UNKNOWN:
                summary = None
        else:
            summary = None
        out.append(FeatureProfile(name, kind, summary, rows))
    return out


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±Infinity) replaced by null: stored and served documents are
    RFC 8259 JSON. Used for monitor's SageMaker files and Clarify's analysis.json alike."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


LEAF_MIN = 8   # lists of at least this many numbers are written on one line


def _plain(o: Any) -> Any:
    """msgspec's hook for what the standard encoder takes as is: NumPy scalars (a float64 is a float to it)."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _key(k: Any) -> str:
    """A non-string key as the standard encoder writes it (msgspec takes str, int and float keys, not bool/None)."""
    return json.dumps(k) if k is None or isinstance(k, bool) else k


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, strict JSON (non-finite floats → null), fast: encoded by msgspec (NaN and ±inf are
    null there) and indented by it, with every list of numbers kept on one line (a KLL sketch is thousands of
    numbers; one per line would double the file). Python's indenting encoder was pure Python, ~3 µs a value: 18 ms
    for a 25-column statistics.json, now ~3 ms. The values are those of ``json.dumps(json_safe(obj), indent=2)``;
    number text may differ in form (msgspec writes 1e-05 as 0.00001, 1e+16 as 1e16), never in value."""
    leaves: list[bytes] = []
    token = uuid.uuid4().hex

    def pack(o: Any) -> Any:
        if isinstance(o, dict):
            return {(k if type(k) is str else _key(k)): pack(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            if len(o) >= LEAF_MIN and all(type(v) is float or type(v) is int for v in o):
                leaves.append(_ENCODER.encode(o))
                return f"{token}:{len(leaves) - 1}"
            return [pack(v) for v in o]
        return o

    text = msgspec.json.format(_ENCODER.encode(pack(obj)), indent=2)
    if leaves:
        text = re.sub(b'"' + token.encode() + rb':(\d+)"', lambda m: leaves[int(m[1])], text)
    return text
