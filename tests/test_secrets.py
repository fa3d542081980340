"""Secrets at rest: encrypted with a key outside the database; legacy plaintext rows (before migration 0011)
still sign, get numbered in order, and are re-encrypted the first time the dispatcher uses them."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from mlgov.app import create_app
from mlgov.db import Database
from mlgov.events import Delivery, DeliveryAttempt, Webhook, deliver_due
from mlgov.outbound import OutboundPolicy
from mlgov.secrets import SecretBox, SecretsUnavailable
from tests.conftest import make_settings
from tests.infra import free_port, fresh_database, upgrade


def test_key_file_created_0600_on_first_use(tmp_path):
    settings = make_settings(tmp_path)
    box = SecretBox.from_settings(settings)
    assert not settings.secrets_key_path.exists()   # nothing until a secret is stored
    stored = box.encrypt("webhook-secret-123456")
    assert stored.startswith("enc:v1:") and "webhook-secret" not in stored
    assert stat.S_IMODE(settings.secrets_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    assert SecretBox.from_settings(settings).decrypt(stored) == "webhook-secret-123456"   # a restart reads it back
    assert box.decrypt("legacy-plaintext-secret") == "legacy-plaintext-secret"


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    path = tmp_path / "home" / "secrets.key"
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def first_use(i: int) -> None:
        barrier.wait()
        tokens.append(SecretBox(key_path=path).encrypt(f"secret-{i}"))

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = SecretBox(key_path=path)
    assert sorted(reader.decrypt(t) for t in tokens) == sorted(f"secret-{i}" for i in range(8))
    assert [p.name for p in path.parent.iterdir()] == ["secrets.key"]   # no temporary files left


def test_env_key_rotation_and_wrong_key(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox.from_settings(make_settings(tmp_path, secrets_key=old)).encrypt("s" * 20)
    rotated = SecretBox.from_settings(make_settings(tmp_path, secrets_key=f"{new},{old}"))
    assert rotated.decrypt(token) == "s" * 20
    assert not make_settings(tmp_path).secrets_key_path.exists()   # the env key is used, no file made
    with pytest.raises(SecretsUnavailable, match="cannot be decrypted") as err:
        SecretBox.from_settings(make_settings(tmp_path, secrets_key=new)).decrypt(token)
    assert err.value.status == 503 and "MLGOV_SECRETS_KEY" in (err.value.fix or "")
    with pytest.raises(SecretsUnavailable, match="not a valid Fernet key"):
        SecretBox(keys=[b"not-a-key"]).encrypt("x")   # (Settings refuse MLGOV_SECRETS_KEY=not-a-key already)


class _Sink:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.got.append({"body": self.rfile.read(int(self.headers["Content-Length"])),
                                  "headers": dict(self.headers), "path": self.path})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_keeps_legacy_plaintext_rows_working(kind, tmp_path):
    sink = _Sink()
    legacy = "legacy-plaintext-secret-0123"
    with fresh_database(kind, tmp_path) as url:
        upgrade(url, "0009")
        db = Database(url)
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        stamp = (lambda d: d.replace(tzinfo=None)) if kind == "sqlite" else (lambda d: d)
        with db.write_engine.begin() as c:
            c.execute(text("INSERT INTO events_webhooks (id, url, secret, events, description, active, created_by, "
                           "created_at) VALUES ('h1', :url, :secret, :events, NULL, :on, 'admin', :at)"),
                      {"url": f"http://127.0.0.1:{sink.port}/hook?token=tok-0123", "secret": legacy,
                       "events": json.dumps(["*"]), "on": True, "at": stamp(t0)})
            c.execute(text("INSERT INTO events_webhooks (id, url, secret, events, description, active, created_by, "
                           "created_at) VALUES ('h2', 'http://127.0.0.1:9/', :secret, :events, NULL, :on, 'admin', "
                           ":at)"), {"secret": legacy + "-unused", "events": json.dumps(["nothing.*"]), "on": True,
                                     "at": stamp(t0)})
            for i in (1, 2, 3):
                c.execute(text("INSERT INTO events_outbox (id, event_id, type, subject, payload, created_at) "
                               "VALUES (:i, :e, 'version.registered', 'g/1', :p, :at)"),
                          {"i": i, "e": f"ev{i}", "p": json.dumps({"n": i}), "at": stamp(t0 + dt.timedelta(seconds=i))})
            for i, did in ((3, "d-c"), (1, "d-a"), (2, "d-b")):   # inserted out of order on purpose
                c.execute(text("INSERT INTO events_deliveries (id, webhook_id, outbox_id, event_type, status, "
                               "attempts, next_attempt_at, created_at) VALUES (:d, 'h1', :i, 'version.registered', "
                               "'pending', 0, :at, :at)"),
                          {"d": did, "i": i, "at": stamp(t0 + dt.timedelta(seconds=i))})
            c.execute(text("INSERT INTO events_delivery_attempts (delivery_id, attempt, at, status_code, error, "
                           "duration_ms) VALUES ('d-a', 1, :at, 500, 'HTTP 500', 3)"), {"at": stamp(t0)})
        upgrade(url)   # recreating events_webhooks on SQLite must not cascade-delete deliveries or their attempts
        with db.session_scope() as s:
            assert s.scalar(select(DeliveryAttempt.status_code).where(DeliveryAttempt.delivery_id == "d-a")) == 500
            assert [(d.id, d.sequence) for d in s.scalars(select(Delivery).order_by(Delivery.sequence))] == [
                ("d-a", 1), ("d-b", 2), ("d-c", 3)]
            hook = s.get(Webhook, "h1")
            assert hook is not None and hook.last_sequence == 3 and hook.secret == legacy
            # 0027: reads see the masked URL; the URL itself waits in sealed_url for the key (legacy plaintext)
            assert hook.url == f"http://127.0.0.1:{sink.port}/hook?token=***"
            assert hook.sealed_url == f"http://127.0.0.1:{sink.port}/hook?token=tok-0123"
        settings = make_settings(tmp_path, outbound_allow="127.0.0.1")
        policy, box = OutboundPolicy.from_settings(settings), SecretBox.from_settings(settings)
        for _ in range(3):
            deliver_due(db, settings, policy, box)
        with db.session_scope() as s:
            hook = s.get(Webhook, "h1")
            assert hook is not None and hook.secret.startswith("enc:v1:") and legacy not in hook.secret
            assert box.decrypt(hook.secret) == legacy
            assert hook.sealed_url.startswith("enc:v1:") and "tok-0123" not in hook.sealed_url
            assert box.decrypt(hook.sealed_url).endswith("?token=tok-0123")
            assert s.get(Webhook, "h2").secret == legacy + "-unused"   # never sent, still plaintext …
        with TestClient(create_app(settings, db=db)):   # … until a server starts and seals it
            pass
        with db.session_scope() as s:
            sealed = s.get(Webhook, "h2").secret
            assert sealed.startswith("enc:v1:") and box.decrypt(sealed) == legacy + "-unused"
            assert box.decrypt(s.get(Webhook, "h2").sealed_url) == "http://127.0.0.1:9/"
            # a row whose secret is sealed with a key since removed, and whose URL is legacy plaintext: the start
            # seals the URL and leaves the secret for its deliveries to report (it must not refuse to start)
            foreign = SecretBox(keys=[Fernet.generate_key()]).encrypt("another key's secret")
            s.add(Webhook(id="h3", url="http://127.0.0.1:9/?t=***", sealed_url="http://127.0.0.1:9/?t=x",
                          secret=foreign, events=["*"], active=False, created_by="admin", last_sequence=0))
        with TestClient(create_app(settings, db=db)):
            pass
        with db.session_scope() as s:
            h3 = s.get(Webhook, "h3")
            assert h3.secret == foreign and box.decrypt(h3.sealed_url) == "http://127.0.0.1:9/?t=x"
        # downgrade cannot decrypt: encrypted subscriptions are deactivated and keep the masked URL (as 0011 did)
        from alembic import command

        from mlgov.db import alembic_config

        command.downgrade(alembic_config(url), "0026_webhooks_updated_at")
        with db.write_engine.connect() as c:
            rows = {r.id: (r.url, bool(r.active))
                    for r in c.execute(text("SELECT id, url, active FROM events_webhooks"))}
        assert rows["h1"] == (f"http://127.0.0.1:{sink.port}/hook?token=***", False)
        upgrade(url)
        db.dispose()
    sink.server.shutdown()
    assert [m["headers"]["X-Mlgov-Sequence"] for m in sink.got] == ["1", "2", "3"]
    assert {m["path"] for m in sink.got} == {"/hook?token=tok-0123"}   # the token still reaches the receiver
    assert [json.loads(m["body"])["id"] for m in sink.got] == ["ev1", "ev2", "ev3"]
    for m in sink.got:
        expected = "sha256=" + hmac.new(legacy.encode(), m["body"], hashlib.sha256).hexdigest()
        assert m["headers"]["X-Mlgov-Signature"] == expected
