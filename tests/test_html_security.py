"""Stored HTML injection: hostile values sent through the API of a real `mlgov serve` process show up in every
report as text, never as markup; every HTML response carries the CSP and nosniff; /docs and /redoc render
offline from the package's own assets under that CSP."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from tests.browser import FLAGS, chromium, render
from tests.infra import free_port, fresh_database, upgrade, wait_healthy

pytestmark = pytest.mark.live

MLGOV = str(Path(sys.executable).parent / "mlgov")
# Each payload, if it ever became markup, would mark <body> (proof that script ran) or add an element.
HOSTILE = [
    "</title><img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">",
    "<script>document.body.setAttribute('data-pwned','script')</script>",
    "\"><svg onload=\"document.body.setAttribute('data-pwned','svg')\">",
    "{{7*7}}",
]
RAW_TAGS = ["<img src=x", "<script>", "<svg onload"]
CSP = "default-src 'self'; script-src 'self'"


@dataclass
class Server:
    url: str
    keys: dict[str, dict[str, str]]

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.keys[role], timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mlgov serve` in its own process on a migrated SQLite database, with one API key per role."""
    from mlgov import auth
    from mlgov.db import Database

    tmp = tmp_path_factory.mktemp("serve")
    with fresh_database("sqlite", tmp) as url:
        upgrade(url)
        db = Database(url)
        keys = {}
        with db.session_scope() as s:
            for name in ("admin", "publisher", "approver", "viewer", "ingest"):
                keys[name] = {"Authorization": f"Bearer {auth.create_key(s, f'h-{name}', name, actor='test')[1]}"}
        db.dispose()
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")},
               "MLGOV_DATABASE_URL": url, "MLGOV_HOME": str(tmp / ".mlgov"),
               "MLGOV_AUDIT_KEY": os.environ["MLGOV_AUDIT_KEY"],   # the key the keys' events were signed with
               "MLGOV_STORE_URL": (tmp / "store").as_uri()}
        log = (tmp / "serve.log").open("wb")      # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            yield Server(f"http://127.0.0.1:{port}", keys)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


class Dom(HTMLParser):
    """Elements, attributes and text of a page as Chromium left it after running it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(r: httpx.Response, tmp_path: Path, shown: list[str]) -> Dom:
    """The served report escapes every hostile value, Chromium finds no injected element and ran no payload,
    and the response carries the security headers. ``shown``: values the page must display in full."""
    route = r.url.path
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    for raw in RAW_TAGS:
        assert raw not in html, (route, raw)
    for value in shown:
        assert str(escape(value)) in html, (route, value)
    dom_html, shot = render(html, tmp_path)
    dom = Dom(dom_html)
    tags = [t for t, _ in dom.tags]
    assert "img" not in tags and "script" not in tags, (route, tags)
    handlers = [(t, a) for t, attrs in dom.tags for a in attrs if a.startswith("on")]
    assert handlers == [], (route, handlers)
    assert not any("data-pwned" in attrs for _, attrs in dom.tags), route
    text = "".join(dom.text)
    for value in shown:
        assert value in text, (route, value)     # displayed as the text it is
    assert shot.stat().st_size > 3000
    assert_security_headers(r)
    return dom


def assert_security_headers(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"].startswith(CSP), r.headers
    assert "unsafe-inline" not in r.headers["content-security-policy"] or r.url.path == "/redoc"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def group_and_version(srv: Server, group: str, **version: Any) -> None:
    from tests.helpers import version_body

    with srv.client("publisher") as c:
        assert c.post("/api/v1/model-groups", json={"name": group, "description": HOSTILE[0]}).status_code == 201
        r = c.post(f"/api/v1/model-groups/{group}/versions", json=version_body(1, **version))
        assert r.status_code == 201, r.text


# --- every report kind, seeded once through the API -------------------------------------------------------------

def seed_drift_file(srv: Server) -> str:
    """Hostile feature names (CSV header) and categories, baseline and current file."""
    rng = np.random.default_rng(0)
    cats = rng.choice(HOSTILE, 400)
    base = pd.DataFrame({HOSTILE[0]: rng.normal(size=400), HOSTILE[2]: cats, "state": cats})
    cur = pd.DataFrame({HOSTILE[0]: rng.normal(3, 1, 400), HOSTILE[2]: rng.choice(HOSTILE[:2], 400),
                        "state": rng.choice(HOSTILE[1:], 400)})
    with srv.client("publisher") as c:
        r = c.post("/api/v1/baselines", files={"file": ("train.csv", csv(base))}, data={"name": "hostile"})
        assert r.status_code == 201, r.text
        a = c.post("/api/v1/analyses", data={"baseline_id": r.json()["id"]}, files={"file": ("cur.csv", csv(cur))})
        assert a.status_code == 201, a.text
    return str(a.json()["id"])


T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
WINDOW = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"}


def endpoint_with_traffic(srv: Server, name: str, group: str, features: list[dict[str, str]], inputs: pd.DataFrame,
                          outputs: list[dict[str, Any]], labels: list[int] | None = None) -> None:
    """An endpoint of ``group``/1 that captured ``inputs`` as JSON records in the hour from T0 (and their labels)."""
    recs = [{"captureData": {
        "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "encoding": "JSON",
                          "data": json.dumps(row)},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON",
                           "data": json.dumps(out)}},
        "eventMetadata": {"eventId": f"{name}-{i}", "inferenceId": f"{name}-inf-{i}",
                          "inferenceTime": (T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0"} for i, (row, out) in enumerate(zip(inputs.to_dict("records"), outputs, strict=True))]
    schema: dict[str, Any] = {"features": features}
    if outputs and "pred" in outputs[0]:
        schema["prediction"] = {"name": "pred"}
    with srv.client("publisher") as c:
        r = c.post("/api/v1/endpoints", json={"name": name, "model_group": group, "model_version": 1,
                                             "sampling_percentage": 100, "schema": schema})
        assert r.status_code == 201, r.text
    with srv.client("ingest") as c:
        assert c.post(f"/api/v1/endpoints/{name}/capture", json=recs).json()["accepted"] == len(recs)
        if labels is not None:
            truth = [{"groundTruthData": {"data": str(y), "encoding": "CSV"}, "eventVersion": "0",
                      "eventMetadata": {"eventId": f"{name}-inf-{i}"}} for i, y in enumerate(labels)]
            assert c.post(f"/api/v1/endpoints/{name}/ground-truth", json=truth).status_code == 200


def scheduled_run(srv: Server, endpoint: str, kind: str, baseline_id: str) -> str:
    """The analysis of one manual run of a ``kind`` schedule over the captured hour."""
    with srv.client("publisher") as c:
        r = c.post("/api/v1/monitoring-schedules", json={"name": f"{endpoint}-run", "endpoint": endpoint,
                                                         "type": kind, "schedule": "hourly",
                                                         "baseline_id": baseline_id})
        assert r.status_code == 201, r.text
        r = c.post(f"/api/v1/monitoring-schedules/{endpoint}-run/run", json=WINDOW)
        assert r.status_code == 201 and r.json()["analysis_id"], r.text
    return str(r.json()["analysis_id"])


def seed_drift_captured(srv: Server) -> str:
    """Hostile categorical values in captured traffic (JSON records), analysed over the capture window."""
    group_and_version(srv, "captured")
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"age": rng.integers(18, 90, 300), "state": rng.choice(HOSTILE, 300)})
    traffic = pd.DataFrame({"age": [30 + i % 40 for i in range(200)], "state": [HOSTILE[i % 4] for i in range(200)]})
    endpoint_with_traffic(srv, "captured-ep", "captured", [{"name": "age", "type": "Integral"},
                                                           {"name": "state", "type": "String"}],
                          traffic, [{"prediction": 0.5}] * 200)
    with srv.client("publisher") as c:
        bid = c.post("/api/v1/baselines", files={"file": ("t.csv", csv(train))}).json()["id"]
        r = c.post("/api/v1/analyses", json={"baseline_id": bid, "endpoint": "captured-ep", **WINDOW})
        assert r.status_code == 201 and r.json()["rows"] == 200, r.text
    return str(r.json()["id"])


def seed_bias_drift(srv: Server) -> str:
    """A ModelBias monitor run on captured traffic whose facet name and values are hostile."""
    group_and_version(srv, "fairness")
    rng = np.random.default_rng(5)
    facet, n = HOSTILE[2], 600

    def people(unfair: float) -> pd.DataFrame:
        df = pd.DataFrame({facet: rng.choice(HOSTILE[:2], n), "income": rng.normal(50, 10, n).round(2),
                           "label": rng.integers(0, 2, n)})
        df["pred"] = np.where((df[facet] == HOSTILE[0]) & (rng.random(n) < unfair), 0, df["label"])
        return df

    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": facet, "value_or_threshold": [HOSTILE[0]]}],
           "methods": {"post_training_bias": {"methods": ["DPPL", "DI"]}}}
    window = people(0.7)
    endpoint_with_traffic(srv, "fair-ep", "fairness", [{"name": facet, "type": "String"},
                                                       {"name": "income", "type": "Fractional"}],
                          window[[facet, "income"]], [{"pred": int(p)} for p in window["pred"]],
                          labels=window["label"].tolist())
    with srv.client("publisher") as c:
        r = c.post("/api/v1/baselines", data={"type": "ModelBias"}, files={
            "file": ("v.csv", csv(people(0.05))), "config": ("c.json", json.dumps(cfg).encode())})
        assert r.status_code == 201, r.text
    return scheduled_run(srv, "fair-ep", "ModelBias", r.json()["id"])


def hostile_model(srv: Server, group: str, seed: int) -> tuple[pd.DataFrame, bytes]:
    """A model trained on hostile feature names, registered as ``group``/1: its training rows and artifact."""
    import skops.io as sio
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=HOSTILE)
    y = (x[HOSTILE[0]] + 0.5 * x[HOSTILE[1]] > 0).astype(int)
    artifact = sio.dumps(GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y))
    group_and_version(srv, group, artifact_uri=f"s3://models/{group}/1/model.skops",
                      artifact_sha256=hashlib.sha256(artifact).hexdigest())
    return x, artifact


def seed_attribution_drift(srv: Server) -> str:
    """A ModelExplainability monitor run of a model whose feature names are hostile."""
    x, artifact = hostile_model(srv, "attributed", 6)
    shifted = x.head(120).assign(**{HOSTILE[0]: 0.0})
    endpoint_with_traffic(srv, "attr-ep", "attributed", [{"name": h, "type": "Fractional"} for h in HOSTILE],
                          shifted, [{"pred": 0}] * len(shifted))
    with srv.client("publisher") as c:
        r = c.post("/api/v1/baselines", data={"type": "ModelExplainability", "model_group": "attributed",
                                              "model_version": "1", "model_format": "skops"},
                   files={"file": ("ref.csv", csv(x)), "model": ("m.skops", artifact)})
        assert r.status_code == 201, r.text
    return scheduled_run(srv, "attr-ep", "ModelExplainability", r.json()["id"])


def seed_quality(srv: Server) -> str:
    """Hostile class labels of a multiclass model (they name the confusion matrix's rows and columns)."""
    rng = np.random.default_rng(2)
    labels = rng.choice(HOSTILE, 300)
    val = pd.DataFrame({"label": labels, "prediction": np.where(rng.random(300) < 0.8, labels,
                                                                rng.choice(HOSTILE, 300))})
    with srv.client("publisher") as c:
        r = c.post("/api/v1/baselines", files={"file": ("v.csv", csv(val))}, data={
            "type": "ModelQuality", "problem_type": "MulticlassClassification", "label": "label",
            "prediction": "prediction"})
        assert r.status_code == 201, r.text
        worse = val.assign(prediction=rng.choice(HOSTILE, 300))
        a = c.post("/api/v1/analyses", data={"baseline_id": r.json()["id"]}, files={"file": ("c.csv", csv(worse))})
        assert a.status_code == 201 and a.json()["status"] == "CompletedWithViolations", a.text
    return str(a.json()["id"])


def seed_bias(srv: Server) -> str:
    """Hostile facet name, facet values and label name; attached to a version, so the verdict shows too."""
    group_and_version(srv, "credit")
    rng = np.random.default_rng(3)
    n = 1000
    facet, label = HOSTILE[2], HOSTILE[3]
    df = pd.DataFrame({facet: rng.choice(HOSTILE[:2], n), "income": rng.normal(size=n),
                       label: rng.integers(0, 2, n)})
    df["pred"] = np.where((df[facet] == HOSTILE[0]) & (rng.random(n) < 0.5), 0, df[label])
    cfg = {"label": label, "label_values_or_threshold": [1], "predicted_label": "pred",
           "facet": [{"name_or_index": facet, "value_or_threshold": [HOSTILE[0]]}],
           "methods": {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": ["DPPL", "DI"]}}}
    with srv.client("publisher") as c:
        r = c.post("/api/v1/clarify/bias", data={"model_group": "credit", "model_version": "1"},
                   files={"file": ("d.csv", csv(df)), "config": ("c.json", json.dumps(cfg).encode())})
        assert r.status_code == 200, r.text
    return str(r.headers["x-mlgov-analysis-id"])


def seed_explanations(srv: Server) -> str:
    """A model trained on hostile feature names: they rank the attributions."""
    x, artifact = hostile_model(srv, "explained", 4)
    with srv.client("publisher") as c:
        r = c.post("/api/v1/clarify/explain", data={"model_group": "explained", "model_version": "1",
                                                    "model_format": "skops"},
                   files={"file": ("d.csv", csv(x.head(60))), "model": ("model.skops", artifact)})
        assert r.status_code == 200, r.text
    return str(r.headers["x-mlgov-analysis-id"])


def seed_compliance(srv: Server) -> str:
    """Hostile group description, metric names, model card fields and markdown, approval comment."""
    card = {"status": "Draft", "content": {"intended_use": HOSTILE[0], HOSTILE[1]: [HOSTILE[2]]},
            "markdown": f"# Risks\n{HOSTILE[3]} {HOSTILE[1]}"}
    group_and_version(srv, "governed", metrics={HOSTILE[1]: 0.91, HOSTILE[2]: 0.5}, model_card=card)
    with srv.client("approver") as c:
        r = c.post("/api/v1/model-groups/governed/versions/1/approval",
                   json={"status": "Approved", "comment": HOSTILE[2]})
        assert r.status_code == 200, r.text
    return "governed"


@pytest.fixture(scope="module")
def reports(server: Server) -> dict[str, tuple[str, str]]:
    """Each report kind → (route template, URL of the report made from hostile values)."""
    drift, captured, quality = seed_drift_file(server), seed_drift_captured(server), seed_quality(server)
    bias, shap, group = seed_bias(server), seed_explanations(server), seed_compliance(server)
    bias_drift, attribution_drift = seed_bias_drift(server), seed_attribution_drift(server)
    return {
        "drift": ("/api/v1/analyses/{analysis_id}/report", f"/api/v1/analyses/{drift}/report"),
        "drift-json-route": ("/api/v1/analyses/{analysis_id}", f"/api/v1/analyses/{drift}?format=html"),
        "captured": ("/api/v1/analyses/{analysis_id}/report", f"/api/v1/analyses/{captured}/report"),
        "quality": ("/api/v1/analyses/{analysis_id}/report", f"/api/v1/analyses/{quality}/report"),
        "bias": ("/api/v1/clarify/reports/{analysis_id}", f"/api/v1/clarify/reports/{bias}"),
        "explanations": ("/api/v1/clarify/reports/{analysis_id}", f"/api/v1/clarify/reports/{shap}"),
        "compliance": ("/api/v1/audit/report", f"/api/v1/audit/report?model_group={group}&format=html"),
        "bias-drift": ("/api/v1/analyses/{analysis_id}/report", f"/api/v1/analyses/{bias_drift}/report"),
        "attribution-drift": ("/api/v1/analyses/{analysis_id}/report",
                              f"/api/v1/analyses/{attribution_drift}/report"),
    }


def fetch(srv: Server, reports: dict[str, tuple[str, str]], kind: str) -> httpx.Response:
    with srv.client("viewer") as c:
        return c.get(reports[kind][1])


@pytest.mark.parametrize("kind", ["drift", "drift-json-route"])
def test_drift_report_of_hostile_feature_names_and_categories(server, reports, tmp_path, kind):
    dom = check_page(fetch(server, reports, kind), tmp_path, shown=[HOSTILE[0], HOSTILE[2]])
    assert sum(t == "svg" for t, _ in dom.tags) == 3          # the charts are there, as SVG
    assert sum(t == "title" for t, _ in dom.tags) > 6         # one tooltip per bar


def test_drift_report_of_hostile_captured_categories(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "captured"), tmp_path, shown=[])
    text = "".join(dom.text)      # each category is a bar's tooltip, the full hostile value as text
    assert all(f"current {h}:" in text and f"baseline {h}:" in text for h in HOSTILE)


def test_model_quality_report_of_hostile_class_labels(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "quality"), tmp_path, shown=HOSTILE)
    text = " ".join(dom.text)
    assert "weighted_f1" in text and "Confusion matrices" in text and "Metrics against the baseline" in text


def test_bias_report_of_hostile_facet_values_and_names(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "bias"), tmp_path, shown=[HOSTILE[2], HOSTILE[3], HOSTILE[0]])
    assert "Post-training (model) bias" in " ".join(dom.text)


def test_explanation_report_of_hostile_feature_names(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "explanations"), tmp_path, shown=HOSTILE)
    bars = [a for t, a in dom.tags if t == "rect"]
    assert len(bars) == 4 and all(0 <= float(a["width"] or 0) <= 300 for a in bars)   # attribution bars as SVG


def test_compliance_report_of_hostile_card_metrics_and_comments(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "compliance"), tmp_path, shown=HOSTILE)
    text = " ".join(dom.text)
    assert "Model card (Draft)" in text and "0.91" in text


def test_bias_drift_report_of_hostile_facet_names_and_values(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "bias-drift"), tmp_path, shown=[HOSTILE[0], HOSTILE[2]])
    text = " ".join(dom.text)
    assert "Bias-drift analysis" in text and "allowed range" in text and "Data-quality" not in text


def test_attribution_drift_report_of_hostile_feature_names(server, reports, tmp_path):
    dom = check_page(fetch(server, reports, "attribution-drift"), tmp_path, shown=HOSTILE)
    text = " ".join(dom.text)
    assert "Feature-attribution drift analysis" in text and "nDCG" in text
    assert sum(t == "rect" for t, _ in dom.tags) == 8              # baseline and window bar per feature


class AuthForwarder:
    """A browser cannot send our Bearer header, so Chromium talks to this forwarder, which adds the viewer's key
    and passes the server's answer back untouched (headers included, so the browser enforces the real CSP)."""

    def __init__(self, srv: Server) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                r = httpx.get(srv.url + self.path, headers=srv.keys["viewer"], timeout=60)
                seen.append((self.path, r.status_code))
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AuthForwarder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("kind", ["drift", "quality", "bias", "explanations", "compliance", "bias-drift",
                                  "attribution-drift"])
def test_reports_load_under_the_csp_with_their_stylesheet(server, reports, tmp_path, kind):
    """Served (not from a file), each report breaks no CSP rule: no inline script, no style but its own
    stylesheet, which the policy allows by hash (Chromium logs a violation if the hash and the text differ)."""
    with AuthForwarder(server) as fwd:
        profile = tmp_path / "profile"
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=5000", "--dump-dom", fwd.url + reports[kind][1]]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "</html>" in out.stdout
    violations = [line for line in out.stderr.splitlines() if "Content Security Policy" in line]
    assert violations == []
    loaded = [path for path, _ in fwd.seen if path != "/favicon.ico"]   # the browser asks for that by itself
    assert loaded == [reports[kind][1]]                                   # one self-contained page
    assert not any("data-pwned" in attrs for _, attrs in Dom(out.stdout).tags)


# --- headers on every HTML route, every response ---------------------------------------------------------------

# Every route that answers text/html. The inventory test below fails when a new one appears, so it gets listed
# (and exercised) here.
HTML_ROUTES = {
    "/docs", "/redoc", "/api/v1/audit/report", "/api/v1/analyses/{analysis_id}",
    "/api/v1/analyses/{analysis_id}/report", "/api/v1/clarify/reports/{analysis_id}",
}


def test_html_route_inventory():
    """Routes that can answer HTML: in the OpenAPI document, a ``format`` offering html or a text/html response;
    outside it (the docs pages), routes declared to return an HTMLResponse."""
    import typing

    from fastapi.responses import HTMLResponse
    from fastapi.routing import APIRoute

    from mlgov.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(Path("/nonexistent")), check_schema=False)
    found = set()
    for path, ops in app.openapi()["paths"].items():
        for op in ops.values():
            formats = [p["schema"].get("enum", []) for p in op.get("parameters", []) if p["name"] == "format"]
            html_body = any("text/html" in r.get("content", {}) for r in op.get("responses", {}).values())
            if html_body or any("html" in f for f in formats):
                found.add(path)
    for route in app.routes:
        if isinstance(route, APIRoute) and typing.get_type_hints(route.endpoint).get("return") is HTMLResponse:
            found.add(route.path)
    assert found == HTML_ROUTES


def test_every_html_route_sends_the_csp_and_nosniff(server, reports):
    """One real request per HTML route (the reports made from hostile values, and the docs)."""
    seen = set()
    with server.client("viewer") as c:
        for route, url in [*reports.values(), ("/docs", "/docs"), ("/redoc", "/redoc")]:
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (url, r.text)
            assert_security_headers(r)
            seen.add(route)
    assert seen == HTML_ROUTES


def test_security_headers_on_every_kind_of_response(server):
    """nosniff (and the rest) also on JSON, problem+json, static files and 404s."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        responses = [c.get("/healthz"), c.get("/openapi.json"), c.get("/api/v1/model-groups"),
                     c.get("/api/v1/model-groups", headers=server.keys["viewer"]), c.get("/nope"),
                     c.get("/static/docs/swagger-init.js"), c.get("/static/nope.js")]
    assert [r.status_code for r in responses] == [200, 200, 401, 200, 404, 200, 404]
    for r in responses:
        assert_security_headers(r)


def test_security_headers_even_on_an_unexpected_500(tmp_path):
    """The headers wrap the whole app, Starlette's last-resort error handler included."""
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path), check_schema=False)

    @app.get("/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/broken")
    assert r.status_code == 500
    assert_security_headers(r)


# --- offline API docs ------------------------------------------------------------------------------------------

class Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self._in_script = True
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(str(a[key]))
        assert not any(k.startswith("on") or k == "style" for k in a), (tag, a)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


TYPES = {".js": "text/javascript", ".css": "text/css"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_same_origin_assets(server, page):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        html = c.get(page).text
        p = Assets()
        p.feed(html)
        assert p.inline_scripts == 0 and p.urls
        assert all(u.startswith("/static/") for u in p.urls), p.urls       # nothing from a CDN
        for u in p.urls:
            r = c.get(u)
            assert r.status_code == 200, u
            assert r.headers["content-type"].split(";")[0] == TYPES[Path(u).suffix], (u, r.headers)
            assert r.headers["x-content-type-options"] == "nosniff"
            assert len(r.content) > 200


def _browse(url: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    """Chromium with every host but 127.0.0.1 unresolvable, so a page that needs the internet fails here."""
    profile = tmp_path / "profile"
    shot = tmp_path / "page.png"
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=20000",
               f"--user-data-dir={profile}", "--window-size=1200,900"]
    dom = subprocess.run([chromium(), *FLAGS, *offline, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    subprocess.run([chromium(), *FLAGS, *offline, f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=True)
    return dom.stdout, shot


def test_swagger_ui_renders_the_operations_offline(server, tmp_path):
    dom, shot = _browse(f"{server.url}/docs", tmp_path)
    d = Dom(dom)
    paths = {a.get("data-path") for t, a in d.tags if t == "span" and "opblock-summary-path" in (a.get("class") or "")}
    assert {"/healthz", "/api/v1/model-groups", "/api/v1/audit/report", "/api/v1/clarify/explain"} <= paths
    assert len(paths) > 40
    assert shot.stat().st_size > 20000


def test_redoc_renders_offline(server, tmp_path):
    dom, shot = _browse(f"{server.url}/redoc", tmp_path)
    text = " ".join(Dom(dom).text)
    assert "Governed model registry, lineage, monitoring and audit." in text
    assert "/api/v1/model-groups/{group}/versions" in text and "registry" in text
    assert shot.stat().st_size > 20000


def test_vendored_assets_ship_with_their_licences_and_versions():
    vendor = Path(__file__).resolve().parents[1] / "mlgov" / "static" / "vendor"
    readme = (vendor / "README.md").read_text()
    for name, bundle, version in (("swagger-ui", "swagger-ui-bundle.js", "5.35.0"),
                                  ("redoc", "redoc.standalone.js", "2.5.4")):
        assert (vendor / name / "LICENSE").stat().st_size > 500
        assert f"{version} |" in readme and (vendor / name / bundle).stat().st_size > 500_000
