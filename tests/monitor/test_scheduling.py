"""Schedules as a user meets them: SageMaker's cron() and NOW, alerts keyed by (schedule, subject, check) that an
older window cannot resolve, model-quality baselines that must fit their endpoint, retraining requests that say
where the data is (full URIs, local and S3)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from mlgov.auth import SYSTEM
from mlgov.events import OutboxEvent
from monitor import recurrence
from tests.helpers import assert_problem
from tests.monitor.test_api import FEATURES, _endpoint, csv_bytes, frame, gt_record, make_baseline, record

UTC = dt.UTC
T = dt.datetime(2026, 11, 20, 10, 17, 42, tzinfo=UTC)   # a Friday


# --- SageMaker's schedule expressions --------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "fires"), [
    ("cron(0 * ? * * *)", ["2026-11-20T11:00", "2026-11-20T12:00"]),                 # CronExpressionGenerator.hourly
    ("cron(0 8 ? * * *)", ["2026-11-21T08:00", "2026-11-22T08:00"]),                 # .daily(8)
    ("cron(0 3/6 ? * * *)", ["2026-11-20T15:00", "2026-11-20T21:00"]),               # .daily_every_x_hours(6, 3)
    ("cron(30 9 ? * 2-6 *)", ["2026-11-23T09:30", "2026-11-24T09:30"]),              # 2-6 = MON-FRI (1 = SUN)
    ("cron(0 9 ? * SUN,SAT *)", ["2026-11-21T09:00", "2026-11-22T09:00"]),
    ("cron(0 9 ? * 1 *)", ["2026-11-22T09:00", "2026-11-29T09:00"]),                 # 1 = Sunday, not Monday
    ("cron(0 0 1 * ? *)", ["2026-12-01T00:00", "2027-01-01T00:00"]),
    ("cron(0 0 L * ? *)", ["2026-11-30T00:00", "2026-12-31T00:00"]),
    ("cron(0 0 ? * FRI#2 *)", ["2026-12-11T00:00", "2027-01-08T00:00"]),
    ("cron(0 0 ? * 6L *)", ["2026-11-27T00:00", "2026-12-25T00:00"]),                # last Friday
    ("cron(15 10 ? JAN-MAR * 2027)", ["2027-01-01T10:15", "2027-01-02T10:15"]),
    ("Hourly", ["2026-11-20T11:00", "2026-11-20T12:00"]),
    ("*/20 * * * *", ["2026-11-20T10:20", "2026-11-20T10:40"]),
])
def test_sagemaker_cron_and_five_field_cron(expression: str, fires: list[str]) -> None:
    first = recurrence.first_run(expression, T)
    assert [first.strftime("%Y-%m-%dT%H:%M"), recurrence.next_after(expression, first).strftime("%Y-%m-%dT%H:%M")] \
        == fires


@pytest.mark.parametrize(("expression", "needle"), [
    ("cron(0 * * * * *)", "exactly one of Day-of-month and Day-of-week must be '?'"),
    ("cron(0 * ? * ? *)", "exactly one of Day-of-month and Day-of-week must be '?'"),
    ("cron(0 * ? * *)", "has 5 fields; SageMaker's cron() has six"),
    ("cron(0 0 15W * ? *)", "W (nearest weekday) wildcard is not supported"),
    ("cron(0 0 ? * 8 *)", "'8' is not a day of the week"),
    ("cron(0 0 ? * MON-SUN *)", "is not a list of days"),
    ("cron(0 25 ? * * *)", "not a valid SageMaker cron expression"),
    ("cron(0 0 1 1 ? 2020)", "never fires again"),
    ("rate(1 hour)", "rate() and at() expressions are not SageMaker monitoring schedules"),
    ("every minute", "is not a 5-field cron"),
])
def test_unsupported_forms_say_what_is_accepted(expression: str, needle: str) -> None:
    with pytest.raises(recurrence.RuleError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        recurrence.check(expression)


def test_schedule_expressions_through_the_api(client, keys, db, app):
    from monitor import jobs

    _endpoint(client, keys)
    pub, bid = keys("publisher"), make_baseline(client, keys)
    body = {"name": "hourly-sm", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "cron(0 * ? * * *)",
            "baseline_id": bid}
    r = client.post("/api/v1/monitoring-schedules", json=body, headers=pub)
    assert r.status_code == 201, r.text
    nxt = dt.datetime.fromisoformat(r.json()["next_run_at"])
    assert (nxt.minute, nxt.second) == (0, 0) and r.json()["expression"] == "cron(0 * ? * * *)"
    bad = client.post("/api/v1/monitoring-schedules", json={**body, "name": "x", "schedule": "cron(0 * * * * *)"},
                      headers=pub)
    problem = assert_problem(bad, 422, "Day-of-week must be '?'")
    assert "cron(0 * ? * * *)" in problem["fix"] and "NOW" in problem["fix"]
    assert_problem(client.patch("/api/v1/monitoring-schedules/hourly-sm", json={"schedule": "rate(5 minutes)"},
                                headers=pub), 422, "rate()")
    assert client.delete("/api/v1/monitoring-schedules/hourly-sm", headers=pub).status_code == 204
    # NOW: due at once, runs once on the next tick, then stops; starting it again runs it once more
    before = dt.datetime.now(UTC)
    once = client.post("/api/v1/monitoring-schedules", headers=pub, json={
        **body, "name": "once", "schedule": "NOW", "window": {"start": "-PT2H", "end": "PT0S"}}).json()
    assert before <= dt.datetime.fromisoformat(once["next_run_at"]) <= dt.datetime.now(UTC)
    store = app.state.get_store()
    assert len(jobs.tick(db, store, dt.datetime.now(UTC))) == 1
    after = client.get("/api/v1/monitoring-schedules/once", headers=pub).json()
    assert after["status"] == "Stopped" and after["last_run_at"] == once["next_run_at"]
    assert jobs.tick(db, store, dt.datetime.now(UTC) + dt.timedelta(hours=1)) == []
    assert client.post("/api/v1/monitoring-schedules/once/start", headers=pub).json()["status"] == "Scheduled"
    assert len(jobs.tick(db, store, dt.datetime.now(UTC))) == 1
    runs = client.get("/api/v1/monitoring-schedules/once/executions", headers=pub).json()
    assert runs["total"] == 2
    # a cron whose years are over stops after its last run; starting it again is a 422, not a 500
    from mlgov.errors import Invalid
    from monitor import schedules

    client.post("/api/v1/monitoring-schedules", json={**body, "name": "last", "schedule": "cron(0 0 1 1 ? 2199)"},
                headers=pub)
    assert len(jobs.tick(db, store, dt.datetime(2199, 1, 1, 0, 0, 5, tzinfo=UTC))) == 1
    assert client.get("/api/v1/monitoring-schedules/last", headers=pub).json()["status"] == "Stopped"
    with db.session_scope() as s, pytest.raises(Invalid, match="never fires again"):
        schedules.set_status(s, "last", "Scheduled", SYSTEM, now=dt.datetime(2199, 6, 1, tzinfo=UTC))
    # an SDK user's trial: -P99999999D was accepted, then overflowed in every tick (the NOW schedule stopped without
    # a run) and the tick's other due schedules waited; offsets now reach at most ten years
    for start in ("-P99999999D", "-PT99999999999999999999H", "-P3661D"):
        assert_problem(client.post("/api/v1/monitoring-schedules", headers=pub, json={
            **body, "name": "far", "schedule": "NOW", "window": {"start": start, "end": "PT0S"}}), 422,
            "further than 3660 days")
    assert client.post("/api/v1/monitoring-schedules", headers=pub, json={
        **body, "name": "decade", "schedule": "NOW", "window": {"start": "-P3660D", "end": "PT0S"}}).status_code == 201
    # stored before the bound: one that overflows no longer holds up the rest of the tick, and one within what
    # datetimes hold (-P4000D, valid then) still runs (a reviewer's finding)
    from monitor.orm import Schedule

    for name in ("broken", "fine"):
        client.post("/api/v1/monitoring-schedules", headers=pub, json={**body, "name": name, "schedule": "NOW"})
    with db.session_scope() as s:
        s.execute(Schedule.__table__.update().where(Schedule.name == "broken").values(window_start="-P99999999D"))
        s.execute(Schedule.__table__.update().where(Schedule.name == "decade").values(window_start="-P4000D"))
    ran = jobs.tick(db, store, dt.datetime.now(UTC))
    runs = {n: client.get(f"/api/v1/monitoring-schedules/{n}/executions", headers=pub).json()["total"]
            for n in ("broken", "decade", "fine")}
    assert len(ran) == 2 and runs == {"broken": 0, "decade": 1, "fine": 1}, runs


# --- alerts ----------------------------------------------------------------------------------------------------

def _quality_setup(client, keys) -> str:
    """Endpoint churn-prod (prediction output "prediction"), a binary ModelQuality baseline at ~85% accuracy and an
    hourly ModelQuality schedule on it."""
    _endpoint(client, keys)
    rng = np.random.default_rng(12)
    val = pd.DataFrame({"label": rng.integers(0, 2, 600)})
    val["prediction"] = np.where(rng.random(600) < 0.85, val["label"], 1 - val["label"])
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", "prediction": "prediction"},
        files={"file": ("val.csv", csv_bytes(val))})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "mq", "endpoint": "churn-prod", "type": "ModelQuality", "schedule": "hourly",
        "baseline_id": r.json()["id"]})
    assert r.status_code == 201, r.text
    return str(r.json()["baseline_id"])


def _labelled_hour(client, keys, start: dt.datetime, seed: int, predict) -> dict[str, Any]:
    """300 captured predictions in the hour from ``start`` with their labels; then run the schedule on that hour."""
    truth = np.random.default_rng(seed).integers(0, 2, 300)
    recs = []
    for i in range(300):
        rec = record(seed * 1000 + i, start + dt.timedelta(seconds=10 * i), (30, 40.0, "CA"))
        rec["captureData"]["endpointOutput"]["data"] = str(predict(i, truth[i]))
        recs.append(rec)
    client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest"))
    client.post("/api/v1/endpoints/churn-prod/ground-truth", headers=keys("ingest"),
                json=[gt_record(f"inf-{seed * 1000 + i}", str(truth[i])) for i in range(300)])
    return _run(client, keys, start)


def _run(client, keys, start: dt.datetime) -> dict[str, Any]:
    win = {"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat()}
    ex = client.post("/api/v1/monitoring-schedules/mq/run", json=win, headers=keys("publisher")).json()
    assert ex["status"] != "Failed", ex
    return dict(ex)


def _open(client, keys) -> dict[tuple[str, str], dict[str, Any]]:
    items = client.get("/api/v1/alerts?status=open&limit=100", headers=keys("viewer")).json()["items"]
    return {(a["check"], a["subject"]): a for a in items}


def test_model_quality_alerts_are_keyed_by_metric_not_by_operator(client, keys):
    _quality_setup(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    bad = _labelled_hour(client, keys, t0, 1, lambda i, y: 1 - y if i % 2 else y)       # half wrong
    assert bad["status"] == "CompletedWithViolations"
    opened = _open(client, keys)
    # one alert per metric: TNR and AUC no longer share one "LessThanThreshold" alert
    assert {("LessThanThreshold", "accuracy"), ("LessThanThreshold", "true_negative_rate"),
            ("LessThanThreshold", "recall"), ("GreaterThanThreshold", "false_positive_rate")} <= set(opened)
    assert all(len({v["metric_name"] for v in a["details"]}) == 1 for a in opened.values())
    assert len(opened) == bad["violation_count"]
    # the model now says 1 to everyone: recall is perfect again, TNR is 0
    worse = _labelled_hour(client, keys, t0 + dt.timedelta(hours=1), 2, lambda i, y: 1)
    assert worse["status"] == "CompletedWithViolations"
    now_open = _open(client, keys)
    assert ("LessThanThreshold", "recall") not in now_open                                   # resolved on its own
    tnr = now_open[("LessThanThreshold", "true_negative_rate")]
    assert tnr["occurrences"] == 2 and tnr["last_execution_id"] == worse["id"]
    assert tnr["id"] == opened[("LessThanThreshold", "true_negative_rate")]["id"]           # the same alert
    resolved = client.get("/api/v1/alerts?status=resolved", headers=keys("viewer")).json()["items"]
    assert {(a["check"], a["subject"]) for a in resolved} == {   # what saying 1 to everyone got right
        ("LessThanThreshold", "recall"), ("LessThanThreshold", "true_positive_rate"),
        ("GreaterThanThreshold", "false_negative_rate")}


def test_rerunning_an_older_window_does_not_resolve_a_newer_alert(client, keys):
    _quality_setup(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    good = _labelled_hour(client, keys, t0, 1, lambda i, y: y)                                   # 10:00 passes
    assert good["status"] == "Completed"
    bad = _labelled_hour(client, keys, t0 + dt.timedelta(hours=1), 2, lambda i, y: 1 - y if i % 2 else y)
    assert bad["status"] == "CompletedWithViolations"                                            # 11:00 breaches
    opened = _open(client, keys)
    assert opened
    again = _run(client, keys, t0)                 # someone re-runs 10:00 (a passing window, older than the breach)
    assert again["status"] == "Completed"
    still = _open(client, keys)
    assert set(still) == set(opened)
    assert all(a["last_execution_id"] == bad["id"] for a in still.values())          # still the 11:00 breach
    later = _labelled_hour(client, keys, t0 + dt.timedelta(hours=2), 3, lambda i, y: y)     # 12:00 passes
    assert later["status"] == "Completed"
    assert _open(client, keys) == {}


def test_trend_points_follow_their_windows_not_the_order_they_ran(client, keys, db, app):
    """A trial backfilled an older window after the scheduled runs: the console's trend charts took x values in
    run order (unsorted, which uPlot cannot draw), and the breaching point fell off the chart. Points now follow
    their windows, and a window run twice shows its latest run."""
    from monitor import schedules

    _quality_setup(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    _labelled_hour(client, keys, t0 + dt.timedelta(hours=2), 1, lambda i, y: y)
    ten = _labelled_hour(client, keys, t0, 2, lambda i, y: 1 - y if i % 2 else y)             # a backfill
    eleven = _labelled_hour(client, keys, t0 + dt.timedelta(hours=1), 3, lambda i, y: y)
    noon = _run(client, keys, t0 + dt.timedelta(hours=2))                                   # the noon window again
    with db.session_scope() as s:
        runs = schedules.trends(s, app.state.get_store(), "mq", 60)
    assert [ex.id for ex, _ in runs] == [ten["id"], eleven["id"], noon["id"]]      # not first_noon: re-run
    assert [ex.window_start for ex, _ in runs] == sorted(ex.window_start for ex, _ in runs)
    accuracy = [next(p.value for p in points if p.series == "accuracy") for _, points in runs]
    assert accuracy[0] < 0.6 < accuracy[1]                # the breach is charted at 10:00, where its data is


def test_deleting_a_schedule_resolves_its_open_alerts_on_the_record(client, keys, db):
    """A monitoring trial deleted a schedule with two open alerts: they vanished, with nothing in the audit log
    closing them. DeleteMonitoringSchedule still succeeds whatever the state, as SageMaker's does; each open
    alert is first resolved, saying why, so subscribers hear of it and the log keeps its whole history."""
    _quality_setup(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert _labelled_hour(client, keys, t0, 1, lambda i, y: 1 - y if i % 2 else y)["status"] == \
        "CompletedWithViolations"
    opened = _open(client, keys)
    assert opened
    assert client.delete("/api/v1/monitoring-schedules/mq", headers=keys("publisher")).status_code == 204
    assert _open(client, keys) == {}
    for alert in opened.values():
        trail = client.get("/api/v1/audit/events", params={"subject_type": "alert", "subject": alert["id"]},
                           headers=keys("admin")).json()["items"]
        assert [e["action"] for e in trail] == ["alert.opened", "alert.resolved"]
        assert trail[1]["after"]["reason"] == "schedule deleted" and trail[1]["actor"] == "test-publisher"
    with db.session_scope() as s:
        told = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "alert.resolved")).all()
    assert {e.payload["alert"] for e in told} == {a["id"] for a in opened.values()}
    assert all(e.payload["reason"] == "schedule deleted" for e in told)


# --- a model-quality baseline must fit its endpoint ------------------------------------------------------------

def test_baseline_columns_are_checked_against_the_endpoint(client, keys):
    from tests.helpers import create_group, register

    pub = keys("publisher")
    create_group(client, pub, "credit")
    register(client, pub, "credit", 1)
    r = client.post("/api/v1/endpoints", headers=pub, json={
        "name": "credit-risk-prod", "model_group": "credit", "model_version": 1,
        "schema": {"features": FEATURES, "prediction": None, "probability": {"name": "probability"}}})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(3)
    val = pd.DataFrame({"label": rng.integers(0, 2, 400)})
    val["prob"] = np.clip(val["label"] * 0.6 + rng.random(400) * 0.4, 0, 1)
    val["pred"] = (val["prob"] > 0.5).astype(int)
    val["probability"] = val["prob"]

    def baseline(**columns: str) -> str:
        r = client.post("/api/v1/baselines", headers=pub, files={"file": ("v.csv", csv_bytes(val))}, data={
            "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", **columns})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    mismatched, fitting = baseline(prediction="pred", probability="prob"), baseline(probability="probability")
    body = {"name": "mq", "endpoint": "credit-risk-prod", "type": "ModelQuality", "schedule": "hourly",
            "baseline_id": mismatched}
    r = client.post("/api/v1/monitoring-schedules", json=body, headers=pub)
    problem = assert_problem(r, 422, "prediction='pred'", "probability='prob'", "probability='probability'",
                             "credit-risk-prod", "probability=probability")
    assert problem["baseline_columns"] == {"prediction": "pred", "probability": "prob"}
    assert problem["endpoint_columns"]["probability"] == "probability" and "prediction" not in \
        problem["endpoint_columns"]
    assert client.get("/api/v1/monitoring-schedules/mq", headers=pub).status_code == 404   # nothing half-written
    assert client.post("/api/v1/monitoring-schedules", json={**body, "baseline_id": fitting},
                       headers=pub).status_code == 201
    # PATCH may change the baseline, under the same checks
    assert_problem(client.patch("/api/v1/monitoring-schedules/mq", json={"baseline_id": mismatched}, headers=pub),
                   422, "'pred'")
    dq = make_baseline(client, keys)
    assert_problem(client.patch("/api/v1/monitoring-schedules/mq", json={"baseline_id": dq}, headers=pub),
                   422, "needs a ModelQuality baseline")
    assert_problem(client.patch("/api/v1/monitoring-schedules/mq", json={"baseline_id": "nope"}, headers=pub), 404)
    assert client.get("/api/v1/monitoring-schedules/mq", headers=pub).json()["baseline_id"] == fitting
    other = baseline(probability="probability")
    r = client.patch("/api/v1/monitoring-schedules/mq", json={"baseline_id": other}, headers=pub)
    assert r.status_code == 200 and r.json()["baseline_id"] == other
    events = client.get("/api/v1/audit/events", params={"action": "schedule.updated"}, headers=keys("admin")).json()
    assert any(e["after"] == {"baseline_id": other} for e in events["items"]), events


# --- retraining requests say where the data is -----------------------------------------------------------------

def _retrained_schedule(s: Any, store: Any, tmp_path: Path, reference: Any) -> tuple[Any, Any]:
    """Endpoint "ep" of group "g" with an hourly DataQuality schedule "dq" on a baseline of ``reference``, and a
    retraining trigger for the group (cooldown one hour): the publisher and the baseline."""
    from mlgov.outbound import OutboundPolicy
    from mlgov.secrets import SecretBox
    from monitor import schedules, service
    from tests.conftest import make_settings
    from tests.helpers import seed_endpoint

    settings = make_settings(tmp_path, outbound_allow="127.0.0.1")
    p = seed_endpoint(s, FEATURES)
    base = service.create_baseline(s, store, data=csv_bytes(reference), fmt=None, header=True, name="b",
                                   dataset_uri=None, actor=p).record(s)
    schedules.create(s, name="dq", endpoint="ep", monitoring_type="DataQuality", expression="hourly",
                     baseline_id=base.id, window_start="-PT1H", window_end="PT0S", drift=None, alerting=None,
                     actor=p)
    schedules.set_trigger(s, "g", url="http://127.0.0.1:9/retrain", secret="s" * 16, cooldown_seconds=3600,
                          actor=p, policy=OutboundPolicy.from_settings(settings), box=SecretBox.from_settings(settings))
    return p, base


def _retraining_request(db, store, tmp_path: Path) -> dict[str, Any]:
    """A drifted hour on a schedule whose group has a retraining trigger → the retraining.requested payload."""
    from monitor import schedules, service

    t0 = dt.datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    with db.session_scope() as s:
        p, base = _retrained_schedule(s, store, tmp_path, frame(1000))
        shifted = frame(200, shift=30, seed=5)
        recs = [record(i, t0 + dt.timedelta(seconds=20 * i), tuple(shifted.iloc[i])) for i in range(200)]
        assert service.ingest(s, store, "ep", json.dumps(recs).encode(), "application/json")["accepted"] == 200
        ex = schedules.run_now(s, store, "dq", t0, t0 + dt.timedelta(hours=1), p)
        assert ex.status == "CompletedWithViolations"
        [body] = [e.payload for e in s.scalars(select(OutboxEvent).where(OutboxEvent.type == "retraining.requested"))]
        return {**body, "baseline_id": base.id}


def test_schema_alerts_request_no_retraining_and_leave_the_cooldown_for_a_breach(db, tmp_path):
    """A DataQuality baseline built from a training set holds its label, which capture lacks: every run reports a
    missing_column_check. Its alert requested retraining and spent the group's cooldown, so the drift that came
    next sent no request. A schema alert requests nothing now, and the drift's alert does."""
    from mlgov.storage import LocalStore
    from monitor import schedules, service
    from monitor.orm import Alert, RetrainingTrigger

    store = LocalStore(tmp_path / "store")
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    with db.session_scope() as s:
        p, _ = _retrained_schedule(s, store, tmp_path, frame(1000).assign(label=1))   # a training set's label
        for hour, rows in ((0, frame(200, seed=5)), (1, frame(200, shift=30, seed=6))):
            start = t0 + dt.timedelta(hours=hour)
            recs = [record(1000 * hour + i, start + dt.timedelta(seconds=15 * i), tuple(rows.iloc[i]))
                    for i in range(200)]
            assert service.ingest(s, store, "ep", json.dumps(recs).encode(), "application/json")["accepted"] == 200
            ex = schedules.run_now(s, store, "dq", start, start + dt.timedelta(hours=1), p)
            assert ex.status == "CompletedWithViolations", ex.failure_reason
            checks = {a.check for a in s.scalars(select(Alert).where(Alert.opened_execution_id == ex.id))}
            requests = list(s.scalars(select(OutboxEvent).where(OutboxEvent.type == "retraining.requested")))
            trigger = s.scalars(select(RetrainingTrigger)).one()
            if hour == 0:   # the label the capture lacks: an alert, and no request
                assert checks == {"missing_column_check"}
                assert requests == [] and trigger.last_triggered_at is None
            else:           # the drift: one request, naming a drift alert
                assert "baseline_drift_check" in checks and "missing_column_check" not in checks   # still open
                assert [r.payload["check"] for r in requests] == ["baseline_drift_check"]
                assert trigger.last_triggered_at is not None


def _check_uris(body: dict[str, Any], root: str) -> None:
    assert body["data_uri"] == f"{root}capture/ep/AllTraffic/"
    # the window 10:30-11:30 spans the 10:00 and 11:00 partitions
    assert body["data_uris"] == [f"{root}capture/ep/AllTraffic/2026/11/20/10/",
                                 f"{root}capture/ep/AllTraffic/2026/11/20/11/"]
    assert body["window"] == {"start": "2026-11-20T10:30:00+00:00", "end": "2026-11-20T11:30:00+00:00"}
    b = body["baseline"]
    assert b["id"] == body["baseline_id"] and b["kind"] == "DataQuality"
    names = {u.rsplit("/", 1)[1] for u in b["uris"]}
    assert {"statistics.json", "constraints.json"} <= names
    assert all(u.startswith(f"{root}baselines/{b['id']}/") for u in b["uris"])


def test_retraining_payload_has_full_local_uris(db, tmp_path):
    from mlgov.storage import LocalStore

    store = LocalStore(tmp_path / "store")
    body = _retraining_request(db, store, tmp_path)
    root = (tmp_path / "store").resolve().as_uri() + "/"
    _check_uris(body, root)
    for uri in [*body["data_uris"], *body["baseline"]["uris"]]:
        assert Path(urlparse(uri).path).exists(), uri                    # a reader outside mlgov finds them


def test_retraining_payload_has_full_s3_uris(db, tmp_path, seaweed):
    from mlgov.storage import S3Store

    bucket = f"rt{uuid.uuid4().hex[:8]}"
    client = seaweed.client()
    client.create_bucket(Bucket=bucket)
    body = _retraining_request(db, S3Store(bucket, "mlgov", client), tmp_path)
    _check_uris(body, f"s3://{bucket}/mlgov/")
    for uri in body["data_uris"]:
        u = urlparse(uri)
        assert client.list_objects_v2(Bucket=u.netloc, Prefix=u.path.lstrip("/"))["KeyCount"] > 0, uri
    for uri in body["baseline"]["uris"]:
        u = urlparse(uri)
        client.head_object(Bucket=u.netloc, Key=u.path.lstrip("/"))


# --- alerts opened before subjects ------------------------------------------------------------------------------

def _legacy_alert(s: Any, schedule_id: str, alert_id: str, details: list[dict[str, Any]], check: str = "x") -> None:
    from monitor.orm import Alert

    s.add(Alert(id=alert_id, schedule_id=schedule_id, check=check, status="open", opened_execution_id="old",
                last_execution_id="old", details=details, occurrences=1, opened_at=T))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_0012_gives_existing_alerts_the_subject_their_violations_share(kind, tmp_path):
    from alembic import command

    from mlgov.db import Database, alembic_config
    from mlgov.storage import LocalStore
    from monitor.orm import Alert, Schedule
    from tests.helpers import seed_schedule
    from tests.infra import fresh_database, upgrade

    auc = {"metric_name": "auc", "constraint_check_type": "LessThanThreshold"}
    tnr = {"metric_name": "true_negative_rate", "constraint_check_type": "LessThanThreshold"}
    income = {"feature_name": "income", "constraint_check_type": "baseline_drift_check"}
    dppl = {"facet": "sex", "facet_value": "f", "metric_name": "DPPL", "constraint_check_type": "bias_drift_check"}
    cases = {"one": ([auc], "auc"), "mixed": ([auc, tnr], ""), "feature": ([income, income], "income"),
             "bias": ([dppl], "DPPL (sex=f)"), "empty": ([], "")}
    with fresh_database(kind, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        with db.session_scope() as s:
            seed_schedule(s, LocalStore(tmp_path / "store"), FEATURES, csv_bytes(frame(300)), name="dq",
                          expression="hourly", window_start="-PT1H", now=T)
            sid = s.scalar(select(Schedule.id))
            for alert_id, (details, _) in cases.items():
                _legacy_alert(s, sid, alert_id, details)
        command.downgrade(alembic_config(url), "0011")     # the alerts as they were: no subject column
        upgrade(url)
        with db.session_scope(write=False) as s:
            got = {alert_id: subject for alert_id, subject in s.execute(select(Alert.id, Alert.subject))}
        db.dispose()
    assert got == {alert_id: subject for alert_id, (_, subject) in cases.items()}


def test_an_alert_from_before_subjects_stands_for_its_check_until_the_check_passes(db, tmp_path):
    from mlgov.storage import LocalStore
    from monitor import schedules, service
    from monitor.orm import Alert, Schedule
    from tests.helpers import seed_schedule

    store = LocalStore(tmp_path / "store")
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    with db.session_scope() as s:
        seed_schedule(s, store, FEATURES, csv_bytes(frame(1000)), name="dq", expression="hourly",
                      window_start="-PT1H", now=t0)
        sid = s.scalar(select(Schedule.id))
        _legacy_alert(s, sid, "legacy", [{"feature_name": "income"}, {"feature_name": "age"}], "baseline_drift_check")

    def run(hour: int, shift: float) -> Any:
        start = t0 + dt.timedelta(hours=hour)
        rows = frame(300, shift=shift, seed=hour)
        recs = [record(hour * 1000 + i, start + dt.timedelta(seconds=10 * i), tuple(rows.iloc[i])) for i in range(300)]
        with db.session_scope() as s:
            service.ingest(s, store, "ep", json.dumps(recs).encode(), "application/json")
            ex = schedules.run_now(s, store, "dq", start, start + dt.timedelta(hours=1), SYSTEM)
            opened = {(a.check, a.subject): (a.id, a.occurrences) for a in s.scalars(
                select(Alert).where(Alert.status == "open"))}
            return ex.status, opened

    status, opened = run(0, 30.0)                        # income drifts: the old alert carries it on
    assert status == "CompletedWithViolations"
    assert opened == {("baseline_drift_check", ""): ("legacy", 2)}
    status, opened = run(1, 0.0)                         # the check passes: the old alert resolves
    assert status == "Completed" and opened == {}
    status, opened = run(2, 30.0)                        # a new breach opens an alert keyed by its feature
    assert list(opened) == [("baseline_drift_check", "income")]
