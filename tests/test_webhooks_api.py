"""Webhook management API and the outbox: subscriptions, bad input, events queued with the action."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mlgov.events import Delivery, Webhook, matches
from tests.conftest import make_settings
from tests.helpers import assert_problem, create_group, register, signed_in


@pytest.fixture
def settings(tmp_path):
    """Receivers in these tests listen on 127.0.0.1, which the outbound policy refuses unless allowed."""
    return make_settings(tmp_path, outbound_allow="127.0.0.1")


def test_create_list_get_delete(client, keys, db):
    h = keys("admin")
    r = client.post("/api/v1/webhooks", headers=h, json={"url": "http://127.0.0.1:9/x", "secret": "a" * 16,
                                                          "events": ["version.registered"], "description": "ci"})
    assert r.status_code == 201
    wid = r.json()["id"]
    assert "secret" not in r.json()
    with db.session_scope() as s:   # stored encrypted: the database alone does not give the secret away
        stored = s.get(Webhook, wid).secret
        assert stored.startswith("enc:v1:") and "a" * 16 not in stored
    assert [w["id"] for w in client.get("/api/v1/webhooks", headers=h).json()] == [wid]
    assert client.get(f"/api/v1/webhooks/{wid}", headers=h).json()["events"] == ["version.registered"]
    create_group(client, keys("publisher"), "g")
    register(client, keys("publisher"), "g", 1)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1   # only the subscribed type
    ds = client.get(f"/api/v1/webhooks/{wid}/deliveries", headers=h).json()
    assert ds[0]["event_type"] == "version.registered" and ds[0]["status"] == "pending"
    assert client.delete(f"/api/v1/webhooks/{wid}", headers=h).status_code == 204
    with db.session_scope() as s:
        assert s.get(Webhook, wid).active is False
    register(client, keys("publisher"), "g", 2)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1   # inactive hooks get nothing
    # the service itself refuses a second delete (the console's stale page called it directly): audited once
    from mlgov import events
    from mlgov.audit import AuditEvent
    from mlgov.errors import NotFound

    with db.session_scope() as s, pytest.raises(NotFound, match="deleted already"):
        events.delete_webhook(s, wid, actor="admin")
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "webhook.deactivated", AuditEvent.subject_id == wid)) == 1


def test_audit_keeps_no_credentials_of_a_url(client, keys, db):
    """Webhook URLs often are secrets themselves (tokens in the query, user:pass): the audit log is permanent and
    readable by viewers, so it records the URL without them."""
    url = "http://hook-user:hook-pass@127.0.0.1:9/x?token=TOKEN-IN-QUERY"
    r = client.post("/api/v1/webhooks", headers=keys("admin"), json={"url": url, "secret": "a" * 16, "events": ["*"]})
    assert r.status_code == 201, r.text
    create_group(client, keys("admin"), "g")
    trig = client.put("/api/v1/model-groups/g/retraining-trigger", headers=keys("admin"),
                      json={"url": url, "secret": "b" * 16})
    assert trig.status_code == 200, trig.text
    events = client.get("/api/v1/audit/events", headers=keys("viewer")).json()["items"]
    logged = [e["after"]["url"] for e in events if e["action"] in ("webhook.created", "retraining_trigger.set")]
    assert len(logged) >= 2 and all(u == "http://127.0.0.1:9/x" for u in logged), logged
    # an operator's trial: the reads showed them whole (the create answer, GET /webhooks, MLflow's webhooks API,
    # the console's admin page); they show who and which parameters, never the password or the values
    masked = "http://hook-user:***@127.0.0.1:9/x?token=***"
    listed = client.get("/api/v1/webhooks", headers=keys("admin")).json()
    assert r.json()["url"] == masked and {h["url"] for h in listed} == {masked}
    made = client.post("/api/2.0/mlflow/webhooks", headers=keys("admin"), json={
        "name": "ml", "url": url, "secret": "c" * 16, "events": [{"entity": "model_version", "action": "created"}]})
    assert made.status_code == 200 and made.json()["webhook"]["url"] == masked, made.text
    mlflow = client.get("/api/2.0/mlflow/webhooks", headers=keys("admin"))
    assert mlflow.status_code == 200 and {h["url"] for h in mlflow.json()["webhooks"]} == {masked}
    page = signed_in(client.app, keys.plain["admin"]).get("/console/admin").text
    assert "http://hook-user:***@127.0.0.1:9/x?token=***" in page
    for secret in ("hook-pass", "TOKEN-IN-QUERY"):
        assert secret not in r.text + str(listed) + made.text + mlflow.text + page
    # nor does a copy of the database: every column of every subscription (these three and the trigger's), raw
    from sqlalchemy import text

    with db.session_scope() as s:
        rows = [dict(row._mapping) for row in s.execute(text("SELECT * FROM events_webhooks"))]
    assert len(rows) == 3 and all(row["sealed_url"].startswith("enc:v1:") for row in rows)
    assert not [row for row in rows if "hook-pass" in str(row) or "TOKEN-IN-QUERY" in str(row)], rows


def test_bad_webhook_input(client, keys, db):
    h = keys("admin")
    for body, field in [
        ({"url": "ftp://x/y", "secret": "a" * 16, "events": ["*"]}, "http"),
        ({"url": "http://x/y", "secret": "short", "events": ["*"]}, "secret"),
        ({"url": "http://x/y", "secret": "a" * 16, "events": []}, "events"),
        ({"url": "http://x/y", "secret": "a" * 16}, "events"),
        ({"url": "http://x/y", "secret": "a" * 16, "events": "version.*"}, "events"),
        ({"url": "http://x/y", "secret": "a" * 16, "events": ["version.aproved"]}, "'version.aproved'"),
        ({"url": "http://x/y", "secret": "a" * 16, "events": ["version.*", "bogus.*"]}, "would never fire"),
        ({"url": "http://x/y", "secret": "a" * 16, "events": ["version"]}, "version.approval_changed"),
    ]:
        assert_problem(client.post("/api/v1/webhooks", headers=h, json=body), 422, field)
    assert_problem(client.get("/api/v1/webhooks/nope", headers=h), 404, "no webhook")
    assert_problem(client.get("/api/v1/webhooks/nope/deliveries", headers=h), 404)
    assert_problem(client.delete("/api/v1/webhooks/nope", headers=h), 404)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Webhook)) == 0


def test_every_event_mlgov_emits_is_one_a_subscription_may_name():
    """A subscription naming an event outside EVENT_TYPES is refused, so an event emitted under a name missing
    there could never be subscribed to by name: every literal event name the code emits must be listed."""
    import re
    from pathlib import Path

    from mlgov.events import EVENT_TYPES

    root = Path(__file__).resolve().parents[1]
    emitted = set()
    for package in ("mlgov", "registry", "monitor", "clarify", "lineage", "console"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text()
            emitted |= set(re.findall(r"emit(?:_many)?\(\s*\w+,\s*\"([a-z_.]+)\"", text))
            emitted |= set(re.findall(r"\"(version\.alias_(?:set|removed))\"", text))
    assert len(emitted) >= 18 and emitted <= EVENT_TYPES, sorted(emitted - EVENT_TYPES)


def test_event_patterns():
    assert matches(["*"], "version.registered")
    assert matches(["version.*"], "version.stage_changed")
    assert not matches(["version.*"], "model_group.created")
    assert matches(["model_group.created"], "model_group.created")
    assert not matches(["version"], "version.registered")


def test_audit_events_bad_filters(client, keys):
    assert_problem(client.get("/api/v1/audit/events", params={"limit": 0}, headers=keys("viewer")), 422, "limit")
    assert_problem(client.get("/api/v1/audit/events", params={"from": "nope"}, headers=keys("viewer")), 422, "from")


def test_a_retraining_trigger_is_removed_by_an_admin_and_its_deliveries_stay(client, keys, db):
    """A trigger could be set and replaced but never removed: a group retired from retraining kept requesting it."""
    create_group(client, keys("admin"), "g")
    url = "http://u:pw@127.0.0.1:9/retrain?token=T"
    trig = client.put("/api/v1/model-groups/g/retraining-trigger", headers=keys("admin"),
                      json={"url": url, "secret": "b" * 16})
    assert trig.status_code == 200, trig.text
    for role in ("publisher", "approver", "viewer"):
        assert client.delete("/api/v1/model-groups/g/retraining-trigger", headers=keys(role)).status_code == 403
    r = client.delete("/api/v1/model-groups/g/retraining-trigger", headers=keys("admin"))
    assert r.status_code == 204, r.text
    again = client.delete("/api/v1/model-groups/g/retraining-trigger", headers=keys("admin"))
    assert again.status_code == 404 and "has no retraining trigger" in again.json()["detail"]
    assert again.headers["content-type"] == "application/problem+json" and again.json()["fix"]
    assert client.delete("/api/v1/model-groups/nope/retraining-trigger", headers=keys("admin")).status_code == 404
    events = client.get("/api/v1/audit/events", headers=keys("viewer")).json()["items"]
    removed = [e for e in events if e["action"] == "retraining_trigger.deleted"]
    assert len(removed) == 1 and removed[0]["subject_id"] == "g" and removed[0]["before"] == {
        "url": "http://127.0.0.1:9/retrain", "cooldown_seconds": 3600}
    from monitor.orm import RetrainingTrigger

    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RetrainingTrigger)) == 0
        hook = s.get(Webhook, trig.json()["webhook_id"])   # deactivated, kept: its deliveries are history
        assert hook is not None and hook.active is False
    # set again afterwards: a new trigger
    assert client.put("/api/v1/model-groups/g/retraining-trigger", headers=keys("admin"),
                      json={"url": url, "secret": "b" * 16}).status_code == 200
