"""Clarify's service: bias analyses and explanations on request, and the bias-drift and attribution-drift
monitors (their baselines and their runs on captured windows).

Baselines and analyses reuse the monitoring tables (kind ModelBias / ModelExplainability), so schedules,
executions, alerts and retraining work the same way for every monitor. Everything here flushes, never commits.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from clarify import loaders
from clarify.errors import (
    ArtifactNotLoadable,
    ArtifactOutsideStore,
    ArtifactUntrusted,
    ConfigInvalid,
    DatasetUnreadable,
)
from clarify.metrics import bias
from clarify.metrics.analysis import ConfigError, analyze, facet_groups, metric_value, parse_config, strict
from clarify.metrics.drift import DEFAULT_NDCG_THRESHOLD, bias_violation, bootstrap_interval, ndcg
from clarify.metrics.shap_values import AGGREGATIONS, analysis_json, explain, predict_fn
from clarify.remote import RemoteModel
from clarify.schemas import (
    BiasAnalysisRequest,
    CapturedWindow,
    ExplainRequest,
    PostTraining,
    StoredAnalysis,
    StoredReport,
)
from mlgov import audit, events, inputs
from mlgov.auth import Principal
from mlgov.db import new_id, utcnow
from mlgov.errors import DomainError, Invalid
from mlgov.outbound import OutboundPolicy
from mlgov.storage import ObjectStore
from monitor import service as monitor
from registry import service as registry

CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)
DEFAULT_LIMITS = {"DPL": 0.1, "DPPL": 0.1, "DI": 0.2}


def dump(doc: Any) -> bytes:
    """RFC 8259 JSON: non-finite numbers never leave the server (they are null, with a note where known)."""
    return json.dumps(strict(doc), allow_nan=False).encode()


def _csv(data: bytes) -> pd.DataFrame:
    inputs.check_csv(data, "the dataset")
    try:
        df = pd.read_csv(io.BytesIO(data))
    except CSV_ERRORS as exc:
        raise DatasetUnreadable(exc) from None
    if df.empty:
        raise Invalid("the dataset has no rows", fix="upload at least one row")
    return df


# --- analyses on request ----------------------------------------------------------------------------------------

def policy_failures(analysis: dict[str, Any], limits: dict[str, float]) -> list[str]:
    """Metrics outside their limits: |value| (|1 − DI| for disparate impact) above the limit; an undefined or
    infinite metric (null with a note) fails, since it cannot be shown to be within."""
    out = []
    for section in ("pre_training_bias_metrics", "post_training_bias_metrics"):
        for facet, groups in analysis.get(section, {}).get("facets", {}).items():
            for g in groups:
                for m in g["metrics"]:
                    if m["name"] not in limits:
                        continue
                    v = metric_value(m)
                    dist = abs(1 - v) if m["name"] == "DI" else abs(v)
                    if dist != dist or dist > limits[m["name"]]:
                        shown = f"{v:.4g}" if m.get("value") is not None else f"null ({m.get('note', 'undefined')})"
                        out.append(f"{facet}={g['value_or_threshold']}: {m['name']}={shown} beyond "
                                   f"{limits[m['name']]}")
    return out


def _window_frame(session: Session, store: ObjectStore, window: CapturedWindow,
                  cfg: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A captured window with its ground truth as the label column named in the config, and where it came from
    (the evidence gate counts it when the endpoint serves the version the report is attached to)."""
    ep = monitor.get_endpoint(session, window.endpoint)
    start, end = window.start, window.end
    df = monitor.labelled_window(session, store, ep, start, end)
    if df.empty or df["__label"].isna().all():
        raise ConfigError(f"no labelled records captured between {start.isoformat()} and {end.isoformat()}")
    df = df[df["__label"].notna()].copy()
    df[cfg.get("label", "label")] = df["__label"]
    if isinstance(cfg.get("label_values_or_threshold"), list):
        cfg["label_values_or_threshold"] = [str(v) for v in cfg["label_values_or_threshold"]]
    else:
        df[cfg.get("label", "label")] = pd.to_numeric(df["__label"], errors="coerce")
    source = {"kind": "captured_window", "endpoint": ep.name, "model_version": f"{ep.model_group}/{ep.model_version}",
              "start": start.isoformat(), "end": end.isoformat()}
    return df.drop(columns=[c for c in df.columns if c.startswith("__")]), source


def _uploaded_frame(store: ObjectStore, request: BiasAnalysisRequest,
                    cfg: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The uploaded file, or the dataset at ``dataset_uri`` in mlgov's store, and its sha256 for the evidence."""
    data = request.file if request.file is not None else monitor.read_dataset_uri(store, request.dataset_uri or "")
    source = {"kind": "upload" if request.file is not None else "dataset_uri",
              **({} if request.file is not None else {"uri": request.dataset_uri}),
              "sha256": hashlib.sha256(data).hexdigest()}
    headers = cfg.get("headers")
    inputs.check_csv(data, "the dataset")
    df = pd.read_csv(io.BytesIO(data), header=None if headers else "infer")
    if headers:
        if len(headers) != df.shape[1]:
            raise ConfigError([{"field": "headers", "message": f"lists {len(headers)} names for "
                                                                 f"{df.shape[1]} columns"}])
        df.columns = headers
    return df, source


def _predict_with_model(session: Session, store: ObjectStore, request: BiasAnalysisRequest, cfg: dict[str, Any],
                        df: pd.DataFrame, group: str, version: int) -> dict[str, Any]:
    """Replace the predicted-label column by the registered artifact's own predictions on ``df`` (the submitter
    then chooses the data, not the predictions), and say so for the evidence gate."""
    model, raw = load_model(session, store, group, version, request.model_format, request.model)
    column = str(cfg.get("predicted_label") or "mlgov_predicted_label")
    excluded = {cfg.get("label"), column, cfg.get("group_variable"), *cfg.get("excluded_columns", [])}
    features = [c for c in df.columns if c not in excluded]
    try:
        scores = predict_fn(model)(df[features].to_numpy(dtype=float))
    except Exception as exc:
        raise Invalid(f"the registered model could not predict on this dataset: {type(exc).__name__}",
                      fix="send the model's feature columns (numeric) plus the label; leave predictions out") from None
    df[column] = pd.Series(scores, index=df.index).astype(float)
    cfg["predicted_label"] = column
    return {"artifact_sha256": hashlib.sha256(raw).hexdigest(), "features": features, "rows": len(df)}


def bias_analysis(session: Session, store: ObjectStore, request: BiasAnalysisRequest,
                  principal: Principal) -> StoredAnalysis:
    """SageMaker Clarify pre-/post-training bias of the request's data, stored as analysis.json; attached to the
    named version as approval evidence (with the group's policy verdict) when the request names one."""
    cfg = request.config.as_dict()
    group, version = request.model_group, request.model_version
    try:
        source: dict[str, Any]
        if request.window is not None:
            df, source = _window_frame(session, store, request.window, cfg)
        else:
            df, source = _uploaded_frame(store, request, cfg)
        if df.empty:
            raise ConfigError("the dataset has no rows")
        if request.predict_with_model and group is not None and version is not None:
            ran = _predict_with_model(session, store, request, cfg, df, group, version)
            source = {"kind": "model_run", "dataset": source, **ran}
        result = analyze(df, cfg)
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    except CSV_ERRORS as exc:
        raise DatasetUnreadable(exc) from None
    aid = new_id()
    body = dump(result)   # undefined/infinite metrics are null with a note, never NaN/Infinity
    store.put(f"clarify/{aid}/analysis.json", body, "application/json")
    if group is not None and version is not None:
        limits = {**DEFAULT_LIMITS, **registry.approval_policy(session, group).get("bias_limits", {})}
        failures = policy_failures(result, limits)
        registry.attach_bias_report(session, group, version, aid, not failures, failures, principal, source=source)
        store.put(f"clarify/{aid}/verdict.json", json.dumps({"passed": not failures, "failures": failures,
                                                              "version": f"{group}/{version}"}).encode(),
                  "application/json")
    audit.record(session, actor=principal.name, action="clarify.bias_analysis", subject_type="clarify_analysis",
                 subject_id=aid, after={"rows": int(df.shape[0]), "facets": [f["name_or_index"] for f in cfg["facet"]]})
    return StoredAnalysis(id=aid, body=body)


def explain_version(session: Session, store: ObjectStore, policy: OutboundPolicy, request: ExplainRequest,
                    principal: Principal) -> StoredAnalysis:
    """SHAP attributions of a registered version on the request's rows: through the registered artifact, or
    through a predict URL (permutation SHAP; recorded as not being the registered artifact)."""
    group, version = request.model_group, request.model_version
    _, registered = registry.get_version(session, group, version)
    artifact = request.model
    predict_url = request.predict_url
    if predict_url is not None and not predict_url.startswith(("http://", "https://")):
        raise Invalid(f"predict_url {predict_url!r} is not http(s)", fix="give the model server's predict URL")
    remote = RemoteModel(predict_url, policy) if artifact is None and predict_url else None
    agg = request.agg_method
    if agg not in AGGREGATIONS:
        raise Invalid(f"agg_method {agg!r} is not one of {', '.join(AGGREGATIONS)}", fix="use mean_abs")
    model: Any
    source: dict[str, str]
    if remote is not None:
        model, source = remote, remote.source   # model-agnostic: permutation SHAP through the endpoint
    else:
        source = {"kind": "artifact", "artifact_sha256": registered.artifact_sha256}
        model, _ = load_model(session, store, group, version, request.model_format, artifact)
    try:
        df = pd.read_csv(io.BytesIO(request.file))
    except CSV_ERRORS as exc:
        raise DatasetUnreadable(exc) from None
    label = request.label
    if label and label in df.columns:
        df = df.drop(columns=[label])
    if df.empty or any(df[c].dtype.kind not in "fiub" for c in df.columns):
        raise Invalid("explanations need a non-empty, all-numeric feature table",
                      fix="encode categorical features as the model expects, and drop the label column")
    background = None
    if request.baseline is not None:   # SageMaker's shap.baseline: explicit reference rows, not k-means summaries
        try:
            background = pd.read_csv(io.BytesIO(request.baseline))[list(df.columns)]
        except (KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise Invalid(f"the baseline rows do not match the dataset's columns: {exc}",
                          fix="send a CSV with the same feature columns as `baseline`") from None
    try:
        clusters = int(request.num_clusters or 10)
    except ValueError:
        raise Invalid("num_clusters must be an integer", fix="e.g. num_clusters=10") from None
    try:
        result = explain(model, df, agg_method=agg, background=background, num_clusters=clusters)
    except DomainError:   # a remote call that failed: its message already says what failed, without the reply
        raise
    except Exception as exc:
        raise Invalid(f"the model could not be explained on this data: {type(exc).__name__}: {exc}",
                      fix="check the feature columns match the model's inputs") from None
    aid = new_id()
    doc = analysis_json(result)
    doc["model_source"] = source if remote is None else {   # a URL's model is not the registered artifact
        **source, "note": "computed through the predict URL, not the registered artifact (sha256 "
        f"{registered.artifact_sha256}); mlgov cannot verify they are the same"}
    body = dump(doc)
    store.put(f"clarify/{aid}/analysis.json", body, "application/json")
    store.put(f"clarify/{aid}/explanations_shap/out.csv", result["local"].to_csv(index=False).encode(), "text/csv")
    audit.record(session, actor=principal.name, action="clarify.explanation", subject_type="model_version",
                 subject_id=f"{group}/{version}", after={"analysis": aid, "method": result["method"],
                                                         "rows": int(df.shape[0]), "model_source": source})
    return StoredAnalysis(id=aid, body=body)


def get_report(store: ObjectStore, analysis_id: str) -> StoredReport:
    """A stored analysis.json and its verdict.json (None when the analysis was not attached to a version)."""
    if not analysis_id.isalnum():
        raise Invalid(f"{analysis_id!r} is not an analysis id",
                      fix="use the X-Mlgov-Analysis-Id of a Clarify response")
    analysis = json.loads(store.get(f"clarify/{analysis_id}/analysis.json"))
    verdict = json.loads(store.get(f"clarify/{analysis_id}/verdict.json")) \
        if store.exists(f"clarify/{analysis_id}/verdict.json") else None
    return StoredReport(id=analysis_id, analysis=analysis, verdict=verdict)


# --- monitors: baselines and window runs --------------------------------------------------------------------------

def _baseline_row(session: Session, *, kind: str, prefix: str, bid: str, name: str | None, rows: int, cols: int,
                  settings: dict[str, Any], data: bytes, actor: Principal) -> Any:
    from monitor.orm import Baseline

    row = Baseline(id=bid, name=name, source="computed", kind=kind, settings=settings, prefix=prefix, exact=False,
                   dataset_sha256=hashlib.sha256(data).hexdigest(), row_count=rows, feature_count=cols,
                   created_by=actor.name, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="baseline.created", subject_type="baseline", subject_id=bid,
                 after={"kind": kind, "rows": rows})
    return row


def create_bias_baseline(session: Session, store: ObjectStore, *, data: bytes, config: bytes, name: str | None,
                         actor: Principal) -> Any:
    """A ModelBias baseline: the post-training analysis.json of a labelled validation set."""
    try:
        parsed = parse_config(inputs.loads(config, "config"))   # kernel JSON policy first
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    if parsed.methods.post_training_bias is None:
        parsed.methods.post_training_bias = PostTraining(methods=["DPPL", "DI", "DCA", "DCR", "RD", "DAR", "AD"])
    parsed.methods.pre_training_bias = None
    cfg = parsed.as_dict()
    df = _csv(data)
    try:
        result = analyze(df, parsed)
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    bid = new_id()
    prefix = f"baselines/{bid}"
    store.put(f"{prefix}/analysis.json", json.dumps(result, allow_nan=False).encode(), "application/json")
    store.put(f"{prefix}/analysis_config.json", json.dumps(cfg, allow_nan=False).encode(), "application/json")
    return _baseline_row(session, kind="ModelBias", prefix=prefix, bid=bid, name=name, rows=len(df),
                         cols=df.shape[1], settings={"config": cfg}, data=data, actor=actor)


def load_model(session: Session, store: ObjectStore, group: str, version: int, fmt: str,
               artifact: bytes | None) -> tuple[Any, bytes]:
    """The registered version's model: uploaded bytes or its artifact in mlgov's store, checked against the
    registered sha256, loaded through the exact-type allow-lists (anything else only if an admin trusted
    this exact artifact). Refusal is 403 naming the refused types; bytes of another format are 422."""
    _, v = registry.get_version(session, group, version)
    if artifact is None:
        key = store.key_of(v.artifact_uri)
        if key is None:
            raise ArtifactOutsideStore(v.artifact_uri)
        artifact = store.get(key)
    try:
        loaders.check_digest(artifact, v.artifact_sha256)
        return loaders.load(artifact, fmt, trusted=bool(v.artifact_trusted)), artifact
    except loaders.UntrustedModel as exc:
        raise ArtifactUntrusted(exc, group=group, version=version, artifact_sha256=v.artifact_sha256) from None
    except loaders.ModelLoadError as exc:
        raise ArtifactNotLoadable(exc) from None


def create_explainability_baseline(session: Session, store: ObjectStore, *, data: bytes, group: str, version: int,
                                   fmt: str, artifact: bytes | None, label: str | None, threshold: float,
                                   name: str | None, actor: Principal) -> Any:
    """A ModelExplainability baseline: global SHAP of the model on reference data, and the model itself."""
    df = _csv(data)
    if label and label in df.columns:
        df = df.drop(columns=[label])
    model, raw = load_model(session, store, group, version, fmt, artifact)
    result = explain(model, df)
    bid = new_id()
    prefix = f"baselines/{bid}"
    store.put(f"{prefix}/analysis.json", json.dumps(strict(analysis_json(result)), allow_nan=False).encode(),
              "application/json")
    store.put(f"{prefix}/model.bin", raw, "application/octet-stream")
    settings = {"model_group": group, "model_version": version, "model_format": fmt, "features": list(df.columns),
                "ndcg_threshold": threshold}
    return _baseline_row(session, kind="ModelExplainability", prefix=prefix, bid=bid, name=name, rows=len(df),
                         cols=df.shape[1], settings=settings, data=data, actor=actor)


def _record(session: Session, store: ObjectStore, *, base: Any, kind: str, endpoint: str, start: dt.datetime,
            end: dt.datetime, actor: Principal, rows: int, violations: list[dict[str, Any]],
            result: dict[str, Any] | None, failure: str | None, t0: float) -> Any:
    from monitor.orm import Analysis

    aid = new_id()
    prefix = f"analyses/{aid}"
    store.put(f"{prefix}/constraint_violations.json", json.dumps({"violations": violations}).encode(),
              "application/json")
    if result is not None:
        store.put(f"{prefix}/analysis.json", json.dumps(strict(result), allow_nan=False).encode(), "application/json")
    status = "Failed" if failure else ("CompletedWithViolations" if violations else "Completed")
    row = Analysis(id=aid, baseline_id=base.id, kind=kind, status=status, failure_reason=failure, source="endpoint",
                   endpoint=endpoint, window_start=start, window_end=end, row_count=rows,
                   violation_count=len(violations), drifted_features=[], prefix=prefix,
                   duration_ms=int((time.perf_counter() - t0) * 1000), created_by=actor.name, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="analysis.completed", subject_type="analysis", subject_id=aid,
                 after={"kind": kind, "status": status, "violations": len(violations)})
    events.emit(session, "analysis.completed", aid, {"id": aid, "kind": kind, "status": status,
                                                     "baseline_id": base.id, "violations": len(violations),
                                                     "endpoint": endpoint})
    return row


def bias_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                end: dt.datetime, actor: Principal, draws: int = 200) -> Any:
    """Post-training bias of the labelled window vs the baseline: a metric violates when its bootstrap interval
    lies entirely farther from 0 than the baseline value (SageMaker's rule, without alerts on noise)."""
    base = monitor.get_baseline(session, baseline_id)
    cfg = dict((base.settings or {}).get("config", {}))
    ep = monitor.get_endpoint(session, endpoint)
    t0 = time.perf_counter()
    window = f"between {start.isoformat()} and {end.isoformat()}"
    record = functools.partial(_record, session, store, base=base, kind="ModelBias", endpoint=endpoint, start=start,
                               end=end, actor=actor, t0=t0)
    df = monitor.labelled_window(session, store, ep, start, end)
    if df.empty:
        return record(rows=0, violations=[], result=None,
                       failure=f"no data captured {window} for endpoint {endpoint!r}")
    df = df[df["__label"].notna()].copy()
    if df.empty:
        return record(rows=0, violations=[], result=None,
                       failure=f"no ground truth yet for the records captured {window}")
    label_col = cfg["label"]
    df[label_col] = pd.to_numeric(df["__label"], errors="coerce").fillna(df["__label"]) \
        if not isinstance(cfg.get("label_values_or_threshold"), list) else df["__label"]
    if isinstance(cfg.get("label_values_or_threshold"), list):
        df[label_col] = df[label_col].astype(str)
        cfg["label_values_or_threshold"] = [str(v) for v in cfg["label_values_or_threshold"]]
    try:
        current = analyze(df.drop(columns=[c for c in df.columns if c.startswith("__")]), cfg)
    except ConfigError as exc:
        return record(rows=len(df), violations=[], result=None,
                       failure=f"the window does not fit the baseline's analysis config: {exc}")
    baseline = json.loads(store.get(f"{base.prefix}/analysis.json"))
    y = bias.positive(df[label_col].to_numpy(), cfg["label_values_or_threshold"])
    pred = df[cfg["predicted_label"]]
    yhat = pred.to_numpy(dtype=float) > float(cfg.get("probability_threshold", 0.5)) if pred.dtype.kind == "f" \
        and set(np.unique(pred.dropna())) - {0.0, 1.0} else bias.positive(pred.to_numpy(),
                                                                          cfg["label_values_or_threshold"])
    violations: list[dict[str, Any]] = []
    section = "post_training_bias_metrics"
    for facet in cfg["facet"]:
        name = str(facet["name_or_index"])
        base_groups = baseline.get(section, {}).get("facets", {}).get(name, [])
        cur_groups = current.get(section, {}).get("facets", {}).get(name, [])
        masks = dict(facet_groups(df[facet["name_or_index"]], facet.get("value_or_threshold")))
        for i, cur_group in enumerate(cur_groups):
            base_group = next((g for g in base_groups if g["value_or_threshold"] == cur_group["value_or_threshold"]),
                              base_groups[i] if len(base_groups) == len(cur_groups) else None)
            if base_group is None:
                continue
            base_vals = {m["name"]: metric_value(m) for m in base_group["metrics"]}
            sensitive = masks[cur_group["value_or_threshold"]]
            for m in cur_group["metrics"]:
                if m["name"] not in base_vals or m["name"] in ("FT", "CDDPL"):
                    continue

                def metric(idx: np.ndarray, key: str = m["name"], s: np.ndarray = sensitive) -> float:
                    c = bias.Counts.of(s[idx], y[idx], yhat[idx])
                    return bias.post_training(c, y[idx], yhat[idx], None, None)[key]

                ci = bootstrap_interval(metric, len(df), draws=draws)
                if bias_violation(base_vals[m["name"]], metric_value(m), ci):
                    violations.append({"facet": name, "facet_value": cur_group["value_or_threshold"],
                                       "metric_name": m["name"], "constraint_check_type": "bias_drift_check",
                                       "description": f"Metric value {metric_value(m):.4g} doesn't meet the "
                                                      f"baseline constraint requirement "
                                                      f"{base_vals[m['name']]:.4g} "
                                                      f"(95% interval {ci[0]:.4g} to {ci[1]:.4g})"})
    return record(rows=len(df), violations=violations, result=current, failure=None)


def attribution_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str,
                       start: dt.datetime, end: dt.datetime, actor: Principal) -> Any:
    """Global SHAP of the window with the baseline's model; violation when nDCG falls below the threshold."""

    base = monitor.get_baseline(session, baseline_id)
    s = base.settings or {}
    ep = monitor.get_endpoint(session, endpoint)
    t0 = time.perf_counter()
    record = functools.partial(_record, session, store, base=base, kind="ModelExplainability", endpoint=endpoint,
                               start=start, end=end, actor=actor, t0=t0)
    table = monitor.window_table(session, store, ep, start, end)
    if table is None or table.num_rows == 0:
        return record(rows=0, violations=[], result=None,
                       failure=f"no data captured between {start.isoformat()} and {end.isoformat()}")
    features = [f for f in s.get("features", []) if f in table.column_names]
    df = table.select(features).to_pandas().dropna()
    _, v = registry.get_version(session, s["model_group"], int(s["model_version"]))
    raw = store.get(f"{base.prefix}/model.bin")
    try:   # the trust decision is read again on every run: withdrawing it stops the monitor loading the model
        loaders.check_digest(raw, v.artifact_sha256)
        model = loaders.load(raw, s["model_format"], trusted=bool(v.artifact_trusted))
    except loaders.ModelLoadError as exc:
        return record(rows=len(df), violations=[], result=None, failure=f"the baseline's model: {exc}")
    cur = explain(model, df)
    baseline = json.loads(store.get(f"{base.prefix}/analysis.json"))["explanations"]["kernel_shap"]["label0"]
    score = ndcg(baseline["global_shap_values"], cur["global_shap_values"])
    threshold = float(s.get("ndcg_threshold", DEFAULT_NDCG_THRESHOLD))
    violations = [] if score >= threshold else [{
        "label": "label0", "metric_name": "shap", "constraint_check_type": "feature_attribution_drift_check",
        "description": f"Feature attribution drift {score:.2f} exceeds threshold {threshold}"}]
    result = {**analysis_json(cur), "ndcg": score}
    return record(rows=len(df), violations=violations, result=result, failure=None)
