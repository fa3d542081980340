"""Model-quality metrics: SageMaker's shapes, equal to scikit-learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from monitor.engine import quality

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"


def test_regression_matches_sklearn_and_sagemaker_shape():
    rng = np.random.default_rng(0)
    y = rng.normal(size=150)
    yhat = y + rng.normal(0, 0.5, 150)
    st = quality.statistics("Regression", y, prediction=yhat)
    m = st["regression_metrics"]
    assert m["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-12)
    assert m["mse"]["value"] == pytest.approx(skm.mean_squared_error(y, yhat), rel=1e-12)
    assert m["rmse"]["value"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, yhat)), rel=1e-12)
    assert m["r2"]["value"] == pytest.approx(skm.r2_score(y, yhat), rel=1e-12)
    fixture = json.loads((FIX / "model_quality_regression_statistics.json").read_text())
    assert set(st) == set(fixture) and set(m) == set(fixture["regression_metrics"])
    assert all(v["standard_deviation"] == "NaN" for v in m.values())   # < 200 samples, as in the fixture
    big = quality.statistics("Regression", rng.normal(size=1000), prediction=rng.normal(size=1000))
    assert all(isinstance(v["standard_deviation"], float) for v in big["regression_metrics"].values())


@pytest.mark.parametrize(("decimals", "threshold"), [(3, 0.5), (3, 0.35), (None, 0.5), (3, 0.0), (3, 1.5),
                                                    (1, 0.4)])
def test_binary_matches_sklearn(decimals, threshold):
    """Ties (rounded scores) or all distinct; the threshold on a score value, between values, below and above
    every score: the confusion counts read off the ROC points equal scikit-learn's."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 5000), 0, 1)
    score = score.round(decimals) if decimals is not None else score
    m = quality.binary_values(y, score, None, threshold=threshold)
    pred = (score >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    for beta, key in ((0.5, "f0_5"), (1.0, "f1"), (2.0, "f2")):
        assert m[key] == pytest.approx(skm.fbeta_score(y, pred, beta=beta, zero_division=0), rel=1e-12)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, score), rel=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["confusion_matrix"] == {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}
    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    roc = m["receiver_operating_characteristic_curve"]
    np.testing.assert_allclose(roc["false_positive_rates"], fpr, rtol=1e-12)
    np.testing.assert_allclose(roc["true_positive_rates"], tpr, rtol=1e-12)
    prec, rec, _ = skm.precision_recall_curve(y, score, drop_intermediate=False)
    pr = m["precision_recall_curve"]
    np.testing.assert_allclose(pr["precisions"], prec, rtol=1e-12)
    np.testing.assert_allclose(pr["recalls"], rec, rtol=1e-12)
    assert m["true_negative_rate"] == pytest.approx(tn / (tn + fp))
    assert m["accuracy_best_constant_classifier"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    p = y.mean()
    assert m["f1_best_constant_classifier"] == pytest.approx(2 * p / (1 + p))


def test_long_curves_keep_exact_points_and_both_ends(monkeypatch):
    """More distinct scores than CURVE_POINTS: each kept point is one of scikit-learn's, in its order, ends
    included; the AUC and the confusion counts still come from every point."""
    monkeypatch.setattr(quality, "CURVE_POINTS", 100)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 5000)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 5000), 0, 1)
    m = quality.binary_values(y, score, None)
    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    roc = m["receiver_operating_characteristic_curve"]
    assert len(roc["false_positive_rates"]) == 101 and len(fpr) > 4000
    rows = {(f, t): i for i, (f, t) in enumerate(zip(fpr.tolist(), tpr.tolist(), strict=True))}
    at = [rows[p] for p in zip(roc["false_positive_rates"], roc["true_positive_rates"], strict=True)]
    assert at[0] == 0 and at[-1] == len(fpr) - 1 and at == sorted(at)
    prec, rec, _ = skm.precision_recall_curve(y, score, drop_intermediate=False)
    pr = m["precision_recall_curve"]
    rows = {(p, r): i for i, (p, r) in enumerate(zip(prec.tolist(), rec.tolist(), strict=True))}
    at = [rows[p] for p in zip(pr["precisions"], pr["recalls"], strict=True)]
    assert at[0] == 0 and at[-1] == len(prec) - 1 and at == sorted(at) and len(at) == 101
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, score), rel=1e-12)
    stats = quality.statistics("BinaryClassification", y, probability=score)
    assert "at most 101 per curve" in stats["compute"]["curve_points"]


def test_roc_points_take_the_same_counts_by_every_path():
    """Non-negative scores take one sort of (bits, label) keys; negative, NaN and -0.0 scores, ints and float32
    must give what ordering the rows gives."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 2000)
    for score in (rng.random(2000), rng.random(2000).round(2), rng.normal(size=2000), rng.integers(0, 5, 2000),
                  rng.random(2000).astype(np.float32), np.where(rng.random(2000) < 0.5, -0.0, 0.0),
                  np.r_[rng.random(1999), np.inf], np.r_[rng.random(1999), np.nan]):
        got = quality.roc_points(y, score)
        want = quality._roc_points_ranked(y, np.asarray(score, dtype=float))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_keyed_counts_auc_and_curves_equal_those_of_the_ranked_rows(monkeypatch):
    """Scores >= 0 are read off the sorted keys without per-score arrays (the AUC as a Mann-Whitney count less half
    of each tie group's mixed pairs): every count, the AUC and each kept curve point must be what ranking the rows
    gives, with ties of mixed labels, one class only, and thresholds at, between, below and above the scores."""
    monkeypatch.setattr(quality, "CURVE_POINTS", 50)
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 3000)
    clipped = np.clip(y * 0.3 + rng.normal(0.35, 0.3, 3000), 0, 1)   # large mixed tie groups at 0 and 1
    for score in (rng.random(3000), clipped, clipped.round(2), rng.integers(0, 4, 3000).astype(float),
                  rng.random(3000).astype(np.float32).astype(float), np.full(3000, 0.5), np.zeros(3000)):
        for labels in (y, np.zeros(3000, dtype=np.int64), np.ones(3000, dtype=np.int64)):
            fps, tps, _ = quality._roc_points_ranked(labels, score)
            keep = quality._curve_rows(len(tps))
            for threshold in (0.0, 0.5, float(score[17]), 1.0, 2.0, -1.0):
                got = quality.binary_values(labels, score, None, threshold=threshold)
                pred = score >= threshold
                cm = got["confusion_matrix"]
                assert (cm["1"]["1"], cm["0"]["1"], cm["1"]["0"], cm["0"]["0"]) == (
                    int(np.sum(pred & (labels == 1))), int(np.sum(pred & (labels == 0))),
                    int(np.sum(~pred & (labels == 1))), int(np.sum(~pred & (labels == 0))))
                want_auc = quality.auc_from_points(fps, tps)
                if labels.min() == labels.max():
                    assert math.isnan(got["auc"]) and math.isnan(want_auc)
                else:
                    assert got["auc"] == pytest.approx(want_auc, rel=1e-12)
                    assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, score), rel=1e-12)
                    roc = got["receiver_operating_characteristic_curve"]
                    np.testing.assert_array_equal(roc["false_positive_rates"], np.r_[0.0, fps[keep] / fps[-1]])
                    np.testing.assert_array_equal(roc["true_positive_rates"], np.r_[0.0, tps[keep] / tps[-1]])


def test_an_empty_window_has_zero_counts_and_no_auc():
    """No rows (a caller that skips its own emptiness check): zero counts and NaN, not an IndexError."""
    m = quality.binary_values(np.array([], dtype=np.int64), np.array([]), None)
    assert m["confusion_matrix"] == {"0": {"0": 0, "1": 0}, "1": {"0": 0, "1": 0}} and math.isnan(m["auc"])
    assert m["receiver_operating_characteristic_curve"]["false_positive_rates"] == [0.0]
    stats = quality.statistics("BinaryClassification", np.array([], dtype=np.int64), probability=np.array([]))
    assert stats["dataset"]["item_count"] == 0


def test_binary_standard_deviations_from_the_sorted_keys_equal_those_from_the_rows():
    """The five 80% resamples are taken from the one sort of the whole window (positions in score order, as good a
    uniform draw as positions in row order): the same rows, computed directly, give the same values."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 3000)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 3000), 0, 1)
    got = quality.statistics("BinaryClassification", y, probability=score, seed=7)["binary_classification_metrics"]
    runs = []
    draw = np.random.default_rng(7)
    by_score = np.lexsort((y, score))   # the rows in the keys' order (equal keys are equal rows)
    for _ in range(5):
        keep = np.ones(3000, dtype=bool)
        keep[draw.choice(3000, 600, replace=False, shuffle=False)] = False
        rows = by_score[keep]
        runs.append(quality.binary_values(y[rows], score[rows], None, curves=False))
    whole = quality.binary_values(y, score, None)
    for name, value in whole.items():
        assert got[name]["value"] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), name
        if isinstance(value, float):
            assert got[name]["standard_deviation"] == pytest.approx(np.std([r[name] for r in runs]), abs=1e-12)


def test_binary_edge_cases():
    y = np.ones(10, dtype=int)
    m = quality.binary_values(y, np.linspace(0, 1, 10), None)
    assert np.isnan(m["auc"]) and m["true_negative_rate"] == 0.0
    m = quality.binary_values(np.array([0, 1, 1, 0, 1]), np.array([0.9, np.nan, 0.7, 0.2, 0.6]), None)
    assert m["confusion_matrix"] == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}   # NaN scores predict 0
    m = quality.binary_values(np.array([0, 1, 0, 1]), None, np.array([0, 1, 1, 1]))
    assert m["precision"] == pytest.approx(2 / 3) and m["auc"] == pytest.approx(0.75)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.choice(["cat", "dog", "eel"], 3000, p=[0.5, 0.3, 0.2])
    pred = np.where(rng.random(3000) < 0.7, y, rng.choice(["cat", "dog", "eel"], 3000))
    m = quality.multiclass_values(y, pred)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["weighted_precision"] == pytest.approx(skm.precision_score(y, pred, average="weighted"))
    assert m["weighted_recall"] == pytest.approx(skm.recall_score(y, pred, average="weighted"))
    for beta, key in ((0.5, "weighted_f0_5"), (1.0, "weighted_f1"), (2.0, "weighted_f2")):
        assert m[key] == pytest.approx(skm.fbeta_score(y, pred, beta=beta, average="weighted"), rel=1e-12)
    cm = skm.confusion_matrix(y, pred, labels=["cat", "dog", "eel"])
    assert m["confusion_matrix"]["dog"]["eel"] == cm[1, 2]
    const = np.full(3000, "cat")
    assert m["weighted_f1_best_constant_classifier"] == pytest.approx(
        skm.f1_score(y, const, average="weighted", zero_division=0))


def test_constraints_and_violations_in_sagemaker_shape():
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    base = quality.statistics("Regression", y, prediction=y + rng.normal(0, 0.3, 400))
    cons = quality.suggest_constraints(base)
    assert cons["regression_constraints"]["mae"]["comparison_operator"] == "GreaterThanThreshold"
    assert cons["regression_constraints"]["r2"]["comparison_operator"] == "LessThanThreshold"
    assert quality.violations(cons, base) == []
    worse = quality.statistics("Regression", y, prediction=y + rng.normal(0, 1.0, 400))
    got = {v["metric_name"]: v for v in quality.violations(cons, worse)}
    assert set(got) == {"mae", "mse", "rmse", "r2"}
    assert got["r2"]["constraint_check_type"] == "LessThanThreshold"
    assert got["mae"]["description"].startswith("Metric mae with ")
    with pytest.raises(ValueError, match="problem type"):
        quality.statistics("Ranking", y, prediction=y)
