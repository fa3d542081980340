"""Clarify analyses on request: bias of a dataset or captured window (attached to a version as approval
evidence), SHAP explanations of a registered version, and the stored reports. Flushes, never commits."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from clarify.errors import ConfigInvalid, DatasetUnreadable
from clarify.metrics import bias
from clarify.metrics.analysis import ConfigError, analyze, metric_value
from clarify.metrics.shap_values import (
    AGGREGATIONS,
    OUTPUT_SPACES,
    analysis_json,
)
from clarify.remote import RemoteModel
from clarify.sandbox import predict
from clarify.schemas import (
    BiasAnalysisRequest,
    CapturedWindow,
    ExplainRequest,
    ExplanationRows,
    StoredAnalysis,
    StoredReport,
)
from clarify.service.artifacts import CSV_ERRORS, explained, in_order, load_model, read_csv
from lineage import service as lineage
from mlgov import audit
from mlgov.auth import Principal
from mlgov.db import new_id
from mlgov.errors import Invalid, NotFound
from mlgov.outbound import OutboundPolicy
from mlgov.storage import ObjectStore
from monitor import service as monitor
from monitor.engine.stats import json_safe
from registry import service as registry

DEFAULT_LIMITS = {"DPL": 0.1, "DPPL": 0.1, "DI": 0.2}


def dump(doc: Any) -> bytes:
    """RFC 8259 JSON: non-finite numbers never leave the server (they are null, with a note where known)."""
    return json.dumps(json_safe(doc), allow_nan=False).encode()


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
    df[cfg.get("label", "label")], cfg["label_values_or_threshold"] = bias.captured_labels(
        df["__label"], cfg.get("label_values_or_threshold"))
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
    return read_csv(data, cfg.get("headers")), source


def _predict_with_model(session: Session, store: ObjectStore, request: BiasAnalysisRequest, cfg: dict[str, Any],
                        df: pd.DataFrame, group: str, version: int) -> dict[str, Any]:
    """Replace the predicted-label column by the registered artifact's own predictions on ``df`` (the submitter
    then chooses the data, not the predictions), and say so for the evidence gate."""
    model, raw, _ = load_model(session, store, group, version, request.model_format, request.model)
    column = str(cfg.get("predicted_label") or "mlgov_predicted_label")
    excluded = {cfg.get("label"), column, cfg.get("group_variable"), *cfg.get("excluded_columns", [])}
    x = in_order(model, df[[c for c in df.columns if c not in excluded]])
    features = list(x.columns)
    try:
        scores = predict(model, x.to_numpy(dtype=float))
    except Exception as exc:
        raise Invalid(f"the registered model could not predict on this dataset: {type(exc).__name__}",
                      fix="send the model's feature columns (numeric) plus the label; leave predictions out") from None
    df[column] = pd.Series(scores, index=df.index).astype(float)
    cfg["predicted_label"] = column
    return {"artifact_sha256": hashlib.sha256(raw).hexdigest(), "features": features, "rows": len(df)}


def _report_lineage(session: Session, store: ObjectStore, aid: str, report_type: str, group: str, version: int,
                    actor: str, properties: dict[str, Any], dataset: str | None = None) -> None:
    """A Clarify report of a registered version in the lineage graph, as data quality records a drift baseline:
    the report's analysis.json an artifact AssociatedWith the model (SageMaker's ModelMetrics role), and the
    dataset it was computed on (a ``dataset_uri``) ContributedTo it."""
    report, _ = lineage.ensure_artifact(session, artifact_type=report_type,
                                        uri=store.uri(f"clarify/{aid}/analysis.json"),
                                        name=f"{group}/{version} {report_type}", actor=actor,
                                        properties={"analysis_id": aid, **properties})
    model = registry.version_entity(session, *registry.get_version(session, group, version), actor)
    lineage.link(session, report, model, "AssociatedWith", actor=actor,
                 properties={"role": f"ModelMetrics.{report_type.removesuffix('Report')}"})
    if dataset:
        data, _ = lineage.ensure_artifact(session, artifact_type="Dataset", uri=dataset, actor=actor)
        lineage.link(session, data, report, "ContributedTo", actor=actor)


@dataclass
class Computed:
    """An analysis computed and its files stored (`compute_bias`, `compute_explanation`), not yet recorded: the
    rows that make it evidence are written by `record_bias` / `record_explanation` in a short write turn, so a
    long computation never holds the database's write turn (capture ingest waited behind one for minutes)."""

    id: str
    body: bytes
    source: dict[str, Any]
    after: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)


def compute_bias(session: Session, store: ObjectStore, request: BiasAnalysisRequest) -> Computed:
    """SageMaker Clarify pre-/post-training bias of the request's data, stored as analysis.json (read session)."""
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
    return Computed(aid, body, source, {"rows": int(df.shape[0]), "facets": [f["name_or_index"] for f in cfg["facet"]]},
                    result)


def record_bias(session: Session, store: ObjectStore, request: BiasAnalysisRequest, done: Computed,
                principal: Principal) -> StoredAnalysis:
    """A computed bias analysis audited, and attached to the named version as approval evidence (with the group's
    policy verdict) when the request names one (write session)."""
    group, version, aid, source = request.model_group, request.model_version, done.id, done.source
    if group is not None and version is not None:
        limits = {**DEFAULT_LIMITS, **registry.approval_policy(session, group).get("bias_limits", {})}
        failures = policy_failures(done.result, limits)
        registry.attach_bias_report(session, group, version, aid, not failures, failures, principal, source=source)
        _report_lineage(session, store, aid, "BiasReport", group, version, principal.name,
                        properties={"passed": not failures},
                        dataset=source.get("uri") or source.get("dataset", {}).get("uri"))
        store.put(f"clarify/{aid}/verdict.json", json.dumps({"passed": not failures, "failures": failures,
                                                              "version": f"{group}/{version}"}).encode(),
                  "application/json")
    audit.record(session, actor=principal.name, action="clarify.bias_analysis", subject_type="clarify_analysis",
                 subject_id=aid, after=done.after)
    return StoredAnalysis(id=aid, body=done.body)


def compute_explanation(session: Session, store: ObjectStore, policy: OutboundPolicy,
                        request: ExplainRequest) -> Computed:
    """SHAP attributions of a registered version on the request's rows: through the registered artifact, or
    through a predict URL (permutation SHAP; recorded as not being the registered artifact). Read session."""
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
    if request.output_space is not None and request.output_space not in OUTPUT_SPACES:
        raise Invalid(f"output_space {request.output_space!r} is not one of {', '.join(OUTPUT_SPACES)}",
                      fix="leave output_space out for the explainer's own, or ask for probability")
    model: Any
    source: dict[str, str]
    if remote is not None:
        model, source = remote, remote.source   # model-agnostic: permutation SHAP through the endpoint
    else:
        source = {"kind": "artifact", "artifact_sha256": registered.artifact_sha256 or "unverified"}
        model, _, _ = load_model(session, store, group, version, request.model_format, artifact)
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
    if not 1 <= clusters <= 1000:   # k-means' own message (and a fix about feature columns) said nothing useful
        raise Invalid(f"num_clusters {clusters} is not between 1 and 1000 (the background rows k-means keeps)",
                      fix="e.g. num_clusters=10, or send explicit reference rows as `baseline`")
    result = explained(model, df, agg_method=agg, background=background, num_clusters=clusters,
                       output_space=request.output_space)
    aid = new_id()
    doc = analysis_json(result)
    doc["model_source"] = source if remote is None else {   # a URL's model is not the registered artifact
        **source, "note": "computed through the predict URL, not the registered artifact (sha256 "
        f"{registered.artifact_sha256}); mlgov cannot verify they are the same"}
    body = dump(doc)
    store.put(f"clarify/{aid}/analysis.json", body, "application/json")
    store.put(f"clarify/{aid}/explanations_shap/out.csv", result["local"].to_csv(index=False).encode(), "text/csv")
    return Computed(aid, body, source, {"analysis": aid, "method": result["method"],
                                        "output_space": result["output_space"], "rows": int(df.shape[0]),
                                        "model_source": source})


def record_explanation(session: Session, store: ObjectStore, request: ExplainRequest, done: Computed,
                       principal: Principal) -> StoredAnalysis:
    """A computed explanation in the lineage graph and the audit log (write session)."""
    group, version = request.model_group, request.model_version
    _report_lineage(session, store, done.id, "ExplainabilityReport", group, version, principal.name,
                    properties={"method": done.after["method"], "model_source": done.source["kind"]})
    audit.record(session, actor=principal.name, action="clarify.explanation", subject_type="model_version",
                 subject_id=f"{group}/{version}", after=done.after)
    return StoredAnalysis(id=done.id, body=done.body)


def explanation_rows(store: ObjectStore, analysis_id: str, limit: int, offset: int) -> ExplanationRows:
    """A page of an explanation's per-row SHAP values (stored beside its analysis.json)."""
    fix = "use the X-Mlgov-Analysis-Id of a POST /api/v1/clarify/explain response"
    if not analysis_id.isalnum() or not store.exists(f"clarify/{analysis_id}/analysis.json"):
        raise NotFound(f"no Clarify explanation {analysis_id!r}", fix=fix)
    key = f"clarify/{analysis_id}/explanations_shap/out.csv"
    if not store.exists(key):
        raise NotFound(f"Clarify analysis {analysis_id} is not an explanation: it has no per-row SHAP values",
                       fix=fix)
    frame = pd.read_csv(io.BytesIO(store.get(key)))
    labels = json.loads(store.get(f"clarify/{analysis_id}/analysis.json")).get("explanations", {})
    label: dict[str, Any] = next(iter(labels.get("kernel_shap", {}).values()), {})
    expected = label.get("expected_value")
    return ExplanationRows(id=analysis_id, frame=frame.iloc[offset:offset + limit], total=len(frame), limit=limit,
                           offset=offset, output_space=label.get("output_space"),
                           expected_value=None if expected is None else float(expected))


def get_report(store: ObjectStore, analysis_id: str) -> StoredReport:
    """A stored analysis.json and its verdict.json (None when the analysis was not attached to a version)."""
    if not analysis_id.isalnum():
        raise Invalid(f"{analysis_id!r} is not an analysis id",
                      fix="use the X-Mlgov-Analysis-Id of a Clarify response")
    try:
        analysis = json.loads(store.get(f"clarify/{analysis_id}/analysis.json"))
    except NotFound:
        raise NotFound(f"no Clarify analysis {analysis_id!r}",
                       fix="use the X-Mlgov-Analysis-Id of a Clarify response") from None
    verdict = json.loads(store.get(f"clarify/{analysis_id}/verdict.json")) \
        if store.exists(f"clarify/{analysis_id}/verdict.json") else None
    return StoredReport(id=analysis_id, analysis=analysis, verdict=verdict)
