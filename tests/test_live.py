"""Real server, real sockets: concurrent decisions and registrations, and webhook delivery through an outage."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mlgov import auth
from mlgov.app import create_app
from mlgov.audit import AuditEvent
from mlgov.db import Database
from tests.conftest import make_settings
from tests.helpers import version_body
from tests.infra import LiveServer, free_port

pytestmark = pytest.mark.live



def _keys(db: Database) -> dict[str, dict[str, str]]:
    out = {}
    with db.session_scope() as s:
        for name, role in [("admin", "admin"), ("pub", "publisher"), ("appr", "approver"), ("appr2", "approver")]:
            out[name] = {"Authorization": f"Bearer {auth.create_key(s, name, role, actor='test')[1]}"}
    return out


def test_fifty_concurrent_decisions_one_wins(live_db, tmp_path):
    keys = _keys(live_db)
    app = create_app(make_settings(tmp_path), db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"]).status_code == 201
        assert c.post("/api/v1/model-groups/g/versions", json=version_body(1), headers=keys["pub"]).status_code == 201

        def decide(i: int) -> int:
            who = keys["appr"] if i % 2 else keys["appr2"]
            status = "Approved" if i % 3 else "Rejected"
            with httpx.Client(base_url=srv.url, timeout=60) as cc:
                r = cc.post("/api/v1/model-groups/g/versions/1/approval", headers=who,
                            json={"status": status, "comment": f"decision {i}",
                                  "expected_status": "PendingManualApproval"})
            return r.status_code

        with ThreadPoolExecutor(max_workers=50) as pool:
            codes = list(pool.map(decide, range(50)))
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409}, codes
    with live_db.session_scope() as s:
        n = s.scalar(select(func.count()).select_from(AuditEvent)
                     .where(AuditEvent.action == "version.approval_changed"))
        assert n == 1
        from mlgov.audit import verify
        assert verify(s)["ok"] is True


def test_concurrent_registration_numbers_unique(live_db, tmp_path):
    keys = _keys(live_db)
    app = create_app(make_settings(tmp_path), db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])

        def reg(i: int) -> int:
            with httpx.Client(base_url=srv.url, timeout=60) as cc:
                r = cc.post("/api/v1/model-groups/g/versions", json=version_body(i), headers=keys["pub"])
            assert r.status_code == 201, r.text
            return int(r.json()["version"])

        with ThreadPoolExecutor(max_workers=20) as pool:
            numbers = sorted(pool.map(reg, range(30)))
    assert numbers == list(range(1, 31))


class Receiver:
    """A real HTTP webhook receiver on a fixed port that can be taken down and brought back; ``fail_if`` (given
    the request headers) chooses which requests answer 500, and can be swapped while it runs."""

    def __init__(self, port: int, fail_with: int | None = None,
                 fail_if: Callable[[dict[str, str]], bool] | None = None) -> None:
        self.port, self.fail_with, self.fail_if = port, fail_with, fail_if
        self.received: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers)
                failed = outer.fail_if is not None and outer.fail_if(headers)
                code = 500 if failed else (outer.fail_with or 204)
                outer.received.append({"body": body, "headers": headers, "status": code})
                self.send_response(code)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _wait(pred, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_webhooks_survive_receiver_outage(live_db, tmp_path):
    keys = _keys(live_db)
    secret = "s3cr3t-webhook-key-0123"
    port = free_port()
    rx = Receiver(port)
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1,
                             webhook_backoff_base_s=0.2, webhook_backoff_max_s=0.5, webhook_max_attempts=100,
                             outbound_allow="127.0.0.1")
    app = create_app(settings, db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/api/v1/webhooks", headers=keys["admin"],
                   json={"url": f"http://127.0.0.1:{port}/hook", "secret": secret, "events": ["version.*"]})
        assert r.status_code == 201 and "secret" not in r.json()
        hook = r.json()["id"]
        c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])   # model_group.* not subscribed
        for i in range(3):
            c.post("/api/v1/model-groups/g/versions", json=version_body(i), headers=keys["pub"])
        c.post("/api/v1/model-groups/g/versions/1/approval", json={"status": "Approved", "comment": "ok"},
               headers=keys["appr"])

        def failed_attempts() -> int:
            ds = c.get(f"/api/v1/webhooks/{hook}/deliveries", headers=keys["admin"]).json()
            return sum(1 for d in ds for a in d["history"] if a["status_code"] is None)
        _wait(lambda: failed_attempts() >= 8)   # receiver down: attempts fail and are retried
        rx.up()
        try:
            _wait(lambda: len({m["headers"]["X-Mlgov-Delivery"] for m in rx.received}) == 4)
            time.sleep(1.0)  # nothing further arrives once all are acknowledged
            deliveries = c.get(f"/api/v1/webhooks/{hook}/deliveries", headers=keys["admin"]).json()
        finally:
            rx.down()
    assert len(rx.received) == 4, [m["headers"]["X-Mlgov-Event"] for m in rx.received]
    assert all(d["status"] == "delivered" for d in deliveries)
    first = min(deliveries, key=lambda d: d["sequence"])
    assert first["attempts"] >= 8   # the first took every failed attempt; later ones were held back behind it
    assert [m["headers"]["X-Mlgov-Sequence"] for m in rx.received] == ["1", "2", "3", "4"]
    types = [m["headers"]["X-Mlgov-Event"] for m in rx.received]
    assert types == ["version.registered"] * 3 + ["version.approval_changed"]   # in the order they happened
    for m in rx.received:
        expected = "sha256=" + hmac.new(secret.encode(), m["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(m["headers"]["X-Mlgov-Signature"], expected)
        payload = json.loads(m["body"])
        assert payload["type"] == m["headers"]["X-Mlgov-Event"] and payload["data"]["group"] == "g"


def test_webhook_dead_letter_after_max_attempts(live_db, tmp_path):
    keys = _keys(live_db)
    port = free_port()
    rx = Receiver(port, fail_with=500)
    rx.up()
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1,
                             webhook_backoff_base_s=0.1, webhook_backoff_max_s=0.2, webhook_max_attempts=3,
                             outbound_allow="127.0.0.1")
    app = create_app(settings, db=live_db)
    try:
        with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
            hook = c.post("/api/v1/webhooks", headers=keys["admin"], json={
                "url": f"http://127.0.0.1:{port}/", "secret": "x" * 20, "events": ["*"]}).json()["id"]
            c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])

            def dead() -> bool:
                ds = c.get(f"/api/v1/webhooks/{hook}/deliveries", headers=keys["admin"]).json()
                return bool(ds) and ds[0]["status"] == "dead"
            _wait(dead)
            d = c.get(f"/api/v1/webhooks/{hook}/deliveries", headers=keys["admin"]).json()[0]
    finally:
        rx.down()
    assert d["attempts"] == 3 and [a["status_code"] for a in d["history"]] == [500, 500, 500]
    assert "HTTP 500" in d["last_error"] and len(rx.received) == 3


def _seq(m: dict[str, Any]) -> int:
    return int(m["headers"]["X-Mlgov-Sequence"])


def test_webhooks_deliver_in_order_per_subscription(live_db, tmp_path):
    """A failing receiver holds back its own later deliveries, never another subscription's; once it recovers
    it gets them in sequence order, signed with the secret that is stored only encrypted."""
    keys = _keys(live_db)
    stuck, healthy = Receiver(free_port(), fail_if=lambda h: True), Receiver(free_port())
    stuck.up()
    healthy.up()
    secret = "ordered-webhook-secret-0123"
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1, webhook_backoff_base_s=0.1,
                             webhook_backoff_max_s=0.3, webhook_max_attempts=100, outbound_allow="127.0.0.1")
    try:
        with LiveServer(create_app(settings, db=live_db)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
            ids = [c.post("/api/v1/webhooks", headers=keys["admin"], json={
                "url": f"http://127.0.0.1:{rx.port}/", "secret": secret, "events": ["version.*"]}).json()["id"]
                for rx in (stuck, healthy)]
            c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])
            for i in range(3):
                assert c.post("/api/v1/model-groups/g/versions", json=version_body(i),
                              headers=keys["pub"]).status_code == 201
            _wait(lambda: len(healthy.received) == 3 and len(stuck.received) >= 3)
            assert {_seq(m) for m in stuck.received} == {1}   # 2 and 3 wait behind the failing 1
            stuck.fail_if = None
            _wait(lambda: sum(m["status"] == 204 for m in stuck.received) == 3)

            def stored_deliveries() -> list[dict]:
                return list(c.get(f"/api/v1/webhooks/{ids[0]}/deliveries", headers=keys["admin"]).json())

            # the receiver's 204 comes before the dispatcher records the delivery (CI once read it in between)
            _wait(lambda: all(d["status"] == "delivered" for d in stored_deliveries()))
            stored = stored_deliveries()
    finally:
        stuck.down()
        healthy.down()
    assert [_seq(m) for m in healthy.received] == [1, 2, 3]
    assert [_seq(m) for m in stuck.received if m["status"] == 204] == [1, 2, 3]
    assert sorted(d["sequence"] for d in stored) == [1, 2, 3] and all(d["status"] == "delivered" for d in stored)
    for m in stuck.received + healthy.received:
        expected = "sha256=" + hmac.new(secret.encode(), m["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(m["headers"]["X-Mlgov-Signature"], expected)
    from mlgov.events import Webhook

    with live_db.session_scope() as s:
        rows = [s.get(Webhook, i) for i in ids]
        assert all(r is not None and r.secret.startswith("enc:v1:") and secret not in r.secret for r in rows)


def test_dead_letter_stops_holding_back_and_can_be_redelivered(live_db, tmp_path):
    keys = _keys(live_db)
    rx = Receiver(free_port(), fail_if=lambda h: h["X-Mlgov-Sequence"] == "1")
    rx.up()
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1, webhook_backoff_base_s=0.1,
                             webhook_backoff_max_s=0.2, webhook_max_attempts=3, outbound_allow="127.0.0.1")
    try:
        with LiveServer(create_app(settings, db=live_db)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
            hook = c.post("/api/v1/webhooks", headers=keys["admin"], json={
                "url": f"http://127.0.0.1:{rx.port}/", "secret": "y" * 20, "events": ["version.*"]}).json()["id"]
            c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])
            for i in range(2):
                c.post("/api/v1/model-groups/g/versions", json=version_body(i), headers=keys["pub"])

            def by_seq() -> dict[int, dict[str, Any]]:
                ds = c.get(f"/api/v1/webhooks/{hook}/deliveries", headers=keys["admin"]).json()
                return {d["sequence"]: d for d in ds}
            _wait(lambda: by_seq().get(2, {}).get("status") == "delivered")
            dead = by_seq()[1]
            assert dead["status"] == "dead" and dead["attempts"] == 3
            url = f"/api/v1/webhooks/{hook}/deliveries/{dead['id']}/retry"
            assert c.post(url, headers=keys["pub"]).status_code == 403
            assert c.post(f"/api/v1/webhooks/{hook}/deliveries/nope/retry", headers=keys["admin"]).status_code == 404
            delivered = by_seq()[2]["id"]
            r = c.post(f"/api/v1/webhooks/{hook}/deliveries/{delivered}/retry", headers=keys["admin"])
            assert r.status_code == 409 and "only dead-lettered" in r.json()["detail"]
            rx.fail_if = None
            r = c.post(url, headers=keys["admin"])
            assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["sequence"] == 1
            _wait(lambda: by_seq()[1]["status"] == "delivered")
            final = by_seq()[1]
            audit_rows = c.get("/api/v1/audit/events", params={"action": "webhook.delivery_retried"},
                               headers=keys["admin"]).json()["items"]
    finally:
        rx.down()
    seqs = [(_seq(m), m["status"]) for m in rx.received]
    assert seqs == [(1, 500), (1, 500), (1, 500), (2, 204), (1, 204)]   # 2 waited until 1 was dead-lettered
    assert final["attempts"] == 4 and [a["status_code"] for a in final["history"]] == [500, 500, 500, 204]
    assert final["last_error"] is None
    assert len(audit_rows) == 1 and audit_rows[0]["actor"] == "admin" and audit_rows[0]["subject_id"] == hook


def test_concurrent_writers_get_gap_free_sequence_numbers(live_db, tmp_path):
    """Twenty registrations at once, one subscriber: each delivery gets its own number, none skipped, delivered
    in increasing order (numbering happens in the dispatcher, so writers share no lock)."""
    keys = _keys(live_db)
    rx = Receiver(free_port())
    rx.up()
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1, outbound_allow="127.0.0.1")
    try:
        with LiveServer(create_app(settings, db=live_db)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/api/v1/webhooks", headers=keys["admin"], json={
                "url": f"http://127.0.0.1:{rx.port}/", "secret": "z" * 20,
                "events": ["version.registered"]}).status_code == 201
            c.post("/api/v1/model-groups", json={"name": "g"}, headers=keys["pub"])

            def reg(i: int) -> int:
                with httpx.Client(base_url=srv.url, timeout=60) as cc:
                    return cc.post("/api/v1/model-groups/g/versions", json=version_body(i),
                                   headers=keys["pub"]).status_code

            with ThreadPoolExecutor(max_workers=20) as pool:
                assert set(pool.map(reg, range(20))) == {201}
            _wait(lambda: len(rx.received) == 20)
    finally:
        rx.down()
    assert [_seq(m) for m in rx.received] == list(range(1, 21))
    assert sorted(json.loads(m["body"])["data"]["version"] for m in rx.received) == list(range(1, 21))
