"""What users send: endpoint schemas in their own words, capture batches nothing in which is readable, and drift
verdicts on windows too small to carry one."""

from __future__ import annotations

import datetime as dt
import json

from tests.helpers import assert_problem, create_group, register
from tests.monitor.test_api import FEATURES, _endpoint, record

T = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)


def _group(client, keys) -> dict[str, str]:
    pub = keys("publisher")
    create_group(client, pub, "churn")
    register(client, pub, "churn", 1)
    return pub


def test_schema_type_aliases_are_stored_canonical(client, keys):
    pub = _group(client, keys)
    features = [{"name": "a", "type": "float"}, {"name": "b", "type": "DOUBLE"}, {"name": "c", "type": "int"},
                {"name": "d", "type": "Integer"}, {"name": "e", "type": "long"}, {"name": "f", "type": "str"},
                {"name": "g", "type": "String"}, {"name": "h", "type": "category"}, {"name": "i", "type": "bool"},
                {"name": "j", "type": "fractional"}, {"name": "k"}]
    body = {"name": "ep", "model_group": "churn", "model_version": 1,
            "schema": {"features": features, "prediction": {"name": "label", "type": "int"},
                       "probability": {"name": "score", "type": "Double", "csv_index": 1}}}
    r = client.post("/api/v1/endpoints", json=body, headers=pub)
    assert r.status_code == 201, r.text
    want = ["Fractional", "Fractional", "Integral", "Integral", "Integral", "String", "String", "String", "String",
            "Fractional", "Fractional"]
    for got in (r.json(), client.get("/api/v1/endpoints/ep", headers=keys("viewer")).json()):
        assert [f["type"] for f in got["schema"]["features"]] == want
        assert got["schema"]["prediction"]["type"] == "Integral"
        assert got["schema"]["probability"]["type"] == "Fractional"


def test_schema_types_refused_say_what_is_accepted(client, keys):
    pub = _group(client, keys)
    body = {"name": "ep", "model_group": "churn", "model_version": 1}
    for schema, needles in [
        ({"features": [{"name": "a", "type": "decimal"}]}, ("decimal", "Fractional", "float", "category")),
        ({"features": [{"name": "a"}], "prediction": {"name": "p", "type": "number"}}, ("number", "Integral")),
        ({"features": [{"name": "a"}], "probability": {"name": "p", "type": "str"}}, ("probability", "Fractional")),
        ({"features": [{"name": "a", "type": 3}]}, ("type",)),
    ]:
        assert_problem(client.post("/api/v1/endpoints", json={**body, "schema": schema}, headers=pub), 422, *needles)
    assert client.get("/api/v1/endpoints", headers=keys("viewer")).json()["total"] == 0


def test_prediction_type_decides_how_the_output_is_stored(client, keys, app, db):
    import io

    import pyarrow.parquet as pq

    pub = _group(client, keys)
    body = {"name": "ep", "model_group": "churn", "model_version": 1,
            "schema": {"features": FEATURES, "prediction": {"name": "label", "type": "string"}}}
    assert client.post("/api/v1/endpoints", json=body, headers=pub).status_code == 201
    rec = record(0, T, (30, 41.5, "CA"))
    rec["captureData"]["endpointOutput"]["data"] = "1"
    assert client.post("/api/v1/endpoints/ep/capture", json=[rec], headers=keys("ingest")).json()["accepted"] == 1
    from sqlalchemy import select

    from monitor.orm import CaptureBatch

    with db.session_scope() as s:
        key = s.scalars(select(CaptureBatch.parquet_key)).one()
    table = pq.read_table(io.BytesIO(app.state.get_store().get(key)))
    assert table.column("label").to_pylist() == ["1"]   # a class label, not the number 1.0


def test_capture_batch_with_every_record_rejected_is_422_and_stores_nothing(client, keys):
    _endpoint(client, keys)
    ing = keys("ingest")
    bad = [record(i, T, (1, 2)) for i in range(150)]          # two values where the schema has three features
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=bad, headers=ing)
    body = assert_problem(r, 422, "all 150 capture records were rejected", "schema mismatch", "nothing was stored")
    assert body["rejected_count"] == 150 and len(body["rejected"]) == 100   # capped
    assert body["rejected"][0] == {"index": 0, "reason": body["rejected"][0]["reason"]}
    assert "schema mismatch" in body["rejected"][99]["reason"]
    lines = "\n".join(["{broken", json.dumps({"captureData": {}})]).encode()
    body = assert_problem(client.post("/api/v1/endpoints/churn-prod/capture", content=lines,
                                      headers={**ing, "content-type": "application/x-ndjson"}), 422, "not valid JSON")
    assert [x["index"] for x in body["rejected"]] == [0, 1] and "eventMetadata" in body["rejected"][1]["reason"]
    assert client.get("/api/v1/endpoints/churn-prod/capture/summary", headers=keys("viewer")).json()["records"] == 0
    # one good record among bad ones: 200, the good one stored, the others reported
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=[*bad[:3], record(9, T, (30, 41.5, "CA"))],
                    headers=ing)
    assert r.status_code == 200 and r.json()["accepted"] == 1 and len(r.json()["rejected"]) == 3
    # a batch that is only duplicates or sampled out was read fine: 200
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=[record(9, T, (30, 41.5, "CA"))], headers=ing)
    assert r.status_code == 200 and r.json()["duplicates"] == 1


def test_ground_truth_batch_with_every_record_rejected_is_422(client, keys):
    _endpoint(client, keys)
    body = assert_problem(client.post("/api/v1/endpoints/churn-prod/ground-truth",
                                      json=[{"eventMetadata": {}}, {"groundTruthData": {"data": "1"}}],
                                      headers=keys("ingest")), 422, "all 2 ground-truth records were rejected")
    assert body["rejected_count"] == 2
