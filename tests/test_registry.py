"""Registry API: groups, numbered versions, approvals (four-eyes), stages and history, on both backends."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from mlgov import names
from mlgov.audit import AuditEvent
from mlgov.events import OutboxEvent
from registry.orm import ModelGroup, ModelVersion
from tests.helpers import approve, assert_problem, create_group, register, sha, version_body


def test_group_create_get_list_filters(client, keys):
    g = create_group(client, keys("publisher"), "churn", tags={"team": "growth", "risk": "high"})
    assert g["name"] == "churn" and g["latest_version"] == 0
    assert [s["name"] for s in g["stage_config"]["stages"]] == ["Development", "Staging", "Production", "Archived"]
    create_group(client, keys("publisher"), "fraud", tags={"team": "risk"})
    create_group(client, keys("admin"), "churn-eu", tags={"team": "growth"})
    h = keys("viewer")
    assert client.get("/api/v1/model-groups/churn", headers=h).json()["tags"] == {"team": "growth", "risk": "high"}
    names = lambda r: [x["name"] for x in r.json()["items"]]  # noqa: E731
    assert names(client.get("/api/v1/model-groups?name_contains=CHURN", headers=h)) == ["churn", "churn-eu"]
    assert names(client.get("/api/v1/model-groups?tag=team=growth", headers=h)) == ["churn", "churn-eu"]
    assert names(client.get("/api/v1/model-groups?tag=team=growth&tag=risk=high", headers=h)) == ["churn"]
    r = client.get("/api/v1/model-groups?sort=-name&limit=2&offset=1", headers=h)
    assert names(r) == ["churn-eu", "churn"] and r.json()["total"] == 3
    assert_problem(client.post("/api/v1/model-groups", json={"name": "churn"}, headers=keys("publisher")), 409,
                   "already exists")
    assert_problem(client.get("/api/v1/model-groups/nope", headers=h), 404, "does not exist")
    assert_problem(client.get("/api/v1/model-groups?tag=novalue", headers=h), 422, "key=value")


def test_version_numbering_and_fields(client, keys):
    create_group(client, keys("publisher"), "churn")
    v1 = register(client, keys("publisher"), "churn", 1)
    v2 = register(client, keys("publisher"), "churn", 2, metadata={"team": "risk"})
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["approval_status"] == "PendingManualApproval" and v1["stage"] == "Development"
    assert v1["registered_by"] == "test-publisher"
    got = client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()
    for field in ("artifact_uri", "artifact_sha256", "metrics", "metadata", "training_data", "inference_spec",
                  "model_card", "training_job", "framework"):
        assert got[field] == v1[field]
    assert got["inference_spec"]["supported_content_types"] == ["text/csv"]
    assert got["model_card"]["markdown"] == "# Churn"
    h = keys("viewer")
    lst = client.get("/api/v1/model-groups/churn/versions?metadata=team=growth", headers=h).json()
    assert [v["version"] for v in lst["items"]] == [1]
    lst = client.get("/api/v1/model-groups/churn/versions?sort=version", headers=h).json()
    assert [v["version"] for v in lst["items"]] == [1, 2] and lst["total"] == 2
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = client.get("/api/v1/model-groups/churn/versions", params={"created_after": future}, headers=h)
    assert r.json()["total"] == 0
    r = client.get("/api/v1/model-groups/churn/versions", params={"created_before": future}, headers=h)
    assert r.json()["total"] == 2
    assert_problem(client.get("/api/v1/model-groups/churn/versions/9", headers=h), 404, "no version 9")
    assert_problem(client.get("/api/v1/model-groups/churn/versions/latest?status=Approved", headers=h), 404)
    # the list names a missing group (its id is a subquery of the count); a page past the end keeps the total
    assert_problem(client.get("/api/v1/model-groups/nope/versions", headers=h), 404, "does not exist")
    r = client.get("/api/v1/model-groups/churn/versions", params={"offset": 5}, headers=h)
    assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] == 2
    lst = client.get("/api/v1/model-groups/churn/versions", params={"limit": 1}, headers=h).json()
    assert lst["total"] == 2 and len(lst["items"]) == 1 and lst["items"][0]["metadata"] == {"team": "risk"}


def test_numbers_never_reused_after_failed_registration(client, keys, db):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    bad = version_body(2, metrics={"auc": "high"})
    assert client.post("/api/v1/model-groups/churn/versions", json=bad, headers=keys("publisher")).status_code == 422
    assert register(client, keys("publisher"), "churn", 3)["version"] == 2


def test_approval_flow_four_eyes_and_transitions(client, keys, db):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    # the registrant cannot decide, even holding a privileged role
    register(client, keys("admin"), "churn", 2)
    assert_problem(approve(client, keys("admin"), "churn", 2), 403, "four-eyes", "registered")
    # roles that may not decide
    for who in ("publisher2", "viewer", "ingest"):
        assert approve(client, keys(who), "churn", 1).status_code == 403
    r = approve(client, keys("approver"), "churn", 1)
    assert r.status_code == 200 and r.json()["approval_status"] == "Approved"
    assert r.json()["approval_description"] == "looks good"
    # Approved -> Approved is not a transition
    body = assert_problem(approve(client, keys("approver2"), "churn", 1), 409, "Rejected")
    assert body["allowed"] == ["Rejected"]
    # stale expectation
    assert_problem(approve(client, keys("approver2"), "churn", 1, "Rejected",
                           expected_status="PendingManualApproval"), 409, "not PendingManualApproval")
    assert approve(client, keys("approver2"), "churn", 1, "Rejected", expected_status="Approved").status_code == 200
    assert approve(client, keys("approver"), "churn", 1, "Approved").status_code == 200
    latest = client.get("/api/v1/model-groups/churn/versions/latest?status=Approved", headers=keys("viewer")).json()
    assert latest["version"] == 1
    hist = client.get("/api/v1/model-groups/churn/versions/1/approvals", headers=keys("viewer")).json()
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in hist] == [
        ("PendingManualApproval", "Approved", "test-approver"),
        ("Approved", "Rejected", "test-approver2"),
        ("Rejected", "Approved", "test-approver")]
    with db.session_scope() as s:
        decided = s.scalar(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.action == "version.approval_changed"))
        assert decided == 3
        types = list(s.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)))
    assert types.count("version.approval_changed") == 3 and "version.registered" in types


def test_comment_required_and_blank_rejected(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    r = client.post("/api/v1/model-groups/churn/versions/1/approval", json={"status": "Approved"},
                    headers=keys("approver"))
    assert_problem(r, 422, "comment")
    assert_problem(approve(client, keys("approver"), "churn", 1, comment="   "), 422, "blank")
    assert_problem(approve(client, keys("approver"), "churn", 1, status="Pending"), 422, "status")


def test_stages_exclusive_production_and_history(client, keys):
    create_group(client, keys("publisher"), "churn")
    for n in (1, 2):
        register(client, keys("publisher"), "churn", n)
    mv = lambda n, stage, who="approver", **kw: client.post(  # noqa: E731
        f"/api/v1/model-groups/churn/versions/{n}/stage", json={"stage": stage, **kw}, headers=keys(who))
    assert_problem(mv(1, "Production"), 409, "allowed stages")            # Development -> Production not allowed
    assert mv(1, "Staging", "publisher").status_code == 200               # publishers may move ungoverned stages
    assert_problem(mv(1, "Production"), 409, "only Approved")            # not approved yet
    assert_problem(mv(1, "Production", "publisher"), 403, "governed")    # publishers cannot enter Production
    assert_problem(mv(1, "Nowhere"), 422, "not configured")
    approve(client, keys("approver"), "churn", 1)
    assert mv(1, "Production").json()["stage"] == "Production"
    t_v1_live = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    approve(client, keys("approver"), "churn", 2)
    mv(2, "Staging")
    assert_problem(mv(2, "Staging", expected_stage="Development"), 409)
    r = mv(2, "Production", comment="better AUC")
    assert r.status_code == 200
    h = keys("viewer")
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=h).json()["stage"] == "Archived"
    assert client.get("/api/v1/model-groups/churn/stages/Production", headers=h).json()["versions"] == [2]
    at = client.get("/api/v1/model-groups/churn/stages/Production", params={"at": t_v1_live.isoformat()}, headers=h)
    assert at.json()["versions"] == [1]
    hist = client.get("/api/v1/model-groups/churn/stage-history?version=1", headers=h).json()
    assert [(x["from_stage"], x["to_stage"], x["reason"]) for x in hist] == [
        (None, "Development", "registered"), ("Development", "Staging", "requested"),
        ("Staging", "Production", "requested"), ("Production", "Archived", "displaced")]
    # rejecting the production version moves it out (SageMaker's rollback case)
    approve(client, keys("approver2"), "churn", 2, "Rejected", comment="bias found")
    assert client.get("/api/v1/model-groups/churn/versions/2", headers=h).json()["stage"] == "Archived"
    assert client.get("/api/v1/model-groups/churn/stages/Production", headers=h).json()["versions"] == []
    assert client.get("/api/v1/model-groups/churn/versions", params={"stage": "Archived"},
                      headers=h).json()["total"] == 2
    for misspelt in (client.get("/api/v1/model-groups/churn/versions", params={"stage": "Prod"}, headers=h),
                     client.get("/api/v1/model-groups/churn/stages/Prod", headers=h)):
        assert_problem(misspelt, 422, "'Prod' is not configured")       # before: 200 and an empty list


def test_custom_stage_config_and_update_rules(client, keys):
    cfg = {"stages": [{"name": "Dev"}, {"name": "Live", "exclusive": True, "requires_approval": True,
                                        "displace_to": "Dev"}],
           "initial": "Dev", "transitions": {"Dev": ["Live"], "Live": ["Dev"]}}
    g = create_group(client, keys("publisher"), "custom", stage_config=cfg)
    assert g["stage_config"]["initial"] == "Dev"
    v = register(client, keys("publisher"), "custom", 1)
    assert v["stage"] == "Dev"
    bad = {**cfg, "initial": "Nope"}
    assert_problem(client.post("/api/v1/model-groups", json={"name": "bad", "stage_config": bad},
                               headers=keys("publisher")), 422, "initial stage")
    # publishers may edit description but not the governed stage configuration
    r = client.patch("/api/v1/model-groups/custom", json={"description": "new"}, headers=keys("publisher"))
    assert r.status_code == 200 and r.json()["description"] == "new"
    assert_problem(client.patch("/api/v1/model-groups/custom", json={"stage_config": cfg},
                                headers=keys("publisher")), 403, "admin")
    drop_dev = {"stages": [{"name": "Live"}], "initial": "Live", "transitions": {}}
    assert_problem(client.patch("/api/v1/model-groups/custom", json={"stage_config": drop_dev},
                                headers=keys("admin")), 409, "Dev")


def test_a_candidate_is_compared_with_the_serving_exclusive_stage(client, keys, db):
    """With an exclusive Canary before an exclusive, approval-governed Live, the version that serves is Live's:
    `approved_now` took the newest approved version in either."""
    from registry import service

    cfg = {"stages": [{"name": "Dev"}, {"name": "Live", "exclusive": True, "requires_approval": True},
                      {"name": "Canary", "exclusive": True, "requires_approval": True}],
           "initial": "Dev", "transitions": {"Dev": ["Canary", "Live"], "Canary": ["Live", "Dev"], "Live": ["Dev"]}}
    create_group(client, keys("admin"), "two-lives", stage_config=cfg)
    for n in (1, 2, 3):
        register(client, keys("publisher"), "two-lives", n)
    for n, stage in ((1, "Live"), (2, "Canary")):
        approve(client, keys("approver"), "two-lives", n)
        r = client.post(f"/api/v1/model-groups/two-lives/versions/{n}/stage", json={"stage": stage},
                        headers=keys("approver"))
        assert r.status_code == 200, r.text
    approve(client, keys("approver"), "two-lives", 3)   # the newest approved: in Dev
    with db.session_scope(write=False) as s:
        group = service.get_group(s, "two-lives")
        # both exclusive stages require approval: the later in the configuration (Canary) ranks first
        assert service.approved_now(s, [group.id])[group.id].version == 2
    r = client.post("/api/v1/model-groups/two-lives/versions/2/stage", json={"stage": "Dev"}, headers=keys("approver"))
    assert r.status_code == 200, r.text
    with db.session_scope(write=False) as s:
        group = service.get_group(s, "two-lives")
        assert service.approved_now(s, [group.id])[group.id].version == 1   # Live's, not the newest approved v3


def test_a_publisher_cannot_make_or_empty_an_ungoverned_production(client, keys):
    """From a registry trial: a publisher created a group whose exclusive Production took unapproved versions and
    moved their own pending version into it (PATCH already refused that configuration, creation did not); and any
    publisher could take the Production version out of Production."""
    loose = {"stages": [{"name": "Development"}, {"name": "Production", "exclusive": True}],
             "initial": "Development", "transitions": {"Development": ["Production"], "Production": ["Development"]}}
    assert_problem(client.post("/api/v1/model-groups", json={"name": "loose", "stage_config": loose},
                               headers=keys("publisher")), 403, "'Production'", "requires_approval")
    serving = {**loose, "stages": [{"name": "Development"}, {"name": "Live", "exclusive": True}],
               "transitions": {"Development": ["Live"], "Live": ["Development"]}}
    assert_problem(client.post("/api/v1/model-groups", json={"name": "loose", "stage_config": serving},
                               headers=keys("publisher")), 403, "'Live'")
    assert client.get("/api/v1/model-groups/loose", headers=keys("viewer")).status_code == 404
    assert client.post("/api/v1/model-groups", json={"name": "loose", "stage_config": loose},
                       headers=keys("admin")).status_code == 201            # an admin's decision, audited
    create_group(client, keys("publisher"), "churn")
    self_approved = client.post("/api/v1/model-groups/churn/versions", headers=keys("publisher"),
                                json={**version_body(1), "model_card": {"status": "Approved", "content": {}}})
    assert_problem(self_approved, 403, "four-eyes", "Draft or PendingReview")    # was 201, the card Approved
    register(client, keys("publisher"), "churn", 1)
    approve(client, keys("approver"), "churn", 1)
    for stage in ("Staging", "Production"):
        assert client.post("/api/v1/model-groups/churn/versions/1/stage", json={"stage": stage},
                           headers=keys("approver")).status_code == 200
    assert_problem(client.post("/api/v1/model-groups/churn/versions/1/stage", json={"stage": "Staging"},
                               headers=keys("publisher2")), 403, "out of it")
    assert client.get("/api/v1/model-groups/churn/stages/Production", headers=keys("viewer")).json()["versions"]
    assert client.post("/api/v1/model-groups/churn/versions/1/stage", json={"stage": "Staging"},
                       headers=keys("approver")).status_code == 200
    # another publisher may register into the group, but not rename or delete it (as with versions)
    create_group(client, keys("publisher"), "scratch")
    mlflow = "/api/2.0/mlflow/registered-models"
    renamed = client.post(f"{mlflow}/rename", json={"name": "scratch", "new_name": "mine"},
                          headers=keys("publisher2"))
    assert renamed.status_code == 403 and "only its creator or an admin" in renamed.text
    deleted = client.request("DELETE", f"{mlflow}/delete", json={"name": "scratch"}, headers=keys("publisher2"))
    assert deleted.status_code == 403
    assert client.post(f"{mlflow}/rename", json={"name": "scratch", "new_name": "scratch2"},
                       headers=keys("publisher")).status_code == 200


def test_bad_input_on_registry_routes_stores_nothing(client, keys, db, settings):
    pub = keys("publisher")
    create_group(client, pub, "churn")
    good = version_body(1)
    cases = [
        ({**good, "metrics": {"auc": float("nan")}}, "metrics"),
        ({**good, "metrics": {"auc": float("inf")}}, "metrics"),
        ({**good, "artifact_sha256": "abc"}, "artifact_sha256"),
        ({k: v for k, v in good.items() if k != "artifact_uri"}, "artifact_uri"),
        ({**good, "metadata": {f"k{i}": "v" for i in range(101)}}, "metadata"),
        ({**good, "metadata": {"k": "v" * 5001}}, "metadata"),
        ({**good, "training_data": "s3://not-a-list"}, "training_data"),
        ({**good, "unknown_field": 1}, "unknown_field"),
        ({**good, "model_card": {"status": "Bogus"}}, "model_card"),
        # a trial's 30 MB card made the version page take a minute and the audit log as large
        ({**good, "model_card": {"content": {"blob": "v" * 100_000}}}, "over the limit of 100,000"),
    ]
    import json as _json
    for body, field in cases:
        raw = _json.dumps(body, allow_nan=True)
        r = client.post("/api/v1/model-groups/churn/versions", content=raw,
                        headers={**pub, "content-type": "application/json"})
        assert_problem(r, 422, field)
    r = client.post("/api/v1/model-groups/churn/versions", content=b'{"artifact_uri": ',
                    headers={**pub, "content-type": "application/json"})
    assert_problem(r, 400, "json")
    assert_problem(client.post("/api/v1/model-groups/nope/versions", json=good, headers=pub), 404, "does not exist")
    assert_problem(client.post("/api/v1/model-groups", json={"name": "team/churn"}, headers=pub), 422, "name")
    r = client.post("/api/v1/model-groups", json={"name": "tab\there"}, headers=pub)
    assert_problem(r, 422, "control")
    assert "Value error" not in r.text   # the validator's own sentence, not pydantic's wrapping
    assert_problem(client.post("/api/v1/model-groups", json={"name": 5}, headers=pub), 422, "name")
    # "сhurn" with a Cyrillic "с" reads as the existing "churn": refused, with the letter that gives it away
    assert_problem(client.post("/api/v1/model-groups", json={"name": "\u0441hurn"}, headers=pub), 422,
                   "must not mix scripts: Latin letters with 'с' (U+0441, Cyrillic)")
    with db.session_scope() as s:
        assert s.scalars(select(ModelGroup.name)).all() == ["churn"]
    assert_problem(client.post("/api/v1/model-groups", json=[], headers=pub), 422)
    assert_problem(client.get("/api/v1/model-groups/churn/versions/abc", headers=pub), 422, "version")
    assert_problem(client.get("/api/v1/model-groups/churn/versions/0", headers=pub), 422, "version")
    assert_problem(client.post("/api/v1/model-groups/churn/versions/1/approval",
                               json={"status": "Approved", "comment": "x"}, headers=keys("approver")), 404)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.action == "version.registered")) == 0


def test_gzip_bodies_are_inflated_within_the_limit(tmp_path, db, keys):
    """Content-Encoding: gzip bodies are read as what they inflate to, held to the body limit (a 3 KiB bomb of
    zeros is a 413, not 3 MB in memory); broken gzip is a 400 and other encodings a 415, nothing written."""
    import gzip
    import json as jsonlib

    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, max_body_bytes=4096), db=db)
    pub = keys("publisher")
    gz = {**pub, "content-type": "application/json", "content-encoding": "gzip"}
    with TestClient(app) as c:
        r = c.post("/api/v1/model-groups", content=gzip.compress(jsonlib.dumps({"name": "zipped"}).encode()),
                   headers=gz)
        assert r.status_code == 201 and r.json()["name"] == "zipped", r.text
        bomb = gzip.compress(b'{"name": "' + b"0" * 3_000_000 + b'"}')
        assert len(bomb) < 4096
        assert_problem(c.post("/api/v1/model-groups", content=bomb, headers=gz), 413, "inflates to more than 4096")
        good = gzip.compress(b'{"name": "late"}')
        for body, status, needle in [(b"not gzip", 400, "not valid gzip"), (good[:-6], 400, "one whole gzip"),
                                     (good + b"trailing", 400, "one whole gzip")]:
            assert_problem(c.post("/api/v1/model-groups", content=body, headers=gz), status, needle)
        assert_problem(c.post("/api/v1/model-groups", content=b'{"name": "br"}',
                              headers={**gz, "content-encoding": "br"}), 415, "'br' is not supported", "gzip")
        # the JSON guard still screens what the body inflates to
        nul = gzip.compress(b'{"name": "a\\u0000b"}')
        assert c.post("/api/v1/model-groups", content=nul, headers=gz).status_code == 422
        names = [g["name"] for g in c.get("/api/v1/model-groups", headers=pub).json()["items"]]
    assert names == ["zipped"]
    # a reviewer's finding: under the default 100 MiB limit an anonymous 100 KB bomb inflated to 100 MiB before
    # authentication (13 s of CPU); a body may inflate to 100 times its size (at least 1 MiB)
    with TestClient(create_app(make_settings(tmp_path), db=db)) as c:
        bomb = gzip.compress(b'{"name": "' + b"0" * 30_000_000 + b'"}')
        assert_problem(c.post("/api/v1/model-groups", content=bomb, headers={"content-type": "application/json",
                                                                             "content-encoding": "gzip"}),
                       413, "100 times its size")


def test_oversize_body_rejected_before_handler(tmp_path, db, keys):
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, max_body_bytes=2048), db=db)
    with TestClient(app) as c:
        create_group(c, keys("publisher"), "churn")
        body = version_body(1, description="x" * 1000, model_card={"markdown": "y" * 5000})
        assert_problem(c.post("/api/v1/model-groups/churn/versions", json=body, headers=keys("publisher")), 413,
                       "larger than 2048")

        def chunks():
            yield b'{"artifact_uri": "s3://a", "description": "'
            for _ in range(10):
                yield b"z" * 500
            yield b'"}'
        r = c.post("/api/v1/model-groups/churn/versions", content=chunks(),
                   headers={**keys("publisher"), "content-type": "application/json"})
        assert_problem(r, 413)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 0


def test_unknown_route_and_method(client, keys):
    assert_problem(client.get("/api/v1/nothing-here", headers=keys("admin")), 404, "no route")
    assert_problem(client.delete("/api/v1/model-groups", headers=keys("admin")), 405)


def test_health_and_ready_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready",   # this test app runs no scheduler
                                            "scheduler": {"alive": False, "last_tick_at": None, "instances": 0},
                                            "store": "ok"}


def test_registered_sha_is_normalised(client, keys):
    create_group(client, keys("publisher"), "churn")
    v = register(client, keys("publisher"), "churn", 1, artifact_sha256=sha("x").upper())
    assert v["artifact_sha256"] == sha("x")


def test_registrations_arriving_together_are_one_group_numbered_in_order_each_with_its_own_answer(
        client, keys, db, monkeypatch):
    """Registrations into one group that queue while an earlier one is written are numbered and written in one
    transaction, as one registration after the other would be: consecutive numbers in arrival order, each request's
    own audit request id, each new hash of one artifact URI derived from the previous one. A registration that fails
    (an unknown alert) gets its own 404 and costs the others nothing."""
    import asyncio

    from lineage.orm import Edge, Entity
    from mlgov import auth
    from mlgov.audit import verify
    from mlgov.errors import NotFound
    from registry import group_commit, service
    from registry.schemas import VersionCreate

    create_group(client, keys("publisher"), "batched")
    with db.session_scope(write=False) as s:
        publisher = auth.authenticate(s, keys.plain["publisher"])
    groups: list[int] = []
    real = service.register_versions

    def counting(session, group_name, regs):
        groups.append(len(regs))
        return real(session, group_name, regs)

    monkeypatch.setattr(service, "register_versions", counting)
    uri = "s3://models/batched/model.tar.gz"

    def reg(n: int, **over):
        body = VersionCreate.model_validate(version_body(n, artifact_uri=uri, **over))
        return service.Registration(body, publisher, f"req-{n}")

    async def together(regs):
        return await asyncio.gather(*(group_commit.register(db, "batched", r) for r in regs),
                                    return_exceptions=True)

    out = asyncio.run(together([reg(1), reg(2), reg(3, triggered_by_alert="no-such-alert"), reg(4), reg(5)]))
    assert groups == [5, 1, 1, 1, 1, 1]     # one group of all five failed, so each went alone
    assert isinstance(out[2], NotFound) and "no-such-alert" in str(out[2])
    assert [o.version for i, o in enumerate(out) if i != 2] == [1, 2, 3, 4]

    groups.clear()
    out = asyncio.run(together([reg(n) for n in range(6, 11)]))
    assert groups == [5] and [o.version for o in out] == [5, 6, 7, 8, 9]
    assert [o.metadata_items[0].value for o in out] == [f"c{n}" for n in range(6, 11)]   # its own metadata

    with db.session_scope(write=False) as s:
        rows = s.execute(select(ModelVersion.version, ModelVersion.artifact_sha256)
                         .join(ModelGroup, ModelGroup.id == ModelVersion.group_id).where(ModelGroup.name == "batched")
                         .order_by(ModelVersion.version)).all()
        assert [(v, h) for v, h in rows] == [
            (v, sha(f"model-{n}")) for v, n in zip(range(1, 10), [1, 2, 4, 5, 6, 7, 8, 9, 10], strict=True)]
        requests = dict(s.execute(select(AuditEvent.subject_id, AuditEvent.request_id)
                                  .where(AuditEvent.action == "version.registered",
                                         AuditEvent.subject_id.like("batched/%"))).all())
        assert requests == {f"batched/{v}": f"req-{n}" for v, n in
                            zip(range(1, 10), [1, 2, 4, 5, 6, 7, 8, 9, 10], strict=True)}
        node = dict(s.execute(select(Entity.sha256, Entity.id).where(Entity.uri == uri)).all())
        derived = set(s.execute(select(Edge.source_id, Edge.target_id).where(Edge.type == "DerivedFrom",
                                                                              Edge.target_id.in_(node.values()))))
        order = [sha(f"model-{n}") for n in [1, 2, 4, 5, 6, 7, 8, 9, 10]]
        assert derived == {(node[a], node[b]) for a, b in itertools.pairwise(order)}   # each from the one before
        produced = s.scalar(select(func.count()).select_from(Edge).where(Edge.type == "Produced"))
        assert produced >= 9
        assert verify(s)["ok"] is True


def test_concurrent_registrations_through_the_route_each_get_their_own_answer(live_db, settings):
    """Abuse at the door of the group commit: a key without the role, a group that does not exist and a bad body,
    sent together with good registrations, each get their own 4xx and never join or spoil a group; the good
    ones are numbered 1..3 with their own metadata."""
    import asyncio

    import httpx
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import Keys

    app, keys = create_app(settings, db=live_db), Keys(live_db)
    client = TestClient(app)
    create_group(client, keys("publisher"), "door")

    async def together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            sends = [ac.post("/api/v1/model-groups/door/versions", json=version_body(n), headers=keys("publisher"))
                     for n in (1, 2, 3)]
            sends += [ac.post("/api/v1/model-groups/door/versions", json=version_body(4), headers=keys("viewer")),
                      ac.post("/api/v1/model-groups/nope/versions", json=version_body(5), headers=keys("publisher")),
                      ac.post("/api/v1/model-groups/door/versions", json={"artifact_uri": "s3://x"},
                              headers=keys("publisher"))]
            return await asyncio.gather(*sends)

    rs = asyncio.run(together())
    assert [r.status_code for r in rs] == [201, 201, 201, 403, 404, 422], [r.text for r in rs]
    assert sorted(r.json()["version"] for r in rs[:3]) == [1, 2, 3]
    assert {r.json()["metadata"]["git_commit"] for r in rs[:3]} == {"c1", "c2", "c3"}
    listed = client.get("/api/v1/model-groups/door/versions", headers=keys("viewer")).json()
    assert listed["total"] == 3
    assert "nope" in rs[4].json()["detail"]


def test_sqlite_tag_search_reads_the_tagged_versions_once(tmp_path):
    """A tag clause is an uncorrelated IN: SQLite reads the tagged versions from the (key, value) index once, then
    walks the model's versions newest first checking each against that list, where a correlated EXISTS probed the
    tag index once per version (10k versions, 100 hits: 24 -> 12 ms). Same answers; PostgreSQL plans both as one
    semi-join."""

    from sqlalchemy import event, insert, update

    from mlgov import auth
    from mlgov.auth import Principal, Role
    from mlgov.db import Database, new_id, utcnow
    from registry import service
    from registry.mlflow import DEFAULT_VERSION_ORDER, parse_filter
    from registry.orm import VersionMetadata
    from registry.schemas import GroupCreate
    from tests.infra import upgrade

    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    db = Database(url)
    now = utcnow()
    with db.session_scope() as s:
        key, _ = auth.create_key(s, "t", "publisher", actor="cli")
        gid = service.create_group(s, GroupCreate(name="big"), Principal(key.id, key.name, Role.publisher)).id
        ids = [new_id() for _ in range(2000)]
        s.execute(insert(ModelVersion), [
            {"id": vid, "group_id": gid, "version": i + 1, "stage": "Development",
             "approval_status": "PendingManualApproval", "artifact_uri": f"s3://m/{i}", "metrics": {},
             "training_data": [], "registered_by": "t", "registered_by_key": key.id, "created_at": now,
             "updated_at": now} for i, vid in enumerate(ids)])
        s.execute(insert(VersionMetadata), [{"version_id": vid, "key": "batch", "value": str(i // 100)}
                                            for i, vid in enumerate(ids)] +
                  [{"version_id": vid, "key": "odd", "value": "1"} for i, vid in enumerate(ids) if i % 2])

    def search(text: str, order: list[tuple[str, bool]] | None = None) -> tuple[list[int], str]:
        """The service's answer, and SQLite's plan for its statement (caught as it runs, with its parameters)."""
        seen: list[tuple[str, Any]] = []

        def catch(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if "registry_model_versions" in statement and "LIMIT" in statement:
                seen.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", catch)
        try:
            with db.session_scope(write=False) as s:
                found = [v.version for v in service.view_search(s, parse_filter(text, "versions"), order or [],
                                                                5000, 0)]
        finally:
            event.remove(db.engine, "before_cursor_execute", catch)
        [(statement, parameters)] = seen
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return found, " | ".join(r[3] for r in rows)

    found, plan = search("name = 'big' and tags.batch = '7'")
    assert found == list(range(800, 700, -1))
    assert "LIST SUBQUERY" in plan and "CORRELATED" not in plan, plan
    assert "ix_registry_version_metadata_kv (key=? AND <expr>=?)" in plan, plan   # key and the value's prefix
    assert search("name = 'big' and tags.batch = '7' and tags.odd = '1'")[0] == list(range(800, 700, -2))
    assert search("name = 'big' and tags.batch != '0' and tags.batch LIKE '1_'")[0] == list(range(2000, 1000, -1))
    assert search("name = 'big' and tags.odd != '1'")[0] == []
    # MLflow's default order (last update first): one model's versions read in that order from the
    # (group, updated_at, version) index, no sort of every version
    found, plan = search("name = 'big'", DEFAULT_VERSION_ORDER)
    assert found == list(range(2000, 0, -1))
    assert "ix_registry_model_versions_group_updated" in plan and "TEMP B-TREE" not in plan, plan
    with db.session_scope() as s:
        s.execute(update(ModelVersion).where(ModelVersion.version == 5)
                  .values(updated_at=now + dt.timedelta(seconds=1)))
    assert search("name = 'big'", DEFAULT_VERSION_ORDER)[0][:3] == [5, 2000, 1999]
    db.dispose()


def test_single_version_views_equal_the_page_views(client, keys, db):
    """A get or an alias lookup reads a version's metadata, aliases and newest decision in the same statement as the
    version (JSON columns per backend); a page reads them in one statement for all its versions. Both agree, for a
    version approved, one approved then rejected, one with two aliases and one with nothing."""
    from mlgov.auth import Principal, Role
    from registry import service

    create_group(client, keys("publisher"), "views")
    for n in (1, 2, 3, 4):
        register(client, keys("publisher"), "views", n, metadata={"team": "risk", "n": str(n)} if n < 4 else {})
    assert approve(client, keys("approver"), "views", 1).status_code == 200
    assert approve(client, keys("approver"), "views", 2).status_code == 200
    assert approve(client, keys("approver2"), "views", 2, status="Rejected").status_code == 200
    with db.session_scope() as s:
        admin = Principal("k", "admin", Role.admin)
        service.set_alias(s, "views", "beta", 1, admin)
        service.set_alias(s, "views", "shadow", 1, admin)
        service.set_alias(s, "views", "canary", 3, admin)
    with db.session_scope(write=False) as s:
        page = {v.version: v for v in service.view_search(s, [], [], 10, 0) if v.group_name == "views"}
        assert sorted(page) == [1, 2, 3, 4]
        for n, v in page.items():
            assert service.view_version(s, "views", n) == v, n
        assert page[1].approved_by == "test-approver" and page[2].approved_by is None and page[1].aliases == \
            ["beta", "shadow"] and page[4].metadata == [] and page[3].metadata == [("n", "3"), ("team", "risk")]
        assert service.view_by_alias(s, "views", "canary") == page[3]
        assert service.view_by_alias(s, "views", "shadow") == page[1]


def test_list_pages_compute_metadata_for_their_own_rows(client, keys, db):
    """A page past the first equals that slice of the whole list (metadata, filters, both sorts); on PostgreSQL
    its metadata column is computed for the page's rows, not for every row the offset skips (a huge offset was a
    cheap request costing an aggregate per version of the group)."""
    from sqlalchemy import event

    from registry import service

    create_group(client, keys("publisher"), "pages")
    for n in range(1, 13):
        register(client, keys("publisher"), "pages", n, metadata={"i": str(n), "team": "a" if n % 3 else "b"})
    args = dict(status=None, stage=None, created_after=None, created_before=None)
    with db.session_scope(write=False) as s:
        for sort, metadata in (("version", {}), ("-created_at", {}), ("version", {"team": "a"})):
            whole, total = service.read_versions(s, "pages", **args, metadata=metadata, sort=sort, limit=100,
                                                 offset=0)
            for offset in (1, 4, 7, total, total + 5):
                page, n = service.read_versions(s, "pages", **args, metadata=metadata, sort=sort, limit=3,
                                                offset=offset)
                assert n == total and page == whole[offset:offset + 3], (sort, metadata, offset)
        if s.get_bind().dialect.name != "postgresql":
            return
        seen: list[tuple[str, Any]] = []

        def keep(_conn, _cursor, statement, params, _context, _many):
            seen.append((statement, params))

        engine = s.get_bind()
        event.listen(engine, "before_cursor_execute", keep)
        try:
            service.read_versions(s, "pages", **args, metadata={}, sort="version", limit=3, offset=6)
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        statement, params = seen[-1]
        plan = s.connection().exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params).scalar_one()

        def loops(node: dict[str, Any], under_subplan: bool = False) -> list[int]:
            here = [node["Actual Loops"]] if under_subplan else []
            inner = under_subplan or node.get("Parent Relationship") == "SubPlan"
            return here + [n for child in node.get("Plans", []) for n in loops(child, inner)]

        counted = loops(plan[0]["Plan"])
        assert counted and max(counted) <= 3, plan   # once per row of the page


def test_native_single_reads_equal_the_listed_versions(client, keys, db):
    """The native get and latest read a version's metadata in the same statement as the version (a JSON column per
    backend); the list reads it in one statement for the page. Both give the same fields."""
    from registry import service

    create_group(client, keys("publisher"), "reads")
    for n in (1, 2, 3):
        register(client, keys("publisher"), "reads", n, metadata={"b": "2", "a": str(n)} if n != 2 else {})
    assert approve(client, keys("approver"), "reads", 2).status_code == 200
    with db.session_scope(write=False) as s:
        listed, total = service.read_versions(s, "reads", status=None, stage=None, created_after=None,
                                              created_before=None, metadata={}, sort="version", limit=10, offset=0)
        assert total == 3
        for item in listed:
            assert service.read_version(s, "reads", item["version"]) == item
        assert list(listed[0]["metadata"].items()) == [("a", "1"), ("b", "2")] and listed[1]["metadata"] == {}
        assert service.read_latest(s, "reads", None) == listed[2]
        assert service.read_latest(s, "reads", "Approved") == listed[1]


@pytest.mark.parametrize(("name", "scripts"), [
    ("fraud_model", None), ("modèle-crédit", None), ('q"uote ✓ #1?', None), ("a·b", None),
    ("модель", None), ("модель-2", None), ("ελληνικά_3", None),                   # one script, with Common
    ("模型_v2", None), ("機械学習モデル-v2", None), ("日本語ーテスト", None),      # Latin with Han / Japanese
    ("한국어_model", None), ("ㄅㄆ模型_x", None),                                 # Latin with Korean / Bopomofo
    ("fr\u0430ud_model", ["Latin", "'а' (U+0430, Cyrillic)"]),
    ("\u0440\u0430\u0443\u0440\u0430l", ["Cyrillic", "'l' (U+006C, Latin)"]),      # "paypal" in Cyrillic but its "l"
    ("ελληνικά-model", ["Greek", "and 2 more"]),
    ("x\u03b1\u03b1\u03b1", ["Greek", "'x' (U+0078, Latin)"]),
    ("модель-モデル", ["Cyrillic", "Katakana"]),
])
def test_names_that_mix_scripts_are_refused_as_uts39_highly_restrictive_says(name, scripts):
    from registry.schemas import group_name_problem

    problem = group_name_problem(name)
    if scripts is None:
        assert problem is None, problem
    else:
        assert problem is not None and problem.startswith(f"must not mix scripts: {scripts[0]} letters with "), problem
        assert all(part in problem for part in scripts[1:]), problem


def test_a_suggested_name_is_one_the_registry_accepts():
    """The fix of a refused name suggested the cleaned-up name even when it still broke the rules: for
    "frаud_model" (a Cyrillic "а") it offered the same mixed name. Now a suggestion is always a valid name, or
    none is made."""
    from registry.schemas import group_name_problem
    from registry.service import suggest_name

    assert suggest_name("fr\u0430ud_model") is None
    for name, expected in (("team/churn:v2", "team-churn-v2"), ("..hidden\x00 ", "hidden"), ("\x01", "my-model")):
        suggestion = suggest_name(name)
        assert suggestion == expected and group_name_problem(suggestion) is None


def test_a_group_name_that_reads_the_same_as_another_is_refused(client, keys):
    """An MLflow trial created "ｍ1" (full-width m) beside "m1" and "srch–01" (en dash) beside "srch-01": to an
    approver reading "@champion of m1" they are the same name. Creating or renaming into such a name is refused,
    naming the group it reads as; names differing in case stay distinct, as MLflow's are."""
    pub = keys("publisher")
    for name in ("m1", "srch-01", "two words"):
        assert client.post("/api/v1/model-groups", json={"name": name}, headers=pub).status_code == 201
    for name, other in (("ｍ1", "m1"), ("srch–01", "srch-01"), ("two  words", "two words")):
        r = client.post("/api/v1/model-groups", json={"name": name}, headers=pub)
        assert r.status_code == 422 and f"reads the same as the existing model group {other!r}" in r.text, r.text
    r = client.post("/api/2.0/mlflow/registered-models/create", json={"name": "ｍ1"}, headers=pub)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
    assert client.post("/api/v1/model-groups", json={"name": "M1"}, headers=pub).status_code == 201
    assert client.post("/api/v1/model-groups", json={"name": "other"}, headers=pub).status_code == 201
    r = client.post("/api/2.0/mlflow/registered-models/rename", json={"name": "other", "new_name": "srch‐01"},
                    headers=pub)
    assert r.status_code == 400 and "reads the same" in r.json()["message"], r.text


def test_the_database_itself_refuses_a_look_alike_group_name(client, keys, db):
    """The service's look-alike check is one probe of a unique index on the name's reading key, so the loser of
    two concurrent creates of "m1" and "ｍ1" (both past the probe) is refused at insert: here the probe is skipped
    by adding the row directly, as the second transaction of such a race would."""
    from sqlalchemy.exc import IntegrityError

    assert client.post("/api/v1/model-groups", json={"name": "race-m1"}, headers=keys("publisher")).status_code == 201
    with pytest.raises(IntegrityError), db.session_scope() as s:
        s.add(ModelGroup(name="race\u2013m1", stage_config={}, created_by="p"))   # en dash
        s.flush()
    with db.session_scope() as s:   # a rename keeps the key with the name
        group = s.scalars(select(ModelGroup).where(ModelGroup.name == "race-m1")).one()
        group.name = "race m2"
        s.flush()
        assert s.scalar(select(ModelGroup.name).where(
            ModelGroup.reading_key == names.stored_reading_key("race  m2"))) == "race m2"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_keys_existing_groups_and_leaves_old_look_alikes_unkeyed(kind, tmp_path):
    """0028 fills the reading key of the groups already stored; of look-alikes stored before the check existed,
    the oldest keeps the key (so new look-alikes of any of them stay refused) and the later ones keep none."""
    from sqlalchemy import text

    from mlgov.db import Database
    from tests.infra import fresh_database, upgrade

    with fresh_database(kind, tmp_path) as url:
        upgrade(url, "0027_webhook_url_sealed")
        db = Database(url)
        t0 = dt.datetime(2026, 1, 1)
        with db.write_engine.begin() as c:
            for i, name in enumerate(("m1", "\uff4d1", "m-1", "m\u20131")):   # m1, full-width m1, m-1, m–1
                c.execute(text("INSERT INTO registry_model_groups (id, name, tags, stage_config, latest_version, "
                               "created_by, created_at, updated_at) VALUES (:i, :n, '{}', '{}', 0, 'p', :at, :at)"),
                          {"i": f"g{i}", "n": name, "at": t0 + dt.timedelta(minutes=i)})
        upgrade(url)
        with db.session_scope() as s:
            keys_by_name = dict(s.execute(select(ModelGroup.name, ModelGroup.reading_key)).all())
        assert keys_by_name == {"m1": names.stored_reading_key("m1"), "\uff4d1": None,
                                "m-1": names.stored_reading_key("m-1"), "m\u20131": None}
        # the key's holder renamed and deleted: the unkeyed look-alikes still refuse a new "m1" and "m-1"
        from mlgov.auth import Principal, Role, create_key
        from mlgov.errors import Invalid
        from registry import service
        from registry.schemas import GroupCreate

        with db.session_scope() as s:
            row, _ = create_key(s, "setup", "admin", actor="test")
            admin = Principal(row.id, row.name, Role.admin)
            service.rename_group(s, "m1", "m9", admin)
            service.delete_group(s, "m-1", admin)
        for name, other in (("m1", "\uff4d1"), ("m-1", "m\u20131")):
            with pytest.raises(Invalid, match=f"reads the same as the existing model group {other!r}"), \
                    db.session_scope() as s:
                service.create_group(s, GroupCreate(name=name), admin)
        db.dispose()


def test_an_artifact_in_mlgov_store_registers_under_its_own_hash(client, keys):
    """The native door took any stated hash for an artifact mlgov can read itself, so a group's
    require_artifact_hash passed on a hash that was not the file's; the SageMaker and MLflow doors hash it."""
    import hashlib

    store = client.app.state.get_store()
    store.put("models/m1/model.bin", b"the real weights")
    real = hashlib.sha256(b"the real weights").hexdigest()
    h = keys("publisher")
    create_group(client, h, "hashed")
    uri = store.uri("models/m1/model.bin")
    assert_problem(client.post("/api/v1/model-groups/hashed/versions", headers=h,
                               json={"artifact_uri": uri, "artifact_sha256": "0" * 64}), 422, real, "0" * 64)
    r = client.post("/api/v1/model-groups/hashed/versions", headers=h,
                    json={"artifact_uri": uri, "artifact_sha256": real.upper()})
    assert r.status_code == 201 and r.json()["artifact_sha256"] == real
    elsewhere = client.post("/api/v1/model-groups/hashed/versions", headers=h,   # outside the store: as stated
                            json={"artifact_uri": "s3://other/m.bin", "artifact_sha256": "ab" * 32})
    assert elsewhere.status_code == 201 and elsewhere.json()["artifact_sha256"] == "ab" * 32
