"""Explanations say what their SHAP values add up to (log-odds, probability, raw), let the caller ask for probability
where SHAP can compute it, and hand back their per-row values."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from scipy.special import logit
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from clarify.metrics.shap_values import OutputSpaceUnavailable, explain
from tests.clarify.test_explain import _register, data
from tests.helpers import assert_problem


def _sums(r) -> np.ndarray:
    return r["local"].sum(axis=1).to_numpy() + r["expected_value"]


def test_every_explainer_states_its_output_space_and_the_values_add_up_in_it():
    x, y = data()
    rows = x.head(30)
    gb = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    r = explain(gb, rows)
    assert (r["method"], r["output_space"]) == ("tree", "log_odds")
    np.testing.assert_allclose(_sums(r), logit(gb.predict_proba(rows)[:, 1]), atol=1e-8)
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    r = explain(rf, rows)
    assert (r["method"], r["output_space"]) == ("tree", "probability")
    np.testing.assert_allclose(_sums(r), rf.predict_proba(rows)[:, 1], atol=1e-8)
    reg = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(x, x.a)
    assert explain(reg, rows)["output_space"] == "raw"
    lr = LogisticRegression().fit(x.to_numpy(), y)
    r = explain(lr, rows)
    assert (r["method"], r["output_space"]) == ("linear", "log_odds")
    assert explain(LinearRegression().fit(x, x.a), rows)["output_space"] == "raw"
    knn = KNeighborsClassifier(5).fit(x.to_numpy(), y)
    r = explain(knn, rows.head(10))
    assert (r["method"], r["output_space"]) == ("permutation", "probability")


def test_probability_space_where_shap_supports_it():
    x, y = data()
    rows = x.head(30)
    gb = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    r = explain(gb, rows, output_space="probability", background=x.tail(50))
    assert (r["method"], r["output_space"]) == ("tree", "probability")
    np.testing.assert_allclose(_sums(r), gb.predict_proba(rows)[:, 1], atol=1e-6)
    lr = LogisticRegression().fit(x.to_numpy(), y)
    r = explain(lr, rows.head(10), output_space="probability")
    assert (r["method"], r["output_space"]) == ("permutation", "probability")
    np.testing.assert_allclose(_sums(r), lr.predict_proba(rows.head(10).to_numpy())[:, 1], atol=1e-9)
    assert explain(gb, rows, output_space="log_odds")["output_space"] == "log_odds"   # its own, asked by name


@pytest.mark.parametrize(("model", "wanted", "possible"), [
    (GradientBoostingRegressor(n_estimators=5), "probability", ["raw"]),
    (RandomForestClassifier(n_estimators=5), "log_odds", ["probability"]),
    (GradientBoostingClassifier(n_estimators=5), "raw", ["log_odds", "probability"]),
    (LinearRegression(), "probability", ["raw"]),
    (KNeighborsClassifier(3), "log_odds", ["probability"]),
])
def test_impossible_spaces_are_refused_naming_the_possible_ones(model, wanted, possible):
    x, y = data(100)
    model.fit(x.to_numpy(), x.a if "Regress" in type(model).__name__ else y)
    with pytest.raises(OutputSpaceUnavailable, match=f"output_space={wanted} is not possible") as err:
        explain(model, x.head(5), output_space=wanted)
    assert err.value.possible == possible


def _explained(client, keys, **extra):
    x, y = data()
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    artifact = sio.dumps(model)
    _register(client, keys, artifact)
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                    data={"model_group": "m", "model_version": "1", **extra},
                    files={"file": ("d.csv", x.head(120).to_csv(index=False).encode()),
                           "model": ("model.skops", artifact)})
    return r, model, x.head(120), artifact


def test_explain_route_states_the_space_and_computes_probability_on_request(client, keys):
    r, _, rows, artifact = _explained(client, keys)
    assert r.status_code == 200, r.text
    label = r.json()["explanations"]["kernel_shap"]["label0"]
    assert label["output_space"] == "log_odds"
    aid = r.headers["x-mlgov-analysis-id"]
    html = client.get(f"/api/v1/clarify/reports/{aid}", headers=keys("viewer")).text
    assert "Values in log-odds" in html and "Expected value (log-odds)" in html
    files = {"file": ("d.csv", rows.to_csv(index=False).encode()), "model": ("model.skops", artifact)}
    form = {"model_group": "m", "model_version": "1"}
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                    data={**form, "output_space": "probability"}, files=files)
    assert r.status_code == 200, r.text
    label = r.json()["explanations"]["kernel_shap"]["label0"]
    assert label["output_space"] == "probability" and 0 < label["expected_value"] < 1
    body = assert_problem(client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                                      data={**form, "output_space": "raw"}, files=files), 422,
                          "output_space=raw is not possible", "possible: log_odds, probability")
    assert body["possible"] == ["log_odds", "probability"]
    assert_problem(client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                               data={**form, "output_space": "logit"}, files=files), 422,
                   "not one of log_odds, probability, raw")


def test_per_row_shap_values_json_and_csv(client, keys):
    r, model, rows, _ = _explained(client, keys, output_space="probability")
    assert r.status_code == 200, r.text
    aid = r.headers["x-mlgov-analysis-id"]
    url = f"/api/v1/clarify/explanations/{aid}/rows"
    viewer = keys("viewer")
    first = client.get(url, headers=viewer).json()
    assert (first["total"], first["limit"], first["offset"], len(first["items"])) == (120, 50, 0, 50)
    assert first["output_space"] == "probability"
    page = client.get(url, params={"limit": 30, "offset": 100}, headers=viewer).json()
    assert [i["row"] for i in page["items"]] == list(range(100, 120))
    sums = [sum(i["shap_values"].values()) + page["expected_value"] for i in page["items"]]
    np.testing.assert_allclose(sums, model.predict_proba(rows.iloc[100:120])[:, 1], atol=1e-6)
    assert set(page["items"][0]["shap_values"]) == {"a", "b", "c", "d"}
    assert client.get(url, params={"offset": 500}, headers=viewer).json()["items"] == []
    # CSV by format= or by Accept, same rows
    by_param = client.get(url, params={"format": "csv", "limit": 30, "offset": 100}, headers=viewer)
    by_accept = client.get(url, params={"limit": 30, "offset": 100}, headers={**viewer, "Accept": "text/csv"})
    for resp in (by_param, by_accept):
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        assert resp.headers["x-total-count"] == "120"
        table = list(csv.DictReader(io.StringIO(resp.text)))
        assert [int(t["row"]) for t in table] == list(range(100, 120))
        assert float(table[0]["a"]) == pytest.approx(page["items"][0]["shap_values"]["a"])
    both = client.get(url, headers={**viewer, "Accept": "application/json, text/csv;q=0.5"})
    assert both.headers["content-type"].startswith("application/json")
    assert pd.read_csv(io.StringIO(client.get(url, params={"format": "csv", "limit": 1000},
                                              headers=viewer).text)).shape == (120, 5)


def test_per_row_shap_values_abuse(client, keys):
    r, *_ = _explained(client, keys)
    aid = r.headers["x-mlgov-analysis-id"]
    url = f"/api/v1/clarify/explanations/{aid}/rows"
    assert_problem(client.get("/api/v1/clarify/explanations/nosuchid/rows", headers=keys("viewer")), 404,
                   "no Clarify explanation")
    assert_problem(client.get("/api/v1/clarify/explanations/../rows", headers=keys("viewer")), 404)
    assert_problem(client.get(url, params={"limit": 10**6}, headers=keys("viewer")), 422, "limit")
    assert_problem(client.get(url, params={"limit": 0}, headers=keys("viewer")), 422, "limit")
    assert_problem(client.get(url, params={"offset": -1}, headers=keys("viewer")), 422, "offset")
    assert_problem(client.get(url, params={"format": "xml"}, headers=keys("viewer")), 422, "format")
    assert client.get(url, params={"offset": 2**62}, headers=keys("viewer")).json()["items"] == []
    for role, status in (("ingest", 403), ("approver", 200), ("publisher2", 200), ("admin", 200)):
        assert client.get(url, headers=keys(role)).status_code == status, role
    assert client.get(url).status_code == 401
    # a bias analysis is not an explanation
    bias = client.post("/api/v1/clarify/bias", headers=keys("publisher"), files={
        "file": ("d.csv", b"s,y\na,1\nb,0\na,0\nb,1\n"),
        "config": ("c.json", b'{"label": "y", "label_values_or_threshold": [1], "facet": [{"name_or_index": "s"}],'
                             b' "methods": {"pre_training_bias": {"methods": ["CI"]}}}')})
    assert bias.status_code == 200, bias.text
    assert_problem(client.get(f"/api/v1/clarify/explanations/{bias.headers['x-mlgov-analysis-id']}/rows",
                              headers=keys("viewer")), 404, "not an explanation")
