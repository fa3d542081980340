"""The compliance report of a model group shows, per version, its bias verdicts, the evidence each approval decision
used (the bias reports it assessed and what was attached at that moment), its alerts and monitoring runs: facts
that monitor and Clarify hand to registry through providers composed by the app."""

from __future__ import annotations

import datetime as dt
import json
import re

from tests.clarify.test_monitors import T0, capture, population, setup
from tests.helpers import approve
from tests.monitor.test_api import csv_bytes, make_baseline

CFG = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
       "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
       "methods": {"post_training_bias": {"methods": ["DPPL", "DI"]}}}


def attach_drift_baseline(client, keys, seed: int) -> str:
    bid = make_baseline(client, keys, population(400, seed, 0.0)[["age", "income", "sex"]])
    r = client.post("/api/v1/model-groups/credit/versions/1/drift-baseline", json={"baseline_id": bid},
                    headers=keys("publisher"))
    assert r.status_code == 200, r.text
    return bid


def test_compliance_report_shows_bias_verdicts_decision_evidence_and_alerts(client, keys):
    setup(client, keys)                                           # credit/1 served by endpoint credit-prod
    superseded, in_force = attach_drift_baseline(client, keys, 1), attach_drift_baseline(client, keys, 2)
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                    data={"model_group": "credit", "model_version": "1"},
                    files={"file": ("d.csv", csv_bytes(population(800, 3, favour=0.5))),
                           "config": ("c.json", json.dumps(CFG).encode())})
    assert r.status_code == 200, r.text
    report_id = r.headers["x-mlgov-analysis-id"]
    assert approve(client, keys("approver"), "credit", 1).status_code == 200
    later = attach_drift_baseline(client, keys, 4)                # after the decision: not what it used

    r = client.post("/api/v1/baselines", headers=keys("publisher"), data={"type": "ModelBias"},
                    files={"file": ("v.csv", csv_bytes(population(3000, 5, favour=0.05))),
                           "config": ("c.json", json.dumps(CFG).encode())})
    client.post("/api/v1/monitoring-schedules", headers=keys("publisher"), json={
        "name": "credit-bias", "endpoint": "credit-prod", "type": "ModelBias", "schedule": "hourly",
        "baseline_id": r.json()["id"]})
    capture(client, keys, population(1500, 6, favour=0.6), T0, 6)
    run = client.post("/api/v1/monitoring-schedules/credit-bias/run", headers=keys("publisher"),
                      json={"start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}).json()
    assert run["status"] == "CompletedWithViolations", run

    rep = client.get("/api/v1/audit/report", params={"model_group": "credit"}, headers=keys("viewer")).json()
    v = rep["versions"][0]
    verdict = v["evidence"][0]
    assert verdict["analysis_id"] == report_id and not verdict["passed"]
    assert any(f.startswith("sex=f: DPPL=") for f in verdict["failures"])
    decision = v["decisions"][0]
    assert decision["to"] == "Approved" and [e["analysis_id"] for e in decision["evidence"]] == [report_id]
    assert [(a["kind"], a["id"]) for a in decision["attached"]] == [("drift baseline", in_force)]
    assert [a["id"] for a in v["attachments"]] == [superseded, in_force, later]
    assert v["attachments"][0]["until"] == v["attachments"][1]["at"] and v["attachments"][2]["until"] is None
    assert v["alerts"] and {(a["check"], a["status"], a["endpoint"], a["schedule"]) for a in v["alerts"]} == \
        {("bias_drift_check", "open", "credit-prod", "credit-bias")}   # one alert per metric and facet group
    assert "DPPL (sex=f)" in [s for a in v["alerts"] for s in a["subjects"]]
    assert v["monitoring"] == [{"endpoint": "credit-prod", "kind": "ModelBias", "runs": 1, "with_violations": 1,
                                "failed": 0, "last": {**v["monitoring"][0]["last"], "analysis_id": run["analysis_id"],
                                                      "status": "CompletedWithViolations"}}]

    html = client.get("/api/v1/audit/report", params={"model_group": "credit", "format": "html"},
                      headers=keys("viewer")).text
    assert "<h3>Bias verdicts</h3>" in html and '<span class="bad">failed</span>' in html
    assert all(f in html for f in verdict["failures"])
    used = re.search(r'<td class="used">(.*?)</td>', html, re.S)
    assert used is not None and report_id in used.group(1) and in_force in used.group(1)
    assert superseded not in used.group(1) and later not in used.group(1)
    assert f"<h3>Alerts ({len(v['alerts'])})</h3>" in html and "bias_drift_check" in html and "credit-bias" in html
    assert "Bias-drift monitoring on endpoint" in html and "1 with drift" in html

    before = client.get("/api/v1/audit/report", headers=keys("viewer"), params={
        "model_group": "credit", "to": (T0 - dt.timedelta(days=3650)).isoformat()}).json()
    assert before["versions"] == []


def test_a_window_without_alerts_says_so(client, keys):
    setup(client, keys)
    html = client.get("/api/v1/audit/report", params={"model_group": "credit", "format": "html"},
                      headers=keys("viewer")).text
    assert "<h3>Alerts (0)</h3>" in html and "no alerts in this window" in html and "Bias verdicts" not in html


def test_the_report_flags_table_rows_that_disagree_with_the_audit_chain_and_follows_renames(client, keys, db):
    """An operator's trial edited registry_approval_decisions in the database (actor 'dana', an invented comment):
    the report showed it under "audit_chain: ok" (the chain hashes events, not that table). Each registration,
    decision and stage move is now compared with the event the chain recorded for it, under every name the
    group had (a rename keeps its history; a group later created under the old name does not inherit it)."""
    from sqlalchemy import text

    from tests.helpers import create_group, register, signed_in

    pub, appr = keys("publisher"), keys("approver")
    create_group(client, pub, "old-name")
    register(client, pub, "old-name", 1)
    assert approve(client, appr, "old-name", 1).status_code == 200
    assert client.post("/api/v1/model-groups/old-name/versions/1/stage", json={"stage": "Staging"},
                       headers=appr).status_code == 200
    r = client.post("/api/2.0/mlflow/registered-models/rename", json={"name": "old-name", "new_name": "churn"},
                    headers=pub)
    assert r.status_code == 200, r.text
    create_group(client, pub, "old-name")              # a new group under the old name starts clean
    register(client, pub, "old-name", 1)

    def report(group: str) -> dict:
        r = client.get("/api/v1/audit/report", params={"model_group": group}, headers=keys("viewer"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    for group in ("churn", "old-name"):
        rep = report(group)
        assert rep["tables_agree_with_chain"] is True and rep["versions"][0]["four_eyes_ok"] is True, rep
        assert not any("NOT THE RECORD" in w for w in rep["versions"][0]["warnings"])
    # the console's audit log, filtered by group, follows the rename the same way (the trial saw only
    # model_group.renamed under the new name, and the old model's approval under the reused name)
    console = signed_in(client.app, keys.plain["viewer"])
    renamed = console.get("/console/audit", params={"group": "churn"}).text
    reused = console.get("/console/audit", params={"group": "old-name"}).text
    assert "version.approval_changed" in renamed and "version.stage_changed" in renamed
    assert "model_group.renamed" in renamed and "version.registered" in reused
    assert "version.approval_changed" not in reused and "model_group.renamed" not in reused

    # so does the API's log of a group (/audit/events matches one subject id exactly: before the rename, the
    # history lies under "old-name/1"), with the same filters as /audit/events
    def actions(group: str, **params: str) -> list[str]:
        r = client.get(f"/api/v1/model-groups/{group}/audit-events", params=params, headers=keys("viewer"))
        assert r.status_code == 200, r.text
        return [e["action"] for e in r.json()["items"]]

    assert actions("churn") == ["model_group.created", "version.registered", "version.approval_changed",
                                "version.stage_changed", "model_group.renamed"]
    assert actions("old-name") == ["model_group.created", "version.registered"]
    assert actions("churn", action="version.*", actor="test-approver") == ["version.approval_changed",
                                                                           "version.stage_changed"]
    assert actions("never-was") == []                  # read as a deleted group's name: nothing under it
    for path in ("/api/v1/audit/events", "/api/v1/model-groups/churn/audit-events"):   # as the report refuses it
        r = client.get(path, params={"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
                       headers=keys("viewer"))
        assert r.status_code == 422 and "at or after it ends" in r.json()["detail"], r.text
    assert client.get("/api/v1/model-groups/churn/audit-events", headers=pub).status_code == 403   # not an auditor
    assert client.get("/api/v1/model-groups/churn/audit-events", params={"subject": "churn/1"},
                      headers=keys("viewer")).status_code == 422     # /audit/events' subject is not a filter here
    with db.session_scope() as s:
        s.execute(text("UPDATE registry_approval_decisions SET actor = 'dana', comment = 'reviewed holdout AUC'"))
    rep = report("churn")
    assert rep["audit_chain"]["ok"] is True        # the chain itself was not touched …
    assert rep["tables_agree_with_chain"] is False and rep["versions"][0]["four_eyes_ok"] is False
    warning = rep["versions"][0]["warnings"][0]    # … but the report no longer vouches for the edited row
    assert warning.startswith("NOT THE RECORD: decision 1 reads ('dana', 'Approved', 'reviewed holdout AUC')")
    assert "'test-approver', 'Approved', 'looks good'" in warning
    html = client.get("/api/v1/audit/report", params={"model_group": "churn", "format": "html"},
                      headers=keys("viewer")).text
    assert "NOT THE RECORD" in html


def test_a_window_that_ends_before_it_starts_is_refused_and_a_pager_past_the_end_says_none(app, client, keys):
    """A console trial: a report from 2030 to 2020 rendered as if meaningful, and ?offset=99999999 on the audit
    log read "100000000–895 of 895 events"."""
    from console.web import page_of
    from tests.helpers import assert_problem, create_group, signed_in

    create_group(client, keys("publisher"), "churn")
    assert_problem(client.get("/api/v1/audit/report", params={"model_group": "churn", "from": "2030-01-01T00:00:00Z",
                                                               "to": "2020-01-01T00:00:00Z"}, headers=keys("viewer")),
                   422, "starts", "at or after it ends")
    page = signed_in(app, keys.plain["viewer"]).get("/console/audit/report",
                                                    params={"group": "churn", "since": "2030-01-01T00:00",
                                                            "until": "2020-01-01T00:00"}, follow_redirects=True)
    assert "at or after it ends" in page.text
    assert page_of(99_999_999, 50, 895) == {"offset": 99_999_999, "limit": 50, "total": 895, "first": 0, "last": 0,
                                            "prev": 845, "next": None}
    assert page_of(50, 50, 895)["first"] == 51 and page_of(0, 50, 0)["first"] == 0


def test_the_report_names_former_names_the_status_at_the_window_end_and_an_altered_event(client, keys, db):
    """An auditor's trial: the report of a renamed group never gave its former name, which the audit log's events
    carry; a report whose window ended between registration and approval showed the version Approved with no
    decision in it; and an audit event edited in the database was taken for the record, the report blaming the
    registry's tables for the difference."""
    from sqlalchemy import text

    from tests.helpers import create_group, register

    pub = keys("publisher")
    create_group(client, pub, "tour")
    register(client, pub, "tour", 1)
    between = dt.datetime.now(dt.UTC)
    assert approve(client, keys("approver"), "tour", 1).status_code == 200
    assert client.post("/api/2.0/mlflow/registered-models/rename", json={"name": "tour", "new_name": "tour-renamed"},
                       headers=pub).status_code == 200

    def report(**params: str) -> dict:
        r = client.get("/api/v1/audit/report", params={"model_group": "tour-renamed", **params},
                       headers=keys("viewer"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    rep = report(to=between.isoformat())
    assert [n["name"] for n in rep["names"]] == ["tour-renamed", "tour"] and rep["names"][0]["until"] is None
    v = rep["versions"][0]
    assert v["decisions"] == [] and v["approval_status"] == "Approved"
    assert v["at_end"]["approval_status"] == "PendingManualApproval"        # what it was when the window ended
    assert report()["versions"][0]["at_end"]["approval_status"] == "Approved"
    html = client.get("/api/v1/audit/report", params={"model_group": "tour-renamed", "to": between.isoformat(),
                                                      "format": "html"}, headers=keys("viewer")).text
    assert "Formerly named: <strong>tour</strong>" in html and "At the window's end" in html
    with db.session_scope() as s:
        s.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE action = 'version.approval_changed'"))
    rep = report()
    assert rep["audit_chain"]["ok"] is False
    warnings = rep["versions"][0]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("ALTERED AUDIT EVENT: the chain's event for decision 1 (seq ")
    assert "'mallory'" in warnings[0] and "the registry's tables were changed" not in warnings[0]
    # nor when the edited row is re-hashed without the key and marked legacy (a stranger's review): as verify
    # does, an unkeyed row after keyed ones is not genuine
    from sqlalchemy import select

    from mlgov.audit import LEGACY, AuditEvent, compute_hash
    with db.session_scope() as s:
        ev = s.scalars(select(AuditEvent).where(AuditEvent.action == "version.approval_changed")).one()
        seq, rehashed = ev.seq, compute_hash(ev)
    with db.session_scope() as s:
        s.execute(text("UPDATE audit_events SET chain = :c, hash = :h WHERE seq = :s"),
                  {"c": LEGACY, "h": rehashed, "s": seq})
    warnings = report()["versions"][0]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("ALTERED AUDIT EVENT"), warnings


def test_a_version_decided_then_deleted_stays_in_the_report_from_the_chain(app, client, keys):
    """An auditor's trial: tour/2 was rejected, then its registrant deleted it; the report listed the other
    versions only, said the tables agreed with the chain, and nothing of tour/2, its rejection or its deletion
    remained (the decision row left with the version)."""
    from tests.helpers import create_group, register, signed_in

    pub = keys("publisher")

    def rename(old: str, new: str) -> None:
        r = client.post("/api/2.0/mlflow/registered-models/rename", json={"name": old, "new_name": new}, headers=pub)
        assert r.status_code == 200, r.text

    # registered under one name, rejected under the next, deleted after a rename away and back (a stranger's
    # review: only events under the name at deletion were read, and one period per name was kept)
    create_group(client, pub, "old-tour")
    register(client, pub, "old-tour", 1)
    register(client, pub, "old-tour", 2)
    rename("old-tour", "tour")
    r = client.post("/api/v1/model-groups/tour/versions/2/approval", headers=keys("approver"),
                    json={"status": "Rejected", "comment": "leaks the label"})
    assert r.status_code == 200, r.text
    rename("tour", "tour-b")
    rename("tour-b", "tour")
    r = client.request("DELETE", "/api/2.0/mlflow/model-versions/delete", json={"name": "tour", "version": "2"},
                       headers=pub)
    assert r.status_code == 200, r.text
    rep = client.get("/api/v1/audit/report", params={"model_group": "tour"}, headers=keys("viewer")).json()
    assert [v["version"] for v in rep["versions"]] == [1]
    [gone] = rep["deleted_versions"]
    assert (gone["name"], gone["version"], gone["registered_by"], gone["deleted_by"]) == (
        "tour", 2, "test-publisher", "test-publisher")
    assert [(d["to"], d["by"], d["comment"]) for d in gone["decisions"]] == [
        ("Rejected", "test-approver", "leaks the label")]
    assert gone["status_when_deleted"] == "Rejected" and gone["warnings"] == []
    html = client.get("/api/v1/audit/report", params={"model_group": "tour", "format": "html"},
                      headers=keys("viewer")).text
    assert "Deleted versions" in html and "leaks the label" in html
    page = signed_in(app, keys.plain["viewer"]).get("/console/audit/report", params={"group": "tour"}).text
    assert "Deleted versions" in page and "tour/2" in page
    # a window that ended before the version was registered does not list it
    earlier = client.get("/api/v1/audit/report", params={"model_group": "tour", "to": "2001-01-01T00:00:00Z"},
                         headers=keys("viewer"))
    assert earlier.status_code == 200 and earlier.json()["deleted_versions"] == []
