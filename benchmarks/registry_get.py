"""GET one version from a group holding 10k versions: requests/s and latency, keep-alive, 1 and 2 workers.

Also shows uvicorn issue #3149: with --workers N the stock protocol leaves TCP_NODELAY off and each
keep-alive response waits ~40 ms for a delayed ACK; mlgov's NoDelayHttpToolsProtocol fixes it.

    .venv/bin/python benchmarks/registry_get.py [--versions 10000] [--seconds 5] [--clients 8] [--pg URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlgov import auth
from mlgov.auth import Principal, Role
from mlgov.db import Database, alembic_config


def seed(url: str, n: int) -> str:
    from alembic import command

    from registry import service
    from registry.schemas import GroupCreate, VersionCreate

    command.upgrade(alembic_config(url), "head")
    db = Database(url)
    with db.session_scope() as s:
        row, key = auth.create_key(s, "bench", "publisher", actor="bench")
        p = Principal(row.id, row.name, Role.publisher)
        service.create_group(s, GroupCreate(name="bench"), p)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        with db.session_scope() as s:
            for _ in range(min(500, n - done)):
                done += 1
                service.register_version(s, "bench", VersionCreate(
                    artifact_uri=f"s3://m/{done}", artifact_sha256=hashlib.sha256(str(done).encode()).hexdigest(),
                    metrics={"auc": 0.8}, metadata={"i": str(done), "team": "bench"},
                    training_data=[f"s3://d/{done}.csv"]), p)
    print(f"seeded {n} versions in {time.perf_counter() - t0:.1f} s")
    db.dispose()
    return key


def serve(url: str, home: Path, port: int, workers: int, nodelay: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLGOV_DATABASE_URL": url, "MLGOV_HOME": str(home), "MLGOV_BACKGROUND_WORKERS": "false"}
    cmd = [sys.executable, "-m", "uvicorn", "mlgov.asgi:app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    if nodelay:
        cmd += ["--http", "mlgov.server:NoDelayHttpToolsProtocol"]
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def load(port: int, key: str, n_versions: int, seconds: float, clients: int) -> tuple[float, list[float]]:
    def get(c: httpx.Client, j: int) -> None:
        r = c.get(f"/api/v1/model-groups/bench/versions/{j % n_versions + 1}")
        assert r.status_code == 200 and r.json()["version"] == j % n_versions + 1

    return run_clients(port, key, get, seconds, clients)


def run_clients(port: int, key: str, call: Callable[[httpx.Client, int], None], seconds: float,
                clients: int) -> tuple[float, list[float]]:
    """``clients`` keep-alive clients calling ``call(client, j)`` (j pseudo-random) for ``seconds``:
    (requests per second, latencies)."""
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        local = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as c:
            j = i
            while time.perf_counter() < stop:
                j = (j * 7919 + 1) % 1_000_003
                t = time.perf_counter()
                call(c, j)
                local.append(time.perf_counter() - t)
        with lock:
            lat.extend(local)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), lat


def prepare(clients: int) -> tuple[argparse.Namespace, Path, str, str, int]:
    """The command line (--versions, --seconds, --clients, --pg), a seeded database: (args, home, url, key, port)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=clients)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL of an empty database (default: SQLite)")
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mlgov-bench-"))
    url = a.pg or f"sqlite:///{home / 'bench.db'}"
    return a, home, url, seed(url, a.versions), 18000 + os.getpid() % 1000


def main() -> None:
    a, home, url, key, port = prepare(clients=8)
    for workers, nodelay in ((1, True), (2, False), (2, True)):
        proc = serve(url, home, port, workers, nodelay)
        try:
            load(port, key, a.versions, 1.0, a.clients)  # warm-up
            rps, lat = load(port, key, a.versions, a.seconds, a.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        q = statistics.quantiles(lat, n=100)
        print(f"backend={url.split(':')[0]} versions={a.versions} workers={workers} nodelay={nodelay} "
              f"clients={a.clients} rps={rps:.0f} p50_ms={q[49] * 1000:.1f} p99_ms={q[98] * 1000:.1f}")


if __name__ == "__main__":
    main()
