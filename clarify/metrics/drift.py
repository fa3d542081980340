"""Bias drift and feature-attribution drift, by SageMaker's rules.

Bias drift: a metric violates when it is farther from parity than the baseline value (same side or not); a
normal bootstrap confidence interval of the current value must lie entirely outside the allowed range
parity ± |baseline − parity| for a violation, so small windows do not alert on noise. Parity is 0 for every
metric but disparate impact (DI), a ratio whose parity is 1: SageMaker words the rule as "farther from 0",
which for DI would call a fall from 0.92 to 0.40 (further from fair) no drift.
Attribution drift: nDCG of the current global-SHAP ranking scored with the baseline attributions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_NDCG_THRESHOLD = 0.90
NOT_DRIFT_CHECKED = ("FT", "CDDPL")   # need the whole dataset's structure: no bootstrap interval, never compared
PARITY = {"DI": 1.0}   # the value of a metric when the groups are treated alike; 0 for the others


def allowed_range(metric: str, baseline: float) -> tuple[float, float]:
    """parity ± |baseline − parity|: values no farther from parity than the baseline's. DI, a ratio of rates, is
    never negative: its range starts at 0 at the lowest (a chart drew it from −6.4 for a baseline DI of 8.4)."""
    parity = PARITY.get(metric, 0.0)
    bound = abs(baseline - parity)
    return (max(parity - bound, 0.0) if metric == "DI" else parity - bound), parity + bound


def matching_group(baseline_groups: list[dict[str, Any]], group: dict[str, Any], index: int,
                   groups: int) -> dict[str, Any] | None:
    """The baseline's facet group a window's group is compared with: the same value or threshold, else the one at
    the same position when both list as many groups."""
    same = next((g for g in baseline_groups if g["value_or_threshold"] == group["value_or_threshold"]), None)
    if same is not None:
        return same
    return baseline_groups[index] if len(baseline_groups) == groups else None


def ndcg(baseline: dict[str, float], current: dict[str, float]) -> float:
    """DCG of the current ranking F′ using baseline scores a(f), over iDCG of the baseline ranking F."""
    m = len(baseline)
    ideal = sorted(baseline, key=lambda f: baseline[f], reverse=True)
    live = sorted(current, key=lambda f: current[f], reverse=True)[:m]
    gain = np.array([baseline.get(f, 0.0) for f in live])
    ideal_gain = np.array([baseline[f] for f in ideal])
    disc = 1.0 / np.log2(np.arange(2, m + 2))
    idcg = float(np.sum(ideal_gain * disc))
    return float(np.sum(gain * disc[: len(gain)]) / idcg) if idcg else 1.0


def bootstrap_interval(metric: Callable[[np.ndarray], float], n: int, *, draws: int = 200, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Normal bootstrap CI: value ± z·sd of the metric over resamples of row indices."""
    rng = np.random.default_rng(seed)
    point = metric(np.arange(n))
    values = np.array([metric(rng.integers(0, n, n)) for _ in range(draws)], dtype=float)
    return _normal_interval(point, values, level)


def bootstrap_interval_of_counts(metric: Callable[[np.ndarray], float], cells: np.ndarray, *, draws: int = 200,
                                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The same interval when the metric reads only row counts per cell (``cells``, any shape): resampling n rows
    with replacement is one multinomial draw of n over the cells' shares, so the draws need no rows."""
    rng = np.random.default_rng(seed)
    n = int(cells.sum())
    point = metric(cells)
    if n == 0:
        return point, point
    flat = cells.reshape(-1).astype(float)
    values = np.array([metric(d.reshape(cells.shape)) for d in rng.multinomial(n, flat / n, size=draws)],
                      dtype=float)
    return _normal_interval(point, values, level)


def _normal_interval(point: float, values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values) or not math.isfinite(point):
        return point, point
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    sd = float(np.std(values, ddof=1))
    return point - z * sd, point + z * sd


def bias_violation(baseline: float, current: float, interval: tuple[float, float] | None = None, *,
                   metric: str = "") -> bool:
    """Farther from parity than the baseline; with an interval, only if all of it is outside the allowed range."""
    if not (math.isfinite(baseline) and math.isfinite(current)):
        return math.isfinite(baseline) and not math.isfinite(current)
    low, high = allowed_range(metric, baseline)
    lo, hi = interval if interval is not None else (current, current)
    return lo > high or hi < low
