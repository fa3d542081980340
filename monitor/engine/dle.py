"""Label-free regression performance (NannyML's Direct Loss Estimation): models of the expected loss, trained on
the labelled reference, predict each row's absolute and squared error from its features and the model's
prediction; their means over a window estimate MAE and MSE (RMSE is the root of MSE's).

The loss models are scikit-learn's HistGradientBoostingRegressor, kept as data: each tree's nodes (feature,
threshold, side for missing values, children, leaf value) in JSON, checked, then scored for all trees at once by
leaf masks (scikit-learn's compiled tree walk for tables that do not allow it), so nothing is unpickled and the
stored form is the model (``predict`` equals scikit-learn's to float precision; tests check both paths).

The band has two parts. Sampling: with per-row expected losses a(x) = E|e| and q(x) = E[e²], the window's
realised MAE varies around its estimate by Var|e| = q - a² per row and MSE by Var e² ≈ 2q² (normal errors), both
scaled by how those variances compare with the out-of-fold residuals on the reference (heavy tails), so a window
of n rows gets sd = sqrt(Σ var) / n. The loss model's own error, measured on held-out reference rows: the
uncertainty of its level and its bias in the regions of predicted loss whose share a (shifted) window moved from the
reference's (``_model_error``). Sampling alone gave 50-80% coverage under shift.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from threadpoolctl import threadpool_limits

from monitor.engine.kll import Floats

METRICS = ("mae", "mse", "rmse")
FOLDS = 3
SHIFT_PARTS = 10   # tenths of the reference by predicted loss, for the loss model's bias under shift


_FIELDS = {"feature": "feature_idx", "threshold": "num_threshold", "missing_left": "missing_go_to_left",
           "left": "left", "right": "right", "leaf": "is_leaf", "value": "value"}
_NO_CATEGORIES = np.zeros((0, 8), dtype=np.uint32)


class Trees:
    """A boosted ensemble of regression trees as arrays: predict = baseline + Σ leaf values.

    The stored trees (plain numbers; nothing is unpickled) are checked first: every inner node's children lie
    after it inside its own tree (no cycle, no read outside the array), and ``predict`` refuses a window narrower
    than the features the nodes read. They are then scored all at once by leaf masks (``_LeafMasks``); tables not
    in scikit-learn's depth-first order, or trees of more than 64 leaves, by scikit-learn's compiled tree walk
    (``TreePredictor``), tree by tree. Both give the same leaves; the sums differ by float rounding only."""

    def __init__(self, baseline: float, trees: Sequence[dict[str, list[Any]]]) -> None:
        if not trees:
            raise ValueError("a loss model needs at least one tree")
        self.baseline = float(baseline)
        self.trees = [dict(t) for t in trees]
        sizes = np.asarray([len(t["left"]) for t in self.trees], dtype=np.intp)
        if np.any(sizes == 0):
            raise ValueError("a tree has no nodes")
        nodes = np.zeros(int(sizes.sum()), dtype=PREDICTOR_RECORD_DTYPE)   # every tree's table, end to end
        for key, field in _FIELDS.items():
            values = [t[key] for t in self.trees]
            if any(len(v) != n for v, n in zip(values, sizes, strict=True)):
                raise ValueError(f"a tree's {key!r} has not one entry per node")
            nodes[field] = np.fromiter(itertools.chain.from_iterable(values), dtype=nodes.dtype[field],
                                       count=len(nodes))
        start = np.repeat(np.cumsum(sizes) - sizes, sizes)   # each node's tree's first node
        own = np.arange(len(nodes)) - start
        leaf = nodes["is_leaf"].astype(bool)
        for side in ("left", "right"):
            child = nodes[side].astype(np.intp)[~leaf]
            if np.any((child <= own[~leaf]) | (child >= (start + np.repeat(sizes, sizes))[~leaf])):
                raise ValueError("a tree node points outside its ensemble (or back up its tree)")
        if np.any(nodes["feature_idx"][~leaf] < 0):
            raise ValueError("a tree node reads a negative feature index")
        self.width = int(nodes["feature_idx"][~leaf].max(initial=-1)) + 1
        tree = {"leaf": leaf, "left": nodes["left"].astype(np.intp) + start,
                "right": nodes["right"].astype(np.intp) + start, "feature": nodes["feature_idx"].astype(np.intp),
                "threshold": nodes["num_threshold"], "missing_left": nodes["missing_go_to_left"].astype(bool),
                "value": nodes["value"], "tree": np.repeat(np.arange(len(sizes)), sizes), "start": start}
        n_leaves = np.bincount(tree["tree"], weights=leaf, minlength=len(sizes))
        self._masks = _LeafMasks(tree, sizes, n_leaves) if n_leaves.max() <= 64 and _depth_first(tree) else None
        self._walks = [] if self._masks is not None else [
            TreePredictor(nodes[s:s + n], _NO_CATEGORIES, _NO_CATEGORIES)
            for s, n in zip((np.cumsum(sizes) - sizes).tolist(), sizes.tolist(), strict=True)]

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
        xf = np.ascontiguousarray(x, dtype=np.float64)
        if xf.ndim != 2 or self.width > xf.shape[1]:
            raise ValueError(f"the loss model reads {self.width} features, the window has {xf.shape[-1]}")
        if self._masks is not None:
            return self._masks.predict(xf, self.baseline)
        index = np.zeros(xf.shape[1], dtype=np.uint32)
        out: Floats = np.full(len(xf), self.baseline)
        for walk in self._walks:
            out += walk.predict(xf, _NO_CATEGORIES, index, 1)
        return out


_BUILT: OrderedDict[int, tuple[dict[str, Any], Trees]] = OrderedDict()
_BUILT_LOCK = threading.Lock()


def _trees(d: dict[str, Any]) -> Trees:
    """``Trees.from_dict(d)``, built once per stored model object: checking and compiling 200 trees costs ~7 ms,
    a third of scoring a 5,000-row window with them, and an estimator scores chunk after chunk (as NannyML's fitted
    estimator does). Keyed by identity, the dict itself held so its id cannot be reused while cached; an
    estimator's models are never changed once fitted."""
    with _BUILT_LOCK:
        hit = _BUILT.get(id(d))
        if hit is not None and hit[0] is d:
            _BUILT.move_to_end(id(d))
            return hit[1]
    trees = Trees.from_dict(d)
    with _BUILT_LOCK:
        _BUILT[id(d)] = (d, trees)
        while len(_BUILT) > 8:
            _BUILT.popitem(last=False)
    return trees


def _depth_first(tree: dict[str, np.ndarray]) -> bool:
    """Whether checked node tables (end to end, children as indices into the whole) are each in depth-first
    order, left subtree first: every inner node's left child follows it, its right child follows the left subtree,
    and each root's subtree is its whole table (so each subtree is a block of consecutive nodes and its leaves are
    numbered consecutively)."""
    leaf, left, right = tree["leaf"], tree["left"], tree["right"]
    own = np.arange(len(leaf))
    if np.any(left[~leaf] != own[~leaf] + 1):
        return False
    last = np.where(leaf, own, right)   # the subtree's last node: its rightmost leaf, by pointer jumping
    while not np.array_equal(jumped := last[last], last):
        last = jumped
    roots = np.flatnonzero(own == tree["start"])
    ends = np.append(roots[1:], len(leaf)) - 1
    return bool(np.all(last[roots] == ends) and np.all(right[~leaf] == last[left[~leaf]] + 1))


class _LeafMasks:
    """All trees scored at once, without walking them (QuickScorer: Lucchese et al., SIGIR 2015). A tree's leaves,
    numbered left to right, are bits of a word; a node whose test sends a row right rules out the leaves of its left
    subtree, and the row's leaf is the lowest bit left standing. The nodes sending a row right are those whose
    threshold lies below the row's value, so per feature the AND of their masks is a running AND over the sorted
    thresholds, one table row per threshold rank (plus a row for missing values): a window is a searchsorted per
    feature, one table row gathered per feature and row, and the leaf value looked up: 200 trees score 5,000 rows
    in about 5 ms of CPU against 32 ms for the compiled walk tree by tree, with the same leaves. Needs the tables
    in depth-first order, left subtree first (scikit-learn's own), which is checked; otherwise, or with more than
    64 leaves, the walk is used."""

    BLOCK = 256   # rows per pass: the (rows x trees) words stay in cache (256-512 fastest; 4,096 half as fast)

    def __init__(self, tree: dict[str, np.ndarray], sizes: np.ndarray, n_leaves: np.ndarray) -> None:
        self.word = np.uint32 if n_leaves.max() <= 32 else np.uint64
        bits = 32 if self.word is np.uint32 else 64
        self.debruijn, self.shift = (0x077CB531, 27) if bits == 32 else (0x03F79D71B4CB0A89, 58)
        n_trees, full = len(sizes), (1 << bits) - 1
        leaf, which = tree["leaf"], tree["tree"]
        before = np.cumsum(leaf) - leaf
        rank = before - before[tree["start"]]   # leaves before each node in its tree: its subtree's first leaf
        bit = np.left_shift(np.uint64(1), rank[leaf].astype(np.uint64)).astype(self.word)
        values = np.zeros((n_trees, bits))   # by the de Bruijn hash of the leaf's bit: no bit scan needed
        values[which[leaf], self._hash(bit)] = tree["value"][leaf]
        self.values = values.ravel()
        self.offsets = (np.arange(n_trees) * bits).astype(np.intp)
        inner = np.flatnonzero(~leaf)
        first = rank[tree["left"][inner]]
        count = (rank[tree["right"][inner]] - first).astype(np.uint64)
        left_leaves = np.left_shift(np.left_shift(np.uint64(1), count) - np.uint64(1), first.astype(np.uint64))
        masks = (np.uint64(full) & ~left_leaves).astype(self.word)
        self.features = []
        for f in np.unique(tree["feature"][inner]).tolist():
            on = inner[tree["feature"][inner] == f]
            mask, at, threshold = masks[tree["feature"][inner] == f], which[on], tree["threshold"][on]
            cuts = np.unique(threshold)
            table = np.full((len(cuts) + 2, n_trees), full, dtype=self.word)
            np.bitwise_and.at(table, (np.searchsorted(cuts, threshold) + 1, at), mask)
            table[: len(cuts) + 1] = np.bitwise_and.accumulate(table[: len(cuts) + 1], axis=0)
            right = ~tree["missing_left"][on]
            np.bitwise_and.at(table[-1], at[right], mask[right])   # missing values: right where so marked
            self.features.append((f, cuts, table))
        self.groups = self._group(self.features)

    JOINT = 1024   # most rows of a table shared by features of few thresholds

    @staticmethod
    def _group(features: list[tuple[int, np.ndarray, np.ndarray]]) -> list[tuple[list[tuple[int, np.ndarray]],
                                                                                   np.ndarray]]:
        """Features of few thresholds share one table (rows: every combination of their ranks, ANDed), so a window
        gathers once for them all."""
        groups: list[tuple[list[tuple[int, np.ndarray]], np.ndarray]] = []
        for f, cuts, table in sorted(features, key=lambda t: len(t[2])):
            if groups and len(groups[-1][1]) * len(table) <= _LeafMasks.JOINT:
                members, joint = groups[-1]
                both = joint[:, None, :] & table[None, :, :]   # row: earlier members' rank x this one's
                groups[-1] = ([*members, (f, cuts)], both.reshape(-1, table.shape[1]))
            else:
                groups.append(([(f, cuts)], table))
        return groups

    def _hash(self, low: np.ndarray) -> np.ndarray:
        """The de Bruijn hash of one-bit words: distinct for every bit position."""
        with np.errstate(over="ignore"):
            hashed: np.ndarray = np.right_shift(low * self.word(self.debruijn), self.word(self.shift))
            return hashed.astype(np.intp)

    def predict(self, x: np.ndarray, baseline: float) -> Floats:
        out: Floats = np.empty(len(x))
        ranks = []   # per group, each row's table row: its rank among each feature's thresholds, combined
        for members, _ in self.groups:
            combined = np.zeros(len(x), dtype=np.intp)
            for f, cuts in members:
                rank = np.searchsorted(cuts, x[:, f])   # thresholds below the value: nodes sending the row right
                rank[np.isnan(x[:, f])] = len(cuts) + 1
                combined = combined * (len(cuts) + 2) + rank
            ranks.append(combined)
        for start in range(0, len(x), self.BLOCK):
            stop = min(start + self.BLOCK, len(x))
            alive = None
            for (_, table), rank in zip(self.groups, ranks, strict=True):
                if alive is None:
                    alive = table[rank[start:stop]]
                else:
                    alive &= table[rank[start:stop]]
            if alive is None:   # no tree splits: every row in each tree's only leaf
                alive = np.ones((stop - start, len(self.offsets)), dtype=self.word)
            with np.errstate(over="ignore"):
                lowest = alive & (~alive + self.word(1))
            leaf = self.values.take(self._hash(lowest) + self.offsets)
            out[start:stop] = baseline + leaf.sum(axis=1)
        return out


def _fit(x: np.ndarray, target: np.ndarray, seed: int) -> HistGradientBoostingRegressor:
    with threadpool_limits(limits=1, user_api="openmp"):   # OpenMP threads spin-wait badly on a busy machine
        return _hgb(x, target, seed)


def _hgb(x: np.ndarray, target: np.ndarray, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40,
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
            "scale_abs": scale_a, "scale_sq": scale_q, "features": int(xf.shape[1]),
            "model_error_abs": _model_error(ab, oof_a), "model_error_sq": _model_error(sq, oof_q)}


def _model_error(loss: Floats, oof: Floats) -> dict[str, Any]:
    """The loss model's own error, measured on held-out reference rows (out-of-fold predictions). ``reference``:
    the uncertainty of its level, relative (the reference is a sample too: the residuals' sd over √rows).
    ``edges``/``bias``: the reference cut into tenths by predicted loss, and each tenth's relative bias (its own
    sampling noise taken out). A loss model is most wrong where the loss changes fastest and rows are fewest —
    where shifted windows put their weight — so a window is charged the bias of the tenths whose share it moved
    (``_shift_error``); an unshifted window is charged almost nothing."""
    mean = max(float(np.mean(oof)), 1e-300)
    resid = loss - oof
    edges = np.quantile(oof, np.linspace(0, 1, SHIFT_PARTS + 1)[1:-1])
    region = np.searchsorted(edges, oof, side="right")
    bias = []
    for g in range(SHIFT_PARTS):
        part = resid[region == g]
        level = float(np.mean(oof[region == g])) if len(part) else 0.0
        if len(part) < 2 or level <= 1e-9 * mean:   # no rows, or a loss predicted as nil: no relative bias to give
            bias.append(0.0)
            continue
        b, noise = float(np.mean(part)) / level, float(np.var(part, ddof=1)) / len(part) / level**2
        bias.append(math.sqrt(max(0.0, b * b - noise)))
    return {"reference": float(np.std(resid) / math.sqrt(len(loss)) / mean),
            "edges": [float(e) for e in edges], "bias": bias}


def _regions(model: dict[str, Any], predicted: Floats) -> tuple[Floats, Floats]:
    """Rows and Σ predicted loss per tenth of the reference's predicted loss (empty when the model has none)."""
    edges, bias = np.asarray(model.get("edges") or [], dtype=float), np.asarray(model.get("bias") or [], dtype=float)
    if not len(bias) or len(bias) != len(edges) + 1:
        return np.zeros(0), np.zeros(0)
    region = np.searchsorted(edges, predicted, side="right")
    return (np.bincount(region, minlength=len(bias)).astype(float),
            np.bincount(region, weights=predicted, minlength=len(bias)).astype(float))


def _shift_error(model: dict[str, Any], counts: Floats, sums: Floats, n: float) -> float:
    """The bias a window may carry from weighting the regions of predicted loss otherwise than the reference (whose
    tenths' biases cancel): per tenth, how far the window's share moved, times the tenth's relative bias, times the
    window's mean loss there; summed as magnitudes, the signs being unknown. ``counts``/``sums``: ``_regions``."""
    bias = np.asarray(model.get("bias") or [], dtype=float)
    if not len(counts) or n == 0:
        return 0.0
    level = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    moved = np.abs(counts / n - 1.0 / len(bias))
    return float(np.sum(moved * bias * level))


def _variances(a: Floats, q: Floats) -> tuple[Floats, Floats]:
    a, q = np.maximum(a, 0.0), np.maximum(q, 0.0)
    return np.maximum(q - a * a, 1e-12 * (1 + q)), 2 * q * q + 1e-300


@dataclass
class LossSums:
    """A window's (or one partition's) sufficient statistics for the DLE estimate, mergeable by addition: rows,
    Σ predicted |e| and e², Σ of their per-row variances, rows and Σ predicted loss per tenth of the reference's
    predicted loss (abs, sq), and for the labelled rows their count, Σ|e| and Σe²."""

    n: float
    predicted: Floats                 # (2,): abs, sq
    variance: Floats                  # (2,)
    regions: tuple[Floats, Floats, Floats, Floats]   # counts_abs, sums_abs, counts_sq, sums_sq
    labelled: Floats                  # (3,): rows, Σ|e|, Σe²

    def merge(self, o: LossSums) -> LossSums:
        return LossSums(self.n + o.n, self.predicted + o.predicted, self.variance + o.variance,
                        (self.regions[0] + o.regions[0], self.regions[1] + o.regions[1],
                         self.regions[2] + o.regions[2], self.regions[3] + o.regions[3]),
                        self.labelled + o.labelled)


def loss_sums(state: dict[str, Any], x: np.ndarray, *, y: np.ndarray | None = None) -> LossSums:
    """The sums of one partition: ``x`` as in ``fit`` (its last column the model's prediction), ``y`` the labels
    (NaN where a row has none)."""
    xf = np.asarray(x, dtype=float)
    if xf.shape[0] == 0:
        a = q = np.zeros(0)
    else:
        a = np.maximum(_trees(state["abs"]).predict(xf), 0.0)
        q = np.maximum(_trees(state["sq"]).predict(xf), 0.0)
    var_a, var_q = _variances(a, q)
    ca, sa = _regions(state.get("model_error_abs") or {}, a)
    cq, sq = _regions(state.get("model_error_sq") or {}, q)
    labelled = np.zeros(3)
    if y is not None and len(xf):
        err = xf[:, -1] - np.asarray(y, dtype=float)
        err = err[np.isfinite(err)]
        labelled = np.array([float(len(err)), float(np.abs(err).sum()), float((err * err).sum())])
    return LossSums(float(len(a)), np.array([a.sum(), q.sum()]), np.array([var_a.sum(), var_q.sum()]),
                    (ca, sa, cq, sq), labelled)


def estimate(state: dict[str, Any], x: np.ndarray, *, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Estimated MAE, MSE and RMSE of a window (``x`` as in ``fit``) with bands."""
    return estimate_sums(state, loss_sums(state, x), level=level)


def estimate_sums(state: dict[str, Any], sums: LossSums, *, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Estimated MAE, MSE and RMSE with bands from a window's sums (``loss_sums``, merged): every term is a sum
    over rows, so partitions give the whole window's result to floating-point rounding."""
    if sums.n == 0:
        raise ValueError("no predictions to estimate from")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    mae, mse = float(sums.predicted[0] / sums.n), float(sums.predicted[1] / sums.n)
    sd_a = _sd(state, "abs", sums, 0)
    sd_q = _sd(state, "sq", sums, 1)
    calibrated = {"applied": False, "method": None, "loss_model": str(state.get("model"))}
    bands = {"mae": (max(0.0, mae - z * sd_a), mae + z * sd_a), "mse": (max(0.0, mse - z * sd_q), mse + z * sd_q)}
    bands["rmse"] = (math.sqrt(bands["mse"][0]), math.sqrt(bands["mse"][1]))
    point = {"mae": mae, "mse": mse, "rmse": math.sqrt(mse)}
    return {m: {"estimate": point[m], "lower": bands[m][0], "upper": bands[m][1],
                "band": {"lower": bands[m][0], "upper": bands[m][1]}, "calibrated": calibrated} for m in METRICS}


def _sd(state: dict[str, Any], loss: str, sums: LossSums, i: int) -> float:
    """The band's standard deviation: the window's own sampling (per-row variances, scaled to the reference's
    out-of-fold residuals) and the loss model's error (its level's uncertainty and its bias in the regions whose
    share the window moved; absent from estimators fitted before they were measured)."""
    n = sums.n
    sampling = float(state[f"scale_{loss}"]) * float(sums.variance[i]) / (n * n)
    model = state.get(f"model_error_{loss}") or {}
    level = float(model.get("reference", 0.0)) * float(sums.predicted[i] / n)
    shift = _shift_error(model, sums.regions[2 * i], sums.regions[2 * i + 1], n)
    return math.sqrt(sampling + level * level + shift**2)


def realised_sums(sums: LossSums) -> dict[str, float] | None:
    """The realised MAE, MSE and RMSE of the labelled rows, None without any."""
    rows, total_abs, total_sq = (float(v) for v in sums.labelled)
    if rows == 0:
        return None
    return {"mae": total_abs / rows, "mse": total_sq / rows, "rmse": math.sqrt(total_sq / rows)}


def realised(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    err = np.asarray(yhat, dtype=float) - np.asarray(y, dtype=float)
    mse = float(np.mean(err * err))
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": math.sqrt(mse)}
