"""Lineage HTTP routes. Viewers read, publishers write, ingest keys never touch lineage."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import TypeAdapter
from sqlalchemy.orm import Session
from starlette.convertors import StringConvertor, register_url_convertor

from lineage import graph, openlineage, service
from lineage.orm import Entity
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
    Kind,
    QueryRequest,
    QueryResult,
)
from mlgov.api import Limit, Offset, Page, json_response, page
from mlgov.auth import Principal, Publisher, Reader, SessionDep
from mlgov.db import as_utc
from mlgov.openapi import alternatives
from mlgov.types import Strict, Timestamp
from mlgov.web import Router

router = Router(prefix="/api/v1/lineage", tags=["lineage"])


# --- artifacts, actions, contexts: the same create / list / get routes, generated from one table ----------------

_REQUIRED = inspect.Parameter.empty


def _param(name: str, annotation: Any, default: Any = _REQUIRED) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


@dataclass(frozen=True)
class _EntityRoutes:
    kind: Kind
    body: type[Strict]
    create: Callable[[Session, Any, Principal], tuple[Entity, bool]]   # the entity, and whether it is new
    filters: tuple[inspect.Parameter, ...]     # the list's query filters between `type` and `name_contains`
    create_responses: dict[int | str, dict[str, Any]] | None = None


ENTITY_ROUTES = (
    _EntityRoutes("artifact", ArtifactCreate, service.create_artifact,
                  (_param("uri", str | None, None), _param("sha256", str | None, None)),
                  {200: {"description": "the artifact already existed (same URI and hash)"}}),
    _EntityRoutes("action", ActionCreate,
                  lambda session, body, principal: (service.create_action(session, body, principal), True),
                  (_param("status", ActionStatus | None, None),)),
    _EntityRoutes("context", ContextCreate,
                  lambda session, body, principal: (service.create_context(session, body, principal), True), ()),
)


def _add_entity_routes(r: _EntityRoutes) -> None:
    """POST /{kind}s, GET /{kind}s and GET /{kind}s/{entity_id}; FastAPI reads each endpoint's parameters from the
    signature set here, so the OpenAPI document names every filter exactly as a hand-written route would."""
    def create(body: Strict, session: Session, principal: Principal, response: Response) -> Entity:
        ent, created = r.create(session, body, principal)
        if not created:
            response.status_code = 200
        return ent

    def list_entities(session: Session, _: Principal, **query: Any) -> dict[str, Any]:
        limit, offset = query["limit"], query["offset"]
        rows, total = service.list_entities(
            session, r.kind, entity_type=query["type"], uri=query.get("uri"), sha256=query.get("sha256"),
            name_contains=query["name_contains"], status=query.get("status"),
            created_after=as_utc(query["created_after"]), created_before=as_utc(query["created_before"]),
            limit=limit, offset=offset)
        return page(rows, total, limit, offset)

    def get(entity_id: str, session: Session, _: Principal) -> Entity:
        return service.get_entity(session, r.kind, entity_id)

    create.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        _param("body", r.body), _param("session", SessionDep), _param("principal", Publisher),
        _param("response", Response)])
    list_entities.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        _param("session", SessionDep), _param("_", Reader), _param("type", str | None, None), *r.filters,
        _param("name_contains", str | None, None), _param("created_after", Timestamp | None, None),
        _param("created_before", Timestamp | None, None), _param("limit", Limit, 100), _param("offset", Offset, 0)])
    get.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        _param("entity_id", str), _param("session", SessionDep), _param("_", Reader)])
    plural = f"/{r.kind}s"
    router.add_api_route(plural, create, methods=["POST"], name=f"create_{r.kind}", response_model=EntityRead,
                         status_code=201, responses=r.create_responses)
    router.add_api_route(plural, list_entities, methods=["GET"], name=f"list_{r.kind}s",
                         response_model=Page[EntityRead])
    router.add_api_route(f"{plural}/{{entity_id}}", get, methods=["GET"], name=f"get_{r.kind}",
                         response_model=EntityRead)


for _routes in ENTITY_ROUTES:
    _add_entity_routes(_routes)


@router.post("/associations", response_model=AssociationRead, status_code=201)
def add_association(body: AssociationCreate, session: SessionDep, principal: Publisher) -> dict[str, Any]:
    return service.edge_read(service.add_association(session, body, principal))


@router.get("/associations", response_model=Page[AssociationRead])
def list_associations(session: SessionDep, _: Reader, source: str | None = None, target: str | None = None,
                      association_type: Annotated[AssociationType | None, Query(alias="type")] = None,
                      limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    rows, total = service.list_associations(session, source=source, target=target,
                                            association_type=association_type, limit=limit, offset=offset)
    return page([service.edge_read(e) for e in rows], total, limit, offset)


@router.delete("/associations/{edge_id}", status_code=204)
def delete_association(edge_id: str, session: SessionDep, principal: Publisher) -> Response:
    service.delete_association(session, edge_id, principal)
    return Response(status_code=204)


# The answer's plain dicts (shaped like QueryResult) go to JSON in one pydantic-core call: no model object per
# vertex, and FastAPI neither re-validates nor re-encodes thousands of them.
_DOCUMENT: TypeAdapter[dict[str, list[dict[str, Any]]]] = TypeAdapter(dict[str, list[dict[str, Any]]])


@router.post("/query", response_model=QueryResult)
def query(body: QueryRequest, session: SessionDep, _: Reader) -> Response:
    return json_response(_DOCUMENT, service.query_document(session, body))


@router.post("/query/export", response_model=None, responses=alternatives("text/vnd.graphviz", "text/plain"))
def export(body: QueryRequest, session: SessionDep, _: Reader,
           format: Annotated[Literal["json", "dot", "mermaid"], Query()] = "dot",
           ) -> Response:
    result = service.query_document(session, body)
    if format == "json":
        return json_response(_DOCUMENT, result)
    text = graph.to_dot(result) if format == "dot" else graph.to_mermaid(result)
    media = "text/vnd.graphviz" if format == "dot" else "text/plain"
    return PlainTextResponse(text, media_type=media)


@router.post("/openlineage", status_code=201)
def openlineage_event(body: openlineage.Event, session: SessionDep, principal: Publisher) -> dict[str, Any]:
    return openlineage.ingest(session, body, principal)


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
def update_entity(plural: Plural, entity_id: str, body: EntityUpdate, session: SessionDep,
                  principal: Publisher) -> Entity:
    return service.update_entity(session, _kind(plural), entity_id, body, principal)


@router.delete("/{plural:lineage_kind}/{entity_id}", status_code=204)
def delete_entity(plural: Plural, entity_id: str, session: SessionDep, principal: Publisher) -> Response:
    service.delete_entity(session, _kind(plural), entity_id, principal)
    return Response(status_code=204)
