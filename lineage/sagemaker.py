"""Lineage's SageMaker operations (artifacts, actions, contexts, associations, QueryLineage) on the same graph the
native API reads and writes: shapes translated, `lineage.service` called.

ARNs name entities by id (``…:artifact/<id>``, ``…:action/<id>``, ``…:context/<id>``), so what mlgov recorded
itself (registrations, approvals, baselines) is addressable too. Actions and contexts created here are keyed by
their SageMaker name, so DescribeAction/DescribeContext find them by name as SageMaker does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lineage import service
from lineage.orm import Edge, Entity
from lineage.schemas import (
    ActionCreate,
    ArtifactCreate,
    AssociationCreate,
    ContextCreate,
    EntityUpdate,
    QueryFilters,
    QueryRequest,
)
from mlgov.auth import PUBLISHERS, READERS
from mlgov.aws import (
    AwsService,
    Call,
    clipped,
    descending,
    drop_empty,
    from_epoch,
    keyset_paged,
    page_after,
    page_offset,
    paged,
    require_absent,
    user_context,
    validation,
)
from mlgov.errors import NotFound

KINDS = {"artifact": "Artifact", "action": "Action", "context": "Context"}
SOURCE = "sagemaker:source"                 # an action's or context's Source, kept among its properties
SOURCE_TYPES = "sagemaker:source_types"     # an artifact's Source.SourceTypes
_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
_MAX_PROPERTIES, _MAX_VALUE = 30, 2500       # LineageEntityParameters: 30 pairs, values up to 2,500 characters


def arn(call: Call, ent: Entity) -> str:
    return call.arn(f"{ent.kind}/{ent.id}")


def entity_id(call: Call, value: str) -> tuple[str, str]:
    """(kind, id) of one of our lineage ARNs."""
    for kind in KINDS:
        if f":{kind}/" in value:
            rest = call.resource(value, kind)
            if rest:
                return kind, rest
    raise validation(f"{value!r} is not an artifact, action or context ARN of this server")


def _ref(call: Call, kind: str, value: str) -> Entity:
    rest = call.resource(value, kind)
    return service.get_entity(call.session, kind, rest) if rest is not None else service.find_named(
        call.session, kind, value)


def _properties_out(props: dict[str, Any] | None) -> dict[str, str]:
    """SageMaker's properties are ≤30 string pairs: other JSON values are sent as JSON text; mlgov's own keys and
    anything past those limits stay visible through the native API only."""
    out: dict[str, str] = {}
    for k, v in sorted((props or {}).items()):
        if k.startswith("sagemaker:") or len(k) > 256 or len(out) == _MAX_PROPERTIES:
            continue
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        if len(text) <= _MAX_VALUE:
            out[k] = text
    return out


_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}")


def _name(ent: Entity) -> str:
    """The entity's name where it is a valid SageMaker name, else its id (which is one, and which the operations
    that take a name accept): names mlgov gives its own records ("churn/3 Approval") do not fit the pattern."""
    return ent.name if ent.name and _NAME.fullmatch(ent.name) else ent.id




def _source(ent: Entity) -> dict[str, Any]:
    if ent.kind == "artifact":
        types = (ent.properties or {}).get(SOURCE_TYPES) or (
            [{"SourceIdType": "Custom", "Value": f"sha256:{ent.sha256}"}] if ent.sha256 else [])
        return drop_empty({"SourceUri": ent.uri, "SourceTypes": types})
    source = (ent.properties or {}).get(SOURCE)
    return dict(source) if source else {"SourceUri": f"mlgov:{ent.kind}/{ent.identity}"[:2048]}


def _describe(call: Call, ent: Entity) -> dict[str, Any]:
    kind = KINDS[ent.kind]
    return drop_empty({
        f"{kind}Name": _name(ent), f"{kind}Arn": arn(call, ent), "Source": _source(ent), f"{kind}Type": ent.type,
        "Description": clipped(ent.description, 3072) if ent.kind != "artifact" else None,   # native: up to 4,000
        "Status": ent.status if ent.kind == "action" else None,
        "Properties": _properties_out(ent.properties), "CreationTime": ent.created_at,
        "CreatedBy": user_context(ent.created_by), "LastModifiedTime": ent.updated_at})


def _summary(call: Call, ent: Entity) -> dict[str, Any]:
    kind = KINDS[ent.kind]
    return drop_empty({f"{kind}Arn": arn(call, ent), f"{kind}Name": _name(ent), "Source": _source(ent),
                       f"{kind}Type": ent.type, "Status": ent.status if ent.kind == "action" else None,
                       "CreationTime": ent.created_at, "LastModifiedTime": ent.updated_at})




def _update(call: Call, ent: Entity, p: dict[str, Any], **fields: Any) -> Entity:
    body = EntityUpdate.model_validate({**{k: v for k, v in fields.items() if v is not None},
                                        **({"properties": p["Properties"]} if p.get("Properties") else {}),
                                        "properties_to_remove": p.get("PropertiesToRemove") or []})
    return service.update_entity(call.session, ent.kind, ent.id, body, call.principal)


_PACKAGE_ARN = re.compile(r"arn:aws[\w-]*:sagemaker:[^:]*:\d*:model-package/(?P<group>[^/]+)/(?P<version>\d+)")


def _source_uri(uri: str | None) -> str | None:
    """SageMaker code finds a model package's lineage artifact by the package's ARN as its SourceUri; mlgov's node
    of a version is ``mlgov://model-groups/<group>/versions/<n>``."""
    m = _PACKAGE_ARN.fullmatch(uri or "")
    return service.model_version_uri(m["group"], int(m["version"])) if m else uri


def register(api: AwsService) -> None:
    kinds: list[tuple[str, str]] = [("artifact", "Artifact"), ("action", "Action"), ("context", "Context")]
    for kind, name in kinds:
        _register_kind(api, kind, name)
    _register_associations(api)


def _create(kind: str) -> Callable[[Call, dict[str, Any]], Entity]:
    def artifact(call: Call, p: dict[str, Any]) -> Entity:
        src = p["Source"]
        types = src.get("SourceTypes") or []
        sha = next((m.group(1) for t in types if t["SourceIdType"] == "Custom"
                    and (m := _SHA256.match(t["Value"]))), None)
        body = ArtifactCreate(type=p["ArtifactType"], uri=src["SourceUri"], sha256=sha, name=p.get("ArtifactName"),
                              properties={**(p.get("Properties") or {}), **({SOURCE_TYPES: types} if types else {})})
        # without a SHA-256 the source's own version ids (S3ETag, S3Version, …) tell contents apart: a changed
        # ETag is a new dataset version, not the node recorded for the old one
        version = None if sha else ";".join(sorted(f"{t['SourceIdType']}={t['Value']}" for t in types)) or None
        return service.create_artifact(call.session, body, call.principal, source_version=version)[0]

    def action(call: Call, p: dict[str, Any]) -> Entity:
        body = ActionCreate(type=p["ActionType"], name=p["ActionName"], key=p["ActionName"],
                            status=p.get("Status") or "Unknown", description=p.get("Description"),
                            properties={**(p.get("Properties") or {}), SOURCE: p["Source"]})
        return service.create_action(call.session, body, call.principal)

    def context(call: Call, p: dict[str, Any]) -> Entity:
        body = ContextCreate(type=p["ContextType"], name=p["ContextName"], key=p["ContextName"],
                             description=p.get("Description"),
                             properties={**(p.get("Properties") or {}), SOURCE: p["Source"]})
        return service.create_context(call.session, body, call.principal)

    creators: dict[str, Callable[[Call, dict[str, Any]], Entity]] = {
        "artifact": artifact, "action": action, "context": context}
    return creators[kind]


def _register_kind(api: AwsService, kind: str, name: str) -> None:
    ref = "ArtifactArn" if kind == "artifact" else f"{name}Name"
    make = _create(kind)

    def create(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["MetadataProperties", "Tags"], "lineage entities keep type, source, name, description, "
                       "status and properties")
        return {f"{name}Arn": arn(call, make(call, p))}

    def describe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return _describe(call, _ref(call, kind, p[ref]))

    def update(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ent = _ref(call, kind, p[ref])
        ent = _update(call, ent, p, name=p.get("ArtifactName"), description=p.get("Description"),
                      status=p.get("Status"))
        return {f"{name}Arn": arn(call, ent)}

    def delete(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        if kind == "artifact" and not p.get("ArtifactArn"):
            uri = (p.get("Source") or {}).get("SourceUri")
            if not uri:
                raise validation("pass ArtifactArn or Source.SourceUri")
            rows, total = service.list_entities(call.session, "artifact", entity_type=None, uri=uri, sha256=None,
                                                name_contains=None, status=None, created_after=None,
                                                created_before=None, limit=2, offset=0)
            if total != 1:
                raise validation(f"{total} artifacts have SourceUri {uri!r}; pass the ArtifactArn of the one to "
                                 "delete") if total else NotFound(f"no artifact with SourceUri {uri!r}")
            ent = rows[0]
        else:
            ent = _ref(call, kind, p[ref])
        gone = arn(call, ent)
        service.delete_entity(call.session, kind, ent.id, call.principal)
        return {f"{name}Arn": gone}

    def list_(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        if kind != "artifact":
            require_absent(p, ["SourceUri"], f"{kind}s are listed by type and creation time")
        by = "name" if p.get("SortBy") == "Name" else "created"   # botocore's model: Name for actions, contexts
        rows, remaining = service.list_entities(
            call.session, kind, entity_type=p.get(f"{name}Type"), uri=_source_uri(p.get("SourceUri")), sha256=None,
            name_contains=None, status=None, created_after=from_epoch(p.get("CreatedAfter")),
            created_before=from_epoch(p.get("CreatedBefore")), limit=p.get("MaxResults") or 10, offset=0,
            descending=descending(p), after=page_after(p), by=by)
        order = service.entity_order(descending(p), by)
        return drop_empty({"NextToken": keyset_paged(rows, remaining, order, p)}) | {
            f"{name}Summaries": [_summary(call, e) for e in rows]}

    api.operation(f"Create{name}", roles=PUBLISHERS, write=True)(create)
    api.operation(f"Describe{name}", roles=READERS, write=False)(describe)
    api.operation(f"Update{name}", roles=PUBLISHERS, write=True)(update)
    api.operation(f"Delete{name}", roles=PUBLISHERS, write=True)(delete)
    api.operation(f"List{name}s", roles=READERS, write=False)(list_)


def _register_associations(api: AwsService) -> None:
    def ends(call: Call, p: dict[str, Any]) -> tuple[str, str]:
        return entity_id(call, p["SourceArn"])[1], entity_id(call, p["DestinationArn"])[1]

    @api.operation("AddAssociation", roles=PUBLISHERS, write=True)
    def add(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("AssociationType"):
            raise validation("pass AssociationType (ContributedTo, AssociatedWith, DerivedFrom, Produced or SameAs): "
                             "mlgov records typed associations")
        source, target = ends(call, p)
        service.add_association(call.session, AssociationCreate(source=source, target=target,
                                                                        type=p["AssociationType"]), call.principal)
        return {"SourceArn": p["SourceArn"], "DestinationArn": p["DestinationArn"]}

    @api.operation("DeleteAssociation", roles=PUBLISHERS, write=True)
    def delete(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        source, target = ends(call, p)
        edges, _ = service.list_associations(call.session, source=source, target=target, association_type=None,
                                             limit=10, offset=0)
        if not edges:
            raise NotFound(f"no association from {p['SourceArn']} to {p['DestinationArn']}",
                           fix="list them with ListAssociations (SourceArn or DestinationArn)")
        for edge in edges:
            service.delete_association(call.session, edge.id, call.principal)
        return {"SourceArn": p["SourceArn"], "DestinationArn": p["DestinationArn"]}

    @api.operation("ListAssociations", roles=READERS, write=False)
    def list_(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["SourceType", "DestinationType", "CreatedAfter", "CreatedBefore"],
                       "associations are listed by their ends and type")
        if (p.get("SortBy") or "CreationTime") != "CreationTime":
            raise validation(f"SortBy {p['SortBy']} is not served: mlgov lists associations by CreationTime; leave "
                             "SortBy out (or CreationTime) and sort the page yourself")
        rows, remaining = service.list_associations(
            call.session, source=entity_id(call, p["SourceArn"])[1] if p.get("SourceArn") else None,
            target=entity_id(call, p["DestinationArn"])[1] if p.get("DestinationArn") else None,
            association_type=p.get("AssociationType"), limit=p.get("MaxResults") or 10, offset=0,
            descending=descending(p), after=page_after(p))
        known = service.entities_by_id(call.session, [x for e in rows for x in (e.source_id, e.target_id)])
        order = service.association_order(descending(p))
        return drop_empty({"NextToken": keyset_paged(rows, remaining, order, p)}) | {
            "AssociationSummaries": [_association(call, e, known) for e in rows]}

    @api.operation("QueryLineage", roles=READERS, write=False)
    def query(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        f = p.get("Filters") or {}
        require_absent(f, ["ModifiedBefore", "ModifiedAfter", "Properties"], "filter by type, lineage type and "
                       "creation time")
        if not p.get("StartArns"):
            raise validation("pass StartArns: the entity whose lineage to walk")
        lineage_types = f.get("LineageTypes")
        kinds = [k for k, t in KINDS.items() if t in lineage_types] if lineage_types else None
        if kinds == []:
            return {"Vertices": [], "Edges": []}    # mlgov has no trial components
        depth = p.get("MaxDepth")
        req = QueryRequest(start=[entity_id(call, a)[1] for a in p["StartArns"]],
                           direction=p.get("Direction") or "Ascendants", max_depth=10 if depth is None else depth,
                           include_edges=p.get("IncludeEdges", True),
                           filters=QueryFilters(kinds=kinds, types=f.get("Types"),
                                                created_after=from_epoch(f.get("CreatedAfter")),
                                                created_before=from_epoch(f.get("CreatedBefore"))))
        result = service.query(call.session, req)
        offset, limit = page_offset(p), p.get("MaxResults") or 10
        page = result.vertices[offset:offset + limit]
        kinds_of = {v.id: v.kind for v in result.vertices}
        position = {v.id: i for i, v in enumerate(result.vertices)}
        # each edge once, on the page that lists the later of its two ends: joined pages hold every edge once
        edges = [e for e in result.edges if offset <= max(position[e.source], position[e.target]) < offset + limit]
        sources = {e.id: uri for e in service.entities_by_id(call.session, [v.id for v in page]).values()
                   if (uri := _source(e).get("SourceUri"))} if p.get("IncludeSource") else {}   # as Describe*
        return drop_empty({"NextToken": paged(page, len(result.vertices), offset, p)}) | {
            "Vertices": [{"Arn": call.arn(f"{v.kind}/{v.id}"), "Type": v.type, "LineageType": KINDS[v.kind],
                          **({"Source": {"SourceUri": sources[v.id]}} if v.id in sources else {})} for v in page],
            "Edges": [{"SourceArn": call.arn(f"{kinds_of[e.source]}/{e.source}"), "AssociationType": e.type,
                       "DestinationArn": call.arn(f"{kinds_of[e.target]}/{e.target}")} for e in edges]}


def _association(call: Call, e: Edge, known: dict[str, Entity]) -> dict[str, Any]:
    src, dst = known[e.source_id], known[e.target_id]
    return drop_empty({"SourceArn": arn(call, src), "DestinationArn": arn(call, dst), "SourceType": src.type,
                       "DestinationType": dst.type, "AssociationType": e.type, "SourceName": _name(src),
                       "DestinationName": _name(dst), "CreationTime": e.created_at,
                       "CreatedBy": user_context(e.created_by)})
