"""OpenLineage events in: runs become actions, jobs contexts, datasets artifacts (``{namespace}/{name}``).

Shapes follow the OpenLineage 2-0-2 schema: RunEvent (required: eventTime, run.runId, job.namespace, job.name,
producer), and the static-metadata JobEvent (a job and its datasets, no run) and DatasetEvent (one dataset).
Unknown keys are kept, as the spec allows custom facets.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from sqlalchemy.orm import Session

from lineage import service
from lineage.orm import Entity
from lineage.schemas import TYPE_PATTERN, properties_size, properties_size_problem
from mlgov import audit
from mlgov.auth import Principal
from mlgov.db import as_utc
from mlgov.errors import Invalid
from mlgov.types import Timestamp

STATUS = {"START": "InProgress", "RUNNING": "InProgress", "COMPLETE": "Completed", "FAIL": "Failed",
          "ABORT": "Stopped", "OTHER": None}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class OLParentRun(_Open):
    runId: uuid.UUID


class OLParentJob(_Open):
    namespace: str = Field(min_length=1, max_length=1024)
    name: str = Field(min_length=1, max_length=1024)


class OLParent(_Open):
    """OpenLineage's ParentRunFacet: the run that spawned this one (an Airflow DAG run for its task runs)."""

    run: OLParentRun
    job: OLParentJob


class OLRunFacets(_Open):
    parent: OLParent | None = None


class OLRun(_Open):
    runId: uuid.UUID
    facets: OLRunFacets = Field(default_factory=OLRunFacets)


class OLJob(_Open):
    namespace: str = Field(min_length=1, max_length=1024)
    name: str = Field(min_length=1, max_length=1024)
    facets: dict[str, Any] = Field(default_factory=dict)


class OLDataset(_Open):
    namespace: str = Field(min_length=1, max_length=1023, description="with the name, the artifact's URI (≤ 2048)")
    name: str = Field(min_length=1, max_length=1024)
    facets: dict[str, Any] = Field(default_factory=dict)
    inputFacets: dict[str, Any] = Field(default_factory=dict)
    outputFacets: dict[str, Any] = Field(default_factory=dict)


class _Event(_Open):
    eventTime: Timestamp
    producer: str = Field(min_length=1, max_length=2048)
    schemaURL: str | None = None


class _JobDatasets(_Event):
    job: OLJob
    inputs: list[OLDataset] = Field(default_factory=list, max_length=1000)
    outputs: list[OLDataset] = Field(default_factory=list, max_length=1000)


class RunEvent(_JobDatasets):
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = None
    run: OLRun


class JobEvent(_JobDatasets):
    """A job's static lineage (what it reads and writes), sent without a run."""

    # what tells the events apart (`_event_kind`), stated in the schema so that exactly one of them matches a body
    model_config = ConfigDict(json_schema_extra={"not": {"anyOf": [{"required": ["run"]}, {"required": ["dataset"]}]}})


class DatasetEvent(_Event):
    """A dataset's metadata (its facets), sent without a run."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["run"]}})
    dataset: OLDataset


def _event_kind(body: Any) -> str | None:
    """Which event a body is, by the member only it has (the spec's events carry no type tag): an object with none
    of them is read as a RunEvent, so its errors name what a RunEvent lacks; what is no object, none."""
    if isinstance(body, dict):
        if "run" in body:
            return "RunEvent"
        if "dataset" in body:
            return "DatasetEvent"
        if "job" in body:
            return "JobEvent"
        return "RunEvent"
    if isinstance(body, BaseModel):
        return type(body).__name__
    return None


Event = Annotated[Annotated[RunEvent, Tag("RunEvent")] | Annotated[JobEvent, Tag("JobEvent")]
                  | Annotated[DatasetEvent, Tag("DatasetEvent")], Discriminator(_event_kind)]


def dataset_uri(ds: OLDataset) -> str:
    return f"{ds.namespace}/{ds.name}"


NAME_LIMIT = 512   # lineage_entities.name


def _label(text: str) -> str:
    """A display name that fits the column; the full name stays in the URI, the key and the properties."""
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT - 1] + "…"


def _bounded(props: dict[str, Any], where: str) -> dict[str, Any]:
    """Facets are kept in an entity's properties, so they take no more than the native API lets a user store."""
    problem = properties_size_problem(properties_size(props))
    if problem:
        raise Invalid(f"{where} would {problem}", fix="send smaller facets (a facet describes the "
                      "data or the job; it does not carry it)", field=where)
    return props


def _merged_facets(stored: dict[str, Any] | None, sent: dict[str, Any]) -> dict[str, Any]:
    """Facets of later events add to and replace those sent before, by name; ``{"_deleted": true}`` removes one
    (the spec's way to delete a facet)."""
    facets = dict(stored or {})
    for name, value in sent.items():
        if isinstance(value, dict) and value.get("_deleted") is True:
            facets.pop(name, None)
        else:
            facets[name] = value
    return facets


def _run_key(namespace: str, name: str, run_id: uuid.UUID) -> str:
    return f"openlineage:{namespace}/{name}:{run_id}"


def _job_context(session: Session, namespace: str, name: str, principal: Principal) -> Entity:
    ctx, _ = service.ensure_context(session, context_type="Job", name=_label(f"{namespace}/{name}"),
                                    key=f"openlineage-job:{namespace}/{name}", actor=principal.name, system=False,
                                    owner=principal.owner)
    return ctx


def _datasets(session: Session, ev: _JobDatasets, node: Entity, principal: Principal) -> tuple[list[str], list[str]]:
    """The event's datasets as artifacts, inputs ContributedTo ``node`` and outputs Produced by it."""
    ins = []
    for i, ds in enumerate(ev.inputs):
        art, _ = _dataset(session, ds, {**ds.facets, **ds.inputFacets}, principal, f"inputs.{i}.facets")
        service.link(session, art, node, "ContributedTo", actor=principal.name, system=False, owner=principal.owner)
        ins.append(art.id)
    outs = []
    for i, ds in enumerate(ev.outputs):
        art, _ = _dataset(session, ds, {**ds.facets, **ds.outputFacets}, principal, f"outputs.{i}.facets")
        service.link(session, node, art, "Produced", actor=principal.name, system=False, owner=principal.owner)
        outs.append(art.id)
    return ins, outs


def _dataset(session: Session, ds: OLDataset, facets: dict[str, Any], principal: Principal,
             where: str) -> tuple[Entity, bool]:
    """The dataset's artifact, and whether ``facets`` were kept on it (`_keep_facets`)."""
    art, _ = service.ensure_artifact(session, artifact_type="Dataset", uri=dataset_uri(ds), name=_label(ds.name),
                                     actor=principal.name, system=False, owner=principal.owner)
    return art, _keep_facets(art, facets, principal, where)


def _keep_facets(ent: Entity, facets: dict[str, Any], principal: Principal, where: str) -> bool:
    """Merge ``facets`` into the entity's ``openlineage_facets`` (`_merged_facets`, bounded) if it is the caller's
    to annotate; whether they were kept."""
    if not facets or not service.changeable(ent, principal):
        return False
    props = ent.properties or {}
    ent.properties = _bounded(
        {**props, "openlineage_facets": _merged_facets(props.get("openlineage_facets"), facets)}, where)
    return True


def ingest(session: Session, ev: RunEvent | JobEvent | DatasetEvent, principal: Principal) -> dict[str, Any]:
    if isinstance(ev, RunEvent):
        return _ingest_run(session, ev, principal)
    if isinstance(ev, JobEvent):
        return _ingest_job(session, ev, principal)
    return _ingest_dataset(session, ev, principal)


def _ingest_run(session: Session, ev: RunEvent, principal: Principal) -> dict[str, Any]:
    """Apply one RunEvent idempotently; later events of the same run update the same action. What it records is
    the caller's (not mlgov's own evidence), so its creator may change it — and only they: an event naming
    another user's run, or a dataset mlgov recorded, may link to it but not rewrite it."""
    actor, who = principal.name, principal.owner
    key = _run_key(ev.job.namespace, ev.job.name, ev.run.runId)
    existing = service.find_action(session, key)
    if existing is not None and _placeholder(existing) and not existing.system:
        # known only from a child's parent facet (perhaps sent with another key, Spark's under Airflow's DAG run):
        # the run's own producer takes it over
        existing.created_by, existing.creator_owner = actor, who
    elif existing is not None:
        service.may_change(existing, f"the run {ev.run.runId} of {ev.job.namespace}/{ev.job.name}", principal,
                           "update")
    when = ev.eventTime if ev.eventTime.tzinfo else ev.eventTime.replace(tzinfo=dt.UTC)
    status = STATUS[ev.eventType] if ev.eventType else None
    terminal = ev.eventType in ("COMPLETE", "FAIL", "ABORT")
    if existing is not None and existing.end_time is not None and (
            not terminal or when < (as_utc(existing.end_time) or when)):
        # events arrive out of order (OpenLineage says so): a run that ended stays ended, as its latest terminal
        # event says; an earlier START still gives it its start time
        status = None
    job_type = (ev.job.facets.get("jobType") or {}).get("jobType") if isinstance(
        ev.job.facets.get("jobType"), dict) else None
    if not (isinstance(job_type, str) and re.fullmatch(TYPE_PATTERN, job_type)):
        job_type = None   # a facet value that is no lineage type name (e.g. 200 characters) leaves the default
    else:   # "Approval" here would draw a forged approval beside a version, as POST /lineage/actions refuses
        service.user_type("action", job_type)
    props = {"openlineage": {"namespace": ev.job.namespace, "job": ev.job.name, "run_id": str(ev.run.runId),
                             "producer": ev.producer, "last_event_type": ev.eventType,
                             "job_facets": ev.job.facets,
                             "run_facets": ev.run.facets.model_dump(mode="json", exclude_unset=True)}}
    _bounded({**(existing.properties or {}), **props} if existing is not None else props, "run.facets")
    action, created = service.ensure_action(
        session, action_type=str(job_type or "Job"), key=key,
        name=_label(ev.job.name), status=status,
        start_time=when if ev.eventType in ("START", "RUNNING") else None,
        end_time=when if terminal and status is not None else None,
        properties=props, actor=actor, system=False, owner=who)
    if job_type and existing is not None and existing.type == "Job" and job_type != "Job":
        action.type = job_type   # first known only from a child's parent facet, now from its own event
    job_ctx = _job_context(session, ev.job.namespace, ev.job.name, principal)
    service.link(session, action, job_ctx, "AssociatedWith", actor=actor, system=False, owner=who)
    parent = _link_parent(session, action, ev.run.facets.parent, principal)
    ins, outs = _datasets(session, ev, action, principal)
    session.flush()
    audit.record(session, actor=actor, action="lineage.openlineage_event", subject_type="lineage",
                 subject_id=action.id, after={"event_type": ev.eventType, "job": f"{ev.job.namespace}/{ev.job.name}",
                                              "run_id": str(ev.run.runId), "inputs": len(ins),
                                              "outputs": len(outs), "parent": parent})
    return {"action": action.id, "created": created, "status": action.status, "inputs": ins, "outputs": outs,
            "job_context": job_ctx.id, "parent": parent}


PLACEHOLDER = "a child run's parent facet"


def _placeholder(action: Entity) -> bool:
    return ((action.properties or {}).get("openlineage") or {}).get("known_from") == PLACEHOLDER


def _link_parent(session: Session, action: Entity, parent: OLParent | None, principal: Principal) -> str | None:
    """The run AssociatedWith its parent run's action (the parent's own events update that action). A parent not
    heard of yet is recorded from the facet with status Unknown, and its own first event takes it over, whoever
    sends it."""
    if parent is None:
        return None
    key = _run_key(parent.job.namespace, parent.job.name, parent.run.runId)
    if key == action.identity:
        return None   # a run is not its own parent
    node = service.find_action(session, key)
    if node is None:
        node, _ = service.ensure_action(
            session, action_type="Job", key=key, name=_label(parent.job.name),
            properties={"openlineage": {"namespace": parent.job.namespace, "job": parent.job.name,
                                        "run_id": str(parent.run.runId), "known_from": PLACEHOLDER}},
            actor=principal.name, system=False, owner=principal.owner)
        service.link(session, node, _job_context(session, parent.job.namespace, parent.job.name, principal),
                     "AssociatedWith", actor=principal.name, system=False, owner=principal.owner)
    service.link(session, action, node, "AssociatedWith", actor=principal.name, system=False, owner=principal.owner,
                 properties={"openlineage": "parent run"})
    return node.id


def _ingest_job(session: Session, ev: JobEvent, principal: Principal) -> dict[str, Any]:
    """A job's static lineage: its datasets linked to the job's context (which its runs' actions are
    AssociatedWith); the job's facets are kept on the context, if it is the caller's."""
    job_ctx = _job_context(session, ev.job.namespace, ev.job.name, principal)
    _keep_facets(job_ctx, ev.job.facets, principal, "job.facets")
    ins, outs = _datasets(session, ev, job_ctx, principal)
    session.flush()
    audit.record(session, actor=principal.name, action="lineage.openlineage_event", subject_type="lineage",
                 subject_id=job_ctx.id, after={"event": "JobEvent", "job": f"{ev.job.namespace}/{ev.job.name}",
                                               "inputs": len(ins), "outputs": len(outs)})
    return {"job_context": job_ctx.id, "inputs": ins, "outputs": outs}


def _ingest_dataset(session: Session, ev: DatasetEvent, principal: Principal) -> dict[str, Any]:
    """A dataset's facets, kept on its artifact if it is the caller's (as a RunEvent's are)."""
    art, kept = _dataset(session, ev.dataset, ev.dataset.facets, principal, "dataset.facets")
    session.flush()
    audit.record(session, actor=principal.name, action="lineage.openlineage_event", subject_type="lineage",
                 subject_id=art.id, after={"event": "DatasetEvent", "dataset": dataset_uri(ev.dataset),
                                           "facets": sorted(ev.dataset.facets)})
    return {"artifact": art.id, "facets_kept": kept}
