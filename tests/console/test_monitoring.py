"""Monitoring and alerts pages in Chromium: a drift breach drawn on its feature's trend chart with the threshold,
a click through to the execution's report, the alert with its violations and its retraining request."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.console.conftest import Console
from tests.console.helpers import XSS, click_node, lineage_graph, register
from tests.monitor.test_api import FEATURES, csv_bytes, frame, record

pytestmark = pytest.mark.live
HOUR = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def console_settings() -> dict[str, Any]:
    return {"outbound_allow": "127.0.0.1"}


@pytest.fixture(scope="module")
def breached(console: Console) -> dict[str, Any]:
    """Four hourly windows on one endpoint: two like the baseline, then two with income shifted by 30."""
    pub, admin = console.api("publisher"), console.api("admin")
    register(pub, "churn", n=1)
    bid = pub.post("/api/v1/baselines", files={"file": ("t.csv", csv_bytes(frame(2000)))}).json()["id"]
    # a trigger whose receiver is not listening: the request is queued (and retried) against a dead port
    assert admin.put("/api/v1/model-groups/churn/retraining-trigger",
                     json={"url": "http://127.0.0.1:9/retrain", "secret": "s" * 32,
                           "cooldown_seconds": 3600}).status_code == 200
    assert pub.post("/api/v1/endpoints", json={"name": "churn-prod", "model_group": "churn", "model_version": 1,
                                               "schema": {"features": FEATURES}}).status_code == 201
    r = pub.post("/api/v1/monitoring-schedules", json={
        "name": "churn-dq", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "hourly",
        "baseline_id": bid, "window": {"start": "-PT1H", "end": "PT0S"}})
    assert r.status_code == 201, r.text
    statuses = []
    for h, shift in enumerate((0.0, 0.0, 30.0, 30.0)):
        start = HOUR + dt.timedelta(hours=h)
        rows = frame(300, shift=shift, seed=h + 1)
        recs = [record(h * 1000 + i, start + dt.timedelta(seconds=i), tuple(rows.iloc[i])) for i in range(300)]
        assert admin.post("/api/v1/endpoints/churn-prod/capture", json=recs).status_code in (200, 201)
        ex = pub.post("/api/v1/monitoring-schedules/churn-dq/run",
                      json={"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat()})
        assert ex.status_code == 201, ex.text
        statuses.append(ex.json()["status"])
    assert statuses == ["Completed", "Completed", "CompletedWithViolations", "CompletedWithViolations"]
    alert = pub.get("/api/v1/alerts", params={"status": "open"}).json()["items"][0]
    return {"alert": alert}


def test_drift_trend_after_a_breach_and_click_through(console: Console, breached: dict[str, Any],
                                                      open_browser: Any) -> None:
    b = open_browser("viewer")
    page = b.goto("/console/monitoring")
    row = page.locator("tr", has=page.get_by_role("link", name="churn-dq"))
    assert "2 violations" in row.inner_text() or "violation" in row.inner_text()
    assert page.locator(".sparkline canvas").count() == 1          # capture volume drawn by uPlot
    b.shot("monitoring")
    page.get_by_role("link", name="churn-dq").click()
    page.wait_for_load_state()
    b.check_csp()
    income = page.locator("section.chart-card", has=page.get_by_role("heading", name="income", exact=False)).first
    assert "threshold" in income.inner_text()
    assert income.locator("canvas").count() >= 1                   # uPlot drew the trend
    # the two shifted hours are drawn again, filled red, and the page says what red means
    spec = json.loads(income.locator("[data-chart]").get_attribute("data-chart") or "{}")
    red = [line for line in spec["series"] if line["label"].endswith("beyond threshold")]
    assert len(red) == 1 and [v is not None for v in red[0]["values"]] == [False, False, True, True], red
    assert "Points filled red were judged beyond the threshold" in page.locator("main").inner_text()
    # the alerting feature's chart comes first
    assert page.locator("section.chart-card h3").first.inner_text().startswith("income")
    b.shot("console-drift")
    # one execution per window, newest first; its report opens from the timeline
    assert page.locator("#executions ~ .table-wrap tbody tr, table[aria-labelledby=executions] tbody tr").count() == 4
    # each window with its year (it read "11-20 13:00 – 11-20 14:00")
    newest = page.locator("table[aria-labelledby=executions] tbody tr").first.inner_text()
    assert "2026-11-20 13:00 – 2026-11-20 14:00" in newest, newest
    with page.expect_navigation():
        page.locator("table[aria-labelledby=executions] tbody tr").first.get_by_role("link", name="report").click()
    assert "income" in page.content() and "baseline_drift_check" in page.content()
    b.check_csp()
    # the report is headed by the way back: the console, Monitoring and the schedule whose run it is
    trail = page.get_by_role("navigation", name="Breadcrumb")
    assert trail.get_by_role("link").all_inner_texts() == ["Console", "Monitoring", "Schedule churn-dq"]
    # inside the console's layout (it was the API's standalone document: no navigation, no sign-out)
    main_nav = page.get_by_role("navigation", name="Main")
    assert main_nav.get_by_role("link", name="Monitoring").get_attribute("aria-current") == "page"
    assert page.get_by_role("button", name="Sign out").count() == 1
    assert page.locator("style").count() == 0 and page.locator("main .report h1").inner_text() == (
        "Data-quality and drift analysis")
    swatch = page.locator("main .report .legend span.cur").evaluate("e => getComputedStyle(e).backgroundColor")
    assert swatch == "rgb(252, 141, 98)", swatch                  # the report's own stylesheet, scoped to it
    b.shot("console-analysis")
    report_url = page.url
    with page.expect_navigation():
        trail.get_by_role("link", name="Schedule churn-dq").click()
    assert page.url.endswith("/console/monitoring/schedules/churn-dq")
    # a schedule that did not make this run is not named: the trail then stops at Monitoring
    page = b.goto("/console" + report_url.split("/console", 1)[1].replace("schedule=churn-dq", "schedule=churn-other"))
    assert page.get_by_role("navigation", name="Breadcrumb").get_by_role("link").all_inner_texts() == [
        "Console", "Monitoring"]
    # the newest point sat on the plot's right edge, where a click found no point: there is a margin now, and a
    # click on it opens the newest run's report
    page = b.goto("/console/monitoring/schedules/churn-dq")
    chart = page.locator("section.chart-card", has=page.get_by_role("heading", name="income", exact=False)).first
    chart.scroll_into_view_if_needed()
    at = chart.locator(".chart").evaluate("""e => { const u = e.__plot, i = u.data[0].length - 1,
        r = u.over.getBoundingClientRect(), s = u.data.findIndex((d, k) => k > 0 && d[i] != null);
        return {x: r.left + u.valToPos(u.data[0][i], 'x'), y: r.top + u.valToPos(u.data[s][i], 'y'),
                right: r.left + r.width, max: u.scales.x.max, last: u.data[0][i]}; }""")
    assert at["max"] > at["last"] and at["right"] - at["x"] > 4, at
    page.mouse.move(at["x"], at["y"])
    with page.expect_navigation():
        page.mouse.click(at["x"], at["y"])
    assert "/console/monitoring/analyses/" in page.url and "13:00" in page.content()
    # filter the charts by name
    page = b.goto("/console/monitoring/schedules/churn-dq?chart=age")
    names = page.locator("section.chart-card h3").all_inner_texts()
    assert names and all("age" in n for n in names)


def test_alert_page_shows_violations_and_retraining_request(console: Console, breached: dict[str, Any],
                                                            open_browser: Any) -> None:
    alert = breached["alert"]
    b = open_browser("viewer")
    page = b.goto("/console/alerts")
    assert page.locator("table tbody tr").count() == 1
    page.locator("table tbody tr a").first.click()
    page.wait_for_load_state()
    b.check_csp()
    text = page.locator("main").inner_text()
    assert "baseline_drift_check" in text and "income" in text
    assert "Requested" in text                                   # the retraining request and its delivery
    assert page.get_by_role("button", name="Redeliver").count() == 0   # nothing dead yet, and a viewer anyway
    assert page.get_by_role("button", name="Resolve").count() == 0     # a viewer cannot close it
    b.shot("alert")
    page = b.goto("/console/alerts?status=resolved")
    assert "No resolved alerts" in page.locator("main").inner_text()
    page = b.goto("/console/alerts?status=bogus")
    assert "is not open, resolved or all" in page.locator("main").inner_text()
    page = b.goto(f"/console/alerts/{alert['id'][:-1]}x")
    assert "not found" in page.locator("main").inner_text()


def test_lineage_graph_leads_from_the_version_to_its_alert(console: Console, breached: dict[str, Any],
                                                           open_browser: Any) -> None:
    """Downstream of the version: its deployment, endpoint, the monitor watching it and the alerts it raised; a
    click on an alert (after zooming and panning) opens the alert's page."""
    b = open_browser("viewer")
    page = b.goto("/console/models/churn/versions/1")
    # the version's alerts say what breached: two alerts of one check read the same ("baseline_drift_check on
    # churn-prod") before
    alerts = page.locator("h2:text-is('Alerts') + ul li").all_inner_texts()
    assert alerts and all(a.startswith("baseline_drift_check on income · endpoint churn-prod") for a in alerts), alerts
    graph = lineage_graph(page, drag=(-120, -60))
    kinds = {n["cls"] for n in graph["nodes"]}
    assert {"endpoint", "monitor", "alert"} <= kinds, graph["nodes"]
    assert any(n["label"].startswith("MonitoringSchedule") and "churn-dq" in n["label"] for n in graph["nodes"])
    # the schedule and the alerts it raised were one column (both two steps from the endpoint), their edges running
    # down it through the labels between: each alert now stands right of its schedule, and an edge that skips a
    # column, or stays in one, bends round what lies between its ends
    x = {n["label"].split("\n")[0]: n["x"] for n in graph["nodes"]}
    assert x["Endpoint"] < x["MonitoringSchedule"] < x["Alert"], x
    edges = page.evaluate("""() => document.getElementById('lineage').__cy.edges().map(e => ({
        span: Math.round(Math.abs(e.target().position().x - e.source().position().x) / 240),
        bent: e.style('curve-style') === 'unbundled-bezier'}))""")
    assert edges and all(e["bent"] == (e["span"] != 1) for e in edges), edges
    assert any(e["bent"] for e in edges)          # the endpoint's own edge to each alert
    b.shot("lineage-downstream")
    alert = next(n for n in graph["nodes"] if n["cls"] == "alert" and n["href"].endswith(breached["alert"]["id"]))
    click_node(page, graph, alert)
    b.check_csp()
    text = page.locator("main").inner_text()
    assert "baseline_drift_check" in text and "income" in text


def test_hostile_names_are_escaped_and_phone_width(console: Console, breached: dict[str, Any],
                                                   open_browser: Any) -> None:
    from tests.console.conftest import PHONE

    pub = console.api("publisher")
    r = pub.post("/api/v1/endpoints", json={"name": "xss-ep", "model_group": "churn", "model_version": 1,
                                            "schema": {"features": [{"name": XSS[:60], "type": "String"}]}})
    assert r.status_code in (201, 422), r.text
    b = open_browser("viewer", viewport=PHONE)
    page = b.goto("/console/monitoring")
    assert page.locator("script:not([src])").count() == 0
    b.check_csp()
    page = b.goto("/console/monitoring/schedules/churn-dq")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, width                                  # no sideways scrolling at 390 px
    b.shot("monitoring-phone")
    # an execution's report too: it was laid out 980 px wide (no viewport) and its tables widened the page to 721 px;
    # a wide table now scrolls by itself
    page.locator("table[aria-labelledby=executions] tbody tr").first.get_by_role("link", name="report").click()
    page.wait_for_load_state()
    assert "baseline_drift_check" in page.content()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, width
    wide = page.locator("table").evaluate_all("ts => ts.map(t => [t.scrollWidth, t.clientWidth])")
    assert any(sw > cw for sw, cw in wide), wide                # some table holds more than fits: it scrolls
    b.check_csp()
    b.shot("analysis-phone")


def test_signed_out_and_forged_redeliver_refused(console: Console, breached: dict[str, Any],
                                                 open_browser: Any) -> None:
    b = open_browser(None)
    page = b.goto("/console/monitoring")
    assert "sign-in" in page.url
    page = b.goto("/console/report.css")                           # the reports' stylesheet too takes a role
    assert "sign-in" in page.url
    b2 = open_browser("viewer")
    path = f"/console/alerts/{breached['alert']['id']}/webhooks/w/deliveries/d/redeliver"
    r = b2.page.request.post(console.url + path, form={"csrf_token": "forged"}, max_redirects=0)
    assert r.status in (303, 403)
    assert "redelivery queued" not in (r.headers.get("set-cookie") or "").lower()


def test_estimated_metric_and_band_share_the_realised_chart() -> None:
    """A ModelQuality metric is one chart: realised (from labels), estimated before labels, the band dashed."""
    from types import SimpleNamespace

    from console.monitoring import _charts
    from monitor.kinds import Point

    def run(hour: int, points: list[Point]) -> tuple[SimpleNamespace, list[Point]]:
        return SimpleNamespace(window_start=HOUR + dt.timedelta(hours=hour), analysis_id=f"a{hour}"), points

    runs = [run(0, [Point("accuracy", 0.9, 0.85, "accuracy")]),
            run(1, [Point("accuracy estimated", 0.8, 0.85, "accuracy"), Point("accuracy band lower", 0.7, None,
                                                                               "accuracy"),
                    Point("accuracy band upper", 0.86, None, "accuracy")]),
            run(2, [Point("age · psi", 0.3, 0.2)])]
    charts = {c["name"]: c for c in _charts("s", runs, "")}
    assert set(charts) == {"accuracy", "age · psi"}
    acc = charts["accuracy"]["spec"]
    assert [s["label"] for s in acc["series"]] == ["accuracy", "accuracy estimated", "accuracy band lower",
                                                   "accuracy band upper"]
    assert acc["series"][0]["values"] == [0.9, None, None] and acc["series"][1]["values"] == [None, 0.8, None]
    assert acc["series"][2]["dash"] is True and acc["lines"] == [{"label": "threshold", "value": 0.85}]
    assert acc["links"] == ["/console/monitoring/analyses/a0?schedule=s", "/console/monitoring/analyses/a1?schedule=s",
                            "/console/monitoring/analyses/a2?schedule=s"]
    # "latest" is the latest run's value: a bias metric infinite in the last runs showed an older finite one
    latest = {c["name"]: c["last"] for c in _charts("s", [run(0, [Point("DCA (sex=f)", -0.36)]),
                                                          run(1, [Point("TE (sex=f)", 0.9)]), run(2, [])], "")}
    assert latest == {"DCA (sex=f)": None, "TE (sex=f)": None}
    assert _charts("s", [run(0, [Point("x", 1.0)]), run(1, [Point("x", 2.0)])], "")[0]["last"] == 2.0
    # series drawn together with no style of their own (global SHAP per feature) were all the same blue, and the
    # chart's one "latest" was its first series': each now has a colour of its own, and each its latest value
    [shap] = _charts("s", [run(0, [Point("age mean |SHAP|", 2.0, None, "global SHAP"),
                                   Point("income mean |SHAP|", 0.1, None, "global SHAP")]),
                           run(1, [Point("age mean |SHAP|", 0.4, None, "global SHAP"),
                                   Point("income mean |SHAP|", 0.3, None, "global SHAP")])], "")
    colours = [line["color"] for line in shap["spec"]["series"]]
    assert len(set(colours)) == 2 and "#b42318" not in colours    # nor the threshold's red
    assert shap["each"] == [("age mean |SHAP|", 0.4), ("income mean |SHAP|", 0.3)]
    assert charts["accuracy"]["each"] == [] and acc["series"][0]["color"] == "#1f5fbf"   # named for its series
    # a drift statistic of too few values is not judged: its points are hollow dots beside the judged line, and
    # "latest" says so (a value over the threshold in a run that found no drift read as a missed alert)
    [drift] = _charts("s", [run(0, [Point("tenure · wasserstein", 0.02, 0.1, "tenure · wasserstein")]),
                            run(1, [Point("tenure · wasserstein not judged", 0.11, 0.1, "tenure · wasserstein")])], "")
    judged, unjudged = drift["spec"]["series"]
    assert (judged["values"], unjudged["values"]) == ([0.02, None], [None, 0.11]) and unjudged["dots"] is True
    assert drift["last"] == 0.11 and "not judged" in drift["last_note"] and drift["each"] == []
    [never] = _charts("s", [run(0, [Point("age · ks not judged", 0.3, 0.05, "age · ks")])], "")
    assert (never["last"], never["each"]) == (0.3, []) and "not judged" in never["last_note"]
    # a value the run judged beyond its threshold is drawn again, filled red, as its own series (no run breached:
    # no such series); which way is beyond is the kind's (an accuracy below its threshold)
    [acc] = _charts("s", [run(0, [Point("accuracy", 0.9, 0.85, "accuracy")]),
                          run(1, [Point("accuracy", 0.8, 0.85, "accuracy", True)])], "")
    line, beyond = acc["spec"]["series"]
    assert (beyond["label"], beyond["values"], beyond["fill"]) == ("accuracy beyond threshold", [None, 0.8], "#b42318")
    assert line["values"] == [0.9, 0.8] and acc["last"] == 0.8 and acc["each"] == []
    assert len(_charts("s", [run(0, [Point("accuracy", 0.9, 0.85, "accuracy")])], "")[0]["spec"]["series"]) == 1


def test_a_threshold_edited_between_runs_is_drawn_as_each_run_judged() -> None:
    """One dashed line at the latest threshold drew every earlier run against a threshold it never met: a
    threshold that changed between runs is now a step of each run's own (held over a run with no value on the
    chart; a gap at a run judged without one)."""
    from types import SimpleNamespace

    from console.monitoring import _charts
    from monitor.kinds import Point

    def run(hour: int, points: list[Point]) -> tuple[SimpleNamespace, list[Point]]:
        return SimpleNamespace(window_start=HOUR + dt.timedelta(hours=hour), analysis_id=f"a{hour}"), points

    [auc] = _charts("s", [run(0, [Point("auc", 0.7, 0.8, "auc", True)]), run(1, []),
                          run(2, [Point("auc", 0.7, 0.6, "auc")])], "")
    assert auc["spec"]["lines"] == [{"label": "threshold", "values": [0.8, 0.8, 0.6]}] and auc["threshold"] == 0.6
    [some] = _charts("s", [run(0, [Point("auc", 0.7, None, "auc")]), run(1, [Point("auc", 0.7, 0.8, "auc")])], "")
    assert some["spec"]["lines"] == [{"label": "threshold", "values": [None, 0.8]}]
    [same] = _charts("s", [run(0, [Point("auc", 0.7, 0.8, "auc")]), run(1, [Point("auc", 0.9, 0.8, "auc")])], "")
    assert same["spec"]["lines"] == [{"label": "threshold", "value": 0.8}]
    [none] = _charts("s", [run(0, [Point("x", 1.0)])], "")
    assert "lines" not in none["spec"] and none["threshold"] is None


def test_lineage_columns_follow_the_longest_path_and_survive_cycles() -> None:
    """A schedule's alert stands right of the schedule (the endpoint's own edge to it no longer pulls it into the
    schedule's column); a cycle of two user links stays one column apart, where each pass over it moved both."""
    from console.models import _layered, _rows

    def edges(*pairs: tuple[str, str]) -> list[tuple[str, str, str]]:
        return [(a, b, "AssociatedWith") for a, b in pairs]

    assert _layered({"v": 0, "e": 1, "s": 2, "al": 2}, edges(("v", "e"), ("e", "s"), ("s", "al"), ("e", "al"))) == \
        {"v": 0, "e": 1, "s": 2, "al": 3}
    many = {f"c{i}": 1 for i in range(300)}
    out = _layered({"v": 0, "a": 1, "b": 2, **many}, edges(("v", "a"), ("a", "b"), ("b", "a"),
                                                        *[("v", c) for c in many]))
    assert (out["a"], out["b"]) == (1, 2) and set(out.values()) == {0, 1, 2}
    assert _layered({"s": 0, "a": -1, "b": -2}, edges(("a", "s"), ("b", "a"), ("a", "b"))) == \
        {"s": 0, "a": -1, "b": -2}
    # rows: a node sits in order of its neighbours' rows (the alerts of the second schedule below the first's)
    level = {"e": 0, "s1": 1, "s2": 1, "a2": 2, "a1": 2}
    rows = _rows(level, edges(("e", "s1"), ("e", "s2"), ("s1", "a1"), ("s2", "a2")), lambda i: i)
    assert (rows["s1"], rows["s2"], rows["a1"], rows["a2"]) == (0, 1, 0, 1)


def test_points_are_breached_as_each_kind_judges() -> None:
    """Drift: the method's verdict (never for an unjudged feature); model quality: the constraint's operator, for
    the realised and the estimated metric alike; attribution drift: an nDCG below its threshold."""
    from clarify.kinds import _attribution_points, _bias_points
    from monitor.kinds import _drift_points, _quality_points

    drift = _drift_points({"drift": {"features": [
        {"feature": "a", "method": "psi", "statistic": 0.3, "threshold": 0.2, "drifted": True},
        {"feature": "b", "method": "psi", "statistic": 0.1, "threshold": 0.2, "drifted": False},
        {"feature": "c", "method": "psi", "statistic": 0.9, "threshold": 0.2, "drifted": False, "small_sample": True},
        {"feature": "d", "method": "ks", "statistic": 0.01, "threshold": 0.05, "drifted": True}]}})
    assert [(p.series, p.breached) for p in drift] == [("a · psi", True), ("b · psi", False),
                                                       ("c · psi not judged", False), ("d · ks", True)]
    # model quality: as the run's own constraint_violations.json says, not recomputed from today's constraints (an
    # edit recoloured runs already judged) nor for an estimate the run did not judge (all rows labelled)
    run = {
        "statistics": {"binary_classification_metrics": {"accuracy": {"value": 0.7}, "recall": {"value": 0.9},
                                                         "f0_5": {"value": 0.5}}},
        "constraints": {"binary_classification_constraints": {
            "accuracy": {"threshold": 0.8, "comparison_operator": "LessThanThreshold"},
            "recall": {"threshold": 0.95, "comparison_operator": "LessThanThreshold"}}},
        "estimate": {"problem_type": "BinaryClassification",
                     "estimated": {"accuracy": {"estimate": 0.75, "lower": 0.7, "upper": 0.8}}},
        "violations": {"violations": [{"metric_name": "accuracy", "constraint_check_type": "LessThanThreshold"}]}}
    assert {p.series: p.breached for p in _quality_points(run)} == {
        "accuracy": True, "recall": False, "f0_5": False, "accuracy estimated": False, "accuracy band lower": False,
        "accuracy band upper": False}
    run["violations"]["violations"].append(
        {"metric_name": "accuracy", "constraint_check_type": "EstimatedLessThanThreshold"})
    assert [p.series for p in _quality_points(run) if p.breached] == ["accuracy", "accuracy estimated"]
    [ndcg] = _attribution_points({"analysis": {"ndcg": 0.88, "ndcg_threshold": 0.9}})
    assert ndcg.breached
    # bias: the run's constraint_violations.json, drawn between the bounds of the allowed range (parity ± the
    # baseline's distance from it; DI's parity is 1); FT is never judged, so it has none
    def facets(values: dict[str, float]) -> dict:
        return {"post_training_bias_metrics": {"facets": {"sex": [{"value_or_threshold": "f", "metrics": [
            {"name": k, "value": v} for k, v in values.items()]}]}}}

    bias = _bias_points({"analysis": facets({"DPPL": -0.3, "DI": 1.5, "FT": 0.2}),
                         "baseline_analysis": facets({"DPPL": 0.1, "DI": 0.8, "FT": 0.1}),
                         "violations": {"violations": [{"facet": "sex", "facet_value": "f", "metric_name": "DPPL",
                                                        "constraint_check_type": "bias_drift_check"}]}})
    assert [(p.series, p.value, p.breached) for p in bias] == [
        ("DPPL (sex=f)", -0.3, True), ("DPPL (sex=f) allowed low", -0.1, False),
        ("DPPL (sex=f) allowed high", 0.1, False), ("DI (sex=f)", 1.5, False),
        ("DI (sex=f) allowed low", pytest.approx(0.8), False), ("DI (sex=f) allowed high", pytest.approx(1.2), False),
        ("FT (sex=f)", 0.2, False)]
    assert {p.chart for p in bias} == {"DPPL (sex=f)", "DI (sex=f)", "FT (sex=f)"}
    # a metric gone infinite or undefined (stored as null): kept without a value when the run flagged it, so its
    # chart can still mark the breach; left out when it was not flagged
    undefined = _bias_points({"analysis": facets({"DI": None, "AD": None}),
                              "baseline_analysis": facets({"DI": 0.8, "AD": 0.1}),
                              "violations": {"violations": [{"facet": "sex", "facet_value": "f", "metric_name": "DI",
                                                             "constraint_check_type": "bias_drift_check"}]}})
    assert [(p.series, p.value, p.breached) for p in undefined] == [
        ("DI (sex=f)", None, True), ("DI (sex=f) allowed low", pytest.approx(0.8), False),
        ("DI (sex=f) allowed high", pytest.approx(1.2), False)]


def test_a_breach_with_no_finite_value_is_marked_on_the_top_edge() -> None:
    """A bias metric that drifted to infinite had no point at all: nothing on its chart said the run breached. It
    is now a red point of its own series, on a scale whose top it is (charts.js draws ``edge`` series so)."""
    from types import SimpleNamespace

    from clarify.kinds import BIAS_LINE
    from console.monitoring import EDGE, _charts
    from monitor.kinds import Point

    def run(hour: int, points: list[Point]) -> tuple[SimpleNamespace, list[Point]]:
        return SimpleNamespace(window_start=HOUR + dt.timedelta(hours=hour), analysis_id=f"a{hour}"), points

    [di] = _charts("s", [run(0, [Point("DI", 0.9, None, "DI"), Point("DI allowed high", 1.2, None, "DI")]),
                         run(1, [Point("DI", None, None, "DI", True), Point("DI allowed high", 1.2, None, "DI")]),
                         run(2, [Point("DI", None, None, "DI", False)])], "", BIAS_LINE)
    series = {s["label"]: s for s in di["spec"]["series"]}
    assert series["DI"]["values"] == [0.9, None, None] and series["DI"]["gaps"]   # not joined under the red point
    assert "gaps" not in series["DI allowed high"]
    edge = series["DI drifted (infinite or undefined)"]
    assert edge["values"] == [None, EDGE, None] and edge["edge"] and edge["fill"] == "#b42318"
    assert "DI drifted" not in series   # no finite breach to draw
    assert di["last"] is None            # the latest run's value, not the older finite one


def daily_schedule_beside_churn_dq(console: Console, name: str) -> Any:
    """A daily DataQuality schedule ``name`` on churn-prod, judged by churn-dq's baseline; the publisher's client."""
    pub = console.api("publisher")
    bid = pub.get("/api/v1/monitoring-schedules/churn-dq").json()["baseline_id"]
    assert pub.post("/api/v1/monitoring-schedules", json={
        "name": name, "endpoint": "churn-prod", "type": "DataQuality", "schedule": "daily",
        "baseline_id": bid, "window": {"start": "-PT1H", "end": "PT0S"}}).status_code == 201
    return pub


def test_a_schedule_with_one_run_draws_its_point_in_a_readable_window_with_the_threshold(
        console: Console, breached: dict[str, Any], open_browser: Any) -> None:
    """A console trial: with one execution the x-axis ran over years (2027-2029) with the point squeezed to the
    edge, and the dashed threshold was not drawn (a line needs two points). One run now sits in the middle of a
    two-hour window and the threshold spans it."""
    pub = daily_schedule_beside_churn_dq(console, "churn-once")
    start = HOUR + dt.timedelta(hours=2)
    assert pub.post("/api/v1/monitoring-schedules/churn-once/run", json={
        "start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat()}).status_code == 201
    b = open_browser("viewer")
    page = b.goto("/console/monitoring/schedules/churn-once")
    chart = page.locator("section.chart-card [data-chart]").first
    chart.locator("canvas").first.wait_for()
    lo, hi, lines = chart.evaluate("el => [el.__plot.scales.x.min, el.__plot.scales.x.max, "
                                   "el.__plot.data.slice(2).map(s => s.filter(v => v !== null).length)]")
    assert hi - lo <= 4 * 3600, (lo, hi)            # hours, not years
    assert lines and all(n == 3 for n in lines[1:]), lines   # the threshold spans the window
    b.shot("console-one-run")


def test_an_alert_is_resolved_by_hand_with_a_reason(console: Console, breached: dict[str, Any],
                                                   open_browser: Any) -> None:
    """A breach handled outside mlgov (retrained, feed mended) stayed open until a run passed, and a stopped
    schedule's never: its owner or an admin now resolves it saying why; others are refused."""
    pub = daily_schedule_beside_churn_dq(console, "churn-dq-hand")
    start = HOUR + dt.timedelta(hours=3)

    def breach() -> None:   # the shifted hour of `breached`, run again
        ran = pub.post("/api/v1/monitoring-schedules/churn-dq-hand/run",
                       json={"start": start.isoformat(), "end": (start + dt.timedelta(hours=1)).isoformat()})
        assert ran.json()["status"] == "CompletedWithViolations", ran.text

    breach()
    [alert] = pub.get("/api/v1/alerts", params={"status": "open", "schedule": "churn-dq-hand"}).json()["items"]
    # the approver is not the schedule's owner: refused with why, and the reason typed is kept
    b = open_browser("approver")
    page = b.goto(f"/console/alerts/{alert['id']}")
    assert page.get_by_role("button", name="Resolve").count() == 0      # approvers do not manage schedules
    r = console.api("approver").post(f"/api/v1/alerts/{alert['id']}/resolve", json={"reason": "mine now"})
    assert r.status_code == 403, r.text
    p = open_browser("publisher")
    page = p.goto(f"/console/alerts/{alert['id']}")
    page.on("dialog", lambda d: d.accept())
    page.get_by_label("Why is it closed?").fill("   ")
    page.get_by_role("button", name="Resolve").click()
    page.wait_for_load_state()
    assert "must not be blank" in page.locator(".flash-error").inner_text()
    page.get_by_label("Why is it closed?").fill("v2 retrained on the shifted income and deployed")
    page.get_by_role("button", name="Resolve").click()
    page.wait_for_load_state()
    assert "Alert resolved." in page.locator(".flash").inner_text()
    assert "resolved" in page.locator("dl.facts").inner_text()
    assert page.get_by_role("button", name="Resolve").count() == 0
    p.check_csp()
    again = pub.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"reason": "twice"})
    assert again.status_code == 409 and "resolved already" in again.json()["detail"], again.text
    events = console.api("admin").get("/api/v1/audit/events", params={"action": "alert.resolved"}).json()["items"]
    [ev] = [e for e in events if e["subject_id"] == alert["id"]]
    assert ev["actor"] == "publisher" and ev["after"]["reason"] == (
        "resolved by publisher: v2 retrained on the shifted income and deployed")
    # a later breach opens a new alert rather than reopening the resolved one
    breach()
    [new] = pub.get("/api/v1/alerts", params={"status": "open", "schedule": "churn-dq-hand"}).json()["items"]
    assert new["id"] != alert["id"]
    # the group's trigger removed: its undelivered requests end as dead letters no one can redeliver, and the
    # alert page says why instead of offering a Redeliver that the deactivated webhook refuses
    from mlgov import events

    assert console.api("admin").delete("/api/v1/model-groups/churn/retraining-trigger").status_code == 204
    s = console.app.state
    events.deliver_due(console.db, s.settings, s.outbound, s.secrets)
    a = open_browser("admin")
    page = a.goto(f"/console/alerts/{breached['alert']['id']}")
    assert "dead letter" in page.locator("main").inner_text() and "trigger removed" in page.locator("main").inner_text()
    assert page.get_by_role("button", name="Redeliver").count() == 0
