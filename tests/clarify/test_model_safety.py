"""Model loading never runs attacker code: hostile skops files sent to a real `mlgov serve` process are refused
with 403 naming the untrusted types and leave nothing on disk; honest models still load; an admin's trust
covers exactly one artifact; bytes of the wrong format are a clear 422."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from clarify import loaders
from tests.clarify import exploits
from tests.helpers import assert_problem
from tests.infra import free_port, wait_healthy

MLGOV = str(Path(sys.executable).parent / "mlgov")


@dataclass
class Server:
    url: str
    home: Path
    admin: dict[str, str]
    publisher: dict[str, str]
    versions: int = 0

    def register(self, c: httpx.Client, artifact: bytes) -> int:
        """A new version of group `m` whose registered sha256 is the artifact's."""
        r = c.post("/api/v1/model-groups/m/versions", headers=self.publisher, json={
            "artifact_uri": "s3://models/m/model.skops", "artifact_sha256": hashlib.sha256(artifact).hexdigest()})
        assert r.status_code == 201, r.text
        return int(r.json()["version"])

    def store_files(self) -> set[str]:
        store = self.home / "store"
        return {str(p.relative_to(store)) for p in store.rglob("*")} if store.exists() else set()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("safety")
    home = root / ".mlgov"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}, "MLGOV_HOME": str(home)}
    subprocess.run([MLGOV, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=root)
    port = free_port()
    proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout=60)
        admin = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
        r = httpx.post(f"{url}/api/v1/keys", headers=admin, json={"name": "pub", "role": "publisher"}, timeout=60)
        assert r.status_code == 201, r.text
        publisher = {"Authorization": f"Bearer {r.json()['key']}"}
        r = httpx.post(f"{url}/api/v1/model-groups", headers=publisher, json={"name": "m"}, timeout=60)
        assert r.status_code == 201, r.text
        yield Server(url, home, admin, publisher)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 4)), columns=exploits.FEATURES)


def csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


EXPLOITS = {
    "exec via FunctionTransformer": (exploits.exec_pipeline, {"builtins.exec", "builtins.iter", "builtins.next",
                                                              "numpy.full_like"}),
    "operator callables": (exploits.operator_pipeline, {"operator.itemgetter", "operator.methodcaller",
                                                        "pathlib.Path"}),
    "nested estimator param": (exploits.nested_param, {"builtins.eval", "numpy.full_like"}),
}


@pytest.mark.live
@pytest.mark.parametrize("name", list(EXPLOITS))
def test_hostile_skops_files_are_refused_without_side_effects(server, tmp_path, name):
    build, expected = EXPLOITS[name]
    marker = tmp_path / "pwned"
    artifact = build(marker)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        version = server.register(c, artifact)
        before = server.store_files()
        form = {"model_group": "m", "model_version": str(version), "model_format": "skops"}
        r = c.post("/api/v1/clarify/explain", headers=server.publisher, data=form,
                   files={"file": ("d.csv", csv(frame())), "model": ("model.skops", artifact)})
        body = assert_problem(r, 403, "admin", "trust", *sorted(expected))
        assert expected <= set(body["untrusted_types"]), body
        assert body["artifact_sha256"] == hashlib.sha256(artifact).hexdigest()
        # the explainability baseline loads the model too: same refusal, no baseline written
        r = c.post("/api/v1/baselines", headers=server.publisher,
                   data={**form, "type": "ModelExplainability"},
                   files={"file": ("ref.csv", csv(frame())), "model": ("model.skops", artifact)})
        assert expected <= set(assert_problem(r, 403, *sorted(expected))["untrusted_types"])
        assert server.store_files() == before
    assert not marker.exists(), "the hostile artifact ran code on the server"


@pytest.mark.live
def test_honest_models_load_and_admin_trust_covers_exactly_one_artifact(server, tmp_path):
    x = frame(200)
    y = (x.a + 0.5 * x.b > 0).astype(int)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        honest = sio.dumps(GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y))
        v = server.register(c, honest)
        r = c.post("/api/v1/clarify/explain", headers=server.publisher,
                   data={"model_group": "m", "model_version": str(v), "model_format": "skops"},
                   files={"file": ("d.csv", csv(x.head(80))), "model": ("m.skops", honest)})
        assert r.status_code == 200, r.text
        assert r.json()["explanations"]["kernel_shap"]["label0"]["method"] == "tree"
        # fewer columns than the model reads: SHAP's tree code would read past the rows and corrupt the heap
        # (the server process aborted); now a 422 before any native code runs, and the server lives on
        r = c.post("/api/v1/clarify/explain", headers=server.publisher,
                   data={"model_group": "m", "model_version": str(v), "model_format": "skops"},
                   files={"file": ("d.csv", csv(x[["a"]].rename(columns={"a": "z"}).head(50))),
                          "model": ("m.skops", honest)})   # none of its names: read by position, then counted
        assert_problem(r, 422, "takes 4 features", "1 columns")
        assert c.get("/healthz").status_code == 200

        # a function stored as data (even a NumPy ufunc) needs an admin's trust in this exact artifact
        logged = sio.dumps(make_pipeline(FunctionTransformer(np.tanh), LogisticRegression()).fit(x, y))
        v = server.register(c, logged)
        form = {"model_group": "m", "model_version": str(v), "model_format": "skops"}
        files = {"file": ("d.csv", csv(x.head(30))), "model": ("m.skops", logged)}
        assert "numpy.tanh" in assert_problem(c.post("/api/v1/clarify/explain", headers=server.publisher,
                                                     data=form, files=files), 403, "numpy.tanh")["untrusted_types"]
        r = c.post(f"/api/v1/model-groups/m/versions/{v}/artifact-trust", headers=server.admin,
                   json={"trusted": True, "reason": "our CI built it; tanh is ours"})
        assert r.status_code == 200 and r.json()["artifact_trusted"] is True
        r = c.post("/api/v1/clarify/explain", headers=server.publisher, data=form, files=files)
        assert r.status_code == 200, r.text
        # the trust is for those bytes: a hostile file sent for the trusted version is not the registered one
        marker = tmp_path / "pwned"
        hostile = exploits.exec_pipeline(marker)
        assert_problem(c.post("/api/v1/clarify/explain", headers=server.publisher, data=form,
                              files={"file": ("d.csv", csv(x.head(30))), "model": ("m.skops", hostile)}),
                       422, "sha256")
        assert not marker.exists()


def _native_files() -> dict[str, bytes]:
    import lightgbm
    import xgboost
    from skl2onnx import to_onnx

    x = frame(200)
    y = (x.a > 0).astype(int)
    booster = xgboost.train({"max_depth": 2, "objective": "binary:logistic"}, xgboost.DMatrix(x, label=y), 3)
    lgb = lightgbm.train({"objective": "binary", "verbose": -1, "num_leaves": 3}, lightgbm.Dataset(x, label=y), 3)
    lr = LogisticRegression().fit(x, y)
    return {"xgboost": bytes(booster.save_raw("ubj")), "lightgbm": lgb.model_to_string().encode(),
            "onnx": to_onnx(lr, x.to_numpy()[:1].astype(np.float32)).SerializeToString(),
            "skops": sio.dumps(lr)}


LOOKS = {"xgboost": "ubjson", "lightgbm": "lightgbm text", "onnx": "protobuf", "skops": "zip"}


def test_wrong_format_bytes_are_a_clear_422(client, keys):
    files = _native_files()
    junk = {"csv": b"a,b\n1,2\n", "json": b'{"not": "a model"}', "random": bytes(range(256)) * 4, "empty": b"x"}
    from tests.helpers import create_group

    create_group(client, keys("publisher"), "fmt")
    n = 0
    for declared in ("xgboost", "lightgbm", "onnx", "skops"):
        for actual, data in {**{k: v for k, v in files.items() if k != declared}, **junk}.items():
            n += 1
            r = client.post("/api/v1/model-groups/fmt/versions", headers=keys("publisher"), json={
                "artifact_uri": "s3://x/m", "artifact_sha256": hashlib.sha256(data).hexdigest()})
            version = r.json()["version"]
            r = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                            data={"model_group": "fmt", "model_version": str(version), "model_format": declared},
                            files={"file": ("d.csv", csv(frame(20))), "model": ("m.bin", data)})
            body = assert_problem(r, 422, f"model_format={declared}", "expects")
            if actual in LOOKS:
                assert LOOKS[actual] in body["detail"].lower(), (declared, actual, body["detail"])
    assert n == 4 * 3 + 4 * len(junk)


def test_every_allow_listed_class_resolves_and_trees_are_checked():
    allowed = loaders.allowed_instances()
    assert "sklearn.ensemble._gb.GradientBoostingClassifier" in allowed
    assert not any(t.endswith(("exec", "eval", "system")) for t in allowed | loaders.TYPES_AS_DATA)
    # every public class in the list exists in this scikit-learn (a rename would silently drop it)
    import importlib

    from skops.io._utils import get_type_name

    for path in loaders.ESTIMATORS:
        module, _, name = path.rpartition(".")
        assert get_type_name(getattr(importlib.import_module(module), name)) in allowed, path
    # ExtraTrees and multi-class boosting pass the structural checks
    x = frame(100)
    three = np.digitize(x.a, [-0.5, 0.5])
    from sklearn.ensemble import ExtraTreesRegressor

    assert loaders.load(sio.dumps(ExtraTreesRegressor(n_estimators=3).fit(x, x.b)), "skops", trusted=False)
    assert loaders.load(sio.dumps(GradientBoostingClassifier(n_estimators=2).fit(x, three)), "skops", trusted=False)
    # a tree declaring more features than its estimator reads columns past the input (it segfaulted)
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import Tree

    dt = DecisionTreeClassifier(max_depth=2).fit(x, (x.a > 0).astype(int))
    state = dt.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["feature"][0] = 10**7
    wide = Tree(10**7 + 1, np.array([2], dtype=np.intp), 1)
    wide.__setstate__({**state, "nodes": nodes})
    dt.tree_ = wide
    with pytest.raises(loaders.ModelLoadError, match="declares 4 features"):
        loaders.load(sio.dumps(dt), "skops", trusted=False)
    # boosting stages wider than the raw predictions they are written into
    gb = GradientBoostingClassifier(n_estimators=2, max_depth=2).fit(x, (x.a > 0).astype(int))
    gb.estimators_ = np.concatenate([gb.estimators_] * 3, axis=1)
    with pytest.raises(loaders.ModelLoadError, match="stages"):
        loaders.load(sio.dumps(gb), "skops", trusted=False)
    # a decision tree whose child index points outside the tree is refused, not run
    gb = GradientBoostingClassifier(n_estimators=2, max_depth=2).fit(x, (x.a > 0).astype(int))
    tree = gb.estimators_[0, 0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10**6
    tree.__setstate__({**state, "nodes": nodes})
    with pytest.raises(loaders.ModelLoadError, match="outside the tree"):
        loaders.load(sio.dumps(gb), "skops", trusted=False)


def test_attribution_monitor_rereads_the_trust_decision_on_every_run(client, keys):
    """An explainability baseline keeps the model; withdrawing the admin's trust stops the monitor loading it
    (the run fails and says why) instead of the schedule running a model nobody vouches for any more."""
    import datetime as dt

    from tests.clarify.test_monitors import T0, capture, setup

    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 300), "income": rng.normal(50, 10, 300)})
    y = (ref.income > 50).astype(int)
    artifact = sio.dumps(make_pipeline(FunctionTransformer(np.tanh), LogisticRegression()).fit(ref / 50, y))
    setup(client, keys, artifact)
    form = {"type": "ModelExplainability", "model_group": "credit", "model_version": "1", "model_format": "skops"}
    files = {"file": ("ref.csv", csv(ref.head(40))), "model": ("m.skops", artifact)}
    assert_problem(client.post("/api/v1/baselines", headers=keys("publisher"), data=form, files=files), 403,
                   "numpy.tanh")
    trust = "/api/v1/model-groups/credit/versions/1/artifact-trust"
    assert client.post(trust, headers=keys("admin"), json={"trusted": True, "reason": "ours"}).status_code == 200
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data=form, files=files)
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "attr", "endpoint": "credit-prod", "type": "ModelExplainability", "schedule": "daily",
        "baseline_id": r.json()["id"]}).status_code == 201
    window = pd.DataFrame({"age": rng.normal(40, 10, 30), "income": rng.normal(50, 10, 30), "sex": "f",
                           "prediction": 0, "label": 0})
    capture(client, keys, window, T0, 5, labels=False)
    span = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}
    ok = client.post("/api/v1/monitoring-schedules/attr/run", headers=keys("publisher"), json=span).json()
    assert ok["status"] in ("Completed", "CompletedWithViolations"), ok
    assert client.post(trust, headers=keys("admin"), json={"trusted": False, "reason": "revoked"}).status_code == 200
    failed = client.post("/api/v1/monitoring-schedules/attr/run", headers=keys("publisher"), json=span).json()
    assert failed["status"] == "Failed" and "numpy.tanh" in failed["failure_reason"], failed


def _fitted(path: str) -> object:
    """A small fitted instance of an allow-listed class (meta-estimators around honest parts)."""
    import importlib

    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    x = frame(60)
    y = (x.a > 0).astype(int)
    if name == "Pipeline":
        return cls([("s", StandardScaler()), ("m", LogisticRegression())]).fit(x, y)
    if name == "FeatureUnion":
        return cls([("p", PCA(1)), ("s", StandardScaler())]).fit(x)
    if name == "ColumnTransformer":
        return cls([("s", StandardScaler(), ["a"])], remainder="passthrough").fit(x)
    if name == "TransformedTargetRegressor":
        from sklearn.linear_model import LinearRegression

        return cls(regressor=LinearRegression()).fit(x, x.b)
    if name in ("LabelEncoder", "LabelBinarizer"):
        return cls().fit(y)
    if name in ("OneHotEncoder", "OrdinalEncoder"):
        return cls().fit(x.round())
    if name in ("PCA", "TruncatedSVD"):
        return cls(2).fit(x)
    if "Regressor" in name or name in ("LinearRegression", "Ridge", "Lasso", "ElasticNet"):
        return cls().fit(x, x.b)
    return cls().fit(x, y)


def test_every_allow_listed_estimator_loads_untrusted_when_fitted():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refused = {}
        for path in loaders.ESTIMATORS:
            try:
                loaders.load(sio.dumps(_fitted(path)), "skops", trusted=False)
            except loaders.ModelLoadError as exc:
                refused[path] = str(exc)
    assert refused == {}


@pytest.mark.parametrize("func, named", [
    ("partial", {"functools.partial", "builtins.print"}),
    ("attrgetter", {"operator.attrgetter"}),
    ("bound method", {"sklearn.preprocessing._data.StandardScaler.transform"}),
    ("ufunc", {"numpy.log1p"}),
    ("builtin", {"builtins.getattr"}),
    ("class as callable", {"subprocess.Popen"}),
])
def test_every_kind_of_stored_callable_needs_trust(func, named):
    import functools
    import operator
    import subprocess

    from sklearn.preprocessing import StandardScaler

    x = frame(40)
    honest = LogisticRegression().fit(x, (x.a > 0).astype(int))
    held = {"partial": functools.partial(print, "x"), "attrgetter": operator.attrgetter("shape"),
            "bound method": StandardScaler().fit(x).transform, "ufunc": np.log1p, "builtin": getattr,
            "class as callable": subprocess.Popen}[func]
    data = sio.dumps(make_pipeline(FunctionTransformer(held), LogisticRegression()))
    with pytest.raises(loaders.UntrustedModel) as err:
        loaders.load(data, "skops", trusted=False)
    assert named <= set(err.value.types), err.value.types
    # FunctionTransformer without a function is a plain, allowed transformer
    assert loaders.load(sio.dumps(make_pipeline(FunctionTransformer(), honest)), "skops", trusted=False)


def test_an_unhashed_version_is_never_loaded() -> None:
    """A version registered through MLflow from outside mlgov's store has no sha256: nothing can match it."""
    from clarify.loaders import ModelLoadError, check_digest

    with pytest.raises(ModelLoadError, match="no registered sha256"):
        check_digest(b"any bytes", None)


def _explain(client, keys, group: str, model: bytes, fmt: str, data: bytes) -> httpx.Response:
    from tests.helpers import create_group

    h = keys("publisher")
    create_group(client, h, group)
    version = client.post(f"/api/v1/model-groups/{group}/versions", headers=h, json={
        "artifact_uri": "s3://x/m", "artifact_sha256": hashlib.sha256(model).hexdigest()}).json()["version"]
    return client.post("/api/v1/clarify/explain", headers=h, files={"file": ("d.csv", data), "model": ("m", model)},
                       data={"model_group": group, "model_version": str(version), "model_format": fmt})


def test_onnx_external_data_reads_no_file_of_the_server(client, keys, tmp_path, monkeypatch):
    """An ONNX initializer stored as external data names a file relative to the working directory: loaded in the
    server, its bytes came back as SHAP values (a publisher read admin.key). The child that loads native models
    runs in an empty folder, so the file is not there."""
    from onnx import TensorProto, helper

    secret = b"mlgov_secret_admin_key_0123456789"
    (tmp_path / "admin.key").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    w = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[len(secret)],
                    data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "admin.key"), ("offset", "0"), ("length", str(len(secret)))):
        w.external_data.add(key=k, value=v)
    nodes = [helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.FLOAT),
             helper.make_node("Squeeze", ["X", "ax"], ["Xs"]),
             helper.make_node("Cast", ["Xs"], ["Xi"], to=TensorProto.INT64),
             helper.make_node("Gather", ["Wf", "Xi"], ["Y"], axis=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])],
                              initializer=[w, helper.make_tensor("ax", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    rows = ("x\n" + "\n".join(str(i) for i in range(len(secret))) + "\n").encode()
    r = _explain(client, keys, "onnx-ext", model, "onnx", rows)
    body = assert_problem(r, 422, "stored as external data", "save_as_external_data=False")
    assert secret.decode() not in r.text and "mlgov_secret" not in body["detail"]
    # refused by mlgov before onnxruntime reads it (releases before ~1.2x read absolute paths and ``..``), in
    # subgraphs too: an If's branch holding the tensor
    branch = helper.make_graph([helper.make_node("Identity", ["W"], ["Z"])], "then", [],
                               [helper.make_tensor_value_info("Z", TensorProto.UINT8, [len(secret)])],
                               initializer=[w])
    for where in (str(tmp_path / "admin.key"), "../admin.key"):
        w.external_data[0].value = where
        branch.initializer[0].CopyFrom(w)
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        nested = helper.make_graph(
            [helper.make_node("If", ["c"], ["Y"], then_branch=branch, else_branch=branch)], "g", [],
            [helper.make_tensor_value_info("Y", TensorProto.UINT8, [len(secret)])], initializer=[cond])
        with pytest.raises(loaders.ModelLoadError, match="stored as external data"):
            loaders.load(helper.make_model(nested, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(),
                         "onnx", trusted=False)


def test_a_model_that_crashes_its_library_is_a_422_and_the_server_lives(client, keys):
    """A LightGBM text model with a wrong tree_sizes header makes LightGBM call std::terminate: in the server it
    aborted the whole process (API, scheduler and all). It now ends only the child that loads it."""
    import re

    good = _native_files()["lightgbm"].decode()
    bad = re.sub(r"tree_sizes=.*", "tree_sizes=1 1", good).encode()
    r = _explain(client, keys, "lgb-abort", bad, "lightgbm", csv(frame(20)))
    body = assert_problem(r, 422, "lightgbm library failed on this model", "SIGABRT")
    assert "model_format" in body["fix"]
    assert client.get("/healthz").status_code == 200
    r = _explain(client, keys, "lgb-good", good.encode(), "lightgbm", csv(frame(20)))   # honest models still do
    assert r.status_code == 200, r.text


def test_native_models_explain_and_predict_as_in_process():
    """The child's answers are the library's own: the same SHAP values and predictions as an in-process run."""
    from clarify import sandbox
    from clarify.metrics import shap_values

    x = frame(40)
    for fmt, data in _native_files().items():
        if fmt == "skops":
            continue
        native = loaders.load(data, fmt, trusted=False)
        assert isinstance(native, sandbox.NativeModel)
        here = loaders.load_here(data, fmt)
        away, near = sandbox.explain(native, x), shap_values.explain(here, x)
        assert away["method"] == near["method"] and away["output_space"] == near["output_space"]
        assert away["global_shap_values"] == pytest.approx(near["global_shap_values"], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(away["local"].to_numpy(), near["local"].to_numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sandbox.predict(native, x.to_numpy()), shap_values.predict_fn(here)(
            x.to_numpy()), rtol=1e-9)
    with pytest.raises(shap_values.OutputSpaceUnavailable) as err:   # errors come back as the same types
        sandbox.explain(loaders.load(_native_files()["onnx"], "onnx", trusted=False), x, output_space="log_odds")
    assert err.value.possible == ["probability"]


def test_an_explainability_baseline_the_model_cannot_explain_is_a_422(client, keys):
    """A ModelExplainability baseline over data of another width than the model's: the explainer's error was a
    500 (no handler on the baseline path); it is a 422 naming both widths, and no baseline is stored."""
    from tests.helpers import create_group

    h = keys("publisher")
    model = _native_files()["xgboost"]          # 4 features: a..d
    create_group(client, h, "wide")
    client.post("/api/v1/model-groups/wide/versions", headers=h, json={
        "artifact_uri": "s3://x/m", "artifact_sha256": hashlib.sha256(model).hexdigest()})
    r = client.post("/api/v1/baselines", headers=h,
                    data={"type": "ModelExplainability", "model_group": "wide", "model_version": "1",
                          "model_format": "xgboost"},
                    files={"file": ("ref.csv", csv(frame(30)[["a", "b"]])), "model": ("m.ubj", model)})
    assert_problem(r, 422, "the model was fitted on columns the data does not have: c, d")
    assert client.get("/api/v1/baselines", headers=h).json()["total"] == 0


@pytest.mark.parametrize("fmt", ["skops", "xgboost"])
def test_columns_reach_the_model_by_name_not_position(client, keys, fmt):
    """A trial sent the same rows with the columns in another order: the model read them by position and the
    attributions landed on the wrong features (200, sex and age swapped). A model that kept its feature names
    now reads columns by name; a column it was fitted on and the data lacks is a 422; empty or infinite
    features are a 422 naming the column (the attributions were null)."""
    model = _native_files()[fmt]
    x = frame(60)
    straight = _explain(client, keys, f"order-{fmt}", model, fmt, csv(x))
    assert straight.status_code == 200, straight.text
    shuffled = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                           files={"file": ("d.csv", csv(x[["d", "b", "a", "c"]])), "model": ("m", model)},
                           data={"model_group": f"order-{fmt}", "model_version": "1", "model_format": fmt})
    assert shuffled.status_code == 200, shuffled.text
    values = [r.json()["explanations"]["kernel_shap"]["label0"]["global_shap_values"] for r in (straight, shuffled)]
    assert values[0] == pytest.approx(values[1], rel=1e-9, abs=1e-12)
    def explain(data: pd.DataFrame) -> httpx.Response:
        return client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                           files={"file": ("d.csv", csv(data)), "model": ("m", model)},
                           data={"model_group": f"order-{fmt}", "model_version": "1", "model_format": fmt})

    assert_problem(explain(x[["a", "b", "c"]].assign(e=1.0)), 422, "does not have: d")
    assert_problem(explain(x.assign(b=np.where(x.index % 7 == 0, np.inf, x.b))), 422, "feature 'b' has 9")
    assert_problem(explain(x.assign(c="F")), 422, "all-numeric")
    holes = explain(x.assign(b=x.b.where(x.index % 7 != 0)))   # XGBoost routes empty values down its trees
    if fmt == "xgboost":
        assert holes.status_code == 200, holes.text
    else:   # scikit-learn's linear model cannot: its attributions came back null
        assert_problem(holes, 422, "feature 'b' has 9 empty or infinite")


def test_num_clusters_out_of_range_is_named(client, keys):
    """num_clusters=0 answered k-means' own message with a fix about feature columns."""
    model = _native_files()["skops"]
    assert _explain(client, keys, "clusters", model, "skops", csv(frame(30))).status_code == 200
    for bad in ("0", "-3", "5000"):
        r = client.post("/api/v1/clarify/explain", headers=keys("publisher"),
                        files={"file": ("d.csv", csv(frame(30))), "model": ("m", model)},
                        data={"model_group": "clusters", "model_version": "1", "num_clusters": bad})
        assert_problem(r, 422, f"num_clusters {bad} is not between 1 and 1000")


def test_a_text_column_beside_the_features_of_a_bias_model_run_is_named(client, keys):
    """predict_with_model with a text facet among the columns of a model that kept no names (ONNX): the float
    conversion moved out of the 422 handler and answered 500; it names the column and the way out."""
    import json

    model = _native_files()["onnx"]
    x = frame(80).assign(sex=lambda d: np.where(d.a > 0, "F", "M"), y=lambda d: (d.b > 0).astype(int))
    _explain(client, keys, "bias-run", model, "onnx", csv(frame(20)))   # registers version 1
    cfg = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["F"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL"]}}}
    form = {"model_group": "bias-run", "model_version": "1", "model_format": "onnx", "predict_with_model": "true"}
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"), data=form,
                    files={"file": ("d.csv", csv(x)), "config": ("c.json", json.dumps(cfg).encode()),
                           "model": ("m", model)})
    assert_problem(r, 422, "feature 'sex' holds text", "excluded_columns")


def _onnx_model(nodes: list, output_shape: list, initializers: list) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, output_shape)],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_a_model_that_never_ends_or_answers_gigabytes_is_stopped(monkeypatch):
    """An ONNX Loop of 10^15 turns kept a request (and its read session) for ever; a ConstantOfShape of 10^8
    floats made the server buffer and copy 800 MB. The child is killed past its time, and its answer is read no
    further than the rows need."""
    from onnx import TensorProto, helper

    from clarify import sandbox

    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
                             initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    forever = _onnx_model(
        [helper.make_node("Loop", ["n", "t", "v0"], ["v"], body=body),
         helper.make_node("Squeeze", ["X", "ax"], ["Xs"]), helper.make_node("Add", ["Xs", "v"], ["Y"])], [None],
        [helper.make_tensor("n", TensorProto.INT64, [], [10**15]),
         helper.make_tensor("t", TensorProto.BOOL, [], [True]), helper.make_tensor("v0", TensorProto.FLOAT, [1], [0.0]),
         helper.make_tensor("ax", TensorProto.INT64, [1], [1])])
    huge = _onnx_model([helper.make_node("ConstantOfShape", ["shape"], ["Y"])], [None],
                       [helper.make_tensor("shape", TensorProto.INT64, [1], [10**7])])
    monkeypatch.setattr(sandbox, "TIMEOUT_S", 8)
    x = np.zeros((5, 1))
    with pytest.raises(loaders.ModelLoadError, match="ran longer than 8 s or answered more than its rows need"):
        sandbox.predict(loaders.load(forever, "onnx", trusted=False), x)
    with pytest.raises(loaders.ModelLoadError, match="answered more than its rows need"):
        sandbox.predict(loaders.load(huge, "onnx", trusted=False), x)
