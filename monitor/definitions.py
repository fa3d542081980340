"""Monitoring job definitions and baselining jobs (service layer: flushes, never commits).

A job definition names what a schedule runs: an endpoint, a baseline of its kind, the window offsets and the
folder of the object store its reports are published to (SageMaker's DataQuality/ModelQuality job definitions).
A schedule made from one (`schedule_from_definition`) is an ordinary schedule: the scheduler, manual runs,
alerts and the native API treat it like any other.

A baselining job is SageMaker's model-monitor analyzer run by mlgov's own engine: the dataset is read from the
object store, the baseline computed (a baseline row, visible natively, with its lineage), and statistics.json and
constraints.json are written to the job's output folder. It runs in the caller's transaction; a dataset that
cannot be read or profiled is a Failed job with the reason, not an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mlgov import audit, auth
from mlgov.auth import Principal
from mlgov.db import icontains, new_id, paginate, sort_order, utcnow
from mlgov.errors import Conflict, DomainError, Invalid, NotFound
from mlgov.storage import SYSTEM_FOLDERS, ObjectStore, system_folder, unclean_segment
from monitor import schedules, service
from monitor.orm import JobDefinition, ProcessingJob, Schedule

# --- object-store URIs -------------------------------------------------------------------------------------------


def store_key(store: ObjectStore, uri: str, what: str) -> str:
    """The object-store key (or folder) of ``uri``; Invalid naming the store when it lies elsewhere."""
    key = store.key_of(uri.rstrip("/"))
    if key is None:
        raise Invalid(f"{what} {uri} is outside mlgov's object store ({store.root_uri}…)",
                      fix=f"use a URI under {store.root_uri}" if store.root_uri.startswith("s3://") else
                      "SageMaker's API takes s3:// URIs only, and this server keeps its files in a local folder: "
                      "run it on an S3 store (MLGOV_STORE_URL=s3://bucket/prefix) and use URIs under that")
    if (segment := unclean_segment(key)) is not None:
        # a store that normalises paths reads prefix//baselines/x as baselines/x: outside a check, inside a folder
        raise Invalid(f"{what} {uri} has an {'empty' if segment == '' else repr(segment)} path segment, which "
                      "object stores read differently", fix="write the URI without '//', '/./' or '/../'")
    return key


def output_key(store: ObjectStore, uri: str, what: str) -> str:
    """`store_key` of a folder a job will write to: never one of mlgov's own folders."""
    key = store_key(store, uri, what)
    if (folder := system_folder(key)) is not None:
        raise Invalid(f"{what} {uri} lies in {folder}/, where mlgov keeps its own files (results and evidence "
                      "that change only through their audited operations)",
                      fix=f"write to a folder of your own under {store.root_uri}, outside "
                          + ", ".join(f"{f}/" for f in sorted(SYSTEM_FOLDERS)))
    return key


def label_key(store: ObjectStore, uri: str, what: str) -> str:
    """`store_key` of a folder the user uploads ground-truth files to: never one of mlgov's own folders, whose files
    are not labels (and whose ``groundtruth/`` copies mlgov writes itself)."""
    key = store_key(store, uri, what)
    if (folder := system_folder(key)) is not None:
        raise Invalid(f"{what} {uri} lies in {folder}/, where mlgov keeps its own files, not labels you upload",
                      fix=f"upload ground truth to a folder of your own under {store.root_uri}")
    return key


def check_label_source(session: Session, store: ObjectStore, uri: str, endpoint: str, actor: Principal,
                       what: str) -> None:
    """A job definition's GroundTruthS3Input: a folder of labels (`label_key`), and ``actor`` may feed labels to the
    endpoint. Every run stores that folder's labels on the endpoint, and a planted label makes the true one a
    duplicate, so a publisher may read labels only into an endpoint they created (an admin into any); uploads
    through the API need the ingest role."""
    label_key(store, uri, what)
    auth.require_creator(session, service.get_endpoint(session, endpoint).created_by, actor,
                         f"endpoint {endpoint!r}", f"read its ground truth from {what}")


def ground_truth_prefix(spec: Mapping[str, Any]) -> str | None:
    """The ``GroundTruthS3Input.S3Uri`` of a job definition as SageMaker's API gave it (ModelQuality and ModelBias
    job inputs have one), or None."""
    for member, value in spec.items():
        if member.endswith("JobInput") and isinstance(value, Mapping):
            uri = (value.get("GroundTruthS3Input") or {}).get("S3Uri")
            if uri:
                return str(uri)
    return None


def ground_truth_source(session: Session, store: ObjectStore, sched: Schedule) -> tuple[str, str] | None:
    """(endpoint, store folder) a schedule made from a job definition reads uploaded label files from, as SageMaker's
    merge job reads them from ``GroundTruthS3Input``; None for a schedule without one."""
    if not sched.job_definition:
        return None
    row = session.scalar(select(JobDefinition).where(JobDefinition.name == sched.job_definition))
    uri = ground_truth_prefix(row.spec or {}) if row is not None else None
    return None if uri is None else (sched.endpoint, label_key(store, uri, "GroundTruthS3Input.S3Uri"))


LABELS_SETTLE = dt.timedelta(minutes=15)
"""A listing may miss a file whose upload began before it and ended after (S3 dates an object by the start of its
upload) and the store's clock may differ from this one: the next import starts this much before the last listing
began (the files read twice are duplicates)."""


@dataclass(frozen=True)
class LabelImport:
    """What one run reads from its schedule's GroundTruthS3Input: the files of ``folder`` written at or after
    ``since``; ``began`` is when the listing began (taken before it)."""

    schedule_id: str
    endpoint: str
    folder: str
    since: dt.datetime
    began: dt.datetime


def label_import(session: Session, store: ObjectStore, sched: Schedule, window_start: dt.datetime, *,
                 manual: bool = False) -> LabelImport | None:
    """The files a run of ``sched`` over a window beginning at ``window_start`` reads (None: no GroundTruthS3Input):
    from where the schedule's last import of its folder left off, so files written while the schedule was stopped
    are read and a window longer than the schedule's period (or a delayed one) does not read its files again on
    each run. From the window's start when the folder was never read, and for a ``manual`` run whose window begins
    earlier (a backfill reads what its window may need)."""
    source = ground_truth_source(session, store, sched)
    if source is None:
        return None
    endpoint, folder = source
    since = window_start
    if sched.labels_folder == folder and sched.labels_read_through is not None:
        through = sched.labels_read_through   # UTC-aware as read (UTCDateTime)
        since = min(since, through) if manual else through
    return LabelImport(sched.id, endpoint, folder, since, utcnow())


def manual_label_import(session: Session, store: ObjectStore, name: str, start: dt.datetime, end: dt.datetime,
                        actor: Principal) -> LabelImport | None:
    """What a manual run of schedule ``name`` over [start, end) reads first; its window checked before."""
    sched = schedules.runnable(session, name, actor)
    schedules.check_run_window(start, end)
    return label_import(session, store, sched, start, manual=True)


def labels_imported(session: Session, store: ObjectStore, done: LabelImport) -> None:
    """Remember where the schedule's next import starts: `LABELS_SETTLE` before ``done``'s listing began. Never
    moved back by a run that began earlier and ended later, and not at all when the schedule reads another folder
    by now (a slow run of the former folder would make the next one read the new folder from its window's start,
    skipping what was written there meanwhile). A file that failed is read again only by a run whose reach it is
    in (the margin, a backfill)."""
    sched = session.get(Schedule, done.schedule_id)
    if sched is None or (source := ground_truth_source(session, store, sched)) is None or source[1] != done.folder:
        return
    through = done.began - LABELS_SETTLE
    behind = or_(Schedule.labels_folder.is_(None), Schedule.labels_folder != done.folder,
                 Schedule.labels_read_through.is_(None), Schedule.labels_read_through < through)
    session.execute(update(Schedule).where(Schedule.id == done.schedule_id, behind)
                    .values(labels_folder=done.folder, labels_read_through=through))


def read_objects(store: ObjectStore, uri: str, what: str) -> list[bytes]:
    """The object at ``uri``, or every object under it when it names a folder (SageMaker's S3Prefix), in key
    order; Invalid when there is none."""
    key = store_key(store, uri, what)
    if key and store.exists(key):
        return [store.get(key)]
    keys = sorted(k for k in store.list(f"{key}/" if key else "") if not k.endswith("/"))
    if not keys:
        raise Invalid(f"{what} {uri} holds no object", fix="upload the file there first")
    return [store.get(k) for k in keys]


def import_baseline(session: Session, store: ObjectStore, *, statistics_uri: str, constraints_uri: str,
                    name: str | None, actor: Principal) -> service.Baseline:
    """A data-quality baseline from SageMaker's statistics.json and constraints.json in the object store."""
    return service.import_baseline(session, store, statistics=one_object(store, statistics_uri, "StatisticsResource"),
                                   constraints=one_object(store, constraints_uri, "ConstraintsResource"), name=name,
                                   actor=actor).record(session)


def one_object(store: ObjectStore, uri: str, what: str) -> bytes:
    found = read_objects(store, uri, what)
    if len(found) != 1:
        raise Invalid(f"{what} {uri} must name one file, not a folder of {len(found)}", fix="point it at the file")
    return found[0]


def import_quality_baseline(session: Session, store: ObjectStore, *, constraints_uri: str, problem_type: str,
                            prediction: str | None, probability: str | None, threshold: float, name: str | None,
                            actor: Principal) -> service.Baseline:
    """A model-quality baseline from SageMaker's constraints.json and the statistics.json beside it."""
    constraints = one_object(store, constraints_uri, "ConstraintsResource")
    statistics_uri = f"{constraints_uri.rsplit('/', 1)[0]}/statistics.json"
    statistics = one_object(store, statistics_uri, "the statistics.json beside the constraints")
    return service.import_quality_baseline(session, store, constraints=constraints, statistics=statistics,
                                           problem_type=problem_type, prediction=prediction, probability=probability,
                                           threshold=threshold, name=name, actor=actor).record(session)


# --- job definitions -------------------------------------------------------------------------------------------


def create_definition(session: Session, store: ObjectStore, *, name: str, monitoring_type: str, endpoint: str,
                      baseline_id: str, output_uri: str, window_start: str, window_end: str, spec: dict[str, Any],
                      actor: Principal) -> JobDefinition:
    """A job definition whose baseline is of its type and fits its endpoint (as a schedule's must)."""
    output_key(store, output_uri, "the output URI")
    if session.scalar(select(JobDefinition.id).where(JobDefinition.name == name)) is not None:
        raise Conflict(f"monitoring job definition {name!r} already exists", fix="pick another name or delete it")
    service.get_endpoint(session, endpoint)
    schedules.check_baseline(session, monitoring_type, baseline_id, endpoint)
    schedules.check_window(window_start, window_end)
    row = JobDefinition(id=new_id(), name=name, type=monitoring_type, endpoint=endpoint, baseline_id=baseline_id,
                        output_uri=output_uri, window_start=window_start, window_end=window_end, spec=spec,
                        created_by=actor.name, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="job_definition.created", subject_type="job_definition",
                 subject_id=name, after={"type": monitoring_type, "endpoint": endpoint, "baseline_id": baseline_id,
                                         "output_uri": output_uri})
    return row


def get_definition(session: Session, name: str, monitoring_type: str | None = None) -> JobDefinition:
    row = session.scalar(select(JobDefinition).where(JobDefinition.name == name))
    if row is None or (monitoring_type is not None and row.type != monitoring_type):
        raise NotFound(f"no {monitoring_type or 'monitoring'} job definition named {name!r}",
                       fix="list them, or create it first")
    return row


def list_definitions(session: Session, *, monitoring_type: str, endpoint: str | None, name_contains: str | None,
                     created_after: dt.datetime | None, created_before: dt.datetime | None, sort: str = "-created",
                     limit: int, offset: int, after: Sequence[Any] | None = None,
                     ) -> tuple[list[JobDefinition], int]:
    stmt = select(JobDefinition).where(JobDefinition.type == monitoring_type)
    where = [JobDefinition.endpoint == endpoint if endpoint else None, icontains(JobDefinition.name, name_contains),
             JobDefinition.created_at > created_after if created_after else None,
             JobDefinition.created_at < created_before if created_before else None]
    return paginate(session, stmt, *definition_order(sort), limit=limit, offset=offset, where=where, after=after)


def definition_order(sort: str = "-created") -> tuple[Any, ...]:
    """The ORDER BY of `list_definitions` by ``name`` or ``created`` (``-``: descending); a keyset page's cursor is
    a row's values under it."""
    return sort_order(sort, {"name": JobDefinition.name, "created": JobDefinition.created_at}), JobDefinition.id


def delete_definition(session: Session, name: str, monitoring_type: str, actor: Principal) -> None:
    row = get_definition(session, name, monitoring_type)
    auth.require_creator(session, row.created_by, actor, f"job definition {name!r}", "delete it")
    users = list(session.scalars(select(Schedule.name).where(Schedule.job_definition == name)))
    if users:
        raise Conflict(f"job definition {name!r} is used by monitoring schedule(s) {', '.join(users)}",
                       fix="delete those schedules first")
    session.delete(row)
    session.flush()
    audit.record(session, actor=actor.name, action="job_definition.deleted", subject_type="job_definition",
                 subject_id=name, before={"type": row.type, "endpoint": row.endpoint})


def schedule_from_definition(session: Session, store: ObjectStore, *, name: str, definition: JobDefinition,
                             expression: str, window_start: str | None, window_end: str | None,
                             actor: Principal) -> Schedule:
    """A schedule running ``definition`` (its window unless the schedule gives its own)."""
    return schedules.create(session, name=name, endpoint=definition.endpoint, monitoring_type=definition.type,
                            expression=expression, baseline_id=definition.baseline_id,
                            window_start=window_start or definition.window_start,
                            window_end=window_end or definition.window_end, drift=None, alerting=None, actor=actor,
                            output_uri=definition.output_uri, job_definition=definition.name)


def redefine_schedule(session: Session, name: str, *, definition: JobDefinition, expression: str,
                      window_start: str | None, window_end: str | None, actor: Principal) -> Schedule:
    """Point a schedule at a job definition (of its own type) and a new expression and window."""
    sched = schedules.get(session, name)
    if definition.type != sched.type:
        raise Invalid(f"schedule {name!r} monitors {sched.type}; job definition {definition.name!r} is "
                      f"{definition.type}", fix="create a new schedule for another monitoring type")
    if definition.endpoint != sched.endpoint:
        raise Invalid(f"schedule {name!r} monitors endpoint {sched.endpoint!r}; job definition "
                      f"{definition.name!r} names {definition.endpoint!r}",
                      fix="create a new schedule for another endpoint")
    fields: dict[str, Any] = {"expression": expression, "baseline_id": definition.baseline_id,
                              "window_start": window_start or definition.window_start,
                              "window_end": window_end or definition.window_end,
                              "output_uri": definition.output_uri, "job_definition": definition.name}
    return schedules.update(session, name, {k: v for k, v in fields.items() if getattr(sched, k) != v}, actor)


# --- baselining jobs ---------------------------------------------------------------------------------------------


def run_baselining_job(session: Session, store: ObjectStore, *, name: str, dataset_uri: str, fmt: str,
                       header: bool, output_uri: str, spec: dict[str, Any], actor: Principal,
                       quality: dict[str, Any] | None = None) -> Callable[[Session], ProcessingJob]:
    """Profile the dataset at ``dataset_uri`` (an object, or every object of a folder: CSV files each with the
    same header, or one Parquet file) into a baseline, and write statistics.json and constraints.json to
    ``output_uri``. With ``quality`` (problem_type, label, prediction, probability, threshold) the baseline is a
    ModelQuality one, as ModelQualityMonitor.suggest_baseline asks.

    Profiling only reads the database (it may take minutes): the job's row, Completed with its baseline or Failed
    with the reason, is written by the function returned, in the caller's write transaction."""
    out = output_key(store, output_uri, "the output URI")
    store_key(store, dataset_uri, "the dataset URI")
    _name_free(session, name)
    started = utcnow()
    finished: service.FinishedBaseline | None = None
    failure: str | None = None
    try:
        parts = read_objects(store, dataset_uri, "the dataset")
        if fmt == "parquet" and len(parts) > 1:
            raise Invalid(f"{dataset_uri} holds {len(parts)} Parquet files; mlgov profiles one",
                          fix="point the input at one Parquet file")
        data = parts[0] if fmt == "parquet" else _joined_csv(parts, header)
        if quality is None:
            finished = service.create_baseline(session, store, data=data, fmt=fmt, header=header, name=name,
                                               dataset_uri=dataset_uri, actor=actor)
        else:
            finished = service.create_quality_baseline(session, store, data=data, fmt=fmt, header=header,
                                                       name=name, actor=actor, **quality)
    except DomainError as exc:
        finished, failure = None, exc.detail

    def record(writer: Session) -> ProcessingJob:
        _name_free(writer, name)   # again: a job of this name recorded meanwhile keeps its output, not ours
        if finished is not None:
            for file in ("statistics.json", "constraints.json"):
                store.put(f"{out}/{file}".lstrip("/"), store.get(f"{service.baseline_prefix(finished.id)}/{file}"),
                          "application/json")
        job = ProcessingJob(id=new_id(), name=name, status="Failed", failure_reason=failure, dataset_uri=dataset_uri,
                            output_uri=output_uri, spec=spec, created_by=actor.name, created_at=started)
        writer.add(job)
        writer.flush()
        if finished is not None:
            job.status, job.baseline_id = "Completed", finished.record(writer).id
        job.ended_at = utcnow()
        writer.flush()
        audit.record(writer, actor=actor.name, action="processing_job.ended", subject_type="processing_job",
                     subject_id=name, after={"status": job.status, "baseline_id": job.baseline_id,
                                             "dataset_uri": dataset_uri, "output_uri": output_uri})
        return job

    return record


def _name_free(session: Session, name: str) -> None:
    if session.scalar(select(ProcessingJob.id).where(ProcessingJob.name == name)) is not None:
        raise Conflict(f"processing job {name!r} already exists", fix="pick another job name")


def _joined_csv(parts: list[bytes], header: bool) -> bytes:
    """Several CSV objects as one: the first keeps its header line, the others lose theirs."""
    chunks = [parts[0].rstrip(b"\r\n")]
    for part in parts[1:]:
        body = part.split(b"\n", 1)[1] if header and b"\n" in part else (b"" if header else part)
        if body.strip():
            chunks.append(body.rstrip(b"\r\n"))
    return b"\n".join(chunks) + b"\n"


def get_processing_job(session: Session, name: str) -> ProcessingJob:
    row = session.scalar(select(ProcessingJob).where(ProcessingJob.name == name))
    if row is None:
        raise NotFound(f"no processing job named {name!r}", fix="list them, or check the name")
    return row


def list_processing_jobs(session: Session, *, name_contains: str | None, status: str | None,
                         created_after: dt.datetime | None, created_before: dt.datetime | None,
                         sort: str = "-created", limit: int, offset: int) -> tuple[list[ProcessingJob], int]:
    """A page of processing jobs, by ``name``, ``created`` or ``status`` (``-``: descending)."""
    where = [icontains(ProcessingJob.name, name_contains), ProcessingJob.status == status if status else None,
             ProcessingJob.created_at > created_after if created_after else None,
             ProcessingJob.created_at < created_before if created_before else None]
    order = sort_order(sort, {"name": ProcessingJob.name, "created": ProcessingJob.created_at,
                              "status": ProcessingJob.status})
    return paginate(session, select(ProcessingJob), order, ProcessingJob.id, limit=limit, offset=offset, where=where)
