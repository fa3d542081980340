"""The OpenAPI document is a contract: schemathesis holds a live server to it, on SQLite and PostgreSQL.

Every phase (coverage, fuzzing, stateful) and every check schemathesis has (tests/schemathesis.toml) run over
real sockets against a real server on a migrated database, authenticated with an admin key. Any server error,
undocumented status or media type, response that breaks its schema, invalid input accepted or valid input
refused fails the test with schemathesis' own report (a curl line per failure). The run is bounded and
derandomised, so it is reproducible and fits CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from tests.conftest import make_settings
from tests.infra import LiveServer, fresh_database, upgrade

pytestmark = pytest.mark.live

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXCLUDED = {("DELETE", "/api/v1/keys/{name}")}   # would revoke the run's own key; see CONFIG


@pytest.fixture(params=["sqlite", "postgres"])
def live_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        yield db
        db.dispose()


def _summary(report: dict[str, object], stdout: str) -> str:
    failures = "\n".join(f"  {f['code']} {f['title']} ×{f['count']}: {', '.join(f['operations'])}"
                         for f in report["failures"])  # type: ignore[attr-defined]
    return f"schemathesis failures by check:\n{failures}\nerrors: {report['errors']}\n\n{stdout[-30000:]}"


def test_live_server_conforms_to_its_openapi_document(live_db: Database, tmp_path: Path) -> None:
    with live_db.session_scope() as s:
        _, key = auth.create_key(s, "schemathesis", "admin", actor="test")
    headers = {"Authorization": f"Bearer {key}"}
    app = create_app(make_settings(tmp_path), db=live_db)
    out = tmp_path / "schemathesis.json"
    with LiveServer(app) as srv:
        operations = sum(len(item) for item in httpx.get(f"{srv.url}/openapi.json").json()["paths"].values())
        proc = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
             f"{srv.url}/openapi.json", "-H", f"Authorization: Bearer {key}",
             "--report", "json", "--report-json-path", str(out)],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
        key_still_works = httpx.get(f"{srv.url}/api/v1/keys", headers=headers).status_code
    assert out.exists(), proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert report["complete"] and report["stop_reason"] == "completed", _summary(report, proc.stdout)
    # every operation but the excluded ones was generated for and called
    assert report["operations"]["selected"] == report["operations"]["tested"] == operations - len(EXCLUDED)
    assert report["test_cases"]["generated"] > 10 * report["operations"]["tested"]
    assert report["failures"] == [] and report["errors"] == [], _summary(report, proc.stdout)
    assert proc.returncode == 0, _summary(report, proc.stdout)
    assert key_still_works == 200   # the run never revoked (or otherwise broke) the key it ran with
