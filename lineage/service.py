"""Lineage rules. ``ensure_*`` and ``link`` are idempotent, so every domain can record what it did in one
call without first asking what exists; the ``create_*`` / ``add_association`` API paths are audited.

What mlgov records itself (``system``: registrations, approvals, stage moves, baselines, deployments, alerts) is
evidence: no API caller may patch or delete it, admins included. What users record through the API may be
changed by its creator (compared by key owner) or an admin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    CTE,
    CompoundSelect,
    Integer,
    Select,
    String,
    bindparam,
    func,
    literal,
    null,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lineage.orm import Edge, Entity
from lineage.schemas import (
    ActionCreate,
    ArtifactCreate,
    AssociationCreate,
    ContextCreate,
    EntityUpdate,
    QueryRequest,
    QueryResult,
    properties_size,
    properties_size_problem,
)
from mlgov import audit
from mlgov.auth import Principal, Role, same_person
from mlgov.db import as_utc, equal, icontains, in_window, insert_or_skip, new_id, paginate, utcnow
from mlgov.errors import Conflict, Forbidden, Invalid, NotFound

# Keys mlgov gives the actions and contexts it records; API callers may not take them.
SYSTEM_KEY_PREFIXES = ("approval:", "stage:", "alert:", "deployment:", "training-job:", "retraining:",
                       "model-group:", "endpoint:")

# URIs of the artifacts mlgov names itself (model versions); API callers may refer to them but not create them.
SYSTEM_URI_PREFIX = "mlgov://"

# Types of the entities mlgov records as evidence; an API caller's entity of one of them (in any case) would look
# like it in every graph (a forged "Approval" beside a pending version).
SYSTEM_TYPES = {"artifact": ("ModelPackage",), "context": ("ModelGroup", "Endpoint"),
                "action": ("Approval", "StageTransition", "Deployment", "Alert", "RetrainingRun")}

__all__ = ["Edge", "Entity", "Node", "add_edges", "alert_key", "chain", "ensure_action", "ensure_artifact",
           "ensure_context", "ensure_nodes", "find_action", "link", "model_version_uri", "query", "query_document",
           "rename_model_group", "upstream"]


def alert_key(alert_id: str) -> str:
    """The key of a monitoring alert's action: monitor records the alert under it, the registry finds it when a
    retrained version names the alert."""
    return f"alert:{alert_id}"


def model_version_uri(group: str, version: int) -> str:
    """The URI of a registered model version's own node (SageMaker's model package artifact). A version is not its
    model file: two versions may ship the same file, and each keeps its own training data and decisions."""
    return f"{SYSTEM_URI_PREFIX}model-groups/{group}/versions/{version}"


def rename_model_group(session: Session, old: str, new: str) -> int:
    """The lineage mlgov named after a model group follows its rename: the versions' ``mlgov://`` nodes, the group's
    context, and training jobs recorded under their default name (``<group>/<n>/training``). Otherwise the old
    nodes would stay under the old name, and a group created later under that name would take them over (its
    version 1 found "its" node, with the other group's training data and approvals). How many nodes were renamed.
    A node already under the new name (left by a group of that name deleted earlier) refuses the rename."""
    old_prefix, new_prefix = model_version_uri(old, 0)[:-1], model_version_uri(new, 0)[:-1]
    moves: list[tuple[Entity, str, dict[str, Any]]] = []
    for ent in session.scalars(select(Entity).where(
            Entity.kind == "artifact", Entity.type == "ModelPackage", Entity.system.is_(True),
            func.substr(Entity.uri, 1, len(old_prefix)) == old_prefix)):
        number = (ent.uri or "")[len(old_prefix):]
        if not number.isdigit():
            continue
        uri = new_prefix + number
        moves.append((ent, artifact_identity(uri, ent.sha256), {
            "uri": uri, "name": f"{new}/{number}", "properties": {**ent.properties, "model_group": new}}))
        job = _find(session, "action", f"training-job:{old}/{number}/training")
        if job is not None and job.system:
            moves.append((job, f"training-job:{new}/{number}/training", {"name": f"{new}/{number}/training"}))
    ctx = _find(session, "context", f"model-group:{old}")
    if ctx is not None:
        moves.append((ctx, f"model-group:{new}", {"name": new}))
    taken = [identity for ent, identity, _ in moves if _find(session, ent.kind, identity) is not None]
    if taken:
        raise Conflict(f"lineage recorded under the name {new!r} still exists ({taken[0]!r}), from a model group "
                       "of that name deleted earlier", fix="choose another name")
    now = utcnow()
    for ent, identity, fields in moves:
        ent.identity, ent.updated_at = identity, now
        for name, value in fields.items():
            setattr(ent, name, value)
    session.flush()
    return len(moves)


def artifact_identity(uri: str, sha256: str | None, source_version: str | None = None) -> str:
    """A node per URI and content: its SHA-256, else the version its source names (an S3 ETag or VersionId,
    ``S3ETag=…``; never a bare hex digest, so the two cannot collide), else the URI alone."""
    return f"{uri}#{sha256 or source_version or ''}"


def _find(session: Session, kind: str, identity: str) -> Entity | None:
    return session.scalar(select(Entity).where(Entity.kind == kind, Entity.identity == identity))


def _claim(found: Entity, system: bool) -> None:
    """Once mlgov records into an entity it becomes evidence, even if a user created it first."""
    if system and not found.system:
        found.system = True


_Row = TypeVar("_Row", Entity, Edge)


def _insert(session: Session, row: _Row, existing: Callable[[], _Row | None], *,
            fresh: bool = False) -> tuple[_Row, bool]:
    """Insert ``row``, or return the twin a concurrent request committed first (then False).

    Two pipelines recording the same dataset at once must both succeed: on PostgreSQL the second INSERT
    waits for the first commit and then violates the unique key; the savepoint keeps this transaction usable.
    ``fresh``: the caller knows no other transaction can insert this row (its identity names something only this
    transaction creates, e.g. a version number it holds the lock for), so it is written without a savepoint.
    """
    if fresh:
        session.add(row)
        session.flush()
        return row, True
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        twin = existing()
        if twin is None:
            raise
        return twin, False
    return row, True


def ensure_artifact(session: Session, *, artifact_type: str, uri: str, sha256: str | None = None,
                    name: str | None = None, properties: dict[str, Any] | None = None, actor: str,
                    description: str | None = None, system: bool = True,
                    owner: str | None = None, fresh: bool = False,
                    source_version: str | None = None) -> tuple[Entity, bool]:
    """The artifact for (uri, sha256 or source_version); created if new. A new hash or version for a known URI
    is a new node, DerivedFrom the newest earlier such node of that URI, so "trained on exactly this data" stays
    answerable. ``system=False`` only for what an API caller records (``owner`` then names who may change it).
    ``fresh``: see `_insert`."""
    sha = sha256.lower() if sha256 else None
    identity = artifact_identity(uri, sha, source_version)
    found = _find(session, "artifact", identity)
    if found is not None:
        _claim(found, system)
        return found, False
    if not system and uri.casefold().startswith(SYSTEM_URI_PREFIX):   # URI schemes are case-insensitive
        raise Invalid(f"URIs starting with {SYSTEM_URI_PREFIX} name what mlgov records itself (model versions); "
                      f"{uri!r} is not one of them",
                      fix=f"refer only to existing {SYSTEM_URI_PREFIX} artifacts, or use your own URI scheme")
    now = utcnow()
    ent = Entity(id=new_id(), kind="artifact", type=artifact_type, name=name, identity=identity, uri=uri, sha256=sha,
                 properties=properties or {}, description=description, created_by=actor, created_at=now,
                 updated_at=now, system=system, creator_owner=owner or actor)
    ent, created = _insert(session, ent, lambda: _find(session, "artifact", identity), fresh=fresh)
    if not created:
        _claim(ent, system)
        return ent, False
    if sha is not None or source_version is not None:
        # the newest earlier version of the URI, else the node recorded for the URI alone (before its versions
        # were told apart), so a URI's versions stay one line of lineage
        previous = session.scalar(select(Entity).where(
            Entity.kind == "artifact", Entity.uri == uri, Entity.id != ent.id)
            .order_by((Entity.identity == artifact_identity(uri, None)).asc(), Entity.created_at.desc(),
                      Entity.id.desc()).limit(1))
        if previous is not None:
            link(session, previous, ent, "DerivedFrom", actor=actor,
                 properties={"reason": "same URI, new content hash" if sha else "same URI, new source version"},
                 system=system, owner=owner)
    return ent, True


def ensure_action(session: Session, *, action_type: str, key: str, name: str, status: str | None = None,
                  start_time: dt.datetime | None = None, end_time: dt.datetime | None = None,
                  properties: dict[str, Any] | None = None, actor: str, system: bool = True,
                  owner: str | None = None, fresh: bool = False) -> tuple[Entity, bool]:
    """The action for ``key``; created if new, else its status, times and properties are brought up to date.
    ``fresh``: see `_insert`."""
    found = _find(session, "action", key)
    if found is not None:
        _claim(found, system)
        if status is not None:
            found.status = status
        if start_time is not None and (found.start_time is None or start_time < found.start_time):
            found.start_time = start_time   # the earliest start reported (events may come out of order)
        if end_time is not None:
            found.end_time = end_time
        if properties:
            found.properties = {**(found.properties or {}), **properties}
        found.updated_at = utcnow()
        session.flush()
        return found, False
    now = utcnow()
    ent = Entity(id=new_id(), kind="action", type=action_type, name=name, identity=key, status=status or "Unknown",
                 start_time=start_time, end_time=end_time, properties=properties or {}, created_by=actor,
                 created_at=now, updated_at=now, system=system, creator_owner=owner or actor)
    ent, created = _insert(session, ent, lambda: _find(session, "action", key), fresh=fresh)
    if not created:    # created concurrently: bring it up to date as if it had been found
        return ensure_action(session, action_type=action_type, key=key, name=name, status=status, start_time=start_time,
                             end_time=end_time, properties=properties, actor=actor, system=system, owner=owner)
    return ent, True


def find_action(session: Session, key: str) -> Entity | None:
    return _find(session, "action", key)


def ensure_context(session: Session, *, context_type: str, name: str, key: str | None = None,
                   properties: dict[str, Any] | None = None, actor: str, system: bool = True,
                   owner: str | None = None) -> tuple[Entity, bool]:
    identity = key or f"{context_type}:{name}"
    found = _find(session, "context", identity)
    if found is not None:
        _claim(found, system)
        return found, False
    now = utcnow()
    ent = Entity(id=new_id(), kind="context", type=context_type, name=name, identity=identity,
                 properties=properties or {}, created_by=actor, created_at=now, updated_at=now, system=system,
                 creator_owner=owner or actor)
    ent, created = _insert(session, ent, lambda: _find(session, "context", identity))
    if not created:
        _claim(ent, system)
    return ent, created


def link(session: Session, source: Entity, target: Entity, association_type: str, *, actor: str,
         properties: dict[str, Any] | None = None, system: bool = True, owner: str | None = None,
         fresh: bool = False) -> Edge:
    """An association, created unless it exists (idempotent). ``fresh``: one end was created in this transaction,
    so no such edge can exist yet and none can be inserted concurrently: added without a lookup or savepoint."""
    def existing() -> Edge | None:
        return session.scalar(select(Edge).where(Edge.source_id == source.id, Edge.target_id == target.id,
                                                 Edge.type == association_type))

    found = None if fresh else existing()
    if found is not None:
        if system and not found.system:
            found.system = True
        return found
    edge = Edge(id=new_id(), source_id=source.id, target_id=target.id, type=association_type,
                properties=properties or {}, created_by=actor, created_at=utcnow(), system=system,
                creator_owner=owner or actor)
    if fresh:   # both ends are in the database already: written with the transaction's next flush, batched
        session.add(edge)
        return edge
    edge, created = _insert(session, edge, existing)
    if not created and system and not edge.system:
        edge.system = True
    return edge


def chain(session: Session, steps: Sequence[tuple[Entity, Entity, str]], *, actor: str,
          fresh: Entity | None = None) -> None:
    """Link each (source, target, type); steps touching ``fresh`` (a node created in this transaction) skip the
    lookup and savepoint (see `link`)."""
    for src, dst, association_type in steps:
        link(session, src, dst, association_type, actor=actor,
             fresh=fresh is not None and fresh.id in (src.id, dst.id))


# --- bulk recording (registration's hot path) ---------------------------------------------------------
# The same nodes and edges as ``ensure_*`` / ``link`` with ``system=True``, in one or two statements instead of a
# lookup, a savepoint and an insert per node: INSERT … ON CONFLICT DO NOTHING (both backends) keeps them idempotent
# and safe against a concurrent twin; rows go in sorted order so two writers never wait on each other crosswise.

@dataclass(frozen=True)
class Node:
    """A system node to ensure: what ``ensure_artifact`` / ``ensure_action`` / ``ensure_context`` would create."""

    kind: str
    type: str
    identity: str
    name: str | None = None
    uri: str | None = None
    sha256: str | None = None
    status: str | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)


_ENTITIES, _EDGES = Entity.__table__, Edge.__table__


def artifact_node(artifact_type: str, uri: str, sha256: str | None = None, *, name: str | None = None,
                  properties: dict[str, Any] | None = None) -> Node:
    sha = sha256.lower() if sha256 else None
    return Node("artifact", artifact_type, artifact_identity(uri, sha), name=name, uri=uri, sha256=sha,
                properties=properties or {})


# Prebuilt (compiled once): the nodes by (kind, identity), and with them a hashed URI's newest hashed node.
_FOUND = select(_ENTITIES.c.id, _ENTITIES.c.identity, _ENTITIES.c.system, literal("n").label("what")).where(
    tuple_(_ENTITIES.c.kind, _ENTITIES.c.identity).in_(bindparam("keys", expanding=True)))


def _newest_hashed(uri: Any) -> Any:
    c = _ENTITIES.c
    return (select(c.id, c.uri, literal(True), literal("p"))
            .where(c.kind == "artifact", c.uri == uri, c.sha256.is_not(None))
            .order_by(c.created_at.desc(), c.id.desc()).limit(1).subquery().select())


_FOUND_AND_NEWEST = union_all(_FOUND, _newest_hashed(bindparam("uri")))


EdgeSpec = tuple[str, str, str, dict[str, Any]]   # (source id, target id, association type, properties)


def ensure_nodes(session: Session, nodes: Sequence[Node], *, actor: str,
                 insert_first: bool = False) -> tuple[dict[str, tuple[str, bool]], list[EdgeSpec]]:
    """Ensure every node (system evidence, claimed if a user created it first): ``{identity: (id, created)}`` and
    the DerivedFrom edges ``(source, target, type, properties)`` a new content hash of a known URI needs (for
    `add_edges`). One SELECT (with each hashed artifact's newest earlier node) and one INSERT; ``insert_first``
    for nodes only this transaction should create (a version number it holds the lock for): the INSERT alone,
    with a look-up only for a node that existed after all."""
    session.flush()   # the statements below go straight to the connection: pending rows first (a no-op when none)
    out: dict[str, tuple[str, bool]] = {}
    derived: list[EdgeSpec] = []
    nodes = list({(n.kind, n.identity): n for n in reversed(nodes)}.values())[::-1]   # the first of twins wins
    missing = list(nodes)
    if not insert_first:
        out, previous = _look_up(session, nodes)
        missing = [n for n in nodes if n.identity not in out]
        created = _insert_nodes(session, missing, actor)
        for n in missing:
            if n.identity in created and n.sha256 is not None and previous.get(n.uri or ""):
                derived.append((previous[n.uri or ""], created[n.identity], "DerivedFrom",
                                {"reason": "same URI, new content hash"}))
    else:
        created = _insert_nodes(session, missing, actor)
    out.update({i: (ent_id, True) for i, ent_id in created.items()})
    twins = [n for n in missing if n.identity not in created]
    if twins:   # committed concurrently (or, for insert_first, recorded before): found now, not created
        found, _ = _look_up(session, twins, previous=False)
        out.update(found)
    lost = [n.identity for n in missing if n.identity not in out]
    if lost:
        raise RuntimeError(f"lineage nodes neither inserted nor found: {lost}")
    return out, derived


def _look_up(session: Session, nodes: Sequence[Node], *,
             previous: bool = True) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
    """Existing nodes (claimed as system evidence) and, per hashed artifact URI, its newest hashed node."""
    if not nodes:
        return {}, {}
    keys = [(n.kind, n.identity) for n in nodes]
    uris = sorted({n.uri for n in nodes if previous and n.kind == "artifact" and n.sha256 and n.uri})
    if not uris:
        stmt: Any = _FOUND
    elif len(uris) == 1:
        stmt = _FOUND_AND_NEWEST
    else:
        stmt = union_all(_FOUND, *(_newest_hashed(uri) for uri in uris))
    rows = session.connection().execute(stmt, {"keys": keys, "uri": uris[0] if uris else None}).all()
    found = {identity: (ent_id, False) for ent_id, identity, _, what in rows if what == "n"}
    newest = {uri: ent_id for ent_id, uri, _, what in rows if what == "p"}
    unclaimed = [ent_id for ent_id, _, system, what in rows if what == "n" and not system]
    if unclaimed:
        session.execute(update(Entity).where(Entity.id.in_(unclaimed)).values(system=True))
    return found, newest


def _insert_nodes(session: Session, nodes: Sequence[Node], actor: str) -> dict[str, str]:
    """INSERT … ON CONFLICT DO NOTHING: ``{identity: id}`` of the rows this statement created."""
    if not nodes:
        return {}
    now = utcnow()
    rows = [{"id": new_id(), "kind": n.kind, "type": n.type, "name": n.name, "identity": n.identity, "uri": n.uri,
             "sha256": n.sha256, "status": n.status if n.kind == "action" else None, "start_time": n.start_time,
             "end_time": n.end_time, "description": None, "properties": n.properties, "created_by": actor,
             "creator_owner": actor, "system": True, "created_at": now, "updated_at": now}
            for n in sorted(nodes, key=lambda n: (n.kind, n.identity))]
    table = _ENTITIES
    stmt = insert_or_skip(session, table, ["kind", "identity"]).returning(table.c.id, table.c.identity)
    # one statement with a fixed text (cached compiled) and the rows as parameters ("insertmanyvalues")
    return {identity: ent_id for ent_id, identity in session.connection().execute(stmt, rows)}


def add_edges(session: Session, edges: Sequence[EdgeSpec], *, actor: str) -> None:
    """System associations ``(source id, target id, type, properties)``, each created unless it exists (then
    claimed as evidence), in one statement: `link` for many."""
    if not edges:
        return
    now = utcnow()
    unique = {e[:3]: e for e in reversed(edges)}   # the first of twins wins
    rows = [{"id": new_id(), "source_id": src, "target_id": dst, "type": kind, "properties": props,
             "created_by": actor, "creator_owner": actor, "system": True, "created_at": now}
            for (src, dst, kind), (_, _, _, props) in sorted(unique.items())]
    stmt = insert_or_skip(session, _EDGES, ["source_id", "target_id", "type"], claim=_EDGES.c.system)
    session.connection().execute(stmt, rows)


# --- API paths (audited) ------------------------------------------------------------------------------

def _audit(session: Session, actor: str, action: str, ent_id: str, after: dict[str, Any]) -> None:
    audit.record(session, actor=actor, action=action, subject_type="lineage", subject_id=ent_id, after=after)


def user_type(kind: str, type_: str) -> str:
    """A type a user's entity may have: mlgov's own (Approval, ModelGroup, …) would pass for its evidence."""
    if type_.casefold() in {t.casefold() for t in SYSTEM_TYPES[kind]}:
        raise Invalid(f"{kind} type {type_!r} is reserved for what mlgov records itself",
                      fix=f"use another type (reserved for {kind}s: {', '.join(SYSTEM_TYPES[kind])})")
    return type_


def _user_key(key: str) -> str:
    if key.startswith(SYSTEM_KEY_PREFIXES):
        raise Invalid(f"keys starting with {key.split(':', 1)[0]}: are reserved for what mlgov records itself",
                      fix="choose a key without the prefixes " + ", ".join(SYSTEM_KEY_PREFIXES))
    return key


def create_artifact(session: Session, body: ArtifactCreate, principal: Principal,
                    source_version: str | None = None) -> tuple[Entity, bool]:
    """``source_version``: see `artifact_identity` (SageMaker's Source.SourceTypes)."""
    actor = principal.name
    sha = body.sha256.lower() if body.sha256 else None
    if _find(session, "artifact", artifact_identity(body.uri, sha, source_version)) is None:
        user_type("artifact", body.type)   # naming an existing one (a version's mlgov:// node) stays allowed
    ent, created = ensure_artifact(session, artifact_type=body.type, uri=body.uri, sha256=body.sha256, name=body.name,
                                   properties=body.properties, actor=actor, description=body.description,
                                   system=False, owner=principal.owner, source_version=source_version)
    if created:
        _audit(session, actor, "lineage.artifact_created", ent.id, {"type": ent.type, "uri": ent.uri,
                                                                      "sha256": ent.sha256})
    return ent, created


def create_action(session: Session, body: ActionCreate, principal: Principal) -> Entity:
    user_type("action", body.type)
    key = _user_key(body.key) if body.key else f"api:{new_id()}"

    def insert() -> tuple[Entity, bool]:
        if body.start_time and body.end_time and body.end_time < body.start_time:
            raise Invalid("end_time is before start_time", fix="swap or correct the times")
        return ensure_action(session, action_type=body.type, key=key, name=body.name, status=body.status,
                             start_time=body.start_time, end_time=body.end_time, properties=body.properties,
                             actor=principal.name, system=False, owner=principal.owner)

    return _create_new(session, "action", key, principal, body.description, "use another key or omit it", insert)


def create_context(session: Session, body: ContextCreate, principal: Principal) -> Entity:
    user_type("context", body.type)
    key = _user_key(body.key or f"{body.type}:{body.name}")
    return _create_new(session, "context", key, principal, body.description,
                       "reuse it (GET) or pick another name/key",
                       lambda: ensure_context(session, context_type=body.type, name=body.name, key=key,
                                              properties=body.properties, actor=principal.name, system=False,
                                              owner=principal.owner))


def _create_new(session: Session, kind: str, key: str, principal: Principal, description: str | None, fix: str,
                insert: Callable[[], tuple[Entity, bool]]) -> Entity:
    """An action or context an API caller records under ``key`` (``insert`` checks the body, then ensures the
    entity), audited; a key that exists is a 409, also when a concurrent request creates it between the check and
    the insert."""
    exists = f"{'an' if kind == 'action' else 'a'} {kind} with key {key!r} already exists"
    if _find(session, kind, key) is not None:
        raise Conflict(exists, fix=fix)
    ent, created = insert()
    if not created:
        raise Conflict(exists, fix=fix)
    ent.description = description
    _audit(session, principal.name, f"lineage.{kind}_created", ent.id, {"type": ent.type, "name": ent.name})
    return ent


def changeable(row: Entity | Edge, principal: Principal) -> bool:
    """Whether ``principal`` may change ``row`` (see `may_change`)."""
    return not row.system and (principal.role == Role.admin
                               or same_person(row.creator_owner or row.created_by, principal.owner))


def may_change(row: Entity | Edge, what: str, principal: Principal, verb: str) -> None:
    """Recorded evidence is immutable through the API; user rows belong to their creator (and admins)."""
    if row.system:
        raise Forbidden(f"{what} was recorded by mlgov itself (registration, approval, stage move, baseline, "
                        f"deployment or alert lineage) and is evidence: nobody may {verb} it through the API",
                        fix="record a correction as a new action or association instead")
    creator = row.creator_owner or row.created_by
    if principal.role != Role.admin and not same_person(creator, principal.owner):
        raise Forbidden(f"{what} was created by {creator!r}; only its creator or an admin may {verb} it",
                        fix=f"ask {creator!r} or an admin")


def update_entity(session: Session, kind: str, entity_id: str, body: EntityUpdate, principal: Principal) -> Entity:
    actor = principal.name
    ent = get_entity(session, kind, entity_id)
    may_change(ent, f"{kind} {entity_id}", principal, "patch")
    if kind != "action" and (body.status is not None or body.end_time is not None):
        raise Invalid(f"status and end_time apply to actions, not to {kind}s", fix="leave them out")
    before = {"name": ent.name, "description": ent.description, "status": ent.status,
              "properties": ent.properties}
    fields = body.model_fields_set
    if "name" in fields:
        ent.name = body.name
    if "description" in fields:
        ent.description = body.description
    if body.status is not None:
        ent.status = body.status
    if body.end_time is not None:
        end = as_utc(body.end_time)
        if ent.start_time is not None and end is not None and end < ent.start_time:
            raise Invalid("end_time is before the action's start_time", fix="correct the time")
        ent.end_time = end
    props = {**(ent.properties or {}), **(body.properties or {})}
    for k in body.properties_to_remove:
        props.pop(k, None)
    size = properties_size(props)
    problem = properties_size_problem(size)
    if problem and size > properties_size(ent.properties or {}):   # merged updates cannot grow past the limit
        raise Invalid(f"the {kind}'s properties would {problem}", fix="remove properties (properties_to_remove) "
                      "or send smaller values", field="properties")
    ent.properties = props
    ent.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor, action=f"lineage.{kind}_updated", subject_type="lineage", subject_id=ent.id,
                 before=before, after={"name": ent.name, "description": ent.description, "status": ent.status,
                                       "properties": ent.properties})
    return ent


def delete_entity(session: Session, kind: str, entity_id: str, principal: Principal) -> None:
    """Delete an entity and its associations (audited with what was removed)."""
    actor = principal.name
    ent = get_entity(session, kind, entity_id)
    may_change(ent, f"{kind} {entity_id}", principal, "delete")
    edges = list(session.scalars(select(Edge).where((Edge.source_id == ent.id) | (Edge.target_id == ent.id))))
    recorded = [e.id for e in edges if e.system]
    if recorded:
        raise Forbidden(f"{kind} {entity_id} is linked into lineage mlgov recorded itself (associations "
                        f"{', '.join(recorded[:5])}); deleting it would remove evidence",
                        fix="leave it in place; record a correction as a new action instead")
    before = {"kind": ent.kind, "type": ent.type, "name": ent.name, "uri": ent.uri, "sha256": ent.sha256,
              "associations": [{"source": e.source_id, "target": e.target_id, "type": e.type} for e in edges]}
    for e in edges:
        session.delete(e)
    session.delete(ent)
    session.flush()
    audit.record(session, actor=actor, action=f"lineage.{kind}_deleted", subject_type="lineage", subject_id=entity_id,
                 before=before)


def get_entity(session: Session, kind: str, entity_id: str) -> Entity:
    ent = session.get(Entity, entity_id)
    if ent is None or ent.kind != kind:
        raise NotFound(f"no {kind} with id {entity_id!r}", fix=f"list them with GET /api/v1/lineage/{kind}s")
    return ent


def any_entity(session: Session, entity_id: str) -> Entity:
    """An artifact, action or context by id."""
    ent = session.get(Entity, entity_id)
    if ent is None:
        raise NotFound(f"no lineage entity with id {entity_id!r}", fix="open it from a lineage graph or list")
    return ent


def node_of(session: Session, uri: str) -> Entity | None:
    """The artifact recorded for ``uri`` without a content hash (a model version's own node), if any."""
    return _find(session, "artifact", artifact_identity(uri, None))


def find_named(session: Session, kind: str, ref: str) -> Entity:
    """An action or context by id, by key, or by name when exactly one has that name (SageMaker names them)."""
    ent = session.get(Entity, ref)
    if ent is not None and ent.kind == kind:
        return ent
    ent = _find(session, kind, ref)
    if ent is not None:
        return ent
    named = list(session.scalars(select(Entity).where(Entity.kind == kind, Entity.name == ref).limit(2)))
    if len(named) == 1:
        return named[0]
    raise NotFound(f"no {kind} with id, key or name {ref!r}" + (" (several have that name)" if named else ""),
                   fix=f"list them with GET /api/v1/lineage/{kind}s and use the id",
                   fixes={"sagemaker": f"list them with List{kind.title()}s and use the name or ARN"})


def entities_by_id(session: Session, ids: Sequence[str]) -> dict[str, Entity]:
    return {e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_(list(set(ids)))))} if ids else {}


def list_entities(session: Session, kind: str, *, entity_type: str | None, uri: str | None, sha256: str | None,
                  name_contains: str | None, status: str | None, created_after: dt.datetime | None,
                  created_before: dt.datetime | None, limit: int, offset: int, descending: bool = False,
                  after: Sequence[Any] | None = None, by: str = "created") -> tuple[list[Entity], int]:
    stmt = select(Entity).where(Entity.kind == kind)
    return paginate(session, stmt, *entity_order(descending, by), limit=limit, offset=offset, after=after, where=[
        *equal((Entity.type, entity_type), (Entity.uri, uri), (Entity.sha256, sha256.lower() if sha256 else None)),
        icontains(Entity.name, name_contains), *equal((Entity.status, status)),
        *in_window(Entity.created_at, created_after, created_before)])


ENTITY_SORTS = ("created", "name")
"""What `list_entities` sorts by: creation time, or name (actions and contexts, which always have one)."""


def entity_order(descending: bool, by: str = "created") -> tuple[Any, ...]:
    """The ORDER BY of `list_entities` (a keyset page's cursor is a row's values under it)."""
    column = Entity.name if by == "name" else Entity.created_at
    return (column.desc(), Entity.id.desc()) if descending else (column, Entity.id)


def association_order(descending: bool) -> tuple[Any, ...]:
    """The ORDER BY of `list_associations`."""
    return (Edge.created_at.desc(), Edge.id.desc()) if descending else (Edge.created_at, Edge.id)


def add_association(session: Session, body: AssociationCreate, principal: Principal) -> Edge:
    actor = principal.name
    ends = {e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_([body.source, body.target])))}
    missing = [x for x in (body.source, body.target) if x not in ends]
    if missing:
        raise NotFound(f"no lineage entity with id {missing[0]!r}",
                       fix="create the artifact/action/context first and use the id it returned",
                       missing=missing)
    if body.source == body.target:
        raise Invalid("an association cannot link an entity to itself", fix="use two different entity ids")
    exists = session.scalar(select(Edge.id).where(Edge.source_id == body.source, Edge.target_id == body.target,
                                                  Edge.type == body.type))
    if exists is not None:
        raise Conflict(f"association {body.source} -{body.type}-> {body.target} already exists",
                       fix="nothing to do; it is recorded", existing_id=exists)
    edge = link(session, ends[body.source], ends[body.target], body.type, actor=actor, properties=body.properties,
                system=False, owner=principal.owner)
    _audit(session, actor, "lineage.association_added", edge.id,
           {"source": body.source, "target": body.target, "type": body.type})
    return edge


def list_associations(session: Session, *, source: str | None, target: str | None, association_type: str | None,
                      limit: int, offset: int, descending: bool = False,
                      after: Sequence[Any] | None = None) -> tuple[list[Edge], int]:
    return paginate(session, select(Edge), *association_order(descending), limit=limit, offset=offset, after=after,
                    where=equal(
        (Edge.source_id, source), (Edge.target_id, target), (Edge.type, association_type)))


def delete_association(session: Session, edge_id: str, principal: Principal) -> None:
    actor = principal.name
    edge = session.get(Edge, edge_id)
    if edge is None:
        raise NotFound(f"no association with id {edge_id!r}", fix="list them with GET /api/v1/lineage/associations")
    may_change(edge, f"association {edge_id}", principal, "delete")
    before = {"source": edge.source_id, "target": edge.target_id, "type": edge.type}
    session.delete(edge)
    session.flush()
    audit.record(session, actor=actor, action="lineage.association_deleted", subject_type="lineage",
                 subject_id=edge_id, before=before)


def edge_read(e: Edge) -> dict[str, Any]:
    return {"id": e.id, "source": e.source_id, "target": e.target_id, "type": e.type, "properties": e.properties,
            "created_by": e.created_by, "created_at": e.created_at}


# --- query --------------------------------------------------------------------------------------------

def resolve_start(session: Session, items: Sequence[str]) -> list[str]:
    """Each start item is an entity id or an artifact URI (every content version of that URI)."""
    ids: list[str] = []
    for item in items:
        if session.get(Entity, item) is not None:
            ids.append(item)
            continue
        by_uri = list(session.scalars(select(Entity.id).where(Entity.kind == "artifact", Entity.uri == item)))
        if not by_uri:
            raise NotFound(f"start item {item!r} is neither a lineage entity id nor a known artifact URI",
                           fix="use an id from /api/v1/lineage/* or the exact URI of a recorded artifact",
                           missing=[item])
        ids.extend(by_uri)
    return list(dict.fromkeys(ids))


def query_document(session: Session, req: QueryRequest) -> dict[str, list[dict[str, Any]]]:
    """The answer as plain dicts shaped like `QueryResult`, for routes that send it straight to JSON: thousands of
    model objects per answer (and the garbage collections they trigger) cost more CPU than the walk itself."""
    f = req.filters
    assoc = f.association_types if f else None
    r = reached(resolve_start(session, req.start), req.direction, req.max_depth, assoc)
    rows, links = subgraph(
        session, r, include_edges=req.include_edges, association_types=assoc, kinds=f.kinds if f else None,
        types=f.types if f else None,
        created_after=as_utc(f.created_after) if f else None,
        created_before=as_utc(f.created_before) if f else None)
    kept = {x[1] for x in rows}
    return {
        "vertices": [{"id": x[1], "kind": x[2], "type": x[3], "name": x[4], "uri": x[5], "sha256": x[6],
                      "status": x[7], "depth": x[8]} for x in rows],
        "edges": [{"source": x[1], "target": x[2], "type": x[3]} for x in links if x[1] in kept and x[2] in kept]}


# --- the walk: one recursive CTE evaluated by the database (PostgreSQL or SQLite); Python only receives the
# reached vertices, never the whole graph. UNION (not UNION ALL) over (id, depth) drops repeated rows, so cycles
# end at ``max_depth`` and each vertex appears at most once per depth; the outer query keeps each vertex's
# smallest depth.

def _walk_rows(start_ids: Sequence[str], descend: bool, max_depth: int,
               association_types: Sequence[str] | None) -> Select[Any]:
    e = Edge.__table__
    src, dst = (e.c.source_id, e.c.target_id) if descend else (e.c.target_id, e.c.source_id)
    seed = select(Entity.id.label("id"), literal(0).label("depth")).where(Entity.id.in_(list(start_ids)))
    walk = seed.cte("walk_down" if descend else "walk_up", recursive=True)
    step = (select(dst.label("id"), (walk.c.depth + 1).label("depth"))
            .select_from(e.join(walk, src == walk.c.id))
            .where(walk.c.depth < max_depth))
    if association_types:
        step = step.where(e.c.type.in_(list(association_types)))
    walk = walk.union(step)
    return select(walk.c.id, walk.c.depth)


def reached(start_ids: Sequence[str], direction: str, max_depth: int,
            association_types: Sequence[str] | None) -> CTE:
    """Vertex id and smallest depth of everything reachable: Ascendants, Descendants or Both."""
    parts = [_walk_rows(start_ids, d, max_depth, association_types)
             for d in {"Descendants": [True], "Ascendants": [False]}.get(direction, [True, False])]
    rows = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("walked")
    return select(rows.c.id, func.min(rows.c.depth).label("depth")).group_by(rows.c.id).cte("reached")


def subgraph(session: Session, r: CTE, *, include_edges: bool, association_types: Sequence[str] | None,
             kinds: Sequence[str] | None = None, types: Sequence[str] | None = None,
             created_after: dt.datetime | None = None, created_before: dt.datetime | None = None,
             ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Reached vertices (output filters applied) and the associations among them, in one statement: the walk
    runs once (a CTE used twice is materialised) and only columns travel, never properties."""
    text_null = null().cast(String)
    v = (select(literal("v").label("row"), Entity.id, Entity.kind, Entity.type, Entity.name, Entity.uri,
                Entity.sha256, Entity.status, r.c.depth).join(r, r.c.id == Entity.id))
    if kinds:
        v = v.where(Entity.kind.in_(list(kinds)))
    if types:
        v = v.where(Entity.type.in_(list(types)))
    if created_after is not None:
        v = v.where(Entity.created_at >= created_after)
    if created_before is not None:
        v = v.where(Entity.created_at < created_before)
    stmt: Select[Any] | CompoundSelect[Any] = v
    if include_edges:
        e = Edge.__table__
        r2 = r.alias("reached_target")
        edges = (select(literal("e"), e.c.source_id, e.c.target_id, e.c.type, text_null, text_null, text_null,
                        text_null, null().cast(Integer))
                 .join(r, r.c.id == e.c.source_id).join(r2, r2.c.id == e.c.target_id))
        if association_types:
            edges = edges.where(e.c.type.in_(list(association_types)))
        stmt = union_all(v, edges)
    vertices: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    for row in session.execute(stmt).all():   # fetchall: one driver call, not one per row
        (vertices if row[0] == "v" else links).append(row)
    vertices.sort(key=itemgetter(8, 2, 3, 1))   # depth, kind, type, id (a C key function: no Python call per row)
    links.sort(key=itemgetter(1, 2, 3))
    return vertices, links


def query(session: Session, req: QueryRequest) -> QueryResult:
    """`query_document` as models, validated in one pydantic-core call (≈2× cheaper than model_construct each)."""
    return QueryResult.model_validate(query_document(session, req))


def upstream(session: Session, uri: str, sha256: str | None, max_depth: int = 10) -> list[dict[str, Any]]:
    """Data and jobs an artifact (e.g. a model version) came from, for audit reports; empty if never recorded."""
    ent = _find(session, "artifact", artifact_identity(uri, sha256.lower() if sha256 else None))
    if ent is None:
        return []
    res = query(session, QueryRequest(start=[ent.id], direction="Ascendants", max_depth=max_depth,
                                      include_edges=False))
    return [v.model_dump() for v in res.vertices if v.id != ent.id]
