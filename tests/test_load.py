"""100 concurrent writes against a real `mlgov serve` process: everyone waits their turn and succeeds; under
genuine overload the answer is 503 problem+json with Retry-After and nothing half-written, never 500."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from lineage.orm import Entity
from mlgov import auth
from mlgov.audit import AuditEvent, verify
from mlgov.db import Database, DatabaseBusy, Gate
from monitor.orm import CaptureBatch, CaptureEvent, Endpoint
from registry.orm import ApprovalDecision, ModelVersion
from tests.helpers import version_body
from tests.infra import free_port, fresh_database, upgrade, wait_healthy
from tests.monitor.test_api import FEATURES, record

live = pytest.mark.live
MLGOV = str(Path(sys.executable).parent / "mlgov")
N = 100


@dataclass
class Served:
    url: str
    db: Database
    keys: dict[str, dict[str, str]]

    def post(self, path: str, key: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=120) as c:
            return c.post(path, headers=self.keys[key], **kw)

    def get(self, path: str, key: str) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=120) as c:
            return c.get(path, headers=self.keys[key])

    def count(self, stmt: Any) -> int:
        with self.db.session_scope(write=False) as s:
            return int(s.scalar(stmt) or 0)


@contextmanager
def serve(backend: str, tmp: Path, **env: str) -> Iterator[Served]:
    """A fresh database, keys per role, and `mlgov serve` in its own process (settings from ``env``)."""
    with fresh_database(backend, tmp) as url:
        upgrade(url)
        db = Database(url)
        keys = {}
        with db.session_scope() as s:
            for name, role in [("pub", "publisher"), ("appr", "approver"), ("appr2", "approver"),
                               ("ingest", "ingest")]:
                keys[name] = {"Authorization": f"Bearer {auth.create_key(s, name, role, actor='test')[1]}"}
        port = free_port()
        environ = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")},
                   "MLGOV_HOME": str(tmp / ".mlgov"), "MLGOV_DATABASE_URL": url,
                   "MLGOV_BACKGROUND_WORKERS": "false", "MLGOV_AUDIT_KEY": os.environ["MLGOV_AUDIT_KEY"],
                   **{f"MLGOV_{k.upper()}": v for k, v in env.items()}}
        proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], env=environ, cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"))
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            yield Served(f"http://127.0.0.1:{port}", db, keys)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            db.dispose()


def burst(call: Callable[[int], httpx.Response], n: int = N) -> list[httpx.Response]:
    """``n`` requests in flight at once, one client connection each."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def codes(rs: list[httpx.Response]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in rs:
        out[r.status_code] = out.get(r.status_code, 0) + 1
    return out


def assert_busy(r: httpx.Response) -> None:
    """The overload answer: 503 problem+json with a Retry-After a client can honour, saying what to do."""
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["status"] == 503 and body["detail"] and "retry" in body["fix"].lower(), body


def registered(srv: Served, group: str) -> list[int]:
    with srv.db.session_scope(write=False) as s:
        from registry.orm import ModelGroup
        gid = s.scalar(select(ModelGroup.id).where(ModelGroup.name == group))
        return sorted(s.scalars(select(ModelVersion.version).where(ModelVersion.group_id == gid)))


def capture_endpoint(srv: Served, group: str, name: str) -> None:
    """A model group with version 1 and an endpoint ``name`` serving it (the test features' schema)."""
    assert srv.post("/api/v1/model-groups", "pub", json={"name": group}).status_code == 201
    assert srv.post(f"/api/v1/model-groups/{group}/versions", "pub", json=version_body(1)).status_code == 201
    r = srv.post("/api/v1/endpoints", "pub", json={"name": name, "model_group": group, "model_version": 1,
                                                    "schema": {"features": FEATURES}})
    assert r.status_code == 201, r.text


def audit_count(srv: Served, action: str) -> int:
    return srv.count(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


# --- the turn itself ----------------------------------------------------------------------------------------

def test_gate_admits_in_arrival_order_and_never_more_than_its_capacity() -> None:
    async def main() -> tuple[list[int], int]:
        gate, order, inside, peak = Gate(2, 5.0, "test"), [], [0], [0]

        async def user(i: int) -> None:
            await gate.acquire()
            order.append(i)
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            await asyncio.sleep(0.01)
            inside[0] -= 1
            gate.release()

        tasks = []
        for i in range(8):
            tasks.append(asyncio.create_task(user(i)))
            await asyncio.sleep(0)          # arrive one after another
        await asyncio.gather(*tasks)
        return order, peak[0]

    order, peak = asyncio.run(main())
    assert order == list(range(8)) and peak == 2


def test_gate_timeout_is_busy_and_leaks_no_turn_and_release_works_from_any_thread() -> None:
    async def main() -> None:
        gate = Gate(1, 0.05, "database write")
        await gate.acquire()
        with pytest.raises(DatabaseBusy, match=r"waited 0\.05 s for a database write turn"):
            await gate.acquire()
        gate.timeout_s = 30.0                             # from here on nobody should time out
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        threading.Thread(target=gate.release).start()   # sessions finish in worker threads
        await waiter                                      # the turn was handed over, not lost
        gate.release()
        await gate.acquire()                              # free again: the timed-out waiter took nothing
        gate.release()

    asyncio.run(main())


# --- everyone waits their turn and succeeds -------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(request.param, tmp_path_factory.mktemp("load")) as srv:
        yield srv


@live
def test_hundred_concurrent_registrations_into_one_group(server: Served) -> None:
    assert server.post("/api/v1/model-groups", "pub", json={"name": "reg"}).status_code == 201
    rs = burst(lambda i: server.post("/api/v1/model-groups/reg/versions", "pub", json=version_body(i)))
    assert codes(rs) == {201: N}, [r.text for r in rs if r.status_code != 201][:3]
    assert sorted(r.json()["version"] for r in rs) == list(range(1, N + 1))       # unique, gap-free
    assert registered(server, "reg") == list(range(1, N + 1))
    assert audit_count(server, "version.registered") == N
    with server.db.session_scope(write=False) as s:
        assert verify(s)["ok"] is True
    # and 100 readers at once all get the whole list (reads wait their turn too, never on the pool)
    reads = burst(lambda i: server.get(f"/api/v1/model-groups/reg/versions?limit=100&offset={i % 3}", "pub"))
    assert codes(reads) == {200: N} and {r.json()["total"] for r in reads} == {N}


@live
def test_hundred_concurrent_decisions_without_expected_status(server: Served) -> None:
    assert server.post("/api/v1/model-groups", "pub", json={"name": "dec"}).status_code == 201
    assert server.post("/api/v1/model-groups/dec/versions", "pub", json=version_body(1)).status_code == 201
    before = audit_count(server, "version.approval_changed")

    def decide(i: int) -> httpx.Response:
        return server.post("/api/v1/model-groups/dec/versions/1/approval", "appr" if i % 2 else "appr2",
                           json={"status": "Approved" if i % 3 else "Rejected", "comment": f"decision {i}"})

    rs = burst(decide)
    c = codes(rs)
    assert set(c) <= {200, 409} and c.get(200, 0) >= 1, c          # 409: already in that status; never 5xx
    assert all(r.json()["title"] for r in rs if r.status_code == 409)
    successes = c[200]
    assert audit_count(server, "version.approval_changed") - before == successes
    assert server.count(select(func.count()).select_from(ApprovalDecision)) == successes
    # the decisions form one serial history: each starts from the status the previous one left
    with server.db.session_scope(write=False) as s:
        chain = list(s.execute(select(ApprovalDecision.from_status, ApprovalDecision.to_status)
                               .order_by(ApprovalDecision.id)))
    assert chain[0][0] == "PendingManualApproval"
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(chain))


@live
def test_hundred_concurrent_capture_batches(server: Served) -> None:
    capture_endpoint(server, "cap", "ep")
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)

    def ingest(i: int) -> httpx.Response:
        recs = [record(i * 5 + j, t0 + dt.timedelta(seconds=i), (30, 40.5, "CA"), event_id=f"b{i}-{j}")
                for j in range(5)]
        return server.post("/api/v1/endpoints/ep/capture", "ingest", json=recs)

    rs = burst(ingest)
    assert codes(rs) == {200: N}, [r.text for r in rs if r.status_code != 200][:3]
    assert sum(r.json()["accepted"] for r in rs) == 5 * N
    assert server.count(select(func.count()).select_from(CaptureEvent)) == 5 * N


@live
def test_hundred_concurrent_single_records(server: Served) -> None:
    """Single records sent at once (grouped into shared writes): every acknowledged record is indexed once, a
    record sent by two requests is accepted by exactly one, and a bad record is refused alone."""
    capture_endpoint(server, "single", "ep1")
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)

    def ingest(i: int) -> httpx.Response:
        rec = record(i, t0 + dt.timedelta(minutes=i % 90), (30, 40.5, "CA"), event_id=f"s{i % 90}")
        if i % 10 == 7:
            rec["eventMetadata"]["inferenceTime"] = "yesterday"
        return server.post("/api/v1/endpoints/ep1/capture", "ingest", json=[rec])

    rs = burst(ingest)
    bad = [i for i in range(N) if i % 10 == 7]
    assert codes(rs) == {200: N - len(bad), 422: len(bad)}, [r.text for r in rs if r.status_code != 200][:3]
    assert all("inferenceTime" in rs[i].json()["detail"] for i in bad)
    good = {f"s{i % 90}" for i in range(N) if i % 10 != 7}
    ok = [r.json() for r in rs if r.status_code == 200]
    assert sum(o["accepted"] for o in ok) == len(good)
    assert sum(o["duplicates"] for o in ok) == N - len(bad) - len(good)
    with server.db.session_scope(write=False) as s:
        ep_id = s.scalar(select(Endpoint.id).where(Endpoint.name == "ep1"))
        events = list(s.scalars(select(CaptureEvent.event_id).where(CaptureEvent.endpoint_id == ep_id)))
        in_batches = s.scalar(select(func.sum(CaptureBatch.records)).where(CaptureBatch.endpoint_id == ep_id))
    assert sorted(events) == sorted(good) and in_batches == len(good)


@live
def test_hundred_concurrent_lineage_records_of_the_same_datasets(server: Served) -> None:
    """Pipelines record the same dataset at once: one creates it, the others get it back (no lost insert race)."""
    def create(i: int) -> httpx.Response:
        return server.post("/api/v1/lineage/artifacts", "pub",
                           json={"type": "Dataset", "uri": f"s3://load/{i % 10}.csv", "sha256": f"{i % 10}" * 64})

    rs = burst(create)
    assert codes(rs) == {201: 10, 200: N - 10}, [r.text for r in rs if r.status_code >= 300][:3]
    assert len({r.json()["id"] for r in rs}) == 10
    assert server.count(select(func.count()).select_from(Entity)
                        .where(Entity.kind == "artifact", Entity.uri.like("s3://load/%"))) == 10
    assert audit_count(server, "lineage.artifact_created") == 10


# --- genuine overload: 503 with Retry-After, nothing half-written, never 500 -----------------------------------

def _overloaded_registrations(srv: Served, reads: bool = False) -> list[httpx.Response]:
    assert srv.post("/api/v1/model-groups", "pub", json={"name": "o"}).status_code == 201

    def call(i: int) -> httpx.Response:
        if reads and i % 2:
            return srv.get("/api/v1/model-groups/o/versions", "pub")
        return srv.post("/api/v1/model-groups/o/versions", "pub", json=version_body(i))

    rs = burst(call)
    c = codes(rs)
    assert set(c) <= {200, 201, 503} and c.get(503, 0) >= 1, c
    for r in rs:
        if r.status_code == 503:
            assert_busy(r)
    ok = sum(1 for r in rs if r.status_code == 201)
    # only whole registrations exist: numbered 1..ok with no gap, one audit row each
    assert registered(srv, "o") == list(range(1, ok + 1))
    assert audit_count(srv, "version.registered") == ok
    return rs


@live
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_waiting_past_the_turn_timeout_is_503(backend: str, tmp_path: Path) -> None:
    with serve(backend, tmp_path, db_write_sessions="1", db_wait_timeout_s="0.05", retry_after_s="3") as srv:
        rs = _overloaded_registrations(srv)
    assert {r.headers["retry-after"] for r in rs if r.status_code == 503} == {"3"}
    assert all("turn" in r.json()["detail"] for r in rs if r.status_code == 503)


@live
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pool_exhausted_past_its_timeout_is_503(backend: str, tmp_path: Path) -> None:
    with serve(backend, tmp_path, db_pool_size="1", db_max_overflow="0", db_pool_timeout_s="0.05") as srv:
        rs = _overloaded_registrations(srv, reads=True)
    assert any("connection" in r.json()["detail"] for r in rs if r.status_code == 503)


@live
def test_sqlite_locked_past_busy_timeout_is_503(tmp_path: Path) -> None:
    with serve("sqlite", tmp_path, db_busy_timeout_s="0.2") as srv:
        assert srv.post("/api/v1/model-groups", "pub", json={"name": "l"}).status_code == 201
        with srv.db.write_engine.connect() as holder:    # another process-like writer holds the lock
            holder.exec_driver_sql("SELECT 1")           # BEGIN IMMEDIATE: the write lock is taken
            r = srv.post("/api/v1/model-groups/l/versions", "pub", json=version_body(1))
            assert_busy(r)
            assert "locked" in r.json()["detail"] or "SQLite" in r.json()["detail"]
            holder.rollback()
        assert registered(srv, "l") == [] and audit_count(srv, "version.registered") == 0
        r = srv.post("/api/v1/model-groups/l/versions", "pub", json=version_body(1))
        assert r.status_code == 201 and r.json()["version"] == 1


@live
def test_postgres_row_lock_past_lock_timeout_is_503(tmp_path: Path) -> None:
    with serve("postgres", tmp_path, db_lock_timeout_s="0.2") as srv:
        assert srv.post("/api/v1/model-groups", "pub", json={"name": "l"}).status_code == 201
        with srv.db.engine.connect() as holder:         # a long transaction holds the group row
            holder.execute(text("SELECT id FROM registry_model_groups WHERE name = 'l' FOR UPDATE"))
            r = srv.post("/api/v1/model-groups/l/versions", "pub", json=version_body(1))
            assert_busy(r)
            assert "lock" in r.json()["detail"]
            holder.rollback()
        assert registered(srv, "l") == [] and audit_count(srv, "version.registered") == 0
        r = srv.post("/api/v1/model-groups/l/versions", "pub", json=version_body(1))
        assert r.status_code == 201 and r.json()["version"] == 1


def test_server_caps_request_threads_and_admits_fewer_writers_than_threads(tmp_path: Path) -> None:
    """`mlgov serve` (mlgov.asgi) runs handlers on MLGOV_REQUEST_THREADS threads, not anyio's 40, and admits fewer
    writers than threads, so a writer holding a lock always finds a thread to commit in; in-process clients that do
    not ask keep anyio's default."""
    import anyio.to_thread
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    capped = create_app(make_settings(tmp_path, db_write_sessions=8), check_schema=False, request_threads=4)
    assert capped.state.db.limits.write_sessions == 3
    with TestClient(capped) as client:
        assert client.portal is not None and client.portal.call(tokens) == 4
        assert client.get("/healthz").status_code == 200
    plain = create_app(make_settings(tmp_path, db_write_sessions=8), check_schema=False)
    assert plain.state.db.limits.write_sessions == 8
    with TestClient(plain) as client:
        assert client.portal is not None and client.portal.call(tokens) == 40
