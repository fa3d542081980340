"""The analysis reports of monitor's kinds, from analyses made by the services: drift charts that show the current
distribution of a shifted feature, and the model-quality report (metrics against the baseline, confusion matrices,
ROC and PR curves)."""

from __future__ import annotations

import json
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest

from monitor import report
from monitor.engine import histogram, stats
from monitor.engine.columns import numeric_column
from tests.monitor.test_api import csv_bytes, frame, make_baseline

TIP = re.compile(r"<title>(baseline|current) ([^<]*): ([0-9.]+)%</title>")


def analyse(client, keys, bid: str, df: pd.DataFrame) -> str:
    r = client.post("/api/v1/analyses", data={"baseline_id": bid}, files={"file": ("c.csv", csv_bytes(df))},
                    headers=keys("publisher"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def feature_section(html: str, name: str) -> str:
    start = html.index(f'<section class="feature" data-feature="{name}">')
    return html[start:html.index("</section>", start)]


def shares(section: str, who: str) -> list[float]:
    return [float(p) for w, _, p in TIP.findall(section) if w == who]


@pytest.mark.parametrize("shift", [15.0, 400.0])
def test_drift_chart_shows_the_current_distribution_of_a_shifted_feature(client, keys, shift):
    """3,000 current values of income, shifted: every one of them is in a current bar, on the baseline's edges
    (widened), and the bars agree with the data's own histogram on those edges (the sketch is re-binned)."""
    bid = make_baseline(client, keys)
    cur = frame(3000, shift=shift, seed=5)
    aid = analyse(client, keys, bid, cur)
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    section = feature_section(html, "income")
    assert sum(shares(section, "current")) == pytest.approx(100.0, abs=0.05 * len(shares(section, "current")))
    assert sum(shares(section, "baseline")) == pytest.approx(100.0, abs=0.05 * len(shares(section, "baseline")))

    rep = client.get(f"/api/v1/analyses/{aid}/report", params={"format": "json"}, headers=keys("viewer")).json()
    base = next(f for f in rep["baseline_statistics"]["features"] if f["name"] == "income")["numerical_statistics"]
    now = next(f for f in rep["statistics"]["features"] if f["name"] == "income")["numerical_statistics"]
    binned = histogram.numeric(base, now, report.MAX_NUMERIC_BUCKETS)
    assert binned is not None and binned.current is not None and binned.baseline is not None
    edges = binned.edges
    assert binned.current.sum() == pytest.approx(3000)
    exact = np.bincount(np.clip(np.searchsorted(edges, cur["income"], side="right") - 1, 0, len(edges) - 2),
                        minlength=len(edges) - 1)
    assert np.abs(binned.current / 3000 - exact / 3000).max() < 0.003     # KLL re-binning: within 0.3 points
    own = [b["count"] for b in base["distribution"]["kll"]["buckets"]]
    if shift < 100:   # the baseline's own buckets, widened by whole buckets: its counts kept as stored
        assert binned.widened > 0 and [float(c) for c in binned.baseline if c] == [float(c) for c in own if c]
        assert "widened by" in unescape(section)
    else:             # far apart: one grid over both ranges
        assert binned.widened == -1 and "far from the baseline" in unescape(section)
    assert "re-binned from its KLL sketch" in unescape(section)


def numerical_statistics(values: np.ndarray) -> dict:
    col = numeric_column("x", values, integral=False)
    return stats.feature_statistics(stats.profile_column(col))["numerical_statistics"]


def test_drift_chart_of_a_small_window_is_exact():
    """Under 2,048 values the sketch holds every one: the re-binned counts are the data's own."""
    rng = np.random.default_rng(1)
    now = rng.normal(2.5, 0.5, 700)
    binned = histogram.numeric(numerical_statistics(rng.normal(0, 1, 5000)), numerical_statistics(now))
    assert binned is not None and binned.current is not None and binned.current_rebinned and binned.current_exact
    e = binned.edges
    exact = np.bincount(np.clip(np.searchsorted(e, now, side="right") - 1, 0, len(e) - 2), minlength=len(e) - 1)
    assert binned.current.tolist() == exact.astype(float).tolist()


def test_without_a_sketch_buckets_are_spread_evenly_over_their_width():
    """A SageMaker statistics.json with buckets only: each count spread over its bucket's width."""
    base = {"distribution": {"kll": {"buckets": [{"lower_bound": 0.0, "upper_bound": 1.0, "count": 10.0},
                                                  {"lower_bound": 1.0, "upper_bound": 2.0, "count": 10.0}]}}}
    cur = {"distribution": {"kll": {"buckets": [{"lower_bound": 1.5, "upper_bound": 3.5, "count": 8.0}]}}}
    binned = histogram.numeric(base, cur)
    assert binned is not None and binned.edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and binned.widened == 2
    assert binned.current is not None and binned.current.tolist() == [0.0, 2.0, 4.0, 2.0]
    assert binned.baseline is not None and binned.baseline.tolist() == [10.0, 10.0, 0.0, 0.0]
    assert not binned.current_exact


def scored(n: int, seed: int, noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    prob = np.clip(0.5 + (label - 0.5) * 0.6 + rng.normal(0, noise, n), 0, 1).round(4)
    return pd.DataFrame({"label": label, "prob": prob})


def quality_analysis(client, keys, base: pd.DataFrame, cur: pd.DataFrame, **form: str) -> str:
    r = client.post("/api/v1/baselines", files={"file": ("v.csv", csv_bytes(base))}, headers=keys("publisher"),
                    data={"type": "ModelQuality", "label": "label", **form})
    assert r.status_code == 201, r.text
    return analyse(client, keys, r.json()["id"], cur)


def test_model_quality_report_compares_metrics_and_draws_curves(client, keys, tmp_path):
    from tests.browser import render

    aid = quality_analysis(client, keys, scored(1000, 1, 0.2), scored(800, 2, 0.45),
                           problem_type="BinaryClassification", probability="prob")
    rep = client.get(f"/api/v1/analyses/{aid}/report", params={"format": "json"}, headers=keys("viewer")).json()
    assert rep["status"] == "CompletedWithViolations" and rep["kind"] == "ModelQuality"
    base = rep["baseline_statistics"]["binary_classification_metrics"]
    cur = rep["statistics"]["binary_classification_metrics"]
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    assert "<h1>Model-quality analysis</h1>" in html and "Data-quality" not in html
    row = html[html.index('<tr data-metric="auc">'):]
    row = row[:row.index("</tr>")]
    assert f"{base['auc']['value']:.4g}" in row and f"{cur['auc']['value']:.4g}" in row and "breached" in row
    threshold = rep["constraints"]["binary_classification_constraints"]["auc"]["threshold"]
    assert f"≥ {threshold:.4g}" in row
    assert html.count('class="confusion"') == 2              # this window and the baseline
    tn, fp = cur["confusion_matrix"]["value"]["0"]["0"], cur["confusion_matrix"]["value"]["0"]["1"]
    assert f"<td>{tn}</td><td>{fp}</td>" in html
    dom, shot = render(html, tmp_path)
    assert 'id="roc"' in dom and 'id="pr"' in dom
    lines = re.findall(r'<polyline class="(\w+)" points="([^"]+)"', dom)
    assert {cls for cls, _ in lines} == {"base", "cur", "ref"} and len(lines) == 5   # ROC: 3 lines, PR: 2
    for _, points in lines:
        xy = np.array([[float(v) for v in p.split(",")] for p in points.split()])
        assert len(xy) <= report.MAX_CURVE_POINTS and xy.min() >= 0 and xy.max() <= report.PLOT + 2 * report.PLOT_PAD
    assert shot.stat().st_size > 5000


def test_model_quality_report_of_a_multiclass_model(client, keys):
    rng = np.random.default_rng(3)
    labels = rng.choice(["cat", "dog", "<b>fox</b>"], 600)
    val = pd.DataFrame({"label": labels, "prediction": np.where(rng.random(600) < 0.9, labels, "cat")})
    worse = val.assign(prediction=np.where(rng.random(600) < 0.5, labels, "dog"))
    aid = quality_analysis(client, keys, val, worse, problem_type="MulticlassClassification",
                           prediction="prediction")
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    assert "<th>&lt;b&gt;fox&lt;/b&gt;</th>" in html and "<b>fox" not in html
    assert '<tr data-metric="weighted_f1">' in html and "breached" in html
    assert 'id="roc"' not in html        # no scores, no curves


def test_features_too_few_to_judge_read_not_judged_with_their_note(client, keys):
    """A one-row window: every feature's drift is withheld (small_sample). The table says "not judged" and why,
    never "ok"."""
    bid = make_baseline(client, keys)
    aid = analyse(client, keys, bid, frame(1, seed=3))
    rep = client.get(f"/api/v1/analyses/{aid}/report", params={"format": "json"}, headers=keys("viewer")).json()
    notes = {d["feature"]: d["note"] for d in rep["drift"]["features"]}
    assert all(d["small_sample"] for d in rep["drift"]["features"])
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    table = html[html.index('<table id="drift">'):]
    table = table[:table.index("</table>")]
    for name, note in notes.items():
        row = table[table.index(f'<tr data-feature="{name}">'):]
        row = unescape(row[:row.index("</tr>")])
        assert ">ok<" not in row and ">not judged<" in row and note in row, row


def test_a_long_category_is_cut_with_an_ellipsis_and_named_whole_in_its_tooltip():
    """Category labels under the bars were cut at 6 characters without a mark ("month-to-month" read "month-")."""
    chart = report._bars_chart(["month-to-month", "abc"], ["month-to-month", "abc"],
                               [report.Series("base", "baseline", [0.7, 0.3])])
    assert [(m.text, m.full) for m in chart.labels] == [("month…", "month-to-month"), ("abc", "abc")]


def test_reports_are_laid_out_for_the_device_width(client, keys):
    """Without a viewport a phone lays a report out 980 px wide and shrinks it. The monitoring report is checked as
    served; the compliance and Clarify reports' own heads are read (both include the same stylesheet)."""
    from pathlib import Path

    viewport = '<meta name="viewport" content="width=device-width, initial-scale=1">'
    bid = make_baseline(client, keys)
    aid = analyse(client, keys, bid, frame(500, shift=0.0, seed=2))
    html = client.get(f"/api/v1/analyses/{aid}/report", headers=keys("viewer")).text
    assert viewport in html and "@media (max-width: 40rem)" in html
    root = Path(report.__file__).parents[1]
    for head in ("registry/templates/report.html", "clarify/templates/report.html"):
        text = (root / head).read_text()
        assert viewport in text and '{% include "report.css" %}' in text, head


def test_a_run_keeps_the_constraints_it_was_judged_against(client, keys, app, db):
    """After an edit of a ModelQuality baseline's constraints, an earlier run's report and trend points showed the
    new threshold beside the old verdict (an AUC "met" under a threshold it had breached). Each run now keeps the
    constraints it read; a run from before that shows the baseline's current ones and says so."""
    from monitor import kinds, service

    pub = keys("publisher")
    r = client.post("/api/v1/baselines", files={"file": ("v.csv", csv_bytes(scored(1000, 1, 0.2)))}, headers=pub,
                    data={"type": "ModelQuality", "label": "label", "problem_type": "BinaryClassification",
                          "probability": "prob"})
    bid = r.json()["id"]
    before = analyse(client, keys, bid, scored(800, 2, 0.45))
    cons = client.get(f"/api/v1/baselines/{bid}/constraints.json", headers=pub).json()
    old = cons["binary_classification_constraints"]["auc"]["threshold"]
    cons["binary_classification_constraints"]["auc"]["threshold"] = 0.2     # loosened: the AUC now passes
    assert client.put(f"/api/v1/baselines/{bid}/constraints.json", content=json.dumps(cons),
                      headers=pub).status_code == 200
    after = analyse(client, keys, bid, scored(800, 2, 0.45))

    def report(aid: str) -> tuple[dict, str]:
        rep = client.get(f"/api/v1/analyses/{aid}/report", params={"format": "json"}, headers=pub).json()
        html = client.get(f"/api/v1/analyses/{aid}/report", headers=pub).text
        row = html[html.index('<tr data-metric="auc">'):]
        return rep, unescape(row[:row.index("</tr>")])

    (rep, row), (rep2, row2) = report(before), report(after)
    assert rep["constraints"]["binary_classification_constraints"]["auc"]["threshold"] == old
    assert rep["constraints_of_run"] is True and f"≥ {old:.4g}" in row and "breached" in row
    assert "≥ 0.2" in row2 and "met" in row2 and rep2["constraints"] == cons
    kept = client.get(f"/api/v1/analyses/{before}/constraints.json", headers=keys("viewer"))
    assert kept.status_code == 200 and kept.json() == rep["constraints"]
    # the trend points: each run against its own threshold
    with db.session_scope() as s:
        rows = [service.get_analysis(s, a) for a in (before, after)]
        points = kinds.series(s, app.state.get_store(), rows)
    auc = [next(p for p in run if p.series == "auc") for run in points]
    assert [(p.threshold, p.breached) for p in auc] == [(old, True), (0.2, False)]
    # a run from before runs kept their copy: the baseline's current constraints, said so on the report
    store = app.state.get_store()
    store.delete(f"{rows[0].prefix}/{service.RUN_CONSTRAINTS}")
    rep, row = report(before)
    assert rep["constraints_of_run"] is False and "≥ 0.2" in row
    html = client.get(f"/api/v1/analyses/{before}/report", headers=pub).text
    assert "the baseline&#39;s current constraints" in html or "the baseline's current constraints" in html
