"""Registry HTTP routes: parse, authorize, call one service function, shape the answer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from mlgov.api import AuditEventRead, EventFilters, Limit, Offset, Page, encoded_response, page
from mlgov.auth import (
    ADMINS,
    MOVERS,
    PUBLISHERS,
    Admin,
    Auditor,
    Decider,
    Principal,
    Publisher,
    Reader,
    ReadSessionDep,
    Role,
    SessionDep,
    end_read,
    get_db,
    require,
    require_reading,
)
from mlgov.context import request_id_var
from mlgov.db import as_utc
from mlgov.errors import Invalid
from mlgov.openapi import alternatives
from mlgov.storage import StoreDep
from mlgov.types import Timestamp
from mlgov.web import Router, templates
from registry import group_commit, service
from registry.orm import ApprovalDecision, ModelGroup
from registry.schemas import (
    AliasesAt,
    ApprovalDecisionRead,
    ApprovalRequest,
    ApprovalStatus,
    GroupCreate,
    GroupRead,
    GroupUpdate,
    StageOccupant,
    StageRequest,
    StageTransitionRead,
    TrustRequest,
    VersionCreate,
    VersionRead,
)

router = Router(prefix="/api/v1", tags=["registry"])
Mover = Annotated[Principal, Depends(require(MOVERS))]
ReadingPublisher = Annotated[Principal, Depends(require_reading(PUBLISHERS))]   # group-committed writes
GroupEditor = Annotated[Principal, Depends(require(ADMINS, Role.publisher))]
VersionNo = Annotated[int, Path(ge=1, description="version number (1, 2, 3 …)")]

_templates = templates(FsPath(__file__).parent / "templates")


KeyValue = Annotated[str, Field(json_schema_extra={"pattern": "^[^=]+="})]   # checked by _pairs, with its message


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise Invalid(f"{what} filter {item!r} is not key=value", fix=f"pass {what}=key=value")
        out[k] = v
    return out



# --- groups -------------------------------------------------------------------------------------------

@router.post("/model-groups", status_code=201, response_model=GroupRead)
def create_group(body: GroupCreate, session: SessionDep, principal: Publisher) -> ModelGroup:
    return service.create_group(session, body, principal)


@router.get("/model-groups", response_model=Page[GroupRead])
def list_groups(
    session: SessionDep, _: Reader,
    name_contains: Annotated[str | None, Query(max_length=256)] = None,
    tag: Annotated[list[KeyValue] | None, Query(description="key=value; repeat to AND several")] = None,
    sort: Literal["name", "-name", "created_at", "-created_at"] = "name",
    limit: Limit = 50, offset: Offset = 0,
) -> dict[str, Any]:
    return page(*service.list_groups(session, name_contains=name_contains, tags=_pairs(tag, "tag"), sort=sort,
                                     limit=limit, offset=offset), limit, offset)


@router.get("/model-groups/{group}", response_model=GroupRead)
def get_group(group: str, session: SessionDep, _: Reader) -> ModelGroup:
    return service.get_group(session, group)


@router.patch("/model-groups/{group}", response_model=GroupRead)
def update_group(group: str, body: GroupUpdate, session: SessionDep, principal: GroupEditor) -> ModelGroup:
    return service.update_group(session, group, body, principal)


# --- versions -----------------------------------------------------------------------------------------

@router.post("/model-groups/{group}/versions", status_code=201, response_model=VersionRead)
async def register_version(group: str, body: VersionCreate, request: Request, principal: ReadingPublisher,
                           session: ReadSessionDep, store: StoreDep) -> VersionRead:
    """Numbered and written with the registrations into the same group that arrive meanwhile (`group_commit`),
    committed before the answer. An artifact in mlgov's store is registered under the hash mlgov computes."""
    await end_read(request, session)
    digest = await run_in_threadpool(service.checked_hash, store, body.artifact_uri, body.artifact_sha256)
    if digest != body.artifact_sha256:
        body = body.model_copy(update={"artifact_sha256": digest})
    v = await group_commit.register(get_db(request), group,
                                    service.Registration(body, principal, request_id_var.get()))
    return service.to_read(group, v)


@router.get("/model-groups/{group}/versions", response_model=Page[VersionRead])
def list_versions(
    group: str, session: SessionDep, _: Reader,
    status: ApprovalStatus | None = None,
    stage: Annotated[str | None, Query(max_length=63)] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    metadata: Annotated[list[KeyValue] | None, Query(description="key=value; repeat to AND several")] = None,
    sort: Literal["version", "-version", "created_at", "-created_at"] = "-version",
    limit: Limit = 50, offset: Offset = 0,
) -> Response:
    rows, total = service.read_versions(
        session, group, status=status, stage=stage, created_after=as_utc(created_after),
        created_before=as_utc(created_before), metadata=_pairs(metadata, "metadata"), sort=sort, limit=limit,
        offset=offset)
    return encoded_response(page(rows, total, limit, offset))


@router.get("/model-groups/{group}/versions/latest", response_model=VersionRead)
def latest_version(group: str, session: SessionDep, _: Reader, status: ApprovalStatus | None = None) -> Response:
    return encoded_response(service.read_latest(session, group, status))


@router.get("/model-groups/{group}/versions/{version}", response_model=VersionRead)
def get_version(group: str, version: VersionNo, session: SessionDep, _: Reader) -> Response:
    return encoded_response(service.read_version(session, group, version))


@router.post("/model-groups/{group}/versions/{version}/approval", response_model=VersionRead)
def decide(group: str, version: VersionNo, body: ApprovalRequest, session: SessionDep,
           principal: Decider) -> VersionRead:
    v = service.decide(session, group, version, body, principal)
    _, fresh = service.get_version(session, group, v.version)
    read = service.to_read(group, fresh)
    read.approval_evidence = service.decision_evidence(session, fresh)
    return read


@router.post("/model-groups/{group}/versions/{version}/artifact-trust", response_model=VersionRead)
def artifact_trust(group: str, version: VersionNo, body: TrustRequest, session: SessionDep,
                   principal: Admin) -> VersionRead:
    v = service.set_artifact_trust(session, group, version, body.trusted, body.reason, principal)
    return service.to_read(group, service.get_version(session, group, v.version)[1])


@router.get("/model-groups/{group}/versions/{version}/approvals", response_model=list[ApprovalDecisionRead])
def approvals(group: str, version: VersionNo, session: SessionDep, _: Reader) -> list[ApprovalDecision]:
    v = service.get_version(session, group, version)[1]
    return service.approval_history(session, v)


@router.post("/model-groups/{group}/versions/{version}/stage", response_model=VersionRead)
def move_stage(group: str, version: VersionNo, body: StageRequest, session: SessionDep,
               principal: Mover) -> VersionRead:
    v = service.move_stage(session, group, version, body, principal)
    _, fresh = service.get_version(session, group, v.version)
    return service.to_read(group, fresh)


@router.get("/model-groups/{group}/stage-history", response_model=list[StageTransitionRead])
def stage_history(group: str, session: SessionDep, _: Reader,
                  version: Annotated[int | None, Query(ge=1)] = None) -> list[StageTransitionRead]:
    return [StageTransitionRead(version=n, from_stage=t.from_stage, to_stage=t.to_stage, actor=t.actor,
                                comment=t.comment, reason=t.reason, at=t.at)
            for n, t in service.stage_history(session, group, version)]


@router.get("/model-groups/{group}/stages/{stage}", response_model=StageOccupant)
def stage_occupants(group: str, stage: str, session: SessionDep, _: Reader,
                    at: Annotated[Timestamp | None, Query(description="ISO-8601 time; default now")] = None,
                    ) -> StageOccupant:
    when = as_utc(at) or dt.datetime.now(dt.UTC)
    return StageOccupant(group=group, stage=stage, at=when, versions=service.occupants_at(session, group, stage, when))


@router.get("/model-groups/{group}/aliases", response_model=AliasesAt)
def aliases_at(group: str, session: SessionDep, _: Reader,
               at: Annotated[Timestamp | None, Query(description="ISO-8601 time; default now")] = None) -> AliasesAt:
    """Where every alias (``@champion`` …) pointed at time ``at``, from the audited history of alias moves."""
    when = as_utc(at) or dt.datetime.now(dt.UTC)
    return AliasesAt(group=group, at=when, aliases=service.aliases_at(session, group, when))


@router.get("/model-groups/{group}/audit-events", tags=["audit"], response_model=Page[AuditEventRead])
def group_audit_events(group: str, session: SessionDep, _: Auditor, filters: EventFilters, limit: Limit = 100,
                       offset: Offset = 0) -> Any:
    """The group's and its versions' events, oldest first, under every name the group has had (``/audit/events``
    matches one subject id exactly, so a renamed group's history before the rename is not under its new name).
    A name no group has now reads as a deleted group's events by that name."""
    rows, total = service.group_events(session, group, limit=limit, offset=offset, **filters)
    return page(rows, total, limit, offset)


# --- compliance report --------------------------------------------------------------------------------

@router.get("/audit/report", tags=["audit"], response_model=None, responses=alternatives("text/html"))
def audit_report(
    session: SessionDep, _: Auditor,
    model_group: Annotated[str, Query(min_length=1)],
    since: Annotated[Timestamp | None, Query(alias="from")] = None,
    until: Annotated[Timestamp | None, Query(alias="to")] = None,
    format: Literal["json", "html"] = "json",
) -> HTMLResponse | dict[str, Any]:
    report = service.compliance_report(session, model_group, as_utc(since), as_utc(until))
    if format == "html":
        return HTMLResponse(_templates.get_template("report.html").render(r=report))
    return report
