"""Every route declares a role; no route is open by accident and no role reaches beyond its rights."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from mlgov import auth
from mlgov.auth import Role
from tests.helpers import assert_problem, signed_in

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/console/sign-in", "/"}   # the console's sign-in page and GET / (a redirect to the console)
CONSOLE = "/console/"   # console pages authenticate by session cookie: test_console_route_role_matrix
PROTOCOLS = ("/api/2.0/mlflow/", "/api/3.0/mlflow/")   # other protocols' paths (MLflow's registry REST API)


def declared_roles(route) -> frozenset[Role] | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return frozenset(roles)
        stack.extend(dep.dependencies)
    return None


def _walk(routes, prefix=""):
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix, r
        elif hasattr(r, "original_router"):  # FastAPI >= 0.160 keeps included routers nested
            yield from _walk(r.original_router.routes, prefix + r.include_context.prefix)


class _Bound:
    """An APIRoute seen with its full path (prefix of the routers that include it)."""

    def __init__(self, prefix: str, route: APIRoute) -> None:
        self.path, self.route, self.dependant = prefix + route.path, route, route.dependant


def api_routes(app):
    for prefix, r in _walk(app.routes):
        for m in sorted(r.methods - {"HEAD", "OPTIONS"}):
            yield _Bound(prefix, r), m


def test_every_route_declares_a_role(app):
    missing = [f"{m} {r.path}" for r, m in api_routes(app) if r.path not in PUBLIC and declared_roles(r) is None]
    assert missing == [], f"routes without a role: {missing}"
    assert len(list(api_routes(app))) >= 25
    assert all(r.path.startswith(("/api/v1/", CONSOLE, *PROTOCOLS)) or r.path == "/metrics"
               for r, _ in api_routes(app) if r.path not in PUBLIC)


EXPECTED = {
    # (method, path pattern) -> roles that may call it; anything not listed must be caught by the test below
    ("POST", "/api/v1/model-groups"): {"admin", "publisher"},
    ("GET", "/api/v1/model-groups"): {"admin", "approver", "publisher", "viewer"},
    ("POST", "/api/v1/model-groups/{group}/versions/{version}/approval"): {"admin", "approver"},
    ("GET", "/api/v1/audit/verify"): {"admin", "approver", "viewer"},
    ("POST", "/api/v1/keys"): {"admin"},
    ("POST", "/api/v1/webhooks"): {"admin"},
}


def test_expected_role_sets(app):
    seen = {(m, r.path): {x.value for x in declared_roles(r) or ()} for r, m in api_routes(app)}
    for k, roles in EXPECTED.items():
        assert seen[k] == roles, k
    # ingest never reads or writes the registry, keys, audit or webhooks
    for (m, path), roles in seen.items():
        if path.startswith(("/api/v1/model-groups", "/api/v1/keys", "/api/v1/audit", "/api/v1/webhooks")):
            assert "ingest" not in roles, (m, path)
        if m != "GET" and path.startswith(("/api/v1/keys", "/api/v1/webhooks")):
            assert roles == {"admin"}, (m, path)


SAMPLE = {"{version}": "1", "{plural:lineage_kind}": "artifacts"}   # parameters whose path only matches some values


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: SAMPLE.get(m.group(0), "x"), path)


def test_route_role_matrix_enforced(app, client, keys):
    """Call every route with every role and with no key: 401 without, 403 outside its roles, never 401/403 inside."""
    role_key = {"admin": "admin", "approver": "approver", "publisher": "publisher", "viewer": "viewer",
                "ingest": "ingest"}
    checked = 0
    for route, method in api_routes(app):
        if route.path in PUBLIC or route.path.startswith(CONSOLE):
            continue
        allowed = {r.value for r in declared_roles(route) or ()}
        url = _concrete(route.path)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = client.request(method, url, json=body)
        assert r.status_code == 401, (method, url, r.status_code)
        r = client.request(method, url, json=body, headers={"Authorization": "Bearer mlgov_nope_nope"})
        assert r.status_code == 401, (method, url)
        for role, keyname in role_key.items():
            r = client.request(method, url, json=body, headers=keys(keyname))
            if role in allowed:
                assert r.status_code not in (401, 403), (method, url, role, r.text)
            else:
                assert r.status_code == 403, (method, url, role, r.status_code)
                body = r.json()   # problem+json, or MLflow's {"error_code", "message"} on MLflow's paths
                assert role in body.get("detail", body.get("message", "")), body
            checked += 1
    assert checked > 100


def test_console_route_role_matrix(app, client, keys):
    """Every console page with every role's session and with none: to the sign-in page without a session, 403
    outside its roles, never refused inside; every console form refuses a caller without a session."""
    sessions = {role: signed_in(app, keys.plain[role]) for role in ("admin", "approver", "publisher", "viewer")}
    checked = 0
    for route, method in api_routes(app):
        if not route.path.startswith(CONSOLE) or route.path in PUBLIC or route.path.startswith("/console/static"):
            continue
        url = _concrete(route.path)
        r = client.request(method, url, follow_redirects=False)
        assert r.status_code == 303 and "/console/sign-in" in r.headers["location"], (method, url, r.status_code)
        if method != "GET":
            continue
        allowed = {r.value for r in declared_roles(route) or ()}
        assert allowed, (method, url)
        for role, c in sessions.items():
            r = c.get(url, follow_redirects=False)
            if role in allowed:
                assert r.status_code not in (401, 403) and "sign-in" not in r.headers.get("location", ""), \
                    (url, role, r.status_code)
            else:
                assert r.status_code == 403 and "may not open" in r.text, (url, role, r.status_code)
            checked += 1
    assert checked > 40


def test_keys_stored_hashed_and_revocation(client, keys, db):
    plain = keys.plain["viewer"]
    with db.session_scope() as s:
        rows = auth.list_keys(s)
        assert all(plain not in (r.key_hash + r.key_id + r.name) for r in rows)
        row = s.scalar(select(auth.ApiKey).where(auth.ApiKey.name == "test-viewer"))
        assert len(row.key_hash) == 64 and plain.split("_", 2)[2] not in row.key_hash
    assert client.get("/api/v1/model-groups", headers=keys("viewer")).status_code == 200
    assert client.delete("/api/v1/keys/test-viewer", headers=keys("admin")).status_code == 204
    assert_problem(client.get("/api/v1/model-groups", headers=keys("viewer")), 401, "revoked")
    # wrong secret with a real key id
    kid = plain.split("_", 2)[1]
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer mlgov_{kid}_x"}), 401)
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": "Basic abc"}), 401, "bearer")


def test_cached_keys_follow_every_change_to_the_keys_table(client, keys, db):
    """Verified keys are cached per process under the key epoch; any change to a key row (through mlgov or by hand in
    the database) replaces the epoch, so the next request sees it."""
    from sqlalchemy import text

    ok = client.get("/api/v1/model-groups", headers=keys("viewer"))
    assert ok.status_code == 200
    assert client.get("/api/v1/model-groups", headers=keys("viewer")).status_code == 200   # served from the cache
    with db.session_scope() as s:
        before = s.scalar(select(auth.KeyEpoch.epoch))
        s.execute(text("UPDATE auth_api_keys SET active = false WHERE name = 'test-viewer'"))   # an operator, by hand
        assert s.scalar(select(auth.KeyEpoch.epoch)) != before
    assert_problem(client.get("/api/v1/model-groups", headers=keys("viewer")), 401, "revoked")
    with db.session_scope() as s:
        s.execute(text("UPDATE auth_api_keys SET role = 'viewer' WHERE name = 'test-publisher'"))
    assert_problem(client.post("/api/v1/model-groups", json={"name": "x"}, headers=keys("publisher")), 403, "viewer")
    # an unknown key id is refused, and stays refused once a key with another id is created
    fake = "mlgov_0123456789ab_" + "x" * 43
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer {fake}"}), 401, "not valid")
    r = client.post("/api/v1/keys", json={"name": "late", "role": "viewer"}, headers=keys("admin"))
    late = r.json()["key"]
    assert client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer {late}"}).status_code == 200
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer {fake}"}), 401, "not valid")
    # the right key id with a wrong secret is refused from the cache too
    kid = late.split("_", 2)[1]
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer mlgov_{kid}_{'y' * 43}"}),
                   401, "not valid")


def test_keys_api(client, keys):
    r = client.post("/api/v1/keys", json={"name": "ci-bot", "role": "publisher"}, headers=keys("admin"))
    assert r.status_code == 201 and r.json()["key"].startswith("mlgov_")
    new_key = r.json()["key"]
    assert client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    listed = client.get("/api/v1/keys", headers=keys("admin")).json()
    assert "ci-bot" in [k["name"] for k in listed] and all("key" not in k for k in listed)
    assert_problem(client.post("/api/v1/keys", json={"name": "ci-bot", "role": "viewer"}, headers=keys("admin")), 409)
    # a revoked key's name stays taken; the fix said "revoke the old key", which freed nothing (an operator's trial)
    assert client.delete("/api/v1/keys/ci-bot", headers=keys("admin")).status_code == 204
    again = assert_problem(client.post("/api/v1/keys", json={"name": "ci-bot", "role": "viewer"},
                                       headers=keys("admin")), 409, "revoked", "stay taken", "ci-bot-20")
    assert "revoke the old key" not in again["fix"]
    assert_problem(client.post("/api/v1/keys", json={"name": "x", "role": "root"}, headers=keys("admin")), 422, "role")
    assert_problem(client.delete("/api/v1/keys/none", headers=keys("admin")), 404)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer    ", "Token abc"])
def test_malformed_authorization(client, header):
    r = client.get("/api/v1/model-groups", headers={"Authorization": header} if header else {})
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate") == "Bearer"


def test_basic_auth_with_the_key_as_password(client, keys):
    """MLflow's client sends MLFLOW_TRACKING_USERNAME/PASSWORD as HTTP Basic: the password is the key."""
    import base64

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    assert client.get("/api/v1/model-groups", headers=basic("anyone", keys.plain["viewer"])).status_code == 200
    assert_problem(client.get("/api/v1/model-groups", headers=basic("x", "mlgov_nope_nope")), 401, "not valid")
    assert_problem(client.get("/api/v1/model-groups", headers=basic("viewer", "")), 401, "not a Bearer token")
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": "Basic %%%"}), 401, "base64")
    r = client.post("/api/v1/model-groups", json={"name": "g"}, headers=basic("x", keys.plain["viewer"]))
    assert_problem(r, 403, "viewer")
