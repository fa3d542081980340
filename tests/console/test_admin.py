"""The admin page in Chromium: keys created with owner and role and revoked, webhooks subscribed (and refused by the
outbound policy), a dead letter redelivered, retraining triggers, approval policies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlgov import events
from tests.console.conftest import Console
from tests.console.helpers import register
from tests.infra import free_port

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def console_settings() -> dict[str, Any]:
    # the receivers below listen on loopback; one attempt turns a failed delivery into a dead letter at once
    return {"outbound_allow": "127.0.0.1", "webhook_max_attempts": 1}


@pytest.fixture
def receiver() -> Iterator[dict[str, Any]]:
    """A real HTTP receiver that answers 500 until told otherwise."""
    state: dict[str, Any] = {"status": 500, "seen": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            state["seen"] += 1
            self.send_response(state["status"])
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _deliver(console: Console) -> int:
    s = console.app.state
    return events.deliver_due(console.db, s.settings, s.outbound, s.secrets)


def test_keys_are_created_with_owner_and_role_and_revoked(console: Console, open_browser: Any) -> None:
    b = open_browser("admin")
    page = b.goto("/console/admin")
    page.on("dialog", lambda d: d.accept())
    page.get_by_label("Name").fill("erin-approver")
    page.get_by_label("Owner").fill("erin")
    page.get_by_label("Role").select_option("approver")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("New API key").input_value()
    assert key.startswith("mlgov_")
    b.check_csp()
    b.shot("admin")
    row = page.locator("tr", has=page.get_by_role("rowheader", name="erin-approver"))
    assert "approver" in row.inner_text() and "erin" in row.inner_text() and "root" in row.inner_text()
    # a refused key comes back as typed, role included, to correct the one field
    page.get_by_label("Name").fill("erin-approver")
    page.get_by_label("Owner").fill("erin's deputy")
    page.get_by_label("Role").select_option("publisher")
    page.get_by_role("button", name="Create key").click()
    assert "already" in page.locator(".flash-error").inner_text()
    assert (page.get_by_label("Name").input_value(), page.get_by_label("Owner").input_value(),
            page.get_by_label("Role").input_value()) == ("erin-approver", "erin's deputy", "publisher")
    page = b.goto("/console/admin")
    erin = open_browser(key=key)
    assert erin.page.get_by_role("heading", name="Approvals").is_visible()
    assert "erin-approver (approver)" in erin.page.locator(".who").inner_text()
    page = b.goto("/console/admin")
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke erin-approver").click()
    assert "key erin-approver is revoked" in page.locator(".flash").inner_text()
    assert "/console/sign-in" in erin.goto("/console/").url
    # a refusal of the service is a message on the page: a duplicate name
    page.get_by_label("Name").fill("erin-approver")
    page.get_by_role("button", name="Create key").click()
    assert "already exists" in page.locator(".flash-error").inner_text()


def test_webhook_dead_letter_is_redelivered(console: Console, open_browser: Any, receiver: dict[str, Any]) -> None:
    b = open_browser("admin")
    page = b.goto("/console/admin")
    page.get_by_label("URL", exact=True).fill("http://169.254.169.254/latest")
    page.get_by_label("Signing secret").first.fill("s" * 20)
    page.get_by_label("Events").fill("version.*")
    page.get_by_label("Description").fill("model registry feed")
    page.get_by_role("button", name="Subscribe").click()
    assert "169.254.169.254" in page.locator(".flash-error").inner_text()   # the outbound policy's refusal
    # the refused form comes back filled (it came back empty), except its secret
    assert page.get_by_label("URL", exact=True).input_value() == "http://169.254.169.254/latest"
    assert (page.get_by_label("Events").input_value(), page.get_by_label("Description").input_value()) == (
        "version.*", "model registry feed")
    assert page.get_by_label("Signing secret").first.input_value() == ""
    page.reload()   # kept once: the page read afresh is empty again
    assert page.get_by_label("URL", exact=True).input_value() == ""
    # a URL with a password or query values is not kept (it would travel in a cookie): typed again
    page.get_by_label("URL", exact=True).fill("http://u:pw@169.254.169.254/x?token=T")
    page.get_by_label("Signing secret").first.fill("s" * 20)
    page.get_by_label("Events").fill("version.*")
    page.get_by_role("button", name="Subscribe").click()
    assert "169.254.169.254" in page.locator(".flash-error").inner_text()
    assert page.get_by_label("URL", exact=True).input_value() == ""
    assert page.get_by_label("Events").input_value() == "version.*"
    page.get_by_label("URL", exact=True).fill(receiver["url"])
    page.get_by_label("Signing secret").first.fill("s" * 20)
    page.get_by_role("button", name="Subscribe").click()
    assert "subscribed" in page.locator(".flash").inner_text()
    register(console.api("admin"), "hooked", n=1)
    assert _deliver(console) >= 1 and receiver["seen"] >= 1
    page.get_by_role("link", name=receiver["url"]).click()
    assert "dead letter" in page.locator("main").inner_text()
    b.shot("deliveries")
    receiver["status"] = 204
    page.get_by_role("button", name="Redeliver").first.click()
    assert "queued again" in page.locator(".flash").inner_text()
    _deliver(console)
    page.reload()
    assert "delivered" in page.locator("tbody").inner_text()
    b.check_csp()


def test_triggers_and_policies(console: Console, open_browser: Any, receiver: dict[str, Any]) -> None:
    register(console.api("admin"), "governed", n=1)
    b = open_browser("admin")
    page = b.goto("/console/admin")
    page.get_by_label("Model group").fill("governed")   # any group by name (a select stopped at 500 groups)
    page.get_by_label("Pipeline URL").fill(receiver["url"])
    page.get_by_label("Signing secret").last.fill("t" * 20)
    page.get_by_role("button", name="Set trigger").click()
    assert "retraining trigger of governed set" in page.locator(".flash").inner_text()
    b.shot("admin-triggers", full_page=True)
    assert receiver["url"] in page.locator("tr", has=page.get_by_role("rowheader", name="governed")).first.inner_text()
    # removable from its row (it could only be replaced), after a confirmation
    register(console.api("admin"), "retired", n=1)
    page.get_by_label("Model group").fill("retired")
    page.get_by_label("Pipeline URL").fill(receiver["url"])
    page.get_by_label("Signing secret").last.fill("t" * 20)
    page.get_by_role("button", name="Set trigger").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Remove retraining trigger of retired").click()
    page.wait_for_load_state()
    assert "retraining trigger of retired removed" in page.locator(".flash").inner_text()
    triggers = page.locator("table[aria-labelledby=triggers-h]")
    assert triggers.get_by_role("rowheader", name="retired").count() == 0
    assert triggers.get_by_role("rowheader", name="governed").count() == 1
    policy_row = page.locator("tr", has=page.get_by_role("button", name="Save policy of governed"))
    policy_row.get_by_label("requires a passing bias report").check()
    policy_row.get_by_role("button", name="Save policy of governed").click()
    assert "approval policy of governed saved" in page.locator(".flash").inner_text()
    assert console.api("admin").get("/api/v1/model-groups/governed").json()["approval_policy"][
        "require_bias_report"] is True
    # the inbox shows the policy as not met; an approver is not offered Approve (it was, and was then refused),
    # and a forged approval is still refused with the policy's reason
    a = open_browser("approver")
    page = a.goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="governed version 1"))
    assert "not met" in card.inner_text()
    assert card.get_by_role("button", name="Approve").count() == 0
    assert "Approve is closed until the policy is met (no bias report is attached)" in card.inner_text()
    assert card.get_by_role("button", name="Reject").count() == 1
    a.shot("inbox-approve-closed")
    with page.expect_navigation():
        card.locator("form").evaluate("""f => { const b = document.createElement('input'); b.type = 'hidden';
            b.name = 'decision'; b.value = 'Approved'; f.append(b); f.comment.value = 'forged'; f.submit(); }""")
    assert "requires a passing bias report" in page.locator(".flash-error").inner_text()
    card = page.locator("section.card", has=page.get_by_role("link", name="governed version 1"))
    with page.expect_navigation():
        card.locator("form").evaluate("""f => { for (const [n, v] of [['decision', 'Approved'],
            ['override_policy', 'true']]) { const b = document.createElement('input'); b.type = 'hidden'; b.name = n;
            b.value = v; f.append(b); } f.comment.value = 'forged'; f.submit(); }""")
    assert "only admin keys may override the approval policy" in page.locator(".flash-error").inner_text()
    # an admin (not the registrant) approves by overriding, said in the form; without ticking it, refused
    register(console.api("publisher"), "governed", n=2)
    page = b.goto("/console/")
    card = page.locator("section.card", has=page.get_by_role("link", name="governed version 2"))
    card.get_by_label("Comment").fill("accepted without the report: tracked in RISK-12")
    card.get_by_role("button", name="Approve").click()
    assert "requires a passing bias report" in page.locator(".flash-error").inner_text()
    card = page.locator("section.card", has=page.get_by_role("link", name="governed version 2"))
    card.get_by_label("Comment").fill("accepted without the report: tracked in RISK-12")
    card.get_by_label("Approve although the policy is not met").check()
    b.shot("inbox-override")
    card.get_by_role("button", name="Approve").click()
    assert "governed version 2 is now Approved" in page.locator(".flash").inner_text()
    decisions = console.api("admin").get("/api/v1/model-groups/governed/versions/2").json()
    assert decisions["approval_status"] == "Approved"
    # a policy no override waives (the artifact's hash): Approve is closed for the admin too
    r = console.api("admin").patch("/api/v1/model-groups/governed", json={"approval_policy": {
        "require_bias_report": True, "require_artifact_hash": True}})
    assert r.status_code == 200, r.text
    r = console.api("publisher").post("/api/2.0/mlflow/model-versions/create",   # MLflow's door: no hash given
                                      json={"name": "governed", "source": "s3://models/governed/3/model"})
    assert r.status_code == 200 and r.json()["model_version"]["version"] == "3", r.text
    page = b.goto("/console/models/governed/versions/3")
    decide = page.locator("section", has=page.get_by_role("heading", name="Decide"))
    assert decide.get_by_role("button", name="Approve").count() == 0
    assert "requires a verified artifact sha256" in decide.inner_text() and "No override" in decide.inner_text()
    assert decide.get_by_role("button", name="Reject").count() == 1


def test_non_admins_cannot_use_admin_forms(console: Console, open_browser: Any) -> None:
    b = open_browser("approver")
    page = b.goto("/console/admin")
    assert "may not open /console/admin" in page.locator(".flash").inner_text()
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    text = page.evaluate("""async (csrf) => {
        const r = await fetch('/console/admin/keys', {method: 'POST',
            body: new URLSearchParams({csrf_token: csrf, name: 'sneaky', role: 'admin'})});
        return await r.text();
    }""", csrf)
    assert "may not open /console/admin/keys" in text
    assert all(k["name"] != "sneaky" for k in console.api("admin").get("/api/v1/keys").json())


UNLABELLED = """() => [...document.querySelectorAll(
        'main input:not([type=hidden]), main select, main textarea, main button')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML.slice(0, 120))"""


def test_a_key_is_created_by_keyboard_alone_and_every_page_is_labelled_and_fits_a_phone(
        console: Console, open_browser: Any) -> None:
    from tests.console.conftest import PHONE

    register(console.api("admin"), "pocket", n=1, training_data=["s3://data/pocket/train.csv"])
    b = open_browser("admin", viewport=PHONE)
    page = b.goto("/console/admin")
    # from the top of the page, Tab reaches the create-key form; type, pick the role with the arrow keys, Enter
    page.locator("body").focus()
    for _ in range(200):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "key-name":
            break
    else:
        raise AssertionError("Tab never reached the key's Name field")
    page.keyboard.type("kbd-approver")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "key-owner"
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "key-role"
    page.select_option("#key-role", "approver")   # (the select's own arrow keys are the browser's)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Create key"
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.get_by_label("New API key").input_value().startswith("mlgov_")
    row = page.locator("tr", has=page.get_by_role("rowheader", name="kbd-approver"))
    assert "approver" in row.inner_text() and "kim" in row.inner_text()
    b.shot("admin-390")
    for path in ("/console/", "/console/models", "/console/models/pocket", "/console/models/pocket/versions/1",
                 "/console/monitoring", "/console/alerts", "/console/audit", "/console/audit/report?group=pocket",
                 "/console/admin"):
        page = b.goto(path)
        assert page.evaluate(UNLABELLED) == [], path                      # every control has a name
        assert page.locator("h1").count() == 1, path                      # one heading per page
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)                     # no sideways scrolling at 390 px
        if path.endswith("/versions/1"):
            b.shot("version-390", full_page=True)
