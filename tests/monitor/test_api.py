"""Monitoring API: baselines, analyses, endpoints and capture, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.engine import gx
from tests.helpers import assert_problem, create_group, register

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"
FEATURES = [{"name": "age", "type": "Integral"}, {"name": "income", "type": "Fractional"},
            {"name": "state", "type": "String"}]


def frame(n: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 90, n), "income": rng.normal(50 + shift, 10, n),
                         "state": rng.choice(["CA", "NY", "TX"], n)})


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def make_baseline(client, keys, df: pd.DataFrame | None = None) -> str:
    df = frame(2000) if df is None else df
    r = client.post("/api/v1/baselines", files={"file": ("train.csv", csv_bytes(df), "text/csv")},
                    data={"name": "train"}, headers=keys("publisher"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_baseline_from_csv_parquet_and_sagemaker_files(client, keys):
    bid = make_baseline(client, keys)
    h = keys("viewer")
    stats = client.get(f"/api/v1/baselines/{bid}/statistics.json", headers=h).json()
    assert stats["dataset"]["item_count"] == 2000
    assert [f["inferred_type"] for f in stats["features"]] == ["Integral", "Fractional", "String"]
    assert stats["features"][0]["numerical_statistics"]["distribution"]["kll"]["sketch"]["parameters"] == \
        {"c": 0.64, "k": 2048.0}
    cons = client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=h).json()
    assert cons["features"][2]["string_constraints"]["domains"] == ["CA", "NY", "TX"]
    assert cons["monitoring_config"]["distribution_constraints"]["comparison_method"] == "Robust"
    meta = client.get(f"/api/v1/baselines/{bid}", headers=h).json()
    assert meta["source"] == "computed" and meta["exact"] and meta["row_count"] == 2000
    buf = io.BytesIO()
    frame(500).to_parquet(buf)
    r = client.post("/api/v1/baselines", files={"file": ("d.parquet", buf.getvalue())}, headers=keys("publisher"))
    assert r.status_code == 201 and r.json()["feature_count"] == 3
    r = client.post("/api/v1/baselines", headers=keys("publisher"), files={
        "statistics": ("statistics.json", (FIX / "data_quality_statistics.json").read_bytes()),
        "constraints": ("constraints.json", (FIX / "data_quality_constraints_suggested.json").read_bytes())})
    assert r.status_code == 201 and r.json()["source"] == "imported" and not r.json()["exact"]
    listed = client.get("/api/v1/baselines", headers=h).json()
    assert listed["total"] == 3
    suite = client.get(f"/api/v1/baselines/{bid}/gx-suite.json", headers=h).json()
    types = {(e["type"], e["kwargs"]["column"]) for e in suite["expectations"]}
    assert ("expect_column_values_to_be_in_set", "state") in types
    assert ("expect_column_values_to_be_between", "age") in types


def test_baseline_bad_input(client, keys, db):
    from sqlalchemy import func, select

    from monitor.orm import Baseline

    pub = keys("publisher")
    assert_problem(client.post("/api/v1/baselines", files={"file": ("x.csv", b"")}, headers=pub), 422, "empty")
    assert_problem(client.post("/api/v1/baselines", files={"file": ("x.csv", b"a,b\n")}, headers=pub), 422, "no rows")
    assert_problem(client.post("/api/v1/baselines", files={"file": ("x.csv", b"a,a\n1,2\n")}, headers=pub), 422,
                   "duplicate")
    assert_problem(client.post("/api/v1/baselines", data={"name": "x"}, headers=pub), 422, "no dataset")
    assert_problem(client.post("/api/v1/baselines", files={"statistics": ("s.json", b"{}")}, headers=pub), 422,
                   "both")
    assert_problem(client.post("/api/v1/baselines", headers=pub, files={
        "statistics": ("s.json", b"not json"), "constraints": ("c.json", b"{}")}), 400, "not valid JSON")
    assert_problem(client.post("/api/v1/baselines", data={"dataset_uri": "ftp://elsewhere/x.csv"}, headers=pub),
                   422, "outside")
    assert_problem(client.post("/api/v1/baselines", data={"dataset_uri": "nope/x.csv"}, headers=pub), 404)
    assert_problem(client.post("/api/v1/baselines", content=b"x", headers={**pub, "content-type": "text/plain"}),
                   422, "Content-Type")
    assert_problem(client.get("/api/v1/baselines/nope/statistics.json", headers=pub), 404, "no baseline")
    assert_problem(client.get("/api/v1/baselines/nope/other.json", headers=pub), 422)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Baseline)) == 0


def test_baseline_from_store_uri_and_constraint_edits(client, keys, app):
    store = app.state.get_store()
    store.put("datasets/train.csv", csv_bytes(frame(1000)))
    pub = keys("publisher")
    r = client.post("/api/v1/baselines", data={"dataset_uri": "datasets/train.csv"}, headers=pub)
    assert r.status_code == 201 and r.json()["dataset_uri"] == "datasets/train.csv"
    # a file and a URI: the baseline said it came from the URI (unchecked: "../../admin.key") while the file made it
    assert_problem(client.post("/api/v1/baselines", data={"dataset_uri": "../../admin.key"}, headers=pub,
                               files={"file": ("d.csv", csv_bytes(frame(10)))}), 422, "both a `file` and a")
    bid = r.json()["id"]
    cons = client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=pub).json()
    cons["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = 0.3
    r = client.put(f"/api/v1/baselines/{bid}/constraints.json", content=json.dumps(cons), headers=pub)
    assert r.status_code == 200
    again = client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=pub).json()
    assert again["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.3
    assert_problem(client.put(f"/api/v1/baselines/{bid}/constraints.json", content=b"{", headers=pub), 400, "JSON")
    assert_problem(client.put(f"/api/v1/baselines/{bid}/constraints.json", content=b'{"features": [1]}',
                              headers=pub), 422, "features")
    assert client.put(f"/api/v1/baselines/{bid}/constraints.json", content=b"{}",
                      headers=keys("viewer")).status_code == 403
    # another team's publisher switched this baseline's checks off (evaluate_constraints Disabled, no features):
    # every schedule judged by it then passed. Its creator's or an admin's to change, as the schedules are
    loosened = json.loads(json.dumps(cons))
    loosened["features"] = []
    loosened["monitoring_config"]["evaluate_constraints"] = "Disabled"
    assert_problem(client.put(f"/api/v1/baselines/{bid}/constraints.json", content=json.dumps(loosened),
                              headers=keys("publisher2")), 403, "only its creator or an admin")
    assert_problem(client.put(f"/api/v1/baselines/{bid}/expectations.json", headers=keys("publisher2"),
                              content=b'{"name": "s", "expectations": []}'), 403, "only its creator or an admin")
    assert client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=pub).json() == again
    # the replaced document is kept, and the audit event vouches for it (it held only monitoring_config)
    [event] = [e for e in client.get("/api/v1/audit/events", params={"action": "baseline.constraints_updated"},
                                     headers=keys("admin")).json()["items"]]
    kept = store.get(event["before"]["object_key"])
    assert json.loads(kept)["monitoring_config"]["distribution_constraints"]["comparison_threshold"] != 0.3
    assert hashlib.sha256(kept).hexdigest() == event["before"]["sha256"]
    # the same document again changes nothing: no copy kept, no event (a retried PUT stored a copy each time)
    folder = event["before"]["object_key"].rsplit("/", 1)[0] + "/"
    assert len(list(store.list(folder))) == 1
    same = client.put(f"/api/v1/baselines/{bid}/constraints.json", content=json.dumps(cons), headers=pub)
    assert same.status_code == 200 and same.json() == again
    assert len(client.get("/api/v1/audit/events", params={"action": "baseline.constraints_updated"},
                          headers=keys("admin")).json()["items"]) == 1 and len(list(store.list(folder))) == 1
    # a renamed column (its real one then unchecked) and a negative threshold (every distance exceeds it): refused
    renamed = json.loads(json.dumps(cons))
    renamed["features"][0]["name"] = "nosuch"
    negative = json.loads(json.dumps(cons))
    negative["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = -0.5
    for doc, needle in ((renamed, "names 'nosuch', which the baseline has no column of"), (negative, "is -0.5")):
        assert_problem(client.put(f"/api/v1/baselines/{bid}/constraints.json", content=json.dumps(doc),
                                  headers=pub), 422, needle)
    assert client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=pub).json() == again
    # the two files of an import swapped: refused, where it made a baseline that checked nothing
    stats = client.get(f"/api/v1/baselines/{bid}/statistics.json", headers=pub).content
    assert_problem(client.post("/api/v1/baselines", headers=pub, files={
        "statistics": ("constraints.json", json.dumps(cons)), "constraints": ("statistics.json", stats)}),
        422, "are the two parts swapped?")


def test_analysis_of_an_uploaded_file(client, keys):
    bid = make_baseline(client, keys)
    pub = keys("publisher")
    same = client.post("/api/v1/analyses", data={"baseline_id": bid},
                       files={"file": ("cur.csv", csv_bytes(frame(1500, seed=1)))}, headers=pub)
    assert same.status_code == 201, same.text
    assert same.json()["status"] == "Completed" and same.json()["violations"] == []
    cur = frame(1500, shift=15, seed=2)
    cur.loc[:200, "state"] = "ZZ"
    r = client.post("/api/v1/analyses", data={"baseline_id": bid}, files={"file": ("cur.csv", csv_bytes(cur))},
                    headers=pub)
    body = r.json()
    assert body["status"] == "CompletedWithViolations"
    checks = {(v["feature_name"], v["constraint_check_type"]) for v in body["violations"]}
    assert ("income", "baseline_drift_check") in checks and ("state", "categorical_values_check") in checks
    assert "income" in body["drifted_features"]
    drift = {d["feature"]: d for d in body["drift"]}
    assert drift["income"]["method"] == "wasserstein" and drift["income"]["drifted"]
    aid = body["id"]
    cv = client.get(f"/api/v1/analyses/{aid}/constraint_violations.json", headers=keys("viewer")).json()
    assert cv == {"violations": body["violations"]}
    st = client.get(f"/api/v1/analyses/{aid}/statistics.json", headers=keys("viewer")).json()
    assert st["dataset"]["item_count"] == 1500
    custom = client.post("/api/v1/analyses", headers=pub, data={
        "baseline_id": bid, "drift": json.dumps({"numerical": "psi", "thresholds": {"psi": 5.0}})},
        files={"file": ("cur.csv", csv_bytes(cur))}).json()
    assert {d["feature"]: d["method"] for d in custom["drift"]}["income"] == "psi"
    assert "income" not in custom["drifted_features"]
    lst = client.get("/api/v1/analyses", params={"baseline_id": bid, "status": "CompletedWithViolations"},
                     headers=keys("viewer")).json()
    assert lst["total"] == 2
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer"))
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    assert "Breadcrumb" not in html.text          # the API's report is a standalone document; the console heads it
    assert client.get(f"/api/v1/analyses/{aid}/report?format=json", headers=keys("viewer")).json()["id"] == aid
    assert "<svg" in client.get(f"/api/v1/analyses/{aid}?format=html", headers=keys("viewer")).text


def test_analysis_bad_input(client, keys):
    bid = make_baseline(client, keys)
    pub = keys("publisher")
    assert_problem(client.post("/api/v1/analyses", files={"file": ("c.csv", b"a\n1\n")}, headers=pub), 422,
                   "baseline_id")
    assert_problem(client.post("/api/v1/analyses", data={"baseline_id": "nope"},
                               files={"file": ("c.csv", b"a\n1\n")}, headers=pub), 404, "no baseline")
    assert_problem(client.post("/api/v1/analyses", data={"baseline_id": bid}, headers=pub), 422, "no data")
    bad = assert_problem(client.post("/api/v1/analyses", headers=pub, files={"file": ("c.csv", b"a\n1\n")}, data={
        "baseline_id": bid, "drift": '{"numerical": "magic", "drift_share": 2, "thresholds": {"psi": "high"}}'}), 422)
    assert {e["field"] for e in bad["errors"]} == {"drift.numerical", "drift.drift_share", "drift.thresholds.psi"}
    assert "drift.drift_share: Input should be less than or equal to 1" in bad["detail"], bad["detail"]
    assert "('" not in bad["detail"] and "Value error" not in bad["detail"]      # no raw pydantic locations
    assert_problem(client.post("/api/v1/analyses", json={"baseline_id": bid, "endpoint": "nope",
                                                         "start": "2026-01-01T00:00:00Z", "end": "x"},
                               headers=pub), 422, "end")
    assert_problem(client.get("/api/v1/analyses/nope", headers=pub), 404)
    # a file and an endpoint window both: before, 201 with the file analysed and the window silently ignored
    both = assert_problem(client.post("/api/v1/analyses", headers=pub, files={"file": ("c.csv", csv_bytes(frame(50)))},
                                      data={"baseline_id": bid, "endpoint": "churn-prod",
                                            "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}),
                          422, "both `file` and `endpoint`, `start`, `end` were given", "either the `file`")
    assert '"endpoint"' in both["fix"]
    assert_problem(client.post("/api/v1/analyses", headers=pub, data={
        "baseline_id": bid, "dataset_uri": "s3://b/k.csv", "endpoint": "churn-prod"}), 422,
        "`dataset_uri` and `endpoint`")
    assert client.get("/api/v1/analyses", headers=pub).json()["total"] == 0      # nothing stored


def _endpoint(client, keys, name="churn-prod", sampling=100.0):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    body = {"name": name, "model_group": "churn", "model_version": 1, "sampling_percentage": sampling,
            "schema": {"features": FEATURES, "prediction": {"name": "prediction"}}}
    r = client.post("/api/v1/endpoints", json=body, headers=keys("publisher"))
    assert r.status_code == 201, r.text
    return r.json()


def record(i: int, when: dt.datetime, row: tuple, enc: str = "CSV", event_id: str | None = None) -> dict:
    if enc == "CSV":
        data, out = ",".join(str(x) for x in row), "0.7"
    else:
        data = json.dumps({"age": row[0], "income": row[1], "state": row[2]})
        out = json.dumps({"prediction": 0.7})
    inp = {"observedContentType": "text/csv" if enc == "CSV" else "application/json", "mode": "INPUT",
           "data": data, "encoding": enc}
    outp = {"observedContentType": inp["observedContentType"], "mode": "OUTPUT", "data": out, "encoding": enc}
    if enc == "BASE64":
        inp.update(data=base64.b64encode(b"30,42.5,CA").decode(), observedContentType="text/csv")
        outp.update(data=base64.b64encode(b"0.7").decode(), observedContentType="text/csv")
    return {"captureData": {"endpointInput": inp, "endpointOutput": outp},
            "eventMetadata": {"eventId": event_id or f"ev-{i}", "inferenceId": f"inf-{i}",
                              "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "eventVersion": "0"}


def test_endpoint_and_capture_formats(client, keys):
    ep = _endpoint(client, keys)
    assert ep["schema"]["features"][0]["name"] == "age"
    t = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)
    recs = [record(0, t, (30, 41.5, "CA")), record(1, t, (31, 42.5, "NY"), "JSON"), record(2, t, (0, 0, ""), "BASE64")]
    ing = keys("ingest")
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=ing)
    assert r.json() == {"accepted": 3, "sampled_out": 0, "duplicates": 0, "rejected": []}
    # retry: idempotent by eventId
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=ing)
    assert r.json()["accepted"] == 0 and r.json()["duplicates"] == 3
    # JSON Lines with broken lines and bad records: reported per record, good ones kept
    bad_schema = record(10, t, (1, 2), event_id="short")
    mismatch = record(11, t, (1, 2, "CA"), "JSON")
    mismatch["captureData"]["endpointOutput"]["encoding"] = "CSV"
    lines = [json.dumps(record(20, t, (40, 50.0, "TX"))), "{not json", json.dumps(bad_schema), json.dumps(mismatch),
             json.dumps({"captureData": {}}), json.dumps(record(21, t, (41, 51.0, "TX")))]
    r = client.post("/api/v1/endpoints/churn-prod/capture", content="\n".join(lines).encode(),
                    headers={**ing, "content-type": "application/x-ndjson"})
    body = r.json()
    assert body["accepted"] == 2
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert set(reasons) == {1, 2, 3, 4}
    assert "not valid JSON" in reasons[1] and "schema mismatch" in reasons[2]
    assert "encoding mismatch" in reasons[3] and "eventMetadata" in reasons[4]
    assert client.get("/api/v1/endpoints/churn-prod/capture/summary", headers=keys("viewer")).json()["records"] == 5
    # a time years ahead (a monitoring trial's 2031 record then led the capture sparkline and exports) and one
    # with no UTC time are the record's fault, said per record; the rest of the batch is kept
    ahead = record(30, dt.datetime(2031, 1, 1, tzinfo=dt.UTC), (40, 50.0, "TX"))
    no_utc = record(31, t, (40, 50.0, "TX"))
    no_utc["eventMetadata"]["inferenceTime"] = "0001-01-01T00:00:00+01:00"
    r = client.post("/api/v1/endpoints/churn-prod/capture", json=[ahead, no_utc, record(32, t, (40, 50.0, "TX"))],
                    headers=ing)
    body = r.json()
    assert body["accepted"] == 1, body
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert "more than a day ahead of the server's clock" in reasons[0] and "years 1-9999" in reasons[1]
    assert_problem(client.post("/api/v1/endpoints/churn-prod/capture", content=b"{", headers={
        **ing, "content-type": "application/json"}), 400, "not valid JSON")
    # one JSON Lines record under text/plain reads as one JSON object: the error says which type JSON Lines needs
    assert_problem(client.post("/api/v1/endpoints/churn-prod/capture", content=json.dumps(recs[0]).encode(),
                               headers={**ing, "content-type": "text/plain"}), 422,
                   "JSON Lines sent with Content-Type: application/x-ndjson (this one is a JSON object sent as "
                   "text/plain)")
    assert_problem(client.post("/api/v1/endpoints/nope/capture", json=[], headers=ing), 404)
    assert client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("viewer")).status_code == 403
    assert client.get("/api/v1/endpoints", headers=ing).status_code == 403


def test_sampling_is_deterministic_per_event(client, keys):
    _endpoint(client, keys, sampling=30.0)
    t = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)
    recs = [record(i, t, (30, 40.0, "CA")) for i in range(400)]
    first = client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest")).json()
    assert 80 < first["accepted"] < 160 and first["accepted"] + first["sampled_out"] == 400
    again = client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest")).json()
    assert again["sampled_out"] == first["sampled_out"] and again["duplicates"] == first["accepted"]


def test_endpoint_bad_input(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    pub = keys("publisher")
    good = {"name": "ep", "model_group": "churn", "model_version": 1, "schema": {"features": FEATURES}}
    assert_problem(client.post("/api/v1/endpoints", json={**good, "model_version": 9}, headers=pub), 404)
    assert_problem(client.post("/api/v1/endpoints", json={**good, "sampling_percentage": 120}, headers=pub), 422,
                   "sampling_percentage")
    assert_problem(client.post("/api/v1/endpoints", json={**good, "schema": {"features": []}}, headers=pub), 422,
                   "features")
    assert_problem(client.post("/api/v1/endpoints", json={**good, "name": "bad name"}, headers=pub), 422, "name")
    assert client.post("/api/v1/endpoints", json=good, headers=pub).status_code == 201
    assert_problem(client.post("/api/v1/endpoints", json=good, headers=pub), 409)


def test_window_analysis_from_captured_traffic(client, keys):
    _endpoint(client, keys)
    bid = make_baseline(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    normal = frame(600, seed=5)
    recs = [record(i, t0 + dt.timedelta(seconds=5 * i), tuple(normal.iloc[i])) for i in range(600)]
    assert client.post("/api/v1/endpoints/churn-prod/capture", json=recs,
                       headers=keys("ingest")).json()["accepted"] == 600
    r = client.post("/api/v1/analyses", headers=keys("publisher"), json={
        "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "Completed", body["violations"]
    assert body["rows"] == 600 and body["window_start"].startswith("2026-11-20T10:00")
    empty = client.post("/api/v1/analyses", headers=keys("publisher"), json={
        "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-21T10:00:00Z", "end": "2026-11-21T11:00:00Z"})
    assert empty.status_code == 201
    assert empty.json()["status"] == "Failed" and "no data captured between" in empty.json()["failure_reason"]
    assert_problem(client.post("/api/v1/analyses", headers=keys("publisher"), json={
        "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-21T10:00:00Z",
        "end": "2026-11-21T09:00:00Z"}), 422, "not after")


def test_baselines_analyses_and_manual_runs_hold_no_write_turn_while_they_compute(client, keys, monkeypatch):
    """POST /baselines, POST /analyses, a schedule's manual run and a ground-truth upload computed while holding
    the database's write turn, so a capture request meanwhile waited for the whole computation (503 after 30 s).
    They now compute on a read session and record in a short write turn: captures sent while they compute are
    accepted, and the results are recorded."""
    from monitor import service

    _endpoint(client, keys)
    pub = keys("publisher")
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    rows, accepted = frame(50, seed=9), []

    def meanwhile(real: Any) -> Any:
        def computing(*args: Any, **kwargs: Any) -> Any:   # another request's write, made while this one computes
            i = len(accepted)
            accepted.append(client.post("/api/v1/endpoints/churn-prod/capture", headers=keys("ingest"), json=[
                record(7000 + i, t0 + dt.timedelta(minutes=i), tuple(rows.iloc[i]))]).json().get("accepted"))
            return real(*args, **kwargs)
        return computing

    monkeypatch.setattr(service, "create_baseline", meanwhile(service.create_baseline))
    monkeypatch.setattr(service, "analyze_window", meanwhile(service.analyze_window))
    bid = make_baseline(client, keys)
    window = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
    r = client.post("/api/v1/analyses", headers=pub, json={"baseline_id": bid, "endpoint": "churn-prod", **window})
    assert r.status_code == 201 and r.json()["rows"] == 2, r.text
    assert client.post("/api/v1/monitoring-schedules", headers=pub, json={
        "name": "dq", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "hourly",
        "baseline_id": bid}).status_code == 201
    r = client.post("/api/v1/monitoring-schedules/dq/run", headers=pub, json=window)
    assert r.status_code == 201 and r.json()["status"] == "Completed", r.text
    assert accepted == [1, 1, 1]
    run = client.get(f"/api/v1/analyses/{r.json()['analysis_id']}", headers=keys("viewer")).json()
    assert run["rows"] == 3   # each capture made while something computed
    # a ground-truth upload parses its records on the read session too
    monkeypatch.setattr(service, "prepare_ground_truth", meanwhile(service.prepare_ground_truth))
    labels = client.post("/api/v1/endpoints/churn-prod/ground-truth", headers=keys("ingest"),
                         json=[gt_record(f"inf-{7000 + i}", "1") for i in range(4)])
    assert labels.status_code == 200 and accepted == [1, 1, 1, 1], labels.text
    assert (labels.json()["accepted"], labels.json()["unmatched"]) == (4, 0)   # the 4th captured meanwhile


def test_a_window_whose_batches_disagree_on_a_columns_type_is_analysed(client, keys):
    """A non-numeric age stores that batch's age column as text; the window held int64 in one batch and string
    in another, and reading it failed (500 from the analysis, a raw Arrow error in scheduled runs). Now the
    column is read as text and the data-type check reports it."""
    _endpoint(client, keys)
    bid = make_baseline(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    normal = frame(200, seed=5)
    for i, row in enumerate([tuple(normal.iloc[i]) for i in range(199)] + [("abc", 40.5, "CA")]):
        r = client.post("/api/v1/endpoints/churn-prod/capture", headers=keys("ingest"),
                        json=[record(i, t0 + dt.timedelta(seconds=5 * i), row)])
        assert r.json()["accepted"] == 1, r.text
    r = client.post("/api/v1/analyses", headers=keys("publisher"), json={
        "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rows"] == 200 and body["status"] == "CompletedWithViolations"
    assert [(v["feature_name"], v["constraint_check_type"]) for v in body["violations"]
            if v["constraint_check_type"] == "data_type_check"] == [("age", "data_type_check")]


def test_drift_settings_that_cannot_apply_are_refused_before_anything_runs(client, keys, db):
    """From a new-user trial: `z` on a numeric column compared one value's share and called a mean shift of 1.5
    sd "no drift" (Evidently refuses it there); `ks` on a text column answered 500 from a file and failed every
    run of a schedule; a misspelt feature or threshold name and a negative threshold were silently used or
    ignored. Each is now a 422 naming it, from a file analysis, a window analysis and a schedule alike."""
    _endpoint(client, keys)
    bid = make_baseline(client, keys)
    pub = keys("publisher")
    current = csv_bytes(frame(300, shift=15))
    for drift, needle in [({"numerical": "z"}, "numerical: 'z' does not apply to numerical features"),
                          ({"per_feature": {"income": "chisquare"}}, "per_feature.income: 'chisquare'"),
                          ({"per_feature": {"state": "ks"}}, "'ks' does not apply to categorical features"),
                          ({"per_feature": {"nosuch": "ks"}}, "the baseline has no column 'nosuch'"),
                          ({"thresholds": {"bogus": 0.2}}, "thresholds.bogus: neither a method"),
                          ({"thresholds": {"wasserstein": -1}}, "thresholds.wasserstein: -1"),
                          ({"thresholds": {"ks": 5}}, "p-values in [0, 1]")]:
        r = client.post("/api/v1/analyses", headers=pub, data={"baseline_id": bid, "drift": json.dumps(drift)},
                        files={"file": ("c.csv", current)})
        assert_problem(r, 422, needle)
        assert_problem(client.post("/api/v1/analyses", headers=pub, json={
            "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-20T10:00:00Z",
            "end": "2026-11-20T11:00:00Z", "drift": drift}), 422, needle)
        assert_problem(client.post("/api/v1/monitoring-schedules", headers=pub, json={
            "name": "dq-bad", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "hourly",
            "baseline_id": bid, "drift": drift}), 422, needle)
    assert client.get("/api/v1/analyses", headers=keys("viewer")).json()["total"] == 0   # nothing recorded
    from monitor.orm import Baseline
    with db.session_scope() as s:     # as a baseline recorded before baselines recorded their columns
        recorded, s.get(Baseline, bid).settings = s.get(Baseline, bid).settings, None
    assert_problem(client.post("/api/v1/analyses", headers=pub, files={"file": ("c.csv", current)},
                                data={"baseline_id": bid, "drift": json.dumps({"numerical": "z"})}), 422,
                   "'z' does not apply to numerical features")    # checked from the baseline's files
    with db.session_scope() as s:
        s.get(Baseline, bid).settings = recorded
    ok = client.post("/api/v1/analyses", headers=pub, files={"file": ("c.csv", current)}, data={
        "baseline_id": bid, "drift": json.dumps({"per_feature": {"state": "chisquare"}, "thresholds": {"age": 0.2}})})
    assert ok.status_code == 201, ok.text
    r = client.post("/api/v1/monitoring-schedules", headers=pub, json={
        "name": "dq", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "hourly", "baseline_id": bid})
    assert r.status_code == 201 and r.json()["next_run_at"] is not None
    assert_problem(client.patch("/api/v1/monitoring-schedules/dq", headers=pub,
                                json={"drift": {"per_feature": {"state": "ks"}}}), 422, "categorical")
    assert_problem(client.post("/api/v1/monitoring-schedules", headers=pub, json={
        "name": "dq-future", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "hourly",
        "baseline_id": bid, "window": {"start": "-PT1H", "end": "PT2H"}}), 422, "has not arrived yet")
    # alert rules: SageMaker's M-of-N shape and the schedule's own checks (a malformed one made the SageMaker
    # API's ListMonitoringAlerts answer 500)
    for alerting, needle in [({"rules": {"baseline_drift_check": {"datapoints": "many", "period": 0}}}, "datapoints"),
                             ({"rules": {"baseline_drift_check": {"datapoints": 3, "period": 2}}}, "cannot exceed"),
                             ({"rules": {"nosuch_check": {"datapoints": 1, "period": 2}}}, "'nosuch_check'"),
                             ({"foo": 1}, "foo")]:
        assert_problem(client.patch("/api/v1/monitoring-schedules/dq", headers=pub, json={"alerting": alerting}),
                       422, needle)
    assert client.patch("/api/v1/monitoring-schedules/dq", headers=pub, json={
        "alerting": {"rules": {"baseline_drift_check": {"datapoints": 2, "period": 3}}}}).status_code == 200
    stopped = client.post("/api/v1/monitoring-schedules/dq/stop", headers=pub)
    assert stopped.status_code == 200 and stopped.json()["status"] == "Stopped", stopped.text
    assert stopped.json()["next_run_at"] is None                            # before: the last fire time


def test_drift_baseline_attachment_and_lineage(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    bid = make_baseline(client, keys)
    r = client.post("/api/v1/model-groups/churn/versions/1/drift-baseline", json={"baseline_id": bid},
                    headers=keys("publisher"))
    assert r.status_code == 200 and r.json()["baseline_id"] == bid
    assert client.get("/api/v1/model-groups/churn/versions/1/drift-baseline",
                      headers=keys("viewer")).json()["baseline_id"] == bid
    q = client.post("/api/v1/lineage/query", json={"start": ["mlgov://model-groups/churn/versions/1"],
                                                   "direction": "Ascendants",
                                                   "filters": {"types": ["Baseline"]}}, headers=keys("viewer")).json()
    assert len(q["vertices"]) == 1
    assert_problem(client.post("/api/v1/model-groups/churn/versions/1/drift-baseline", json={"baseline_id": "x"},
                               headers=keys("publisher")), 404)
    assert_problem(client.post("/api/v1/model-groups/churn/versions/7/drift-baseline", json={"baseline_id": bid},
                               headers=keys("publisher")), 404)
    # what approvers read as the version's evidence is its registrant's (or an admin's) to attach, and a
    # ModelQuality baseline is no drift baseline (it was stored as one)
    other = make_baseline(client, keys)
    assert_problem(client.post("/api/v1/model-groups/churn/versions/1/drift-baseline", json={"baseline_id": other},
                               headers=keys("publisher2")), 403, "only its registrant or an admin")
    quality = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "y", "prediction": "p"},
        files={"file": ("v.csv", b"y,p\n1,1\n0,0\n1,0\n0,0\n")})
    assert quality.status_code == 201, quality.text
    assert_problem(client.post("/api/v1/model-groups/churn/versions/1/drift-baseline",
                               json={"baseline_id": quality.json()["id"]}, headers=keys("publisher")), 422,
                   "a DataQuality one")
    assert client.get("/api/v1/model-groups/churn/versions/1/drift-baseline",
                      headers=keys("viewer")).json()["baseline_id"] == bid
    assert client.post("/api/v1/model-groups/churn/versions/1/drift-baseline", json={"baseline_id": other},
                       headers=keys("admin")).status_code == 200


@pytest.mark.parametrize("n", [1])
def test_analysis_report_renders_in_chromium(client, keys, tmp_path, n):
    from tests.browser import render

    bid = make_baseline(client, keys)
    cur = frame(800, shift=15, seed=3)
    aid = client.post("/api/v1/analyses", data={"baseline_id": bid}, files={"file": ("c.csv", csv_bytes(cur))},
                      headers=keys("publisher")).json()["id"]
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    dom, shot = render(html, tmp_path)
    assert "CompletedWithViolations" in dom and "baseline_drift_check" in dom
    assert dom.count("<svg") == 3 and 'data-feature="income"' in dom
    assert shot.stat().st_size > 5000


def test_capture_to_s3_store(tmp_path, db, keys, seaweed):
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings
    from tests.infra import S3_KEY, S3_SECRET

    bucket = f"cap{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=bucket)
    settings = make_settings(tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=seaweed.endpoint,
                             s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET)
    with TestClient(create_app(settings, db=db)) as c:
        _endpoint(c, keys)
        t = dt.datetime(2026, 11, 20, 13, 59, 59, tzinfo=dt.UTC)
        recs = [record(1, t, (30, 40.0, "CA")), record(2, t + dt.timedelta(seconds=2), (31, 41.0, "NY"))]
        assert c.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest")).json()["accepted"] == 2
    keys_in_bucket = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket)["Contents"]]
    hours = sorted({k.rsplit("/", 1)[0] for k in keys_in_bucket if k.endswith(".jsonl")})
    base = "mlgov/capture/churn-prod/AllTraffic/2026/11/20"
    assert hours == [f"{base}/13", f"{base}/14"]


def test_great_expectations_suite_export_and_run(client, keys):
    bid = make_baseline(client, keys)
    pub = keys("publisher")
    exported = client.get(f"/api/v1/baselines/{bid}/gx-suite.json", headers=pub).json()
    assert len(gx.load_suite(exported).expectations) == len(exported["expectations"])  # GX itself loads all
    exported["expectations"] += [
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "income", "min_value": 45, "max_value": 55}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 18, "max_value": 90}}]
    r = client.put(f"/api/v1/baselines/{bid}/expectations.json", content=json.dumps(exported), headers=pub)
    assert r.status_code == 200
    ok = client.post("/api/v1/analyses", data={"baseline_id": bid},
                     files={"file": ("c.csv", csv_bytes(frame(500, seed=9)))}, headers=pub).json()
    assert ok["status"] == "Completed" and ok["expectations"]["success"] is True
    assert ok["expectations"]["statistics"]["failed"] == 0
    bad = frame(500, shift=20, seed=9)
    bad.loc[:10, "age"] = 150
    res = client.post("/api/v1/analyses", data={"baseline_id": bid},
                      files={"file": ("c.csv", csv_bytes(bad))}, headers=pub).json()
    failed = {(e["type"], e["kwargs"].get("column")) for e in res["expectations"]["results"] if e["success"] is False}
    assert failed == {("expect_column_mean_to_be_between", "income"), ("expect_column_values_to_be_between", "age")}
    # a type the Arrow evaluator lacks runs in Great Expectations itself; one GX does not know is unsupported
    suite = {"expectations": [{"type": "expect_column_median_to_be_between",
                               "kwargs": {"column": "age", "min_value": 0, "max_value": 200}},
                              {"type": "expect_column_to_be_wonderful", "kwargs": {"column": "age"}}]}
    client.put(f"/api/v1/baselines/{bid}/expectations.json", content=json.dumps(suite), headers=pub)
    res = client.post("/api/v1/analyses", data={"baseline_id": bid},
                      files={"file": ("c.csv", csv_bytes(frame(500)))}, headers=pub).json()
    median, unknown = res["expectations"]["results"]
    assert median["evaluated_by"] == "great_expectations" and median["success"] is True
    assert "expect_column_to_be_wonderful not found" in unknown["unsupported"]
    assert res["expectations"]["statistics"]["unsupported"] == 1 and res["expectations"]["success"] is False
    assert_problem(client.put(f"/api/v1/baselines/{bid}/expectations.json", content=b'{"expectations": [{}]}',
                              headers=pub), 422, "type")


def gt_record(event_id: str, label: str, enc: str = "CSV") -> dict:
    return {"groundTruthData": {"data": label, "encoding": enc}, "eventMetadata": {"eventId": event_id},
            "eventVersion": "0"}


def _binary_endpoint(client, keys) -> str:
    """The churn-prod endpoint and a BinaryClassification model-quality baseline's id."""
    _endpoint(client, keys)
    val = pd.DataFrame({"label": [0, 1] * 50, "prediction": [0, 1] * 50})
    return client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", "prediction": "prediction"},
        files={"file": ("val.csv", csv_bytes(val))}).json()["id"]


def test_labels_a_model_quality_schedule_cannot_read_are_rejected(client, keys):
    """From a new-user trial: "banana" and 7 were accepted as labels of a binary model; every model-quality run
    of their window then Failed, and resending the right label was a duplicate, so the window stayed broken.
    Once the endpoint has a model-quality schedule, a label its problem type cannot read is a rejected record."""
    pub, ing = keys("publisher"), keys("ingest")
    mq = _binary_endpoint(client, keys)
    before = client.post("/api/v1/endpoints/churn-prod/ground-truth", json=[gt_record("early", "banana")],
                         headers=ing).json()
    assert before["accepted"] == 1          # no schedule says how labels are read yet: kept as sent
    r = client.post("/api/v1/monitoring-schedules", headers=pub, json={
        "name": "mq", "endpoint": "churn-prod", "type": "ModelQuality", "schedule": "hourly", "baseline_id": mq})
    assert r.status_code == 201, r.text
    g = client.post("/api/v1/endpoints/churn-prod/ground-truth", headers=ing, json=[
        gt_record("a", "1"), gt_record("b", '"banana"', "JSON"), gt_record("c", "7"), gt_record("d", "0.0")]).json()
    assert g["accepted"] == 2 and [x["index"] for x in g["rejected"]] == [1, 2]
    assert "label 'banana' is not 0 or 1" in g["rejected"][0]["reason"]
    assert "BinaryClassification model-quality schedules" in g["rejected"][1]["reason"]


def test_a_stored_label_is_replaced_only_on_request_and_the_replacement_is_audited(client, keys, app):
    """From a new-user trial: a wrong label, once stored, could not be corrected (a resend was a duplicate), so
    every model-quality result over its window stayed wrong. ``replace=true`` replaces it; the old labels are kept
    in the store and the audit event vouches for them by hash."""
    pub, ing = keys("publisher"), keys("ingest")
    mq = _binary_endpoint(client, keys)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    client.post("/api/v1/endpoints/churn-prod/capture", headers=ing,
                json=[record(i, t0 + dt.timedelta(seconds=i), (30, 40.0, "CA")) for i in range(20)])
    # every prediction reads as 0 here; the labels first sent say 1 for all, the right ones say 0 for all
    wrong = [gt_record(f"inf-{i}", "1") for i in range(20)]
    url = "/api/v1/endpoints/churn-prod/ground-truth"
    assert client.post(url, json=wrong, headers=ing).json()["accepted"] == 20
    window = {"type": "ModelQuality", "baseline_id": mq, "endpoint": "churn-prod",
              "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}

    def accuracy() -> float:
        res = client.post("/api/v1/analyses", json=window, headers=pub).json()
        st = client.get(f"/api/v1/analyses/{res['id']}/statistics.json", headers=pub).json()
        return st["binary_classification_metrics"]["accuracy"]["value"]

    assert accuracy() == 0.0
    mq_run = client.get("/api/v1/analyses", params={"baseline_id": mq}, headers=pub).json()["items"][0]["id"]
    missing = assert_problem(client.get(f"/api/v1/analyses/{mq_run}/drift.json", headers=pub), 404,
                             f"ModelQuality analysis {mq_run} has no drift.json", "statistics.json")
    assert "store" not in missing["detail"]
    assert_problem(client.get(f"/api/v1/baselines/{mq}/expectations.json", headers=pub), 404,
                   f"ModelQuality baseline {mq} has no expectations.json", "constraints.json")
    right = [gt_record(f"inf-{i}", "0") for i in range(20)]
    plain = client.post(url, json=right, headers=ing).json()
    assert (plain["accepted"], plain["replaced"], plain["duplicates"]) == (0, 0, 20)
    assert accuracy() == 0.0                       # without replace, nothing changed
    assert client.post(url, params={"replace": "true"}, json=right, headers=keys("viewer")).status_code == 403
    fixed = client.post(url, params={"replace": "true"}, json=[*right[:15], gt_record("new", "0")],
                        headers=ing).json()
    assert (fixed["accepted"], fixed["replaced"], fixed["duplicates"], fixed["unmatched"]) == (1, 15, 0, 1)
    assert accuracy() == 0.75
    again = client.post(url, params={"replace": "true"}, json=right[:15], headers=ing).json()
    assert (again["replaced"], again["duplicates"]) == (0, 15)    # the same label again replaces nothing
    events = client.get("/api/v1/audit/events", params={"action": "ground_truth.replaced"},
                        headers=keys("viewer")).json()["items"]
    assert len(events) == 1
    ev = events[0]
    assert ev["actor"] == "test-ingest" and ev["subject_id"] == "churn-prod" and ev["after"]["replaced"] == 15
    assert ev["before"]["labels"]["inf-3"] == "1" and ev["after"]["labels"]["inf-3"] == "0"
    kept = app.state.get_store().get(ev["before"]["object_key"])
    assert hashlib.sha256(kept).hexdigest() == ev["before"]["sha256"]
    assert json.loads(kept.splitlines()[0]) == {"eventId": "inf-0", "label": "1"}


def test_ground_truth_and_model_quality(client, keys):
    _endpoint(client, keys)
    pub, ing = keys("publisher"), keys("ingest")
    rng = np.random.default_rng(12)
    val = pd.DataFrame({"label": rng.integers(0, 2, 600)})
    val["prediction"] = np.where(rng.random(600) < 0.85, val["label"], 1 - val["label"])
    r = client.post("/api/v1/baselines", headers=pub, data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", "prediction": "prediction"},
        files={"file": ("val.csv", csv_bytes(val))})
    assert r.status_code == 201, r.text
    mq = r.json()["id"]
    assert r.json()["kind"] == "ModelQuality"
    cons = client.get(f"/api/v1/baselines/{mq}/constraints.json", headers=pub).json()
    assert cons["binary_classification_constraints"]["f1"]["comparison_operator"] == "LessThanThreshold"
    st = client.get(f"/api/v1/baselines/{mq}/statistics.json", headers=pub).json()
    assert isinstance(st["binary_classification_metrics"]["accuracy"]["standard_deviation"], float)
    # captured predictions (the capture's inferenceId is the join key), then late labels
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    truth = rng.integers(0, 2, 300)
    recs = []
    for i in range(300):
        rec = record(i, t0 + dt.timedelta(seconds=i), (30, 40.0, "CA"))
        rec["captureData"]["endpointOutput"]["data"] = str(1 - truth[i] if i % 2 else truth[i])   # 50% wrong
        recs.append(rec)
    client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=ing)
    window = {"type": "ModelQuality", "baseline_id": mq, "endpoint": "churn-prod",
              "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
    early = client.post("/api/v1/analyses", json=window, headers=pub).json()
    assert early["status"] == "Failed" and "no ground truth yet" in early["failure_reason"]
    labels = [gt_record(f"inf-{i}", str(truth[i])) for i in range(300)] + [gt_record("stranger", "1")]
    g = client.post("/api/v1/endpoints/churn-prod/ground-truth", json=labels, headers=ing).json()
    assert g["accepted"] == 301 and g["unmatched"] == 1 and g["unmatched_ids"] == ["stranger"]
    again = client.post("/api/v1/endpoints/churn-prod/ground-truth", json=labels[:5], headers=ing).json()
    assert again["duplicates"] == 5
    bad = assert_problem(client.post("/api/v1/endpoints/churn-prod/ground-truth",
                                     json=[{"eventMetadata": {}}, gt_record("x", "")], headers=ing), 422, "rejected")
    assert [x["index"] for x in bad["rejected"]] == [0, 1]
    res = client.post("/api/v1/analyses", json=window, headers=pub).json()
    assert res["kind"] == "ModelQuality" and res["status"] == "CompletedWithViolations" and res["rows"] == 300
    names = {v["metric_name"] for v in res["violations"]}
    assert {"accuracy", "f1"} <= names
    assert all(v["constraint_check_type"] in ("LessThanThreshold", "GreaterThanThreshold") for v in res["violations"])
    st = client.get(f"/api/v1/analyses/{res['id']}/statistics.json", headers=pub).json()
    assert abs(st["binary_classification_metrics"]["accuracy"]["value"] - 0.5) < 0.01
    same = client.post("/api/v1/analyses", headers=pub, data={"baseline_id": mq},
                       files={"file": ("val.csv", csv_bytes(val))}).json()
    assert same["status"] == "Completed"
    assert_problem(client.post("/api/v1/baselines", headers=pub, data={
        "type": "ModelQuality", "problem_type": "Ranking"}, files={"file": ("v.csv", csv_bytes(val))}), 422, "Ranking")
    assert_problem(client.post("/api/v1/baselines", headers=pub, data={
        "type": "ModelQuality", "problem_type": "Regression", "label": "y", "prediction": "p"},
        files={"file": ("v.csv", csv_bytes(val))}), 422, "not in the dataset")


def test_schedules_executions_alerts_and_run_now(client, keys, db, app):
    from monitor import jobs

    _endpoint(client, keys)
    bid = make_baseline(client, keys)
    pub = keys("publisher")
    body = {"name": "dq-hourly", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "*/5 * * * *",
            "baseline_id": bid, "window": {"start": "-PT1H", "end": "PT0S"}}
    r = client.post("/api/v1/monitoring-schedules", json=body, headers=pub)
    assert r.status_code == 201, r.text
    for bad, needle in [({**body, "name": "x2", "schedule": "every minute"}, "cron"),
                        ({**body, "name": "x3", "window": {"start": "-1h"}}, "ISO-8601"),
                        ({**body, "name": "x4", "window": {"start": "PT0S", "end": "-PT1H"}}, "not after"),
                        ({**body, "name": "x5", "type": "ModelBias"}, "needs a ModelBias baseline"),
                        ({**body, "name": "x6", "endpoint": "nope"}, "no endpoint"),
                        # a baseline none of whose columns the endpoint captures (before: 201, then every run
                        # reported every column missing and extra)
                        ({**body, "name": "x7", "baseline_id": make_baseline(
                            client, keys, frame(50).rename(columns=lambda c: f"other_{c}"))},
                         "captures none of them"),
                        (body, "already exists")]:
        resp = client.post("/api/v1/monitoring-schedules", json=bad, headers=pub)
        assert resp.status_code in (404, 409, 422) and needle.lower() in resp.text.lower(), resp.text
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    normal = frame(400, seed=21)
    recs = [record(i, t0 + dt.timedelta(seconds=5 * i), tuple(normal.iloc[i])) for i in range(400)]
    client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest"))
    win = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
    ex = client.post("/api/v1/monitoring-schedules/dq-hourly/run", json=win, headers=pub).json()
    assert ex["status"] == "Completed" and ex["analysis_id"]
    shifted = frame(400, shift=25, seed=22)
    t1 = dt.datetime(2026, 11, 20, 11, 0, tzinfo=dt.UTC)
    recs = [record(1000 + i, t1 + dt.timedelta(seconds=5 * i), tuple(shifted.iloc[i])) for i in range(400)]
    client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest"))
    win2 = {"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T12:00:00Z"}
    bad = client.post("/api/v1/monitoring-schedules/dq-hourly/run", json=win2, headers=pub).json()
    assert bad["status"] == "CompletedWithViolations"
    alerts = client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["items"]
    assert [a["check"] for a in alerts] == ["baseline_drift_check"] and alerts[0]["model_group"] == "churn"
    again = client.post("/api/v1/monitoring-schedules/dq-hourly/run", json=win2, headers=pub).json()
    assert again["status"] == "CompletedWithViolations"
    alerts = client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["items"]
    assert len(alerts) == 1 and alerts[0]["occurrences"] == 2                 # not duplicated
    assert client.post("/api/v1/monitoring-schedules/dq-hourly/run", json=win, headers=pub).json()["status"] == \
        "Completed"
    assert client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["total"] == 1   # older window
    t2 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    recs = [record(2000 + i, t2 + dt.timedelta(seconds=5 * i), tuple(normal.iloc[i])) for i in range(400)]
    client.post("/api/v1/endpoints/churn-prod/capture", json=recs, headers=keys("ingest"))
    client.post("/api/v1/monitoring-schedules/dq-hourly/run", headers=pub,
                json={"start": "2026-11-20T12:00:00Z", "end": "2026-11-20T13:00:00Z"})
    assert client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["total"] == 0   # resolved
    empty = client.post("/api/v1/monitoring-schedules/dq-hourly/run", headers=pub,
                        json={"start": "2026-11-21T00:00:00Z", "end": "2026-11-21T01:00:00Z"}).json()
    assert empty["status"] == "Failed" and "no data captured between" in empty["failure_reason"]
    # a window that has not begun is refused, not run into a Failed execution (a trial's 2027 window was)
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    assert_problem(client.post("/api/v1/monitoring-schedules/dq-hourly/run", headers=pub, json={
        "start": ahead.isoformat(), "end": (ahead + dt.timedelta(hours=1)).isoformat()}), 422,
        "nothing is captured there yet")
    exs = client.get("/api/v1/monitoring-schedules/dq-hourly/executions", headers=keys("viewer")).json()
    assert exs["total"] == 6
    # the scheduler tick with an injected clock: due runs execute once, missed runs coalesce
    sched_row = client.get("/api/v1/monitoring-schedules/dq-hourly", headers=pub).json()
    first = dt.datetime.fromisoformat(sched_row["next_run_at"])
    store = app.state.get_store()
    ran = jobs.tick(db, store, first + dt.timedelta(minutes=12))
    assert len(ran) == 1
    assert jobs.tick(db, store, first + dt.timedelta(minutes=12)) == []
    assert client.post("/api/v1/monitoring-schedules/dq-hourly/stop", headers=pub).json()["status"] == "Stopped"
    assert jobs.tick(db, store, first + dt.timedelta(hours=3)) == []
    assert client.post("/api/v1/monitoring-schedules/dq-hourly/start", headers=pub).json()["status"] == "Scheduled"
    r = client.patch("/api/v1/monitoring-schedules/dq-hourly", json={"schedule": "hourly"}, headers=pub)
    assert r.json()["expression"] == "hourly"
    assert client.delete("/api/v1/monitoring-schedules/dq-hourly", headers=pub).status_code == 204
    assert_problem(client.get("/api/v1/monitoring-schedules/dq-hourly", headers=pub), 404)


def test_performance_estimate_before_and_after_labels(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    client.post("/api/v1/endpoints", headers=keys("publisher"), json={
        "name": "scorer", "model_group": "churn", "model_version": 1,
        "schema": {"features": FEATURES, "prediction": None, "probability": {"name": "probability"}}})
    rng = np.random.default_rng(31)
    p = rng.beta(2, 2, 1500)
    y = (rng.random(1500) < p).astype(int)
    t0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    recs = []
    for i in range(1500):
        rec = record(i, t0 + dt.timedelta(seconds=i), (30, 40.0, "CA"))
        rec["captureData"]["endpointOutput"]["data"] = f"{p[i]:.6f}"
        recs.append(rec)
    assert client.post("/api/v1/endpoints/scorer/capture", json=recs, headers=keys("ingest")).json()["accepted"] == 1500
    win = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
    est = client.post("/api/v1/endpoints/scorer/performance-estimate", json=win, headers=keys("viewer")).json()
    assert est["rows"] == 1500 and est["labelled_rows"] == 0 and "comparison" not in est
    acc = est["estimated"]["accuracy"]
    assert acc["lower"] < acc["estimate"] < acc["upper"]
    client.post("/api/v1/endpoints/scorer/ground-truth", headers=keys("ingest"),
                json=[gt_record(f"inf-{i}", str(y[i])) for i in range(1500)])
    both = client.post("/api/v1/endpoints/scorer/performance-estimate", json=win, headers=keys("viewer")).json()
    assert both["labelled_rows"] == 1500
    assert sum(v["within_band"] for v in both["comparison"].values()) >= 4
    assert_problem(client.post("/api/v1/endpoints/scorer/performance-estimate", headers=keys("viewer"),
                               json={"start": "2026-11-21T10:00:00Z", "end": "2026-11-21T11:00:00Z"}), 422,
                   "no captured")


def test_another_publisher_cannot_stop_change_run_or_delete_a_schedule(client, keys):
    """A migration trial: with another publisher's key it stopped, re-timed, loosened (an alert rule), ran and
    deleted a team's schedules. A schedule is now its creator's (by owner) or an admin's to change."""
    _endpoint(client, keys)
    bid = make_baseline(client, keys)
    body = {"name": "dq", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "0 * * * *",
            "baseline_id": bid, "window": {"start": "-PT1H", "end": "PT0S"}}
    assert client.post("/api/v1/monitoring-schedules", json=body, headers=keys("publisher")).status_code == 201
    url = "/api/v1/monitoring-schedules/dq"
    win = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}
    for method, path, payload in (("POST", "/stop", None), ("POST", "/start", None),
                                  ("PATCH", "", {"schedule": "0 0 * * *"}), ("POST", "/run", win),
                                  ("DELETE", "", None)):
        r = client.request(method, url + path, json=payload, headers=keys("publisher2"))
        assert_problem(r, 403, "was created by 'test-publisher'", "only its creator or an admin")
    got = client.get(url, headers=keys("viewer")).json()
    assert got["status"] == "Scheduled" and got["expression"] == "0 * * * *"
    assert client.post(url + "/stop", headers=keys("publisher")).status_code == 200     # its creator
    assert client.delete(url, headers=keys("admin")).status_code == 204                # an admin
