"""A Clarify monitor's baseline must fit the endpoint it watches: its facets, predicted label and explained features
are captured columns (checked by the kind when a schedule is created or its baseline changed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier

from tests.clarify.test_monitors import explainability_baseline, population, setup
from tests.helpers import assert_problem


def test_bias_baseline_facets_must_be_captured(client, keys):
    setup(client, keys)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "facet": [{"name_or_index": "gender", "value_or_threshold": ["f"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL"]}}}
    data = population(500, 1, favour=0.05).rename(columns={"sex": "gender"})
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", data.to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 201, r.text
    assert_problem(client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "b", "endpoint": "credit-prod", "type": "ModelBias", "schedule": "hourly",
        "baseline_id": r.json()["id"]}), 422, "facet[0]='gender'", "captures no column 'gender'", "sex")


def test_explainability_baseline_features_must_be_captured(client, keys):
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 200), "income": rng.normal(50, 10, 200),
                        "tenure": rng.normal(5, 2, 200)})
    bid, _ = explainability_baseline(client, keys, ref, GradientBoostingClassifier(n_estimators=5, random_state=0)
                                     .fit(ref, (ref.income > 50).astype(int)))
    # tenure is not captured by credit-prod: SHAP would silently leave it out of every run
    assert_problem(client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "x", "endpoint": "credit-prod", "type": "ModelExplainability", "schedule": "hourly",
        "baseline_id": bid}), 422, "feature[2]='tenure'", "captures no column 'tenure'")
