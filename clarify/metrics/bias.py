"""SageMaker Clarify's pre- and post-training bias metrics, from counts computed once.

One bincount over (group, label, predicted label) gives every count the formulas need; CDDL/CDDPL add one
bincount over the group variable. Conventions follow smclarify: 0/0 → 0, x/0 → ±∞, and the difference of
two equal infinities is 0. Labels and facets are turned into booleans as Clarify does: label values (or
`label > threshold`) are positive; facet values (or `facet > threshold`) form the sensitive group d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

PRE = ("CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD")
POST = ("AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "FT", "GE", "RD", "SD", "TE")
DESCRIPTIONS = {
    "CDDL": "Conditional Demographic Disparity in Labels (CDDL)", "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)", "JS": "Jensen-Shannon Divergence (JS)",
    "KL": "Kullback-Liebler Divergence (KL)", "KS": "Kolmogorov-Smirnov Distance (KS)", "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
    "AD": "Accuracy Difference (AD)", "CDDPL": "Conditional Demographic Disparity in Predicted Labels (CDDPL)",
    "DAR": "Difference in Acceptance Rates (DAR)", "DCA": "Difference in Conditional Acceptance (DCA)",
    "DCR": "Difference in Conditional Rejection (DCR)", "DI": "Disparate Impact (DI)",
    "DPPL": "Difference in Positive Proportions in Predicted Labels (DPPL)",
    "DRR": "Difference in Rejection Rates (DRR)", "FT": "Flip Test (FT)", "GE": "Generalized Entropy (GE)",
    "RD": "Recall Difference (RD)", "SD": "Specificity Difference (SD)", "TE": "Treatment Equality (TE)",
}


def div(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else math.copysign(math.inf, a)
    return a / b


def diff(x: float, y: float) -> float:
    if math.isinf(x) and math.isinf(y) and (x > 0) == (y > 0):
        return 0.0
    return x - y


def positive(values: np.ndarray, spec: Any) -> NDArray[np.bool_]:
    """Clarify's label (or facet) mapping: listed values, or numeric values above a threshold."""
    if isinstance(spec, list | tuple | set):
        if values.dtype.kind not in "biuf":
            return _listed(values, spec)
        # numbers: decided once per distinct value, then spread by the codes (turning a million numbers into text
        # cost two thirds of the whole analysis); values hashing equal (0.0, -0.0) also compare equal numerically
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        out: NDArray[np.bool_] = _listed(np.asarray(uniques, dtype=values.dtype), spec)[codes]
        return out
    return np.asarray(values, dtype=float) > float(spec)


def captured_labels(raw: pd.Series, spec: Any) -> tuple[pd.Series, Any]:
    """Ground-truth labels as they arrive (text) read for ``spec``, and ``spec`` as they are then compared with:
    numbers when every label reads as one ("1.0" and the configured 1 are one label, as in an uploaded file),
    else text (listed values compared as text). A threshold takes numbers where they parse."""
    numbers = pd.to_numeric(raw, errors="coerce")
    if not isinstance(spec, list | tuple):
        return numbers.fillna(raw), spec
    if numbers.notna().all():
        return numbers, list(spec)
    return raw.astype(str), [str(v) for v in spec]


def _listed(values: np.ndarray, spec: Any) -> NDArray[np.bool_]:
    wanted = {str(v) for v in spec}
    out: NDArray[np.bool_] = np.isin(values.astype(str), list(wanted))
    if values.dtype.kind in "bfiu":   # 1, 1.0 and True name the same label
        nums = [float(v) for v in spec if _is_number(v)]
        out |= np.isin(values.astype(float), nums)
    return out


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Counts:
    """Per group x ∈ {a, d}: rows, observed positives, predicted positives and the confusion matrix."""

    n: tuple[float, float]
    pos: tuple[float, float]
    pred_pos: tuple[float, float]
    tp: tuple[float, float]
    fp: tuple[float, float]
    tn: tuple[float, float]
    fn: tuple[float, float]

    @classmethod
    def of(cls, sensitive: np.ndarray, label: np.ndarray, predicted: np.ndarray | None) -> Counts:
        pred = predicted if predicted is not None else label
        idx = sensitive.astype(np.int64) * 4 + label.astype(np.int64) * 2 + pred.astype(np.int64)
        return cls.of_cells(np.bincount(idx, minlength=8).reshape(2, 2, 2))

    @classmethod
    def of_cells(cls, cells: np.ndarray) -> Counts:
        """From the row counts ``cells[group, label, predicted]`` (group 1 is d), all a partition has to merge."""
        c = cells.astype(float)

        def pair(f: Any) -> tuple[float, float]:
            return float(f(c[0])), float(f(c[1]))

        return cls(n=pair(lambda g: g.sum()), pos=pair(lambda g: g[1].sum()), pred_pos=pair(lambda g: g[:, 1].sum()),
                   tp=pair(lambda g: g[1, 1]), fp=pair(lambda g: g[0, 1]), tn=pair(lambda g: g[0, 0]),
                   fn=pair(lambda g: g[1, 0]))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = (p > 0) & (q > 0)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def pre_training(c: Counts, cdd: float | None) -> dict[str, float]:
    (na, nd), (pa, pd) = c.n, c.pos
    qa, qd = div(pa, na), div(pd, nd)
    dist_a, dist_d = np.array([qa, 1 - qa]), np.array([qd, 1 - qd])
    mid = (dist_a + dist_d) / 2
    out = {"CI": div(na - nd, na + nd), "DPL": qa - qd, "KL": _kl(dist_a, dist_d),
           "JS": 0.5 * (_kl(dist_a, mid) + _kl(dist_d, mid)), "LP": float(np.linalg.norm(dist_a - dist_d)),
           "TVD": 0.5 * float(np.abs(dist_a - dist_d).sum()), "KS": float(np.max(np.abs(dist_a - dist_d)))}
    if cdd is not None:
        out["CDDL"] = cdd
    return out


def post_training(c: Counts, label: np.ndarray | None, predicted: np.ndarray | None, cdd: float | None,
                  ft: float | None, ge: float | None = None) -> dict[str, float]:
    """``ge``: the generalized entropy when computed apart (from merged counts), else from ``label`` and
    ``predicted``."""
    (na, nd) = c.n
    (pa, pd), (ppa, ppd) = c.pos, c.pred_pos
    (tpa, tpd), (fpa, fpd), (tna, tnd), (fna, fnd) = c.tp, c.fp, c.tn, c.fn
    qa, qd = div(ppa, na), div(ppd, nd)
    out = {
        "DPPL": qa - qd, "DI": div(qd, qa),
        "DCA": diff(div(pa, ppa), div(pd, ppd)),
        "DCR": diff(div(nd - pd, nd - ppd), div(na - pa, na - ppa)),
        "SD": diff(div(tnd, tnd + fpd), div(tna, tna + fpa)),
        "RD": diff(div(tpa, tpa + fna), div(tpd, tpd + fnd)),
        "DAR": diff(div(tpa, tpa + fpa), div(tpd, tpd + fpd)),
        "DRR": diff(div(tnd, tnd + fnd), div(tna, tna + fna)),
        "AD": diff(div(tpa + tna, na), div(tpd + tnd, nd)),
        "TE": diff(div(fnd, fpd), div(fna, fpa)),
        "GE": ge if ge is not None else generalized_entropy(label, predicted),
    }
    if cdd is not None:
        out["CDDPL"] = cdd
    if ft is not None:
        out["FT"] = ft
    return out


def generalized_entropy(label: np.ndarray | None, predicted: np.ndarray | None, alpha: float = 2.0) -> float:
    assert label is not None and predicted is not None
    b = predicted.astype(np.int64) - label.astype(np.int64) + 1
    return entropy_of_counts(np.bincount(b, minlength=3)[:3], alpha)


def entropy_of_counts(k: np.ndarray, alpha: float = 2.0) -> float:
    """GE from how many rows have benefit b = ŷ − y + 1 of 0, 1 and 2 (all the formula reads)."""
    n = float(k.sum())
    mu = float(k[1] + 2 * k[2]) / n if n else 0.0
    if mu == 0:
        return math.nan   # every prediction a false negative: undefined
    terms = [float(k[b]) * ((b / mu) ** alpha - 1) for b in range(3)]
    if alpha == 2:
        return float(sum(terms) / (2 * n))
    return float(sum(terms) / (n * alpha * (alpha - 1)))


def conditional_disparity(sensitive: np.ndarray, outcome: np.ndarray, group: np.ndarray) -> float:
    """CDD: per subgroup i, d's share of rejections minus d's share of acceptances, weighted by size."""
    gi, _ = pd.factorize(group, use_na_sentinel=False)   # hashing, not np.unique's sort; any code order will do
    k = int(gi.max()) + 1 if len(gi) else 0
    idx = gi * 4 + sensitive.astype(np.int64) * 2 + outcome.astype(np.int64)
    return disparity_of_counts(np.bincount(idx, minlength=4 * k).reshape(k, 2, 2))


def disparity_of_counts(counts: np.ndarray) -> float:
    """CDD from the row counts ``counts[subgroup, sensitive, outcome]``."""
    c = counts.astype(float)
    total = 0.0
    for i in range(c.shape[0]):
        rej, acc = c[i, :, 0].sum(), c[i, :, 1].sum()
        dd = div(c[i, 1, 0], rej) - div(c[i, 1, 1], acc)
        total += c[i].sum() * dd
    return div(total, c.sum())


def flip_test(features: np.ndarray, sensitive: np.ndarray, predicted: np.ndarray) -> float:
    """FT: kNN (k = 5, or 1 when group a has ≤ 9 rows) fitted on group a's features and predicted labels,
    applied to group d; (more favourable by the model − less favourable) / n_d. Numeric features only.

    smclarify uses scikit-learn's KNeighborsClassifier (uniform vote); the same neighbours come from scipy's
    cKDTree queried on every core, about three times less CPU at a million rows. Labels are 0/1 and k is odd, so
    the vote is a strict majority: no tie to break."""
    from scipy.spatial import cKDTree

    if not np.isfinite(features).all():
        raise ValueError("FlipTest's features contain NaN or infinity")
    xa, ya = features[~sensitive], predicted[~sensitive].astype(np.int64)
    xd, yd = features[sensitive], predicted[sensitive].astype(np.int64)
    if len(xd) == 0 or len(xa) == 0:
        return math.nan
    k = min(1 if len(xa) <= 9 else 5, len(xa))
    _, idx = cKDTree(xa).query(xd, k=k, workers=-1)
    flipped = (ya[np.asarray(idx).reshape(len(xd), k)].sum(axis=1) * 2 > k).astype(np.int64)
    fplus = int(np.sum(yd > flipped))
    fminus = int(np.sum(yd < flipped))
    return (fplus - fminus) / len(xd)
