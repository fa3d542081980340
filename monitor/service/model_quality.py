"""Model quality: baselines from a labelled validation set, analyses of a labelled file or window, and the
label-free performance estimate (CBPE).

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
from sqlalchemy.orm import Session

from mlgov import inputs
from mlgov.auth import Principal
from mlgov.db import new_id
from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor import capture, documents, layout
from monitor.engine import cbpe, quality
from monitor.orm import Analysis, Baseline
from monitor.service.analyses import analysis_prefix, record_analysis
from monitor.service.baselines import baseline_prefix, get_baseline, record_baseline
from monitor.service.datasets import dataset_table
from monitor.service.endpoints import get_endpoint
from monitor.service.ground_truth import labelled_window


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
            lb = None if preds is None or (pr is not None) else np.asarray([int(float(v)) for v in preds])
            if pr is None and lb is None:
                raise Invalid("binary quality needs a prediction or a probability column", fix="configure one")
            return y, lb, pr
        return np.asarray([str(v) for v in labels]), np.asarray([str(v) for v in preds or []]), None
    except (TypeError, ValueError) as exc:
        raise Invalid(f"labels or predictions are not of the problem type {problem}: {exc}",
                      fix="check the label, prediction and probability columns") from None


def create_quality_baseline(session: Session, store: ObjectStore, *, data: bytes, fmt: str | None, header: bool,
                            problem_type: str, label: str, prediction: str | None, probability: str | None,
                            threshold: float, name: str | None, actor: Principal) -> Baseline:
    if problem_type not in quality.PROBLEMS:
        raise Invalid(f"problem_type {problem_type!r} is not one of {', '.join(quality.PROBLEMS)}",
                      fix="use Regression, BinaryClassification or MulticlassClassification")
    table = dataset_table(data, fmt, header)
    cols = table.column_names
    for needed in [label, prediction, probability]:
        if needed is not None and needed not in cols:
            raise Invalid(f"column {needed!r} is not in the dataset (columns: {cols[:20]})",
                          fix="name the label/prediction/probability columns with label=, prediction=, probability=")
    y, pred, prob = _quality_arrays(problem_type, table.column(label).to_pylist(),
                                    table.column(prediction).to_pylist() if prediction else None,
                                    table.column(probability).to_pylist() if probability else None)
    stats = quality.statistics(problem_type, y, prediction=pred, probability=prob, threshold=threshold)
    constraints = quality.suggest_constraints(stats)
    bid = new_id()
    prefix = baseline_prefix(bid)
    store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
    store.put(f"{prefix}/constraints.json", layout.dumps(constraints), "application/json")
    return record_baseline(session, store, baseline_id=bid, kind="ModelQuality", source="computed",
                           problem_type=problem_type,
                           settings={"label": label, "prediction": prediction, "probability": probability,
                                     "threshold": threshold},
                           dataset_sha256=hashlib.sha256(data).hexdigest(), rows=table.num_rows,
                           features=table.num_columns, name=name, actor=actor,
                           summary={"kind": "ModelQuality", "problem_type": problem_type, "rows": table.num_rows})


def import_quality_baseline(session: Session, store: ObjectStore, *, constraints: bytes, statistics: bytes,
                            problem_type: str, prediction: str | None, probability: str | None, threshold: float,
                            name: str | None, actor: Principal) -> Baseline:
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
    return record_baseline(session, store, baseline_id=bid, kind="ModelQuality", source="imported",
                           problem_type=problem_type,
                           settings={"label": None, "prediction": prediction, "probability": probability,
                                     "threshold": threshold},
                           rows=int((stats.get("dataset") or {}).get("item_count") or 0), features=0, name=name,
                           actor=actor, action="baseline.imported",
                           summary={"kind": "ModelQuality", "problem_type": problem_type})


def run_quality_analysis(session: Session, store: ObjectStore, *, baseline_id: str, actor: Principal,
                         labels: list[Any] | None, preds: list[Any] | None, probs: list[Any] | None,
                         source: str, endpoint: str | None = None, start: dt.datetime | None = None,
                         end: dt.datetime | None = None, failure: str | None = None) -> Analysis:
    base = get_baseline(session, baseline_id)
    if base.kind != "ModelQuality" or base.problem_type is None:
        raise Invalid(f"baseline {baseline_id} is a {base.kind} baseline", fix="use a ModelQuality baseline")
    aid = new_id()
    t0 = time.perf_counter()
    record = functools.partial(record_analysis, session, store, analysis_id=aid, baseline=base, kind="ModelQuality",
                               source=source, actor=actor, started=t0, endpoint=endpoint, start=start, end=end)
    if failure is not None or not labels:
        return record(violations=[], failure=failure or "no labelled predictions")
    settings = base.settings or {}
    y, pred, prob = _quality_arrays(base.problem_type, labels, preds, probs)
    stats = quality.statistics(base.problem_type, y, prediction=pred, probability=prob,
                               threshold=float(settings.get("threshold", 0.5)))
    found = quality.violations(json.loads(store.get(f"{base.prefix}/constraints.json")), stats)
    store.put(f"{analysis_prefix(aid)}/statistics.json", layout.dumps(stats), "application/json")
    return record(violations=found, rows=len(y))


def quality_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                   end: dt.datetime, actor: Principal) -> Analysis:
    """Captured predictions in the window joined to their labels (inferenceId, else eventId)."""
    base = get_baseline(session, baseline_id)
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    ep = get_endpoint(session, endpoint)
    settings = base.settings or {}
    pred_col, prob_col = settings.get("prediction"), settings.get("probability")
    df = labelled_window(session, store, ep, start, end)
    window = f"between {start.isoformat()} and {end.isoformat()}"
    run = functools.partial(run_quality_analysis, session, store, baseline_id=baseline_id, actor=actor,
                            source="endpoint", endpoint=endpoint, start=start, end=end)
    if df.empty:
        return run(labels=None, preds=None, probs=None, failure=f"no data captured {window} for endpoint {endpoint!r}")
    joined = df[df["__label"].notna()]
    if joined.empty:
        return run(labels=None, preds=None, probs=None,
                   failure=f"no ground truth yet for the {len(df)} records captured {window}")

    def col(name: str | None) -> list[Any] | None:
        return joined[name].tolist() if name and name in joined else None

    return run(labels=joined["__label"].tolist(), preds=col(pred_col), probs=col(prob_col))


def quality_file(session: Session, store: ObjectStore, *, baseline_id: str, data: bytes, fmt: str | None,
                 header: bool, actor: Principal) -> Analysis:
    """A labelled file (the baseline's label/prediction/probability columns) judged against the baseline."""
    base = get_baseline(session, baseline_id)
    settings = base.settings or {}
    table = dataset_table(data, fmt, header)
    cols = {k: settings.get(k) for k in ("label", "prediction", "probability")}
    missing = [c for c in cols.values() if c and c not in table.column_names]
    if missing:
        raise Invalid(f"the file lacks the baseline's columns {missing}", fix=f"include columns {list(cols.values())}")

    def col(name: str | None) -> list[Any] | None:
        return table.column(name).to_pylist() if name else None

    return run_quality_analysis(session, store, baseline_id=baseline_id, actor=actor, labels=col(cols["label"]),
                                preds=col(cols["prediction"]), probs=col(cols["probability"]), source="file")


def performance_estimate(session: Session, store: ObjectStore, endpoint: str, start: dt.datetime,
                         end: dt.datetime, threshold: float) -> dict[str, Any]:
    """CBPE on the captured window's probabilities; realised metrics beside them for labelled records."""
    ep = get_endpoint(session, endpoint)
    schema = capture.CaptureSchema.model_validate(ep.schema)
    col = (schema.probability or schema.prediction)
    if col is None:
        raise Invalid(f"endpoint {endpoint!r} captures no probability or prediction", fix="add one to its schema")
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    df = labelled_window(session, store, ep, start, end)
    df = df[df[col.name].notna()] if not df.empty and col.name in df else df.iloc[0:0]
    if df.empty:
        raise Invalid(f"no captured {col.name} values between {start.isoformat()} and {end.isoformat()}",
                      fix="pick a window with traffic")
    p = df[col.name].to_numpy(dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise Invalid(f"{col.name} values are not probabilities in [0, 1]", fix="capture calibrated probabilities")
    est = cbpe.estimate(p, threshold)
    out: dict[str, Any] = {"endpoint": endpoint, "window": {"start": start.isoformat(), "end": end.isoformat()},
                           "rows": len(df), "threshold": threshold, "estimated": est}
    labelled = df[df["__label"].notna()]
    out["labelled_rows"] = len(labelled)
    if len(labelled):
        y = labelled["__label"].astype(float).astype(int).to_numpy()
        realized = quality.binary_values(y, labelled[col.name].to_numpy(dtype=float), None, threshold, curves=False)
        out["comparison"] = cbpe.compare(est, realized)
    return out


def quality_report(session: Session, store: ObjectStore, row: Analysis) -> dict[str, Any]:
    """The window's metrics beside the baseline's and its constraints (binary statistics carry the ROC and PR
    curves)."""
    base = get_baseline(session, row.baseline_id)
    return {"problem_type": base.problem_type, "threshold": (base.settings or {}).get("threshold"),
            "statistics": json.loads(store.get(f"{row.prefix}/statistics.json")),
            "baseline_statistics": json.loads(store.get(f"{base.prefix}/statistics.json")),
            "constraints": json.loads(store.get(f"{base.prefix}/constraints.json"))}
