"""Model quality: baselines from a labelled validation set (with the label-free estimator fitted on it), analyses
of a labelled file or window, and the label-free performance estimate (CBPE for classifiers, DLE for regressors).

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlgov import inputs
from mlgov.auth import Principal
from mlgov.db import new_id
from mlgov.errors import Invalid, NotFound
from mlgov.storage import ObjectStore
from monitor import capture, compute, documents, layout
from monitor.engine import quality, quality_partition
from monitor.orm import Analysis, Baseline, Schedule
from monitor.service.analyses import Finished, analysis_prefix, finish_analysis
from monitor.service.baselines import FinishedBaseline, baseline_prefix, finish_baseline, get_baseline
from monitor.service.datasets import dataset_table
from monitor.service.endpoints import get_endpoint, reread_if_compacted
from monitor.service.estimation import (
    cluster_estimate,
    estimated_violations,
    estimation_spec,
    fit_estimator,
    load_estimator,
    store_estimator,
    window_estimate,
)
from monitor.service.ground_truth import cluster_window, labelled_window, summarise_window


def _quality_arrays(problem: str, labels: list[Any], preds: list[Any] | None, probs: list[Any] | None
                    ) -> tuple[Any, Any, Any]:
    try:
        if problem != "BinaryClassification" and preds is None:
            raise Invalid(f"{problem} quality needs a prediction column", fix="configure prediction=")
        if problem == "Regression":
            return np.asarray(labels, dtype=float), np.asarray(preds, dtype=float), None
        if problem == "BinaryClassification":
            y = np.asarray([int(float(v)) for v in labels])
            if not set(np.unique(y)) <= {0, 1}:
                raise Invalid("binary labels must be 0 or 1", fix="map the positive class to 1")
            pr = None if probs is None else np.asarray(probs, dtype=float)
            lb = None if preds is None else np.asarray([int(float(v)) for v in preds])
            if lb is not None and pr is not None and not set(np.unique(lb)) <= {0, 1}:
                lb = None   # not the model's 0/1 calls: the threshold on the probabilities decides
            if pr is None and lb is None:
                raise Invalid("binary quality needs a prediction or a probability column", fix="configure one")
            return y, lb, pr
        return np.asarray([str(v) for v in labels]), np.asarray([str(v) for v in preds or []]), None
    except (TypeError, ValueError) as exc:
        raise Invalid(f"labels or predictions are not of the problem type {problem}: {exc}",
                      fix="check the label, prediction and probability columns") from None


def _summariser(problem: str, settings: dict[str, Any]) -> compute.Summariser:
    """What a worker computes per row group: the quality summary of the baseline's label, prediction and
    probability columns (the label column is ``__label`` in a captured window joined to its ground truth)."""
    return functools.partial(quality_partition.summarise_table, problem=problem, label=settings["label"],
                             prediction=settings.get("prediction"), probability=settings.get("probability"),
                             threshold=float(settings.get("threshold", 0.5)))


def _cluster_statistics(store: ObjectStore, table: Any, key: str, problem: str,
                        settings: dict[str, Any]) -> dict[str, Any] | None:
    """An uploaded labelled table's statistics.json computed on the compute cluster (stored first at ``key``), or
    None when this process computes it."""
    cluster = compute.cluster_for(table.num_rows)
    if cluster is None:
        return None
    wanted = frozenset(c for c in (settings["label"], settings.get("prediction"), settings.get("probability")) if c)
    try:
        summary = cluster.summarise(store, compute.stored_parts(store, table, key), compute.Read(wanted),
                                    _summariser(problem, settings))
    except ValueError as exc:   # raised on a worker: the values do not fit the problem type
        raise Invalid(f"labels or predictions are not of the problem type {problem}: {exc}",
                      fix="check the label, prediction and probability columns") from None
    return quality_partition.statistics(summary)


def create_quality_baseline(session: Session, store: ObjectStore, *, data: bytes, fmt: str | None, header: bool,
                            problem_type: str, label: str, prediction: str | None, probability: str | None,
                            threshold: float, name: str | None, actor: Principal,
                            class_probabilities: dict[str, str] | None = None,
                            features: list[str] | None = None) -> FinishedBaseline:
    """The baseline's statistics and constraints (SageMaker's files) and its label-free estimator
    (``estimation.json``): calibration of the scores (classifiers; ``class_probabilities`` names each class's
    probability column for multiclass) or the loss models over ``features`` (regression)."""
    if problem_type not in quality.PROBLEMS:
        raise Invalid(f"problem_type {problem_type!r} is not one of {', '.join(quality.PROBLEMS)}",
                      fix="use Regression, BinaryClassification or MulticlassClassification")
    table = dataset_table(data, fmt, header)
    cols = table.column_names
    for needed in [label, prediction, probability, *(class_probabilities or {}).values(), *(features or [])]:
        if needed is not None and needed not in cols:
            raise Invalid(f"column {needed!r} is not in the dataset (columns: {cols[:20]})",
                          fix="name the label/prediction/probability columns with label=, prediction=, probability=")
    settings: dict[str, Any] = {"label": label, "prediction": prediction, "probability": probability,
                                "threshold": threshold}
    bid = new_id()
    prefix = baseline_prefix(bid)
    stats = _cluster_statistics(store, table, f"{prefix}/dataset.parquet", problem_type, settings)
    if stats is None:
        y, pred, prob = _quality_arrays(problem_type, table.column(label).to_pylist(),
                                        table.column(prediction).to_pylist() if prediction else None,
                                        table.column(probability).to_pylist() if probability else None)
        stats = quality.statistics(problem_type, y, prediction=pred, probability=prob, threshold=threshold)
    constraints = quality.suggest_constraints(stats)
    if class_probabilities:
        settings["class_probabilities"] = dict(class_probabilities)
    if features:
        settings["features"] = list(features)
    estimator = fit_estimator(problem_type, {c: table.column(c).to_pylist() for c in
                                             {*(class_probabilities or {}).values(), *(features or []),
                                              *(c for c in (prediction, probability) if c)}},
                              settings, table.column(label).to_pylist())
    store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
    store.put(f"{prefix}/constraints.json", layout.dumps(constraints), "application/json")
    store_estimator(store, prefix, estimator)
    return finish_baseline(store, baseline_id=bid, kind="ModelQuality", source="computed",
                           problem_type=problem_type, settings=settings,
                           dataset_sha256=hashlib.sha256(data).hexdigest(), rows=table.num_rows,
                           features=table.num_columns, name=name, actor=actor,
                           summary={"kind": "ModelQuality", "problem_type": problem_type, "rows": table.num_rows,
                                    "estimator": _estimator_summary(estimator)})


def _estimator_summary(state: dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    if "dle" in state:
        return "direct loss estimation"
    cals = [state["calibration"]] if "calibration" in state else state["calibrations"]
    return "isotonic calibration" if any(c["method"] == "isotonic" for c in cals) else "scores already calibrated"


def import_quality_baseline(session: Session, store: ObjectStore, *, constraints: bytes, statistics: bytes,
                            problem_type: str, prediction: str | None, probability: str | None, threshold: float,
                            name: str | None, actor: Principal) -> FinishedBaseline:
    """A model-quality baseline from SageMaker's constraints.json and statistics.json (ModelQualityMonitor's
    suggest_baseline output); labels come from the endpoint's ground truth, predictions from its captured
    ``prediction``/``probability`` columns."""
    if problem_type not in quality.PROBLEMS:
        raise Invalid(f"problem_type {problem_type!r} is not one of {', '.join(quality.PROBLEMS)}",
                      fix="use Regression, BinaryClassification or MulticlassClassification")
    constr = documents.validate_constraints(inputs.loads(constraints, "constraints.json"), "ModelQuality")
    key = f"{quality.PROBLEMS[problem_type]}_constraints"
    if key not in constr:
        raise Invalid(f"constraints.json holds no {key!r} block for a {problem_type} model",
                      fix="use the constraints a model-quality baseline of this problem type wrote")
    stats = inputs.loads(statistics, "statistics.json")
    metrics = f"{quality.PROBLEMS[problem_type]}_metrics"
    if not isinstance(stats, dict) or not isinstance(stats.get(metrics), dict):
        raise Invalid(f"statistics.json holds no {metrics!r} object", fix="use the statistics.json written beside "
                      "the constraints by a model-quality baseline of this problem type")
    bid = new_id()
    prefix = baseline_prefix(bid)
    store.put(f"{prefix}/statistics.json", statistics, "application/json")
    store.put(f"{prefix}/constraints.json", constraints, "application/json")
    return finish_baseline(store, baseline_id=bid, kind="ModelQuality", source="imported",
                           problem_type=problem_type,
                           settings={"label": None, "prediction": prediction, "probability": probability,
                                     "threshold": threshold},
                           rows=int((stats.get("dataset") or {}).get("item_count") or 0), features=0, name=name,
                           actor=actor, action="baseline.imported",
                           summary={"kind": "ModelQuality", "problem_type": problem_type})


def run_quality_analysis(session: Session, store: ObjectStore, *, baseline_id: str, actor: Principal,
                         labels: list[Any] | None, preds: list[Any] | None, probs: list[Any] | None,
                         source: str, endpoint: str | None = None, start: dt.datetime | None = None,
                         end: dt.datetime | None = None, failure: str | None = None,
                         estimate: dict[str, Any] | None = None, stats: dict[str, Any] | None = None) -> Finished:
    """``estimate``: the window's label-free estimate (stored beside the statistics; its estimated breaches join
    the violations while some captured rows still wait for labels). ``stats``: the statistics a compute cluster
    merged from the partitions, instead of ``labels``."""
    base = get_baseline(session, baseline_id)
    if base.kind != "ModelQuality" or base.problem_type is None:
        raise Invalid(f"baseline {baseline_id} is a {base.kind} baseline", fix="use a ModelQuality baseline")
    aid = new_id()
    t0 = time.perf_counter()
    finish = functools.partial(finish_analysis, store, analysis_id=aid, baseline=base, kind="ModelQuality",
                               source=source, actor=actor, started=t0, endpoint=endpoint, start=start, end=end)
    raw_constraints = store.get(f"{base.prefix}/constraints.json")
    constraints = json.loads(raw_constraints)

    def judged_by() -> None:
        """The constraints as this run read them, kept with it: its report and the trend charts show the
        thresholds it was judged against, not those of a later edit of the baseline's constraints."""
        store.put(f"{analysis_prefix(aid)}/{RUN_CONSTRAINTS}", raw_constraints, "application/json")

    early: list[dict[str, Any]] = []
    if estimate is not None and failure is None:
        store.put(f"{analysis_prefix(aid)}/estimate.json", layout.dumps(estimate), "application/json")
        if estimate["labelled_rows"] < estimate["rows"]:
            early = estimated_violations(constraints, base.problem_type, estimate["estimated"])
        if not labels and stats is None:
            judged_by()
            return finish(violations=early, rows=estimate["rows"])
    if failure is not None or (not labels and stats is None):
        return finish(violations=[], failure=failure or "no labelled predictions")
    if stats is None:
        settings = base.settings or {}
        y, pred, prob = _quality_arrays(base.problem_type, labels or [], preds, probs)
        stats = quality.statistics(base.problem_type, y, prediction=pred, probability=prob,
                                   threshold=float(settings.get("threshold", 0.5)))
    found = quality.violations(constraints, stats)
    store.put(f"{analysis_prefix(aid)}/statistics.json", layout.dumps(stats), "application/json")
    judged_by()
    return finish(violations=found + early, rows=int(stats["dataset"]["item_count"]))


def quality_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                   end: dt.datetime, actor: Principal) -> Finished:
    """Captured predictions in the window joined to their labels (inferenceId, else eventId)."""
    base = get_baseline(session, baseline_id)
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    ep = get_endpoint(session, endpoint)
    settings = base.settings or {}
    pred_col, prob_col = settings.get("prediction"), settings.get("probability")
    window = f"between {start.isoformat()} and {end.isoformat()}"
    if base.kind == "ModelQuality" and base.problem_type is not None:
        on_cluster = reread_if_compacted(session, lambda: _window_on_cluster(session, store, base, ep, start, end))
        if on_cluster is not None:
            return run_quality_analysis(session, store, baseline_id=baseline_id, actor=actor, source="endpoint",
                                        endpoint=endpoint, start=start, end=end, labels=None, preds=None,
                                        probs=None, **on_cluster)
    df = labelled_window(session, store, ep, start, end)
    if df.empty:
        return run_quality_analysis(session, store, baseline_id=baseline_id, actor=actor, source="endpoint",
                                    endpoint=endpoint, start=start, end=end, labels=None, preds=None, probs=None,
                                    failure=f"no data captured {window} for endpoint {endpoint!r}")
    state = load_estimator(store, base)
    estimate = None
    if state is not None and base.problem_type is not None:
        try:
            estimate = window_estimate(df, problem_type=base.problem_type, settings=settings, state=state,
                                       threshold=None)
        except Invalid:
            estimate = None   # the window cannot be estimated (columns missing): judged on its labels alone
    run = functools.partial(run_quality_analysis, session, store, baseline_id=baseline_id, actor=actor,
                            source="endpoint", endpoint=endpoint, start=start, end=end, estimate=estimate)
    joined = df[df["__label"].notna()]
    if joined.empty:
        return run(labels=None, preds=None, probs=None,
                   failure=None if estimate else f"no ground truth yet for the {len(df)} records captured {window}")

    def col(name: str | None) -> list[Any] | None:
        return joined[name].tolist() if name and name in joined else None

    return run(labels=joined["__label"].tolist(), preds=col(pred_col), probs=col(prob_col))


def _window_on_cluster(session: Session, store: ObjectStore, base: Baseline, ep: Any, start: dt.datetime,
                       end: dt.datetime) -> dict[str, Any] | None:
    """The captured window's statistics and label-free estimate from the compute cluster (the workers join the
    labels; the estimate's sums cover every captured row, labelled or not), as ``run_quality_analysis`` arguments,
    or None when this process computes them."""
    assert base.problem_type is not None
    settings = {**(base.settings or {}), "label": compute.LABEL}
    wanted = frozenset(c for c in (settings.get("prediction"), settings.get("probability")) if c)
    window = cluster_window(session, ep, start, end)   # batches and labels looked up once for both reads
    if window is None:
        return None
    try:
        summary = summarise_window(store, window, wanted, _summariser(base.problem_type, settings))
    except ValueError as exc:
        return {"failure": f"labels or predictions are not of the problem type {base.problem_type}: {exc}"}
    state = load_estimator(store, base)
    estimate = None if state is None else \
        cluster_estimate(store, window, estimation_spec(base.problem_type, base.settings or {}, state, None))
    if summary.whole.n == 0:
        return {"estimate": estimate} if estimate is not None else \
            {"failure": f"no ground truth yet for the records captured between {start.isoformat()} and "
                        f"{end.isoformat()}"}
    return {"stats": quality_partition.statistics(summary), "estimate": estimate}


def quality_file(session: Session, store: ObjectStore, *, baseline_id: str, data: bytes, fmt: str | None,
                 header: bool, actor: Principal) -> Finished:
    """A labelled file (the baseline's label/prediction/probability columns) judged against the baseline."""
    base = get_baseline(session, baseline_id)
    settings = base.settings or {}
    table = dataset_table(data, fmt, header)
    cols = {k: settings.get(k) for k in ("label", "prediction", "probability")}
    missing = [c for c in cols.values() if c and c not in table.column_names]
    if missing:
        raise Invalid(f"the file lacks the baseline's columns {missing}", fix=f"include columns {list(cols.values())}")

    stats = None if base.kind != "ModelQuality" or base.problem_type is None or not cols["label"] else \
        _cluster_statistics(store, table, f"inputs/{new_id()}/dataset.parquet", base.problem_type, settings)

    def col(name: str | None) -> list[Any] | None:
        return table.column(name).to_pylist() if name and stats is None else None

    return run_quality_analysis(session, store, baseline_id=baseline_id, actor=actor, stats=stats,
                                labels=col(cols["label"]), preds=col(cols["prediction"]),
                                probs=col(cols["probability"]), source="file")


def _endpoint_baseline(session: Session, endpoint: str) -> Baseline | None:
    """The ModelQuality baseline the endpoint's newest ModelQuality schedule judges it against, if any."""
    bid = session.scalars(select(Schedule.baseline_id).where(Schedule.endpoint == endpoint,
                                                              Schedule.type == "ModelQuality")
                          .order_by(Schedule.created_at.desc()).limit(1)).first()
    return None if bid is None else get_baseline(session, bid)


def performance_estimate(session: Session, store: ObjectStore, endpoint: str, start: dt.datetime,
                         end: dt.datetime, threshold: float | None, baseline_id: str | None = None) -> dict[str, Any]:
    """The label-free estimate of the captured window (CBPE for classifiers, DLE for regressors) with the
    baseline's estimator — ``baseline_id``, else the endpoint's ModelQuality schedule's baseline, else raw scores
    uncalibrated; realised values and within_band beside each metric for labelled records."""
    ep = get_endpoint(session, endpoint)
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    base = get_baseline(session, baseline_id) if baseline_id else _endpoint_baseline(session, endpoint)
    if base is not None and (base.kind != "ModelQuality" or base.problem_type is None):
        raise Invalid(f"baseline {base.id} is a {base.kind} baseline", fix="give a ModelQuality baseline_id")
    schema = capture.CaptureSchema.model_validate(ep.schema)
    score_col = (schema.probability or schema.prediction)
    if base is None and score_col is None:
        raise Invalid(f"endpoint {endpoint!r} captures no probability or prediction", fix="add one to its schema")
    df = labelled_window(session, store, ep, start, end)
    if df.empty:
        raise Invalid(f"no captured values between {start.isoformat()} and {end.isoformat()}",
                      fix="pick a window with traffic")
    state = load_estimator(store, base) if base is not None else None
    problem = base.problem_type if base is not None and base.problem_type else "BinaryClassification"
    settings = (base.settings or {}) if base is not None and state is not None else {}
    if problem == "BinaryClassification":
        col = settings.get("probability") or (score_col.name if score_col else None)
        if col is not None and col in df:
            df = df[df[col].notna()]
        if df.empty:
            raise Invalid(f"no captured {col} values between {start.isoformat()} and {end.isoformat()}",
                          fix="pick a window with traffic")
    out = window_estimate(df, problem_type=problem, settings=settings, state=state, threshold=threshold,
                          fallback_score=score_col.name if score_col else None,
                          fallback_prediction=schema.prediction.name if schema.probability and schema.prediction
                          else None)
    return {"endpoint": endpoint, "window": {"start": start.isoformat(), "end": end.isoformat()},
            "baseline_id": base.id if base is not None and state is not None else None,
            "threshold": out.get("threshold"), **out}


def quality_report(session: Session, store: ObjectStore, row: Analysis) -> dict[str, Any]:
    """The window's metrics beside the baseline's and its constraints (binary statistics carry the ROC and PR
    curves)."""
    base = get_baseline(session, row.baseline_id)
    has = functools.partial(store.exists)
    return {"problem_type": base.problem_type, "threshold": (base.settings or {}).get("threshold"),
            "estimate": json.loads(store.get(f"{row.prefix}/estimate.json")) if has(f"{row.prefix}/estimate.json")
            else None,
            "statistics": json.loads(store.get(f"{row.prefix}/statistics.json"))
            if has(f"{row.prefix}/statistics.json") else None,
            "baseline_statistics": json.loads(store.get(f"{base.prefix}/statistics.json")),
            **run_constraints(store, row.prefix, base.prefix)}


RUN_CONSTRAINTS = "constraints.json"
"""A model-quality run's copy of the baseline's constraints as it read them, in the run's folder."""


def run_constraints(store: ObjectStore, run_prefix: str, baseline_prefix: str) -> dict[str, Any]:
    """The constraints a run was judged against (``constraints``), and whether they are its own copy
    (``constraints_of_run``): a run from before runs kept one shows the baseline's current constraints."""
    try:
        return {"constraints": json.loads(store.get(f"{run_prefix}/{RUN_CONSTRAINTS}")), "constraints_of_run": True}
    except NotFound:   # one read where the copy exists, as it does for every run since
        return {"constraints": json.loads(store.get(f"{baseline_prefix}/constraints.json")),
                "constraints_of_run": False}
