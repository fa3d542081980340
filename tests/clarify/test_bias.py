"""Clarify bias metrics: hand-computed cases, SageMaker's edge conventions, analysis.json shape."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clarify.metrics import bias
from clarify.metrics.analysis import ConfigError, analyze
from tests.helpers import assert_problem

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"
Y = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
D = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
P = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], dtype=bool)


def test_counts_and_pre_training_by_hand():
    c = bias.Counts.of(D, Y, P)
    assert (c.n, c.pos, c.pred_pos) == ((5, 5), (3, 2), (3, 2))
    assert (c.tp, c.fp, c.tn, c.fn) == ((2, 1), (1, 1), (1, 2), (1, 1))
    m = bias.pre_training(c, None)
    assert m["CI"] == 0.0
    assert m["DPL"] == pytest.approx(0.2)
    assert m["KL"] == pytest.approx(0.6 * math.log(1.5) + 0.4 * math.log(0.4 / 0.6))
    mid = np.array([0.5, 0.5])
    js = 0.5 * (sum(p * math.log(p / q) for p, q in zip([0.6, 0.4], mid, strict=True))
                + sum(p * math.log(p / q) for p, q in zip([0.4, 0.6], mid, strict=True)))
    assert m["JS"] == pytest.approx(js)
    assert m["LP"] == pytest.approx(math.sqrt(0.08))
    assert m["TVD"] == pytest.approx(0.2) and m["KS"] == pytest.approx(0.2)


def test_post_training_by_hand():
    m = bias.post_training(bias.Counts.of(D, Y, P), Y, P, None, None)
    assert m["DPPL"] == pytest.approx(0.6 - 0.4)
    assert m["DI"] == pytest.approx(0.4 / 0.6)
    assert m["DCA"] == pytest.approx(3 / 3 - 2 / 2)
    assert m["DCR"] == pytest.approx(3 / 3 - 2 / 2)
    assert m["SD"] == pytest.approx(2 / 3 - 1 / 2)                 # TNR_d − TNR_a
    assert m["RD"] == pytest.approx(2 / 3 - 1 / 2)                 # TPR_a − TPR_d
    assert m["DAR"] == pytest.approx(2 / 3 - 1 / 2)
    assert m["DRR"] == pytest.approx(2 / 3 - 1 / 2)
    assert m["AD"] == pytest.approx(3 / 5 - 3 / 5)
    assert m["TE"] == pytest.approx(1 / 1 - 1 / 1)
    assert m["GE"] == pytest.approx(0.2)                            # b = ŷ − y + 1, α = 2


def test_edge_conventions():
    assert bias.div(0, 0) == 0.0 and bias.div(3, 0) == math.inf and bias.div(-1, 0) == -math.inf
    assert bias.diff(math.inf, math.inf) == 0.0 and bias.diff(math.inf, 1) == math.inf
    # no false positives in either group: TE = ∞ − ∞ → 0
    y = np.array([1, 1, 0, 1, 1, 0], dtype=bool)
    d = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    p = np.array([0, 1, 0, 0, 1, 0], dtype=bool)
    assert bias.post_training(bias.Counts.of(d, y, p), y, p, None, None)["TE"] == 0.0
    # empty sensitive group
    c = bias.Counts.of(np.zeros(4, dtype=bool), np.array([1, 0, 1, 0], dtype=bool), None)
    m = bias.pre_training(c, None)
    assert m["CI"] == 1.0 and m["DPL"] == 0.5
    # all labels positive
    allpos = np.ones(6, dtype=bool)
    m = bias.pre_training(bias.Counts.of(d, allpos, None), None)
    assert m["DPL"] == 0.0 and m["KL"] == 0.0 and m["JS"] == 0.0
    # GE undefined when every prediction is a false negative
    assert math.isnan(bias.generalized_entropy(np.ones(3), np.zeros(3)))


def test_conditional_demographic_disparity_by_hand():
    d = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    y = np.array([0, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # group 0: rejections rows {0,3}: d has 1 of 2; acceptances {1,2}: d has 1 of 2 → DD = 0
    # group 1: rejections {4,5}: d 1/2; acceptances {6,7}: d 0/2 → DD = 0.5; CDD = (4·0 + 4·0.5)/8
    assert bias.conditional_disparity(d, y, g) == pytest.approx(0.25)


def test_flip_test_counts_favourable_flips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    d = np.arange(200) >= 100
    pred = (x[:, 0] > 0) & ~d            # the model never accepts group d
    ft = bias.flip_test(x, d, pred)
    assert ft < -0.3                      # group d would be accepted more often as group a: unfavourable


@pytest.mark.parametrize(("rows", "a_rows", "dims"), [(20_000, 13_000, 3), (5_000, 1_000, 6), (14, 6, 2),
                                                      (12, 9, 1)])
def test_flip_test_equals_scikit_learns_knn_as_smclarify_runs_it(rows, a_rows, dims):
    """The neighbours come from scipy's KD-tree; the verdict must be scikit-learn's KNeighborsClassifier's
    (smclarify's), k = 5, or 1 when group a has at most 9 rows."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, dims)).round(3)     # rounded: some equal points, as real data has
    d = np.arange(rows) >= a_rows
    pred = rng.random(rows) < 1 / (1 + np.exp(-x[:, 0] * 2)) - 0.2 * d
    k = 1 if a_rows <= 9 else 5
    knn = KNeighborsClassifier(n_neighbors=k).fit(x[~d], pred[~d].astype(int))
    flipped = knn.predict(x[d])
    expected = (np.sum(pred[d].astype(int) > flipped) - np.sum(pred[d].astype(int) < flipped)) / d.sum()
    assert bias.flip_test(x, d, pred) == pytest.approx(expected, abs=0)
    assert expected != 0 or rows < 100     # the large cases flip some verdicts: not equal by both being 0


def test_flip_test_refuses_missing_feature_values():
    x = np.array([[0.0], [np.nan], [1.0], [2.0]])
    with pytest.raises(ValueError, match="NaN"):
        bias.flip_test(x, np.array([False, False, True, True]), np.array([True, False, True, False]))


def _fixture_like() -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(3)
    n = 500
    df = pd.DataFrame({"F1": rng.random(n), "F2": rng.normal(size=n), "Label": rng.integers(0, 2, n),
                       "grp": rng.integers(0, 4, n)})
    cfg = {"label": "Label", "label_values_or_threshold": [1], "group_variable": "grp",
           "facet": [{"name_or_index": "F1", "value_or_threshold": 0.5}],
           "methods": {"pre_training_bias": {"methods": "all"}}}
    return df, cfg


def test_analysis_json_has_the_shape_of_sagemakers():
    df, cfg = _fixture_like()
    ours = analyze(df, cfg)
    theirs = json.loads((FIX / "clarify_data_bias_analysis.json").read_text())

    def shape(o):
        if isinstance(o, dict):
            return {k: shape(v) for k, v in o.items() if k != "F1"} | ({"F1": shape(o["F1"])} if "F1" in o else {})
        if isinstance(o, list):
            return [shape(o[0])] if o else []
        return type(o).__name__

    assert shape(ours) == shape(theirs)
    ours_metrics = ours["pre_training_bias_metrics"]["facets"]["F1"][0]["metrics"]
    theirs_metrics = theirs["pre_training_bias_metrics"]["facets"]["F1"][0]["metrics"]
    assert [(m["name"], m["description"]) for m in ours_metrics] == [(m["name"], m["description"])
                                                                     for m in theirs_metrics]
    assert ours["pre_training_bias_metrics"]["facets"]["F1"][0]["value_or_threshold"].startswith("(0.5, 0.99")
    # SageMaker's own numbers obey the identities of binary labels: KS = TVD = |DPL|, LP = √2·|DPL|
    v = {m["name"]: m["value"] for m in theirs_metrics}
    assert v["KS"] == pytest.approx(v["TVD"]) == pytest.approx(abs(v["DPL"]))
    assert v["LP"] == pytest.approx(math.sqrt(2) * abs(v["DPL"]))
    w = {m["name"]: m["value"] for m in ours_metrics}
    assert w["KS"] == pytest.approx(w["TVD"]) == pytest.approx(abs(w["DPL"]))


def test_every_facet_value_when_none_given_and_config_errors():
    df = pd.DataFrame({"sex": ["m", "f", "x", "f", "m", "f"], "y": [1, 0, 1, 1, 0, 0]})
    cfg = {"label": "y", "label_values_or_threshold": [1], "facet": [{"name_or_index": "sex"}],
           "methods": {"pre_training_bias": {"methods": ["CI", "DPL"]}}}
    out = analyze(df, cfg)
    groups = out["pre_training_bias_metrics"]["facets"]["sex"]
    assert [g["value_or_threshold"] for g in groups] == ["f", "m", "x"]
    assert [m["name"] for m in groups[0]["metrics"]] == ["CI", "DPL"]
    for bad, needle in [({**cfg, "label": "nope"}, "not a column"), ({k: v for k, v in cfg.items() if k != "facet"},
                                                                      "facet"),
                        ({**cfg, "methods": {"pre_training_bias": {"methods": ["XX"]}}}, "methods"),
                        ({**cfg, "methods": {"post_training_bias": {"methods": "all"}}}, "predicted_label")]:
        with pytest.raises(ConfigError, match=needle):
            analyze(df, bad)


def test_bias_endpoint(client, keys):
    df, cfg = _fixture_like()
    df["pred"] = np.where(np.random.default_rng(1).random(len(df)) < 0.8, df["Label"], 1 - df["Label"])
    cfg = {**cfg, "predicted_label": "pred", "methods": {"pre_training_bias": {"methods": "all"},
                                                         "post_training_bias": {"methods": "all"}}}
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                    files={"file": ("d.csv", df.to_csv(index=False).encode()),
                           "config": ("analysis_config.json", json.dumps(cfg).encode())})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"version", "pre_training_bias_metrics", "post_training_bias_metrics"}
    post = {m["name"] for m in body["post_training_bias_metrics"]["facets"]["F1"][0]["metrics"]}
    assert post == set(bias.POST)
    assert r.headers["x-mlgov-analysis-id"]
    assert_problem(client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                               files={"file": ("d.csv", b"a,b\n1,2\n")}), 422, "config")
    assert_problem(client.post("/api/v1/clarify/bias", headers=keys("publisher"), files={
        "file": ("d.csv", b"a,b\n1,2\n"), "config": ("c.json", json.dumps(cfg).encode())}), 422, "not a column")
    assert client.post("/api/v1/clarify/bias", headers=keys("viewer"),
                       files={"file": ("d.csv", b"a\n1\n"), "config": ("c.json", b"{}")}).status_code == 403
    assert_problem(client.post("/api/v1/clarify/bias", headers=keys("publisher"), json={}), 422, "multipart")


def test_a_bias_computation_holds_no_write_turn(client, keys, monkeypatch):
    """A 20,000-row analysis computed for minutes while holding the database's write turn, and every capture
    request meanwhile waited 30 s and got 503. Other writes now go through while an analysis computes."""
    from clarify import service

    df, cfg = _fixture_like()
    computing = service.compute_bias
    written: list[int] = []

    def slow(session, store, request):   # another request's write, made while this analysis computes
        written.append(client.post("/api/v1/model-groups", headers=keys("publisher"),
                                   json={"name": "written-meanwhile"}).status_code)
        return computing(session, store, request)

    monkeypatch.setattr(service, "compute_bias", slow)
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                    files={"file": ("d.csv", df.to_csv(index=False).encode()),
                           "config": ("analysis_config.json", json.dumps(cfg).encode())})
    assert r.status_code == 200, r.text
    assert written == [201]


def test_approval_policy_requires_a_passing_bias_report(client, keys, tmp_path):
    from tests.browser import render
    from tests.helpers import approve, create_group, register

    create_group(client, keys("publisher"), "credit")
    register(client, keys("publisher"), "credit", 1)
    assert client.patch("/api/v1/model-groups/credit", json={"approval_policy": {"require_bias_report": True}},
                        headers=keys("publisher")).status_code == 403
    r = client.patch("/api/v1/model-groups/credit", headers=keys("admin"),
                     json={"approval_policy": {"require_bias_report": True, "bias_limits": {"DPPL": 0.05}}})
    assert r.json()["approval_policy"]["require_bias_report"] is True
    assert_problem(approve(client, keys("approver"), "credit", 1), 409, "no bias report")
    rng = np.random.default_rng(5)
    n = 2000
    df = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "income": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    df["pred"] = np.where((df.sex == "f") & (rng.random(n) < 0.3), 0, df.y)     # the model disfavours f
    cfg = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": ["DPPL", "DI"]}}}
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher2"),   # independent of the registrant
                    data={"model_group": "credit", "model_version": "1"},
                    files={"file": ("d.csv", df.to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(cfg).encode())})
    assert r.status_code == 200
    aid = r.headers["x-mlgov-analysis-id"]
    v = client.get("/api/v1/model-groups/credit/versions/1", headers=keys("viewer")).json()
    assert v["bias_report"]["passed"] is False and any("DPPL" in f for f in v["bias_report"]["failures"])
    assert_problem(approve(client, keys("approver"), "credit", 1), 409, "bias report fails")
    assert_problem(approve(client, keys("approver"), "credit", 1, override_policy=True), 403, "admin")
    ok = approve(client, keys("admin"), "credit", 1, comment="accepted risk, see ticket 42", override_policy=True)
    assert ok.status_code == 200
    ev = client.get("/api/v1/audit/events", params={"action": "version.approval_changed"},
                    headers=keys("admin")).json()["items"][-1]
    assert ev["after"]["policy_overridden"] and "DPPL" in ev["after"]["policy_overridden"][0]
    html = client.get(f"/api/v1/clarify/reports/{aid}", headers=keys("viewer")).text
    dom, shot = render(html, tmp_path)
    assert shot.stat().st_size > 5000
    assert "Post-training (model) bias" in dom and 'id="verdict"' in dom and "failed" in dom
    assert "Difference in Positive Proportions in Predicted Labels (DPPL)" in dom
    assert_problem(client.get("/api/v1/clarify/reports/..%2Fetc", headers=keys("viewer")), 404)
    unknown = assert_problem(client.get("/api/v1/clarify/reports/abc123", headers=keys("viewer")), 404,
                             "no Clarify analysis 'abc123'", "X-Mlgov-Analysis-Id")
    assert "store" not in unknown["detail"]
    for path in ("reports/", "explanations/"):   # longer than any id: refused before the store (it was a 500)
        long = "a" * 300 + ("/rows" if path == "explanations/" else "")
        assert_problem(client.get(f"/api/v1/clarify/{path}{long}", headers=keys("viewer")), 422, "analysis_id")


def test_counts_from_partitions_merge_into_the_whole_datasets_analysis():
    """Pre- and post-training metrics of a categorical facet (every value its group), a threshold facet and a listed
    value, with CDD: three partitions' counts merged equal ``analyze`` on the whole table; FT says why it is absent."""
    from clarify.metrics import partition
    from tests.monitor.test_dask import assert_bias_equal

    rng = np.random.default_rng(4)
    n = 9_000
    df = pd.DataFrame({"race": rng.choice(["a", "b", "c", "d"], n), "age": rng.integers(18, 80, n).astype(float),
                       "band": rng.choice(["n", "s", "e"], n), "y": rng.integers(0, 2, n)})
    df["p"] = np.clip(df.y * 0.4 + rng.random(n) * 0.6, 0, 1)   # probabilities: read against 0.5
    cfg = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "p", "group_variable": "band",
           "facet": [{"name_or_index": "race"}, {"name_or_index": "age", "value_or_threshold": 40},
                     {"name_or_index": "race", "value_or_threshold": ["b", "c"]}],
           "methods": {"pre_training_bias": {"methods": "all"},
                       "post_training_bias": {"methods": [m for m in bias.POST if m != "FT"]}}}
    parts = [partition.summarise(df.iloc[i:i + 3_000].reset_index(drop=True), cfg) for i in range(0, n, 3_000)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert_bias_equal(analyze(df, cfg), partition.analysis(merged, cfg))
    cfg["methods"]["post_training_bias"]["methods"] = ["FT", "DPPL"]
    ft = partition.analysis(merged, cfg)["post_training_bias_metrics"]["facets"]["race"][0]["metrics"][1]
    assert ft["name"] == "FT" and ft["value"] is None and "not computed from partitions" in ft["note"]


def _small() -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"sex": rng.integers(0, 2, n), "age": rng.normal(40, 9, n), "y": rng.integers(0, 2, n)})
    df["pred"] = np.where(rng.random(n) < 0.8, df["y"], 1 - df["y"])
    cfg = {"label": "y", "label_values_or_threshold": [1], "facet": [{"name_or_index": "sex",
                                                                      "value_or_threshold": [1]}],
           "predicted_label": "pred", "methods": {"pre_training_bias": {"methods": "all"},
                                                  "post_training_bias": {"methods": "all"}}}
    return df, cfg


_REFUSED = [
    (lambda d, c: c.update(label_values_or_threshold=[7]), "label_values_or_threshold", "no row's label is one of"),
    (lambda d, c: d.__setitem__("pred", "yes"), "predicted_label", "no predicted label is one of"),
    (lambda d, c: d.__setitem__("y", d["y"].astype(float).where(d.index % 4 != 0)), "label",
     "100 row(s) have no label"),
    (lambda d, c: (d.__setitem__("y", np.where(d["y"] == 1, "good", "bad")),
                   c.update(label_values_or_threshold=0.5)), "label_values_or_threshold", "is a threshold"),
    (lambda d, c: c["facet"][0].update(value_or_threshold=[5]), "facet.0.value_or_threshold", "no row of facet"),
    (lambda d, c: d.__setitem__("sex", 1), "facet.0.value_or_threshold", "every row of facet"),
    (lambda d, c: d.__setitem__("sex", d["sex"].astype(float).where(d.index % 5 != 0)), "facet.0.name_or_index",
     "is empty in 80 row(s)"),
    (lambda d, c: c["facet"].__setitem__(0, {"name_or_index": "age"}), "facet.0.value_or_threshold", "continuous"),
    (lambda d, c: d.__setitem__("age", d["age"].where(d.index % 10 != 0)), "methods.post_training_bias.methods",
     "'age' is empty in 40"),
    (lambda d, c: d.__setitem__("age", d["age"].where(d.index % 20 != 0, np.inf)),
     "methods.post_training_bias.methods", "'age' is infinite in 20"),
]


@pytest.mark.parametrize("change, field, needle", _REFUSED)
def test_data_that_cannot_answer_the_question_is_refused(change, field, needle):
    """A Clarify trial got 200 with made-up numbers (CI 1.0, a negative KL, all-zero metrics) for a facet value no
    row has, a label value that never occurs, predictions spelt unlike labels; empty labels counted as negatives;
    a threshold on text labels and an empty feature under FT were 500s. smclarify refuses each of these."""
    df, cfg = _small()
    change(df, cfg)
    with pytest.raises(ConfigError) as err:
        analyze(df, cfg)
    assert err.value.problems[0]["field"] == field and needle in err.value.problems[0]["message"], err.value.problems


@pytest.mark.parametrize("case", [0, 2, 3, 4, 5, 6, 7])
def test_partitioned_counts_refuse_the_same_data(case):
    """The Dask path (partition summaries merged) refuses what `analyze` refuses, field for field (FT is not
    computed there; predictions spelt unlike labels are checked on the whole table only)."""
    from clarify.metrics import partition

    change, field, _ = _REFUSED[case]
    df, cfg = _small()
    change(df, cfg)
    with pytest.raises(ConfigError) as err:
        halves = [partition.summarise(df.iloc[:200], cfg), partition.summarise(df.iloc[200:], cfg)]
        partition.analysis(halves[0].merge(halves[1]), cfg)
    assert err.value.problems[0]["field"] == field, err.value.problems


def test_boolean_predictions_are_the_labels_1_and_0():
    """A CSV's True/False predictions against 0/1 labels were compared as text ("True" is not "1"): every
    prediction counted negative and DI, DPPL, RD read 0 with a 200."""
    df, cfg = _small()
    assert analyze(df.assign(pred=df["pred"].astype(bool)), cfg) == analyze(df, cfg)
    assert analyze(df.assign(y=df["y"].astype(bool)), cfg) == analyze(df, cfg)


def test_captured_labels_spelt_as_floats_are_the_configured_integers():
    """Ground truth sent as "1.0"/"0.0" (mlgov's own SDK writes a float label column so) was compared as text with
    the configured 1: every label was negative, RD/DAR/DCA/TE read 0 and bias-drift alerts were missed."""
    df, cfg = _small()
    expected = analyze(df, cfg)
    for spelt in (df["y"].map(lambda v: f"{v}.0"), df["y"].astype(str)):
        labels, spec = bias.captured_labels(spelt, [1])
        assert analyze(df.assign(y=labels), {**cfg, "label_values_or_threshold": spec}) == expected
    words = pd.Series(np.where(df["y"] == 1, "yes", "no"))   # text labels stay text
    labels, spec = bias.captured_labels(words, ["yes"])
    assert spec == ["yes"] and labels.dtype == object
    assert bias.captured_labels(pd.Series(["0.2", "0.9"]), 0.5)[0].tolist() == [0.2, 0.9]
