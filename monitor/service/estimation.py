"""Label-free performance estimation around the engine (``monitor.engine.cbpe`` and ``monitor.engine.dle``): the
estimator fitted when a model-quality baseline is built (calibration maps, or regression loss models, as JSON data
in the baseline's ``estimation.json``), and its application to a captured window — decisions from the captured
prediction where present, else the baseline's threshold; realised values and whether they fell in the band for
the labelled rows; estimated breaches of the baseline's constraints.

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor import layout
from monitor.engine import cbpe, dle, estimation_partition
from monitor.orm import Baseline, Endpoint
from monitor.service.ground_truth import labelled_summary

ESTIMATOR = "estimation.json"
ESTIMATED_CHECKS = {"LessThanThreshold": "EstimatedLessThanThreshold",
                    "GreaterThanThreshold": "EstimatedGreaterThanThreshold"}
DLE_CONSTRAINTS = {m: m for m in dle.METRICS}


_floats = estimation_partition.floats


def fit_estimator(problem_type: str, columns: Mapping[str, Sequence[Any]], settings: Mapping[str, Any],
                  labels: Sequence[Any]) -> dict[str, Any] | None:
    """The estimator of a model-quality baseline from its labelled reference (``columns``: name → values), or
    None when the reference cannot support one (a binary baseline without scores)."""
    if problem_type == "BinaryClassification":
        if not settings.get("probability"):
            return None
        y = _floats(labels).astype(int)
        score = np.clip(_floats(columns[settings["probability"]]), 0.0, 1.0)
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
        probs = np.column_stack([_floats(columns[c]) for c in cp.values()])
        try:
            cals = cbpe.fit_multiclass_calibration(np.asarray([str(v) for v in labels]), probs, classes)
        except ValueError as exc:
            raise Invalid(f"cannot fit the performance estimator: {exc}",
                          fix="every class needs labelled rows in the reference") from None
        return {"problem_type": problem_type, "classes": classes, "calibrations": [c.as_dict() for c in cals]}
    features = list(settings.get("features") or [])
    if not features or not settings.get("prediction"):
        return None
    yhat = _floats(columns[settings["prediction"]])
    x = np.column_stack([_floats(columns[f]) for f in features] + [yhat])
    y = _floats(labels)
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
    """What a binary or regression window's estimate reads: the baseline's columns and estimator (``state`` None:
    a binary model's raw ``fallback_score``, uncalibrated, and its ``fallback_prediction`` calls)."""
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
    ``state`` None: the baseline has no estimator (raw scores of ``fallback_score``, uncalibrated). Binary and
    regression windows go through the partition sums (``estimation_partition``) as one exact partition, so the
    compute cluster's merged partitions finish the same way."""
    if problem_type != "MulticlassClassification":
        spec = estimation_spec(problem_type, settings, state, threshold, fallback_score, fallback_prediction)
        try:
            return estimation_partition.finish(estimation_partition.summarise_frame(df, spec), spec)
        except estimation_partition.Unestimable as exc:
            raise Invalid(str(exc), fix=exc.fix) from None
    labelled = df["__label"].notna().to_numpy() if "__label" in df else np.zeros(len(df), bool)
    out: dict[str, Any] = {"problem_type": problem_type, "rows": len(df)}
    cp: dict[str, str] = dict(settings.get("class_probabilities") or {})
    if state is None or not cp:
        raise Invalid("this multiclass baseline names no class probability columns",
                      fix="rebuild it with class_probabilities=class:column,… for every class")
    classes = list(state["classes"])
    missing = [c for c in cp.values() if c not in df]
    if missing:
        raise Invalid(f"the window lacks the class probability columns {missing}",
                      fix="capture them under the baseline's names")
    probs = np.nan_to_num(np.column_stack([_floats(df[cp[c]].tolist()) for c in classes]))
    index = {c: i for i, c in enumerate(classes)}
    decision = np.argmax(probs, axis=1)
    pred_col = settings.get("prediction")
    captured = 0
    if pred_col and pred_col in df:
        named = np.asarray([index.get(str(v), -1) for v in df[pred_col].tolist()])
        captured = int((named >= 0).sum())
        decision = np.where(named >= 0, named, decision)
    cals = [cbpe.Calibration.from_dict(c) for c in state["calibrations"]]
    est = cbpe.estimate_multiclass(probs, calibrations=cals, decision=decision)
    realised = None
    if labelled.any():
        y = np.asarray([index.get(str(v), -1) for v in df.loc[labelled, "__label"].tolist()])
        realised = cbpe.realised_multiclass(y, probs[labelled], decision[labelled])
    out["decisions"] = {"captured_prediction": captured, "highest_probability": len(df) - captured}
    out["labelled_rows"] = int(labelled.sum())
    out["estimated"] = cbpe.compare(est, dict(realised)) if realised is not None else est
    if realised is not None:
        out["comparison"] = out["estimated"]
    return out


def cluster_estimate(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime, end: dt.datetime,
                     spec: estimation_partition.Spec) -> dict[str, Any] | None:
    """The window's binary or regression estimate from the compute cluster: every captured row's sums (labelled
    or not; the labels joined on the workers) computed and merged there, finished here — or None when this
    process reads the window, or the window cannot be estimated (then it is judged on its labels alone)."""
    fn = functools.partial(estimation_partition.summarise_table, spec=spec)
    try:
        sums = labelled_summary(session, store, ep, start, end, spec.columns(), fn, every=True)
        if sums is None:
            return None
        out = estimation_partition.finish(sums, spec)
    except ValueError:   # Unestimable on a worker or here: missing columns, values that are not probabilities
        return None
    out["compute"] = {"engine": "dask", **out.get("compute", {})}
    return out


def estimated_violations(constraints: Mapping[str, Any], problem_type: str, estimated: Mapping[str, Any]
                         ) -> list[dict[str, Any]]:
    """An estimated metric beyond its constraint (the baseline's constraints.json), as a violation of its own
    check (``EstimatedLessThanThreshold`` …), so it alerts apart from the realised one."""
    ckey = next((k for k in constraints if k.endswith("_constraints")), None)
    if ckey is None:
        return []
    names = DLE_CONSTRAINTS if problem_type == "Regression" else \
        {"accuracy": "accuracy"} if problem_type == "MulticlassClassification" else cbpe.CONSTRAINT_NAMES
    out = []
    for metric, cname in names.items():
        c, e = constraints[ckey].get(cname), estimated.get(metric)
        if c is None or e is None or not math.isfinite(e["estimate"]):
            continue
        v, thr, op = e["estimate"], float(c["threshold"]), c["comparison_operator"]
        if (op == "GreaterThanThreshold" and v > thr) or (op == "LessThanThreshold" and v < thr):
            out.append({"metric_name": cname, "constraint_check_type": ESTIMATED_CHECKS[op],
                        "description": f"Estimated {cname} {v:.4g} (band {e['lower']:.4g}–{e['upper']:.4g}, "
                                       f"before labels) was {op} {thr:.4g}"})
    return out
