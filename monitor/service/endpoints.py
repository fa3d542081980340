"""Endpoints and capture ingest: SageMaker capture records stored hour-partitioned (JSONL + Parquet) before the
index rows that make them visible, and captured windows read back as Arrow tables.

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage import service as lineage
from mlgov import audit
from mlgov.auth import Principal
from mlgov.db import advisory_xact_lock, as_utc, chunks, new_id, paginate, utcnow
from mlgov.errors import Conflict, Invalid
from mlgov.storage import ObjectStore
from monitor import capture, layout
from monitor.errors import EndpointNotFound
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


def ingest(session: Session, store: ObjectStore, endpoint: str, body: bytes, content_type: str, *,
           refuse_all_rejected: bool = True) -> dict[str, Any]:
    """Accept SageMaker capture records. Acknowledged (returned) means stored: files are fsynced/PUT before
    the index rows flush, and the caller's commit happens before the response leaves. A bulk import that
    totals rejections over many chunks passes refuse_all_rejected=False."""
    ep = get_endpoint(session, endpoint)
    schema = capture.CaptureSchema.model_validate(ep.schema)
    try:
        items = capture.split_body(body, content_type)
    except capture.RecordError as exc:
        raise Invalid(str(exc), fix="send SageMaker capture records") from None
    rejected: list[dict[str, Any]] = []
    parsed: list[capture.Parsed] = []
    sampled_out = 0
    for i, item in enumerate(items):
        if isinstance(item, capture.RecordError):
            rejected.append({"index": i, "reason": str(item)})
            continue
        try:
            rec = capture.parse(item, schema)
        except capture.RecordError as exc:
            rejected.append({"index": i, "reason": str(exc)})
            continue
        if not capture.sampled(ep.name, rec.event_id, ep.sampling_percentage):
            sampled_out += 1
            continue
        parsed.append(rec)
    if refuse_all_rejected:
        refuse_if_all_rejected(rejected, len(items), "capture")
    lock_endpoint(session, ep)
    seen: set[str] = set()
    fresh: list[capture.Parsed] = []
    ids = list({p.event_id for p in parsed})
    for chunk in chunks(ids):
        seen |= set(session.scalars(select(CaptureEvent.event_id).where(
            CaptureEvent.endpoint_id == ep.id, CaptureEvent.event_id.in_(chunk))))
    duplicates = 0
    for p in parsed:
        if p.event_id in seen:
            duplicates += 1
            continue
        seen.add(p.event_id)
        fresh.append(p)
    by_hour: dict[dt.datetime, list[capture.Parsed]] = {}
    for p in fresh:
        by_hour.setdefault(p.inference_time.replace(minute=0, second=0, microsecond=0), []).append(p)
    for hour, recs in sorted(by_hour.items()):
        batch = new_id()
        folder = layout.capture_folder(ep.name, ep.variant, hour)
        jsonl = "".join(json.dumps(r.raw, separators=(",", ":")) + "\n" for r in recs).encode()
        store.put(f"{folder}/{batch}.jsonl", jsonl, "application/jsonl")
        store.put(f"{folder}/{batch}.parquet", _parquet(recs, schema), "application/vnd.apache.parquet")
        session.add(CaptureBatch(id=batch, endpoint_id=ep.id, hour=hour, jsonl_key=f"{folder}/{batch}.jsonl",
                                 parquet_key=f"{folder}/{batch}.parquet", records=len(recs),
                                 first_time=min(r.inference_time for r in recs),
                                 last_time=max(r.inference_time for r in recs), created_at=utcnow()))
        session.flush()
        session.add_all([CaptureEvent(endpoint_id=ep.id, event_id=r.event_id, inference_id=r.inference_id,
                                      inference_time=r.inference_time, batch_id=batch) for r in recs])
    session.flush()
    return {"accepted": len(fresh), "sampled_out": sampled_out, "duplicates": duplicates, "rejected": rejected}


def _parquet(recs: list[capture.Parsed], schema: capture.CaptureSchema) -> bytes:
    cols: dict[str, Any] = {
        "__event_id": pa.array([r.event_id for r in recs]),
        "__inference_id": pa.array([r.inference_id for r in recs], type=pa.string()),
        "__inference_time": pa.array([r.inference_time for r in recs], type=pa.timestamp("us", tz="UTC")),
    }
    specs: list[tuple[str, str]] = [(f.name, f.type) for f in schema.features]
    specs += [(o.name, o.type) for o in schema.output_columns()]
    for name, ftype in specs:
        values = [r.row.get(name) for r in recs]
        if ftype == "String" or any(isinstance(v, str) for v in values):
            cols[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        elif ftype == "Integral" and all(v is None or float(v).is_integer() for v in values):
            cols[name] = pa.array([None if v is None else int(v) for v in values], type=pa.int64())
        else:
            cols[name] = pa.array(values, type=pa.float64())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()


def window_table(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime,
                 end: dt.datetime, *, keep_keys: bool = False) -> pa.Table | None:
    """Captured rows with inference time in [start, end), read from the committed Parquet batches."""
    batches = list(session.scalars(select(CaptureBatch).where(
        CaptureBatch.endpoint_id == ep.id, CaptureBatch.last_time >= start, CaptureBatch.first_time < end)
        .order_by(CaptureBatch.hour, CaptureBatch.created_at)))
    if not batches:
        return None
    tables = [pq.read_table(io.BytesIO(store.get(b.parquet_key))) for b in batches]
    table = pa.concat_tables(tables, promote_options="permissive")
    t = table.column("__inference_time")
    mask = pc.and_(pc.greater_equal(t, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
                   pc.less(t, pa.scalar(end, pa.timestamp("us", tz="UTC"))))
    table = table.filter(mask)
    if keep_keys:
        return table
    return table.drop_columns([c for c in table.column_names if c.startswith("__")])


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
