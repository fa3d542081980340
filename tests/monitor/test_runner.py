"""The runner cannot half-commit: a run computes on a read session (writing no row), and a failure while its
analysis is recorded leaves none of its rows beside a Failed execution; a database error when the execution's
outcome is saved still ends it Failed (in a fresh transaction), never Pending.

Real databases (SQLite and PostgreSQL, schema by Alembic); the failures are real: rows flushed by the real analysis
writer, then an exception, and a NOT NULL violation raised by the database at the final flush.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mlgov.audit import AuditEvent
from mlgov.db import Database, new_id
from mlgov.events import OutboxEvent
from mlgov.storage import ObjectStore, open_store
from monitor import jobs
from monitor import service as monitor_service
from monitor.orm import Analysis, Execution, Schedule
from tests.conftest import make_settings
from tests.helpers import seed_schedule, signed_in
from tests.infra import fresh_database, upgrade
from tests.monitor.test_api import FEATURES, csv_bytes, frame

SEEDED = dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC)
DUE = dt.datetime(2026, 11, 20, 10, 1, 5, tzinfo=dt.UTC)      # the every-minute schedule's 10:01 run is due


def _seed(db: Database, store: ObjectStore) -> None:
    with db.session_scope() as s:
        seed_schedule(s, store, FEATURES, csv_bytes(frame(300)), name="dq", expression="* * * * *",
                      window_start="-PT1M", now=SEEDED)


def _counts(db: Database) -> dict[str, int]:
    with db.session_scope(write=False) as s:
        return {
            "analyses": s.scalar(select(func.count()).select_from(Analysis)) or 0,
            "analysis_audit": s.scalar(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.action == "analysis.completed")) or 0,
            "analysis_events": s.scalar(select(func.count()).select_from(OutboxEvent)
                                        .where(OutboxEvent.type == "analysis.completed")) or 0,
        }


def _outcome(db: Database, ex_id: str) -> tuple[Execution, Schedule, list[dict[str, Any]]]:
    with db.session_scope(write=False) as s:
        ex = s.get(Execution, ex_id)
        assert ex is not None
        sched = s.get(Schedule, ex.schedule_id)
        assert sched is not None
        completed = [e.payload for e in s.scalars(select(OutboxEvent).where(OutboxEvent.type == "execution.completed",
                                                                             OutboxEvent.subject == "dq"))]
        return ex, sched, completed


def _flushes_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A monitor run whose analysis is recorded for real (analysis row, audit row, outbox event flushed) and then
    fails."""
    real = monitor_service.Finished.record

    def record(self: monitor_service.Finished, session: Any) -> Analysis:
        row = real(self, session)
        assert session.get(Analysis, row.id) is row   # flushed: the row, its audit and outbox events in the session
        raise RuntimeError("the drift report could not be written")

    monkeypatch.setattr(monitor_service.Finished, "record", record)


def _breaks_the_execution_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A monitor run whose work succeeds but whose result cannot be stored: the execution's violation_count
    becomes NULL, which the database refuses (NOT NULL) at the final flush, after the analysis's savepoint."""
    real = monitor_service.Finished.record

    def record(self: monitor_service.Finished, session: Any) -> Analysis:
        real(self, session)
        return Analysis(id=new_id(), status="Completed", failure_reason=None, violation_count=None)

    monkeypatch.setattr(monitor_service.Finished, "record", record)


def _tick_failing(db: Database, store: ObjectStore, inject: Callable[[], None]) -> Execution:
    """Seed an every-minute schedule, inject the failure, tick once past its due time; the one execution, which
    ended Failed with nothing of its run left behind."""
    _seed(db, store)
    before = _counts(db)
    inject()
    ran = jobs.tick(db, store, DUE)
    assert len(ran) == 1
    ex, sched, completed = _outcome(db, ran[0])
    assert ex.status == "Failed", "the claimed execution was not ended Failed"
    assert sched.last_run_at == ex.scheduled_for
    assert ex.analysis_id is None and ex.ended_at is not None
    assert _counts(db) == before            # the run's analysis, audit row and event rolled back with it
    assert [(c["execution"], c["status"]) for c in completed] == [(ex.id, "Failed")]
    return ex


def test_a_failing_run_rolls_back_its_rows_and_records_failed(db, tmp_path, monkeypatch):
    store = open_store(make_settings(tmp_path))
    ex = _tick_failing(db, store, lambda: _flushes_then_raises(monkeypatch))
    assert ex.failure_reason == "RuntimeError: the drift report could not be written"
    assert jobs.tick(db, store, DUE) == []  # claimed once


def test_a_database_error_at_the_final_flush_ends_failed_not_pending(db, tmp_path, monkeypatch):
    store = open_store(make_settings(tmp_path))
    ex = _tick_failing(db, store, lambda: _breaks_the_execution_row(monkeypatch))
    assert ex.failure_reason is not None and ex.failure_reason.startswith("IntegrityError: ")
    assert "violation_count" in ex.failure_reason
    assert ex.started_at is not None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_final_flush_failure_with_real_commits(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same on a database of its own, where the claim really commits Pending and the failed transaction really
    rolls back: another process looking at the database sees the execution Failed with its reason."""
    with fresh_database(backend, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        try:
            store = open_store(make_settings(tmp_path))
            _seed(db, store)
            _breaks_the_execution_row(monkeypatch)
            ran = jobs.tick(db, store, DUE)
            with db.session_scope(write=False) as s:
                rows = list(s.execute(select(Execution.id, Execution.status, Execution.failure_reason)))
        finally:
            db.dispose()
    assert [(r[0], r[1]) for r in rows] == [(ran[0], "Failed")]
    assert rows[0][2].startswith("IntegrityError: ")


def test_a_failing_manual_run_answers_failed_and_leaves_no_analysis(client, keys, db, app, monkeypatch):
    """The API's run-now executes in the request's transaction: same savepoint, same outcome."""
    _seed(db, app.state.get_store())
    before = _counts(db)
    _flushes_then_raises(monkeypatch)
    r = client.post("/api/v1/monitoring-schedules/dq/run", headers=keys("admin"),
                    json={"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Failed" and r.json()["analysis_id"] is None
    assert r.json()["failure_reason"] == "RuntimeError: the drift report could not be written"
    assert _counts(db) == before


def test_failing_scheduled_runs_keep_an_alert_open_until_a_run_completes(client, keys, db, app, monkeypatch):
    """A monitoring trial left a schedule failing every hour (its endpoint had stopped capturing): the console
    showed red badges and nobody was told. A failed scheduled run now opens the schedule's execution_failed alert
    (audited, sent to subscribers, no retraining request), later failures add to it, and the next run that
    completes resolves it. A manual run's failure is answered to whoever ran it and opens none."""
    from monitor.orm import Alert
    from tests.monitor.test_api import record

    store = app.state.get_store()
    _seed(db, store)
    _flushes_then_raises(monkeypatch)
    r = client.post("/api/v1/monitoring-schedules/dq/run", headers=keys("admin"),
                    json={"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T10:00:00Z"})
    assert r.json()["status"] == "Failed"
    assert client.get("/api/v1/alerts", params={"status": "open"}, headers=keys("viewer")).json()["items"] == []
    first = jobs.tick(db, store, DUE)                                          # the 10:01 run
    second = jobs.tick(db, store, DUE + dt.timedelta(minutes=1))               # the 10:02 run
    alerts = client.get("/api/v1/alerts", params={"status": "open"}, headers=keys("viewer")).json()["items"]
    assert [(a["check"], a["schedule"], a["occurrences"]) for a in alerts] == [("execution_failed", "dq", 2)]
    alert = alerts[0]
    assert alert["opened_execution_id"] == first[0] and alert["last_execution_id"] == second[0]
    assert alert["details"] == [{"constraint_check_type": "execution_failed",
                                 "description": "RuntimeError: the drift report could not be written"}]
    with db.session_scope(write=False) as s:
        opened = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "alert.opened")).all()
        assert [e.payload["check"] for e in opened] == ["execution_failed"]
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "alert.opened", AuditEvent.subject_id == alert["id"])) == 1
        assert s.scalar(select(func.count()).select_from(OutboxEvent)
                        .where(OutboxEvent.type == "retraining.requested")) == 0
    page = signed_in(app, keys.plain["viewer"]).get(f"/console/alerts/{alert['id']}").text
    assert ">Failure</h2>" in page and "RuntimeError: the drift report could not be written" in page
    assert "no retraining was requested" in page
    monkeypatch.undo()
    when = dt.datetime(2026, 11, 20, 10, 2, 30, tzinfo=dt.UTC)
    r = client.post("/api/v1/endpoints/ep/capture", headers=keys("ingest"),
                    json=[record(i, when, (30 + i, 40.0 + i, "CA")) for i in range(20)])
    assert r.status_code == 200 and r.json()["accepted"] == 20, r.text
    # a manual run that completes proves nothing of the scheduled windows: the alert stays open (a trial's manual
    # check resolved it, and the next scheduled failure opened a second one)
    r = client.post("/api/v1/monitoring-schedules/dq/run", headers=keys("admin"),
                    json={"start": "2026-11-20T10:02:00Z", "end": "2026-11-20T10:03:00Z"})
    assert r.json()["status"].startswith("Completed"), r.text
    assert [a["id"] for a in client.get("/api/v1/alerts", params={"status": "open"}, headers=keys("viewer")).json()[
        "items"] if a["check"] == "execution_failed"] == [alert["id"]]
    third = jobs.tick(db, store, DUE + dt.timedelta(minutes=2))                # the 10:03 run, on 10:02's records
    with db.session_scope(write=False) as s:
        assert s.get(Execution, third[0]).status.startswith("Completed")
        row = s.get(Alert, alert["id"])
        assert row is not None and row.status == "resolved" and row.last_execution_id == third[0]
        sid = row.schedule_id
    # a run of an older window, taken over late and failing at its final save, opens no alert: a newer run completed
    late = jobs.claim(db, sid, DUE - dt.timedelta(minutes=5), DUE - dt.timedelta(minutes=6),
                      DUE - dt.timedelta(minutes=5), "schedule")
    with db.session_scope() as s:
        from monitor import schedules

        assert schedules.record_failure(s, late, "OperationalError: the database is locked").status == "Failed"
    still = client.get("/api/v1/alerts", params={"status": "open"}, headers=keys("viewer")).json()["items"]
    assert [a for a in still if a["check"] == "execution_failed"] == []
    # the approvals inbox counts the version's open alerts only (it counted resolved ones: statuses are lower case)
    inbox = signed_in(app, keys.plain["viewer"]).get("/console/").text
    shown = re.search(r"<dt>Open alerts</dt>\s*<dd>(\d+)</dd>", inbox)
    assert shown is not None and int(shown.group(1)) == len(still), inbox


def test_stopping_a_failing_schedule_resolves_its_failure_alert(client, keys, db, app, monkeypatch):
    """A trial stopped a schedule whose runs failed: its execution_failed alert stayed open for good (no run would
    come to resolve it) and /metrics kept counting it. Stopping resolves that alert, on the record, saying why;
    alerts of breaches stay open (the data did breach)."""
    from monitor import schedules
    from monitor.orm import Alert

    store = app.state.get_store()
    _seed(db, store)
    _flushes_then_raises(monkeypatch)
    [ran] = jobs.tick(db, store, DUE)
    with db.session_scope() as s:
        alert = s.scalars(select(Alert).where(Alert.check == "execution_failed")).one()
        assert alert.status == "open" and alert.opened_execution_id == ran
        alert_id = alert.id
    assert client.post("/api/v1/monitoring-schedules/dq/stop", headers=keys("admin")).status_code == 200
    with db.session_scope(write=False) as s:
        row = s.get(Alert, alert_id)
        assert row is not None and row.status == "resolved"
        trail = s.scalars(select(AuditEvent).where(AuditEvent.subject_id == alert_id)
                          .order_by(AuditEvent.seq)).all()
        assert [(e.action, (e.after or {}).get("reason")) for e in trail] == [
            ("alert.opened", None), ("alert.resolved", "schedule stopped")]
        told = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "alert.resolved")).all()
        assert [(e.payload["alert"], e.payload["reason"]) for e in told] == [(alert_id, "schedule stopped")]
        assert schedules.get(s, "dq").status == "Stopped"


def test_a_failure_rule_waits_for_m_of_n_failed_runs(client, keys, db, app, monkeypatch):
    """Traffic that comes and goes fails a short window now and then: "execution_failed": 2 of the last 3
    scheduled runs opens the alert only on the second failure, and it resolves once fewer than 2 of the last 3
    failed. A rule naming no check of the schedule is still refused."""
    from monitor.orm import Alert
    from tests.monitor.test_api import record

    store = app.state.get_store()
    _seed(db, store)
    r = client.patch("/api/v1/monitoring-schedules/dq", headers=keys("admin"),
                     json={"alerting": {"rules": {"execution_failed": {"datapoints": 2, "period": 3}}}})
    assert r.status_code == 200, r.text
    bad = client.patch("/api/v1/monitoring-schedules/dq", headers=keys("admin"),
                       json={"alerting": {"rules": {"execution_faild": {"datapoints": 1, "period": 1}}}})
    assert bad.status_code == 422 and "execution_failed" in bad.json()["fix"], bad.text

    def failure_alerts() -> list[tuple[str, int]]:
        with db.session_scope(write=False) as s:
            return [(a.status, a.occurrences) for a in s.scalars(select(Alert).where(
                Alert.check == "execution_failed"))]

    def tick(minute: int, fail: bool) -> None:
        with monkeypatch.context() as m:
            if fail:
                _flushes_then_raises(m)
            else:   # the window [10:minute-1, 10:minute) gets records
                when = dt.datetime(2026, 11, 20, 10, minute - 1, 30, tzinfo=dt.UTC)
                r = client.post("/api/v1/endpoints/ep/capture", headers=keys("ingest"), json=[
                    record(i, when, (30 + i, 40.0 + i, "CA"), event_id=f"m{minute}-{i}") for i in range(20)])
                assert r.status_code == 200, r.text
            assert len(jobs.tick(db, store, dt.datetime(2026, 11, 20, 10, minute, 5, tzinfo=dt.UTC))) == 1

    tick(1, fail=True)
    assert failure_alerts() == []                      # 1 of the last 3
    tick(2, fail=True)
    assert failure_alerts() == [("open", 1)]           # 2 of the last 3
    tick(3, fail=False)
    assert failure_alerts() == [("open", 1)]           # F F ok: still 2 of the last 3
    tick(4, fail=False)
    assert failure_alerts() == [("resolved", 1)]       # F ok ok


def _failure_alerts(db: Database) -> list[tuple[str, int]]:
    from monitor.orm import Alert

    with db.session_scope(write=False) as s:
        return [(a.status, a.occurrences) for a in s.scalars(
            select(Alert).where(Alert.check == "execution_failed").order_by(Alert.opened_at, Alert.id))]


def test_failure_alerts_hold_against_manual_runs_stops_mid_run_restarts_and_the_last_fire(
        client, keys, db, app, monkeypatch):
    """A reviewer's four ways to a wrong execution_failed alert: a manual run over a window reaching past the
    scheduled ones silenced their failures; a stop committed while a run was under way left that run's new alert
    open on a stopped schedule; failures from before a stop counted again after the restart; and the last fire
    of a cron (the schedule stops before that run) left an open alert no run would resolve."""

    from monitor import schedules
    from tests.monitor.test_api import record

    store = app.state.get_store()
    _seed(db, store)
    when = dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC)
    r = client.post("/api/v1/endpoints/ep/capture", headers=keys("ingest"),
                    json=[record(i, when, (30 + i, 40.0 + i, "CA")) for i in range(20)])
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/monitoring-schedules/dq/run", headers=keys("admin"),
                    json={"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T12:00:00Z"})
    assert r.json()["status"].startswith("Completed"), r.text
    _flushes_then_raises(monkeypatch)
    jobs.tick(db, store, DUE + dt.timedelta(minutes=1))                  # the 10:02 run, on its empty window
    assert _failure_alerts(db) == [("open", 1)]

    # a stop commits while the 10:03 run computes: the run reads the schedule's status again before alerting
    assert client.post("/api/v1/monitoring-schedules/dq/stop", headers=keys("admin")).status_code == 200
    assert _failure_alerts(db) == [("resolved", 1)]
    assert client.post("/api/v1/monitoring-schedules/dq/start", headers=keys("admin")).status_code == 200
    real_analyze = monitor_service.analyze_window

    def analyze(*args: Any, **kwargs: Any) -> monitor_service.Finished:   # the API's stop, committed mid-run
        assert client.post("/api/v1/monitoring-schedules/dq/stop", headers=keys("admin")).status_code == 200
        return real_analyze(*args, **kwargs)

    monkeypatch.setattr(monitor_service, "analyze_window", analyze)
    _flushes_then_raises(monkeypatch)
    now = dt.datetime.now(dt.UTC).replace(second=5, microsecond=0) + dt.timedelta(minutes=1)
    assert len(jobs.tick(db, store, now)) == 1
    assert _failure_alerts(db) == [("resolved", 1)]                      # none opened on the stopped schedule
    monkeypatch.setattr(monitor_service, "analyze_window", real_analyze)

    # a 2-of-3 rule after a restart counts only the runs since: one failure opens nothing
    assert client.post("/api/v1/monitoring-schedules/dq/start", headers=keys("admin")).status_code == 200
    r = client.patch("/api/v1/monitoring-schedules/dq", headers=keys("admin"),
                     json={"alerting": {"rules": {"execution_failed": {"datapoints": 2, "period": 3}}}})
    assert r.status_code == 200, r.text
    assert len(jobs.tick(db, store, now + dt.timedelta(minutes=1))) == 1
    assert _failure_alerts(db) == [("resolved", 1)]
    assert len(jobs.tick(db, store, now + dt.timedelta(minutes=2))) == 1
    assert _failure_alerts(db) == [("resolved", 1), ("open", 1)]

    # the last fire: the schedule stops before that run, and its open failure alert is resolved then
    r = client.patch("/api/v1/monitoring-schedules/dq", headers=keys("admin"),
                     json={"schedule": f"cron(0 * ? * * {now.year})"})
    assert r.status_code == 200, r.text
    last = dt.datetime(now.year, 12, 31, 23, 0, 5, tzinfo=dt.UTC)
    jobs.tick(db, store, last, grace=dt.timedelta(days=400))
    with db.session_scope(write=False) as s:
        assert schedules.get(s, "dq").status == "Stopped"
    assert [status for status, _ in _failure_alerts(db)] == ["resolved", "resolved"]


def test_a_scheduled_run_holds_no_write_turn_while_it_computes(live_db, tmp_path, monkeypatch):
    """A scheduled run held its write transaction (on SQLite, BEGIN IMMEDIATE: the database's one write lock) for its
    whole computation, so capture and every other write waited and then failed while a window was analysed. It now
    computes on a read session: a write commits meanwhile, and the run is recorded after."""
    from mlgov import workers

    store = open_store(make_settings(tmp_path))
    _seed(live_db, store)
    real, written = monitor_service.analyze_window, []

    def analyze(*args: Any, **kwargs: Any) -> monitor_service.Finished:   # another writer, while this run computes
        with live_db.session_scope() as s:
            workers.beat(s, workers.SCHEDULER, "written-meanwhile", 60.0)
        written.append("beat")
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor_service, "analyze_window", analyze)
    ran = jobs.tick(live_db, store, DUE)
    assert written == ["beat"] and len(ran) == 1
    ex, _, completed = _outcome(live_db, ran[0])
    assert ex.status == "Failed" and ex.analysis_id is not None, ex.failure_reason   # the empty window's analysis
    assert ex.failure_reason is not None and ex.failure_reason.startswith("no data captured")
    assert [c["status"] for c in completed] == ["Failed"]
    with live_db.session_scope(write=False) as s:
        assert workers.gone(s, "written-meanwhile") is False


def test_a_run_taken_over_while_it_computes_is_recorded_once_by_its_new_claimer(live_db, tmp_path, monkeypatch):
    """Computing holds no row lock now, so a ticker that judges the claimer gone can take the claim over meanwhile
    (compare-and-set on status and worker): the first claimer then finds another worker's name on the execution,
    records nothing and deletes its analysis's files; the new claimer's run is the one recorded."""
    from sqlalchemy import update

    store = open_store(make_settings(tmp_path))
    _seed(live_db, store)
    real = monitor_service.analyze_window

    def analyze(*args: Any, **kwargs: Any) -> monitor_service.Finished:
        with live_db.session_scope() as s:
            s.execute(update(Execution).where(Execution.status == "Pending").values(worker="successor:2:b"))
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor_service, "analyze_window", analyze)
    before = _counts(live_db)
    assert jobs.tick(live_db, store, DUE, worker="first:1:a") == []
    with live_db.session_scope(write=False) as s:
        ex = s.scalars(select(Execution)).one()
        assert (ex.status, ex.worker, ex.analysis_id) == ("Pending", "successor:2:b", None)
    assert _counts(live_db) == before and list(store.list("analyses/")) == []
    monkeypatch.setattr(monitor_service, "analyze_window", real)
    assert jobs.run_claimed(live_db, store, ex.schedule_id, ex.id, "successor:2:b") is True
    done, _, completed = _outcome(live_db, ex.id)
    assert done.status == "Failed" and done.analysis_id is not None and len(completed) == 1
    assert _counts(live_db)["analyses"] == before["analyses"] + 1


def test_a_run_that_lost_its_claim_publishes_nothing_and_never_ends_the_winners_execution(live_db, tmp_path,
                                                                                         monkeypatch):
    """A stranger's review: the first claimer, taken over while it computed, published its reports into the hour
    folder the winner had just written (every claimer's is the same), and when deleting its unrecorded files failed
    (a transient store error), the runner's failure path ended the winner's recorded execution as Failed. Reports
    are published when a run is recorded now, the deletion is best effort, and a failure is recorded only on an
    execution still Pending under the same claim."""
    from sqlalchemy import update

    from monitor import schedules
    from monitor.orm import Schedule

    store = open_store(make_settings(tmp_path))
    _seed(live_db, store)
    with live_db.session_scope() as s:
        s.execute(update(Schedule).values(output_uri=store.uri("reports")))
    real, published, state = monitor_service.analyze_window, [], {}
    real_publish = schedules.publish_reports

    def publish(*args: Any) -> None:
        published.append(args[-1])
        real_publish(*args)

    def analyze(*args: Any, **kwargs: Any) -> monitor_service.Finished:
        if not state:   # the first claimer is judged gone; its successor runs and records the execution meanwhile
            with live_db.session_scope() as s:
                ex = s.scalars(select(Execution).where(Execution.status == "Pending")).one()
                s.execute(update(Execution).where(Execution.id == ex.id).values(worker="successor:2:b"))
                state["ex"] = (ex.schedule_id, ex.id)
            assert jobs.run_claimed(live_db, store, *state["ex"], "successor:2:b") is True
        done = real(*args, **kwargs)   # stands for a window with data: a Completed analysis, which publishes
        return monitor_service.Finished({**done.columns, "status": "Completed", "failure_reason": None}, [])

    def failing_delete(self: Any, key: str) -> None:
        raise OSError("object store unavailable")

    monkeypatch.setattr(schedules, "publish_reports", publish)
    monkeypatch.setattr(monitor_service, "analyze_window", analyze)
    monkeypatch.setattr(type(store), "delete", failing_delete)
    assert jobs.tick(live_db, store, DUE, worker="first:1:a") == []
    done, _, completed = _outcome(live_db, state["ex"][1])
    assert (done.status, done.worker) == ("Completed", "successor:2:b") and len(completed) == 1
    assert published == [f"analyses/{done.analysis_id}"]


def test_a_run_whose_schedule_changed_baseline_while_it_computed_is_failed_saying_so(live_db, tmp_path,
                                                                                     monkeypatch):
    """Computing holds no lock on the schedule: a PATCH of its baseline may commit meanwhile. The run's violations
    judge the old baseline, so its alerts would speak for a monitor the schedule no longer is: it is Failed."""
    from sqlalchemy import update

    from mlgov.auth import SYSTEM
    from monitor.orm import Schedule

    store = open_store(make_settings(tmp_path))
    _seed(live_db, store)
    real = monitor_service.analyze_window

    def analyze(*args: Any, **kwargs: Any) -> monitor_service.Finished:
        with live_db.session_scope() as s:
            other = monitor_service.create_baseline(s, store, data=csv_bytes(frame(300, seed=2)), fmt=None,
                                                    header=True, name="other", dataset_uri=None, actor=SYSTEM)
            s.execute(update(Schedule).values(baseline_id=other.record(s).id))
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor_service, "analyze_window", analyze)
    [ex_id] = jobs.tick(live_db, store, DUE)
    ex, _, _ = _outcome(live_db, ex_id)
    assert ex.status == "Failed" and ex.analysis_id is None
    assert "changed its baseline or type while this run computed" in (ex.failure_reason or "")
