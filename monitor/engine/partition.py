"""A table summarised in partitions: per-partition profiles and type counts that merge into the summary of the whole.

Each partition is profiled without keeping its raw values (numeric columns keep counts, moments, min/max and a KLL
sketch; text columns their full frequency tables) and counts how many present values match each SageMaker type.
Summaries merge by column name, in order of first appearance, so partitions with different columns (a capture
schema that grew) merge as their concatenation would: a column absent from a partition adds missing rows. Counts,
completeness, min/max and frequency tables of the merged summary equal those of one pass over the whole table;
sums, means and deviations equal them up to floating-point rounding (Chan's merge); quantiles and CDFs come from
the merged sketch, within its rank bound (``kll.rank_error_bound``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from monitor.engine.analysis import profile
from monitor.engine.columns import UNKNOWN, TypeCounts
from monitor.engine.stats import FeatureProfile


@dataclass
class TableSummary:
    rows: int = 0
    profiles: list[FeatureProfile] = field(default_factory=list)
    types: dict[str, TypeCounts] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table | Any) -> TableSummary:
        """One partition (an Arrow table or a pandas DataFrame), profiled on this thread without raw values."""
        cols, profiles = profile(table, keep_values=False, threads=1)
        rows = table.num_rows if isinstance(table, pa.Table) else len(table)
        return cls(rows, profiles, {c.name: TypeCounts.of(c) for c in cols})

    def merge(self, other: TableSummary) -> TableSummary:
        mine = {p.name: p for p in self.profiles}
        theirs = {p.name: p for p in other.profiles}
        names = [p.name for p in self.profiles] + [p.name for p in other.profiles if p.name not in mine]
        profiles = [_side(mine.get(n), n, self.rows).merge(_side(theirs.get(n), n, other.rows)) for n in names]
        types = {n: self.types.get(n, TypeCounts()).merge(other.types.get(n, TypeCounts())) for n in names}
        return TableSummary(self.rows + other.rows, profiles, types)


def _side(p: FeatureProfile | None, name: str, rows: int) -> FeatureProfile:
    """A partition's profile of ``name``, or all ``rows`` missing when the partition lacks the column."""
    return p if p is not None else FeatureProfile(name, UNKNOWN, None, rows)


def merge_all(parts: list[TableSummary]) -> TableSummary:
    """Merge in a balanced tree (the order a cluster merges in; the result does not depend on it beyond rounding)."""
    if not parts:
        return TableSummary()
    while len(parts) > 1:
        nxt = [a.merge(b) for a, b in zip(parts[0::2], parts[1::2], strict=False)]
        parts = nxt + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]
