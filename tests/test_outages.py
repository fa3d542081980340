"""When the database or the object store cannot serve, callers get 503 with Retry-After (their cue to come back),
never 500, and the unauthenticated readiness route says which part is down without naming hosts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mlgov.app import create_app
from mlgov.db import Database
from tests.conftest import make_settings
from tests.helpers import assert_problem
from tests.infra import S3_KEY, S3_SECRET
from tests.monitor.test_api import csv_bytes, frame


def test_an_unreachable_database_is_503_not_500(tmp_path):
    """An operator's trial: with PostgreSQL closed to connections every API call and /metrics answered 500, and
    /readyz echoed the driver's text (host, port, database name) to anyone."""
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/trial_secret_db?connect_timeout=2")
    app = create_app(make_settings(tmp_path), db=db, check_schema=False)
    h = {"Authorization": "Bearer mlgov_0123456789abcdef_0123456789abcdef0123456789abcdef"}
    with TestClient(app) as c:
        for path in ("/api/v1/model-groups", "/metrics"):
            r = c.get(path, headers=h)
            assert_problem(r, 503, "cannot be reached")
            assert int(r.headers["retry-after"]) >= 1
        ready = c.get("/readyz")
        body = assert_problem(ready, 503, "database not ready")
        assert "127.0.0.1" not in ready.text and "trial_secret_db" not in ready.text, body
    db.dispose()


@pytest.mark.parametrize("outage", ["wrong secret", "no server"])
def test_an_object_store_that_cannot_serve_is_503_not_500(tmp_path, db, keys, seaweed, outage):
    """An operator's trial: wrong S3 credentials, or SeaweedFS stopped, made baseline uploads and capture answer
    500 "an unexpected error occurred" while /readyz said ready."""
    bucket = f"outage{tmp_path.name[-8:].lower().replace('_', '')}"
    seaweed.client().create_bucket(Bucket=bucket)
    endpoint, secret = (seaweed.endpoint, S3_SECRET + "x") if outage == "wrong secret" else \
        ("http://127.0.0.1:1", S3_SECRET)
    app = create_app(make_settings(tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=endpoint,
                                   s3_access_key_id=S3_KEY, s3_secret_access_key=secret), db=db)
    with TestClient(app) as c:
        r = c.post("/api/v1/baselines", files={"file": ("train.csv", csv_bytes(frame(50)), "text/csv")},
                   data={"name": "train"}, headers=keys("publisher"))
        assert_problem(r, 503, "object store is unavailable",
                       "refuses the server's credentials" if outage == "wrong secret" else "cannot be reached")
        assert "retry-after" in r.headers
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store"] != "ok", ready.text
        assert c.get("/api/v1/model-groups", headers=keys("viewer")).status_code == 200   # the registry still serves
