"""Attribution drift (nDCG) and bias drift (farther from 0 than baseline, bootstrap CI)."""

from __future__ import annotations

import numpy as np
import pytest

from clarify.metrics import bias
from clarify.metrics.drift import allowed_range, bias_violation, bootstrap_interval, ndcg


def test_sagemaker_worked_example_gives_069():
    base = {"SAT": 0.70, "GPA": 0.50, "rank": 0.05}
    reversed_ranking = {"SAT": 0.05, "GPA": 0.50, "rank": 0.70}
    assert ndcg(base, reversed_ranking) == pytest.approx(0.69, abs=0.005)
    assert ndcg(base, base) == 1.0
    assert 0.90 < ndcg(base, {"GPA": 0.9, "SAT": 0.8, "rank": 0.1}) < 1.0   # swapping the top two is mild


def test_bias_rule_farther_from_zero():
    assert not bias_violation(0.2, 0.1) and bias_violation(0.2, -0.3) and bias_violation(-0.2, 0.25)
    assert not bias_violation(0.2, -0.2)


def test_disparate_impact_is_judged_from_parity_one():
    """DI is a ratio, fair at 1: a fall from 0.92 to 0.40 is drift (farther from parity), 0.92 → 1.05 is not."""
    assert allowed_range("DI", 0.92) == pytest.approx((0.92, 1.08))
    assert bias_violation(0.92, 0.40, metric="DI") and bias_violation(0.92, 0.40, (0.35, 0.45), metric="DI")
    assert not bias_violation(0.92, 1.05, metric="DI") and not bias_violation(0.92, 0.40, (0.3, 0.95), metric="DI")
    assert allowed_range("DPPL", -0.2) == (-0.2, 0.2)
    assert allowed_range("DI", 8.4) == pytest.approx((0.0, 8.4))      # a ratio: never below 0


def test_bootstrap_interval_quiets_small_windows():
    rng = np.random.default_rng(0)

    def window(n: int, gap: float):
        d = rng.random(n) < 0.5
        p = rng.random(n) < np.where(d, 0.5 - gap / 2, 0.5 + gap / 2)
        return d, p

    def dppl(d, p):
        return lambda idx: bias.post_training(bias.Counts.of(d[idx], p[idx], p[idx]), p[idx], p[idx],
                                              None, None)["DPPL"]

    baseline = 0.05
    small_d, small_p = window(60, 0.12)          # noisy: the point estimate may exceed 0.05 by chance
    lo, hi = bootstrap_interval(dppl(small_d, small_p), 60)
    assert lo < baseline                          # the interval reaches back inside: no alert
    assert not bias_violation(baseline, dppl(small_d, small_p)(np.arange(60)), (lo, hi))
    big_d, big_p = window(20_000, 0.12)          # a real, larger disparity on plenty of data
    lo, hi = bootstrap_interval(dppl(big_d, big_p), 20_000, draws=100)
    assert lo > baseline and bias_violation(baseline, dppl(big_d, big_p)(np.arange(20_000)), (lo, hi))
