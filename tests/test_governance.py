"""Governance holes, each reproduced as the attack through the real API (SQLite and PostgreSQL):
evidence the registrant chose, four-eyes through a second key, deleting lineage evidence, revoking the last
admin, key-id probing by timing, and private files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import stat

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlgov import auth
from tests.helpers import approve, assert_problem, create_group, register, signed_in

CFG = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
       "facet": [{"name_or_index": "g", "value_or_threshold": [1]}],
       "methods": {"post_training_bias": {"methods": ["DPPL", "DI"]}}}


def frame(n: int = 1000, seed: int = 0, unfair: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "g": rng.integers(0, 2, n)})
    df["y"] = (df.a + 0.3 * rng.normal(size=n) > 0).astype(int)
    df["pred"] = np.where((df.g == 1) & (rng.random(n) < unfair), 0, df.y)
    return df


def bias(client, headers, df: pd.DataFrame, group: str = "credit", version: int = 1, **form: str):
    r = client.post("/api/v1/clarify/bias", headers=headers,
                    data={"model_group": group, "model_version": str(version), **form},
                    files={"file": ("d.csv", df.to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(CFG).encode())})
    assert r.status_code == 200, r.text
    return r.headers["x-mlgov-analysis-id"]


def gated_group(client, keys, **version) -> None:
    create_group(client, keys("publisher"), "credit")
    register(client, keys("publisher"), "credit", 1, **version)
    r = client.patch("/api/v1/model-groups/credit", headers=keys("admin"),
                     json={"approval_policy": {"require_bias_report": True}})
    assert r.status_code == 200


# --- 1. evidence the registrant chose ----------------------------------------------------------------------

def test_registrant_report_on_chosen_data_does_not_pass_the_gate(client, keys):
    gated_group(client, keys)
    # the attack: predictions = labels, so every post-training metric is perfect
    cheat = bias(client, keys("publisher"), frame(unfair=0.0))
    v = client.get("/api/v1/model-groups/credit/versions/1", headers=keys("viewer")).json()
    assert v["bias_report"]["passed"] is True
    body = assert_problem(approve(client, keys("approver"), "credit", 1), 409, "does not count", "registrant")
    assert body["evidence"]["not_counted"][0]["analysis_id"] == cheat and body["evidence"]["counted"] == []
    # someone independent of the registrant runs it: that counts
    honest = bias(client, keys("publisher2"), frame(seed=1))
    r = approve(client, keys("approver"), "credit", 1)
    assert r.status_code == 200, r.text
    ev = r.json()["approval_evidence"]
    assert [e["analysis_id"] for e in ev["counted"]] == [honest] and "independent" in ev["counted"][0]["reason"]
    assert [e["analysis_id"] for e in ev["not_counted"]] == [cheat]
    assert ev["passed_only_by_override"] is False
    rep = client.get("/api/v1/audit/report", params={"model_group": "credit"}, headers=keys("viewer")).json()
    v1 = rep["versions"][0]
    assert {(e["analysis_id"], e["counted"]) for e in v1["evidence"]} == {(cheat, False), (honest, True)}
    assert v1["decisions"][0]["evidence"][1]["counted"] is True and v1["flags"] == []
    html = client.get("/api/v1/audit/report", params={"model_group": "credit", "format": "html"},
                      headers=keys("viewer")).text
    assert 'class="evidence"' in html and "independent of the registrant" in html and honest in html


def test_newest_counted_report_decides_and_a_cheat_cannot_mask_it(client, keys):
    gated_group(client, keys)
    bias(client, keys("publisher2"), frame(unfair=0.6))           # independent, fails
    bias(client, keys("publisher"), frame(seed=2))                 # registrant's clean-looking report
    assert_problem(approve(client, keys("approver"), "credit", 1), 409, "bias report fails",
                   "newest report that counts")


def test_report_computed_by_mlgov_from_the_registered_artifact_counts(client, keys):
    df = frame(seed=3)
    model = LogisticRegression().fit(df[["a", "b", "g"]], df.y)
    artifact = sio.dumps(model)
    gated_group(client, keys, artifact_uri="s3://m/credit/1.skops",
                artifact_sha256=hashlib.sha256(artifact).hexdigest())
    cheat = df.assign(pred=df.y)      # the registrant supplies perfect "predictions"; mlgov replaces them
    r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                    data={"model_group": "credit", "model_version": "1", "predict_with_model": "true"},
                    files={"file": ("d.csv", cheat.to_csv(index=False).encode()),
                           "config": ("c.json", json.dumps(CFG).encode()), "model": ("m.skops", artifact)})
    assert r.status_code == 200, r.text
    v = client.get("/api/v1/model-groups/credit/versions/1", headers=keys("viewer")).json()
    src = v["bias_report"]["source"]
    assert src["kind"] == "model_run" and src["features"] == ["a", "b", "g"]
    assert src["artifact_sha256"] == hashlib.sha256(artifact).hexdigest() and src["dataset"]["kind"] == "upload"
    r = approve(client, keys("approver"), "credit", 1)
    assert r.status_code == 200, r.text
    assert "registered artifact" in r.json()["approval_evidence"]["counted"][0]["reason"]
    # another artifact than the registered one is refused before anything is attached
    other = sio.dumps(LogisticRegression().fit(df[["a", "b", "g"]], 1 - df.y))
    assert_problem(client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                               data={"model_group": "credit", "model_version": "1", "predict_with_model": "true"},
                               files={"file": ("d.csv", cheat.to_csv(index=False).encode()),
                                      "config": ("c.json", json.dumps(CFG).encode()), "model": ("m", other)}),
                   422, "sha256")


def test_report_from_the_versions_own_captured_window_counts(client, keys):
    from tests.clarify.test_monitors import T0, capture, population, setup

    setup(client, keys)                                   # publisher registers credit/1 and endpoint credit-prod
    register(client, keys("publisher"), "credit", 2)      # not served by the endpoint
    assert client.patch("/api/v1/model-groups/credit", headers=keys("admin"),
                        json={"approval_policy": {"require_bias_report": True,
                                                  "bias_limits": {"DPPL": 0.3, "DI": 0.6}}}).status_code == 200
    capture(client, keys, population(600, 4, favour=0.0), T0, 4)
    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"post_training_bias": {"methods": ["DPPL", "DI"]}}}
    window = {"endpoint": "credit-prod", "start": T0.isoformat(), "end": (T0 + dt.timedelta(hours=1)).isoformat()}
    for version in (1, 2):
        r = client.post("/api/v1/clarify/bias", headers=keys("publisher"),
                        data={**window, "model_group": "credit", "model_version": str(version)},
                        files={"config": ("c.json", json.dumps(cfg).encode())})
        assert r.status_code == 200, r.text
    r = approve(client, keys("approver"), "credit", 1)
    assert r.status_code == 200, r.text
    assert "own predictions" in r.json()["approval_evidence"]["counted"][0]["reason"]
    # the same window says nothing about version 2, which the endpoint does not serve
    assert_problem(approve(client, keys("approver"), "credit", 2), 409, "does not count")


def test_override_is_flagged_in_the_compliance_report(client, keys):
    gated_group(client, keys)
    register(client, keys("publisher"), "credit", 2)
    r = approve(client, keys("admin"), "credit", 1, comment="accepted risk", override_policy=True)
    assert r.status_code == 200 and r.json()["approval_evidence"]["passed_only_by_override"] is True
    assert approve(client, keys("approver"), "credit", 2, status="Rejected").status_code == 200
    rep = client.get("/api/v1/audit/report", params={"model_group": "credit"}, headers=keys("viewer")).json()
    v1, v2 = rep["versions"]
    assert v1["decisions"][0]["passed_only_by_override"] is True and "no bias report" in v1["flags"][0]
    assert v2["flags"] == [] and "passed_only_by_override" not in v2["decisions"][0]
    assert rep["decisions_passed_only_by_override"] == 1
    html = client.get("/api/v1/audit/report", params={"model_group": "credit", "format": "html"},
                      headers=keys("viewer")).text
    assert 'id="overrides"' in html and "admin override: no bias report is attached" in html


# --- 2. four-eyes through a second key ---------------------------------------------------------------------

def _key(client, keys, creator: str, name: str, role: str, owner: str | None = None) -> dict[str, str]:
    body = {"name": name, "role": role, **({"owner": owner} if owner else {})}
    r = client.post("/api/v1/keys", json=body, headers=keys(creator))
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_four_eyes_compares_owners_and_creators(client, keys):
    create_group(client, keys("admin"), "churn")
    register(client, keys("admin"), "churn", 1)              # the admin registers …
    mine = _key(client, keys, "admin", "second", "approver")  # … mints an approver key for itself …
    assert_problem(approve(client, mine, "churn", 1), 403, "four-eyes", "created by 'test-admin'")
    same = _key(client, keys, "admin", "alias", "approver", owner="TEST-ADMIN ")
    assert_problem(approve(client, same, "churn", 1), 403, "both keys belong")
    # the reverse: the admin mints a publisher key for a puppet owner and approves what the puppet registers
    puppet = _key(client, keys, "admin", "puppet", "publisher", owner="bob")
    register(client, puppet, "churn", 2)
    assert_problem(approve(client, keys("admin"), "churn", 2), 403, "other key was created by 'test-admin'")
    listed = {k["name"]: k for k in client.get("/api/v1/keys", headers=keys("admin")).json()}
    assert listed["second"]["owner"] == "second" and listed["second"]["created_by"] == "test-admin"
    assert listed["puppet"]["owner"] == "bob" and listed["test-approver"]["created_by"] == "test"
    ok = approve(client, keys("approver"), "churn", 1)
    assert ok.status_code == 200
    rep = client.get("/api/v1/audit/report", params={"model_group": "churn"}, headers=keys("viewer")).json()
    assert rep["versions"][0]["four_eyes_ok"] is True and rep["versions"][0]["registered_by_owner"] == "test-admin"
    ev = client.get("/api/v1/audit/events", params={"action": "key.created", "subject": "second"},
                    headers=keys("admin")).json()["items"][0]
    assert ev["after"]["created_by"] == "test-admin" and ev["after"]["owner"] == "second"
    # two made-up people minted by one admin pass the rule (owners are typed by admins) but are shown
    carol = _key(client, keys, "admin", "carol-appr", "approver", owner="carol")
    assert approve(client, carol, "churn", 2).status_code == 200
    rep = client.get("/api/v1/audit/report", params={"model_group": "churn"}, headers=keys("viewer")).json()
    v1, v2 = rep["versions"]
    assert v1["warnings"] == [] and v2["warnings"] == [
        "the registering key 'puppet' and the deciding key 'carol-appr' were both created by 'test-admin'"]


def test_four_eyes_follows_the_whole_creation_chain(client, keys):
    """A key minted through an intermediate key is still its first minter's: admin → carol (admin) → dave."""
    create_group(client, keys("admin"), "churn")
    register(client, keys("admin"), "churn", 1)
    carol = _key(client, keys, "admin", "carol-admin", "admin", owner="carol")
    dave = client.post("/api/v1/keys", json={"name": "dave", "role": "approver", "owner": "dave"}, headers=carol)
    assert dave.status_code == 201, dave.text
    dave_h = {"Authorization": f"Bearer {dave.json()['key']}"}
    assert_problem(approve(client, dave_h, "churn", 1), 403, "four-eyes",
                   "created by 'test-admin' (directly or through keys it created)")
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()[
        "approval_status"] == "PendingManualApproval"


# --- 3. lineage evidence -----------------------------------------------------------------------------------

def test_recorded_lineage_cannot_be_deleted_or_patched(client, keys):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    assert approve(client, keys("approver"), "churn", 1).status_code == 200
    approval = client.get("/api/v1/lineage/actions", params={"type": "Approval"},
                          headers=keys("viewer")).json()["items"][0]
    for who in ("publisher", "admin"):   # the attack (it answered 204), and not even an admin
        assert_problem(client.delete(f"/api/v1/lineage/actions/{approval['id']}", headers=keys(who)), 403,
                       "recorded by mlgov", "evidence")
        assert_problem(client.patch(f"/api/v1/lineage/actions/{approval['id']}", json={"status": "Failed"},
                                    headers=keys(who)), 403, "recorded by mlgov")
    assert client.get(f"/api/v1/lineage/actions/{approval['id']}", headers=keys("viewer")).json()["status"] == \
        "Completed"
    edge = client.get("/api/v1/lineage/associations", params={"target": approval["id"]},
                      headers=keys("viewer")).json()["items"][0]
    assert_problem(client.delete(f"/api/v1/lineage/associations/{edge['id']}", headers=keys("admin")), 403,
                   "recorded by mlgov")
    model = client.get("/api/v1/lineage/artifacts", params={"type": "Model"}, headers=keys("viewer")).json()
    assert_problem(client.delete(f"/api/v1/lineage/artifacts/{model['items'][0]['id']}", headers=keys("admin")),
                   403, "recorded by mlgov")
    assert_problem(client.post("/api/v1/lineage/actions", json={"type": "Approval", "name": "x",
                                                                "key": "approval:forged"},
                               headers=keys("publisher")), 422, "reserved")
    # from a registry trial: without a key, an "Approval" action linked to a pending version looked like a real one
    for forged in ({"type": "Approval", "name": "churn/1 Approval"}, {"type": "stagetransition", "name": "x"}):
        assert_problem(client.post("/api/v1/lineage/actions", json=forged, headers=keys("publisher")), 422,
                       "reserved for what mlgov records")
    assert_problem(client.post("/api/v1/lineage/contexts", json={"type": "ModelGroup", "name": "churn2"},
                               headers=keys("publisher")), 422, "reserved")
    assert_problem(client.post("/api/v1/lineage/artifacts", json={"type": "Dataset",
                                                                  "uri": "MLGOV://model-groups/churn/versions/9"},
                               headers=keys("publisher")), 422, "mlgov://")    # schemes are case-insensitive
    assert_problem(client.post("/api/v1/lineage/artifacts", json={"type": "ModelPackage", "uri": "s3://m/p"},
                               headers=keys("publisher")), 422, "reserved")
    mine = client.post("/api/v1/lineage/actions", json={"type": "Processing", "name": "etl"},
                       headers=keys("publisher")).json()
    assert approval["system"] is True and mine["system"] is False          # a reader can tell them apart


def test_user_lineage_belongs_to_its_creator_and_admins(client, keys):
    mk = {"type": "Processing", "name": "etl"}
    a = client.post("/api/v1/lineage/actions", json=mk, headers=keys("publisher")).json()
    assert_problem(client.delete(f"/api/v1/lineage/actions/{a['id']}", headers=keys("publisher2")), 403,
                   "created by 'test-publisher'")
    assert_problem(client.patch(f"/api/v1/lineage/actions/{a['id']}", json={"name": "y"},
                                headers=keys("publisher2")), 403, "only its creator")
    assert client.patch(f"/api/v1/lineage/actions/{a['id']}", json={"name": "etl2"},
                        headers=keys("publisher")).status_code == 200
    d = client.post("/api/v1/lineage/artifacts", json={"type": "Dataset", "uri": "s3://d/x.csv"},
                    headers=keys("publisher")).json()
    assoc = client.post("/api/v1/lineage/associations", json={"source": d["id"], "target": a["id"],
                                                               "type": "ContributedTo"},
                        headers=keys("publisher")).json()
    assert_problem(client.delete(f"/api/v1/lineage/associations/{assoc['id']}", headers=keys("publisher2")), 403)
    assert client.delete(f"/api/v1/lineage/associations/{assoc['id']}", headers=keys("publisher")).status_code == 204
    assert client.delete(f"/api/v1/lineage/actions/{a['id']}", headers=keys("admin")).status_code == 204
    # a dataset a user recorded becomes evidence once a registration trains on it
    create_group(client, keys("publisher2"), "churn")
    register(client, keys("publisher2"), "churn", 1, training_data=["s3://d/x.csv"])
    assert_problem(client.delete(f"/api/v1/lineage/artifacts/{d['id']}", headers=keys("publisher")), 403,
                   "recorded by mlgov")


# --- 5. the last admin ------------------------------------------------------------------------------------

def test_last_active_admin_cannot_revoke_itself(client, keys):
    assert_problem(client.delete("/api/v1/keys/test-admin", headers=keys("admin")), 409, "last active admin",
                   "create another admin")
    assert client.get("/api/v1/keys", headers=keys("admin")).status_code == 200
    other = _key(client, keys, "admin", "admin-2", "admin")
    assert client.delete("/api/v1/keys/test-admin", headers=other).status_code == 204
    assert_problem(client.delete("/api/v1/keys/admin-2", headers=other), 409, "last active admin")


# --- 7. timing of unknown key ids --------------------------------------------------------------------------

def test_unknown_key_id_and_wrong_secret_take_the_same_path(client, keys, monkeypatch):
    calls: list[str] = []
    digest, compare = auth._digest, auth.hmac.compare_digest

    def counted_digest(secret: str) -> str:
        calls.append("digest")
        return digest(secret)

    def counted_compare(a: str, b: str) -> bool:
        calls.append("compare")
        return compare(a, b)

    monkeypatch.setattr(auth, "_digest", counted_digest)
    monkeypatch.setattr(auth.hmac, "compare_digest", counted_compare)
    kid = keys.plain["viewer"].split("_", 2)[1]
    paths = {}
    for name, token in (("wrong secret", f"mlgov_{kid}_{'x' * 43}"), ("unknown id", f"mlgov_000000000000_{'x' * 43}"),
                        ("valid", keys.plain["viewer"])):
        calls.clear()
        r = client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == (200 if name == "valid" else 401)
        paths[name] = list(calls)
    assert paths["wrong secret"] == paths["unknown id"] == paths["valid"] == ["digest", "compare"]
    assert_problem(client.get("/api/v1/model-groups", headers={"Authorization": f"Bearer mlgov_0_{'x' * 43}"}),
                   401, "not valid")


# --- 6. private files -------------------------------------------------------------------------------------

def test_home_database_and_key_files_are_private(tmp_path):
    from mlgov.app import create_app
    from mlgov.db import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, audit_key=None)
    db = Database(settings.resolved_database_url)
    create_app(settings, db=db)
    with db.write_engine.begin() as conn:     # SQLite creates its -wal/-shm files with the database's mode
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    for f in ("mlgov.db", "mlgov.db-wal", "mlgov.db-shm", "audit.key"):
        assert stat.S_IMODE((settings.home / f).stat().st_mode) == 0o600, f
    assert len((settings.home / "audit.key").read_text().strip()) == 64
    db.dispose()


def test_look_alike_owners_are_one_person_and_refused_as_new_spellings(client, keys):
    """A registry trial minted an approver key for "t‐publisher" (U+2010 HYPHEN) beside "t-publisher": the audit
    log then showed one name deciding the other's version. Now such an owner is refused at creation, invisible and
    mixed-script owners too, and four-eyes compares owners as read (full-width, dashes, spaces folded)."""
    from mlgov.auth import same_person

    cases = (("test\u2010publisher", ["reads like the existing owner 'test-publisher'", "pass owner"]),
             ("test\u2013publisher", ["reads like the existing owner 'test-publisher'"]),
             ("ｔｅｓｔ-publisher", ["reads like the existing owner"]),
             ("\U0001D413est-publisher", ["reads like the existing owner"]),   # math bold T: folded before case
             ("test-publisher\u200b", ["invisible", "U+200B"]),
             ("p\u0430ul", ["must not mix scripts"]))
    for i, (owner, words) in enumerate(cases):
        r = client.post("/api/v1/keys", json={"name": f"look-alike-{i}", "role": "approver",
                                              "owner": owner}, headers=keys("admin"))
        assert_problem(r, 409 if "reads like" in words[0] else 422, *words)
    assert_problem(client.post("/api/v1/keys", json={"name": "ops\u202ekey", "role": "viewer"},
                               headers=keys("admin")), 422, "key name", "U+202E")
    assert not [k for k in client.get("/api/v1/keys", headers=keys("admin")).json() if k["name"].startswith("look")]
    assert same_person("t\u2010publisher", "T-Publisher ") and same_person("ａｌｉｃｅ", "alice")
    assert same_person("\U0001D413est-publisher", "test-publisher") and same_person("\u210Cenry", "henry")
    assert not same_person("t-publisher", "t_publisher")
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    # case stays a visible difference of one person (as before): allowed, and one person for four-eyes
    upper = _key(client, keys, "admin", "pub-upper", "approver", owner="Test-Publisher")
    assert_problem(approve(client, upper, "churn", 1), 403, "both keys belong")


def test_only_a_groups_creator_or_an_admin_rewrites_its_description_and_tags(client, keys):
    """Two trials: any publisher could delete another team's group tags (AddTags/DeleteTags, MLflow's set-tag) or
    rewrite its description; tags are searchable governance metadata. Registering into the group stays open."""
    create_group(client, keys("publisher"), "churn")
    url = "/api/v1/model-groups/churn"
    assert client.patch(url, json={"description": "churn model", "tags": {"team": "risk"}},
                        headers=keys("publisher")).status_code == 200
    for body in ({"description": "hijacked"}, {"tags": {"team": "other"}}, {"tags": {}}):
        assert_problem(client.patch(url, json=body, headers=keys("publisher2")), 403,
                       "only its creator or an admin may change its description or tags")
    r = client.post("/api/2.0/mlflow/registered-models/set-tag", json={"name": "churn", "key": "team", "value": "x"},
                    headers=keys("publisher2"))
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    assert client.patch(url, json={"description": "churn model"}, headers=keys("publisher2")).status_code == 200
    register(client, keys("publisher2"), "churn", 1)
    got = client.get(url, headers=keys("viewer")).json()
    assert (got["description"], got["tags"]) == ("churn model", {"team": "risk"})
    assert client.patch(url, json={"tags": {"team": "fraud"}}, headers=keys("admin")).status_code == 200


def test_a_versions_description_and_tags_are_its_registrants_and_a_group_delete_takes_only_deletable_versions(
        client, keys):
    """An MLflow migration trial: a second publisher rewrote the description and tags of another team's approved
    Production version (MLflow's update / set-tag), and a group's creator deleted another publisher's version by
    deleting the whole group, with no version.deleted event. Now a version's description and tags are its
    registrant's (by owner) or an admin's; a group goes only with versions its deleter could delete one by one,
    each recorded."""
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    mlflow = "/api/2.0/mlflow"
    for path, body in (("model-versions/update", {"name": "churn", "version": "1", "description": "pwned"}),
                       ("model-versions/set-tag", {"name": "churn", "version": "1", "key": "validated",
                                                   "value": "false"})):
        r = client.request("PATCH" if path.endswith("update") else "POST", f"{mlflow}/{path}", json=body,
                           headers=keys("publisher2"))
        assert r.status_code == 403 and "only its registrant or an admin" in r.json()["message"], r.text
        ok = client.request("PATCH" if path.endswith("update") else "POST", f"{mlflow}/{path}", json=body,
                            headers=keys("publisher"))
        assert ok.status_code == 200, ok.text
    # restating what is there already changes nothing, whoever sends it (a retry succeeds); an MLflow trial saw
    # another publisher's no-op write recorded in the audit log under its name, sent as a webhook and moving
    # the version to the top of "last updated"
    before = client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()
    log = client.get("/api/v1/audit/events", params={"limit": 1000}, headers=keys("admin")).json()["total"]
    described = client.get("/api/v1/model-groups/churn", headers=keys("viewer")).json()["description"] or ""
    for path, body in (("model-versions/update", {"name": "churn", "version": "1", "description": "pwned"}),
                       ("model-versions/set-tag", {"name": "churn", "version": "1", "key": "validated",
                                                   "value": "false"}),
                       ("registered-models/update", {"name": "churn", "description": described})):
        r = client.request("PATCH" if path.endswith("update") else "POST", f"{mlflow}/{path}", json=body,
                           headers=keys("publisher2"))
        assert r.status_code == 200, (path, r.text)
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()["updated_at"] == \
        before["updated_at"]
    assert client.get("/api/v1/audit/events", params={"limit": 1000}, headers=keys("admin")).json()["total"] == log
    # but pinning the governed aliases to the defaults they followed is a change, recorded (a reviewer saw it
    # stored silently: the comparison read the effective list on both sides)
    from registry.service import DEFAULT_GOVERNED_ALIASES
    r = client.patch("/api/v1/model-groups/churn", json={"governed_aliases": list(DEFAULT_GOVERNED_ALIASES)},
                     headers=keys("admin"))
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/audit/events", params={"limit": 1000}, headers=keys("admin")).json()[
        "total"] == log + 1
    create_group(client, keys("publisher"), "shared")
    register(client, keys("publisher2"), "shared", 1)
    r = client.request("DELETE", f"{mlflow}/registered-models/delete", json={"name": "shared"},
                       headers=keys("publisher"))
    assert r.status_code == 403 and "registered by 'test-publisher2'" in r.json()["message"], r.text
    assert client.get("/api/v1/model-groups/shared/versions/1", headers=keys("viewer")).status_code == 200
    r = client.request("DELETE", f"{mlflow}/registered-models/delete", json={"name": "shared"}, headers=keys("admin"))
    assert r.status_code == 200, r.text
    gone = client.get("/api/v1/audit/events", params={"action": "version.deleted", "subject": "shared/1"},
                      headers=keys("admin")).json()["items"]
    assert [e["actor"] for e in gone] == ["test-admin"]


def test_a_stale_version_page_cannot_overturn_a_decision(app, client, keys):
    """A console trial opened a pending version's page, another approver approved it meanwhile, and the page's
    Reject then turned Approved into Rejected (the inbox form sent the status it showed; the version page's
    form did not). Both forms now decide only a version that is still pending."""
    import re

    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    carol = signed_in(app, keys.plain["approver2"])
    page = carol.get("/console/models/churn/versions/1").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    shown = re.search(r'name="shown_id" value="([^"]+)"', page)
    assert token is not None and shown is not None and 'value="Rejected"' in page
    assert approve(client, keys("approver"), "churn", 1).status_code == 200      # bob, meanwhile
    r = carol.post("/console/models/churn/versions/1/decision", follow_redirects=True,
                   data={"csrf_token": token.group(1), "decision": "Rejected", "comment": "stale page",
                         "shown_on": "version", "shown_id": shown.group(1)})
    assert "is Approved, not PendingManualApproval as expected" in r.text
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()[
        "approval_status"] == "Approved"


def test_an_open_page_cannot_decide_or_move_a_version_that_took_its_name_since(app, client, keys):
    """An approver-and-auditor trial: with an approver's page of churn/1 open, the registrant renamed the group
    away, created a new "churn" and registered an unreviewed artifact as its version 1; the page's Approve then
    approved that artifact, with the comment written about the reviewed one. The forms now name the version row
    their page showed, and a different row under the same name and number is refused, leaving nothing changed."""
    import re

    pub = keys("publisher")
    create_group(client, pub, "churn")
    register(client, pub, "churn", 1)
    carol = signed_in(app, keys.plain["approver2"])
    page = carol.get("/console/models/churn/versions/1").text
    fields = dict(re.findall(r'name="(csrf_token|shown_id)" value="([^"]+)"', page))
    assert set(fields) == {"csrf_token", "shown_id"}
    r = client.post("/api/2.0/mlflow/registered-models/rename", json={"name": "churn", "new_name": "churn-old"},
                    headers=pub)
    assert r.status_code == 200, r.text
    create_group(client, pub, "churn")
    register(client, pub, "churn", 1)                 # not what Carol reviewed
    before = client.get("/api/v1/audit/events", params={"limit": 1000}, headers=keys("admin")).json()["total"]
    r = carol.post("/console/models/churn/versions/1/decision", follow_redirects=True,
                   data={**fields, "decision": "Approved", "comment": "AUC reviewed", "shown_on": "version"})
    assert "is no longer the version this page showed" in r.text and "reload the page" in r.text, r.text
    for group in ("churn", "churn-old"):
        assert client.get(f"/api/v1/model-groups/{group}/versions/1", headers=keys("viewer")).json()[
            "approval_status"] == "PendingManualApproval"
    r = carol.post("/console/models/churn/versions/1/stage", follow_redirects=True,
                   data={"csrf_token": fields["csrf_token"], "shown_id": fields["shown_id"], "stage": "Archived",
                         "shown_stage": "Development"})
    assert "is no longer the version this page showed" in r.text, r.text
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()["stage"] == "Development"
    assert client.get("/api/v1/audit/events", params={"limit": 1000}, headers=keys("admin")).json()[
        "total"] == before                            # the refused changes left nothing in the log
    # the page of the version it showed still decides it
    page = carol.get("/console/models/churn-old/versions/1").text
    fields = dict(re.findall(r'name="(csrf_token|shown_id)" value="([^"]+)"', page))
    r = carol.post("/console/models/churn-old/versions/1/decision", follow_redirects=True,
                   data={**fields, "decision": "Approved", "comment": "AUC reviewed", "shown_on": "version"})
    assert "churn-old version 1 is now Approved" in r.text, r.text


def test_console_stage_moves_follow_move_stage_rules(app, client, keys):
    """Trials asked for it: approvers moved stages only through the API or CLI. The version page offers the moves
    `move_stage` would take for the signed-in key, says why the others are closed, refuses a page left open while
    the version moved, and writes the same audited transition the API does."""
    import re

    def form(c, path):
        page = c.get(path).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        return page, token.group(1) if token else None

    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)
    path = "/console/models/churn/versions/1"
    pat = signed_in(app, keys.plain["publisher"])
    page, token = form(pat, path)
    vid = re.search(r'name="shown_id" value="([^"]+)"', page).group(1)     # type: ignore[union-attr]
    options = re.findall(r'<option value="([^"]+)">', page.split('id="stage"', 1)[1].split("</select>", 1)[0])
    assert options == ["Staging", "Archived"]
    r = pat.post(f"{path}/stage", follow_redirects=True, data={
        "csrf_token": token, "shown_id": vid, "stage": "Staging", "shown_stage": "Development",
        "comment": "for the shadow test"})
    assert "churn version 1 is now in Staging" in r.text, r.text
    # Production is governed: the publisher is told why, the form does not offer it, and a forged post is refused
    page, token = form(pat, path)
    assert "Not to Production: stage Production is governed" in page
    assert '<option value="Production">' not in page
    r = pat.post(f"{path}/stage", follow_redirects=True,
                 data={"csrf_token": token, "shown_id": vid, "stage": "Production", "shown_stage": "Staging"})
    assert "only approver or admin keys may move versions into it" in r.text
    # an approver sees Production closed until the version is approved, then moves it
    bob = signed_in(app, keys.plain["approver"])
    assert "Not to Production: stage Production accepts only Approved versions" in form(bob, path)[0]
    assert approve(client, keys("approver2"), "churn", 1).status_code == 200
    page, token = form(bob, path)
    stale, stale_token = form(pat, path)   # Pat's page, left open, shows Staging
    assert 'name="shown_stage" value="Staging"' in stale
    r = bob.post(f"{path}/stage", follow_redirects=True, data={
        "csrf_token": token, "shown_id": vid, "stage": "Production", "shown_stage": "Staging", "comment": "ship it"})
    assert "churn version 1 is now in Production" in r.text
    r = pat.post(f"{path}/stage", follow_redirects=True,
                 data={"csrf_token": stale_token, "shown_id": vid, "stage": "Archived", "shown_stage": "Staging"})
    assert "is in Production, not Staging as expected" in r.text
    v = client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()
    assert v["stage"] == "Production"
    moves = client.get("/api/v1/audit/events", params={"action": "version.stage_changed", "subject": "churn/1"},
                       headers=keys("admin")).json()["items"]
    assert [(e["actor"], e["after"]["stage"]) for e in moves] == [("test-publisher", "Staging"),
                                                                 ("test-approver", "Production")]
    # viewers get no form and cannot post one; a post without the session's CSRF token is refused
    viewer = signed_in(app, keys.plain["viewer"])
    page, token = form(viewer, path)
    assert 'id="stage-h"' not in page
    r = viewer.post(f"{path}/stage", data={"csrf_token": token, "shown_id": vid, "stage": "Archived",
                                           "shown_stage": "Production"})
    assert "ask for a key with one of the roles" in r.text, r.text
    r = bob.post(f"{path}/stage", data={"stage": "Archived", "shown_stage": "Production", "shown_id": vid})
    assert "CSRF" in r.text or "csrf" in r.text, r.text
    assert client.get("/api/v1/model-groups/churn/versions/1", headers=keys("viewer")).json()["stage"] == "Production"


def test_console_pages_and_the_new_key_page_are_not_cached(app, keys):
    """A console trial: the page that shows a new API key once (200, the key in the HTML) had no Cache-Control,
    so a shared browser's cache could keep it. Every console page is now no-store."""
    import re

    admin = signed_in(app, keys.plain["admin"])
    page = admin.get("/console/admin")
    assert page.headers["cache-control"] == "no-store"
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    r = admin.post("/console/admin/keys", data={"csrf_token": token.group(1), "name": "erin", "role": "viewer"})
    assert r.status_code == 200 and "mlgov_" in r.text and r.headers["cache-control"] == "no-store"


def test_a_failed_sign_in_keeps_where_the_user_was_going(app, keys):
    """A console trial: /console/audit sent it to sign-in?next=/console/audit; a mistyped key came back to a
    sign-in page without `next` (the right key then landed on the inbox) and told it to send an Authorization
    header."""
    import re

    from fastapi.testclient import TestClient

    c = TestClient(app)
    page = c.get("/console/sign-in", params={"next": "/console/audit"}).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    r = c.post("/console/sign-in", data={"api_key": "mlgov-typo", "csrf_token": token.group(1),
                                         "next": "/console/audit"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/console/sign-in?next=/console/audit")
    again = c.get(r.headers["location"]).text
    assert "paste the whole key" in again and "Authorization" not in again
    token = re.search(r'name="csrf_token" value="([^"]+)"', again)
    assert token is not None and 'value="/console/audit"' in again
    r = c.post("/console/sign-in", data={"api_key": keys.plain["viewer"], "csrf_token": token.group(1),
                                         "next": "/console/audit"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/console/audit")


def test_console_errors_speak_of_console_pages(app, keys):
    """A console trial was told, on a console page, to 'create it with POST /api/v1/model-groups'."""
    viewer = signed_in(app, keys.plain["viewer"])
    for url in ("/console/models/nope", "/console/audit/report?group=nope"):
        page = viewer.get(url, follow_redirects=True)
        assert "check the name on the Models page" in page.text and "/api/v1" not in page.text, url


def test_console_policy_table_pages_and_finds_any_group(app, client, db, keys):
    """A console trial gave approval policies to groups from the admin page, which listed only the first 500 groups
    (the 527th could not be reached). The table now pages by 50 and finds a group by part of its name; saving a
    policy returns to that group."""
    import re

    from registry.orm import ModelGroup

    with db.session_scope() as s:   # 55 groups through the ORM: the page is what is tested, not creation
        create_group(client, keys("publisher"), "zz-last-group")
        proto = s.query(ModelGroup).filter_by(name="zz-last-group").one()
        for i in range(55):
            s.add(ModelGroup(name=f"g{i:03d}", description="d", tags={}, stage_config=proto.stage_config,
                             created_by=proto.created_by, latest_version=0))
    admin = signed_in(app, keys.plain["admin"])
    first = admin.get("/console/admin").text
    assert "Save policy of g000" in first and "Save policy of zz-last-group" not in first and "1–50 of 56" in first
    second = admin.get("/console/admin", params={"offset": 50}).text
    assert "Save policy of zz-last-group" in second and "51–56 of 56" in second
    found = admin.get("/console/admin", params={"group": "LAST"}).text
    assert re.findall(r'aria-label="Save policy of ([^"]+)"', found) == ["zz-last-group"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', found)
    assert token is not None
    shown = dict(re.findall(r'name="(shown_id|shown_bias|shown_hash)" value="([^"]+)"', found))
    assert shown["shown_bias"] == shown["shown_hash"] == "false"
    saved = {"csrf_token": token.group(1), **shown, "require_artifact_hash": "true", "shown_filter": "LAST",
             "shown_offset": "0"}
    r = admin.post("/console/admin/policies/zz-last-group", follow_redirects=False, data=saved)
    assert r.status_code == 303 and r.headers["location"].endswith("/console/admin?group=LAST")
    page = admin.get(r.headers["location"]).text
    assert "approval policy of zz-last-group saved" in page
    assert 'id="hash-1" name="require_artifact_hash" value="true" checked' in page
    # the same form again (a second tab left open) would silently undo that: refused, naming what changed
    r = admin.post("/console/admin/policies/zz-last-group", follow_redirects=True,
                   data={**saved, "require_artifact_hash": "false"})
    assert "changed since the page was loaded: require_artifact_hash is now true" in r.text, r.text
    assert client.get("/api/v1/model-groups/zz-last-group", headers=keys("viewer")).json()[
        "approval_policy"]["require_artifact_hash"] is True
    # a page of a group renamed away, its name then taken by another group, does not set the newcomer's policy
    assert client.patch("/api/v1/model-groups/zz-last-group", json={"approval_policy": None},
                        headers=keys("admin")).status_code == 200
    assert client.post("/api/2.0/mlflow/registered-models/rename", json={"name": "zz-last-group",
                       "new_name": "zz-renamed"}, headers=keys("publisher")).status_code == 200
    create_group(client, keys("publisher"), "zz-last-group")
    r = admin.post("/console/admin/policies/zz-last-group", follow_redirects=True, data=saved)
    assert "is no longer the group this page showed" in r.text, r.text
    assert not client.get("/api/v1/model-groups/zz-last-group", headers=keys("viewer")).json()["approval_policy"]
    # the page is also POST /console/admin/keys's answer: its pager must lead to the admin page, not to that route
    made = admin.post("/console/admin/keys", data={"csrf_token": token.group(1), "name": "pager-probe",
                                                   "owner": "dana", "role": "viewer"}).text
    assert 'href="/console/admin?offset=50"' in made and "pager-probe" in made
    assert '<option value="zz-last-group">' in made   # the trigger form still suggests every group, not a page
    none = admin.get("/console/admin", params={"group": "<b>x"}).text
    assert "No model group's name contains “&lt;b&gt;x”" in none and "<b>x" not in none
    assert admin.get("/console/admin", params={"offset": -1}).status_code == 422


def test_a_console_address_with_a_bad_parameter_says_which_and_what_it_got(app, client, keys):
    """An approver's trial: /console/models/tour?status=approvd flashed pydantic's union internals
    (`status.literal['PendingManualApproval',…]: …; status.literal['']: Input should be ''`), and
    /console/models/tour/versions/abc said "the form was not filled in correctly" about an address."""
    create_group(client, keys("publisher"), "tour")
    viewer = signed_in(app, keys.plain["viewer"])
    page = viewer.get("/console/models/tour", params={"status": "approvd"}, follow_redirects=True).text
    assert "this page&#39;s address is not valid: status: Input should be" in page, page
    assert "(got &#39;approvd&#39;)" in page and "literal[" not in page and "not filled in" not in page
    page = viewer.get("/console/models/tour/versions/abc", follow_redirects=True).text
    assert "this page&#39;s address is not valid: number: Input should be a valid integer" in page
    assert "(got &#39;abc&#39;)" in page


def test_a_form_refused_before_its_route_runs_returns_to_its_page(app, client, keys):
    """An approver's trial: a version-page decision or stage form refused by a field limit (a 5,000-character
    comment, decision=Maybe) went back to the inbox, losing the page. It now returns to the version page."""
    import re

    create_group(client, keys("publisher"), "tour")
    register(client, keys("publisher"), "tour", 1)
    carol = signed_in(app, keys.plain["approver2"])
    page = carol.get("/console/models/tour/versions/1").text
    fields = dict(re.findall(r'name="(csrf_token|shown_id)" value="([^"]+)"', page))
    for action, data in (("decision", {"decision": "Maybe", "comment": "x", "shown_on": "version"}),
                         ("stage", {"stage": "Staging", "shown_stage": "Development", "comment": "c" * 5000})):
        r = carol.post(f"/console/models/tour/versions/1/{action}", data={**fields, **data}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("/console/models/tour/versions/1"), (
            action, r.headers.get("location"))
        assert "not filled in correctly" in carol.get(r.headers["location"]).text
