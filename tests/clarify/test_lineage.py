"""Clarify records lineage as data quality does: its baselines, the reports attached to versions and its monitors'
alerts are in the graph, reachable from the model version."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier

from tests.clarify.test_monitors import T0, capture, explainability_baseline, population, setup

MODEL_URI = "s3://m/credit/1"   # the artifact of the version setup() registers
VERSION_URI = "mlgov://model-groups/credit/versions/1"   # that version's own node, which uses the artifact
CFG = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
       "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
       "methods": {"post_training_bias": {"methods": ["DPPL", "DI", "AD"]}}}


def reached(client, keys, start: str, direction: str, node_type: str) -> list[dict]:
    r = client.post("/api/v1/lineage/query", headers=keys("viewer"),
                    json={"start": [start], "direction": direction, "filters": {"types": [node_type]}})
    assert r.status_code == 200, r.text
    return r.json()["vertices"]


def artifacts(client, keys, node_type: str) -> list[dict]:
    r = client.get(f"/api/v1/lineage/artifacts?type={node_type}", headers=keys("viewer"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_bias_baseline_and_its_monitors_alert_are_in_the_graph(client, keys):
    setup(client, keys)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", population(3000, 1, favour=0.05).to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(CFG).encode())})
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    [art] = artifacts(client, keys, "Baseline")
    assert art["properties"] == {"baseline_id": bid} and art["uri"].endswith(f"baselines/{bid}/analysis.json")
    client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-bias", "endpoint": "credit-prod", "type": "ModelBias", "schedule": "hourly",
        "baseline_id": bid})
    capture(client, keys, population(1500, 3, favour=0.6), T0, 3)
    bad = client.post("/api/v1/monitoring-schedules/credit-bias/run", headers=keys("publisher"),
                      json={"start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}).json()
    assert bad["status"] == "CompletedWithViolations", bad
    alerts = reached(client, keys, MODEL_URI, "Descendants", "Alert")   # artifact → version → deployment → …
    assert alerts and all(a["name"].startswith("credit-bias: bias_drift_check on ") for a in alerts)   # one per metric
    assert any(a["name"] == "credit-bias: bias_drift_check on DPPL (sex=f)" for a in alerts), alerts


def test_explainability_baseline_descends_from_the_explained_model(client, keys):
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 200), "income": rng.normal(50, 10, 200)})
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(ref, (ref.income > 50).astype(int))
    bid, artifact = explainability_baseline(client, keys, ref, model)
    [base] = reached(client, keys, MODEL_URI, "Descendants", "Baseline")
    assert base["uri"].endswith(f"baselines/{bid}/analysis.json")
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                    data={"model_group": "credit", "model_version": "1", "model_format": "skops"},
                    files={"file": ("x.csv", ref.head(20).to_csv(index=False).encode()),
                           "model": ("m.skops", artifact)})
    assert r.status_code == 200, r.text
    [report] = reached(client, keys, VERSION_URI, "Ascendants", "ExplainabilityReport")
    assert report["uri"].endswith(f"clarify/{r.headers['X-Mlgov-Analysis-Id']}/analysis.json")


def test_a_bias_report_attached_to_a_version_is_in_the_graph_with_its_dataset(client, keys, app):
    setup(client, keys)
    app.state.get_store().put("datasets/val.csv", population(300, 10, 0.0).to_csv(index=False).encode())
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                    data={"dataset_uri": "datasets/val.csv", "model_group": "credit", "model_version": "1"},
                    files={"config": ("c.json", json.dumps(CFG).encode())})
    assert r.status_code == 200, r.text
    [report] = reached(client, keys, VERSION_URI, "Ascendants", "BiasReport")
    assert report["uri"].endswith(f"clarify/{r.headers['X-Mlgov-Analysis-Id']}/analysis.json")
    assert [v["id"] for v in reached(client, keys, "datasets/val.csv", "Descendants", "BiasReport")] == [report["id"]]
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"), data={"dataset_uri": "datasets/val.csv"},
                    files={"config": ("c.json", json.dumps(CFG).encode())})
    assert r.status_code == 200   # not attached to a version: no report node
    assert len(artifacts(client, keys, "BiasReport")) == 1
