"""Capture ingest against its floor, in one run: records/s, requests/s, p50/p99 of mlgov vs bare FastAPI.

The floor is bare FastAPI + uvicorn (same worker count) that parses the JSON body and appends it to a file
with fsync before answering: no validation, no database, no object store. mlgov is `mlgov serve` on SQLite
(default) or PostgreSQL, with the local store or S3 (SeaweedFS). Both are driven by wrk (keep-alive, 8
connections): batches of 500 SageMaker capture records, and single records. Every record has a fresh
random UUID eventId (as SageMaker's are; ordered ids would flatter the dedupe index), so nothing is answered as
a duplicate; records/s counts what the server stored (capture summary), not what was sent. ``conns/worker``
is how the connections landed on the worker processes (e.g. 6+2): it is decided at connect time, varies from
run to run on either side, and moves the figures more than most changes, so compare runs with the same split
or take several.

    .venv/bin/python benchmarks/capture_ingest.py [--seconds 15] [--db sqlite,pg] [--store local,s3]
        [--mode batch,single] [--workers 2] [--connections 8]

Needs wrk (apt-get install wrk). PostgreSQL: MLGOV_TEST_PG_URL (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = [{"name": "age", "type": "Integral"}, {"name": "income", "type": "Fractional"},
            {"name": "state", "type": "String"}]

# --- the floor: parse JSON, fsync-append, answer ------------------------------------------------------------

_floor_lock = threading.Lock()


def floor_app() -> Any:
    """uvicorn factory (``--factory``): the least a capture endpoint can do and still be durable before the ack."""
    app = FastAPI()
    path = Path(os.environ["FLOOR_DIR"]) / f"capture-{os.getpid()}.jsonl"
    fh = path.open("ab")

    def append(data: bytes) -> None:
        with _floor_lock:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    @app.post("/api/v1/endpoints/{name}/capture")
    async def capture(name: str, request: Request) -> dict[str, int]:
        body = await request.body()
        records = json.loads(body)
        n = len(records) if isinstance(records, list) else 1
        await run_in_threadpool(append, body + b"\n")
        return {"accepted": n}

    return app


# --- wrk ----------------------------------------------------------------------------------------------------

LUA = r"""
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  batch = tonumber(args[1])
  run = args[2]
  key = args[3]
  math.randomseed(tonumber(run, 16) * 64 + tid)   -- each thread its own sequence, each run its own
end
local tmpl = '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",' ..
  '"data":"%d,%d.5,CA","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv","mode":"OUTPUT",' ..
  '"data":"0.7","encoding":"CSV"}},"eventMetadata":{"eventId":"%s","inferenceTime":"2026-11-20T10:%02d:%02dZ"},' ..
  '"eventVersion":"0"}'
local function uuid()   -- a random version-4 UUID, as SageMaker's eventIds are: no order for an index to exploit
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x", math.random(0, 0xffffffff), math.random(0, 0xffff),
                       math.random(0, 0xfff), math.random(0x8000, 0xbfff), math.random(0, 0xffff),
                       math.random(0, 0xffffffff))
end
function request()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = string.format(tmpl, 18 + counter % 70, 30 + counter % 50, uuid(), counter % 60,
                             math.floor(counter / 60) % 60)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key},
                    body)
end
"""


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def split(port: int) -> list[int]:
    """Established connections per server process on ``port`` (from ``ss``), most first: uvicorn's workers accept
    from one shared socket, so a handful of keep-alive connections often lands unevenly (6 and 2 of 8), and a
    worker's GIL then bounds the run. Printed with every line, since it moves figures more than most changes."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True).stdout
    return sorted(collections.Counter(re.findall(r"pid=(\d+)", out)).values(), reverse=True)


def wrk(url: str, batch: int, seconds: float, connections: int, key: str, lua: Path) -> dict[str, Any]:
    proc = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "30s",
                             "-s", str(lua), url, "--", str(batch), uuid.uuid4().hex[:8], key],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(min(1.0, seconds / 2))
    spread = split(urllib.parse.urlsplit(url).port or 80)
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"wrk failed ({proc.returncode})")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*timeout (\d+)", out)
    return {"rps": rps, "requests": done, "p50": _ms(lat.get("50", "nan")), "p99": _ms(lat.get("99", "nan")),
            "non2xx": int(bad.group(1)) if bad else 0, "timeouts": int(errors.group(1)) if errors else 0,
            "split": spread}


# --- servers ------------------------------------------------------------------------------------------------

def _wait(port: int, proc: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    from tests.infra import free_port

    port: int = free_port()
    return port


def start_floor(workers: int, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    (work / "floor").mkdir(exist_ok=True)
    env = {**os.environ, "FLOOR_DIR": str(work / "floor"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "benchmarks.capture_ingest:floor_app",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning", "--no-access-log"], env=env, cwd=ROOT)
    _wait(port, proc, "/docs")
    return proc, port


class Mlgov:
    """`mlgov serve` on a fresh database and store, with an ingest key and one endpoint."""

    def __init__(self, work: Path, db: str, store: str, workers: int, s3: Any) -> None:
        self.home = work / f"mlgov-{db}-{store}"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}
        self.env.update(MLGOV_HOME=str(self.home), MLGOV_BACKGROUND_WORKERS="false", PYTHONPATH=str(ROOT))
        self.pg_db = None
        if db == "pg":
            from sqlalchemy import create_engine, text

            from tests.infra import PG_ADMIN_URL
            self.pg_db = f"bench_ingest_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f"CREATE DATABASE {self.pg_db}"))
            admin.dispose()
            self.env["MLGOV_DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.pg_db
        if store == "s3":
            bucket = f"ingest{uuid.uuid4().hex[:8]}"
            s3.client().create_bucket(Bucket=bucket)
            from tests.infra import S3_KEY, S3_SECRET
            self.env.update(MLGOV_STORE_URL=f"s3://{bucket}/mlgov", MLGOV_S3_ENDPOINT_URL=s3.endpoint,
                            MLGOV_S3_ACCESS_KEY_ID=S3_KEY, MLGOV_S3_SECRET_ACCESS_KEY=S3_SECRET)
        from tests.helpers import version_body

        mlgov = str(Path(sys.executable).parent / "mlgov")
        subprocess.run([mlgov, "db", "upgrade"], env=self.env, check=True, capture_output=True, cwd=self.home)
        self.port = _free_port()
        self.proc = subprocess.Popen([mlgov, "serve", "--port", str(self.port), "--workers", str(workers)],
                                     env=self.env, cwd=self.home, stdout=subprocess.DEVNULL,
                                     stderr=(self.home / "server.log").open("wb"))
        _wait(self.port, self.proc)
        admin_key = (self.home / "admin.key").read_text().strip()
        h = {"Authorization": f"Bearer {admin_key}"}
        base = f"http://127.0.0.1:{self.port}/api/v1"
        for path, body in (("/model-groups", {"name": "g"}),
                           ("/model-groups/g/versions", version_body(1)),
                           ("/keys", {"name": "ingest", "role": "ingest"}),
                           ("/endpoints", {"name": "ep", "model_group": "g", "model_version": 1,
                                           "schema": {"features": FEATURES}})):
            r = httpx.post(base + path, json=body, headers=h, timeout=30)
            if r.status_code != 201:
                raise RuntimeError(f"{path}: {r.status_code} {r.text}")
            if path == "/keys":
                self.key = str(r.json()["key"])
        self.admin = h

    def stored(self) -> int:
        """Records stored, once requests still in flight from the last run have finished (two equal counts)."""
        last = -1
        while True:
            r = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/endpoints/ep/capture/summary",
                          headers=self.admin, timeout=60)
            n = int(r.json()["records"])
            if n == last:
                return n
            last = n
            time.sleep(1.0)

    def explain_failure(self, batch: int) -> str:
        """One request like the load's, to show why some answers were not 2xx (and the server log's last lines)."""
        rec = ('{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"30,1.5,CA",'
               '"encoding":"CSV"}},"eventMetadata":{"eventId":"probe-%d","inferenceTime":"2026-11-20T10:00:00Z"}}')
        body = "[" + ",".join(rec % i for i in range(batch)) + "]"
        r = httpx.post(f"http://127.0.0.1:{self.port}/api/v1/endpoints/ep/capture", content=body, timeout=120,
                       headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        log = (self.home / "server.log").read_text(errors="replace").splitlines()
        errors = [line for line in log if "Error" in line or "error" in line][-5:]
        return f"probe: {r.status_code} {r.text[:300]}; server log: {errors}"

    def close(self) -> None:
        _stop(self.proc)
        if self.pg_db:
            from sqlalchemy import create_engine, text

            from tests.infra import PG_ADMIN_URL
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)"))
            admin.dispose()


def _line(name: str, r: dict[str, Any], records: float, floor: dict[str, Any] | None) -> str:
    s = (f"{name:<22} records/s={records:>9,.0f} req/s={r['rps']:>8,.1f} p50={r['p50']:>8.1f} ms "
         f"p99={r['p99']:>8.1f} ms non2xx={r['non2xx']:.0f} conns/worker={'+'.join(map(str, r['split']))}")
    if floor:
        s += (f"  | vs floor: records/s {records / floor['records']:.2f}x, "
              f"p99 {r['p99'] / floor['p99']:.2f}x")
    return s + f"  load={os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--db", default="sqlite,pg", help="comma list of sqlite, pg")
    ap.add_argument("--store", default="local,s3", help="comma list of local, s3")
    ap.add_argument("--mode", default="batch,single", help="comma list of batch, single")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    modes = {"batch": a.batch, "single": 1}
    work = Path(tempfile.mkdtemp(prefix="mlgov-ingest-bench-"))
    lua = work / "capture.lua"
    lua.write_text(LUA)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"{a.workers} workers each, {a.connections} connections, {a.seconds:g} s per run, "
          f"batch = {a.batch} records")
    floors: dict[str, dict[str, Any]] = {}
    proc, port = start_floor(a.workers, work)
    try:
        for mode in a.mode.split(","):
            n = modes[mode]
            url = f"http://127.0.0.1:{port}/api/v1/endpoints/ep/capture"
            wrk(url, n, 2, a.connections, "-", lua)    # warm-up
            r = wrk(url, n, a.seconds, a.connections, "-", lua)
            r["records"] = r["rps"] * n
            floors[mode] = r
            print(_line(f"floor {mode}", r, r["records"], None))
    finally:
        _stop(proc)
    s3 = None
    if "s3" in a.store.split(","):
        from tests.infra import Seaweed
        (work / "seaweed").mkdir()
        s3 = Seaweed(work / "seaweed")
        s3.start()
    try:
        for db in a.db.split(","):
            for store in a.store.split(","):
                m = Mlgov(work, db, store, a.workers, s3)
                try:
                    for mode in a.mode.split(","):
                        n = modes[mode]
                        url = f"http://127.0.0.1:{m.port}/api/v1/endpoints/ep/capture"
                        wrk(url, n, 2, a.connections, m.key, lua)    # warm-up
                        before = m.stored()
                        r = wrk(url, n, a.seconds, a.connections, m.key, lua)
                        records = (m.stored() - before) / a.seconds   # in-flight requests finish too
                        print(_line(f"mlgov {db}/{store} {mode}", r, records, floors.get(mode)))
                        if r["non2xx"]:
                            print("   ", m.explain_failure(n))
                finally:
                    m.close()
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
