"""`mlgov bias|explain` against a live server: tables, --json, reports, exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier

from tests.clirun import Cli, live_cli, one_line_error

pytestmark = pytest.mark.live


@pytest.fixture
def cli(tmp_path):
    with live_cli(tmp_path) as c:
        yield c


def bias_inputs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"F1": rng.random(n), "F2": rng.normal(size=n), "Label": rng.integers(0, 2, n)})
    df["pred"] = np.where(rng.random(n) < 0.8, df["Label"], 1 - df["Label"])
    cfg = {"label": "Label", "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": "F1", "value_or_threshold": 0.5}],
           "methods": {"pre_training_bias": {"methods": ["CI", "DPL"]}, "post_training_bias": {"methods": ["DPPL"]}}}
    (tmp_path / "data.csv").write_text(df.to_csv(index=False))
    (tmp_path / "analysis_config.json").write_text(json.dumps(cfg))
    return tmp_path / "data.csv", tmp_path / "analysis_config.json"


def test_bias_in_a_real_shell(cli: Cli, tmp_path: Path):
    data, config = bias_inputs(tmp_path)
    r = cli.run("bias", "run", str(data), "--config", str(config), key="publisher")
    assert r.code == 0, r.stderr
    first, header, _, *rows = r.stdout.splitlines()
    analysis_id = first.split()[1]
    assert first.endswith(f"(HTML report: mlgov bias report {analysis_id} --html > report.html)")
    assert header.split("┃")[0].strip() == "stage" and len(rows) == 3
    assert {(c[0], c[3]) for c in ([x.strip() for x in row.split("│")] for row in rows)} == {
        ("pre", "CI"), ("pre", "DPL"), ("post", "DPPL")}

    stored = cli.run("bias", "report", analysis_id, "--json", key="viewer")
    assert set(json.loads(stored.stdout)) == {"version", "pre_training_bias_metrics", "post_training_bias_metrics"}
    assert "<html" in cli.run("bias", "report", analysis_id, "--html", key="viewer").stdout.lower()


def test_bias_errors(cli: Cli, tmp_path: Path):
    data, config = bias_inputs(tmp_path)
    (tmp_path / "wrong.json").write_text(json.dumps({**json.loads(config.read_text()), "label": "nope"}))
    wrong = cli.invoke("bias", "run", str(data), "--config", str(tmp_path / "wrong.json"), key="publisher")
    assert wrong.code == 4
    one_line_error(wrong, "nope")
    missing_config = cli.invoke("bias", "run", str(data), "--config", str(tmp_path / "missing.json"))
    assert missing_config.code == 2
    half = cli.invoke("bias", "run", str(data), "--config", str(config), "--group", "g")
    assert half.code == 2
    one_line_error(half, "--group and --version go together")
    viewer = cli.invoke("bias", "run", str(data), "--config", str(config), key="viewer")
    assert viewer.code == 4
    assert cli.invoke("bias", "report", "nope").code == 3


def test_explain(cli: Cli, tmp_path: Path):
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (x.a + 0.3 * x.b > 0).astype(int)
    artifact = sio.dumps(GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y))
    (tmp_path / "model.skops").write_bytes(artifact)
    x.to_csv(tmp_path / "rows.csv", index=False)
    assert cli.invoke("groups", "create", "m", key="publisher").code == 0
    assert cli.invoke("versions", "register", "m", "--artifact-uri", "s3://models/m/1/model.skops", "--sha256",
                      hashlib.sha256(artifact).hexdigest(), key="publisher").code == 0
    r = cli.invoke("explain", "run", "m", "1", str(tmp_path / "rows.csv"), "--model", str(tmp_path / "model.skops"),
                   key="publisher")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("label0: tree SHAP, mean_abs over rows, expected value ")
    ranked = [line.split("│")[0].strip() for line in lines[4:]]
    assert ranked[0] == "a" and sorted(ranked) == ["a", "b", "c"]
    as_json = json.loads(cli.invoke("explain", "run", "m", "1", str(tmp_path / "rows.csv"), "--model",
                                    str(tmp_path / "model.skops"), "--json", key="publisher").stdout)
    shap = as_json["analysis"]["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    assert max(shap, key=shap.get) == "a"

    other = tmp_path / "other.skops"
    other.write_bytes(sio.dumps(GradientBoostingClassifier(n_estimators=3, random_state=1).fit(x, y)))
    tampered = cli.invoke("explain", "run", "m", "1", str(tmp_path / "rows.csv"), "--model", str(other),
                          key="publisher")
    assert tampered.code == 4
    one_line_error(tampered, "sha256")
