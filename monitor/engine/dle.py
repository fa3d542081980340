"""Label-free regression performance (NannyML's Direct Loss Estimation): models of the expected loss, trained on
the labelled reference, predict each row's absolute and squared error from its features and the model's
prediction; their means over a window estimate MAE and MSE (RMSE is the root of MSE's).

The loss models are scikit-learn's HistGradientBoostingRegressor, kept as data: each tree's nodes (feature,
threshold, side for missing values, children, leaf value) in JSON, evaluated here with numpy over all trees at
once, so nothing is unpickled and the stored form is the model (``predict`` equals scikit-learn's to float
precision; a test checks it).

The band: with per-row expected losses a(x) = E|e| and q(x) = E[e²], the window's realised MAE varies around its
estimate by Var|e| = q - a² per row and MSE by Var e² ≈ 2q² (normal errors); both are scaled by how those
variances compare with the out-of-fold residuals on the reference (so heavy tails and model error are counted),
and a window of n rows gets sd = sqrt(Σ var) / n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from monitor.engine.kll import Floats

METRICS = ("mae", "mse", "rmse")
FOLDS = 3


class Trees:
    """A boosted ensemble of regression trees as arrays: predict = baseline + Σ leaf values."""

    def __init__(self, baseline: float, trees: Sequence[dict[str, list[Any]]]) -> None:
        if not trees:
            raise ValueError("a loss model needs at least one tree")
        self.baseline = float(baseline)
        sizes = [len(t["left"]) for t in trees]
        self.roots = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        off = np.repeat(self.roots, sizes)
        cat = {k: np.concatenate([np.asarray(t[k]) for t in trees]) for k in
               ("feature", "threshold", "missing_left", "left", "right", "leaf", "value")}
        self.feature = cat["feature"].astype(np.int64)
        self.threshold = cat["threshold"].astype(float)
        self.missing_left = cat["missing_left"].astype(bool)
        self.leaf = cat["leaf"].astype(bool)
        self.left = np.where(self.leaf, 0, cat["left"].astype(np.int64) + off)
        self.right = np.where(self.leaf, 0, cat["right"].astype(np.int64) + off)
        self.value = cat["value"].astype(float)
        self.trees = [dict(t) for t in trees]
        total = len(self.feature)
        if np.any((self.left < 0) | (self.left >= total) | (self.right < 0) | (self.right >= total)):
            raise ValueError("a tree node points outside its ensemble")

    @classmethod
    def from_sklearn(cls, model: HistGradientBoostingRegressor) -> Trees:
        trees = []
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                          "missing_left": nodes["missing_go_to_left"].astype(int).tolist(),
                          "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                          "leaf": nodes["is_leaf"].astype(int).tolist(), "value": nodes["value"].tolist()})
        return cls(float(np.ravel(model._baseline_prediction)[0]), trees)

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "trees": self.trees}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trees:
        return cls(float(d["baseline"]), list(d["trees"]))

    def predict(self, x: np.ndarray) -> Floats:
        n = x.shape[0]
        if self.feature.max(initial=0) >= x.shape[1]:
            raise ValueError(f"the loss model reads {self.feature.max() + 1} features, the window has {x.shape[1]}")
        node = np.repeat(self.roots[:, None], n, axis=1)            # (trees, rows)
        rows = np.arange(n)[None, :]
        while True:
            inner = ~self.leaf[node]
            if not inner.any():
                break
            v = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        out: Floats = self.baseline + self.value[node].sum(axis=0)
        return out


def _fit(x: np.ndarray, target: np.ndarray, seed: int) -> HistGradientBoostingRegressor:
    with threadpool_limits(limits=1, user_api="openmp"):   # OpenMP threads spin-wait badly on a busy machine
        return _hgb(x, target, seed)


def _hgb(x: np.ndarray, target: np.ndarray, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40,
                                         early_stopping=False, random_state=seed).fit(x, target)


def fit(x: np.ndarray, y: np.ndarray, yhat: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """The loss models and band scales from the labelled reference; ``x``: numeric features, the prediction
    included (NaN for missing). JSON-ready."""
    xf, err = np.asarray(x, dtype=float), np.asarray(yhat, dtype=float) - np.asarray(y, dtype=float)
    if len(err) < 10 * FOLDS:
        raise ValueError("direct loss estimation needs at least 30 labelled rows")
    ab, sq = np.abs(err), err * err
    fold = np.random.default_rng(seed).permutation(len(err)) % FOLDS
    oof_a, oof_q = np.empty_like(ab), np.empty_like(sq)
    for k in range(FOLDS):
        tr, te = fold != k, fold == k
        oof_a[te] = _fit(xf[tr], ab[tr], seed).predict(xf[te])
        oof_q[te] = _fit(xf[tr], sq[tr], seed).predict(xf[te])
    var_a, var_q = _variances(oof_a, oof_q)
    scale_a = float(np.mean((ab - oof_a) ** 2) / max(np.mean(var_a), 1e-300))
    scale_q = float(np.mean((sq - oof_q) ** 2) / max(np.mean(var_q), 1e-300))
    return {"method": "direct_loss_estimation", "model": "HistGradientBoostingRegressor",
            "abs": Trees.from_sklearn(_fit(xf, ab, seed)).as_dict(),
            "sq": Trees.from_sklearn(_fit(xf, sq, seed)).as_dict(),
            "scale_abs": scale_a, "scale_sq": scale_q, "features": int(xf.shape[1])}


def _variances(a: Floats, q: Floats) -> tuple[Floats, Floats]:
    a, q = np.maximum(a, 0.0), np.maximum(q, 0.0)
    return np.maximum(q - a * a, 1e-12 * (1 + q)), 2 * q * q + 1e-300


def estimate(state: dict[str, Any], x: np.ndarray, *, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Estimated MAE, MSE and RMSE of a window (``x`` as in ``fit``) with bands."""
    xf = np.asarray(x, dtype=float)
    if xf.shape[0] == 0:
        raise ValueError("no predictions to estimate from")
    a = np.maximum(Trees.from_dict(state["abs"]).predict(xf), 0.0)
    q = np.maximum(Trees.from_dict(state["sq"]).predict(xf), 0.0)
    var_a, var_q = _variances(a, q)
    n = len(a)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    sd_a = math.sqrt(float(state["scale_abs"]) * float(var_a.sum())) / n
    sd_q = math.sqrt(float(state["scale_sq"]) * float(var_q.sum())) / n
    mae, mse = float(a.mean()), float(q.mean())
    calibrated = {"applied": False, "method": None, "loss_model": str(state.get("model"))}
    bands = {"mae": (max(0.0, mae - z * sd_a), mae + z * sd_a), "mse": (max(0.0, mse - z * sd_q), mse + z * sd_q)}
    bands["rmse"] = (math.sqrt(bands["mse"][0]), math.sqrt(bands["mse"][1]))
    point = {"mae": mae, "mse": mse, "rmse": math.sqrt(mse)}
    return {m: {"estimate": point[m], "lower": bands[m][0], "upper": bands[m][1],
                "band": {"lower": bands[m][0], "upper": bands[m][1]}, "calibrated": calibrated} for m in METRICS}


def realised(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    err = np.asarray(yhat, dtype=float) - np.asarray(y, dtype=float)
    mse = float(np.mean(err * err))
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": math.sqrt(mse)}
