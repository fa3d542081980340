"""Label-free performance estimation around the engine (``monitor.engine.cbpe`` and ``monitor.engine.dle``): the
estimator fitted when a model-quality baseline is built (calibration maps, or regression loss models, as JSON data
in the baseline's ``estimation.json``), and its application to a captured window — decisions from the captured
prediction where present, else the baseline's threshold; realised values and whether they fell in the band for
the labelled rows; estimated breaches of the baseline's constraints.

Services flush; callers commit.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor import layout
from monitor.engine import cbpe, dle, estimation_partition, quality
from monitor.engine.estimation_partition import floats
from monitor.orm import Baseline
from monitor.service.ground_truth import ClusterWindow, summarise_window

ESTIMATOR = "estimation.json"
ESTIMATED_CHECKS = {"LessThanThreshold": "EstimatedLessThanThreshold",
                    "GreaterThanThreshold": "EstimatedGreaterThanThreshold"}
DLE_CONSTRAINTS = {m: m for m in dle.METRICS}



def fit_estimator(problem_type: str, columns: Mapping[str, Sequence[Any]], settings: Mapping[str, Any],
                  labels: Sequence[Any]) -> dict[str, Any] | None:
    """The estimator of a model-quality baseline from its labelled reference (``columns``: name → values), or
    None when the reference cannot support one (a binary baseline without scores)."""
    if problem_type == "BinaryClassification":
        if not settings.get("probability"):
            return None
        y = floats(labels).astype(int)
        score = np.clip(floats(columns[settings["probability"]]), 0.0, 1.0)
        try:
            cal = cbpe.fit_calibration(y, score)
        except ValueError as exc:
            raise Invalid(f"cannot fit the performance estimator: {exc}",
                          fix="use a labelled reference with both classes and a probability column") from None
        return {"problem_type": problem_type, "calibration": cal.as_dict()}
    if problem_type == "MulticlassClassification":
        cp: dict[str, str] = dict(settings.get("class_probabilities") or {})
        if not cp:
            return None
        classes = list(cp)
        probs = np.column_stack([floats(columns[c]) for c in cp.values()])
        pred = settings.get("prediction")
        decision, _ = estimation_partition.multiclass_decisions(
            np.nan_to_num(probs), columns[pred] if pred and pred in columns else None, classes)
        try:
            cals = cbpe.fit_multiclass_calibration(np.asarray([str(v) for v in labels]), probs, classes,
                                                   decision=decision)
        except ValueError as exc:
            raise Invalid(f"cannot fit the performance estimator: {exc}",
                          fix="every class needs labelled rows in the reference") from None
        return {"problem_type": problem_type, "classes": classes, "calibrations": [c.as_dict() for c in cals]}
    features = list(settings.get("features") or [])
    if not features or not settings.get("prediction"):
        return None
    yhat = floats(columns[settings["prediction"]])
    x = np.column_stack([floats(columns[f]) for f in features] + [yhat])
    y = floats(labels)
    ok = np.isfinite(y) & np.isfinite(yhat)
    try:
        state = dle.fit(x[ok], y[ok], yhat[ok])
    except ValueError as exc:
        raise Invalid(f"cannot fit the loss models: {exc}", fix="use a larger labelled reference") from None
    return {"problem_type": problem_type, "dle": state}


def store_estimator(store: ObjectStore, prefix: str, state: dict[str, Any] | None) -> None:
    if state is not None:
        store.put(f"{prefix}/{ESTIMATOR}", layout.dumps(state), "application/json")


def load_estimator(store: ObjectStore, base: Baseline) -> dict[str, Any] | None:
    """The baseline's estimator, None for a baseline built before estimators or without one."""
    key = f"{base.prefix}/{ESTIMATOR}"
    if not store.exists(key):
        return None
    state: dict[str, Any] = json.loads(store.get(key))
    return state


def estimation_spec(problem_type: str, settings: Mapping[str, Any], state: dict[str, Any] | None,
                    threshold: float | None, fallback_score: str | None = None,
                    fallback_prediction: str | None = None) -> estimation_partition.Spec:
    """What a window's estimate reads: the baseline's columns and estimator (``state`` None: a binary model's raw
    ``fallback_score``, uncalibrated, and its ``fallback_prediction`` calls)."""
    if problem_type == "MulticlassClassification":
        cp: dict[str, str] = dict(settings.get("class_probabilities") or {})
        classes = list(state["classes"]) if state is not None and cp else []
        return estimation_partition.Spec(problem_type, state, prediction=settings.get("prediction"),
                                         class_columns=tuple(cp.get(c, c) for c in classes))
    if problem_type == "Regression":
        return estimation_partition.Spec(problem_type, state, prediction=settings.get("prediction"),
                                         features=tuple(settings.get("features") or ()))
    thr = threshold if threshold is not None else float(settings.get("threshold", 0.5))
    return estimation_partition.Spec(problem_type, state, score=settings.get("probability") or fallback_score,
                                     prediction=settings.get("prediction") if state is not None
                                     else fallback_prediction, threshold=thr)


def window_estimate(df: pd.DataFrame, *, problem_type: str, settings: Mapping[str, Any],
                    state: dict[str, Any] | None, threshold: float | None,
                    fallback_score: str | None = None, fallback_prediction: str | None = None) -> dict[str, Any]:
    """The estimate of a captured window (``df`` from ``labelled_window``): metrics with bands and calibration,
    the decisions used, and for labelled rows the realised values and whether each fell in its band.
    ``state`` None: the baseline has no estimator (raw scores of ``fallback_score``, uncalibrated). Every
    window goes through the partition sums (``estimation_partition``) as one exact partition, so the compute
    cluster's merged partitions finish the same way."""
    spec = estimation_spec(problem_type, settings, state, threshold, fallback_score, fallback_prediction)
    try:
        return estimation_partition.estimate_frame(df, spec)
    except estimation_partition.Unestimable as exc:
        raise Invalid(str(exc), fix=exc.fix) from None


def cluster_estimate(store: ObjectStore, window: ClusterWindow, spec: estimation_partition.Spec
                     ) -> dict[str, Any] | None:
    """The window's estimate from the compute cluster: every captured row's sums (labelled or not; the labels
    joined on the workers) computed and merged there, finished here — or None when the window cannot be estimated
    (then it is judged on its labels alone). A multiclass window is read twice: the second pass sums the macro
    AUC's sampling variance with the slopes of the merged sums."""
    fn = functools.partial(estimation_partition.summarise_table, spec=spec)
    try:
        sums = summarise_window(store, window, spec.columns(), fn, every=True)
        slopes = estimation_partition.second_pass(sums)
        spread = None if slopes is None else \
            summarise_window(store, window, spec.columns(),
                             functools.partial(estimation_partition.spread_table, spec=spec, slopes=slopes),
                             every=True)
        out = estimation_partition.finish(sums, spec, spread)
    except ValueError:   # Unestimable on a worker or here: missing columns, values that are not probabilities
        return None
    out["compute"] = {"engine": "dask", **out.get("compute", {})}
    return out


def constraint_names(problem_type: str | None) -> Mapping[str, str]:
    """Each estimated metric's name in SageMaker's statistics and constraints (the estimator says ``roc_auc``,
    SageMaker ``auc``): the constraint it is judged against and the realised metric it estimates."""
    if problem_type == "Regression":
        return DLE_CONSTRAINTS
    return {"accuracy": "accuracy"} if problem_type == "MulticlassClassification" else cbpe.CONSTRAINT_NAMES


def estimated_violations(constraints: Mapping[str, Any], problem_type: str, estimated: Mapping[str, Any]
                         ) -> list[dict[str, Any]]:
    """An estimated metric beyond its constraint (the baseline's constraints.json), as a violation of its own
    check (``EstimatedLessThanThreshold`` …), so it alerts apart from the realised one."""
    ckey = next((k for k in constraints if k.endswith("_constraints")), None)
    if ckey is None:
        return []
    out = []
    for metric, cname in constraint_names(problem_type).items():
        c, e = constraints[ckey].get(cname), estimated.get(metric)
        if c is None or e is None or not math.isfinite(e["estimate"]):
            continue
        v, thr, op = e["estimate"], float(c["threshold"]), c["comparison_operator"]
        if quality.breaches(v, thr, op):
            out.append({"metric_name": cname, "constraint_check_type": ESTIMATED_CHECKS[op],
                        "description": f"Estimated {cname} {v:.4g} (band {e['lower']:.4g}–{e['upper']:.4g}, "
                                       f"before labels) was {op} {thr:.4g}"})
    return out
