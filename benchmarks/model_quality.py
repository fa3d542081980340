"""Binary model-quality metrics on 1M labelled predictions: mlgov's engine vs scikit-learn, same data.

Both compute: confusion matrix, accuracy, precision, recall, F0.5/F1/F2, ROC AUC, ROC and PR curves.
(SageMaker's standard deviations — five 80% resamples — are timed separately.)

    .venv/bin/python benchmarks/model_quality.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.engine import quality


def sklearn_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, object]:
    from sklearn import metrics as skm

    pred = (score >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    return {"confusion": (tn, fp, fn, tp), "accuracy": skm.accuracy_score(y, pred),
            "precision": skm.precision_score(y, pred), "recall": skm.recall_score(y, pred),
            "f0_5": skm.fbeta_score(y, pred, beta=0.5), "f1": skm.f1_score(y, pred),
            "f2": skm.fbeta_score(y, pred, beta=2.0), "auc": skm.roc_auc_score(y, score),
            "roc": skm.roc_curve(y, score, drop_intermediate=False)[:2],
            "pr": skm.precision_recall_curve(y, score, drop_intermediate=False)[:2]}


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, a.rows)
    score = np.clip(0.3 * y + rng.normal(0.35, 0.2, a.rows), 0, 1).round(4)
    ours_s, ours = best_of(lambda: quality.binary_values(y, score, None))
    sk_s, sk = best_of(lambda: sklearn_metrics(y, score))
    std_s, _ = best_of(lambda: quality.statistics("BinaryClassification", y, probability=score), repeat=1)
    assert isinstance(ours, dict) and isinstance(sk, dict)
    cm = ours["confusion_matrix"]
    equal = (cm["0"]["0"], cm["0"]["1"], cm["1"]["0"], cm["1"]["1"]) == tuple(int(v) for v in sk["confusion"])
    for k in ("accuracy", "precision", "recall", "f0_5", "f1", "f2", "auc"):
        equal &= abs(ours[k] - sk[k]) <= 1e-12
    roc = ours["receiver_operating_characteristic_curve"]
    equal &= np.allclose(roc["false_positive_rates"], sk["roc"][0], rtol=1e-12, atol=0)
    equal &= np.allclose(roc["true_positive_rates"], sk["roc"][1], rtol=1e-12, atol=0)
    pr = ours["precision_recall_curve"]
    equal &= np.allclose(pr["precisions"], sk["pr"][0], rtol=1e-12, atol=0)
    equal &= np.allclose(pr["recalls"], sk["pr"][1], rtol=1e-12, atol=0)
    print(f"full SageMaker statistics.json with standard deviations (6 metric passes): {std_s:.3f} s")
    print(f"rows={a.rows} ours_s={ours_s:.3f} sklearn_s={sk_s:.3f} ratio={sk_s / ours_s:.1f} "
          f"equal={'true' if equal else 'false'}")


if __name__ == "__main__":
    main()
