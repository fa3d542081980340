"""A drift analysis exported as an Evidently 0.7 snapshot, read back by Evidently's own code: ``Snapshot.loads``,
a local ``Workspace`` project, and the storage ``evidently ui`` serves dashboards from (it re-reads the
workspace's files from disk), whose values must be mlgov's. Evidently's own DataDriftPreset on the same frames
must name its metrics the same way, so both kinds of run plot on one dashboard series."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_problem
from tests.infra import free_port
from tests.monitor.test_api import csv_bytes, frame, make_baseline

DRIFT = "evidently:metric_v2:ValueDrift"
COUNT = "evidently:metric_v2:DriftedColumnsCount"


def _series(storage, project_id, metric: str) -> dict[str, float]:
    """What a dashboard panel on ``metric`` plots: each series' last value, keyed by its labels."""
    from evidently.ui.service.base import SeriesFilter

    res = asyncio.run(
        storage.get_data_series(
            project_id, [SeriesFilter(metric=metric, metric_labels={}, tags=[], metadata={})], None, None
        )
    )
    return {f"{s.params.get('column', '')}|{s.params.get('value_type', '')}": s.values[-1] for s in res.series}


def _exported(client, keys, workspace: Path, ref: pd.DataFrame, cur: pd.DataFrame):
    """A drift analysis of ``cur`` against ``ref``, its exported snapshot added to a project of a local Evidently
    workspace: (the analysis, the snapshot as Evidently loaded it, the response text, project id, run id)."""
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    bid = make_baseline(client, keys, ref)
    r = client.post(
        "/api/v1/analyses",
        data={"baseline_id": bid},
        files={"file": ("cur.csv", csv_bytes(cur))},
        headers=keys("publisher"),
    )
    assert r.status_code == 201, r.text
    got = client.get(f"/api/v1/analyses/{r.json()['id']}/evidently-snapshot", headers=keys("viewer"))
    assert got.status_code == 200, got.text
    snap = Snapshot.loads(got.text)
    ws = Workspace(str(workspace))
    project = ws.create_project("mlgov drift")
    run = ws.add_run(project.id, snap)
    return r.json(), snap, got.text, project.id, run.id


def test_drift_analysis_loads_into_an_evidently_workspace(client, keys, tmp_path):
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.report import Snapshot
    from evidently.presets import DataDriftPreset
    from evidently.ui.service.storage.local.base import InMemoryDataStorage
    from evidently.ui.workspace import Workspace

    ref = frame(1500)
    cur = frame(1200, shift=3, seed=4)
    analysis, snap, text, project_id, run_id = _exported(client, keys, tmp_path, ref, cur)
    ours = {d["feature"]: d for d in analysis["drift"]}
    assert ours["income"]["drifted"] and not ours["state"]["drifted"]
    assert snap.dict()["metrics"], "Evidently sees no metric results"
    stored = Workspace(str(tmp_path)).get_run(project_id, run_id)
    assert stored is not None and stored.metadata["mlgov_analysis_id"] == analysis["id"]

    storage = InMemoryDataStorage(str(tmp_path))  # what `evidently ui --workspace tmp_path` loads from disk
    drift = _series(storage, project_id, DRIFT)
    assert set(drift) == {f"{name}|" for name in ours}
    for name, d in ours.items():
        assert drift[f"{name}|"] == d["statistic"]
    count = _series(storage, project_id, COUNT)
    assert count == {"|count": float(len(analysis["drifted_features"])), "|share": analysis["drift_share"]}

    # Evidently's own run on the same frames: the same metrics (column, method, threshold), so one series
    dd = DataDefinition(numerical_columns=["age", "income"], categorical_columns=["state"])
    theirs = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd),
    )

    def params(s: Snapshot) -> dict[str, tuple[str, float, float]]:
        return {
            m.metric_value_location.metric.params["column"]: (
                m.metric_value_location.metric.params["method"],
                m.metric_value_location.metric.params["threshold"],
                float(m.value),
            )
            for m in s._metrics.values()
            if m.metric_value_location.metric.params["type"] == DRIFT
        }

    mine, evid = params(snap), params(theirs)
    assert set(mine) == set(evid)
    for col, (method, threshold, value) in evid.items():
        assert mine[col][:2] == (method, threshold)
        assert math.isclose(mine[col][2], value, rel_tol=1e-6, abs_tol=1e-9), (col, mine[col], value)

    page = json.loads(text)
    table = next(w for w in page["widgets"] if w["type"] == "big_table")
    assert {row["column_name"]: row["data_drift"] for row in table["params"]["data"]} == {
        n: "Detected" if d["drifted"] else "Not Detected" for n, d in ours.items()
    }
    # a dataset-drift share set on the analysis is the one the snapshot's DriftedColumnsCount carries
    strict = client.post(
        "/api/v1/analyses",
        headers=keys("publisher"),
        files={"file": ("c.csv", csv_bytes(cur))},
        data={"baseline_id": analysis["baseline_id"], "drift": json.dumps({"drift_share": 0.3})},
    )
    assert strict.status_code == 201, strict.text
    exported = client.get(f"/api/v1/analyses/{strict.json()['id']}/evidently-snapshot", headers=keys("viewer")).json()
    counts = [m for m in exported["metric_results"].values() if m["type"].endswith("CountValue")]
    assert [m["metric_value_location"]["metric"]["params"]["drift_share"] for m in counts] == [0.3]
    assert "Dataset Drift is detected" in exported["widgets"][0]["params"]["counters"][0]["label"]


def test_only_drift_analyses_export(client, keys):
    pub, viewer = keys("publisher"), keys("viewer")
    rng = np.random.default_rng(3)
    val = pd.DataFrame({"label": rng.integers(0, 2, 400)})
    val["prediction"] = np.where(rng.random(400) < 0.8, val["label"], 1 - val["label"])
    mq = client.post(
        "/api/v1/baselines",
        headers=pub,
        data={
            "type": "ModelQuality",
            "problem_type": "BinaryClassification",
            "label": "label",
            "prediction": "prediction",
        },
        files={"file": ("val.csv", csv_bytes(val))},
    ).json()["id"]
    quality = client.post(
        "/api/v1/analyses", data={"baseline_id": mq}, files={"file": ("v.csv", csv_bytes(val))}, headers=pub
    )
    assert quality.status_code == 201, quality.text
    assert_problem(
        client.get(f"/api/v1/analyses/{quality.json()['id']}/evidently-snapshot", headers=viewer), 422, "ModelQuality"
    )
    bid = make_baseline(client, keys)
    from tests.monitor.test_api import _endpoint

    _endpoint(client, keys)
    failed = client.post(
        "/api/v1/analyses",
        headers=pub,
        json={
            "baseline_id": bid,
            "endpoint": "churn-prod",
            "start": "2026-11-21T10:00:00Z",
            "end": "2026-11-21T11:00:00Z",
        },
    )
    assert failed.json()["status"] == "Failed"
    assert_problem(
        client.get(f"/api/v1/analyses/{failed.json()['id']}/evidently-snapshot", headers=viewer), 422, "failed"
    )
    assert_problem(client.get("/api/v1/analyses/nope/evidently-snapshot", headers=viewer), 404)
    assert client.get(f"/api/v1/analyses/{failed.json()['id']}/evidently-snapshot").status_code == 401


@pytest.mark.live
def test_evidently_ui_serves_the_exported_snapshot(client, keys, tmp_path):
    """`evidently ui` itself, started on the workspace: it lists the run, renders its widgets and plots mlgov's
    values on a dashboard series."""
    analysis, _, _, project_id, run_id = _exported(client, keys, tmp_path, frame(1000), frame(800, shift=3, seed=6))
    port = free_port()
    exe = str(Path(sys.executable).with_name("evidently"))
    proc = subprocess.Popen(
        [exe, "ui", "--workspace", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 180
        while True:
            try:
                httpx.get(f"{base}/projects/", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "evidently ui did not start"
                time.sleep(0.5)
        runs = httpx.get(f"{base}/projects/{project_id}/snapshots", timeout=60).json()
        assert [(r["id"], r["metadata"]["mlgov_analysis_id"]) for r in runs] == [(str(run_id), analysis["id"])]
        shown = httpx.get(f"{base}/projects/{project_id}/{run_id}/data", timeout=60).json()
        table = next(w for w in shown["widgets"] if w["type"] == "big_table")
        assert {r["column_name"]: r["drift_score"] for r in table["params"]["data"]} == {
            d["feature"]: round(d["statistic"], 6) for d in analysis["drift"]
        }
        series = httpx.post(
            f"{base}/v2/snapshots/{project_id}/data_series_batch",
            json={"series_filter": [{"tags": [], "metadata": {}, "metric": DRIFT, "metric_labels": {}}]},
            timeout=60,
        ).json()["series"]
        assert {s["params"]["column"]: s["values"] for s in series} == {
            d["feature"]: [d["statistic"]] for d in analysis["drift"]
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
