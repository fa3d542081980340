"""Exactly once: two real `mlgov scheduler` processes on one PostgreSQL run every due execution once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from mlgov import workers
from mlgov.db import Database
from mlgov.settings import Settings
from mlgov.storage import open_store
from monitor.orm import Execution
from tests.helpers import seed_schedule
from tests.infra import fresh_database, upgrade
from tests.monitor.test_api import FEATURES, csv_bytes, frame

pytestmark = pytest.mark.live
MLGOV = str(Path(sys.executable).parent / "mlgov")


def test_two_scheduler_processes_run_each_due_execution_once(tmp_path):
    with fresh_database("postgres", tmp_path) as url:
        upgrade(url)
        store_url = (tmp_path / "store").as_uri()
        db = Database(url)
        store = open_store(Settings(home=tmp_path, store_url=store_url))
        seeded = dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC)
        with db.session_scope() as s:
            seed_schedule(s, store, FEATURES, csv_bytes(frame(300)), name="every-minute", expression="* * * * *",
                          window_start="-PT1M", now=seeded)
        # The fake clock starts LEAD s from now, 90 fake seconds (3 s) before the first run is due at 10:01; both
        # processes are up (their heartbeats say so) before it starts, even on a loaded machine (runs missed at
        # start-up would be coalesced by design).
        start, anchor = seeded - dt.timedelta(seconds=60), time.time() + LEAD
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")},
               "MLGOV_DATABASE_URL": url, "MLGOV_STORE_URL": store_url, "MLGOV_HOME": str(tmp_path / ".mlgov"),
               "MLGOV_AUDIT_KEY": os.environ["MLGOV_AUDIT_KEY"],   # the key this test's own events were signed with
               "MLGOV_SCHEDULER_INTERVAL_S": "0.2", "MLGOV_FAKE_CLOCK_START": start.isoformat(),
               "MLGOV_FAKE_CLOCK_ANCHOR": str(anchor), "MLGOV_FAKE_CLOCK_SPEED": "30"}
        procs = [subprocess.Popen([MLGOV, "scheduler"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        try:
            while _alive(db).instances < 2:
                assert time.time() < anchor, "the two scheduler processes did not start in time"
                time.sleep(0.2)
            time.sleep(anchor + 14 - time.time())      # then 7 fake minutes pass (10:01 to 10:06 fall due)
            assert _alive(db).alive
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            logs = [proc.communicate(timeout=60)[1].decode(errors="replace") for proc in procs]
        after = _alive(db)
        with db.session_scope(write=False) as s:
            runs = list(s.execute(select(Execution.scheduled_for, Execution.worker, Execution.status)))
        db.dispose()
    fires = sorted(r[0] for r in runs)
    assert len(fires) >= 5, logs
    assert len(fires) == len(set(fires)), "a due run executed twice"
    expected = [dt.datetime(2026, 11, 20, 10, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(len(fires))]
    assert fires == expected, "a due run was skipped"
    assert {r[2] for r in runs} == {"Failed"}     # no traffic captured: each run fails with a readable reason
    assert len({r[1] for r in runs}) >= 1
    # one log line per run, saying schedule, window, status, violations and why it failed; no per-tick chatter
    lines = [ln for log in logs for ln in log.splitlines() if "schedule every-minute (DataQuality) window" in ln]
    assert len(lines) == len(fires), logs
    assert "2026-11-20T10:00:00Z to 2026-11-20T10:01:00Z: Failed, 0 violation(s): " in "\n".join(lines)
    assert "no data captured" in lines[0]
    assert not any("apscheduler" in log or "alembic" in log for log in logs), logs
    assert after.instances == 0 and not after.alive and after.last_tick_at is not None   # stopped cleanly


LEAD = 30.0   # seconds both processes have to start (imports take seconds on a loaded machine)


def _alive(db: Database) -> workers.WorkerStatus:
    with db.session_scope(write=False) as s:
        return workers.status(s, workers.SCHEDULER)


def test_serve_with_scheduler_runs_due_schedules(tmp_path):
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    with fresh_database("sqlite", tmp_path) as url:
        upgrade(url)
        db = Database(url)
        settings = make_settings(tmp_path, scheduler=True, scheduler_interval_s=0.1,
                                 fake_clock_start=dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC),
                                 fake_clock_anchor=time.time(), fake_clock_speed=600.0)
        store = open_store(settings)
        with db.session_scope() as s:
            seed_schedule(s, store, FEATURES, csv_bytes(frame(200)), name="m", expression="*/5 * * * *",
                          window_start="-PT5M", now=dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC))
        with TestClient(create_app(settings, db=db)):
            deadline = time.time() + 20
            while time.time() < deadline:
                with db.session_scope(write=False) as s:
                    n = len(list(s.scalars(select(Execution.id))))
                if n >= 2:
                    break
                time.sleep(0.2)
        db.dispose()
    assert n >= 2
