"""The bounded reference of a large baseline: a fixed number of weighted sorted quantiles per numeric column.

A baseline keeps each numeric column's sorted values while it has at most ``EXACT_LIMIT`` of them; beyond that a
``QuantileSummary`` of at most ``POINTS`` + 2·``TAIL`` points, so a 10M-row baseline stores kilobytes per column,
not 80 MB.

- At most ``POINTS`` distinct values: every distinct value with its count. Lossless (bound 0): each CDF, count and
  distance computed from it equals the one from the raw values.
- Otherwise the ``TAIL`` smallest and largest values are kept as they are (the minimum and maximum, which
  Evidently's bins span, and the sparse far tails, where a block would spread a few values over a wide range and
  move them between histogram bins) and the m sorted values between them are cut into ``POINTS`` consecutive
  blocks of ⌊m/POINTS⌋ or ⌈m/POINTS⌉ values, each kept as its median with the block's size as weight (equal
  values collapse into one point). At most one block holds values on both sides of any x, and its median splits
  it at most ⌈(s−1)/2⌉ : ⌊(s−1)/2⌋, so the summary's CDF is within ``bound = ⌈(s−1)/2⌉ / n`` ≤ 1/(2·POINTS) +
  1/(2n) of the column's at every x (deterministic, not probabilistic as a KLL sketch's), and
  ∫|F̂ − F| dx ≤ bound × (max − min).

``POINTS`` sets the bound (1/32,768 of rank at 16,384) against kilobytes stored; the drift comparison itself is
exact on whatever points it gets (``ecdf``), so the summary's bound is the whole of a result's. ``EXACT_LIMIT`` is
where exact values stop being cheaper: 2·POINTS float64 values take about the bytes of the summary's POINTS +
2·TAIL (value, weight) pairs, so below it the exact reference costs no more than the summary would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.engine.kll import Floats

POINTS = 16_384
TAIL = 1_024
EXACT_LIMIT = 2 * POINTS


@dataclass(frozen=True)
class QuantileSummary:
    values: Floats     # ascending, distinct
    weights: Floats    # how many of the column's finite values each stands for (sums to n)
    bound: float       # max over x of |F_summary(x) − F_column(x)|; 0 when lossless


def _collapse(values: Floats, weights: Floats) -> tuple[Floats, Floats]:
    """Equal neighbouring values as one point carrying their summed weight."""
    first = np.concatenate([[True], values[1:] != values[:-1]])
    starts = np.flatnonzero(first)
    return values[starts], np.add.reduceat(weights, starts)


def block_bound(n: int, points: int = POINTS, tail: int = TAIL) -> float:
    """The CDF error of ``points`` median-kept blocks over the n − 2·tail values between the kept tails."""
    if n <= points + 2 * tail:
        return 0.0
    s = -(-(n - 2 * tail) // points)          # the largest block
    return float(-(-(s - 1) // 2)) / n


def summarise(sorted_values: Floats, points: int = POINTS, tail: int = TAIL) -> QuantileSummary:
    """The bounded summary of one column's sorted finite values (see the module's docstring)."""
    v = np.asarray(sorted_values, dtype=np.float64)
    n = len(v)
    tail = max(tail, 1)
    if n == 0:
        return QuantileSummary(np.empty(0), np.empty(0), 0.0)
    distinct, counts = _collapse(v, np.ones(n))
    if len(distinct) <= points or n <= points + 2 * tail:
        return QuantileSummary(distinct, counts, 0.0)
    inner = v[tail:-tail]
    m = len(inner)
    cuts = (np.arange(points + 1, dtype=np.int64) * m) // points      # block j is inner[cuts[j]:cuts[j+1]]
    sizes = np.diff(cuts)
    medians = inner[cuts[:-1] + (sizes - 1) // 2]
    values = np.concatenate([v[:tail], medians, v[-tail:]])
    weights = np.concatenate([np.ones(tail), sizes.astype(np.float64), np.ones(tail)])
    values, weights = _collapse(values, weights)
    return QuantileSummary(values, weights, block_bound(n, points, tail))


def bounded(sorted_values: Floats, exact_limit: int = EXACT_LIMIT, points: int = POINTS,
            tail: int = TAIL) -> QuantileSummary | None:
    """None while the column is small enough to keep every value; else its summary."""
    return None if len(sorted_values) <= exact_limit else summarise(sorted_values, points, tail)
