"""Real server, real sockets: concurrent decisions and registrations, and webhook delivery through an outage."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
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
from tests.infra import LiveServer, free_port, fresh_database, upgrade

pytestmark = pytest.mark.live


@pytest.fixture(params=["sqlite", "postgres"])
def live_db(request, tmp_path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        yield db
        db.dispose()


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
    """A real HTTP webhook receiver on a fixed port that can be taken down and brought back."""

    def __init__(self, port: int, fail_with: int | None = None) -> None:
        self.port, self.fail_with = port, fail_with
        self.received: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"body": body, "headers": dict(self.headers)})
                self.send_response(outer.fail_with or 204)
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
    assert all(d["status"] == "delivered" and d["attempts"] >= 2 for d in deliveries)
    types = sorted(m["headers"]["X-Mlgov-Event"] for m in rx.received)
    assert types == ["version.approval_changed"] + ["version.registered"] * 3
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
