"""Explanations: SHAP additivity, safe loading (skops), sha256 check, refusal of untrusted pickle."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from clarify.metrics.drift import ndcg
from clarify.sandbox import explain
from tests.conftest import make_settings
from tests.helpers import assert_problem, create_group


@pytest.fixture
def settings(tmp_path):
    """The predict-URL test's model server listens on 127.0.0.1, refused by the outbound policy unless allowed."""
    return make_settings(tmp_path, outbound_allow="127.0.0.1")


def data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    return x, (x.a + 0.5 * x.b + rng.normal(0, 0.1, n) > 0).astype(int)


def test_additivity_tree_linear_and_permutation():
    x, y = data()
    gb = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    r = explain(gb, x)
    assert r["method"] == "tree"
    np.testing.assert_allclose(r["local"].sum(axis=1) + r["expected_value"], gb.decision_function(x), atol=1e-9)
    assert max(r["global_shap_values"], key=r["global_shap_values"].get) == "a"
    lr = LogisticRegression().fit(x, y)
    r = explain(lr, x)
    assert r["method"] == "linear"
    np.testing.assert_allclose(r["local"].sum(axis=1) + r["expected_value"], lr.decision_function(x), atol=1e-9)
    knn = KNeighborsClassifier(5).fit(x, y)
    r = explain(knn, x.head(60))
    assert r["method"] == "permutation"
    np.testing.assert_allclose(r["local"].sum(axis=1) + r["expected_value"],
                               knn.predict_proba(x.head(60))[:, 1], atol=1e-9)
    for agg in ("mean_sq", "median"):
        assert explain(lr, x, agg_method=agg)["agg_method"] == agg


def test_attribution_drift_between_two_windows():
    x, y = data()
    gb = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    base = explain(gb, x)["global_shap_values"]
    same = explain(gb, data(seed=1)[0])["global_shap_values"]
    assert ndcg(base, same) > 0.95
    shifted = data(seed=2)[0].assign(a=0.0)      # feature a stops varying: its attribution collapses
    assert ndcg(base, explain(gb, shifted)["global_shap_values"]) < 0.9


def _register(client, keys, artifact: bytes) -> None:
    create_group(client, keys("publisher"), "m")
    r = client.post("/api/v1/model-groups/m/versions", headers=keys("publisher"), json={
        "artifact_uri": "s3://models/m/1/model.skops", "artifact_sha256": hashlib.sha256(artifact).hexdigest()})
    assert r.status_code == 201


def test_explain_endpoint_safe_loading(client, keys):
    x, y = data()
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    artifact = sio.dumps(model)
    _register(client, keys, artifact)
    csv = x.assign(label=y).to_csv(index=False).encode()
    form = {"model_group": "m", "model_version": "1", "model_format": "skops", "label": "label"}
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"), data=form,
                    files={"file": ("d.csv", csv), "model": ("model.skops", artifact)})
    assert r.status_code == 200, r.text
    body = r.json()["explanations"]["kernel_shap"]["label0"]
    assert body["method"] == "tree" and set(body["global_shap_values"]) == {"a", "b", "c", "d"}
    assert r.json()["model_source"] == {"kind": "artifact", "artifact_sha256": hashlib.sha256(artifact).hexdigest()}
    # a different artifact than the registered one
    other = sio.dumps(GradientBoostingClassifier(n_estimators=3).fit(x, y))
    assert_problem(client.post("/api/v1/clarify/explain", headers=keys("publisher"), data=form,
                               files={"file": ("d.csv", csv), "model": ("m", other)}), 422, "sha256")


def test_untrusted_pickle_refused_until_an_admin_trusts_it(client, keys, db):
    x, y = data()
    artifact = pickle.dumps(LogisticRegression().fit(x, y))
    _register(client, keys, artifact)
    form = {"model_group": "m", "model_version": "1", "model_format": "pickle"}
    files = {"file": ("d.csv", x.to_csv(index=False).encode()), "model": ("m.pkl", artifact)}
    assert_problem(client.post("/api/v1/clarify/explain", headers=keys("publisher"), data=form, files=files),
                   403, "trusted")
    assert client.post("/api/v1/model-groups/m/versions/1/artifact-trust", json={"trusted": True, "reason": "ours"},
                       headers=keys("approver")).status_code == 403
    r = client.post("/api/v1/model-groups/m/versions/1/artifact-trust", json={"trusted": True,
                                                                              "reason": "built by our CI"},
                    headers=keys("admin"))
    assert r.status_code == 200 and r.json()["artifact_trusted"] is True
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"), data=form, files=files)
    assert r.status_code == 200 and r.json()["explanations"]["kernel_shap"]["label0"]["method"] == "linear"
    ev = client.get("/api/v1/audit/events", params={"action": "version.artifact_trust_changed"},
                    headers=keys("admin")).json()["items"]
    assert ev[0]["after"]["reason"] == "built by our CI"


@pytest.mark.parametrize("bad", [{"model_group": "m"}, {"model_group": "nope", "model_version": "1"}])
def test_explain_bad_input(client, keys, bad):
    r = client.post("/api/v1/clarify/explain", headers=keys("publisher"), data=bad,
                    files={"file": ("d.csv", b"a\n1\n")})
    assert r.status_code in (404, 422)
    assert json.loads(r.text)["detail"]


def test_model_agnostic_explanations_through_a_predict_url(client, keys):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.infra import free_port

    x, y = data()
    served = LogisticRegression().fit(x, y)
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
            rows = np.array([[float(v) for v in line.split(",")] for line in raw.splitlines()])
            calls.append(len(rows))
            body = json.dumps({"predictions": served.predict_proba(rows)[:, 1].tolist()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _register(client, keys, b"remote model")
        r = client.post("/api/v1/clarify/explain", headers=keys("publisher"), data={
            "model_group": "m", "model_version": "1", "predict_url": f"http://127.0.0.1:{port}/predict"},
            files={"file": ("d.csv", x.head(40).to_csv(index=False).encode()),
                   "baseline": ("b.csv", x.tail(5).to_csv(index=False).encode())})
    finally:
        server.shutdown()
    assert r.status_code == 200, r.text
    label = r.json()["explanations"]["kernel_shap"]["label0"]
    assert label["method"] == "permutation" and calls
    assert r.json()["model_source"]["kind"] == "predict_url"
    assert max(label["global_shap_values"], key=label["global_shap_values"].get) == "a"
    assert_problem(client.post("/api/v1/clarify/explain", headers=keys("publisher"), data={
        "model_group": "m", "model_version": "1", "predict_url": "file:///etc/passwd"},
        files={"file": ("d.csv", b"a\n1\n")}), 422, "http")


def test_native_xgboost_lightgbm_and_onnx_artifacts():
    import lightgbm
    import xgboost
    from skl2onnx import to_onnx

    from clarify import loaders

    x, y = data(600)
    # XGBoost's own format (UBJSON bytes), TreeExplainer on the Booster
    booster = xgboost.train({"max_depth": 3, "objective": "binary:logistic"}, xgboost.DMatrix(x, label=y), 20)
    raw = bytes(booster.save_raw("ubj"))
    loaded = loaders.load(raw, "xgboost", trusted=False)
    r = explain(loaded, x)
    margin = booster.predict(xgboost.DMatrix(x), output_margin=True)   # loaded: only in a child (clarify.sandbox)
    assert r["method"] == "tree"
    np.testing.assert_allclose(r["local"].sum(axis=1) + r["expected_value"], margin, atol=1e-4)
    # LightGBM's text model
    lgb = lightgbm.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lightgbm.Dataset(x, label=y), 20)
    loaded = loaders.load(lgb.model_to_string().encode(), "lightgbm", trusted=False)
    r = explain(loaded, x)
    assert r["method"] == "tree"
    np.testing.assert_allclose(r["local"].sum(axis=1) + r["expected_value"], lgb.predict(x, raw_score=True),
                               atol=1e-6)
    # ONNX through onnxruntime: model-agnostic permutation SHAP
    onnx_bytes = to_onnx(LogisticRegression().fit(x, y), x.to_numpy()[:1].astype(np.float32)).SerializeToString()
    session = loaders.load(onnx_bytes, "onnx", trusted=False)
    r = explain(session, x.head(50))
    assert r["method"] == "permutation"
    assert max(r["global_shap_values"], key=r["global_shap_values"].get) == "a"
    with pytest.raises(loaders.ModelLoadError, match="format"):
        loaders.load(b"x", "tensorflow", trusted=False)
