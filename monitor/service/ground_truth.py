"""Ground truth: labels that arrive later keyed by inferenceId (else eventId), and captured windows joined to them.

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from mlgov import audit
from mlgov.auth import Principal
from mlgov.db import BulkRows, check_column_value, chunks, ids_from, keys_present, new_id, present_keys, utcnow
from mlgov.errors import DomainError, Invalid
from mlgov.storage import ObjectStore
from monitor import capture, compute
from monitor.errors import PartitionGone
from monitor.orm import Baseline, CaptureBatch, CaptureEvent, Endpoint, GroundTruth, Schedule
from monitor.service.endpoints import (
    batches_present,
    get_endpoint,
    lock_endpoint,
    refuse_if_all_rejected,
    reread_if_compacted,
    window_batches,
    window_table,
)

KEYS = frozenset({"__inference_id", "__event_id"})


def _gt_label(record: Any) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise capture.RecordError("record must be a JSON object")
    meta = record.get("eventMetadata")
    event_id = meta.get("eventId") if isinstance(meta, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        raise capture.RecordError("eventMetadata.eventId must be a non-empty string (the inferenceId or eventId "
                                  "of the captured request)")
    gt = record.get("groundTruthData")
    if not isinstance(gt, dict) or not isinstance(gt.get("data"), str):
        raise capture.RecordError("groundTruthData.data must be a string holding the label")
    data, enc = capture._decode(gt, "groundTruthData")
    label = data.strip()
    if enc == "JSON":
        value = capture.payload_json(label, "groundTruthData.data")
        label = str(value.get("label", value) if isinstance(value, dict) else value)
    else:
        label = capture._csv_values(label)[0] if label else ""
    if label == "":
        raise capture.RecordError("groundTruthData.data is empty")
    return event_id, label


# Each label's key probed on its own index, (endpoint, key) or (inference id, endpoint): the cost does not grow
# with the endpoint's history.
_LABELLED = present_keys(GroundTruth.event_id, GroundTruth.endpoint_id)
_CAPTURED_INFERENCE = present_keys(CaptureEvent.inference_id, CaptureEvent.endpoint_id, scope_leads=False)
_CAPTURED_EVENT = present_keys(CaptureEvent.event_id, CaptureEvent.endpoint_id)


def _judged_as(session: Session, ep: Endpoint) -> list[str]:
    """The problem types the endpoint's model-quality schedules judge its labels as."""
    return sorted(set(session.scalars(select(Baseline.problem_type).join(Schedule, Schedule.baseline_id == Baseline.id)
                                      .where(Schedule.endpoint == ep.name, Schedule.type == "ModelQuality",
                                             Baseline.problem_type.is_not(None)))))


def _readable_as(label: str, problem: str) -> None:
    """A label a model-quality run of ``problem`` can use (as `model_quality` reads it): one it cannot read fails
    every run of its window until it is replaced."""
    if problem == "MulticlassClassification":
        return
    try:
        number = float(label)
        usable = math.isfinite(number) and (problem != "BinaryClassification" or int(number) in (0, 1))
    except ValueError:
        usable = False
    if not usable:
        raise capture.RecordError(
            f"label {label!r} is not {'0 or 1' if problem == 'BinaryClassification' else 'a number'}, as this "
            f"endpoint's {problem} model-quality schedules read labels")


@dataclass(frozen=True)
class PreparedLabels:
    """A ground-truth upload parsed and checked (`prepare_ground_truth`, on a read session), to be stored by
    `commit_ground_truth` in a short write turn: parsing a large upload must not hold the turn capture waits for."""

    endpoint: str
    good: list[tuple[str, str, str]]   # (event id, label, the record as sent, as its line of the stored JSONL)
    rejected: list[dict[str, Any]]
    captured: frozenset[str]
    """The ids of ``good`` a capture was indexed under when the upload was read. Only the answer's ``unmatched``
    reads it (a label may come before its capture, and is joined when both are there), so it is probed here
    rather than in the write turn."""


def ingest_ground_truth(session: Session, store: ObjectStore, endpoint: str, body: bytes, content_type: str,
                        *, replace: bool = False, actor: Principal | None = None) -> dict[str, Any]:
    """Labels, stored hour-partitioned by arrival (as SageMaker does); unknown ids are kept and reported.

    A label already stored is a duplicate, unless ``replace``: then a different label replaces it (a correction),
    the labels it replaced are kept in the store and the replacement is audited, so results computed before stay
    explainable. Analyses and runs after that read the new label."""
    return commit_ground_truth(session, store, prepare_ground_truth(session, endpoint, body, content_type),
                               replace=replace, actor=actor)


def prepare_ground_truth(session: Session, endpoint: str, body: bytes, content_type: str) -> PreparedLabels:
    """The upload's labels, each readable as what the endpoint's schedules judge (422 if none is)."""
    ep = get_endpoint(session, endpoint)
    try:
        items = capture.split_body(body, content_type)
    except capture.RecordError as exc:
        raise Invalid(str(exc), fix="send SageMaker ground-truth records") from None
    rejected: list[dict[str, Any]] = []
    good: list[tuple[str, str, str]] = []
    problems = _judged_as(session, ep)
    for i, item in enumerate(items):
        try:
            if isinstance(item, capture.RecordError):
                raise item
            eid, label = _gt_label(item)
            for problem in problems:
                _readable_as(label, problem)
            try:   # what the row cannot hold (a NUL): this record refused, not the upload after its file is written
                check_column_value("label", GroundTruth.label.type, label)
            except Invalid as exc:
                raise capture.RecordError(str(exc)) from None
            good.append((eid, label, json.dumps(item, separators=(",", ":"))))
        except capture.RecordError as exc:
            rejected.append({"index": i, "reason": str(exc)})
    refuse_if_all_rejected(rejected, len(items), "ground-truth")
    ids = list({g[0] for g in good})
    captured = keys_present(session, _CAPTURED_INFERENCE, ep.id, ids) | keys_present(session, _CAPTURED_EVENT, ep.id,
                                                                                      ids)
    return PreparedLabels(ep.name, good, rejected, frozenset(captured))


LABEL_FILE_MAX = 64 * 1024 * 1024
"""The largest uploaded ground-truth file a run reads (it is read whole); SageMaker's hour folders hold files far
smaller."""


def label_files(store: ObjectStore, folder: str, since: dt.datetime) -> list[str]:
    """The files under ``folder`` (a job definition's GroundTruthS3Input) written at or after ``since``, oldest
    first (``since``: `definitions.label_import`; a file read twice is answered as duplicates)."""
    found = [(when, key) for key, when in store.listed(f"{folder}/")
             if when >= since and not key.endswith("/")]   # a "folder" marker (S3 consoles make them) holds no label
    return [key for _, key in sorted(found)]


def read_label_file(session: Session, store: ObjectStore, endpoint: str, key: str) -> PreparedLabels:
    """An uploaded ground-truth file (SageMaker's JSON Lines) read as an upload through the API is
    (`prepare_ground_truth`); Invalid naming the file when it is too large or holds no usable label."""
    if (size := store.size(key)) > LABEL_FILE_MAX:
        raise Invalid(f"ground-truth file {store.uri(key)} holds {size:,} bytes, more than the "
                      f"{LABEL_FILE_MAX:,} a run reads", fix="split it into smaller files in the same folder")
    try:
        return prepare_ground_truth(session, endpoint, store.get(key), "application/x-ndjson")
    except Invalid as exc:
        raise Invalid(f"ground-truth file {store.uri(key)}: {exc.detail}", fix=exc.fix) from None


def unreadable_labels(failures: list[DomainError]) -> Invalid:
    """The error of a run some of whose ground-truth files could not be read (the others were stored): a file that
    fails does not keep the files after it from being read."""
    shown = "; ".join(f.detail for f in failures[:3])
    return Invalid(f"{len(failures)} ground-truth file(s) could not be read: {shown}",
                   fix="correct or remove the files named (SageMaker's JSON Lines: groundTruthData and "
                       "eventMetadata.eventId per line); the others were stored")


def commit_ground_truth(session: Session, store: ObjectStore, prep: PreparedLabels, *, replace: bool = False,
                        actor: Principal | None = None) -> dict[str, Any]:
    """Store a prepared upload's new (and, with ``replace``, corrected) labels: its file and its rows."""
    ep = get_endpoint(session, prep.endpoint)
    good, rejected = prep.good, prep.rejected
    lock_endpoint(session, ep)
    ids = list({g[0] for g in good})
    stored = _stored_labels(session, ep, ids) if replace else {}
    known = set(stored) if replace else keys_present(session, _LABELLED, ep.id, ids)
    fresh: list[tuple[str, str, str]] = []
    changed: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for eid, label, raw in good:
        if eid in seen or (eid in known and stored.get(eid, label) == label):
            continue
        seen.add(eid)
        (changed if eid in known else fresh).append((eid, label, raw))
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    unmatched = [eid for eid, _, _ in fresh if eid not in prep.captured]
    if fresh or changed:
        key = f"groundtruth/{ep.name}/{hour:%Y/%m/%d/%H}/{new_id()}.jsonl"
        store.put(key, "".join(line + "\n" for _, _, line in fresh + changed).encode(), "application/jsonl")
        _LABEL_ROWS.execute(session, [(pk, eid, label, hour, key, now) for pk, (eid, label, _)
                                      in zip(ids_from(new_id(), len(fresh)), fresh, strict=True)], endpoint_id=ep.id)
        if changed:
            _replace(session, store, ep, {eid: (stored[eid], label) for eid, label, _ in changed}, key, hour, actor)
        session.flush()
    return {"accepted": len(fresh), "replaced": len(changed), "duplicates": len(good) - len(fresh) - len(changed),
            "rejected": rejected, "unmatched": len(unmatched), "unmatched_ids": unmatched[:100]}


# The label rows without an ORM object each (`BulkRows`): 10,000 labels held the write turn, which capture ingest
# waits for, for 0.8 s on SQLite, two thirds of it building and flushing the objects.
_LABEL_ROWS = BulkRows(GroundTruth.__table__, ("id", "event_id", "label", "arrived_hour", "object_key", "created_at"),
                       constants=("endpoint_id",))


def _stored_labels(session: Session, ep: Endpoint, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in chunks(ids):
        rows = session.execute(select(GroundTruth.event_id, GroundTruth.label)
                               .where(GroundTruth.endpoint_id == ep.id, GroundTruth.event_id.in_(chunk)))
        found.update((eid, label) for eid, label in rows)
    return found


AUDITED_IDS = 100


def _replace(session: Session, store: ObjectStore, ep: Endpoint, labels: dict[str, tuple[str, str]], key: str,
             hour: dt.datetime, actor: Principal | None) -> None:
    """Stored labels → new ones (``labels``: id → (old, new)). Every old label goes to a file beside the new
    records, and the audit event holds that file's SHA-256, so the chain vouches for what was replaced."""
    superseded = "".join(json.dumps({"eventId": eid, "label": old}, separators=(",", ":")) + "\n"
                         for eid, (old, _) in labels.items()).encode()
    kept = f"groundtruth-replaced/{ep.name}/{hour:%Y/%m/%d/%H}/{new_id()}.jsonl"
    store.put(kept, superseded, "application/jsonl")
    table = cast(Table, GroundTruth.__table__)
    session.execute(update(table).where(table.c.endpoint_id == ep.id, table.c.event_id == bindparam("eid"))
                    .values(label=bindparam("new"), arrived_hour=hour, object_key=key),
                    [{"eid": eid, "new": new} for eid, (_, new) in labels.items()])
    shown = list(labels.items())[:AUDITED_IDS]
    audit.record(session, actor=actor.name if actor else "system", action="ground_truth.replaced",
                 subject_type="endpoint", subject_id=ep.name,
                 before={"labels": {eid: old for eid, (old, _) in shown}, "object_key": kept,
                         "sha256": hashlib.sha256(superseded).hexdigest()},
                 after={"replaced": len(labels), "labels": {eid: new for eid, (_, new) in shown}, "object_key": key})


def window_labels(session: Session, ep: Endpoint, batches: list[CaptureBatch]) -> dict[str, str]:
    """Key → label for every captured row of ``batches`` that has one, the key being its inferenceId (else
    eventId). Joined in the database through the capture index, whenever the label arrived: the local and the
    cluster paths both take their labels here, so a window's labelled rows are the same on either."""
    key = func.coalesce(CaptureEvent.inference_id, CaptureEvent.event_id)
    labels: dict[str, str] = {}
    ids = [b.id for b in batches]
    for chunk in chunks(ids):
        rows = session.execute(
            select(GroundTruth.event_id, GroundTruth.label)
            .join(CaptureEvent, and_(CaptureEvent.endpoint_id == GroundTruth.endpoint_id, GroundTruth.event_id == key))
            .where(GroundTruth.endpoint_id == ep.id, CaptureEvent.batch_id.in_(chunk)))
        labels.update((k, v) for k, v in rows)
    # Compaction repoints a batch's events and deletes its row in one transaction, and a batch id never comes
    # back: if every listed batch is still there now, the label query (before) saw their events too.
    present = batches_present(session, ids)
    if present != len(ids):
        raise PartitionGone(f"{len(ids) - present} of the window's capture batches were merged while it was read")
    return labels


def labelled_window(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime,
                    end: dt.datetime) -> pd.DataFrame:
    """Captured rows with inference time in [start, end) as a DataFrame, with `__label` holding the ground
    truth joined by inferenceId (else eventId), or None where no label has arrived."""
    def read() -> pd.DataFrame:
        batches = window_batches(session, ep, start, end)
        table = window_table(session, store, ep, start, end, keep_keys=True, batches=batches)
        if table is None or table.num_rows == 0:
            return pd.DataFrame()
        df = table.to_pandas()
        df["__key"] = df["__inference_id"].where(df["__inference_id"].notna(), df["__event_id"])
        df["__label"] = df["__key"].map(window_labels(session, ep, batches))
        return df

    return reread_if_compacted(session, read)


@dataclass(frozen=True)
class ClusterWindow:
    """A captured window the compute cluster summarises: its batches, the cluster, and its labels (key → label,
    ``window_labels``), looked up once however many passes read the window."""

    start: dt.datetime
    end: dt.datetime
    batches: list[CaptureBatch]
    cluster: compute.Cluster
    labels: dict[str, str]


def cluster_window(session: Session, ep: Endpoint, start: dt.datetime, end: dt.datetime) -> ClusterWindow | None:
    """The window of [start, end) for the compute cluster, or None when this process computes it
    (MLGOV_COMPUTE=local, fewer rows than MLGOV_COMPUTE_MIN_ROWS, or nothing captured)."""
    batches = window_batches(session, ep, start, end)
    cluster = compute.cluster_for(sum(b.records for b in batches)) if batches else None
    if cluster is None:
        return None
    return ClusterWindow(start, end, batches, cluster, window_labels(session, ep, batches))


def summarise_window(store: ObjectStore, window: ClusterWindow, columns: frozenset[str] | None,
                     fn: compute.Summariser, *, every: bool = False) -> Any:
    """``fn(table)`` per row group of the window's captured batches, merged on the cluster: the labelled rows, the
    label in ``__label`` (``every``: all captured rows, ``__label`` null where none arrived; ``columns``: the others
    read, None for all). The labels go to every worker once, as key → label; the workers join them to the rows
    they read, and the rows never come here."""
    return window.cluster.summarise(store, [compute.Part(b.parquet_key) for b in window.batches],
                                    compute.Read(columns, window.start, window.end, hidden=KEYS),
                                    functools.partial(compute.labelled, fn=fn, every=every), broadcast=window.labels)


def labelled_summary(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime, end: dt.datetime,
                     columns: frozenset[str] | None, fn: compute.Summariser, *, every: bool = False) -> Any:
    """``summarise_window`` of the window's ``cluster_window``, or None when this process computes it. The labels
    are the local path's (``window_labels``), so both paths see the same labelled rows."""
    def read() -> Any:
        window = cluster_window(session, ep, start, end)
        return None if window is None else summarise_window(store, window, columns, fn, every=every)

    return reread_if_compacted(session, read)
