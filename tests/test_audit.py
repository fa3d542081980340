"""Hash-chained audit log: every change recorded with the action; tampering is detected."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from mlgov.audit import AuditEvent
from tests.helpers import approve, assert_problem, create_group, register


def _story(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    register(client, keys("publisher"), "churn", 2)
    approve(client, keys("approver"), "churn", 1)
    client.post("/api/v1/model-groups/churn/versions/1/stage", json={"stage": "Staging"}, headers=keys("approver"))


def test_events_recorded_with_actor_subject_request_id(client, keys):
    _story(client, keys)
    r = client.get("/api/v1/audit/events", params={"subject": "churn/1"}, headers={**keys("viewer")})
    items = r.json()["items"]
    assert [e["action"] for e in items] == ["version.registered", "version.approval_changed", "version.stage_changed"]
    decision = items[1]
    assert decision["actor"] == "test-approver"
    assert decision["before"] == {"approval_status": "PendingManualApproval"}
    assert decision["after"]["approval_status"] == "Approved" and decision["after"]["comment"] == "looks good"
    assert decision["request_id"] and len(decision["hash"]) == 64
    r = client.post("/api/v1/model-groups/churn/versions/2/approval", json={"status": "Rejected", "comment": "no"},
                    headers={**keys("approver"), "X-Request-Id": "req-123"})
    ev = client.get("/api/v1/audit/events", params={"subject": "churn/2", "action": "version.approval_changed"},
                    headers=keys("viewer")).json()["items"]
    assert ev[0]["request_id"] == "req-123" and r.headers["x-request-id"] == "req-123"
    assert client.get("/api/v1/audit/events", params={"action": "version.*", "actor": "test-publisher"},
                      headers=keys("viewer")).json()["total"] == 2
    assert client.get("/api/v1/audit/events", params={"from": "2100-01-01T00:00:00Z"},
                      headers=keys("viewer")).json()["total"] == 0


def test_verify_detects_edit_and_delete(client, keys, db):
    _story(client, keys)
    ok = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert ok["ok"] is True and ok["checked"] >= 6
    with db.session_scope() as s:
        ids = list(s.scalars(select(AuditEvent.id).order_by(AuditEvent.seq)))
        edited, deleted = ids[-5], ids[-2]
        s.execute(update(AuditEvent).where(AuditEvent.id == edited).values(actor="mallory"))
        s.execute(delete(AuditEvent).where(AuditEvent.id == deleted))
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and res["first_bad_id"] == edited
    assert "modified" in res["reason"]
    reasons = {p["id"]: p["reason"] for p in res["problems"]}
    assert ids[-1] in reasons and "deleted" in reasons[ids[-1]]
    assert set(reasons) == {edited, ids[-1]}


def test_verify_detects_forged_rehash(client, keys, db):
    """Recomputing a tampered row's own hash does not help: the next row still points at the old one."""
    from mlgov.audit import compute_hash

    _story(client, keys)
    with db.session_scope() as s:
        ev = s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()[2]
        ev.actor = "mallory"
        ev.hash = compute_hash(ev)
        forged = ev.id
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and "prev_hash" in res["reason"] and res["first_bad_id"] != forged


def test_compliance_report_json_and_html(client, keys):
    _story(client, keys)
    r = client.get("/api/v1/audit/report", params={"model_group": "churn"}, headers=keys("viewer"))
    rep = r.json()
    assert rep["audit_chain"]["ok"] is True
    v1 = next(v for v in rep["versions"] if v["version"] == 1)
    assert v1["registered_by"] == "test-publisher"
    assert v1["decisions"] == [{"from": "PendingManualApproval", "to": "Approved", "by": "test-approver",
                                "at": v1["decisions"][0]["at"], "comment": "looks good"}]
    assert [t["to"] for t in v1["stage_history"]] == ["Development", "Staging"]
    assert v1["four_eyes_ok"] is True
    html = client.get("/api/v1/audit/report", params={"model_group": "churn", "format": "html"},
                      headers=keys("viewer"))
    assert html.headers["content-type"].startswith("text/html")
    assert "Compliance report" in html.text and "test-approver" in html.text and "looks good" in html.text
    empty = client.get("/api/v1/audit/report", params={"model_group": "churn", "to": "2000-01-01T00:00:00Z"},
                       headers=keys("viewer")).json()
    assert empty["versions"] == []
    assert_problem(client.get("/api/v1/audit/report", params={"model_group": "nope"}, headers=keys("viewer")), 404)
    assert_problem(client.get("/api/v1/audit/report", headers=keys("viewer")), 422, "model_group")
    assert_problem(client.get("/api/v1/audit/report", params={"model_group": "churn", "from": "yesterday"},
                              headers=keys("viewer")), 422, "from")
