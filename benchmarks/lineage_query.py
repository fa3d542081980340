"""Lineage query latency on PostgreSQL with 1,000,000 associations: the service call, and the same queries
through the HTTP API (in-process ASGI client, and a live ``mlgov serve``), with an API key.

The graph is many long pipelines with fan-in and fan-out: each family is ``layers`` layers of ``width``
nodes, alternating datasets (artifacts) and jobs (actions); every node feeds ``fanout`` random nodes of the
next layer, so every node also has ~``fanout`` parents. Depth-10 queries from a first-layer node reach about
a thousand vertices. Per direction it prints median and p95 wall time of

- ``service``: the whole service call (start resolution, recursive CTE, vertex and edge fetch) with, besides,
  its CPU time, the time spent in the SQL statements (execute, rows received) and the JSON serialisation of
  the result (what the route sends);
- ``asgi``: POST /api/v1/lineage/query through the app in-process (Starlette's TestClient: routing, auth,
  validation, serialisation, no sockets);
- ``http``: the same request to a live ``mlgov serve --workers 1`` over loopback (``--no-http`` skips it).

``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the statements each direction runs; ``--keep`` keeps the
database and ``--db URL`` reuses a kept one (no rebuild).

    .venv/bin/python benchmarks/lineage_query.py [--edges 1000000] [--pg URL-of-a-maintenance-db] [--explain]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pydantic_core
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.registry import free_port, mlgov_server
from lineage import service
from lineage.schemas import QueryRequest, QueryResult
from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database, alembic_config
from mlgov.settings import Settings

LABELS = ("Descendants", "Ascendants", "Both", "Descendants, 2 starts")


def build(url: str, edges_target: int, width: int, layers: int, fanout: int, seed: int) -> list[list[str]]:
    """COPY the graph in; returns, per family, the ids of its first and last layers."""
    import psycopg

    rng = random.Random(seed)
    per_family = width * (layers - 1) * fanout
    families = max(1, edges_target // per_family)
    ent_buf, edge_buf = io.StringIO(), io.StringIO()
    ends: list[list[str]] = []
    now = "2026-11-22 00:00:00+00"
    n_edges = 0
    for f in range(families):
        grid = [[uuid.uuid4().hex for _ in range(width)] for _ in range(layers)]
        for li, layer in enumerate(grid):
            for i, eid in enumerate(layer):
                if li % 2 == 0:
                    uri = f"s3://lake/f{f}/l{li}/d{i}.parquet"
                    ent_buf.write(f"{eid}\tartifact\tDataset\td{i}\t{uri}#\t{uri}\t\\N\t\\N\t{{}}"
                                  f"\tbench\t{now}\t{now}\n")
                else:
                    ent_buf.write(f"{eid}\taction\tProcessingJob\tjob-{f}-{li}-{i}\tjob:{eid}\t\\N\t\\N"
                                  f"\tCompleted\t{{}}\tbench\t{now}\t{now}\n")
        for li in range(layers - 1):
            for src in grid[li]:
                for dst in rng.sample(grid[li + 1], fanout):
                    kind = "ContributedTo" if li % 2 == 0 else "Produced"
                    edge_buf.write(f"{uuid.uuid4().hex}\t{src}\t{dst}\t{kind}\t{{}}\tbench\t{now}\n")
                    n_edges += 1
        ends.append([grid[0][0], grid[0][1], grid[-1][0], grid[-1][1], grid[layers // 2][0]])
    pg = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(pg) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        with cur.copy("COPY lineage_entities (id, kind, type, name, identity, uri, sha256, status, properties, "
                      "created_by, created_at, updated_at) FROM STDIN") as cp:
            cp.write(ent_buf.getvalue())
        with cur.copy("COPY lineage_edges (id, source_id, target_id, type, properties, created_by, created_at) "
                      "FROM STDIN") as cp:
            cp.write(edge_buf.getvalue())
        conn.commit()
        conn.autocommit = True  # VACUUM cannot run in a transaction
        # The steady state autovacuum reaches: statistics and a visibility map, so index-only scans stay so.
        cur.execute("VACUUM ANALYZE lineage_entities")
        cur.execute("VACUUM ANALYZE lineage_edges")
        print(f"loaded {families * width * layers:,} entities and {n_edges:,} associations "
              f"({families} families) in {time.perf_counter() - t0:.1f} s")
    return ends


def find_ends(db: Database) -> list[list[str]]:
    """A kept database's per-family start ids, found by the names `build` gives (first, last, middle layer)."""
    with db.session(write=False) as s:
        datasets = dict(s.execute(text("SELECT uri, id FROM lineage_entities WHERE kind = 'artifact' AND uri ~ "
                                       "'^s3://lake/f[0-9]+/l[0-9]+/d[01][.]parquet$'")).all())
        jobs = dict(s.execute(text("SELECT name, id FROM lineage_entities WHERE kind = 'action' AND name ~ "
                                   "'^job-[0-9]+-[0-9]+-[01]$'")).all())
    layers = max(int(n.split("-")[2]) for n in jobs) + 1
    families = len({n.split("-")[1] for n in jobs})

    def node(f: int, layer: int, i: int) -> str:
        return jobs[f"job-{f}-{layer}-{i}"] if layer % 2 else datasets[f"s3://lake/f{f}/l{layer}/d{i}.parquet"]

    return [[node(f, 0, 0), node(f, 0, 1), node(f, layers - 1, 0), node(f, layers - 1, 1), node(f, layers // 2, 0)]
            for f in range(families)]


def requests_for(label: str, picks: list[list[str]]) -> list[QueryRequest]:
    direction = label.split(",")[0]
    out = []
    for p in picks:
        start = {"Descendants": [p[0]], "Ascendants": [p[2]], "Both": [p[4]],
                 "Descendants, 2 starts": [p[0], p[1]]}[label]
        out.append(QueryRequest(start=start, direction=direction, max_depth=10, include_edges=True))
    return out


@contextmanager
def sql_timer(engine: Engine) -> Iterator[list[float]]:
    """Seconds spent in each statement's execute (psycopg receives every row there), appended as they run."""
    spent: list[float] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        spent.append(time.perf_counter() - started.pop())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield spent
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median_ms={statistics.median(xs) * 1000:7.1f} p95_ms={xs[max(0, int(len(xs) * 0.95) - 1)] * 1000:7.1f}"


def repeat(reqs: list[QueryRequest], n: int, call: Callable[[QueryRequest], Any]) -> list[float]:
    """Wall seconds of ``call`` per request, ``n`` runs in all, round-robin over the start picks, one warm-up each."""
    for r in reqs:
        call(r)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        call(reqs[i % len(reqs)])
        times.append(time.perf_counter() - t0)
    return times


def bench_service(db: Database, reqs: list[QueryRequest], n: int) -> tuple[str, QueryResult]:
    """`service.query_document` (what the route calls) and its serialisation, timed apart."""
    walls, cpus, sqls, sers = [], [], [], []
    res: dict[str, Any] | None = None
    for r in reqs:  # warm-up
        with db.session(write=False) as s:
            service.query_document(s, r)
            s.rollback()
    with sql_timer(db.engine) as spent:
        for i in range(n):
            with db.session(write=False) as s:
                before = len(spent)
                c0, t0 = time.process_time(), time.perf_counter()
                res = service.query_document(s, reqs[i % len(reqs)])
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                sqls.append(sum(spent[before:]))
                s.rollback()
            t0 = time.perf_counter()
            pydantic_core.to_json(res)
            sers.append(time.perf_counter() - t0)
    assert res is not None
    med = statistics.median
    return (f"{stats(walls)} cpu_median_ms={med(cpus) * 1000:6.1f} sql_median_ms={med(sqls) * 1000:6.1f} "
            f"serialise_median_ms={med(sers) * 1000:5.1f}"), QueryResult.model_validate(res)


def explain(db: Database, req: QueryRequest) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement the service runs for ``req``."""
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        with db.session(write=False) as s:
            service.query(s, req)
            s.rollback()
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    with db.engine.connect() as c:
        for statement, params in seen:
            if "WITH" not in statement.upper() and "RECURSIVE" not in statement.upper():
                continue   # the start look-ups: primary-key gets
            plan = c.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).scalars().all()
            print("\n".join("    " + line for line in plan))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--fanout", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=40, help="timed runs per direction and path")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--db", help="URL of a database a --keep run left (skips building)")
    ap.add_argument("--keep", action="store_true", help="keep the database; its URL is printed")
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) per direction")
    ap.add_argument("--no-http", action="store_true", help="skip the live `mlgov serve` measurement")
    a = ap.parse_args()
    name = f"mlgov_bench_lineage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(a.pg, isolation_level="AUTOCOMMIT")
    url = a.db or make_url(a.pg).set(database=name).render_as_string(hide_password=False)
    if not a.db:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        from alembic import command

        command.upgrade(alembic_config(url), "head")   # a kept database gets any newer migration (e.g. indexes)
        ends = build(url, a.edges, a.width, a.layers, a.fanout, seed=7) if not a.db else None
        db = Database(url)
        if ends is None:
            ends = find_ends(db)
        rng = random.Random(1)
        picks = rng.sample(ends, min(5, len(ends)))
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(home=Path(tmp) / "home", database_url=url, background_workers=False,
                                scheduler=False)
            app = create_app(settings, db=db)   # first: it gives the database the app's audit key
            with db.session_scope() as s:
                _, key = auth.create_key(s, f"bench-{uuid.uuid4().hex[:6]}", "viewer", actor="cli")
            headers = {"Authorization": f"Bearer {key}"}
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
            with TestClient(app) as client, ExitStack() as stack:
                live: httpx.Client | None = None
                if not a.no_http:
                    port = free_port()
                    stack.enter_context(mlgov_server(url, port, 1, settings.home))   # the same audit key
                    live = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                                            timeout=60))
                for label in LABELS:
                    reqs = requests_for(label, picks)
                    line, res = bench_service(db, reqs, a.repeat)
                    print(f"{label:<22} depth=10 vertices={len(res.vertices):>5} edges={len(res.edges):>5}")
                    print(f"  service {line}")

                    def via(c: Any) -> Callable[[QueryRequest], Any]:
                        def call(r: QueryRequest) -> Any:
                            resp = c.post("/api/v1/lineage/query", content=r.model_dump_json(),
                                          headers={**headers, "Content-Type": "application/json"})
                            assert resp.status_code == 200, resp.text
                            return resp.content
                        return call

                    body = via(client)(reqs[-1])
                    assert len(body) > 0 and QueryResult.model_validate_json(body) == res, "API != service"
                    print(f"  asgi    {stats(repeat(reqs, a.repeat, via(client)))} response_kb={len(body) / 1024:.0f}")
                    if live is not None:
                        print(f"  http    {stats(repeat(reqs, a.repeat, via(live)))}")
                    if a.explain:
                        explain(db, reqs[0])
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        db.dispose()
    finally:
        if a.keep or a.db:
            print(f"database kept: {url}")
        else:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
