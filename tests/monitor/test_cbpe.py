"""Label-free estimation: on simulated calibrated data the realised metrics land inside the estimated bands."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from monitor.engine import cbpe, quality


def test_estimates_land_within_their_band_on_calibrated_data():
    rng = np.random.default_rng(0)
    inside = {m: 0 for m in cbpe.METRICS}
    windows = 30
    for w in range(windows):
        p = rng.beta(2, 3 + (w % 3), 2000)             # a different score distribution per window
        y = (rng.random(2000) < p).astype(int)          # labels drawn from the probabilities: calibrated
        est = cbpe.estimate(p, seed=w)
        realized = quality.binary_values(y, p, None, curves=False)
        for m, r in cbpe.compare(est, realized).items():
            inside[m] += r["within_band"]
    for m, n in inside.items():
        assert n / windows >= 0.85, (m, n)               # ~95% nominal coverage; allow sampling slack


def test_point_estimates_and_shift_detection():
    rng = np.random.default_rng(1)
    p = rng.beta(2, 2, 50_000)
    y = (rng.random(50_000) < p).astype(int)
    est = cbpe.estimate(p)
    pred = (p >= 0.5).astype(int)
    assert est["accuracy"]["estimate"] == pytest.approx(skm.accuracy_score(y, pred), abs=0.01)
    assert est["roc_auc"]["estimate"] == pytest.approx(skm.roc_auc_score(y, p), abs=0.01)
    assert est["accuracy"]["lower"] < est["accuracy"]["estimate"] < est["accuracy"]["upper"]
    # a confident model on easier data is estimated to do better, before any label arrives
    easy = cbpe.estimate(np.clip(rng.beta(0.3, 0.3, 5000), 0, 1))
    assert easy["accuracy"]["estimate"] > est["accuracy"]["estimate"]
    with pytest.raises(ValueError):
        cbpe.estimate(np.array([]))
