"""The product's story in one test: breach → alert → one signed retraining request → v2 → lineage → audit."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgov.app import create_app
from monitor import jobs
from tests.conftest import make_settings
from tests.helpers import version_body
from tests.infra import LiveServer, free_port
from tests.monitor.test_api import FEATURES, csv_bytes, frame, gt_record, record
from tests.test_live import _keys

pytestmark = pytest.mark.live
SECRET = "retrain-pipeline-secret-42"


class Pipeline:
    """A retraining pipeline: verifies the signature, then registers v2 naming the alert."""

    def __init__(self, port: int, api: str, key: dict[str, str]) -> None:
        self.port, self.api, self.key = port, api, key
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                sig = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(sig, self.headers["X-Mlgov-Signature"])
                outer.requests.append({"body": json.loads(raw), "ok": ok, "event": self.headers["X-Mlgov-Event"]})
                self.send_response(202 if ok else 401)
                self.end_headers()
                if ok:
                    alert = json.loads(raw)["data"]["alert"]
                    threading.Thread(target=outer.retrain, args=(alert,)).start()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def retrain(self, alert: str) -> None:
        body = version_body(2, triggered_by_alert=alert, training_data=["s3://data/churn/retrain.csv"])
        httpx.post(f"{self.api}/api/v1/model-groups/churn/versions", json=body, headers=self.key, timeout=30)


def test_closed_loop(live_db, tmp_path):
    keys = _keys(live_db)
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1, webhook_backoff_base_s=0.2,
                             outbound_allow="127.0.0.1")
    app = create_app(settings, db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url + "/api/v1", timeout=60) as c:
        pipeline = Pipeline(free_port(), srv.url, keys["pub"])
        pub, appr, admin = keys["pub"], keys["appr"], keys["admin"]
        assert c.post("/model-groups", json={"name": "churn"}, headers=pub).status_code == 201
        assert c.post("/model-groups/churn/versions", json=version_body(1), headers=pub).status_code == 201
        assert c.post("/model-groups/churn/versions/1/approval", json={"status": "Approved", "comment": "ok"},
                      headers=appr).json()["approval_status"] == "Approved"
        bid = c.post("/baselines", files={"file": ("t.csv", csv_bytes(frame(2000)))}, headers=pub).json()["id"]
        c.post("/model-groups/churn/versions/1/drift-baseline", json={"baseline_id": bid}, headers=pub)
        c.put("/model-groups/churn/retraining-trigger", headers=admin,
              json={"url": f"http://127.0.0.1:{pipeline.port}/retrain", "secret": SECRET, "cooldown_seconds": 3600})
        c.post("/endpoints", headers=pub, json={"name": "churn-prod", "model_group": "churn", "model_version": 1,
                                                "schema": {"features": FEATURES}})
        r = c.post("/monitoring-schedules", headers=pub, json={
            "name": "churn-dq", "endpoint": "churn-prod", "type": "DataQuality", "schedule": "* * * * *",
            "baseline_id": bid, "window": {"start": "-PT1M", "end": "PT0S"}})
        assert r.status_code == 201, r.text
        first = dt.datetime.fromisoformat(r.json()["next_run_at"])
        store = app.state.get_store()

        def traffic(minute: int, shift: float, seed: int) -> None:
            t = first + dt.timedelta(minutes=minute - 1)
            rows = frame(300, shift=shift, seed=seed)
            recs = [record(seed * 1000 + i, t + dt.timedelta(seconds=i / 10), tuple(rows.iloc[i]))
                    for i in range(300)]
            c.post("/endpoints/churn-prod/capture", json=recs, headers=keys["admin"])

        def run_minute(minute: int) -> dict[str, Any]:
            jobs.tick(live_db, store, first + dt.timedelta(minutes=minute, seconds=5))   # injected clock
            return c.get("/monitoring-schedules/churn-dq/executions", headers=pub).json()["items"][0]

        traffic(0, 0.0, 1)
        assert run_minute(0)["status"] == "Completed"
        traffic(1, 30.0, 2)
        c.post("/endpoints/churn-prod/ground-truth", headers=keys["admin"],
               json=[gt_record(f"inf-{2000 + i}", "1") for i in range(10)])
        assert run_minute(1)["status"] == "CompletedWithViolations"
        alerts = c.get("/alerts", params={"status": "open"}, headers=pub).json()["items"]
        assert len(alerts) == 1
        alert = alerts[0]["id"]
        traffic(2, 30.0, 3)
        assert run_minute(2)["status"] == "CompletedWithViolations"      # breaches again: no second request
        deadline = time.time() + 30
        v2 = None
        while time.time() < deadline and v2 is None:
            lst = c.get("/model-groups/churn/versions", headers=pub).json()["items"]
            v2 = next((v for v in lst if v["version"] == 2), None)
            time.sleep(0.2)
        time.sleep(1.0)
        assert len(pipeline.requests) == 1 and pipeline.requests[0]["ok"]
        req = pipeline.requests[0]["body"]
        assert pipeline.requests[0]["event"] == "retraining.requested"
        assert req["data"]["alert"] == alert and req["data"]["model_group"] == "churn"
        assert req["data"]["violations"] and req["data"]["window"]["start"]
        assert v2 is not None and v2["triggered_by_alert"] == alert
        assert v2["approval_status"] == "PendingManualApproval"
        # the pipeline's own key registered v2, so it cannot approve it: four-eyes still holds
        assert c.post("/model-groups/churn/versions/2/approval", json={"status": "Approved", "comment": "x"},
                      headers=pub).status_code == 403
        assert c.post("/model-groups/churn/versions/2/approval", json={"status": "Approved", "comment": "retrained"},
                      headers=appr).status_code == 200
        lineage = c.get("/lineage/actions", params={"type": "Alert"}, headers=pub).json()["items"]
        q = c.post("/lineage/query", headers=pub, json={"start": [lineage[0]["id"]], "direction": "Descendants"}).json()
        assert "mlgov://model-groups/churn/versions/2" in {v["uri"] for v in q["vertices"]}
        assert {"RetrainingRun"} <= {v["type"] for v in q["vertices"]}
        rep = c.get("/audit/report", params={"model_group": "churn"}, headers=admin).json()
        story = {v["version"]: v for v in rep["versions"]}
        assert story[2]["decisions"][0]["by"] == "appr" and story[1]["decisions"][0]["to"] == "Approved"
        actions = [e["action"] for e in c.get("/audit/events", params={"limit": 1000}, headers=admin).json()["items"]]
        for a in ("version.registered", "version.approval_changed", "baseline.created", "schedule.created",
                  "alert.opened", "retraining.requested", "retraining_trigger.set"):
            assert a in actions, a
        assert c.get("/audit/verify", headers=admin).json()["ok"] is True
        prom = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in text_string_to_metric_families(
            httpx.get(f"{srv.url}/metrics", headers=keys["admin"], timeout=60).text) for x in f.samples}
        last = (("schedule", "churn-dq"), ("status", "CompletedWithViolations"))
        assert prom["mlgov_execution_last_status", last] == 1
        assert prom["mlgov_alerts_open", (("check", "baseline_drift_check"), ("schedule", "churn-dq"))] == 1
        assert prom["mlgov_capture_records_total", (("endpoint", "churn-prod"),)] == 900
        drift = (("feature", "income"), ("method", "wasserstein"), ("schedule", "churn-dq"))
        assert ("mlgov_feature_drift", drift) in prom
        assert httpx.get(f"{srv.url}/metrics", timeout=60).status_code == 401
        pipeline.server.shutdown()
