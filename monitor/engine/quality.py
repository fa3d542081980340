"""Model-quality metrics with SageMaker's names and file shapes, vectorised and exact against scikit-learn.

Binary metrics come from one sort of the scores: cumulative true/false positives at each distinct
threshold give the confusion matrix at any cut, the ROC and PR curves and the AUC (trapezoid, as
scikit-learn). Curves keep at most ``CURVE_POINTS`` of those points, each exactly scikit-learn's.
Multiclass uses one bincount for the confusion matrix. Standard deviations follow SageMaker: with at least 200
samples, the metric on 5 random 80% subsets; otherwise the string "NaN".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

MIN_SAMPLES_FOR_STD = 200
# Thresholds per ROC or PR curve in statistics.json (plus the curve's fixed end): a curve is for reading and
# drawing, and a million distinct scores would otherwise write four lists of a million numbers (~80 MB) per
# execution. Scores to 4 decimals (10,001 values in [0, 1]) keep every point; the AUC and every scalar always
# come from all of them. The partitioned path's 10,000 score bins give the same size.
CURVE_POINTS = 10_001
LOWER_IS_BETTER = {"mae", "mse", "rmse", "false_positive_rate", "false_negative_rate"}


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0   # scikit-learn's zero_division=0


def _fbeta(p: float, r: float, beta: float) -> float:
    b2 = beta * beta
    return _div((1 + b2) * p * r, b2 * p + r)


# --- regression -------------------------------------------------------------------------------------------

def regression_values(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    err = yhat - y
    mse = float(np.mean(err * err))
    ss_res = float(np.sum(err * err))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else (1.0 if ss_res == 0 else 0.0)
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": math.sqrt(mse), "r2": r2}


# --- binary -------------------------------------------------------------------------------------------------

def score_keys(y: np.ndarray, score: np.ndarray) -> np.ndarray | None:
    """Rows as sorted 64-bit keys, the score's bits with the label as the lowest bit (a non-negative double's bits
    order as the double does; -0.0 becomes 0.0), or None when a score is negative or NaN. Any subset of the keys,
    taken in order, is the same for that subset of rows: resamples need no sort of their own."""
    score = np.asarray(score, dtype=np.float64)
    if not len(score) or not score.min() >= 0:   # a NaN fails the comparison
        return None
    keys = (score + 0.0).view(np.uint64)   # one new array, shifted, labelled and sorted in place
    keys <<= np.uint64(1)
    np.bitwise_or(keys, y.astype(bool), out=keys)
    keys.sort()
    return keys


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (fp, tp) at each distinct score, highest first, and the thresholds (scikit-learn's).

    Only how many rows and positives score at or above each distinct value matters, so values are sorted, never
    rows ordered. Scores ≥ 0 take one sort of `score_keys` (binary metrics from scores read those keys directly,
    `_keyed_values`); others take two value sorts and a search."""
    keys = score_keys(y, score)
    if keys is not None:
        first = np.r_[0, np.flatnonzero((keys[1:] ^ keys[:-1]) > 1) + 1]   # each distinct value's first row
        positives = np.add.reduceat((keys & np.uint64(1)).astype(np.int64), first)   # per distinct value
        pos_ge = np.cumsum(positives[::-1]).astype(float)
        all_ge = (len(keys) - first)[::-1]
        return all_ge - pos_ge, pos_ge, (keys[first] >> np.uint64(1))[::-1].view(np.float64)
    score = np.asarray(score, dtype=np.float64)
    s = np.sort(score)
    if len(s) == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    if np.isnan(s[-1]):   # NaN scores: each its own point after the others, as ranked rows give
        return _roc_points_ranked(y, score)
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]      # first index of each distinct value, ascending
    distinct = s[starts]
    positives = np.sort(score[y.astype(bool)])
    pos_ge = len(positives) - np.searchsorted(positives, distinct, "left")
    all_ge = len(s) - starts
    return (all_ge - pos_ge)[::-1].astype(float), pos_ge[::-1].astype(float), distinct[::-1]


def _roc_points_ranked(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-score, kind="stable")
    s, yt = score[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(yt)[distinct]
    fps = 1 + distinct - tps
    return fps.astype(float), tps.astype(float), s[distinct]


def auc_from_points(fps: np.ndarray, tps: np.ndarray) -> float:
    """scikit-learn's trapezoid AUC over the ROC points, as one dot product of counts (no normalised copies)."""
    if not len(tps) or tps[-1] == 0 or fps[-1] == 0:
        return math.nan   # one class only: AUC undefined
    heights = tps.copy()
    heights[1:] += tps[:-1]   # twice each trapezoid's mean height; the first starts from (0, 0)
    return float(np.dot(np.diff(fps, prepend=0.0), heights) / (2.0 * fps[-1] * tps[-1]))


def _confusion(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
    """(tp, fp, fn, tn) of 0/1 labels and predictions."""
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    return tp, fp, fn, float(len(y) - tp - fp - fn)


def _binary_scalars(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {"accuracy": _div(tp + tn, tp + tn + fp + fn), "precision": precision, "recall": recall,
            "true_positive_rate": recall, "true_negative_rate": _div(tn, tn + fp),
            "false_positive_rate": _div(fp, fp + tn), "false_negative_rate": _div(fn, fn + tp),
            "f0_5": _fbeta(precision, recall, 0.5), "f1": _fbeta(precision, recall, 1.0),
            "f2": _fbeta(precision, recall, 2.0)}


def _curve_rows(count: int) -> np.ndarray:
    """Which of ``count`` ROC points a curve keeps: every one, or `CURVE_POINTS` evenly by rank, the last (every
    row predicted positive) included."""
    if count <= CURVE_POINTS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, CURVE_POINTS).round().astype(np.int64))


def _keyed_values(keys: np.ndarray, threshold: float,
                  curves: bool) -> tuple[tuple[float, float, float, float], float, np.ndarray, np.ndarray]:
    """(tp, fp, fn, tn) at the threshold, the AUC and the kept curve points, read off sorted `score_keys` with no
    array per distinct score (binary_values on 1M mostly distinct scores: 45 -> 33 ms; the resamples, which draw
    no curve, never look for the score boundaries).

    Counted from the highest key down, positives at or above each row are one cumulative sum. A tie group lists its
    positives first (label 1 is the higher key), so that sum at a group's lowest row is its ROC point, and the
    sum over the negative rows is the Mann-Whitney count with every tied pair counted whole: the trapezoid AUC is
    that, less half of each mixed group's negatives x positives, over P x N (exact integers until the division)."""
    n, one = len(keys), np.uint64(1)
    pos_ge = keys[::-1] & one
    np.cumsum(pos_ge, out=pos_ge)
    p = int(pos_ge[-1])
    neg = n - p
    t = float(threshold)
    at = n if t <= 0 else 0 if t != t else \
        n - int(np.searchsorted(keys, np.float64(t).view(np.uint64) << one, side="left"))   # rows scoring >= t
    tp = float(pos_ge[at - 1]) if at else 0.0
    fp = at - tp
    counts = (tp, fp, p - tp, neg - fp)
    auc = math.nan
    step = keys[1:] ^ keys[:-1]   # 1: the same score, negatives to positives; more: the next score
    if p and neg:
        last_neg = keys[np.flatnonzero(step == 1)]   # a score's highest negative key, its positives' key next
        tied = (np.searchsorted(keys, last_neg, "right") - np.searchsorted(keys, last_neg, "left")) * \
            (np.searchsorted(keys, last_neg | one, "right") - np.searchsorted(keys, last_neg | one, "left"))
        auc = (2 * int(pos_ge.sum()) - p * (p + 1) - int(tied.sum())) / (2 * p * neg)
    if not curves:
        return counts, auc, np.empty(0), np.empty(0)
    lowest = np.r_[np.flatnonzero((step > 1)[::-1]), n - 1]   # each score's lowest row, counted from the top
    rows = lowest[_curve_rows(len(lowest))]
    tps = pos_ge[rows].astype(float)
    return counts, auc, (rows + 1.0) - tps, tps


def binary_values(y: np.ndarray, score: np.ndarray | None, label: np.ndarray | None,
                  threshold: float = 0.5, curves: bool = True, keys: np.ndarray | None = None) -> dict[str, Any]:
    """Binary metrics; ``keys`` (`score_keys` of these rows) stands for ``y`` and ``score`` when given."""
    if label is None and score is not None and keys is None:
        keys = score_keys(y, score)
    if keys is not None:
        (tp, fp, fn, tn), auc, fps, tps = _keyed_values(keys, threshold, curves)
    else:   # predicted labels, or scores with a negative or NaN value
        y = y.astype(np.int64, copy=False)
        ranked = score if score is not None else np.asarray(label, dtype=float)
        fps, tps, thresholds = roc_points(y, ranked)
        if label is None and len(thresholds) and not np.isnan(thresholds[-1]):
            # predicted positive = scoring at or above the threshold: the ROC point there holds the counts
            at = len(thresholds) - int(np.searchsorted(thresholds[::-1], threshold, side="left"))
            tp, fp = (float(tps[at - 1]), float(fps[at - 1])) if at else (0.0, 0.0)
            fn, tn = float(tps[-1]) - tp, float(fps[-1]) - fp
        else:
            tp, fp, fn, tn = _confusion(y, label if label is not None else (ranked >= threshold).astype(np.int64))
        auc = auc_from_points(fps, tps)
        keep = _curve_rows(len(tps))
        fps, tps = fps[keep], tps[keep]
    out: dict[str, Any] = {"confusion_matrix": {"0": {"0": int(tn), "1": int(fp)}, "1": {"0": int(fn), "1": int(tp)}}}
    out.update(_binary_scalars(tp, fp, tn, fn))
    out["auc"] = auc
    if curves:
        pos, neg = tp + fn, fp + tn
        out["receiver_operating_characteristic_curve"] = {
            "false_positive_rates": (np.r_[0.0, fps / neg] if neg else np.r_[0.0, fps * 0]).tolist(),
            "true_positive_rates": (np.r_[0.0, tps / pos] if pos else np.r_[0.0, tps * 0]).tolist()}
        prec = tps / np.maximum(tps + fps, 1)
        rec = tps / pos if pos else tps * 0
        out["precision_recall_curve"] = {"precisions": np.r_[prec[::-1], 1.0].tolist(),
                                         "recalls": np.r_[rec[::-1], 0.0].tolist()}
    p = tp + fn
    n = p + fp + tn
    always_one = _binary_scalars(p, n - p, 0.0, 0.0)
    always_zero = _binary_scalars(0.0, 0.0, n - p, p)
    for m in ("recall", "precision", "accuracy", "f0_5", "f1", "f2"):
        out[f"{m}_best_constant_classifier"] = max(always_one[m], always_zero[m])
    return out


# --- multiclass ---------------------------------------------------------------------------------------------

def multiclass_values(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    classes, inv = np.unique(np.concatenate([y, pred]), return_inverse=True)
    k = len(classes)
    yi, pi = inv[: len(y)], inv[len(y):]
    return multiclass_from_matrix(classes, np.bincount(yi * k + pi, minlength=k * k).reshape(k, k).astype(float))


def multiclass_from_matrix(classes: np.ndarray | list[Any], cm: np.ndarray) -> dict[str, Any]:
    """Every multiclass metric from the confusion matrix ``cm[true, predicted]`` over the sorted ``classes`` (all a
    partitioned window has to merge)."""
    k = len(classes)
    support = cm.sum(axis=1)
    tp = np.diag(cm)
    precision = np.divide(tp, cm.sum(axis=0), out=np.zeros(k), where=cm.sum(axis=0) > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    weights = support / support.sum()

    def weighted_f(beta: float, p: np.ndarray, r: np.ndarray) -> float:
        b2 = beta * beta
        den = b2 * p + r
        f = np.divide((1 + b2) * p * r, den, out=np.zeros(k), where=den > 0)
        return float(np.sum(weights * f))

    out: dict[str, Any] = {
        "confusion_matrix": {str(a): {str(b): int(cm[i, j]) for j, b in enumerate(classes)}
                             for i, a in enumerate(classes)},
        "accuracy": float(tp.sum() / cm.sum()), "weighted_recall": float(np.sum(weights * recall)),
        "weighted_precision": float(np.sum(weights * precision)),
        "weighted_f0_5": weighted_f(0.5, precision, recall), "weighted_f1": weighted_f(1.0, precision, recall),
        "weighted_f2": weighted_f(2.0, precision, recall)}
    # the best constant classifier predicts the most frequent true class
    major = int(np.argmax(support))
    cp = np.zeros(k)
    cp[major] = support[major] / cm.sum()
    cr = np.zeros(k)
    cr[major] = 1.0
    out.update({"accuracy_best_constant_classifier": float(support[major] / cm.sum()),
                "weighted_recall_best_constant_classifier": float(np.sum(weights * cr)),
                "weighted_precision_best_constant_classifier": float(np.sum(weights * cp)),
                "weighted_f0_5_best_constant_classifier": weighted_f(0.5, cp, cr),
                "weighted_f1_best_constant_classifier": weighted_f(1.0, cp, cr),
                "weighted_f2_best_constant_classifier": weighted_f(2.0, cp, cr)})
    return out


# --- SageMaker statistics.json, constraints.json and violations ------------------------------------------------

PROBLEMS = {"Regression": "regression", "BinaryClassification": "binary_classification",
            "MulticlassClassification": "multiclass_classification"}


def _std(fn: Callable[[np.ndarray], dict[str, Any]], n: int, seed: int) -> dict[str, Any]:
    if n < MIN_SAMPLES_FOR_STD:
        return {}
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(5):   # 80% of the rows at random, in their order (a sorted index reads memory in order)
        keep = np.ones(n, dtype=bool)
        keep[rng.choice(n, n - int(0.8 * n), replace=False, shuffle=False)] = False
        runs.append(fn(np.flatnonzero(keep)))
    return {k: float(np.std([r[k] for r in runs])) for k, v in runs[0].items() if isinstance(v, float)}


def statistics(problem: str, y: np.ndarray, *, prediction: np.ndarray | None = None,
               probability: np.ndarray | None = None, threshold: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """SageMaker's model-quality statistics.json for one window."""
    if problem not in PROBLEMS:
        raise ValueError(f"problem type {problem!r} is not one of {', '.join(PROBLEMS)}")
    n = len(y)
    keys = score_keys(y, probability) if problem == "BinaryClassification" and probability is not None and \
        prediction is None else None

    def compute(idx: np.ndarray | None, curves: bool) -> dict[str, Any]:
        if keys is not None:   # scores only: the resamples are subsets of the keys, already sorted (no labels needed)
            return binary_values(y, None, None, threshold, curves, keys if idx is None else keys[idx])
        yy = y if idx is None else y[idx]
        if problem == "Regression":
            assert prediction is not None
            return regression_values(yy.astype(float), (prediction if idx is None else prediction[idx]).astype(float))
        if problem == "BinaryClassification":
            sc = None if probability is None else (probability if idx is None else probability[idx]).astype(float)
            lb = None if prediction is None else (prediction if idx is None else prediction[idx]).astype(np.int64)
            return binary_values(yy, sc, lb, threshold, curves)
        assert prediction is not None
        return multiclass_values(yy, prediction if idx is None else prediction[idx])

    values = compute(None, True)
    stds = _std(lambda idx: compute(idx, False), n, seed)
    metrics = {k: {"value": v, "standard_deviation": stds.get(k, "NaN") if isinstance(v, float) else "NaN"}
               for k, v in values.items()}
    out: dict[str, Any] = {"version": 0.0, "dataset": {"item_count": n}, f"{PROBLEMS[problem]}_metrics": metrics}
    if problem == "BinaryClassification":
        out["compute"] = {"curve_points": f"at most {CURVE_POINTS + 1} per curve, each an exact point of it "
                                          "(thresholds evenly by rank); the AUC uses every point"}
    return out


def suggest_constraints(stats: dict[str, Any]) -> dict[str, Any]:
    key = next(k for k in stats if k.endswith("_metrics"))
    block: dict[str, Any] = {}
    for name, m in stats[key].items():
        v = m["value"]
        if not isinstance(v, float) or math.isnan(v) or name.endswith("best_constant_classifier"):
            continue
        op = "GreaterThanThreshold" if name in LOWER_IS_BETTER else "LessThanThreshold"
        block[name] = {"threshold": v, "comparison_operator": op}
    return {"version": 0.0, key.replace("_metrics", "_constraints"): block}


def breaches(value: float, threshold: float, op: str) -> bool:
    """Whether ``value`` violates a model-quality constraint (SageMaker's comparison operators)."""
    return (op == "GreaterThanThreshold" and value > threshold) or (op == "LessThanThreshold" and value < threshold)


def violations(constraints: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    ckey = next((k for k in constraints if k.endswith("_constraints")), None)
    skey = next((k for k in stats if k.endswith("_metrics")), None)
    if ckey is None or skey is None:
        return []
    out = []
    for name, c in constraints[ckey].items():
        m = stats[skey].get(name)
        if m is None or not isinstance(m.get("value"), float) or math.isnan(m["value"]):
            continue
        v, thr, op = m["value"], float(c["threshold"]), c["comparison_operator"]
        if breaches(v, thr, op):
            out.append({"metric_name": name, "constraint_check_type": op,
                        "description": f"Metric {name} with {v:.4g} was {op} {thr:.4g}"})
    return out
