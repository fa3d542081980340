"""Small builders shared by API tests."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fastapi.testclient import TestClient


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def version_body(n: int = 1, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "artifact_uri": f"s3://models/churn/v{n}/model.tar.gz",
        "artifact_sha256": sha(f"model-{n}"),
        "framework": "xgboost",
        "metrics": {"auc": 0.9, "accuracy": 0.85},
        "metadata": {"git_commit": f"c{n}", "team": "growth"},
        "training_data": [f"s3://data/churn/train-{n}.csv"],
        "inference_spec": {"image": "registry.local/churn:1", "supported_content_types": ["text/csv"],
                           "supported_response_mime_types": ["text/csv"]},
        "model_card": {"status": "Draft", "content": {"intended_use": "retention"}, "markdown": "# Churn"},
        "training_job": {"name": f"train-{n}", "parameters": {"max_depth": 6}},
    }
    body.update(over)
    return body


def create_group(client: TestClient, headers: dict[str, str], name: str = "churn", **over: Any) -> dict[str, Any]:
    r = client.post("/api/v1/model-groups", json={"name": name, "description": "d", **over}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def register(client: TestClient, headers: dict[str, str], group: str = "churn", n: int = 1,
             **over: Any) -> dict[str, Any]:
    r = client.post(f"/api/v1/model-groups/{group}/versions", json=version_body(n, **over), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def approve(client: TestClient, headers: dict[str, str], group: str, version: int, status: str = "Approved",
            **over: Any) -> Any:
    return client.post(f"/api/v1/model-groups/{group}/versions/{version}/approval",
                       json={"status": status, "comment": "looks good", **over}, headers=headers)


def assert_problem(r: Any, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["status"] == status and body["detail"], body
    text = (body["detail"] + " " + str(body.get("fix", "")) + " " + str(body.get("errors", ""))).lower()
    for n in needles:
        assert n.lower() in text, (n, body)
    return body


def seed_endpoint(session: Any, features: list[dict[str, str]], prediction: dict[str, str] | None = None) -> Any:
    """Through the services: a key, group "g" with version 1, and endpoint "ep" serving it (``prediction``: its
    captured prediction's spec, else the default); returns the admin principal (for callers that go on to create
    baselines or schedules)."""
    from mlgov.auth import Principal, Role, create_key
    from monitor import capture, service
    from registry import service as registry
    from registry.schemas import GroupCreate, VersionCreate

    row, _ = create_key(session, "setup", "admin", actor="test")
    p = Principal(row.id, row.name, Role.admin)
    registry.create_group(session, GroupCreate(name="g"), p)
    registry.register_version(session, "g", VersionCreate(**version_body(1)), p)
    service.create_endpoint(session, name="ep", model_group="g", model_version=1, variant="AllTraffic",
                            sampling_percentage=100,
                            schema=capture.CaptureSchema(features=features, **({"prediction": prediction} if prediction
                                                                               else {})), actor=p)
    return p


def seed_schedule(session: Any, store: Any, features: list[dict[str, str]], csv: bytes, *, name: str,
                  expression: str, window_start: str, now: Any) -> Any:
    """seed_endpoint plus a data-quality baseline from ``csv`` (or Parquet bytes) and a schedule on "ep"; returns
    the admin principal."""
    from monitor import schedules, service

    p = seed_endpoint(session, features)
    base = service.create_baseline(session, store, data=csv, fmt=None, header=True, name="b", dataset_uri=None,
                                   actor=p).record(session)
    schedules.create(session, name=name, endpoint="ep", monitoring_type="DataQuality", expression=expression,
                     baseline_id=base.id, window_start=window_start, window_end="PT0S", drift=None, alerting=None,
                     actor=p, now=now)
    return p


def signed_in(app: Any, plain_key: str) -> TestClient:
    """A client holding a console session of that key (signed in through the sign-in form, login CSRF included)."""
    c = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/console/sign-in").text)
    assert token is not None
    r = c.post("/console/sign-in", data={"api_key": plain_key, "csrf_token": token.group(1)}, follow_redirects=False)
    assert r.status_code == 303 and "sign-in" not in r.headers["location"], r.text
    return c
