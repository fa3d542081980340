"""analysis_config.json is validated whole (every problem, with its field path), and every Clarify response is
RFC 8259 JSON: undefined or infinite metrics are null with a note, never NaN/Infinity."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from clarify.metrics.analysis import analyze, metric_entry, metric_value
from clarify.metrics.config import ConfigError, parse_config
from tests.helpers import assert_problem

GOOD = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
        "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
        "methods": {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": ["DPPL", "DI"]}}}
BROKEN = {  # one of each kind of mistake
    "label_values_or_threshold": [],
    "facets": [{"name_or_index": "sex"}],
    "facet": [{"name_or_index": 1.5, "value_or_threshold": "f"}, {"value_or_threshold": [1]}],
    "probability_threshold": 2,
    "group_variable": True,
    "dataset_type": "text/tsv",
    "methods": {"pre_training_bias": {"methods": ["CI", "XX"]}, "post_training_bias": {"methods": "some"},
                "shap": {"agg_method": "max", "num_clusters": 99}},
}
BROKEN_FIELDS = {"label", "label_values_or_threshold", "facets", "facet.0.name_or_index", "facet.0.value_or_threshold",
                 "facet.1.name_or_index", "probability_threshold", "group_variable", "dataset_type",
                 "methods.pre_training_bias.methods", "methods.post_training_bias.methods",
                 "methods.shap.agg_method", "methods.shap.num_clusters", "predicted_label"}


def strict_loads(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} in a response: not RFC 8259 JSON")
    return json.loads(text, parse_constant=refuse)


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "income": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    df["pred"] = np.where(rng.random(n) < 0.8, df.y, 1 - df.y)
    return df


def test_every_problem_is_listed_with_its_field_path():
    assert parse_config(GOOD).as_dict()["methods"]["pre_training_bias"] == {"methods": "all"}
    with pytest.raises(ConfigError) as err:
        parse_config(BROKEN)
    fields = [p["field"] for p in err.value.problems]
    assert set(fields) == BROKEN_FIELDS, fields
    assert all(p["message"] for p in err.value.problems)
    assert "XX" in next(p["message"] for p in err.value.problems if p["field"] == "methods.pre_training_bias.methods")
    # "all" belongs inside a section, and the message says so
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, "methods": "all"})
    assert [p["field"] for p in err.value.problems] == ["methods"]
    assert "inside a section" in err.value.problems[0]["message"]
    for raw, needle in [(b"[1, 2]", "JSON object"), (b'{"label": NaN}', "NaN"), (b"{", "not valid JSON"),
                        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                        ({**GOOD, "probability_threshold": math.nan}, "probability_threshold")]:
        with pytest.raises(ConfigError, match=needle):
            parse_config(raw)


def test_data_fit_problems_are_listed_together():
    cfg = {**GOOD, "label": "nope", "facet": [{"name_or_index": "gender"}, {"name_or_index": 7}]}
    with pytest.raises(ConfigError) as err:
        analyze(frame(), cfg)
    assert {p["field"] for p in err.value.problems} == {"label", "facet.0.name_or_index", "facet.1.name_or_index"}


def test_undefined_and_infinite_metrics_are_null_with_a_note():
    assert metric_entry("GE", math.nan) == {"name": "GE", "description": "Generalized Entropy (GE)", "value": None,
                                            "note": "undefined: every prediction is a false negative, so the mean "
                                                    "benefit is 0"}
    inf = metric_entry("DI", math.inf)
    assert inf["value"] is None and inf["note"].startswith("Infinity: group a has no positive predictions")
    assert metric_value(inf) == math.inf and metric_value(metric_entry("TE", -math.inf)) == -math.inf
    assert math.isnan(metric_value(metric_entry("GE", math.nan))) and metric_value(metric_entry("CI", 0.25)) == 0.25


def _post(client, keys, cfg: object, df: pd.DataFrame | None = None, **data: str):
    body = cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode()
    return client.post("/api/v1/clarify/bias", headers=keys("publisher"), data=data,
                       files={"file": ("d.csv", (frame() if df is None else df).to_csv(index=False).encode()),
                              "config": ("analysis_config.json", body)})


def test_malformed_configs_are_422_listing_every_problem(client, keys):
    body = assert_problem(_post(client, keys, {**GOOD, "methods": "all"}), 422, "methods", "inside a section")
    assert [e["field"] for e in body["errors"]] == ["methods"]
    body = assert_problem(_post(client, keys, BROKEN), 422, "analysis config")
    assert {e["field"] for e in body["errors"]} == BROKEN_FIELDS
    assert_problem(_post(client, keys, b'{"label": "y", "label_values_or_threshold": [1], "probability_threshold":'
                                       b' Infinity}'), 422, "Infinity")
    assert_problem(_post(client, keys, b"[" * 100_000 + b"]" * 100_000), 422, "nested")
    assert_problem(_post(client, keys, {**GOOD, "facet": [{"name_or_index": "gender"}]}), 422, "facet.0",
                   "not a column")
    # the bias-drift baseline takes the same config: same 422, no baseline stored
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", frame().to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps({**GOOD, "methods": "all"}).encode())})
    assert [e["field"] for e in assert_problem(r, 422, "methods")["errors"]] == ["methods"]
    assert client.get("/api/v1/baselines", headers=keys("viewer")).json()["items"] == []


def test_responses_are_strict_json_when_metrics_are_undefined(client, keys):
    df = frame()
    df["pred"] = np.where(df.sex == "f", df.y, 0)             # group a (m) is never accepted: DI = x/0
    cfg = {**GOOD, "methods": {"pre_training_bias": {"methods": "all"},
                               "post_training_bias": {"methods": ["DI", "DPPL", "FT"]}}}
    r = _post(client, keys, cfg, df)
    assert r.status_code == 200, r.text
    doc = strict_loads(r.text)
    post = {m["name"]: m for m in doc["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"]}
    assert post["DI"]["value"] is None and post["DI"]["note"].startswith("Infinity")
    assert isinstance(post["DPPL"]["value"], float)
    pre = {m["name"]: m for m in doc["pre_training_bias_metrics"]["facets"]["sex"][0]["metrics"]}
    assert pre["CDDL"]["value"] is None and "group_variable" in pre["CDDL"]["note"]
    aid = r.headers["x-mlgov-analysis-id"]
    strict_loads(client.get(f"/api/v1/clarify/reports/{aid}", params={"format": "json"},
                            headers=keys("viewer")).text)
    html = client.get(f"/api/v1/clarify/reports/{aid}", headers=keys("viewer"))
    assert html.status_code == 200 and "Infinity: group a has no positive predictions" in html.text
    # GE: every label positive, every prediction negative
    r = _post(client, keys, {**GOOD, "methods": {"post_training_bias": {"methods": ["GE", "DI"]}}},
              df.assign(y=1, pred=0))
    ge = {m["name"]: m for m in strict_loads(r.text)["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"]}
    assert ge["GE"]["value"] is None and "false negative" in ge["GE"]["note"]
    # a model version's bias policy counts an undefined metric as failing, and says why
    from tests.helpers import create_group, register

    create_group(client, keys("publisher"), "credit")
    register(client, keys("publisher"), "credit", 1)
    r = _post(client, keys, cfg, df, model_group="credit", model_version="1")
    assert r.status_code == 200, r.text
    report = client.get("/api/v1/model-groups/credit/versions/1", headers=keys("viewer")).json()["bias_report"]
    assert report["passed"] is False and any("DI=null (Infinity" in f for f in report["failures"]), report


def test_clarify_metrics_stay_pure_computation():
    """clarify/metrics (config model included) imports no web, database or kernel code, nor the domain's
    service layer: arrays, frames and plain documents in, typed results out."""
    import ast
    from pathlib import Path

    banned = ("fastapi", "starlette", "sqlalchemy", "alembic", "mlgov", "registry", "monitor", "lineage", "console",
              "clarify.service", "clarify.router", "clarify.loaders", "uvicorn", "boto3")
    root = Path(__file__).resolve().parents[2] / "clarify" / "metrics"
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned or n.startswith(banned)]
    assert len(list(root.glob("*.py"))) >= 5 and found == []


@pytest.mark.parametrize("route", ["/api/v1/clarify/explain", "/api/v1/clarify/bias"])
def test_text_parts_that_are_not_utf8_are_422(client, keys, route):
    files = {"model_group": ("g.txt", b"\xff\xfe"), "model_version": ("v.txt", b"1"), "file": ("d.csv", b"a\n1\n"),
             "config": ("c.json", json.dumps({"label": "y", "label_values_or_threshold": [1], "facet": [
                 {"name_or_index": "a"}], "methods": {"pre_training_bias": {"methods": "all"}}}).encode())}
    r = client.post(route, files=files, headers=keys("publisher"))
    assert r.status_code == 422 and "model_group" in r.json()["detail"] and "UTF-8" in r.json()["detail"], r.text
