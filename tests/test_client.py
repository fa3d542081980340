"""The typed client drives the API end to end (in-process transport, same app and database)."""

from __future__ import annotations

import pytest

from mlgov.client import ApiError, Client, Conflict, Forbidden, NotFound
from tests.conftest import make_settings
from tests.helpers import sha


@pytest.fixture
def settings(tmp_path):
    """Receivers in these tests listen on 127.0.0.1, which the outbound policy refuses unless allowed."""
    return make_settings(tmp_path, outbound_allow="127.0.0.1")


def _client(app, key: str) -> Client:
    from fastapi.testclient import TestClient

    return Client("http://testserver", key, http=TestClient(app))   # a TestClient is an httpx.Client on the app


def test_client_round_trip(app, keys):
    pub = _client(app, keys.plain["publisher"])
    appr = _client(app, keys.plain["approver"])
    admin = _client(app, keys.plain["admin"])
    assert pub.health() == {"status": "ok"}
    pub.create_model_group("churn", description="d", tags={"team": "a"})
    assert pub.list_model_groups(tags={"team": "a"}).page().total == 1
    v = pub.register_version("churn", "s3://m/1", sha("1"), metrics={"auc": 0.9}, metadata={"k": "v"})
    assert v.version == 1
    with pytest.raises(Forbidden) as err:
        pub.approve("churn", 1, "mine")
    assert err.value.status == 403 and err.value.fix
    with pytest.raises(Conflict) as err:
        appr.decide("churn", 1, "Approved", "ok", expected_status="Rejected")
    assert err.value.status == 409 and "expected" in err.value.detail and err.value.title == "Conflict"
    assert appr.approve("churn", 1, "ok").approval_status == "Approved"
    assert pub.latest_version("churn", status="Approved").version == 1
    assert [v.version for v in pub.list_versions("churn", metadata={"k": "v"})] == [1]
    assert appr.move_stage("churn", 1, "Staging").stage == "Staging"
    assert appr.move_stage("churn", 1, "Production").stage == "Production"
    assert pub.stage_occupants("churn", "Production").versions == [1]
    assert [h.to_stage for h in pub.stage_history("churn", 1)] == ["Development", "Staging", "Production"]
    assert appr.approvals("churn", 1)[0].actor == "test-approver"
    assert admin.audit_checkpoint()["seq"] == admin.audit_verify()["checkpoint"]["seq"]
    assert admin.audit_verify()["ok"] is True
    assert admin.audit_events(subject="churn/1").total == 4
    assert "Compliance report" in admin.audit_report("churn", format="html")
    hook = admin.create_webhook("http://127.0.0.1:9/h", "x" * 16, ["*"])
    assert admin.get_webhook(hook.id).url == "http://127.0.0.1:9/h"
    assert admin.list_webhooks()[0].id == hook.id
    with pytest.raises(NotFound) as err:
        admin.retry_delivery(hook.id, "nope")
    assert err.value.status == 404
    admin.delete_webhook(hook.id)
    with pytest.raises(ApiError, match=r"404: webhook .* was deleted"):   # deleted means gone to the API
        admin.webhook_deliveries(hook.id)
    k = admin.create_key("bot", "viewer", owner="ops-team")
    assert k.owner == "ops-team" and k.created_by == "test-admin"
    assert k.key.startswith("mlgov_") and "bot" in [x.name for x in admin.list_keys()]
    admin.revoke_key("bot")
    assert pub.update_model_group("churn", description="new").description == "new"
    assert pub.get_model_group("churn").description == "new"
