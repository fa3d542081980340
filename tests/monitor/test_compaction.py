"""Compaction of settled capture hours: small batches merged into few files, every record read as before (rows,
order, labels, duplicates), nothing merged twice, and a window read racing it reads the merged batch."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mlgov.app import create_app
from monitor import jobs
from monitor import service as monitor
from monitor.orm import CaptureBatch, CaptureEvent
from monitor.service import compaction, endpoints
from tests.conftest import Keys, make_settings
from tests.monitor.test_api import _endpoint, gt_record, record

T0 = dt.datetime(2026, 11, 20, 10, 5, tzinfo=dt.UTC)
NAME = "churn-prod"
SETTLED_10 = T0 + dt.timedelta(hours=1, minutes=11)   # hour 10 has settled, hour 11 has not


def _send(client, keys, ids: list[str], when: dt.datetime = T0, age: object = None) -> dict:
    recs = [record(i, when + dt.timedelta(seconds=i), (age if age is not None else 30 + i, 40.5, "CA"), event_id=e)
            for i, e in enumerate(ids)]
    for rec, e in zip(recs, ids, strict=True):
        rec["eventMetadata"]["inferenceId"] = f"inf-{e}"
    r = client.post(f"/api/v1/endpoints/{NAME}/capture", json=recs, headers=keys("ingest"))
    assert r.status_code == 200, r.text
    return r.json()


def _hour_batches(db, hour: dt.datetime) -> list[CaptureBatch]:
    with db.session_scope(write=False) as s:
        return list(s.scalars(select(CaptureBatch).where(CaptureBatch.hour == hour)
                              .order_by(CaptureBatch.created_at, CaptureBatch.id)))


def _window(db, store):
    with db.session_scope(write=False) as s:
        ep = monitor.get_endpoint(s, NAME)
        table = monitor.window_table(s, store, ep, T0.replace(minute=0), T0 + dt.timedelta(hours=2), keep_keys=True)
        labelled = monitor.labelled_window(s, store, ep, T0.replace(minute=0), T0 + dt.timedelta(hours=2))
    return table.to_pylist(), labelled


def test_a_settled_hours_small_batches_become_one_and_read_as_before(client, keys, db, app):
    _endpoint(client, keys)
    store = app.state.get_store()
    for i in range(6):
        assert _send(client, keys, [f"a{i}"])["accepted"] == 1
    assert _send(client, keys, ["b0", "b1", "b2"])["accepted"] == 3
    later = T0 + dt.timedelta(hours=1)
    _send(client, keys, ["c0"], later)
    _send(client, keys, ["c1"], later)
    labels = [gt_record("inf-a1", "1"), gt_record("inf-b2", "0"), gt_record("inf-c0", "1")]
    assert client.post(f"/api/v1/endpoints/{NAME}/ground-truth", json=labels, headers=keys("ingest")).status_code == 200
    rows, labelled = _window(db, store)
    old = _hour_batches(db, T0.replace(minute=0))
    assert len(old) == 7
    old_lines = b"".join(store.get(b.jsonl_key) for b in old)

    done = jobs.compact(db, store, SETTLED_10)
    assert (done.merged, done.written, done.records) == (7, 1, 9)
    [merged] = _hour_batches(db, T0.replace(minute=0))
    assert len(_hour_batches(db, later.replace(minute=0))) == 2          # not settled: left alone
    assert (merged.records, merged.first_time, merged.last_time) == (9, T0, T0 + dt.timedelta(seconds=2))
    assert store.get(merged.jsonl_key) == old_lines                      # SageMaker's lines, in capture order
    assert not any(store.exists(k) for b in old for k in (b.jsonl_key, b.parquet_key))
    after_rows, after_labelled = _window(db, store)
    assert after_rows == rows                                             # the same rows in the same order
    assert after_labelled.equals(labelled) and after_labelled["__label"].notna().sum() == 3
    with db.session_scope(write=False) as s:
        pointed = set(s.scalars(select(CaptureEvent.batch_id).where(CaptureEvent.event_id.in_(
            [f"a{i}" for i in range(6)] + ["b0", "b1", "b2"]))))
        assert pointed == {merged.id}
        assert s.scalar(select(func.count()).select_from(CaptureEvent)) == 11
    assert _send(client, keys, ["a3", "b1"])["duplicates"] == 2            # still known after the merge
    assert jobs.compact(db, store, SETTLED_10).merged == 0                # nothing left to merge


def test_runs_stop_at_a_big_batch_and_where_a_columns_type_changes(client, keys, db, app, monkeypatch):
    """A batch at or over COMPACT_BELOW stays and splits the run around it; a batch whose age column is text (a
    non-numeric value was captured) is not merged with numeric ones, so each file's columns mean one thing."""
    monkeypatch.setattr(compaction, "COMPACT_BELOW", 3)
    _endpoint(client, keys)
    store = app.state.get_store()
    _send(client, keys, ["s0"])
    _send(client, keys, ["s1"])
    _send(client, keys, ["big0", "big1", "big2", "big3"])
    _send(client, keys, ["s2"])
    _send(client, keys, ["t0"], age="abc")
    _send(client, keys, ["s3"])
    _send(client, keys, ["s4"])
    before = [pq.read_table(io.BytesIO(store.get(b.parquet_key))).column("__event_id").to_pylist()
              for b in _hour_batches(db, T0.replace(minute=0))]
    assert jobs.compact(db, store, SETTLED_10).merged == 4
    after = [pq.read_table(io.BytesIO(store.get(b.parquet_key))) for b in _hour_batches(db, T0.replace(minute=0))]
    assert [t.column("__event_id").to_pylist() for t in after] == [
        ["s0", "s1"], ["big0", "big1", "big2", "big3"], ["s2"], ["t0"], ["s3", "s4"]]
    assert [e for b in before for e in b] == [e for t in after for e in t.column("__event_id").to_pylist()]
    assert str(after[3].schema.field("age").type) == "string" and str(after[4].schema.field("age").type) == "int64"


def _live_singles(db, tmp_path, prefix: str, n: int, labels: list[dict] | None = None):
    """The endpoint on a committed database, ``n`` single-record batches in hour 10 (and ``labels``); the app's
    store."""
    app = create_app(make_settings(tmp_path), db=db)
    with TestClient(app) as client:
        keys = Keys(db)
        _endpoint(client, keys)
        for i in range(n):
            _send(client, keys, [f"{prefix}{i}"])
        if labels:
            r = client.post(f"/api/v1/endpoints/{NAME}/ground-truth", json=labels, headers=keys("ingest"))
            assert r.status_code == 200, r.text
    return app.state.get_store()


def test_a_window_read_racing_compaction_reads_the_merged_batch(live_db, tmp_path, monkeypatch):
    """The read lists the hour's batches, compaction commits and deletes their files, then the read opens them:
    it lists again (on SQLite after ending its snapshot) and reads the merged batch."""
    store = _live_singles(live_db, tmp_path, "r", 5)
    listed = endpoints.window_batches
    raced: list[int] = []

    def listing_then_compaction(session, ep, start, end):
        got = listed(session, ep, start, end)
        if not raced:
            raced.append(jobs.compact(live_db, store, SETTLED_10).merged)
        return got

    monkeypatch.setattr(endpoints, "window_batches", listing_then_compaction)
    with live_db.session_scope(write=False) as s:
        ep = monitor.get_endpoint(s, NAME)
        table = monitor.window_table(s, store, ep, T0.replace(minute=0), T0 + dt.timedelta(hours=1))
    assert raced == [5]
    assert table is not None and table.column("age").to_pylist() == [30, 30, 30, 30, 30]


def test_the_scheduler_compacts_settled_hours_on_its_own(live_db, tmp_path):
    """`mlgov serve`'s ticker runs a compaction pass when it starts and every COMPACT_EVERY_S after."""
    import time

    store = _live_singles(live_db, tmp_path, "t", 3)
    ticker = jobs.Ticker(live_db, store, make_settings(tmp_path, fake_clock_start=SETTLED_10,
                                                       scheduler_interval_s=0.2))
    ticker.start()
    try:
        deadline = time.monotonic() + 30
        while len(_hour_batches(live_db, T0.replace(minute=0))) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        ticker.stop()
    [merged] = _hour_batches(live_db, T0.replace(minute=0))
    assert merged.records == 3


def test_two_compactions_of_one_hour_merge_it_once(client, keys, db, app):
    """Two processes planned the same hour: the second swap finds its parts gone, drops its merge, and its files
    are among those deleted, so the store holds each record once."""
    _endpoint(client, keys)
    store = app.state.get_store()
    for i in range(4):
        _send(client, keys, [f"d{i}"])
    rows, _ = _window(db, store)
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
        first = compaction.plan_hour(s, store, ep_id, T0.replace(minute=0))
        second = compaction.plan_hour(s, store, ep_id, T0.replace(minute=0))
    with db.session_scope() as s:
        applied = compaction.apply_merges(s, store, ep_id, first)
    with db.session_scope() as s:
        dropped = compaction.apply_merges(s, store, ep_id, second)
    assert (applied.merged, dropped.merged, dropped.written) == (4, 0, 0)
    assert dropped.stale_keys == second[0].new_keys
    for key in applied.stale_keys + dropped.stale_keys:
        store.delete(key)
    [merged] = _hour_batches(db, T0.replace(minute=0))
    folder = merged.parquet_key.rsplit("/", 1)[0]
    assert sorted(store.list(folder + "/")) == sorted([merged.jsonl_key, merged.parquet_key])
    assert _window(db, store)[0] == rows


def test_an_hour_that_cannot_be_merged_is_not_read_again_until_it_changes(client, keys, db, app, monkeypatch):
    monkeypatch.setattr(compaction, "COMPACT_BELOW", 2)
    _endpoint(client, keys)
    store = app.state.get_store()
    _send(client, keys, ["u0"])
    _send(client, keys, ["big0", "big1"])
    _send(client, keys, ["u1"])
    planned: list[dt.datetime] = []
    plan = compaction.plan_hour
    monkeypatch.setattr(compaction, "plan_hour", lambda s, st, e, h: planned.append(h) or plan(s, st, e, h))
    assert jobs.compact(db, store, SETTLED_10).merged == 0
    assert jobs.compact(db, store, SETTLED_10).merged == 0
    assert len(planned) == 1                     # the second pass did not read the hour again
    _send(client, keys, ["u2"])                  # a late record: the hour changed, and now merges
    assert jobs.compact(db, store, SETTLED_10).merged == 2 and len(planned) == 2


def test_labels_of_a_window_compacted_between_its_files_and_its_labels_are_all_found(live_db, tmp_path,
                                                                                     monkeypatch):
    """The window's files are read, then compaction repoints the events and commits, then the labels are looked
    up by the listed batch ids: on PostgreSQL that found none (and no file was missing to say so); the batches'
    absence now sends the read round again. On SQLite the read's snapshot still holds the listed batches."""
    from monitor.service import ground_truth

    store = _live_singles(live_db, tmp_path, "l", 4, [gt_record(f"inf-l{i}", str(i % 2)) for i in range(4)])
    look_up = ground_truth.window_labels
    merged: list[int] = []

    def compaction_then_labels(session, ep, batches):
        if not merged:
            merged.append(jobs.compact(live_db, store, SETTLED_10).merged)
        return look_up(session, ep, batches)

    monkeypatch.setattr(ground_truth, "window_labels", compaction_then_labels)
    with live_db.session_scope(write=False) as s:
        ep = monitor.get_endpoint(s, NAME)
        df = monitor.labelled_window(s, store, ep, T0.replace(minute=0), T0 + dt.timedelta(hours=1))
    assert merged == [4]
    assert df["__label"].tolist() == ["0", "1", "0", "1"]


def test_a_failed_or_overtaken_compaction_leaves_no_extra_files(client, keys, db, app, monkeypatch):
    """Files of merges that are not indexed are deleted: a store failure while reading a later run, another
    process having compacted the hour (its parts' files gone), and a failure indexing the second of two
    merges. A reader of the hour's folder never sees a record in two files for longer than a swap."""
    monkeypatch.setattr(compaction, "COMPACT_BELOW", 2)
    _endpoint(client, keys)
    store = app.state.get_store()
    for ids in (["f0"], ["f1"], ["big0", "big1"], ["f2"], ["f3"]):   # two runs: f0+f1 and f2+f3
        _send(client, keys, ids)
    hour = T0.replace(minute=0)
    batches = _hour_batches(db, hour)
    folder = batches[0].parquet_key.rsplit("/", 1)[0] + "/"
    files = sorted(store.list(folder))
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
    real_get = store.get

    def failing(key, exc):
        def get(k):
            if k == key:
                raise exc
            return real_get(k)
        return get

    monkeypatch.setattr(store, "get", failing(batches[3].parquet_key, RuntimeError("the store went away")))
    with db.session_scope(write=False) as s, pytest.raises(RuntimeError, match="went away"):
        compaction.plan_hour(s, store, ep_id, hour)
    assert sorted(store.list(folder)) == files
    monkeypatch.setattr(store, "get", failing(batches[3].parquet_key, endpoints.NotFound("compacted elsewhere")))
    with db.session_scope(write=False) as s:
        assert compaction.plan_hour(s, store, ep_id, hour) == []
    assert sorted(store.list(folder)) == files
    monkeypatch.setattr(store, "get", real_get)
    applied: list[int] = []
    apply = compaction.apply_merges

    def second_fails(session, store, endpoint_id, merges):
        applied.append(1)
        if len(applied) == 2:
            raise RuntimeError("database went away")
        return apply(session, store, endpoint_id, merges)

    monkeypatch.setattr(compaction, "apply_merges", second_fails)
    with pytest.raises(RuntimeError, match="database went away"):
        jobs.compact(db, store, SETTLED_10)
    after = _hour_batches(db, hour)
    assert [b.records for b in after] == [2, 2, 1, 1]                # f0+f1 merged; f2, f3 as they were
    assert sorted(store.list(folder)) == sorted(k for b in after for k in (b.jsonl_key, b.parquet_key))


def test_files_a_dead_process_left_are_swept_once_old_and_files_about_to_be_indexed_are_not(client, keys, db,
                                                                                             app):
    """A compaction that died between writing its merge and the swap, an ingest that died before indexing, a put
    killed before its rename, and a dead ingest's files in a recent hour with no batch at all: each deleted once
    ORPHAN_AGE old, while files that young (a merge about to be swapped in) stay; indexed files are never touched
    and the hour compacts afterwards.
    Hour 10 is weeks older than the scheduler's lookback: swept because it holds batches (``older_batches``)."""
    import time

    from monitor import layout

    _endpoint(client, keys)
    store = app.state.get_store()
    for i in range(3):
        _send(client, keys, [f"o{i}"])
    hour = T0.replace(minute=0)
    indexed = sorted(k for b in _hour_batches(db, hour) for k in (b.jsonl_key, b.parquet_key))
    folder = indexed[0].rsplit("/", 1)[0]
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
        [died] = compaction.plan_hour(s, store, ep_id, hour)        # written, never swapped in
    store.put_many([(f"{folder}/dead-ingest.jsonl", b"{}\n", "application/jsonl")])
    (store.root / folder / ".tmp-killed").write_bytes(b"half a file")   # a put killed before its rename
    written = dt.datetime.now(dt.UTC)
    empty_hour = layout.capture_folder(NAME, "AllTraffic", written - dt.timedelta(hours=3))   # holds no batch
    store.put_many([(f"{empty_hour}/dead.jsonl", b"{}\n", "application/jsonl")])
    rows, _ = _window(db, store)
    time.sleep(0.01)
    written = dt.datetime.now(dt.UTC)
    young = written + compaction.ORPHAN_AGE - dt.timedelta(minutes=1)
    assert jobs.sweep(db, store, young, older_batches=True) == 0
    assert sorted(store.list(f"{folder}/")) == sorted([*indexed, *died.new_keys, f"{folder}/dead-ingest.jsonl"])
    with db.session_scope(write=False) as s:
        swept = compaction.SweptHour(ep_id, NAME, "AllTraffic", hour)
        assert compaction.orphans(s, store, swept, young + dt.timedelta(minutes=2)) == sorted(
            [*died.new_keys, f"{folder}/dead-ingest.jsonl", f"{folder}/.tmp-killed"])

    assert jobs.sweep(db, store, young + dt.timedelta(minutes=2), older_batches=True) == 5
    assert sorted(store.list(f"{folder}/")) == indexed
    assert not (store.root / folder / ".tmp-killed").exists()
    assert list(store.list(f"{empty_hour}/")) == []
    assert _window(db, store)[0] == rows
    assert jobs.compact(db, store, SETTLED_10).merged == 3
    [merged] = _hour_batches(db, hour)
    assert sorted(store.list(f"{folder}/")) == sorted([merged.jsonl_key, merged.parquet_key])
    assert _window(db, store)[0] == rows


def test_compaction_and_the_sweep_on_s3(tmp_path, db, keys, seaweed):
    """The same on a real S3 server (SeaweedFS): ages from LastModified, a dead merge's and a dead ingest's
    objects deleted, the hour merged after, and the bucket holds exactly the indexed objects."""
    import uuid

    from tests.infra import S3_KEY, S3_SECRET

    bucket = f"sweep{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=bucket)
    settings = make_settings(tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=seaweed.endpoint,
                             s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET)
    app = create_app(settings, db=db)
    with TestClient(app) as client:
        _endpoint(client, keys)
        for i in range(3):
            _send(client, keys, [f"s3-{i}"])
        store = app.state.get_store()
    hour = T0.replace(minute=0)
    folder = _hour_batches(db, hour)[0].parquet_key.rsplit("/", 1)[0]
    rows, _ = _window(db, store)
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
        [died] = compaction.plan_hour(s, store, ep_id, hour)
    store.put(f"{folder}/dead-ingest.jsonl", b"{}\n")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert jobs.sweep(db, store, soon, older_batches=True) == 0
    assert jobs.sweep(db, store, soon + compaction.ORPHAN_AGE, older_batches=True) == 3
    assert not any(store.exists(k) for k in [*died.new_keys, f"{folder}/dead-ingest.jsonl"])
    assert jobs.compact(db, store, SETTLED_10).merged == 3
    [merged] = _hour_batches(db, hour)
    objects = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket, Prefix="mlgov/capture/")["Contents"]]
    assert sorted(objects) == sorted(f"mlgov/{k}" for k in (merged.jsonl_key, merged.parquet_key))
    assert _window(db, store)[0] == rows


def test_an_export_that_compaction_overtakes_copies_the_merged_hour_once(client, keys, db, app, tmp_path,
                                                                         monkeypatch):
    """`mlgov capture export` copies hour by hour; when compaction merges an hour between the listing and a copy,
    the hour's copies so far are removed and the merged batch copied: SageMaker's lines, each once."""
    _endpoint(client, keys)
    store = app.state.get_store()
    for i in range(3):
        _send(client, keys, [f"x{i}"])
    _send(client, keys, ["y0"], T0 + dt.timedelta(hours=1))
    parts = _hour_batches(db, T0.replace(minute=0))
    lines = b"".join(store.get(b.jsonl_key) for b in parts)
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
    real_get = store.get
    overtaken: list[str] = []

    def get(key):
        if key == parts[1].jsonl_key and not overtaken:      # the first part is copied, then the hour merged
            overtaken.append(key)
            assert jobs.compact(db, store, SETTLED_10).merged == 3
        return real_get(key)

    monkeypatch.setattr(store, "get", get)
    out = tmp_path / "export"
    assert jobs.export_capture(db, store, ep_id, out) == jobs.Exported(records=4, files=2, copied=2)
    assert overtaken
    [merged] = _hour_batches(db, T0.replace(minute=0))
    hour_dir = out / NAME / "AllTraffic" / "2026/11/20/10"
    assert [p.name for p in hour_dir.iterdir()] == [f"{merged.id}.jsonl"]
    assert (hour_dir / f"{merged.id}.jsonl").read_bytes() == lines
    assert len(list((out / NAME / "AllTraffic" / "2026/11/20/11").iterdir())) == 1

    monkeypatch.setattr(store, "get", real_get)
    store.delete(merged.jsonl_key)                                    # gone from the store for good
    with pytest.raises(endpoints.PartitionGone):
        jobs.export_capture(db, store, ep_id, tmp_path / "again")
    assert not (tmp_path / "again").exists()                          # nor any folder it made for them


def test_the_scheduler_sweeps_unreferenced_files(live_db, tmp_path):
    """`mlgov serve`'s ticker sweeps when it starts (and every SWEEP_EVERY_S after), judging file ages by the real
    clock, not its own (a fake clock ahead of it must not make in-flight files look old)."""
    import os
    import time

    from monitor import layout

    store = _live_singles(live_db, tmp_path, "w", 1)
    now = dt.datetime.now(dt.UTC)
    folder = layout.capture_folder(NAME, "AllTraffic", now - dt.timedelta(hours=1))
    orphan, young = f"{folder}/dead.jsonl", f"{folder}/in-flight.jsonl"
    store.put(orphan, b"{}\n")
    store.put(young, b"{}\n")
    two_hours_ago = time.time() - 7200
    os.utime(store.root / orphan, (two_hours_ago, two_hours_ago))
    ticker = jobs.Ticker(live_db, store, make_settings(tmp_path, fake_clock_start=now + dt.timedelta(hours=3),
                                                       scheduler_interval_s=0.2))
    ticker.start()
    try:
        deadline = time.monotonic() + 30
        while store.exists(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        ticker.stop()
    assert not store.exists(orphan)
    assert store.exists(young)
    assert [b.records for b in _hour_batches(live_db, T0.replace(minute=0))] == [1]


def test_a_sweep_racing_a_swap_loses_nothing(client, keys, db, app):
    """Both orders of a sweep and a compaction's swap of the same merged files: swept first, the swap finds its
    files gone and drops the merge (its parts stay); swapped first, the sweep, which listed the files as
    unreferenced just before, re-checks under the endpoint's lock and keeps them. Every record stays readable."""
    _endpoint(client, keys)
    store = app.state.get_store()
    for i in range(3):
        _send(client, keys, [f"r{i}"])
    hour = T0.replace(minute=0)
    rows, _ = _window(db, store)
    with db.session_scope(write=False) as s:
        ep_id = monitor.get_endpoint(s, NAME).id
        [planned] = compaction.plan_hour(s, store, ep_id, hour)     # a plan that outlasted ORPHAN_AGE
    later = dt.datetime.now(dt.UTC) + compaction.ORPHAN_AGE + dt.timedelta(minutes=1)
    assert jobs.sweep(db, store, later, older_batches=True) == 2
    with db.session_scope() as s:
        done = compaction.apply_merges(s, store, ep_id, [planned])
    assert (done.merged, done.written, done.stale_keys) == (0, 0, planned.new_keys)
    assert len(_hour_batches(db, hour)) == 3 and _window(db, store)[0] == rows

    with db.session_scope(write=False) as s:
        [planned] = compaction.plan_hour(s, store, ep_id, hour)
        listed = compaction.orphans(s, store, compaction.SweptHour(ep_id, NAME, "AllTraffic", hour), later)
    assert listed == sorted(planned.new_keys)
    with db.session_scope() as s:
        done = compaction.apply_merges(s, store, ep_id, [planned])
    compaction.delete_files(store, done.stale_keys)
    with db.session_scope() as s:
        assert compaction.sweep_orphans(s, store, ep_id, hour, listed) == 0
    [merged] = _hour_batches(db, hour)
    assert merged.id == planned.row["id"] and _window(db, store)[0] == rows


def test_an_ingest_that_waited_past_half_the_orphan_age_checks_its_files(client, keys, db, app):
    """A request stored its files, then waited past ORPHAN_AGE / 2 before indexing, by either clock (a paused
    process: the monotonic one; a suspended host: only the wall clock): if a sweep deleted its files meanwhile it
    is refused (409, nothing indexed) and a resend stores it; if they are there it is indexed as usual."""
    import json

    _endpoint(client, keys)
    store = app.state.get_store()
    late = endpoints.ORPHAN_AGE.total_seconds() / 2 + 1
    for event, swept, (mono, wall) in (("paused", True, (late, 0)), ("suspended", True, (0, late)),
                                       ("kept", False, (late, late))):
        body = json.dumps([record(0, T0, (30, 40.5, "CA"), event_id=event)]).encode()
        with db.session_scope(write=False) as s:
            prep = endpoints.read_capture(s, NAME, body, "application/json")
        endpoints.store_capture(store, prep)
        prep.stored_at = (prep.stored_at[0] - mono, prep.stored_at[1] - wall)
        files = [f"{b.folder}/{b.id}.{x}" for b in prep.batches for x in ("jsonl", "parquet")]
        if swept:
            with db.session_scope() as s:
                assert compaction.sweep_orphans(s, store, prep.endpoint_id, prep.batches[0].hour, files) == 2
            with db.session_scope() as s, pytest.raises(endpoints.Conflict, match="deleted as leftovers"):
                endpoints.index_capture(s, store, prep)
            with db.session_scope(write=False) as s:
                assert s.scalar(select(func.count()).select_from(CaptureEvent)
                                .where(CaptureEvent.event_id == event)) == 0
            assert _send(client, keys, [event])["accepted"] == 1          # the resend is stored
        else:
            with db.session_scope() as s:
                assert endpoints.index_capture(s, store, prep) == {event}
            assert all(store.exists(k) for k in files)
            assert _send(client, keys, [event])["duplicates"] == 1


def test_first_alive_names_one_live_scheduler_instance(db):
    from mlgov import workers

    now = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    with db.session_scope() as s:
        assert workers.first_alive(s, workers.SCHEDULER, now) is None
        workers.beat(s, workers.SCHEDULER, "b-instance", 1.0, now=now)
        workers.beat(s, workers.SCHEDULER, "a-instance", 1.0, now=now - dt.timedelta(minutes=5))   # silent
        workers.beat(s, workers.SCHEDULER, "c-instance", 1.0, now=now)
        assert workers.first_alive(s, workers.SCHEDULER, now) == "b-instance"
        workers.beat(s, workers.SCHEDULER, "b-instance", 1.0, stopped=True, now=now)
        assert workers.first_alive(s, workers.SCHEDULER, now) == "c-instance"
