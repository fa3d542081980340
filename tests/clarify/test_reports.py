"""The reports of Clarify's monitor kinds on monitor's report route, from windows the schedules analysed: bias drift
(per-facet metrics against the baseline, allowed range, verdicts) and feature-attribution drift (bars, ranks,
nDCG)."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier

from tests.clarify.test_monitors import T0, capture, population, setup

HOUR = dt.timedelta(hours=1)


def run(client, keys, schedule: str, start: dt.datetime) -> dict:
    r = client.post(f"/api/v1/monitoring-schedules/{schedule}/run", headers=keys("publisher"),
                    json={"start": start.isoformat(), "end": (start + HOUR).isoformat()})
    assert r.status_code == 201, r.text
    return dict(r.json())


def report(client, keys, analysis_id: str) -> tuple[str, dict]:
    html = client.get(f"/api/v1/analyses/{analysis_id}/report", headers=keys("viewer"))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    rep = client.get(f"/api/v1/analyses/{analysis_id}/report", params={"format": "json"}, headers=keys("viewer"))
    return html.text, rep.json()


def row_of(html: str, marker: str) -> str:
    start = html.index(marker)
    return html[start:html.index("</tr>", start)]


def test_bias_drift_report(client, keys, tmp_path):
    from tests.browser import render

    setup(client, keys)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL", "DI", "AD"]}}}
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", population(3000, 1, favour=0.05).to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 201, r.text
    client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-bias", "endpoint": "credit-prod", "type": "ModelBias", "schedule": "hourly",
        "baseline_id": r.json()["id"]})
    capture(client, keys, population(1500, 3, favour=0.6), T0, 3)     # much more unfair than the baseline
    bad = run(client, keys, "credit-bias", T0)
    assert bad["status"] == "CompletedWithViolations", bad
    html, rep = report(client, keys, bad["analysis_id"])
    assert rep["kind"] == "ModelBias" and rep["endpoint"] == "credit-prod"
    assert "<h1>Bias-drift analysis</h1>" in html and "Data-quality" not in html
    base = {m["name"]: m["value"] for m in rep["baseline_analysis"]["post_training_bias_metrics"]["facets"]["sex"][0]
            ["metrics"]}
    cur = {m["name"]: m["value"] for m in rep["analysis"]["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"]}
    dppl = row_of(html, '<tr data-metric="DPPL">')
    assert f"{base['DPPL']:.4g}" in dppl and f"{cur['DPPL']:.4g}" in dppl
    assert f"{-abs(base['DPPL']):.4g} to {abs(base['DPPL']):.4g}" in dppl
    assert '<span class="bad">drift</span>' in dppl and "95% interval" in dppl
    drifted = {v["metric_name"] for v in rep["violations"]}
    for name in cur:
        verdict = re.search(r'<span class="\w+">([^<]+)</span>', row_of(html, f'<tr data-metric="{name}">'))
        assert verdict is not None and (verdict.group(1) == "drift") == (name in drifted), name
    assert '<th>facet</th><th>value</th><th>metric</th>' in html            # violations name facet and metric
    dom, shot = render(html, tmp_path)
    assert 'data-facet="sex"' in dom and shot.stat().st_size > 5000


def test_attribution_drift_report(client, keys, tmp_path):
    from tests.browser import render

    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 800), "income": rng.normal(50, 10, 800)})
    y = (ref.income + rng.normal(0, 3, 800) > 50).astype(int)
    artifact = sio.dumps(GradientBoostingClassifier(n_estimators=20, random_state=0).fit(ref, y))
    setup(client, keys, artifact)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelExplainability", "model_group": "credit", "model_version": "1", "model_format": "skops",
        "ndcg_threshold": "0.95"}, files={"file": ("ref.csv", ref.to_csv(index=False).encode()),
                                          "model": ("m.skops", artifact)})
    assert r.status_code == 201, r.text
    client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-attr", "endpoint": "credit-prod", "type": "ModelExplainability", "schedule": "daily",
        "baseline_id": r.json()["id"]})
    shifted = pd.DataFrame({"age": rng.normal(40, 25, 300), "income": 50.0, "sex": "f", "prediction": 0,
                            "label": 0})                              # income stops varying: age leads now
    capture(client, keys, shifted, T0, 6, labels=False)
    bad = run(client, keys, "credit-attr", T0)
    assert bad["status"] == "CompletedWithViolations", bad
    html, rep = report(client, keys, bad["analysis_id"])
    assert "<h1>Feature-attribution drift analysis</h1>" in html and "Data-quality" not in html
    score = rep["analysis"]["ndcg"]
    assert f"{score:.4g}" in html and "against the threshold 0.95" in html and ">drift</strong>" in html
    base = rep["baseline_analysis"]["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    cur = rep["analysis"]["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    assert max(base, key=base.get) == "income" and max(cur, key=cur.get) == "age"
    income = row_of(html, '<tr data-feature="income">')
    assert f"{base['income']:.4g}" in income and f"{cur['income']:.4g}" in income
    assert "<code>credit</code> version 1" in html
    dom, shot = render(html, tmp_path)
    bars = re.findall(r'<rect class="(base|cur)" x="0" y="\d+" width="([0-9.]+)"', dom)
    assert len(bars) == 4 and max(float(w) for _, w in bars) == 260.0      # 2 features × (baseline, window)
    assert shot.stat().st_size > 5000
