"""MLflow's own client (mlflow-skinny) against a live mlgov: the registry calls work, governed by mlgov's rules.

Every call goes through ``mlflow.tracking.MlflowClient`` or ``mlflow.register_model`` over real sockets, with the
key in ``MLFLOW_TRACKING_TOKEN`` (or Basic auth); what MLflow's client does not send (a bad page token, an
oversized page) is sent raw. Approvals happen natively, as they must.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from tests.conftest import make_settings
from tests.helpers import version_body
from tests.infra import LiveServer, free_port
from tests.test_live import Receiver, _wait

mlflow = pytest.importorskip("mlflow")
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

pytestmark = [pytest.mark.live, pytest.mark.filterwarnings("ignore::FutureWarning")]   # stages: deprecated by MLflow

API = "/api/v1"
ROLES = [("admin", "admin", None), ("pub", "publisher", None), ("appr", "approver", None),
         ("appr2", "approver", None), ("viewer", "viewer", None),
         ("pub-appr", "approver", "test-pub")]   # an approver key held by the publisher's owner


@dataclass
class World:
    url: str
    keys: dict[str, str]
    http: httpx.Client
    client: MlflowClient
    db: Database
    store_root: str
    monkeypatch: pytest.MonkeyPatch

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    @contextmanager
    def as_(self, who: str) -> Iterator[None]:
        """Calls in this block carry ``who``'s key as MLFLOW_TRACKING_TOKEN (the client reads it per request)."""
        before = os.environ.get("MLFLOW_TRACKING_TOKEN")
        self.monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", self.keys[who])
        try:
            yield
        finally:
            if before is None:
                self.monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
            else:
                self.monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", before)

    def approve(self, name: str, version: int, who: str = "appr") -> None:
        r = self.http.post(f"{API}/model-groups/{name}/versions/{version}/approval", headers=self.h(who),
                           json={"status": "Approved", "comment": "holdout AUC 0.91"})
        assert r.status_code == 200, r.text

    def audit(self, action: str, subject: str | None = None) -> list[dict[str, Any]]:
        params = {"action": action, **({"subject": subject} if subject else {})}
        r = self.http.get(f"{API}/audit/events", params=params, headers=self.h("admin"))
        assert r.status_code == 200, r.text
        return list(r.json()["items"])


@pytest.fixture
def world(live_db: Database, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    keys = {}
    with live_db.session_scope() as s:
        for name, role, owner in ROLES:
            keys[name] = auth.create_key(s, f"test-{name}", role, actor="test", owner=owner)[1]
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = make_settings(tmp_path, background_workers=True, dispatcher_poll_s=0.1, outbound_allow="127.0.0.1")
    with LiveServer(create_app(settings, db=live_db)) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", keys["pub"])
        client = MlflowClient(tracking_uri=srv.url, registry_uri=srv.url)
        yield World(srv.url, keys, http, client, live_db, settings.resolved_store_url, monkeypatch)


def _code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


# --- registered models and versions ---------------------------------------------------------------------------

def test_register_model_twice_and_both_doors_see_the_same_versions(world: World) -> None:
    c = world.client
    mlflow.set_registry_uri(world.url)
    mlflow.set_tracking_uri(world.url)
    v1 = mlflow.register_model("s3://models/churn/1/model", "churn", tags={"team": "growth"})
    v2 = mlflow.register_model("s3://models/churn/2/model", "churn")   # RESOURCE_ALREADY_EXISTS → version 2
    assert (v1.version, v2.version, v1.status, v1.current_stage) == ("1", "2", "READY", "None")
    assert v1.tags["team"] == "growth" and v1.tags["mlgov.approval_status"] == "PendingManualApproval"
    assert v1.tags["mlgov.artifact_sha256"] == "unverified" and v1.user_id == "test-pub"
    assert "could not hash the source" in c.get_model_version("churn", "1").status_message
    # through MLflow, visible natively: the source is the artifact, no hash mlgov could verify
    native = world.http.get(f"{API}/model-groups/churn/versions/1", headers=world.h("viewer")).json()
    assert native["artifact_uri"] == "s3://models/churn/1/model" and native["artifact_sha256"] is None
    assert native["metadata"] == {"team": "growth"} and native["stage"] == "Development"
    # natively, visible through MLflow (with its run)
    r = world.http.post(f"{API}/model-groups/churn/versions", headers=world.h("pub"),
                        json=version_body(3, run_id="r-123", run_link="https://tracking.local/#/runs/r-123"))
    assert r.status_code == 201, r.text
    v3 = c.get_model_version("churn", "3")
    assert v3.source == "s3://models/churn/v3/model.tar.gz" and v3.run_id == "r-123"
    assert v3.run_link == "https://tracking.local/#/runs/r-123" and v3.tags["git_commit"] == "c3"
    assert v3.tags["mlgov.artifact_sha256"] == native_sha(world, 3)
    assert c.get_model_version_download_uri("churn", "1") == "s3://models/churn/1/model"
    assert [e["subject_id"] for e in world.audit("version.registered")] == ["churn/1", "churn/2", "churn/3"]


def test_mlflow_style_model_names_work_through_every_door(world: World) -> None:
    """MLflow names models freely (underscores, dots, spaces, non-ASCII, long names); SageMaker's
    stricter rule made the commonest MLflow names (``fraud_model``) fail on the first call."""
    from urllib.parse import quote, unquote
    c = world.client
    names = ["fraud_model", "team.churn v2", "modèle-crédit", "x" * 245, 'q"uote ✓ #1?']
    for name in names:
        c.create_registered_model(name, tags={"team": "risk"})
        assert c.create_model_version(name, "s3://models/m/1").version == "1"
    assert c.get_registered_model("fraud_model").latest_versions[0].version == "1"
    found = c.search_registered_models(filter_string="name LIKE 'team.%'")
    assert [m.name for m in found] == ["team.churn v2"]
    # LIKE is case-sensitive on both backends, as on MLflow (SQLite's own LIKE is not); ILIKE is not
    assert c.search_registered_models(filter_string="name LIKE 'TEAM.%'") == []
    assert [m.name for m in c.search_registered_models(filter_string="name ILIKE 'TEAM.%'")] == ["team.churn v2"]
    assert [m.name for m in c.search_registered_models(filter_string="name LIKE 'fraud_mode_'")] == ["fraud_model"]
    assert len(c.search_registered_models(filter_string="tags.team LIKE 'ri%'")) == len(names)
    assert c.search_registered_models(filter_string="tags.team LIKE 'RI%'") == []
    assert c.search_model_versions("name = 'fraud_model' AND source_path LIKE 'S3://%'") == []
    # a backslash makes the next character itself on both backends (PostgreSQL's LIKE escape; GLOB has none)
    c.create_registered_model("fraudXmodel")
    def like(pattern: str) -> list[str]:
        return sorted(m.name for m in c.search_registered_models(filter_string=f"name LIKE '{pattern}'"))
    assert like("fraud_model") == ["fraudXmodel", "fraud_model"] and like("fraud\\_model") == ["fraud_model"]
    assert like("q\"uote ✓ #1?") == ['q"uote ✓ #1?'] and like("%#1\\?") == ['q"uote ✓ #1?'] and like("%[%") == []
    assert like("%?") == ['q"uote ✓ #1?'] and like("%\\\\") == []
    for name in names:   # natively, the name is one path segment, percent-encoded
        r = world.http.get(f"{API}/model-groups/{quote(name, safe='')}/versions/1", headers=world.h("viewer"))
        assert r.status_code == 200 and r.json()["group"] == name, r.text
    world.approve("team.churn v2", 1)
    with world.as_("appr2"):
        c.set_registered_model_alias("team.churn v2", "champion", "1")
    assert c.get_model_version_by_alias("team.churn v2", "champion").version == "1"
    c.rename_registered_model("fraud_model", "fraud_model.v2")
    assert world.audit("model_group.renamed")[0]["after"] == {"name": "fraud_model.v2"}
    with httpx.Client(base_url=world.url, timeout=60) as browser:   # the console, signed in as a viewer
        form = browser.get("/console/sign-in").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        r = browser.post("/console/sign-in", data={"api_key": world.keys["viewer"], "csrf_token": token.group(1)})
        assert r.status_code == 303, r.text
        page = browser.get("/console/models")
        assert page.status_code == 200 and 'href="/console/models/team.churn%20v2"' in page.text, page.text[:3000]
        assert "modèle-crédit" in page.text
        for path in ("/console/models/team.churn%20v2", "/console/models/team.churn%20v2/versions/1",
                     f"/console/models/{quote(names[-1], safe='')}/versions/1"):
            assert browser.get(path).status_code == 200, path
        # a download named after the model: quotes and non-Latin-1 text stay out of the header's plain filename
        r = browser.get("/console/audit/report.html", params={"group": names[-1]})
        assert r.status_code == 200, r.text[:500]
        disposition = r.headers["content-disposition"]
        plain = re.search(r'filename="([^"]*)"', disposition)
        assert plain and plain.group(1).startswith("compliance-q_uote_1_-"), disposition
        exact = re.search(r"filename\*=UTF-8''(\S+)", disposition)
        assert exact and unquote(exact.group(1)).startswith(f"compliance-{names[-1]}-"), disposition


def native_sha(world: World, version: int) -> str:
    r = world.http.get(f"{API}/model-groups/churn/versions/{version}", headers=world.h("viewer"))
    return str(r.json()["artifact_sha256"])


def test_registered_model_crud_tags_and_existing_name(world: World) -> None:
    c = world.client
    m = c.create_registered_model("fraud", tags={"team": "risk"}, description="card fraud")
    assert (m.name, m.description, m.tags) == ("fraud", "card fraud", {"team": "risk"})
    with pytest.raises(MlflowException) as exc:
        c.create_registered_model("fraud")
    assert _code(exc) == "RESOURCE_ALREADY_EXISTS" and "already exists" in str(exc.value)
    c.update_registered_model("fraud", description="card-not-present fraud")
    c.set_registered_model_tag("fraud", "tier", "1")
    c.delete_registered_model_tag("fraud", "team")
    got = c.get_registered_model("fraud")
    assert got.description == "card-not-present fraud" and got.tags == {"tier": "1"}
    mv = c.create_model_version("fraud", "s3://models/fraud/1", run_id="run-1", description="first")
    c.update_model_version("fraud", mv.version, description="first, retrained")
    c.set_model_version_tag("fraud", mv.version, "dataset", "2026-11")
    c.delete_model_version_tag("fraud", mv.version, "dataset")
    c.set_model_version_tag("fraud", mv.version, "owner", "risk-team")
    got_v = c.get_model_version("fraud", mv.version)
    assert got_v.description == "first, retrained" and got_v.tags["owner"] == "risk-team"
    assert "dataset" not in got_v.tags and got_v.run_id == "run-1"
    assert [v.version for v in c.get_registered_model("fraud").latest_versions] == ["1"]
    # rename, then delete the never-approved version and the model: each audited
    c.rename_registered_model("fraud", "fraud-v2")
    assert c.get_registered_model("fraud-v2").name == "fraud-v2"
    with pytest.raises(MlflowException) as exc:
        c.get_registered_model("fraud")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    # from a registry trial: the lineage stayed under the old name, and a model created later under it inherited
    # the renamed model's training data, approvals and stage moves
    def upstream(group: str) -> set[str]:
        r = world.http.post(f"{API}/lineage/query", headers=world.h("viewer"), json={
            "start": [f"mlgov://model-groups/{group}/versions/1"], "direction": "Ascendants"})
        assert r.status_code == 200, r.text
        return {n["uri"] or n["name"] for n in r.json()["vertices"]}

    assert "s3://models/fraud/1" in upstream("fraud-v2")
    c.create_registered_model("fraud")
    c.create_model_version("fraud", "s3://models/other/1")
    assert "s3://models/fraud/1" not in upstream("fraud") and "s3://models/other/1" in upstream("fraud")
    c.delete_model_version("fraud", "1")       # deleted and created again: the new one starts clean too
    c.delete_registered_model("fraud")
    c.create_registered_model("fraud")
    c.create_model_version("fraud", "s3://models/third/1")
    assert "s3://models/other/1" not in upstream("fraud") and "s3://models/third/1" in upstream("fraud")
    c.delete_model_version("fraud-v2", "1")
    c.delete_registered_model("fraud-v2")
    assert world.audit("model_group.renamed")[0]["before"] == {"name": "fraud"}
    assert world.audit("version.deleted")[-1]["subject_id"] == "fraud-v2/1"
    assert world.audit("model_group.deleted")[-1]["subject_id"] == "fraud-v2"
    assert [e["subject_id"] for e in world.audit("version.metadata_changed")] == ["fraud/1"] * 3
    assert world.http.get(f"{API}/model-groups/fraud-v2", headers=world.h("viewer")).status_code == 404


def test_search_filters_and_page_tokens(world: World) -> None:
    c = world.client
    for i in range(5):
        c.create_registered_model(f"churn-{i}", tags={"team": "growth" if i % 2 else "risk"})
        c.create_model_version(f"churn-{i}", f"s3://m/{i}", run_id=f"run-{i % 2}")
    c.create_registered_model("other")
    page = c.search_registered_models("name LIKE 'churn-%'", max_results=2, order_by=["name DESC"])
    names = [m.name for m in page]
    while page.token:
        page = c.search_registered_models("name LIKE 'churn-%'", max_results=2, order_by=["name DESC"],
                                          page_token=page.token)
        names += [m.name for m in page]
    assert names == [f"churn-{i}" for i in (4, 3, 2, 1, 0)]
    # MLflow's server answers max_results=0 with an empty page and the token of the next (it was refused)
    page = c.search_registered_models("name LIKE 'churn-%'", max_results=0, order_by=["name DESC"])
    assert list(page) == [] and page.token
    page = c.search_registered_models("name LIKE 'churn-%'", max_results=1, page_token=page.token,
                                      order_by=["name DESC"])
    assert [m.name for m in page] == ["churn-4"]
    assert not c.search_registered_models("name = 'none'", max_results=0).token
    assert {m.name for m in c.search_registered_models("tags.team = 'growth'")} == {"churn-1", "churn-3"}
    assert [m.name for m in c.search_registered_models("name = 'other'")] == ["other"]
    versions = c.search_model_versions("run_id = 'run-1'")    # the client's default max_results is 10,000
    assert sorted(v.name for v in versions) == ["churn-1", "churn-3"]
    assert [v.name for v in c.search_model_versions("name = 'churn-2'")] == ["churn-2"]
    assert len(c.search_model_versions("run_id IN ('run-0', 'run-1')", max_results=2)) == 2
    mlflow.set_registry_uri(world.url)
    mlflow.set_tracking_uri(world.url)   # unset, MLflow 3 opens ./mlflow.db (a file left in the checkout)
    assert len(mlflow.search_model_versions(filter_string="name LIKE 'churn-%'")) == 5


# --- governance through MLflow's verbs ---------------------------------------------------------------------------

def test_champion_alias_is_governed(world: World) -> None:
    c = world.client
    c.create_registered_model("churn")
    c.create_model_version("churn", "s3://m/1")
    with pytest.raises(MlflowException) as exc, world.as_("appr"):   # not approved yet: refused, rule named
        c.set_registered_model_alias("churn", "champion", "1")
    assert _code(exc) == "PERMISSION_DENIED" and "Approved" in str(exc.value) and "@champion" in str(exc.value)
    with pytest.raises(MlflowException) as exc:        # tags cannot pose as an approval
        c.set_model_version_tag("churn", "1", "mlgov.approval_status", "Approved")
    assert _code(exc) == "PERMISSION_DENIED" and "set by mlgov" in str(exc.value)
    # an operator's trial: look-alikes of the reserved prefix were accepted and listed beside the real facts
    for key in (" mlgov.approval_status", "mlgov\uff0eapproved_by", "\u200bmlgov.approved_by", "ＭＬＧＯＶ:x"):
        with pytest.raises(MlflowException) as exc:
            c.set_model_version_tag("churn", "1", key, "Approved")
        assert _code(exc) == "PERMISSION_DENIED" and "set by mlgov" in str(exc.value), key
        with pytest.raises(MlflowException) as exc:
            c.set_registered_model_tag("churn", key, "Approved")
        assert _code(exc) == "PERMISSION_DENIED", key
    world.approve("churn", 1)                          # natively, by someone independent of the registrant
    assert c.get_model_version("churn", "1").tags["mlgov.approved_by"] == "test-appr"
    with pytest.raises(MlflowException) as exc:        # a publisher may not move @champion
        c.set_registered_model_alias("churn", "champion", "1")
    assert _code(exc) == "PERMISSION_DENIED" and "only approver or admin" in str(exc.value)
    with pytest.raises(MlflowException) as exc, world.as_("pub-appr"):   # nor the registrant's own approver key
        c.set_registered_model_alias("churn", "champion", "1")
    assert _code(exc) == "PERMISSION_DENIED" and "four-eyes" in str(exc.value)
    for look_alike in ("Champion", "PRODUCTION", "Production"):
        with pytest.raises(MlflowException) as exc:   # a migration trial set these on an unapproved version
            c.set_registered_model_alias("churn", look_alike, "1")
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "reads like the governed alias" in str(exc.value)
    with world.as_("appr2"):
        c.set_registered_model_alias("churn", "champion", "1")
    assert c.get_model_version_by_alias("churn", "champion").version == "1"
    assert c.get_registered_model("churn").aliases == {"champion": "1"}
    # the mlgov.* tags are facts, and a filter on one reads the fact (nobody can write such a tag)
    def found(where: str) -> list[str]:
        return [v.version for v in c.search_model_versions(f"name = 'churn' AND {where}")]
    assert found("tags.`mlgov.approval_status` = 'Approved'") == ["1"]
    assert found("tags.`mlgov.approval_status` != 'Approved'") == found("tags.`mlgov.stage` = 'Staging'") == []
    assert found("tags.`mlgov.stage` LIKE 'Dev%'") == ["1"]
    assert found("tags.`mlgov.artifact_sha256` = 'unverified'") == found("version_number >= 1")
    assert found("tags.`mlgov.artifact_sha256` != 'unverified'") == []
    # what the tag shows for no hash is what every operator compares
    assert found("tags.`mlgov.artifact_sha256` LIKE 'unver%'") == found("tags.`mlgov.artifact_sha256` != 'ab'") \
        == found("tags.`mlgov.artifact_sha256` ILIKE 'UNVERIFIED'") == found("version_number >= 1")
    assert found("tags.`mlgov.artifact_sha256` LIKE 'ab%'") == []
    assert found("tags.`mlgov.artifact_sha256` LIKE '" + "%" * 5000 + "x'") == []   # no backtracking blow-up
    with pytest.raises(MlflowException) as exc:
        found("tags.`mlgov.approved_by` = 'x'")
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "mlgov.approval_status" in str(exc.value)
    c.set_registered_model_alias("churn", "candidate", "1")   # ungoverned aliases: any publisher
    assert c.get_model_version("churn", "1").aliases == ["candidate", "champion"]
    c.delete_registered_model_alias("churn", "candidate")
    with pytest.raises(MlflowException) as exc:
        c.get_model_version_by_alias("churn", "candidate")
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "alias candidate not found. Fix" in str(exc.value)   # as MLflow
    c.delete_registered_model_alias("churn", "candidate")   # deleting it again succeeds, as on MLflow
    moves = world.audit("version.alias_set", "churn/1")
    assert [(m["actor"], m["after"]) for m in moves] == [("test-appr2", {"alias": "champion", "version": 1}),
                                                          ("test-pub", {"alias": "candidate", "version": 1})]
    assert world.audit("version.alias_removed")[0]["before"] == {"alias": "candidate", "version": 1}
    # what @champion pointed at, at a time, natively
    r = world.http.get(f"{API}/model-groups/churn/aliases", headers=world.h("viewer"))
    assert r.json()["aliases"] == {"champion": 1}
    with pytest.raises(MlflowException) as exc:        # approved versions stay: they are the release record
        c.delete_model_version("churn", "1")
    assert _code(exc) == "PERMISSION_DENIED" and "approved" in str(exc.value)
    # an operator's trial: rejecting the approved version left models:/churn@champion serving a rejected model
    c.set_registered_model_alias("churn", "candidate", "1")
    r = world.http.post(f"{API}/model-groups/churn/versions/1/approval", headers=world.h("appr"),
                        json={"status": "Rejected", "comment": "leaks the label"})
    assert r.status_code == 200, r.text
    with pytest.raises(MlflowException) as exc:
        c.get_model_version_by_alias("churn", "champion")
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "alias champion not found" in str(exc.value)
    assert c.get_registered_model("churn").aliases == {"candidate": "1"}   # an ungoverned alias is not a release
    removed = [(e["actor"], e["before"]) for e in world.audit("version.alias_removed", "churn/1")]
    assert ("test-appr", {"alias": "champion", "version": 1}) in removed


def test_long_tags_as_mlflow_users_keep_them(world: World) -> None:
    """MLflow keeps long tag keys and values (JSON, signatures, notes); SageMaker's 128/256 limits refused them.
    Values past PostgreSQL's btree entry size are indexed by their first 200 characters, and an equality filter
    still tells apart two values that share those."""
    c = world.client
    signature = json.dumps({"inputs": [{"name": f"feature_{i}", "type": "double"} for i in range(100)]})
    assert len(signature) > 4000
    shared = "p" * 250
    c.create_registered_model("churn", tags={"k" * 250: "v" * 5000})
    c.create_model_version("churn", "s3://m/1", tags={"signature": signature, "note": shared + "-one"})
    c.create_model_version("churn", "s3://m/2", tags={f"t{i}": str(i) for i in range(99)} | {"note": shared + "-two"})
    c.set_model_version_tag("churn", "1", "k" * 250, "w" * 5000)
    assert c.get_model_version("churn", "1").tags["signature"] == signature
    assert c.get_registered_model("churn").tags == {"k" * 250: "v" * 5000}

    def found(where: str) -> list[str]:
        return [v.version for v in c.search_model_versions(f"name = 'churn' AND {where}")]
    assert found(f"tags.note = '{shared}-two'") == ["2"]
    assert found(f"tags.note = '{shared}-one'") == ["1"]
    assert found(f"tags.note = '{shared}'") == []
    assert found(f"tags.note = '{shared * 10}'") == []   # 2,500 characters: longer than the indexed prefix
    assert found("tags.t98 = '98'") == ["2"]
    assert found(f"tags.`{'k' * 250}` = '{'w' * 5000}'") == ["1"]   # the longest tag fits in a filter
    r = world.http.get(f"{API}/model-groups/churn/versions", params={"metadata": f"note={shared}-one"},
                       headers=world.h("viewer"))
    assert [v["version"] for v in r.json()["items"]] == [1], r.text
    for bad in ({"k" * 251: "v"}, {"k": "v" * 5001}, {f"t{i}": "v" for i in range(101)}):
        with pytest.raises(MlflowException) as exc:
            c.create_model_version("churn", "s3://m/3", tags=bad)
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "tags" in str(exc.value)
    with pytest.raises(MlflowException) as exc:
        c.set_model_version_tag("churn", "1", "note", "x" * 5001)
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "5000" in str(exc.value)
    # one tag at a time up to the same 100 the creating call allows (the setters stopped at 50 before)
    c.create_registered_model("wide", tags={f"g{i}": "v" for i in range(99)})
    c.set_registered_model_tag("wide", "g99", "v")
    c.delete_registered_model_tag("wide", "g0")
    c.delete_model_version_tag("churn", "2", "note")
    c.set_model_version_tag("churn", "2", "t99", "v")   # version 2 holds 100 again
    with pytest.raises(MlflowException) as exc:
        c.set_model_version_tag("churn", "2", "t100", "v")
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "100 metadata pairs" in str(exc.value)


def test_wire_shapes_as_mlflow_server_writes_them(world: World) -> None:
    """Raw REST answers compared key by key with MLflow 3.17.2's server: "" for a missing run, no aliases inside
    latest_versions, and proto3's empty answer for a search that finds nothing."""
    c = world.client
    c.create_registered_model("churn")
    c.create_model_version("churn", "s3://m/1")
    h = world.h("viewer")
    got = world.http.get("/api/2.0/mlflow/model-versions/get", params={"name": "churn", "version": "1"}, headers=h)
    version = got.json()["model_version"]
    assert (version["run_id"], version["run_link"]) == ("", ""), version
    model = world.http.get("/api/2.0/mlflow/registered-models/get", params={"name": "churn"}, headers=h).json()
    assert "aliases" not in model["registered_model"]["latest_versions"][0], model
    for path, params in (("model-versions/search", {"filter": "name = 'nope'"}),
                         ("registered-models/search", {"filter": "name = 'nope'"})):
        r = world.http.get(f"/api/2.0/mlflow/{path}", params=params, headers=h)
        assert r.status_code == 200 and r.json() == {}, (path, r.text)
    assert c.search_model_versions("name = 'nope'") == [] and c.get_model_version("churn", "1").run_id == ""
    # without order_by, versions come as MLflow's server orders them: last updated first
    for i in (2, 3):
        c.create_model_version("churn", f"s3://m/{i}")
    assert [v.version for v in c.search_model_versions("name = 'churn'")] == ["3", "2", "1"]
    c.update_model_version("churn", "1", description="retrained")
    assert [v.version for v in c.search_model_versions("name = 'churn'")] == ["1", "3", "2"]
    page = c.search_model_versions("name = 'churn'", max_results=2)
    assert [v.version for v in page] == ["1", "3"] and page.token


def test_deleting_takes_ungoverned_aliases_along_as_mlflow_does(world: World) -> None:
    c = world.client
    c.create_registered_model("churn")
    for i in (1, 2, 3):
        c.create_model_version("churn", f"s3://m/{i}")
    c.set_registered_model_alias("churn", "keep", "2")
    c.set_registered_model_alias("churn", "shadow", "2")
    before = c.get_registered_model("churn").last_updated_timestamp
    c.delete_model_version("churn", "2")   # MLflow deletes the version and its aliases; so does mlgov, audited
    assert c.get_registered_model("churn").last_updated_timestamp > before   # the model changed, as on MLflow
    assert c.get_registered_model("churn").aliases == {}
    removed = world.audit("version.alias_removed", "churn/2")
    assert sorted(e["before"]["alias"] for e in removed) == ["keep", "shadow"]
    assert all(e["actor"] == "test-pub" and e["after"] == {"alias": e["before"]["alias"], "version": None}
               for e in removed)
    now = world.http.get(f"{API}/model-groups/churn/aliases", headers=world.h("viewer"))
    assert now.status_code == 200 and now.json()["aliases"] == {}
    c.set_registered_model_alias("churn", "candidate", "3")
    c.delete_registered_model("churn")   # the model too, with its remaining ungoverned alias
    assert [e["before"]["alias"] for e in world.audit("version.alias_removed", "churn/3")] == ["candidate"]
    assert world.audit("model_group.deleted")[0]["subject_id"] == "churn"
    # a governed alias keeps its version: only an approver moves it, and it points only at approved versions
    c.create_registered_model("fraud")
    c.create_model_version("fraud", "s3://f/1")
    world.approve("fraud", 1)
    with world.as_("appr2"):
        c.set_registered_model_alias("fraud", "champion", "1")
    with pytest.raises(MlflowException) as exc:
        c.delete_registered_model("fraud")
    assert _code(exc) == "PERMISSION_DENIED" and "approved" in str(exc.value)


def test_transition_stage_keeps_mlgov_rules_and_history(world: World) -> None:
    c = world.client
    c.create_registered_model("churn")
    for i in (1, 2):
        c.create_model_version("churn", f"s3://m/{i}")
    with pytest.raises(MlflowException) as exc, world.as_("appr"):   # mlgov's lifecycle: None → Staging first
        c.transition_model_version_stage("churn", "1", "Production")
    assert _code(exc) == "PERMISSION_DENIED" and "allowed stages are" in str(exc.value)   # the group's rule
    before = c.get_registered_model("churn").last_updated_timestamp
    with world.as_("appr"):
        c.transition_model_version_stage("churn", "1", "staging")
    assert c.get_registered_model("churn").last_updated_timestamp > before   # a stage move changes the model too
    with world.as_("appr"), pytest.raises(MlflowException) as exc:
        c.transition_model_version_stage("churn", "1", "Production")
    assert _code(exc) == "PERMISSION_DENIED" and "accepts only Approved versions" in str(exc.value)
    world.approve("churn", 1)
    with world.as_("appr"):
        mv = c.transition_model_version_stage("churn", "1", "Production", archive_existing_versions=True)
    assert mv.current_stage == "Production"
    latest = {v.current_stage: v.version for v in c.get_latest_versions("churn")}
    assert latest == {"Production": "1", "None": "2"}
    # a search by the stage the versions show (was []: the filter compared "None" with "Development")
    found = {(v.version, v.current_stage) for v in c.search_model_versions("name='churn' AND current_stage='None'")}
    assert found == {("2", "None")}
    assert {v.version for v in c.search_model_versions(
        "name='churn' AND current_stage IN ('None', 'Production')")} == {"1", "2"}
    assert c.search_model_versions("name='churn' AND current_stage='Development'") == []
    # MLflow's stage names in any case, as get_latest_versions reads them (a trial's 'none' found nothing)
    assert {v.version for v in c.search_model_versions(
        "name='churn' AND current_stage IN ('none', 'PRODUCTION')")} == {"1", "2"}
    assert [v.version for v in c.get_latest_versions("churn", stages=["Production"])] == ["1"]
    history = world.http.get(f"{API}/model-groups/churn/stage-history", headers=world.h("viewer")).json()
    assert [(h["version"], h["to_stage"]) for h in history][-2:] == [(1, "Staging"), (1, "Production")]
    now = dt.datetime.now(dt.UTC).isoformat()
    r = world.http.get(f"{API}/model-groups/churn/stages/Production", params={"at": now}, headers=world.h("viewer"))
    assert r.json()["versions"] == [1]


def test_stage_moves_as_mlflow_makes_them(world: World) -> None:
    """A retried move succeeds; archive_existing_versions into Staging archives the other Staging versions (audited
    moves); the flag is refused where MLflow refuses it."""
    c = world.client
    c.create_registered_model("churn")
    for i in (1, 2):
        c.create_model_version("churn", f"s3://m/{i}")
    with world.as_("appr"):
        c.transition_model_version_stage("churn", "1", "Staging")
        assert c.transition_model_version_stage("churn", "1", "Staging").current_stage == "Staging"   # a retry
        c.transition_model_version_stage("churn", "2", "Staging", archive_existing_versions=True)
        with pytest.raises(MlflowException) as exc:
            c.transition_model_version_stage("churn", "1", "Archived", archive_existing_versions=True)
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "Staging and Production only" in str(exc.value)
    assert {v.version: v.current_stage for v in c.get_latest_versions("churn")} == {"1": "Archived", "2": "Staging"}
    history = world.http.get(f"{API}/model-groups/churn/stage-history", headers=world.h("viewer")).json()
    assert [(h["version"], h["to_stage"], h["reason"]) for h in history][-3:] == [
        (1, "Staging", "requested"), (1, "Archived", "displaced"), (2, "Staging", "requested")]


def test_mlflow_client_calls_that_differed_from_mlflow(world: World) -> None:
    """Found by running the same calls against MLflow 3.17.2's own server: copy_model_version, version_number
    comparisons, quotes in filter values, versions without a run, deletes of what is already gone, long
    descriptions; and mlgov's own tags stay unwritable on registered models too."""
    c = world.client
    c.create_registered_model("churn")
    c.create_model_version("churn", "s3://m/1", run_id="r1")
    c.create_model_version("churn", "s3://m/2")
    c.create_model_version("churn", "s3://m/3", run_id="r3", description="d" * 5000)
    # copy_model_version sends back the tags it read (mlgov.* included) and a models:/ source
    copy = c.copy_model_version("models:/churn/1", "churn-copy")
    assert copy.source == "s3://m/1" and c.get_model_version_download_uri("churn-copy", copy.version) == "s3://m/1"
    tags = c.get_model_version("churn-copy", copy.version).tags
    assert tags["mlgov.approval_status"] == "PendingManualApproval" and "mlgov.approved_by" not in tags
    with pytest.raises(MlflowException) as exc:
        c.create_model_version("churn", "models:/nope/1")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    # a models:/ source brings its version's run along; a different stated run is refused, as on MLflow
    assert c.create_model_version("churn-copy", "models:/churn/1").run_id == "r1"
    with pytest.raises(MlflowException) as exc:
        c.create_model_version("churn-copy", "models:/churn/1", run_id="r3")
    assert _code(exc) == "INVALID_PARAMETER_VALUE" and "referenced version" in str(exc.value)
    # relative path segments and local paths outside mlgov's store are refused, as MLflow's server refuses them
    for bad in ("s3://b/models/../other", "s3://b/models/%2E%2E/other", "/tmp/model", "file:///etc/passwd",
                "relative/model", "s3://b/m\x00"):
        with pytest.raises(MlflowException) as exc:
            c.create_model_version("churn-copy", bad)
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "source" in str(exc.value), bad
    assert [v.version for v in c.search_model_versions("name = 'churn-copy'")] == ["2", "1"]
    found = c.search_model_versions("name = 'churn' AND version_number > 1", order_by=["version_number ASC"])
    assert [v.version for v in found] == ["2", "3"]
    assert [v.version for v in c.search_model_versions("name='churn' AND version_number <= 1")] == ["1"]
    with pytest.raises(MlflowException) as exc:
        c.search_model_versions("name > 'churn'")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    assert [v.version for v in c.search_model_versions("name = 'churn' AND run_id = ''")] == ["2"]
    assert sorted(v.version for v in c.search_model_versions("name = 'churn' AND run_id != 'r1'")) == ["2", "3"]
    c.set_model_version_tag("churn", "1", "who", "o'brien")
    c.set_model_version_tag("churn", "2", "who", "o''brien")   # MLflow's server takes the text between the quotes
    for text in ("name = 'churn' AND tags.who = \"o'brien\"", "tags.who = \"o'brien\" AND name = 'churn'"):
        assert [v.version for v in c.search_model_versions(text)] == ["1"], text
    assert [v.version for v in c.search_model_versions("name = 'churn' AND tags.who = 'o''brien'")] == ["2"]
    # a DELETE's body passed no body guard: a repeated key was read as its last value
    r = world.http.request("DELETE", "/api/2.0/mlflow/registered-models/delete-tag", headers={
        **world.h("pub"), "content-type": "application/json"}, content=b'{"name": "churn", "key": "a", "key": "b"}')
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
    assert "repeats the key 'key'" in r.json()["message"]
    c.delete_registered_model_tag("churn", "never-set")
    c.delete_model_version_tag("churn", "1", "never-set")
    with pytest.raises(MlflowException) as exc:
        c.delete_model_version_tag("churn", "99", "never-set")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    c.update_registered_model("churn", description="x" * 5000)
    with pytest.raises(MlflowException) as exc:
        c.update_registered_model("churn", description="x" * 5001)
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    for call in (lambda: c.set_registered_model_tag("churn", "mlgov.approval_status", "Approved"),
                 lambda: c.create_registered_model("other", tags={"mlgov.approved_by": "me"})):
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == "PERMISSION_DENIED"
    assert c.search_registered_models("tags.`mlgov.approval_status` = 'Approved'") == []
    r = world.http.post("/api/2.0/mlflow/registered-models/create", headers=world.h("pub"),
                        content=b'{"name": "form"}')   # no JSON content type: refused, as by MLflow
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = world.http.post("/api/2.0/mlflow/registered-models/create", content=b'{"name": "form"}',
                        headers={**world.h("pub"), "Content-Type": "text/plain"})
    assert r.status_code == 400 and "Content-Type" in r.json()["message"]


def test_models_uris_of_a_name_with_at_signs_read_as_mlflow_reads_them(world: World) -> None:
    """MLflow (and mlgov) allow '@' in a model's name; MLflow's parser splits `name/ref` at the '/' and `name@alias`
    at the last '@'. mlgov refused every such models:/ source before; now it names the same version MLflow would."""
    c = world.client
    c.create_registered_model("team@churn")
    c.create_model_version("team@churn", "s3://m/at-1", run_id="r1")
    c.create_model_version("team@churn", "s3://m/at-2", run_id="r2")
    world.approve("team@churn", 2)
    with world.as_("appr2"):
        c.set_registered_model_alias("team@churn", "champion", "2")
    c.create_registered_model("copies")
    for source, run in (("models:/team@churn/1", "r1"), ("models:/team@churn@champion", "r2"),
                        ("models:/team@churn/latest", "r2")):
        assert c.create_model_version("copies", source).run_id == run, source
    copy = c.copy_model_version("models:/team@churn@champion", "copies")   # the real client parses it too
    assert copy.source == "s3://m/at-2"
    assert [v.source for v in c.search_model_versions("name = 'copies'", order_by=["version_number ASC"])] == [
        "s3://m/at-1", "s3://m/at-2", "s3://m/at-2", "s3://m/at-2"]
    for bad, code, said in (("models:/team@churn@nope", "RESOURCE_DOES_NOT_EXIST", "'team@churn' has no alias 'nope'"),
                            ("models:/team/1", "RESOURCE_DOES_NOT_EXIST", "group 'team' does not exist"),
                            ("models:/team@churn", "RESOURCE_DOES_NOT_EXIST", "group 'team' does not exist")):
        with pytest.raises(MlflowException) as exc:
            c.create_model_version("copies", bad)
        assert _code(exc) == code and said in str(exc.value), (bad, str(exc.value))


def test_mlflow_alias_and_stage_moves_are_in_the_record(world: World) -> None:
    """Alias moves and stage transitions made through MLflow's verbs are audited, answer "what was where at T"
    and appear in the group's compliance report (JSON and HTML)."""
    c = world.client
    c.create_registered_model("churn")
    for i in (1, 2):
        c.create_model_version("churn", f"s3://m/{i}")
        world.approve("churn", i)
    with world.as_("appr"):
        c.transition_model_version_stage("churn", "1", "Staging")
        c.transition_model_version_stage("churn", "1", "Production")
        c.set_registered_model_alias("churn", "champion", "1")
    between = dt.datetime.now(dt.UTC)
    with world.as_("appr"):
        c.transition_model_version_stage("churn", "2", "Staging")
        c.transition_model_version_stage("churn", "2", "Production")   # version 1 is displaced to Archived
        c.set_registered_model_alias("churn", "champion", "2")
        c.delete_registered_model_alias("churn", "champion")
    stage_moves = world.audit("version.stage_changed", "churn/1")
    assert [(m["actor"], m["after"]["stage"]) for m in stage_moves][:2] == [("test-appr", "Staging"),
                                                                            ("test-appr", "Production")]
    assert [m["after"] for m in world.audit("version.alias_set")] == [{"alias": "champion", "version": 1},
                                                                      {"alias": "champion", "version": 2}]
    at = {"at": between.isoformat()}
    r = world.http.get(f"{API}/model-groups/churn/stages/Production", params=at, headers=world.h("viewer"))
    assert r.json()["versions"] == [1]
    r = world.http.get(f"{API}/model-groups/churn/aliases", params=at, headers=world.h("viewer"))
    assert r.json()["aliases"] == {"champion": 1}
    r = world.http.get(f"{API}/model-groups/churn/stages/Production", headers=world.h("viewer"))
    assert r.json()["versions"] == [2]
    report = world.http.get(f"{API}/audit/report", params={"model_group": "churn"}, headers=world.h("viewer")).json()
    rows = {v["version"]: v for v in report["versions"]}
    assert [(a["from"], a["to"], a["by"]) for a in rows[1]["alias_history"]] == [(None, 1, "test-appr"),
                                                                                  (1, 2, "test-appr")]
    assert [(a["from"], a["to"]) for a in rows[2]["alias_history"]] == [(1, 2), (2, None)]
    assert [t["to"] for t in rows[1]["stage_history"]][-3:] == ["Staging", "Production", "Archived"]
    assert report["audit_chain"]["ok"] is True
    later = world.http.get(f"{API}/audit/report", headers=world.h("viewer"),
                           params={"model_group": "churn", "from": dt.datetime.now(dt.UTC).isoformat()}).json()
    assert later["versions"] == []        # moves outside the window are not listed
    html = world.http.get(f"{API}/audit/report", params={"model_group": "churn", "format": "html"},
                          headers=world.h("viewer")).text
    assert "@champion" in html and "removed" in html


def test_roles_and_auth(world: World) -> None:
    c = world.client
    c.create_registered_model("churn")
    with world.as_("viewer"):
        assert c.get_registered_model("churn").name == "churn"
        with pytest.raises(MlflowException) as exc:
            c.create_registered_model("other")
    assert _code(exc) == "PERMISSION_DENIED" and "viewer" in str(exc.value)
    # Basic auth: MLFLOW_TRACKING_USERNAME / PASSWORD with the key as password
    world.monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    world.monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "anyone")
    world.monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", world.keys["pub"])
    mv = c.create_model_version("churn", "s3://m/basic")
    assert mv.user_id == "test-pub"
    world.monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlgov_nope_nope")
    with pytest.raises(MlflowException) as exc:
        c.get_registered_model("churn")
    assert _code(exc) == "UNAUTHENTICATED"


# --- what the client does not send: bad input answered in MLflow's shape -----------------------------------------

@pytest.mark.parametrize(("method", "path", "params", "code", "needle"), [
    ("GET", "registered-models/search", {"page_token": "not-a-token"}, "INVALID_PARAMETER_VALUE", "page_token"),
    ("GET", "registered-models/search", {"page_token": base64.urlsafe_b64encode(b'{"offset": -5}').decode()},
     "INVALID_PARAMETER_VALUE", "page_token"),
    ("GET", "registered-models/search", {"max_results": "5000"}, "INVALID_PARAMETER_VALUE", "max_results"),
    ("GET", "model-versions/search", {"max_results": "1000000"}, "INVALID_PARAMETER_VALUE", "max_results"),
    ("GET", "model-versions/search", {"max_results": "0"}, "INVALID_PARAMETER_VALUE", "max_results"),
    ("GET", "model-versions/search", {"filter": "name = 'x' OR 1=1"}, "INVALID_PARAMETER_VALUE", "clause"),
    ("GET", "model-versions/search", {"filter": "user_id = 'x'"}, "INVALID_PARAMETER_VALUE", "user_id"),
    ("GET", "registered-models/search", {"order_by": "name SIDEWAYS"}, "INVALID_PARAMETER_VALUE", "order_by"),
    ("GET", "model-versions/get", {"name": "churn", "version": "latest"}, "INVALID_PARAMETER_VALUE", "version"),
    ("GET", "model-versions/get", {"name": "churn", "version": str(2**40)}, "RESOURCE_DOES_NOT_EXIST",
     "does not exist"),   # an integer no version can have: MLflow's answer too, as for 0 and -1
    ("GET", "model-versions/get", {"name": "churn", "version": "-1"}, "RESOURCE_DOES_NOT_EXIST", "does not exist"),
    ("GET", "model-versions/get", {"name": "churn", "version": "9"}, "RESOURCE_DOES_NOT_EXIST",
     "no version 9. Fix: list versions with model-versions/search"),   # MLflow's words, not mlgov's route
    ("GET", "registered-models/get", {}, "INVALID_PARAMETER_VALUE", "name"),
    ("POST", "registered-models/create", {"name": "team/churn"}, "INVALID_PARAMETER_VALUE", "team-churn"),
    ("POST", "registered-models/create", {"name": "s3:churn"}, "INVALID_PARAMETER_VALUE", "'/' or ':'"),
    ("POST", "registered-models/create", {"name": ".."}, "INVALID_PARAMETER_VALUE", "'..'"),
    ("POST", "registered-models/create", {"name": "   "}, "INVALID_PARAMETER_VALUE", "blank"),
    ("POST", "registered-models/create", {"name": "bell\x07"}, "INVALID_PARAMETER_VALUE", "control"),
    ("POST", "registered-models/create", {"name": "x" * 246}, "INVALID_PARAMETER_VALUE", "245"),
    # names an approver could not tell from another by reading them
    ("POST", "registered-models/create", {"name": "fraud\u200b_model"}, "INVALID_PARAMETER_VALUE",
     "name for registered model 'fraud\\u200b_model': must not contain"),
    ("POST", "registered-models/create", {"name": "fraud_model\u202egnp."}, "INVALID_PARAMETER_VALUE", "U+202E"),
    ("POST", "registered-models/create", {"name": "fraud\u00a0model"}, "INVALID_PARAMETER_VALUE", "U+00A0"),
    ("POST", "registered-models/create", {"name": "a\u2028b"}, "INVALID_PARAMETER_VALUE", "U+2028"),
    ("POST", "registered-models/create", {"name": "fraud_model "}, "INVALID_PARAMETER_VALUE", "whitespace"),
    ("POST", "registered-models/create", {"name": "mode\u0300le"}, "INVALID_PARAMETER_VALUE", "'modèle'"),
    ("POST", "registered-models/rename", {"name": "churn", "new_name": "churn\u200d"}, "INVALID_PARAMETER_VALUE",
     "invisible"),
    ("POST", "registered-models/rename", {"name": "churn", "new_name": "a/b"}, "INVALID_PARAMETER_VALUE", "'/'"),
    ("POST", "registered-models/create", {"name": "fr\u0430ud_model"}, "INVALID_PARAMETER_VALUE",
     "must not mix scripts: Latin letters with 'а' (U+0430, Cyrillic)"),
    ("POST", "registered-models/rename", {"name": "churn", "new_name": "\u0441hurn"}, "INVALID_PARAMETER_VALUE",
     "must not mix scripts"),
    ("POST", "registered-models/alias", {"name": "churn", "alias": "latest", "version": "1"},
     "INVALID_PARAMETER_VALUE", "latest"),
    ("POST", "model-versions/transition-stage", {"name": "churn", "version": "1", "stage": "Limbo"},
     "INVALID_PARAMETER_VALUE", "not configured"),
    ("GET", "experiments/get", {"experiment_id": "0"}, "ENDPOINT_NOT_FOUND", "registry only"),
    ("POST", "runs/create", {}, "ENDPOINT_NOT_FOUND", "registry_uri"),
])
def test_bad_requests_get_mlflow_errors(world: World, method: str, path: str, params: dict[str, str], code: str,
                                        needle: str) -> None:
    world.client.create_registered_model("churn")
    world.client.create_model_version("churn", "s3://m/1")
    before = world.http.get(f"{API}/audit/verify", headers=world.h("admin")).json()["checked"]
    kwargs: dict[str, Any] = {"params": params} if method == "GET" else {"json": params}
    r = world.http.request(method, f"/api/2.0/mlflow/{path}", headers=world.h("admin"), **kwargs)
    body = r.json()
    assert body["error_code"] == code and needle in body["message"], body
    assert r.status_code == {"RESOURCE_DOES_NOT_EXIST": 404, "ENDPOINT_NOT_FOUND": 404}.get(code, 400)
    assert world.http.get(f"{API}/audit/verify", headers=world.h("admin")).json()["checked"] == before


def test_unauthenticated_and_refused_calls_have_mlflow_shape(world: World) -> None:
    r = world.http.get("/api/2.0/mlflow/registered-models/search")
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    r = world.http.post("/api/2.0/mlflow/registered-models/create", json={"name": "x"}, headers=world.h("viewer"))
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"


def test_tracking_calls_get_endpoint_not_found_from_the_real_client(world: World) -> None:
    """Experiments, runs and logged models stay on the tracking server: MLflow's client reads ENDPOINT_NOT_FOUND."""
    c = world.client
    calls = [lambda: c.search_experiments(), lambda: c.get_run("0" * 32), lambda: c.create_experiment("x"),
             lambda: c.search_logged_models(experiment_ids=["0"])]
    for call in calls:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == "ENDPOINT_NOT_FOUND" and "registry_uri" in str(exc.value)


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("POST", "/api/2.0/mlflow/registered-models/create", {"content": b'{"name": "x"'}, 400,
     "INVALID_PARAMETER_VALUE"),   # MLflow's server reads a broken body as a parameter error
    ("POST", "/api/2.0/mlflow/experiments/create", {"content": b"[1, 2"}, 400, "INVALID_PARAMETER_VALUE"),
    ("POST", "/api/2.0/mlflow/registered-models/create", {"content": b"[" * 500 + b"]" * 500}, 422,
     "INVALID_PARAMETER_VALUE"),
    ("POST", "/api/2.0/mlflow/registered-models/create", {"content": b'{"name": NaN}'}, 422,
     "INVALID_PARAMETER_VALUE"),
    ("PUT", "/api/2.0/mlflow/registered-models/create", {"json": {"name": "x"}}, 405, "ENDPOINT_NOT_FOUND"),
    ("GET", "/api/2.0/mlflow/registered-models/create", {}, 405, "ENDPOINT_NOT_FOUND"),
    ("PUT", "/api/3.0/mlflow/logged-models", {"json": {}}, 404, "ENDPOINT_NOT_FOUND"),
    ("GET", "/api/3.0/mlflow/traces/search", {}, 404, "ENDPOINT_NOT_FOUND"),
])
def test_errors_before_routing_have_mlflow_shape(world: World, method: str, path: str, kwargs: dict[str, Any],
                                                 status: int, code: str) -> None:
    headers = {**world.h("admin"), "Content-Type": "application/json"}
    r = world.http.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code and body["message"], body
    assert r.headers["content-type"] == "application/json"
    if status == 405:
        assert r.headers["allow"] == "POST" and "it takes POST" in body["message"]
    r = world.http.request(method, path, **kwargs)   # no key at all: 401 in MLflow's shape, whatever the path
    assert r.status_code in (401, status) and r.json()["error_code"] in ("UNAUTHENTICATED", code)
    # the native API keeps problem+json
    r = world.http.put(f"{API}/model-groups", headers=world.h("admin"), json={})
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"


def test_unauthenticated_unknown_mlflow_paths_have_mlflow_shape(world: World) -> None:
    for path in ("/api/2.0/mlflow/experiments/search", "/api/3.0/mlflow/logged-models/search",
                 "/api/2.0/mlflow/no/such/call"):
        r = world.http.post(path, json={})
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"] == "Bearer"


# --- MLflow 3's logged models ----------------------------------------------------------------------------------

def test_a_model_logged_by_mlflow_3_registers_and_loads(world: World, tmp_path: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3's own workflow: `log_model` keeps a logged model on the tracking server and `register_model` sends
    its `models:/<model_id>` source, which mlgov refused as a models:/ URI it could not read (the registered model
    was left behind empty). The tracking store here is MLflow's file store (mlflow-skinny has no server)."""
    import mlflow
    import mlflow.pyfunc

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> list[int]:
            return [7] * len(model_input)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_registry_uri(world.url)
    try:
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
        mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "logged")
        assert (mv.version, mv.source, mv.run_id) == ("1", f"models:/{info.model_id}", run.info.run_id)
        got = world.http.get("/api/2.0/mlflow/model-versions/get", params={"name": "logged", "version": "1"},
                             headers=world.h("pub")).json()["model_version"]
        assert got["model_id"] == info.model_id and got["source"] == f"models:/{info.model_id}"
        assert got["tags"][-1] == {"key": "mlgov.artifact_sha256", "value": "unverified"}   # mlgov cannot read it
        assert mlflow.pyfunc.load_model("models:/logged/1").predict([[1], [2]]) == [7, 7]
        assert mlflow.register_model(info.model_uri, "logged").version == "2"   # models:/<model_id> directly
    finally:
        mlflow.set_tracking_uri(world.url)   # unset, MLflow 3 opens ./mlflow.db (a file left in the checkout)
    c = world.client
    # as MLflow's server: a runs:/ source comes with the run it names, and an http(s) source is refused
    for source, run_id in (("runs:/abc/model", None), ("runs:/abc/model", "other"), ("https://h/model.tar.gz", None),
                           ("http://h/m", None)):
        with pytest.raises(MlflowException) as exc:
            c.create_model_version("logged", source, run_id=run_id)
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "source" in str(exc.value), source
    assert c.create_model_version("logged", "runs:/abc/model", run_id="abc").run_id == "abc"
    for source in ("models:/..", "models:/a%2Fb", "models:/m-xyz"):   # only MLflow's ids are logged models
        with pytest.raises(MlflowException) as exc:
            c.create_model_version("logged", source)
        assert _code(exc) in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"), source
    assert [v.version for v in c.search_model_versions("name = 'logged'")] == ["3", "2", "1"]


# --- artifacts mlgov can read are hashed -------------------------------------------------------------------------

def test_source_in_mlgov_store_is_hashed(world: World) -> None:
    from pathlib import Path
    from urllib.parse import urlparse

    root = Path(urlparse(world.store_root).path)
    files = {"MLmodel": b"flavors: {}\n", "model.skops": b"weights", "env/conda.yaml": b"deps: []\n"}
    for rel, data in files.items():
        (root / "models/churn/1" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "models/churn/1" / rel).write_bytes(data)
    source = world.store_root.rstrip("/") + "/models/churn/1"
    world.client.create_registered_model("churn")
    mv = world.client.create_model_version("churn", source)
    manifest = "".join(sorted(f"{hashlib.sha256(d).hexdigest()}  {rel}\n" for rel, d in files.items()))
    assert mv.tags["mlgov.artifact_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    assert native_sha(world, 1) == mv.tags["mlgov.artifact_sha256"]
    single = world.client.create_model_version("churn", source + "/model.skops")
    assert single.tags["mlgov.artifact_sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_policy_can_require_a_verified_hash(world: World) -> None:
    world.client.create_registered_model("churn")
    world.client.create_model_version("churn", "s3://elsewhere/model")
    r = world.http.patch(f"{API}/model-groups/churn", headers=world.h("admin"),
                         json={"approval_policy": {"require_artifact_hash": True}})
    assert r.status_code == 200, r.text
    r = world.http.post(f"{API}/model-groups/churn/versions/1/approval", headers=world.h("appr"),
                        json={"status": "Approved", "comment": "ok"})
    assert r.status_code == 409 and "verified artifact sha256" in r.json()["detail"]
    # from a registry trial: override_policy was ignored in silence, for an approver as for an admin
    r = world.http.post(f"{API}/model-groups/churn/versions/1/approval", headers=world.h("appr"),
                        json={"status": "Approved", "comment": "ok", "override_policy": True})
    assert r.status_code == 403 and "only admin keys may override" in r.json()["detail"]
    r = world.http.post(f"{API}/model-groups/churn/versions/1/approval", headers=world.h("admin"),
                        json={"status": "Approved", "comment": "ok", "override_policy": True})
    assert r.status_code == 409 and "override_policy does not waive this rule" in r.json()["detail"]


# --- webhooks in MLflow's format ----------------------------------------------------------------------------------

def test_mlflow_webhooks_signed_as_mlflow_documents(world: World) -> None:
    from mlflow.entities.webhook import WebhookEvent

    port = free_port()
    rx = Receiver(port)
    rx.up()
    secret = "whsec-0123456789abcdef"
    try:
        with world.as_("admin"):
            hook = world.client.create_webhook(
                name="ci", url=f"http://127.0.0.1:{port}/hook", secret=secret,
                events=[WebhookEvent("model_version", "created"), WebhookEvent("model_version_alias", "created")])
            assert [h.webhook_id for h in world.client.list_webhooks()] == [hook.webhook_id]
            # 0 is MLflow's default page (its store reads `max_results or 100`): it was refused
            assert [h.webhook_id for h in world.client.list_webhooks(max_results=0)] == [hook.webhook_id]
        world.client.create_registered_model("churn")
        world.client.create_model_version("churn", "s3://m/1", tags={"k": "v"})
        world.client.set_registered_model_alias("churn", "candidate", "1")
        _wait(lambda: len(rx.received) >= 2)
    finally:
        rx.down()
    bodies = []
    for got in rx.received:
        h = got["headers"]
        payload = got["body"].decode()
        signed = f"{h['X-MLflow-Delivery-Id']}.{h['X-MLflow-Timestamp']}.{payload}"
        expected = base64.b64encode(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()).decode()
        assert hmac.compare_digest(h["X-MLflow-Signature"], f"v1,{expected}")
        bodies.append(json.loads(payload))
    assert [(b["entity"], b["action"]) for b in bodies] == [("model_version", "created"),
                                                          ("model_version_alias", "created")]
    assert bodies[0]["data"] == {"name": "churn", "version": "1", "source": "s3://m/1", "run_id": None,
                                 "tags": {"k": "v"}, "description": None}
    assert bodies[1]["data"] == {"name": "churn", "alias": "candidate", "version": "1"}
    with world.as_("admin"):
        changed = world.client.update_webhook(hook.webhook_id, description="registry events", events=[
            "model_version_tag.set"])
        assert (changed.description, [str(e) for e in changed.events]) == ("registry events",
                                                                          ["model_version_tag.set"])
        got = world.client.get_webhook(hook.webhook_id)
        assert got.description == "registry events"
        # an update moves last_updated_timestamp, as MLflow's store sets it (it stayed the creation time)
        assert got.last_updated_timestamp > got.creation_timestamp == hook.creation_timestamp
        with pytest.raises(MlflowException) as exc:
            world.client.update_webhook(hook.webhook_id, status="DISABLED")
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "delete the webhook" in str(exc.value)
        # test-firing is not offered, and says so (it answered as a tracking call mlgov does not serve)
        with pytest.raises(MlflowException) as exc:
            world.client.test_webhook(hook.webhook_id)
        assert _code(exc) == "INVALID_PARAMETER_VALUE" and "test-firing a webhook is not supported" in str(exc.value)
        world.client.delete_webhook(hook.webhook_id)
        assert world.client.list_webhooks() == []
        with pytest.raises(MlflowException) as exc:
            world.client.get_webhook(hook.webhook_id)
        assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    assert [e["action"] for e in world.audit("webhook.*")] == ["webhook.created", "webhook.updated",
                                                              "webhook.deactivated"]
