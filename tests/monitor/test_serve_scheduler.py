"""`mlgov serve` runs due schedules itself (what `make run` starts), says so on /readyz and in the schedules list,
and `--no-scheduler` leaves them to `mlgov scheduler` processes: then /readyz reports no recent tick and a
schedule due for more than a period is flagged overdue. Real `mlgov serve` processes on one SQLite database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlgov import auth
from mlgov.db import Database
from mlgov.settings import Settings
from mlgov.storage import open_store
from tests.helpers import seed_schedule
from tests.infra import free_port, upgrade, wait_healthy
from tests.monitor.test_api import FEATURES, csv_bytes, frame

pytestmark = pytest.mark.live
MLGOV = str(Path(sys.executable).parent / "mlgov")


class Serve:
    """`mlgov serve` on a free port with ``args``; its output is kept for the assertions."""

    def __init__(self, home: Path, *args: str) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}, "MLGOV_HOME": str(home),
               "MLGOV_SCHEDULER_INTERVAL_S": "0.2", "MLGOV_AUDIT_KEY": os.environ["MLGOV_AUDIT_KEY"]}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([MLGOV, "serve", "--port", str(self.port), *args], env=env, cwd=home.parent,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ""

    def __enter__(self) -> Serve:
        try:
            wait_healthy(self.url, self.proc, timeout=120)   # imports take a while on a loaded machine
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.output = self.proc.communicate(timeout=60)[0].decode(errors="replace")


def test_serve_runs_due_schedules_unless_told_not_to(tmp_path):
    home = tmp_path / ".mlgov"
    settings = Settings(home=home)
    upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    with db.session_scope() as s:   # an every-minute schedule, due since ten minutes ago
        seed_schedule(s, open_store(settings), FEATURES, csv_bytes(frame(300)), name="every-minute",
                      expression="* * * * *", window_start="-PT1M",
                      now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
        _, key = auth.create_key(s, "watcher", "viewer", actor="test")
    db.dispose()
    h = {"Authorization": f"Bearer {key}"}

    def state(srv: Serve) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        ready = httpx.get(f"{srv.url}/readyz", timeout=60).json()
        listed = httpx.get(f"{srv.url}/api/v1/monitoring-schedules", headers=h, timeout=60).json()
        runs = httpx.get(f"{srv.url}/api/v1/monitoring-schedules/every-minute/executions", headers=h, timeout=60).json()
        return ready, listed, runs

    with Serve(home, "--no-scheduler") as off:
        time.sleep(3)                                   # 15 scheduler intervals: nothing may run
        ready, listed, runs = state(off)
    assert runs["total"] == 0
    assert ready["status"] == "ready" and ready["scheduler"] == {"alive": False, "last_tick_at": None,
                                                                 "instances": 0}
    assert listed["scheduler"]["alive"] is False
    [sched] = listed["items"]
    assert sched["overdue"] is True and sched["status"] == "Scheduled"
    assert "does not run monitoring schedules" in off.output

    with Serve(home) as on:                             # what `make run` starts
        deadline = time.time() + 60
        while (runs := state(on)[2])["total"] == 0 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)                                 # a tick after the run: the heartbeat says it finished
        ready, listed, _ = state(on)
    assert runs["total"] >= 1, on.output
    first = runs["items"][-1]
    assert first["trigger"] == "schedule" and first["status"] == "Failed"     # no traffic captured yet
    assert "no data captured" in first["failure_reason"]
    assert ready["scheduler"]["alive"] is True and ready["scheduler"]["instances"] == 1
    assert ready["scheduler"]["last_tick_at"] is not None
    assert listed["scheduler"]["alive"] is True
    assert listed["items"][0]["overdue"] is False
    # one log line per run: schedule, window, status, violations; no per-tick chatter from the scheduler library
    assert "schedule every-minute (DataQuality) window " in on.output and ": Failed, 0 violation(s)" in on.output
    assert "apscheduler" not in on.output.lower()
