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
        wanted = {str(v) for v in spec}
        as_text = values.astype(str)
        out: NDArray[np.bool_] = np.isin(as_text, list(wanted))
        if values.dtype.kind in "fiu":   # 1 and 1.0 name the same label
            nums = [float(v) for v in spec if _is_number(v)]
            out |= np.isin(values.astype(float), nums)
        return out
    return np.asarray(values, dtype=float) > float(spec)


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
        c = np.bincount(idx, minlength=8).astype(float).reshape(2, 2, 2)   # [group, label, predicted]

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


def post_training(c: Counts, label: np.ndarray, predicted: np.ndarray, cdd: float | None,
                  ft: float | None) -> dict[str, float]:
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
        "GE": generalized_entropy(label, predicted),
    }
    if cdd is not None:
        out["CDDPL"] = cdd
    if ft is not None:
        out["FT"] = ft
    return out


def generalized_entropy(label: np.ndarray, predicted: np.ndarray, alpha: float = 2.0) -> float:
    b = predicted.astype(float) - label.astype(float) + 1.0
    mu = b.mean() if len(b) else 0.0
    if mu == 0:
        return math.nan   # every prediction a false negative: undefined
    if alpha == 2:
        return float(np.sum((b / mu) ** 2 - 1) / (2 * len(b)))
    return float(np.sum((b / mu) ** alpha - 1) / (len(b) * alpha * (alpha - 1)))


def conditional_disparity(sensitive: np.ndarray, outcome: np.ndarray, group: np.ndarray) -> float:
    """CDD: per subgroup i, d's share of rejections minus d's share of acceptances, weighted by size."""
    _, gi = np.unique(group, return_inverse=True)
    k = int(gi.max()) + 1 if len(gi) else 0
    idx = gi * 4 + sensitive.astype(np.int64) * 2 + outcome.astype(np.int64)
    c = np.bincount(idx, minlength=4 * k).astype(float).reshape(k, 2, 2)   # [group, sensitive, outcome]
    total = 0.0
    for i in range(k):
        rej, acc = c[i, :, 0].sum(), c[i, :, 1].sum()
        dd = div(c[i, 1, 0], rej) - div(c[i, 1, 1], acc)
        total += c[i].sum() * dd
    return div(total, c.sum())


def flip_test(features: np.ndarray, sensitive: np.ndarray, predicted: np.ndarray) -> float:
    """FT: kNN (k = 5, or 1 when group a has ≤ 9 rows) fitted on group a's features and predicted labels,
    applied to group d; (more favourable by the model − less favourable) / n_d. Numeric features only."""
    from sklearn.neighbors import KNeighborsClassifier

    xa, ya = features[~sensitive], predicted[~sensitive]
    xd, yd = features[sensitive], predicted[sensitive]
    if len(xd) == 0 or len(xa) == 0 or len(np.unique(ya)) < 1:
        return math.nan
    k = 1 if len(xa) <= 9 else 5
    knn = KNeighborsClassifier(n_neighbors=min(k, len(xa)), n_jobs=-1).fit(xa, ya.astype(int))
    flipped = knn.predict(xd).astype(int)
    fplus = int(np.sum(yd.astype(int) > flipped))
    fminus = int(np.sum(yd.astype(int) < flipped))
    return (fplus - fminus) / len(xd)
