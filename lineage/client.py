"""Lineage's SDK methods: artifacts, actions, contexts, associations, graph queries and OpenLineage events.

They return the models lineage's routes return (``lineage.schemas``). Artifacts, actions and contexts share one
PATCH and one DELETE route, which ``update_entity`` / ``delete_entity`` call with the kind; ``update_artifact``
and the like name the kind for you.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lineage.openlineage import DatasetEvent, JobEvent, RunEvent
from lineage.schemas import AssociationRead, EntityRead, Kind, QueryFilters, QueryResult
from mlgov.sdk import UNSET, BaseClient, Call, Pager, Unset, body, plain, route

Time = dt.datetime | str
Properties = Mapping[str, Any]
ENTITY = "/api/v1/lineage/{plural:lineage_kind}/{entity_id}"


class LineageClient(BaseClient):
    """Artifacts, actions, contexts, associations, queries, exports and OpenLineage events."""

    # artifacts, actions, contexts
    @route("POST", "/api/v1/lineage/artifacts")
    def create_artifact(self, call: Call, type: str, uri: str, sha256: str | None = None, *, name: str | None = None,
                        description: str | None = None, properties: Properties | None = None) -> EntityRead:
        """An artifact is its URI and content hash: the same pair again returns the existing one."""
        return call.model(EntityRead, json=body({"type": type, "uri": uri, "sha256": sha256, "name": name,
                                                 "description": description, "properties": properties}))

    @route("GET", "/api/v1/lineage/artifacts")
    def list_artifacts(self, call: Call, type: str | None = None, uri: str | None = None, sha256: str | None = None,
                       name_contains: str | None = None, created_after: Time | None = None,
                       created_before: Time | None = None, *, page_size: int = 100) -> Pager[EntityRead]:
        return call.pager(EntityRead, params={
            "type": type, "uri": uri, "sha256": sha256, "name_contains": name_contains,
            "created_after": created_after, "created_before": created_before}, page_size=page_size)

    @route("GET", "/api/v1/lineage/artifacts/{entity_id}")
    def get_artifact(self, call: Call, entity_id: str) -> EntityRead:
        return call.model(EntityRead, {"entity_id": entity_id})

    @route("POST", "/api/v1/lineage/actions")
    def create_action(self, call: Call, type: str, name: str, *, key: str | None = None, status: str | None = None,
                      start_time: Time | None = None, end_time: Time | None = None, description: str | None = None,
                      properties: Properties | None = None) -> EntityRead:
        """``key`` (unique) names the action for later lookups; a second action with a taken key is a Conflict."""
        return call.model(EntityRead, json=body({
            "type": type, "name": name, "key": key, "status": status, "start_time": start_time,
            "end_time": end_time, "description": description, "properties": properties}))

    @route("GET", "/api/v1/lineage/actions")
    def list_actions(self, call: Call, type: str | None = None, status: str | None = None,
                     name_contains: str | None = None, created_after: Time | None = None,
                     created_before: Time | None = None, *, page_size: int = 100) -> Pager[EntityRead]:
        return call.pager(EntityRead, params={
            "type": type, "status": status, "name_contains": name_contains, "created_after": created_after,
            "created_before": created_before}, page_size=page_size)

    @route("GET", "/api/v1/lineage/actions/{entity_id}")
    def get_action(self, call: Call, entity_id: str) -> EntityRead:
        return call.model(EntityRead, {"entity_id": entity_id})

    @route("POST", "/api/v1/lineage/contexts")
    def create_context(self, call: Call, type: str, name: str, *, key: str | None = None,
                       description: str | None = None, properties: Properties | None = None) -> EntityRead:
        """``key`` (unique) defaults to ``type:name``; a taken key is a Conflict."""
        return call.model(EntityRead, json=body({"type": type, "name": name, "key": key, "description": description,
                                                 "properties": properties}))

    @route("GET", "/api/v1/lineage/contexts")
    def list_contexts(self, call: Call, type: str | None = None, name_contains: str | None = None,
                      created_after: Time | None = None, created_before: Time | None = None, *,
                      page_size: int = 100) -> Pager[EntityRead]:
        return call.pager(EntityRead, params={"type": type, "name_contains": name_contains,
                                              "created_after": created_after, "created_before": created_before},
                          page_size=page_size)

    @route("GET", "/api/v1/lineage/contexts/{entity_id}")
    def get_context(self, call: Call, entity_id: str) -> EntityRead:
        return call.model(EntityRead, {"entity_id": entity_id})

    @route("PATCH", ENTITY)
    def update_entity(self, call: Call, kind: Kind, entity_id: str, *, name: str | Unset | None = UNSET,
                      description: str | Unset | None = UNSET, status: str | Unset = UNSET,
                      end_time: Time | Unset = UNSET, properties: Properties | Unset = UNSET,
                      properties_to_remove: Sequence[str] | Unset = UNSET) -> EntityRead:
        """Only the arguments given change; ``properties`` are merged into the existing ones; ``status`` and
        ``end_time`` apply to actions. What mlgov recorded itself cannot be changed (Forbidden)."""
        return call.model(EntityRead, {"plural": f"{kind}s", "entity_id": entity_id}, json=body({
            "name": name, "description": description, "status": status, "end_time": end_time,
            "properties": properties, "properties_to_remove": properties_to_remove}, keep_none=True))

    @route("DELETE", ENTITY)
    def delete_entity(self, call: Call, kind: Kind, entity_id: str) -> None:
        call.none({"plural": f"{kind}s", "entity_id": entity_id})

    def update_artifact(self, entity_id: str, *, name: str | Unset | None = UNSET,
                        description: str | Unset | None = UNSET, properties: Properties | Unset = UNSET,
                        properties_to_remove: Sequence[str] | Unset = UNSET) -> EntityRead:
        return self.update_entity("artifact", entity_id, name=name, description=description, properties=properties,
                                  properties_to_remove=properties_to_remove)

    def update_action(self, entity_id: str, *, name: str | Unset | None = UNSET,
                      description: str | Unset | None = UNSET, status: str | Unset = UNSET,
                      end_time: Time | Unset = UNSET, properties: Properties | Unset = UNSET,
                      properties_to_remove: Sequence[str] | Unset = UNSET) -> EntityRead:
        return self.update_entity("action", entity_id, name=name, description=description, status=status,
                                  end_time=end_time, properties=properties, properties_to_remove=properties_to_remove)

    def update_context(self, entity_id: str, *, name: str | Unset | None = UNSET,
                       description: str | Unset | None = UNSET, properties: Properties | Unset = UNSET,
                       properties_to_remove: Sequence[str] | Unset = UNSET) -> EntityRead:
        return self.update_entity("context", entity_id, name=name, description=description, properties=properties,
                                  properties_to_remove=properties_to_remove)

    def delete_artifact(self, entity_id: str) -> None:
        self.delete_entity("artifact", entity_id)

    def delete_action(self, entity_id: str) -> None:
        self.delete_entity("action", entity_id)

    def delete_context(self, entity_id: str) -> None:
        self.delete_entity("context", entity_id)

    # associations
    @route("POST", "/api/v1/lineage/associations")
    def create_association(self, call: Call, source: str, target: str, type: str, *,
                           properties: Properties | None = None) -> AssociationRead:
        """An edge between two entity ids: ContributedTo, AssociatedWith, DerivedFrom, Produced or SameAs."""
        return call.model(AssociationRead, json=body({"source": source, "target": target, "type": type,
                                                      "properties": properties}))

    associate = create_association

    @route("GET", "/api/v1/lineage/associations")
    def list_associations(self, call: Call, source: str | None = None, target: str | None = None,
                          type: str | None = None, *, page_size: int = 100) -> Pager[AssociationRead]:
        return call.pager(AssociationRead, params={"source": source, "target": target, "type": type},
                          page_size=page_size)

    @route("DELETE", "/api/v1/lineage/associations/{edge_id}")
    def delete_association(self, call: Call, edge_id: str) -> None:
        call.none({"edge_id": edge_id})

    # queries
    @route("POST", "/api/v1/lineage/query")
    def query_lineage(self, call: Call, start: str | Sequence[str], direction: str = "Descendants", *,
                      max_depth: int | None = None, include_edges: bool | None = None,
                      filters: QueryFilters | Mapping[str, Any] | None = None) -> QueryResult:
        """The graph reachable from ``start`` (entity ids or artifact URIs): Ascendants, Descendants or Both."""
        return call.model(QueryResult, json=_query(start, direction, max_depth, include_edges, filters))

    @route("POST", "/api/v1/lineage/query/export")
    def export_lineage(self, call: Call, start: str | Sequence[str], direction: str = "Descendants", *,
                       format: Literal["dot", "mermaid"] = "dot", max_depth: int | None = None,
                       include_edges: bool | None = None,
                       filters: QueryFilters | Mapping[str, Any] | None = None) -> str:
        """The same graph as Graphviz DOT or Mermaid text (``query_lineage`` is the JSON form)."""
        return call.text(params={"format": format},
                         json=_query(start, direction, max_depth, include_edges, filters))

    @route("POST", "/api/v1/lineage/openlineage")
    def send_openlineage(self, call: Call, event: RunEvent | JobEvent | DatasetEvent | Mapping[str, Any]
                         ) -> dict[str, Any]:
        """Record an OpenLineage event: a RunEvent (idempotent per run; its run as an action linked to its parent
        run's, datasets as artifacts), a JobEvent (a job's datasets) or a DatasetEvent (a dataset's facets)."""
        return call.json(json=plain(event))


def _query(start: str | Sequence[str], direction: str, max_depth: int | None, include_edges: bool | None,
           filters: QueryFilters | Mapping[str, Any] | None) -> dict[str, Any]:
    return body({"start": [start] if isinstance(start, str) else list(start), "direction": direction,
                 "max_depth": max_depth, "include_edges": include_edges, "filters": filters})
