"""Acknowledged means stored: SIGKILL the server in the middle of batched ingests, lose no acknowledged record."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from mlgov.db import Database
from monitor.orm import CaptureBatch, CaptureEvent
from tests.helpers import version_body
from tests.infra import free_port, wait_healthy
from tests.monitor.test_api import FEATURES, record

pytestmark = pytest.mark.live
MLGOV = str(Path(sys.executable).parent / "mlgov")


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}, "MLGOV_HOME": str(home)}
    proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], env=env, cwd=home.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=180)   # a busy CI box starts slowly
    except RuntimeError:
        proc.kill()
        raise
    return proc


def test_sigkill_loses_no_acknowledged_record(tmp_path):
    home = tmp_path / ".mlgov"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}, "MLGOV_HOME": str(home)}
    subprocess.run([MLGOV, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=tmp_path)
    port = free_port()
    proc = _serve(home, port)
    h = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
    base = f"http://127.0.0.1:{port}/api/v1"
    assert httpx.post(f"{base}/model-groups", json={"name": "g"}, headers=h, timeout=60).status_code == 201
    assert httpx.post(f"{base}/model-groups/g/versions", json=version_body(1), headers=h, timeout=60).status_code == 201
    assert httpx.post(f"{base}/endpoints", headers=h, json={"name": "ep", "model_group": "g", "model_version": 1,
                                                          "schema": {"features": FEATURES}},
                      timeout=60).status_code == 201
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)

    def load(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as c:
            while not stop.is_set() and n < 2000:
                ids = [f"w{worker}-{n + i}" for i in range(20)]
                recs = [record(0, t0 + dt.timedelta(seconds=(n + i) % 7200), (30, 40.5, "CA"), event_id=e)
                        for i, e in enumerate(ids)]
                n += 20
                try:
                    r = c.post(f"{base}/endpoints/ep/capture", json=recs, headers=h)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    return
                if r.status_code == 200 and r.json()["accepted"] == 20:
                    acked.extend(ids)

    workers = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    for w in workers:
        w.start()
    deadline = time.time() + 20
    while len(acked) < 300 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)            # no shutdown, no flush: the process just dies
    proc.wait()
    stop.set()
    for w in workers:
        w.join()
    assert len(acked) >= 300 and errors, (len(acked), errors)   # the kill really interrupted ingestion
    db = Database(f"sqlite:///{home / 'mlgov.db'}")
    with db.session_scope(write=False) as s:
        stored = set(s.scalars(select(CaptureEvent.event_id)))
        keys = list(s.scalars(select(CaptureBatch.parquet_key)))
    db.dispose()
    assert set(acked) <= stored, f"lost {len(set(acked) - stored)} acknowledged records"
    in_files: set[str] = set()
    for k in keys:
        in_files |= set(pq.read_table(io.BytesIO((home / "store" / k).read_bytes())).column("__event_id").to_pylist())
    assert set(acked) <= in_files
    # the service comes back on the same data and still refuses the duplicates
    proc = _serve(home, port)
    try:
        retry = [record(0, t0, (30, 40.5, "CA"), event_id=e) for e in acked[:20]]
        r = httpx.post(f"{base}/endpoints/ep/capture", json=retry, headers=h, timeout=60)
        assert r.json()["duplicates"] == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # files the killed process wrote and never indexed are swept once old: then every file is a batch's
    from mlgov.storage import LocalStore
    from monitor import jobs

    db = Database(f"sqlite:///{home / 'mlgov.db'}")
    store = LocalStore(home / "store")
    jobs.sweep(db, store, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2), older_batches=True)
    with db.session_scope(write=False) as s:
        indexed = {k for row in s.execute(select(CaptureBatch.jsonl_key, CaptureBatch.parquet_key)) for k in row}
    db.dispose()
    assert {k for k, _ in store.listed("capture/", unfinished=True)} == indexed   # half-written files too
