"""What users send: endpoint schemas in their own words, capture batches nothing in which is readable, and drift
verdicts on windows too small to carry one."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from monitor.engine import drift
from monitor.engine.analysis import DriftConfig, analyze, profile
from tests.helpers import assert_problem, create_group, register
from tests.monitor.test_api import FEATURES, _endpoint, csv_bytes, frame, make_baseline, record

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


# --- small samples ------------------------------------------------------------------------------------------------

def test_one_record_window_claims_no_drift_and_says_why(client, keys):
    _endpoint(client, keys)
    bid = make_baseline(client, keys)      # 2,000 rows: Wasserstein and Jensen-Shannon by Evidently's rules
    assert client.post("/api/v1/endpoints/churn-prod/capture", json=[record(0, T, (30, 41.5, "CA"))],
                       headers=keys("ingest")).json()["accepted"] == 1
    r = client.post("/api/v1/analyses", headers=keys("publisher"), json={
        "baseline_id": bid, "endpoint": "churn-prod", "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"})
    assert r.status_code == 201, r.text
    res = r.json()
    assert res["rows"] == 1 and res["dataset_drift"] is False and res["drifted_features"] == []
    assert res["small_sample"] is True and "small sample" in res["note"] and "No dataset drift" in res["note"]
    for row in res["drift"]:
        assert row["small_sample"] is True and row["drifted"] is False and row["min_values"] > 1
        assert "not judged" in row["note"] and "sampling noise" in row["note"]
    again = client.get(f"/api/v1/analyses/{res['id']}", headers=keys("viewer")).json()
    assert again["small_sample"] is True and again["note"] == res["note"]
    summary = client.get(f"/api/v1/analyses/{res['id']}/drift.json", headers=keys("viewer")).json()["summary"]
    assert summary["skipped_features"] == ["age", "income", "state"]


def _profiles(values: np.ndarray, states: np.ndarray) -> list:
    return profile(pd.DataFrame({"x": values, "s": states}))[1]


@pytest.mark.parametrize("method", ["linf_simple", "wasserstein", "psi", "jensenshannon"])
def test_distances_are_not_judged_below_their_noise_floor(method):
    rng = np.random.default_rng(3)
    ref = _profiles(rng.normal(50, 10, 5000), rng.choice(["a", "b", "c"], 5000))
    config_x = {"x": method, "s": method if method != "wasserstein" else "jensenshannon"}
    for m in (1, 5, 20):
        cur = pd.DataFrame({"x": rng.normal(50, 10, m), "s": rng.choice(["a", "b", "c"], m)})
        res = analyze(ref, {"features": []}, cur, DriftConfig(per_feature=config_x))
        assert all(d.small_sample and not d.drifted for d in res.drift), [d.as_dict() for d in res.drift]
        assert res.summary()["dataset_drift"] is False and res.summary()["small_sample"] is True
    # at the size each method says it needs, windows of the reference's own distribution are rarely called drifted
    needed = {d.feature: d.min_values for d in res.drift}
    false_alarms = {"x": 0, "s": 0}
    for _ in range(60):
        for f in ("x", "s"):
            m = int(needed[f] or 0)
            cur = pd.DataFrame({"x": rng.normal(50, 10, m), "s": rng.choice(["a", "b", "c"], m)})
            d = next(d for d in analyze(ref, {"features": []}, cur, DriftConfig(per_feature=config_x)).drift
                     if d.feature == f)
            assert not d.small_sample
            false_alarms[f] += d.drifted
    assert false_alarms["x"] <= 6 and false_alarms["s"] <= 6, false_alarms   # ≈ 5% of 60, with slack
    # and a real shift on a window of that size is still found
    m = int(needed["x"] or 0)
    shifted = pd.DataFrame({"x": rng.normal(60, 10, m), "s": rng.choice(["a", "b", "c"], m, p=[0.8, 0.1, 0.1])})
    res = analyze(ref, {"features": []}, shifted, DriftConfig(per_feature=config_x))
    assert all(d.drifted and not d.small_sample for d in res.drift), [d.as_dict() for d in res.drift]


def test_noise_floor_matches_the_ks_critical_distance():
    floor, needed = drift._noise_floor("linf_simple", drift.KS_C_95, 0.1, 10_000, 100)
    assert math.isclose(floor, 1.358 * math.sqrt(1 / 10_000 + 1 / 100))
    assert needed is not None and drift.KS_C_95 * math.sqrt(1 / 10_000 + 1 / needed) < 0.1
    assert drift.KS_C_95 * math.sqrt(1 / 10_000 + 1 / (needed - 1)) >= 0.1
    assert drift._noise_floor("linf_simple", drift.KS_C_95, 0.1, 50, 100)[1] is None   # reference too small


def test_self_correcting_tests_keep_their_verdicts_on_small_windows():
    """p-value tests and SageMaker's Robust L∞ account for both sizes themselves: judged at any size."""
    rng = np.random.default_rng(4)
    ref = _profiles(rng.normal(50, 10, 500), rng.choice(["a", "b", "c"], 500))
    cur = pd.DataFrame({"x": rng.normal(50, 10, 3), "s": rng.choice(["a", "b", "c"], 3)})
    for per in ({}, {"x": "linf_robust", "s": "linf_robust"}, {"x": "ks", "s": "z"}):
        res = analyze(ref, {"features": []}, cur, DriftConfig(per_feature=per))
        assert not any(d.small_sample for d in res.drift) and res.summary()["note"] is None


def test_a_shift_far_beyond_the_noise_floor_is_drift_even_below_the_needed_size():
    """500 values moved by 1.5σ: Wasserstein ≈ 1.5 while noise reaches ≈ 0.13 at this size. The threshold 0.1 is
    below the noise level, so the verdict is taken against the noise level — and it is drift, not 'not judged'."""
    rng = np.random.default_rng(5)
    ref = _profiles(rng.normal(50, 10, 2000), rng.choice(["a", "b"], 2000))
    cur = pd.DataFrame({"x": rng.normal(65, 10, 500), "s": rng.choice(["a", "b"], 500)})
    res = analyze(ref, {"features": []}, cur, DriftConfig(per_feature={"x": "wasserstein"}))
    x = next(d for d in res.drift if d.feature == "x")
    assert x.drifted and not x.small_sample and x.min_values is not None and x.min_values > 500, x.as_dict()
    assert x.note is not None and "sampling-noise level" in x.note
    assert res.summary()["dataset_drift"] is True or res.summary()["drift_share"] > 0


# --- values of another type ---------------------------------------------------------------------------------------

def test_features_whose_type_changed_are_drifted_and_counted_in_the_share(client, keys):
    """age and income now hold text: both listed as drifted, and the share and dataset verdict say the same (2 of
    3 features), not 0% and no drift beside a list of two drifted features."""
    bid = make_baseline(client, keys)
    cur = frame(3000, seed=1)
    cur["age"], cur["income"] = "abc", "n/a-" + cur["income"].round(1).astype(str)
    r = client.post("/api/v1/analyses", data={"baseline_id": bid}, files={"file": ("c.csv", csv_bytes(cur))},
                    headers=keys("publisher"))
    assert r.status_code == 201, r.text
    res = r.json()
    assert res["drifted_features"] == ["age", "income"]
    assert res["drift_share"] == pytest.approx(2 / 3) and res["dataset_drift"] is True
    summary = client.get(f"/api/v1/analyses/{res['id']}/drift.json", headers=keys("viewer")).json()["summary"]
    assert summary["drift_share"] == pytest.approx(2 / 3) and summary["dataset_drift"] is True
    rows = {d["feature"]: d for d in res["drift"]}
    assert all("type changed" in rows[f]["note"] for f in ("age", "income"))
    checks = {(v["feature_name"], v["constraint_check_type"]) for v in
              client.get(f"/api/v1/analyses/{res['id']}/report", params={"format": "json"},
                         headers=keys("viewer")).json()["violations"]}
    assert {("age", "data_type_check"), ("income", "data_type_check")} <= checks
    # the Evidently export counts them the same way: 2 drifted of 3 columns, though neither has a drift score
    snap = client.get(f"/api/v1/analyses/{res['id']}/evidently-snapshot", headers=keys("viewer")).json()
    counters = {c["label"]: c["value"] for w in snap["widgets"] for c in (w["params"] or {}).get("counters", [])}
    assert (counters["Columns"], counters["Drifted Columns"]) == ("3", "2")
    [table] = [w for w in snap["widgets"] if w["type"] == "big_table"]
    assert [row["column_name"] for row in table["params"]["data"]] == ["state"]
    assert "Type changed (drifted, no drift score): age, income." in table["title"]


def _read(df: pd.DataFrame):
    from monitor.engine.columns import read_table

    return read_table(df.to_csv(index=False).encode())


def test_one_value_that_is_not_a_number_fails_the_type_check_and_the_rest_are_measured():
    """One "abc" among 3,003 ages: SageMaker's data_type_check fails (99.97% Integral), and the 3,002 numbers are
    still compared with the baseline, so the column keeps a drift statistic and verdict of its own."""
    from monitor.engine import constraints as cons

    rng = np.random.default_rng(7)
    base = profile(_read(pd.DataFrame({"age": rng.integers(18, 90, 2000), "x": rng.normal(0, 1, 2000)})))[1]
    rules = cons.suggest(base)
    for shift, drifted in ((0, False), (30, True)):
        cur = pd.DataFrame({"age": (rng.integers(18, 90, 3003) + shift).astype(object), "x": rng.normal(0, 1, 3003)})
        cur.loc[17, "age"] = "abc"
        res = analyze(base, rules, _read(cur))
        [violation] = res.violations
        assert violation["feature_name"] == "age" and violation["constraint_check_type"] == "data_type_check"
        age = next(d for d in res.drift if d.feature == "age")
        assert age.kind == "numerical" and math.isfinite(age.statistic) and age.drifted is drifted, age.as_dict()
        assert age.note is not None and "1 of 3,003 current values" in age.note and "data_type_check" in age.note
        summary = res.summary()
        assert summary["drifted_features"] == (["age"] if drifted else [])
        assert summary["drift_share"] == (0.5 if drifted else 0.0)


def test_a_type_violation_shows_the_observed_share_below_the_expected():
    """1 bad value in 3,003 is 99.967% Integral: one decimal would print "Only 100.0%" under "Expected match:
    100.0%". The description keeps SageMaker's wording and one decimal where that shows the gap."""
    from monitor.engine import constraints as cons

    base = profile(_read(pd.DataFrame({"age": np.arange(2000)})))[1]
    rules = cons.suggest(base)
    for bad, observed in ((1, "99.97%"), (9, "99.7%")):
        cur = pd.DataFrame({"age": np.arange(3003).astype(object)})
        cur.loc[:bad - 1, "age"] = "abc"
        [v] = analyze(base, rules, _read(cur)).violations
        assert v["description"] == ("Data type match requirement is not met. Expected data type: Integral, Expected "
                                    f"match: 100.0%. Observed: Only {observed} of data is Integral."), v
