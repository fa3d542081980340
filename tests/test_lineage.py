"""Lineage: entities, URI+hash identity, associations, recursive queries, exports, auto-lineage, OpenLineage."""

from __future__ import annotations

import itertools
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import approve, assert_problem, create_group, register, sha, signed_in

API = "/api/v1/lineage"


def art(client, h, uri, type="Dataset", sha256=None, expect=201):
    body = {"type": type, "uri": uri}
    if sha256:
        body["sha256"] = sha256
    r = client.post(f"{API}/artifacts", json=body, headers=h)
    assert r.status_code == expect, r.text
    return r.json()["id"]


def act(client, h, name, type="ProcessingJob"):
    r = client.post(f"{API}/actions", json={"type": type, "name": name, "status": "Completed"}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def assoc(client, h, s, t, type="ContributedTo", expect=201):
    r = client.post(f"{API}/associations", json={"source": s, "target": t, "type": type}, headers=h)
    assert r.status_code == expect, r.text
    return r


def q(client, h, start, direction="Descendants", **kw):
    r = client.post(f"{API}/query", json={"start": start, "direction": direction, **kw}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_entity_crud_and_filters(client, keys):
    h, v = keys("publisher"), keys("viewer")
    a = art(client, h, "s3://d/a.csv", sha256=sha("a"))
    assert art(client, h, "s3://d/a.csv", sha256=sha("a").upper(), expect=200) == a   # same node, idempotent
    got = client.get(f"{API}/artifacts/{a}", headers=v).json()
    assert got["kind"] == "artifact" and got["sha256"] == sha("a")
    j = act(client, h, "prep")
    c = client.post(f"{API}/contexts", json={"type": "Pipeline", "name": "daily"}, headers=h).json()["id"]
    assert_problem(client.post(f"{API}/contexts", json={"type": "Pipeline", "name": "daily"}, headers=h), 409)
    assert client.get(f"{API}/actions/{j}", headers=v).json()["status"] == "Completed"
    assert client.get(f"{API}/contexts/{c}", headers=v).json()["type"] == "Pipeline"
    assert client.get(f"{API}/artifacts", params={"uri": "s3://d/a.csv"}, headers=v).json()["total"] == 1
    assert client.get(f"{API}/actions", params={"type": "ProcessingJob"}, headers=v).json()["total"] == 1
    assert client.get(f"{API}/contexts", params={"name_contains": "DAI"}, headers=v).json()["total"] == 1
    assert_problem(client.get(f"{API}/artifacts/{j}", headers=v), 404, "no artifact")   # wrong kind
    assert_problem(client.get(f"{API}/actions/nope", headers=v), 404)
    # a naive time beside an aware one was compared as given: a 500; a naive time is UTC
    r = client.post(f"{API}/actions", headers=h, json={"type": "Train", "name": "mixed",
                                                       "start_time": "2026-01-01T00:00:00",
                                                       "end_time": "2026-01-01T01:00:00Z"})
    assert r.status_code == 201, r.text
    assert (r.json()["start_time"], r.json()["end_time"]) == ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert_problem(client.post(f"{API}/actions", headers=h, json={
        "type": "Train", "name": "backwards", "start_time": "2026-01-01T02:00:00+01:00",
        "end_time": "2026-01-01T00:30:00"}), 422, "end_time is before start_time")


def test_same_uri_new_hash_is_new_node_derived_from_old(client, keys):
    h = keys("publisher")
    old = art(client, h, "s3://d/train.csv", sha256=sha("v1"))
    new = art(client, h, "s3://d/train.csv", sha256=sha("v2"))
    assert old != new
    edges = client.get(f"{API}/associations", params={"source": old}, headers=h).json()["items"]
    assert [(e["target"], e["type"]) for e in edges] == [(new, "DerivedFrom")]
    # "which model was trained on exactly this data": start from the old content node only
    job = act(client, h, "train-1", "TrainingJob")
    assoc(client, h, old, job)
    model = art(client, h, "s3://m/model.tar.gz", "Model", sha("m1"))
    assoc(client, h, job, model, "Produced")
    res = q(client, h, [old], filters={"types": ["Model"]})
    assert [v["id"] for v in res["vertices"]] == [model]
    res = q(client, h, [new], filters={"types": ["Model"]})
    assert res["vertices"] == []
    # by URI the query starts from every content version of it
    res = q(client, h, ["s3://d/train.csv"], filters={"types": ["Model"]})
    assert [v["uri"] for v in res["vertices"]] == ["s3://m/model.tar.gz"]


def test_associations_duplicates_missing_and_delete(client, keys):
    h = keys("publisher")
    a, b = art(client, h, "s3://x/a"), act(client, h, "job")
    e = assoc(client, h, a, b).json()
    dup = assoc(client, h, a, b, expect=409).json()
    assert dup["existing_id"] == e["id"]
    assoc(client, h, a, b, "AssociatedWith")   # another type is another association
    r = assoc(client, h, a, "missing-id", expect=404).json()
    assert "missing-id" in r["detail"] and r["missing"] == ["missing-id"]
    assert_problem(client.post(f"{API}/associations", json={"source": a, "target": a, "type": "SameAs"},
                               headers=h), 422, "itself")
    assert_problem(client.post(f"{API}/associations", json={"source": a, "target": b, "type": "Likes"},
                               headers=h), 422, "type")
    assert client.delete(f"{API}/associations/{e['id']}", headers=h).status_code == 204
    assert_problem(client.delete(f"{API}/associations/{e['id']}", headers=h), 404)


def _chain(client, h, n, prefix="n"):
    ids = [art(client, h, f"s3://{prefix}/{i}") for i in range(n)]
    for s, t in itertools.pairwise(ids):
        assoc(client, h, s, t, "DerivedFrom")
    return ids


def test_depth_limits_direction_and_cycles(client, keys):
    h = keys("publisher")
    ids = _chain(client, h, 6)
    res = q(client, h, [ids[0]], max_depth=3)
    assert [(v["id"], v["depth"]) for v in res["vertices"]] == [(ids[i], i) for i in range(4)]
    assert len(res["edges"]) == 3
    res = q(client, h, [ids[5]], "Ascendants", max_depth=2)
    assert sorted(v["depth"] for v in res["vertices"]) == [0, 1, 2]
    both = q(client, h, [ids[3]], "Both", max_depth=1)
    assert sorted(v["id"] for v in both["vertices"]) == sorted([ids[2], ids[3], ids[4]])
    # close a cycle 5 -> 0: the walk terminates and every vertex appears once with its shortest depth
    assoc(client, h, ids[5], ids[0], "DerivedFrom")
    res = q(client, h, [ids[0]], max_depth=50)
    assert len(res["vertices"]) == 6 and len({v["id"] for v in res["vertices"]}) == 6
    assert {v["id"]: v["depth"] for v in res["vertices"]}[ids[5]] == 5
    assert len(res["edges"]) == 6


def test_multi_start_union_and_filters(client, keys):
    h = keys("publisher")
    a = _chain(client, h, 3, "a")
    b = _chain(client, h, 3, "b")
    res = q(client, h, [a[0], b[0]], max_depth=1)
    assert sorted(v["id"] for v in res["vertices"]) == sorted([a[0], a[1], b[0], b[1]])
    job = act(client, h, "j")
    assoc(client, h, a[2], job, "ContributedTo")
    res = q(client, h, [a[0]], filters={"kinds": ["action"]})
    assert [v["id"] for v in res["vertices"]] == [job]
    res = q(client, h, [a[0]], filters={"association_types": ["DerivedFrom"]})
    assert job not in [v["id"] for v in res["vertices"]]
    res = q(client, h, [a[0]], filters={"created_after": "2100-01-01T00:00:00Z"})
    assert res["vertices"] == []
    res = q(client, h, [a[0]], include_edges=False)
    assert res["edges"] == [] and len(res["vertices"]) == 4
    assert_problem(client.post(f"{API}/query", json={"start": ["nope"]}, headers=h), 404, "nope")
    assert_problem(client.post(f"{API}/query", json={"start": []}, headers=h), 422, "start")
    assert_problem(client.post(f"{API}/query", json={"start": [a[0]], "direction": "Up"}, headers=h), 422,
                   "direction")
    assert_problem(client.post(f"{API}/query", json={"start": [a[0]], "max_depth": -1}, headers=h), 422,
                   "max_depth")
    alone = q(client, h, [a[0], b[0]], max_depth=0)     # no association walked: the starts alone
    assert sorted(v["id"] for v in alone["vertices"]) == sorted([a[0], b[0]]) and alone["edges"] == []


def test_exports(client, keys):
    h = keys("publisher")
    ids = _chain(client, h, 3, "e")
    body = {"start": [ids[0]], "direction": "Descendants"}
    dot = client.post(f"{API}/query/export?format=dot", json=body, headers=h)
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.startswith("digraph lineage {") and dot.text.count("->") == 2 and "s3://e/0" in dot.text
    mer = client.post(f"{API}/query/export?format=mermaid", json=body, headers=h).text
    assert mer.startswith("graph LR") and mer.count("-->|DerivedFrom|") == 2
    js = client.post(f"{API}/query/export?format=json", json=body, headers=h).json()
    assert len(js["vertices"]) == 3
    assert_problem(client.post(f"{API}/query/export?format=svg", json=body, headers=h), 422, "format")


def test_registration_records_lineage_automatically(client, keys):
    pub = keys("publisher")
    create_group(client, pub, "churn")
    v = register(client, pub, "churn", 1, training_data=["s3://data/train.csv", "s3://data/extra.csv"])
    res = q(client, keys("viewer"), ["s3://data/train.csv"])
    by_uri = {x["uri"]: x for x in res["vertices"] if x["uri"]}
    node = "mlgov://model-groups/churn/versions/1"
    assert by_uri[node]["type"] == "ModelPackage" and by_uri[node]["name"] == "churn/1"
    types = {(x["kind"], x["type"]) for x in res["vertices"]}
    assert ("action", "TrainingJob") in types and ("context", "ModelGroup") in types
    # the version uses the model artifact (URI + hash)
    model = [x for x in q(client, keys("viewer"), [node], direction="Ascendants")["vertices"] if x["type"] == "Model"]
    assert [(x["uri"], x["sha256"]) for x in model] == [(v["artifact_uri"], v["artifact_sha256"])]
    # approvals and stage changes hang off the version as actions
    approve(client, keys("approver"), "churn", 1)
    client.post("/api/v1/model-groups/churn/versions/1/stage", json={"stage": "Staging"}, headers=keys("approver"))
    res = q(client, keys("viewer"), [node], filters={"kinds": ["action"]})
    assert sorted(x["type"] for x in res["vertices"]) == ["Approval", "StageTransition"]
    # upstream lineage in the compliance report
    rep = client.get("/api/v1/audit/report", params={"model_group": "churn"}, headers=keys("viewer")).json()
    up = rep["versions"][0]["lineage"]
    assert {n["uri"] for n in up if n["kind"] == "artifact"} == {"s3://data/train.csv", "s3://data/extra.csv",
                                                                  v["artifact_uri"]}
    assert any(n["type"] == "TrainingJob" for n in up)
    html = client.get("/api/v1/audit/report", params={"model_group": "churn", "format": "html"},
                      headers=keys("viewer")).text
    assert "Upstream lineage" in html and "s3://data/extra.csv" in html
    # a second version on the same data shares the dataset node
    register(client, pub, "churn", 2, training_data=["s3://data/train.csv"])
    res = q(client, keys("viewer"), ["s3://data/train.csv"], filters={"types": ["ModelPackage"]})
    assert sorted(x["name"] for x in res["vertices"]) == ["churn/1", "churn/2"]


def test_versions_sharing_an_artifact_keep_their_own_lineage(client, keys):
    """Issue 11: v1 and v2 registered with the same artifact (URI and sha256) but different training data were one
    lineage node, so the compliance report showed v2's data under the rejected v1."""
    pub, viewer = keys("publisher"), keys("viewer")
    create_group(client, pub, "credit-risk")
    same = {"artifact_uri": "s3://models/credit/model.tar.gz", "artifact_sha256": sha("one file")}
    register(client, pub, "credit-risk", 1, training_data=["s3://data/credit/2025.csv"], **same)
    register(client, pub, "credit-risk", 2, training_data=["s3://data/credit/2026.csv"], **same)
    assert approve(client, keys("approver"), "credit-risk", 1, status="Rejected").status_code == 200
    rep = client.get("/api/v1/audit/report", params={"model_group": "credit-risk"}, headers=viewer).json()
    data = {r["version"]: {n["uri"] for n in r["lineage"] if n["type"] == "Dataset"} for r in rep["versions"]}
    assert data == {1: {"s3://data/credit/2025.csv"}, 2: {"s3://data/credit/2026.csv"}}
    for row in rep["versions"]:   # each still shows the artifact it ships
        assert {n["uri"] for n in row["lineage"] if n["type"] == "Model"} == {same["artifact_uri"]}
    # each version is its own node, named after itself; both use the one artifact node
    v1, v2 = (f"mlgov://model-groups/credit-risk/versions/{n}" for n in (1, 2))
    up = q(client, viewer, [v1], direction="Ascendants")["vertices"]
    assert {x["uri"] for x in up if x["type"] == "Dataset"} == {"s3://data/credit/2025.csv"}
    down = q(client, viewer, [same["artifact_uri"]], filters={"types": ["ModelPackage"]})["vertices"]
    assert sorted((x["name"], x["uri"]) for x in down) == [("credit-risk/1", v1), ("credit-risk/2", v2)]
    # the rejection hangs off v1 only
    decided = q(client, viewer, [v2], filters={"types": ["Approval"]})["vertices"]
    assert decided == []
    assert [x["type"] for x in q(client, viewer, [v1], filters={"types": ["Approval"]})["vertices"]] == ["Approval"]


def test_version_uris_are_mlgovs_to_create(client, keys):
    """A user node created under a future version's URI would be claimed as that version at registration."""
    pub = keys("publisher")
    body = {"type": "Dataset", "uri": "mlgov://model-groups/churn/versions/1"}
    assert_problem(client.post(f"{API}/artifacts", json=body, headers=pub), 422, "mlgov://", "your own URI")
    create_group(client, pub, "churn")
    register(client, pub, "churn", 1)
    r = client.post(f"{API}/artifacts", json=body, headers=pub)   # the existing node: referring to it is fine
    assert r.status_code == 200 and r.json()["type"] == "ModelPackage", r.text


def _ol_event(event_type, run_id, inputs=("db/raw",), outputs=("warehouse/features",)):
    return {
        "eventType": event_type,
        "eventTime": "2026-11-20T10:00:00.000Z",
        "run": {"runId": run_id, "facets": {"nominalTime": {"nominalStartTime": "2026-11-20T10:00:00Z"}}},
        "job": {"namespace": "airflow", "name": "features.build",
                "facets": {"jobType": {"processingType": "BATCH", "integration": "AIRFLOW", "jobType": "TASK"}}},
        "inputs": [{"namespace": "postgres://db:5432", "name": n, "facets": {"schema": {"fields": [
            {"name": "id", "type": "int"}]}}} for n in inputs],
        "outputs": [{"namespace": "s3://lake", "name": n, "facets": {}} for n in outputs],
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/integration/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def test_openlineage_run_events(client, keys, db):
    h = keys("publisher")
    run = str(uuid.uuid4())
    r1 = client.post(f"{API}/openlineage", json=_ol_event("START", run), headers=h)
    assert r1.status_code == 201 and r1.json()["status"] == "InProgress"
    r2 = client.post(f"{API}/openlineage", json=_ol_event("COMPLETE", run), headers=h).json()
    assert r2["action"] == r1.json()["action"] and r2["status"] == "Completed" and not r2["created"]
    a = client.get(f"{API}/actions/{r2['action']}", headers=h).json()
    assert a["type"] == "TASK" and a["properties"]["openlineage"]["run_id"] == run
    assert a["start_time"] and a["end_time"]
    res = q(client, h, ["postgres://db:5432/db/raw"])
    uris = {v["uri"] for v in res["vertices"]}
    assert "s3://lake/warehouse/features" in uris
    ds = client.get(f"{API}/artifacts", params={"uri": "postgres://db:5432/db/raw"}, headers=h).json()["items"][0]
    assert ds["properties"]["openlineage_facets"]["schema"]["fields"][0]["name"] == "id"
    fail = client.post(f"{API}/openlineage", json=_ol_event("FAIL", str(uuid.uuid4())), headers=h).json()
    assert fail["status"] == "Failed"
    # from a trial: events arrive out of order; a START or RUNNING after the COMPLETE reopened the run
    late = str(uuid.uuid4())
    at = {"COMPLETE": "10:10", "START": "10:00", "RUNNING": "10:05"}
    for kind in ("COMPLETE", "START", "RUNNING"):
        event = {**_ol_event(kind, late), "eventTime": f"2026-11-20T{at[kind]}:00Z"}
        last = client.post(f"{API}/openlineage", json=event, headers=h).json()
    assert last["status"] == "Completed"
    run_node = client.get(f"{API}/actions/{last['action']}", headers=h).json()
    assert (run_node["start_time"][11:16], run_node["end_time"][11:16]) == ("10:00", "10:10")


def test_openlineage_events_cannot_rewrite_others_lineage(client, keys):
    """Another user's run id, or a dataset mlgov recorded, may be linked to but not rewritten by an event."""
    run = str(uuid.uuid4())
    started = client.post(f"{API}/openlineage", json=_ol_event("START", run), headers=keys("publisher"))
    assert started.status_code == 201
    hijack = client.post(f"{API}/openlineage", json=_ol_event("COMPLETE", run), headers=keys("publisher2"))
    assert hijack.status_code == 403 and "only its creator or an admin" in hijack.json()["detail"]
    a = client.get(f"{API}/actions/{started.json()['action']}", headers=keys("viewer")).json()
    assert a["status"] == "InProgress" and a["end_time"] is None
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1)   # records s3://data/churn/train-1.csv as mlgov's evidence
    ev = _ol_event("START", str(uuid.uuid4()), inputs=(), outputs=())
    ev["inputs"] = [{"namespace": "s3://data", "name": "churn/train-1.csv", "facets": {"schema": {"fields": []}}}]
    r = client.post(f"{API}/openlineage", json=ev, headers=keys("publisher2"))
    assert r.status_code == 201, r.text
    ds = client.get(f"{API}/artifacts", params={"uri": "s3://data/churn/train-1.csv"},
                    headers=keys("viewer")).json()["items"][0]
    assert r.json()["inputs"] == [ds["id"]] and "openlineage_facets" not in (ds["properties"] or {})
    # an operator's trial: a jobType facet of "Approval" drew a forged approval beside a pending version
    for job_type in ("Approval", "stagetransition"):
        forged = _ol_event("COMPLETE", str(uuid.uuid4()), inputs=(), outputs=())
        forged["job"]["facets"]["jobType"]["jobType"] = job_type
        forged["outputs"] = [{"namespace": "mlgov://model-groups", "name": "churn/versions/1", "facets": {}}]
        assert_problem(client.post(f"{API}/openlineage", json=forged, headers=keys("publisher2")), 422,
                       f"action type '{job_type}' is reserved")
    actions = client.get(f"{API}/actions", params={"type": "Approval"}, headers=keys("viewer")).json()
    assert actions["total"] == 0


def test_openlineage_events_from_the_official_client(client, keys):
    """Events built with the openlineage-python client are accepted as it serialises them."""
    from openlineage.client import event_v2 as ol
    from openlineage.client.serde import Serde

    ev = ol.RunEvent(eventType=ol.RunState.COMPLETE, eventTime="2026-11-20T10:00:00.000Z",
                     run=ol.Run(runId=str(uuid.uuid4())), job=ol.Job(namespace="spark", name="etl"),
                     producer="https://example.invalid/producer",
                     inputs=[ol.InputDataset(namespace="hdfs://nn", name="/raw")],
                     outputs=[ol.OutputDataset(namespace="hdfs://nn", name="/clean")])
    r = client.post(f"{API}/openlineage", content=Serde.to_json(ev),
                    headers={**keys("publisher"), "content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert len(r.json()["inputs"]) == 1 and len(r.json()["outputs"]) == 1


def test_openlineage_malformed_names_the_field(client, keys, db):
    from lineage.orm import Entity

    h = keys("publisher")
    good = _ol_event("START", str(uuid.uuid4()))
    for broken, field in [
        ({k: v for k, v in good.items() if k != "eventTime"}, "eventTime"),
        ({**good, "run": {"runId": "not-a-uuid"}}, "runId"),
        ({**good, "job": {"namespace": "x"}}, "job.name"),
        ({**good, "eventType": "DONE"}, "eventType"),
        ({**good, "inputs": [{"name": "t"}]}, "inputs.0.namespace"),
        ({k: v for k, v in good.items() if k != "producer"}, "producer"),
    ]:
        assert_problem(client.post(f"{API}/openlineage", json=broken, headers=h), 422, field)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Entity)) == 0


def _parent(run_id, name="features_dag"):
    return {"parent": {"run": {"runId": run_id}, "job": {"namespace": "airflow", "name": name},
                       "_producer": "https://example.invalid", "_schemaURL": "https://example.invalid/parent"}}


def test_openlineage_parent_runs_are_linked(client, keys):
    """A task run names its DAG run in the parent facet: the two runs are linked, whichever event comes first."""
    h = keys("publisher")
    dag_run, task_run = str(uuid.uuid4()), str(uuid.uuid4())
    task = _ol_event("START", task_run)
    task["run"]["facets"].update(_parent(dag_run))
    r = client.post(f"{API}/openlineage", json=task, headers=h)
    assert r.status_code == 201, r.text
    parent_id = r.json()["parent"]
    placeholder = client.get(f"{API}/actions/{parent_id}", headers=h).json()
    assert placeholder["status"] == "Unknown" and placeholder["type"] == "Job"
    assert placeholder["properties"]["openlineage"]["run_id"] == dag_run
    links = client.get(f"{API}/associations", params={"source": r.json()["action"]}, headers=h).json()["items"]
    assert {(a["target"], a["type"]) for a in links} >= {(parent_id, "AssociatedWith")}
    # the DAG run's own events then fill in the same action, with its job type
    dag = {**_ol_event("COMPLETE", dag_run, inputs=(), outputs=()), "job": {
        "namespace": "airflow", "name": "features_dag", "facets": {"jobType": {"jobType": "DAG"}}}}
    r2 = client.post(f"{API}/openlineage", json=dag, headers=h).json()
    assert r2["action"] == parent_id and not r2["created"]
    done = client.get(f"{API}/actions/{parent_id}", headers=h).json()
    assert (done["status"], done["type"]) == ("Completed", "DAG")
    assert "known_from" not in done["properties"]["openlineage"]
    # resending the task's event links nothing twice; the parent is reached from the task's input
    client.post(f"{API}/openlineage", json=task, headers=h)
    res = q(client, h, ["postgres://db:5432/db/raw"], max_depth=3)
    assert parent_id in {v["id"] for v in res["vertices"]}
    assert sum(1 for e in res["edges"] if e["target"] == parent_id and e["type"] == "AssociatedWith") == 1
    # another user's run may be named as a parent (linked to), not changed
    other = _ol_event("START", str(uuid.uuid4()), inputs=(), outputs=())
    other["run"]["facets"].update(_parent(dag_run))
    r3 = client.post(f"{API}/openlineage", json=other, headers=keys("publisher2"))
    assert r3.status_code == 201 and r3.json()["parent"] == parent_id
    assert client.get(f"{API}/actions/{parent_id}", headers=h).json()["status"] == "Completed"
    # a parent known only from a facet sent under one key is taken over by its own producer's (a reviewer's
    # finding: Spark reported the child, Airflow the DAG run, and Airflow's events were refused)
    spark_parent = str(uuid.uuid4())
    child = _ol_event("START", str(uuid.uuid4()), inputs=(), outputs=())
    child["run"]["facets"].update(_parent(spark_parent, name="other_dag"))
    placeholder_id = client.post(f"{API}/openlineage", json=child, headers=h).json()["parent"]
    own = {**_ol_event("START", spark_parent, inputs=(), outputs=()),
           "job": {"namespace": "airflow", "name": "other_dag"}}
    took = client.post(f"{API}/openlineage", json=own, headers=keys("publisher2"))
    assert took.status_code == 201 and took.json()["action"] == placeholder_id, took.text
    assert client.post(f"{API}/openlineage", json={**own, "eventType": "COMPLETE"},
                       headers=h).status_code == 403   # now publisher2's run
    # a run named as its own parent is not linked to itself
    own = _ol_event("START", task_run)
    own["run"]["facets"].update(_parent(task_run, name="features.build"))
    assert client.post(f"{API}/openlineage", json=own, headers=h).json()["parent"] is None


def test_openlineage_job_and_dataset_events(client, keys):
    """Static lineage (JobEvent) and dataset metadata (DatasetEvent); facets add up by name, `_deleted` drops one."""
    h = keys("publisher")
    job = {"eventTime": "2026-11-20T10:00:00Z", "producer": "https://example.invalid",
           "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
           "job": {"namespace": "dbt", "name": "marts.orders", "facets": {"sql": {"query": "select 1"}}},
           "inputs": [{"namespace": "postgres://db:5432", "name": "raw.orders"}],
           "outputs": [{"namespace": "postgres://db:5432", "name": "marts.orders",
                        "facets": {"schema": {"fields": [{"name": "id", "type": "int"}]}}}]}
    r = client.post(f"{API}/openlineage", json=job, headers=h)
    assert r.status_code == 201, r.text
    ctx = client.get(f"{API}/contexts/{r.json()['job_context']}", headers=h).json()
    assert ctx["properties"]["openlineage_facets"]["sql"]["query"] == "select 1"
    res = q(client, h, ["postgres://db:5432/raw.orders"])
    assert "postgres://db:5432/marts.orders" in {v.get("uri") for v in res["vertices"]}
    # a run of the job lands on the same job context
    run = {**_ol_event("COMPLETE", str(uuid.uuid4()), inputs=(), outputs=()),
           "job": {"namespace": "dbt", "name": "marts.orders"}}
    assert client.post(f"{API}/openlineage", json=run, headers=h).json()["job_context"] == ctx["id"]

    uri = "postgres://db:5432/marts.orders"
    ds_event = {"eventTime": "2026-11-20T11:00:00Z", "producer": "https://example.invalid",
                "dataset": {"namespace": "postgres://db:5432", "name": "marts.orders",
                            "facets": {"documentation": {"description": "one row per order"},
                                       "schema": {"_deleted": True}}}}
    r2 = client.post(f"{API}/openlineage", json=ds_event, headers=h)
    assert r2.status_code == 201 and r2.json()["facets_kept"], r2.text
    ds = client.get(f"{API}/artifacts", params={"uri": uri}, headers=h).json()["items"][0]
    assert ds["id"] == r2.json()["artifact"]
    assert ds["properties"]["openlineage_facets"] == {"documentation": {"description": "one row per order"}}
    # another user's dataset: linked to, its facets left alone
    r3 = client.post(f"{API}/openlineage", json={**ds_event, "dataset": {**ds_event["dataset"], "facets": {
        "documentation": {"description": "hijacked"}}}}, headers=keys("publisher2"))
    assert r3.status_code == 201 and not r3.json()["facets_kept"]
    ds = client.get(f"{API}/artifacts", params={"uri": uri}, headers=h).json()["items"][0]
    assert ds["properties"]["openlineage_facets"]["documentation"]["description"] == "one row per order"
    # every event kind is audited
    events = client.get("/api/v1/audit/events", params={"action": "lineage.openlineage_event"},
                        headers=keys("admin")).json()["items"]
    assert {e["after"].get("event", "RunEvent") for e in events} == {"RunEvent", "JobEvent", "DatasetEvent"}


def test_openlineage_bad_events_name_what_is_wrong(client, keys, db):
    """Facets are bounded like native properties; a malformed parent facet or dataset event is a 422; nothing is
    half-written."""
    from lineage.orm import Entity

    h = keys("publisher")
    big = "x" * 100_001
    huge_run = _ol_event("START", str(uuid.uuid4()))
    huge_run["run"]["facets"]["blob"] = {"data": big}
    huge_ds = _ol_event("START", str(uuid.uuid4()))
    huge_ds["outputs"] = [{"namespace": "s3://lake", "name": "t", "facets": {"blob": {"data": big}}}]
    bad_parent = _ol_event("START", str(uuid.uuid4()))
    bad_parent["run"]["facets"]["parent"] = {"run": {"runId": "nope"}, "job": {"namespace": "a"}}
    for body, needles in [
        (huge_run, ("run.facets", "100,000")),
        (huge_ds, ("outputs.0.facets", "100,000")),
        (bad_parent, ("run.facets.parent.run.runId", "run.facets.parent.job.name")),
        ({"eventTime": "2026-11-20T10:00:00Z", "producer": "p", "dataset": {"name": "t"}},
         ("DatasetEvent.dataset.namespace",)),
        ({"eventTime": "2026-11-20T10:00:00Z", "producer": "p", "job": {"namespace": "n"}}, ("JobEvent.job.name",)),
        ({"producer": "p"}, ("RunEvent.run", "RunEvent.job", "RunEvent.eventTime")),
    ]:
        assert_problem(client.post(f"{API}/openlineage", json=body, headers=h), 422, *needles)
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Entity)) == 0
    assert client.post(f"{API}/openlineage", json=_ol_event("START", str(uuid.uuid4())),
                       headers=keys("viewer")).status_code == 403


def test_lineage_bad_input(client, keys, db):
    from lineage.orm import Entity

    h = keys("publisher")
    for path, body, field in [
        ("artifacts", {"type": "Dataset"}, "uri"),
        ("artifacts", {"type": "bad type!", "uri": "s3://x"}, "type"),
        ("artifacts", {"type": "Dataset", "uri": "s3://x", "sha256": "zz"}, "sha256"),
        ("actions", {"type": "Job", "name": "x", "status": "Done"}, "status"),
        ("actions", {"type": "Job"}, "name"),
        ("contexts", {"name": "x"}, "type"),
        ("artifacts", {"type": "Dataset", "uri": "   "}, "blank"),                          # was a 201
        ("artifacts", {"type": "Dataset", "uri": "s3://x", "properties": {"blob": "x" * 100_001}}, "at most"),
        ("contexts", {"type": "P", "name": "x", "properties": {"a": "x" * 60_000, "b": "y" * 60_000}}, "100,000"),
    ]:
        assert_problem(client.post(f"{API}/{path}", json=body, headers=h), 422, field)
    assert_problem(client.post(f"{API}/actions", json={"type": "Job", "name": "x", "start_time": "2026-01-02T00:00:00Z",
                                                       "end_time": "2026-01-01T00:00:00Z"}, headers=h), 422, "before")
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Entity)) == 0


def test_lineage_roles(client, keys):
    body = {"type": "Dataset", "uri": "s3://r"}
    assert client.post(f"{API}/artifacts", json=body, headers=keys("viewer")).status_code == 403
    assert client.post(f"{API}/artifacts", json=body, headers=keys("ingest")).status_code == 403
    assert client.get(f"{API}/artifacts", headers=keys("ingest")).status_code == 403
    assert client.post(f"{API}/query", json={"start": ["x"]}, headers=keys("ingest")).status_code == 403
    assert client.post(f"{API}/artifacts", json=body, headers=keys("publisher")).status_code == 201
    assert client.get(f"{API}/artifacts", headers=keys("viewer")).status_code == 200


def test_update_and_delete_entities(client, keys, db):
    h = keys("publisher")
    a = art(client, h, "s3://u/a")
    j = act(client, h, "job")
    assoc(client, h, a, j)
    r = client.patch(f"{API}/actions/{j}", json={"status": "Failed", "properties": {"error": "oom"}}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "Failed" and r.json()["properties"] == {"error": "oom"}
    r = client.patch(f"{API}/actions/{j}", json={"properties_to_remove": ["error"], "description": "retry"},
                     headers=h)
    assert r.json()["properties"] == {} and r.json()["description"] == "retry"
    # properties merge, so updates of 60,000 characters each cannot pile up past the limit either
    assert client.patch(f"{API}/actions/{j}", json={"properties": {"a": "x" * 60_000}}, headers=h).status_code == 200
    assert_problem(client.patch(f"{API}/actions/{j}", json={"properties": {"b": "y" * 60_000}}, headers=h), 422,
                   "properties would take")
    r = client.patch(f"{API}/actions/{j}", json={"properties_to_remove": ["a"]}, headers=h)
    assert r.status_code == 200 and r.json()["properties"] == {}
    assert_problem(client.patch(f"{API}/artifacts/{a}", json={"status": "Failed"}, headers=h), 422, "actions")
    assert_problem(client.patch(f"{API}/artifacts/{a}", json={"uri": "s3://other"}, headers=h), 422, "uri")
    assert_problem(client.patch(f"{API}/contexts/{a}", json={"name": "x"}, headers=h), 404, "no context")
    assert client.patch(f"{API}/artifacts/{a}", json={"name": "x"}, headers=keys("viewer")).status_code == 403
    assert client.delete(f"{API}/artifacts/{a}", headers=h).status_code == 204
    assert client.get(f"{API}/associations", params={"target": j}, headers=h).json()["total"] == 0
    assert_problem(client.get(f"{API}/artifacts/{a}", headers=h), 404)
    ev = client.get("/api/v1/audit/events", params={"action": "lineage.artifact_deleted"},
                    headers=keys("admin")).json()["items"][0]
    assert ev["before"]["uri"] == "s3://u/a" and ev["before"]["associations"][0]["target"] == j


def test_registration_lineage_in_bulk(client, keys):
    """Registration writes its lineage in bulk (one INSERT … ON CONFLICT for nodes, one for edges): a dataset a user
    recorded first becomes evidence, a new hash of a known model URI derives from the old node, a dataset named
    twice is one node and one edge, and a group created again under its name starts with nodes of its own."""
    pub, viewer = keys("publisher"), keys("viewer")
    create_group(client, pub, "bulk")
    data = art(client, pub, "s3://data/bulk.csv")
    old_model = art(client, pub, "s3://models/bulk.tar.gz", "Model", sha("old"))
    body = {"artifact_uri": "s3://models/bulk.tar.gz", "artifact_sha256": sha("new"), "training_job": None,
            "training_data": ["s3://data/bulk.csv", "s3://data/bulk.csv"]}
    register(client, pub, "bulk", 1, **body)
    assert_problem(client.patch(f"{API}/artifacts/{data}", json={"name": "x"}, headers=pub), 403, "evidence")

    def ids(uri):
        return [x["id"] for x in client.get(f"{API}/artifacts", params={"uri": uri}, headers=viewer).json()["items"]]

    def edges(**by):
        items = client.get(f"{API}/associations", params=by, headers=viewer).json()["items"]
        return sorted((e["source"], e["target"], e["type"]) for e in items)

    (version,) = ids("mlgov://model-groups/bulk/versions/1")
    (new_model,) = set(ids("s3://models/bulk.tar.gz")) - {old_model}
    assert edges(source=old_model) == [(old_model, new_model, "DerivedFrom")]
    into = edges(target=version)
    job = next(s for s, _, t in into if t == "Produced")
    ctx = client.get(f"{API}/contexts", params={"name_contains": "bulk"}, headers=viewer).json()["items"][0]["id"]
    assert into == sorted([(new_model, version, "ContributedTo"), (job, version, "Produced")])
    assert edges(source=version) == [(version, ctx, "AssociatedWith")]
    assert edges(target=job) == [(data, job, "ContributedTo")]
    got = client.get(f"{API}/actions/{job}", headers=viewer).json()
    assert (got["type"], got["name"], got["status"]) == ("TrainingJob", "bulk/1/training", "Completed")
    # the group deleted and created again: the deleted group's nodes stay (evidence) under a name no group can
    # take, and the new version 1 gets nodes of its own (before, it took the old ones over, with whatever training
    # data and approvals they had); the datasets and model files, named by URI and hash, are shared
    r = client.request("DELETE", "/api/2.0/mlflow/registered-models/delete", json={"name": "bulk"}, headers=pub)
    assert r.status_code == 200, r.text
    gone = client.get(f"{API}/artifacts/{version}", headers=viewer).json()
    assert gone["uri"].startswith("mlgov://model-groups/bulk:deleted-") and gone["uri"].endswith("/versions/1")
    assert edges(target=version) == into and edges(target=job) == [(data, job, "ContributedTo")]
    create_group(client, pub, "bulk")
    register(client, pub, "bulk", 1, **body)
    (again,) = ids("mlgov://model-groups/bulk/versions/1")
    assert again != version and edges(target=version) == into          # the old node keeps its edges
    into_again = edges(target=again)
    assert (new_model, again, "ContributedTo") in into_again and job not in {s for s, _, _ in into_again}


def test_query_equals_shortest_paths_on_random_graphs(db):
    """The walk against an independent oracle (scipy's unweighted shortest paths) on random graphs with cycles,
    diamonds, self-loops, parallel edges of two types, several starts, both directions and type filters."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    from lineage import service
    from lineage.orm import Edge, Entity
    from lineage.schemas import QueryFilters, QueryRequest

    rng = np.random.default_rng(7)
    n = 60
    s = db.session()
    ids = [uuid.uuid4().hex for _ in range(n)]
    kinds = ["artifact" if i % 3 else "action" for i in range(n)]
    s.add_all([Entity(id=ids[i], kind=kinds[i], type=f"T{i % 4}", identity=f"rand-{ids[i]}", created_by="t")
               for i in range(n)])
    types = rng.choice(["ContributedTo", "DerivedFrom"], 150)
    pairs = {(int(a), int(b), str(t))
             for a, b, t in zip(rng.integers(0, n, 150), rng.integers(0, n, 150), types, strict=True)}
    s.flush()
    s.add_all([Edge(source_id=ids[a], target_id=ids[b], type=t, created_by="t") for a, b, t in pairs])
    s.flush()
    for trial in range(40):
        starts = sorted({int(x) for x in rng.integers(0, n, int(rng.integers(1, 4)))})
        direction = ["Descendants", "Ascendants", "Both"][trial % 3]
        depth = int(rng.integers(1, 7))
        assoc = [["ContributedTo"], None][trial % 2]
        kind_filter = ["artifact"] if trial % 5 == 0 else None
        m = np.zeros((n, n))
        for a, b, t in pairs:
            if assoc is None or t in assoc:
                m[a, b] = 1
        g = csr_matrix(m)
        dist = np.full(n, np.inf)
        if direction != "Ascendants":
            dist = np.minimum(dist, shortest_path(g, unweighted=True, indices=starts).min(axis=0))
        if direction != "Descendants":
            dist = np.minimum(dist, shortest_path(g.T.tocsr(), unweighted=True, indices=starts).min(axis=0))
        reached = {i for i in range(n) if dist[i] <= depth}
        kept = {i for i in reached if kind_filter is None or kinds[i] in kind_filter}
        filters = QueryFilters(association_types=assoc, kinds=kind_filter) if (assoc or kind_filter) else None
        got = service.query_document(s, QueryRequest(start=[ids[i] for i in starts], direction=direction,
                                                     max_depth=depth, filters=filters))
        assert {v["id"]: v["depth"] for v in got["vertices"]} == {ids[i]: int(dist[i]) for i in kept}, trial
        expect = {(ids[a], ids[b], t) for a, b, t in pairs
                  if a in kept and b in kept and (assoc is None or t in assoc)}
        assert {(e["source"], e["target"], e["type"]) for e in got["edges"]} == expect, trial
        assert len(got["edges"]) == len(expect)


def test_console_links_a_deleted_versions_node_to_its_own_page(app, client, keys):
    """A registry trial clicked a version's node in the console's lineage graph after the version was deleted
    and got a 404: the node stays (evidence) but the version page is gone. Now it links to the node's own page,
    which says the version was deleted; a live version's node still opens the version."""
    pub, viewer = keys("publisher"), keys("viewer")
    create_group(client, pub, "churn")
    for n in (1, 2):
        register(client, pub, "churn", n, training_data=["s3://data/train.csv"])
    r = client.request("DELETE", "/api/2.0/mlflow/model-versions/delete", json={"name": "churn", "version": "2"},
                       headers=pub)   # MLflow's door (SageMaker's DeleteModelPackage is the other; no native one)
    assert r.status_code == 200, r.text
    res = q(client, viewer, ["s3://data/train.csv"])
    ids = {x["uri"]: x["id"] for x in res["vertices"] if x["uri"]}
    gone, kept = ids["mlgov://model-groups/churn/versions/2"], ids["mlgov://model-groups/churn/versions/1"]
    console = signed_in(app, keys.plain["viewer"])
    html = console.get(f"/console/lineage/{ids['s3://data/train.csv']}").text
    assert 'href="/console/models/churn/versions/1"' in html and "/console/models/churn/versions/2" not in html
    assert f'href="/console/lineage/{gone}"' in html
    page = console.get(f"/console/lineage/{gone}")
    assert page.status_code == 200 and "churn version 2 was deleted" in page.text and "Open its page" not in page.text
    live = console.get(f"/console/lineage/{kept}").text
    assert "Open its page" in live and "was deleted" not in live
    long_uri = "s3://data/" + "x" * 60 + "/train.csv"          # labels keep the end, marked as cut
    art(client, pub, long_uri)
    ds = q(client, viewer, [long_uri])["vertices"][0]["id"]
    assert "Dataset: …" + long_uri[-39:] in console.get(f"/console/lineage/{ds}").text
    assert console.get("/console/models/churn/versions/2").status_code == 404


@pytest.mark.live
@pytest.mark.parametrize("config", ["environment", "gzip"])
def test_openlineage_python_http_transport(live_db, tmp_path, monkeypatch, config):
    """openlineage-python's own HTTP transport, configured from the environment as Airflow's provider is, or in
    code with gzip, emits a task run with its DAG run as parent, a JobEvent and a DatasetEvent; each lands."""
    from openlineage.client import OpenLineageClient
    from openlineage.client import event_v2 as ol
    from openlineage.client.facet_v2 import documentation_dataset, parent_run
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport

    from mlgov import auth
    from mlgov.app import create_app
    from tests.conftest import make_settings
    from tests.infra import LiveServer

    with live_db.session_scope() as s:
        key = auth.create_key(s, "airflow", "publisher", actor="test")[1]
    with LiveServer(create_app(make_settings(tmp_path), db=live_db)) as srv:
        if config == "environment":
            for name, value in [("OPENLINEAGE_URL", srv.url), ("OPENLINEAGE_ENDPOINT", "api/v1/lineage/openlineage"),
                                ("OPENLINEAGE_API_KEY", key)]:
                monkeypatch.setenv(name, value)
            client = OpenLineageClient()
            assert isinstance(client.transport, HttpTransport)
        else:
            client = OpenLineageClient(transport=HttpTransport(HttpConfig(
                url=srv.url, endpoint="api/v1/lineage/openlineage", auth=ApiKeyTokenProvider({"apiKey": key}),
                compression=HttpCompression.GZIP, timeout=30)))
        dag_run = str(uuid.uuid4())
        parent = parent_run.ParentRunFacet(run=parent_run.Run(runId=dag_run),
                                           job=parent_run.Job(namespace="airflow", name="etl"))
        when = "2026-11-20T10:00:00Z"
        client.emit(ol.RunEvent(eventType=ol.RunState.COMPLETE, eventTime=when, producer="https://example.invalid",
                                run=ol.Run(runId=str(uuid.uuid4()), facets={"parent": parent}),
                                job=ol.Job(namespace="airflow", name="etl.load"),
                                inputs=[ol.InputDataset(namespace="s3://raw", name="orders")],
                                outputs=[ol.OutputDataset(namespace="s3://lake", name="orders")]))
        client.emit(ol.JobEvent(eventTime=when, producer="https://example.invalid",
                                job=ol.Job(namespace="dbt", name="marts.orders"),
                                inputs=[ol.InputDataset(namespace="s3://lake", name="orders")],
                                outputs=[ol.OutputDataset(namespace="s3://marts", name="orders")]))
        doc = documentation_dataset.DocumentationDatasetFacet(description="one row per order")
        client.emit(ol.DatasetEvent(eventTime=when, producer="https://example.invalid",
                                    dataset=ol.StaticDataset(namespace="s3://marts", name="orders",
                                                             facets={"documentation": doc})))
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=srv.url, headers=h, timeout=30) as c:
            res = c.post(f"{API}/query", json={"start": ["s3://raw/orders"], "direction": "Descendants",
                                               "max_depth": 6}).json()
            uris = {v.get("uri") for v in res["vertices"]}
            assert {"s3://lake/orders", "s3://marts/orders"} <= uris, uris
            runs = c.get(f"{API}/actions", params={"type": "Job"}).json()["items"]
            assert sorted(a["name"] for a in runs) == ["etl", "etl.load"]   # the DAG run, from the parent facet
            dag = next(a for a in runs if a["name"] == "etl")
            assert dag["properties"]["openlineage"]["run_id"] == dag_run
            links = c.get(f"{API}/associations", params={"target": dag["id"], "type": "AssociatedWith"}).json()
            assert [e["source"] for e in links["items"]] == [next(a["id"] for a in runs if a["name"] == "etl.load")]
            marts = c.get(f"{API}/artifacts", params={"uri": "s3://marts/orders"}).json()["items"][0]
            assert marts["properties"]["openlineage_facets"]["documentation"]["description"] == "one row per order"
