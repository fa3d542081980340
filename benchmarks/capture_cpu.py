"""CPU cost of capture ingest in-process (no HTTP): ms of process CPU per 500-record batch and per single record,
on SQLite and PostgreSQL with the local store; ``--profile`` prints cProfile's top functions for one backend.

Runs what the capture route runs: the body guard's check (`inputs.screen`), `prepare_capture` on a read session,
`commit_capture` in a write session, committed; and single records 8 at a time through the route's group commit
(`monitor.group_commit`). Every record has a fresh eventId. Then how long a ground-truth upload of ``--labels``
labels holds the write turn capture waits for (wall ms, beside its read).

    .venv/bin/python benchmarks/capture_cpu.py [--db sqlite,pg] [--batches 40] [--singles 400] [--labels 10000]
        [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import json
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLGOV_AUDIT_KEY", "bench-audit-key-" + "0" * 32)

from mlgov import inputs  # noqa: E402
from mlgov.db import Database, new_id, utcnow  # noqa: E402
from mlgov.storage import LocalStore  # noqa: E402
from monitor import group_commit, service  # noqa: E402
from monitor.orm import Endpoint  # noqa: E402
from tests.infra import fresh_database, upgrade  # noqa: E402

SCHEMA = {"features": [{"name": "age", "type": "Integral"}, {"name": "income", "type": "Fractional"},
                       {"name": "state", "type": "String"}], "prediction": {"name": "prediction"}}
T0 = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)


def body(n: int, tag: str) -> bytes:
    recs = [{"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": f"{30 + i % 50},{40.5 + i},CA",
                          "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.7", "encoding": "CSV"}},
        "eventMetadata": {"eventId": f"{tag}-{i}", "inferenceId": f"i{tag}-{i}",
                          "inferenceTime": (T0 + dt.timedelta(seconds=i % 60)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0"} for i in range(n)]
    return json.dumps(recs).encode()


def one(db: Database, store: LocalStore, raw: bytes) -> dict[str, Any]:
    parsed = inputs.screen(raw, "the request body")
    with db.session_scope(write=False) as s:
        prep = service.prepare_capture(s, store, "bench", raw, "application/json", parsed_body=parsed)
    with db.session_scope() as s:
        return service.commit_capture(s, store, prep)


def grouped(db: Database, store: LocalStore, count: int, together: int) -> float:
    """CPU-ms per single record when ``together`` single-record requests arrive at once: each is read on its own
    read session, then all are stored and indexed by one group commit (what the route does under concurrency)."""
    async def wave(raws: list[bytes]) -> None:
        preps = []
        for raw in raws:
            parsed = inputs.screen(raw, "the request body")
            with db.session_scope(write=False) as s:
                preps.append(service.read_capture(s, "bench", raw, "application/json", parsed_body=parsed))
        outs = await asyncio.gather(*(group_commit.commit(db, store, p) for p in preps))
        assert all(o["accepted"] == 1 for o in outs), outs

    bodies = [body(1, uuid.uuid4().hex[:10]) for _ in range(count)]
    asyncio.run(wave([body(1, "warm" + uuid.uuid4().hex[:6])]))
    t = time.process_time()

    async def run() -> None:
        for i in range(0, count, together):
            await wave(bodies[i:i + together])

    asyncio.run(run())
    return (time.process_time() - t) * 1000 / count


def setup(db: Database) -> None:
    with db.session_scope() as s:
        s.add(Endpoint(id=new_id(), name="bench", model_group="g", model_version=1, variant="AllTraffic",
                       sampling_percentage=100.0, schema=SCHEMA, created_by="bench", created_at=utcnow(),
                       updated_at=utcnow()))


def measure(db: Database, store: LocalStore, size: int, count: int) -> float:
    bodies = [body(size, uuid.uuid4().hex[:10]) for _ in range(count)]
    one(db, store, body(size, "warm" + uuid.uuid4().hex[:6]))
    t = time.process_time()
    for b in bodies:
        out = one(db, store, b)
        assert out["accepted"] == size, out
    return (time.process_time() - t) * 1000 / count


def labels(db: Database, store: LocalStore, count: int) -> tuple[float, float]:
    """Wall ms of a ``count``-label ground-truth upload's read (on a read session) and its write turn (which every
    capture ingest waits for), the labels keyed by inference ids captured before."""
    for k in range(0, count, 500):
        one(db, store, body(min(500, count - k), f"gt{k}"))
    raw = json.dumps([{"groundTruthData": {"data": str(i % 2), "encoding": "CSV"},
                       "eventMetadata": {"eventId": f"igt{k}-{i}"}, "eventVersion": "0"}
                      for k in range(0, count, 500) for i in range(min(500, count - k))]).encode()
    t0 = time.perf_counter()
    with db.session_scope(write=False) as s:
        prep = service.prepare_ground_truth(s, "bench", raw, "application/json")
    t1 = time.perf_counter()
    with db.session_scope() as s:
        out = service.commit_ground_truth(s, store, prep)
    t2 = time.perf_counter()
    assert out["accepted"] == count and out["unmatched"] == 0, out
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite,pg")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--singles", type=int, default=400)
    ap.add_argument("--labels", type=int, default=10_000, help="labels in the ground-truth upload measured")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f}")
    for kind in a.db.split(","):
        with tempfile.TemporaryDirectory() as tmp, fresh_database("postgres" if kind == "pg" else "sqlite",
                                                                  Path(tmp)) as url:
            upgrade(url)
            db = Database(url)
            store = LocalStore(Path(tmp) / "store")
            setup(db)
            if a.profile:
                bodies = [body(500, uuid.uuid4().hex[:10]) for _ in range(a.batches)]
                prof = cProfile.Profile()
                prof.enable()
                for b in bodies:
                    one(db, store, b)
                prof.disable()
                print(f"--- {kind}: cProfile over {a.batches} batches of 500")
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
            else:
                batch = measure(db, store, 500, a.batches)
                single = measure(db, store, 1, a.singles)
                together = grouped(db, store, a.singles, 8)
                print(f"{kind}: batch of 500 {batch:.1f} CPU-ms ({500 / batch * 1000:,.0f} records/s per core); "
                      f"single record {single:.2f} CPU-ms alone, {together:.2f} CPU-ms when 8 arrive together "
                      f"(group commit)")
                read, write = labels(db, store, a.labels)
                print(f"{kind}: ground truth, {a.labels:,} labels: read {read:.0f} ms, write turn {write:.0f} ms")
            db.dispose()


if __name__ == "__main__":
    main()
