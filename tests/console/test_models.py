"""Approvals and the model pages in Chromium: approve as an approver, the four-eyes refusal as the registrant, the
lineage graph clicked through to a node, and hostile text escaped on every page without a CSP violation."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.console.conftest import Console
from tests.console.helpers import XSS, approve, click_node, lineage_graph, register

pytestmark = pytest.mark.live


def _no_injected_markup(page: Any) -> None:
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("window.__xss === undefined")


def test_approve_in_the_inbox_and_the_registrants_refusal(console: Console, open_browser: Any) -> None:
    admin = console.api("admin")
    register(admin, "churn", n=1, description=XSS, metrics={"auc": 0.91, "f1": 0.8},
             training_data=["s3://data/churn/train.csv"],
             model_card={"content": {"intended_use": XSS, "limits": ["none", XSS]}, "markdown": XSS})
    b = open_browser("approver")
    page = b.goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="churn version 1"))
    assert XSS in card.inner_text()   # shown as text
    _no_injected_markup(page)
    b.shot("inbox")
    card.get_by_label("Comment").fill(f"looks fine {XSS}")
    card.get_by_role("button", name="Approve").click()
    assert "churn version 1 is now Approved" in page.locator(".flash").inner_text()
    b.check_csp()

    register(admin, "churn", n=2, training_data=["s3://data/churn/train-2.csv"],
             metrics={"auc": 0.93, "f1": 0.79, "false_negative_rate_at_threshold_0_5_on_holdout": 0.1})
    a = open_browser("admin")
    page = a.goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="churn version 2"))
    assert "Approved v1" in card.inner_text() and "0.91" in card.inner_text()   # beside the approved version's
    # the registrant is told why it cannot decide, instead of buttons that would only be refused (a console trial
    # typed a comment, clicked Approve and lost the comment to the refusal)
    assert "Four-eyes: you cannot decide this version" in card.inner_text()
    assert card.get_by_role("button", name="Approve").count() == 0 and card.get_by_label("Comment").count() == 0
    a.check_csp()
    a.shot("inbox-four-eyes-refusal")
    assert admin.get("/api/v1/model-groups/churn/versions/2").json()["approval_status"] == "PendingManualApproval"
    # the approver rejects it from the inbox, with the reason kept in the approval history
    page = b.goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="churn version 2"))
    card.get_by_label("Comment").fill("f1 dropped below the approved version's")
    asked: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))   # a rejection ran at once: it asks first, and No keeps it
    card.get_by_role("button", name="Reject").click()
    assert admin.get("/api/v1/model-groups/churn/versions/2").json()["approval_status"] == "PendingManualApproval"
    page.once("dialog", lambda d: answer(d, True))
    card.get_by_role("button", name="Reject").click()
    assert "churn version 2 is now Rejected" in page.locator(".flash").inner_text()
    assert asked == ["Reject churn version 2? The decision is recorded in the audit log; approving it later takes a "
                     "new decision."] * 2
    assert page.get_by_role("link", name="churn version 2").count() == 0   # no longer waiting
    b.check_csp()
    v2 = admin.get("/api/v1/model-groups/churn/versions/2").json()
    assert v2["approval_status"] == "Rejected"
    page = b.goto("/console/models/churn/versions/2")
    assert "f1 dropped below the approved version's" in page.locator("main").inner_text()


def test_a_candidate_is_compared_with_the_version_in_production(console: Console, open_browser: Any) -> None:
    """The inbox compared a pending version with the newest Approved one, a candidate that never served (v2 here),
    where an approver asks how it does against what is in Production."""
    admin, approver = console.api("admin"), console.api("approver")
    for n, auc in ((1, 0.81), (2, 0.83), (3, 0.85)):
        register(admin, "serving", n=n, metrics={"auc": auc})
    approve(approver, "serving", 1)
    for stage in ("Staging", "Production"):
        r = approver.post("/api/v1/model-groups/serving/versions/1/stage", json={"stage": stage})
        assert r.status_code == 200, r.text
    approve(approver, "serving", 2)   # approved, still in Development
    page = open_browser("approver").goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="serving version 3"))
    assert "Approved v1 · Production" in card.inner_text() and "0.81" in card.inner_text()


def test_an_approver_moves_a_version_into_production_from_its_page(console: Console, open_browser: Any) -> None:
    register(console.api("publisher"), "stage-moves", n=1)
    b = open_browser("approver")
    page = b.goto("/console/models/stage-moves/versions/1")
    move = page.locator("section.card", has=page.get_by_role("heading", name="Move stage"))
    assert "Not to Production" not in move.inner_text()   # Development leads to Staging and Archived only
    move.get_by_label("From Development to").select_option("Staging")
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    move.get_by_role("button", name="Move version 1").click()
    assert "stage-moves version 1 is now in Staging" in page.locator(".flash").inner_text()
    move = page.locator("section.card", has=page.get_by_role("heading", name="Move stage"))
    assert "Not to Production: stage Production accepts only Approved versions" in move.inner_text()
    approve(console.api("approver"), "stage-moves", 1)
    page = b.goto("/console/models/stage-moves/versions/1")
    move = page.locator("section.card", has=page.get_by_role("heading", name="Move stage"))
    move.get_by_label("From Staging to").select_option("Production")
    move.get_by_label("Comment").fill("approved and shadow-tested")
    b.shot("version-stage-move")
    move.get_by_role("button", name="Move version 1").click()
    assert "stage-moves version 1 is now in Production" in page.locator(".flash").inner_text()
    # a move asks first, saying that Production holds one version (its previous one was archived unannounced)
    assert asked and all("Production holds one version: moving this one there moves the one there now to Archived."
                         in m for m in asked)
    history = page.locator("table", has=page.get_by_role("columnheader", name="By")).inner_text()
    assert "approved and shadow-tested" in history and "Production" in history
    b.check_csp()


def test_version_page_lineage_graph_zooms_pans_and_click_opens_the_node(console: Console, open_browser: Any) -> None:
    admin = console.api("admin")
    register(admin, "fraud", n=1, description=XSS, training_data=["s3://data/fraud/train.csv"],
             model_card={"content": {"owner": "risk team", "caveats": XSS}})
    r = console.api("approver").post("/api/v1/model-groups/fraud/versions/1/approval",
                                     json={"status": "Approved", "comment": "validated on the holdout"})
    assert r.status_code == 200, r.text
    b = open_browser("viewer")
    page = b.goto("/console/models/fraud/versions/1")
    assert page.get_by_role("heading", name="fraud version 1").is_visible()
    assert XSS in page.locator("main").inner_text()
    _no_injected_markup(page)
    b.shot("version")
    graph = lineage_graph(page)
    b.shot("lineage")
    click_node(page, graph, next(n for n in graph["nodes"] if "train.csv" in n["label"]))
    assert page.get_by_role("heading", level=1).inner_text().startswith("Dataset")
    assert "s3://data/fraud/train.csv" in page.locator("main").inner_text()
    b.check_csp()
    b.shot("lineage-node")


def test_group_page_filters_sorts_and_pages(console: Console, open_browser: Any) -> None:
    admin = console.api("admin")
    for n in range(1, 56):
        register(admin, "ranker", n=n, description=f"v{n}")
    b = open_browser("viewer")
    page = b.goto("/console/models/ranker")
    rows = page.locator("table:has(caption) tbody tr")
    assert rows.count() == 50 and rows.first.locator("th").inner_text() == "55"
    assert "1–50 of 55 versions" in page.content()
    page.get_by_role("link", name="Next").click()
    # click() returns once the navigation has begun; count() does not wait for the new page's rows
    expect(page.locator("table:has(caption) tbody tr")).to_have_count(5)
    page = b.goto("/console/models/ranker")
    page.get_by_label("Order").select_option("version")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    assert page.locator("table:has(caption) tbody tr").first.locator("th").inner_text() == "1"
    page.get_by_label("Approval status").select_option("Approved")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    assert "No versions match." in page.locator("main").inner_text()
    b.shot("group")
    gone = admin.request("DELETE", "/api/2.0/mlflow/model-versions/delete", json={"name": "ranker", "version": "55"})
    assert gone.status_code == 200, gone.text
    page = b.goto("/console/models?q=rank")
    assert page.get_by_role("link", name="ranker").is_visible()
    # the Versions column counts versions (it showed the last number given, 55, after one was deleted)
    assert page.locator("tbody tr", has_text="ranker").locator("td.num").inner_text() == "54"
    page = b.goto("/console/models/no-such-group")
    assert "no-such-group" in page.locator(".flash").inner_text()


def test_hostile_text_is_escaped_on_every_page(console: Console, open_browser: Any) -> None:
    admin = console.api("admin")
    register(admin, "hostile", n=1, description=XSS, model_card={"content": {XSS: XSS}, "markdown": XSS},
             training_data=[f"s3://data/{XSS}.csv"])
    register(admin, "hostile", n=2, description=XSS)
    r = console.api("approver").post("/api/v1/model-groups/hostile/versions/1/approval",
                                     json={"status": "Approved", "comment": XSS})
    assert r.status_code == 200, r.text
    b = open_browser("admin")
    b.page.add_init_script("window.alert = () => { window.__xss = true; };")
    for path in ("/console/", "/console/models", "/console/models/hostile", "/console/models/hostile/versions/1",
                 "/console/models/hostile/versions/2", "/console/audit", "/console/audit?group=hostile",
                 "/console/audit/report?group=hostile", "/console/admin"):
        page = b.goto(path)
        _no_injected_markup(page)
        shown = page.locator("main").inner_text()   # as text (inside JSON on the audit page, so its quotes escaped)
        assert "<script>alert(1)</script>" in shown or path in ("/console/", "/console/models", "/console/admin"), path
