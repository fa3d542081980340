"""Clarify datasets as users send them: a header row beside config.headers (SageMaker's files have none)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tests.helpers import assert_problem

HEADERS = ["sex", "income", "y", "pred"]


def _frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "income": rng.normal(50, 10, n).round(2),
                       "y": rng.integers(0, 2, n)})
    df["pred"] = np.where((df.sex == "f") & (rng.random(n) < 0.3), 0, df.y)
    return df


def _config(**over) -> bytes:
    cfg = {"headers": HEADERS, "label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": "income", "value_or_threshold": 55}],    # numeric: a threshold facet
           "methods": {"pre_training_bias": {"methods": ["CI", "DPL"]},
                       "post_training_bias": {"methods": ["DPPL"]}}}
    cfg.update(over)
    return json.dumps({k: v for k, v in cfg.items() if v is not None}).encode()


def test_bias_csv_with_a_header_row_and_config_headers_is_refused(client, keys):
    df, pub = _frame(), keys("publisher")
    with_header = df.to_csv(index=False).encode()
    no_header = df.to_csv(index=False, header=False).encode()
    for data in (with_header, b" SEX ,Income,y,PRED\r\n" + no_header):
        assert_problem(client.post("/api/v1/clarify/bias", headers=pub, files={
            "file": ("d.csv", data), "config": ("c.json", _config())}), 422, "first row repeats config.headers",
            "drop one of the two", "remove the header row", "remove `headers`")
    # either one alone is fine, and both read the same numbers
    results = []
    for data, config in ((no_header, _config()), (with_header, _config(headers=None))):
        r = client.post("/api/v1/clarify/bias", headers=pub, files={"file": ("d.csv", data),
                                                                    "config": ("c.json", config)})
        assert r.status_code == 200, r.text
        results.append(r.json())
        assert results[-1]["pre_training_bias_metrics"]["facets"]["income"][0]["value_or_threshold"].startswith(
            "(55.0, ")
    assert results[0] == results[1]
    assert_problem(client.post("/api/v1/clarify/bias", headers=pub, files={
        "file": ("d.csv", no_header), "config": ("c.json", _config(headers=HEADERS[:3]))}), 422, "headers",
        "3 names for 4 columns")


def test_bias_baseline_reads_config_headers_like_the_analysis(client, keys):
    df, pub = _frame(), keys("publisher")
    with_header = df.to_csv(index=False).encode()
    no_header = df.to_csv(index=False, header=False).encode()
    assert_problem(client.post("/api/v1/baselines", headers=pub, data={"type": "ModelBias"}, files={
        "file": ("d.csv", with_header), "config": ("c.json", _config())}), 422, "first row repeats config.headers",
        "drop one of the two")
    assert client.get("/api/v1/baselines", headers=pub).json()["total"] == 0
    # SageMaker's convention, no header row: the first record is data, not column names
    r = client.post("/api/v1/baselines", headers=pub, data={"type": "ModelBias"}, files={
        "file": ("d.csv", no_header), "config": ("c.json", _config())})
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == len(df)
