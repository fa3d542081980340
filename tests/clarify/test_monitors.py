"""ModelBias and ModelExplainability schedules on captured traffic with late labels."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier

from monitor import kinds, service
from tests.helpers import assert_problem, create_group, signed_in
from tests.monitor.test_api import record

FEATURES = [{"name": "age", "type": "Fractional"}, {"name": "income", "type": "Fractional"},
            {"name": "sex", "type": "String"}]
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def population(n: int, seed: int, favour: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(40, 10, n).round(1), "income": rng.normal(50, 10, n).round(2),
                       "sex": rng.choice(["f", "m"], n)})
    df["label"] = (rng.random(n) < 0.5).astype(int)
    drop = (df.sex == "f") & (rng.random(n) < favour)          # the model under-accepts group f
    df["prediction"] = np.where(drop, 0, df.label)
    return df


def setup(client, keys, artifact: bytes = b"model") -> None:
    create_group(client, keys("publisher"), "credit")
    client.post("/api/v1/model-groups/credit/versions", headers=keys("publisher"), json={
        "artifact_uri": "s3://m/credit/1", "artifact_sha256": hashlib.sha256(artifact).hexdigest()})
    client.post("/api/v1/endpoints", headers=keys("publisher"), json={
        "name": "credit-prod", "model_group": "credit", "model_version": 1,
        "schema": {"features": FEATURES, "prediction": {"name": "prediction"}}})


def explainability_baseline(client, keys, ref: pd.DataFrame, model) -> tuple[str, bytes]:
    """``model`` (fitted on ``ref``) registered as credit/1 behind credit-prod, and a ModelExplainability baseline
    of it on ``ref``: the baseline's id and the model's skops bytes."""
    artifact = sio.dumps(model)
    setup(client, keys, artifact)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelExplainability", "model_group": "credit", "model_version": "1", "model_format": "skops"},
        files={"file": ("ref.csv", ref.to_csv(index=False).encode()), "model": ("m.skops", artifact)})
    assert r.status_code == 201, r.text
    return r.json()["id"], artifact


def capture(client, keys, df: pd.DataFrame, start: dt.datetime, seed: int, labels: bool = True) -> None:
    recs = []
    for i, row in enumerate(df.itertuples()):
        rec = record(seed * 10_000 + i, start + dt.timedelta(seconds=i), (row.age, row.income, row.sex))
        rec["captureData"]["endpointOutput"]["data"] = str(row.prediction)
        recs.append(rec)
    client.post("/api/v1/endpoints/credit-prod/capture", json=recs, headers=keys("ingest"))
    if labels:
        gts = [{"groundTruthData": {"data": str(row.label), "encoding": "CSV"},
                "eventMetadata": {"eventId": f"inf-{seed * 10_000 + i}"}, "eventVersion": "0"}
               for i, row in enumerate(df.itertuples())]
        client.post("/api/v1/endpoints/credit-prod/ground-truth", json=gts, headers=keys("ingest"))


def test_bias_drift_schedule(client, keys, app, db):
    setup(client, keys)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL", "DI", "AD"]}}}
    base = population(3000, 1, favour=0.05)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", base.to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    assert r.json()["kind"] == "ModelBias"
    pre_only = {**{k: v for k, v in cfg.items() if k != "predicted_label"},   # was "predicted_label: None is not
                "methods": {"pre_training_bias": {"methods": ["CI"]}}}           # a column"
    assert_problem(client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                               files={"file": ("v.csv", base.to_csv(index=False).encode()),
                                      "config": ("c.json", json.dumps(pre_only).encode())}),
                   422, "ModelBias monitor judges the model's predictions")
    r = client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-bias", "endpoint": "credit-prod", "type": "ModelBias", "schedule": "hourly",
        "baseline_id": bid})
    assert r.status_code == 201, r.text
    capture(client, keys, population(1500, 2, favour=0.05), T0, 2)
    ok = client.post("/api/v1/monitoring-schedules/credit-bias/run", headers=keys("publisher"),
                     json={"start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}).json()
    assert ok["status"] == "Completed", ok
    t1 = T0 + dt.timedelta(hours=1)
    capture(client, keys, population(1500, 3, favour=0.6), t1, 3)     # much more unfair now
    bad = client.post("/api/v1/monitoring-schedules/credit-bias/run", headers=keys("publisher"),
                      json={"start": t1.isoformat(), "end": (t1 + dt.timedelta(hours=1)).isoformat()}).json()
    assert bad["status"] == "CompletedWithViolations", bad
    v = client.get(f"/api/v1/analyses/{bad['analysis_id']}/constraint_violations.json",
                   headers=keys("viewer")).json()["violations"]
    assert {x["metric_name"] for x in v} >= {"DPPL"}
    assert all(x["constraint_check_type"] == "bias_drift_check" and x["facet"] == "sex" for x in v)
    assert client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["items"][0]["check"] == \
        "bias_drift_check"
    t2 = t1 + dt.timedelta(hours=1)
    capture(client, keys, population(40, 4, favour=0.6), t2, 4)       # tiny window: the interval is wide
    small = client.post("/api/v1/monitoring-schedules/credit-bias/run", headers=keys("publisher"),
                        json={"start": t2.isoformat(), "end": (t2 + dt.timedelta(hours=1)).isoformat()}).json()
    assert small["status"] in ("Completed", "CompletedWithViolations")
    assert small["violation_count"] <= bad["violation_count"]
    # the trend charts: each metric between the bounds of the range its baseline allows, red where the run found it
    # drifted (bias points carried no line and no verdict, so a chart of DPPL showed nothing to judge it by)
    with db.session_scope() as s:
        points = kinds.series(s, app.state.get_store(), [
            service.get_analysis(s, run["analysis_id"]) for run in (ok, bad)])
        base_doc = json.loads(app.state.get_store().get(f"{service.get_baseline(s, bid).prefix}/analysis.json"))
    dppl = [{p.series.removeprefix("DPPL (sex=f)"): p for p in run if p.chart == "DPPL (sex=f)"} for run in points]
    [base_dppl] = [m["value"] for g in base_doc["post_training_bias_metrics"]["facets"]["sex"]
                   for m in g["metrics"] if m["name"] == "DPPL"]
    assert [run[""].breached for run in dppl] == [False, True]
    assert all((run[" allowed low"].value, run[" allowed high"].value) == (-abs(base_dppl), abs(base_dppl))
               for run in dppl)
    page = signed_in(app, keys.plain["viewer"]).get("/console/monitoring/schedules/credit-bias").text
    assert "dashed lines bound its allowed range" in page and "judged drifted: the window&#39;s whole 95%" in page


def test_attribution_drift_schedule(client, keys):
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 800), "income": rng.normal(50, 10, 800)})
    y = (ref.income + rng.normal(0, 3, 800) > 50).astype(int)
    bid, _ = explainability_baseline(client, keys, ref,
                                     GradientBoostingClassifier(n_estimators=20, random_state=0).fit(ref, y))
    client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-attr", "endpoint": "credit-prod", "type": "ModelExplainability", "schedule": "daily",
        "baseline_id": bid})
    same = pd.DataFrame({"age": rng.normal(40, 10, 300), "income": rng.normal(50, 10, 300), "sex": "f",
                         "prediction": 0, "label": 0})
    capture(client, keys, same, T0, 5, labels=False)
    ok = client.post("/api/v1/monitoring-schedules/credit-attr/run", headers=keys("publisher"),
                     json={"start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}).json()
    assert ok["status"] == "Completed", ok
    t1 = T0 + dt.timedelta(hours=1)
    shifted = same.assign(income=50.0, age=rng.normal(40, 25, 300))   # income stops varying
    capture(client, keys, shifted, t1, 6, labels=False)
    bad = client.post("/api/v1/monitoring-schedules/credit-attr/run", headers=keys("publisher"),
                      json={"start": t1.isoformat(), "end": (t1 + dt.timedelta(hours=1)).isoformat()}).json()
    assert bad["status"] == "CompletedWithViolations", bad
    v = client.get(f"/api/v1/analyses/{bad['analysis_id']}/constraint_violations.json",
                   headers=keys("viewer")).json()["violations"]
    assert v[0]["constraint_check_type"] == "feature_attribution_drift_check" and v[0]["metric_name"] == "shap"
    assert re.fullmatch(r"Feature attribution drift 0\.\d{4} exceeds threshold 0\.9", v[0]["description"]), v
    assert client.get(f"/api/v1/analyses/{bad['analysis_id']}", headers=keys("viewer")).status_code == 200


def test_bias_endpoint_on_a_captured_window_and_a_store_uri(client, keys, app):
    setup(client, keys)
    capture(client, keys, population(800, 9, favour=0.5), T0, 9)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"pre_training_bias": {"methods": ["CI", "DPL"]}, "post_training_bias": {"methods": ["DPPL"]}}}
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"), data={
        "endpoint": "credit-prod", "start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()},
        files={"config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 200, r.text
    dppl = r.json()["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"][0]
    assert dppl["name"] == "DPPL" and dppl["value"] > 0.1          # group f is under-accepted
    app.state.get_store().put("datasets/val.csv", population(300, 10, 0.0).to_csv(index=False).encode())
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"), data={"dataset_uri": "datasets/val.csv"},
                    files={"config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 200
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"), data={
        "endpoint": "credit-prod", "start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"},
        files={"config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 422 and "no labelled records" in r.json()["detail"]


def test_an_explainability_baseline_is_recorded_for_the_version_it_explained(client, keys, app, monkeypatch):
    """A stranger's review: the baseline computes SHAP of m/1's model for minutes, then looked the version up by
    name and number when it recorded; a group deleted and re-created meanwhile (SageMaker's or MLflow's delete) had
    the baseline filed upstream of another model. Recording checks it is still the same version row: 409."""
    from sklearn.linear_model import LogisticRegression

    from clarify.service import monitors
    from mlgov.auth import SYSTEM
    from registry import service as registry
    from tests.clarify.test_explain import _register

    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 200), "income": rng.normal(50, 10, 200)})
    artifact = sio.dumps(LogisticRegression().fit(ref, (ref.income > 50).astype(int)))
    _register(client, keys, artifact)
    real, replaced = monitors.explained, []

    def explained(*args, **kwargs):   # while SHAP computes, m is deleted and a new m/1 registered
        if not replaced:
            with app.state.db.session_scope() as w:
                registry.delete_group(w, "m", SYSTEM)
            create_group(client, keys("publisher"), "m")
            replaced.append(client.post("/api/v1/model-groups/m/versions", headers=keys("publisher"), json={
                "artifact_uri": "s3://models/m/1/other.skops", "artifact_sha256": "b" * 64}).status_code)
        return real(*args, **kwargs)

    monkeypatch.setattr(monitors, "explained", explained)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelExplainability", "model_group": "m", "model_version": "1", "model_format": "skops"},
        files={"file": ("ref.csv", ref.to_csv(index=False).encode()), "model": ("m.skops", artifact)})
    assert replaced == [201], (replaced, r.text)
    assert_problem(r, 409, "no longer the version whose model this baseline explains")
    assert client.get("/api/v1/baselines", headers=keys("viewer")).json()["total"] == 0
