"""Each domain's whole story driven through the Python SDK alone, against a live server on real sockets.

Only the first admin key is made directly (as `mlgov keys create` would); every other step is a client method.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.client import Client, Conflict, Forbidden, NotFound
from mlgov.db import Database
from tests.conftest import make_settings
from tests.helpers import sha
from tests.infra import LiveServer

pytestmark = pytest.mark.live
T0 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)


@dataclass
class Live:
    url: str
    admin: Client

    def person(self, name: str, role: str) -> Client:
        """A client with a fresh key of ``role`` held by ``name`` (minted by the admin, through the SDK)."""
        created = self.admin.create_key(name, role, owner=name)
        assert created.role == role and created.owner == name and created.key.startswith("mlgov_")
        return Client(self.url, created.key)


@pytest.fixture
def live(live_db: Database, tmp_path) -> Iterator[Live]:
    with live_db.session_scope() as s:
        _, admin_key = auth.create_key(s, "root", "admin", actor="test")
    app = create_app(make_settings(tmp_path, outbound_allow="127.0.0.1"), db=live_db)
    with LiveServer(app) as srv, Client(srv.url, admin_key) as admin:
        yield Live(srv.url, admin)


def _registered(live: Live, group: str = "churn") -> tuple[Client, Client]:
    pub, appr = live.person("alice", "publisher"), live.person("bob", "approver")
    pub.create_model_group(group)
    pub.register_version(group, f"s3://models/{group}/1/model.tar.gz", sha(f"{group}-1"))
    appr.approve(group, 1, "holdout AUC 0.91")
    return pub, appr


def test_registry_story(live: Live) -> None:
    assert live.admin.health() == {"status": "ok"} and live.admin.ready() == {"status": "ready"}
    pub, appr = live.person("alice", "publisher"), live.person("bob", "approver")
    viewer = live.person("carol", "viewer")
    group = pub.create_model_group("churn", description="retention", tags={"team": "growth"})
    assert (group.name, group.latest_version, group.tags) == ("churn", 0, {"team": "growth"})
    assert [s.name for s in group.stage_config.stages] == ["Development", "Staging", "Production", "Archived"]
    v = pub.register_version("churn", "s3://models/churn/1/model.tar.gz", sha("m1"), framework="xgboost",
                             metrics={"auc": 0.91}, metadata={"git_commit": "abc123"},
                             training_data=["s3://data/churn/train.csv"], training_job={"name": "train-1"})
    assert (v.version, v.approval_status, v.registered_by, v.stage) == (1, "PendingManualApproval", "alice",
                                                                        "Development")
    pub.register_version("churn", "s3://models/churn/2/model.tar.gz", sha("m2"), metadata={"git_commit": "def"})

    with pytest.raises(Forbidden) as four_eyes:       # a publisher key cannot decide; nor could alice's approver key
        pub.approve("churn", 1, "my own model")
    assert four_eyes.value.fix
    approved = appr.approve("churn", 1, "AUC 0.91 on holdout", expected_status="PendingManualApproval")
    assert approved.approval_status == "Approved" and approved.approval_evidence is not None
    with pytest.raises(Conflict):                     # the optimistic guard: it is no longer pending
        appr.reject("churn", 1, "too late", expected_status="PendingManualApproval")
    assert appr.reject("churn", 2, "no holdout metrics").approval_status == "Rejected"
    assert [d.actor for d in viewer.approvals("churn", 1)] == ["bob"]

    assert appr.move_stage("churn", 1, "Staging").stage == "Staging"
    assert appr.move_stage("churn", 1, "Production", comment="launch", expected_stage="Staging").stage == "Production"
    assert appr.move_stage("churn", 2, "Staging").stage == "Staging"
    with pytest.raises(Conflict, match="accepts only Approved versions"):
        appr.move_stage("churn", 2, "Production")
    assert viewer.stage_occupants("churn", "Production").versions == [1]
    assert viewer.stage_occupants("churn", "Production", at=T0.replace(year=2000)).versions == []
    assert [t.to_stage for t in viewer.stage_history("churn", 1)] == ["Development", "Staging", "Production"]

    assert [x.version for x in viewer.list_versions("churn", page_size=1)] == [2, 1]
    assert [x.version for x in viewer.list_versions("churn", metadata={"git_commit": "abc123"})] == [1]
    assert viewer.latest_version("churn", status="Approved").version == 1
    assert viewer.get_version("churn", 2).approval_status == "Rejected"
    assert [g.name for g in viewer.list_model_groups(tags={"team": "growth"})] == ["churn"]
    assert pub.update_model_group("churn", description=None).description is None
    assert live.admin.update_model_group("churn", approval_policy={"require_bias_report": False}).approval_policy
    trusted = live.admin.set_artifact_trust("churn", 1, True, "built by our CI from a pinned image")
    assert trusted.artifact_trusted is True

    report = viewer.compliance_report("churn")
    assert report and "Compliance report" in viewer.compliance_report_html("churn")
    events = list(live.admin.list_audit_events(subject="churn/1", page_size=2))
    assert len(events) == viewer.audit_events(subject="churn/1").total >= 4
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert live.admin.verify_audit()["ok"] is True
    assert live.admin.audit_checkpoint()["seq"] == live.admin.verify_audit()["checkpoint"]["seq"]

    hook = live.admin.create_webhook("http://127.0.0.1:9/hook", "a-long-random-secret", ["version.*"])
    assert [h.id for h in live.admin.list_webhooks()] == [hook.id] and live.admin.get_webhook(hook.id).active
    assert list(live.admin.list_webhook_deliveries(hook.id, page_size=1)) == []   # no dispatcher: none numbered
    with pytest.raises(NotFound):
        live.admin.retry_delivery(hook.id, "no-such-delivery")
    live.admin.delete_webhook(hook.id)
    assert live.admin.list_webhooks() == []
    assert {"alice", "bob", "carol", "root"} <= {k.name for k in live.admin.list_keys()}
    live.admin.revoke_key("carol")
    assert not next(k for k in live.admin.list_keys() if k.name == "carol").active
    assert "/api/v1/model-groups" in live.admin.openapi()["paths"]
