"""The label-free estimate through the API, on SQLite and PostgreSQL: the estimator fitted with the ModelQuality
baseline (calibration stored as data), the contract of POST /endpoints/{name}/performance-estimate (estimate,
band, calibrated; realised and within_band once labels arrive), the model's captured calls, an estimated breach
alerting from a scheduled ModelQuality run before any label (its own check), regression DLE, and bad input."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape

import numpy as np
import pandas as pd

from tests.helpers import assert_problem, create_group, register
from tests.monitor.test_api import FEATURES, csv_bytes, gt_record, record

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
WIN = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def scored(rng: np.random.Generator, n: int, centre: float = 0.0, spread: float = 1.0) -> pd.DataFrame:
    """x = (income - 50)/10; truth P(y=1) = σ(2x - 1); the model scores σ(0.6x - 0.2) (miscalibrated) and calls
    positive from 0.45 (its own threshold, not 0.5)."""
    x = rng.normal(centre, spread, n)
    p = _sigmoid(0.6 * x - 0.2)
    return pd.DataFrame({"age": rng.integers(18, 90, n), "income": 50 + 10 * x, "state": "CA",
                         "label": (rng.random(n) < _sigmoid(2 * x - 1)).astype(int),
                         "prediction": (p >= 0.45).astype(int), "prob": p})


def _estimate_rows(html: str) -> dict[str, list[str]]:
    """The report's table of estimates: metric → its cells as text (metric, estimate, band, calibration, realised,
    within band)."""
    table = html[html.index('<table id="estimates">'):]
    table = table[:table.index("</table>")]
    return {m: [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for m, row in re.findall(r'<tr data-estimate="(\w+)">(.*?)</tr>', table, re.S)}


def _setup(client, keys, name: str, outputs: dict) -> None:
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    r = client.post("/api/v1/endpoints", headers=keys("publisher"), json={
        "name": name, "model_group": "churn", "model_version": 1, "schema": {"features": FEATURES, **outputs}})
    assert r.status_code == 201, r.text


def _capture(client, keys, name: str, df: pd.DataFrame, out: list[str], start: int = 0) -> None:
    recs = []
    for i, row in enumerate(df.itertuples(index=False)):
        rec = record(start + i, T0 + dt.timedelta(seconds=(start + i) % 3600), (row.age, f"{row.income:.6f}", "CA"))
        rec["captureData"]["endpointOutput"]["data"] = ",".join(str(getattr(row, c)) for c in out)
        recs.append(rec)
    r = client.post(f"/api/v1/endpoints/{name}/capture", json=recs, headers=keys("ingest"))
    assert r.json()["accepted"] == len(df), r.text


def test_binary_estimate_calibrated_alerts_before_labels_and_compares_after(client, keys):
    rng = np.random.default_rng(11)
    _setup(client, keys, "scorer", {"prediction": {"name": "prediction", "type": "Integral"},
                                    "probability": {"name": "prob", "csv_index": 1}})
    pub = keys("publisher")
    ref = scored(rng, 6000)
    r = client.post("/api/v1/baselines", headers=pub, data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", "prediction": "prediction",
        "probability": "prob"}, files={"file": ("val.csv", csv_bytes(ref))})
    assert r.status_code == 201, r.text
    mq = r.json()["id"]
    sched = {"name": "mq-hourly", "endpoint": "scorer", "type": "ModelQuality", "schedule": "hourly",
             "baseline_id": mq, "window": {"start": "-PT1H", "end": "PT0S"}}
    assert client.post("/api/v1/monitoring-schedules", json=sched, headers=pub).status_code == 201
    # traffic near the true boundary: the model does much worse there, and no label has arrived yet
    window = scored(rng, 1500, centre=0.5, spread=0.35)
    _capture(client, keys, "scorer", window, ["prediction", "prob"])
    est = client.post("/api/v1/endpoints/scorer/performance-estimate", json=WIN, headers=keys("viewer")).json()
    assert est["baseline_id"] == mq and est["rows"] == 1500 and est["labelled_rows"] == 0
    assert est["decisions"] == {"captured_prediction": 1500, "threshold": 0}
    for m in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        e = est["estimated"][m]
        assert e["band"]["lower"] <= e["estimate"] <= e["band"]["upper"], (m, e)
        assert e["calibrated"]["applied"] is True and e["calibrated"]["method"] == "isotonic"
        assert "realised" not in e
    # the scheduled run alerts on the estimated breach, a check of its own, before labels
    ex = client.post("/api/v1/monitoring-schedules/mq-hourly/run", json=WIN, headers=pub).json()
    assert ex["status"] == "CompletedWithViolations", ex
    alerts = client.get("/api/v1/alerts?status=open", headers=keys("viewer")).json()["items"]
    checks = {(a["check"], a["subject"]) for a in alerts}
    assert ("EstimatedLessThanThreshold", "accuracy") in checks
    assert not any(c in ("LessThanThreshold", "GreaterThanThreshold") for c, _ in checks)
    stored = client.get(f"/api/v1/analyses/{ex['analysis_id']}/report", params={"format": "json"},
                        headers=keys("viewer")).json()["estimate"]["estimated"]
    assert stored["accuracy"]["calibrated"]["method"] == "isotonic"
    page = client.get(f"/api/v1/analyses/{ex['analysis_id']}/report", headers=keys("viewer"))
    assert page.headers["content-type"].startswith("text/html")
    early = _estimate_rows(page.text)
    assert set(early) == set(stored)
    for m, cells in early.items():
        e = stored[m]
        assert cells[1] == f"{e['estimate']:.4g}" and cells[2] == f"{e['lower']:.4g} – {e['upper']:.4g}", (m, cells)
        assert cells[3].startswith("isotonic (ECE ") and cells[4] == "—" and cells[5] == "—", (m, cells)
    assert "0 of 1500 rows labelled" in page.text and "captured prediction: 1500" in page.text
    # labels arrive: realised values beside the estimates, from the model's own calls
    client.post("/api/v1/endpoints/scorer/ground-truth", headers=keys("ingest"),
                json=[gt_record(f"inf-{i}", str(v)) for i, v in enumerate(window["label"])])
    both = client.post("/api/v1/endpoints/scorer/performance-estimate", json=WIN, headers=keys("viewer")).json()
    assert both["labelled_rows"] == 1500
    calls, y = window["prediction"].to_numpy(), window["label"].to_numpy()
    acc = both["estimated"]["accuracy"]
    assert abs(acc["realised"] - float(np.mean(calls == y))) < 1e-12
    assert acc["within_band"] == (acc["band"]["lower"] <= acc["realised"] <= acc["band"]["upper"])
    assert sum(v["within_band"] for v in both["estimated"].values()) >= 5
    assert both["comparison"]["accuracy"]["realized"] == acc["realised"]
    # the scheduled run with labels: its report puts the realised value and the verdict beside each estimate
    later = client.post("/api/v1/monitoring-schedules/mq-hourly/run", json=WIN, headers=pub).json()
    rows = _estimate_rows(client.get(f"/api/v1/analyses/{later['analysis_id']}/report", headers=keys("viewer")).text)
    assert rows["accuracy"][4] == f"{acc['realised']:.4g}"
    for m, e in both["estimated"].items():
        assert rows[m][5] == ("yes" if e["within_band"] else "no"), (m, rows[m], e)
    # a threshold sent for rows without captured calls changes nothing here: the captured calls win
    same = client.post("/api/v1/endpoints/scorer/performance-estimate", json={**WIN, "threshold": 0.9},
                       headers=keys("viewer")).json()
    assert same["estimated"]["recall"]["estimate"] == both["estimated"]["recall"]["estimate"]


def test_regression_direct_loss_estimation_through_the_endpoint(client, keys):
    rng = np.random.default_rng(12)
    _setup(client, keys, "pricer", {"prediction": {"name": "price"}})

    def draw(n: int, spread: float) -> pd.DataFrame:
        x = rng.normal(0, spread, n)
        age = rng.integers(18, 90, n)
        price = 3 * (age - 50) / 10
        return pd.DataFrame({"age": age, "income": 50 + 10 * x, "state": "CA", "price": price,
                             "label": price + rng.normal(0, 0.2 + np.abs(x), n)})

    ref = draw(4000, 1.0)
    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={
        "type": "ModelQuality", "problem_type": "Regression", "label": "label", "prediction": "price",
        "features": "age,income"}, files={"file": ("val.csv", csv_bytes(ref))})
    assert r.status_code == 201, r.text
    window = draw(1500, 1.8)                      # the loss grows where |x| is larger
    _capture(client, keys, "pricer", window, ["price"])
    body = {**WIN, "baseline_id": r.json()["id"]}
    est = client.post("/api/v1/endpoints/pricer/performance-estimate", json=body, headers=keys("viewer")).json()
    assert est["problem_type"] == "Regression" and set(est["estimated"]) == {"mae", "mse", "rmse"}
    realised_mae = float(np.mean(np.abs(window["price"] - window["label"])))
    reference_mae = float(np.mean(np.abs(ref["price"] - ref["label"])))
    assert abs(est["estimated"]["mae"]["estimate"] - realised_mae) < 0.35 * (realised_mae - reference_mae)
    assert est["estimated"]["mae"]["calibrated"]["applied"] is False
    client.post("/api/v1/endpoints/pricer/ground-truth", headers=keys("ingest"),
                json=[gt_record(f"inf-{i}", f"{v:.9f}") for i, v in enumerate(window["label"])])
    after = client.post("/api/v1/endpoints/pricer/performance-estimate", json=body, headers=keys("viewer")).json()
    assert abs(after["estimated"]["mae"]["realised"] - realised_mae) < 1e-6
    assert isinstance(after["estimated"]["rmse"]["within_band"], bool)


def test_estimate_bad_input_and_roles(client, keys):
    rng = np.random.default_rng(13)
    _setup(client, keys, "scorer", {"prediction": None, "probability": {"name": "prob"}})
    _capture(client, keys, "scorer", scored(rng, 50), ["prob"])
    url = "/api/v1/endpoints/scorer/performance-estimate"
    assert client.post(url, json=WIN).status_code == 401
    assert_problem(client.post(url, json={**WIN, "baseline_id": "../../etc"}, headers=keys("viewer")), 422)
    assert_problem(client.post(url, json={**WIN, "baseline_id": "0" * 32}, headers=keys("viewer")), 404)
    assert_problem(client.post(url, json={**WIN, "threshold": 1.5}, headers=keys("viewer")), 422)
    plain = client.post(url, json=WIN, headers=keys("viewer")).json()     # no baseline: raw scores, said so
    assert plain["baseline_id"] is None and plain["estimated"]["f1"]["calibrated"]["applied"] is False
    ref = scored(rng, 300)
    pub = keys("publisher")
    for data, needle in [({"problem_type": "MulticlassClassification", "prediction": "prediction",
                           "class_probabilities": "0=prob"}, "class:column"),
                         ({"problem_type": "MulticlassClassification", "prediction": "prediction",
                           "class_probabilities": "0:prob,1:prob"}, "its own column"),
                         ({"problem_type": "Regression", "prediction": "prob", "features": "nope"},
                          "not in the dataset"),
                         ({"problem_type": "Regression", "prediction": "prob", "features": ",".join(["a"] * 2001)},
                          "1 to 2000")]:
        assert_problem(client.post("/api/v1/baselines", headers=pub, data={"type": "ModelQuality", "label": "label",
                                                                          **data},
                                   files={"file": ("v.csv", csv_bytes(ref))}), 422, needle)
    assert client.post("/api/v1/baselines", headers=keys("viewer"), data={"type": "ModelQuality"},
                       files={"file": ("v.csv", csv_bytes(ref))}).status_code == 403
    # the stored estimator is JSON data, never code
    r = client.post("/api/v1/baselines", headers=pub, data={
        "type": "ModelQuality", "problem_type": "BinaryClassification", "label": "label", "probability": "prob"},
        files={"file": ("v.csv", csv_bytes(ref))})
    assert r.status_code == 201, r.text
    assert json.loads(json.dumps(r.json()))["kind"] == "ModelQuality"
