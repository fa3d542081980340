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
from pathlib import Path

import httpx
import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from tests.conftest import make_settings
from tests.helpers import version_body
from tests.infra import LiveServer

pytestmark = pytest.mark.live

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXCLUDED = {("DELETE", "/api/v1/keys/{name}")}   # would revoke the run's own key; see CONFIG



def _seed(url: str, headers: dict[str, str]) -> dict[str, str]:
    """Real resources for the path parameters, so operations reach their logic instead of a 404 on a random id."""
    rows = "\n".join(f"{20 + i % 60},{40 + (i * 7) % 50}.5,{'CA' if i % 3 else 'NY'}" for i in range(200))
    data = f"age,income,state\n{rows}\n".encode()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        def ok(r: httpx.Response) -> dict[str, str]:
            assert r.status_code in (200, 201), r.text
            return dict(r.json())

        ok(c.post("/api/v1/model-groups", json={"name": "churn"}))
        ok(c.post("/api/v1/model-groups/churn/versions", json=version_body(1)))
        ok(c.post("/api/v1/endpoints", json={
            "name": "churn-prod", "model_group": "churn", "model_version": 1,
            "schema": {"features": [{"name": "age", "type": "Integral"}, {"name": "income"},
                                    {"name": "state", "type": "String"}], "prediction": {"name": "prediction"}}}))
        baseline = ok(c.post("/api/v1/baselines", files={"file": ("train.csv", data)}, data={"name": "train"}))["id"]
        analysis = ok(c.post("/api/v1/analyses", files={"file": ("now.csv", data)}, data={"baseline_id": baseline}))
        ok(c.post("/api/v1/monitoring-schedules", json={"name": "dq-hourly", "endpoint": "churn-prod",
                                                          "type": "DataQuality", "schedule": "hourly",
                                                          "baseline_id": baseline}))
        artifact = ok(c.post("/api/v1/lineage/artifacts", json={"type": "Dataset", "uri": "s3://data/train.csv"}))
        context = ok(c.post("/api/v1/lineage/contexts", json={"type": "Project", "name": "churn"}))
    return {"baseline": baseline, "analysis": analysis["id"], "artifact": artifact["id"], "context": context["id"]}


def _config(tmp: Path, seeded: dict[str, str]) -> Path:
    """CONFIG plus the seeded ids as the values of the path parameters that name them. DELETEs keep generated
    values: pinned, one would delete the seeded resource and every later call on it would be a 404."""
    pins = [   # regexes over the documented paths
        (r"^/api/v1/model-groups/\{group\}", {"group": "churn", "version": 1}),
        (r"^/api/v1/baselines/\{baseline_id\}", {"baseline_id": seeded["baseline"]}),
        (r"^/api/v1/analyses/\{analysis_id\}", {"analysis_id": seeded["analysis"]}),
        (r"^/api/v1/endpoints/\{name\}", {"name": "churn-prod"}),
        (r"^/api/v1/monitoring-schedules/\{name\}", {"name": "dq-hourly"}),
        (r"^/api/v1/lineage/artifacts/\{entity_id\}", {"entity_id": seeded["artifact"]}),
        (r"^/api/v1/lineage/contexts/\{entity_id\}", {"entity_id": seeded["context"]}),
    ]
    blocks = [f"\n[[operations]]\ninclude-path-regex = '{regex}'\nexclude-method = 'DELETE'\nparameters = {{ "
              + ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + " }\n" for regex, values in pins]
    path = tmp / "schemathesis.toml"
    path.write_text(CONFIG.read_text() + "".join(blocks))
    return path


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
        # the first /openapi.json builds the whole schema: seconds on a busy 2-core runner, past httpx's 5 s default
        spec = httpx.get(f"{srv.url}/openapi.json", timeout=60).json()
        operations = sum(len(item) for item in spec["paths"].values())
        config = _config(tmp_path, _seed(srv.url, headers))
        proc = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
             f"{srv.url}/openapi.json", "-H", f"Authorization: Bearer {key}",
             "--report", "json", "--report-json-path", str(out)],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
        key_still_works = httpx.get(f"{srv.url}/api/v1/keys", headers=headers, timeout=60).status_code
    assert out.exists(), proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert report["complete"] and report["stop_reason"] == "completed", _summary(report, proc.stdout)
    # every operation but the excluded ones was generated for and called
    assert report["operations"]["selected"] == report["operations"]["tested"] == operations - len(EXCLUDED)
    assert report["test_cases"]["generated"] > 10 * report["operations"]["tested"]
    assert report["failures"] == [] and report["errors"] == [], _summary(report, proc.stdout)
    assert proc.returncode == 0, _summary(report, proc.stdout)
    assert key_still_works == 200   # the run never revoked (or otherwise broke) the key it ran with
