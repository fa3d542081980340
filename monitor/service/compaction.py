"""Compaction of captured hours: an hour's small batches merged into few files.

Group commit stores whatever arrived together as one JSONL + Parquet batch, so single-record traffic leaves a
pair of files per group (hundreds a second under load) and a window read opens every one of them (a GET each
on S3). Once an hour has settled (no group commit writes to it any more, unless a late record arrives) its small
batches are merged in capture order into batches of up to COMPACT_TARGET records: the JSONL files concatenated
(each is whole lines, SageMaker's layout stays), the Parquet tables concatenated, the event index repointed,
the old batch rows deleted. The files are read and written first, with no lock held; then one transaction
per merged batch, under the endpoint's lock, swaps the rows (ingest waits while it repoints up to
COMPACT_TARGET event rows), and the old files are deleted only after it commits. A crash leaves at most
unreferenced files, never a record lost or stored twice in the index. A window read that listed an old batch
just before the commit finds it gone and lists the window again (`endpoints.reread_if_compacted`, on the local
and the Dask paths; `mlgov capture export` does not).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import posixpath
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from mlgov.db import advisory_xact_lock, chunks, new_id
from mlgov.errors import NotFound
from mlgov.storage import ObjectStore
from monitor.orm import CaptureBatch, CaptureEvent
from monitor.service.endpoints import batches_present

log = logging.getLogger(__name__)

COMPACT_BELOW = 10_000
"""Records: a batch smaller than this is merged with its hour's other small batches."""
COMPACT_TARGET = 50_000
"""Records per merged batch at most: the swap repoints this many event rows while the endpoint's ingest (on
SQLite every write) waits, and 50,000-record files already make a busy hour a few dozen reads."""
COMPACT_MAX_PARTS = 2_000
"""Batches per merged batch at most: bounds the rows the swap transaction rewrites while ingest waits."""
SETTLE = dt.timedelta(minutes=10)
"""An hour is compacted once it ended this long ago: group commits of live traffic have moved on."""


@dataclasses.dataclass
class Compacted:
    """One hour's compaction: the batches merged, the batches written, the records they hold, and the files to
    delete once the transaction committed."""

    merged: int = 0
    written: int = 0
    records: int = 0
    stale_keys: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: Compacted) -> None:
        """Count ``other`` in (its files are the caller's to delete)."""
        self.merged, self.written, self.records = (self.merged + other.merged, self.written + other.written,
                                                   self.records + other.records)


def settled_hours(session: Session, now: dt.datetime, *, since: dt.datetime | None = None,
                  endpoint_id: str | None = None) -> list[tuple[str, dt.datetime, int]]:
    """(endpoint id, hour, small batches) of the settled hours from ``since`` on that hold two or more small
    batches, newest first."""
    stmt = (select(CaptureBatch.endpoint_id, CaptureBatch.hour, func.count())
            .where(CaptureBatch.records < COMPACT_BELOW, CaptureBatch.hour < now - dt.timedelta(hours=1) - SETTLE)
            .group_by(CaptureBatch.endpoint_id, CaptureBatch.hour).having(func.count() > 1)
            .order_by(CaptureBatch.hour.desc()))
    if since is not None:
        stmt = stmt.where(CaptureBatch.hour >= since)
    if endpoint_id is not None:
        stmt = stmt.where(CaptureBatch.endpoint_id == endpoint_id)
    return [(e, h, n) for e, h, n in session.execute(stmt)]


def _runs(batches: Sequence[CaptureBatch]) -> list[list[CaptureBatch]]:
    """Runs of consecutive small batches (in capture order, so a merged batch sorts where its parts did) of one
    folder (the endpoint's variant at capture time), up to COMPACT_TARGET records and COMPACT_MAX_PARTS batches a
    run; a run of one batch is left as it is."""
    runs: list[list[CaptureBatch]] = []
    last: list[CaptureBatch] | None = None
    total = 0
    for b in batches:
        if b.records >= COMPACT_BELOW:
            last = None
            continue
        if (last and len(last) < COMPACT_MAX_PARTS and total + b.records <= COMPACT_TARGET
                and posixpath.dirname(last[0].parquet_key) == posixpath.dirname(b.parquet_key)):
            last.append(b)
            total += b.records
        else:
            last, total = [b], b.records
            runs.append(last)
    return [r for r in runs if len(r) > 1]


def _by_schema(run: list[CaptureBatch], tables: list[pa.Table]) -> list[tuple[list[CaptureBatch], list[pa.Table]]]:
    """A run split where the Parquet schema changes (a text value in a numeric column, a changed endpoint
    schema): each part is one file whose columns mean one thing, as each batch's did."""
    parts: list[tuple[list[CaptureBatch], list[pa.Table]]] = []
    for b, t in zip(run, tables, strict=True):
        if parts and parts[-1][1][0].schema.equals(t.schema):
            parts[-1][0].append(b)
            parts[-1][1].append(t)
        else:
            parts.append(([b], [t]))
    return [p for p in parts if len(p[0]) > 1]


@dataclasses.dataclass
class Merge:
    """A merged batch whose files are stored and whose row is not written yet: the row's values and its parts."""

    row: dict[str, Any]
    parts: list[str]
    stale_keys: list[str]

    @property
    def new_keys(self) -> list[str]:
        return [self.row["jsonl_key"], self.row["parquet_key"]]


def plan_hour(session: Session, store: ObjectStore, endpoint_id: str, hour: dt.datetime) -> list[Merge]:
    """Read the hour's small batches and store their merged files (see the module), on a read session: the
    slow part holds no lock and no write turn. `apply_merges` then indexes them briefly."""
    batches = list(session.scalars(select(CaptureBatch).where(
        CaptureBatch.endpoint_id == endpoint_id, CaptureBatch.hour == hour)
        .order_by(CaptureBatch.created_at, CaptureBatch.id)))
    merges: list[Merge] = []
    try:
        for run in _runs(batches):
            tables = [pq.read_table(io.BytesIO(store.get(b.parquet_key))) for b in run]
            merges += [_write_merged(store, part, part_tables) for part, part_tables in _by_schema(run, tables)]
    except NotFound:   # another process compacted the hour since the listing: nothing left to do here
        discard(store, merges)
        return []
    except BaseException:
        discard(store, merges)
        raise
    return merges


def discard(store: ObjectStore, merges: Sequence[Merge]) -> None:
    """Delete the files of merges that will not be indexed: left in the hour's folder, a reader of the folder
    (a retraining pipeline given `retraining_data`'s URIs) would read their records twice."""
    delete_files(store, [k for m in merges for k in m.new_keys])


def delete_files(store: ObjectStore, keys: Sequence[str]) -> None:
    """Delete files no batch row refers to; one the store cannot delete now is logged and left unreferenced."""
    for key in keys:
        try:
            store.delete(key)
        except Exception as exc:
            log.warning("capture compaction: %s not deleted (unreferenced now): %s", key, exc)


def _write_merged(store: ObjectStore, part: list[CaptureBatch], tables: list[pa.Table]) -> Merge:
    first = part[0]
    batch_id = new_id()
    folder = posixpath.dirname(first.parquet_key)
    jsonl_key, parquet_key = f"{folder}/{batch_id}.jsonl", f"{folder}/{batch_id}.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(tables), buf, compression="zstd")
    jsonl = b"".join(store.get(b.jsonl_key) for b in part)   # each file is whole lines, "\n"-terminated
    store.put_many([(jsonl_key, jsonl, "application/jsonl"),
                    (parquet_key, buf.getvalue(), "application/vnd.apache.parquet")])
    # The merged batch sorts where its first part did (windows read batches by hour, then created_at).
    row: dict[str, Any] = {
        "id": batch_id, "endpoint_id": first.endpoint_id, "hour": first.hour, "jsonl_key": jsonl_key,
        "parquet_key": parquet_key, "records": sum(b.records for b in part),
        "first_time": min(b.first_time for b in part), "last_time": max(b.last_time for b in part),
        "created_at": first.created_at}
    return Merge(row, [b.id for b in part], [k for b in part for k in (b.jsonl_key, b.parquet_key)])


def apply_merges(session: Session, endpoint_id: str, merges: Sequence[Merge]) -> Compacted:
    """Index the merged batches in place of their parts, under the endpoint's lock (`jobs.compact` gives one
    merge per transaction, so the lock is held for one merge's rows). A merge whose parts are not
    all there any more (another process compacted them first) is dropped: its new files go to ``stale_keys``
    with the old files of the merges applied. Flushes; the caller commits, then deletes ``stale_keys``."""
    advisory_xact_lock(session, endpoint_id)
    done = Compacted()
    for m in merges:
        if batches_present(session, m.parts) != len(m.parts):
            done.stale_keys += m.new_keys
            continue
        session.execute(insert(CaptureBatch), [m.row])
        for ids in chunks(m.parts):
            session.execute(update(CaptureEvent).where(CaptureEvent.batch_id.in_(ids))
                            .values(batch_id=m.row["id"]), execution_options={"synchronize_session": False})
            session.execute(delete(CaptureBatch).where(CaptureBatch.id.in_(ids)),
                            execution_options={"synchronize_session": False})
        done.stale_keys += m.stale_keys
        done.merged += len(m.parts)
        done.written += 1
        done.records += m.row["records"]
    session.flush()
    return done
