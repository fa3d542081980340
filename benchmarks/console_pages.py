"""Server time per console page on the embedded SQLite database with a group of 10k versions and 1,000 monitoring
executions (goal: < 100 ms per page).

In-process (Starlette's TestClient: no sockets, so the figure is the server's own time plus the in-process client's
small overhead), signed in through the sign-in form like a browser. Everything is seeded through the app's own
services and API with the app's audit key (so the chain verifies and the compliance report is real):

- one group ``bench`` with N versions, every 10th approved by an independent approver (the audit log holds ~N·1.3
  events); 30 small groups with a pending version each, half of them with a drift baseline attached;
- 4 endpoints serving small groups' versions, one data-quality schedule each, hourly captured windows (the later
  ones shifted, so drift breaches open alerts and retraining requests) and E executions in all, each with its
  report, so the trend charts have data.

    .venv/bin/python benchmarks/console_pages.py [--versions 10000] [--executions 1000] [--repeat 15]

Prints the load average before and after: the machine is shared, and the figures mean little without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import event

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database, alembic_config
from mlgov.settings import Settings

ENDPOINTS = 4
ROWS_PER_HOUR = 40
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FEATURES = [
    {"name": "age", "type": "Integral"},
    {"name": "income", "type": "Fractional"},
    {"name": "state", "type": "String"},
]


def _rows(n: int, shift: float, seed: int) -> list[tuple[int, float, str]]:
    rng = np.random.default_rng(seed)
    ages, incomes, states = rng.integers(18, 90, n), rng.normal(50 + shift, 10, n), rng.choice(["CA", "NY", "TX"], n)
    return [(int(a), round(float(i), 3), str(s)) for a, i, s in zip(ages, incomes, states, strict=True)]


def _capture(rows: list[tuple[int, float, str]], start: dt.datetime, first_id: int) -> list[dict[str, object]]:
    out = []
    for i, row in enumerate(rows):
        inp = {"observedContentType": "text/csv", "mode": "INPUT", "data": ",".join(map(str, row)), "encoding": "CSV"}
        outp = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.7", "encoding": "CSV"}
        when = start + dt.timedelta(seconds=i * 60 // max(len(rows), 1))
        out.append(
            {
                "captureData": {"endpointInput": inp, "endpointOutput": outp},
                "eventMetadata": {
                    "eventId": f"ev-{first_id + i}",
                    "inferenceId": f"inf-{first_id + i}",
                    "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            }
        )
    return out


def seed_registry(db: Database, n: int) -> dict[str, str]:
    from registry import service
    from registry.schemas import ApprovalRequest, GroupCreate, VersionCreate

    keys: dict[str, str] = {}
    with db.session_scope() as s:
        pub_row, keys["publisher"] = auth.create_key(s, "bench-pub", "admin", actor="bench", owner="alice")
        appr_row, keys["approver"] = auth.create_key(s, "bench-appr", "approver", actor="bench", owner="bob")
        _, keys["admin"] = auth.create_key(s, "bench-admin", "admin", actor="bench", owner="carol")
        pub, appr = auth.principal_of(pub_row), auth.principal_of(appr_row)
        service.create_group(s, GroupCreate(name="bench", description="10k versions"), pub)
        for g in range(30):
            service.create_group(s, GroupCreate(name=f"small-{g}"), pub)
            service.register_version(
                s,
                f"small-{g}",
                VersionCreate(
                    artifact_uri=f"s3://m/small-{g}",
                    artifact_sha256=hashlib.sha256(f"s{g}".encode()).hexdigest(),
                    metrics={"auc": 0.7 + g / 100},
                    training_data=[f"s3://d/small-{g}.csv"],
                ),
                pub,
            )
    t0 = time.perf_counter()
    done = 0
    while done < n:
        with db.session_scope() as s:
            for _ in range(min(500, n - done)):
                done += 1
                service.register_version(
                    s,
                    "bench",
                    VersionCreate(
                        artifact_uri=f"s3://m/{done}",
                        artifact_sha256=hashlib.sha256(str(done).encode()).hexdigest(),
                        metrics={"auc": 0.8, "f1": 0.7},
                        training_data=[f"s3://d/{done}.csv"],
                        description=f"version {done}",
                    ),
                    pub,
                )
                if done % 10 == 0:
                    service.decide(s, "bench", done, ApprovalRequest(status="Approved", comment="ok"), appr)
    print(f"seeded {n} versions in {time.perf_counter() - t0:.1f} s")
    return keys


def seed_monitoring(c: TestClient, keys: dict[str, str], executions: int) -> None:
    """Endpoints, baselines, captured hours and ``executions`` runs through the HTTP API (the doors clients use)."""
    h = {"Authorization": f"Bearer {keys['publisher']}"}
    t0 = time.perf_counter()
    base_csv = "age,income,state\n" + "\n".join(",".join(map(str, r)) for r in _rows(2000, 0.0, 7))
    bid = c.post(
        "/api/v1/baselines",
        files={"file": ("train.csv", base_csv.encode(), "text/csv")},
        data={"name": "train"},
        headers=h,
    ).json()["id"]
    for g in range(0, 30, 2):  # half the inbox's versions carry a drift baseline
        r = c.post(f"/api/v1/model-groups/small-{g}/versions/1/drift-baseline", json={"baseline_id": bid}, headers=h)
        assert r.status_code == 200, r.text
    hours = -(-executions // ENDPOINTS)
    ran = 0
    for e in range(ENDPOINTS):
        ep, group = f"ep-{e}", f"small-{e * 2}"
        r = c.post(
            "/api/v1/endpoints",
            json={"name": ep, "model_group": group, "model_version": 1, "schema": {"features": FEATURES}},
            headers=h,
        )
        assert r.status_code == 201, r.text
        r = c.post(
            "/api/v1/monitoring-schedules",
            headers=h,
            json={
                "name": f"dq-{e}",
                "endpoint": ep,
                "type": "DataQuality",
                "schedule": "hourly",
                "baseline_id": bid,
                "window": {"start": "-PT1H", "end": "PT0S"},
            },
        )
        assert r.status_code == 201, r.text
        for hour in range(min(hours, executions - ran)):
            start = START + dt.timedelta(hours=hour)
            shift = 25.0 if hour > hours * 0.8 else 0.0  # the last fifth drifts: violations, alerts
            recs = _capture(_rows(ROWS_PER_HOUR, shift, e * 100_000 + hour), start, (e * 100_000 + hour) * 1000)
            r = c.post(f"/api/v1/endpoints/{ep}/capture", content=json.dumps(recs), headers=h)
            assert r.status_code in (200, 201), r.text
            r = c.post(
                f"/api/v1/monitoring-schedules/dq-{e}/run",
                headers=h,
                json={"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat()},
            )
            assert r.status_code == 201, r.text
            ran += 1
    print(f"seeded {ran} executions on {ENDPOINTS} schedules in {time.perf_counter() - t0:.1f} s")


def pages(n: int) -> list[tuple[str, str | None]]:
    return [
        ("inbox (≈9k pending, 20 shown)", "/console/"),
        ("models", "/console/models"),
        ("group, newest 50", "/console/models/bench"),
        ("group, last page oldest first", f"/console/models/bench?sort=version&offset={max(n - 50, 0)}"),
        ("group, approved only", "/console/models/bench?status=Approved"),
        ("version page + lineage (10k group)", f"/console/models/bench/versions/{max(n // 2, 1)}"),
        ("version page + lineage (monitored)", "/console/models/small-0/versions/1"),
        ("monitoring overview", "/console/monitoring"),
        ("schedule page (250 runs, 60 charted)", "/console/monitoring/schedules/dq-0"),
        ("alerts, open", "/console/alerts"),
        ("alert page", None),
        ("audit log, newest 50", "/console/audit"),
        ("audit log, group + action filter", "/console/audit?group=bench&action=version.*"),
        ("compliance page (monitored group)", "/console/audit/report?group=small-0"),
        ("admin", "/console/admin"),
        ("audit verify (walks the whole chain)", "/console/audit/verify"),
        ("compliance page's chain status (fragment, walks the chain)", "/console/audit/chain"),
    ]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--executions", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        command.upgrade(alembic_config(url), "head")
        db = Database(url)
        settings = Settings(home=Path(tmp) / "home", database_url=url, background_workers=False, scheduler=False)
        app = create_app(settings, db=db)  # first: it gives the database the app's audit key (and store anchor)
        keys = seed_registry(db, args.versions)
        with TestClient(app, base_url="http://testserver") as c:
            seed_monitoring(c, keys, args.executions)
            h = {"Authorization": f"Bearer {keys['admin']}"}
            alert = c.get("/api/v1/alerts", params={"status": "open"}, headers=h).json()["items"][0]["id"]
            c.get("/console/sign-in")
            r = c.post(
                "/console/sign-in",
                data={"api_key": keys["admin"], "next": "/console/", "csrf_token": c.cookies["mlgov_console_login"]},
                follow_redirects=False,
            )
            assert r.status_code == 303 and "mlgov_console" in r.cookies, r.text
            print(_load())
            # SQL statements per request: a figure the machine's load does not change
            statements = [0]

            def count(*_: object) -> None:
                statements[0] += 1

            for engine in {db.engine, db.write_engine}:
                event.listen(engine, "before_cursor_execute", count)
            print(f"{'page':58} {'median ms':>10} {'p95 ms':>8} {'SQL':>5} {'bytes':>8}")
            for label, path in pages(args.versions):
                path = path or f"/console/alerts/{alert}"
                times = []
                statements[0] = 0
                for i in range(args.repeat + 2):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    if i >= 2:
                        times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200 and "flash-error" not in r.text, (path, r.status_code, r.text[:500])
                if path.endswith(("/verify", "/chain")):
                    assert "intact" in r.text, r.text[:2000]
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                sql = statements[0] // (args.repeat + 2)
                print(f"{label:58} {statistics.median(times):10.1f} {p95:8.1f} {sql:5d} {len(r.content):8d}")
            print(_load())
        db.dispose()


if __name__ == "__main__":
    main()
