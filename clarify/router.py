"""Clarify HTTP routes: parse the multipart form into a typed request, authorize, call one service function, shape
the response."""

from __future__ import annotations

import datetime as dt
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request, Response

from clarify import service
from clarify.errors import ConfigInvalid, DatasetUnreadable
from clarify.schemas import (
    BIAS_FORM,
    EXPLAIN_FORM,
    JSON_ANALYSIS,
    BiasAnalysisRequest,
    CapturedWindow,
    ConfigError,
    ExplainRequest,
    ExplanationRowsPage,
    StoredAnalysis,
    parse_config,
)
from mlgov import inputs
from mlgov.api import Limit, Offset, form_parts, page
from mlgov.auth import (
    DECIDERS,
    PUBLISHERS,
    READERS,
    Principal,
    ReadSessionDep,
    computed_then_recorded,
    require,
    require_reading,
)
from mlgov.errors import Invalid
from mlgov.openapi import alternatives
from mlgov.outbound import OutboundDep
from mlgov.web import Router, templates

router = Router(prefix="/api/v1/clarify", tags=["clarify"])
ReadingAnalyst = Annotated[Principal, Depends(require_reading(PUBLISHERS, DECIDERS))]   # computes, then writes
Reader = Annotated[Principal, Depends(require(READERS))]
_report_templates = templates(FsPath(__file__).parent / "templates")


async def _parts(request: Request) -> dict[str, Any]:
    """The kernel's form reader, as raw bytes per part (Clarify takes multipart uploads only)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid("send multipart/form-data with a `file` (CSV with header) and a `config` "
                      "(SageMaker analysis_config.json)",
                      fix="e.g. curl -F file=@data.csv -F config=@analysis_config.json")
    return {k: v[0] if isinstance(v, tuple) else v.encode() for k, v in (await form_parts(request)).items()}


Parts = Annotated[dict[str, Any], Depends(_parts)]
AnalysisId = Annotated[str, Path(pattern="^[A-Za-z0-9]+$", max_length=64,
                                 description="X-Mlgov-Analysis-Id of a Clarify response")]


def _text(parts: dict[str, Any], key: str) -> str | None:
    v = parts.get(key)
    if not isinstance(v, bytes):
        return None
    try:
        return v.decode()
    except UnicodeDecodeError as exc:   # a text field sent as a file of arbitrary bytes
        raise Invalid(f"the `{key}` part is not UTF-8 text (byte {exc.start} is 0x{v[exc.start]:02x})",
                      fix=f"send `{key}` as a plain text form field") from None


def _analysis_response(stored: StoredAnalysis) -> Response:
    return Response(stored.body, media_type="application/json", headers={"X-Mlgov-Analysis-Id": stored.id})


def _window(parts: dict[str, Any]) -> CapturedWindow:
    try:
        start = dt.datetime.fromisoformat((_text(parts, "start") or "").replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat((_text(parts, "end") or "").replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("start and end must be ISO-8601 times", fix="e.g. start=2026-11-20T10:00:00Z") from None
    return CapturedWindow(endpoint=_text(parts, "endpoint") or "",
                          start=start if start.tzinfo else start.replace(tzinfo=dt.UTC),
                          end=end if end.tzinfo else end.replace(tzinfo=dt.UTC))


def _bias_request(parts: dict[str, Any]) -> BiasAnalysisRequest:
    if "config" not in parts or not ({"file", "dataset_uri", "endpoint"} & set(parts)):
        raise Invalid("a `config` part and data are required: a `file`, a `dataset_uri` in the object store, or "
                      "an `endpoint` with `start` and `end` (its captured window joined to ground truth)",
                      fix="send the dataset as `file` and analysis_config.json as `config`")
    try:
        config = parse_config(inputs.loads(parts["config"], "config"))   # kernel JSON policy first
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    group, version = _text(parts, "model_group"), _text(parts, "model_version")
    if (group or version) and (not group or not version or not version.isdigit()):
        raise Invalid("model_group and model_version (a number) go together", fix="send both or neither")
    run_model = (_text(parts, "predict_with_model") or "").lower() in ("1", "true", "yes")
    if run_model and not group:
        raise Invalid("predict_with_model needs model_group and model_version",
                      fix="name the registered version whose artifact should make the predictions")
    try:   # text parts sent as files: bytes that are not UTF-8 are an unreadable dataset
        window = _window(parts) if "endpoint" in parts else None
        dataset_uri = _text(parts, "dataset_uri") if window is None else None
        model_format = (_text(parts, "model_format") or "skops") if run_model else "skops"
    except UnicodeDecodeError as exc:
        raise DatasetUnreadable(exc) from None
    return BiasAnalysisRequest(config=config, file=parts.get("file"), dataset_uri=dataset_uri, window=window,
                               model_group=group or None, model_version=int(version) if group and version else None,
                               predict_with_model=run_model, model_format=model_format, model=parts.get("model"))


def _explain_request(parts: dict[str, Any]) -> ExplainRequest:
    group, version = _text(parts, "model_group"), _text(parts, "model_version")
    if not group or not version or not version.isdigit() or "file" not in parts:
        raise Invalid("model_group, model_version (a number) and a `file` part are required",
                      fix="send -F model_group=… -F model_version=1 -F file=@data.csv")
    inputs.check_csv(parts["file"], "the dataset")
    if "baseline" in parts:
        inputs.check_csv(parts["baseline"], "the baseline rows")
    return ExplainRequest(model_group=group, model_version=int(version), file=parts["file"], model=parts.get("model"),
                          model_format=_text(parts, "model_format") or "skops", predict_url=_text(parts, "predict_url"),
                          baseline=parts.get("baseline"), agg_method=_text(parts, "agg_method") or "mean_abs",
                          label=_text(parts, "label"), num_clusters=_text(parts, "num_clusters"),
                          output_space=_text(parts, "output_space"))


def _shap_view(analysis: dict[str, Any]) -> dict[str, Any] | None:
    """The first label's global SHAP values ranked, with bar lengths as numbers for an SVG <rect> (the CSP allows
    no inline style attribute)."""
    ks = analysis.get("explanations", {}).get("kernel_shap", {})
    if not ks:
        return None
    label = next(iter(ks.values()))
    ranked = sorted(label["global_shap_values"].items(), key=lambda kv: -abs(kv[1]))
    top = max([abs(v) for _, v in ranked] + [1e-12])
    return {"ranked": [(f, v, round(abs(v) / top * 300, 1)) for f, v in ranked],
            "method": label.get("method", "kernel"), "agg_method": label.get("agg_method", "mean_abs"),
            "expected_value": label["expected_value"],
            "output_space": SPACE_NAMES.get(label.get("output_space"), "an output space not recorded")}


SPACE_NAMES = {"log_odds": "log-odds", "probability": "probability", "raw": "the model's raw output"}


def _wants_csv(accept: str) -> bool:
    """Accept negotiation between the two media types of a listing: CSV only when preferred over JSON."""
    q = {"application/json": 0.0, "text/csv": 0.0}
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        weight = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            w = float(weight)
        except ValueError:
            w = 0.0
        for known in q:
            if media.lower() in (known, known.split("/")[0] + "/*", "*/*"):
                q[known] = max(q[known], w - (0.001 if media != known else 0.0))   # exact beats wildcard
    return q["text/csv"] > q["application/json"]


@router.get("/reports/{analysis_id}", response_model=None, responses=alternatives("text/html"))
def report(analysis_id: AnalysisId, request: Request, _: Reader,
           fmt: Annotated[Literal["html", "json"], Query(alias="format")] = "html") -> Response:
    """The stored analysis.json, or a readable HTML report (bias tables, attribution bars, policy verdict)."""
    stored = service.get_report(request.app.state.get_store(), analysis_id)
    if fmt == "json":   # analyses stored before undefined metrics became null may still hold NaN
        return Response(service.dump(stored.analysis), media_type="application/json")
    html = _report_templates.get_template("report.html").render(
        id=stored.id, a=stored.analysis, verdict=stored.verdict, shap=_shap_view(stored.analysis),
        version=(stored.verdict or {}).get("version"))
    return Response(html, media_type="text/html")


@router.post("/bias", response_model=None, responses=JSON_ANALYSIS, openapi_extra=BIAS_FORM)
async def bias_analysis(principal: ReadingAnalyst, session: ReadSessionDep, request: Request,
                        parts: Parts) -> Response:
    """SageMaker Clarify pre-/post-training bias: returns analysis.json (and stores it)."""
    store, req = request.app.state.get_store(), _bias_request(parts)
    return _analysis_response(await computed_then_recorded(
        request, session, lambda: service.compute_bias(session, store, req),
        lambda writer, done: service.record_bias(writer, store, req, done, principal)))


@router.post("/explain", response_model=None, responses=JSON_ANALYSIS, openapi_extra=EXPLAIN_FORM)
async def explain(principal: ReadingAnalyst, session: ReadSessionDep, request: Request, policy: OutboundDep,
                  parts: Parts) -> Response:
    """SHAP attributions for a registered model version on an uploaded dataset (CSV with header).

    Parts: `model_group`, `model_version`, `file`; `model` (the artifact, checked against the registered
    sha256) unless the artifact URI is in mlgov's object store, or `predict_url` for any model behind an
    HTTP endpoint (permutation SHAP); `baseline` (CSV reference rows; default: k-means summary of the data
    into `num_clusters`); `model_format` (skops, xgboost, lightgbm, onnx; pickle/joblib only when
    an admin trusted the version); `agg_method`; `label` to drop."""
    store, req = request.app.state.get_store(), _explain_request(parts)
    return _analysis_response(await computed_then_recorded(
        request, session, lambda: service.compute_explanation(session, store, policy, req),
        lambda writer, done: service.record_explanation(writer, store, req, done, principal)))


@router.get("/explanations/{analysis_id}/rows", response_model=ExplanationRowsPage,
            responses=alternatives("text/csv"))
def explanation_rows(analysis_id: AnalysisId, request: Request, _: Reader, limit: Limit = 50, offset: Offset = 0,
                     fmt: Annotated[Literal["json", "csv"] | None, Query(alias="format", description=(
                         "json or csv; default: the Accept header's preference, else json"))] = None) -> Any:
    """Per-row SHAP values of an explanation, a page at a time; each row's values plus expected_value add up to
    the model output in output_space. CSV: a `row` column then one column per feature, the total in X-Total-Count."""
    rows = service.explanation_rows(request.app.state.get_store(), analysis_id, limit, offset)
    if fmt == "csv" or (fmt is None and _wants_csv(request.headers.get("accept", ""))):
        return Response(rows.frame.to_csv(index_label="row").encode(), media_type="text/csv",
                        headers={"X-Total-Count": str(rows.total)})
    return {**page(rows.items(), rows.total, limit, offset), "output_space": rows.output_space,
            "expected_value": rows.expected_value}
