"""Hash-chained audit log: every change recorded with the action; tampering is detected."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from mlgov import audit
from mlgov.audit import AuditEvent
from tests.helpers import approve, assert_problem, create_group, register, signed_in


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


def test_verify_detects_edit_and_delete(client, keys, db, app):
    _story(client, keys)
    ok = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert ok["ok"] is True and ok["checked"] >= 6
    console = signed_in(app, keys.plain["viewer"])     # the compliance page's chain fragment says the same
    assert "intact" in console.get("/console/audit/chain").text
    early = console.get("/console/audit", params={"since": "0001-01-01T00:00:00+01:00"})   # was a 500
    assert early.status_code == 422 and "outside the years 1-9999" in early.text
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
    fragment = console.get("/console/audit/chain").text
    assert "broken" in fragment and "modified" in fragment and "intact" not in fragment


def test_verify_detects_forged_rehash(client, keys, db, app):
    """Recomputing a tampered row's own hash does not help: without the key the HMAC is wrong; even with the key
    the next row still points at the old hash."""
    from mlgov.audit import compute_hash

    _story(client, keys)
    key = app.state.db.audit_chain.key
    with db.session_scope() as s:
        ev = s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()[2]
        ev.actor = "mallory"
        ev.hash = compute_hash(ev)      # plain SHA-256: what an attacker without the key can compute
        forged = ev.id
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and res["first_bad_id"] == forged and "without the audit key" in res["reason"]
    with db.session_scope() as s:
        ev = s.get(AuditEvent, forged)
        ev.hash = compute_hash(ev, key)  # an insider holding the key
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
                                "at": v1["decisions"][0]["at"], "comment": "looks good", "evidence": [],
                                "attached": []}]
    assert [t["to"] for t in v1["stage_history"]] == ["Development", "Staging"]
    assert v1["four_eyes_ok"] is True
    html = client.get("/api/v1/audit/report", params={"model_group": "churn", "format": "html"},
                      headers=keys("viewer"))
    assert html.headers["content-type"].startswith("text/html")
    assert "Compliance report" in html.text and "test-approver" in html.text and "looks good" in html.text
    # a decision taken today with no bias report is "none attached", not a decision from before 0010
    assert "none attached" in html.text and "before revision 0010" not in html.text
    empty = client.get("/api/v1/audit/report", params={"model_group": "churn", "to": "2000-01-01T00:00:00Z"},
                       headers=keys("viewer")).json()
    assert empty["versions"] == []
    assert_problem(client.get("/api/v1/audit/report", params={"model_group": "nope"}, headers=keys("viewer")), 404)
    assert_problem(client.get("/api/v1/audit/report", headers=keys("viewer")), 422, "model_group")
    assert_problem(client.get("/api/v1/audit/report", params={"model_group": "churn", "from": "yesterday"},
                              headers=keys("viewer")), 422, "from")


# --- keyed chain and checkpoints -------------------------------------------------------------------------

def _checkpoint(client, keys) -> dict:
    r = client.post("/api/v1/audit/checkpoint", headers=keys("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def test_truncating_newest_rows_fails_verify_against_the_checkpoint(client, keys, db):
    _story(client, keys)
    cp = _checkpoint(client, keys)
    assert client.get("/api/v1/audit/verify", headers=keys("viewer")).json()["anchored"] is True
    with db.session_scope() as s:   # the attack: delete the newest rows straight in the database
        newest = list(s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(2)))
        s.execute(delete(AuditEvent).where(AuditEvent.seq.in_(newest)))
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and "truncation" in res["reason"]
    assert res["first_bad_seq"] == cp["seq"] and f"ends at seq {cp['seq'] - 2}" in res["reason"]
    # a new anchor would launder the truncation: refused
    assert_problem(client.post("/api/v1/audit/checkpoint", headers=keys("admin")), 409, "missing", "verify")
    rep = client.get("/api/v1/audit/report", params={"model_group": "churn"}, headers=keys("viewer")).json()
    assert rep["audit_chain"]["ok"] is False


def test_editing_a_row_and_recomputing_the_unkeyed_chain_fails_verify(client, keys, db):
    """The attacker rewrites one event and recomputes every later hash with plain SHA-256 (all he can do
    without the key): each recomputed row fails its HMAC; marking the rows 'legacy' does not help either."""
    from mlgov.audit import compute_hash

    _story(client, keys)
    _checkpoint(client, keys)
    with db.session_scope() as s:
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        rows[3].actor = "mallory"
        prev = rows[2].hash
        for ev in rows[3:]:
            ev.prev_hash = prev
            ev.hash = compute_hash(ev)
            prev = ev.hash
        target = rows[3].id
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and res["first_bad_id"] == target and "content hash" in res["reason"]
    with db.session_scope() as s:   # pretend the rewritten rows predate the keyed chain
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        prev = "0" * 64
        for ev in rows:
            ev.chain, ev.prev_hash = 1, prev
            ev.hash = compute_hash(ev)
            prev = ev.hash
    res = client.get("/api/v1/audit/verify", headers=keys("viewer")).json()
    assert res["ok"] is False and "legacy" in res["reason"]
    assert any("differs from the checkpoint" in p["reason"] for p in res["problems"])


def test_checkpoints_every_n_events_are_signed_and_in_the_store(tmp_path, db, keys):
    import json

    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, audit_checkpoint_every=3), db=db)
    with TestClient(app) as c:
        _story(c, keys)
        store = app.state.get_store()
        names = sorted(k for k in store.list("audit/checkpoints/") if not k.endswith("latest.json"))
        total = c.get("/api/v1/audit/verify", headers=keys("viewer")).json()
        assert total["ok"] is True and total["anchored"] is True
        # one checkpoint per 3 events the app wrote (the fixture's keys were written before the app existed)
        seqs = [int(n.rsplit("/", 1)[1][:20]) for n in names]
        head = total["head_seq"]
        assert len(seqs) >= 2 and seqs == list(range(seqs[0], head + 1, 3)) and seqs[-1] > head - 3
        latest = json.loads(store.get("audit/checkpoints/latest.json"))
        assert latest["seq"] == 3 * (total["head_seq"] // 3) and len(latest["signature"]) == 64
        assert total["checkpoint"]["seq"] == latest["seq"]
        # an older, validly signed checkpoint copied over latest.json (to hide a truncation) is noticed
        oldest = store.get(names[0])
        store.put("audit/checkpoints/latest.json", oldest)
        rolled = c.get("/api/v1/audit/verify", headers=keys("viewer")).json()
        assert rolled["ok"] is False and "rolled back" in rolled["reason"], rolled
        # a forged checkpoint (no key) is refused by verify
        store.put("audit/checkpoints/latest.json", json.dumps({**latest, "seq": 1}).encode())
        bad = c.get("/api/v1/audit/verify", headers=keys("viewer")).json()
        assert bad["ok"] is False and "invalid signature" in bad["reason"]


def test_checkpoint_written_to_s3(seaweed, tmp_path, db, keys):
    import json

    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings
    from tests.infra import S3_KEY, S3_SECRET

    bucket = f"audit{tmp_path.name[-8:].lower().replace('_', '')}"
    seaweed.client().create_bucket(Bucket=bucket)
    app = create_app(make_settings(tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=seaweed.endpoint,
                                   s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET), db=db)
    with TestClient(app) as c:
        _story(c, keys)
        cp = _checkpoint(c, keys)
        body = seaweed.client().get_object(Bucket=bucket, Key="mlgov/audit/checkpoints/latest.json")["Body"].read()
        assert json.loads(body)["head_hash"] == cp["head_hash"]
        assert c.get("/api/v1/audit/verify", headers=keys("viewer")).json()["checkpoint"]["seq"] == cp["seq"]


def test_rows_from_before_the_keyed_chain(tmp_path):
    """Upgrade story: rows written by 0009 (plain SHA-256) stay valid as a prefix once a checkpoint records where
    they end; new rows are keyed and bind the legacy head; a rewritten legacy row is still caught."""
    import datetime as dt
    import hashlib
    import json

    from sqlalchemy import text

    from mlgov import audit
    from mlgov.db import Database
    from mlgov.storage import LocalStore
    from tests.infra import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0009")
    db = Database(url)
    prev = "0" * 64
    with db.write_engine.begin() as conn:
        for seq in (1, 2, 3):
            ts = dt.datetime(2026, 1, 1, 0, 0, seq, tzinfo=dt.UTC)
            content = {"seq": seq, "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": "old", "action": "x.y",
                       "subject_type": "t", "subject_id": str(seq), "before": None, "after": {"n": seq},
                       "request_id": None, "prev_hash": prev}
            h = hashlib.sha256(audit.canonical(content).encode()).hexdigest()
            conn.execute(text("INSERT INTO audit_events (seq, ts, actor, action, subject_type, subject_id, before, "
                              "after, request_id, prev_hash, hash) VALUES (:seq, :ts, 'old', 'x.y', 't', :sid, "
                              "NULL, :after, NULL, :prev, :h)"),
                         {"seq": seq, "ts": ts.replace(tzinfo=None), "sid": str(seq), "after": json.dumps({"n": seq}),
                          "prev": prev, "h": h})
            prev = h
    db.dispose()
    upgrade(url)
    db = Database(url)
    db.audit_chain = audit.AuditChain(key=b"k" * 32, store=LocalStore(tmp_path / "store"))
    with db.session_scope() as s:
        res = audit.verify(s)
        assert res["ok"] is False and "legacy boundary" in res["reason"] and "checkpoint" in res["problems"][0]["fix"]
        assert audit.write_checkpoint(s)["legacy_until"] == 3
    with db.session_scope() as s:
        audit.record(s, actor="new", action="x.z", subject_type="t", subject_id="4")
    with db.session_scope() as s:
        res = audit.verify(s)
        assert res["ok"] is True and res["legacy_events"] == 3 and res["head_seq"] == 4
    with db.write_engine.begin() as conn:   # rewrite a legacy row and recompute its plain hash: row 4's HMAC binds it
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
    with db.session_scope() as s:
        ev = s.scalar(select(AuditEvent).where(AuditEvent.seq == 3))
        ev.hash = audit.compute_hash(ev)
    with db.session_scope() as s:
        res = audit.verify(s)
        assert res["ok"] is False and res["first_bad_seq"] == 4 and "prev_hash" in res["reason"]
    db.dispose()


def test_a_process_with_another_audit_key_writes_nothing(live_db, tmp_path):
    """An operator's trial: a server started without MLGOV_AUDIT_KEY beside the others made a key of its own, and
    its first event broke the chain for good. A process whose key did not sign the newest event now refuses to
    write (every later event would read as tampering); MLGOV_AUDIT_ACCEPT_NEW_KEY is the way on after a loss."""
    from mlgov.settings import Settings

    ours = audit.AuditChain(key=b"a" * 32)
    live_db.audit_chain = ours
    with live_db.session_scope() as s:
        audit.record(s, actor="a", action="x.one", subject_type="t", subject_id="1")
    stray = Settings(home=tmp_path / "elsewhere", audit_key=None)   # no MLGOV_AUDIT_KEY: the home's key file
    live_db.audit_chain = audit.chain_for(stray, None)   # a fresh home makes a new random key, as the server did
    assert (tmp_path / "elsewhere" / "audit.key").exists()
    with pytest.raises(audit.WrongAuditKey, match="does not verify with this process's audit key") as exc, \
            live_db.session_scope() as s:
        audit.record(s, actor="b", action="x.two", subject_type="t", subject_id="2")
    assert "MLGOV_AUDIT_KEY" in (exc.value.fix or "")
    live_db.audit_chain = ours
    with live_db.session_scope() as s:
        assert audit.verify(s)["ok"] is True and audit.verify(s)["head_seq"] == 1
        audit.record(s, actor="a", action="x.three", subject_type="t", subject_id="3")   # the right key carries on
    # after a real loss, the operator says so: the event is written and verify shows where the chain broke
    live_db.audit_chain = audit.AuditChain(key=b"n" * 32, accept_new_key=True)
    with live_db.session_scope() as s:
        audit.record(s, actor="c", action="x.four", subject_type="t", subject_id="4")
    live_db.audit_chain = ours
    with live_db.session_scope() as s:
        res = audit.verify(s)
    assert res["ok"] is False and res["first_bad_seq"] == 3


def test_console_audit_log_shows_what_a_change_replaced(app, client, keys):
    """A console trial: the audit log's Change column showed only the event's `after`, cut at 300 characters
    mid-JSON, so an approval overturned by a rejection read like any rejection. It now shows the state before
    and after, and the whole change behind a disclosure when it is long."""
    from tests.helpers import approve, create_group, register, signed_in

    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1, description="x" * 400)
    assert approve(client, keys("approver"), "churn", 1).status_code == 200
    assert approve(client, keys("approver2"), "churn", 1, status="Rejected").status_code == 200
    page = signed_in(app, keys.plain["viewer"]).get("/console/audit", params={"group": "churn"}).text
    assert "was</span> <code>{&#34;approval_status&#34;: &#34;Approved&#34;}" in page or \
        'was</span> <code>{"approval_status": "Approved"}' in page, page[page.find("was"):][:300]
    assert "<summary>whole change</summary>" in page and "x" * 400 in page
