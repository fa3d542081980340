"""Endpoints and capture ingest: SageMaker capture records stored hour-partitioned (JSONL + Parquet) before the
index rows that make them visible, and captured windows read back as Arrow tables.

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lineage import service as lineage
from mlgov import audit, inputs
from mlgov.auth import Principal
from mlgov.db import (
    BulkRows,
    advisory_xact_lock,
    as_utc,
    chunks,
    ids_from,
    is_postgres,
    is_unique_violation,
    keys_present,
    new_id,
    paginate,
    present_keys,
    utcnow,
)
from mlgov.errors import Conflict, Invalid, NotFound
from mlgov.storage import ObjectStore
from monitor import capture, compute, layout
from monitor.errors import EndpointNotFound, PartitionGone
from monitor.orm import CaptureBatch, CaptureEvent, Endpoint, RetrainingTrigger, VersionBaseline
from registry import service as registry


def create_endpoint(session: Session, *, name: str, model_group: str, model_version: int, variant: str,
                    sampling_percentage: float, schema: capture.CaptureSchema, actor: Principal) -> Endpoint:
    g, v = registry.get_version(session, model_group, model_version)
    if session.scalar(select(Endpoint.id).where(Endpoint.name == name)) is not None:
        raise Conflict(f"endpoint {name!r} already exists", fix="pick another name")
    ep = Endpoint(id=new_id(), name=name, model_group=g.name, model_version=v.version, variant=variant,
                  sampling_percentage=sampling_percentage, schema=schema.model_dump(), created_by=actor.name,
                  created_at=utcnow(), updated_at=utcnow())
    session.add(ep)
    session.flush()
    ctx, _ = lineage.ensure_context(session, context_type="Endpoint", name=name, key=f"endpoint:{name}",
                                    actor=actor.name, properties={"variant": variant})
    dep, _ = lineage.ensure_action(session, action_type="Deployment", key=f"deployment:{name}:{g.name}/{v.version}",
                                   name=f"deploy {g.name}/{v.version} to {name}", status="Completed",
                                   start_time=utcnow(), actor=actor.name)
    lineage.chain(session, [(registry.version_entity(session, g, v, actor.name), dep, "ContributedTo"),
                            (dep, ctx, "AssociatedWith")], actor=actor.name)
    audit.record(session, actor=actor.name, action="endpoint.created", subject_type="endpoint", subject_id=name,
                 after={"model_group": g.name, "model_version": v.version, "variant": variant,
                        "sampling_percentage": sampling_percentage})
    return ep


def get_endpoint(session: Session, name: str) -> Endpoint:
    ep = session.scalar(select(Endpoint).where(Endpoint.name == name))
    if ep is None:
        raise EndpointNotFound(name)
    return ep


def list_endpoints(session: Session, limit: int, offset: int) -> tuple[list[Endpoint], int]:
    return paginate(session, select(Endpoint), Endpoint.name, limit=limit, offset=offset)


def lock_endpoint(session: Session, ep: Endpoint) -> None:
    """Capture and ground truth of one endpoint are written one request at a time (idempotency by event id)."""
    advisory_xact_lock(session, ep.id)


REJECTIONS_SHOWN = 100
"""Per-record reasons listed when a whole batch is refused (a 6,000-record batch would otherwise echo 6,000)."""


def refuse_if_all_rejected(rejected: list[dict[str, Any]], total: int, kind: str) -> None:
    """A batch in which no record was readable is the client's error, not a success with nothing stored: 422
    with the reasons (first REJECTIONS_SHOWN), before anything is written. A partly rejected batch stays 200."""
    if not total or len(rejected) < total:
        return
    first = rejected[0]
    raise Invalid(f"all {total} {kind} records were rejected and nothing was stored; record {first['index']}: "
                  f"{first['reason']}",
                  fix="correct the records as each reason under `rejected` says (the endpoint's schema names the "
                      "features in order) and send the batch again",
                  rejected=rejected[:REJECTIONS_SHOWN], rejected_count=len(rejected))


@dataclass
class _Batch:
    """One hour's fresh records of a request, already written to the store (files named by ``id``)."""

    id: str
    hour: dt.datetime
    folder: str
    records: list[capture.Parsed]

    @property
    def keys(self) -> tuple[str, str]:
        return layout.batch_keys(self.folder, self.id)


@dataclass
class PreparedCapture:
    """Capture records parsed, sampled and checked against the index (``records``: the fresh ones), then stored as
    files (``batches``, by `store_capture`), not yet visible: the index rows that make them visible are written by
    `commit_capture` in the write transaction."""

    endpoint_id: str
    endpoint: str
    variant: str
    schema: capture.CaptureSchema
    batches: list[_Batch]
    sampled_out: int
    duplicates: int
    rejected: list[dict[str, Any]]
    records: list[capture.Parsed] = field(default_factory=list)
    stored_at: tuple[float, float] = (0.0, 0.0)
    """When `store_capture` wrote the batches' files, (``time.monotonic()``, ``time.time()``): see `index_capture`.
    Both, as the monotonic clock stops while a host is suspended and the wall clock can be set back."""

    @property
    def group_key(self) -> tuple[str, str, str, int]:
        """Requests with equal keys can be stored and indexed as one (same endpoint, same schema object; the
        schema is the cached reader's, so while a request holds it no other schema can have its id)."""
        return (self.endpoint_id, self.endpoint, self.variant, id(self.schema))


ORPHAN_AGE = dt.timedelta(hours=1)
"""A capture file no batch refers to is deleted once it was written this long ago (`compaction.sweep_orphans`):
left by a process that died between writing files and indexing them, it would make a reader of the hour's folder
read its records twice. Ingest indexes its files seconds after writing them; one that took over half of this
(a paused process) checks under the endpoint's lock that its files are still there (`index_capture`), and
compaction always does before its swap."""

_KNOWN_EVENTS = present_keys(CaptureEvent.event_id, CaptureEvent.endpoint_id)


def _known_events(session: Session, endpoint_id: str, event_ids: Iterable[str]) -> set[str]:
    """The event ids of ``event_ids`` already indexed for the endpoint: each probed on the unique (endpoint,
    event id) index, so the cost does not grow with what the endpoint captured (`present_keys`)."""
    return keys_present(session, _KNOWN_EVENTS, endpoint_id, event_ids)


PROBE_SAMPLE = 8
"""Event ids probed per batch before its files are written, spread over it: fresh ids are the rule and a retry
resends its batch whole, so only when one of these is known is the whole batch probed. A duplicate the sample
missed is refused by the unique index when the batch is indexed, and its batch is stored again without it
(`index_capture`), so no file ever holds an event twice. SageMaker's eventIds are random UUIDs: each probed id
is a random index page, ~9% of a 500-record batch's server time once the index outgrew the page cache."""


def _duplicates_of(session: Session, endpoint_id: str, ids: list[str]) -> set[str]:
    """The ids of ``ids`` (distinct, in batch order) known to be indexed already; a batch whose sample is all
    fresh is taken as fresh (see PROBE_SAMPLE)."""
    if len(ids) > PROBE_SAMPLE:
        step = (len(ids) - 1) / (PROBE_SAMPLE - 1)
        if not _known_events(session, endpoint_id, {ids[round(k * step)] for k in range(PROBE_SAMPLE)}):
            return set()
    return _known_events(session, endpoint_id, ids)


def _write_batch(store: ObjectStore, b: _Batch, schema: capture.CaptureSchema) -> None:
    """JSONL (SageMaker's capture layout) and Parquet of one batch, durable before anything refers to them."""
    jsonl = b"\n".join([r.raw for r in b.records]) + b"\n"
    jsonl_key, parquet_key = b.keys
    store.put_many([(jsonl_key, jsonl, "application/jsonl"),
                    (parquet_key, _parquet(b.records, schema), "application/vnd.apache.parquet")])



_READERS: dict[tuple[str, str], capture.Reader] = {}


def _reader(ep: Endpoint) -> capture.Reader:
    """The endpoint's schema validated and worked out once, not per request (a single-record request spent more on
    validating the schema than on its record); keyed by the stored schema itself, so a changed one is read anew."""
    key = (ep.id, json.dumps(ep.schema, sort_keys=True))
    reader = _READERS.get(key)
    if reader is None:
        if len(_READERS) >= 256:
            _READERS.clear()
        reader = _READERS[key] = capture.Reader(capture.CaptureSchema.model_validate(ep.schema))
    return reader


def read_capture(session: Session, endpoint: str, body: bytes, content_type: str, *,
                 parsed_body: Any = inputs.NOT_PARSED, refuse_all_rejected: bool = True) -> PreparedCapture:
    """The part of an ingest that reads: parse and validate the records, drop the sampled-out ones and the event
    ids already indexed (those `_duplicates_of` finds). Nothing is stored yet (`store_capture`). Runs on a read
    session; ``parsed_body`` is the body as the request guard parsed it, when it did."""
    ep = get_endpoint(session, endpoint)
    reader = _reader(ep)
    try:
        items = capture.split_body(body, content_type, parsed=parsed_body, raw=True)
    except capture.RecordError as exc:
        raise Invalid(str(exc), fix="send SageMaker capture records") from None
    rejected: list[dict[str, Any]] = []
    parsed: list[capture.Parsed] = []
    sampled_out = 0
    for i, rec in enumerate(reader.parse_many(items)):
        if isinstance(rec, capture.RecordError):
            rejected.append({"index": i, "reason": str(rec)})
            continue
        if not capture.sampled(ep.name, rec.event_id, ep.sampling_percentage):
            sampled_out += 1
            continue
        parsed.append(rec)
    if refuse_all_rejected:
        refuse_if_all_rejected(rejected, len(items), "capture")
    seen = _duplicates_of(session, ep.id, list(dict.fromkeys(p.event_id for p in parsed)))
    fresh: list[capture.Parsed] = []
    duplicates = 0
    for p in parsed:
        if p.event_id in seen:
            duplicates += 1
            continue
        seen.add(p.event_id)
        fresh.append(p)
    return PreparedCapture(ep.id, ep.name, ep.variant, reader.schema, [], sampled_out, duplicates, rejected, fresh)


def store_capture(store: ObjectStore, prep: PreparedCapture) -> None:
    """Each hour of the fresh records stored as one fsynced (or PUT) JSONL + Parquet batch."""
    by_hour: dict[dt.datetime, list[capture.Parsed]] = {}
    for p in prep.records:
        by_hour.setdefault(p.inference_time.replace(minute=0, second=0, microsecond=0), []).append(p)
    prep.batches = [_Batch(new_id(), hour, layout.capture_folder(prep.endpoint, prep.variant, hour), recs)
                    for hour, recs in sorted(by_hour.items())]
    for b in prep.batches:
        _write_batch(store, b, prep.schema)
    prep.stored_at = (time.monotonic(), time.time())


def prepare_capture(session: Session, store: ObjectStore, endpoint: str, body: bytes, content_type: str, *,
                    parsed_body: Any = inputs.NOT_PARSED, refuse_all_rejected: bool = True) -> PreparedCapture:
    """Everything of an ingest that needs no write lock: `read_capture`, then `store_capture`."""
    prep = read_capture(session, endpoint, body, content_type, parsed_body=parsed_body,
                        refuse_all_rejected=refuse_all_rejected)
    store_capture(store, prep)
    return prep


def merge_captures(preps: list[PreparedCapture]) -> tuple[PreparedCapture, list[set[str]]]:
    """Several read (not yet stored) requests of one `PreparedCapture.group_key` as one, to be stored and indexed
    together, and the event ids each request contributes: an event id sent by two of them belongs to the first,
    and is the other's duplicate (`group_results`)."""
    first = preps[0]
    seen: set[str] = set()
    owned: list[set[str]] = []
    records: list[capture.Parsed] = []
    for p in preps:
        mine = {r.event_id for r in p.records} - seen
        seen |= mine
        records += [r for r in p.records if r.event_id in mine]
        owned.append(mine)
    return (PreparedCapture(first.endpoint_id, first.endpoint, first.variant, first.schema, [], 0, 0, [], records),
            owned)


def group_results(preps: list[PreparedCapture], owned: list[set[str]], indexed: set[str]) -> list[dict[str, Any]]:
    """Each request's answer once the group is indexed: its fresh records that were indexed are accepted, the
    rest (sent by an earlier request of the group, or indexed by a concurrent one) are duplicates."""
    out = []
    for p, mine in zip(preps, owned, strict=True):
        accepted = len(mine & indexed)
        out.append({"accepted": accepted, "sampled_out": p.sampled_out,
                    "duplicates": p.duplicates + len(p.records) - accepted, "rejected": p.rejected})
    return out


def commit_capture(session: Session, store: ObjectStore, prep: PreparedCapture) -> dict[str, Any]:
    """The short write half of an ingest (`index_capture`), answered as the request's counts."""
    return group_results([prep], [{r.event_id for r in prep.records}], index_capture(session, store, prep))[0]


def index_capture(session: Session, store: ObjectStore, prep: PreparedCapture) -> set[str]:
    """The short write half of an ingest, under the endpoint's lock: the batch and event index rows are inserted
    at once (a savepoint around them). Only when the unique (endpoint, event id) index refuses them, because a
    concurrent request indexed some of the same event ids since `read_capture` looked, are those left out and
    their batch stored again without them. Returns the event ids indexed. The caller commits before
    acknowledging."""
    advisory_xact_lock(session, prep.endpoint_id)
    waited = max(time.monotonic() - prep.stored_at[0], time.time() - prep.stored_at[1])
    if prep.batches and waited > ORPHAN_AGE.total_seconds() / 2:
        missing = [k for b in prep.batches for k in b.keys if not store.exists(k)]
        if missing:
            raise Conflict(f"this request's files were deleted as leftovers while it waited {waited:.0f} s to be "
                           f"indexed ({missing[0]}); nothing was stored",
                           fix="send it again (event ids already stored are answered as duplicates)")
    if prep.batches:
        try:
            with session.begin_nested():
                _insert_index(session, prep, prep.batches)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            return _commit_raced(session, store, prep)
    return {r.event_id for b in prep.batches for r in b.records}


def _insert_index(session: Session, prep: PreparedCapture, batches: list[_Batch]) -> None:
    """One statement per table and no ORM object per record; the event rows' ids are `ids_from` their batch's."""
    now = utcnow()
    batch_rows: list[dict[str, Any]] = []
    event_rows: list[tuple[Any, ...]] = []
    for b in batches:
        times = [r.inference_time for r in b.records]
        batch_rows.append({"id": b.id, "endpoint_id": prep.endpoint_id, "hour": b.hour,
                           "jsonl_key": b.keys[0], "parquet_key": b.keys[1],
                           "records": len(b.records), "first_time": min(times), "last_time": max(times),
                           "created_at": now})
        event_rows += [(pk, r.event_id, r.inference_id, r.inference_time, b.id)
                       for pk, r in zip(ids_from(b.id, len(b.records)), b.records, strict=True)]
    session.execute(insert(cast(Table, CaptureBatch.__table__)), batch_rows)
    _EVENT_ROWS.execute(session, event_rows, endpoint_id=prep.endpoint_id)


# The event rows without SQLAlchemy's per-row work (`BulkRows`): on PostgreSQL one JSON parameter (~0.9 ms of
# client CPU per 500 rows, where five array parameters cost ~5 ms and a multi-row VALUES more), on SQLite the
# driver's executemany over tuples (a json_each insert measured no faster there).
_EVENT_COLUMNS = ("id", "event_id", "inference_id", "inference_time", "batch_id")
_EVENT_ROWS = BulkRows(CaptureEvent.__table__, _EVENT_COLUMNS, constants=("endpoint_id",))


def _commit_raced(session: Session, store: ObjectStore, prep: PreparedCapture) -> set[str]:
    """A concurrent request indexed some of these event ids first: they are left out, and each batch that held
    any is stored again without them (its first files deleted) before the rest is indexed."""
    raced = _known_events(session, prep.endpoint_id, (r.event_id for b in prep.batches for r in b.records))
    kept_batches = []
    for b in prep.batches:
        if raced & {r.event_id for r in b.records}:
            kept = [r for r in b.records if r.event_id not in raced]
            for key in b.keys:       # the first files hold records stored by another request
                store.delete(key)
            if not kept:
                continue
            b = _Batch(new_id(), b.hour, b.folder, kept)
            _write_batch(store, b, prep.schema)
        kept_batches.append(b)
    if kept_batches:
        _insert_index(session, prep, kept_batches)
    return {r.event_id for b in kept_batches for r in b.records}


def ingest(session: Session, store: ObjectStore, endpoint: str, body: bytes, content_type: str, *,
           refuse_all_rejected: bool = True) -> dict[str, Any]:
    """Accept SageMaker capture records in one (write) session. Acknowledged (returned) means stored: files are
    fsynced/PUT before the index rows flush, and the caller's commit happens before the response leaves. A bulk
    import that totals rejections over many chunks passes refuse_all_rejected=False. The HTTP route runs the two
    halves itself (`prepare_capture` on a read session, `commit_capture` in a short write turn)."""
    prep = prepare_capture(session, store, endpoint, body, content_type, refuse_all_rejected=refuse_all_rejected)
    return commit_capture(session, store, prep)


def _parquet(recs: list[capture.Parsed], schema: capture.CaptureSchema) -> bytes:
    cols: dict[str, Any] = {
        "__event_id": pa.array([r.event_id for r in recs]),
        "__inference_id": pa.array([r.inference_id for r in recs], type=pa.string()),
        "__inference_time": pa.array([r.inference_time for r in recs], type=pa.timestamp("us", tz="UTC")),
    }
    specs: list[tuple[str, str]] = [(f.name, f.type) for f in schema.features]
    specs += [(o.name, o.type) for o in schema.output_columns()]
    for name, ftype in specs:
        cols[name] = _column([r.row.get(name) for r in recs], ftype)
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()


def _column(values: list[str | float | None], ftype: str) -> pa.Array:
    """One feature's parsed values as a column: text for a String feature or when any value is unparseable text
    (kept for the data-type check), int64 for an Integral feature whose values are all whole numbers within int64,
    else float64. Arrow converts and NumPy checks, where each test was a Python pass per value (a 12-feature batch
    of 500: 1.46 -> 1.23 ms); a whole number beyond int64 stays float64 rather than failing the batch."""
    if ftype != "String":
        try:
            numbers = pa.array(values, type=pa.float64())
        except (pa.ArrowInvalid, pa.ArrowTypeError):   # text among the numbers
            pass
        else:
            if ftype == "Integral":
                v = pc.drop_null(numbers).to_numpy()
                if bool(np.all(np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 2.0**63))):
                    return pc.cast(numbers, pa.int64())   # exact: every value is a whole number in range
            return numbers
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):   # a number in a String feature: written as Python writes it
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def window_batches(session: Session, ep: Endpoint, start: dt.datetime, end: dt.datetime) -> list[CaptureBatch]:
    """The committed Parquet batches holding captured rows of [start, end) (and maybe rows just outside it), in
    capture order."""
    return list(session.scalars(select(CaptureBatch).where(
        CaptureBatch.endpoint_id == ep.id, CaptureBatch.last_time >= start, CaptureBatch.first_time < end)
        .order_by(CaptureBatch.hour, CaptureBatch.created_at)))


def batches_present(session: Session, ids: list[str]) -> int:
    """How many of the capture batches ``ids`` exist now (compaction deletes the ones it merged)."""
    return sum(session.scalar(select(func.count()).select_from(CaptureBatch).where(CaptureBatch.id.in_(c))) or 0
               for c in chunks(ids))


_T = TypeVar("_T")


def reread_if_compacted(session: Session, read: Callable[[], _T]) -> _T:
    """``read()`` of a captured window (it lists the window's batches, then reads their files and labels), once
    more if a batch it listed is gone (`PartitionGone`): compaction merged it and deleted its files after
    committing. A SQLite read snapshot is ended first, so the second listing sees the merged batch (a write
    transaction could not have seen compaction commit: SQLite has one writer)."""
    try:
        return read()
    except PartitionGone:
        if not is_postgres(session):
            if not session.connection().exec_driver_sql("PRAGMA query_only").scalar():
                raise
            session.rollback()
        return read()


def window_table(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime,
                 end: dt.datetime, *, keep_keys: bool = False,
                 batches: list[CaptureBatch] | None = None) -> pa.Table | None:
    """Captured rows with inference time in [start, end), read from the committed Parquet batches (``batches``:
    the window's, when the caller has them already and reads them again if one was compacted away)."""
    if batches is None:
        return reread_if_compacted(session, lambda: _window_table(session, store, ep, start, end, keep_keys,
                                                                  window_batches(session, ep, start, end)))
    return _window_table(session, store, ep, start, end, keep_keys, batches)


def _window_table(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime, end: dt.datetime,
                  keep_keys: bool, batches: list[CaptureBatch]) -> pa.Table | None:
    if not batches:
        return None
    try:
        tables = [pq.read_table(io.BytesIO(store.get(b.parquet_key))) for b in batches]
    except NotFound as exc:
        raise PartitionGone(exc.detail) from None
    table = pa.concat_tables(_as_text_where_mixed(tables), promote_options="permissive")
    t = table.column("__inference_time")
    mask = pc.and_(pc.greater_equal(t, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
                   pc.less(t, pa.scalar(end, pa.timestamp("us", tz="UTC"))))
    table = table.filter(mask)
    if keep_keys:
        return table
    return table.drop_columns([c for c in table.column_names if c.startswith("__")])


def _as_text_where_mixed(tables: list[pa.Table]) -> list[pa.Table]:
    """A numeric feature is stored as text in a batch that captured text for it (`_column`), so one window can
    hold it as int64 in one batch and string in another, which Arrow cannot merge: such a column becomes text in
    every batch (numbers as Arrow writes them), and the data-type check reports what the baseline expected."""
    kinds: dict[str, set[bool]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                kinds.setdefault(f.name, set()).add(pa.types.is_string(f.type))
    mixed = frozenset(name for name, k in kinds.items() if len(k) > 1)
    return [compute.as_text(t, mixed) for t in tables] if mixed else tables


def captured_count(session: Session, endpoint: str) -> int:
    ep = get_endpoint(session, endpoint)
    return int(session.scalar(select(func.count()).select_from(CaptureEvent).where(CaptureEvent.endpoint_id == ep.id))
               or 0)


def capture_volume(session: Session, endpoint: str, since: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """Records captured per hour since ``since`` (hours without traffic are absent)."""
    ep = get_endpoint(session, endpoint)
    rows = session.execute(select(CaptureBatch.hour, func.sum(CaptureBatch.records)).where(
        CaptureBatch.endpoint_id == ep.id, CaptureBatch.hour >= since).group_by(CaptureBatch.hour)
        .order_by(CaptureBatch.hour))
    return [(h.replace(tzinfo=dt.UTC) if h.tzinfo is None else h, int(n or 0)) for h, n in rows]


def last_capture_hour(session: Session, endpoint: str) -> dt.datetime | None:
    ep = get_endpoint(session, endpoint)
    hour = session.scalar(select(func.max(CaptureBatch.hour)).where(CaptureBatch.endpoint_id == ep.id))
    return as_utc(hour) if hour is not None else None


def model_references(session: Session, group: str, version: int | None) -> list[str]:
    """What in monitoring names this model group (or one of its versions): endpoints serving it, drift baselines
    attached to it, its retraining trigger. The registry asks before a rename or delete (registered in app.py)."""
    refs = [f"endpoint {n!r}" for n in session.scalars(
        select(Endpoint.name).where(Endpoint.model_group == group,
                                    *([Endpoint.model_version == version] if version is not None else []))
        .order_by(Endpoint.name))]
    refs += [f"drift baseline of version {n}" for n in session.scalars(
        select(VersionBaseline.model_version).where(
            VersionBaseline.model_group == group,
            *([VersionBaseline.model_version == version] if version is not None else []))
        .order_by(VersionBaseline.model_version))]
    if version is None and session.scalar(select(RetrainingTrigger.id).where(RetrainingTrigger.model_group == group)):
        refs.append("its retraining trigger")
    return refs
