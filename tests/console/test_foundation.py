"""Sign-in, sessions, CSRF, roles and the layout, in Chromium against a live server."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from console.web import parse
from mlgov.errors import Invalid
from registry.schemas import ApprovalRequest
from tests.console.conftest import PHONE, Console
from tests.console.helpers import register

pytestmark = pytest.mark.live


def test_root_leads_to_sign_in_and_a_key_signs_in(console: Console, open_browser: Any) -> None:
    b = open_browser()
    page = b.goto("/")
    assert re.search(r"/console/sign-in\?next=", page.url)
    assert page.get_by_role("heading", name="Sign in").is_visible()
    b.shot("sign-in")
    page.get_by_label("API key").fill("mlgov_nope_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "the API key is not valid" in page.locator(".flash").inner_text()
    b.check_csp()
    page.get_by_label("API key").fill(console.keys["viewer"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Approvals", level=1)).to_be_visible()   # waits for the redirect
    assert page.url.endswith("/console/")
    icon = httpx.get(console.url + page.locator("link[rel=icon]").get_attribute("href"), timeout=60)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")   # was /favicon.ico 404
    cookie = next(c for c in b.context.cookies() if c["name"] == "mlgov_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator(".flash")).to_contain_text("you are signed out")
    assert "/console/sign-in" in page.url
    # the old cookie is dead on the server, not only forgotten by this browser
    r = httpx.get(console.url + "/console/", cookies={"mlgov_console": cookie["value"]}, follow_redirects=False,
                  timeout=60)
    assert r.status_code == 303 and "/console/sign-in" in r.headers["location"]


def test_viewer_sees_no_decision_form_and_a_forged_post_is_refused(console: Console, open_browser: Any) -> None:
    v = register(console.api("admin"), "viewer-refused", n=1)
    b = open_browser("viewer")
    page = b.goto("/console/")
    assert page.get_by_role("link", name="viewer-refused version 1").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_role("link", name="Admin").count() == 0
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    # the forged form: right session, right CSRF token, wrong role → refused by the server, shown on the page
    status = page.evaluate("""async ([url, csrf]) => {
        const body = new URLSearchParams({csrf_token: csrf, decision: 'Approved', comment: 'forged'});
        const r = await fetch(url, {method: 'POST', body});
        return [r.status, r.url, await r.text()];
    }""", [f"/console/models/viewer-refused/versions/{v['version']}/decision", csrf])
    assert status[0] == 200 and status[1].endswith("/console/")
    assert "may not open" in status[2]
    assert console.api("viewer").get("/api/v1/model-groups/viewer-refused/versions/1").json()[
        "approval_status"] == "PendingManualApproval"


def test_a_form_without_its_csrf_token_is_refused(console: Console, open_browser: Any) -> None:
    register(console.api("admin"), "csrf-refused", n=1)
    b = open_browser("approver")
    page = b.goto("/console/")
    cookies = {c["name"]: c["value"] for c in b.context.cookies()}
    for token in (None, "not-the-token"):
        data = {"decision": "Approved", "comment": "no token", **({"csrf_token": token} if token else {})}
        r = httpx.post(console.url + "/console/models/csrf-refused/versions/1/decision", data=data, cookies=cookies,
                       follow_redirects=True, timeout=60)
        assert r.status_code == 200 and "CSRF token" in r.text
    assert console.api("viewer").get("/api/v1/model-groups/csrf-refused/versions/1").json()[
        "approval_status"] == "PendingManualApproval"
    page.reload()


def test_revoking_the_key_ends_its_sessions(console: Console, open_browser: Any) -> None:
    key = console.new_key("short-lived", "viewer", "dave")
    b = open_browser(key=key)
    assert b.goto("/console/").url.endswith("/console/")
    r = console.api("admin").delete("/api/v1/keys/short-lived")
    assert r.status_code == 204, r.text
    page = b.goto("/console/")
    assert "/console/sign-in" in page.url
    assert "revoked" in page.locator(".flash").inner_text()


def test_every_page_fits_a_phone(console: Console, open_browser: Any) -> None:
    b = open_browser("admin", viewport=PHONE)
    for path in ("/console/", "/console/sign-in"):
        page = b.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        if path == "/console/":
            b.shot("inbox-390")   # the inbox, not the sign-in page visited last


def test_unknown_console_pages_and_bad_queries_answer_in_html(console: Console, open_browser: Any) -> None:
    b = open_browser("viewer")
    page = b.goto("/console/no-such-page")
    assert "there is no console page" in page.locator(".flash").inner_text()
    page = b.goto("/console/?offset=-1")
    assert "offset" in page.locator(".flash").inner_text()
    # the API keeps answering problem+json
    r = httpx.get(console.url + "/api/v1/nothing", timeout=60)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_refused_form_field_reads_as_the_validator_wrote_it() -> None:
    """A blank approval comment: the console says what the other protocols say, without pydantic's "Value error, "."""
    with pytest.raises(Invalid) as refused:
        parse(ApprovalRequest, status="Approved", comment="   ", expected_status="PendingManualApproval")
    assert "comment: must not be blank" in refused.value.detail and "Value error" not in refused.value.detail


def test_the_flash_cookie_fits_a_browser_and_kept_values_belong_to_their_session() -> None:
    """A refusal with a long URL and description made a 4.1 KB cookie, which Chromium drops without a word: the
    admin saw neither the message nor the form. Kept values only fill the form of the session that typed them."""
    import datetime as dt

    from fastapi.responses import Response

    from console import web
    from console.sessions import Signed
    from mlgov.auth import Principal, Role

    def signed(csrf: str) -> Signed:
        return Signed(Principal(key_pk="k", name="root", role=Role.admin), csrf, "h", dt.datetime.now(dt.UTC))

    me, other = signed("a" * 43), signed("b" * 43)

    def cookie(text: str, keep: dict[str, str] | None) -> dict[str, Any] | None:
        response = Response()
        web._set_flash(response, "error", text, "fix it", keep, me)
        raw = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        assert len(raw) <= web.COOKIE_BYTES
        return web._flash_of(type("R", (), {"cookies": {web.FLASH_COOKIE: raw}})())

    small = cookie("refused", {"url": "https://h/x", "description": "d"})
    assert small is not None and web._kept(small, me) == {"url": "https://h/x", "description": "d"}
    assert web._kept(small, other) == {} and web._kept(small, None) == {}
    big = cookie("refused: " + "x" * 1400, {"url": "https://h/" + "p" * 1300, "description": "d" * 1000})
    assert big is not None and big["text"].startswith("refused: x") and web._kept(big, me) == {}
    wide = cookie("é" * 1500, None)   # 1,500 two-byte characters: cut to fit, not dropped
    assert wide is not None and wide["text"].startswith("éé") and wide["fix"] == "fix it"


def test_only_a_url_without_credentials_query_or_fragment_is_kept_for_a_refused_form() -> None:
    from console.web import keepable_url

    assert keepable_url("https://hooks.example/x") == "https://hooks.example/x"
    for secretive in ("https://TOKEN@hooks.example/x", "http://u:pw@hooks.example/x", "https://h/x?token=T",
                      "https://h/x#sig", "http://[::1"):
        assert keepable_url(secretive) == "", secretive
