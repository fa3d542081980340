"""Clarify HTTP routes."""

from __future__ import annotations

import io
import json
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Path, Request, Response

from clarify.metrics.analysis import ConfigError, analyze, metric_value, parse_config, strict
from clarify.remote import RemoteModel
from clarify.service import config_invalid
from mlgov import audit, inputs
from mlgov.api import form_parts
from mlgov.auth import DECIDERS, PUBLISHERS, READERS, Principal, SessionDep, require
from mlgov.db import new_id
from mlgov.errors import DomainError, Invalid
from mlgov.openapi import BINARY, alternatives, request_body
from mlgov.outbound import get_policy
from mlgov.web import templates

router = APIRouter(prefix="/api/v1/clarify", tags=["clarify"])
Analyst = Annotated[Principal, Depends(require(PUBLISHERS, DECIDERS))]
_report_templates = templates(FsPath(__file__).parent / "templates")


async def _parts(request: Request) -> dict[str, Any]:
    """The kernel's form reader, as raw bytes per part (Clarify takes multipart uploads only)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid("send multipart/form-data with a `file` (CSV with header) and a `config` "
                      "(SageMaker analysis_config.json)",
                      fix="e.g. curl -F file=@data.csv -F config=@analysis_config.json")
    return {k: v[0] if isinstance(v, tuple) else v.encode() for k, v in (await form_parts(request)).items()}


_ANALYSIS_ID = {"X-Mlgov-Analysis-Id": {"description": "id of the stored analysis (GET /api/v1/clarify/reports/{id})",
                                        "schema": {"type": "string"}}}
_JSON_ANALYSIS: dict[int | str, dict[str, Any]] = {
    200: {"description": "SageMaker Clarify analysis.json", "headers": _ANALYSIS_ID,
          "content": {"application/json": {"schema": {"type": "object"}}}}}
_BIAS_FORM = request_body(multipart={
    "type": "object", "required": ["config"],
    "anyOf": [{"required": ["file"]}, {"required": ["dataset_uri"]}, {"required": ["endpoint", "start", "end"]}],
    "properties": {
        "config": {"type": "object", "description": "SageMaker analysis_config.json"},
        "file": {**BINARY, "description": "the dataset (CSV; header row unless config.headers names the columns)"},
        "dataset_uri": {"type": "string", "minLength": 1,
                        "description": "a dataset in mlgov's object store, instead of file"},
        "endpoint": {"type": "string", "description": "a captured window joined to ground truth, instead of file"},
        "start": {"type": "string", "format": "date-time", "description": "window start (with endpoint)"},
        "end": {"type": "string", "format": "date-time", "description": "window end (with endpoint)"},
        "model_group": {"type": "string", "description": "attach the report to this version (with model_version)"},
        "model_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    }},
    encoding={"config": "application/json"},
    description="analysis_config.json and the data: a `file`, a `dataset_uri`, or an `endpoint` window")
_EXPLAIN_FORM = request_body(multipart={
    "type": "object", "required": ["model_group", "model_version", "file"],
    "properties": {
        "model_group": {"type": "string", "minLength": 1},
        "model_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "file": {**BINARY, "description": "the rows to explain: all-numeric CSV with header"},
        "model": {**BINARY, "description": "the artifact (checked against the registered sha256), unless it is "
                                           "in mlgov's object store"},
        "model_format": {"type": "string", "enum": ["skops", "xgboost", "lightgbm", "onnx", "pickle", "joblib"]},
        "predict_url": {"type": "string", "format": "uri", "description": "a model server instead of the artifact"},
        "baseline": {**BINARY, "description": "reference rows (CSV with the same columns)"},
        "agg_method": {"type": "string", "enum": ["mean_abs", "mean_sq", "median"]},
        "label": {"type": "string", "description": "a column to drop before explaining"},
        "num_clusters": {"type": "integer", "minimum": 1, "description": "k-means background size (default 10)"},
    }},
    description="a registered version's model and the rows to explain")

AnalysisId = Annotated[str, Path(pattern="^[A-Za-z0-9]+$", description="X-Mlgov-Analysis-Id of a Clarify response")]
DEFAULT_LIMITS = {"DPL": 0.1, "DPPL": 0.1, "DI": 0.2}


def _text(parts: dict[str, Any], key: str) -> str | None:
    v = parts.get(key)
    return v.decode() if isinstance(v, bytes) else None


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


def _json(doc: Any) -> bytes:
    """RFC 8259 JSON: non-finite numbers never leave the server (they are null, with a note where known)."""
    return json.dumps(strict(doc), allow_nan=False).encode()


def _from_store(request: Request, uri: str) -> bytes:
    from monitor import service as monitor

    data: bytes = monitor.read_dataset_uri(request.app.state.get_store(), uri)
    return data


def _window_frame(session: Any, request: Request, parts: dict[str, Any],
                  cfg: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A captured window with its ground truth as the label column named in the config, and where it came from
    (the evidence gate counts it when the endpoint serves the version the report is attached to)."""
    import datetime as dt

    from monitor import service as monitor

    try:
        start = dt.datetime.fromisoformat((_text(parts, "start") or "").replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat((_text(parts, "end") or "").replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("start and end must be ISO-8601 times", fix="e.g. start=2026-11-20T10:00:00Z") from None
    ep = monitor.get_endpoint(session, _text(parts, "endpoint") or "")
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    end = end if end.tzinfo else end.replace(tzinfo=dt.UTC)
    df = monitor.labelled_window(session, request.app.state.get_store(), ep, start, end)
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


def _predict_with_model(session: Any, request: Request, parts: dict[str, Any], cfg: dict[str, Any],
                        df: pd.DataFrame, group: str, version: int) -> dict[str, Any]:
    """Replace the predicted-label column by the registered artifact's own predictions on ``df`` (the submitter
    then chooses the data, not the predictions), and say so for the evidence gate."""
    import hashlib

    from clarify import service as clarify
    from clarify.metrics.shap_values import _predict_fn

    store = request.app.state.get_store()
    model, raw = clarify.load_model(session, store, group, version, _text(parts, "model_format") or "skops",
                                    parts.get("model"))
    column = str(cfg.get("predicted_label") or "mlgov_predicted_label")
    excluded = {cfg.get("label"), column, cfg.get("group_variable"), *cfg.get("excluded_columns", [])}
    features = [c for c in df.columns if c not in excluded]
    try:
        scores = _predict_fn(model)(df[features].to_numpy(dtype=float))
    except Exception as exc:
        raise Invalid(f"the registered model could not predict on this dataset: {type(exc).__name__}",
                      fix="send the model's feature columns (numeric) plus the label; leave predictions out") from None
    df[column] = pd.Series(scores, index=df.index).astype(float)
    cfg["predicted_label"] = column
    return {"artifact_sha256": hashlib.sha256(raw).hexdigest(), "features": features, "rows": len(df)}


@router.get("/reports/{analysis_id}", response_model=None, responses=alternatives("text/html"))
def report(analysis_id: AnalysisId, request: Request, _: Annotated[Principal, Depends(require(READERS))],
           format: Literal["html", "json"] = "html") -> Response:
    """The stored analysis.json, or a readable HTML report (bias tables, attribution bars, policy verdict)."""
    store = request.app.state.get_store()
    analysis_id = _clean_id(analysis_id)
    analysis = json.loads(store.get(f"clarify/{analysis_id}/analysis.json"))
    if format == "json":   # analyses stored before undefined metrics became null may still hold NaN
        return Response(_json(analysis), media_type="application/json")
    verdict = json.loads(store.get(f"clarify/{analysis_id}/verdict.json")) \
        if store.exists(f"clarify/{analysis_id}/verdict.json") else None
    shap = None
    ks = analysis.get("explanations", {}).get("kernel_shap", {})
    if ks:
        label = next(iter(ks.values()))
        ranked = sorted(label["global_shap_values"].items(), key=lambda kv: -abs(kv[1]))
        top = max([abs(v) for _, v in ranked] + [1e-12])
        # bar lengths as numbers for an SVG <rect>: the CSP allows no inline style attribute
        shap = {"ranked": [(f, v, round(abs(v) / top * 300, 1)) for f, v in ranked],
                "method": label.get("method", "kernel"), "agg_method": label.get("agg_method", "mean_abs"),
                "expected_value": label["expected_value"]}
    html = _report_templates.get_template("report.html").render(id=analysis_id, a=analysis, verdict=verdict,
                                                                shap=shap, version=(verdict or {}).get("version"))
    return Response(html, media_type="text/html")


def _clean_id(value: str) -> str:
    if not value.isalnum():
        raise Invalid(f"{value!r} is not an analysis id", fix="use the X-Mlgov-Analysis-Id of a Clarify response")
    return value


@router.post("/bias", response_model=None, responses=_JSON_ANALYSIS, openapi_extra=_BIAS_FORM)
def bias_analysis(p: Analyst, session: SessionDep, request: Request,
                  parts: Annotated[dict[str, Any], Depends(_parts)]) -> Response:
    """SageMaker Clarify pre-/post-training bias: returns analysis.json (and stores it)."""
    if "config" not in parts or not ({"file", "dataset_uri", "endpoint"} & set(parts)):
        raise Invalid("a `config` part and data are required: a `file`, a `dataset_uri` in the object store, or "
                      "an `endpoint` with `start` and `end` (its captured window joined to ground truth)",
                      fix="send the dataset as `file` and analysis_config.json as `config`")
    try:
        cfg = parse_config(inputs.loads(parts["config"], "config")).as_dict()   # kernel JSON policy first
    except ConfigError as exc:
        raise config_invalid(exc) from None
    group, version = _text(parts, "model_group"), _text(parts, "model_version")
    if (group or version) and (not group or not version or not version.isdigit()):
        raise Invalid("model_group and model_version (a number) go together", fix="send both or neither")
    run_model = (_text(parts, "predict_with_model") or "").lower() in ("1", "true", "yes")
    if run_model and not group:
        raise Invalid("predict_with_model needs model_group and model_version",
                      fix="name the registered version whose artifact should make the predictions")
    try:
        source: dict[str, Any]
        if "endpoint" in parts:
            df, source = _window_frame(session, request, parts, cfg)
        else:
            import hashlib

            uri = _text(parts, "dataset_uri")
            data = parts["file"] if "file" in parts else _from_store(request, uri or "")
            source = {"kind": "upload" if "file" in parts else "dataset_uri",
                      **({} if "file" in parts else {"uri": uri}), "sha256": hashlib.sha256(data).hexdigest()}
            headers = cfg.get("headers")
            inputs.check_csv(data, "the dataset")
            df = pd.read_csv(io.BytesIO(data), header=None if headers else "infer")
            if headers:
                if len(headers) != df.shape[1]:
                    raise ConfigError([{"field": "headers", "message": f"lists {len(headers)} names for "
                                                                         f"{df.shape[1]} columns"}])
                df.columns = headers
        if df.empty:
            raise ConfigError("the dataset has no rows")
        if run_model and group and version:
            ran = _predict_with_model(session, request, parts, cfg, df, group, int(version))
            source = {"kind": "model_run", "dataset": source, **ran}
        result = analyze(df, cfg)
    except ConfigError as exc:
        raise config_invalid(exc) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise Invalid(f"the dataset is not a readable CSV: {exc}", fix="upload a CSV with a header row") from None
    aid = new_id()
    body = _json(result)   # undefined/infinite metrics are null with a note, never NaN/Infinity
    store = request.app.state.get_store()
    store.put(f"clarify/{aid}/analysis.json", body, "application/json")
    if group and version:
        from registry import service as registry

        limits = {**DEFAULT_LIMITS, **registry.approval_policy(session, group).get("bias_limits", {})}
        failures = policy_failures(result, limits)
        registry.attach_bias_report(session, group, int(version), aid, not failures, failures, p, source=source)
        store.put(f"clarify/{aid}/verdict.json", json.dumps({"passed": not failures, "failures": failures,
                                                              "version": f"{group}/{version}"}).encode(),
                  "application/json")
    audit.record(session, actor=p.name, action="clarify.bias_analysis", subject_type="clarify_analysis",
                 subject_id=aid, after={"rows": int(df.shape[0]), "facets": [f["name_or_index"] for f in cfg["facet"]]})
    return Response(body, media_type="application/json", headers={"X-Mlgov-Analysis-Id": aid})


@router.post("/explain", response_model=None, responses=_JSON_ANALYSIS, openapi_extra=_EXPLAIN_FORM)
def explain(p: Analyst, session: SessionDep, request: Request,
            parts: Annotated[dict[str, Any], Depends(_parts)]) -> Response:
    """SHAP attributions for a registered model version on an uploaded dataset (CSV with header).

    Parts: `model_group`, `model_version`, `file`; `model` (the artifact, checked against the registered
    sha256) unless the artifact URI is in mlgov's object store, or `predict_url` for any model behind an
    HTTP endpoint (permutation SHAP); `baseline` (CSV reference rows; default: k-means summary of the data
    into `num_clusters`); `model_format` (skops, xgboost, lightgbm, onnx; pickle/joblib only when
    an admin trusted the version); `agg_method`; `label` to drop."""
    from clarify import service as clarify
    from clarify.metrics.shap_values import AGGREGATIONS, analysis_json
    from clarify.metrics.shap_values import explain as run
    from registry import service as registry

    group, version = _text(parts, "model_group"), _text(parts, "model_version")
    if not group or not version or not version.isdigit() or "file" not in parts:
        raise Invalid("model_group, model_version (a number) and a `file` part are required",
                      fix="send -F model_group=… -F model_version=1 -F file=@data.csv")
    inputs.check_csv(parts["file"], "the dataset")
    if "baseline" in parts:
        inputs.check_csv(parts["baseline"], "the baseline rows")
    _, registered = registry.get_version(session, group, int(version))
    store = request.app.state.get_store()
    artifact: bytes | None = parts.get("model")
    predict_url = _text(parts, "predict_url")
    if predict_url is not None and not predict_url.startswith(("http://", "https://")):
        raise Invalid(f"predict_url {predict_url!r} is not http(s)", fix="give the model server's predict URL")
    remote = RemoteModel(predict_url, get_policy(request)) if artifact is None and predict_url else None
    agg = _text(parts, "agg_method") or "mean_abs"
    if agg not in AGGREGATIONS:
        raise Invalid(f"agg_method {agg!r} is not one of {', '.join(AGGREGATIONS)}", fix="use mean_abs")
    model: Any
    source: dict[str, str]
    if remote is not None:
        model, source = remote, remote.source   # model-agnostic: permutation SHAP through the endpoint
    else:
        source = {"kind": "artifact", "artifact_sha256": registered.artifact_sha256}
        model, _ = clarify.load_model(session, store, group, int(version), _text(parts, "model_format") or "skops",
                                      artifact)
    try:
        df = pd.read_csv(io.BytesIO(parts["file"]))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise Invalid(f"the dataset is not a readable CSV: {exc}", fix="upload a CSV with a header row") from None
    label = _text(parts, "label")
    if label and label in df.columns:
        df = df.drop(columns=[label])
    if df.empty or any(df[c].dtype.kind not in "fiub" for c in df.columns):
        raise Invalid("explanations need a non-empty, all-numeric feature table",
                      fix="encode categorical features as the model expects, and drop the label column")
    background = None
    if "baseline" in parts:   # SageMaker's shap.baseline: explicit reference rows instead of k-means summaries
        try:
            background = pd.read_csv(io.BytesIO(parts["baseline"]))[list(df.columns)]
        except (KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise Invalid(f"the baseline rows do not match the dataset's columns: {exc}",
                          fix="send a CSV with the same feature columns as `baseline`") from None
    try:
        clusters = int(_text(parts, "num_clusters") or 10)
    except ValueError:
        raise Invalid("num_clusters must be an integer", fix="e.g. num_clusters=10") from None
    try:
        result = run(model, df, agg_method=agg, background=background, num_clusters=clusters)
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
    body = _json(doc)
    store.put(f"clarify/{aid}/analysis.json", body, "application/json")
    store.put(f"clarify/{aid}/explanations_shap/out.csv", result["local"].to_csv(index=False).encode(), "text/csv")
    audit.record(session, actor=p.name, action="clarify.explanation", subject_type="model_version",
                 subject_id=f"{group}/{version}", after={"analysis": aid, "method": result["method"],
                                                         "rows": int(df.shape[0]), "model_source": source})
    return Response(body, media_type="application/json", headers={"X-Mlgov-Analysis-Id": aid})
