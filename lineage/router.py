"""Lineage HTTP routes. Viewers read, publishers write, ingest keys never touch lineage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import PlainTextResponse
from starlette.convertors import StringConvertor, register_url_convertor

from lineage import graph, openlineage, service
from lineage.schemas import (
    ActionCreate,
    ActionStatus,
    ArtifactCreate,
    AssociationCreate,
    AssociationRead,
    AssociationType,
    ContextCreate,
    EntityRead,
    EntityUpdate,
    QueryRequest,
    QueryResult,
)
from mlgov.api import Limit, Offset, Page, page
from mlgov.auth import PUBLISHERS, READERS, Principal, SessionDep, require
from mlgov.db import as_utc
from mlgov.openapi import alternatives
from mlgov.types import Timestamp

router = APIRouter(prefix="/api/v1/lineage", tags=["lineage"])
Reader = Annotated[Principal, Depends(require(READERS))]
Writer = Annotated[Principal, Depends(require(PUBLISHERS))]



def _list(kind: str, session: Any, **kw: Any) -> dict[str, Any]:
    limit, offset = kw.pop("limit"), kw.pop("offset")
    rows, total = service.list_entities(session, kind, limit=limit, offset=offset,
                                        created_after=as_utc(kw.pop("created_after")),
                                        created_before=as_utc(kw.pop("created_before")), **kw)
    return page(rows, total, limit, offset)


@router.post("/artifacts", response_model=EntityRead, status_code=201,
             responses={200: {"description": "the artifact already existed (same URI and hash)"}})
def create_artifact(body: ArtifactCreate, session: SessionDep, p: Writer, response: Response) -> Any:
    ent, created = service.create_artifact(session, body, p)
    if not created:
        response.status_code = 200
    return ent


@router.get("/artifacts", response_model=Page[EntityRead])
def list_artifacts(session: SessionDep, _: Reader, type: str | None = None, uri: str | None = None,
                   sha256: str | None = None, name_contains: str | None = None,
                   created_after: Timestamp | None = None, created_before: Timestamp | None = None,
                   limit: Limit = 100, offset: Offset = 0) -> Any:
    return _list("artifact", session, type=type, uri=uri, sha256=sha256, name_contains=name_contains, status=None,
                 created_after=created_after, created_before=created_before, limit=limit, offset=offset)


@router.get("/artifacts/{entity_id}", response_model=EntityRead)
def get_artifact(entity_id: str, session: SessionDep, _: Reader) -> Any:
    return service.get_entity(session, "artifact", entity_id)


@router.post("/actions", response_model=EntityRead, status_code=201)
def create_action(body: ActionCreate, session: SessionDep, p: Writer) -> Any:
    return service.create_action(session, body, p)


@router.get("/actions", response_model=Page[EntityRead])
def list_actions(session: SessionDep, _: Reader, type: str | None = None, status: ActionStatus | None = None,
                 name_contains: str | None = None, created_after: Timestamp | None = None,
                 created_before: Timestamp | None = None, limit: Limit = 100, offset: Offset = 0) -> Any:
    return _list("action", session, type=type, uri=None, sha256=None, name_contains=name_contains, status=status,
                 created_after=created_after, created_before=created_before, limit=limit, offset=offset)


@router.get("/actions/{entity_id}", response_model=EntityRead)
def get_action(entity_id: str, session: SessionDep, _: Reader) -> Any:
    return service.get_entity(session, "action", entity_id)


@router.post("/contexts", response_model=EntityRead, status_code=201)
def create_context(body: ContextCreate, session: SessionDep, p: Writer) -> Any:
    return service.create_context(session, body, p)


@router.get("/contexts", response_model=Page[EntityRead])
def list_contexts(session: SessionDep, _: Reader, type: str | None = None, name_contains: str | None = None,
                  created_after: Timestamp | None = None, created_before: Timestamp | None = None,
                  limit: Limit = 100, offset: Offset = 0) -> Any:
    return _list("context", session, type=type, uri=None, sha256=None, name_contains=name_contains, status=None,
                 created_after=created_after, created_before=created_before, limit=limit, offset=offset)


@router.get("/contexts/{entity_id}", response_model=EntityRead)
def get_context(entity_id: str, session: SessionDep, _: Reader) -> Any:
    return service.get_entity(session, "context", entity_id)


@router.post("/associations", response_model=AssociationRead, status_code=201)
def add_association(body: AssociationCreate, session: SessionDep, p: Writer) -> Any:
    return service.edge_read(service.add_association(session, body, p))


@router.get("/associations", response_model=Page[AssociationRead])
def list_associations(session: SessionDep, _: Reader, source: str | None = None, target: str | None = None,
                      type: AssociationType | None = None, limit: Limit = 100, offset: Offset = 0) -> Any:
    rows, total = service.list_associations(session, source=source, target=target, type=type, limit=limit,
                                            offset=offset)
    return page([service.edge_read(e) for e in rows], total, limit, offset)


@router.delete("/associations/{edge_id}", status_code=204)
def delete_association(edge_id: str, session: SessionDep, p: Writer) -> Response:
    service.delete_association(session, edge_id, p)
    return Response(status_code=204)


@router.post("/query", response_model=QueryResult)
def query(body: QueryRequest, session: SessionDep, _: Reader) -> Any:
    return service.query(session, body)


@router.post("/query/export", response_model=None, responses=alternatives("text/vnd.graphviz", "text/plain"))
def export(body: QueryRequest, session: SessionDep, _: Reader,
           format: Annotated[Literal["json", "dot", "mermaid"], Query()] = "dot") -> Any:
    result = service.query(session, body).model_dump(mode="json")
    if format == "json":
        return result
    text = graph.to_dot(result) if format == "dot" else graph.to_mermaid(result)
    media = "text/vnd.graphviz" if format == "dot" else "text/plain"
    return PlainTextResponse(text, media_type=media)


@router.post("/openlineage", status_code=201)
def openlineage_event(body: openlineage.RunEvent, session: SessionDep, p: Writer) -> dict[str, Any]:
    return openlineage.ingest(session, body, p)


# Generic per-kind routes last, so /associations/... matches its own routes first.
def _kind(plural: str) -> str:
    return plural[:-1]


Plural = Literal["artifacts", "actions", "contexts"]


class _PluralConvertor(StringConvertor):
    """Only the three kinds match `{plural}`, so PATCH/DELETE on /associations/… or /query/export is a 405 with
    the right Allow header rather than a 422 about `plural`."""

    regex = "artifacts|actions|contexts"


register_url_convertor("lineage_kind", _PluralConvertor())


@router.patch("/{plural:lineage_kind}/{entity_id}", response_model=EntityRead)
def update_entity(plural: Plural, entity_id: str, body: EntityUpdate, session: SessionDep, p: Writer) -> Any:
    return service.update_entity(session, _kind(plural), entity_id, body, p)


@router.delete("/{plural:lineage_kind}/{entity_id}", status_code=204)
def delete_entity(plural: Plural, entity_id: str, session: SessionDep, p: Writer) -> Response:
    service.delete_entity(session, _kind(plural), entity_id, p)
    return Response(status_code=204)
