"""Monitoring's commands. Over the Python SDK (the server decides): `mlgov endpoints|baselines|analyses|schedules|
alerts …`. On the database directly (admin and offline tools): `mlgov capture import|export`, which move SageMaker
capture trees in and out, and `mlgov capture compact`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlparse

import typer

from mlgov.cli_support import database
from mlgov.settings import get_settings
from mlgov.storage import open_store, s3_client
from mlgov.terminal import (
    CliError,
    Everything,
    Exit,
    JsonOut,
    Limit,
    Offset,
    Outcome,
    finish,
    json_arg,
    list_and_show,
    listing,
    message,
    progress,
    record,
    remote,
    sdk,
    table,
    text,
)

if TYPE_CHECKING:
    from monitor.client import MonitorClient as Client

capture_app = typer.Typer(help="Endpoint capture data in SageMaker's layout (works on the database directly).",
                          no_args_is_help=True)
endpoints_app = typer.Typer(help="Endpoints: their capture schema, captured traffic and ground truth.",
                            no_args_is_help=True)
baselines_app = typer.Typer(help="Baselines: statistics and constraints that analyses check data against.",
                            no_args_is_help=True)
analyses_app = typer.Typer(help="Analyses: data checked against a baseline (violations, drift, reports).",
                           no_args_is_help=True)
schedules_app = typer.Typer(help="Monitoring schedules and their executions.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts opened by monitoring runs.", no_args_is_help=True)

REASONS_SHOWN = 20
"""Distinct rejection reasons printed, each with its first record's place and how many records share it."""

Start = Annotated[str, typer.Option(help="window start, ISO-8601 (e.g. 2026-05-01T10:00:00Z)")]
End = Annotated[str, typer.Option(help="window end (exclusive), ISO-8601")]
Batch = Annotated[int, typer.Option(min=1, help="records per request (or transaction)")]


# --- records uploads: one tally for the offline import and the SDK's capture / ground truth -----------------------

@dataclass(frozen=True)
class Source:
    name: str
    size: int
    read: Callable[[], bytes]


def _local(paths: list[Path]) -> list[Source]:
    return [Source(str(p), p.stat().st_size, p.read_bytes) for p in paths]


@dataclass
class Tally:
    """What the server answered for each batch, added up; rejected records counted, each distinct reason kept with
    its first record's place."""

    counts: dict[str, int]
    rejected: int = 0
    reasons: dict[str, list[Any]] = field(default_factory=dict)   # reason → [records, first place]

    def add(self, result: Mapping[str, Any], where: str, lines: list[int]) -> None:
        for k in self.counts:
            self.counts[k] += int(result[k])
        self.reject(result["rejected"], len(result["rejected"]), where, lines)

    def refused(self, problem: Mapping[str, Any], detail: str, where: str, lines: list[int]) -> None:
        """A whole batch refused (422): every record in it rejected, the server's first reasons listed."""
        listed = problem.get("rejected") or [{"index": 0, "reason": detail}]
        self.reject(listed, int(problem.get("rejected_count") or len(lines)), where, lines)

    def reject(self, items: list[dict[str, Any]], count: int, where: str, lines: list[int]) -> None:
        self.rejected += count
        for r in items:
            index = r.get("index")
            line = lines[index] if isinstance(index, int) and 0 <= index < len(lines) else lines[0]
            self.reasons.setdefault(str(r.get("reason", r)), [0, f"{where}: line {line}"])[0] += 1
        if items and count > len(items):   # the server listed only the first reasons
            self.reasons[str(items[-1].get("reason", items[-1]))][0] += count - len(items)

    def outcome(self, what: str, **extra: Any) -> Outcome:
        """Exit 0 when nothing was rejected, 6 (partly done) when some records were, 4 (refused) when all were."""
        stored = sum(self.counts.values())
        code = Exit.OK if not self.rejected else Exit.PARTIAL if stored else Exit.REFUSED
        notes = [f"{place}: {reason}" + (f" (and {n - 1} more records)" if n > 1 else "")
                 for reason, (n, place) in list(self.reasons.items())[:REASONS_SHOWN]]
        if len(self.reasons) > REASONS_SHOWN:
            notes.append(f"… {len(self.reasons) - REASONS_SHOWN} more reasons not shown")
        if code == Exit.REFUSED:
            notes.append(f"error: all {self.rejected} records were rejected and nothing was {what} (fix: correct "
                         "them as the reasons above say; the endpoint's schema names the features in order)")
        elif code == Exit.PARTIAL:
            were = "record was" if self.rejected == 1 else "records were"
            notes.append(f"error: {self.rejected} {were} rejected; the others were {what} (fix: correct the "
                         "rejected records and send them again: known eventIds are skipped)")
        return Outcome({**extra, **self.counts, "rejected": self.rejected}, code, notes)


def upload_records(sources: list[Source], batch: int, counts: tuple[str, ...], description: str,
                   send: Callable[[bytes], Mapping[str, Any]],
                   refusal: Callable[[Exception], tuple[Mapping[str, Any], str] | None]) -> Tally:
    """Send each file's JSON Lines ``batch`` records at a time, with a progress bar by bytes; ``refusal`` says
    whether an exception is a whole batch refused as data (its problem and detail), else it propagates."""
    tally = Tally(dict.fromkeys(counts, 0))
    with progress(description, sum(s.size for s in sources), unit="bytes", accepted=0, rejected=0) as advance:
        for src in sources:
            numbered = [(n, line) for n, line in enumerate(src.read().splitlines(keepends=True), 1) if line.strip()]
            for i in range(0, len(numbered), batch):
                chunk = numbered[i:i + batch]
                lines = [n for n, _ in chunk]
                try:
                    tally.add(send(b"".join(line for _, line in chunk)), src.name, lines)
                except Exception as exc:
                    refused = refusal(exc)
                    if refused is None:
                        raise
                    tally.refused(refused[0], refused[1], src.name, lines)
                advance(sum(len(line) for _, line in chunk), accepted=tally.counts["accepted"],
                        rejected=tally.rejected)
            if not numbered:
                advance(src.size)
    return tally


def _sdk_refusal(exc: Exception) -> tuple[Mapping[str, Any], str] | None:
    from mlgov.sdk import ApiError

    return (exc.problem, exc.detail) if isinstance(exc, ApiError) and exc.status == 422 else None


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _record_files(paths: list[Path]) -> list[Source]:
    """JSON Lines files as they are; a JSON array file as one JSON Lines record per element (so it is sent in
    batches and its rejections are numbered by record)."""
    import json

    out = []
    for p in paths:
        if p.read_bytes()[:64].lstrip().startswith(b"["):
            try:
                items = json.loads(p.read_bytes())
            except ValueError as exc:
                raise CliError(f"{p} is not valid JSON: {exc}", fix="send a JSON array of records or JSON Lines",
                               code=Exit.USAGE) from None
            data = "".join(json.dumps(item) + "\n" for item in items).encode()
            out.append(Source(str(p), len(data), _constant(data)))
        else:
            out.extend(_local([p]))
    return out


Files = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False,
                                              help="JSON Lines (.jsonl) or JSON array files of SageMaker records")]


# --- endpoints ----------------------------------------------------------------------------------------------------

ENDPOINT_FIELDS = record("name", "model_group", "model_version", "variant", "sampling_percentage", "schema",
                         "created_by", "created_at")


list_and_show(endpoints_app, "endpoint",
              table("name", "model_group:group", "model_version:version", "variant",
                    "sampling_percentage:sampling %", "created_at", empty="no endpoints"),
              ENDPOINT_FIELDS, lambda api: api.list_endpoints(), lambda api, name: api.get_endpoint(name))


def _features(values: list[str] | None) -> list[dict[str, str]]:
    out = []
    for v in values or []:
        name, sep, kind = v.partition(":")
        if not sep or not name or not kind:
            raise CliError(f"--feature {v!r} is not name:type", fix="write --feature age:Integral (types: Integral, "
                           "Fractional, String)", code=Exit.USAGE)
        out.append({"name": name, "type": kind})
    return out


@endpoints_app.command("create")
@remote(message("created endpoint {name} serving {model_group}/{model_version}"))
def endpoints_create(
    api: Client, name: str,
    group: Annotated[str, typer.Option("--group", help="model group it serves")],
    version: Annotated[int, typer.Option("--version", min=1, help="model version it serves")],
    feature: Annotated[list[str] | None, typer.Option("--feature", help="name:type in input order (repeat); type "
                                                                         "Integral, Fractional or String")] = None,
    schema: Annotated[str | None, typer.Option(help="the whole capture schema: JSON text or a JSON file")] = None,
    variant: Annotated[str | None, typer.Option(help="default AllTraffic")] = None,
    sampling: Annotated[float | None, typer.Option(min=0, max=100, help="percent of traffic kept (default 100)")]
    = None,
) -> Any:
    """Create an endpoint serving a version; its schema says how captured records are read."""
    if (schema is None) == (not feature):
        raise CliError("give the endpoint's features", fix="pass --feature name:type for each input column, or "
                       "--schema with the whole capture schema (not both)", code=Exit.USAGE)
    doc = json_arg(schema, "--schema") if schema is not None else {"features": _features(feature)}
    return api.create_endpoint(name, group, version, doc, variant=variant, sampling_percentage=sampling)


@endpoints_app.command("capture")
def endpoints_capture(ctx: typer.Context, name: str, files: Files, batch: Batch = 1000,
                      json_out: JsonOut = False) -> None:
    """Send captured traffic to an endpoint (ingest or admin key). Exits 6 when some records were rejected, 4 when
    all were."""
    with sdk(ctx) as api:
        tally = upload_records(_record_files(files), batch, ("accepted", "sampled_out", "duplicates"),
                               "sending capture", lambda data: api.capture(name, data).model_dump(), _sdk_refusal)
    finish(tally.outcome("stored", files=len(files)),
           message("accepted={accepted} sampled_out={sampled_out} duplicates={duplicates} rejected={rejected}"),
           json_out)


@endpoints_app.command("ground-truth")
def endpoints_ground_truth(ctx: typer.Context, name: str, files: Files, batch: Batch = 1000,
                           replace: Annotated[bool, typer.Option(
                               "--replace", help="a different label replaces one already stored (a correction, "
                               "audited); otherwise a resent id is a duplicate")] = False,
                           json_out: JsonOut = False) -> None:
    """Send ground-truth labels for captured requests (SageMaker's records, keyed by inferenceId or eventId)."""
    with sdk(ctx) as api:
        tally = upload_records(_record_files(files), batch, ("accepted", "replaced", "duplicates", "unmatched"),
                               "sending ground truth",
                               lambda data: api.upload_ground_truth(name, data, replace=replace).model_dump(),
                               _sdk_refusal)
    finish(tally.outcome("stored", files=len(files)),
           message("accepted={accepted} replaced={replaced} duplicates={duplicates} unmatched={unmatched} "
                   "rejected={rejected}"), json_out)


@endpoints_app.command("summary")
@remote(message("{endpoint}: {records} captured records"))
def endpoints_summary(api: Client, name: str) -> Any:
    """How many records an endpoint has captured."""
    return api.capture_summary(name)


def _estimate_view(data: Any) -> None:
    """One row per metric: the estimate with its 95% band, and the realised value once labels arrived."""
    typer.echo(f"{data['endpoint']}: {data['rows']} records from {data['window']['start']} to {data['window']['end']}"
               f", {data['labelled_rows']} labelled, threshold {data['threshold']}")
    metrics = data["estimated"]
    table("metric", "estimate", "lower", "upper", "calibration", "realised", "within_band")(
        [{"metric": m, **values, "calibration": values["calibrated"].get("method") or "none"}
         for m, values in metrics.items()])


@endpoints_app.command("estimate")
@remote(_estimate_view)
def endpoints_estimate(api: Client, name: str, start: Start, end: End,
                       threshold: Annotated[float | None, typer.Option(min=0, max=1)] = None,
                       baseline: Annotated[str | None, typer.Option(help="the ModelQuality baseline's id")] = None
                       ) -> Any:
    """Label-free performance estimate with 95% bands over a window (CBPE for classifiers, DLE for regressors)."""
    return api.estimate_performance(name, start, end, threshold=threshold, baseline_id=baseline)


# --- baselines ----------------------------------------------------------------------------------------------------

BASELINE_FIELDS = record("id", "name", "kind", "source", "problem_type", "dataset_uri", "dataset_sha256", "exact",
                         "row_count", "feature_count", "created_by", "created_at")


list_and_show(baselines_app, "baseline",
              table("id", "name", "kind", "source", "row_count:rows", "feature_count:features", "created_by",
                    "created_at", empty="no baselines"),
              BASELINE_FIELDS, lambda api: api.list_baselines(), lambda api, baseline_id: api.get_baseline(baseline_id))


def file_command(app: typer.Typer, noun: str, names: str, fetch: Callable[[Client, str, Any], Any]) -> None:
    """`file ID NAME`: print one of a baseline's or an analysis' JSON documents (the server checks NAME)."""
    @app.command("file", help=f"Print one of a {noun}'s documents (JSON): NAME is {names}.")
    @remote(text)
    def file(api: Client, id: str, name: str) -> Any:
        return fetch(api, id, name)


file_command(baselines_app, "baseline", "statistics.json, constraints.json, gx-suite.json or expectations.json",
             lambda api, baseline_id, name: api.get_baseline_file(baseline_id, name))


def _sized(path: Path | None) -> str:
    if path is None:
        return ""
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{path.name} ({size:.0f} {unit})" if unit == "B" else f"{path.name} ({size:.1f} {unit})"
        size /= 1024
    return path.name


@baselines_app.command("create")
@remote(message("created baseline {id} ({kind}, {row_count} rows, {feature_count} features)"))
def baselines_create(
    api: Client,
    data: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False,
                                                help="training data: CSV with a header row, or Parquet")] = None,
    name: Annotated[str | None, typer.Option(help="a name to find it by")] = None,
    type: Annotated[str | None, typer.Option("--type", help="DataQuality (default), ModelQuality, ModelBias or "
                                                            "ModelExplainability")] = None,
    dataset_uri: Annotated[str | None, typer.Option(help="data already in mlgov's object store, instead of DATA")]
    = None,
    statistics: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                    help="import SageMaker's statistics.json (with --constraints)")]
    = None,
    constraints: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                     help="import SageMaker's constraints.json")] = None,
    problem_type: Annotated[str | None, typer.Option(help="ModelQuality: Regression, BinaryClassification or "
                                                          "MulticlassClassification")] = None,
    label: Annotated[str | None, typer.Option(help="ModelQuality/Explainability: the label column")] = None,
    prediction: Annotated[str | None, typer.Option(help="ModelQuality: the prediction column")] = None,
    probability: Annotated[str | None, typer.Option(help="ModelQuality: the probability column")] = None,
    threshold: Annotated[float | None, typer.Option(help="ModelQuality: probability threshold")] = None,
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                help="ModelBias: Clarify's analysis_config.json")] = None,
    model_group: Annotated[str | None, typer.Option(help="ModelExplainability: the version's group")] = None,
    model_version: Annotated[int | None, typer.Option(help="ModelExplainability: the version")] = None,
    model: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                               help="ModelExplainability: the model artifact")] = None,
    model_format: Annotated[str | None, typer.Option(help="skops, xgboost, lightgbm or onnx")] = None,
    class_probabilities: Annotated[str | None, typer.Option(help="ModelQuality multiclass: class:column,… (the "
                                                                  "label-free estimate's probability columns)")] = None,
    features: Annotated[str | None, typer.Option(help="ModelQuality regression: col,… the loss model of the "
                                                       "label-free estimate reads")] = None,
) -> Any:
    """Create a baseline from training data (or import SageMaker's statistics and constraints)."""
    what = _sized(data) or _sized(statistics) or dataset_uri or "the data"
    with progress(f"uploading {what} and computing the baseline", None):
        return api.create_baseline(
            data, name=name, type=type, format="parquet" if data and data.suffix == ".parquet" else None,
            dataset_uri=dataset_uri, statistics=statistics, constraints=constraints, problem_type=problem_type,
            label=label, prediction=prediction, probability=probability, threshold=threshold, config=config,
            model_group=model_group, model_version=model_version, model=model, model_format=model_format,
            class_probabilities=dict(p.split(":", 1) for p in class_probabilities.split(",") if ":" in p)
            if class_probabilities else None, features=features.split(",") if features else None)


@baselines_app.command("attach")
@remote(message("baseline {baseline_id} is the {kind} baseline of {model_group}/{model_version}"))
def baselines_attach(api: Client, baseline_id: str, group: str,
                     version: Annotated[int, typer.Argument(min=1)]) -> Any:
    """Make a baseline the drift-check baseline of a version (evidence for its approval)."""
    return api.attach_baseline(group, version, baseline_id)


@baselines_app.command("constraints")
@remote(text)
def baselines_constraints(api: Client, baseline_id: str,
                          file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                               help="the edited constraints.json")]) -> Any:
    """Replace a baseline's constraints.json (later analyses check against it)."""
    return api.update_constraints(baseline_id, file)


# --- analyses -----------------------------------------------------------------------------------------------------

ANALYSIS_ROWS = table("id", "kind", "status", "source", "endpoint", "rows", "violation_count:violations",
                      "dataset_drift:drift", "created_at", empty="no analyses")
ANALYSIS_FIELDS = record("id", "kind", "status", "failure_reason", "baseline_id", "source", "dataset_uri",
                         "endpoint", "window_start", "window_end", "rows", "violation_count", "drift_share",
                         "dataset_drift", "drifted_features", "duration_ms", "created_by", "created_at")


DRIFT_ROWS = table("feature", "method", "statistic", "threshold", "drifted", "exact", "note")
VIOLATION_ROWS = table("feature_name:feature", "constraint_check_type:check", "description")


def _analysis_view(data: Any) -> None:
    """The analysis, then its violations and drift table when the answer carries them."""
    ANALYSIS_FIELDS(data)
    for title, rows, view in (("violations", data.get("violations"), VIOLATION_ROWS),
                              ("drift", data.get("drift"), DRIFT_ROWS)):
        if rows:
            typer.echo(f"\n{title}:")
            view(rows)


@analyses_app.command("list")
@remote(ANALYSIS_ROWS)
def analyses_list(api: Client, baseline: Annotated[str | None, typer.Option(help="only against this baseline")]
                  = None, endpoint: Annotated[str | None, typer.Option(help="only of this endpoint")] = None,
                  status: Annotated[str | None, typer.Option(help="Completed or Failed")] = None,
                  limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
    """List analyses, newest first."""
    return listing(api.list_analyses(baseline_id=baseline, endpoint=endpoint, status=status), limit, offset,
                   everything)


@analyses_app.command("show")
@remote(_analysis_view)
def analyses_show(api: Client, analysis_id: str) -> Any:
    """Show an analysis (--json includes its violations and drift table)."""
    return api.get_analysis(analysis_id)


@analyses_app.command("run")
@remote(_analysis_view)
def analyses_run(
    api: Client, baseline_id: str,
    data: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="CSV with header, or Parquet")]
    = None,
    dataset_uri: Annotated[str | None, typer.Option(help="data in mlgov's object store")] = None,
    endpoint: Annotated[str | None, typer.Option(help="an endpoint's captured window (with --start and --end)")]
    = None,
    start: Annotated[str | None, typer.Option(help="window start, ISO-8601")] = None,
    end: Annotated[str | None, typer.Option(help="window end (exclusive), ISO-8601")] = None,
    type: Annotated[str | None, typer.Option("--type", help="with --endpoint: DataQuality or ModelQuality")] = None,
    drift: Annotated[str | None, typer.Option(help="drift settings: JSON text or file")] = None,
) -> Any:
    """Check DATA (or a stored dataset, or an endpoint's window) against a baseline."""
    if endpoint is not None and (start is None or end is None):
        raise CliError("an endpoint's window needs --start and --end", code=Exit.USAGE)
    what = _sized(data) or dataset_uri or f"{endpoint}'s window"
    with progress(f"analysing {what}", None):
        return _failed_exits(api.run_analysis(
            baseline_id, data, dataset_uri=dataset_uri, endpoint=endpoint, start=start, end=end, type=type,
            format="parquet" if data and data.suffix == ".parquet" else None,
            drift=json_arg(drift, "--drift") if drift else None))


def _failed_exits(result: Any) -> Any:
    """A run that ended Failed (no data in the window, an unreadable file …) is shown, then exits 1, a failed
    check, so a script's `&&` stops there; CompletedWithViolations is a check that ran: 0 (its status tells)."""
    return Outcome(result, Exit.ERROR) if getattr(result, "status", None) == "Failed" else result


@analyses_app.command("report")
@remote(text)
def analyses_report(api: Client, analysis_id: str,
                    html: Annotated[bool, typer.Option("--html", help="the HTML report instead of JSON")] = False,
                    ) -> Any:
    """Print an analysis' report (JSON, or HTML with --html: redirect it to a file)."""
    return api.get_analysis_report_html(analysis_id) if html else api.get_analysis_report(analysis_id)


file_command(analyses_app, "analysis", "constraint_violations.json, statistics.json, drift.json or expectations.json",
             lambda api, analysis_id, name: api.get_analysis_file(analysis_id, name))


# --- schedules, executions, alerts --------------------------------------------------------------------------------

SCHEDULE_ROWS = table("name", "endpoint", "type", "expression:schedule", "status", "next_run_at:next run",
                      "last_run_at:last run", empty="no schedules")
SCHEDULE_FIELDS = record("name", "endpoint", "type", "expression", "window_start", "window_end", "baseline_id",
                         "status", "next_run_at", "last_run_at", "created_by", "created_at")
WindowStart = Annotated[str | None, typer.Option(help="ISO-8601 offset from the fire time, e.g. -PT1H")]
WindowEnd = Annotated[str | None, typer.Option(help="ISO-8601 offset, e.g. PT0S")]
DriftOpt = Annotated[str | None, typer.Option(help="drift settings: JSON text or file")]
AlertingOpt = Annotated[str | None, typer.Option(help="alerting settings: JSON text or file")]


def _window(start: str | None, end: str | None) -> dict[str, str] | None:
    window = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    return window or None


list_and_show(schedules_app, "monitoring schedule", SCHEDULE_ROWS, SCHEDULE_FIELDS, lambda api: api.list_schedules(),
              lambda api, name: api.get_schedule(name))


@schedules_app.command("create")
@remote(message("created schedule {name} ({type} of {endpoint}, {expression}); next run {next_run_at}"))
def schedules_create(
    api: Client, name: str, endpoint: Annotated[str, typer.Option(help="the endpoint to monitor")],
    baseline: Annotated[str, typer.Option(help="the baseline id to check against")],
    schedule: Annotated[str, typer.Option(help="5-field cron (UTC), hourly or daily")],
    type: Annotated[str, typer.Option("--type", help="DataQuality, ModelQuality, ModelBias or ModelExplainability")]
    = "DataQuality",
    window_start: WindowStart = None, window_end: WindowEnd = None, drift: DriftOpt = None,
    alerting: AlertingOpt = None,
) -> Any:
    """Create a monitoring schedule."""
    return api.create_schedule(name, endpoint, type, schedule, baseline, window=_window(window_start, window_end),
                               drift=json_arg(drift, "--drift") if drift else None,
                               alerting=json_arg(alerting, "--alerting") if alerting else None)


@schedules_app.command("update")
@remote(SCHEDULE_FIELDS)
def schedules_update(api: Client, name: str,
                     schedule: Annotated[str | None, typer.Option(help="5-field cron (UTC), hourly or daily")]
                     = None, window_start: WindowStart = None, window_end: WindowEnd = None, drift: DriftOpt = None,
                     alerting: AlertingOpt = None) -> Any:
    """Change a schedule (only what is given)."""
    fields: dict[str, Any] = {}
    if schedule is not None:
        fields["schedule"] = schedule
    if window_start is not None or window_end is not None:
        current = api.get_schedule(name)
        fields["window"] = {"start": window_start or current.window_start, "end": window_end or current.window_end}
    if drift is not None:
        fields["drift"] = json_arg(drift, "--drift")
    if alerting is not None:
        fields["alerting"] = json_arg(alerting, "--alerting")
    if not fields:
        raise CliError("nothing to change", fix="pass --schedule, --window-start/--window-end, --drift or --alerting",
                       code=Exit.USAGE)
    return api.update_schedule(name, **fields)


@schedules_app.command("stop")
@remote(message("schedule {name} is {status}"))
def schedules_stop(api: Client, name: str) -> Any:
    """Stop a schedule (it keeps its executions and alerts)."""
    return api.stop_schedule(name)


@schedules_app.command("start")
@remote(message("schedule {name} is {status}; next run {next_run_at}"))
def schedules_start(api: Client, name: str) -> Any:
    """Start a stopped schedule."""
    return api.start_schedule(name)


@schedules_app.command("delete")
@remote(message("deleted schedule {name}"))
def schedules_delete(api: Client, name: str) -> Any:
    """Delete a schedule."""
    api.delete_schedule(name)
    return {"name": name, "deleted": True}


EXECUTION_FIELDS = record("id", "scheduled_for", "trigger", "status", "failure_reason", "window_start", "window_end",
                          "analysis_id", "violation_count", "started_at", "ended_at")


@schedules_app.command("run")
@remote(EXECUTION_FIELDS)
def schedules_run(api: Client, name: str, start: Start, end: End) -> Any:
    """Run a schedule now over [START, END) (an execution like a scheduled one; alerts included)."""
    with progress(f"running {name}", None):
        return _failed_exits(api.run_schedule(name, start, end))


@schedules_app.command("executions")
@remote(table("id", "scheduled_for", "trigger", "status", "violation_count:violations", "analysis_id",
              "failure_reason", empty="no executions yet"))
def schedules_executions(api: Client, name: str, limit: Limit = 50, offset: Offset = 0,
                         everything: Everything = False) -> Any:
    """A schedule's executions, newest first."""
    return listing(api.list_executions(name), limit, offset, everything)


@alerts_app.command("list")
@remote(table("id", "status", "schedule", "check", "subject", "model_group:group", "model_version:version",
              "occurrences", "opened_at", "resolved_at", empty="no alerts"))
def alerts_list(api: Client, status: Annotated[str, typer.Option(help="open, resolved or all")] = "all",
                schedule: Annotated[str | None, typer.Option(help="only this schedule's")] = None,
                group: Annotated[str | None, typer.Option(help="only this model group's")] = None,
                limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
    """List alerts, newest first (--json includes each alert's details)."""
    return listing(api.list_alerts(status=None if status == "all" else status, schedule=schedule,
                                   model_group=group), limit, offset, everything)


@alerts_app.command("show")
@remote(record("id", "status", "schedule", "check", "subject", "model_group", "model_version", "occurrences",
               "opened_at", "resolved_at", "opened_execution_id", "last_execution_id", "details"))
def alerts_show(api: Client, alert_id: str) -> Any:
    """One alert with the violations of its latest breaching run."""
    return api.get_alert(alert_id)


# --- offline: capture trees in and out of the database ------------------------------------------------------------

def _sources(src: str) -> list[Source]:
    """The *.jsonl files under a directory or an s3:// prefix, listed (with sizes, for the progress bar) before
    any is read."""
    if src.startswith("s3://"):
        u = urlparse(src)
        client = s3_client(get_settings())

        def reader(key: str) -> Callable[[], bytes]:
            return lambda: bytes(client.get_object(Bucket=u.netloc, Key=key)["Body"].read())

        out = [Source(obj["Key"], int(obj.get("Size", 0)), reader(obj["Key"]))
               for page in client.get_paginator("list_objects_v2").paginate(Bucket=u.netloc, Prefix=u.path.lstrip("/"))
               for obj in page.get("Contents", []) if obj["Key"].endswith(".jsonl")]
        return sorted(out, key=lambda s: s.name)
    root = Path(src)
    if not root.exists():
        raise CliError(f"{src} does not exist", fix="pass a directory holding the capture tree, or s3://bucket/prefix",
                       code=Exit.USAGE)
    return _local(sorted(root.rglob("*.jsonl")))


@capture_app.command("import")
def import_tree(source: Annotated[str, typer.Argument(help="a directory or s3://bucket/prefix")],
                endpoint: Annotated[str, typer.Option(help="the mlgov endpoint to import into")],
                batch: Annotated[int, typer.Option(min=1, help="records per transaction")] = 1000,
                json_out: JsonOut = False) -> None:
    """Import every *.jsonl capture file under SOURCE (idempotent: re-importing skips known eventIds). Exits 6 when
    some records were rejected, 4 when all were."""
    from mlgov.errors import Invalid
    from monitor import service  # pandas and pyarrow: loaded by the commands that need them, not by `mlgov keys`

    db = database()
    store = open_store(get_settings())
    with db.session_scope(write=False) as s:
        service.get_endpoint(s, endpoint)   # an unknown endpoint fails before any file is read
    sources = _sources(source)
    if not sources:
        raise CliError(f"no *.jsonl capture files under {source}", code=Exit.NOT_FOUND,
                       fix="point at the root of a capture tree ({endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl)")

    def ingest(data: bytes) -> Mapping[str, Any]:
        with db.session_scope() as s:
            return service.ingest(s, store, endpoint, data, "application/x-ndjson", refuse_all_rejected=False)

    def refusal(exc: Exception) -> tuple[Mapping[str, Any], str] | None:   # a chunk unreadable or all rejected
        return (exc.extra, exc.detail) if isinstance(exc, Invalid) else None

    tally = upload_records(sources, batch, ("accepted", "sampled_out", "duplicates"), "importing capture", ingest,
                           refusal)
    finish(tally.outcome("imported", files=len(sources)),
           message("accepted={accepted} sampled_out={sampled_out} duplicates={duplicates} rejected={rejected}"),
           json_out)


@capture_app.command("compact")
def compact_capture(endpoint: Annotated[str | None, typer.Option(help="only this endpoint")] = None,
                    hours: Annotated[int, typer.Option(min=1, help="endpoint-hours to compact at most")] = 1000,
                    json_out: JsonOut = False) -> None:
    """Merge the small capture batches of settled hours into few files and delete files no batch refers to that a
    stopped process left (the scheduler does both, every minute and every hour over the last two days; this runs
    them now over every hour holding a batch, e.g. after an import). Idempotent: a second run finds nothing to do."""
    import datetime as dt

    from monitor import jobs, service

    db = database()
    store = open_store(get_settings())
    endpoint_id = None
    if endpoint is not None:
        with db.session_scope(write=False) as s:
            endpoint_id = service.get_endpoint(s, endpoint).id
    now = dt.datetime.now(dt.UTC)
    done = jobs.compact(db, store, now, endpoint_id=endpoint_id, lookback=None, hours=hours)
    swept = jobs.sweep(db, store, now, endpoint_id=endpoint_id, older_batches=True)
    finish(Outcome({"batches_merged": done.merged, "batches_written": done.written, "records": done.records,
                    "unreferenced_files_deleted": swept}),
           message("merged {batches_merged} batches into {batches_written} ({records} records); deleted "
                   "{unreferenced_files_deleted} files no batch refers to"), json_out)


@capture_app.command("export")
def export_tree(endpoint: Annotated[str, typer.Option(help="endpoint to export")],
                to: Annotated[Path, typer.Option(help="target directory")],
                json_out: JsonOut = False) -> None:
    """Write the endpoint's captured records as SageMaker's tree: {endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl.
    Exporting into the same directory again copies only what is new and removes what was merged since."""
    from monitor import jobs, service

    db = database()
    store = open_store(get_settings())
    with db.session_scope(write=False) as s:
        ep = service.get_endpoint(s, endpoint)
        total = service.captured_count(s, endpoint)
    with progress("exporting capture", total) as advance:
        done = jobs.export_capture(db, store, ep.id, to, advance)
    finish(Outcome({"endpoint": ep.name, "records": done.records, "files": done.files, "to": str(to),
                    "files_copied": done.copied, "files_removed": done.removed}),
           message("exported {records} records in {files} files to {to} ({files_copied} copied now; "
                   "{files_removed} removed: merged or deleted since an earlier export)"), json_out)
