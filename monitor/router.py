"""Monitoring HTTP routes: baselines, analyses, endpoints and capture."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mlgov import inputs
from mlgov.api import Limit, Offset, Page, form_parts, page
from mlgov.auth import (
    ADMINS,
    INGESTERS,
    PUBLISHERS,
    READERS,
    Principal,
    ReadSessionDep,
    SessionDep,
    computed_then_recorded,
    get_db,
    require,
    require_reading,
)
from mlgov.db import as_utc
from mlgov.errors import DomainError, Invalid, NotFound
from mlgov.openapi import BINARY, alternatives, model_schema, request_body
from mlgov.outbound import OutboundDep
from mlgov.secrets import SecretsDep
from mlgov.storage import ObjectStore, StoreDep
from mlgov.web import Router
from monitor import definitions, group_commit, kinds, schedules, service
from monitor.engine.analysis import DriftConfig
from monitor.orm import Alert, Analysis
from monitor.schemas import (
    AlertRead,
    AlertResolve,
    AnalysisRead,
    AttachBaseline,
    AttachedBaseline,
    BaselineRead,
    CaptureResult,
    DriftSettings,
    EndpointCreate,
    EndpointRead,
    EstimateRequest,
    ExecutionRead,
    GroundTruthResult,
    RunWindow,
    ScheduleCreate,
    SchedulePage,
    ScheduleRead,
    ScheduleUpdate,
    TriggerRead,
    TriggerSet,
    WindowAnalysis,
)
from registry import service as registry

router = Router(prefix="/api/v1", tags=["monitoring"])
Reader = Annotated[Principal, Depends(require(READERS))]
Writer = Annotated[Principal, Depends(require(PUBLISHERS))]
ReadingIngester = Annotated[Principal, Depends(require_reading(INGESTERS))]
ReadingWriter = Annotated[Principal, Depends(require_reading(PUBLISHERS))]   # computes, then writes
JSON_TYPE = "application/json"




Parts = Annotated[dict[str, Any], Depends(form_parts)]


# --- request bodies read through form_parts (declared here because FastAPI cannot infer them) ------------------

_FORMAT = {"type": "string", "enum": ["csv", "parquet"], "description": "default: from the file name, else csv"}
_URI = {"type": "string", "minLength": 1, "description": "a dataset in mlgov's object store (s3://… or a key)"}
_HEADER = {"type": "boolean", "description": "whether the CSV has a header row (default true)"}
_BASELINE_FORM = request_body(
    multipart={
        "type": "object",
        "anyOf": [{"required": ["file"]}, {"required": ["statistics", "constraints"]}, {"required": ["dataset_uri"]}],
        "properties": {
            "file": {**BINARY, "description": "the dataset: CSV with header, or Parquet"},
            "statistics": {**BINARY, "description": "SageMaker statistics.json (import, with constraints)"},
            "constraints": {**BINARY, "description": "SageMaker constraints.json (import, with statistics)"},
            "dataset_uri": _URI,
            "name": {"type": "string", "maxLength": 128},
            "type": {"$ref": "#/components/schemas/MonitorType", "description": "default DataQuality"},
            "format": _FORMAT,
            "header": _HEADER,
            "problem_type": {"type": "string", "enum": ["BinaryClassification", "MulticlassClassification",
                                                        "Regression"], "description": "ModelQuality"},
            "label": {"type": "string", "description": "label column (ModelQuality, ModelExplainability)"},
            "prediction": {"type": "string", "description": "prediction column (ModelQuality)"},
            "probability": {"type": "string", "description": "probability column (ModelQuality)"},
            "threshold": {"type": "number", "description": "probability threshold (ModelQuality, default 0.5)"},
            "config": {**BINARY, "description": "SageMaker analysis_config.json (ModelBias)"},
            "model_group": {"type": "string", "description": "ModelExplainability: the explained version's group"},
            "model_version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                              "description": "ModelExplainability"},
            "model_format": {"type": "string", "enum": ["skops", "xgboost", "lightgbm", "onnx", "pickle", "joblib"]},
            "model": {**BINARY, "description": "the model artifact, checked against the registered sha256"},
            "ndcg_threshold": {"type": "number", "description": "ModelExplainability (default 0.9)"},
            "class_probabilities": {"type": "string", "maxLength": 65536, "description":
                                    "ModelQuality multiclass: class:column,… each class's probability column, "
                                    "for the label-free estimate (CBPE one-vs-rest)"},
            "features": {"type": "string", "maxLength": 65536, "description":
                         "ModelQuality regression: column,… the loss model of the label-free estimate (DLE) reads"},
        },
    },
    json_body={"type": "object", "required": ["dataset_uri"],
               "properties": {"dataset_uri": _URI, "name": {"type": "string", "maxLength": 128},
                              "format": _FORMAT, "header": _HEADER}},
    description="a dataset to compute a baseline from (`file` or `dataset_uri`, not both), or SageMaker `statistics` + "
                "`constraints` to import; `type` selects model-quality, bias or explainability baselines",
)
_ANALYSIS_FORM = request_body(
    multipart={
        "type": "object", "required": ["baseline_id"],
        "anyOf": [{"required": ["file"]}, {"required": ["dataset_uri"]}],
        "properties": {
            "baseline_id": {"type": "string", "minLength": 1},
            "file": {**BINARY, "description": "the dataset to check: CSV with header, or Parquet"},
            "dataset_uri": _URI,
            "format": _FORMAT,
            "header": _HEADER,
            "drift": {"type": "string", "description": "DriftSettings as JSON"},
        },
    },
    json_body={"anyOf": [
        model_schema(WindowAnalysis),
        {"type": "object", "required": ["baseline_id", "dataset_uri"],
         "properties": {"baseline_id": {"type": "string", "minLength": 1}, "dataset_uri": _URI,
                        "format": _FORMAT, "header": _HEADER,
                        "drift": {"$ref": "#/components/schemas/DriftSettings"}}},
    ]},
    description="a dataset (`file` or `dataset_uri`) checked against a baseline, or (JSON) an endpoint's "
                "captured window",
)
_RECORDS = request_body(
    json_body={"type": "array", "items": {
        "description": "a SageMaker record (object); any item that is not a valid record is answered under "
                       "`rejected` with its index and reason, and not stored"}},
    ndjson=True,
    description="SageMaker records as a JSON array, or JSON Lines with Content-Type: application/x-ndjson",
)
_CONSTRAINTS = request_body(json_body={
    "type": "object", "required": ["features"], "description": "SageMaker constraints.json",
    "properties": {"features": {"type": "array", "items": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}}}})
_EXPECTATIONS = request_body(json_body={
    "type": "object", "required": ["expectations"], "description": "a Great Expectations ExpectationSuite",
    "properties": {"name": {"type": "string"}, "expectations": {"type": "array", "items": {
        "type": "object", "properties": {"type": {"type": "string"}, "expectation_type": {"type": "string"}},
        "anyOf": [{"required": ["type"], "properties": {"type": {"minLength": 1}}},
                  {"required": ["expectation_type"], "properties": {"expectation_type": {"minLength": 1}}}]}}}})


# --- baselines ------------------------------------------------------------------------------------------------

@router.post("/baselines", response_model=BaselineRead, status_code=201, openapi_extra=_BASELINE_FORM)
async def create_baseline(actor: ReadingWriter, session: ReadSessionDep, store: StoreDep, form: Parts,
                          request: Request) -> Any:
    """Multipart: `file` (CSV with header, or Parquet) → computed baseline; or `statistics` + `constraints`
    (SageMaker JSON files) → imported baseline; or a `dataset_uri` in the object store."""
    if "__json__" in form:
        form = form["__json__"]
    name = form.get("name") if isinstance(form.get("name"), str) else None
    requested = form.get("type", "DataQuality")
    if requested not in kinds.names():
        raise Invalid(f"baseline type {requested!r} is not {kinds.listed()}",
                      fix="omit type for a data-quality baseline")
    kind = kinds.get(requested)
    return await computed_then_recorded(
        request, session, lambda: kind.create_baseline(session, store, form, name, actor),
        lambda writer, done: done.record(writer))


@router.get("/baselines", response_model=Page[BaselineRead])
def list_baselines(session: SessionDep, _: Reader, limit: Limit = 50, offset: Offset = 0) -> Any:
    return page(*service.list_baselines(session, limit, offset), limit, offset)


@router.get("/baselines/{baseline_id}", response_model=BaselineRead)
def get_baseline(baseline_id: str, session: SessionDep, _: Reader) -> Any:
    return service.get_baseline(session, baseline_id)


@router.get("/baselines/{baseline_id}/{name}", response_model=None)
def baseline_file(baseline_id: str,
                  name: Literal["statistics.json", "constraints.json", "gx-suite.json", "expectations.json"],
                  session: SessionDep, store: StoreDep, _: Reader) -> Response:
    if name == "gx-suite.json":
        body = json.dumps(service.gx_suite(session, store, baseline_id)).encode()
    else:
        body = service.baseline_file(session, store, baseline_id, name)
    return Response(body, media_type=JSON_TYPE)


def _document(stored: dict[str, Any]) -> Response:
    """A baseline document as stored, answered to the PUT that replaced it."""
    return Response(json.dumps(stored).encode(), media_type=JSON_TYPE)


@router.put("/baselines/{baseline_id}/constraints.json", response_model=None, openapi_extra=_CONSTRAINTS)
async def put_constraints(baseline_id: str, request: Request, session: SessionDep, store: StoreDep,
                          actor: Writer) -> Response:
    body = await request.body()
    return _document(await run_in_threadpool(service.update_constraints, session, store, baseline_id, body, actor))


@router.put("/baselines/{baseline_id}/expectations.json", response_model=None, openapi_extra=_EXPECTATIONS)
async def put_expectations(baseline_id: str, request: Request, session: SessionDep, store: StoreDep,
                           actor: Writer) -> Response:
    """Attach a Great Expectations suite; analyses against this baseline run it as an extra check."""
    body = await request.body()
    return _document(await run_in_threadpool(service.put_expectations, session, store, baseline_id, body, actor))


@router.post("/model-groups/{group}/versions/{version}/drift-baseline", response_model=AttachedBaseline,
             tags=["registry"])
def attach_baseline(group: str, version: int, body: AttachBaseline, session: SessionDep, store: StoreDep,
                    actor: Writer) -> Any:
    return service.attach_baseline(session, store, group, version, body.baseline_id, actor)


@router.get("/model-groups/{group}/versions/{version}/drift-baseline", response_model=AttachedBaseline,
            tags=["registry"])
def get_attached_baseline(group: str, version: int, session: SessionDep, _: Reader) -> Any:
    registry.get_version(session, group, version)
    link = service.version_baseline(session, group, version)
    if link is None:
        raise NotFound(f"{group} version {version} has no drift baseline attached",
                      fix=f"POST /api/v1/model-groups/{group}/versions/{version}/drift-baseline")
    return link


# --- analyses ---------------------------------------------------------------------------------------------------

def _read(row: Analysis, store: ObjectStore, full: bool) -> AnalysisRead:
    return AnalysisRead(id=row.id, kind=row.kind, status=row.status, failure_reason=row.failure_reason,
                        baseline_id=row.baseline_id,
                        source=row.source, dataset_uri=row.dataset_uri, endpoint=row.endpoint,
                        window_start=row.window_start, window_end=row.window_end, rows=row.row_count,
                        violation_count=row.violation_count, drift_share=row.drift_share,
                        dataset_drift=row.dataset_drift, drifted_features=list(row.drifted_features or []),
                        duration_ms=row.duration_ms, created_by=row.created_by, created_at=row.created_at,
                        **(service.analysis_results(store, row) if full else {}))


def _drift(settings: DriftSettings | None) -> DriftConfig | None:
    return service.drift_config(settings.model_dump() if settings else None)


@router.post("/analyses", response_model=AnalysisRead, status_code=201, openapi_extra=_ANALYSIS_FORM)
async def create_analysis(actor: ReadingWriter, session: ReadSessionDep, store: StoreDep, form: Parts,
                          request: Request) -> Any:
    """Multipart with `baseline_id` and a `file` (or `dataset_uri`); or JSON with baseline_id, endpoint, start,
    end for a captured window. The result carries SageMaker's violations and the drift table."""
    row = await computed_then_recorded(request, session, lambda: _analysis_of(session, store, form, actor),
                                       lambda writer, done: done.record(writer))
    return await run_in_threadpool(_read, row, store, True)


def _analysis_of(session: Session, store: ObjectStore, form: dict[str, Any], actor: Principal) -> service.Finished:
    """The analysis a POST /analyses form asks for, computed (reading the database only)."""
    if "__json__" in form:
        body = form["__json__"]
        if "endpoint" not in body and "dataset_uri" in body:
            form = body
        else:
            try:
                req = WindowAnalysis.model_validate(body)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            start, end = as_utc(req.start) or req.start, as_utc(req.end) or req.end
            window = kinds.Window(baseline_id=req.baseline_id, endpoint=req.endpoint, start=start, end=end,
                                  drift=req.drift.model_dump() if req.drift else None)
            return kinds.get(req.type).run_window(session, store, window, actor)
    baseline_id = form.get("baseline_id")
    if not isinstance(baseline_id, str) or not baseline_id:
        raise Invalid("baseline_id is required", fix="send the id returned by POST /api/v1/baselines")
    drift = None
    if form.get("drift"):
        raw = form["drift"]
        try:
            drift = DriftSettings.model_validate(inputs.loads(raw, "drift") if isinstance(raw, str) else raw)
        except ValidationError as exc:      # the same answer as a JSON body's field errors, under `drift.`
            raise RequestValidationError([{**e, "loc": ("drift", *e["loc"])} for e in exc.errors()]) from None
    up = kinds.file_part(form, "file")
    uri = form.get("dataset_uri")
    if up is None and not uri:
        raise Invalid("no data to analyse", fix="send a `file` part or a `dataset_uri`, or use the JSON window form")
    _one_source(form, "file" if up is not None else "dataset_uri")
    data, filename = up if up else (service.read_dataset_uri(store, str(uri)), str(uri))
    if service.get_baseline(session, baseline_id).kind == "ModelQuality":
        return service.quality_file(session, store, baseline_id=baseline_id, data=data,
                                    fmt=kinds.table_format(filename, form.get("format")),
                                    header=kinds.flag(form, "header", True), actor=actor)
    return service.analyze_file(session, store, baseline_id=baseline_id, data=data,
                                fmt=kinds.table_format(filename, form.get("format")),
                                header=kinds.flag(form, "header", True), dataset_uri=str(uri) if uri else None,
                                config=_drift(drift), actor=actor)


def _one_source(form: dict[str, Any], given: str) -> None:
    """A form naming a dataset and an endpoint window is refused: one would be silently ignored (it was the
    window, so a user who meant it got an analysis of the file)."""
    window = [k for k in ("endpoint", "start", "end") if form.get(k) not in (None, "")]
    if window:
        raise Invalid(f"both `{given}` and `{'`, `'.join(window)}` were given; an analysis reads either a dataset "
                      "or an endpoint's captured window, not both",
                      fix=f"send either the `{given}` (without endpoint, start and end) or the window alone, as JSON "
                          '{"baseline_id", "endpoint", "start", "end"}')


@router.get("/analyses", response_model=Page[AnalysisRead])
def list_analyses(session: SessionDep, store: StoreDep, _: Reader, baseline_id: str | None = None,
                  endpoint: str | None = None,
                  status: Literal["Completed", "CompletedWithViolations", "Failed"] | None = None,
                  limit: Limit = 50, offset: Offset = 0) -> Any:
    rows, total = service.list_analyses(session, baseline_id=baseline_id, endpoint=endpoint, status=status,
                                        limit=limit, offset=offset)
    return page([_read(r, store, False) for r in rows], total, limit, offset)


@router.get("/analyses/{analysis_id}", response_model=None, responses=alternatives("text/html"))
def get_analysis(analysis_id: str, session: SessionDep, store: StoreDep, _: Reader,
                 format: Literal["json", "html"] = "json") -> Any:
    """The stored analysis; ``format=html`` renders the readable report."""
    if format == "html":
        return HTMLResponse(kinds.analysis_html(session, store, analysis_id))
    return _read(service.get_analysis(session, analysis_id), store, True)


@router.get("/analyses/{analysis_id}/report", response_model=None, responses=alternatives("text/html"))
def analysis_report(analysis_id: str, session: SessionDep, store: StoreDep, _: Reader,
                    format: Literal["html", "json"] = "html") -> Any:
    if format == "json":
        return kinds.analysis_report(session, store, analysis_id)
    return HTMLResponse(kinds.analysis_html(session, store, analysis_id))


@router.get("/analyses/{analysis_id}/evidently-snapshot", response_model=None)
def analysis_evidently_snapshot(analysis_id: str, session: SessionDep, store: StoreDep, _: Reader) -> Any:
    """A drift analysis as an Evidently 0.7 snapshot (its ``Snapshot`` JSON), built from mlgov's stored results:
    ``Snapshot.load`` reads it, and ``Workspace(path).add_run(project_id, snapshot)`` puts it in a project that
    ``evidently ui --workspace path`` shows (drifted-column count and share, each column's drift score)."""
    return service.evidently_snapshot(session, store, analysis_id)


@router.get("/analyses/{analysis_id}/{name}", response_model=None)
def analysis_file(analysis_id: str,
                  name: Literal["constraint_violations.json", "statistics.json", "drift.json", "expectations.json",
                                "constraints.json"],
                  session: SessionDep, store: StoreDep, _: Reader) -> Response:
    """A result file of the analysis; ``constraints.json``: the constraints a model-quality run was judged against
    (its copy of its baseline's, as it read them)."""
    row = service.get_analysis(session, analysis_id)
    if row.status == "Failed" and name != "constraint_violations.json":
        raise Invalid(f"analysis {analysis_id} failed ({row.failure_reason}); it has no {name}",
                      fix="fix the cause and run a new analysis")
    return Response(service.analysis_file(session, store, analysis_id, name), media_type=JSON_TYPE)


# --- endpoints and capture -----------------------------------------------------------------------------------

@router.post("/endpoints", response_model=EndpointRead, status_code=201, response_model_by_alias=True)
def create_endpoint(body: EndpointCreate, session: SessionDep, actor: Writer) -> Any:
    return service.create_endpoint(session, name=body.name, model_group=body.model_group,
                                   model_version=body.model_version, variant=body.variant,
                                   sampling_percentage=body.sampling_percentage, schema=body.schema_, actor=actor)


@router.get("/endpoints", response_model=Page[EndpointRead], response_model_by_alias=True)
def list_endpoints(session: SessionDep, _: Reader, limit: Limit = 50, offset: Offset = 0) -> Any:
    return page(*service.list_endpoints(session, limit, offset), limit, offset)


@router.get("/endpoints/{name}", response_model=EndpointRead, response_model_by_alias=True)
def get_endpoint(name: str, session: SessionDep, _: Reader) -> Any:
    return service.get_endpoint(session, name)


@router.post("/endpoints/{name}/capture", response_model=CaptureResult, openapi_extra=_RECORDS)
async def capture(name: str, request: Request, session: ReadSessionDep, store: StoreDep,
                  _: ReadingIngester) -> Any:
    """SageMaker capture records as a JSON array or JSON Lines (application/x-ndjson).

    Parsing and validation run on the read session. The records are then stored (fsynced or PUT) and indexed
    together with those of other requests to the endpoint arriving meanwhile (`group_commit`), in one short write
    turn, committed before the answer."""
    body = await request.body()

    def read() -> service.PreparedCapture:
        prep = service.read_capture(session, name, body, request.headers.get("content-type", JSON_TYPE),
                                    parsed_body=inputs.parsed_body(request))
        session.commit()    # the read transaction ends here, not after the group's write (no snapshot held)
        return prep

    prep = await run_in_threadpool(read)
    return await group_commit.commit(get_db(request), store, prep)


@router.post("/endpoints/{name}/ground-truth", response_model=GroundTruthResult, openapi_extra=_RECORDS)
async def ground_truth(name: str, request: Request, session: ReadSessionDep, store: StoreDep,
                       principal: ReadingIngester,
                       replace: Annotated[bool, Query(description=(
                           "replace labels already stored for these ids (a correction; audited, the old labels "
                           "kept in the store); otherwise a resent id is a duplicate"))] = False) -> Any:
    """SageMaker ground-truth records (groundTruthData, eventMetadata.eventId) as a JSON array or JSON Lines,
    parsed and checked on the read session, stored in a short write turn."""
    body, ctype = await request.body(), request.headers.get("content-type", JSON_TYPE)
    return await computed_then_recorded(
        request, session, lambda: service.prepare_ground_truth(session, name, body, ctype),
        lambda writer, prep: service.commit_ground_truth(writer, store, prep, replace=replace, actor=principal))


@router.post("/endpoints/{name}/performance-estimate")
def performance_estimate(name: str, body: EstimateRequest, session: SessionDep, store: StoreDep,
                         _: Reader) -> dict[str, Any]:
    """Label-free estimate with 95% bands: CBPE for classifiers (accuracy, precision, recall, specificity, F1,
    ROC AUC; multiclass one-vs-rest, macro) and direct loss estimation for regressors (MAE, MSE, RMSE). Each metric
    says whether and how scores were calibrated, and carries ``realised`` and ``within_band`` once labels arrive."""
    start, end = as_utc(body.start) or body.start, as_utc(body.end) or body.end
    return service.performance_estimate(session, store, name, start, end, body.threshold, body.baseline_id)


@router.get("/endpoints/{name}/capture/summary")
def capture_summary(name: str, session: SessionDep, _: Reader) -> dict[str, Any]:
    return {"endpoint": name, "records": service.captured_count(session, name)}


# --- schedules, executions, alerts, retraining ------------------------------------------------------------------

@router.post("/monitoring-schedules", response_model=ScheduleRead, status_code=201)
def create_schedule(body: ScheduleCreate, session: SessionDep, actor: Writer) -> Any:
    return schedules.create(session, name=body.name, endpoint=body.endpoint, monitoring_type=body.type.root,
                            expression=body.schedule, baseline_id=body.baseline_id,
                            window_start=body.window.get("start", "-PT1H"), window_end=body.window.get("end", "PT0S"),
                            drift=body.drift.model_dump() if body.drift else None,
                            alerting=body.alerting.model_dump() if body.alerting else None, actor=actor)


@router.get("/monitoring-schedules", response_model=SchedulePage)
def list_schedules(session: SessionDep, _: Reader, limit: Limit = 50, offset: Offset = 0) -> Any:
    rows, total, scheduler = schedules.list_schedules(session, limit, offset)
    return {**page(rows, total, limit, offset), "scheduler": scheduler}


@router.get("/monitoring-schedules/{name}", response_model=ScheduleRead)
def get_schedule(name: str, session: SessionDep, _: Reader) -> Any:
    return schedules.get(session, name)


@router.patch("/monitoring-schedules/{name}", response_model=ScheduleRead)
def update_schedule(name: str, body: ScheduleUpdate, session: SessionDep, actor: Writer) -> Any:
    fields: dict[str, Any] = {}
    if body.schedule is not None:
        fields["expression"] = body.schedule
    if body.baseline_id is not None:
        fields["baseline_id"] = body.baseline_id
    if body.window:
        fields.update({f"window_{k}": v for k, v in body.window.items()})
    if body.drift is not None:
        fields["drift"] = body.drift.model_dump()
    if body.alerting is not None:
        fields["alerting"] = body.alerting.model_dump()
    return schedules.update(session, name, fields, actor)


@router.post("/monitoring-schedules/{name}/stop", response_model=ScheduleRead)
def stop_schedule(name: str, session: SessionDep, actor: Writer) -> Any:
    return schedules.set_status(session, name, "Stopped", actor)


@router.post("/monitoring-schedules/{name}/start", response_model=ScheduleRead)
def start_schedule(name: str, session: SessionDep, actor: Writer) -> Any:
    return schedules.set_status(session, name, "Scheduled", actor)


@router.delete("/monitoring-schedules/{name}", status_code=204)
def delete_schedule(name: str, session: SessionDep, actor: Writer) -> Response:
    schedules.delete(session, name, actor)
    return Response(status_code=204)


@router.post("/monitoring-schedules/{name}/run", response_model=ExecutionRead, status_code=201)
async def run_schedule(name: str, body: RunWindow, session: ReadSessionDep, store: StoreDep, actor: ReadingWriter,
                       request: Request) -> Any:
    start, end = as_utc(body.start) or body.start, as_utc(body.end) or body.end
    # the labels uploaded to its job definition's GroundTruthS3Input first, as a scheduled run reads them
    # (`jobs.import_labels`): each file read on the read session and stored in a write turn of its own
    todo = await run_in_threadpool(definitions.manual_label_import, session, store, name, start, end, actor)
    if todo is not None:
        failures = []
        for key in await run_in_threadpool(service.label_files, store, todo.folder, todo.since):
            try:
                await computed_then_recorded(
                    request, session, functools.partial(service.read_label_file, session, store, todo.endpoint, key),
                    lambda writer, prep: service.commit_ground_truth(writer, store, prep))
            except DomainError as exc:   # this file only: the next ones are still read
                failures.append(exc)
        await computed_then_recorded(request, session, lambda: todo,
                                     lambda writer, done: definitions.labels_imported(writer, store, done))
        if failures:
            raise service.unreadable_labels(failures)
    return await computed_then_recorded(
        request, session, lambda: schedules.compute_now(session, store, name, start, end, actor),
        lambda writer, done: schedules.record_now(writer, store, name, *done, actor))


@router.get("/monitoring-schedules/{name}/executions", response_model=Page[ExecutionRead])
def list_executions(name: str, session: SessionDep, _: Reader, limit: Limit = 50, offset: Offset = 0) -> Any:
    return page(*schedules.executions(session, name, limit, offset), limit, offset)


def _alert(row: Alert, schedule: str) -> AlertRead:
    return AlertRead.model_validate({**{k: getattr(row, k) for k in AlertRead.model_fields if k != "schedule"},
                                     "schedule": schedule})


@router.get("/alerts", response_model=Page[AlertRead])
def list_alerts(session: SessionDep, _: Reader,
                status: Annotated[Literal["open", "resolved"] | None, Query(
                    description="open or resolved; leave it out for both")] = None,
                schedule: str | None = None, model_group: str | None = None, limit: Limit = 50,
                offset: Offset = 0) -> Any:
    rows, total = schedules.list_alerts(session, status=status, schedule=schedule, model_group=model_group,
                                        limit=limit, offset=offset)
    names = schedules.schedule_names(session, {a.schedule_id for a in rows})
    return page([_alert(a, names[a.schedule_id]) for a in rows], total, limit, offset)


@router.get("/alerts/{alert_id}", response_model=AlertRead)
def get_alert(alert_id: str, session: SessionDep, _: Reader) -> Any:
    alert, sched = schedules.get_alert(session, alert_id)
    return _alert(alert, sched.name)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertRead)
def resolve_alert(alert_id: str, body: AlertResolve, session: SessionDep, actor: Writer) -> Any:
    """Close an open alert by hand, saying why: its schedule's owner or an admin (409 if it is not open)."""
    alert, sched = schedules.resolve_alert(session, alert_id, body.reason, actor)
    return _alert(alert, sched.name)


@router.put("/model-groups/{group}/retraining-trigger", response_model=TriggerRead, tags=["registry"])
def set_retraining_trigger(group: str, body: TriggerSet, session: SessionDep,
                           actor: Annotated[Principal, Depends(require(ADMINS))], policy: OutboundDep,
                           box: SecretsDep) -> Any:
    return schedules.set_trigger(session, group, url=body.url, secret=body.secret,
                                 cooldown_seconds=body.cooldown_seconds, actor=actor, policy=policy, box=box)


@router.delete("/model-groups/{group}/retraining-trigger", status_code=204, tags=["registry"])
def delete_retraining_trigger(group: str, session: SessionDep,
                              actor: Annotated[Principal, Depends(require(ADMINS))]) -> Response:
    schedules.delete_trigger(session, group, actor=actor)
    return Response(status_code=204)


metrics_router = Router(tags=["monitoring"])


@metrics_router.get("/metrics", response_model=None, response_class=PlainTextResponse)
def prometheus_metrics(session: SessionDep, store: StoreDep, _: Reader) -> Response:
    """Prometheus text format (scrape with a viewer key as bearer token)."""
    return Response(schedules.prometheus(session, store), media_type=CONTENT_TYPE_LATEST)
