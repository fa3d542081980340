"""Registry CPU cost per request, in-process: load-robust where wall-clock throughput is not.

On a shared 2-core machine req/s swings with everyone else's work; the CPU a request costs does not (much). This
drives mlgov's ASGI app directly (no socket, no HTTP parser, no load generator in the way), one request at a time,
on a PostgreSQL database seeded like ``benchmarks/registry.py`` (one group, ``--versions`` versions, tags ``i``,
``team``, ``batch``, ``@champion``), and prints per call:

- the server process's CPU per request (every thread: event loop, worker threads), and
- PostgreSQL's CPU per request (the backends serving this process, from /proc),
- the SQL statements per request (cursor executions; an executemany counts once),

for the calls the throughput benchmark makes, natively and through the MLflow API (get version, get-by-alias /
latest approved, get-latest-versions, search 100 hits by tag, list newest 100, create).

Where the time goes: ``--profile CALL`` loops that call under py-spy (``--py-spy`` names the binary; it is not a
dependency: ``pip install py-spy`` into any venv) sampling only the thread holding the GIL, and prints the CPU
share per layer (middleware, auth, session/transaction, database driver, SQLAlchemy, pydantic, JSON, service) and
the hottest functions.

    .venv/bin/python benchmarks/registry_cpu.py [--versions 10000] [--requests 300] [--calls get,alias,...]
        [--profile get [--save-raw stacks.txt]] [--concurrency 8] [--py-spy /tmp/pyspy-venv/bin/py-spy]
        [--pg-admin postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The throughput benchmark's seeding and shape (its file name shadows the registry package, so load it by path).
_spec = importlib.util.spec_from_file_location("registry_throughput", ROOT / "benchmarks" / "registry.py")
assert _spec is not None and _spec.loader is not None
throughput = sys.modules["registry_throughput"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(throughput)
GROUP, batch_of, pg_database, seed_mlgov, analyze = throughput.GROUP, throughput.batch_of, throughput.pg_database, \
    throughput.seed_mlgov, throughput.analyze
# MLGOV_CODE=<checkout>: measure that checkout's code with this harness (before/after comparisons); first on the
# path, ahead of the checkout the throughput module put there
sys.path.insert(0, os.environ.get("MLGOV_CODE", str(ROOT)))

API = "/api/2.0/mlflow"
NATIVE = f"/api/v1/model-groups/{GROUP}/versions"


def calls(n: int) -> dict[str, Any]:
    """name -> () -> (method, path, query, body): the throughput benchmark's requests, both doors."""
    q = urllib.parse.quote
    counter = iter(range(10**9))
    run = f"{os.getpid()}-{time.time_ns()}"   # a new artifact per create, also on a database reused across runs

    def pick() -> int:
        return random.randint(1, n)

    def batch() -> int:
        return batch_of(pick())

    return {
        "native-get": lambda: ("GET", f"{NATIVE}/{pick()}", "", b""),
        "native-latest": lambda: ("GET", f"{NATIVE}/latest", "status=Approved", b""),
        "native-search": lambda: ("GET", NATIVE, f"limit=100&metadata={q('batch=')}{batch()}", b""),
        "native-list": lambda: ("GET", NATIVE, "limit=100", b""),
        "native-create": lambda: ("POST", NATIVE, "", json.dumps(
            {"artifact_uri": f"s3://m/new/{run}/{next(counter)}", "artifact_sha256": "ab" * 32,
             "metadata": {"team": "bench", "batch": "new"}}).encode()),
        "mlflow-get": lambda: ("GET", f"{API}/model-versions/get", f"name={GROUP}&version={pick()}", b""),
        "mlflow-alias": lambda: ("GET", f"{API}/registered-models/alias", f"name={GROUP}&alias=champion", b""),
        "mlflow-latest": lambda: ("GET", f"{API}/registered-models/get-latest-versions", f"name={GROUP}", b""),
        "mlflow-search": lambda: ("GET", f"{API}/model-versions/search",
                                  "max_results=100&filter=" + q(f"name = '{GROUP}' AND tags.batch = '{batch()}'"),
                                  b""),
        "mlflow-list": lambda: ("GET", f"{API}/model-versions/search",
                                "max_results=100&filter=" + q(f"name = '{GROUP}'"), b""),
        "mlflow-create": lambda: ("POST", f"{API}/model-versions/create", "", json.dumps(
            {"name": GROUP, "source": f"s3://m/new/{run}/m{next(counter)}",
             "tags": [{"key": "team", "value": "bench"}, {"key": "batch", "value": "new"}]}).encode()),
    }


async def request(app: Any, token: str, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
    headers = [(b"host", b"bench"), (b"accept", b"application/json"),
               (b"authorization", f"Bearer {token}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80)}
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def pg_cpu_ticks(admin: Any, dbname: str) -> int:
    """utime + stime (clock ticks) of every PostgreSQL backend connected to ``dbname`` but the admin's own."""
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                         (dbname,)).fetchall()
    total = 0
    for (pid,) in rows:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


STATEMENTS = [0]   # SQL statements sent by any engine in this process (executemany counts once)


def count_statements() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        STATEMENTS[0] += 1


async def measure(app: Any, token: str, make: Any, count: int, rounds: int, admin: Any,
                  dbname: str, concurrency: int = 1) -> dict[str, float]:
    """CPU per request over ``rounds`` rounds of ``count`` requests: the least-disturbed round (the minimum) and
    the median, since other work on a shared machine only ever adds cost (cache misses, frequency).
    ``concurrency``: that many requests in flight at once (what group commit needs to form groups)."""

    async def one() -> None:
        status, out = await request(app, token, *make())
        if status >= 300:
            raise SystemExit(f"{make()[1]} answered {status}: {out[:300]!r}")
        last[0] = out

    last = [b""]
    for _ in range(min(30, count)):                     # warm-up: caches, pool, statement cache
        status, out = await request(app, token, *make())
        if status >= 300:
            raise SystemExit(f"{make()[1]} answered {status}: {out[:300]!r}")
    apps, pgs, walls = [], [], []
    statements0 = STATEMENTS[0]
    for _ in range(rounds):
        ticks0, cpu0, wall0 = pg_cpu_ticks(admin, dbname), time.process_time(), time.perf_counter()
        for _ in range(0, count, concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        count = -(-count // concurrency) * concurrency
        apps.append((time.process_time() - cpu0) / count * 1000)
        walls.append((time.perf_counter() - wall0) / count * 1000)
        pgs.append((pg_cpu_ticks(admin, dbname) - ticks0) / os.sysconf("SC_CLK_TCK") / count * 1000)
    return {"stmts": (STATEMENTS[0] - statements0) / (count * rounds), "app_ms": min(apps),
            "app_med": statistics.median(apps), "pg_ms": min(pgs), "pg_med": statistics.median(pgs),
            "wall_ms": min(walls), "bytes": len(last[0])}


# --- where the time goes (py-spy raw stacks) ------------------------------------------------------------------

LAYERS = [   # (layer, substring of a frame "func (file:line)"), first match from the leaf up wins
    ("database driver (psycopg)", "psycopg/"),
    ("JSON encode/decode", "json/"),
    ("JSON encode/decode", "fastapi/encoders.py"),
    ("pydantic", "pydantic"),
    ("SQLAlchemy", "sqlalchemy/"),
    ("auth (mlgov.auth)", "mlgov/auth.py"),
    ("audit chain", "mlgov/audit.py"),
    ("outbox/events", "mlgov/events.py"),
    ("registry service", "registry/service.py"),
    ("MLflow adapter", "registry/mlflow.py"),
    ("native router", "registry/router.py"),
    ("threadpool hops (anyio)", "anyio/"),
    ("FastAPI routing/deps", "fastapi/"),
    ("Starlette/middleware", "starlette/"),
    ("mlgov middleware", "mlgov/app.py"),
    ("mlgov middleware", "mlgov/web.py"),
    ("asyncio loop", "asyncio/"),
]


def summarise(raw: Path, top: int = 25) -> None:
    layers: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        # requests only: the event loop's request coroutines and the worker threads (not start-up imports)
        if not any((f.startswith("request (") and "registry_cpu.py" in f) or f.startswith("WorkerThread.run")
                   for f in frames):
            continue
        total += n
        layer = next((name for f in reversed(frames) for name, key in LAYERS if key in f), "other")
        layers[layer] += n
        leaves[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"\n{total} samples on the GIL; share by layer (the innermost layer a sample is in):")
    for name, n in layers.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("\nhottest leaf functions:")
    for f, n in leaves.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f[:150]}")
    print("\ninclusive (frames outside libraries):")
    ours = [(f, n) for f, n in inclusive.items() if "site-packages" not in f and "python3" not in f]
    for f, n in sorted(ours, key=lambda x: -x[1])[:top]:
        print(f"  {100 * n / total:5.1f}%  {f[:150]}")


# --- the run ----------------------------------------------------------------------------------------------------

def build_app(url: str, home: Path) -> Any:
    from mlgov.app import create_app
    from mlgov.settings import Settings

    settings = Settings(database_url=url, home=home, scheduler=False, background_workers=False)
    return create_app(settings, check_schema=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=100, help="per round and call (creates: a third)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per call; the least-disturbed one is reported")
    ap.add_argument("--calls", default=",".join(calls(1)))
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (creates form groups)")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--database", help="an already seeded database URL (postgresql+psycopg://…): no seeding")
    ap.add_argument("--key", help="with --database: the publisher key the seeding printed")
    ap.add_argument("--profile", help="loop this call under py-spy and print where its CPU goes")
    ap.add_argument("--py-spy", default="py-spy")
    ap.add_argument("--seconds", type=float, default=15.0, help="--profile: how long to sample")
    ap.add_argument("--save-raw", help="--profile: keep py-spy's raw stacks in this file")
    ap.add_argument("--seed-only", action="store_true", help="seed a database, print its URL and key, keep it")
    ap.add_argument("--loop", help=argparse.SUPPRESS)
    ap.add_argument("--raw", help=argparse.SUPPRESS)   # the child py-spy runs: loop one call
    a = ap.parse_args()
    import psycopg

    # one audit key for the seeding and the app (a writer refuses to extend a chain signed with another key)
    os.environ.setdefault("MLGOV_AUDIT_KEY", secrets.token_hex(32))

    home = Path(tempfile.mkdtemp(prefix="mlgov-registry-cpu-"))
    with psycopg.connect(a.pg_admin, autocommit=True) as admin:
        if a.database:
            run(a, a.database, a.key, admin, home)
            return
        if a.seed_only:
            name = f"bench_cpu_{os.getpid()}"
            admin.execute(f'CREATE DATABASE "{name}"')
            url = a.pg_admin.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + "/" + name
            key, took = seed_mlgov(url, a.versions)
            analyze(url)
            print(f"seeded {a.versions} versions in {took:.1f} s: --database {url} --key {key}")
            return
        with pg_database(a.pg_admin, f"bench_cpu_{os.getpid()}") as plain:
            url = plain.replace("postgresql://", "postgresql+psycopg://")
            key, took = seed_mlgov(url, a.versions)
            analyze(url)
            print(f"seeded {a.versions} versions in {took:.1f} s", flush=True)
            run(a, url, key, admin, home)


def run(a: argparse.Namespace, url: str, key: str, admin: Any, home: Path) -> None:
    dbname = urllib.parse.urlsplit(url).path.lstrip("/")
    table = calls(a.versions)
    if a.loop:
        app = build_app(url, home)

        async def loop() -> None:
            for _ in range(50):   # warm-up (route tables, caches, pool) before py-spy attaches
                await request(app, key, *table[a.loop]())
            spy = subprocess.Popen([a.py_spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", a.raw, "--pid",
                                    str(os.getpid()), "-d", str(int(a.seconds))], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            while spy.poll() is None:
                await asyncio.gather(*(request(app, key, *table[a.loop]()) for _ in range(a.concurrency)))

        asyncio.run(loop())
        return
    if a.profile:
        raw = home / "py-spy.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--database", url, "--key", key,
               "--versions", str(a.versions), "--loop", a.profile, "--seconds", str(a.seconds), "--py-spy", a.py_spy,
               "--raw", str(raw), "--concurrency", str(a.concurrency)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"profile of {a.profile} ({a.seconds:g} s loop):")
        summarise(raw)
        if a.save_raw:
            shutil.copy(raw, a.save_raw)
        return
    app = build_app(url, home)
    print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}; {a.concurrency} request(s) at a time, "
          "in-process")
    print(f"CPU ms per request: min over {a.rounds} rounds of {a.requests} (median in brackets)")
    print(f"{'call':16s} {'app CPU':>16s} {'PostgreSQL CPU':>16s} {'total':>7s} {'wall':>7s} {'bytes':>7s} "
          f"{'SQL':>5s}")
    count_statements()

    async def go() -> None:
        for name in a.calls.split(","):
            count = a.requests // 3 if name.endswith("create") else a.requests
            r = await measure(app, key, table[name], count, a.rounds, admin, dbname, a.concurrency)
            print(f"{name:16s} {r['app_ms']:7.2f} ({r['app_med']:6.2f}) {r['pg_ms']:7.2f} ({r['pg_med']:6.2f}) "
                  f"{r['app_ms'] + r['pg_ms']:7.2f} {r['wall_ms']:7.2f} {int(r['bytes']):7d} "
                  f"{r['stmts']:5.1f}", flush=True)

    asyncio.run(go())
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
