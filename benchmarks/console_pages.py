"""Server time per console page on the embedded SQLite database with a group of 10k versions (goal: < 100 ms).

In-process (Starlette's TestClient: no sockets, so the figure is the server's own time), signed in through the
sign-in form like a browser. Seeds: one group with N versions (every 10th approved by an independent approver,
so the audit log holds ~N·1.3 events), 30 small groups with a pending version each.

    .venv/bin/python benchmarks/console_pages.py [--versions 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database, alembic_config
from mlgov.settings import Settings


def seed(db: Database, n: int) -> str:
    from registry import service
    from registry.schemas import ApprovalRequest, GroupCreate, VersionCreate

    with db.session_scope() as s:
        pub_row, _ = auth.create_key(s, "bench-pub", "admin", actor="bench", owner="alice")
        appr_row, _ = auth.create_key(s, "bench-appr", "approver", actor="bench", owner="bob")
        _, viewer = auth.create_key(s, "bench-admin", "admin", actor="bench", owner="carol")
        pub, appr = auth.principal_of(pub_row), auth.principal_of(appr_row)
        service.create_group(s, GroupCreate(name="bench", description="10k versions"), pub)
        for g in range(30):
            service.create_group(s, GroupCreate(name=f"small-{g}"), pub)
            service.register_version(s, f"small-{g}", VersionCreate(
                artifact_uri=f"s3://m/small-{g}", artifact_sha256=hashlib.sha256(f"s{g}".encode()).hexdigest(),
                metrics={"auc": 0.7 + g / 100}, training_data=[f"s3://d/small-{g}.csv"]), pub)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        with db.session_scope() as s:
            for _ in range(min(500, n - done)):
                done += 1
                service.register_version(s, "bench", VersionCreate(
                    artifact_uri=f"s3://m/{done}", artifact_sha256=hashlib.sha256(str(done).encode()).hexdigest(),
                    metrics={"auc": 0.8, "f1": 0.7}, training_data=[f"s3://d/{done}.csv"],
                    description=f"version {done}"), pub)
                if done % 10 == 0:
                    service.decide(s, "bench", done, ApprovalRequest(status="Approved", comment="ok"), appr)
    print(f"seeded {n} versions in {time.perf_counter() - t0:.1f} s")
    return viewer


PAGES = [
    ("inbox (≈9k pending, 20 shown)", "/console/"),
    ("models", "/console/models"),
    ("group, newest 50", "/console/models/bench"),
    ("group, last page oldest first", "/console/models/bench?sort=version&offset=9950"),
    ("group, approved only", "/console/models/bench?status=Approved"),
    ("version page + lineage graph", "/console/models/bench/versions/5000"),
    ("audit log, newest 50", "/console/audit"),
    ("audit log, group + action filter", "/console/audit?group=bench&action=version.*"),
    ("compliance page (all versions)", "/console/audit/report?group=small-3"),
    ("admin", "/console/admin"),
    ("audit verify (walks the whole chain)", "/console/audit/verify"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        command.upgrade(alembic_config(url), "head")
        db = Database(url)
        key = seed(db, args.versions)
        app = create_app(Settings(home=Path(tmp) / "home", database_url=url, background_workers=False,
                                  scheduler=False), db=db)
        with TestClient(app, base_url="http://testserver") as c:
            c.get("/console/sign-in")
            r = c.post("/console/sign-in", data={"api_key": key, "csrf_token": c.cookies["mlgov_console_login"],
                                                 "next": "/console/"}, follow_redirects=False)
            assert r.status_code == 303 and "mlgov_console" in r.cookies, r.text
            print(f"{'page':42} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
            for label, path in PAGES:
                times = []
                for i in range(args.repeat + 2):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    if i >= 2:
                        times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200 and "flash-error" not in r.text, (path, r.status_code, r.text[:500])
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"{label:42} {statistics.median(times):10.1f} {p95:8.1f} {len(r.content):8d}")
        db.dispose()


if __name__ == "__main__":
    main()
