"""Capture ingest in two halves (files on a read session, index rows in a short write turn) keeps its guarantees:
one parse of the body, idempotency when two requests race with the same event ids, CSV read as the csv module
reads it, and a bad record still a 4xx problem naming it."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import math
import uuid

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mlgov import inputs
from monitor import capture
from monitor import service as monitor
from monitor.orm import CaptureBatch, CaptureEvent
from monitor.service import endpoints
from tests.helpers import assert_problem
from tests.monitor.test_api import _endpoint, gt_record, record

T0 = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)


def _body(ids: list[str]) -> bytes:
    return json.dumps([record(i, T0, (30 + i, 40.5, "CA"), event_id=e) for i, e in enumerate(ids)]).encode()


def test_racing_requests_store_each_event_once(client, keys, db, app):
    """Both requests looked before either committed: the second one's overlap counts as duplicates and its
    batch is stored again without them, so every committed file holds each event id once."""
    ep = _endpoint(client, keys)
    store = app.state.get_store()
    first, second = _body([f"a{i}" for i in range(6)]), _body([f"a{i}" for i in range(3, 9)])
    with db.session_scope(write=False) as s:
        p1 = monitor.prepare_capture(s, store, ep["name"], first, "application/json")
        p2 = monitor.prepare_capture(s, store, ep["name"], second, "application/json")
    stale = [f"{b.folder}/{b.id}.parquet" for b in p2.batches]
    with db.session_scope() as s:
        assert monitor.commit_capture(s, store, p1)["accepted"] == 6
    with db.session_scope() as s:
        out = monitor.commit_capture(s, store, p2)
    assert (out["accepted"], out["duplicates"]) == (3, 3)
    assert not any(store.exists(k) for k in stale)          # the first files of the raced batch are gone
    with db.session_scope(write=False) as s:
        events = sorted(s.scalars(select(CaptureEvent.event_id)))
        keys_ = list(s.scalars(select(CaptureBatch.parquet_key)))
    assert events == sorted(f"a{i}" for i in range(9))
    in_files = [e for k in keys_ for e in pq.read_table(io.BytesIO(store.get(k))).column("__event_id").to_pylist()]
    assert sorted(in_files) == events
    # and a retry of everything is all duplicates
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=second, headers={
        **keys("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["duplicates"] == 6, r.text


_SENDS = st.lists(st.lists(st.integers(0, 59), min_size=1, max_size=40), min_size=1, max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sends=_SENDS)
@example(sends=[list(range(20)), [20, 5, *range(21, 40)]])   # the known id where the sample does not look
@example(sends=[list(range(20)), [20, 21, 22, 5, *range(23, 40)]])   # ... and where it does
def test_overlapping_sends_store_each_event_once_whatever_the_probe_sample_sees(client, keys, db, app, sends):
    """Batches that overlap earlier ones anywhere (where the `PROBE_SAMPLE` looks or not, once or many times):
    each send's accepted + duplicates is its record count (a repeat within a send is a duplicate too), every id
    is accepted exactly once overall, and the index and the stored files hold each id exactly once."""
    name = "churn-prod"
    if client.get(f"/api/v1/endpoints/{name}", headers=keys("viewer")).status_code == 404:
        _endpoint(client, keys, name)
    run = uuid.uuid4().hex[:12]   # the endpoint outlives each example: ids of this one only
    accepted = 0
    for send in sends:
        ids = [f"{run}-{i}" for i in send]
        r = client.post(f"/api/v1/endpoints/{name}/capture", content=_body(ids),
                        headers={**keys("ingest"), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["accepted"] + got["duplicates"] == len(ids) and got["rejected"] == [], got
        accepted += got["accepted"]
    distinct = {f"{run}-{i}" for send in sends for i in send}
    assert accepted == len(distinct)
    store = app.state.get_store()
    with db.session_scope(write=False) as s:
        indexed = [e for e in s.scalars(select(CaptureEvent.event_id)) if e.startswith(run)]
        files = list(s.scalars(select(CaptureBatch.parquet_key)))
    in_files = [e for k in files for e in pq.read_table(io.BytesIO(store.get(k))).column("__event_id").to_pylist()
                if e.startswith(run)]
    assert sorted(indexed) == sorted(in_files) == sorted(distinct)


def test_a_resent_batch_writes_no_files(client, keys, app, monkeypatch):
    """A retry resends its batch whole: the probe sample finds it known, the whole batch is probed, and nothing
    is stored for it (no file written then deleted)."""
    ep = _endpoint(client, keys)
    body = _body([f"r{i}" for i in range(200)])
    headers = {**keys("ingest"), "Content-Type": "application/json"}
    assert client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body, headers=headers).json()[
        "accepted"] == 200
    writes: list[str] = []
    monkeypatch.setattr(endpoints, "_write_batch", lambda store, b, schema: writes.append(b.id))
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body, headers=headers)
    assert (r.json()["accepted"], r.json()["duplicates"], writes) == (0, 200, [])


def test_labels_are_stored_in_the_write_turn_without_an_object_each(client, keys, db, app, monkeypatch):
    """10,000 labels held the write turn capture waits for 0.8 s on SQLite (1.7 s on PostgreSQL), two thirds of it
    building and flushing an ORM object per label, and their JSON lines were written there too: the rows now go in
    one statement and the lines are made when the upload is read. Each label still gets its own row and id, its line
    in the stored file as sent, and a label sent before its capture is still counted unmatched."""
    from monitor.orm import GroundTruth
    from monitor.service import ground_truth

    ep = _endpoint(client, keys)
    ing = keys("ingest")
    when = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)
    assert client.post(f"/api/v1/endpoints/{ep['name']}/capture", json=[record(i, when, (30, 40.0, "CA"))
                                                                        for i in range(3)], headers=ing).json()[
        "accepted"] == 3
    captured = [r["eventMetadata"].get("inferenceId") or r["eventMetadata"]["eventId"]
                for r in (record(i, when, (30, 40.0, "CA")) for i in range(3))]
    labels = [gt_record(k, str(i % 2)) for i, k in enumerate([*captured, "later-1", "later-2"])]

    def no_object(*_a, **_k):
        raise AssertionError("an ORM object built per label in the write turn")

    real = ground_truth.commit_ground_truth

    def commit(*a, **k):
        with monkeypatch.context() as m:
            m.setattr(GroundTruth, "__init__", no_object)
            m.setattr(ground_truth.json, "dumps", lambda *_a, **_k: no_object())
            return real(*a, **k)

    monkeypatch.setattr(monitor, "commit_ground_truth", commit)
    out = client.post(f"/api/v1/endpoints/{ep['name']}/ground-truth", json=labels, headers=ing).json()
    assert (out["accepted"], out["unmatched_ids"]) == (5, ["later-1", "later-2"])
    with db.session_scope(write=False) as s:
        rows = s.execute(select(GroundTruth.id, GroundTruth.event_id, GroundTruth.label, GroundTruth.object_key)).all()
    assert sorted((e, lab) for _, e, lab, _ in rows) == sorted((r["eventMetadata"]["eventId"],
                                                                r["groundTruthData"]["data"]) for r in labels)
    assert len({pk for pk, *_ in rows}) == 5 and len({key for *_, key in rows}) == 1
    stored = app.state.get_store().get(rows[0][3]).decode().splitlines()
    assert sorted(json.loads(line)["eventMetadata"]["eventId"] for line in stored) == sorted(
        r["eventMetadata"]["eventId"] for r in labels)


def test_a_label_no_row_can_hold_is_its_record_refused_not_the_upload(client, keys, app):
    """A NUL in a label (BASE64 lets one through the body's screen) failed the whole upload with a 422 after its file
    was written, leaving the file behind; it is now that record's rejection, read before anything is stored."""
    import base64

    ep = _endpoint(client, keys)
    nul = {**gt_record("bad", ""), "groundTruthData": {"data": base64.b64encode(b"a\x00b").decode(),
                                                       "encoding": "BASE64"}}
    out = client.post(f"/api/v1/endpoints/{ep['name']}/ground-truth", json=[gt_record("good", "1"), nul],
                      headers=keys("ingest")).json()
    assert out["accepted"] == 1 and [r["index"] for r in out["rejected"]] == [1], out
    assert "NUL" in out["rejected"][0]["reason"]
    store = app.state.get_store()
    assert len([k for k, _ in store.listed(f"groundtruth/{ep['name']}/")]) == 1   # the good label's file only
    only = assert_problem(client.post(f"/api/v1/endpoints/{ep['name']}/ground-truth", json=[nul],
                                      headers=keys("ingest")), 422, "rejected")
    assert only["rejected"][0]["index"] == 0
    assert len([k for k, _ in store.listed(f"groundtruth/{ep['name']}/")]) == 1


@pytest.mark.parametrize("stale", [False, True], ids=["stats-as-they-are", "analyzed-while-empty"])
def test_known_event_lookup_probes_the_unique_index_on_postgres(client, keys, db, stale):
    """The duplicate check asks the unique (endpoint, event id) index once per id, whatever the statistics: the
    plain `endpoint = $1 AND event_id = ANY($2)` was planned (without statistics, and with them) as a walk over
    every event the endpoint ever captured, a cost growing with each batch (385 ms per 500 ids at 40,000 events).
    ``stale``: the tables were analyzed while empty (a new deployment before autovacuum's next analyze); the
    probe then took the (endpoint_id, inference_id) index by its endpoint_id alone and filtered every event of
    the endpoint (1.3 s per batch of 500 at 2,500 events) until that index became partial. The labels table,
    analyzed empty too, is probed on its unique index (its only one) once 2,000 labels are in."""
    from sqlalchemy import text

    from monitor.service.endpoints import _KNOWN_EVENTS
    from monitor.service.ground_truth import _CAPTURED_EVENT, _CAPTURED_INFERENCE, _LABELLED

    if stale:
        with db.session_scope() as s:   # inside the test's transaction: rolled back with it
            if s.get_bind().dialect.name != "postgresql":
                pytest.skip("the plan is PostgreSQL's")
            s.execute(text("ANALYZE monitor_capture_events"))
            s.execute(text("ANALYZE monitor_ground_truth"))
    ep = _endpoint(client, keys)
    for part in range(4):
        r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=_body([f"p{part}-{i}" for i in range(500)]),
                        headers={**keys("ingest"), "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["accepted"] == 500, r.text
    labels = [gt_record(f"p{part}-{i}", "1") for part in range(4) for i in range(500)]
    r = client.post(f"/api/v1/endpoints/{ep['name']}/ground-truth", json=labels, headers=keys("ingest"))
    assert r.status_code == 200 and r.json()["accepted"] == 2000, r.text
    with db.session_scope(write=False) as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("the plan is PostgreSQL's (SQLite plans the IN list on the index itself)")
        endpoint_id = s.scalar(select(CaptureEvent.endpoint_id).limit(1))
        ids = [f"p{part}-{i}" for part in range(4) for i in range(0, 500, 50)] + [f"new-{i}" for i in range(100)]
        for stmts, index in ((_KNOWN_EVENTS, "uq_monitor_capture_events_endpoint_id_event_id"),
                             (_CAPTURED_EVENT, "uq_monitor_capture_events_endpoint_id_event_id"),
                             (_CAPTURED_INFERENCE, "ix_monitor_capture_events_inference"),
                             (_LABELLED, "uq_monitor_ground_truth_endpoint_id_event_id")):
            compiled = stmts["postgresql"].compile(s.connection())
            plan = "\n".join(s.connection().exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT TEXT) " + str(compiled),
                {"scope": endpoint_id, "ids": json.dumps(ids)}).scalars())   # the ids' bound form (`JsonList`)
            assert f"using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
            assert "Nested Loop" in plan, plan
            assert "Rows Removed by Filter" not in plan and "Seq Scan on monitor_" not in plan, plan
        found = s.scalars(_KNOWN_EVENTS["postgresql"], {"scope": endpoint_id, "ids": ids}).all()
        assert sorted(found) == sorted(i for i in ids if not i.startswith("new-"))


def test_body_is_parsed_at_most_once(client, keys, monkeypatch):
    """A clean body is checked by the guard and split into records' text, never parsed whole into Python values;
    a suspect one (here a 1e+300 beside the records) is parsed and walked by the guard, and that value is used."""
    ep = _endpoint(client, keys)
    calls: list[int] = []
    real = inputs._parse

    def counting(doc: bytes, **how):
        calls.append(len(doc))
        return real(doc, **how)

    monkeypatch.setattr(inputs, "_parse", counting)
    body = _body([f"p{i}" for i in range(50)])
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body,
                    headers={**keys("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 50, r.text
    assert calls == [], calls
    suspect = json.dumps([{**rec, "weight": 1.0} for rec in json.loads(_body([f"s{i}" for i in range(50)]))])
    suspect_body = suspect.replace('"weight": 1.0', '"weight": 1e+300').encode()
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=suspect_body,
                    headers={**keys("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 50, r.text
    assert calls.count(len(suspect_body)) == 1, calls


def test_bad_record_is_named_and_nothing_stored(client, keys):
    ep = _endpoint(client, keys)
    bad = [record(0, T0, (30, 40.5, "CA"), event_id="ok")]
    bad[0]["eventMetadata"]["inferenceTime"] = "yesterday"
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", json=bad, headers=keys("ingest"))
    assert_problem(r, 422)
    assert "record 0" in r.json()["detail"] and "inferenceTime" in r.json()["detail"]
    r = client.get(f"/api/v1/endpoints/{ep['name']}/capture/summary", headers=keys("viewer"))
    assert r.json()["records"] == 0


def test_capture_needs_the_ingest_role_on_the_read_session(client, keys):
    ep = _endpoint(client, keys)
    body = _body(["x1"])
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body,
                    headers={**keys("viewer"), "Content-Type": "application/json"})
    assert_problem(r, 403)
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body,
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 401)


@pytest.mark.parametrize("line", ["30,40.5,CA", " 30, 40.5 ,CA ", "30,,CA", ",,", "a", '30,"40,5",CA',
                                  '"x""y",1,2', "1,2\r\n", "\t1,2,3\t"])
def test_plain_csv_lines_read_as_the_csv_module_reads_them(line):
    assert capture._csv_fields(line) == capture._csv_values(line)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40).map(lambda b: bytes(b'"[]{}a1\n, 9eE+N'[x % 15] for x in b)))
def test_vectorised_string_strip_equals_the_regex(raw):
    """The body guard's vectorised string stripping (no backslash) and its digit gate decide exactly as the
    regexes they shortcut, on any mix of quotes, brackets, line breaks and digits."""
    assert inputs._strip(raw) == (inputs._STRING.sub(b'""', raw) if b'"' in raw else raw)
    assert inputs._suspect(raw) == (b"\\u0000" in raw or inputs._SUSPECT.search(inputs._strip(raw)) is not None)


def _column_per_value(values: list, ftype: str) -> tuple[str, list]:
    """The per-value rule `_column` vectorises: text if the feature is String or any value is text; int64 if an
    Integral feature's values are all whole numbers that int64 holds; else float64."""
    if ftype == "String" or any(isinstance(v, str) for v in values):
        return "string", [None if v is None else str(v) for v in values]
    if ftype == "Integral" and all(v is None or (math.isfinite(v) and v.is_integer() and abs(v) < 2.0**63)
                                   for v in values):
        return "int64", [None if v is None else int(v) for v in values]
    return "double", values


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Integral", "Fractional", "String"]),
       st.lists(st.one_of(st.none(), st.floats(), st.integers(-2**53, 2**53).map(float), st.sampled_from(
           [0.0, -0.0, 2.0**63, -2.0**63, 9.2e18, 1e300]), st.text(max_size=3)), max_size=8))
def test_capture_columns_are_typed_as_the_per_value_rule_types_them(ftype, values):
    col = endpoints._column(values, ftype)
    kind, expected = _column_per_value(values, ftype)
    assert str(col.type) == kind
    assert repr(col.to_pylist()) == repr(expected)   # repr: NaN equals NaN, -0.0 differs from 0.0


def test_huge_whole_numbers_in_an_integral_feature_are_stored_not_a_500(client, keys, app):
    """1e300 is a whole number no int64 holds: the batch is stored with that feature as float64."""
    ep = _endpoint(client, keys)
    body = json.dumps([record(0, T0, (1e300, 40.5, "CA")), record(1, T0, (-2**70, 1.5, "CA"))]).encode()
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=body,
                    headers={**keys("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    store = app.state.get_store()
    keys_ = [k for k in store.list(f"capture/{ep['name']}") if k.endswith(".parquet")]
    table = pq.read_table(io.BytesIO(store.get(keys_[0])))
    assert str(table.schema.field("age").type) == "double"
    assert table.column("age").to_pylist() == [1e300, float(-2**70)]


def test_requests_arriving_together_are_stored_and_indexed_as_one_group(client, keys, db, app):
    """Requests queued while a group is written are stored as one batch per hour and indexed in one transaction;
    each is answered with its own counts: an event id sent twice is the later request's duplicate, an event id
    already indexed is a duplicate, and a request whose records were all rejected never joins a group."""
    from monitor import group_commit

    ep = _endpoint(client, keys)
    store = app.state.get_store()
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", content=_body(["old"]),
                    headers={**keys("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    bodies = [_body([f"s{i}"]) for i in range(30)] + [_body(["s3", "old", "s30"])]
    with db.session_scope(write=False) as s:
        preps = [monitor.read_capture(s, ep["name"], b, "application/json") for b in bodies]

    async def all_at_once():
        return await asyncio.gather(*(group_commit.commit(db, store, p) for p in preps))

    out = asyncio.run(all_at_once())
    assert [o["accepted"] for o in out] == [1] * 30 + [1]
    assert [o["duplicates"] for o in out] == [0] * 30 + [2]
    with db.session_scope(write=False) as s:
        events = sorted(s.scalars(select(CaptureEvent.event_id)))
        batches = list(s.scalars(select(CaptureBatch).where(CaptureBatch.records > 1)))
    assert events == sorted(["old", *(f"s{i}" for i in range(31))])
    assert len(batches) == 1 and batches[0].records == 31          # one group: one batch, one set of files
    stored = pq.read_table(io.BytesIO(store.get(batches[0].parquet_key))).column("__event_id").to_pylist()
    assert sorted(stored) == sorted(f"s{i}" for i in range(31))


def test_a_failed_group_write_fails_each_of_its_requests_and_indexes_nothing(client, keys, db, app, monkeypatch):
    """Nothing of a group is acknowledged unless all of it is stored and committed; the next group is written."""
    from monitor import group_commit

    ep = _endpoint(client, keys)
    store = app.state.get_store()
    with db.session_scope(write=False) as s:
        preps = [monitor.read_capture(s, ep["name"], _body([f"f{i}"]), "application/json") for i in range(5)]
    real = type(store).put_many
    calls: list[int] = []

    def failing_once(self, items):
        calls.append(len(items))
        if len(calls) == 1:
            raise OSError("disk full")
        real(self, items)

    monkeypatch.setattr(type(store), "put_many", failing_once)

    async def all_at_once():
        return await asyncio.gather(*(group_commit.commit(db, store, p) for p in preps), return_exceptions=True)

    out = asyncio.run(all_at_once())
    assert all(isinstance(o, OSError) for o in out), out
    with db.session_scope(write=False) as s:
        assert list(s.scalars(select(CaptureEvent.event_id))) == []
        preps = [monitor.read_capture(s, ep["name"], _body([f"f{i}"]), "application/json") for i in range(5)]
    out = asyncio.run(all_at_once())       # the retry goes through
    assert [o["accepted"] for o in out] == [1] * 5


def test_stored_jsonl_holds_each_record_as_sent(client, keys, app):
    """SageMaker's capture layout: one JSON object per line, equal to the record sent (non-ASCII text kept as UTF-8,
    numbers as sent), in the order sent."""
    ep = _endpoint(client, keys)
    recs = [record(0, T0, (30, 41.5, "São Paulo")), record(1, T0, (31, 1e-7, "東京"), "JSON"),
            record(2, T0, (2**53, 0.1, "CA"))]
    recs[2]["eventMetadata"]["customAttributes"] = ["a\"b", "ä\\n", 12345678901234]
    r = client.post(f"/api/v1/endpoints/{ep['name']}/capture", json=recs, headers=keys("ingest"))
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    with app.state.db.session_scope(write=False) as s:
        (key,) = s.scalars(select(CaptureBatch.jsonl_key))
    raw = app.state.get_store().get(key)
    lines = raw.decode("utf-8").splitlines()
    assert raw.endswith(b"\n") and [json.loads(x) for x in lines] == recs
    assert "São Paulo" in lines[0] and "\\u" not in lines[0]


def _post(app, keys, name: str, body: bytes, ctypes: list[str]):
    from fastapi.testclient import TestClient

    headers = [("authorization", keys("ingest")["Authorization"]), *(("content-type", t) for t in ctypes)]
    with TestClient(app, raise_server_exceptions=False) as c:
        return c.post(f"/api/v1/endpoints/{name}/capture", content=body, headers=headers)


@pytest.mark.parametrize("value", ["123456789012345678901234567890", "1e400", "[" * 100 + "]" * 100])
@pytest.mark.parametrize("breaker", [b'"', b"]" * 100])
def test_a_broken_json_lines_line_cannot_hide_another_lines_values(client, keys, app, value, breaker):
    """The policy's checks run on a clean JSON Lines body once, as a whole, and then each line is only checked
    well-formed; a broken line (an odd quote, stray closing brackets) would make that whole-body check pair
    quotes or count brackets across lines and miss a wide integer, an overflow or deep nesting in the next line.
    A body with any broken line is screened line by line, as before: the value is refused, nothing stored. (Wrong
    before the fix: 200, the record stored with its 30-digit integer, 1e400 or 101 levels of nesting.)"""
    ep = _endpoint(client, keys)
    line = json.dumps(record(1, T0, (30, 40.5, "CA"), event_id="hidden")).replace("{", '{"k": ' + value + ", ", 1)
    r = _post(app, keys, ep["name"], breaker + b"\n" + line.encode() + b"\n", ["application/x-ndjson"])
    assert r.status_code == 422, r.text   # by the guard (its line check saw it) or with each line's reason
    assert any(w in r.text for w in ("64-bit", "not a JSON number", "nested")), r.text
    assert client.get(f"/api/v1/endpoints/{ep['name']}/capture/summary",
                      headers=keys("viewer")).json()["records"] == 0


def test_the_route_trusts_only_what_the_guard_checked(client, keys, app):
    """The guard reads the last Content-Type, lowercased; the route the first. A body the guard screened as JSON
    Lines (whose lines' syntax it leaves to the route) and the route reads as one array is checked again as a
    document: malformed or not UTF-8 is a 400, never a 500 or a stored record."""
    ep = _endpoint(client, keys)
    good = json.dumps([record(1, T0, (30, 40.5, "CA"), event_id="x1")])
    bad_utf8 = good.replace('"eventVersion"', '"x": "PLACEHOLDER", "eventVersion"').encode().replace(
        b"PLACEHOLDER", b"\xff\xfe")
    for body in (b"[1,", b"[]\n[]", bad_utf8):
        assert_problem(_post(app, keys, ep["name"], body, ["application/json", "application/x-ndjson"]), 400,
                       "not valid JSON")
        r = _post(app, keys, ep["name"], body, ["Application/X-NDJSON"])   # read as JSON Lines by both
        assert r.status_code in (400, 422), r.text
    assert client.get(f"/api/v1/endpoints/{ep['name']}/capture/summary",
                      headers=keys("viewer")).json()["records"] == 0
    r = _post(app, keys, ep["name"], (good[1:-1] + "\n").encode(), ["Application/X-NDJSON"])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_a_run_reads_the_label_files_written_since_its_window_began(tmp_path, monkeypatch):
    """Files of the GroundTruthS3Input folder are read oldest first, only those written since the window's start (a
    label comes after its prediction; older files were read by earlier runs), and one larger than a run reads whole
    is refused naming it."""
    import os

    from mlgov.errors import Invalid
    from mlgov.storage import LocalStore
    from monitor.service import ground_truth

    store = LocalStore(tmp_path / "store")
    start = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
    for name, hours in (("gt/2026/11/20/09/old.jsonl", -1), ("gt/2026/11/20/12/b.jsonl", 2),
                        ("gt/2026/11/20/11/a.jsonl", 1), ("gt-other/x.jsonl", 3)):
        store.put(name, b"{}\n")
        when = (start + dt.timedelta(hours=hours)).timestamp()
        os.utime(store.root / name, (when, when))
    assert ground_truth.label_files(store, "gt", start) == ["gt/2026/11/20/11/a.jsonl", "gt/2026/11/20/12/b.jsonl"]
    monkeypatch.setattr(ground_truth, "LABEL_FILE_MAX", 2)
    with pytest.raises(Invalid, match=r"a\.jsonl holds 3 bytes"):
        ground_truth.read_label_file(None, store, "ep", "gt/2026/11/20/11/a.jsonl")  # type: ignore[arg-type]
