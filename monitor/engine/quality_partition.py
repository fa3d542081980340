"""Model quality from partitions: per-partition summaries that merge into the statistics of the whole window.

What each partition keeps (no raw rows): for regression the count, sums of |e| and e² and the label's mean and
M2 (Chan's merge); for binary classification the confusion counts at the threshold and, per class, a histogram of
the scores over ``BINS`` equal-width bins of [0, 1] with each bin's smallest and largest score; for multiclass the
confusion counts per (true, predicted) pair. Each partition also keeps the same summary for five random 80%
subsets of its rows (a Bernoulli(0.8) draw per row and subset), from which the standard deviations follow as in
SageMaker.

Against one pass over the whole window (``quality.statistics``): confusion matrices, counts and every metric made
of them (accuracy, precision, recall, F-scores, rates, best-constant classifiers, multiclass weighted metrics) are
exactly equal; MAE, MSE, RMSE and R² equal up to floating-point rounding; the AUC is the trapezoid over the bin
edges, within ``auc_max_error`` (stated in the result): a bin holding both classes and more than one distinct
score can misorder at most pos_b·neg_b pairs, so |AUC − AUC_binned| ≤ Σ pos_b·neg_b / (2·P·N) over such bins — 0
when every bin holds one score or one class (scores rounded to 1e-3 or coarser are exact). ROC and PR curves have
a point per non-empty bin instead of per distinct score. Standard deviations are the same estimator on other
random subsets, so they agree in distribution, not in value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from monitor.engine import quality

BINS = 10_000
SUBSETS = 5
SUBSET_SHARE = 0.8


@dataclass
class _Core:
    """One set of rows' sufficient statistics for its problem type."""

    n: int = 0
    # regression
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    y_mean: float = 0.0
    y_m2: float = 0.0
    # binary: tp, fp, tn, fn at the threshold; score histograms per class with each bin's min and max
    confusion: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    pos: np.ndarray | None = None
    neg: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    # multiclass: (true, predicted) → count
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)

    def merge(self, o: _Core) -> _Core:
        n = self.n + o.n
        delta = o.y_mean - self.y_mean
        mean = self.y_mean + delta * o.n / n if n else 0.0
        m2 = self.y_m2 + o.y_m2 + delta * delta * self.n * o.n / n if n else 0.0
        pairs = dict(self.pairs)
        for k, v in o.pairs.items():
            pairs[k] = pairs.get(k, 0) + v
        return _Core(n, self.sum_abs + o.sum_abs, self.sum_sq + o.sum_sq, mean, m2, self.confusion + o.confusion,
                     _add(self.pos, o.pos), _add(self.neg, o.neg), _fold(self.lo, o.lo, np.fmin),
                     _fold(self.hi, o.hi, np.fmax), pairs)


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return b if a is None else a if b is None else a + b


def _fold(a: np.ndarray | None, b: np.ndarray | None, fn: Any) -> np.ndarray | None:
    return b if a is None else a if b is None else fn(a, b)


def _core(problem: str, y: np.ndarray, pred: np.ndarray | None, score: np.ndarray | None,
          threshold: float) -> _Core:
    n = len(y)
    if problem == "Regression":
        assert pred is not None
        err = pred - y
        mean = float(y.mean()) if n else 0.0
        return _Core(n, float(np.abs(err).sum()), float((err * err).sum()), mean,
                     float(((y - mean) ** 2).sum()) if n else 0.0)
    if problem == "BinaryClassification":
        calls = (score >= threshold).astype(np.int64) if pred is None and score is not None else pred
        assert calls is not None
        tp = int(np.sum((calls == 1) & (y == 1)))
        fp = int(np.sum((calls == 1) & (y == 0)))
        fn = int(np.sum((calls == 0) & (y == 1)))
        ranked = score if score is not None else calls.astype(float)
        b = np.clip((ranked * BINS).astype(np.int64), 0, BINS - 1)
        pos = np.bincount(b[y == 1], minlength=BINS)
        neg = np.bincount(b[y == 0], minlength=BINS)
        lo = np.full(BINS, np.inf)
        hi = np.full(BINS, -np.inf)
        np.minimum.at(lo, b, ranked)
        np.maximum.at(hi, b, ranked)
        return _Core(n, confusion=np.array([tp, fp, n - tp - fp - fn, fn], dtype=np.int64), pos=pos, neg=neg,
                     lo=lo, hi=hi)
    assert pred is not None
    keys, counts = np.unique(np.stack([y.astype(str), pred.astype(str)]), axis=1, return_counts=True) \
        if n else (np.empty((2, 0)), np.empty(0))
    return _Core(n, pairs={(str(a), str(p)): int(c) for a, p, c in zip(keys[0], keys[1], counts, strict=True)})


@dataclass
class QualitySummary:
    """A partition's (or a merged window's) model-quality summary: the whole and its five 80% subsets."""

    problem: str
    threshold: float
    whole: _Core
    subsets: list[_Core]

    def merge(self, o: QualitySummary) -> QualitySummary:
        return QualitySummary(self.problem, self.threshold, self.whole.merge(o.whole),
                              [a.merge(b) for a, b in zip(self.subsets, o.subsets, strict=True)])


def summarise(problem: str, y: np.ndarray, *, prediction: np.ndarray | None = None,
              probability: np.ndarray | None = None, threshold: float = 0.5,
              rng: np.random.Generator | None = None) -> QualitySummary:
    """The summary of one partition's arrays (the same arrays ``quality.statistics`` takes)."""
    rng = rng or np.random.default_rng()
    whole = _core(problem, y, prediction, probability, threshold)
    subsets = []
    for _ in range(SUBSETS):
        m = rng.random(len(y)) < SUBSET_SHARE
        subsets.append(_core(problem, y[m], None if prediction is None else prediction[m],
                             None if probability is None else probability[m], threshold))
    return QualitySummary(problem, threshold, whole, subsets)


def arrays(problem: str, table: pa.Table, label: str, prediction: str | None, probability: str | None,
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Labels, predictions and scores of a partition as ``quality.statistics`` takes them (the conversions of the
    local path); ValueError when they do not fit the problem type."""
    def col(name: str | None) -> list[Any] | None:
        return table.column(name).to_pylist() if name else None

    labels, preds, probs = col(label), col(prediction), col(probability)
    try:
        if problem == "Regression":
            return np.asarray(labels, dtype=float), np.asarray(preds, dtype=float), None
        if problem == "BinaryClassification":
            y = np.asarray([int(float(v)) for v in labels or []], dtype=np.int64)
            if not set(np.unique(y).tolist()) <= {0, 1}:
                raise ValueError("binary labels must be 0 or 1")
            pr = None if probs is None else np.asarray(probs, dtype=float)
            lb = None if preds is None else np.asarray([int(float(v)) for v in preds], dtype=np.int64)
            if lb is not None and pr is not None and not set(np.unique(lb).tolist()) <= {0, 1}:
                lb = None
            return y, lb, pr
        return np.asarray([str(v) for v in labels or []]), np.asarray([str(v) for v in preds or []]), None
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def summarise_table(table: pa.Table, *, problem: str, label: str, prediction: str | None, probability: str | None,
                    threshold: float) -> QualitySummary:
    """One row group's summary (runs on a worker)."""
    if table.num_rows == 0:
        return QualitySummary(problem, threshold, _Core(), [_Core() for _ in range(SUBSETS)])
    y, pred, prob = arrays(problem, table, label, prediction, probability)
    return summarise(problem, y, prediction=pred, probability=prob, threshold=threshold)


def _values(problem: str, c: _Core, curves: bool) -> tuple[dict[str, Any], float]:
    if problem == "Regression":
        mse = c.sum_sq / c.n
        r2 = 1.0 - c.sum_sq / c.y_m2 if c.y_m2 else (1.0 if c.sum_sq == 0 else 0.0)
        return {"mae": c.sum_abs / c.n, "mse": mse, "rmse": math.sqrt(mse), "r2": r2}, 0.0
    if problem == "BinaryClassification":
        return _binary(c, curves)
    classes = sorted({a for a, _ in c.pairs} | {p for _, p in c.pairs})
    idx = {k: i for i, k in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)))
    for (a, p), count in c.pairs.items():
        cm[idx[a], idx[p]] = count
    return quality.multiclass_from_matrix(classes, cm), 0.0


def _binary(c: _Core, curves: bool) -> tuple[dict[str, Any], float]:
    assert c.pos is not None and c.neg is not None and c.lo is not None and c.hi is not None
    tp, fp, tn, fn = (float(v) for v in c.confusion)
    out: dict[str, Any] = {"confusion_matrix": {"0": {"0": int(tn), "1": int(fp)}, "1": {"0": int(fn), "1": int(tp)}}}
    out.update(quality._binary_scalars(tp, fp, tn, fn))
    used = np.flatnonzero(c.pos + c.neg)[::-1]   # highest scores first, as roc_points
    tps = np.cumsum(c.pos[used]).astype(float)
    fps = np.cumsum(c.neg[used]).astype(float)
    out["auc"] = quality.auc_from_points(fps, tps)
    p_all, n_all = float(c.pos.sum()), float(c.neg.sum())
    mixed = (c.hi > c.lo) & (c.pos > 0) & (c.neg > 0)
    bound = float(np.sum(c.pos[mixed].astype(float) * c.neg[mixed])) / (2 * p_all * n_all) if p_all and n_all \
        else 0.0
    if curves:
        out["receiver_operating_characteristic_curve"] = {
            "false_positive_rates": (np.r_[0.0, fps / n_all] if n_all else np.r_[0.0, fps * 0]).tolist(),
            "true_positive_rates": (np.r_[0.0, tps / p_all] if p_all else np.r_[0.0, tps * 0]).tolist()}
        prec = tps / np.maximum(tps + fps, 1)
        rec = tps / p_all if p_all else tps * 0
        out["precision_recall_curve"] = {"precisions": np.r_[prec[::-1], 1.0].tolist(),
                                         "recalls": np.r_[rec[::-1], 0.0].tolist()}
    n, p = float(c.n), p_all
    always_one = quality._binary_scalars(p, n - p, 0.0, 0.0)
    always_zero = quality._binary_scalars(0.0, 0.0, n - p, p)
    for m in ("recall", "precision", "accuracy", "f0_5", "f1", "f2"):
        out[f"{m}_best_constant_classifier"] = max(always_one[m], always_zero[m])
    return out, bound


def statistics(summary: QualitySummary) -> dict[str, Any]:
    """SageMaker's model-quality statistics.json from a merged summary (the shape ``quality.statistics`` writes),
    with ``compute`` saying what is approximate and by how much."""
    problem = summary.problem
    values, bound = _values(problem, summary.whole, True)
    stds: dict[str, float] = {}
    if summary.whole.n >= quality.MIN_SAMPLES_FOR_STD:
        runs = [_values(problem, s, False)[0] for s in summary.subsets]
        stds = {k: float(np.std([r[k] for r in runs])) for k, v in runs[0].items() if isinstance(v, float)}
    metrics = {k: {"value": v, "standard_deviation": stds.get(k, "NaN") if isinstance(v, float) else "NaN"}
               for k, v in values.items()}
    out: dict[str, Any] = {"version": 0.0, "dataset": {"item_count": summary.whole.n},
                           f"{quality.PROBLEMS[problem]}_metrics": metrics}
    out["compute"] = {"engine": "dask", "standard_deviation": "five random 80% subsets drawn per partition"}
    if problem == "BinaryClassification":
        out["compute"].update(auc_max_error=bound, auc_bins=BINS,
                              curve_points=f"one per non-empty score bin (at most {BINS + 1} per curve)")
    return out
