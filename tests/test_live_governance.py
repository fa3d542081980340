"""The governance attacks of issue 9 against a real server (uvicorn, real sockets, committed transactions)."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import delete, select

from mlgov import auth
from mlgov.app import create_app
from mlgov.audit import AuditEvent
from tests.conftest import make_settings
from tests.helpers import version_body
from tests.infra import LiveServer
from tests.test_governance import CFG, frame

pytestmark = pytest.mark.live



def test_governance_attacks_on_a_live_server(live_db, tmp_path):
    with live_db.session_scope() as s:
        admin = {"Authorization": f"Bearer {auth.create_key(s, 'root', 'admin', actor='test', owner='ann')[1]}"}
        appr = {"Authorization": f"Bearer {auth.create_key(s, 'appr', 'approver', actor='test', owner='bea')[1]}"}
    app = create_app(make_settings(tmp_path, audit_checkpoint_every=5), db=live_db)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.post("/api/v1/model-groups", json={"name": "g"}, headers=admin).status_code == 201
        assert c.patch("/api/v1/model-groups/g", json={"approval_policy": {"require_bias_report": True}},
                       headers=admin).status_code == 200
        assert c.post("/api/v1/model-groups/g/versions", json=version_body(1), headers=admin).status_code == 201
        # four-eyes through a second key the registrant minted for itself
        second = c.post("/api/v1/keys", json={"name": "ann-approver", "role": "approver"}, headers=admin).json()
        r = c.post("/api/v1/model-groups/g/versions/1/approval", json={"status": "Approved", "comment": "ok"},
                   headers={"Authorization": f"Bearer {second['key']}"})
        assert r.status_code == 403 and "created by 'ann'" in r.json()["detail"]
        # a bias report the registrant computed on data it chose (predictions = labels)
        r = c.post("/api/v1/clarify/bias", headers=admin, data={"model_group": "g", "model_version": "1"},
                   files={"file": ("d.csv", frame().to_csv(index=False).encode()),
                          "config": ("c.json", json.dumps(CFG).encode())})
        assert r.status_code == 200
        r = c.post("/api/v1/model-groups/g/versions/1/approval", json={"status": "Approved", "comment": "ok"},
                   headers=appr)
        assert r.status_code == 409 and "does not count" in r.json()["detail"]
        r = c.post("/api/v1/model-groups/g/versions/1/approval", headers=admin,
                   json={"status": "Approved", "comment": "risk accepted", "override_policy": True})
        assert r.status_code == 403   # the registrant's owner may not decide, override or not
        r = c.post("/api/v1/model-groups/g/versions/1/approval", json={"status": "Rejected", "comment": "no"},
                   headers=appr)
        assert r.status_code == 200
        # deleting the approver's decision from lineage
        act = c.get("/api/v1/lineage/actions", params={"type": "Approval"}, headers=admin).json()["items"][0]
        r = c.delete(f"/api/v1/lineage/actions/{act['id']}", headers=admin)
        assert r.status_code == 403 and "evidence" in r.json()["detail"]
        # the last admin revoking itself
        r = c.delete("/api/v1/keys/root", headers=admin)
        assert r.status_code == 409 and "last active admin" in r.json()["detail"]
        verified = c.get("/api/v1/audit/verify", headers=admin).json()
        assert verified["ok"] is True and verified["anchored"] is True
        cp = verified["checkpoint"]["seq"]
        # truncating the audit log behind the server's back
        with live_db.session_scope() as s:
            s.execute(delete(AuditEvent).where(AuditEvent.seq >= cp))
            assert s.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) == cp - 1
        res = c.get("/api/v1/audit/verify", headers=admin).json()
        assert res["ok"] is False and "truncation" in res["reason"] and res["first_bad_seq"] == cp
