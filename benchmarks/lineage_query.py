"""Lineage query latency on PostgreSQL with 1,000,000 associations.

The graph is many long pipelines with fan-in and fan-out: each family is ``layers`` layers of ``width``
nodes, alternating datasets (artifacts) and jobs (actions); every node feeds ``fanout`` random nodes of the
next layer, so every node also has ~``fanout`` parents. Depth-10 queries from a first-layer node reach about
a thousand vertices. Times are for the whole service call (start resolution, recursive CTE, entity and
edge fetch), as the API runs it.

    .venv/bin/python benchmarks/lineage_query.py [--edges 1000000] [--pg URL-of-a-maintenance-db]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineage import service
from lineage.schemas import QueryRequest
from mlgov.db import Database, alembic_config


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--fanout", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    name = f"mlgov_bench_lineage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(a.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(a.pg).set(database=name).render_as_string(hide_password=False)
    try:
        from alembic import command

        command.upgrade(alembic_config(url), "head")
        ends = build(url, a.edges, a.width, a.layers, a.fanout, seed=7)
        db = Database(url)
        rng = random.Random(1)
        picks = rng.sample(ends, min(5, len(ends)))
        for label in ("Descendants", "Ascendants", "Both", "Descendants, 2 starts"):
            times, sizes, n_edges = [], [], []
            for p in picks:
                start = {"Descendants": [p[0]], "Ascendants": [p[2]], "Both": [p[4]],
                         "Descendants, 2 starts": [p[0], p[1]]}[label]
                direction = label.split(",")[0]
                req = QueryRequest(start=start, direction=direction, max_depth=10, include_edges=True)
                for _ in range(a.repeat // len(picks) + 1):
                    with db.session(write=False) as s:
                        t0 = time.perf_counter()
                        res = service.query(s, req)
                        times.append(time.perf_counter() - t0)
                        s.rollback()
                    sizes.append(len(res.vertices))
                    n_edges.append(len(res.edges))
            times.sort()
            print(f"{label:<24} depth=10 vertices~{int(statistics.median(sizes)):>5} "
                  f"edges~{int(statistics.median(n_edges)):>5} median_ms={statistics.median(times) * 1000:7.1f} "
                  f"p95_ms={times[int(len(times) * 0.95) - 1] * 1000:7.1f} "
                  f"runs={len(times)}")
        db.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
