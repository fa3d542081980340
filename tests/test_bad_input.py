"""Bad input on every route: a clear 4xx problem+json with a `fix`, and nothing stored (rows or files).

Routes are enumerated from the app itself, so a route added later is covered by the depth, malformed-JSON
and 405 cases without anyone remembering to list it. Runs on SQLite and PostgreSQL (conftest).
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgov.db import Base
from tests.helpers import create_group, register

API = "/api/v1"
DEEP = b"[" * 100_000 + b"]" * 100_000
FEATURES = [{"name": "age", "type": "Fractional"}, {"name": "state", "type": "String"}]
CSV = b"age,state\n" + b"".join(b"%d,%s\n" % (20 + i % 50, [b"CA", b"NY"][i % 2]) for i in range(200))
CONSTRAINTS = {"version": 0.0, "features": [{"name": "age", "inferred_type": "Fractional", "completeness": 1.0}]}
STATISTICS = {"version": 0, "dataset": {"item_count": 2}, "features": [
    {"name": "age", "inferred_type": "Fractional", "numerical_statistics": {
        "common": {"num_present": 2, "num_missing": 0}, "mean": 1.5, "sum": 3.0, "std_dev": 0.5, "min": 1.0,
        "max": 2.0}}]}
BIAS_CONFIG = {"label": "y", "label_values_or_threshold": [1], "facet": [{"name_or_index": "state"}],
               "methods": {"pre_training_bias": {"methods": "all"}}}


# --- the world every case runs against, and what "nothing stored" means -------------------------------------------

@pytest.fixture
def world(client: Any, keys: Any) -> dict[str, Any]:
    pub = keys("publisher")
    create_group(client, pub, "churn")
    register(client, pub, "churn", 1)
    r = client.post(f"{API}/endpoints", headers=pub, json={
        "name": "ep", "model_group": "churn", "model_version": 1, "schema": {"features": FEATURES}})
    assert r.status_code == 201, r.text
    r = client.post(f"{API}/baselines", files={"file": ("train.csv", CSV, "text/csv")}, headers=pub)
    assert r.status_code == 201, r.text
    return {"baseline": r.json()["id"], "pub": pub, "admin": keys("admin"), "ingest": keys("ingest")}


def snapshot(db: Any, app: Any) -> tuple[dict[str, int], list[str], str]:
    """Row counts of every table, every object-store key, and the baseline constraints as stored."""
    from sqlalchemy import func, select

    with db.session_scope() as s:
        counts = {t.name: int(s.scalar(select(func.count()).select_from(t)) or 0) for t in Base.metadata.sorted_tables}
    store = app.state.get_store()
    keys = sorted(store.list(""))
    cons = "".join(store.get(k).decode() for k in keys if k.endswith("/constraints.json"))
    return counts, keys, cons


def refused(r: Any, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["status"] == status and body["detail"] and body.get("fix"), body
    text = json.dumps(body).lower()
    for n in needles:
        assert n.lower() in text, (n, body)
    return body


# Other protocols answer bad input in their own shape, tested with their clients: MLflow's error_code JSON
# (test_mlflow.py), the console's HTML messages (tests/console). This file holds the native API to problem+json.
OTHER_PROTOCOLS = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/console")


def native(path: str) -> bool:
    return path != "/" and not path.startswith(OTHER_PROTOCOLS)


def write_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route that takes a request body, straight from the app's route table."""
    out = []
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute) and native(rc.path):
            for m in sorted(rc.methods & {"POST", "PUT", "PATCH"}):
                out.append((m, rc.path))
    return out


def fill(path: str, w: dict[str, Any]) -> str:
    values = {"group": "churn", "version": "1", "name": "ep", "baseline_id": w["baseline"]}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


# --- JSON nested 100,000 deep, and malformed JSON, on every body-taking route -----------------------------------

def test_route_table_is_enumerated(app: Any) -> None:
    routes = {p for _, p in write_routes(app)}
    for expected in (f"{API}/endpoints/{{name}}/capture", f"{API}/endpoints/{{name}}/ground-truth",
                     f"{API}/analyses", f"{API}/baselines", f"{API}/lineage/artifacts", f"{API}/model-groups",
                     f"{API}/baselines/{{baseline_id}}/constraints.json", f"{API}/clarify/bias"):
        assert expected in routes, (expected, sorted(routes))


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson"])
def test_deep_json_refused_on_every_route(client: Any, app: Any, db: Any, world: dict[str, Any], ctype: str) -> None:
    before = snapshot(db, app)
    for method, path in write_routes(app):
        r = client.request(method, fill(path, world), content=DEEP, headers={**world["admin"], "content-type": ctype})
        refused(r, 422, "100000 levels", "MLGOV_MAX_JSON_DEPTH")
    assert snapshot(db, app) == before


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_under_another_content_type_is_named_as_such(client: Any, app: Any, db: Any,
                                                                  world: dict[str, Any], ctype: str | None) -> None:
    """A JSON object sent as text/plain (or curl -d's form type) was refused as "body: Input should be a valid
    dictionary", blaming a body that was fine: routes that take a JSON model now answer 415 naming the type."""
    before = snapshot(db, app)
    headers = {**world["admin"], **({"content-type": ctype} if ctype else {})}
    r = client.post(f"{API}/model-groups", content=b'{"name": "by-text"}', headers=headers)
    refused(r, 415, f"Content-Type is {ctype or 'missing'}", "application/json")
    assert snapshot(db, app) == before
    for method, path in write_routes(app):   # (a route that takes no body may succeed)
        r = client.request(method, fill(path, world), content=b'{"a": 1}', headers=headers)
        assert r.status_code < 500 and "valid dictionary" not in r.text, (method, path, r.text)


def test_malformed_json_is_400_on_every_route(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    before = snapshot(db, app)
    for method, path in write_routes(app):
        for raw in (b'{"name": ', b"{'a': 1}", b"\xff\xfe{}"):
            r = client.request(method, fill(path, world), content=raw,
                               headers={**world["admin"], "content-type": "application/json"})
            refused(r, 400, "not valid JSON")
    assert snapshot(db, app) == before


def test_deep_json_in_parts_and_payloads(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    pub, deep = world["pub"], DEEP.decode()
    before = snapshot(db, app)
    cases = [
        ("baselines", {"statistics": ("s.json", DEEP), "constraints": ("c.json", json.dumps(CONSTRAINTS).encode())}),
        ("baselines", {"statistics": ("s.json", json.dumps(STATISTICS).encode()), "constraints": ("c.json", DEEP)}),
        ("baselines", {"file": ("d.csv", CSV), "config": ("c.json", DEEP), "type": (None, "ModelBias")}),
        ("analyses", {"file": ("d.csv", CSV), "baseline_id": (None, world["baseline"]), "drift": (None, deep)}),
        ("clarify/bias", {"file": ("d.csv", CSV), "config": ("c.json", DEEP)}),
    ]
    for route, files in cases:
        refused(client.post(f"{API}/{route}", files=files, headers=pub), 422, "levels deep", "MLGOV_MAX_JSON_DEPTH")
    # inside a capture record the payload is a string; a deep one rejects that record alone, nothing is stored
    rec = {"captureData": {"endpointInput": {"data": deep, "encoding": "JSON"}},
           "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-11-22T10:00:00Z"}}
    # (a batch of that one record is wholly rejected: 422 with the reason)
    r = client.post(f"{API}/endpoints/ep/capture", json=[rec], headers=world["ingest"])
    assert "levels deep" in refused(r, 422, "levels deep")["rejected"][0]["reason"]
    gt = {"groundTruthData": {"data": deep, "encoding": "JSON"}, "eventMetadata": {"eventId": "e1"}}
    r = client.post(f"{API}/endpoints/ep/ground-truth", json=[gt], headers=world["ingest"])
    assert "levels deep" in refused(r, 422, "levels deep")["rejected"][0]["reason"]
    assert snapshot(db, app) == before


def test_depth_limit_is_a_setting(tmp_path: Any, db: Any, keys: Any) -> None:
    from fastapi.testclient import TestClient

    from mlgov import inputs
    from mlgov.app import create_app
    from tests.conftest import make_settings

    try:
        with TestClient(create_app(make_settings(tmp_path, max_json_depth=8), db=db)) as c:
            body = {"name": "g", "tags": {"a": [[[[[[[[1]]]]]]]]}}
            refused(c.post(f"{API}/model-groups", json=body, headers=keys("publisher")), 422, "the limit is 8")
    finally:
        inputs.configure(64, 2000)


# --- NaN / Infinity in stored JSON documents --------------------------------------------------------------------

NAN_BODIES = [
    ("POST", f"{API}/lineage/artifacts", {"type": "Dataset", "uri": "s3://d/x.csv", "properties": {"rows": "NAN"}},
     "body.properties.rows"),
    ("POST", f"{API}/model-groups/churn/versions", "VERSION", "body.metrics.auc"),
    ("POST", f"{API}/model-groups", {"name": "g2", "tags": {"t": "NAN"}}, "body.tags.t"),
    ("POST", f"{API}/endpoints/ep/capture", [{"captureData": {"endpointInput": {"data": "1,CA", "encoding": "CSV"}},
                                              "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-22T10:00:00Z",
                                                                "score": "NAN"}}],
     "body[0].eventMetadata.score"),
    ("POST", f"{API}/endpoints/ep/ground-truth", [{"groundTruthData": {"data": "1", "encoding": "CSV"},
                                                   "eventMetadata": {"eventId": "e", "weight": "NAN"}}],
     "body[0].eventMetadata.weight"),
    ("PUT", f"{API}/baselines/BASELINE/constraints.json",
     {**CONSTRAINTS, "monitoring_config": {"datatype_check_threshold": "NAN"}},
     "body.monitoring_config.datatype_check_threshold"),
]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("case", NAN_BODIES, ids=[c[1].rsplit("/", 1)[-1] for c in NAN_BODIES])
def test_non_standard_numbers_refused_with_their_path(client: Any, app: Any, db: Any, world: dict[str, Any],
                                                      case: tuple[str, str, Any, str], token: str) -> None:
    from tests.helpers import version_body

    method, path, body, where = case
    body = {**version_body(2), "metrics": {"auc": "NAN"}} if body == "VERSION" else body
    raw = json.dumps(body).replace('"NAN"', token).encode()
    before = snapshot(db, app)
    r = client.request(method, path.replace("BASELINE", world["baseline"]), content=raw,
                       headers={**world["admin"], "content-type": "application/json"})
    refused(r, 422, where, "not a JSON number")
    assert snapshot(db, app) == before


def test_non_standard_numbers_in_uploaded_documents(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    before = snapshot(db, app)
    stats = json.dumps(STATISTICS).replace("1.5", "NaN").encode()
    cons = json.dumps({**CONSTRAINTS, "features": [{"name": "age", "completeness": 1}]}).replace(": 1}", ": Infinity}")
    for files, where in [
        ({"statistics": ("s.json", stats), "constraints": ("c.json", json.dumps(CONSTRAINTS).encode())},
         "statistics.features[0].numerical_statistics.mean"),
        ({"statistics": ("s.json", json.dumps(STATISTICS).encode()), "constraints": ("c.json", cons.encode())},
         "constraints.features[0].completeness"),
    ]:
        refused(client.post(f"{API}/baselines", files=files, headers=world["pub"]), 422, where)
    ndjson = b'{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "e", "w": NaN}}\n'
    refused(client.post(f"{API}/endpoints/ep/ground-truth", content=ndjson,
                        headers={**world["ingest"], "content-type": "application/x-ndjson"}), 422,
            "body line 1.eventMetadata.w")
    assert snapshot(db, app) == before


# --- NUL characters ---------------------------------------------------------------------------------------------

def test_nul_refused_in_bodies_fields_and_parameters(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    pub, nul = world["pub"], "a\u0000b"
    before = snapshot(db, app)
    for path, body, where in [
        ("model-groups", {"name": "g3", "description": nul}, "body.description"),
        ("lineage/artifacts", {"type": "Dataset", "uri": "s3://d/y.csv", "name": nul}, "body.name"),
        ("lineage/artifacts", {"type": "Dataset", "uri": "s3://d/y", "properties": {"k": nul}}, "body.properties.k"),
        ("lineage/artifacts", {"type": "Dataset", "uri": "s3://d/y", "properties": {nul: 1}}, "body.properties"),
        ("endpoints/ep/capture", [{"captureData": {"endpointInput": {"data": "1,CA", "encoding": "CSV"}},
                                   "eventMetadata": {"eventId": nul, "inferenceTime": "2026-11-22T10:00:00Z"}}],
         "body[0].eventMetadata.eventId"),
    ]:
        refused(client.post(f"{API}/{path}", json=body, headers=world["admin"]), 422, where, "NUL")
    refused(client.post(f"{API}/baselines", data={"name": nul}, files={"file": ("d.csv", CSV)}, headers=pub), 422,
            "'name'", "NUL")
    refused(client.post(f"{API}/analyses", data={"baseline_id": nul}, files={"file": ("d.csv", CSV)}, headers=pub),
            422, "baseline_id", "NUL")
    refused(client.get(f"{API}/model-groups/a%00b", headers=pub), 422, "path parameter 'group'", "NUL")
    refused(client.get(f"{API}/audit/events?actor=a%00b", headers=world["admin"]), 422, "query parameter 'actor'")
    refused(client.post(f"{API}/baselines", files={"file": ("d.csv", b"age,state\n1,C\x00A\n")}, headers=pub), 422,
            "NUL byte", "row 2")
    assert snapshot(db, app) == before


# --- integers past 64 and 32 bits ---------------------------------------------------------------------------------

BIG64, BIG32 = str(2**64), str(2**40)


def int_query_routes(app: Any) -> list[tuple[str, str]]:
    """(path, parameter) of every GET route taking an integer query parameter (offset, limit, version …)."""
    from mlgov.inputs import _int_params

    out = []
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute) and "GET" in rc.methods and native(rc.path):
            out += [(rc.path, name) for where, name, _ in _int_params(rc.original_route.dependant) if where == "query"]
    return out


def test_wide_integers_in_query_and_path(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    routes = int_query_routes(app)
    assert (f"{API}/audit/events", "offset") in routes and len(routes) >= 8
    before = snapshot(db, app)
    for path, name in routes:
        for big in (BIG64, "-" + BIG64, "9" * 5000):
            r = client.get(fill(path, world), params={name: big}, headers=world["admin"])
            refused(r, 422, f"query parameter '{name}'", "outside")
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute) and "{version}" in rc.path and native(rc.path):
            for method in sorted(rc.methods):
                for big in (BIG64, BIG32):
                    r = client.request(method, fill(rc.path, world).replace("/versions/1", f"/versions/{big}"),
                                       json={}, headers=world["admin"])
                    refused(r, 422, "path parameter 'version'", "2147483647")
    assert snapshot(db, app) == before


def test_wide_integers_in_bodies_and_form_fields(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    before = snapshot(db, app)
    endpoint = {"name": "ep2", "model_group": "churn", "schema": {"features": FEATURES}}
    refused(client.post(f"{API}/endpoints", json={**endpoint, "model_version": 2**40}, headers=world["pub"]), 422,
            "model_version", "2147483647")
    refused(client.post(f"{API}/endpoints", content=json.dumps({**endpoint, "model_version": 10**30}),
                        headers={**world["pub"], "content-type": "application/json"}), 422, "body.model_version",
            "64-bit")
    refused(client.post(f"{API}/lineage/artifacts", json={"type": "Dataset", "uri": "s3://d/z", "properties": {
        "n": 2**64}}, headers=world["pub"]), 422, "body.properties.n", "64-bit")
    refused(client.post(f"{API}/baselines", headers=world["pub"], data={
        "type": "ModelExplainability", "model_group": "churn", "model_version": BIG64},
        files={"file": ("d.csv", CSV)}), 422, "model_version", "2147483647")
    assert snapshot(db, app) == before


def test_column_guard_names_the_field_on_direct_writes(db: Any) -> None:
    """The database layer itself refuses what a column cannot hold, whichever door the value came through."""
    from mlgov.db import utcnow
    from mlgov.errors import Invalid
    from monitor.orm import Baseline

    for field, value, needle in [("row_count", 2**31, "2147483647"), ("name", "x\x00", "NUL"),
                                 ("settings", {"t": float("nan")}, "settings.t"), ("source", "x" * 17, "at most 16")]:
        with db.session_scope() as s:
            row = Baseline(id=f"b{len(field)}", source="computed", prefix="p", created_by="t", created_at=utcnow())
            setattr(row, field, value)
            s.add(row)
            with pytest.raises(Invalid, match=needle):
                s.flush()
            s.rollback()


# --- CSV uploads: not UTF-8, too wide ---------------------------------------------------------------------------

def csv_routes(world: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every upload that carries a CSV: (route, multipart with the CSV under CSV_PART)."""
    cfg = ("c.json", json.dumps(BIAS_CONFIG).encode())
    return [
        ("baselines", {}),
        ("baselines", {"type": (None, "ModelQuality"), "problem_type": (None, "Regression")}),
        ("baselines", {"type": (None, "ModelBias"), "config": cfg}),
        ("baselines", {"type": (None, "ModelExplainability"), "model_group": (None, "churn"),
                       "model_version": (None, "1")}),
        ("analyses", {"baseline_id": (None, world["baseline"])}),
        ("clarify/bias", {"config": cfg}),
        ("clarify/explain", {"model_group": (None, "churn"), "model_version": (None, "1")}),
    ]


def test_csv_not_utf8_names_row_and_byte(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    latin1 = "age,state\n20,CA\n21,Québec\n".encode("latin-1")
    offset = latin1.index(b"\xe9")
    before = snapshot(db, app)
    for route, extra in csv_routes(world):
        body = refused(client.post(f"{API}/{route}", files={**extra, "file": ("d.csv", latin1)}, headers=world["pub"]),
                       422, "not UTF-8", f"byte offset {offset}", "row 3")
        assert body["row"] == 3 and body["offset"] == offset
    refused(client.post(f"{API}/clarify/explain", headers=world["pub"], files={
        "model_group": (None, "churn"), "model_version": (None, "1"), "file": ("d.csv", CSV),
        "baseline": ("b.csv", latin1)}), 422, "not UTF-8", "row 3")
    assert snapshot(db, app) == before


def test_too_many_columns(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    wide = (",".join(f"c{i}" for i in range(2001)) + "\n" + ",".join("1" for _ in range(2001)) + "\n").encode()
    before = snapshot(db, app)
    for route, extra in csv_routes(world):
        refused(client.post(f"{API}/{route}", files={**extra, "file": ("d.csv", wide)}, headers=world["pub"]), 422,
                "2001 columns", "MLGOV_MAX_COLUMNS")
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({f"c{i}": [1.0] for i in range(2001)}), buf)
    refused(client.post(f"{API}/baselines", files={"file": ("d.parquet", buf.getvalue())}, headers=world["pub"]),
            422, "2001 columns")
    assert snapshot(db, app) == before


def test_a_json_body_the_guard_screened_is_not_screened_again(client: Any, monkeypatch: Any,
                                                               world: dict[str, Any]) -> None:
    """The MLflow adapter and the native JSON routes scanned and parsed a body the guard had screened, and looked
    for repeated keys in it a second time (one more parse of every body): the guard's screening stands now."""
    from mlgov import inputs

    seen: list[bytes] = []
    real = inputs.check_unique_keys
    monkeypatch.setattr(inputs, "check_unique_keys", lambda raw, what: (seen.append(raw), real(raw, what))[1])
    r = client.post("/api/2.0/mlflow/registered-models/create", headers=world["pub"], json={"name": "once"})
    assert r.status_code == 200, r.text
    r = client.post(f"{API}/analyses", headers=world["pub"], json={"baseline_id": world["baseline"],
                                                                 "data": [{"age": 30}]})
    assert len(seen) == 2, seen   # one check per body, by the guard
    # a body the guard does not screen (a DELETE's) is still checked where it is read
    r = client.request("DELETE", "/api/2.0/mlflow/registered-models/delete-tag", headers={
        **world["pub"], "content-type": "application/json"}, content=b'{"name": "once", "key": "a", "key": "b"}')
    assert r.status_code == 400 and "repeats the key 'key'" in r.json()["message"], r.text
    # a text the guard's syntax check passed and the route's parser refuses is a 400 as from `loads`, never a 500
    monkeypatch.setattr(inputs, "_parse", lambda raw, clean=False: (_ for _ in ()).throw(ValueError("refused")))
    r = client.post("/api/2.0/mlflow/registered-models/create", headers=world["pub"], json={"name": "twice"})
    assert r.status_code == 400 and "not valid JSON" in r.text, r.text


def test_a_repeated_key_is_refused_not_read_as_its_last_value(client: Any, app: Any, db: Any, keys: Any,
                                                              world: dict[str, Any]) -> None:
    """{"status": "Rejected", …, "status": "Approved"} approved the version: the parser took the last value, where
    a log, a proxy or a reviewer reading the first saw a rejection."""
    before = snapshot(db, app)
    r = client.post(f"{API}/model-groups/churn/versions/1/approval", headers={
        **keys("approver"), "content-type": "application/json"},
        content=b'{"status": "Rejected", "comment": "c", "status": "Approved"}')
    refused(r, 422, "repeats the key 'status'", "send 'status' once")
    refused(client.post(f"{API}/model-groups", headers={**world["pub"], "content-type": "application/json"},
                        content=b'{"name": "a", "tags": {"t": "1", "t": "2"}, "name": "b"}'), 422, "repeats the key")
    # a reviewer's bypasses: 70,000 spaces of padding (the check stopped at 64 KiB), and a route reading the raw
    # body under another content type (constraints.json as text/plain stored the last value)
    padded = b'{"status": "Rejected", "comment": "c", "status": "Approved"}' + b" " * 70_000
    refused(client.post(f"{API}/model-groups/churn/versions/1/approval", content=padded, headers={
        **keys("approver"), "content-type": "application/json"}), 422, "repeats the key 'status'")
    cons = client.get(f"{API}/baselines/{world['baseline']}/constraints.json", headers=world["pub"]).text
    twice = cons.rstrip()[:-1] + ', "features": []}'
    refused(client.put(f"{API}/baselines/{world['baseline']}/constraints.json", content=twice.encode(),
                       headers={**world["pub"], "content-type": "text/plain"}), 422, "repeats the key 'features'")
    assert snapshot(db, app) == before
    assert client.get(f"{API}/model-groups/churn/versions/1", headers=world["pub"]).json()["approval_status"] == \
        "PendingManualApproval"
    # the same key in two objects is no repeat
    assert client.post(f"{API}/model-groups", headers=world["pub"], json={
        "name": "b", "tags": {"name": "x"}}).status_code == 201


def test_parquet_columns_that_cannot_be_profiled(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    """A list, struct or bytes column was cast to text and failed (a 500); a repeated column name failed in Arrow's
    reader with its internals' words (FieldRef, __fragment_index)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(table: pa.Table) -> bytes:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    ok = pa.array([1.0, 2.0])
    cases = [(pa.table({"x": ok, "tags": pa.array([[1, 2], [3]])}), "'tags' (list<element: int64>)"),
             (pa.table({"x": ok, "raw": pa.array([b"\x00\xff", b"a"])}), "'raw' (binary)"),
             (pa.table({"x": ok, "s": pa.array([{"a": 1}, {"a": 2}])}), "'s' (struct<a: int64>)"),
             (pa.Table.from_arrays([ok, ok], names=["a", "a"]), "duplicate column names: ['a']")]
    # a CSV whose header starts with PAR1 is a CSV (only Parquet's magic at both ends makes a Parquet file)
    r = client.post(f"{API}/clarify/bias", headers=world["pub"], files={
        "config": ("c.json", json.dumps(BIAS_CONFIG).encode()), "file": ("d.csv", b"PAR1_score,y,state\n1,1,CA\n")})
    assert "Parquet" not in r.text, r.text
    # the monitoring routes too: they read it as Parquet ("could not read the parquet data")
    r = client.post(f"{API}/baselines", headers=world["pub"],   # starting and ending with PAR1, no newline
                    files={"file": ("d.csv", b"PAR1_score,y,state\n1,1,CA\n2,0,NYPAR1")})
    assert r.status_code == 201 and r.json()["feature_count"] == 3, r.text
    stats = client.get(f"{API}/baselines/{r.json()['id']}/statistics.json", headers=world["pub"]).json()
    assert [f["name"] for f in stats["features"]] == ["PAR1_score", "y", "state"]
    before = snapshot(db, app)
    for route, extra in csv_routes(world):
        reads_parquet = route == "analyses" or (route == "baselines" and extra.get(
            "type", (None, "DataQuality"))[1] in ("DataQuality", "ModelQuality"))
        for table, needle in cases:   # Clarify reads CSV: it said "a NUL byte" of a Parquet file
            refused(client.post(f"{API}/{route}", files={**extra, "file": ("d.parquet", parquet(table))},
                                headers=world["pub"]), 422, needle if reads_parquet else "is a Parquet file")
    assert snapshot(db, app) == before


def test_upload_routes_do_not_compute_on_the_event_loop(app: Any) -> None:
    """An `async def` route runs on the event loop: those that take bodies must hand their work to a worker thread
    (directly, or through a group commit, whose batches run in one)."""
    for rc in iter_route_contexts(app.routes):
        route = rc.original_route
        if isinstance(route, APIRoute) and inspect.iscoroutinefunction(route.endpoint) \
                and route.path != "/healthz":   # async on purpose: no body, no work, alive while every thread is busy
            assert _hands_off(route.endpoint), route.path


def _hands_off(fn: Any) -> bool:
    """Whether ``fn`` hands its work to a worker thread: itself, or through a helper it calls (of its module, or
    mlgov's own such as ``auth.computed_then_recorded``)."""
    source = inspect.getsource(fn)
    if "run_in_threadpool" in source or "group_commit." in source:
        return True
    return any(inspect.isfunction(g) and g.__module__.split(".")[0] in (fn.__module__.split(".")[0], "mlgov")
               and f"{name}(" in source
               and "run_in_threadpool" in inspect.getsource(g) for name, g in fn.__globals__.items())


# --- constraints.json typed like SageMaker's -----------------------------------------------------------------------

@pytest.mark.parametrize("feature,where", [
    ({"name": "age", "completeness": "x"}, "features.0.completeness"),
    ({"name": "age", "completeness": 2}, "features.0.completeness"),
    ({"name": "age", "inferred_type": "Float"}, "features.0.inferred_type"),
    ({"name": "age", "num_constraints": {"is_non_negative": "yes"}}, "features.0.num_constraints.is_non_negative"),
    ({"name": "age", "string_constraints": {"domains": "CA"}}, "features.0.string_constraints.domains"),
    ({"name": 5}, "features.0.name"),
])
def test_constraints_with_wrong_types_refused(client: Any, app: Any, db: Any, world: dict[str, Any],
                                              feature: dict[str, Any], where: str) -> None:
    url = f"{API}/baselines/{world['baseline']}/constraints.json"
    before = snapshot(db, app)
    body = refused(client.put(url, json={**CONSTRAINTS, "features": [feature]}, headers=world["pub"]), 422, where)
    assert any(e["field"] == where for e in body["errors"])
    bad_config = {**CONSTRAINTS, "monitoring_config": {"evaluate_constraints": "On",
                                                       "distribution_constraints": {"comparison_threshold": "0.1"}}}
    body = refused(client.put(url, json=bad_config, headers=world["pub"]), 422)
    assert {e["field"] for e in body["errors"]} == {"monitoring_config.evaluate_constraints",
                                                    "monitoring_config.distribution_constraints.comparison_threshold"}
    refused(client.post(f"{API}/baselines", headers=world["pub"], files={
        "statistics": ("s.json", json.dumps(STATISTICS).encode()),
        "constraints": ("c.json", json.dumps({**CONSTRAINTS, "features": [feature]}).encode())}), 422, where)
    assert snapshot(db, app) == before


def test_sagemaker_constraints_still_accepted(client: Any, world: dict[str, Any]) -> None:
    from pathlib import Path

    fixtures = Path(__file__).resolve().parent / "fixtures" / "sagemaker"
    fixture = fixtures / "data_quality_constraints_suggested.json"
    doc = json.loads(fixture.read_bytes())
    imported = client.post(f"{API}/baselines", headers=world["pub"], files={   # a baseline of the same columns
        "statistics": ("statistics.json", (fixtures / "data_quality_statistics.json").read_bytes()),
        "constraints": ("constraints.json", fixture.read_bytes())})
    assert imported.status_code == 201, imported.text
    url = f"{API}/baselines/{imported.json()['id']}/constraints.json"
    r = client.put(url, json=doc, headers=world["pub"])
    assert r.status_code == 200, r.text
    assert client.get(url, headers=world["pub"]).json()["features"] == doc["features"]


# --- 405 --------------------------------------------------------------------------------------------------------

def test_405_carries_allow_on_every_path(client: Any, app: Any, world: dict[str, Any]) -> None:
    methods: dict[str, set[str]] = {}
    for rc in iter_route_contexts(app.routes):
        if rc.path and rc.methods and native(rc.path):
            methods.setdefault(rc.path, set()).update(rc.methods)
    assert len(methods) > 30
    for path, allowed in methods.items():
        wrong = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in allowed)
        r = client.request(wrong, fill(path, world), headers=world["admin"])
        if r.status_code != 405:   # a more specific sibling path matched first (e.g. /baselines/{id}/{name})
            continue
        refused(r, 405, "allow")
        assert set(r.headers["allow"].split(", ")) >= allowed - {"HEAD"}, (path, r.headers["allow"])


@pytest.mark.parametrize("change,where", [
    ({"dataset": {"item_count": "x"}}, "dataset.item_count"),
    ({"dataset": {"item_count": 2**40}}, "dataset.item_count"),
    ({"features": [{"name": "age", "numerical_statistics": {"mean": "x"}}]}, "features.0.numerical_statistics.mean"),
    ({"features": [{"name": "age", "inferred_type": "Float"}]}, "features.0.inferred_type"),
    ({"features": [{"name": "s", "string_statistics": {
        "distribution": {"categorical": {"buckets": [{"value": "a"}]}}}}]},
     "features.0.string_statistics.distribution.categorical.buckets.0.count"),
])
def test_imported_statistics_with_wrong_types_refused(client: Any, app: Any, db: Any, world: dict[str, Any],
                                                      change: dict[str, Any], where: str) -> None:
    before = snapshot(db, app)
    body = refused(client.post(f"{API}/baselines", headers=world["pub"], files={
        "statistics": ("s.json", json.dumps({**STATISTICS, **change}).encode()),
        "constraints": ("c.json", json.dumps(CONSTRAINTS).encode())}), 422, where)
    assert any(e["field"] == where for e in body["errors"])
    assert snapshot(db, app) == before


# --- on a real server process ----------------------------------------------------------------------------------

@pytest.mark.live
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_live_server_refuses_bad_input_and_keeps_serving_during_uploads(backend: str, tmp_path: Any) -> None:
    """Real sockets: the bad inputs that gave 500 are 4xx, and a heavy upload does not stall other requests
    (parsing runs in worker threads, not on the event loop)."""
    import threading

    import httpx
    from sqlalchemy import func, select

    from mlgov import auth
    from mlgov.app import create_app
    from mlgov.db import Database
    from monitor.orm import Baseline
    from tests.conftest import make_settings
    from tests.infra import LiveServer, fresh_database, upgrade

    with fresh_database(backend, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        try:
            with db.session_scope() as s:
                pub = {"Authorization": f"Bearer {auth.create_key(s, 'pub', 'publisher', actor='test')[1]}"}
            with LiveServer(create_app(make_settings(tmp_path), db=db)) as srv, \
                    httpx.Client(base_url=srv.url, timeout=300) as c:
                as_json = {**pub, "content-type": "application/json"}
                refused(c.post(f"{API}/model-groups", content=DEEP, headers=as_json), 422, "levels deep")
                refused(c.post(f"{API}/model-groups", content=b'{"name": "g", "tags": {"a": NaN}}', headers=as_json),
                        422, "body.tags.a")
                wide = (",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join(["1"] * 10_000) + "\n").encode()
                refused(c.post(f"{API}/baselines", files={"file": ("w.csv", wide)}, headers=pub), 422,
                        "10000 columns", "MLGOV_MAX_COLUMNS")
                refused(c.post(f"{API}/baselines", files={"file": ("l.csv", "a\nQuébec\n".encode("latin-1"))},
                               headers=pub), 422, "not UTF-8", "row 2")
                with db.session_scope() as s:
                    assert s.scalar(select(func.count()).select_from(Baseline)) == 0

                heavy = (",".join(f"c{i}" for i in range(1900)) + "\n"
                         + "".join(",".join(str((r * 7 + i) % 97) for i in range(1900)) + "\n" for r in range(300)))
                result: dict[str, int] = {}

                def upload() -> None:
                    with httpx.Client(base_url=srv.url, timeout=300) as cc:
                        result["status"] = cc.post(f"{API}/baselines", files={"file": ("h.csv", heavy.encode())},
                                                   headers=pub).status_code

                worker = threading.Thread(target=upload)
                worker.start()
                served = 0
                while worker.is_alive():
                    served += c.get("/healthz").status_code == 200
                worker.join()
                assert result["status"] == 201
                assert served >= 5, served   # a blocked event loop would answer none until the upload finished
        finally:
            db.dispose()


def test_capture_payloads_with_huge_numbers_are_rejected_records_not_500(client: Any, app: Any, db: Any,
                                                                         world: dict[str, Any]) -> None:
    def rec(data: str, eid: str) -> dict[str, Any]:
        return {"captureData": {"endpointInput": {"data": data, "encoding": "JSON"}},
                "eventMetadata": {"eventId": eid, "inferenceTime": "2026-11-22T10:00:00Z"}}

    before = snapshot(db, app)
    r = client.post(f"{API}/endpoints/ep/capture", json=[rec("[" + "9" * 5000 + ', "CA"]', "e1")],
                    headers=world["ingest"])
    assert "not valid JSON" in refused(r, 422, "not valid JSON")["rejected"][0]["reason"]
    assert snapshot(db, app) == before
    r = client.post(f"{API}/endpoints/ep/capture", json=[rec("[" + "9" * 400 + ', "CA"]', "e2")],
                    headers=world["ingest"])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text   # kept; counted against the Fractional type


_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")   # what the policy lets in
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(_CHARS),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(_CHARS, max_size=8), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.booleans())
def test_clean_documents_parse_as_the_standard_parser_parses_them(value: Any, ascii_only: bool) -> None:
    """A document `inputs` finds nothing suspect in goes to pydantic-core's parser (twice as fast on capture
    bodies); for every such document it must give exactly what the standard parser gives. The guard's `screen`
    only checks a clean document (CLEAN); what a route then parses from it is the same value."""
    from mlgov import inputs

    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    expected = json.loads(raw)
    assert inputs.loads(raw, "doc") == expected
    if raw.strip():
        assert inputs.document(raw, inputs.screen(raw, "body")) == expected
    assert inputs.loads(b"\xef\xbb\xbf" + raw, "doc") == expected     # a leading BOM, as the standard parser


_JSON_NOISE = st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b" ", b"\n", b"0", b"-", b".", b"e",
                               b"1", b"t", b"n", b"\x01", b"\xff", b"\xc3", b"\xa9", "\u00e9".encode(), b"\\u00",
                               b"\\x", b"\xef\xbb\xbf"])


@settings(max_examples=1500, deadline=None)
@given(_JSON_VALUES, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), _JSON_NOISE), max_size=3))
def test_the_guard_refuses_exactly_what_the_standard_parser_refuses(value: Any, edits: list[Any]) -> None:
    """The guard checks a clean document's syntax without parsing it (msgspec, plus a UTF-8 check): a document
    with bytes inserted, deleted or replaced must be refused (400) exactly when the standard parser refuses it,
    and a clean one accepted must parse as it does."""
    from mlgov import inputs
    from mlgov.errors import DomainError, MalformedJSON

    raw = bytearray(json.dumps(value, ensure_ascii=False).encode())
    for at, how, noise in edits:
        at = at % (len(raw) + 1)
        if how == 0:
            raw[at:at] = noise
        elif how == 1:
            del raw[at:at + len(noise)]
        else:
            raw[at:at + len(noise)] = noise
    doc = bytes(raw)
    try:
        expected, valid = json.loads(doc), True
    except (ValueError, RecursionError):
        valid = False
    try:
        screened = inputs.screen(doc, "body")
    except MalformedJSON:
        assert not valid, doc
        return
    except DomainError:   # the policy refused it (NaN, NUL, wide numbers, lone surrogates, depth): not this test
        return
    if screened is inputs.NOT_PARSED:   # empty
        assert not doc.strip()
        return
    assert valid, doc
    assert inputs.document(doc, screened) == expected


def test_lone_surrogates_and_wide_numbers_are_refused_whichever_parser_reads_them() -> None:
    from mlgov import inputs
    from mlgov.errors import Invalid

    for doc in (b'{"a": "\\ud800"}', b'{"a": "\\ud800", "n": 1000000000000000000}', b'{"\\udfff": 1}',
                b'{"a": "\\ud83d\\ude00\\ud800"}'):   # alone, in a document read by either parser, as a key
        with pytest.raises(Invalid, match="lone UTF-16 surrogate"):
            inputs.loads(doc, "doc")
        with pytest.raises(Invalid, match="lone UTF-16 surrogate"):
            inputs.screen(doc, "body")
    assert inputs.loads(b'{"a": "\\ud83d\\ude00", "n": 1000000000000000000}', "doc")["a"] == "\U0001f600"  # a pair
    with pytest.raises(Invalid, match="64-bit"):
        inputs.loads(b'{"a": ' + b"9" * 5000 + b"}", "doc")   # suspect: the standard parser's path names it
    with pytest.raises(Invalid, match="NaN"):
        inputs.screen(b'{"a": [1, NaN]}', "body")


def test_documents_the_fast_parser_cannot_read_go_to_the_standard_one(tmp_path: Any, db: Any, keys: Any) -> None:
    """Nesting past pydantic-core's own limit (200) where the configured limit allows it, and UTF-16/32 bodies
    (RFC 8259 lets a server read them; the standard parser does), parse as before the fast parser was added;
    a UTF-16 body is screened as suspect (its NUL bytes hide every byte pattern), so NaN in it is still a 422."""
    from fastapi.testclient import TestClient

    from mlgov import inputs
    from mlgov.app import create_app
    from tests.conftest import make_settings

    deep: Any = 1
    for _ in range(249):
        deep = [deep]
    try:
        with TestClient(create_app(make_settings(tmp_path, max_json_depth=512), db=db)) as c:
            r = c.post(f"{API}/lineage/artifacts", json={"type": "Dataset", "uri": "s3://d/deep.csv",
                                                          "properties": {"deep": deep}}, headers=keys("publisher"))
            assert r.status_code == 201 and r.json()["properties"]["deep"] == deep, r.text
    finally:
        inputs.configure(64, 2000)
    with TestClient(create_app(make_settings(tmp_path), db=db)) as c:
        for encoding in ("utf-16", "utf-16-le", "utf-32"):
            body = json.dumps({"name": f"wide-{encoding}", "description": "é"}).encode(encoding)
            r = c.post(f"{API}/model-groups", content=body,
                       headers={**keys("publisher"), "Content-Type": "application/json"})
            assert r.status_code == 201 and r.json()["description"] == "é", r.text
        body = '{"name": "wide-nan", "tags": {"t": NaN}}'.encode("utf-16")
        refused(c.post(f"{API}/model-groups", content=body,
                       headers={**keys("publisher"), "Content-Type": "application/json"}), 422, "body.tags.t")


def test_lone_surrogates_in_capture_records_and_payloads_are_rejected_not_500(client: Any, app: Any, db: Any,
                                                                            world: dict[str, Any]) -> None:
    """A lone surrogate cannot be stored anywhere (UTF-8 has no encoding for it): in an event id of a body the
    standard parser reads, it is a 422 naming the field; escaped inside a record's JSON payload, that record is
    rejected with the reason; nothing is half-written either way."""
    def rec(data: str, eid: str) -> dict[str, Any]:
        return {"captureData": {"endpointInput": {"data": data, "encoding": "JSON"}},
                "eventMetadata": {"eventId": eid, "inferenceTime": "2026-11-22T10:00:00Z"}}

    before = snapshot(db, app)
    body = json.dumps([{**rec('[1, "CA"]', "PLACEHOLDER"), "extra": 10**18}]).replace("PLACEHOLDER", "\\ud800")
    r = client.post(f"{API}/endpoints/ep/capture", content=body.encode(),
                    headers={**world["ingest"], "Content-Type": "application/json"})
    refused(r, 422, "surrogate")
    r = client.post(f"{API}/endpoints/ep/capture", json=[rec('[1, "C\\udc00"]', "e1")], headers=world["ingest"])
    assert "surrogate" in refused(r, 422, "surrogate")["rejected"][0]["reason"]
    assert snapshot(db, app) == before


def query_fields(dependant: Any) -> list[Any]:
    """A route's query parameters, its dependencies' included (the audit log's shared filters)."""
    return [*dependant.query_params, *(f for d in dependant.dependencies for f in query_fields(d))]


def time_query_routes(app: Any) -> list[tuple[str, str]]:
    """(path, parameter) of every GET route taking a time as a query parameter (at, since, created_after …)."""
    out = []
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute) and "GET" in rc.methods and native(rc.path):
            out += [(rc.path, f.alias) for f in query_fields(rc.original_route.dependant)
                    if "datetime" in str(f.field_info.annotation)]
    return out


def test_times_with_no_utc_time_are_422_not_500(client: Any, app: Any, db: Any, world: dict[str, Any]) -> None:
    """From a trial: 0001-01-01T00:00:00+01:00 parses, but its UTC time is before year 1 (and 9999-12-31T23:59-12:00
    after 9999): every route converting it answered 500 (OverflowError)."""
    routes = time_query_routes(app)
    assert (f"{API}/audit/events", "from") in routes and len(routes) >= 5, routes
    before = snapshot(db, app)
    for path, name in routes:
        for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-12:00"):
            extra = {"model_group": "churn"} if path.endswith("/audit/report") else {}
            refused(client.get(fill(path, world), params={name: when, **extra}, headers=world["admin"]), 422,
                    "outside the years 1-9999 once converted to UTC")
    refused(client.post(f"{API}/lineage/query", headers=world["admin"], json={
        "start": ["mlgov://model-groups/churn/versions/1"], "filters": {"created_after": "9999-12-31T23:59:59-12:00"}}),
        422, "outside")
    assert snapshot(db, app) == before


def test_unknown_query_parameters_are_named_not_ignored(client: Any, app: Any, db: Any,
                                                        world: dict[str, Any]) -> None:
    """From a registry trial: `?stauts=Approved` listed every version, and `versions/latest?stage=Production`
    answered a version in Development: a parameter the route does not take was ignored in silence."""
    paths = [rc.path for rc in iter_route_contexts(app.routes)
             if isinstance(rc.original_route, APIRoute) and "GET" in rc.methods and rc.path.startswith(API + "/")]
    assert len(paths) >= 30
    for path in paths:
        refused(client.get(fill(path, world), params={"stauts": "Approved"}, headers=world["admin"]), 422,
                "unknown query parameter 'stauts'")
    body = refused(client.get(f"{API}/model-groups/churn/versions/latest", params={"stage": "Production"},
                              headers=world["admin"]), 422, "'stage'")
    assert "status" in body["fix"]          # what the route does take
    assert client.get(f"{API}/model-groups/churn/versions", params={"status": "Approved"},
                      headers=world["admin"]).status_code == 200
