"""The outbound policy against real sockets: SSRF refusals (creation and send time), no DNS-rebinding gap,
no redirects, bounded time and size, and errors that never repeat what the remote end answered.

Attacks run against a live server (uvicorn on 127.0.0.1) with a hostile receiver on 127.0.0.1: refused
without MLGOV_OUTBOUND_ALLOW, reachable with it, and never echoed."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select

from mlgov.app import create_app
from mlgov.db import Database
from mlgov.events import Delivery, DeliveryAttempt, Webhook
from mlgov.outbound import OutboundPolicy, OutboundRefused, RemoteCallFailed, parse_allow
from tests.conftest import make_settings
from tests.helpers import assert_problem, version_body
from tests.infra import LiveServer, free_port
from tests.test_live import _keys, _wait

pytestmark = pytest.mark.live
SECRET_TEXT = "INTERNAL-SECRET-7f3a"


class Hostile:
    """A receiver on 127.0.0.1 whose answers try to leak, stall, flood or redirect (chosen by path)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hits: list[dict[str, Any]] = []
        self.trickled = 0
        self.model = LogisticRegression().fit(*_data())
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hits.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                rows = [line.split(",") for line in raw.decode().splitlines() if line]
                if self.path == "/ok":
                    x = np.array(rows, dtype=float)
                    self._send(200, json.dumps({"predictions": outer.model.predict_proba(x)[:, 1].tolist()}),
                               "application/json")
                elif self.path == "/leak-text":
                    self._send(200, f"{SECRET_TEXT}\n" * len(rows), "text/plain")
                elif self.path == "/leak-json":
                    self._send(200, json.dumps({"predictions": [SECRET_TEXT] * len(rows)}), "application/json")
                elif self.path == "/error":
                    self._send(500, f"stack trace with {SECRET_TEXT}", "text/plain")
                elif self.path == "/short":
                    self._send(200, json.dumps({"predictions": [0.5] * (len(rows) - 1)}), "application/json")
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/big":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    try:
                        for _ in range(2000):   # ~2 MB, no Content-Length: only the reader can stop it
                            self.wfile.write(b"0.5\n" * 256)
                    except OSError:
                        pass
                elif self.path == "/trickle":   # headers one line at a time: each read is quick, the whole is not
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    try:
                        for i in range(40):
                            time.sleep(0.25)
                            self.wfile.write(f"X-Line-{i}: x\r\n".encode())
                            self.wfile.flush()
                            outer.trickled += 1
                    except OSError:
                        pass
                elif self.path == "/slow":
                    time.sleep(3)
                    self._send(200, "0.5\n" * len(rows), "text/plain")
                else:
                    self._send(204, "", "text/plain")

            def _send(self, code: int, body: str, ctype: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    return x, (x.a > 0).astype(int)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.close()


REFUSED = [
    ("http://127.0.0.1:5432/", "127.0.0.1", "loopback"),
    ("http://localhost:5432/", "127.0.0.1", "loopback"),
    ("http://[::1]:8080/", "::1", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ("http://10.1.2.3/hook", "10.1.2.3", "private"),
    ("http://192.168.0.10/hook", "192.168.0.10", "private"),
    ("http://[fd00::1]/hook", "fd00::1", "unique-local"),
    ("http://0.0.0.0:80/", "0.0.0.0", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1", "loopback"),
    ("http://100.64.0.1/", "100.64.0.1", "not globally routable"),
    ("http://2130706433/", "127.0.0.1", "loopback"),   # the same address spelled as a number
    ("http://127.1/", "127.0.0.1", "loopback"),
    ("http://user:pw@169.254.169.254/", "169.254.169.254", "link-local"),
    ("http://[2002:a9fe:a9fe::]/", "2002:a9fe:a9fe::", "link-local"),        # 6to4 around 169.254.169.254
    ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe", "link-local"),    # NAT64 around it
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo
]


# --- the policy itself --------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "address", "why"), REFUSED)
def test_policy_refuses_internal_addresses(url, address, why):
    with pytest.raises(OutboundRefused) as err:
        OutboundPolicy().check_url(url, "webhook url")
    assert address in err.value.detail and why in err.value.detail
    assert "MLGOV_OUTBOUND_ALLOW" in (err.value.fix or "")


def test_policy_refuses_a_hostname_that_resolves_to_loopback():
    name = socket.gethostname()
    addrs = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    if not any(a.startswith("127.") or a == "::1" for a in addrs):
        pytest.skip(f"{name} does not resolve to loopback here")
    with pytest.raises(OutboundRefused, match="loopback"):
        OutboundPolicy().check_url(f"http://{name}:8000/")


def test_policy_allow_list_by_cidr_and_hostname():
    hosts, nets = parse_allow(" 127.0.0.1, hooks.internal ,10.0.0.0/8,[::1]")
    assert hosts == frozenset({"hooks.internal"}) and len(nets) == 3
    policy = OutboundPolicy(allow_hosts=hosts, allow_networks=nets)
    assert str(policy.check_url("http://127.0.0.1:9/x")) == "127.0.0.1"
    assert str(policy.check_url("http://10.9.9.9/x")) == "10.9.9.9"
    assert str(policy.check_url("http://[::1]:9/x")) == "::1"
    with pytest.raises(OutboundRefused):
        policy.check_url("http://192.168.1.1/x")
    by_name = OutboundPolicy(allow_hosts=frozenset({"localhost"}))
    assert by_name.check_url("http://localhost:9/x").is_loopback
    with pytest.raises(OutboundRefused):
        by_name.check_url("http://127.0.0.1:9/x")   # the name is allowed, not the address under another name
    assert str(OutboundPolicy().check_url("https://93.184.216.34/x")) == "93.184.216.34"
    for bad in ("ftp://example.com/x", "http:///x", "not a url"):
        with pytest.raises(OutboundRefused):
            OutboundPolicy().check_url(bad)


def test_allow_list_comes_from_the_environment(monkeypatch):
    from mlgov.settings import Settings

    monkeypatch.setenv("MLGOV_OUTBOUND_ALLOW", "127.0.0.1, hooks.internal")
    policy = OutboundPolicy.from_settings(Settings())
    assert policy.check_url("http://127.0.0.1:9/x").is_loopback and "hooks.internal" in policy.allow_hosts
    monkeypatch.delenv("MLGOV_OUTBOUND_ALLOW")
    with pytest.raises(OutboundRefused):
        OutboundPolicy.from_settings(Settings()).check_url("http://127.0.0.1:9/x")


def test_connects_to_the_checked_address_with_the_original_host_header(hostile):
    """Resolve once, check, connect to that IP: the name below exists in no DNS, so the request can only
    arrive because the transport connected to the address the policy validated."""
    policy = OutboundPolicy(allow_networks=parse_allow("127.0.0.1")[1], _resolve=lambda host: ["127.0.0.1"])
    r = policy.post(f"http://pinned.invalid:{hostile.port}/hook", b"{}", {"Content-Type": "application/json"})
    assert r.status_code == 204
    assert hostile.hits[-1]["headers"]["Host"] == f"pinned.invalid:{hostile.port}"


def test_dns_rebinding_after_the_check_is_refused_at_send_time(hostile):
    """A name that resolved to a public address when checked, then to loopback: the send re-resolves, re-checks
    and refuses; nothing reaches the receiver."""
    answers = iter(["93.184.216.34", "127.0.0.1"])
    policy = OutboundPolicy(_resolve=lambda host: [next(answers)])
    url = f"http://rebind.invalid:{hostile.port}/hook"
    policy.check_url(url)   # creation time: public
    with pytest.raises(OutboundRefused, match="loopback"):
        policy.post(url, b"{}", {})
    assert hostile.hits == []


def test_redirect_size_and_time_are_bounded(hostile):
    policy = OutboundPolicy(allow_networks=parse_allow("127.0.0.1")[1], read_timeout_s=0.5,
                            max_response_bytes=64 * 1024)
    with pytest.raises(RemoteCallFailed, match="redirect") as err:
        policy.post(f"{hostile.url}/redirect", b"1\n", {})
    assert err.value.extra["status_code"] == 302
    with pytest.raises(RemoteCallFailed, match="more than 65536 bytes"):
        policy.post(f"{hostile.url}/big", b"1\n", {})
    with pytest.raises(RemoteCallFailed, match="did not answer in time"):
        policy.post(f"{hostile.url}/slow", b"1\n", {})
    with pytest.raises(RemoteCallFailed, match="could not be reached"):
        policy.post(f"http://127.0.0.1:{free_port()}/", b"1\n", {})


def test_a_trickling_receiver_is_cut_off_at_the_overall_deadline(hostile):
    """Each header line comes well within the read timeout, so only the call's overall deadline (connect + 2 ×
    read = 1.5 s here) stops it; without it the call would take the receiver's full 10 s (40 lines)."""
    policy = OutboundPolicy(allow_networks=parse_allow("127.0.0.1")[1], read_timeout_s=0.5, connect_timeout_s=0.5)
    for max_bytes in (None, 0):   # predict calls read the body; webhooks read only the status
        hostile.trickled = 0
        with pytest.raises(RemoteCallFailed, match="did not answer in time"):
            policy.post(f"{hostile.url}/trickle", b"1\n", {}, max_bytes=max_bytes)
        assert hostile.trickled < 40


# --- through the live server ----------------------------------------------------------------------------

def _serve(db: Database, tmp_path, **settings: Any) -> LiveServer:
    return LiveServer(create_app(make_settings(tmp_path, **settings), db=db))


def _explain(c: httpx.Client, key: dict[str, str], url: str) -> httpx.Response:
    x, _ = _data()
    return c.post("/api/v1/clarify/explain", headers=key, data={
        "model_group": "m", "model_version": "1", "predict_url": url},
        files={"file": ("d.csv", x.head(12).to_csv(index=False).encode()),
               "baseline": ("b.csv", x.tail(3).to_csv(index=False).encode())})


def _setup_group(c: httpx.Client, keys: dict[str, dict[str, str]]) -> None:
    assert c.post("/api/v1/model-groups", json={"name": "m"}, headers=keys["pub"]).status_code == 201
    assert c.post("/api/v1/model-groups/m/versions", json=version_body(1), headers=keys["pub"]).status_code == 201


def test_refused_on_every_door_without_the_allow_list(live_db, tmp_path, hostile):
    keys = _keys(live_db)
    with _serve(live_db, tmp_path) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        _setup_group(c, keys)
        targets = [u for u, _, _ in REFUSED] + [f"{hostile.url}/ok", f"http://localhost:{hostile.port}/ok"]
        for url in targets:
            r = c.post("/api/v1/webhooks", headers=keys["admin"],
                       json={"url": url, "secret": "s" * 20, "events": ["*"]})
            body = assert_problem(r, 422, "refuses", "mlgov_outbound_allow")
            assert body["refused_address"]
            assert_problem(r, 422, "the webhook url")
            trigger = assert_problem(c.put("/api/v1/model-groups/m/retraining-trigger", headers=keys["admin"],
                                           json={"url": url, "secret": "s" * 20}), 422, "refuses",
                                     "mlgov_outbound_allow", "the retraining trigger url")
            assert "webhook" not in trigger["detail"]      # before: "the webhook url …", a word its user never set
            assert_problem(_explain(c, keys["pub"], url), 422, "predict url", "refuses", "mlgov_outbound_allow")
    assert hostile.hits == []   # nothing was ever sent to the receiver
    with live_db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Webhook)) == 0


def test_predict_url_failures_say_what_failed_without_the_reply(live_db, tmp_path, hostile):
    keys = _keys(live_db)
    with _serve(live_db, tmp_path, outbound_allow="127.0.0.1", outbound_read_timeout_s=0.5,
                outbound_max_response_bytes=64 * 1024) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        _setup_group(c, keys)
        cases = {"/leak-text": "not a list of numbers", "/leak-json": "not a list of numbers",
                 "/error": "http 500", "/short": "values for", "/redirect": "redirect",
                 "/big": "more than 65536 bytes", "/slow": "did not answer in time"}
        for path, needle in cases.items():
            r = _explain(c, keys["pub"], f"{hostile.url}{path}")
            assert_problem(r, 422, needle, "predict url")
            assert SECRET_TEXT not in r.text and "169.254" not in r.text, r.text
            if path == "/short":
                m = re.search(r"answered (\d+) values for (\d+) rows", r.json()["detail"])
                assert m and int(m.group(1)) == int(m.group(2)) - 1, r.text
        r = _explain(c, keys["pub"], f"{hostile.url}/ok")   # allowed: the receiver is named by the operator
        assert r.status_code == 200, r.text
        source = r.json()["model_source"]
        assert source["kind"] == "predict_url" and source["predict_url"] == f"{hostile.url}/ok"
        assert "not the registered artifact" in source["note"] and version_body(1)["artifact_sha256"] in source["note"]
        page = c.get(f"/api/v1/clarify/reports/{r.headers['X-Mlgov-Analysis-Id']}", headers=keys["admin"]).text
        assert f"the predict URL {hostile.url}/ok" in page and "not the registered artifact" in page
        events = c.get("/api/v1/audit/events", params={"action": "clarify.explanation"}, headers=keys["admin"]).json()
        assert events["items"][0]["after"]["model_source"]["kind"] == "predict_url"


def test_webhook_delivery_rechecks_and_stores_no_remote_body(live_db, tmp_path, hostile):
    keys = _keys(live_db)
    quick = {"background_workers": True, "dispatcher_poll_s": 0.1, "webhook_backoff_base_s": 0.1,
             "webhook_backoff_max_s": 0.2, "webhook_max_attempts": 2, "webhook_timeout_s": 0.5}
    with _serve(live_db, tmp_path, outbound_allow="127.0.0.1", **quick) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as c:
        hooks = {}
        for path in ("/error", "/redirect", "/slow", "/big", "/fine"):
            r = c.post("/api/v1/webhooks", headers=keys["admin"],
                       json={"url": f"{hostile.url}{path}", "secret": "s" * 20, "events": ["model_group.*"]})
            assert r.status_code == 201, r.text
            hooks[path] = r.json()["id"]
        r = c.put("/api/v1/model-groups/m/retraining-trigger", headers=keys["admin"],
                  json={"url": f"{hostile.url}/retrain", "secret": "s" * 20})
        assert r.status_code == 404   # allowed URL, missing group: the URL check does not hide other errors
        assert c.post("/api/v1/model-groups", json={"name": "m"}, headers=keys["pub"]).status_code == 201

        def settled() -> bool:
            ds = [c.get(f"/api/v1/webhooks/{h}/deliveries", headers=keys["admin"]).json() for h in hooks.values()]
            return all(d and d[0]["status"] in ("delivered", "dead") for d in ds)
        _wait(settled)
        got = {p: c.get(f"/api/v1/webhooks/{h}/deliveries", headers=keys["admin"]).json()[0]
               for p, h in hooks.items()}
    assert got["/fine"]["status"] == "delivered" and got["/fine"]["sequence"] == 1
    assert got["/error"]["last_status_code"] == 500 and got["/error"]["last_error"] == "HTTP 500 from the receiver"
    assert "redirect" in got["/redirect"]["last_error"] and got["/redirect"]["last_status_code"] == 302
    assert "did not answer in time" in got["/slow"]["last_error"]
    assert got["/big"]["status"] == "delivered"   # a webhook's reply is not needed: reading stops, status counts
    with live_db.session_scope() as s:
        errors = list(s.scalars(select(DeliveryAttempt.error)))
    assert errors and not any(SECRET_TEXT in (e or "") for e in errors)
    assert not any(h["path"] != "/redirect" and "169.254" in str(h) for h in hostile.hits)

    # the operator withdraws the allowance: the same subscriptions are refused at send time
    before = len(hostile.hits)
    with _serve(live_db, tmp_path, **quick) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        c.post("/api/v1/model-groups", json={"name": "m2"}, headers=keys["pub"])
        fine = hooks["/fine"]

        def refused() -> bool:
            ds = c.get(f"/api/v1/webhooks/{fine}/deliveries", headers=keys["admin"]).json()
            return ds[0]["sequence"] == 2 and ds[0]["status"] == "dead"
        _wait(refused)
        d = c.get(f"/api/v1/webhooks/{fine}/deliveries", headers=keys["admin"]).json()[0]
    assert "loopback" in d["last_error"] and "refuses" in d["last_error"]
    assert len(hostile.hits) == before
    with live_db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "delivered")) == 2


def _tls_server(tmp_path, name: str) -> tuple[ThreadingHTTPServer, ssl.SSLContext]:
    """An HTTPS receiver on 127.0.0.1 whose self-signed certificate names only ``name``; and a client context
    that trusts that certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / f"{name}.crt").write_bytes(pem)
    (tmp_path / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    server.socket = sctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, ssl.create_default_context(cadata=pem.decode())


def test_https_to_a_pinned_address_verifies_the_original_name(tmp_path):
    """Pinning connects to the IP, yet TLS sends the original name (SNI) and checks the certificate against it:
    a certificate for another name is refused, so pinning never weakens verification."""
    server, trust = _tls_server(tmp_path, "hooks.invalid")
    port = server.server_address[1]
    try:
        policy = OutboundPolicy(allow_networks=parse_allow("127.0.0.1")[1], verify=trust,
                                _resolve=lambda host: ["127.0.0.1"])
        assert policy.post(f"https://hooks.invalid:{port}/", b"{}", {}).status_code == 204
        with pytest.raises(RemoteCallFailed, match="could not be reached"):
            policy.post(f"https://impostor.invalid:{port}/", b"{}", {})   # same address, name not in the cert
    finally:
        server.shutdown()
        server.server_close()
