"""Monitoring's SDK methods: baselines, analyses, endpoints, capture and ground truth, schedules, executions,
alerts, retraining triggers and the Prometheus metrics.

They return the models monitoring's routes return (``monitor.schemas``). Capture and ground truth take SageMaker's
records as they are, or a DataFrame that ``capture_records`` / ``ground_truth_records`` turn into them, sent in
batches so a large frame never meets the server's body limit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import pandas as pd

from mlgov.sdk import (
    UNSET,
    BaseClient,
    Call,
    Document,
    Pager,
    Unset,
    Upload,
    body,
    document,
    iso,
    route,
    upload,
)
from monitor.capture import CaptureSchema
from monitor.schemas import (
    AlertRead,
    AnalysisRead,
    AttachedBaseline,
    BaselineRead,
    CaptureResult,
    DriftSettings,
    EndpointRead,
    ExecutionRead,
    GroundTruthResult,
    ScheduleRead,
    TriggerRead,
)

Time = dt.datetime | str
JSON = dict[str, Any]
Records: TypeAlias = Sequence[Mapping[str, Any]] | pd.DataFrame | bytes | str | os.PathLike[str]
"""SageMaker records (a list of dicts), a DataFrame (see ``capture_records`` / ``ground_truth_records``), or a
JSON array or JSON Lines document as bytes or a path (``.jsonl``/``.ndjson`` files are sent as JSON Lines)."""
Result = TypeVar("Result", CaptureResult, GroundTruthResult)
Progress = Callable[[int, int], None]
"""Called after each batch with (records sent, records in all)."""
Drift = DriftSettings | Mapping[str, Any]
BASELINE_FILES = Literal["statistics.json", "constraints.json", "gx-suite.json", "expectations.json"]
ANALYSIS_FILES = Literal["constraint_violations.json", "statistics.json", "drift.json", "expectations.json"]
META = ("event_id", "inference_id", "inference_time")


def _rows(frame: pd.DataFrame) -> list[JSON]:
    """Rows as plain JSON values (numpy scalars → numbers, NaN → null, times → ISO-8601)."""
    rows: list[JSON] = json.loads(frame.to_json(orient="records", date_format="iso", date_unit="s"))
    return rows


def capture_records(frame: pd.DataFrame, *, outputs: Sequence[str] = ("prediction", "probability"),
                    inference_time: Time | None = None) -> list[JSON]:
    """SageMaker capture records, one per row. The columns named in ``outputs`` are the model's answer, the
    others its input, both JSON-encoded objects (the endpoint's schema picks features and outputs by name, so
    column order does not matter). Optional columns: ``event_id`` (default a fresh UUID; give stable ids to make
    a re-send idempotent), ``inference_id`` (the key ground truth joins on) and ``inference_time`` (default the
    ``inference_time`` argument, else now)."""
    default_time = iso(inference_time or dt.datetime.now(dt.UTC))
    out_cols = [c for c in frame.columns if c in outputs]
    in_cols = [c for c in frame.columns if c not in outputs and c not in META]
    records = []
    for row in _rows(frame):
        meta = {"eventId": str(row.get("event_id") or uuid.uuid4()),
                "inferenceTime": str(row.get("inference_time") or default_time)}
        if row.get("inference_id") is not None:
            meta["inferenceId"] = str(row["inference_id"])
        capture = {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "encoding": "JSON",
                                     "data": json.dumps({c: row[c] for c in in_cols})}}
        if out_cols:
            capture["endpointOutput"] = {"observedContentType": "application/json", "mode": "OUTPUT",
                                         "encoding": "JSON", "data": json.dumps({c: row[c] for c in out_cols})}
        records.append({"captureData": capture, "eventMetadata": meta, "eventVersion": "0"})
    return records


def ground_truth_records(labels: pd.DataFrame | Mapping[str, Any], *, label: str = "label") -> list[JSON]:
    """SageMaker ground-truth records from ``{id: label}`` or a DataFrame with an ``inference_id`` (else
    ``event_id``) column and a ``label`` column: the id is the captured request's inferenceId, else its eventId."""
    if isinstance(labels, pd.DataFrame):
        key = "inference_id" if "inference_id" in labels.columns else "event_id"
        if key not in labels.columns or label not in labels.columns:
            raise ValueError(f"ground truth needs an inference_id (or event_id) column and a {label!r} column; "
                             f"the frame has {list(labels.columns)}")
        pairs = [(str(r[key]), r[label]) for r in _rows(labels[[key, label]])]
    else:
        pairs = [(str(k), v.item() if hasattr(v, "item") else v) for k, v in labels.items()]   # numpy scalars
    return [{"groundTruthData": {"data": json.dumps(value), "encoding": "JSON"}, "eventMetadata": {"eventId": eid},
             "eventVersion": "0"} for eid, value in pairs]


def _document_body(records: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """A records document and its Content-Type: JSON Lines for .jsonl/.ndjson files or bytes not starting with '['."""
    if isinstance(records, bytes):
        lines = not records.lstrip().startswith(b"[")
    else:
        lines = Path(records).suffix.lower() in (".jsonl", ".ndjson", ".jsonlines")
    data = records if isinstance(records, bytes) else document(records)
    return data, "application/x-ndjson" if lines else "application/json"


def _added(total: Result, batch: Result, offset: int) -> Result:
    """Two batches' answers as one: counts add up, rejections keep indexes into the whole input, id lists keep
    their first 100 (as the server's own answer does)."""
    values: JSON = {}
    for name in type(total).model_fields:
        mine, theirs = getattr(total, name), getattr(batch, name)
        if name == "rejected":
            theirs = [{**r, "index": r["index"] + offset} if isinstance(r.get("index"), int) else r for r in theirs]
        values[name] = (mine + theirs)[:100] if isinstance(mine, list) and name != "rejected" else mine + theirs
    return type(total).model_validate(values)


def _post_records(call: Call, endpoint: str, records: Sequence[Mapping[str, Any]] | bytes | str | os.PathLike[str],
                  result: type[Result], batch_size: int, progress: Progress | None,
                  params: Mapping[str, Any] | None = None) -> Result:
    """A records document as it is, or a list of records ``batch_size`` at a time, the answers added up."""
    if isinstance(records, bytes | str | os.PathLike):
        data, ctype = _document_body(records)
        return call.model(result, {"name": endpoint}, content=data, content_type=ctype, params=params)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")

    def send(start: int) -> Result:
        answer = call.model(result, {"name": endpoint}, json=list(records[start:start + batch_size]), params=params)
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
        return answer

    total = send(0)
    for start in range(batch_size, len(records), batch_size):
        total = _added(total, send(start), start)
    return total


class MonitorClient(BaseClient):
    """Baselines, analyses, endpoints, capture, ground truth, schedules, executions, alerts, retraining."""

    # baselines
    @route("POST", "/api/v1/baselines")
    def create_baseline(self, call: Call, data: Upload | None = None, *, name: str | None = None,
                        type: str | None = None, format: str | None = None, header: bool | None = None,
                        dataset_uri: str | None = None, statistics: Document | None = None,
                        constraints: Document | None = None, problem_type: str | None = None,
                        label: str | None = None, prediction: str | None = None, probability: str | None = None,
                        threshold: float | None = None, config: Document | None = None,
                        model_group: str | None = None, model_version: int | None = None,
                        model_format: str | None = None, model: Upload | None = None,
                        ndcg_threshold: float | None = None, class_probabilities: Mapping[str, str] | None = None,
                        features: Sequence[str] | None = None) -> BaselineRead:
        """A baseline from ``data`` (CSV with header or Parquet; a DataFrame is sent as CSV unless
        ``format="parquet"``) or a ``dataset_uri`` in the object store; or SageMaker ``statistics`` +
        ``constraints`` files imported as they are. ``type`` is DataQuality (default), ModelQuality
        (``problem_type``, ``label``, ``prediction``/``probability``, ``threshold``), ModelBias (``config``:
        analysis_config.json) or ModelExplainability (``model_group``, ``model_version``, ``model``/``model_format``,
        ``label``, ``ndcg_threshold``). For the label-free estimate, a multiclass ModelQuality baseline names each
        class's probability column (``class_probabilities``: class → column) and a regression one the features its
        loss model reads (``features``)."""
        files = {}
        if data is not None:
            files["file"] = upload(data, name=name or "data", format=format, header=header is not False)
        for part, doc in (("statistics", statistics), ("constraints", constraints), ("config", config)):
            if doc is not None:
                files[part] = (f"{part}.json", document(doc), "application/json")
        if model is not None:
            files["model"] = upload(model, name="model", format=model_format or "skops")
        return call.model(BaselineRead, data={
            "name": name, "type": type, "format": format, "header": header, "dataset_uri": dataset_uri,
            "problem_type": problem_type, "label": label, "prediction": prediction, "probability": probability,
            "threshold": threshold, "model_group": model_group, "model_version": model_version,
            "model_format": model_format, "ndcg_threshold": ndcg_threshold,
            "class_probabilities": ",".join(f"{k}:{v}" for k, v in class_probabilities.items())
            if class_probabilities else None,
            "features": ",".join(features) if features else None}, files=files)

    @route("GET", "/api/v1/baselines")
    def list_baselines(self, call: Call, *, page_size: int = 100) -> Pager[BaselineRead]:
        return call.pager(BaselineRead, page_size=page_size)

    @route("GET", "/api/v1/baselines/{baseline_id}")
    def get_baseline(self, call: Call, baseline_id: str) -> BaselineRead:
        return call.model(BaselineRead, {"baseline_id": baseline_id})

    @route("GET", "/api/v1/baselines/{baseline_id}/{name}")
    def get_baseline_file(self, call: Call, baseline_id: str, name: BASELINE_FILES) -> dict[str, Any]:
        """SageMaker's statistics.json or constraints.json, the GX suite made from them, or the attached one."""
        return call.json({"baseline_id": baseline_id, "name": name})

    @route("PUT", "/api/v1/baselines/{baseline_id}/constraints.json")
    def update_constraints(self, call: Call, baseline_id: str, constraints: Document) -> dict[str, Any]:
        """Replace the baseline's constraints.json (SageMaker's shape); later analyses check against it."""
        return call.json({"baseline_id": baseline_id}, content=document(constraints),
                         content_type="application/json")

    @route("PUT", "/api/v1/baselines/{baseline_id}/expectations.json")
    def set_expectations(self, call: Call, baseline_id: str, suite: Document) -> dict[str, Any]:
        """Attach a Great Expectations suite; analyses against this baseline run it as an extra check."""
        return call.json({"baseline_id": baseline_id}, content=document(suite), content_type="application/json")

    @route("POST", "/api/v1/model-groups/{group}/versions/{version}/drift-baseline")
    def attach_baseline(self, call: Call, group: str, version: int, baseline_id: str) -> AttachedBaseline:
        """Make the baseline the version's drift-check baseline (evidence for its approval)."""
        return call.model(AttachedBaseline, {"group": group, "version": version}, json={"baseline_id": baseline_id})

    @route("GET", "/api/v1/model-groups/{group}/versions/{version}/drift-baseline")
    def get_attached_baseline(self, call: Call, group: str, version: int) -> AttachedBaseline:
        return call.model(AttachedBaseline, {"group": group, "version": version})

    # analyses
    @route("POST", "/api/v1/analyses")
    def run_analysis(self, call: Call, baseline_id: str, data: Upload | None = None, *,
                     dataset_uri: str | None = None, format: str | None = None, header: bool | None = None,
                     drift: Drift | None = None, endpoint: str | None = None, start: Time | None = None,
                     end: Time | None = None, type: str | None = None) -> AnalysisRead:
        """Check data against a baseline: ``data`` (as for ``create_baseline``), a ``dataset_uri``, or an
        ``endpoint``'s captured window [``start``, ``end``) (``type`` DataQuality or ModelQuality). The answer
        carries SageMaker's violations and, for data quality, the drift table."""
        if sum(x is not None for x in (data, dataset_uri, endpoint)) != 1:
            raise ValueError("give exactly one of data, dataset_uri or endpoint (with start and end)")
        if endpoint is not None:
            return call.model(AnalysisRead, json=body({"type": type, "baseline_id": baseline_id, "endpoint": endpoint,
                                                       "start": start, "end": end, "drift": drift}))
        if data is None:
            return call.model(AnalysisRead, json=body({"baseline_id": baseline_id, "dataset_uri": dataset_uri,
                                                       "format": format, "header": header, "drift": drift}))
        return call.model(AnalysisRead, data={"baseline_id": baseline_id, "format": format, "header": header,
                                              "drift": drift},
                          files={"file": upload(data, format=format, header=header is not False)})

    create_analysis = run_analysis

    @route("GET", "/api/v1/analyses")
    def list_analyses(self, call: Call, baseline_id: str | None = None, endpoint: str | None = None,
                      status: str | None = None, *, page_size: int = 100) -> Pager[AnalysisRead]:
        """Newest first, without the violations and drift tables (``get_analysis`` has them)."""
        return call.pager(AnalysisRead, params={"baseline_id": baseline_id, "endpoint": endpoint, "status": status},
                          page_size=page_size)

    @route("GET", "/api/v1/analyses/{analysis_id}")
    def get_analysis(self, call: Call, analysis_id: str) -> AnalysisRead:
        return call.model(AnalysisRead, {"analysis_id": analysis_id}, params={"format": "json"})

    @route("GET", "/api/v1/analyses/{analysis_id}/report")
    def get_analysis_report(self, call: Call, analysis_id: str) -> dict[str, Any]:
        """What the HTML report shows, as JSON."""
        return call.json({"analysis_id": analysis_id}, params={"format": "json"})

    @route("GET", "/api/v1/analyses/{analysis_id}/report")
    def get_analysis_report_html(self, call: Call, analysis_id: str) -> str:
        return call.text({"analysis_id": analysis_id}, params={"format": "html"})

    @route("GET", "/api/v1/analyses/{analysis_id}/evidently-snapshot")
    def get_evidently_snapshot(self, call: Call, analysis_id: str) -> dict[str, Any]:
        """A drift analysis as an Evidently 0.7 snapshot: save it as JSON and add it to a workspace project."""
        return call.json({"analysis_id": analysis_id})

    @route("GET", "/api/v1/analyses/{analysis_id}/{name}")
    def get_analysis_file(self, call: Call, analysis_id: str, name: ANALYSIS_FILES) -> dict[str, Any]:
        """SageMaker's constraint_violations.json or statistics.json, the drift table, or the GX result."""
        return call.json({"analysis_id": analysis_id, "name": name})

    # endpoints, capture, ground truth
    @route("POST", "/api/v1/endpoints")
    def create_endpoint(self, call: Call, name: str, model_group: str, model_version: int,
                        schema: CaptureSchema | Mapping[str, Any], *, variant: str | None = None,
                        sampling_percentage: float | None = None) -> EndpointRead:
        """An endpoint serving a version; ``schema`` names its features (Integral, Fractional, String) and its
        prediction/probability outputs, which is how captured records are read."""
        return call.model(EndpointRead, json=body({
            "name": name, "model_group": model_group, "model_version": model_version, "variant": variant,
            "sampling_percentage": sampling_percentage, "schema": schema}))

    @route("GET", "/api/v1/endpoints")
    def list_endpoints(self, call: Call, *, page_size: int = 100) -> Pager[EndpointRead]:
        return call.pager(EndpointRead, page_size=page_size)

    @route("GET", "/api/v1/endpoints/{name}")
    def get_endpoint(self, call: Call, name: str) -> EndpointRead:
        return call.model(EndpointRead, {"name": name})

    @route("POST", "/api/v1/endpoints/{name}/capture")
    def capture(self, call: Call, endpoint: str, records: Records, *, outputs: Sequence[str] = ("prediction",
                "probability"), inference_time: Time | None = None, batch_size: int = 5000,
                progress: Progress | None = None) -> CaptureResult:
        """Store captured traffic (ingest or admin key). A DataFrame becomes records by ``capture_records``
        (``outputs``, ``inference_time``); records go ``batch_size`` at a time and the answers add up (rejected
        indexes count from the start of ``records``). Sampling and duplicate eventIds are the server's call."""
        if isinstance(records, pd.DataFrame):
            records = capture_records(records, outputs=outputs, inference_time=inference_time)
        return _post_records(call, endpoint, records, CaptureResult, batch_size, progress)

    @route("POST", "/api/v1/endpoints/{name}/ground-truth")
    def upload_ground_truth(self, call: Call, endpoint: str, labels: Records | Mapping[str, Any], *,
                            label: str = "label", batch_size: int = 5000, replace: bool = False,
                            progress: Progress | None = None) -> GroundTruthResult:
        """Labels for captured requests (ingest or admin key): SageMaker ground-truth records, ``{inference id:
        label}``, or a DataFrame (see ``ground_truth_records``), ``batch_size`` at a time. ``replace``: a different
        label replaces one already stored (audited), instead of counting as a duplicate."""
        if isinstance(labels, pd.DataFrame | Mapping):
            labels = ground_truth_records(labels, label=label)
        return _post_records(call, endpoint, labels, GroundTruthResult, batch_size, progress,
                             {"replace": "true"} if replace else None)

    @route("POST", "/api/v1/endpoints/{name}/performance-estimate")
    def estimate_performance(self, call: Call, endpoint: str, start: Time, end: Time,
                             threshold: float | None = None, baseline_id: str | None = None) -> dict[str, Any]:
        """Label-free estimate with 95% bands over a window (CBPE: accuracy, precision, recall, specificity, F1,
        ROC AUC; regression DLE: MAE, MSE, RMSE), each saying how scores were calibrated, with the realised values
        of the records whose labels have arrived."""
        return call.json({"name": endpoint}, json=body({"start": start, "end": end, "threshold": threshold,
                                                        "baseline_id": baseline_id}))

    @route("GET", "/api/v1/endpoints/{name}/capture/summary")
    def capture_summary(self, call: Call, endpoint: str) -> dict[str, Any]:
        """``{"endpoint": name, "records": count}``."""
        return call.json({"name": endpoint})

    # schedules, executions, alerts, retraining
    @route("POST", "/api/v1/monitoring-schedules")
    def create_schedule(self, call: Call, name: str, endpoint: str, type: str, schedule: str, baseline_id: str, *,
                        window: Mapping[str, str] | None = None, drift: Drift | None = None,
                        alerting: Mapping[str, Any] | None = None) -> ScheduleRead:
        """``schedule``: 5-field cron (UTC), ``hourly`` or ``daily``; ``window``: ISO-8601 offsets from the fire
        time, default ``{"start": "-PT1H", "end": "PT0S"}``; ``type`` as the baseline's kind."""
        return call.model(ScheduleRead, json=body({
            "name": name, "endpoint": endpoint, "type": type, "schedule": schedule, "baseline_id": baseline_id,
            "window": window, "drift": drift, "alerting": alerting}))

    @route("GET", "/api/v1/monitoring-schedules")
    def list_schedules(self, call: Call, *, page_size: int = 100) -> Pager[ScheduleRead]:
        return call.pager(ScheduleRead, page_size=page_size)

    @route("GET", "/api/v1/monitoring-schedules/{name}")
    def get_schedule(self, call: Call, name: str) -> ScheduleRead:
        return call.model(ScheduleRead, {"name": name})

    @route("PATCH", "/api/v1/monitoring-schedules/{name}")
    def update_schedule(self, call: Call, name: str, *, schedule: str | Unset = UNSET,
                        window: Mapping[str, str] | Unset = UNSET, drift: Drift | Unset = UNSET,
                        alerting: Mapping[str, Any] | Unset = UNSET,
                        baseline_id: str | Unset = UNSET) -> ScheduleRead:
        """Only the arguments given change; a new ``baseline_id`` is checked against the endpoint as on create."""
        return call.model(ScheduleRead, {"name": name}, json=body(
            {"schedule": schedule, "window": window, "drift": drift, "alerting": alerting, "baseline_id": baseline_id}))

    @route("POST", "/api/v1/monitoring-schedules/{name}/stop")
    def stop_schedule(self, call: Call, name: str) -> ScheduleRead:
        return call.model(ScheduleRead, {"name": name})

    @route("POST", "/api/v1/monitoring-schedules/{name}/start")
    def start_schedule(self, call: Call, name: str) -> ScheduleRead:
        return call.model(ScheduleRead, {"name": name})

    @route("DELETE", "/api/v1/monitoring-schedules/{name}")
    def delete_schedule(self, call: Call, name: str) -> None:
        call.none({"name": name})

    @route("POST", "/api/v1/monitoring-schedules/{name}/run")
    def run_schedule(self, call: Call, name: str, start: Time, end: Time) -> ExecutionRead:
        """Run the schedule now over [start, end): an execution like a scheduled one (alerts included)."""
        return call.model(ExecutionRead, {"name": name}, json=body({"start": start, "end": end}))

    @route("GET", "/api/v1/monitoring-schedules/{name}/executions")
    def list_executions(self, call: Call, name: str, *, page_size: int = 100) -> Pager[ExecutionRead]:
        """Newest first."""
        return call.pager(ExecutionRead, {"name": name}, page_size=page_size)

    @route("GET", "/api/v1/alerts")
    def list_alerts(self, call: Call, status: str | None = None, schedule: str | None = None,
                    model_group: str | None = None, *, page_size: int = 100) -> Pager[AlertRead]:
        """``status``: open or resolved (None: both)."""
        return call.pager(AlertRead, params={"status": status, "schedule": schedule, "model_group": model_group},
                          page_size=page_size)

    @route("GET", "/api/v1/alerts/{alert_id}")
    def get_alert(self, call: Call, alert_id: str) -> AlertRead:
        return call.model(AlertRead, {"alert_id": alert_id})

    @route("POST", "/api/v1/alerts/{alert_id}/resolve")
    def resolve_alert(self, call: Call, alert_id: str, reason: str) -> AlertRead:
        """Close an open alert by hand, saying why (its schedule's owner or an admin)."""
        return call.model(AlertRead, {"alert_id": alert_id}, json={"reason": reason})

    @route("PUT", "/api/v1/model-groups/{group}/retraining-trigger")
    def set_retraining_trigger(self, call: Call, group: str, url: str, secret: str,
                               cooldown_seconds: int | None = None) -> TriggerRead:
        """Admin: where a breach of the group's monitors sends a signed ``retraining.requested`` event."""
        return call.model(TriggerRead, {"group": group}, json=body(
            {"url": url, "secret": secret, "cooldown_seconds": cooldown_seconds}))

    @route("DELETE", "/api/v1/model-groups/{group}/retraining-trigger")
    def delete_retraining_trigger(self, call: Call, group: str) -> None:
        """Admin: the group's breaches stop requesting retraining (its webhook's deliveries stay readable)."""
        call.none({"group": group})

    @route("GET", "/metrics")
    def metrics(self, call: Call) -> str:
        """Prometheus text format."""
        return call.text()
