"""The kernel's query, lock and session helpers (mlgov.db) that every domain's services use."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from mlgov import auth
from mlgov.auth import ApiKey
from mlgov.db import (
    Database,
    advisory_lock_key,
    advisory_xact_lock,
    busy_reason,
    chunks,
    equal,
    icontains,
    in_window,
    keys_present,
    like,
    like_matches,
    new_id,
    paginate,
    per_backend,
    present_keys,
)
from tests.infra import TransactionalDatabase


def test_chunks_cover_every_value_in_slices_of_at_most_the_size():
    values = list(range(1201))
    parts = list(chunks(values))
    assert [len(p) for p in parts] == [500, 500, 201]
    assert [v for p in parts for v in p] == values
    assert list(chunks([], 3)) == []
    assert [list(p) for p in chunks("abcde", 2)] == [["a", "b"], ["c", "d"], ["e"]]


def test_a_named_advisory_lock_key_is_stable_and_fits_in_a_bigint():
    key = advisory_lock_key("endpoint-id")
    assert key == int.from_bytes(hashlib.sha256(b"endpoint-id").digest()[:7], "big")
    assert 0 <= key < 2**56
    assert advisory_lock_key("other") != key


def test_paginate_applies_only_the_filters_that_were_given(db: TransactionalDatabase):
    with db.session_scope() as s:
        for name, role in (("Filter-Alpha", "publisher"), ("filter-beta", "viewer"), ("filter-gamma", "publisher"),
                           ("unrelated", "publisher")):
            auth.create_key(s, name, role, actor="test")
        rows, total = paginate(s, select(ApiKey), ApiKey.name, limit=10, offset=0, where=[
            icontains(ApiKey.name, "FILTER-"), *equal((ApiKey.role, "publisher"), (ApiKey.owner, None)), None])
        assert (total, [r.name for r in rows]) == (2, ["Filter-Alpha", "filter-gamma"])

        mine = select(ApiKey).where(ApiKey.name.in_(["filter-beta", "filter-gamma", "unrelated"]))
        rows, total = paginate(s, mine, ApiKey.name, limit=1, offset=1,
                               where=[icontains(ApiKey.name, ""), *equal((ApiKey.role, ""))])   # empty: no filter
        assert total == 3 and [r.name for r in rows] == ["filter-gamma"]
        assert icontains(ApiKey.name, None) is None
        assert icontains(ApiKey.name, "50%") is not None


def test_per_backend_membership_finds_the_same_rows_with_one_array_parameter_on_postgres(
        db: TransactionalDatabase):
    """PostgreSQL gets the ids as one array parameter (psycopg re-parses statements of more than 50 parameters on
    every execution); SQLite an IN list. Both find exactly the listed rows, also when an id is listed twice or none
    exists."""
    stmt = per_backend(lambda ids_in: select(ApiKey.name).where(ids_in(ApiKey.id)).order_by(ApiKey.name))
    with db.session_scope() as s:
        keys = [auth.create_key(s, f"member-{i:03d}", "viewer", actor="test")[0] for i in range(120)]
        conn = s.connection()
        mine = stmt[conn.dialect.name]
        ids = [k.id for k in keys[::2]] + [keys[0].id, "no-such-key"]
        assert conn.execute(mine, {"ids": ids}).scalars().all() == [f"member-{i:03d}" for i in range(0, 120, 2)]
        assert conn.execute(mine, {"ids": ["no-such-key"]}).scalars().all() == []
        assert conn.execute(mine, {"ids": []}).scalars().all() == []
        compiled = mine.compile(conn)
        if conn.dialect.name == "postgresql":
            assert "ANY" in str(compiled) and list(compiled.params) == ["ids"]


def test_present_keys_finds_exactly_the_listed_keys_within_the_scope(db: TransactionalDatabase):
    """Only the listed keys of rows in the bound scope, each once, also when listed twice, absent, non-ASCII or more
    than a chunk; on PostgreSQL the ids travel as one JSON parameter, still checked id by id (a NUL, which the JSON
    would carry escaped and PostgreSQL refuse, is a 422 there)."""
    from mlgov.errors import Invalid

    stmts = present_keys(ApiKey.name, ApiKey.role)
    with db.session_scope() as s:
        for i in range(30):
            auth.create_key(s, f"present-{i:02d}", "viewer" if i % 3 else "publisher", actor="test")
        listed = [f"present-{i:02d}" for i in range(0, 30, 2)] + ["present-00", "absent"]
        listed += [f"x{i}" for i in range(600)]   # more than a chunk
        assert keys_present(s, stmts, "viewer", listed) == {f"present-{i:02d}" for i in range(0, 30, 2) if i % 3}
        assert keys_present(s, stmts, "publisher", listed) == {f"present-{i:02d}" for i in range(0, 30, 6)}
        assert keys_present(s, stmts, "viewer", []) == set()
        assert keys_present(s, stmts, "no-such-role", listed) == set()
        auth.create_key(s, "présent-\"é\\", "viewer", actor="test")
        assert keys_present(s, stmts, "viewer", ["présent-\"é\\", "présent"]) == {"présent-\"é\\"}
        if s.get_bind().dialect.name == "postgresql":   # SQLite compares text with NUL as any other
            with pytest.raises(Invalid, match="ids contains a NUL"):
                keys_present(s, stmts, "viewer", ["present-01", "a\x00b"])
        if s.get_bind().dialect.name == "postgresql":
            compiled = stmts["postgresql"].compile(s.connection())
            assert "LATERAL" in str(compiled) and sorted(compiled.params) == ["ids", "scope"]


def test_like_is_the_same_case_sensitive_pattern_on_both_backends_and_in_python(db: TransactionalDatabase):
    """SQLite's LIKE ignores ASCII case and knows no escape, so there it runs as a GLOB: ``%``/``_`` are the only
    wildcards, a backslash makes the next character itself (PostgreSQL's default), a trailing one is itself."""
    names = ["fraud_model", "fraudXmodel", "Fraud_model", "a*b", "a?b", "a[b]", "50% off", "back\\slash", "tab\tx",
             "new\nline"]
    patterns = {"fraud_model": ["fraudXmodel", "fraud_model"], "fraud\\_model": ["fraud_model"],
                "FRAUD%": [], "%*%": ["a*b"], "a?b": ["a?b"], "a_b": ["a*b", "a?b"], "a[b]": ["a[b]"],
                "%[%": ["a[b]"], "50\\% %": ["50% off"], "50%": ["50% off"], "back\\\\%": ["back\\slash"],
                "back\\": [], "%\\": [], "\\b%": ["back\\slash"], "%_x": ["tab\tx"], "new_line": ["new\nline"],
                "new%": ["new\nline"], "": [],
                "%" * 200 + "x": ["tab\tx"], "%_" * 200 + "q": []}   # linear in Python: a regex backtracks
    with db.session_scope() as s:   # rows written directly: key names refuse control characters since 390dd95
        rows = [ApiKey(id=new_id(), key_id=f"k{i:011d}", name=name, role="viewer", key_hash="0" * 64, active=True,
                       owner=name, created_by="test") for i, name in enumerate(names)]
        s.add_all(rows)
        s.flush()
        ids = [r.id for r in rows]
        for pattern, expected in patterns.items():
            found = sorted(s.scalars(select(ApiKey.name).where(ApiKey.id.in_(ids), like(ApiKey.name, pattern))))
            assert found == sorted(expected), (pattern, found)
            assert sorted(n for n in names if like_matches(n, pattern)) == sorted(expected), pattern
        assert like_matches("Fraud_model", "fraud%", ignore_case=True) and not like_matches("Fraud_model", "fraud%")


def test_in_window_is_half_open_and_skips_missing_bounds(db: TransactionalDatabase):
    with db.session_scope() as s:
        row, _ = auth.create_key(s, "windowed", "viewer", actor="test")
        at = row.created_at
        second = dt.timedelta(seconds=1)

        def count(after: dt.datetime | None, before: dt.datetime | None) -> int:
            return paginate(s, select(ApiKey).where(ApiKey.id == row.id), ApiKey.id, limit=1, offset=0,
                            where=in_window(ApiKey.created_at, after, before))[1]

        assert in_window(ApiKey.created_at, None, None) == [None, None]
        assert count(None, None) == 1
        assert count(at, at + second) == 1
        assert count(at - second, at) == 0          # the upper bound is exclusive
        assert count(at + second, None) == 0


def test_advisory_xact_lock_holds_until_the_transaction_ends(migrated: Database):
    if migrated.backend != "postgresql":
        pytest.skip("advisory locks exist on PostgreSQL only (SQLite has one writer at a time)")
    holder, other = migrated.session(), migrated.session()
    try:
        try_lock = text("SELECT pg_try_advisory_xact_lock(:k)")
        advisory_xact_lock(holder, "test-advisory-lock")
        assert other.scalar(try_lock, {"k": advisory_lock_key("test-advisory-lock")}) is False
        assert other.scalar(try_lock, {"k": advisory_lock_key("another-name")}) is True
        other.rollback()
        holder.rollback()
        assert other.scalar(try_lock, {"k": advisory_lock_key("test-advisory-lock")}) is True
    finally:
        other.close()
        holder.close()


def test_read_sessions_never_write_and_hold_no_transaction(migrated: Database):
    """Read sessions: SQLite's connections refuse writes (a service writing in one fails here, loudly); PostgreSQL's
    run in autocommit, so no BEGIN/COMMIT round trips and no transaction (nor its locks) between statements."""
    read = migrated.session(write=False)
    try:
        assert read.scalar(select(auth.KeyEpoch.epoch).where(auth.KeyEpoch.id == 1)) is not None
        raw = read.connection().connection.driver_connection
        if migrated.backend == "sqlite":
            with pytest.raises(DBAPIError, match="readonly"):
                read.execute(text("UPDATE auth_key_epoch SET epoch = epoch + 1"))
        else:
            import psycopg

            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            advisory_xact_lock(read, "read-session-lock")   # a transaction-scoped lock ends with its statement
            other = migrated.session()
            try:
                key = advisory_lock_key("read-session-lock")
                assert other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}) is True
            finally:
                other.close()
    finally:
        read.close()
    write = migrated.session()
    try:   # write sessions keep their transaction
        write.scalar(select(auth.KeyEpoch.epoch).where(auth.KeyEpoch.id == 1))
        if migrated.backend == "postgresql":
            import psycopg

            status = write.connection().connection.driver_connection.info.transaction_status
            assert status == psycopg.pq.TransactionStatus.INTRANS
    finally:
        write.close()


def test_idle_pooled_connections_are_pinged_and_dead_ones_replaced(migrated: Database, monkeypatch):
    """A connection the server dropped while it sat in the pool (restart, idle cut) is found by a ping and replaced
    before a request gets it; a connection checked in moments ago is handed out without a ping (a round trip per
    request saved)."""
    if migrated.backend != "postgresql":
        pytest.skip("SQLite connections are files, not sockets: nothing to ping")
    from mlgov import db as dbmod

    engine = dbmod.make_engine(migrated.url)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    killer = dbmod.make_engine(migrated.url, pooled=False)
    try:
        with engine.connect() as c:
            first = c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as c:       # busy: checked in moments ago, handed out as it is
            assert c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == first
        assert pings == []
        with killer.connect() as k:
            assert k.exec_driver_sql(f"SELECT pg_terminate_backend({first})").scalar_one() is True
        monkeypatch.setattr(dbmod, "PING_IDLE_S", 0.0)     # as if it had sat idle past the threshold
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != first
        assert pings == [1]
        # dropped while busy (no ping): that request fails as retryable (503), the pool reconnects for the next
        with engine.connect() as c:
            second = c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with killer.connect() as k:
            k.exec_driver_sql(f"SELECT pg_terminate_backend({second})")
        monkeypatch.setattr(dbmod, "PING_IDLE_S", 3600.0)
        with pytest.raises(DBAPIError) as lost, engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        assert "connection to the database was lost" in (busy_reason(lost.value) or "")
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
        killer.dispose()


def test_sqlite_writer_takes_the_lock_as_soon_as_another_process_lets_go(tmp_path, monkeypatch):
    """Another process (here: a plain sqlite3 connection) holds the write lock for 0.45 s: the write waits for it,
    retrying every few milliseconds, and starts after its release (SQLite's own busy handler slept up to 100 ms at
    a time, which let a busier process keep the lock for seconds); held past the busy timeout, the write fails as
    retryable (503). The waits asked for are checked, not the wall clock (a loaded CI machine took 0.19 s to
    schedule the thread after the release)."""
    import sqlite3
    import threading
    import time
    import types

    from mlgov import db as mlgov_db
    from mlgov.db import DbLimits
    from tests.infra import upgrade

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(mlgov_db, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))

    path = tmp_path / "lock.db"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}", limits=DbLimits(busy_timeout_s=2.0))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    released: list[float] = []

    def release_after(seconds: float) -> None:
        time.sleep(seconds)
        released.append(time.monotonic())
        other.execute("ROLLBACK")

    try:
        other.execute("BEGIN IMMEDIATE")
        threading.Thread(target=release_after, args=(0.45,)).start()
        with db.session_scope() as s:
            auth.create_key(s, "after-the-lock", "viewer", actor="test")
            started = time.monotonic()
        assert released and started > released[0]
        assert len(waits) > 10 and max(waits) <= 0.003, (len(waits), max(waits, default=None))
        with db.session_scope(write=False) as s:
            assert s.scalar(select(ApiKey.name).where(ApiKey.name == "after-the-lock")) == "after-the-lock"

        short = Database(f"sqlite:///{path}", limits=DbLimits(busy_timeout_s=0.2))
        other.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(DBAPIError) as busy, short.session_scope() as s:
            auth.create_key(s, "never", "viewer", actor="test")
        assert time.monotonic() - began >= 0.2 and max(waits) <= 0.003   # waited out the timeout, in short steps
        assert busy_reason(busy.value) == "another writer held the SQLite database past the busy timeout"
        other.execute("ROLLBACK")
        short.dispose()
    finally:
        other.close()
        db.dispose()


def test_postgresql_transactions_are_read_committed_whatever_the_server_default(live_db: Database):
    """The capture sweep's and compaction's checks after an advisory lock must see what the lock's previous holder
    committed; a REPEATABLE READ default would take their snapshot before the lock's wait."""
    if live_db.backend != "postgresql":
        pytest.skip("PostgreSQL only")
    with live_db.session_scope() as s:
        name = s.scalar(text("SELECT current_database()"))
    live_db.dispose()
    admin = Database(str(live_db.write_engine.url.set(database="postgres")))
    try:
        with admin.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'")
    finally:
        admin.dispose()
    fresh = Database(str(live_db.write_engine.url))
    try:
        raw = fresh.write_engine.raw_connection()   # the server's default reaches a connection made without ours
        with raw.cursor() as cur:
            cur.execute("SHOW default_transaction_isolation")
            assert cur.fetchone()[0] == "repeatable read"
        raw.close()
        with fresh.session_scope() as s:
            assert s.scalar(text("SHOW transaction_isolation")) == "read committed"
    finally:
        fresh.dispose()


def test_requests_end_read_sessions_on_the_event_loop_and_write_sessions_in_a_worker_thread(client, keys,
                                                                                            monkeypatch):
    """Ending a read session cannot wait (`Database.reads_end_inline`), so a GET spends no worker thread on it;
    a write session's commit can (fsync, the write lock), so it gets one."""
    import threading

    ended: list[str] = []
    real = auth.finish

    def finish(session, *, commit):
        ended.append(threading.current_thread().name)
        real(session, commit=commit)

    monkeypatch.setattr(auth, "finish", finish)
    assert client.get("/api/v1/model-groups", headers=keys("viewer")).status_code == 200
    assert client.post("/api/v1/model-groups", json={"name": "threads"}, headers=keys("publisher")).status_code == 201
    assert len(ended) == 2
    assert "AnyIO worker thread" not in ended[0]
    assert "AnyIO worker thread" in ended[1]


def test_ending_a_sqlite_read_takes_no_lock_another_process_holds(tmp_path):
    """Requests end read sessions on the event loop (`Database.reads_end_inline`), which is only safe if that never
    waits: with no busy timeout at all, a read and its commit, rollback and close succeed while another process
    holds SQLite's exclusive write lock with uncommitted rows (and read the committed state)."""
    import sqlite3

    from mlgov.db import DbLimits, finish

    path = tmp_path / "read.db"
    db = Database(f"sqlite:///{path}", limits=DbLimits(busy_timeout_s=0.0))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        assert db.reads_end_inline
        with db.session_scope() as s:
            s.connection().exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            s.connection().exec_driver_sql("INSERT INTO t (id) VALUES (1)")
        other.execute("PRAGMA busy_timeout=0")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO t (id) VALUES (2)")
        for commit in (True, False):
            s = db.session(write=False)
            assert s.connection().exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
            finish(s, commit=commit)
        with pytest.raises(DBAPIError), db.session_scope() as s:   # a write does wait for it (and gives up at 0 s)
            s.connection().exec_driver_sql("INSERT INTO t (id) VALUES (3)")
        other.execute("COMMIT")
    finally:
        other.close()
        db.dispose()


def test_sqlite_commits_do_not_checkpoint_the_wal_every_thousand_pages(tmp_path):
    """A commit that takes the WAL past SQLite's default 1,000 pages does not checkpoint it on the spot (capture's
    random eventIds dirty a page per record, so that was every second batch): frames keep accumulating up to
    WAL_CHECKPOINT_PAGES, and the WAL file is cut back to WAL_KEEP_BYTES when it restarts."""
    import sqlite3

    from mlgov.db import WAL_CHECKPOINT_PAGES, WAL_KEEP_BYTES

    path = tmp_path / "wal.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.session_scope() as s:
            s.connection().exec_driver_sql("CREATE TABLE pages (id INTEGER PRIMARY KEY, body BLOB)")
        with db.session_scope() as s:   # ~1,500 pages in one commit
            s.connection().exec_driver_sql("INSERT INTO pages (body) SELECT randomblob(3000) FROM "
                                           "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                           "WHERE i < 1500) SELECT i FROM n)")
        with db.session_scope() as s:   # a small write after it: a checkpointed WAL would restart from frame 1
            s.connection().exec_driver_sql("INSERT INTO pages (body) VALUES (x'00')")
            limit = s.connection().exec_driver_sql("PRAGMA journal_size_limit").scalar_one()
        probe = sqlite3.connect(path)
        busy, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0 and 1500 < frames < WAL_CHECKPOINT_PAGES, frames
        assert limit == WAL_KEEP_BYTES
    finally:
        db.dispose()


def test_advisory_xact_lock_takes_the_write_lock_on_sqlite(tmp_path):
    """SQLite has one writer at a time: the lock call itself takes it (BEGIN IMMEDIATE), so a check made after it
    is made under the lock (the capture sweep and a slow ingest rely on that), not only statements after the
    first write."""
    import sqlite3

    path = tmp_path / "lock.db"
    db = Database(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        with db.session_scope() as s:
            s.connection().exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        other.execute("PRAGMA busy_timeout=0")
        with db.session_scope() as s:
            advisory_xact_lock(s, "anything")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            advisory_xact_lock(s, 42)   # taken again in the same transaction: nothing more to take
        other.execute("BEGIN IMMEDIATE")   # released at the commit
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()


def test_array_parameters_are_checked_value_by_value(migrated: Database):
    """An array bound as one parameter (PostgreSQL's ``= ANY``) is checked like an IN list: each value against the
    array's item type, so a NUL still gets a 422 naming the parameter, and a lookup has no length check."""
    from sqlalchemy import String, bindparam, literal
    from sqlalchemy.dialects.postgresql import ARRAY

    from mlgov.errors import Invalid

    if migrated.backend != "postgresql":
        pytest.skip("array parameters exist on PostgreSQL only")
    lookup = select(literal(1)).where(bindparam("names", type_=ARRAY(String(8))).is_not(None))
    with migrated.session_scope(write=False) as s:
        assert s.scalar(lookup, {"names": ["ok", None, "much longer than 8"]}) == 1   # lookups: no length check
        with pytest.raises(Invalid, match="names contains a NUL"):
            s.scalar(lookup, {"names": ["ok", "a\x00b"]})


def test_bulk_rows_insert_stores_each_value_exactly_and_checks_it_first(migrated: Database):
    """`BulkRows` (the capture index's insert) bypasses SQLAlchemy's per-row binding on both backends (one JSON
    parameter on PostgreSQL, the driver's executemany on SQLite), so the bind check cannot see the values: it checks
    every one itself, and a NUL or an over-long id is a 422 naming the column (PostgreSQL's CAST to VARCHAR(n) would
    silently cut it, SQLite would store it) with nothing written. What it stores reads back exactly, as the ORM
    wrote it (datetimes through the column type: microseconds, UTC), NULLs and non-ASCII text included; a unique
    violation is SQLAlchemy's IntegrityError, as the capture race path expects."""
    from sqlalchemy import String, delete, func
    from sqlalchemy.exc import IntegrityError

    from mlgov.db import is_unique_violation, new_id, utcnow
    from mlgov.errors import Invalid
    from monitor.orm import CaptureBatch, CaptureEvent, Endpoint
    from monitor.service.endpoints import _EVENT_COLUMNS, _EVENT_ROWS

    ep, batch, now = new_id(), new_id(), utcnow()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    whole = when.replace(microsecond=0)   # SageMaker's inferenceTime is whole seconds: stored with ".000000" too
    elsewhere = when.astimezone(dt.timezone(dt.timedelta(hours=2)))   # the same instant as ``when``
    rows = [(f"{batch[:24]}{i:08x}", eid, inf, t, batch)
            for i, (eid, inf, t) in enumerate([("ev-é-1", None, when), ("x" * 128, "inf-2", whole),
                                               ("ev,\"3\"", "i" * 64, when + dt.timedelta(microseconds=2)),
                                               ("ev-4", None, elsewhere), ("ev-5", "inf-5", whole)])]
    table = CaptureEvent.__table__
    try:
        with migrated.session_scope() as s:
            s.add(Endpoint(id=ep, name=f"bulk-rows-{ep[:8]}", model_group="g", model_version=1, variant="v",
                           sampling_percentage=100.0, schema={}, created_by="t", created_at=now, updated_at=now))
            s.flush()
            s.add(CaptureBatch(id=batch, endpoint_id=ep, hour=now, jsonl_key="j", parquet_key="p", records=3,
                               first_time=when, last_time=when, created_at=now))
            s.flush()
            for bad, what in (("a\x00b", "event_id contains a NUL"), ("x" * 129, "event_id is 129 characters long")):
                with pytest.raises(Invalid, match=what):
                    _EVENT_ROWS.execute(s, [rows[0], (*rows[1][:1], bad, *rows[1][2:])], endpoint_id=ep)
            with pytest.raises(Invalid, match="endpoint_id contains a NUL"):
                _EVENT_ROWS.execute(s, rows, endpoint_id="e\x00")
            assert s.scalar(select(func.count()).select_from(table).where(table.c.endpoint_id == ep)) == 0
            _EVENT_ROWS.execute(s, rows, endpoint_id=ep)
            s.add(CaptureBatch(id=new_id(), endpoint_id=ep, hour=now, jsonl_key="j", parquet_key="p", records=0,
                               first_time=when, last_time=whole, created_at=now))   # the same times, by the ORM
            with pytest.raises(IntegrityError) as raised, s.begin_nested():
                _EVENT_ROWS.execute(s, [(f"{batch[:24]}{9:08x}", *rows[1][1:])], endpoint_id=ep)   # same event id
            assert is_unique_violation(raised.value)
        with migrated.session_scope(write=False) as s:
            got = s.execute(select(*(table.c[c] for c in _EVENT_COLUMNS))
                            .where(table.c.endpoint_id == ep).order_by(table.c.id)).all()
            stored = s.scalars(select(table.c.inference_time.cast(String)).where(table.c.endpoint_id == ep)
                               .order_by(table.c.id)).all()
            by_orm = s.execute(select(CaptureBatch.first_time.cast(String), CaptureBatch.last_time.cast(String))
                               .where(CaptureBatch.records == 0, CaptureBatch.endpoint_id == ep)).one()
            # equality and ranges on the stored column find the rows (on SQLite they compare the stored text)
            assert sorted(s.scalars(select(table.c.event_id).where(table.c.inference_time == whole))) == ["ev-5",
                                                                                                        "x" * 128]
        assert [tuple(r) for r in got] == rows
        assert stored[:2] == list(by_orm)   # the ORM's stored form (SQLite: text), microseconds and whole seconds
        assert stored[3:] == stored[:2]     # a time met again (converted once per batch), or in another zone
    finally:
        with migrated.session_scope() as s:
            s.execute(delete(Endpoint).where(Endpoint.id == ep))


def test_json_columns_read_back_as_the_standard_parser_reads_them(migrated: Database):
    """The engines read JSON columns with pydantic-core's parser (`json_loads`): the same values as ``json.loads``
    for what the standard parser accepts (NaN, integers past 64 bits, duplicate keys, non-ASCII, exponents), and a
    lone surrogate escape, which pydantic-core refuses, still reads (the standard parser takes over). Through a real
    JSON column on each backend."""
    import json

    from sqlalchemy import JSON, cast, func, literal, type_coerce

    from mlgov.db import json_loads

    docs = ['{"a": 1, "a": 2}', "[NaN, 1e400, -0.0, 5e-324]", "123456789012345678901234567890",
            '{"k\\u00e9": ["\\u20ac", null, true, 0.1]}', '"\\ud800"', "[[[]]]"]
    for doc in docs:
        want, got = json.loads(doc), json_loads(doc)
        assert json.dumps(got) == json.dumps(want), doc
        assert json.dumps(json_loads(doc.encode())) == json.dumps(want), doc
    assert migrated.engine.dialect._json_deserializer is json_loads   # the engines read JSON with it
    with migrated.session_scope(write=False) as s:
        for doc in ('{"a": [1, 2.5, "x\\u00e9"]}', '{"big": 123456789012345678901234567890}'):
            column = (cast(literal(doc), JSON) if migrated.backend == "postgresql"
                      else type_coerce(func.json(literal(doc)), JSON))   # SQLite: JSON is text the engine decodes
            assert s.scalar(select(column)) == json.loads(doc), doc
