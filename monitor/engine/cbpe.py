"""Label-free performance estimation for binary classifiers (NannyML's CBPE idea).

With calibrated probabilities p_i, each prediction is a correct positive with probability p_i when it
predicts 1 (else a false positive), and a missed positive with probability p_i when it predicts 0. Summing
gives the expected confusion matrix, hence expected accuracy, precision, recall and F1; the expected ROC
curve uses Σp and Σ(1-p) above each threshold. The band comes from simulating the labels the
probabilities imply (vectorised draws): if the model is calibrated, the realised metric falls inside the
95% band 95% of the time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monitor.engine.kll import Floats

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _div(a: Floats | float, b: Floats | float) -> Floats:
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out: Floats = np.divide(a_arr, b_arr, out=np.zeros(np.broadcast(a_arr, b_arr).shape), where=b_arr != 0)
    return out


def _from_counts(tp: Floats, fp: Floats, fn: Floats, tn: Floats) -> dict[str, Floats]:
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {"accuracy": _div(tp + tn, tp + fp + fn + tn), "precision": precision, "recall": recall,
            "f1": _div(2 * precision * recall, precision + recall)}


def _auc(p: Floats, weights_pos: Floats, weights_neg: Floats) -> Floats:
    """AUC of the ranking by p when each item is positive with weight w+ and negative with weight w- (per row
    of the weight matrices); ties share credit as in the trapezoid rule."""
    order = np.argsort(-p, kind="stable")
    s = p[order]
    wp, wn = weights_pos[..., order], weights_neg[..., order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(wp, axis=-1)[..., last]
    fps = np.cumsum(wn, axis=-1)[..., last]
    pos, neg = tps[..., -1:], fps[..., -1:]
    tpr = np.concatenate([np.zeros_like(pos), _div(tps, pos)], axis=-1)
    fpr = np.concatenate([np.zeros_like(neg), _div(fps, neg)], axis=-1)
    return np.asarray(np.trapezoid(tpr, fpr, axis=-1))


def estimate(probability: np.ndarray, threshold: float = 0.5, *, draws: int = 200, seed: int = 0,
             level: float = 0.95) -> dict[str, dict[str, float]]:
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    if len(p) == 0:
        raise ValueError("no predictions to estimate from")
    pred = p >= threshold
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    fn, tn = p[~pred].sum(), (1 - p[~pred]).sum()
    point = {k: float(v) for k, v in _from_counts(np.array(tp), np.array(fp), np.array(fn), np.array(tn)).items()}
    point["roc_auc"] = float(_auc(p, p, 1 - p))
    rng = np.random.default_rng(seed)
    y = rng.random((draws, len(p))) < p                     # labels the probabilities imply
    sim_tp = (y & pred).sum(axis=1).astype(float)
    sim_fp = (~y & pred).sum(axis=1).astype(float)
    sim_fn = (y & ~pred).sum(axis=1).astype(float)
    sim_tn = (~y & ~pred).sum(axis=1).astype(float)
    sims = _from_counts(sim_tp, sim_fp, sim_fn, sim_tn)
    sims["roc_auc"] = _auc(p, y.astype(float), (~y).astype(float))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = {}
    for m in METRICS:
        vals = sims[m]
        if m == "roc_auc":
            vals = vals[np.isfinite(vals)]
        out[m] = {"estimate": point[m], "lower": float(np.quantile(vals, lo_q)) if len(vals) else math.nan,
                  "upper": float(np.quantile(vals, hi_q)) if len(vals) else math.nan}
    return out


def compare(est: dict[str, dict[str, float]], realized: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Estimated vs realised, side by side, once labels arrive."""
    key = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "f1", "roc_auc": "auc"}
    out = {}
    for m, e in est.items():
        r = realized.get(key[m])
        out[m] = {**e, "realized": r, "within_band": None if r is None else bool(e["lower"] <= r <= e["upper"])}
    return out
