"""The OpenAPI document says what the server does: security, error responses, bodies FastAPI cannot infer, Allow.

tests/test_schemathesis.py holds a live server to the whole document; these pin the parts a client or the
/docs page relies on directly, and run in a second.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlgov.app import create_app
from mlgov.openapi import SCHEME
from tests.conftest import Keys, make_settings
from tests.helpers import version_body

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
MULTIPART = {
    ("POST", "/api/v1/baselines"): {"file", "statistics", "constraints", "dataset_uri", "type", "config", "model"},
    ("POST", "/api/v1/analyses"): {"baseline_id", "file", "dataset_uri", "drift"},
    ("POST", "/api/v1/clarify/bias"): {"config", "file", "dataset_uri", "endpoint", "start", "end"},
    ("POST", "/api/v1/clarify/explain"): {"model_group", "model_version", "file", "model", "model_format",
                                          "predict_url", "baseline"},
}
RECORDS = [("POST", "/api/v1/endpoints/{name}/capture"), ("POST", "/api/v1/endpoints/{name}/ground-truth")]


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]


def test_bearer_scheme_on_every_protected_operation(doc: dict[str, Any], client: TestClient) -> None:
    assert doc["components"]["securitySchemes"][SCHEME] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"][SCHEME]["description"]}
    for method, path, op in operations(doc):
        if (method, path) in PUBLIC:
            assert "security" not in op and "401" not in op["responses"], (method, path)
            continue
        assert op["security"] == [{SCHEME: []}], (method, path)
        assert {"401", "403"} <= set(op["responses"]), (method, path)
        assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    # the scheme is what the server enforces: a protected operation without the bearer token is a 401
    assert client.get("/api/v1/model-groups").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_error_responses_are_problem_json_with_one_schema(doc: dict[str, Any]) -> None:
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]   # FastAPI's 422 shape is never sent
    for method, path, op in operations(doc):
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        assert "503" in errors, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(errors), (method, path)
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            assert "409" in errors, (method, path)
        if any(p["in"] == "path" for p in op.get("parameters", [])):
            assert {"404", "422"} <= set(errors), (method, path)
        for status, resp in errors.items():
            assert resp["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}, (method, path, status)


def test_every_body_is_declared(doc: dict[str, Any]) -> None:
    ops = {(m, p): op for m, p, op in operations(doc)}
    for method, path, op in operations(doc):
        bodiless = path.endswith(("/stop", "/start", "/retry", "/audit/checkpoint"))
        if method in ("PUT", "PATCH") or (method == "POST" and not bodiless):
            assert "requestBody" in op, (method, path)
    for key, parts in MULTIPART.items():
        form = ops[key]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert parts <= set(form["properties"]), (key, parts - set(form["properties"]))
        assert form["properties"]["file"] == {"type": "string", "format": "binary",
                                              "description": form["properties"]["file"]["description"]}
    for key in RECORDS:
        content = ops[key]["requestBody"]["content"]
        assert content["application/json"]["schema"]["type"] == "array" and "application/x-ndjson" in content
    schema = ops[("POST", "/api/v1/analyses")]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["anyOf"][0]["title"] == "WindowAnalysis"   # the captured-window form, its $defs in components
    assert "DriftSettings" in doc["components"]["schemas"]


def test_every_resource_has_one_path_item(doc: dict[str, Any]) -> None:
    """Enum path parameters are expanded, so a resource's methods are all listed under one path."""
    assert set(doc["paths"]["/api/v1/baselines/{baseline_id}/constraints.json"]) == {"get", "put"}
    assert set(doc["paths"]["/api/v1/lineage/actions/{entity_id}"]) == {"get", "patch", "delete"}
    assert not [p for p in doc["paths"] if "{plural}" in p or (p.endswith("/{name}") and "/baselines/" in p)]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/v1/keys", "GET, POST"),
    ("POST", "/healthz", "GET"),
    ("OPTIONS", "/api/v1/lineage/artifacts/abc", "DELETE, GET, PATCH"),   # two routes serve this path
    ("PATCH", "/api/v1/lineage/associations/abc", "DELETE"),               # not caught by /{plural}/{id}
    ("PATCH", "/api/v1/lineage/query/export", "POST"),
    ("POST", "/api/v1/baselines/abc/constraints.json", "GET, PUT"),
])
def test_405_lists_every_allowed_method(client: TestClient, keys: Keys, method: str, path: str,
                                        allowed: str) -> None:
    r = client.request(method, path, headers=keys("admin"))
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allowed
    assert r.headers["content-type"].startswith("application/problem+json") and allowed in r.json()["fix"]


def test_deleted_webhook_is_gone(db: Any, keys: Keys, tmp_path: Any) -> None:
    h = keys("admin")
    client = TestClient(create_app(make_settings(tmp_path, outbound_allow="127.0.0.1"), db=db))
    wid = client.post("/api/v1/webhooks", headers=h, json={"url": "http://127.0.0.1:9/x", "secret": "s" * 16,
                                                            "events": ["version.registered"]}).json()["id"]
    assert client.delete(f"/api/v1/webhooks/{wid}", headers=h).status_code == 204
    for r in (client.get(f"/api/v1/webhooks/{wid}", headers=h), client.delete(f"/api/v1/webhooks/{wid}", headers=h),
              client.get(f"/api/v1/webhooks/{wid}/deliveries", headers=h)):
        assert r.status_code == 404 and "was deleted" in r.json()["detail"]
    assert client.get("/api/v1/webhooks", headers=h).json() == []


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/audit/events", {"from": "1700000000"}),
    ("/api/v1/lineage/artifacts", {"created_before": "0.5"}),
    ("/api/v1/model-groups/g/versions", {"created_after": "2026-11-20"}),
])
def test_times_are_iso_8601_only(client: TestClient, keys: Keys, path: str, params: dict[str, str]) -> None:
    r = client.get(path, params=params, headers=keys("admin"))
    assert r.status_code == 422 and "ISO-8601" in r.text


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/model-groups/g/versions/1/artifact-trust", {"trusted": 0, "reason": "r"}, "trusted"),
    ("/api/v1/lineage/query", {"start": ["x"], "max_depth": True}, "max_depth"),
])
def test_booleans_and_numbers_are_not_interchangeable(client: TestClient, keys: Keys, path: str,
                                                      body: dict[str, Any], field: str) -> None:
    r = client.post(path, json=body, headers=keys("admin"))
    assert r.status_code == 422 and f"body.{field}" in [e["field"] for e in r.json()["errors"]], r.text


# --- server errors schemathesis found ----------------------------------------------------------------------------

def test_openlineage_long_names_fit_the_lineage_columns(client: TestClient, keys: Keys) -> None:
    """Names up to OpenLineage's declared 1024 characters were a 500 on PostgreSQL (name is varchar(512))."""
    long = "n" * 1024
    event = {"eventType": "COMPLETE", "eventTime": "2026-11-20T10:00:00Z", "producer": "test",
             "run": {"runId": "3f7b1c9e-2d4a-4f4e-9a51-0c2b8d9e7f10"},
             "job": {"namespace": "ns", "name": long, "facets": {"jobType": {"jobType": "J" * 200}}},
             "outputs": [{"namespace": "s" * 1023, "name": long}]}
    r = client.post("/api/v1/lineage/openlineage", json=event, headers=keys("publisher"))
    assert r.status_code == 201, r.text
    action = client.get(f"/api/v1/lineage/actions/{r.json()['action']}", headers=keys("viewer")).json()
    assert action["type"] == "Job" and len(action["name"]) == 512 and action["name"].endswith("…")
    art = client.get(f"/api/v1/lineage/artifacts/{r.json()['outputs'][0]}", headers=keys("viewer")).json()
    assert art["uri"] == f"{'s' * 1023}/{long}" and len(art["name"]) == 512
    event["outputs"][0]["namespace"] = "s" * 1024   # the URI would exceed its 2048 characters: refused up front
    assert client.post("/api/v1/lineage/openlineage", json=event, headers=keys("publisher")).status_code == 422


@pytest.mark.parametrize(("name", "doc"), [
    ("constraints.json", {"features": [{"name": [None, None]}]}),
    ("expectations.json", {"expectations": [{"expectation_type": {}, "type": "expect_column_to_exist"}]}),
    ("expectations.json", {"expectations": [{"type": 5}]}),
])
def test_baseline_documents_refuse_names_that_are_not_strings(client: TestClient, keys: Keys, name: str,
                                                              doc: dict[str, Any]) -> None:
    h = keys("publisher")
    bid = client.post("/api/v1/baselines", files={"file": ("t.csv", b"a,b\n1,x\n2,y\n")}, headers=h).json()["id"]
    r = client.put(f"/api/v1/baselines/{bid}/{name}", json=doc, headers=h)
    assert r.status_code == 422 and "string" in r.json()["detail"], r.text   # the type model or the naming check


def test_expectation_suite_name_is_a_string(client: TestClient, keys: Keys) -> None:
    h = keys("publisher")
    bid = client.post("/api/v1/baselines", files={"file": ("t.csv", b"a,b\n1,x\n2,y\n")}, headers=h).json()["id"]
    r = client.put(f"/api/v1/baselines/{bid}/expectations.json", json={"name": {}, "expectations": []}, headers=h)
    assert r.status_code == 422 and "name must be a string" in r.json()["detail"], r.text


def test_malformed_json_is_400_on_every_json_route(client: TestClient, keys: Keys, doc: dict[str, Any]) -> None:
    """Every operation that takes a JSON body answers a body that does not parse with 400, whether FastAPI or
    the route itself parses it; path parameters name real resources so no 404 comes first."""
    h = keys("admin")
    assert client.post("/api/v1/model-groups", json={"name": "churn"}, headers=h).status_code == 201
    assert client.post("/api/v1/model-groups/churn/versions", json=version_body(1), headers=h).status_code == 201
    assert client.post("/api/v1/endpoints", headers=h, json={
        "name": "ep", "model_group": "churn", "model_version": 1,
        "schema": {"features": [{"name": "a"}]}}).status_code == 201
    baseline = client.post("/api/v1/baselines", files={"file": ("t.csv", b"a\n1\n2\n")}, headers=h).json()["id"]
    path_values = {"{group}": "churn", "{version}": "1", "{baseline_id}": baseline, "{name}": "ep",
                   "{entity_id}": "x", "{webhook_id}": "x"}
    checked = []
    for method, path, op in operations(doc):
        if "application/json" not in op.get("requestBody", {}).get("content", {}):
            continue
        url = path
        for param, value in path_values.items():
            url = url.replace(param, value)
        r = client.request(method, url, content=b'{"a": ', headers={**h, "content-type": "application/json"})
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert r.json()["title"] == "Malformed JSON" and r.headers["content-type"] == "application/problem+json"
        checked.append((method, path))
    assert len(checked) > 30 and ("PUT", "/api/v1/baselines/{baseline_id}/constraints.json") in checked
    assert ("POST", "/api/v1/endpoints/{name}/capture") in checked and ("POST", "/api/v1/analyses") in checked


def test_every_string_the_input_policy_checks_for_nul_says_so(doc: dict[str, Any]) -> None:
    """mlgov.inputs answers 422 to a NUL in any query parameter and in any key of a JSON object; a schema that
    allowed it would call valid what the server refuses (schemathesis found both: `?source=…%00…` on
    /lineage/associations, a NUL in a key of a version's `metrics`)."""
    from mlgov.openapi import NO_NUL

    def strings(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        if not isinstance(node, dict):
            return []
        here = [node] if node.get("type") == "string" and not {"enum", "const", "format"} & set(node) else []
        return here + [s for v in node.values() for s in strings(v)]

    def key_rules(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [s for v in node for s in key_rules(v)]
        if not isinstance(node, dict):
            return []
        here = [node["propertyNames"]] if isinstance(node.get("propertyNames"), dict) else []
        return here + [s for v in node.values() for s in key_rules(v)]

    params = [p["schema"] for _, _, op in operations(doc) for p in op.get("parameters", []) if p["in"] == "query"]
    unguarded = [s for s in strings(params) if "pattern" not in s]
    assert unguarded == [], unguarded[:5]
    assert all(rule.get("pattern") == NO_NUL or {"enum", "const"} & set(rule)
               for rule in key_rules(doc["components"]["schemas"]))
    metrics = doc["components"]["schemas"]["VersionCreate"]["properties"]["metrics"]["propertyNames"]
    assert metrics == {"maxLength": 256, "minLength": 1, "pattern": NO_NUL}
