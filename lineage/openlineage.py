"""OpenLineage RunEvents in: jobs become actions, datasets artifacts (``{namespace}/{name}``), facets kept.

Shapes follow the OpenLineage 2-0-2 RunEvent schema (required: eventTime, run.runId, job.namespace,
job.name, producer); unknown keys are kept, as the spec allows custom facets.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from lineage import service
from lineage.schemas import TYPE_PATTERN
from mlgov import audit
from mlgov.auth import Principal
from mlgov.db import as_utc
from mlgov.types import Timestamp

STATUS = {"START": "InProgress", "RUNNING": "InProgress", "COMPLETE": "Completed", "FAIL": "Failed",
          "ABORT": "Stopped", "OTHER": None}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class OLRun(_Open):
    runId: uuid.UUID
    facets: dict[str, Any] = Field(default_factory=dict)


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


class RunEvent(_Open):
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = None
    eventTime: Timestamp
    run: OLRun
    job: OLJob
    inputs: list[OLDataset] = Field(default_factory=list, max_length=1000)
    outputs: list[OLDataset] = Field(default_factory=list, max_length=1000)
    producer: str = Field(min_length=1, max_length=2048)
    schemaURL: str | None = None


def dataset_uri(ds: OLDataset) -> str:
    return f"{ds.namespace}/{ds.name}"


NAME_LIMIT = 512   # lineage_entities.name


def _label(text: str) -> str:
    """A display name that fits the column; the full name stays in the URI, the key and the properties."""
    return text if len(text) <= NAME_LIMIT else text[:NAME_LIMIT - 1] + "…"


def ingest(session: Session, ev: RunEvent, principal: Principal) -> dict[str, Any]:
    """Apply one RunEvent idempotently; later events of the same run update the same action. What it records is
    the caller's (not mlgov's own evidence), so its creator may change it — and only they: an event naming
    another user's run, or a dataset mlgov recorded, may link to it but not rewrite it."""
    actor, who = principal.name, principal.owner
    key = f"openlineage:{ev.job.namespace}/{ev.job.name}:{ev.run.runId}"
    existing = service.find_action(session, key)
    if existing is not None:
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
                             "job_facets": ev.job.facets, "run_facets": ev.run.facets}}
    action, created = service.ensure_action(
        session, action_type=str(job_type or "Job"), key=key,
        name=_label(ev.job.name), status=status,
        start_time=when if ev.eventType in ("START", "RUNNING") else None,
        end_time=when if terminal and status is not None else None,
        properties=props, actor=actor, system=False, owner=who)
    job_ctx, _ = service.ensure_context(session, context_type="Job", name=_label(f"{ev.job.namespace}/{ev.job.name}"),
                                        key=f"openlineage-job:{ev.job.namespace}/{ev.job.name}", actor=actor,
                                        system=False, owner=who)
    service.link(session, action, job_ctx, "AssociatedWith", actor=actor, system=False, owner=who)
    ins, outs = [], []
    for ds, is_input in [(d, True) for d in ev.inputs] + [(d, False) for d in ev.outputs]:
        art, _ = service.ensure_artifact(session, artifact_type="Dataset", uri=dataset_uri(ds), name=_label(ds.name),
                                         actor=actor, system=False, owner=who)
        facets = {**ds.facets, **(ds.inputFacets if is_input else ds.outputFacets)}
        if facets and service.changeable(art, principal):   # facets annotate the caller's own datasets only
            art.properties = {**(art.properties or {}), "openlineage_facets": facets}
        if is_input:
            service.link(session, art, action, "ContributedTo", actor=actor, system=False, owner=who)
            ins.append(art.id)
        else:
            service.link(session, action, art, "Produced", actor=actor, system=False, owner=who)
            outs.append(art.id)
    session.flush()
    audit.record(session, actor=actor, action="lineage.openlineage_event", subject_type="lineage",
                 subject_id=action.id, after={"event_type": ev.eventType, "job": f"{ev.job.namespace}/{ev.job.name}",
                                              "run_id": str(ev.run.runId), "inputs": len(ins),
                                              "outputs": len(outs)})
    return {"action": action.id, "created": created, "status": action.status, "inputs": ins, "outputs": outs,
            "job_context": job_ctx.id}
