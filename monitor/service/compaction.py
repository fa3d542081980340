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
and the Dask paths; `mlgov capture export` reads such an hour again).

A process that dies between writing files and indexing them (an ingest before its commit, a compaction before its
swap) leaves files no batch refers to in the hour's folder. Readers through mlgov never see them, but a reader of
the folder (`retraining_data`'s URIs, a SageMaker processing job given the prefix) would read their records
twice: `orphans` finds them once they are ORPHAN_AGE old and the scheduler deletes them hourly, under the
endpoint's lock (`sweep_orphans`), under which a swap checks that its merged files are still there and a slow
ingest that its own are (`endpoints.index_capture`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import posixpath
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from mlgov.db import advisory_xact_lock, chunks, new_id
from mlgov.errors import NotFound
from mlgov.storage import ObjectStore
from monitor import layout
from monitor.orm import CaptureBatch, CaptureEvent, Endpoint
from monitor.service.endpoints import ORPHAN_AGE, batches_present

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


def delete_files(store: ObjectStore, keys: Sequence[str]) -> int:
    """Delete files no batch row refers to; one the store cannot delete now is logged and left unreferenced (the
    sweep takes it later). How many were deleted."""
    deleted = 0
    for key in keys:
        try:
            store.delete(key)
            deleted += 1
        except Exception as exc:
            log.warning("capture compaction: %s not deleted (unreferenced now): %s", key, exc)
    return deleted


def _write_merged(store: ObjectStore, part: list[CaptureBatch], tables: list[pa.Table]) -> Merge:
    first = part[0]
    batch_id = new_id()
    folder = posixpath.dirname(first.parquet_key)
    jsonl_key, parquet_key = layout.batch_keys(folder, batch_id)
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


def apply_merges(session: Session, store: ObjectStore, endpoint_id: str, merges: Sequence[Merge]) -> Compacted:
    """Index the merged batches in place of their parts, under the endpoint's lock (`jobs.compact` gives one
    merge per transaction, so the lock is held for one merge's rows). A merge whose parts are not
    all there any more (another process compacted them first) is dropped: its new files go to ``stale_keys``
    with the old files of the merges applied. So is one whose files were swept as leftovers (a plan of a big hour
    can outlast ORPHAN_AGE); its parts stay. Flushes; the caller commits, then deletes ``stale_keys``."""
    advisory_xact_lock(session, endpoint_id)
    done = Compacted()
    for m in merges:
        if batches_present(session, m.parts) != len(m.parts) or not all(store.exists(k) for k in m.new_keys):
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


class SweptHour(NamedTuple):
    """An hour of an endpoint's capture to look for `orphans` in; the name and variant spell its folder."""

    endpoint_id: str
    endpoint: str
    variant: str
    hour: dt.datetime


def swept_hours(session: Session, now: dt.datetime, lookback: dt.timedelta, *, endpoint_id: str | None = None,
                older_batches: bool = False) -> list[SweptHour]:
    """(endpoint id, hour) to look for `orphans` in, newest first: every hour of the last ``lookback`` up to the
    last ended one (a file of the current hour is never ORPHAN_AGE old), and with ``older_batches`` every older
    hour that holds a batch (an older hour without one is only ever left files by an ingest that died and was
    not retried for days)."""
    last = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    first = (now - lookback).replace(minute=0, second=0, microsecond=0)
    eps = select(Endpoint.id, Endpoint.name, Endpoint.variant).order_by(Endpoint.id)
    if endpoint_id is not None:
        eps = eps.where(Endpoint.id == endpoint_id)
    named = {ep_id: (name, variant) for ep_id, name, variant in session.execute(eps)}
    recent = [last - dt.timedelta(hours=i) for i in range(int((last - first) / dt.timedelta(hours=1)) + 1)]
    todo = [SweptHour(ep_id, *ep, h) for ep_id, ep in named.items() for h in recent]
    if older_batches:
        older = (select(CaptureBatch.endpoint_id, CaptureBatch.hour).distinct()
                 .where(CaptureBatch.hour < first).order_by(CaptureBatch.endpoint_id, CaptureBatch.hour.desc()))
        if endpoint_id is not None:
            older = older.where(CaptureBatch.endpoint_id == endpoint_id)
        todo += [SweptHour(e, *named[e], h) for e, h in session.execute(older) if e in named]
    return todo


def _hour_files(session: Session, endpoint_id: str, hour: dt.datetime) -> set[str]:
    """The keys of the files the endpoint's batches of ``hour`` refer to."""
    return {k for row in session.execute(select(CaptureBatch.jsonl_key, CaptureBatch.parquet_key).where(
        CaptureBatch.endpoint_id == endpoint_id, CaptureBatch.hour == hour)) for k in row}


def orphans(session: Session, store: ObjectStore, swept: SweptHour, now: dt.datetime) -> list[str]:
    """The files of the endpoint's hour that no batch refers to and that were written ORPHAN_AGE before
    ``now`` or earlier (see the module), in the folders of the hour's batches and of the endpoint's variant;
    temporary files of writes a killed process never finished included."""
    referenced = _hour_files(session, swept.endpoint_id, swept.hour)
    folders = ({layout.capture_folder(swept.endpoint, swept.variant, swept.hour)}
               | {posixpath.dirname(k) for k in referenced})
    cutoff = now - ORPHAN_AGE
    return sorted(key for folder in folders for key, written in store.listed(f"{folder}/", unfinished=True)
                  if key not in referenced and written <= cutoff)


def sweep_orphans(session: Session, store: ObjectStore, endpoint_id: str, hour: dt.datetime,
                  candidates: Sequence[str]) -> int:
    """Delete the ``candidates`` (`orphans` of ``hour``, found without a lock) that still no batch refers to,
    under the endpoint's lock: a swap or a slow ingest that would index one of them checks under the same lock
    that its files exist, so a file is either indexed first (and kept here) or deleted first (and not indexed
    there). Only the hour's batches can refer to its files. How many were deleted."""
    advisory_xact_lock(session, endpoint_id)
    referenced = _hour_files(session, endpoint_id, hour)
    return delete_files(store, [k for k in candidates if k not in referenced])
