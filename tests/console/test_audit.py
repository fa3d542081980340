"""The audit page in Chromium: filters, the Verify button, the compliance report and its PDF download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import Console
from tests.console.helpers import XSS, approve, register

pytestmark = pytest.mark.live


def test_log_filters_verify_and_compliance_pdf(console: Console, open_browser: Any) -> None:
    register(console.api("admin"), "audited", n=1, description=XSS)
    approve(console.api("approver"), "audited", 1, comment=f"fine {XSS}")
    register(console.api("admin"), "audited", n=2)   # pending: no decision, which read as four-eyes "respected"
    register(console.api("admin"), "other", n=1)
    b = open_browser("viewer")
    page = b.goto("/console/audit")
    page.get_by_label("Model group").fill("audited")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()   # click() returns once the navigation has begun; all_inner_texts() does not wait
    rows = page.locator("table tbody tr")
    subjects = rows.locator("td:nth-child(5)").all_inner_texts()
    assert subjects and all("audited" in s for s in subjects), subjects
    assert any("version.approval_changed" in t for t in rows.locator("td:nth-child(4)").all_inner_texts())
    page.get_by_label("Actor").fill("approver")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert set(page.locator("table tbody tr td:nth-child(3)").all_inner_texts()) == {"approver"}
    page.get_by_role("button", name="Verify").click()
    assert "intact" in page.locator("#verification").inner_text()
    b.check_csp()
    b.shot("audit")

    page.get_by_role("link", name="Compliance report per model group").click()
    page.get_by_label("Model group").fill("audited")   # any group, beyond the 500 the list suggests
    page.get_by_role("button", name="Show report").click()
    four_eyes = page.locator("table tbody tr td:nth-child(5)").all_inner_texts()
    assert four_eyes == ["respected", "no decision in this window"], four_eyes
    # the chain's status arrives after the page, from /console/audit/chain (the walk covers the whole log)
    page.locator("#chain-status .badge").wait_for(timeout=60_000)
    assert "intact" in page.locator("#chain-status").inner_text()
    assert page.locator("script:not([src])").count() == 0
    b.check_csp()
    b.shot("compliance")
    with page.expect_download(timeout=180_000) as got:
        page.get_by_role("link", name="Download PDF").click()
    download = got.value
    name = download.suggested_filename
    assert name.startswith("compliance-audited-") and name.endswith(".pdf")
    body = Path(download.path()).read_bytes()
    assert body.startswith(b"%PDF-") and len(body) > 2000
    with page.expect_download() as got:
        page.get_by_role("link", name="Download HTML").click()
    html = Path(got.value.path()).read_text(encoding="utf-8")
    assert "Compliance report: <span id=\"group\">audited</span>" in html and "<script>alert" not in html


def test_publishers_have_no_audit_pages(console: Console, open_browser: Any) -> None:
    b = open_browser("publisher")
    page = b.goto("/console/")
    assert page.get_by_role("link", name="Audit", exact=True).count() == 0
    page = b.goto("/console/audit")
    assert "may not open /console/audit" in page.locator(".flash").inner_text()
    page = b.goto("/console/audit/report.pdf?group=audited")
    assert "may not open" in page.locator(".flash").inner_text()
