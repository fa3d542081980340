"""mlgov.web.Router: declining foreign paths early must not change what any request is routed to."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlgov.web import Router, include


def _app() -> tuple[FastAPI, Router, Router]:
    first = Router(prefix="/api/v1")

    @first.get("/groups/{name}")
    def group(name: str) -> dict[str, str]:
        return {"group": name}

    @first.post("/keys")
    def keys() -> dict[str, str]:
        return {"keys": "made"}

    second = Router(prefix="/api/2.0/mlflow")

    @second.get("/model-versions/get")
    def version() -> dict[str, str]:
        return {"version": "1"}

    @second.get("/slash/")
    def slash() -> dict[str, str]:
        return {"slash": "yes"}

    app = FastAPI()
    include(app, first)
    include(app, second)
    return app, first, second


def test_a_router_declines_paths_none_of_its_routes_can_match(monkeypatch):
    app, first, second = _app()
    assert first._prefixes() == ("/api/v1/groups", "/api/v1/keys")
    assert second._prefixes() == ("/api/2.0/mlflow/model-versions/get", "/api/2.0/mlflow/slash")
    tried: list[str] = []
    for route in first.routes:
        monkeypatch.setattr(route, "matches", lambda scope, r=route, m=route.matches: tried.append(r.path) or m(scope))
    client = TestClient(app)
    assert client.get("/api/2.0/mlflow/model-versions/get").json() == {"version": "1"}
    assert tried == []                                  # the first router's routes were never tried
    assert client.get("/api/v1/groups/churn").json() == {"group": "churn"}
    assert "/api/v1/groups/{name}" in tried


def test_routing_answers_are_unchanged_by_the_guard():
    app, _, _ = _app()
    client = TestClient(app)
    assert client.get("/api/v1/groups/churn").json() == {"group": "churn"}
    assert client.get("/api/2.0/mlflow/model-versions/get").json() == {"version": "1"}
    assert client.get("/api/v1/keys").status_code == 405                       # right path, wrong method
    r = client.get("/api/2.0/mlflow/slash", follow_redirects=False)           # redirect_slashes still finds it
    assert r.status_code == 307 and r.headers["location"].endswith("/api/2.0/mlflow/slash/")
    assert client.get("/api/v1/nothing").status_code == 404


def test_a_router_included_under_a_prefix_or_holding_one_keeps_full_matching():
    outer, inner = Router(prefix="/outer"), Router()

    @inner.get("/anywhere")
    def anywhere() -> dict[str, str]:
        return {"ok": "yes"}

    outer.include_router(inner)          # inner's routes answer under outer's prefix
    assert outer._prefixes() is None
    app = FastAPI()
    include(app, outer)
    assert TestClient(app).get("/outer/anywhere").json() == {"ok": "yes"}
    plain = FastAPI()
    plain.include_router(inner, prefix="/elsewhere")
    assert TestClient(plain).get("/elsewhere/anywhere").json() == {"ok": "yes"}
