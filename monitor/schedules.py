"""Monitoring schedules, executions, alerts and retraining triggers (service layer: flushes, never commits).

An execution runs in its caller's transaction (the API request for a manual run, the runner in `monitor.jobs`
for a due one): the monitor's work runs in a savepoint, so a failure rolls back every row it flushed and leaves a
Failed execution with the reason; the outcome is written in the same transaction as its alert changes and outbox
events.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from lineage import service as lineage
from mlgov import audit, auth, events, workers
from mlgov.auth import Principal
from mlgov.db import cursor_of, icontains, new_id, paginate, sort_order, utcnow
from mlgov.errors import Conflict, Invalid, NotFound
from mlgov.outbound import OutboundPolicy, safe_url
from mlgov.secrets import SecretBox
from mlgov.storage import ObjectStore, system_folder
from monitor import kinds, layout, recurrence, service
from monitor.capture import CaptureSchema
from monitor.orm import (
    Alert,
    Analysis,
    CaptureBatch,
    CaptureEvent,
    Endpoint,
    Execution,
    GroundTruth,
    RetrainingTrigger,
    Schedule,
)
from registry import service as registry

log = logging.getLogger("mlgov.scheduler")


def _check_rules(expression: str, start: str, end: str) -> None:
    try:
        recurrence.check(expression)
    except recurrence.RuleError as exc:
        raise Invalid(str(exc), fix=f"use {recurrence.FORMS}; window offsets like -PT1H") from None
    check_window(start, end)


def _first_run(expression: str, now: dt.datetime) -> dt.datetime:
    try:
        return recurrence.first_run(expression, now)
    except recurrence.RuleError as exc:   # e.g. starting again a cron whose years are over
        raise Invalid(str(exc), fix="PATCH the schedule's expression to one that fires again") from None


def check_window(start: str, end: str) -> None:
    """Invalid unless ``start`` and ``end`` are ISO-8601 offsets with start before end."""
    try:
        s, e = recurrence.window_offset(start), recurrence.window_offset(end)
    except recurrence.RuleError as exc:
        raise Invalid(str(exc), fix="window offsets like -PT1H and PT0S") from None
    if e <= s:
        raise Invalid(f"window end offset {end} is not after start offset {start}", fix="e.g. start -PT1H, end PT0S")
    if e > dt.timedelta(0):
        raise Invalid(f"window end offset {end} is after the run's time: each run would analyse traffic that has "
                      "not arrived yet", fix="end the window at PT0S or earlier (SageMaker's offsets are <= 0 too)")


def check_baseline(session: Session, monitoring_type: str, baseline_id: str, endpoint: str) -> None:
    """The baseline is of the schedule's kind and fits its endpoint (the kind's check: the columns the baseline
    reads are captured there), so a schedule never fails every run on a mismatch nobody was told about."""
    base = service.get_baseline(session, baseline_id)
    if base.kind != monitoring_type:
        raise Invalid(f"a {monitoring_type} schedule needs a {monitoring_type} baseline; {baseline_id} is {base.kind}",
                      fix=f"create a {monitoring_type} baseline first")
    _fits(session, kinds.get(monitoring_type), base, endpoint)


def _check_drift(session: Session, monitoring_type: str, baseline_id: str, drift: dict[str, Any] | None) -> None:
    """A data-quality schedule's drift settings fit its baseline's columns (checked again by every run, which
    reads the baseline's files; here from its row, when the row records its columns)."""
    if monitoring_type != "DataQuality" or not drift:
        return
    reference = service.reference_kinds(service.get_baseline(session, baseline_id))
    if reference is not None:
        service.check_drift(service.drift_config(drift), *reference)


def _alerting(monitoring_type: str, alerting: dict[str, Any] | None) -> dict[str, Any] | None:
    """Alert rules (validated in shape by the API's schema) name checks of the schedule's type; each is stamped
    with when it was set, as SageMaker's UpdateMonitoringAlert stamps it."""
    if not alerting:
        return alerting
    checks = (*kinds.get(monitoring_type).checks, FAILED_CHECK)
    rules = alerting.get("rules") or {}
    unknown = [c for c in rules if c not in checks]
    if unknown:
        raise Invalid(f"alerting.rules names {', '.join(repr(c) for c in unknown)}, not a check of a "
                      f"{monitoring_type} schedule", fix=f"its checks: {', '.join(checks)}")
    now = utcnow().isoformat()
    return {**alerting, "rules": {c: {**r, "updated_at": r.get("updated_at") or now} for c, r in rules.items()}}


def _fits(session: Session, kind: kinds.MonitorKind, base: service.Baseline, endpoint: str) -> None:
    if kind.fits_endpoint is not None:
        ep = service.get_endpoint(session, endpoint)
        kind.fits_endpoint(base, endpoint, CaptureSchema.model_validate(ep.schema))


def create(session: Session, *, name: str, endpoint: str, monitoring_type: str, expression: str, baseline_id: str,
           window_start: str, window_end: str, drift: dict[str, Any] | None, alerting: dict[str, Any] | None,
           actor: Principal, now: dt.datetime | None = None, output_uri: str | None = None,
           job_definition: str | None = None) -> Schedule:
    """A schedule; ``output_uri`` (a folder of the object store) also receives each run's reports in SageMaker's
    layout (`report_folder`), ``job_definition`` names the job definition it was made from."""
    if monitoring_type not in kinds.names():
        raise Invalid(f"type {monitoring_type!r} is not one of {', '.join(kinds.names())}",
                      fix="pick a monitoring type")
    _check_rules(expression, window_start, window_end)
    service.get_endpoint(session, endpoint)
    check_baseline(session, monitoring_type, baseline_id, endpoint)
    _check_drift(session, monitoring_type, baseline_id, drift)
    alerting = _alerting(monitoring_type, alerting)
    if session.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
        raise Conflict(f"monitoring schedule {name!r} already exists", fix="pick another name or update it")
    now = now or utcnow()
    row = Schedule(id=new_id(), name=name, endpoint=endpoint, type=monitoring_type, expression=expression,
                   window_start=window_start, window_end=window_end, baseline_id=baseline_id, drift=drift,
                   alerting=alerting, status="Scheduled", next_run_at=_first_run(expression, now),
                   output_uri=output_uri, job_definition=job_definition, created_by=actor.name, created_at=now,
                   updated_at=now)
    session.add(row)
    session.flush()
    _monitor_node(session, row, actor.name)
    audit.record(session, actor=actor.name, action="schedule.created", subject_type="schedule", subject_id=name,
                 after={"endpoint": endpoint, "type": monitoring_type, "expression": expression,
                        "baseline_id": baseline_id, **({"output_uri": output_uri} if output_uri else {}),
                        **({"job_definition": job_definition} if job_definition else {})})
    return row


def _monitor_node(session: Session, sched: Schedule, actor: str) -> lineage.Entity:
    """The schedule in lineage, downstream of its endpoint (version → deployment → endpoint → monitor → alert):
    the version's graph then shows what watches it and what that raised. Keyed by id: a name can be reused."""
    endpoint_ctx, _ = lineage.ensure_context(session, context_type="Endpoint", name=sched.endpoint,
                                             key=f"endpoint:{sched.endpoint}", actor=actor)
    node, created = lineage.ensure_context(session, context_type="MonitoringSchedule", name=sched.name,
                                           key=f"schedule:{sched.id}", actor=actor,
                                           properties={"type": sched.type, "schedule": sched.name})
    lineage.link(session, endpoint_ctx, node, "AssociatedWith", actor=actor, fresh=created)
    return node


def get(session: Session, name: str) -> Schedule:
    row = session.scalar(select(Schedule).where(Schedule.name == name))
    if row is None:
        raise NotFound(f"no monitoring schedule named {name!r}", fix="list them with GET /api/v1/monitoring-schedules",
                       fixes={"sagemaker": "list them with ListMonitoringSchedules"})
    return row


def list_schedules(session: Session, limit: int, offset: int) -> tuple[list[Schedule], int, workers.WorkerStatus]:
    """A page of schedules, and whether a scheduler is running them (its heartbeats, from any process)."""
    rows, total = paginate(session, select(Schedule), Schedule.name, limit=limit, offset=offset)
    return rows, total, workers.status(session, workers.SCHEDULER)


def _mine(session: Session, sched: Schedule, actor: Principal, verb: str) -> None:
    auth.require_creator(session, sched.created_by, actor, f"monitoring schedule {sched.name!r}", verb)


def set_status(session: Session, name: str, status: str, actor: Principal, now: dt.datetime | None = None) -> Schedule:
    row = get(session, name)
    _mine(session, row, actor, "start or stop it")
    before = row.status
    row.status = status
    if status == "Scheduled":
        row.next_run_at = _first_run(row.expression, now or utcnow())
    row.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action=f"schedule.{'started' if status == 'Scheduled' else 'stopped'}",
                 subject_type="schedule", subject_id=name, before={"status": before}, after={"status": status})
    if status == "Stopped":   # a stopped schedule's runs no longer fail; no run would ever resolve that alert
        _resolve_open(session, row, actor.name, "schedule stopped", (FAILED_CHECK,))
    return row


def finished(session: Session, sched: Schedule) -> None:
    """A schedule with no fire time left (a one-time NOW schedule after its run) stops; starting it again runs
    it once more."""
    sched.status, sched.updated_at = "Stopped", utcnow()
    session.flush()
    audit.record(session, actor="scheduler", action="schedule.stopped", subject_type="schedule",
                 subject_id=sched.name, before={"status": "Scheduled"},
                 after={"status": "Stopped", "reason": "no fire time left"})
    _resolve_open(session, sched, "scheduler", "no fire time left", (FAILED_CHECK,))


def update(session: Session, name: str, fields: dict[str, Any], actor: Principal) -> Schedule:
    row = get(session, name)
    _mine(session, row, actor, "change it")
    if "baseline_id" in fields:
        check_baseline(session, row.type, fields["baseline_id"], row.endpoint)
    if "baseline_id" in fields or "drift" in fields:
        _check_drift(session, row.type, fields.get("baseline_id", row.baseline_id), fields.get("drift", row.drift))
    if "alerting" in fields:
        fields = {**fields, "alerting": _alerting(row.type, fields["alerting"])}
    before = {k: getattr(row, k) for k in fields}
    for k, v in fields.items():
        setattr(row, k, v)
    _check_rules(row.expression, row.window_start, row.window_end)
    if "expression" in fields:
        row.next_run_at = _first_run(row.expression, utcnow())
    row.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="schedule.updated", subject_type="schedule", subject_id=name,
                 before=before, after=fields)
    return row


def delete(session: Session, name: str, actor: Principal) -> None:
    """Delete a schedule with its executions and alerts (as SageMaker's DeleteMonitoringSchedule succeeds
    whatever the schedule's state). An open alert is resolved first, in the same transaction, saying why: its
    subscribers get alert.resolved, and the audit log keeps the alert's whole history (opened … resolved
    because the schedule was deleted) after its row has gone."""
    row = get(session, name)
    _mine(session, row, actor, "delete it")
    _resolve_open(session, row, actor.name, "schedule deleted")
    session.delete(row)
    session.flush()
    audit.record(session, actor=actor.name, action="schedule.deleted", subject_type="schedule", subject_id=name,
                 before={"endpoint": row.endpoint, "type": row.type})


def _resolve_open(session: Session, row: Schedule, actor: str, reason: str,
                  checks: tuple[str, ...] | None = None) -> None:
    """Resolve the schedule's open alerts (of ``checks`` only, when given) for ``reason``, on the record: lineage,
    an audited alert.resolved saying why, and the event to subscribers."""
    for alert in session.scalars(select(Alert).where(
            Alert.schedule_id == row.id, Alert.status == "open", *([Alert.check.in_(checks)] if checks else []))
            .order_by(Alert.opened_at, Alert.id)):
        _resolve(session, row, alert, actor, reason)
    session.flush()


def _resolve(session: Session, row: Schedule, alert: Alert, actor: str, reason: str) -> None:
    """One open alert resolved for ``reason``: lineage, an audited alert.resolved saying why, the subscribers' event."""
    alert.status, alert.resolved_at = "resolved", utcnow()
    lineage.ensure_action(session, action_type="Alert", key=lineage.alert_key(alert.id),
                          name=_alert_name(row, alert), status="Stopped", end_time=alert.resolved_at, actor=actor)
    audit.record(session, actor=actor, action="alert.resolved", subject_type="alert", subject_id=alert.id,
                 after={"reason": reason, "schedule": row.name, "check": alert.check,
                        "subject": alert.subject, "occurrences": alert.occurrences})
    last = session.get(Execution, alert.last_execution_id)
    if last is not None:
        events.emit(session, "alert.resolved", alert.id, {**alert_payload(alert, row, last), "reason": reason})


def resolve_alert(session: Session, alert_id: str, reason: str, actor: Principal) -> tuple[Alert, Schedule]:
    """Close an open alert by hand, saying why (a breach handled outside mlgov: the model retrained and redeployed,
    the upstream feed mended, a schedule stopped for good). The schedule's owner's or an admin's, as the schedule
    is; a later run that breaches again opens a new alert."""
    alert, sched = get_alert(session, alert_id)
    _mine(session, sched, actor, "resolve its alerts")
    if alert.status != "open":
        raise Conflict(f"alert {alert_id} is {alert.status} already",
                       fix="nothing to do; a new breach opens a new alert")
    _resolve(session, sched, alert, actor.name, f"resolved by {actor.name}: {reason}")
    session.flush()
    return alert, sched


def executions(session: Session, name: str, limit: int, offset: int) -> tuple[list[Execution], int]:
    row = get(session, name)
    return paginate(session, select(Execution).where(Execution.schedule_id == row.id),
                    Execution.scheduled_for.desc(), Execution.id, limit=limit, offset=offset)


# --- running ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ran:
    """A run computed and its analysis's files stored, or the reason it failed; not yet on the record
    (`record_run`), which also publishes its reports. ``judged``: the schedule's (type, baseline) it ran with."""

    started_at: dt.datetime
    judged: tuple[str, str]
    analysis: service.Finished | None
    failure: str | None = None


def compute_run(session: Session, store: ObjectStore, sched: Schedule, ex: Execution, actor: Principal) -> Ran:
    """The monitor's work for an execution, on a session it only reads: a window's analysis may take minutes, and
    must not hold the write turn capture ingest and every other write wait for. A failure is the run's outcome (a
    Failed execution), not an error."""
    started, judged = utcnow(), (sched.type, sched.baseline_id)
    try:
        finished = _run(session, store, sched, ex, actor)
    except Exception as exc:   # a broken run is a Failed execution, not a dead scheduler
        log.exception("execution %s of %s failed", ex.id, sched.name)
        return Ran(started, judged, None, failure_reason(exc))
    return Ran(started, judged, finished)


def record_run(session: Session, store: ObjectStore, sched: Schedule, ex: Execution, ran: Ran) -> Execution:
    """Record a computed run in the caller's write transaction: its analysis and published reports in a savepoint
    (if that fails, the execution is Failed with the reason), then the outcome, alerts, retraining and the
    execution.completed event. A run whose schedule changed its type or baseline while it computed is Failed: its
    violations judge what the schedule no longer monitors."""
    ex.started_at = ran.started_at
    analysis: Analysis | None = None
    failure = ran.failure
    if ran.analysis is not None and ran.judged != (sched.type, sched.baseline_id):
        failure = (f"schedule {sched.name!r} changed its baseline or type while this run computed; the next run "
                   "judges the capture against the new one")
    elif ran.analysis is not None:
        try:
            with session.begin_nested():
                analysis = ran.analysis.record(session)
                if sched.output_uri and analysis.status != "Failed":
                    publish_reports(store, sched, ex, analysis.prefix)
        except Exception as exc:
            log.exception("execution %s of %s: its analysis could not be recorded", ex.id, sched.name)
            analysis, failure = None, failure_reason(exc)
    if analysis is None:
        ex.status, ex.failure_reason = "Failed", failure
    else:
        ex.analysis_id, ex.status = analysis.id, analysis.status
        ex.failure_reason, ex.violation_count = analysis.failure_reason, analysis.violation_count
    ex.ended_at = utcnow()
    sched.last_run_at = ex.scheduled_for
    session.flush()
    violations = ran.analysis.violations if analysis is not None and ran.analysis is not None and \
        analysis.status == "CompletedWithViolations" else []
    _alerts(session, store, sched, ex, violations)
    _completed(session, sched, ex)
    return ex


def execute(session: Session, store: ObjectStore, sched: Schedule, ex: Execution, actor: Principal) -> Execution:
    """Compute and record one execution in the caller's transaction (a manual run's: its window is the caller's)."""
    return record_run(session, store, sched, ex, compute_run(session, store, sched, ex, actor))


def _run(session: Session, store: ObjectStore, sched: Schedule, ex: Execution, actor: Principal) -> service.Finished:
    """The analysis of the execution's window, by the kind the schedule monitors."""
    window = kinds.Window(baseline_id=sched.baseline_id, endpoint=sched.endpoint, start=ex.window_start,
                          end=ex.window_end, drift=sched.drift)
    kind = kinds.get(sched.type)
    _fits(session, kind, service.get_baseline(session, sched.baseline_id), sched.endpoint)   # schema changed since?
    return kind.run_window(session, store, window, actor)


REPORTS = ("constraint_violations.json", "statistics.json", "analysis.json")   # SageMaker's file names: the
# analyzer writes the first two per execution, Clarify's bias and explainability monitors the first and the last


def report_folder(store: ObjectStore, sched: Schedule, ex: Execution) -> str | None:
    """The object-store folder of an execution's published reports, in SageMaker's layout:
    ``<output>/<endpoint>/<schedule>/<yyyy>/<mm>/<dd>/<hh>`` (the hour the run was scheduled for; a schedule
    firing more than hourly keeps that hour's latest run there); a manual run adds ``/<execution id>`` so it never
    overwrites a scheduled run's reports. None when the schedule publishes nowhere."""
    base = store.key_of(sched.output_uri.rstrip("/")) if sched.output_uri else None
    if base is None or system_folder(base) is not None:   # (a definition written before output_key checked it)
        return None
    folder = f"{base}/{sched.endpoint}/{sched.name}/{ex.scheduled_for:%Y/%m/%d/%H}".lstrip("/")
    return folder if ex.trigger == "schedule" else f"{folder}/{ex.id}"


def publish_reports(store: ObjectStore, sched: Schedule, ex: Execution, prefix: str) -> None:
    """Copy the analysis's SageMaker files to the schedule's output folder, so code that reads
    ``constraint_violations.json`` from there keeps working."""
    folder = report_folder(store, sched, ex)
    if folder is None:
        raise Invalid(f"output URI {sched.output_uri} of schedule {sched.name!r} is outside the object store "
                      f"({store.root_uri}…) or in one of mlgov's own folders",
                      fix="update the schedule with an output URI in the store, in a folder of your own")
    for name in REPORTS:
        key = f"{prefix}/{name}"
        if store.exists(key):
            store.put(f"{folder}/{name}", store.get(key), "application/json")


def failure_reason(exc: BaseException) -> str:
    """What went wrong, for the execution row: a database error by the driver's message (not the SQL)."""
    detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(exc).__name__}: {detail}"


def record_failure(session: Session, execution_id: str, reason: str, claimer: str | None = None) -> Execution | None:
    """End an execution as Failed with ``reason`` when its own transaction could not be committed (the runner calls
    this in a fresh transaction); None if the execution is gone (its schedule was deleted), already ended, or
    (``claimer``: the worker whose run failed) claimed by another worker since, whose result it must not touch."""
    ex = session.get(Execution, execution_id, with_for_update=True)
    sched = session.get(Schedule, ex.schedule_id) if ex is not None else None
    if ex is None or sched is None or ex.status != "Pending" or (claimer is not None and ex.worker != claimer):
        return None
    now = utcnow()
    ex.status, ex.failure_reason, ex.analysis_id, ex.violation_count = "Failed", reason, None, 0
    ex.started_at, ex.ended_at = ex.started_at or now, now
    sched.last_run_at = ex.scheduled_for
    session.flush()
    try:
        with session.begin_nested():   # the Failed record matters more than its alert: keep it if the alert fails
            _failed_run(session, None, sched, ex)
    except Exception:
        log.exception("could not open the execution_failed alert of schedule %s", sched.name)
    _completed(session, sched, ex)
    return ex


def _completed(session: Session, sched: Schedule, ex: Execution) -> None:
    events.emit(session, "execution.completed", sched.name,
                {"schedule": sched.name, "execution": ex.id, "status": ex.status, "analysis": ex.analysis_id,
                 "window": [ex.window_start.isoformat(), ex.window_end.isoformat()]})


def _alerts(session: Session, store: ObjectStore, sched: Schedule, ex: Execution,
            violations: list[dict[str, Any]]) -> None:
    """One alert per (schedule, subject, check), the subject being the metric or feature that breached: opened on
    a breach, kept open (one more occurrence) while breaches continue, resolved by a run that no longer breaches
    it — only a run whose window ends at or after the alert's newest breached window: re-running an older window
    never resolves a newer alert. A Failed execution (no data, a broken baseline) judges no check: it opens or
    continues the schedule's `FAILED_CHECK` alert instead, which its next judged run resolves."""
    if ex.status == "Failed":
        _failed_run(session, store, sched, ex)
        return
    subject_of = kinds.get(sched.type).subject
    breaches: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in violations:
        breaches.setdefault((v.get("constraint_check_type", "violation"), subject_of(v)), []).append(v)
    open_alerts = list(session.scalars(select(Alert).where(Alert.schedule_id == sched.id, Alert.status == "open")
                                       .order_by(Alert.opened_at, Alert.id)))
    ends: dict[str, dt.datetime] = {eid: end for eid, end in session.execute(
        select(Execution.id, Execution.window_end).where(Execution.id.in_({a.last_execution_id for a in open_alerts})))}
    # an alert from before subjects (subject "") stands for its whole check until a run passes that check
    keyed = {(a.check, a.subject): a for a in open_alerts}
    breached: set[str] = set()
    ep = service.get_endpoint(session, sched.endpoint)
    for (check, subject), found in breaches.items():
        alert = keyed.get((check, subject)) or keyed.get((check, ""))
        if alert is None:
            _open_alert(session, store, sched, ex, ep, check, subject, found)
            continue
        first = alert.id not in breached   # a pre-subject alert may gather several subjects of one run
        breached.add(alert.id)
        alert.occurrences += first
        if ex.window_end >= ends.get(alert.last_execution_id, ex.window_end):   # the newest window speaks for it
            alert.details = (found if first else [*alert.details, *found])[:50]
            alert.last_execution_id = ex.id
    for alert in open_alerts:
        if alert.id in breached or ex.window_end < ends.get(alert.last_execution_id, ex.window_end) or (
                alert.check == FAILED_CHECK and (ex.trigger != "schedule"   # a backfill proves nothing of now
                                                 or _failing(session, sched, ex))):
            continue
        alert.status, alert.resolved_at, alert.last_execution_id = "resolved", utcnow(), ex.id
        lineage.ensure_action(session, action_type="Alert", key=lineage.alert_key(alert.id),
                              name=_alert_name(sched, alert), status="Completed", end_time=alert.resolved_at,
                              actor="scheduler")
        audit.record(session, actor="scheduler", action="alert.resolved", subject_type="alert",
                     subject_id=alert.id, after={"execution": ex.id})
        events.emit(session, "alert.resolved", alert.id, alert_payload(alert, sched, ex))
    session.flush()


FAILED_CHECK = "execution_failed"
"""The check of the alert a schedule's failed scheduled runs keep open: a monitor that cannot run (an endpoint
that stopped capturing, a baseline that no longer fits) watches nothing, and its owner must hear of it as of a
breach. A manual run's failure is seen by whoever ran it, so it opens none."""

NOT_RETRAINED = frozenset({FAILED_CHECK, "missing_column_check", "extra_column_check", "data_type_check"})
"""Checks whose alerts request no retraining: a monitor that cannot run, and a capture whose columns or types are
not the baseline's (a training set's label, a renamed or retyped field) are mended in the pipeline, not by a new
model; a request for them would also spend the group's cooldown, so a real breach soon after would send none."""


def _failed_run(session: Session, store: ObjectStore | None, sched: Schedule, ex: Execution) -> None:
    """Open or continue the FAILED_CHECK alert, unless the schedule is stopped (a one-time NOW schedule after its
    run, too: no later run would resolve it) or a run of a newer window has completed since (a run taken over
    late from a gone claimer speaks for its own window only)."""
    if ex.trigger != "schedule":
        return
    session.refresh(sched, ["status"])   # a stop committed while this run was under way (its row is locked now)
    if sched.status != "Scheduled" or session.scalar(select(Execution.id).where(
            Execution.schedule_id == sched.id, Execution.trigger == "schedule", Execution.window_end > ex.window_end,
            Execution.status.in_(("Completed", "CompletedWithViolations"))).limit(1)) is not None:
        return
    found = [{"constraint_check_type": FAILED_CHECK, "description": ex.failure_reason or "the run failed"}]
    alert = session.scalar(select(Alert).where(Alert.schedule_id == sched.id, Alert.status == "open",
                                               Alert.check == FAILED_CHECK))
    if alert is None:
        if _failing(session, sched, ex):
            _open_alert(session, store, sched, ex, service.get_endpoint(session, sched.endpoint), FAILED_CHECK, "",
                        found)
        return
    alert.occurrences += 1
    last_end = session.scalar(select(Execution.window_end).where(Execution.id == alert.last_execution_id))
    if last_end is None or ex.window_end >= last_end:   # the newest window's failure is the one shown
        alert.details, alert.last_execution_id = found, ex.id
    session.flush()


def _failing(session: Session, sched: Schedule, upto: Execution) -> bool:
    """Whether the schedule's FAILED_CHECK rule is met at ``upto`` (an M-of-N rule, as SageMaker's for checks:
    ``datapoints`` of its last ``period`` ended scheduled runs failed; default 1 of 1), so a schedule whose
    traffic comes and goes can ask for 3 failures of 5 before anyone is told. Runs claimed before the schedule
    last changed (stopped, restarted, its rule or window edited) do not count: they failed under other terms."""
    rule = alert_rule(sched, FAILED_CHECK)
    statuses = session.scalars(select(Execution.status).where(
        Execution.schedule_id == sched.id, Execution.trigger == "schedule", Execution.window_end <= upto.window_end,
        Execution.created_at >= sched.updated_at,
        Execution.status.in_(("Completed", "CompletedWithViolations", "Failed")))
        .order_by(Execution.window_end.desc(), Execution.created_at.desc()).limit(rule["period"]))
    return sum(status == "Failed" for status in statuses) >= int(rule["datapoints"])


def _alert_name(sched: Schedule, alert: Alert) -> str:
    return f"{sched.name}: {alert.check}" + (f" on {alert.subject}" if alert.subject else "")


def _open_alert(session: Session, store: ObjectStore | None, sched: Schedule, ex: Execution, ep: Endpoint,
                check: str, subject: str, found: list[dict[str, Any]]) -> None:
    """Open an alert on the record (lineage, audit, event); a breach a new model can mend (not `NOT_RETRAINED`)
    also requests retraining."""
    alert = Alert(id=new_id(), schedule_id=sched.id, check=check, subject=subject, status="open",
                  model_group=ep.model_group, model_version=ep.model_version, opened_execution_id=ex.id,
                  last_execution_id=ex.id, details=found[:50], occurrences=1, opened_at=utcnow())
    session.add(alert)
    session.flush()
    node, _ = lineage.ensure_action(session, action_type="Alert", key=lineage.alert_key(alert.id),
                                    name=_alert_name(sched, alert), status="InProgress", start_time=alert.opened_at,
                                    actor="scheduler", properties={"schedule": sched.name, "check": check,
                                                                   "subject": subject})
    endpoint_ctx, _ = lineage.ensure_context(session, context_type="Endpoint", name=sched.endpoint,
                                             key=f"endpoint:{sched.endpoint}", actor="scheduler")
    lineage.link(session, endpoint_ctx, node, "AssociatedWith", actor="scheduler")
    lineage.link(session, _monitor_node(session, sched, "scheduler"), node, "AssociatedWith", actor="scheduler")
    payload = alert_payload(alert, sched, ex)
    audit.record(session, actor="scheduler", action="alert.opened", subject_type="alert", subject_id=alert.id,
                 after={"schedule": sched.name, "check": check, "subject": subject, "violations": len(found)})
    events.emit(session, "alert.opened", alert.id, payload)
    if check not in NOT_RETRAINED and store is not None:
        _retrain(session, store, alert, sched, ep, ex, payload)


def alert_payload(alert: Alert, sched: Schedule, ex: Execution) -> dict[str, Any]:
    return {"alert": alert.id, "status": alert.status, "check": alert.check, "subject": alert.subject,
            "schedule": sched.name, "endpoint": sched.endpoint, "model_group": alert.model_group,
            "model_version": alert.model_version, "execution": ex.id, "analysis": ex.analysis_id,
            "violations": alert.details,
            "window": {"start": ex.window_start.isoformat(), "end": ex.window_end.isoformat()}}


def retraining_data(session: Session, store: ObjectStore, sched: Schedule, ep: Endpoint,
                    ex: Execution) -> dict[str, Any]:
    """Where a retraining pipeline finds the data: full URIs (``s3://bucket/…`` or ``file:///…``) of the endpoint's
    capture tree (SageMaker's layout: endpoint/variant/yyyy/mm/dd/hh/), of the hour partitions holding the
    breached window, and of the baseline's files and the dataset it was built from."""
    hours = sorted(set(session.scalars(select(CaptureBatch.hour).where(
        CaptureBatch.endpoint_id == ep.id, CaptureBatch.last_time >= ex.window_start,
        CaptureBatch.first_time < ex.window_end))))
    base = service.get_baseline(session, sched.baseline_id)
    return {
        "data_uri": store.folder_uri(layout.capture_folder(ep.name, ep.variant)),
        "data_uris": [store.folder_uri(layout.capture_folder(ep.name, ep.variant, h)) for h in hours],
        "baseline": {"id": base.id, "kind": base.kind, "dataset_uri": base.dataset_uri,
                     "uris": [store.uri(k) for k in sorted(store.list(f"{base.prefix}/"))]},
    }


def _retrain(session: Session, store: ObjectStore, alert: Alert, sched: Schedule, ep: Endpoint, ex: Execution,
             payload: dict[str, Any]) -> None:
    trig = session.scalar(select(RetrainingTrigger).where(RetrainingTrigger.model_group == alert.model_group))
    if trig is None:
        return
    now = utcnow()
    if trig.last_triggered_at and now - trig.last_triggered_at < dt.timedelta(seconds=trig.cooldown_seconds):
        log.info("retraining for %s suppressed by cooldown", trig.model_group)
        return
    trig.last_triggered_at = now
    body = {**payload, **retraining_data(session, store, sched, ep, ex), "requested_at": now.isoformat()}
    events.emit(session, "retraining.requested", alert.model_group or "", body, to=[trig.webhook_id])
    audit.record(session, actor="scheduler", action="retraining.requested", subject_type="model_group",
                 subject_id=alert.model_group or "", after={"alert": alert.id, "schedule": sched.name})


def runnable(session: Session, name: str, actor: Principal) -> Schedule:
    """The schedule ``actor`` may run by hand (its creator's, or an admin's)."""
    sched = get(session, name)
    _mine(session, sched, actor, "run it")
    return sched


def check_run_window(start: dt.datetime, end: dt.datetime) -> None:
    """A manual run's window. One that has not begun is refused: nothing can be captured there yet, and its Failed
    run would only stand in the timeline (a window under way is a partial one, and runs)."""
    if end <= start:
        raise Invalid("end is not after start", fix="give an ISO-8601 window with start < end")
    if start >= utcnow():
        raise Invalid(f"the window starts at {start.isoformat()}, after now ({utcnow().isoformat(timespec='seconds')}):"
                      " nothing is captured there yet", fix="run a window that has begun; the schedule itself runs "
                      "each window once it has ended")


def run_now(session: Session, store: ObjectStore, name: str, start: dt.datetime, end: dt.datetime,
            actor: Principal) -> Execution:
    """A manual run of the schedule over [start, end), computed and recorded in the caller's transaction (the API
    computes on a read session and records in a write turn of its own: `compute_now`, `record_now`)."""
    ex, ran = compute_now(session, store, name, start, end, actor)
    return record_now(session, store, name, ex, ran, actor)


def compute_now(session: Session, store: ObjectStore, name: str, start: dt.datetime, end: dt.datetime,
                actor: Principal) -> tuple[Execution, Ran]:
    """A manual run's execution (not yet added to any session) and its computed run."""
    check_run_window(start, end)
    sched = runnable(session, name, actor)
    ex = Execution(id=new_id(), schedule_id=sched.id, scheduled_for=utcnow(), trigger="manual", status="Pending",
                   window_start=start, window_end=end, worker=f"api:{os.getpid()}", created_at=utcnow())
    return ex, compute_run(session, store, sched, ex, actor)


def record_now(session: Session, store: ObjectStore, name: str, ex: Execution, ran: Ran,
               actor: Principal) -> Execution:
    """Record a manual run `compute_now` computed, if its schedule is still the one it ran for."""
    sched = runnable(session, name, actor)
    if sched.id != ex.schedule_id:
        raise Conflict(f"schedule {name!r} was deleted and created again while the run computed",
                       fix="run the window again")
    session.add(ex)
    session.flush()
    return record_run(session, store, sched, ex, ran)


def trends(session: Session, store: ObjectStore, name: str, limit: int) -> list[tuple[Execution, list[kinds.Point]]]:
    """The schedule's latest ``limit`` executions in the order of the windows they judged, each with the numbers
    its kind charts (none for a failed or pending run): what the console's trend charts draw against the window's
    time. A backfill (a manual run of an older window) therefore sits where its data belongs, not where it ran, and
    a window run twice shows its latest run only (its latest judged one, if a later run failed). Their analyses
    load in one query, and only the charted files are read (`kinds.series`)."""
    sched = get(session, name)
    latest = session.scalars(select(Execution).where(Execution.schedule_id == sched.id)
                             .order_by(Execution.scheduled_for.desc(), Execution.id).limit(limit)).all()
    by_window: dict[dt.datetime, Execution] = {}
    judged = ("Completed", "CompletedWithViolations")
    for ex in reversed(latest):       # oldest run first: a later run of a window replaces it, unless it failed
        kept = by_window.get(ex.window_start)
        if kept is None or ex.status in judged or kept.status not in judged:
            by_window[ex.window_start] = ex
    rows = [by_window[w] for w in sorted(by_window)]
    done = [ex for ex in rows if ex.analysis_id and ex.status in ("Completed", "CompletedWithViolations")]
    analyses = {a.id: a for a in session.scalars(select(service.Analysis).where(
        service.Analysis.id.in_([ex.analysis_id for ex in done])))} if done else {}
    charted = [ex for ex in done if ex.analysis_id in analyses]
    points = dict(zip((ex.id for ex in charted), kinds.series(session, store, [analyses[ex.analysis_id or ""]
                                                                                for ex in charted]), strict=True))
    return [(ex, points.get(ex.id, [])) for ex in rows]


# --- alerts and retraining triggers -----------------------------------------------------------------------------

def schedule_names(session: Session, ids: set[str]) -> dict[str, str]:
    """Schedule id → name, in one query (alert lists show their schedule's name)."""
    return dict(session.execute(select(Schedule.id, Schedule.name).where(Schedule.id.in_(ids))).all()) \
        if ids else {}


def get_alert(session: Session, alert_id: str) -> tuple[Alert, Schedule]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id!r} not found", fix="list alerts with GET /api/v1/alerts")
    sched = session.get(Schedule, alert.schedule_id)
    assert sched is not None
    return alert, sched


def retraining_requests(session: Session, alert: Alert) -> list[events.EventDeliveries]:
    """The retraining requests this alert sent (none when no trigger was set or the cooldown held it back), each
    with its deliveries and their attempts."""
    return [e for e in events.event_deliveries(session, "retraining.requested", alert.model_group or "")
            if e.event.payload.get("alert") == alert.id]


def list_alerts(session: Session, *, status: str | None, schedule: str | None, model_group: str | None,
                limit: int, offset: int) -> tuple[list[Alert], int]:
    stmt = select(Alert)
    if status:
        stmt = stmt.where(Alert.status == status)
    if schedule:
        stmt = stmt.where(Alert.schedule_id == get(session, schedule).id)
    if model_group:
        stmt = stmt.where(Alert.model_group == model_group)
    return paginate(session, stmt, Alert.opened_at.desc(), Alert.id, limit=limit, offset=offset)


def list_triggers(session: Session) -> list[RetrainingTrigger]:
    """Every group's retraining trigger, by group."""
    return list(session.scalars(select(RetrainingTrigger).order_by(RetrainingTrigger.model_group)))


def set_trigger(session: Session, group: str, *, url: str, secret: str, cooldown_seconds: int,
                actor: Principal, policy: OutboundPolicy, box: SecretBox) -> RetrainingTrigger:
    """The trigger is a webhook addressed to one group's pipeline: its URL passes the outbound policy now and at
    every send (the webhook dispatcher sends it), its secret is stored encrypted."""
    registry.get_group(session, group)
    trig = session.scalar(select(RetrainingTrigger).where(RetrainingTrigger.model_group == group))
    hook = events.create_webhook(session, url=url, secret=secret, events=["retraining.requested"],
                                 description=f"retraining pipeline of {group}", actor=actor.name, policy=policy,
                                 box=box, kind="retraining trigger")
    if trig is None:
        trig = RetrainingTrigger(id=new_id(), model_group=group, webhook_id=hook.id, cooldown_seconds=cooldown_seconds,
                                 created_by=actor.name, created_at=utcnow())
        session.add(trig)
    else:
        events.delete_webhook(session, trig.webhook_id, actor=actor.name)
        trig.webhook_id, trig.cooldown_seconds = hook.id, cooldown_seconds
    session.flush()
    audit.record(session, actor=actor.name, action="retraining_trigger.set", subject_type="model_group",
                 subject_id=group, after={"url": safe_url(url), "cooldown_seconds": cooldown_seconds})
    return trig


def delete_trigger(session: Session, group: str, *, actor: Principal) -> None:
    """The group's breaches stop requesting retraining. Its webhook is deactivated, not deleted: the deliveries it
    made stay readable from the alerts that sent them."""
    registry.get_group(session, group)
    # locked (PostgreSQL): a second, concurrent removal waits, then finds none, rather than auditing it twice
    trig = session.scalar(select(RetrainingTrigger).where(RetrainingTrigger.model_group == group)
                          .with_for_update().execution_options(populate_existing=True))
    if trig is None:
        raise NotFound(f"model group {group!r} has no retraining trigger",
                       fix="list them on the console's Admin page; set one with PUT "
                           f"/api/v1/model-groups/{group}/retraining-trigger")
    hook = session.get(events.Webhook, trig.webhook_id)
    if hook is not None and hook.active:
        events.delete_webhook(session, trig.webhook_id, actor=actor.name)
    before = {"url": safe_url(hook.url) if hook is not None else None, "cooldown_seconds": trig.cooldown_seconds}
    session.delete(trig)
    session.flush()
    audit.record(session, actor=actor.name, action="retraining_trigger.deleted", subject_type="model_group",
                 subject_id=group, before=before)


def prometheus(session: Session, store: ObjectStore) -> bytes:
    """SageMaker's CloudWatch monitoring metrics, exposed by prometheus-client (its escaping, HELP and TYPE lines)."""
    registry = CollectorRegistry(auto_describe=False)
    families: list[Metric] = []

    def metric(family: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, help_: str,
               labels: list[str], samples: Iterable[tuple[list[str], float]]) -> None:
        fam = family(name, help_, labels=labels)
        for values, value in samples:
            fam.add_metric(values, value)
        families.append(fam)

    status_s, time_s, viol_s, drift_s = [], [], [], []
    for sched in session.scalars(select(Schedule).order_by(Schedule.name)):
        last = latest_execution(session, sched)
        if last is None:
            continue
        for st in ("Completed", "CompletedWithViolations", "Failed"):
            status_s.append(([sched.name, st], 1.0 if last.status == st else 0.0))
        when = last.ended_at or last.created_at
        time_s.append(([sched.name], when.timestamp()))
        viol_s.append(([sched.name], float(last.violation_count)))
        analysis = session.get(Analysis, last.analysis_id) if last.analysis_id else None
        if analysis is not None and analysis.kind == "DataQuality" and analysis.status != "Failed":
            for d in json.loads(store.get(f"{analysis.prefix}/drift.json"))["features"]:
                if d.get("statistic") is not None:
                    drift_s.append(([sched.name, d["feature"], d["method"]], float(d["statistic"])))
    metric(GaugeMetricFamily, "mlgov_execution_last_status", "1 for the status of the schedule's latest execution",
           ["schedule", "status"], status_s)
    metric(GaugeMetricFamily, "mlgov_execution_last_timestamp_seconds", "end time of the latest execution",
           ["schedule"], time_s)
    metric(GaugeMetricFamily, "mlgov_execution_violations", "constraint violations in the latest execution",
           ["schedule"], viol_s)
    metric(GaugeMetricFamily, "mlgov_feature_drift", "drift statistic per feature in the latest execution",
           ["schedule", "feature", "method"], drift_s)
    open_alerts = session.execute(select(Schedule.name, Alert.check, func.count()).join(Schedule, Schedule.id ==
                                  Alert.schedule_id).where(Alert.status == "open").group_by(Schedule.name, Alert.check))
    metric(GaugeMetricFamily, "mlgov_alerts_open", "open alerts per schedule and check", ["schedule", "check"],
           (([s, ch], float(n)) for s, ch, n in open_alerts))
    caps = session.execute(select(Endpoint.name, func.count(CaptureEvent.id)).join(
        CaptureEvent, CaptureEvent.endpoint_id == Endpoint.id, isouter=True).group_by(Endpoint.name))
    metric(CounterMetricFamily, "mlgov_capture_records", "captured records accepted per endpoint", ["endpoint"],
           (([e], float(n)) for e, n in caps))
    gts = session.execute(select(Endpoint.name, func.count(GroundTruth.id)).join(
        GroundTruth, GroundTruth.endpoint_id == Endpoint.id, isouter=True).group_by(Endpoint.name))
    metric(CounterMetricFamily, "mlgov_ground_truth_records", "ground-truth labels accepted per endpoint",
           ["endpoint"], (([e], float(n)) for e, n in gts))
    registry.register(_Families(families))
    return generate_latest(registry)


class _Families(Collector):
    """Metric families computed for one scrape (a fresh registry each time: nothing global to go stale)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def find_executions(session: Session, *, schedule: str | None = None, endpoint: str | None = None,
                    job_definition: str | None = None, monitoring_type: str | None = None, status: str | None = None,
                    scheduled: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
                    created: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
                    sort: str = "-scheduled", limit: int, offset: int,
                    after: Sequence[Any] | None = None) -> tuple[list[Execution], int]:
    """A page of executions of every schedule matching the filters (``scheduled``/``created``: exclusive
    after/before bounds)."""
    stmt = select(Execution).join(Schedule, Schedule.id == Execution.schedule_id)
    where = [Schedule.name == schedule if schedule else None, Schedule.endpoint == endpoint if endpoint else None,
             Schedule.job_definition == job_definition if job_definition else None,
             Schedule.type == monitoring_type if monitoring_type else None,
             Execution.status == status if status else None,
             Execution.scheduled_for > scheduled[0] if scheduled[0] else None,
             Execution.scheduled_for < scheduled[1] if scheduled[1] else None,
             Execution.created_at > created[0] if created[0] else None,
             Execution.created_at < created[1] if created[1] else None]
    return paginate(session, stmt, *execution_order(sort), limit=limit, offset=offset, where=where, after=after)


def execution_order(sort: str = "-scheduled") -> tuple[Any, ...]:
    """The ORDER BY of `find_executions` by ``created``, ``scheduled`` or ``status`` (``-``: descending); a keyset
    page's cursor is a row's values under it."""
    return sort_order(sort, {"created": Execution.created_at, "scheduled": Execution.scheduled_for,
                             "status": Execution.status}), Execution.id


def get_execution(session: Session, execution_id: str) -> tuple[Execution, Schedule]:
    ex = session.get(Execution, execution_id)
    sched = session.get(Schedule, ex.schedule_id) if ex is not None else None
    if ex is None or sched is None:
        raise NotFound(f"no monitoring execution {execution_id!r}", fix="list a schedule's executions")
    return ex, sched


def stop_execution(session: Session, execution_id: str, actor: Principal) -> Execution:
    """End a run that has not started (Pending: claimed and waiting, or left by a gone claimer) as Stopped, so no
    runner takes it. A run in progress holds its row locked until it ends, so this waits for it and then finds it
    finished: runs are never interrupted half-way (their reports and alerts are written in one transaction)."""
    ex = session.get(Execution, execution_id, with_for_update=True, populate_existing=True)
    if ex is None:
        raise NotFound(f"no monitoring execution {execution_id!r}", fix="list a schedule's executions")
    sched = session.get(Schedule, ex.schedule_id)
    if sched is not None:
        _mine(session, sched, actor, "stop a run of it")
    if ex.status != "Pending":
        raise Invalid(f"monitoring execution {execution_id} is {ex.status}: only a run that has not started can be "
                      "stopped", fix="nothing to stop; list the schedule's executions for its outcome")
    ex.status, ex.ended_at = "Stopped", utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="execution.stopped", subject_type="execution",
                 subject_id=execution_id, before={"status": "Pending"}, after={"status": "Stopped"})
    return ex


def execution_of(session: Session, schedule: str, analysis_id: str) -> Execution | None:
    """The named schedule's execution that produced the analysis; None if that schedule made no such run."""
    return session.scalar(select(Execution).join(Schedule, Schedule.id == Execution.schedule_id)
                          .where(Schedule.name == schedule, Execution.analysis_id == analysis_id).limit(1))


def latest_execution(session: Session, sched: Schedule) -> Execution | None:
    return session.scalar(select(Execution).where(Execution.schedule_id == sched.id)
                          .order_by(Execution.created_at.desc(), Execution.id).limit(1))


# --- M-of-N alert rules (SageMaker's monitoring alerts) ---------------------------------------------------------------
# A rule per check of the schedule's kind: in alert while at least ``datapoints`` of the last ``period`` judged
# executions (Completed or CompletedWithViolations, by window end) breached that check. Default 1 of 1: the latest
# judged run breached it. Rules live in the schedule's ``alerting`` settings under "rules".

def alert_rule(sched: Schedule, check: str) -> dict[str, Any]:
    rule = ((sched.alerting or {}).get("rules") or {}).get(check) or {}
    return {"datapoints": int(rule.get("datapoints", 1)), "period": int(rule.get("period", 1)),
            "updated_at": dt.datetime.fromisoformat(rule["updated_at"]) if rule.get("updated_at") else None}


def set_alert_rule(session: Session, name: str, check: str, datapoints: int, period: int,
                   actor: Principal) -> Schedule:
    sched = get(session, name)
    if check not in kinds.get(sched.type).checks:
        raise NotFound(f"schedule {name!r} ({sched.type}) has no alert for check {check!r}",
                       fix=f"its checks: {', '.join(kinds.get(sched.type).checks)}")
    if datapoints > period:
        raise Invalid(f"{datapoints} datapoints to alert cannot exceed the evaluation period of {period}",
                      fix="give datapoints ≤ period")
    alerting = dict(sched.alerting or {})
    rules = dict(alerting.get("rules") or {})
    rules[check] = {"datapoints": datapoints, "period": period, "updated_at": utcnow().isoformat()}
    return update(session, name, {"alerting": {**alerting, "rules": rules}}, actor)


def breached_checks(session: Session, store: ObjectStore, sched: Schedule,
                    limit: int = 1000) -> list[tuple[Execution, set[str]]]:
    """The schedule's latest judged executions, oldest first, each with the checks its violations breached."""
    rows = list(session.scalars(select(Execution).where(
        Execution.schedule_id == sched.id, Execution.status.in_(("Completed", "CompletedWithViolations")))
        .order_by(Execution.window_end.desc(), Execution.created_at.desc()).limit(limit)))
    out: list[tuple[Execution, set[str]]] = []
    for ex in reversed(rows):
        analysis = session.get(Analysis, ex.analysis_id) if ex.analysis_id else None
        found = service.violations_of(store, analysis) if analysis is not None and \
            ex.status == "CompletedWithViolations" else []
        out.append((ex, {str(v.get("constraint_check_type", "violation")) for v in found}))
    return out


def alert_history(runs: list[tuple[Execution, set[str]]], check: str, datapoints: int,
                  period: int) -> list[tuple[dt.datetime, bool]]:
    """Each change of the rule's state (time, in alert), from OK before the first run."""
    changes: list[tuple[dt.datetime, bool]] = []
    state, hits = False, [check in found for _, found in runs]
    for i, (ex, _) in enumerate(runs):
        now = sum(hits[max(0, i - period + 1):i + 1]) >= datapoints
        if now != state:
            changes.append((ex.ended_at or ex.created_at, now))
            state = now
    return changes


@dataclass(frozen=True)
class AlertState:
    """One M-of-N rule of a schedule with its state changes (time, in alert), oldest first."""

    check: str
    datapoints: int
    period: int
    changes: list[tuple[dt.datetime, bool]]
    modified: dt.datetime   # the rule's last change or its state's, whichever is later

    @property
    def in_alert(self) -> bool:
        return bool(self.changes) and self.changes[-1][1]


def alert_states(session: Session, store: ObjectStore, sched: Schedule) -> list[AlertState]:
    """Every alert rule of the schedule's kind with its history (what ListMonitoringAlerts and its history show)."""
    runs = breached_checks(session, store, sched)
    out = []
    for check in kinds.get(sched.type).checks:
        rule = alert_rule(sched, check)
        changes = alert_history(runs, check, rule["datapoints"], rule["period"])
        modified = max([t for t in (rule["updated_at"], changes[-1][0] if changes else None) if t] or
                       [sched.created_at])
        out.append(AlertState(check, rule["datapoints"], rule["period"], changes, modified))
    return out


def every_schedule(session: Session, chunk: int = 500) -> Iterable[Schedule]:
    """All schedules, by name, a page at a time (an account-wide history has no cap of its own)."""
    after: list[Any] | None = None
    while True:
        rows, _ = find_schedules(session, sort="name", limit=chunk, offset=0, after=after)
        yield from rows
        if len(rows) < chunk:
            return
        after = cursor_of(rows[-1], schedule_order("name"))


def find_schedules(session: Session, *, endpoint: str | None = None, name_contains: str | None = None,
                   status: str | None = None, job_definition: str | None = None, monitoring_type: str | None = None,
                   created: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
                   modified: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
                   sort: str = "-created", limit: int, offset: int,
                   after: Sequence[Any] | None = None) -> tuple[list[Schedule], int]:
    """A page of schedules matching the filters (``created``/``modified``: exclusive after/before bounds)."""
    where = [Schedule.endpoint == endpoint if endpoint else None, icontains(Schedule.name, name_contains),
             Schedule.status == status if status else None,
             Schedule.job_definition == job_definition if job_definition else None,
             Schedule.type == monitoring_type if monitoring_type else None,
             Schedule.created_at > created[0] if created[0] else None,
             Schedule.created_at < created[1] if created[1] else None,
             Schedule.updated_at > modified[0] if modified[0] else None,
             Schedule.updated_at < modified[1] if modified[1] else None]
    return paginate(session, select(Schedule), *schedule_order(sort), limit=limit, offset=offset, where=where,
                    after=after)


def schedule_order(sort: str = "-created") -> tuple[Any, ...]:
    """The ORDER BY of `find_schedules` by ``name``, ``created`` or ``status`` (``-``: descending); a keyset page's
    cursor is a row's values under it."""
    return sort_order(sort, {"name": Schedule.name, "created": Schedule.created_at, "status": Schedule.status}), \
        Schedule.id


def capture_uri(session: Session, store: ObjectStore, endpoint: str) -> str:
    """The folder URI of an endpoint's captured records (SageMaker's layout: endpoint/variant/yyyy/mm/dd/hh/)."""
    ep = service.get_endpoint(session, endpoint)
    return store.folder_uri(layout.capture_folder(ep.name, ep.variant))
