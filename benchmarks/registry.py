"""Registry throughput: mlgov (native API and its MLflow API, PostgreSQL and SQLite) against MLflow's own tracking
server, same shape, same calls, same wrk scripts, in one run.

What runs (all on 127.0.0.1, all at once, measured one after the other per call so load drifts hit every side):
- MLflow ``mlflow==3.17.2`` in its own virtualenv (created here under ``.bench/mlflow-venv``, gitignored), ``mlflow
  server --workers 2`` on a PostgreSQL database this script creates; seeded through MLflow's own SqlAlchemyStore
  (its rows in bulk through the store's session).
- mlgov ``mlgov serve --workers 2`` on PostgreSQL (a database this script creates) and on SQLite; seeded through a
  bulk path (rows inserted directly: versions, their metadata, their "registered" stage moves, approvals of every
  10th version by an independent approver key; the alias ``@champion`` set through the service, audited). The
  seeded rows carry no per-version audit or lineage rows; everything created during the run does.

Shape: one model (group) ``bench`` with ``--versions`` versions; every version has tags/metadata ``i``, ``team`` and
``batch`` (= (i-1) // 100, so every batch value has exactly 100 versions); ``@champion`` points at the newest
approved version.

Calls (wrk, keep-alive, ``--connections`` connections, creates with ``--create-connections``):
- get one version (random of all)                  native GET …/versions/{n}  | MLflow GET model-versions/get
- latest approved / get-by-alias (both O(1))       native GET …/versions/latest?status=Approved | alias get
- search 100 hits by metadata / tag (random batch) native ?metadata=batch=k&limit=100 | model-versions/search
- list newest 100                                  native ?limit=100 | model-versions/search name='bench' 100
- create version                                   native POST …/versions | MLflow model-versions/create

Each line prints req/s, p50, p99, non-2xx count and the 1-minute load average when the measurement started; the
summary prints each mlgov figure as a ratio to MLflow's. wrk is Debian's ``wrk`` package (``apt-get install wrk``).

    .venv/bin/python benchmarks/registry.py [--versions 10000] [--seconds 8] [--connections 16]
        [--create-connections 8] [--targets mlflow,pg,sqlite] [--calls get,alias,search,list,create]
        [--pg-admin postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = ROOT / ".bench" / "mlflow-venv"
GROUP = "bench"
API = "/api/2.0/mlflow"


# --- the peer's virtualenv ------------------------------------------------------------------------------------

def mlflow_venv() -> Path:
    """MLflow's own virtualenv (it pins libraries mlgov's venv does not share), created once."""
    python = MLFLOW_VENV / "bin" / "python"
    probe = [str(python), "-c", "import mlflow, psycopg; print(mlflow.__version__)"]
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == MLFLOW_VERSION:
        return python
    print(f"creating {MLFLOW_VENV} with mlflow=={MLFLOW_VERSION} (once; takes a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLFLOW_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}", "psycopg[binary]"],
                   check=True)
    return python


def need_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian package)")
    return found


# --- databases ------------------------------------------------------------------------------------------------

@contextmanager
def pg_database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one side, dropped afterwards."""
    import psycopg

    with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    base = urllib.parse.urlsplit(admin_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        yield urllib.parse.urlunsplit((base.scheme, base.netloc, "/" + name, "", ""))
    finally:
        with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(url: str) -> None:
    """After the bulk seed, the database as a live one is: planner statistics and a visibility map (VACUUM
    ANALYZE; autovacuum would get there within a minute or so) and the seed's dirty pages on disk (CHECKPOINT),
    so neither autovacuum nor the checkpointer's flush lands inside a measurement. Both sides get it."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute("VACUUM (ANALYZE)")
        c.execute("CHECKPOINT")


def batch_of(i: int) -> int:
    return (i - 1) // 100


def champion_of(n: int) -> int:
    return n - n % 10 if n >= 10 else 0


MLFLOW_SEED = """
import sys, time
from sqlalchemy import insert
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlModelVersionTag
uri, n = sys.argv[1], int(sys.argv[2])
s = SqlAlchemyStore(uri)
s.create_registered_model("bench")
t0 = time.perf_counter()
now = int(time.time() * 1000)
for start in range(1, n + 1, 2000):
    with s.ManagedSessionMaker() as session:
        versions, tags = [], []
        for i in range(start, min(start + 2000, n + 1)):
            versions.append(dict(name="bench", version=i, creation_time=now, last_updated_time=now,
                                 source=f"s3://m/{i}", storage_location=f"s3://m/{i}", current_stage="None",
                                 status="READY"))
            tags += [dict(name="bench", version=i, key=k, value=v)
                     for k, v in (("i", str(i)), ("batch", str((i - 1) // 100)), ("team", "bench"))]
        session.execute(insert(SqlModelVersion.__table__), versions)
        session.execute(insert(SqlModelVersionTag.__table__), tags)
champion = n - n % 10
if champion:
    s.set_registered_model_alias("bench", "champion", str(champion))
print(f"{time.perf_counter() - t0:.1f}")
"""


def seed_mlflow(python: Path, url: str, n: int) -> float:
    """MLflow's schema, model and alias through its own SqlAlchemyStore; the versions and their tags as MLflow's
    own rows, in bulk through the store's session (one by one the store takes ~10-70 ms each here): seconds."""
    out = subprocess.run([str(python), "-c", MLFLOW_SEED, url, str(n)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def seed_mlgov(url: str, n: int) -> tuple[str, float]:
    """Schema by Alembic, keys and the group through the services, versions in bulk: (publisher key, seconds)."""
    from alembic import command
    from sqlalchemy import insert, update

    from mlgov import auth
    from mlgov.auth import Principal, Role
    from mlgov.db import Database, alembic_config, new_id, utcnow
    from registry import service
    from registry.orm import ApprovalDecision, ModelGroup, ModelVersion, StageTransition, VersionMetadata
    from registry.schemas import GroupCreate

    command.upgrade(alembic_config(url), "head")
    db = Database(url)
    t0 = time.perf_counter()
    with db.session_scope() as s:
        pub, key = auth.create_key(s, "bench", "publisher", actor="cli")
        appr, _ = auth.create_key(s, "bench-approver", "approver", actor="cli", owner="approver")
        publisher = Principal(pub.id, pub.name, Role.publisher, owner=pub.owner, created_by=pub.created_by)
        approver = Principal(appr.id, appr.name, Role.approver, owner=appr.owner, created_by=appr.created_by)
        group = service.create_group(s, GroupCreate(name=GROUP), publisher)
        gid = group.id
    for start in range(1, n + 1, 2000):
        now = utcnow()
        versions, meta, moves, decisions = [], [], [], []
        for i in range(start, min(start + 2000, n + 1)):
            vid = new_id()
            approved = i % 10 == 0
            versions.append({"id": vid, "group_id": gid, "version": i, "stage": "Development",
                             "approval_status": "Approved" if approved else "PendingManualApproval",
                             "artifact_uri": f"s3://m/{i}", "metrics": {"auc": 0.8}, "training_data": [],
                             "registered_by": publisher.name, "registered_by_key": publisher.key_pk,
                             "created_at": now, "updated_at": now, "artifact_trusted": False})
            meta += [{"version_id": vid, "key": "batch", "value": str(batch_of(i))},
                     {"version_id": vid, "key": "i", "value": str(i)},
                     {"version_id": vid, "key": "team", "value": "bench"}]
            moves.append({"group_id": gid, "version_id": vid, "from_stage": None, "to_stage": "Development",
                          "actor": publisher.name, "reason": "registered", "at": now})
            if approved:
                decisions.append({"version_id": vid, "from_status": "PendingManualApproval", "to_status": "Approved",
                                  "comment": "bench", "actor": approver.name, "actor_owner": approver.owner,
                                  "actor_key": approver.key_pk, "at": now})
        with db.session_scope() as s:
            s.execute(insert(ModelVersion), versions)
            s.execute(insert(VersionMetadata), meta)
            s.execute(insert(StageTransition), moves)
            if decisions:
                s.execute(insert(ApprovalDecision), decisions)
    with db.session_scope() as s:
        s.execute(update(ModelGroup).where(ModelGroup.id == gid).values(latest_version=n))
        if champion_of(n):
            service.set_alias(s, GROUP, "champion", champion_of(n), approver)
    took = time.perf_counter() - t0
    db.dispose()
    return key, took


# --- servers --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int, proc: subprocess.Popen[bytes], path: str, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


@contextmanager
def running(cmd: list[str], env: dict[str, str], port: int, probe: str, what: str, log: Path) -> Iterator[None]:
    with open(log, "wb") as out:   # run in the log's (temporary) folder: files a server makes by default land there
        proc = subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_up(port, proc, probe, what)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def mlflow_server(python: Path, url: str, port: int, workers: int, home: Path) -> ExitStack:
    stack = ExitStack()
    cmd = [str(python), "-m", "mlflow", "server", "--backend-store-uri", url, "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--default-artifact-root", str(home / "mlflow-artifacts"),
           # the same worker start-up allowance `mlgov serve` gives (uvicorn's 5 s kills slow starters on a busy box)
           "--uvicorn-opts", "--timeout-worker-healthcheck 60"]
    stack.enter_context(running(cmd, {**os.environ, "PYTHONPATH": ""}, port, "/health", "mlflow server",
                                home / "mlflow.log"))
    return stack


def mlgov_server(url: str, port: int, workers: int, home: Path) -> ExitStack:
    stack = ExitStack()
    env = {**os.environ, "MLGOV_DATABASE_URL": url, "MLGOV_HOME": str(home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mlgov.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-scheduler"]
    stack.enter_context(running(cmd, env, port, "/healthz", f"mlgov serve ({url.split(':')[0]})",
                                home / f"mlgov-{port}.log"))
    return stack


# --- wrk ------------------------------------------------------------------------------------------------------

LUA = """
local headers = {%(headers)s}
local n_versions = %(n)d
local counter = 0
local id = 0
local ids = 0
setup = function(thread)
  ids = ids + 1
  thread:set("id", ids)
end
init = function(args)
  math.randomseed(os.time() * 1000 + id)
end
request = function()
  counter = counter + 1
  local n = math.random(1, n_versions)
  local b = math.random(0, math.floor((n_versions - 1) / 100))
  local path = %(path)s
  local body = %(body)s
  return wrk.format("%(method)s", path, headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%%d,"duration_us":%%d,"non2xx":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p99_us":%%d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Call:
    method: str
    path: str          # a Lua expression; n (random version), b (random batch), id/counter (unique per request)
    body: str = "nil"  # a Lua expression


def lua_str(text: str) -> str:
    return json.dumps(text)   # a JSON string literal is a valid Lua string literal for these ASCII paths


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def calls_native() -> dict[str, Call]:
    base = f"/api/v1/model-groups/{GROUP}/versions"
    return {
        "get": Call("GET", f'{lua_str(base + "/")} .. n'),
        "alias": Call("GET", lua_str(base + "/latest?status=Approved")),
        "search": Call("GET", f'{lua_str(base + "?limit=100&metadata=" + q("batch="))} .. b'),
        "list": Call("GET", lua_str(base + "?limit=100")),
        "create": Call("POST", lua_str(base),
                       '\'{"artifact_uri":"s3://m/new/\' .. id .. \'-\' .. counter .. \'",'
                       f'"artifact_sha256":"{"ab" * 32}","metadata":{{"team":"bench","batch":"new"}}}}\''),
    }


def calls_mlflow() -> dict[str, Call]:
    search = f"{API}/model-versions/search?max_results=100&filter="
    return {
        "get": Call("GET", f'{lua_str(f"{API}/model-versions/get?name={GROUP}&version=")} .. n'),
        "alias": Call("GET", lua_str(f"{API}/registered-models/alias?name={GROUP}&alias=champion")),
        "search": Call("GET", f'{lua_str(search + q(f"name = {chr(39)}{GROUP}{chr(39)} AND tags.batch = {chr(39)}"))}'
                              f' .. b .. "%27"'),
        "list": Call("GET", lua_str(search + q(f"name = '{GROUP}'"))),
        "create": Call("POST", lua_str(f"{API}/model-versions/create"),
                       f'\'{{"name":"{GROUP}","source":"s3://m/new/\' .. id .. \'-\' .. counter .. \'",'
                       '"tags":[{"key":"team","value":"bench"},{"key":"batch","value":"new"}]}\''),
    }


LABELS = {"get": "get one version", "alias": "latest approved / get-by-alias (O(1))",
          "search": "search 100 hits by metadata/tag", "list": "list newest 100", "create": "create version"}


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    load: float


def run_wrk(wrk: str, port: int, call: Call, token: str | None, n: int, seconds: float, connections: int,
            workdir: Path) -> Result:
    headers = ['["Accept"]="application/json"']
    if token:
        headers.append(f'["Authorization"]={lua_str("Bearer " + token)}')
    if call.method != "GET":
        headers.append('["Content-Type"]="application/json"')
    script = workdir / f"call-{os.getpid()}-{time.monotonic_ns()}.lua"
    script.write_text(LUA % {"headers": ", ".join(headers), "n": n, "path": call.path, "body": call.body,
                             "method": call.method})
    load = os.getloadavg()[0]
    out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
    doc = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    return Result(rps=doc["requests"] / (doc["duration_us"] / 1e6), p50_ms=doc["p50_us"] / 1000,
                  p99_ms=doc["p99_us"] / 1000, non2xx=doc["non2xx"], socket_errors=doc["socket_errors"], load=load)


# --- the run --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    port: int
    token: str | None
    calls: dict[str, Call]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=8.0, help="per measurement (after a 2 s warm-up)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--create-connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="server worker processes, each side")
    ap.add_argument("--targets", default="mlflow,pg,sqlite")
    ap.add_argument("--calls", default="get,alias,search,list,create")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    targets_wanted = a.targets.split(",")
    calls_wanted = a.calls.split(",")
    wrk = need_wrk()
    # one audit key for the seeding (this process) and the servers: a server refuses to write after an event
    # signed with another key, and the seeding audits the alias it sets
    os.environ.setdefault("MLGOV_AUDIT_KEY", secrets.token_hex(32))
    home = Path(tempfile.mkdtemp(prefix="mlgov-registry-bench-"))
    tag = f"{os.getpid()}"
    targets: list[Target] = []
    with ExitStack() as stack:
        if "mlflow" in targets_wanted:
            python = mlflow_venv()
            url = stack.enter_context(pg_database(a.pg_admin, f"bench_mlflow_{tag}"))
            took = seed_mlflow(python, url, a.versions)
            analyze(url)
            print(f"MLflow {MLFLOW_VERSION}: seeded {a.versions} versions in bulk through its SqlAlchemyStore in "
                  f"{took:.1f} s", flush=True)
            port = free_port()
            stack.enter_context(mlflow_server(python, url, port, a.workers, home))
            targets.append(Target("MLflow", port, None, calls_mlflow()))
        for backend in ("pg", "sqlite"):
            if backend not in targets_wanted:
                continue
            side = home / backend
            side.mkdir()
            url = (stack.enter_context(pg_database(a.pg_admin, f"bench_mlgov_{tag}")).replace(
                "postgresql://", "postgresql+psycopg://") if backend == "pg" else f"sqlite:///{side / 'mlgov.db'}")
            key, took = seed_mlgov(url, a.versions)
            if backend == "pg":
                analyze(url)
            print(f"mlgov {backend}: seeded {a.versions} versions in bulk in {took:.1f} s", flush=True)
            port = free_port()
            stack.enter_context(mlgov_server(url, port, a.workers, side))
            targets.append(Target(f"mlgov {backend} native", port, key, calls_native()))
            targets.append(Target(f"mlgov {backend} MLflow API", port, key, calls_mlflow()))
        print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, {os.cpu_count()} CPUs, {a.workers} workers each, "
              f"wrk c={a.connections} (creates c={a.create_connections}), {a.seconds:g} s each; "
              f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
        results: dict[tuple[str, str], Result] = {}
        for name in calls_wanted:
            conns = a.create_connections if name == "create" else a.connections
            for t in targets:
                call = t.calls[name]
                run_wrk(wrk, t.port, call, t.token, a.versions, 2, conns, home)   # warm-up
                r = run_wrk(wrk, t.port, call, t.token, a.versions, a.seconds, conns, home)
                results[(name, t.name)] = r
                errors = "  NO REQUEST COMPLETED (figures invalid: is the machine overloaded?)" if r.rps == 0 else ""
                errors += f"  NON-2XX {r.non2xx}" if r.non2xx else ""
                errors += f"  SOCKET ERRORS {r.socket_errors}" if r.socket_errors else ""
                print(f"{LABELS[name]:40s} {t.name:22s} {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
                      f"p99 {r.p99_ms:7.1f} ms  (load {r.load:.2f}){errors}", flush=True)
        print(f"\nsummary ({a.versions} versions; ratio = req/s over MLflow's in this run); uptime: "
              f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        print(f"{'call':40s} " + " ".join(f"{t.name:>22s}" for t in targets))
        for name in calls_wanted:
            peer = results.get((name, "MLflow"))
            cells = []
            for t in targets:
                r = results[(name, t.name)]
                ratio = f" ({r.rps / peer.rps:4.1f}x)" if peer and peer.rps > 0 and t.name != "MLflow" else ""
                cells.append(f"{r.rps:7.0f}/s{ratio}".rjust(22))
            print(f"{LABELS[name]:40s} " + " ".join(cells))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
