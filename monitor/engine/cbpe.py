"""Label-free performance estimation for classifiers (NannyML's CBPE): binary and multiclass (one-vs-rest).

With calibrated probabilities p_i, a row the model calls positive is a true positive with probability p_i (else
a false positive), and a row it calls negative is a missed positive with probability p_i. Summing gives the
expected confusion matrix, hence expected accuracy, precision, recall, specificity and F1; the expected ROC
curve ranks rows by the model's own scores and weighs each by p_i and 1 - p_i.

CBPE is only right when the probabilities are calibrated, and real models' scores often are not. So the
reference (the labelled model-quality baseline) decides per model whether to calibrate, as NannyML does: the
expected calibration error of the raw scores against that of a cross-fitted isotonic calibration; and the
isotonic map (its breakpoints, as data) is fitted on the whole reference and applied to every window.

The band is estimate ± z·sd and the variance has two parts, computed, not simulated (a window costs one sort and a
few matrix products). The sampling of labels in the window: every metric is a smooth function of sums of
independent per-row labels (confusion counts; for AUC the Mann-Whitney sums Σy·rank and Σy), so to first order it
is Σ_i a[i, y_i] with a from its gradient, whose variance given the probabilities is exact (Poisson-binomial,
one categorical per row for multiclass). And the calibration itself: the metric under each isotonic map refitted
on a bootstrap resample of the reference (the probabilities shifted by its difference from the full fit), its
spread and its squared bias about the estimate.

Multiclass calibrates each class one-vs-rest; the count metrics need the label's probability given the model's
call, so each class's map is also fitted separately on the reference rows the model calls that class and on the
others, while the AUCs (class j ranked by its score alone) weigh rows by the whole reference's maps.

Decisions (which class a row is called) are the model's own where the capture carries its prediction, else the
threshold (binary) or the highest probability (multiclass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from statistics import NormalDist
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

from monitor.engine.kll import Floats

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
# The SageMaker model-quality constraint each estimated metric is judged against (binary; multiclass: accuracy).
CONSTRAINT_NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall",
                    "specificity": "true_negative_rate", "f1": "f1", "roc_auc": "auc"}
ECE_BINS = 10
FOLDS = 5
BOOTSTRAPS = 20
MAP_POINTS = 512     # an isotonic map is stored as at most this many breakpoints


@dataclass(frozen=True)
class Calibration:
    """How a model's scores (one class's, for multiclass) become probabilities: the isotonic map fitted on the
    whole reference (None: the raw scores are used as they are) and the maps refitted on bootstrap resamples.

    A multiclass class's calibration also holds ``split``: the same fit on the reference rows the model calls this
    class and on the rows it calls another (None: the whole reference's map on both sides, as estimators stored
    before the split load)."""

    method: str                       # "isotonic" or "none"
    ece_raw: float
    ece_calibrated: float             # cross-fitted isotonic on the reference
    full: tuple[Floats, Floats]       # breakpoints (x, y) of the isotonic map on the whole reference
    bootstrap: tuple[tuple[Floats, Floats], ...]
    split: tuple[Calibration, Calibration] | None = None    # (called this class, called another)

    def as_dict(self) -> dict[str, Any]:
        def pts(m: tuple[Floats, Floats]) -> dict[str, list[float]]:
            return {"x": [float(v) for v in m[0]], "y": [float(v) for v in m[1]]}
        out = {"method": self.method, "ece_raw": self.ece_raw, "ece_calibrated": self.ece_calibrated,
               "map": pts(self.full), "bootstrap": [pts(b) for b in self.bootstrap]}
        if self.split is not None:
            out["called"], out["other"] = self.split[0].as_dict(), self.split[1].as_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        def arr(m: dict[str, Any]) -> tuple[Floats, Floats]:
            x, y = np.asarray(m["x"], dtype=float), np.asarray(m["y"], dtype=float)
            if x.ndim != 1 or x.shape != y.shape or len(x) == 0 or np.any(np.diff(x) < 0):
                raise ValueError("an isotonic map needs increasing breakpoints x with one y each")
            return x, np.clip(y, 0.0, 1.0)
        method = str(d["method"])
        if method not in ("isotonic", "none"):
            raise ValueError(f"calibration method {method!r} is not isotonic or none")
        split = (cls.from_dict(d["called"]), cls.from_dict(d["other"])) if "called" in d else None
        return cls(method=method, ece_raw=float(d["ece_raw"]), ece_calibrated=float(d["ece_calibrated"]),
                   full=arr(d["map"]), bootstrap=tuple(arr(b) for b in d["bootstrap"]), split=split)

    @property
    def sides(self) -> tuple[Calibration, Calibration]:
        """The maps of rows the model calls this class and of the others (the whole reference's, unsplit)."""
        return self.split if self.split is not None else (self, self)

    def describe(self) -> dict[str, Any]:
        """What each estimated metric says about calibration."""
        return {"applied": self.method != "none", "method": self.method if self.method != "none" else None,
                "ece_raw": round(self.ece_raw, 6), "ece_calibrated": round(self.ece_calibrated, 6)}

    def probabilities(self, score: Floats) -> Floats:
        return score if self.method == "none" else np.interp(score, *self.full)

    @cached_property
    def _grid(self) -> tuple[Floats, Floats]:
        """Every map (the full one first) evaluated at the union of their breakpoints: each map is linear between
        consecutive union points, so one search per window serves all of them (not one interpolation each)."""
        maps = (self.full, *self.bootstrap)
        xs = np.unique(np.concatenate([m[0] for m in maps]))
        if len(xs) == 1:
            xs = np.r_[xs, xs + 1e-12]
        return xs, np.stack([np.interp(xs, *m) for m in maps])

    def perturbed(self, score: Floats, base: Floats) -> Floats:
        """(maps, n) probabilities: the base shifted by each bootstrap map's difference from the full map (one
        row, the base, when there are no bootstrap maps)."""
        if not self.bootstrap:
            return base[None, :]
        xs, vals = self._grid
        i = np.clip(np.searchsorted(xs, score, side="right") - 1, 0, len(xs) - 2)
        t = np.clip((score - xs[i]) / (xs[i + 1] - xs[i]), 0.0, 1.0)
        every = vals[:, i] * (1 - t) + vals[:, i + 1] * t                # as np.interp, for all maps at once
        out: Floats = np.clip(base[None, :] + every[1:] - every[:1], 0.0, 1.0)
        return out


UNCALIBRATED = Calibration(method="none", ece_raw=math.nan, ece_calibrated=math.nan,
                           full=(np.array([0.0, 1.0]), np.array([0.0, 1.0])), bootstrap=())


def expected_calibration_error(y: Floats, p: Floats, bins: int = ECE_BINS) -> float:
    """Mean |observed rate - mean probability| over equal-count bins of p (NannyML's binning), weighted by size."""
    order = np.argsort(p, kind="stable")
    parts = np.array_split(order, min(bins, len(p)))
    return float(sum(len(ix) * abs(float(y[ix].mean()) - float(p[ix].mean())) for ix in parts if len(ix)) / len(p))


def _ece_noise(p: Floats, bins: int = ECE_BINS) -> float:
    """The expected calibration error of perfectly calibrated scores from label noise alone: per bin the mean
    absolute deviation of a binomial rate, sqrt(2/π)·sqrt(Σp(1-p))/n_bin, weighted by size. Isotonic calibration
    is fitted only when it lowers the error by more than this (else it would chase noise)."""
    parts = np.array_split(np.sort(p), min(bins, len(p)))
    return float(sum(math.sqrt(2 / math.pi) * math.sqrt(float(np.sum(b * (1 - b)))) for b in parts if len(b))
                 / len(p))


def _isotonic(score: Floats, y: Floats) -> tuple[Floats, Floats]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, y)
    x, v = np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)
    if len(x) > MAP_POINTS:   # thin a long map: interpolation between kept breakpoints
        keep = np.unique(np.r_[np.linspace(0, len(x) - 1, MAP_POINTS).astype(int)])
        x, v = x[keep], v[keep]
    if len(x) == 1:
        x, v = np.r_[x, x + 1e-12], np.r_[v, v]
    return x, v


def fit_calibration(y: np.ndarray, score: np.ndarray, *, seed: int = 0, bootstraps: int = BOOTSTRAPS,
                    force: str | None = None) -> Calibration:
    """Decide whether scores need calibrating (cross-fitted isotonic lowers the expected calibration error on the
    reference by more than label noise explains) and fit the isotonic maps. ``force``: "isotonic" or "none"
    overrides the decision."""
    yf, s = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    if len(s) < 2 * FOLDS or len(np.unique(yf)) < 2:
        raise ValueError("calibration needs at least 10 labelled rows with both classes")
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(s)) % FOLDS
    cross = np.empty_like(s)
    for k in range(FOLDS):
        cross[fold == k] = np.interp(s[fold == k], *_isotonic(s[fold != k], yf[fold != k]))
    ece_raw, ece_cal = expected_calibration_error(yf, s), expected_calibration_error(yf, cross)
    method = force or ("isotonic" if ece_raw - ece_cal > _ece_noise(s) else "none")
    boot = []
    for _ in range(bootstraps):
        ix = rng.integers(0, len(s), len(s))
        boot.append(_isotonic(s[ix], yf[ix]))
    return Calibration(method=method, ece_raw=ece_raw, ece_calibrated=ece_cal, full=_isotonic(s, yf),
                       bootstrap=tuple(boot))


# --- metrics from (expected or simulated) confusion counts ------------------------------------------------------

def _div(a: Floats | float, b: Floats | float) -> Floats:
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out: Floats = np.divide(a_arr, b_arr, out=np.zeros(np.broadcast(a_arr, b_arr).shape), where=b_arr != 0)
    return out


def _from_counts(tp: Floats, fp: Floats, fn: Floats, tn: Floats) -> dict[str, Floats]:
    """Accuracy, precision, recall, specificity and F1 from confusion counts (any leading shape; multiclass
    counts carry a last axis of classes, averaged by the caller)."""
    return {"accuracy": _div(tp + tn, tp + fp + fn + tn), "precision": _div(tp, tp + fp), "recall": _div(tp, tp + fn),
            "specificity": _div(tn, tn + fp), "f1": _div(2 * tp, 2 * tp + fp + fn)}


def _ranks(score: Floats) -> Floats:
    """1-based average ranks (ties share credit, as the trapezoid rule does)."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    first = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[first[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = np.repeat((first + ends + 1) / 2.0, ends - first)
    return ranks


def _auc(ranks: Floats, w: Floats) -> Floats:
    """AUC of the ranking (average ranks of the scores) when row i is positive with weight w_i and negative with
    1 - w_i, per row of ``w`` (..., n): the Mann-Whitney statistic (w·rank - W(W+1)/2) / (W(n-W)), W = Σw, which
    for 0/1 labels is scikit-learn's roc_auc_score and for probabilities the expected-weights ROC area (the
    trapezoid over tie blocks, self-pairs included, reduces to the same sum)."""
    w = np.asarray(w, dtype=float)
    return _auc_of(w @ ranks, w.sum(axis=-1), w.shape[-1])


def _auc_of(dot: Floats | float, total: Floats | float, n: float) -> Floats:
    """The Mann-Whitney AUC from its sums: Σw·rank, W = Σw and the row count."""
    dot, total = np.asarray(dot, dtype=float), np.asarray(total, dtype=float)
    with np.errstate(all="ignore"):
        auc = (dot - total * (total + 1) / 2) / (total * (n - total))
    out: Floats = np.where((total > 0) & (total < n), auc, np.nan)
    return out


def _auc_slopes(r: Floats, p: Floats) -> Floats:
    """Per row, how much the AUC moves when that row turns positive: the Mann-Whitney AUC is
    g(S, P) = (S - P(P+1)/2) / (P(n-P)) of two sums over labels, S = Σ y·rank and P = Σ y, so to first order
    around their expectations under p it is a constant plus Σ y_i·(∂g/∂S·rank_i + ∂g/∂P)."""
    d_s, d_p = _auc_gradient(float(p @ r), float(p.sum()), len(r))
    out: Floats = d_s * r + d_p
    return out


def _auc_gradient(big_s: float, big_p: float, n: float) -> tuple[float, float]:
    """(∂g/∂S, ∂g/∂P) of the Mann-Whitney AUC g at S = Σp·rank, P = Σp (zeros when P is 0 or n)."""
    den = big_p * (n - big_p)
    if den <= 0:
        return 0.0, 0.0
    d_p = (-(big_p + 0.5) * den - (big_s - big_p * (big_p + 1) / 2) * (n - 2 * big_p)) / den**2
    return 1 / den, d_p


def _row_variance(p: Floats, a: Floats) -> float:
    """Var of Σ_i a[i, y_i] when each row's label y_i is drawn independently from p[i] ((n, k) both): the
    sampling variance of a linearised metric (Poisson-binomial for binary, one multinomial per row else)."""
    m = (p * a).sum(axis=1)
    return float(np.sum((p * a * a).sum(axis=1) - m * m))


def _count_slopes(metrics: Any, cm: Floats) -> dict[str, Floats]:
    """∂metric/∂cm[label, call] for every metric, by central differences of a half count (the metrics are
    smooth ratios of counts in the thousands: the step's error is negligible); ``metrics`` maps a stack of
    confusion matrices (..., k, k) to a dict of arrays."""
    k = cm.shape[-1]
    step = np.eye(k * k).reshape(k * k, k, k) * 0.5
    up, down = metrics(cm + step), metrics(cm - step)
    return {m: ((up[m] - down[m]) / 1.0).reshape(k, k) for m in up}


def _bands(point: dict[str, float], sampling: dict[str, float], mapped: dict[str, Floats], level: float,
           calibration: Calibration) -> dict[str, dict[str, Any]]:
    """estimate ± z·sd, the variance being the label sampling (delta method) plus the calibration's own error:
    the metric's spread over the bootstrap maps and its squared bootstrap bias (their mean's distance from the
    estimate; isotonic fits are biased at their ends, which matters once a shift moves rows there)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    out = {}
    for m in METRICS:
        est, boot = point[m], mapped[m][np.isfinite(mapped[m])]
        var = sampling[m] + (float(np.var(boot, ddof=1) + (np.mean(boot) - est) ** 2) if len(boot) > 1 else 0.0)
        if math.isfinite(est) and math.isfinite(var):
            half = z * math.sqrt(max(var, 0.0))
            lo, hi = max(0.0, est - half), min(1.0, est + half)
        else:
            lo = hi = math.nan
        out[m] = {"estimate": est, "lower": lo, "upper": hi, "band": {"lower": lo, "upper": hi},
                  "calibrated": calibration.describe()}
    return out


# --- binary -----------------------------------------------------------------------------------------------------

def _binary_metrics(cm: Floats) -> dict[str, Floats]:
    """Metrics of binary confusion matrices (..., label, call)."""
    return _from_counts(cm[..., 1, 1], cm[..., 0, 1], cm[..., 1, 0], cm[..., 0, 0])


@dataclass
class BinarySums:
    """A window's (or one partition's) sufficient statistics for the binary estimate, mergeable by addition.

    Rows are grouped by score: ``bins`` > 0 cuts [0, 1] into that many equal-width bins (the same for every
    partition, so partitions merge); ``bins`` 0 makes each distinct score its own group (one partition only: the
    whole window, exactly). Per call (0, 1): rows, Σp under every calibration map (the full map first, then the
    bootstrap maps) and Σp(1-p); per group: rows, Σp per map, Σp(1-p), the smallest and largest score; and for the
    labelled rows the confusion counts (label, call) and the positives and negatives per group."""

    bins: int
    calls: Floats        # (2,)
    pos: Floats          # (maps, 2)
    pq: Floats           # (2,)
    count: Floats        # (groups,)
    weight: Floats       # (maps, groups)
    var: Floats          # (groups,)
    lo: Floats           # (groups,)
    hi: Floats           # (groups,)
    confusion: Floats    # (2, 2) labelled rows: (label, call)
    label_pos: Floats    # (groups,)
    label_neg: Floats    # (groups,)

    def merge(self, o: BinarySums) -> BinarySums:
        if not self.bins or self.bins != o.bins or self.pos.shape != o.pos.shape:
            raise ValueError("only binned sums of the same bins and calibration maps merge")
        return BinarySums(self.bins, self.calls + o.calls, self.pos + o.pos, self.pq + o.pq, self.count + o.count,
                          self.weight + o.weight, self.var + o.var, np.fmin(self.lo, o.lo), np.fmax(self.hi, o.hi),
                          self.confusion + o.confusion, self.label_pos + o.label_pos, self.label_neg + o.label_neg)


def binary_sums(score: np.ndarray, decision: np.ndarray, *, calibration: Calibration | None = None,
                labels: np.ndarray | None = None, bins: int = 0) -> BinarySums:
    """The sums of one partition: ``score`` the model's scores, ``decision`` its 0/1 calls, ``labels`` 0/1 where a
    row has its label and -1 where not (None: no labels)."""
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    cal = calibration or UNCALIBRATED
    pred = np.asarray(decision).astype(bool).astype(np.int64)
    p = cal.probabilities(s)
    probs = np.vstack([p[None, :], cal.perturbed(s, p)]) if cal.bootstrap else p[None, :]   # full map, then maps
    calls = np.eye(2)[pred]                                                                # (n, call)
    group, size, lo, hi = _groups(s, bins)
    y = np.full(len(s), -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    known = y >= 0
    confusion = np.zeros((2, 2))
    np.add.at(confusion, (y[known], pred[known]), 1.0)
    pq = p * (1 - p)
    return BinarySums(bins, calls.sum(axis=0), probs @ calls, pq @ calls,
                      np.bincount(group, minlength=size).astype(float),
                      np.stack([np.bincount(group, weights=row, minlength=size) for row in probs]),
                      np.bincount(group, weights=pq, minlength=size).astype(float), lo, hi, confusion,
                      np.bincount(group[y == 1], minlength=size).astype(float),
                      np.bincount(group[y == 0], minlength=size).astype(float))


def _groups(s: Floats, bins: int) -> tuple[np.ndarray, int, Floats, Floats]:
    """Each score's group — its equal-width bin of [0, 1] (``bins`` > 0), else its distinct value — and the
    groups' number, smallest and largest score."""
    if bins:
        group = np.clip((s * bins).astype(np.int64), 0, bins - 1)
        lo, hi = np.full(bins, np.inf), np.full(bins, -np.inf)
        np.minimum.at(lo, group, s)
        np.maximum.at(hi, group, s)
        return group, bins, lo, hi
    keys, inverse = np.unique(s, return_inverse=True)
    return inverse, len(keys), keys, keys


def _group_ranks(count: Floats) -> Floats:
    """Each group's average rank (1-based) when rows are ordered by group (along the last axis): exact average
    ranks of tied scores when the groups are the distinct scores."""
    out: Floats = np.cumsum(count, axis=-1) - count + (count + 1) / 2
    return out


def estimate(score: np.ndarray, threshold: float = 0.5, *, calibration: Calibration | None = None,
             decision: np.ndarray | None = None, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Estimated binary metrics with bands. ``score``: the model's scores; ``decision``: its own 0/1 calls where
    captured (else ``score >= threshold``)."""
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    pred = (s >= threshold) if decision is None else np.asarray(decision).astype(bool)
    return estimate_sums(binary_sums(s, pred, calibration=calibration), calibration=calibration, level=level)


def estimate_sums(sums: BinarySums, *, calibration: Calibration | None = None, level: float = 0.95
                  ) -> dict[str, dict[str, Any]]:
    """Estimated binary metrics with bands from a window's sums (``binary_sums``, merged). The expected
    confusion matrix and its sampling variance (Σp(1-p) per call) are exact sums; the AUC takes each group's
    average rank, exact for distinct-score groups and within ``auc_error`` for bins."""
    n = float(sums.calls.sum())
    if n == 0:
        raise ValueError("no predictions to estimate from")
    cal = calibration or UNCALIBRATED
    cm = np.stack([sums.calls - sums.pos, sums.pos], axis=-2)                              # (maps, label, call)
    each = _binary_metrics(cm)
    ranks = _group_ranks(sums.count)
    dots, totals = sums.weight @ ranks, sums.pos.sum(axis=1)
    each["roc_auc"] = _auc_of(dots, totals, n)
    point = {m: float(v[0]) for m, v in each.items()}
    sampling = {m: float(sums.pq @ (g[1] - g[0]) ** 2) for m, g in _count_slopes(_binary_metrics, cm[0]).items()}
    d_s, d_p = _auc_gradient(float(dots[0]), float(totals[0]), n)
    sampling["roc_auc"] = float(sums.var @ (d_s * ranks + d_p) ** 2)
    return _bands(point, sampling, {m: v[1:] for m, v in each.items()}, level, cal)


def auc_error(sums: BinarySums, level: float = 0.95) -> dict[str, float]:
    """How far the AUCs of binned sums can be from the exact ones. A bin whose rows hold more than one distinct
    score ranks them all at its average rank, which moves Σw·rank by at most δS_b = W_b(c_b - W_b)/2 (W_b of its c_b
    rows' weight on the positive side), so |AUC - AUC_binned| ≤ Σ δS_b / (W(n - W)) over such bins: ``estimate``
    (W_b = Σp under the full map; ``maps`` the same per map) and ``realised`` (the labelled rows, W_b their
    positives). ``band``: the AUC band's ends, which move by the estimate's error plus z times the sd's: its
    sampling part (per row the slope d_S·rank + d_P is off by at most |d_S|·(c_b - 1)/2 plus |∂d_P/∂S|·ΣδS_b; a
    weighted norm, by Minkowski) and its calibration part (each bootstrap map's AUC off by at most its own error).
    All 0 when no bin holds two distinct scores (distinct-score groups always)."""
    mixed = sums.hi > sums.lo
    n = float(sums.calls.sum())
    w, c = sums.weight[:, mixed], sums.count[mixed]
    totals = sums.pos.sum(axis=1)
    shift = np.sum(w * (c - w), axis=1) / 2                                   # δS per map
    with np.errstate(all="ignore"):
        maps = np.where((totals > 0) & (totals < n), shift / (totals * (n - totals)), 0.0)
    est = max(float(maps[0]), 0.0)
    big_p, big_n = float(sums.label_pos.sum()), float(sums.label_neg.sum())
    real = float(np.sum(sums.label_pos[mixed] * sums.label_neg[mixed])) / (2 * big_p * big_n) if big_p and big_n \
        else 0.0
    den = float(totals[0]) * (n - float(totals[0]))
    sampling = 0.0
    if den > 0:
        d_s, d_dp = 1 / den, abs(n - 2 * float(totals[0])) * float(shift[0]) / den**2
        sampling = d_s * math.sqrt(float(sums.var[mixed] @ ((c - 1) / 2) ** 2)) + \
            d_dp * math.sqrt(float(sums.var.sum()))
    return {"estimate": est, "realised": real, "band": _band_error(maps, sampling, level)}


def _band_error(maps: Floats, sampling: float, level: float) -> float:
    """How far a band's ends can move when the estimate under each map (the full one first) is off by at most
    ``maps`` and the sampling sd by at most ``sampling``: the estimate's error plus z times the sd's, whose
    calibration part (spread and bias of the bootstrap maps' estimates) moves by at most the bootstrap errors."""
    est = max(float(maps[0]), 0.0)
    boot = float(np.max(maps[1:])) if len(maps) > 1 else 0.0
    calibration = math.sqrt(boot**2 * (len(maps) - 1) / max(len(maps) - 2, 1) + (boot + est) ** 2) \
        if len(maps) > 2 else 0.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return est + z * math.hypot(sampling, calibration)


def realised_sums(sums: BinarySums) -> dict[str, float] | None:
    """The realised metrics of the labelled rows from the sums (``realised`` on them), None without labels."""
    cm = sums.confusion
    if cm.sum() == 0:
        return None
    out = {k: float(v) for k, v in _from_counts(cm[1, 1], cm[0, 1], cm[1, 0], cm[0, 0]).items()}
    big_p, labelled = float(sums.label_pos.sum()), float(cm.sum())
    out["roc_auc"] = float(_auc_of(sums.label_pos @ _group_ranks(sums.label_pos + sums.label_neg), big_p, labelled))
    return out


def realised(y: np.ndarray, score: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """The same metrics from labels (AUC ranks by the model's scores, as the estimate does)."""
    labels = np.asarray(y).astype(bool).astype(np.int64)
    out = realised_sums(binary_sums(np.asarray(score, dtype=float), decision, labels=labels))
    if out is None:
        raise ValueError("no labelled rows")
    return out


# --- multiclass (one-vs-rest, macro-averaged as NannyML) -----------------------------------------------------------

def fit_multiclass_calibration(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], *,
                               decision: np.ndarray | None = None, seed: int = 0) -> list[Calibration]:
    """One calibration per class, each fitted one-vs-rest on that class's probability column: on the whole
    reference (the AUCs' weights: class j ranked by its score alone) and, when it calibrates, split by the model's
    call (``decision``: the predicted class index per reference row, else the highest probability) — on the rows
    it calls this class and on the others, since a count metric needs P(label | score, call) and the whole
    reference's map averages the two sides. A side with under 10 rows or one label keeps the whole map."""
    labels = np.asarray(y).astype(str)
    s = np.asarray(probs, dtype=float)
    pred = np.argmax(s, axis=1) if decision is None else np.asarray(decision, dtype=np.int64)
    out = []
    for k, c in enumerate(classes):
        hit = (labels == c).astype(float)
        whole = fit_calibration(hit, s[:, k], seed=seed + k)
        if whole.method == "none":
            out.append(whole)
            continue
        sides = []
        for rows in (pred == k, pred != k):
            try:
                sides.append(fit_calibration(hit[rows], s[rows, k], seed=seed + k, force=whole.method))
            except ValueError:   # too few rows or one label on this side
                sides.append(whole)
        out.append(replace(whole, split=(sides[0], sides[1])))
    return out


def _macro(counts: dict[str, Floats]) -> dict[str, Floats]:
    return {k: np.asarray(v.mean(axis=-1)) for k, v in counts.items()}


def _multiclass_metrics(cm: Floats) -> dict[str, Floats]:
    """Macro one-vs-rest metrics of confusion matrices (..., label, call); accuracy is the diagonal's share."""
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fp, fn = cm.sum(axis=-2) - tp, cm.sum(axis=-1) - tp
    out = _macro(_from_counts(tp, fp, fn, n[..., None] - tp - fp - fn))
    out["accuracy"] = _div(tp.sum(axis=-1), n)
    return out


def _class_calibrations(calibrations: Sequence[Calibration] | None, k: int) -> list[Calibration]:
    cals = list(calibrations) if calibrations is not None else [UNCALIBRATED] * k
    if len(cals) != k:
        raise ValueError(f"{k} probability columns but {len(cals)} calibrations")
    return cals


def _mapped(cal: Calibration, score: Floats, maps: int) -> Floats:
    """(1 + maps, n): the full map's probabilities, then the first ``maps`` bootstrap maps'."""
    p = cal.probabilities(score)
    return np.concatenate([p[None, :], cal.perturbed(score, p)[:maps]]) if maps else p[None, :]


def _class_maps(s: Floats, cals: Sequence[Calibration], decision: np.ndarray, *, bootstrap: bool = True
                ) -> tuple[Floats, Floats]:
    """Two (1 + maps, n, k) stacks of probabilities, the full maps first, then each bootstrap map shared by all
    classes (none unless ``bootstrap``). Given the call: each class's map of the row's side (the model calls that
    class or another), made a distribution keeping the called class's (``_given_call``) — the row's label
    distribution, for the expected confusion counts and every sampling variance. Alone: each class's
    whole-reference map of its own score, not renormalised — the AUCs' weights, as class j's AUC ranks rows by
    s_j only."""
    n, k = s.shape
    maps = min(len(m.bootstrap) for c in cals for m in (c, *c.sides)) if bootstrap else 0
    given, alone = np.zeros((1 + maps, n, k)), np.zeros((1 + maps, n, k))
    for j, c in enumerate(cals):
        alone[:, :, j] = _mapped(c, s[:, j], maps)
        for side, rows in zip(c.sides, (decision == j, decision != j), strict=True):
            given[:, rows, j] = _mapped(side, s[rows, j], maps)
    return _given_call(given, decision), alone


def _given_call(p: Floats, decision: np.ndarray) -> Floats:
    """Rows (..., n, k) made distributions keeping each row's called class's probability (its side's map, right
    on average over the rows called so: the expected true positives) and sharing the rest among the others in
    proportion to their maps."""
    called = np.eye(p.shape[-1], dtype=bool)[np.asarray(decision, dtype=np.int64)]
    hit = np.clip(np.sum(p, axis=-1, where=called, keepdims=True), 0.0, 1.0)
    rest = np.where(called, 0.0, p)
    total = rest.sum(axis=-1, keepdims=True)
    share = np.divide(rest, total, out=np.full_like(rest, 1.0 / max(p.shape[-1] - 1, 1)), where=total > 0)
    out: Floats = np.where(called, hit, share * (1 - hit))
    return out


@dataclass
class MulticlassSums:
    """A window's (or one partition's) sufficient statistics for the multiclass estimate, mergeable by addition.

    Per call (the predicted class): Σp of every class given the call under every calibration map (the expected
    confusion matrix) and Σ p_l·p_l' under the full map (the sampling variance of the count metrics: one
    categorical label per row; ``_class_maps``). Per class, its scores grouped as ``BinarySums``' (``bins``
    equal-width bins, or 0: each distinct score its own group, one window only): rows, Σp of that class by its
    score alone per map, the smallest and largest score, and the labelled rows
    of that class and of the others. The labelled rows' confusion counts (label, call), label k being one outside
    the classes. The AUC's sampling variance couples a row's classes through their ranks, so it is a second pass
    (``multiclass_spread``) over the rows with the slopes these sums give (``multiclass_auc_slopes``)."""

    bins: int
    expected: Floats     # (maps, label, call)
    second: Floats       # (call, label, label)
    count: Floats        # (k, groups)
    weight: Floats       # (maps, k, groups)
    lo: Floats           # (k, groups)
    hi: Floats           # (k, groups)
    confusion: Floats    # (k + 1, k) labelled rows: (label, call)
    label_pos: Floats    # (k, groups)
    label_neg: Floats    # (k, groups)

    @property
    def rows(self) -> float:
        return float(self.count[0].sum())

    def merge(self, o: MulticlassSums) -> MulticlassSums:
        if not self.bins or self.bins != o.bins or self.weight.shape != o.weight.shape:
            raise ValueError("only binned sums of the same bins, classes and calibration maps merge")
        return MulticlassSums(self.bins, self.expected + o.expected, self.second + o.second, self.count + o.count,
                              self.weight + o.weight, np.fmin(self.lo, o.lo), np.fmax(self.hi, o.hi),
                              self.confusion + o.confusion, self.label_pos + o.label_pos,
                              self.label_neg + o.label_neg)


def multiclass_sums(probs: np.ndarray, decision: np.ndarray, *, calibrations: Sequence[Calibration] | None = None,
                    labels: np.ndarray | None = None, bins: int = 0) -> MulticlassSums:
    """The sums of one partition: ``probs`` (n, classes) scores, ``decision`` the predicted class index per row,
    ``labels`` the true class index where a row has its label (k: a label outside the classes), -1 where not."""
    s = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    n, k = s.shape
    cals = _class_calibrations(calibrations, k)
    pred = np.asarray(decision, dtype=np.int64)
    every, alone = _class_maps(s, cals, pred)
    expected = np.swapaxes(every, -1, -2) @ np.eye(k)[pred]                 # (maps, label, call)
    p = every[0]
    second = np.stack([p[pred == c].T @ p[pred == c] for c in range(k)])
    y = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    known = y >= 0
    confusion = np.zeros((k + 1, k))
    np.add.at(confusion, (y[known], pred[known]), 1.0)
    groups = [_groups(s[:, j], bins) for j in range(k)]
    size = max(g[1] for g in groups)
    count, pos, neg = np.zeros((k, size)), np.zeros((k, size)), np.zeros((k, size))
    weight = np.zeros((len(alone), k, size))
    lo, hi = np.full((k, size), np.inf), np.full((k, size), -np.inf)    # distinct scores: unused groups padded
    for j, (group, used, g_lo, g_hi) in enumerate(groups):
        count[j] = np.bincount(group, minlength=size)
        for m, maps in enumerate(alone):
            weight[m, j] = np.bincount(group, weights=maps[:, j], minlength=size)
        lo[j, :used], hi[j, :used] = g_lo, g_hi
        pos[j] = np.bincount(group[y == j], minlength=size)
        neg[j] = np.bincount(group[known & (y != j)], minlength=size)
    return MulticlassSums(bins, expected, second, count, weight, lo, hi, confusion, pos, neg)


def _class_aucs(sums: MulticlassSums) -> tuple[Floats, Floats, Floats, Floats]:
    """Per class the groups' average ranks (k, groups), Σp·rank and Σp per map (maps, k) and each AUC."""
    ranks = _group_ranks(sums.count)
    dots, totals = np.einsum("mkg,kg->mk", sums.weight, ranks), sums.weight.sum(axis=-1)
    return ranks, dots, totals, _auc_of(dots, totals, sums.rows)


def multiclass_auc_slopes(sums: MulticlassSums) -> Floats:
    """(k, groups): how much the macro AUC moves when a row of a group turns into that class (``_auc_slopes``
    per class, over k) — what the second pass over the rows (``multiclass_spread``) needs."""
    ranks, dots, totals, _ = _class_aucs(sums)
    k = len(ranks)
    out = np.empty_like(ranks)
    for j in range(k):
        d_s, d_p = _auc_gradient(float(dots[0, j]), float(totals[0, j]), sums.rows)
        out[j] = (d_s * ranks[j] + d_p) / k
    return out


def multiclass_spread(probs: np.ndarray, decision: np.ndarray, slopes: Floats, *,
                      calibrations: Sequence[Calibration] | None = None, bins: int = 0) -> float:
    """The second pass: the sampling variance of the linearised macro AUC over these rows (one categorical label
    per row, given the model's ``decision`` as in ``multiclass_sums``), each row taking its groups' slopes
    (``multiclass_auc_slopes`` of the window's sums, grouped as they were). Sums over partitions."""
    s = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    k = s.shape[1]
    p = _class_maps(s, _class_calibrations(calibrations, k), np.asarray(decision, dtype=np.int64),
                    bootstrap=False)[0][0]
    a = np.column_stack([slopes[j][_groups(s[:, j], bins)[0]] for j in range(k)]) if len(s) else np.zeros((0, k))
    return _row_variance(p, a)


def estimate_multiclass(probs: np.ndarray, *, calibrations: Sequence[Calibration] | None = None,
                        decision: np.ndarray | None = None, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """``probs``: (n, classes) scores; ``decision``: the predicted class index per row (else the highest score).
    Each class's scores are calibrated one-vs-rest (``_class_maps``)."""
    s = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    pred = np.argmax(s, axis=1) if decision is None else np.asarray(decision, dtype=int)
    sums = multiclass_sums(s, pred, calibrations=calibrations)
    if sums.rows == 0:
        raise ValueError("no predictions to estimate from")
    spread = multiclass_spread(s, pred, multiclass_auc_slopes(sums), calibrations=calibrations)
    return estimate_multiclass_sums(sums, spread, calibrations=calibrations, level=level)


def estimate_multiclass_sums(sums: MulticlassSums, spread: float, *,
                             calibrations: Sequence[Calibration] | None = None, level: float = 0.95
                             ) -> dict[str, dict[str, Any]]:
    """Estimated multiclass metrics with bands from a window's sums (``multiclass_sums``, merged) and the AUC's
    sampling variance (``multiclass_spread``, summed). The expected confusion matrix and the count metrics'
    sampling variance (Σ_call g'·(diag Σp - Σpp')·g) are exact sums; the AUCs rank each group at its average
    rank, exact for distinct-score groups and within ``multiclass_auc_error`` for bins."""
    if sums.rows == 0:
        raise ValueError("no predictions to estimate from")
    cals = _class_calibrations(calibrations, sums.count.shape[0])
    cm = sums.expected
    each = _multiclass_metrics(cm)
    with np.errstate(all="ignore"):
        each["roc_auc"] = np.nanmean(_class_aucs(sums)[3], axis=-1)
    point = {m: float(v[0]) for m, v in each.items()}
    sampling = {m: float(np.sum(cm[0] * g * g) - np.einsum("lc,cle,ec->", g, sums.second, g))
                for m, g in _count_slopes(_multiclass_metrics, cm[0]).items()}
    sampling["roc_auc"] = spread
    return _bands(point, sampling, {m: v[1:] for m, v in each.items()}, level, _summary(cals))


def multiclass_auc_error(sums: MulticlassSums, level: float = 0.95) -> dict[str, float]:
    """How far the macro AUCs of binned sums can be from the exact ones: per class as ``auc_error`` (δS_b =
    W_b(c_b - W_b)/2 over bins holding two distinct scores), averaged over the classes whose AUC is defined (the
    macro AUC is their mean). ``band``: the band's ends move by the estimate's error plus z times the sd's —
    sampling: per row and class the slope is off by at most (|d_S|·(c_b - 1)/2 + |∂d_P/∂S|·ΣδS_b)/k, and the
    sd of a difference is at most sqrt(Σ p·δ²) (Minkowski); calibration: each bootstrap map's AUC off by at most
    its own error."""
    mixed = sums.hi > sums.lo
    n, k = sums.rows, sums.count.shape[0]
    w, c = np.where(mixed, sums.weight, 0.0), np.where(mixed, sums.count, 0.0)
    totals = sums.weight.sum(axis=-1)                                          # (maps, k)
    shift = np.sum(w * (c - w), axis=-1) / 2                                   # δS per map and class
    defined = (totals > 0) & (totals < n)
    with np.errstate(all="ignore"):
        per = np.where(defined, shift / (totals * (n - totals)), 0.0)
    maps = per.sum(axis=-1) / np.maximum(defined.sum(axis=-1), 1)
    big_p, big_n = sums.label_pos.sum(axis=-1), sums.label_neg.sum(axis=-1)
    both = (big_p > 0) & (big_n > 0)
    with np.errstate(all="ignore"):
        real = np.where(both, np.sum(np.where(mixed, sums.label_pos * sums.label_neg, 0.0), axis=-1)
                        / (2 * big_p * big_n), 0.0)
    den = totals[0] * (n - totals[0])
    with np.errstate(all="ignore"):
        d_s = np.where(den > 0, 1 / den, 0.0) / k
        d_dp = np.where(den > 0, np.abs(n - 2 * totals[0]) * shift[0] / den**2, 0.0) / k
    sampling = math.sqrt(float(np.sum(d_s[:, None] ** 2 * w[0] * ((c - 1) / 2) ** 2))) + \
        math.sqrt(float(np.sum(d_dp**2 * totals[0])))
    return {"estimate": max(float(maps[0]), 0.0), "realised": float(real.sum() / max(int(both.sum()), 1)),
            "band": _band_error(maps, sampling, level)}


def _summary(cals: Sequence[Calibration]) -> Calibration:
    """One calibration description for a multiclass estimate: isotonic if any class was calibrated."""
    applied = [c for c in cals if c.method != "none"]
    return Calibration(method="isotonic" if applied else "none",
                       ece_raw=float(np.mean([c.ece_raw for c in cals])),
                       ece_calibrated=float(np.mean([c.ece_calibrated for c in cals])),
                       full=UNCALIBRATED.full, bootstrap=())


def realised_multiclass_sums(sums: MulticlassSums) -> dict[str, float] | None:
    """Macro one-vs-rest metrics of the labelled rows from the sums (AUC ranking them by each class's scores),
    None without labels."""
    cm = sums.confusion
    labelled = float(cm.sum())
    if labelled == 0:
        return None
    k = cm.shape[1]
    tp = np.diagonal(cm[:k]).copy()
    fp, fn = cm.sum(axis=0) - tp, cm[:k].sum(axis=1) - tp
    out = {m: float(v) for m, v in _macro(_from_counts(tp, fp, fn, labelled - tp - fp - fn)).items()}
    out["accuracy"] = float(tp.sum() / labelled)
    dots = np.sum(sums.label_pos * _group_ranks(sums.label_pos + sums.label_neg), axis=-1)
    with np.errstate(all="ignore"):
        out["roc_auc"] = float(np.nanmean(_auc_of(dots, sums.label_pos.sum(axis=-1), labelled)))
    return out


def realised_multiclass(y: np.ndarray, probs: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """Macro one-vs-rest metrics from class indices (``y``; -1 for a label outside the baseline's classes)."""
    s = np.asarray(probs, dtype=float)
    k = s.shape[1]
    labels = np.asarray(y, dtype=np.int64)
    out = realised_multiclass_sums(multiclass_sums(s, decision, labels=np.where(labels < 0, k, labels)))
    if out is None:
        raise ValueError("no labelled rows")
    return out


def compare(est: dict[str, dict[str, Any]], realized: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Estimated vs realised, side by side, once labels arrive (``realized``/``realised`` both said)."""
    out = {}
    for m, e in est.items():
        r = realized.get(m)
        r = None if r is None or not math.isfinite(r) else r
        inside = None if r is None or not math.isfinite(e["lower"]) else bool(e["lower"] <= r <= e["upper"])
        out[m] = {**e, "realized": r, "realised": r, "within_band": inside}
    return out
