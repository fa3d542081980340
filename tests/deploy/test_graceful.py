"""Graceful operation of real processes on PostgreSQL: SIGTERM to a live `mlgov serve` drains the request in
flight and lets the scheduled run in progress finish; a scheduler killed mid-run (a pod past its grace period)
leaves its claim, and another `mlgov scheduler` takes it over once the dead one's heartbeat is silent — the run
ends once, nothing of the killed attempt is kept.

A run is held "in progress" by real database contention: the test locks the events outbox table (EXCLUSIVE), so
the run's transaction blocks at its execution.completed event while holding its execution row (FOR UPDATE).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, func, select, text, update
from sqlalchemy.exc import OperationalError

from mlgov import auth, workers
from mlgov.db import Database
from mlgov.events import OutboxEvent
from mlgov.settings import Settings
from mlgov.storage import open_store
from monitor.orm import Execution, Schedule
from registry.orm import ModelGroup
from tests.helpers import seed_schedule
from tests.infra import free_port, fresh_database, upgrade, wait_healthy
from tests.monitor.test_api import FEATURES, csv_bytes, frame

pytestmark = pytest.mark.live
MLGOV = str(Path(sys.executable).parent / "mlgov")
SEEDED = dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC)
FIRE = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)   # the run the test makes due (the next is 11:00)
STARTUP = 300.0   # a loaded machine can take a minute to import and start a process


def _wait(pred: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if got := pred():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def _setup(tmp_path: Path) -> Iterator[tuple[Database, str, dict[str, str]]]:
    """PostgreSQL with an hourly data-quality schedule (next run 11:00), and the environment of processes whose
    clock stands at 10:00:40: nothing is due until `_make_due`, however long the processes take to start."""
    with fresh_database("postgres", tmp_path) as url:
        upgrade(url)
        store_url = (tmp_path / "store").as_uri()
        db = Database(url)
        store = open_store(Settings(home=tmp_path, store_url=store_url))
        with db.session_scope() as s:
            seed_schedule(s, store, FEATURES, csv_bytes(frame(200)), name="hourly", expression="0 * * * *",
                          window_start="-PT1H", now=SEEDED)
            env_key = auth.create_key(s, "publisher", "publisher", actor="test")[1]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")},
               "MLGOV_DATABASE_URL": url, "MLGOV_STORE_URL": store_url, "MLGOV_HOME": str(tmp_path / ".mlgov"),
               # the key this test's own events were signed with: a process with another one refuses to write
               "MLGOV_AUDIT_KEY": os.environ["MLGOV_AUDIT_KEY"],
               "MLGOV_SCHEDULER_INTERVAL_S": "0.2", "MLGOV_FAKE_CLOCK_START": (FIRE + dt.timedelta(seconds=40))
               .isoformat(), "MLGOV_FAKE_CLOCK_ANCHOR": str(time.time()), "MLGOV_FAKE_CLOCK_SPEED": "1",
               "TEST_PUBLISHER_KEY": env_key}
        try:
            yield db, url, env
        finally:
            db.dispose()


def _make_due(db: Database) -> None:
    with db.session_scope() as s:
        s.execute(update(Schedule).where(Schedule.name == "hourly").values(next_run_at=FIRE))


@contextmanager
def _outbox_locked(url: str) -> Iterator[Connection]:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE events_outbox IN EXCLUSIVE MODE"))
        try:
            yield conn
        finally:
            conn.rollback()
    engine.dispose()


def _running(url: str) -> Callable[[], str | None]:
    """The id of the claimed execution once a run holds its row (a NOWAIT lock on it fails)."""
    engine = create_engine(url)

    def probe() -> str | None:
        with engine.connect() as conn:
            ex_id = conn.execute(select(Execution.id).where(Execution.scheduled_for == FIRE)).scalar()
            if ex_id is None:
                return None
            try:
                conn.execute(select(Execution.id).where(Execution.id == ex_id).with_for_update(nowait=True))
            except OperationalError:
                return str(ex_id)   # locked: the run is in progress
            finally:
                conn.rollback()
        return None
    return probe


def _executions(db: Database) -> list[Any]:
    with db.session_scope(write=False) as s:
        return list(s.execute(select(Execution.id, Execution.status, Execution.worker, Execution.started_at,
                                     Execution.ended_at, Execution.failure_reason)))


def _scheduler(db: Database) -> workers.WorkerStatus:
    with db.session_scope(write=False) as s:
        return workers.status(s, workers.SCHEDULER)


def _completed_events(db: Database) -> int:
    with db.session_scope(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(OutboxEvent)
                            .where(OutboxEvent.type == "execution.completed")) or 0)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_the_request_in_flight_and_finishes_the_run(tmp_path):
    with _setup(tmp_path) as (db, url, env):
        port = free_port()
        proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=STARTUP)
            key = env["TEST_PUBLISHER_KEY"]
            with _outbox_locked(url) as lock:
                _make_due(db)
                ex_id = _wait(_running(url), "the scheduled run to start")
                # a long request: headers and half the body now, the rest after SIGTERM
                body = json.dumps({"name": "drained", "description": "sent slowly"}).encode() + b" " * 3000
                conn = socket.create_connection(("127.0.0.1", port), timeout=60)
                conn.sendall(b"POST /api/v1/model-groups HTTP/1.1\r\nHost: mlgov\r\nContent-Type: application/json\r\n"
                             + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                             + body[:100])
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                _wait(lambda: _refused(port), "the server to stop accepting connections", timeout=20)
                assert proc.poll() is None   # still draining
                conn.sendall(body[100:])
                time.sleep(0.5)
                assert proc.poll() is None   # the run still waits on the lock: the server waits for it
                lock.rollback()
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
            conn.close()
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = out.decode(errors="replace")
        assert reply.startswith(b"HTTP/1.1 201"), (reply[:300], log)
        # uvicorn re-raises the SIGTERM it caught once its shutdown is complete, so the exit status is the signal's
        assert proc.returncode in (0, -signal.SIGTERM), log
        assert "Application shutdown complete." in log and "Finished server process" in log
        with db.session_scope(write=False) as s:
            assert s.scalar(select(ModelGroup.name).where(ModelGroup.name == "drained")) == "drained"
        beat = _scheduler(db)
        (run,) = _executions(db)
        assert run.id == ex_id
        # the run finished (no traffic was captured: Failed with its reason), it did not stay claimed
        assert run.status == "Failed" and run.ended_at is not None and "no data captured" in run.failure_reason
        assert _completed_events(db) == 1
        assert not beat.alive and beat.instances == 0   # the scheduler stopped cleanly
        assert "schedule hourly (DataQuality) window 2026-11-20T09:00:00Z to 2026-11-20T10:00:00Z: Failed" in log


def test_a_claim_left_by_a_killed_scheduler_is_taken_over_once(tmp_path):
    with _setup(tmp_path) as (db, url, env):
        first = subprocess.Popen([MLGOV, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        second = None
        try:
            _wait(lambda: _scheduler(db).alive, "the first scheduler to start", timeout=STARTUP)
            with _outbox_locked(url):
                _make_due(db)
                ex_id = _wait(_running(url), "the scheduled run to start")
                first.kill()   # SIGKILL mid-run: a pod past its grace period, an OOM kill
                first.wait()
                # the killed run's transaction is rolled back: still claimed (Pending), nothing of it kept
                _wait(lambda: _running(url)() is None, "the killed run's locks to go")
                (run,) = _executions(db)
                assert (run.id, run.status, run.started_at, run.ended_at) == (ex_id, "Pending", None, None)
                dead = run.worker
            assert _completed_events(db) == 0
            second = subprocess.Popen([MLGOV, "scheduler"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
            # taken over once the dead instance's heartbeat is silent (max(3 intervals, 30 s))
            _wait(lambda: _executions(db)[0].status != "Pending", "the take-over", timeout=STARTUP + 60)
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=60)
        finally:
            for p in (first, second):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
        log = err.decode(errors="replace")
        assert second.returncode == 0, log
        runs = _executions(db)
        assert len(runs) == 1, runs   # the fire time ran once
        (run,) = runs
        assert run.status == "Failed" and "no data captured" in run.failure_reason and run.ended_at is not None
        assert run.worker != dead and run.worker.split(":")[1] == str(second.pid)
        assert f"its claimer {dead} is gone; running it here" in log
        assert _completed_events(db) == 1


def test_take_over_only_claims_of_gone_claimers(tmp_path):
    """In one process: a claim whose claimer stopped or went silent is run by the taker, once; a claim of a live
    claimer, or of one never seen, is left alone."""
    from monitor import jobs

    with _setup(tmp_path) as (db, _url, env):
        store = open_store(Settings(home=tmp_path, store_url=env["MLGOV_STORE_URL"]))
        with db.session_scope(write=False) as s:
            sid = s.scalar(select(Schedule.id))
        now = dt.datetime.now(dt.UTC)
        long_ago = now - dt.timedelta(minutes=5)
        with db.session_scope() as s:
            workers.beat(s, workers.SCHEDULER, "silent:1:a", 1.0, now=long_ago)   # killed five minutes ago
            workers.beat(s, workers.SCHEDULER, "stopped:2:b", 1.0, stopped=True)  # stopped (SIGTERM) just now
            workers.beat(s, workers.SCHEDULER, "alive:3:c", 1.0)                  # beating
        claims = {who: jobs.claim(db, sid, FIRE + dt.timedelta(hours=i), FIRE, FIRE, "schedule", who)
                  for i, who in enumerate(["silent:1:a", "stopped:2:b", "alive:3:c", "unknown:4:d"])}
        taken = jobs.take_over(db, store, "taker:5:e")
        assert sorted(taken) == sorted([claims["silent:1:a"], claims["stopped:2:b"]])
        assert jobs.take_over(db, store, "another:6:f") == []   # ended: nothing left to take
        with db.session_scope(write=False) as s:
            rows = {r.id: (r.status, r.worker) for r in s.scalars(select(Execution))}
        assert rows[claims["silent:1:a"]] == ("Failed", "taker:5:e")
        assert rows[claims["stopped:2:b"]] == ("Failed", "taker:5:e")
        assert rows[claims["alive:3:c"]] == ("Pending", "alive:3:c")
        assert rows[claims["unknown:4:d"]] == ("Pending", "unknown:4:d")
        assert _completed_events(db) == 2
        # a run whose claim was taken over meanwhile is not run by its first claimer
        assert jobs.run_claimed(db, store, sid, claims["alive:3:c"], "someone-else:7:g") is False
