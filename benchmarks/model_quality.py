"""Binary model-quality metrics on 1M labelled predictions: mlgov's engine vs scikit-learn, same data.

Both compute: confusion matrix, accuracy, precision, recall, F0.5/F1/F2, ROC AUC, ROC and PR curves (ours keeps at
most ``quality.CURVE_POINTS`` exact points of a longer curve; "equal" checks each is one of scikit-learn's, in
order, ends included). Run on scores rounded to 4 decimals (~10k distinct) and on all-distinct doubles.
scikit-learn is timed two ways and both are printed:

- lean, as a competent user writes it: one ``confusion_matrix`` (every scalar follows from its four counts),
  one ``roc_curve`` with ``auc`` on its points, and the PR curve derived from the same points (one sort,
  inputs validated once per call); the headline ratio is against this;
- per metric, one scikit-learn call each (``accuracy_score``, ``precision_score``, … ``roc_auc_score``,
  ``precision_recall_curve``): each call re-validates and re-counts, three sorts. This is what many
  monitoring tools do, but it is not the fair comparison.

(SageMaker's standard deviations — five 80% resamples — are timed separately.) Both tools run in one process with
the glibc malloc thresholds mlgov's server and scheduler set for themselves (``cpu.tune_malloc``: freed pages of
the 8 MB temporaries reused rather than faulted in again), as ``drift_vs_evidently.py`` does.

    .venv/bin/python benchmarks/model_quality.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.engine import quality


def sklearn_lean(y: np.ndarray, score: np.ndarray) -> dict[str, object]:
    from sklearn import metrics as skm

    tn, fp, fn, tp = (float(v) for v in skm.confusion_matrix(y, score >= 0.5).ravel())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0

    def fbeta(b: float) -> float:
        den = b * b * precision + recall
        return (1 + b * b) * precision * recall / den if den else 0.0

    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    pos, neg = tp + fn, tn + fp
    tps, fps = np.rint(tpr[1:] * pos), np.rint(fpr[1:] * neg)  # the counts behind each ROC point
    pr_precision = np.r_[(tps / np.maximum(tps + fps, 1))[::-1], 1.0]
    pr_recall = np.r_[(tpr[1:])[::-1], 0.0]
    return {
        "confusion": (tn, fp, fn, tp),
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f0_5": fbeta(0.5),
        "f1": fbeta(1.0),
        "f2": fbeta(2.0),
        "auc": skm.auc(fpr, tpr),
        "roc": (fpr, tpr),
        "pr": (pr_precision, pr_recall),
    }


def sklearn_per_metric(y: np.ndarray, score: np.ndarray) -> dict[str, object]:
    from sklearn import metrics as skm

    pred = (score >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    return {
        "confusion": (tn, fp, fn, tp),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f0_5": skm.fbeta_score(y, pred, beta=0.5),
        "f1": skm.f1_score(y, pred),
        "f2": skm.fbeta_score(y, pred, beta=2.0),
        "auc": skm.roc_auc_score(y, score),
        "roc": skm.roc_curve(y, score, drop_intermediate=False)[:2],
        "pr": skm.precision_recall_curve(y, score, drop_intermediate=False)[:2],
    }


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _kept_in_order(xs: list[float], ys: list[float], ref_x: np.ndarray, ref_y: np.ndarray) -> bool:
    """Each of our curve's points is one of the reference's, in its order, both ends included (ours keeps at most
    ``quality.CURVE_POINTS`` of a longer curve; a curve that short is the whole one)."""
    if len(xs) == len(ref_x):
        return bool(np.allclose(xs, ref_x, rtol=1e-12, atol=0) and np.allclose(ys, ref_y, rtol=1e-12, atol=0))
    rows = {p: i for i, p in enumerate(zip(ref_x.tolist(), ref_y.tolist(), strict=True))}
    at = [rows.get(p, -1) for p in zip(xs, ys, strict=True)]
    return len(xs) <= quality.CURVE_POINTS + 1 and at[0] == 0 and at[-1] == len(ref_x) - 1 and \
        -1 not in at and at == sorted(at)


def same(ours: dict, sk: dict) -> bool:
    cm = ours["confusion_matrix"]
    equal = (cm["0"]["0"], cm["0"]["1"], cm["1"]["0"], cm["1"]["1"]) == tuple(int(v) for v in sk["confusion"])
    for k in ("accuracy", "precision", "recall", "f0_5", "f1", "f2", "auc"):
        equal &= abs(ours[k] - sk[k]) <= 1e-12
    roc = ours["receiver_operating_characteristic_curve"]
    equal &= _kept_in_order(roc["false_positive_rates"], roc["true_positive_rates"], *sk["roc"])
    pr = ours["precision_recall_curve"]
    equal &= _kept_in_order(pr["precisions"], pr["recalls"], *sk["pr"])
    return bool(equal)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    from mlgov import cpu

    print(cpu.tune_malloc())   # as mlgov's server does for itself; the same for both tools
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, a.rows)
    raw = np.clip(0.3 * y + rng.normal(0.35, 0.2, a.rows), 0, 1)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # scores as a model written to 4 decimals sends them (~10k distinct), and as full doubles (all distinct)
    for shape, score in (("4 decimals", raw.round(4)), ("all distinct", raw)):
        ours_s, ours = best_of(lambda s=score: quality.binary_values(y, s, None))
        lean_s, lean = best_of(lambda s=score: sklearn_lean(y, s))
        per_s, per = best_of(lambda s=score: sklearn_per_metric(y, s))
        std_s, _ = best_of(lambda s=score: quality.statistics("BinaryClassification", y, probability=s), repeat=1)
        assert isinstance(ours, dict) and isinstance(lean, dict) and isinstance(per, dict)
        points = len(lean["roc"][0])
        print(f"--- scores to {shape}: {points} ROC points, ours keeps "
              f"{len(ours['receiver_operating_characteristic_curve']['false_positive_rates'])}")
        print(f"scikit-learn lean (one confusion matrix, one roc_curve + auc): {lean_s:.3f} s, "
              f"equal to ours: {same(ours, lean)}")
        print(f"scikit-learn one call per metric (re-validates, three sorts): {per_s:.3f} s, "
              f"equal to ours: {same(ours, per)}")
        print(f"full SageMaker statistics.json with standard deviations (6 metric passes): {std_s:.3f} s")
        print(f"rows={a.rows} scores={shape.replace(' ', '_')} ours_s={ours_s:.3f} sklearn_lean_s={lean_s:.3f} "
              f"sklearn_per_metric_s={per_s:.3f} ratio_lean={lean_s / ours_s:.1f} "
              f"ratio_per_metric={per_s / ours_s:.1f} equal={str(same(ours, lean) and same(ours, per)).lower()}")


if __name__ == "__main__":
    main()
