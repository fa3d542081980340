"""Registry rules: numbering, four-eyes approvals, stage lifecycle, history; every change audited and emitted.

Lock order, kept everywhere to avoid deadlocks on PostgreSQL: group row → version row → audit chain.
Services only flush; the request or ``session_scope`` commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    CursorResult,
    Select,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.orm import QueryableAttribute, Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from lineage import service as lineage
from mlgov import audit, auth, events, names
from mlgov.auth import DECIDERS, Principal, Role
from mlgov.context import request_id_var
from mlgov.db import (
    as_utc,
    chunks,
    equal,
    icontains,
    in_window,
    is_postgres,
    like,
    new_id,
    paginate,
    per_backend,
    sort_order,
    utcnow,
)
from mlgov.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from mlgov.storage import ObjectStore
from registry.errors import (
    AlreadyInStage,
    CardExists,
    CardNotFound,
    FourEyesViolation,
    GroupExists,
    GroupNotFound,
    RuleRefusal,
    TransitionNotAllowed,
    VersionNotFound,
)
from registry.orm import (
    VALUE_PREFIX,
    Alias,
    AliasMove,
    ApprovalDecision,
    ModelCardRecord,
    ModelCardVersion,
    ModelGroup,
    ModelVersion,
    StageTransition,
    VersionMetadata,
)
from registry.schemas import (
    ALIAS_RE,
    DEFAULT_GOVERNED_ALIASES,
    DEFAULT_STAGES,
    DESCRIPTION_MAX,
    GROUP_NAME_MAX,
    TAG_KEY_MAX,
    TAG_VALUE_MAX,
    TAGS_MAX,
    ApprovalRequest,
    GroupCreate,
    GroupUpdate,
    SearchClause,
    SearchGroup,
    SearchTerm,
    StageConfig,
    StageDef,
    StageRequest,
    VersionFields,
    VersionRead,
    group_name_problem,
)

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
_VERSION_TABLE = ModelVersion.__table__
_GROUP_TABLE = cast(Table, ModelGroup.__table__)
# A registration's rows, as prebuilt Core inserts (compiled once; no unit of work).
_INSERT_VERSION, _INSERT_TRANSITION, _INSERT_METADATA = (
    insert(cast(Table, orm.__table__)) for orm in (ModelVersion, StageTransition, VersionMetadata))
APPROVAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    PENDING: (APPROVED, REJECTED),
    APPROVED: (REJECTED,),
    REJECTED: (APPROVED,),
}


_T = TypeVar("_T")


def _lock(stmt: Select[_T], session: Session) -> Select[_T]:
    return stmt.with_for_update() if is_postgres(session) else stmt


# --- groups -------------------------------------------------------------------------------------------

def get_group(session: Session, name: str, *, for_update: bool = False) -> ModelGroup:
    stmt = select(ModelGroup).where(ModelGroup.name == name)
    group = session.scalar(_lock(stmt, session) if for_update else stmt)
    if group is None:
        raise GroupNotFound(name)
    return group


RESERVED_METADATA_PREFIX = "mlgov."   # keys of mlgov's own facts (approval status, approver): nobody sets them
RESERVED_REGISTRATION_PREFIXES = (RESERVED_METADATA_PREFIX, "mlgov:")   # and SageMaker's view of the hash
ARCHIVED = "Archived"   # where the other versions go when a move archives them (MLflow's archive_existing_versions)


def reserved_key(key: str) -> bool:
    """Whether a tag or metadata key reads as one of mlgov's own facts: compared as read, so " mlgov.approved_by",
    "MLGOV.x", "mlgov．x" (a full-width dot) or one with a zero-width space are mlgov's too."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKC", key)
                     if unicodedata.category(ch) not in ("Cf", "Cc", "Zs") and not ch.isspace())
    return folded.casefold().startswith(RESERVED_REGISTRATION_PREFIXES)


def _no_reserved_tags(tags: Mapping[str, str], kept: Mapping[str, str] | None = None) -> None:
    """Tags under ``mlgov.`` read as mlgov's own facts (a search for ``tags.`mlgov.approval_status` = 'Approved'``
    must not match a model because someone wrote that tag): nobody sets them, on groups as on versions."""
    added = [k for k, v in tags.items() if reserved_key(k) and (kept or {}).get(k) != v]
    if added:
        raise Forbidden(f"tags starting with {RESERVED_METADATA_PREFIX!r} are set by mlgov itself ({added[0]!r})",
                        fix="choose a key without that prefix")


def create_group(session: Session, body: GroupCreate, actor: Principal) -> ModelGroup:
    _no_reserved_tags(body.tags)
    if body.stage_config is not None and actor.role != Role.admin:
        _governed_enough(body.stage_config)
    if session.scalar(select(ModelGroup.id).where(ModelGroup.name == body.name)) is not None:
        raise GroupExists(body.name)
    _refuse_lookalike(session, body.name, None)
    now = utcnow()
    cfg = (body.stage_config or DEFAULT_STAGES).model_dump()
    group = ModelGroup(id=new_id(), name=body.name, description=body.description, tags=dict(body.tags),
                       stage_config=cfg, latest_version=0, created_by=actor.name, created_at=now, updated_at=now)
    session.add(group)
    session.flush()
    after = {"name": group.name, "description": group.description, "tags": group.tags, "stage_config": cfg}
    audit.record(session, actor=actor.name, action="model_group.created", subject_type="model_group",
                 subject_id=group.name, after=after)
    events.emit(session, "model_group.created", group.name, after)
    return group


def _refuse_lookalike(session: Session, name: str, own_id: str | None) -> None:
    """A name that reads the same in print as another group's ("ｍ1" full-width, "srch–01" with an en dash,
    runs of spaces) is refused: an approver reading "@champion of m1" must know which group it is. One probe of
    the unique reading-key index, which also refuses the loser of two concurrent creates; plus the few groups
    without a key (look-alikes stored before migration 0028), compared by name, since the group holding their
    key may since have been renamed or deleted."""
    other = session.scalar(select(ModelGroup.name).where(
        ModelGroup.reading_key == names.stored_reading_key(name), ModelGroup.id != (own_id or "")))
    if other is None:
        key = names.reading_key(name)
        other = next((n for n in session.scalars(select(ModelGroup.name).where(
            ModelGroup.reading_key.is_(None), ModelGroup.id != (own_id or ""))) if names.reading_key(n) == key), None)
    if other is not None and other != name:
        raise Invalid(f"{name!r} reads the same as the existing model group {other!r} (they differ only in "
                      "full-width letters, dashes or spacing)",
                      fix=f"use {other!r} if that is the group meant, or choose a name that reads differently")


def _governed_enough(cfg: StageConfig) -> None:
    """A stage configuration a non-admin may create a group with: every stage that serves (exclusive, or named
    Production) takes Approved versions only, moved in by approvers. Otherwise a publisher could create a group
    whose Production needs no approval and move their own pending version into it."""
    loose = [s.name for s in cfg.stages if (s.exclusive or s.name.casefold() == "production")
             and not s.requires_approval]
    if loose:
        raise Forbidden(f"only admin keys may create a group whose stage {', '.join(map(repr, loose))} (exclusive "
                        "or Production) takes versions without approval",
                        fix="set requires_approval: true on it, leave stage_config out (the default), or ask an admin")


def _stored(group: ModelGroup) -> tuple[Any, ...]:
    """What an update can change, as stored (governed_aliases None: following the defaults, not pinned to them)."""
    return (group.description, dict(group.tags or {}), group.stage_config, group.approval_policy,
            group.governed_aliases)


def update_group(session: Session, name: str, body: GroupUpdate, actor: Principal) -> ModelGroup:
    group = get_group(session, name, for_update=True)
    stored = _stored(group)
    before = {"description": group.description, "tags": group.tags, "stage_config": group.stage_config,
              "approval_policy": group.approval_policy, "governed_aliases": governed_aliases(group)}
    fields = body.model_fields_set
    if ("description" in fields and body.description != group.description) or (
            "tags" in fields and body.tags is not None and dict(body.tags) != (group.tags or {})):
        # tags are searchable governance metadata (team, tier) and the description what users read of the model
        _may_change_group(session, group, actor, "change its description or tags")
    if "description" in fields:
        group.description = body.description
    if "tags" in fields and body.tags is not None:
        _no_reserved_tags(body.tags, group.tags or {})
        group.tags = dict(body.tags)
    if "approval_policy" in fields:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may change a group's approval policy",
                            fix="ask an admin, or leave approval_policy out of the update")
        group.approval_policy = body.approval_policy.model_dump() if body.approval_policy else None
    if "stage_config" in fields and body.stage_config is not None:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may change a group's stage configuration",
                            fix="ask an admin, or leave stage_config out of the update")
        _check_stages_still_valid(session, group, body.stage_config)
        group.stage_config = body.stage_config.model_dump()
    if "governed_aliases" in fields:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may change which aliases of a group are governed",
                            fix="ask an admin, or leave governed_aliases out of the update")
        group.governed_aliases = None if body.governed_aliases is None else sorted(set(body.governed_aliases))
    after = {"description": group.description, "tags": group.tags, "stage_config": group.stage_config,
             "approval_policy": group.approval_policy, "governed_aliases": governed_aliases(group)}
    if _stored(group) == stored:   # nothing changed (a retry, a restated value): no audit event, webhook or time
        return group
    group.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="model_group.updated", subject_type="model_group",
                 subject_id=group.name, before=before, after=after)
    events.emit(session, "model_group.updated", group.name, after)
    return group


def _check_stages_still_valid(session: Session, group: ModelGroup, cfg: StageConfig) -> None:
    names = {s.name for s in cfg.stages}
    used = set(session.scalars(select(ModelVersion.stage).where(ModelVersion.group_id == group.id,
                                                                ModelVersion.stage.is_not(None)).distinct()))
    missing = sorted(s for s in used if s is not None and s not in names)
    if missing:
        raise Conflict(f"versions of {group.name!r} are in stage(s) {missing} that the new configuration drops",
                       fix="keep those stages or move the versions out of them first")


def group_order(sort: str) -> tuple[Any, ...]:
    """The ORDER BY of `list_groups` (a keyset page's cursor is a row's values under it)."""
    return sort_order(sort, {"name": ModelGroup.name, "created_at": ModelGroup.created_at}), ModelGroup.id


def list_groups(session: Session, *, name_contains: str | None, tags: dict[str, str], sort: str, limit: int,
                offset: int, created_after: dt.datetime | None = None, created_before: dt.datetime | None = None,
                after: Sequence[Any] | None = None) -> tuple[list[ModelGroup], int]:
    return paginate(session, select(ModelGroup), *group_order(sort), limit=limit, offset=offset, after=after, where=[
        icontains(ModelGroup.name, name_contains), *(ModelGroup.tags[k].as_string() == v for k, v in tags.items()),
        *in_window(ModelGroup.created_at, created_after, created_before)])


# --- versions -----------------------------------------------------------------------------------------

def to_read(group_name: str, v: ModelVersion) -> VersionRead:
    return VersionRead(
        group=group_name, version=v.version, approval_status=v.approval_status,
        approval_description=v.approval_description, stage=v.stage, description=v.description,
        artifact_uri=v.artifact_uri, artifact_sha256=v.artifact_sha256, framework=v.framework,
        framework_version=v.framework_version, flavor=v.flavor, inference_spec=v.inference_spec,
        metrics=v.metrics or {}, model_metrics=v.model_metrics, metadata={m.key: m.value for m in v.metadata_items},
        domain=v.domain, task=v.task, model_card=v.model_card, training_data=list(v.training_data or []),
        training_job=v.training_job, source=v.source, triggered_by_alert=v.triggered_by_alert,
        run_id=v.run_id, run_link=v.run_link, artifact_trusted=bool(v.artifact_trusted), bias_report=v.bias_report,
        registered_by=v.registered_by, created_at=v.created_at,
        updated_at=v.updated_at,
    )


def _payload(group_name: str, v: ModelVersion) -> dict[str, Any]:
    data: dict[str, Any] = to_read(group_name, v).model_dump(mode="json")
    return data


def register_version(session: Session, group_name: str, body: VersionFields, actor: Principal, *,
                     hash_in_metadata: bool = False) -> ModelVersion:
    """Number the version (gap-free), store it, record its lineage, audit and emit it, in the caller's transaction."""
    return register_versions(session, group_name, [Registration(body, actor, request_id_var.get(),
                                                                hash_in_metadata)])[0]


@dataclass(frozen=True)
class Registration:
    """One request's registration; ``request_id`` goes into its audit event (a group commit writes several)."""

    body: VersionFields
    actor: Principal
    request_id: str | None = None
    hash_in_metadata: bool = False   # its metadata states the hash as "mlgov:artifact-sha256", checked to be the
    # one registered (SageMaker clients keep it in CustomerMetadataProperties)


def register_versions(session: Session, group_name: str, regs: Sequence[Registration]) -> list[ModelVersion]:
    """Register versions of one group in order, numbered consecutively, as `register_version` would one after the
    other, with one statement per kind of row for all of them (a group commit's batch).

    Registrations of one group are serialised by the group row, locked from numbering to commit, so a number is
    never skipped. What does not depend on the number (the alert, the model artifact, datasets and the group's
    lineage context) is looked up or recorded before that lock, and lineage is written in bulk (nodes in one
    INSERT … ON CONFLICT DO NOTHING, edges in one more), so the lock is held for as few statements as possible."""
    alert_nodes: dict[int, lineage.Entity] = {}
    for i, r in enumerate(regs):
        if r.body.model_card is not None and r.body.model_card.status == "Approved":
            # the registrant writes the card: approving it is a review by an approver independent of them
            raise Forbidden(f"four-eyes rule: key {r.actor.name!r} writes this version's model card, so it cannot "
                            "register it as Approved", fix="register the card as Draft or PendingReview; an approver "
                            "owned by someone else approves it (SageMaker's UpdateModelCard)")
        reserved = [k for k in r.body.metadata if reserved_key(k)
                    and not (r.hash_in_metadata and k == "mlgov:artifact-sha256")]
        if reserved:
            raise Forbidden(f"metadata keys starting with 'mlgov.' or 'mlgov:' are mlgov's own facts ({reserved[0]!r})",
                            fix="give the artifact's hash as artifact_sha256 and use other keys for your metadata")
        if r.body.triggered_by_alert:
            node = lineage.find_action(session, lineage.alert_key(r.body.triggered_by_alert))
            if node is None:
                raise NotFound(f"no monitoring alert with id {r.body.triggered_by_alert!r}",
                               fix="pass the alert id from the retraining request (GET /api/v1/alerts)")
            alert_nodes[i] = node
    before_lock = _lineage_before_number(session, group_name, regs)
    numbered = session.connection().execute(   # takes the group row's lock until commit
        update(_GROUP_TABLE).where(_GROUP_TABLE.c.name == group_name)
        .values(latest_version=_GROUP_TABLE.c.latest_version + len(regs), updated_at=utcnow())
        .returning(_GROUP_TABLE.c.id, _GROUP_TABLE.c.latest_version, _GROUP_TABLE.c.stage_config),
    ).one_or_none()
    if numbered is None:   # the lineage written above goes with the caller's rollback
        raise GroupNotFound(group_name)
    group_id, last, stage_config = numbered
    cfg = StageConfig.model_validate(stage_config)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    metadata: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    for number, r in enumerate(regs, start=last - len(regs) + 1):
        body, actor = r.body, r.actor
        row: dict[str, Any] = dict(
            id=new_id(), group_id=group_id, version=number, approval_status=PENDING, approval_description=None,
            stage=cfg.initial, description=body.description, artifact_uri=body.artifact_uri,
            artifact_sha256=body.artifact_sha256, framework=body.framework,
            framework_version=body.framework_version, flavor=body.flavor,
            inference_spec=body.inference_spec.model_dump(mode="json") if body.inference_spec else None,
            metrics=dict(body.metrics),
            model_metrics=body.model_metrics.model_dump(mode="json") if body.model_metrics else None,
            domain=body.domain, task=body.task,
            model_card=body.model_card.model_dump(mode="json") if body.model_card else None,
            training_data=list(body.training_data),
            training_job=body.training_job.model_dump(mode="json") if body.training_job else None,
            source=body.source.model_dump(mode="json") if body.source else None, run_id=body.run_id,
            run_link=body.run_link, triggered_by_alert=body.triggered_by_alert, artifact_trusted=False,
            registered_by=actor.name, registered_by_key=actor.key_pk, created_at=now, updated_at=now,
        )
        rows.append(row)
        metadata += [{"version_id": row["id"], "key": k, "value": val} for k, val in sorted(body.metadata.items())]
        transitions.append({"group_id": group_id, "version_id": row["id"], "from_stage": None,
                            "to_stage": cfg.initial, "actor": actor.name, "comment": None, "reason": "registered",
                            "at": now})
    # Core inserts, not the unit of work (40% of a registration's CPU went to flushing ORM objects); the answers
    # are detached ModelVersions built from the same values (a later query in this transaction reads the rows).
    conn = session.connection()
    conn.execute(_INSERT_VERSION, rows)
    conn.execute(_INSERT_TRANSITION, transitions)
    if metadata:
        conn.execute(_INSERT_METADATA, metadata)
    versions = []
    for row in rows:
        v = ModelVersion(**row)
        v.metadata_items = [VersionMetadata(**m) for m in metadata if m["version_id"] == row["id"]]
        versions.append(v)
    version_ids = _record_training_lineage(session, group_name, versions, before_lock)
    for i, alert_node in alert_nodes.items():
        v, body, name = versions[i], regs[i].body, regs[i].actor.name
        version = session.get_one(lineage.Entity, version_ids[i])
        run, _ = lineage.ensure_action(session, action_type="RetrainingRun",
                                       key=f"retraining:{body.triggered_by_alert}:{v.id}",
                                       name=f"retraining of {group_name} after alert {body.triggered_by_alert}",
                                       status="Completed", end_time=now, actor=name, fresh=True)
        lineage.chain(session, [(alert_node, run, "ContributedTo"), (run, version, "Produced")], actor=name,
                      fresh=run)
    payloads = [(f"{group_name}/{v.version}", _payload(group_name, v)) for v in versions]
    # The outbox rows first, the audit append last: the chain lock is then held only from the append to commit.
    events.emit_many(session, "version.registered", payloads)
    audit.record_many(session, [audit.Entry(r.actor.name, "version.registered", "model_version", subject,
                                            after=payload, request_id=r.request_id)
                                for r, (subject, payload) in zip(regs, payloads, strict=True)])
    return versions


MAX_HASHED_FILES = 1000


def hash_artifact(store: ObjectStore, uri: str) -> str | None:
    """The sha256 of an artifact mlgov can read from its own store (None when ``uri`` is elsewhere or too big to
    hash here). A single object hashes its bytes; a directory (an MLflow model: MLmodel, weights, environment)
    hashes its manifest, the sorted lines ``<sha256 of the file>  <path below uri>\n``, which anyone can
    recompute from a copy."""
    key = store.key_of(uri)
    if key is None or not key.strip("/"):
        return None
    key = key.strip("/")
    if store.exists(key):
        return hashlib.sha256(store.get(key)).hexdigest()
    files = []
    for k in store.list(key + "/"):
        files.append(k)
        if len(files) > MAX_HASHED_FILES:
            return None
    if not files:
        return None
    lines = sorted(f"{hashlib.sha256(store.get(k)).hexdigest()}  {k[len(key) + 1:]}\n" for k in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def checked_hash(store: ObjectStore, uri: str, stated: str | None, *, readable: bool = False) -> str | None:
    """The hash to register for ``uri``: for an artifact mlgov can read from its own store, the hash it computes
    (a stated one must equal it: a false hash would pass a group's ``require_artifact_hash`` for a file it does
    not describe); for one elsewhere, the stated hash as it is. ``readable``: a URI in the store must be."""
    digest = hash_artifact(store, uri)
    if digest is None:
        if readable and store.key_of(uri) is not None:
            raise Invalid(f"{uri} cannot be read from the object store", fix="upload the artifact first")
        return stated
    if stated is not None and stated.lower() != digest:
        raise Invalid(f"artifact_sha256 says {stated} but the artifact at {uri} hashes to {digest}",
                      fix=f"state the SHA-256 of the file the URI names ({digest}), or register the artifact you "
                          "meant")
    return digest


def version_entity(session: Session, group: ModelGroup, v: ModelVersion, actor: str) -> lineage.Entity:
    """The version's own lineage node, which the model artifact (URI + sha256) ContributedTo. Training, approvals,
    stage moves, baselines and deployments attach here, never to the artifact: versions that ship the same file
    share the artifact node but not each other's lineage."""
    node, created = _version_node(session, group, v, actor, fresh=False)
    if created:
        model, _ = lineage.ensure_artifact(session, artifact_type="Model", uri=v.artifact_uri,
                                           sha256=v.artifact_sha256, actor=actor)
        lineage.link(session, model, node, "ContributedTo", actor=actor, fresh=True)
    return node


def _version_node(session: Session, group: ModelGroup, v: ModelVersion, actor: str,
                  fresh: bool) -> tuple[lineage.Entity, bool]:
    """``fresh`` only while registering: the transaction holding the group's lock is the only one that can create
    the node of the number it assigned (the lookup stays for a group deleted and created again, whose numbers
    restart)."""
    return lineage.ensure_artifact(session, artifact_type="ModelPackage",
                                   uri=lineage.model_version_uri(group.name, v.version),
                                   name=f"{group.name}/{v.version}", actor=actor,
                                   properties={"model_group": group.name, "version": v.version}, fresh=fresh)


@dataclass(frozen=True)
class _LineageParts:
    """The ids of a batch's lineage nodes that do not depend on version numbers (per registration: the model and
    its datasets; the group's context), and the DerivedFrom edges new hashes of known model URIs need."""

    models: list[str]
    context: str
    datasets: list[list[str]]
    derived: list[lineage.EdgeSpec]


def _by_actor(regs: Sequence[Registration]) -> dict[str, list[int]]:
    """Registrations' positions per actor, in order of first appearance: lineage nodes record who created them,
    so each actor's nodes are ensured in a call of their own."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(regs):
        out.setdefault(r.actor.name, []).append(i)
    return out


def _lineage_before_number(session: Session, group: str, regs: Sequence[Registration]) -> _LineageParts:
    models = [lineage.artifact_node("Model", r.body.artifact_uri, r.body.artifact_sha256) for r in regs]
    ctx = lineage.Node("context", "ModelGroup", f"model-group:{group}", name=group)
    datasets = [[lineage.artifact_node("Dataset", uri) for uri in r.body.training_data] for r in regs]
    ids: dict[str, tuple[str, bool]] = {}
    derived: list[lineage.EdgeSpec] = []
    for actor, positions in _by_actor(regs).items():
        got, new = lineage.ensure_nodes(session, [ctx, *(n for i in positions for n in (models[i], *datasets[i]))],
                                        actor=actor)
        ids.update(got)
        derived += new
    return _LineageParts([ids[m.identity][0] for m in models], ids[ctx.identity][0],
                         [[ids[d.identity][0] for d in ds] for ds in datasets], _in_order(derived, models, ids))


def _in_order(derived: list[lineage.EdgeSpec], models: list[lineage.Node],
              ids: dict[str, tuple[str, bool]]) -> list[lineage.EdgeSpec]:
    """Each new hash of a URI derives from the URI's newest earlier node: within a batch, from the batch's
    previous new node of that URI (as one registration after the other would record), not all from the same one."""
    uris = [m.uri for m in models if m.sha256 is not None]
    if len(uris) == len(set(uris)):
        return derived
    edge_of = {e[1]: e for e in derived}
    latest: dict[str, str] = {}
    seen: set[str] = set()
    out = []
    for m in models:
        node_id, created = ids[m.identity]
        if m.sha256 is None or not created or node_id in seen:
            continue
        seen.add(node_id)
        uri = m.uri or ""
        if uri in latest:
            out.append((latest[uri], node_id, "DerivedFrom", {"reason": "same URI, new content hash"}))
        elif node_id in edge_of:
            out.append(edge_of[node_id])
        latest[uri] = node_id
    return out


def _record_training_lineage(session: Session, group: str, versions: Sequence[ModelVersion],
                             parts: _LineageParts) -> list[str]:
    """training data → training job → version (← model artifact) → model-group context (SageMaker's
    auto-lineage), nodes in one statement and edges in another per actor; returns the version nodes' ids."""
    version_ids: list[str] = []
    edges_by_actor: dict[str, list[lineage.EdgeSpec]] = {}
    nodes_by_actor: dict[str, list[lineage.Node]] = {}
    plans = []
    for v in versions:
        node = lineage.artifact_node("ModelPackage", lineage.model_version_uri(group, v.version),
                                     name=f"{group}/{v.version}",
                                     properties={"model_group": group, "version": v.version})
        job_ref = v.training_job or {}
        job_name = job_ref.get("name") or f"{group}/{v.version}/training"
        named = bool(job_ref.get("uri") or job_ref.get("name"))   # a job others may record too: the careful path
        job_fields: dict[str, Any] = dict(
            action_type="TrainingJob", key=f"training-job:{job_ref.get('uri') or job_name}", name=job_name,
            status="Completed", start_time=_parse_time(job_ref.get("started_at")),
            end_time=_parse_time(job_ref.get("ended_at")),
            properties={k: val for k, val in {"uri": job_ref.get("uri"),
                                               "parameters": job_ref.get("parameters")}.items() if val})
        job_node = lineage.Node("action", "TrainingJob", job_fields["key"], name=job_name, status="Completed",
                                start_time=job_fields["start_time"], end_time=job_fields["end_time"],
                                properties=job_fields["properties"])
        nodes_by_actor.setdefault(v.registered_by, []).extend([node] if named else [node, job_node])
        plans.append((v, node, job_node, job_fields, named))
    # Only this transaction can create its numbers' nodes (it holds the group's lock); they exist already only
    # for a group deleted and created again, whose numbers restart.
    ids: dict[str, tuple[str, bool]] = {}
    for actor, nodes in nodes_by_actor.items():
        ids.update(lineage.ensure_nodes(session, nodes, actor=actor, insert_first=True)[0])
    for i, (v, node, job_node, job_fields, named) in enumerate(plans):
        version_id, created = ids[node.identity]
        if named or not ids[job_node.identity][1]:   # found: brought up to date as ensure_action does
            job_id = lineage.ensure_action(session, **job_fields, actor=v.registered_by)[0].id
        else:
            job_id = ids[job_node.identity][0]
        edges = edges_by_actor.setdefault(v.registered_by, [])
        if i == 0:
            edges += parts.derived
        if created:
            edges.append((parts.models[i], version_id, "ContributedTo", {}))
        edges += [(data, job_id, "ContributedTo", {}) for data in parts.datasets[i]]
        edges += [(job_id, version_id, "Produced", {}), (version_id, parts.context, "AssociatedWith", {})]
        version_ids.append(version_id)
    for actor, edges in edges_by_actor.items():
        lineage.add_edges(session, edges, actor=actor)
    return version_ids


def _governance_action(session: Session, group: ModelGroup, v: ModelVersion, actor: str, action_type: str, key: str,
                       properties: dict[str, Any]) -> None:
    """An approval or stage change as an action hanging off the version's node."""
    act, _ = lineage.ensure_action(session, action_type=action_type, key=key,
                                   name=f"{group.name}/{v.version} {action_type}", status="Completed",
                                   start_time=utcnow(), end_time=utcnow(), properties={**properties, "actor": actor},
                                   actor=actor)
    lineage.link(session, version_entity(session, group, v, actor), act, "AssociatedWith", actor=actor)


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    t = dt.datetime.fromisoformat(str(value))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _version_stmt(group: ModelGroup) -> Select[ModelVersion]:
    return (select(ModelVersion).where(ModelVersion.group_id == group.id)
            .options(selectinload(ModelVersion.metadata_items)))


def get_version(session: Session, group_name: str, number: int) -> tuple[ModelGroup, ModelVersion]:
    """The group and its version ``number`` in one round trip (plus the version's metadata)."""
    found = session.execute(select(ModelGroup, ModelVersion).join(ModelVersion, ModelVersion.group_id == ModelGroup.id)
                            .options(selectinload(ModelVersion.metadata_items))
                            .where(ModelGroup.name == group_name, ModelVersion.version == number)).first()
    if found is None:
        get_group(session, group_name)   # GroupNotFound when the group is what is missing
        raise VersionNotFound(group_name, number)
    return found[0], found[1]


def _list_filters(status: str | None, stage: str | None, created_after: dt.datetime | None,
                  created_before: dt.datetime | None, metadata: dict[str, str]) -> list[Any]:
    return [*equal((ModelVersion.approval_status, status), (ModelVersion.stage, stage)),
            *in_window(ModelVersion.created_at, created_after, created_before),
            *(_tagged(k, *_value_is(val)) for k, val in metadata.items())]


# What the (key, value prefix) index holds, its numbers written into the SQL: an index on an expression serves only
# that very expression, and a bound parameter in place of 1 or 200 is not it.
_value_prefix = func.substr(VersionMetadata.value, literal_column("1"), literal_column(str(VALUE_PREFIX)))


_value_rest = func.substr(VersionMetadata.value, literal_column(str(VALUE_PREFIX + 1)))


def _value_is(value: str) -> tuple[Any, ...]:
    """``value = x`` as its indexed prefix and the rest, so the (key, value prefix) index serves it. Not written
    ``value = x AND prefix = x[:200]``: SQLite then propagates the constant into the prefix expression, which no
    longer matches the index's, and probes by key alone (every version with the tag)."""
    return _value_prefix == value[:VALUE_PREFIX], _value_rest == value[VALUE_PREFIX:]


def _tagged(key: str, *conditions: Any) -> Any:
    """Versions with metadata ``key`` meeting ``conditions``, as an uncorrelated ``IN``: SQLite reads the tagged ids
    once from the (key, value) index where a correlated EXISTS probed the tags of every version it walked (10k
    versions, 100 hits: 24 -> 12 ms); PostgreSQL plans both as one semi-join."""
    return ModelVersion.id.in_(select(VersionMetadata.version_id).where(VersionMetadata.key == key, *conditions))


_LIST_ORDER: dict[str, QueryableAttribute[Any]] = {"version": ModelVersion.version,
                                                   "created_at": ModelVersion.created_at}


def list_versions(
    session: Session, group_name: str, *, status: str | None, stage: str | None,
    created_after: dt.datetime | None, created_before: dt.datetime | None, metadata: dict[str, str],
    sort: str, limit: int, offset: int, after: Sequence[Any] | None = None,
) -> tuple[ModelGroup, list[ModelVersion], int]:
    group = get_group(session, group_name)
    if stage is not None:
        _known_stage(session, group, stage)
    rows, total = paginate(session, _version_stmt(group), *version_order(sort), limit=limit, offset=offset,
                           after=after, where=_list_filters(status, stage, created_after, created_before, metadata))
    return group, rows, total


def version_order(sort: str) -> tuple[Any, ...]:
    """The ORDER BY of `list_versions` (a keyset page's cursor is a row's values under it)."""
    return sort_order(sort, _LIST_ORDER), ModelVersion.version


def latest_version(session: Session, group_name: str, status: str | None) -> tuple[ModelGroup, ModelVersion]:
    group = get_group(session, group_name)
    stmt = _version_stmt(group)
    if status:
        stmt = stmt.where(ModelVersion.approval_status == status)
    v = session.scalar(stmt.order_by(ModelVersion.version.desc()).limit(1))
    if v is None:
        what = f"with approval status {status}" if status else "at all"
        raise VersionNotFound(group_name, f"{what} (no versions match)")
    return group, v


# --- reads as columns: the native API's GETs build their answer from rows, not ORM objects -------------------

_READ_FIELDS = frozenset(VersionRead.model_fields) - {"group", "metadata", "approval_evidence"}


# The id of the group named by the bound parameter ``group_name``, as a scalar subquery (see `read_latest`).
_GROUP_ID_OF = select(ModelGroup.id).where(ModelGroup.name == bindparam("group_name")).scalar_subquery()


def _group_id(session: Session, group_name: str) -> str:
    gid = session.scalar(select(ModelGroup.id).where(ModelGroup.name == group_name))
    if gid is None:
        raise GroupNotFound(group_name)
    return gid


_VC = _VERSION_TABLE.c
# The columns a VersionRead shows (not evidence, group id or key), after the id; plain Core statements built once,
# run on the session's connection (no ORM result processing; the compiled form is reused).
_READ_NAMES = tuple(c.key for c in _VC if c.key in _READ_FIELDS)
_READ = select(_VC.id, *(_VC[name] for name in _READ_NAMES))
_READ_ORDER = tuple(VersionRead.model_fields)
_READ_BY_NUMBER = _READ.where(_VC.group_id == _GROUP_ID_OF, _VC.version == bindparam("number"))


def _as_read(group_name: str, row: Sequence[Any], metadata: dict[str, str]) -> dict[str, Any]:
    fields = dict(zip(_READ_NAMES, row[1:], strict=True))
    return {name: fields.get(name) for name in _READ_ORDER} | {
        "group": group_name, "metadata": metadata,
        # dict[str, float]: 1 is written 1.0, as the model would
        "metrics": {k: float(v) for k, v in (fields["metrics"] or {}).items()},
        "training_data": list(fields["training_data"] or []), "artifact_trusted": bool(fields["artifact_trusted"])}


# Per backend: (name, aggregate rows into a JSON array, build a JSON array): for a version's facts as columns.
_JSON_AGGREGATES = (("postgresql", func.json_agg, func.json_build_array),
                    ("sqlite", func.json_group_array, func.json_array))


def _as_json(subquery: Any) -> Any:
    """A JSON-valued scalar subquery, decoded as JSON on both backends (SQLite returns it as text)."""
    return type_coerce(subquery.scalar_subquery(), JSON)


def _metadata_json(agg: Any, array: Any) -> Any:
    """The version's metadata as a JSON array of [key, value] pairs (correlated with the outer version row)."""
    return _as_json(select(agg(array(VersionMetadata.key, VersionMetadata.value)))
                    .where(VersionMetadata.version_id == ModelVersion.__table__.c.id))


def _with_metadata(stmt: Select[Any]) -> dict[str, Select[Any]]:
    """``stmt`` (one row of `_READ`) with the version's metadata as a JSON column, per backend: one statement for
    a single version instead of two (see `_with_facts`)."""
    return {backend: stmt.add_columns(_metadata_json(agg, array)) for backend, agg, array in _JSON_AGGREGATES}


def _first_row(session: Session, statements: dict[str, Select[Any]], params: dict[str, Any]) -> Any:
    """The first row of this backend's statement (of `_with_metadata` / `_with_facts`), or None."""
    connection = session.connection()
    return connection.execute(statements[connection.dialect.name], params).first()


def _read_one(session: Session, group_name: str, statements: dict[str, Select[Any]],
              params: dict[str, Any]) -> dict[str, Any] | None:
    row = _first_row(session, statements, params)
    if row is None:
        return None
    return _with_its_metadata(group_name, row)


def _with_its_metadata(group_name: str, row: Sequence[Any]) -> dict[str, Any]:
    """A row of a `_with_metadata` statement (its last column the metadata pairs) as VersionRead's fields."""
    return _as_read(group_name, row[:-1], {k: v for k, v in sorted(row[-1] or [])})


_READ_ONE_BY_NUMBER = _with_metadata(_READ_BY_NUMBER)
_READ_WITH_METADATA = _with_metadata(_READ)


def read_version(session: Session, group_name: str, number: int) -> dict[str, Any]:
    """One version: one probe of the (group, version) index, its metadata in the same statement."""
    found = _read_one(session, group_name, _READ_ONE_BY_NUMBER, {"group_name": group_name, "number": number})
    if found is None:
        _group_id(session, group_name)
        raise VersionNotFound(group_name, number)
    return found


_READ_NEWEST = _READ.where(_VC.group_id == _GROUP_ID_OF).order_by(_VC.version.desc()).limit(1)
_READ_NEWEST_WITH_STATUS = _READ_NEWEST.where(_VC.approval_status == bindparam("status"))
_READ_ONE_NEWEST = _with_metadata(_READ_NEWEST)
_READ_ONE_NEWEST_WITH_STATUS = _with_metadata(_READ_NEWEST_WITH_STATUS)


def read_latest(session: Session, group_name: str, status: str | None) -> dict[str, Any]:
    """The newest version (with ``status``, when given): one index probe on (group, status, version). The group id
    is a scalar subquery, not a join: joined, PostgreSQL estimated a whole status's rows per group and read and
    sorted all of them (1,000 approved of 10,000 versions: 14 ms) instead of walking the index backwards (0.1 ms)."""
    stmts = _READ_ONE_NEWEST_WITH_STATUS if status else _READ_ONE_NEWEST
    found = _read_one(session, group_name, stmts, {"group_name": group_name, "status": status})
    if found is None:
        _group_id(session, group_name)
        what = f"with approval status {status}" if status else "at all"
        raise VersionNotFound(group_name, f"{what} (no versions match)")
    return found


def read_versions(
    session: Session, group_name: str, *, status: str | None, stage: str | None,
    created_after: dt.datetime | None, created_before: dt.datetime | None, metadata: dict[str, str],
    sort: str, limit: int, offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """`list_versions` as VersionRead fields and the total, in two statements: the count, and the page with each
    version's metadata as a JSON column (`_with_metadata`), the group id a scalar subquery in both (as in
    `read_latest`). Rows come as plain dicts in VersionRead's order and JSON types: the routes encode them with
    pydantic's core encoder as they are (no model built per row, nothing re-validated that the database already
    holds in the declared types)."""
    where = (_VC.group_id == _GROUP_ID_OF,
             *(c for c in _list_filters(status, stage, created_after, created_before, metadata) if c is not None))
    connection = session.connection()
    params = {"group_name": group_name}
    total = connection.execute(select(func.count()).select_from(_READ.with_only_columns(_VC.id).where(*where)
                                                                .subquery()), params).scalar_one()
    if not total:
        group = get_group(session, group_name)   # GroupNotFound when the group is what is missing
        if stage is not None:
            _known_stage(session, group, stage)
        return [], 0
    order = (sort_order(sort, _LIST_ORDER), ModelVersion.version)
    page = _READ_WITH_METADATA[connection.dialect.name].order_by(*order)
    if offset:   # the page's ids first: the metadata column is computed for its rows, not for every row skipped
        ids = _READ.with_only_columns(_VC.id).where(*where).order_by(*order).limit(limit).offset(offset)
        page = page.where(_VC.id.in_(ids.scalar_subquery()))
    else:
        page = page.where(*where).limit(limit)
    return [_with_its_metadata(group_name, r) for r in connection.execute(page, params).all()], total


# --- approvals ----------------------------------------------------------------------------------------

def why_not_decider(session: Session, v: ModelVersion, actor: Principal) -> str | None:
    """Why ``actor`` may not decide ``v`` under four-eyes (None when it may, role aside): pages offer the
    decision only to whom `decide` would let take it."""
    if v.registered_by_key == actor.key_pk:
        return f"key {actor.name!r} registered it"
    return auth.independent_keys(session, actor, v.registered_by_key, _registrant(session, v)[0])


def require_shown(v: ModelVersion, group_name: str, number: int, shown_id: str) -> None:
    """A form decides or moves the version row its page showed, not whatever now answers to the name and number:
    a group renamed away and re-created under its name (or a version deleted and its number reused) would
    otherwise turn an approver's open page into an approval of an artifact they never saw. Called after the
    change, whose row lock makes the comparison final; raising rolls the change back."""
    if v.id != shown_id:
        raise Conflict(f"{group_name} version {number} is no longer the version this page showed: since it was "
                       "loaded, the group was renamed or the version deleted, and another took its name and number",
                       fix="reload the page and review the version it shows now")


def decide(session: Session, group_name: str, number: int, req: ApprovalRequest, actor: Principal) -> ModelVersion:
    if actor.role not in DECIDERS:
        raise Forbidden(f"role {actor.role.value!r} may not decide approvals", fix="use an approver or admin key")
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    if v.registered_by_key == actor.key_pk:
        raise FourEyesViolation(actor.name, group_name, number)
    why = auth.independent_keys(session, actor, v.registered_by_key, _registrant(session, v)[0])
    if why is not None:
        raise FourEyesViolation(actor.name, group_name, number, why)
    current = v.approval_status
    if req.expected_status is not None and req.expected_status != current:
        raise Conflict(f"{group_name} version {number} is {current}, not {req.expected_status} as expected",
                       fix="re-read the version and decide again if still appropriate", current_status=current)
    allowed = APPROVAL_TRANSITIONS[current]
    if req.status not in allowed:
        raise TransitionNotAllowed(
            f"cannot move {group_name} version {number} from {current} to {req.status}",
            fix=f"from {current} the allowed statuses are: {', '.join(allowed)}",
            current_status=current, allowed=list(allowed))
    if req.override_policy and actor.role != Role.admin:
        raise Forbidden("only admin keys may override the approval policy", fix="drop override_policy")
    unhashed = unhashed_gap(group, v) if req.status == APPROVED else None
    if unhashed is not None:
        raise RuleRefusal(f"{group.name} {unhashed}" + ("; override_policy does not waive this rule"
                                                       if req.override_policy else ""),
                          fix="register the artifact again from a location in mlgov's object store, or natively "
                              "with its artifact_sha256")
    assessment = assess_evidence(session, group.name, v)
    overridden = _check_policy(group, req, actor, assessment)
    now = utcnow()
    # Session.execute is typed Result[Any]; a bulk UPDATE returns a CursorResult, which carries rowcount
    res = cast(CursorResult[Any], session.execute(
        update(ModelVersion).where(ModelVersion.id == v.id, ModelVersion.approval_status == current)
        .values(approval_status=req.status, approval_description=req.comment, updated_at=now),
        execution_options={"synchronize_session": False}))
    if res.rowcount != 1:
        raise Conflict(f"{group_name} version {number} was decided concurrently",
                       fix="re-read the version; its status changed while this request ran")
    for attr, val in (("approval_status", req.status), ("approval_description", req.comment), ("updated_at", now)):
        set_committed_value(v, attr, val)
    decision = ApprovalDecision(version_id=v.id, from_status=current, to_status=req.status, comment=req.comment,
                                actor=actor.name, actor_owner=actor.owner, actor_key=actor.key_pk,
                                policy_overridden=overridden or None, evidence=assessment, at=now)
    session.add(decision)
    session.flush()
    _governance_action(session, group, v, actor.name, "Approval", f"approval:{v.id}:{decision.id}",
                       {"from": current, "to": req.status, "comment": req.comment})
    cfg = StageConfig.model_validate(group.stage_config)
    stage_def = next((s for s in cfg.stages if s.name == v.stage), None)
    if req.status == REJECTED and stage_def is not None and stage_def.requires_approval:
        # A rejected version may not stay where only approved ones belong (SageMaker's rollback case).
        target = stage_def.displace_to or cfg.initial
        _set_stage(session, group, v, target, actor, f"rejected: {req.comment}", "rejected")
    if current == APPROVED:
        # governed aliases point only at Approved versions: models:/g@champion must not serve a rejected model
        _drop_aliases(session, group, v, actor, only=governed_aliases(group))
    subject = f"{group.name}/{number}"
    audit.record(session, actor=actor.name, action="version.approval_changed", subject_type="model_version",
                 subject_id=subject, before={"approval_status": current},
                 after={"approval_status": req.status, "comment": req.comment, "decided_by_owner": actor.owner,
                        **({"policy_overridden": overridden} if overridden else {}),
                        **({"evidence": _evidence_summary(assessment)} if assessment else {})})
    events.emit(session, "version.approval_changed", subject,
                {**_payload(group.name, v), "previous_approval_status": current, "decided_by": actor.name})
    return v


def set_artifact_trust(session: Session, group_name: str, number: int, trusted: bool, reason: str,
                       actor: Principal) -> ModelVersion:
    """Admin-only: allow (or withdraw) loading this version's pickle/joblib artifact. Audited."""
    if actor.role != Role.admin:
        raise Forbidden("only admin keys may mark an artifact as trusted", fix="ask an admin")
    group, v = get_version(session, group_name, number)
    before = bool(v.artifact_trusted)
    v.artifact_trusted = trusted
    v.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="version.artifact_trust_changed", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", before={"artifact_trusted": before},
                 after={"artifact_trusted": trusted, "reason": reason, "artifact_sha256": v.artifact_sha256})
    return v


def _registrant(session: Session, v: ModelVersion) -> tuple[str, str | None]:
    """Owner and creator of the key that registered ``v`` (its name, for keys that no longer resolve)."""
    key = auth.key_by_pk(session, v.registered_by_key)
    return (key.owner, key.created_by) if key is not None else (v.registered_by, None)


def assess_evidence(session: Session, group_name: str, v: ModelVersion) -> list[dict[str, Any]]:
    """Every bias report attached to ``v``, oldest first, with whether it counts for the approval gate and why.

    A report counts when mlgov computed it from the version's own predictions (its endpoint's captured window
    joined to ground truth, or its registered artifact run on a dataset), or when someone independent of the
    registrant produced it. A report the registrant's side computed on data it supplied does not count: it
    could have set predictions = labels."""
    reg_owner, reg_creator = _registrant(session, v)
    items = list(v.evidence or []) or ([v.bias_report] if v.bias_report else [])
    out = []
    for item in items:
        source = item.get("source") or {"kind": "unrecorded (attached before revision 0010)"}
        kind = source.get("kind")
        by_owner, by_creator = item.get("by_owner"), item.get("by_created_by")
        if by_owner is None:  # legacy report: only the key name was kept
            key = session.scalar(select(auth.ApiKey).where(auth.ApiKey.name == item.get("by")))
            by_owner, by_creator = (key.owner, key.created_by) if key else (item.get("by") or "?", None)
        counted, reason = False, ""
        if kind == "captured_window" and source.get("model_version") == f"{group_name}/{v.version}":
            counted, reason = True, (f"computed by mlgov from this version's own predictions: endpoint "
                                     f"{source.get('endpoint')!r} captured traffic joined to ground truth")
        elif kind == "model_run" and v.artifact_sha256 and source.get("artifact_sha256") == v.artifact_sha256:
            counted, reason = True, (f"computed by mlgov running this version's registered artifact (sha256 "
                                     f"{v.artifact_sha256[:12]}…) on {source.get('dataset', 'a dataset')}")
        else:
            why = auth.independent(by_owner, by_creator, reg_owner, reg_creator)
            if why is None:
                counted, reason = True, f"produced by {by_owner!r}, independent of the registrant {reg_owner!r}"
            else:
                reason = (f"not independent of the registrant ({why}) and computed on data the submitter supplied "
                          f"({kind}); predictions in supplied data prove nothing about the model")
        out.append({"analysis_id": item.get("analysis_id"), "passed": bool(item.get("passed")),
                    "failures": list(item.get("failures") or []), "by": item.get("by"), "by_owner": by_owner,
                    "at": item.get("at"), "source": source, "counted": counted, "reason": reason})
    return out


def _evidence_summary(assessment: list[dict[str, Any]]) -> dict[str, Any]:
    return {"counted": [{"analysis_id": e["analysis_id"], "passed": e["passed"], "reason": e["reason"]}
                        for e in assessment if e["counted"]],
            "not_counted": [{"analysis_id": e["analysis_id"], "reason": e["reason"]}
                            for e in assessment if not e["counted"]]}


def unhashed_gap(group: ModelGroup, v: ModelVersion) -> str | None:
    """Why the group's policy refuses to approve ``v`` whoever asks (require_artifact_hash without a verified
    sha256), None when it does not. Not waivable: an approval is of a model someone can identify;
    override_policy waives missing evidence only (`policy_gap`)."""
    if not (group.approval_policy or {}).get("require_artifact_hash") or v.artifact_sha256:
        return None
    return (f"requires a verified artifact sha256 before approval; version {v.version} has none (mlgov could not "
            f"read {v.artifact_uri!r} to hash it)")


def policy_gap(group: ModelGroup, assessment: list[dict[str, Any]]) -> str | None:
    """What the group's approval policy still misses for an approval on this evidence (None: nothing; the policy
    asks for nothing or the evidence satisfies it). ``assessment`` is `assess_evidence`'s."""
    if not (group.approval_policy or {}).get("require_bias_report"):
        return None
    counted = [e for e in assessment if e["counted"]]
    ignored = [f"report {e['analysis_id']} does not count: {e['reason']}" for e in assessment if not e["counted"]]
    if not assessment:
        return "no bias report is attached"
    if not counted:
        return "no attached bias report counts as evidence (" + "; ".join(ignored) + ")"
    if not counted[-1]["passed"]:
        return (f"the bias report fails: {', '.join(counted[-1]['failures'])} (newest report that counts as "
                f"evidence: {counted[-1]['analysis_id']})")
    return None


def _check_policy(group: ModelGroup, req: ApprovalRequest, actor: Principal,
                  assessment: list[dict[str, Any]]) -> list[str]:
    """The group's evidence requirements for approval; returns what an admin override waived. The newest report
    that counts as evidence decides; reports that do not count are listed with the reason."""
    if req.status != APPROVED or not (group.approval_policy or {}).get("require_bias_report"):
        return []
    missing = policy_gap(group, assessment)
    if missing is None:
        return []
    if req.override_policy:   # an admin's (`decide` refused it to anyone else)
        return [missing]
    raise RuleRefusal(f"{group.name} requires a passing bias report before approval; {missing}",
                   fix="have mlgov compute it from the version's own predictions (POST /api/v1/clarify/bias with "
                       "model_group, model_version and either an endpoint window of this version or "
                       "predict_with_model=true), or have someone independent of the registrant run it; an admin "
                       "may approve with override_policy=true (flagged in the compliance report)",
                   evidence=_evidence_summary(assessment))


def attach_bias_report(session: Session, group_name: str, number: int, analysis_id: str, passed: bool,
                       failures: list[str], actor: Principal, source: dict[str, Any] | None = None) -> ModelVersion:
    """Attach a bias report as evidence, recording who produced it and from what data (``source``: kind
    upload | dataset_uri | captured_window | model_run, plus what identifies the data)."""
    group, v = get_version(session, group_name, number)
    item = {"analysis_id": analysis_id, "passed": passed, "failures": failures, "by": actor.name,
            "by_key": actor.key_pk, "by_owner": actor.owner, "by_created_by": actor.created_by,
            "source": source or {"kind": "unspecified"}, "at": utcnow().isoformat()}
    v.bias_report = item
    v.evidence = [*(v.evidence or []), item]
    v.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="version.bias_report_attached", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", after=item)
    return v


def approval_policy(session: Session, group_name: str) -> dict[str, Any]:
    return dict(get_group(session, group_name).approval_policy or {})


def require_shown_policy(session: Session, group_name: str, shown_id: str, shown: Mapping[str, bool]) -> None:
    """A policy form saves over what its page showed: the same group (not one that took its name since) with the
    same settings. Otherwise a page left open would silently undo another admin's tightening of the policy."""
    group = get_group(session, group_name, for_update=True)   # held until the save: a concurrent one waits
    if group.id != shown_id:
        raise Conflict(f"model group {group_name!r} is no longer the group this page showed: since it was loaded, "
                       "that group was renamed or deleted and another took its name",
                       fix="reload the admin page and set the policy again")
    now = group.approval_policy or {}
    changed = [f"{key} is now {str(bool(now.get(key))).lower()}" for key, was in shown.items()
               if bool(now.get(key)) != was]
    if changed:
        raise Conflict(f"the approval policy of {group_name!r} changed since the page was loaded: {'; '.join(changed)}",
                       fix="reload the admin page, review the policy it shows now and save again")


def decision_evidence(session: Session, version: ModelVersion) -> dict[str, Any] | None:
    """For the approval response: what the newest decision counted as evidence, ignored, and overrode."""
    d = session.scalar(select(ApprovalDecision).where(ApprovalDecision.version_id == version.id)
                       .order_by(ApprovalDecision.id.desc()).limit(1))
    if d is None:
        return None
    return {**_evidence_summary(d.evidence or []), "policy_overridden": list(d.policy_overridden or []),
            "passed_only_by_override": bool(d.policy_overridden)}


def approval_history(session: Session, version: ModelVersion) -> list[ApprovalDecision]:
    return list(session.scalars(select(ApprovalDecision).where(ApprovalDecision.version_id == version.id)
                                .order_by(ApprovalDecision.id)))


def pending_versions(session: Session, *, limit: int, offset: int) -> tuple[list[tuple[ModelGroup, ModelVersion]], int]:
    """Versions waiting for an approval decision across every group, oldest first (the approvers' inbox)."""
    where = ModelVersion.approval_status == PENDING
    total = session.scalar(select(func.count()).select_from(ModelVersion).where(where)) or 0
    stmt = (select(ModelGroup, ModelVersion).join(ModelGroup, ModelGroup.id == ModelVersion.group_id).where(where)
            .order_by(ModelVersion.created_at, ModelVersion.id).limit(limit).offset(offset))
    return [(g, v) for g, v in session.execute(stmt)], total


def approved_now(session: Session, group_ids: list[str]) -> dict[str, ModelVersion]:
    """For each group, the Approved version a pending one would replace, if any: the one its exclusive stage
    (Production) holds, else its newest Approved version (a candidate approved yesterday is not what serves)."""
    out: dict[str, ModelVersion] = {}
    for part in chunks(group_ids):
        newest = (select(func.max(ModelVersion.version).label("n"), ModelVersion.group_id)
                  .where(ModelVersion.group_id.in_(part), ModelVersion.approval_status == APPROVED)
                  .group_by(ModelVersion.group_id).subquery())
        for v in session.scalars(select(ModelVersion).join(
                newest, (newest.c.group_id == ModelVersion.group_id) & (newest.c.n == ModelVersion.version))):
            out[v.group_id] = v
        # each group's exclusive stages, the serving one first: one that requires approval, then the later in the
        # configuration (Production after an exclusive Staging)
        ranks = {g.id: {s.name: (not s.requires_approval, -i) for i, s in
                        enumerate(StageConfig.model_validate(g.stage_config).stages) if s.exclusive}
                 for g in session.scalars(select(ModelGroup).where(ModelGroup.id.in_(part)))}
        names = {n for r in ranks.values() for n in r}
        serving = select(ModelVersion).where(ModelVersion.group_id.in_(part), ModelVersion.approval_status == APPROVED,
                                             ModelVersion.stage.in_(names))
        best: dict[str, tuple[bool, int]] = {}
        for v in session.scalars(serving) if names else ():
            rank = ranks[v.group_id].get(v.stage or "")
            if rank is not None and (v.group_id not in best or rank < best[v.group_id]):
                best[v.group_id], out[v.group_id] = rank, v
    return out


# --- stages -------------------------------------------------------------------------------------------

def _set_stage(session: Session, group: ModelGroup, v: ModelVersion, target: str, actor: Principal,
               comment: str | None, reason: str) -> None:
    previous = v.stage
    v.stage = target
    v.updated_at = group.updated_at = utcnow()   # the group changed too (MLflow moves both timestamps)
    move = StageTransition(group_id=group.id, version_id=v.id, from_stage=previous, to_stage=target,
                           actor=actor.name, comment=comment, reason=reason, at=utcnow())
    session.add(move)
    session.flush()
    _governance_action(session, group, v, actor.name, "StageTransition", f"stage:{v.id}:{move.id}",
                       {"from": previous, "to": target, "reason": reason})
    subject = f"{group.name}/{v.version}"
    audit.record(session, actor=actor.name, action="version.stage_changed", subject_type="model_version",
                 subject_id=subject, before={"stage": previous},
                 after={"stage": target, "reason": reason, "comment": comment})
    events.emit(session, "version.stage_changed", subject,
                {"group": group.name, "version": v.version, "from_stage": previous, "to_stage": target,
                 "reason": reason, "actor": actor.name, "comment": comment})


def move_stage(session: Session, group_name: str, number: int, req: StageRequest, actor: Principal) -> ModelVersion:
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    cfg = StageConfig.model_validate(group.stage_config)
    defs = {s.name: s for s in cfg.stages}
    if req.stage not in defs:
        raise Invalid(f"stage {req.stage!r} is not configured for {group_name!r}",
                      fix=f"use one of: {', '.join(defs)}")
    if req.expected_stage is not None and req.expected_stage != v.stage:
        raise Conflict(f"{group_name} version {number} is in {v.stage}, not {req.expected_stage} as expected",
                       fix="re-read the version and retry", current_stage=v.stage)
    if v.stage == req.stage:
        raise AlreadyInStage(group_name, number, req.stage)
    refusal = _move_refusal(group, cfg, v, req.stage, actor)
    if refusal is not None:
        raise refusal
    target = defs[req.stage]
    to = displaced_to(cfg, target, req.archive_others)
    if (target.exclusive or req.archive_others) and to != req.stage:
        displaced = list(session.scalars(_lock(select(ModelVersion).where(
            ModelVersion.group_id == group.id, ModelVersion.stage == req.stage, ModelVersion.id != v.id), session)))
        for other in displaced:
            _set_stage(session, group, other, to, actor, f"displaced by version {number}", "displaced")
    _set_stage(session, group, v, req.stage, actor, req.comment, "requested")
    return v


def displaced_to(cfg: StageConfig, target: StageDef, archive_others: bool) -> str:
    """Where a move into ``target`` sends the versions it displaces (an exclusive stage's previous one)."""
    if target.displace_to:
        return target.displace_to
    return ARCHIVED if archive_others and any(s.name == ARCHIVED for s in cfg.stages) else cfg.initial


def _move_refusal(group: ModelGroup, cfg: StageConfig, v: ModelVersion, stage: str,
                  actor: Principal) -> DomainError | None:
    """Why ``actor`` may not move ``v`` to the configured ``stage`` it is not in (None when it may): move_stage
    raises it, and the console offers only the moves it would take."""
    defs = {s.name: s for s in cfg.stages}
    allowed = cfg.transitions.get(v.stage or cfg.initial, [])
    if stage not in allowed:
        return TransitionNotAllowed(f"cannot move {group.name} version {v.version} from {v.stage} to {stage}",
                                    fix=f"from {v.stage} the allowed stages are: {', '.join(allowed) or 'none'}",
                                    allowed=allowed)
    target = defs[stage]
    if target.requires_approval and actor.role not in DECIDERS:
        return Forbidden(f"stage {stage} is governed: only approver or admin keys may move versions into it",
                         fix="ask an approver to make this move")
    source = defs.get(v.stage or "")
    if source is not None and source.requires_approval and actor.role not in DECIDERS:
        # taking the serving version out is as much a governance decision as putting one in
        return Forbidden(f"stage {v.stage} is governed: only approver or admin keys may move versions out of it",
                         fix="ask an approver to make this move")
    if target.requires_approval and v.approval_status != APPROVED:
        return RuleRefusal(f"stage {stage} accepts only Approved versions; version {v.version} is "
                           f"{v.approval_status}", fix="have an approver approve the version first")
    return None


def stage_moves(group: ModelGroup, v: ModelVersion, actor: Principal) -> list[tuple[str, str | None]]:
    """Each stage ``v`` could go to next from where it is, with why ``actor`` may not take it (None: it may)."""
    cfg = StageConfig.model_validate(group.stage_config)
    out: list[tuple[str, str | None]] = []
    for stage in cfg.transitions.get(v.stage or cfg.initial, []):
        if stage != v.stage:
            refusal = _move_refusal(group, cfg, v, stage, actor)
            out.append((stage, refusal.detail if refusal is not None else None))
    return out


def stage_history(session: Session, group_name: str, number: int | None = None, *,
                  newest: int | None = None) -> list[tuple[int, StageTransition]]:
    """(version, transition) oldest first; ``newest``: only the last that many."""
    group = get_group(session, group_name)
    stmt = (select(ModelVersion.version, StageTransition)
            .join(ModelVersion, ModelVersion.id == StageTransition.version_id)
            .where(StageTransition.group_id == group.id))
    if number is not None:
        stmt = stmt.where(ModelVersion.version == number)
    if newest is not None:
        return [(n, t) for n, t in session.execute(stmt.order_by(StageTransition.id.desc()).limit(newest))][::-1]
    return [(n, t) for n, t in session.execute(stmt.order_by(StageTransition.id))]


def version_counts(session: Session, groups: Sequence[ModelGroup]) -> dict[str, int]:
    """How many versions each group holds now (a group's latest_version is the last number it gave: deleted
    versions keep theirs), by group name, in one query."""
    ids = {g.id: g.name for g in groups}
    counts = dict.fromkeys(ids.values(), 0)
    for chunk in chunks(list(ids)):
        for gid, n in session.execute(select(ModelVersion.group_id, func.count()).where(
                ModelVersion.group_id.in_(chunk)).group_by(ModelVersion.group_id)):
            counts[ids[gid]] = n
    return counts


def versions_present(session: Session, pairs: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of these (group name, number) versions exist now: lineage keeps a deleted version's node as evidence,
    and a link to its page would be a 404. One query."""
    wanted = set(pairs)
    if not wanted:
        return set()
    rows = session.execute(select(ModelGroup.name, ModelVersion.version).join(
        ModelVersion, ModelVersion.group_id == ModelGroup.id).where(
        ModelGroup.name.in_({g for g, _ in wanted}), ModelVersion.version.in_({n for _, n in wanted})))
    return {(g, n) for g, n in rows if (g, n) in wanted}


def stage_counts(session: Session, group: ModelGroup) -> dict[str | None, int]:
    """How many versions of ``group`` are in each stage now (None: versions in no stage)."""
    return {stage: n for stage, n in session.execute(
        select(ModelVersion.stage, func.count()).where(ModelVersion.group_id == group.id)
        .group_by(ModelVersion.stage))}


def occupants_at(session: Session, group_name: str, stage: str, at: dt.datetime) -> list[int]:
    """Versions that were in ``stage`` at time ``at``: each version's last transition at or before ``at``."""
    group = get_group(session, group_name)
    _known_stage(session, group, stage)
    last = (select(StageTransition.version_id, func.max(StageTransition.id).label("tid"))
            .where(StageTransition.group_id == group.id, StageTransition.at <= at)
            .group_by(StageTransition.version_id).subquery())
    stmt = (select(ModelVersion.version).join(last, last.c.version_id == ModelVersion.id)
            .join(StageTransition, StageTransition.id == last.c.tid)
            .where(StageTransition.to_stage == stage).order_by(ModelVersion.version))
    return list(session.scalars(stmt))


def _known_stage(session: Session, group: ModelGroup, stage: str) -> None:
    """A stage filter names a stage the group has or once had (a version moved there): a misspelt one answers
    422 rather than an empty list that reads as "nothing there"."""
    names = [s.name for s in StageConfig.model_validate(group.stage_config).stages]
    if stage in names or session.scalar(select(StageTransition.id).where(
            StageTransition.group_id == group.id, StageTransition.to_stage == stage).limit(1)) is not None:
        return
    raise Invalid(f"stage {stage!r} is not configured for {group.name!r} and no version was ever in it",
                  fix=f"use one of: {', '.join(names)}")


# --- names, tags, deletion ----------------------------------------------------------------------------

ReferenceCheck = Callable[[Session, str, "int | None"], list[str]]
_REFERENCE_CHECKS: list[ReferenceCheck] = []


def register_reference_check(check: ReferenceCheck) -> None:
    """Other domains name a group (and version) in their rows; at composition time they register a check that
    says who refers to it, so a rename or delete here never leaves their rows pointing at nothing."""
    if check not in _REFERENCE_CHECKS:
        _REFERENCE_CHECKS.append(check)


def _refuse_if_referenced(session: Session, group: str, number: int | None, what: str) -> None:
    refs = [r for check in _REFERENCE_CHECKS for r in check(session, group, number)]
    if refs:
        target = group if number is None else f"{group} version {number}"
        raise RuleRefusal(f"cannot {what} {target}: {'; '.join(refs[:10])} refer(s) to it by name",
                          fix="point those at another model version or remove them first")


def governed_aliases(group: ModelGroup) -> list[str]:
    return list(DEFAULT_GOVERNED_ALIASES) if group.governed_aliases is None else list(group.governed_aliases)


def _check_pair(key: str, value: str | None, what: str) -> None:
    if not 1 <= len(key) <= TAG_KEY_MAX:
        raise Invalid(f"{what} key must be 1-{TAG_KEY_MAX} characters, got {len(key)}", fix="use a shorter key")
    if value is not None and len(value) > TAG_VALUE_MAX:
        raise Invalid(f"{what} value for {key!r} is {len(value)} characters; mlgov keeps at most {TAG_VALUE_MAX}",
                      fix="store long text in the model card, or point at it with a URI")


def _may_change_group(session: Session, group: ModelGroup, actor: Principal, what: str) -> None:
    """Renaming, deleting or re-describing a group (its description, its tags), as deleting a version: its creator
    (by owner) or an admin. Any publisher may register into a group; none may take another's group away from its
    users (or its name from their code), nor rewrite what it says of itself."""
    auth.require_creator(session, group.created_by, actor, f"model group {group.name!r}", what)


def rename_group(session: Session, name: str, new_name: str, actor: Principal) -> ModelGroup:
    """Audited; refused while another domain (endpoints, baselines, triggers) refers to the group by name."""
    problem = group_name_problem(new_name)
    if problem:
        suggestion = suggest_name(new_name)
        raise Invalid(f"{new_name!r} is not a valid model group name: it {problem}",
                      fix=f"try {suggestion!r}" if suggestion else "choose a name as the error says")
    group = get_group(session, name, for_update=True)
    _may_change_group(session, group, actor, "rename it")
    if new_name == group.name:
        return group
    if session.scalar(select(ModelGroup.id).where(ModelGroup.name == new_name)) is not None:
        raise GroupExists(new_name)
    _refuse_lookalike(session, new_name, group.id)
    _refuse_if_referenced(session, group.name, None, "rename")
    lineage.rename_model_group(session, group.name, new_name)
    group.name, group.updated_at = new_name, utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="model_group.renamed", subject_type="model_group",
                 subject_id=new_name, before={"name": name}, after={"name": new_name})
    events.emit(session, "model_group.renamed", new_name, {"from": name, "to": new_name})
    return group


def suggest_name(name: str) -> str | None:
    """A valid group name close to ``name`` (for error messages), or None when cleaning it up does not make one
    (letters of two scripts: which to keep is the writer's call)."""
    cleaned = unicodedata.normalize("NFC", "".join("-" if c in "/:" else "" if not c.isprintable() else c
                                                   for c in name)).strip().lstrip(".")
    candidate = cleaned[:GROUP_NAME_MAX].strip() or "my-model"
    return None if group_name_problem(candidate) else candidate


def set_group_tag(session: Session, name: str, key: str, value: str | None, actor: Principal) -> ModelGroup:
    """Set (or, with ``value`` None, remove) one tag under the group's lock, so concurrent tag calls all land."""
    _check_pair(key, value, "tag")
    group = get_group(session, name, for_update=True)
    tags = dict(group.tags or {})
    if value is None and key not in tags:
        raise NotFound(f"model group {name!r} has no tag {key!r}", fix="list its tags (GET the model group)")
    if value is None:
        tags.pop(key)
    else:
        tags[key] = value
    if len(tags) > TAGS_MAX:
        raise Invalid(f"model group {name!r} would have {len(tags)} tags; mlgov keeps at most {TAGS_MAX}",
                      fix="remove tags that are no longer needed")
    return update_group(session, name, GroupUpdate(tags=tags), actor)


def update_version(session: Session, group_name: str, number: int, description: str | None,
                   actor: Principal) -> ModelVersion:
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise Invalid(f"description is {len(description)} characters; at most {DESCRIPTION_MAX}", fix="shorten it")
    group, v = _locked_version(session, group_name, number)
    before = v.description
    if description == before:   # as set_version_metadata: an unchanged description is no event
        return v
    may_edit_version(session, group, v, actor, "description")
    v.description, v.updated_at = description, utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="version.updated", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", before={"description": before},
                 after={"description": description})
    return v


def may_edit_version(session: Session, group: ModelGroup, v: ModelVersion, actor: Principal, what: str) -> None:
    """What a version says of itself (its description, its tags) is its registrant's to write, or an admin's: a
    migration trial rewrote the description of another team's approved Production version. Decisions, stage
    moves and aliases keep their own rules."""
    _registrant_or_admin(session, v, actor, f"{group.name} version {v.version} was", f"change its {what}")


def _registrant_or_admin(session: Session, v: ModelVersion, actor: Principal, subject: str, verb: str) -> None:
    """The one rule behind a version's own text and its deletion, whichever door or path reaches them."""
    registrant = _registrant(session, v)[0]
    if actor.role != Role.admin and not auth.same_person(actor.owner, registrant):
        raise Forbidden(f"{subject} registered by {registrant!r}; only its registrant or an admin may {verb}",
                        fix=f"ask {registrant!r} or an admin")


def set_version_metadata(session: Session, group_name: str, number: int, key: str, value: str | None,
                         actor: Principal) -> ModelVersion:
    """Set (or, with ``value`` None, remove) one metadata pair. Keys under ``mlgov.`` are mlgov's own facts
    (approval status, approver): nobody sets them, so a tag can never pose as an approval."""
    if reserved_key(key):
        raise Forbidden(f"metadata keys starting with 'mlgov.' or 'mlgov:' are set by mlgov itself "
                        f"({key!r}); an approval cannot be made by writing a tag",
                        fix="decide approvals through mlgov (POST /api/v1/model-groups/{group}/versions/{version}/"
                            "approval, the CLI or the console), with a key independent of the registrant")
    _check_pair(key, value, "metadata")
    group, v = _locked_version(session, group_name, number)
    items = {m.key: m for m in v.metadata_items}
    previous = items[key].value if key in items else None
    if value is None and key not in items:
        raise NotFound(f"{group.name} version {number} has no metadata key {key!r}",
                       fix="list its metadata (GET the version)")
    if value == previous:   # a retry, or anyone restating it: nothing happened, so nothing is recorded or sent
        return v
    may_edit_version(session, group, v, actor, "tags")
    if value is None:
        v.metadata_items.remove(items[key])
    elif key in items:
        items[key].value = value
    else:
        if len(items) >= TAGS_MAX:
            raise Invalid(f"{group.name} version {number} already has {TAGS_MAX} metadata pairs, mlgov's limit",
                          fix="remove pairs that are no longer needed")
        v.metadata_items.append(VersionMetadata(key=key, value=value))
    v.updated_at = utcnow()
    session.flush()
    subject = f"{group.name}/{number}"
    audit.record(session, actor=actor.name, action="version.metadata_changed", subject_type="model_version",
                 subject_id=subject, before={key: previous}, after={key: value})
    events.emit(session, "version.metadata_changed", subject,
                {"group": group.name, "version": number, "key": key, "value": value, "previous": previous})
    return v


def _locked_version(session: Session, group_name: str, number: int) -> tuple[ModelGroup, ModelVersion]:
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    return group, v


def _why_kept(session: Session, group: ModelGroup, v: ModelVersion) -> str | None:
    """Why a version must stay: it was approved (its decisions are evidence) or a governed alias points at it
    (what deployments follow). Other aliases go with the version, as on MLflow (`_drop_aliases`)."""
    approved = session.scalar(select(ApprovalDecision.at).where(ApprovalDecision.version_id == v.id,
                                                                ApprovalDecision.to_status == APPROVED).limit(1))
    if approved is not None:
        return (f"version {v.version} was approved ({approved.isoformat()}); approved versions stay in the registry "
                "as the record of what was released")
    governed = governed_aliases(group)
    held = [a for a in session.scalars(select(Alias.alias).where(Alias.version_id == v.id).order_by(Alias.alias))
            if a in governed]
    if held:
        return f"governed alias(es) {', '.join('@' + a for a in held)} point at version {v.version}"
    return None


def _drop_aliases(session: Session, group: ModelGroup, v: ModelVersion, actor: Principal,
                  only: Sequence[str] | None = None) -> list[str]:
    """Remove the aliases of a version (those named in ``only``, else all), each move audited as a removal."""
    dropped = []
    for row in list(session.scalars(select(Alias).where(Alias.version_id == v.id).order_by(Alias.alias))):
        if only is None or row.alias in only:
            session.delete(row)
            _move_alias(session, group, row.alias, None, v.version, actor)
            dropped.append(row.alias)
    return dropped


def delete_version(session: Session, group_name: str, number: int, actor: Principal) -> None:
    """Remove a version that was never approved and that nothing points at (by its registrant or an admin); its
    audit trail stays and its number is never reused. Every door (native, SageMaker, MLflow) deletes here."""
    group, v = _locked_version(session, group_name, number)
    _registrant_or_admin(session, v, actor, f"{group_name} version {number} was", "delete it")
    why = _why_kept(session, group, v)
    if why is not None:
        raise RuleRefusal(f"cannot delete {group.name} version {number}: {why}",
                          fix="reject or archive it instead (POST …/approval with Rejected, or move it to Archived); "
                              "an approver can move a governed alias elsewhere first",
                          fixes={"sagemaker": "reject it instead (UpdateModelPackage with ModelApprovalStatus "
                                              "Rejected)",
                                 "mlflow": "archive it instead (transition-stage to Archived); an approver can move "
                                           "a governed alias elsewhere first"})
    _refuse_if_referenced(session, group.name, number, "delete")
    snapshot = _payload(group.name, v)
    _drop_aliases(session, group, v, actor)
    session.delete(v)
    group.updated_at = utcnow()
    session.flush()
    subject = f"{group.name}/{number}"
    audit.record(session, actor=actor.name, action="version.deleted", subject_type="model_version",
                 subject_id=subject, before=snapshot)
    events.emit(session, "version.deleted", subject, {"group": group.name, "version": number, "actor": actor.name})


def delete_group(session: Session, name: str, actor: Principal) -> None:
    """Remove a group whose versions could all be deleted (none approved, no governed alias), and nothing refers
    to; its other aliases go with it, each removal audited."""
    group = get_group(session, name, for_update=True)
    _may_change_group(session, group, actor, "delete it")
    versions = list(session.scalars(_lock(select(ModelVersion).where(ModelVersion.group_id == group.id)
                                          .options(selectinload(ModelVersion.metadata_items))
                                          .order_by(ModelVersion.version), session)))
    for v in versions:
        why = _why_kept(session, group, v)
        if why is not None:
            raise RuleRefusal(f"cannot delete model group {name!r}: {why}",
                              fix="approved versions stay; archive the group's versions instead")
        # each version goes as delete_version lets it: by its registrant or an admin (a group's creator could
        # otherwise delete another publisher's versions by deleting the group)
        _registrant_or_admin(session, v, actor, f"model group {name!r} holds version {v.version},", "delete it")
    _refuse_if_referenced(session, group.name, None, "delete")
    for v in versions:
        _drop_aliases(session, group, v, actor)
    if versions:   # each version's record says it went, as delete_version's does
        audit.record_many(session, [audit.Entry(actor.name, "version.deleted", "model_version",
                                                f"{group.name}/{v.version}", before=_payload(group.name, v))
                                    for v in versions])
    before = {"name": group.name, "description": group.description, "tags": group.tags,
              "latest_version": group.latest_version}
    # its lineage is evidence and stays, under a name no group can take (':' is refused in names); else a group
    # created under this name would find these nodes as its own versions'
    lineage.rename_model_group(session, group.name, f"{group.name}:deleted-{group.id}")
    session.delete(group)
    session.flush()
    audit.record(session, actor=actor.name, action="model_group.deleted", subject_type="model_group",
                 subject_id=name, before=before)
    events.emit(session, "model_group.deleted", name, {"name": name, "actor": actor.name})


# --- aliases ------------------------------------------------------------------------------------------

RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)


def set_alias(session: Session, group_name: str, alias: str, number: int, actor: Principal) -> ModelVersion:
    """Point ``alias`` at a version. A governed alias (default @champion, @production) is what deployments
    follow, so it gets the rules of a governed stage and four-eyes: only an approver or admin, independent of
    whoever registered the version, may point it, and only at an Approved version."""
    if not ALIAS_RE.fullmatch(alias) or RESERVED_ALIAS.fullmatch(alias):
        raise Invalid(f"alias {alias!r} is not allowed: letters, digits, '_' and '-', at most 255, and not 'latest' "
                      "or v<number> (those name versions)", fix="pick another alias, e.g. 'champion'")
    group, v = _locked_version(session, group_name, number)
    governed = governed_aliases(group)
    fold = {g.casefold().replace("_", "-"): g for g in governed}.get(alias.casefold().replace("_", "-"))
    if fold is not None and fold != alias:
        # aliases are case-sensitive, as on MLflow: @Champion would be an ungoverned alias a reviewer reads as
        # @champion (a migration trial set it on an unapproved version with a publisher key)
        raise Invalid(f"alias {alias!r} reads like the governed alias @{fold} of {group.name}",
                      fix=f"use @{fold} (approvers set it on Approved versions) or a name that reads differently")
    if alias in governed:
        if actor.role not in DECIDERS:
            raise Forbidden(f"@{alias} is a governed alias of {group.name}: only approver or admin keys may move it "
                            f"(key {actor.name!r} is {actor.role.value})", fix="ask an approver to set it")
        if v.approval_status != APPROVED:
            raise RuleRefusal(f"@{alias} is a governed alias of {group.name}: it may point only at an Approved "
                              f"version; version {number} is {v.approval_status}",
                              fix="have an approver independent of the registrant approve the version through "
                                  "mlgov (API, CLI or console), then set the alias")
        why = "the same key" if v.registered_by_key == actor.key_pk else auth.independent_keys(
            session, actor, v.registered_by_key, _registrant(session, v)[0])
        if why is not None:
            raise FourEyesViolation(actor.name, group.name, number, None if why == "the same key" else why,
                                    act=f"point the governed alias @{alias} at it")
    current = session.get(Alias, (group.id, alias))
    previous = None
    if current is not None:
        previous = session.scalar(select(ModelVersion.version).where(ModelVersion.id == current.version_id))
        if current.version_id == v.id:
            return v
        current.version_id, current.set_by, current.set_at = v.id, actor.name, utcnow()
    else:
        session.add(Alias(group_id=group.id, alias=alias, version_id=v.id, set_by=actor.name, set_at=utcnow()))
    _move_alias(session, group, alias, number, previous, actor)
    return v


def _move_alias(session: Session, group: ModelGroup, alias: str, number: int | None, previous: int | None,
                actor: Principal) -> None:
    session.add(AliasMove(group_id=group.id, alias=alias, version=number, actor=actor.name, at=utcnow()))
    session.flush()
    subject = f"{group.name}/{number if number is not None else previous}"
    action = "version.alias_set" if number is not None else "version.alias_removed"
    audit.record(session, actor=actor.name, action=action, subject_type="model_version", subject_id=subject,
                 before={"alias": alias, "version": previous}, after={"alias": alias, "version": number})
    events.emit(session, action, subject, {"group": group.name, "alias": alias, "version": number,
                                           "previous_version": previous, "actor": actor.name})


def delete_alias(session: Session, group_name: str, alias: str, actor: Principal) -> None:
    group = get_group(session, group_name, for_update=True)
    current = session.get(Alias, (group.id, alias))
    if current is None:
        raise NotFound(f"model group {group_name!r} has no alias {alias!r}",
                       fix="list its aliases (GET the model group)")
    if alias in governed_aliases(group) and actor.role not in DECIDERS:
        raise Forbidden(f"@{alias} is a governed alias of {group.name}: only approver or admin keys may remove it",
                        fix="ask an approver")
    previous = session.scalar(select(ModelVersion.version).where(ModelVersion.id == current.version_id))
    session.delete(current)
    _move_alias(session, group, alias, None, previous, actor)


def aliases_at(session: Session, group_name: str, at: dt.datetime) -> dict[str, int]:
    """What every alias pointed at, at time ``at`` (each alias's last move at or before it)."""
    group = get_group(session, group_name)
    last = (select(AliasMove.alias, func.max(AliasMove.id).label("mid"))
            .where(AliasMove.group_id == group.id, AliasMove.at <= at).group_by(AliasMove.alias).subquery())
    rows = session.execute(select(AliasMove.alias, AliasMove.version).join(last, last.c.mid == AliasMove.id))
    return {a: n for a, n in rows if n is not None}


def alias_history(session: Session, group_name: str) -> list[AliasMove]:
    group = get_group(session, group_name)
    return list(session.scalars(select(AliasMove).where(AliasMove.group_id == group.id).order_by(AliasMove.id)))


# --- views across versions (MLflow's registered-model and search shapes) ------------------------------

@dataclass(frozen=True)
class VersionFacts:
    """What a listing shows beside the row: its aliases and who approved it."""

    aliases: list[str]
    approved_by: str | None


def version_facts(session: Session, versions: list[ModelVersion]) -> dict[str, VersionFacts]:
    ids = [v.id for v in versions]
    aliases: dict[str, list[str]] = {i: [] for i in ids}
    approvers: dict[str, str] = {}
    for part in chunks(ids):
        for vid, alias in session.execute(select(Alias.version_id, Alias.alias).where(Alias.version_id.in_(part))
                                          .order_by(Alias.alias)):
            aliases[vid].append(alias)
        newest = (select(func.max(ApprovalDecision.id)).where(ApprovalDecision.version_id.in_(part))
                  .group_by(ApprovalDecision.version_id))
        for vid, to, actor in session.execute(select(ApprovalDecision.version_id, ApprovalDecision.to_status,
                                                     ApprovalDecision.actor).where(ApprovalDecision.id.in_(newest))):
            if to == APPROVED:
                approvers[vid] = actor
    return {v.id: VersionFacts(aliases[v.id], approvers.get(v.id)) for v in versions}


# --- version views as columns: MLflow's door reads rows and one facts query, never ORM objects --------------

@dataclass(frozen=True)
class VersionView:
    """A version as a listing shows it (MLflow's ModelVersion message): its columns, its group's name and initial
    stage, its metadata (by key), aliases (by name) and who approved it. Built from rows (`version_views`)."""

    id: str
    group_name: str
    initial_stage: str
    version: int
    approval_status: str
    stage: str | None
    description: str | None
    artifact_uri: str
    artifact_sha256: str | None
    run_id: str | None
    run_link: str | None
    registered_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    metadata: list[tuple[str, str]]
    aliases: list[str]
    approved_by: str | None


_MV, _MG, _VM = ModelVersion.__table__.c, ModelGroup.__table__.c, VersionMetadata.__table__.c
_AL, _AD = Alias.__table__.c, ApprovalDecision.__table__.c
# Table columns, not ORM attributes: these statements run on the session's connection as plain Core, built once
# (the compiled form and its cache key are reused by every request).
# The group's initial stage is read out of its stage config in SQL: the whole JSON document, decoded once per row,
# was a tenth of a 100-version page's CPU.
_VIEW_COLUMNS = (_MV.id, _MG.name, _MG.stage_config["initial"].as_string(), _MV.version, _MV.approval_status,
                 _MV.stage, _MV.description, _MV.artifact_uri, _MV.artifact_sha256, _MV.run_id, _MV.run_link,
                 _MV.registered_by, _MV.created_at, _MV.updated_at)
_VIEWS = select(*_VIEW_COLUMNS).join_from(ModelVersion.__table__, ModelGroup.__table__, _MG.id == _MV.group_id)
_VIEW_BY_NUMBER = _VIEWS.where(_MG.name == bindparam("group"), _MV.version == bindparam("number"))
_VIEW_BY_ALIAS = _VIEWS.join(Alias.__table__, (_AL.version_id == _MV.id) & (_AL.group_id == _MG.id)).where(
    _MG.name == bindparam("group"), _AL.alias == bindparam("alias"))


# metadata, aliases and the newest approval decision of the versions ``ids``, as one UNION ALL
_VIEW_FACTS = per_backend(lambda ids_in: union_all(
    select(_VM.version_id, literal_column("'m'"), _VM.key, _VM.value).where(ids_in(_VM.version_id)),
    select(_AL.version_id, literal_column("'a'"), _AL.alias, literal_column("''")).where(ids_in(_AL.version_id)),
    select(_AD.version_id, literal_column("'d'"), _AD.to_status, _AD.actor).where(
        _AD.id.in_(select(func.max(_AD.id)).where(ids_in(_AD.version_id)).group_by(_AD.version_id)))))


def version_views(session: Session, rows: Sequence[Any]) -> list[VersionView]:
    """Rows of `_VIEWS` as views: their metadata, aliases and newest approval decision in one query (a UNION ALL
    per 500 versions) instead of one per kind."""
    ids = [r[0] for r in rows]
    meta: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    aliases: dict[str, list[str]] = {i: [] for i in ids}
    approvers: dict[str, str] = {}
    conn = session.connection()
    facts = _VIEW_FACTS[conn.dialect.name]
    for part in chunks(ids):
        for vid, kind, key, value in conn.execute(facts, {"ids": list(part)}).all():   # fetchall, not per row
            if kind == "m":
                meta[vid].append((key, value))
            elif kind == "a":
                aliases[vid].append(key)
            elif key == APPROVED:
                approvers[vid] = value
    return [VersionView(vid, name, initial or "", number, status, stage, description, uri,
                        sha, run_id, run_link, by, created, updated, sorted(meta[vid]), sorted(aliases[vid]),
                        approvers.get(vid))
            for vid, name, initial, number, status, stage, description, uri, sha, run_id, run_link, by, created,
            updated in rows]


def registered_view(group_name: str, v: ModelVersion) -> VersionView:
    """The view of a version `register_version` just returned, from what is in hand (no query): it sits at its
    group's initial stage, with its metadata, no alias and no decision yet."""
    return VersionView(v.id, group_name, v.stage or "", v.version, v.approval_status, v.stage, v.description,
                       v.artifact_uri, v.artifact_sha256, v.run_id, v.run_link, v.registered_by, v.created_at,
                       v.updated_at, [(m.key, m.value) for m in v.metadata_items], [], None)


def _with_facts(stmt: Select[Any]) -> dict[str, Select[Any]]:
    """``stmt`` (one row of `_VIEW_COLUMNS`) with its version's metadata, aliases and newest approval decision as
    three JSON columns, per backend: one statement for a single version instead of the row and then `_VIEW_FACTS`
    (PostgreSQL, client CPU of a get's queries 330 -> 180 us, one round trip fewer)."""
    out, named = {}, Alias.__table__.alias("named")   # its own name: `_VIEW_BY_ALIAS` joins the aliases already
    for backend, agg, array in _JSON_AGGREGATES:
        out[backend] = stmt.add_columns(
            _metadata_json(agg, array),
            _as_json(select(agg(named.c.alias)).where(named.c.version_id == _MV.id)),
            _as_json(select(array(_AD.to_status, _AD.actor)).where(_AD.version_id == _MV.id).order_by(_AD.id.desc())
                     .limit(1)))
    return out


_ONE_BY_NUMBER, _ONE_BY_ALIAS = _with_facts(_VIEW_BY_NUMBER), _with_facts(_VIEW_BY_ALIAS)


def _one_view(session: Session, statements: dict[str, Select[Any]], params: dict[str, Any]) -> VersionView | None:
    row = _first_row(session, statements, params)
    if row is None:
        return None
    vid, name, initial, number, status, stage, description, uri, sha, run_id, run_link, by, created, updated, \
        meta, aliases, decision = row
    return VersionView(vid, name, initial or "", number, status, stage, description, uri, sha, run_id, run_link, by,
                       created, updated, sorted((k, v) for k, v in meta or []), sorted(aliases or []),
                       decision[1] if decision and decision[0] == APPROVED else None)


def view_version(session: Session, group_name: str, number: int) -> VersionView:
    view = _one_view(session, _ONE_BY_NUMBER, {"group": group_name, "number": number})
    if view is None:
        _group_id(session, group_name)   # GroupNotFound when the group is what is missing
        raise VersionNotFound(group_name, number)
    return view


def view_by_alias(session: Session, group_name: str, alias: str) -> VersionView:
    view = _one_view(session, _ONE_BY_ALIAS, {"group": group_name, "alias": alias})
    if view is None:
        _group_id(session, group_name)
        raise NotFound(f"model group {group_name!r} has no alias {alias!r}",
                       fix="list its aliases (GET the model group)")
    return view


def view_search(session: Session, clauses: Sequence[SearchTerm], order: list[tuple[str, bool]], limit: int,
                offset: int) -> list[VersionView]:
    """`search_versions` as views. A ``name = 'x'`` clause (every MLflow client search names its model) is also
    applied as that group's id, a scalar subquery (as in `read_latest`; a constant to PostgreSQL's planner): ordered
    by version it then walks the (group, version) index backwards and stops at the page, where the name alone made
    it sort every version of the group. With one name, ordering by name is ordering by nothing: it is dropped, so
    an order by last update walks the (group, updated_at, version) index the same way."""
    stmt = _VIEWS.where(*_versions_where(clauses))
    one_group = False
    for c in clauses:
        if isinstance(c, SearchClause) and c.field == "name" and c.op == "=" and isinstance(c.value, str):
            stmt = stmt.where(_MV.group_id == select(ModelGroup.id).where(ModelGroup.name == c.value)
                              .scalar_subquery())
            one_group = True
    if one_group:
        order = [(key, asc) for key, asc in order if key != "name"]
    ordered = {key for key, _ in order} | ({"name"} if one_group else set())
    tiebreak = [column for key, column in (("name", ModelGroup.name.asc()), ("version", ModelVersion.version.desc()))
                if key not in ordered]
    stmt = stmt.order_by(*_ordering(order, _VERSION_COLUMNS, tiebreak))
    return version_views(session, session.execute(stmt.limit(limit).offset(offset)).all())


def view_latest_by_stage(session: Session, group_ids: list[str], stages: list[str] | None = None,
                         ) -> dict[str, list[VersionView]]:
    """`latest_by_stage` as views: one index probe per (group, stage) on (group, stage, version)."""
    out: dict[str, list[VersionView]] = {g: [] for g in group_ids}
    by_id: dict[str, list[Any]] = {g: [] for g in group_ids}
    for part in chunks(group_ids):
        newest = (select(func.max(ModelVersion.version).label("n"), ModelVersion.group_id)
                  .where(ModelVersion.group_id.in_(part), *([ModelVersion.stage.in_(stages)] if stages else []))
                  .group_by(ModelVersion.group_id, ModelVersion.stage).subquery())
        stmt = (_VIEWS.add_columns(_MV.group_id)
                .join(newest, (newest.c.group_id == ModelVersion.group_id) & (newest.c.n == ModelVersion.version))
                .order_by(ModelVersion.version))
        for row in session.execute(stmt):
            by_id[row[-1]].append(row[:-1])
    for gid, rows in by_id.items():
        out[gid] = version_views(session, rows) if rows else []
    return out


def latest_by_stage(session: Session, group_ids: list[str], stages: list[str] | None = None,
                    ) -> dict[str, list[ModelVersion]]:
    """For each group, the newest version in each stage (only ``stages``, when given), oldest stage first."""
    out: dict[str, list[ModelVersion]] = {g: [] for g in group_ids}
    for part in chunks(group_ids):
        newest = (select(func.max(ModelVersion.version).label("n"), ModelVersion.group_id)
                  .where(ModelVersion.group_id.in_(part), *([ModelVersion.stage.in_(stages)] if stages else []))
                  .group_by(ModelVersion.group_id, ModelVersion.stage).subquery())
        stmt = (select(ModelVersion).options(selectinload(ModelVersion.metadata_items))
                .join(newest, (newest.c.group_id == ModelVersion.group_id) & (newest.c.n == ModelVersion.version))
                .order_by(ModelVersion.version))
        for v in session.scalars(stmt):
            out[v.group_id].append(v)
    return out


def group_aliases(session: Session, group_ids: list[str]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {g: [] for g in group_ids}
    for part in chunks(group_ids):
        for gid, alias, number in session.execute(
                select(Alias.group_id, Alias.alias, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == Alias.version_id).where(Alias.group_id.in_(part))
                .order_by(Alias.alias)):
            out[gid].append((alias, number))
    return out


_GROUP_COLUMNS: dict[str, Any] = {"name": ModelGroup.name, "created_at": ModelGroup.created_at,
                                  "updated_at": ModelGroup.updated_at, "description": ModelGroup.description,
                                  "created_by": ModelGroup.created_by}
_VERSION_COLUMNS: dict[str, Any] = {"name": ModelGroup.name, "version": ModelVersion.version,
                                    "created_at": ModelVersion.created_at, "updated_at": ModelVersion.updated_at,
                                    "stage": ModelVersion.stage, "run_id": ModelVersion.run_id,
                                    "source": ModelVersion.artifact_uri,
                                    "approval_status": ModelVersion.approval_status,
                                    "approval_description": ModelVersion.approval_description,
                                    "description": ModelVersion.description, "domain": ModelVersion.domain,
                                    "task": ModelVersion.task, "registered_by": ModelVersion.registered_by,
                                    "framework": ModelVersion.framework,
                                    "framework_version": ModelVersion.framework_version,
                                    "artifact_sha256": ModelVersion.artifact_sha256,
                                    "image": ModelVersion.inference_spec["image"].as_string(),
                                    "image_digest": ModelVersion.inference_spec["image_digest"].as_string(),
                                    # MLflow's current_stage: "None" for the group's initial stage (`mlflow.py`)
                                    "mlflow_stage": case((or_(ModelVersion.stage.is_(None), ModelVersion.stage
                                                              == ModelGroup.stage_config["initial"].as_string()),
                                                          literal("None")), else_=ModelVersion.stage)}
_INT_FIELDS = frozenset({"version"})
_TIME_FIELDS = frozenset({"created_at", "updated_at"})
MAX_SEARCH_CLAUSES = 200   # conditions in one search expression, however nested
MAX_SEARCH_DEPTH = 8       # groups inside groups


def _typed(field: str, text: str, label: str | None = None) -> Any:
    """A clause's text as the field's type: integers, and times as ISO-8601 or epoch seconds. ``label`` is what
    the caller called the field, so the error names it as they wrote it."""
    shown = label or field
    if field in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise Invalid(f"{shown} is an integer; {text[:60]!r} is not", fix="compare it with a whole number") \
                from None
    if field in _TIME_FIELDS:
        try:
            when = (dt.datetime.fromtimestamp(float(text), dt.UTC) if re.fullmatch(r"-?\d+(\.\d+)?", text)
                    else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except (ValueError, OverflowError, OSError):
            raise Invalid(f"{shown} is a time; {text[:60]!r} is neither ISO-8601 nor epoch seconds",
                          fix="write e.g. 2026-01-31T12:00:00Z or 1769860800") from None
        return as_utc(when)
    return text


def _compare(column: Any, op: str, value: str | list[str], field: str = "", label: str | None = None) -> Any:
    if op in ("IN", "NOT IN"):
        values = [_typed(field, v, label) for v in (value if isinstance(value, list) else [value])]
        return column.in_(values) if op == "IN" else column.not_in(values)
    if op == "EXISTS":
        return column.is_not(None)
    if op == "NOT EXISTS":
        return column.is_(None)
    text = str(value)
    if op in ("CONTAINS", "LIKE", "ILIKE") and field in _INT_FIELDS | _TIME_FIELDS:
        raise Invalid(f"{field} is not text: it cannot be searched with {op}",
                      fix="compare it with =, !=, <, <=, >, >= or IN")
    if op == "CONTAINS":
        return icontains(column, text) if text else true()
    if op in ("LIKE", "ILIKE"):
        return like(column, text) if op == "LIKE" else column.ilike(text)
    typed = _typed(field, text, label)
    return {"=": lambda: column == typed, "!=": lambda: column != typed, ">": lambda: column > typed,
            ">=": lambda: column >= typed, "<": lambda: column < typed, "<=": lambda: column <= typed}[op]()


def _condition(term: SearchTerm, columns: dict[str, Any], tag: Callable[[SearchClause], Any], depth: int = 0,
               budget: list[int] | None = None) -> Any:
    """One SQL condition for a clause or a tree of them; refuses trees past the depth and size limits."""
    budget = budget if budget is not None else [MAX_SEARCH_CLAUSES]
    if isinstance(term, SearchGroup):
        if depth >= MAX_SEARCH_DEPTH:
            raise Invalid(f"the search expression nests groups more than {MAX_SEARCH_DEPTH} deep",
                          fix="flatten the expression")
        parts = [_condition(t, columns, tag, depth + 1, budget) for t in term.items]
        return and_(true(), *parts) if term.join == "AND" else or_(false(), *parts)
    budget[0] -= 1
    if budget[0] < 0:
        raise Invalid(f"the search expression has more than {MAX_SEARCH_CLAUSES} conditions",
                      fix="narrow the search with fewer conditions (an In list counts once)")
    if term.field == "tag":
        return tag(term)
    if term.field in columns:
        return _compare(columns[term.field], term.op, term.value, term.field, term.label)
    raise Invalid(f"cannot search by {term.field!r}", fix=f"search by one of: {', '.join(columns)}, tags.<key>")


def _where(clauses: Sequence[SearchTerm], columns: dict[str, Any], tag: Callable[[SearchClause], Any]) -> list[Any]:
    budget = [MAX_SEARCH_CLAUSES]
    return [_condition(c, columns, tag, 0, budget) for c in clauses]


def _ordering(order: list[tuple[str, bool]], columns: dict[str, Any], tiebreak: list[Any]) -> list[Any]:
    for key, _ in order:
        if key not in columns:
            raise Invalid(f"cannot order by {key!r}", fix=f"order by one of: {', '.join(columns)}")
    return [columns[k].asc() if asc else columns[k].desc() for k, asc in order] + tiebreak


def _groups_where(clauses: Sequence[SearchTerm]) -> list[Any]:
    def tag(c: SearchClause) -> Any:
        return _compare(ModelGroup.tags[c.key or ""].as_string(), c.op, c.value)

    return _where(clauses, _GROUP_COLUMNS, tag)


def _versions_where(clauses: Sequence[SearchTerm]) -> list[Any]:
    def tag(c: SearchClause) -> Any:
        key = c.key or ""
        if c.op in ("EXISTS", "NOT EXISTS"):
            return _tagged(key) if c.op == "EXISTS" else ~_tagged(key)
        if c.op == "=" and isinstance(c.value, str):
            return _tagged(key, *_value_is(c.value))
        if c.op == "IN" and isinstance(c.value, list):
            return _tagged(key, VersionMetadata.value.in_(c.value),
                           _value_prefix.in_(sorted({v[:VALUE_PREFIX] for v in c.value})))
        return _tagged(key, _compare(VersionMetadata.value, c.op, c.value))

    return _where(clauses, _VERSION_COLUMNS, tag)


def search_groups(session: Session, clauses: Sequence[SearchTerm], order: list[tuple[str, bool]], limit: int,
                  offset: int) -> list[ModelGroup]:
    """Groups matching every clause or clause tree (name, description, created_at, updated_at, created_by,
    tags.<key>), in ``order`` then by name."""
    stmt = select(ModelGroup).where(*_groups_where(clauses))
    stmt = stmt.order_by(*_ordering(order, _GROUP_COLUMNS, [ModelGroup.name.asc()]))
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def count_groups(session: Session, clauses: Sequence[SearchTerm]) -> int:
    return session.scalar(select(func.count()).select_from(ModelGroup).where(*_groups_where(clauses))) or 0


def _versions_stmt() -> Select[ModelGroup, ModelVersion]:
    return select(ModelGroup, ModelVersion).join(ModelGroup, ModelGroup.id == ModelVersion.group_id)


def search_versions(session: Session, clauses: Sequence[SearchTerm], order: list[tuple[str, bool]], limit: int,
                    offset: int) -> list[tuple[ModelGroup, ModelVersion]]:
    """(group, version) matching every clause or clause tree (any of ``_VERSION_COLUMNS``, tags.<key> being the
    version's metadata), in ``order`` then by name and newest version first."""
    stmt = _versions_stmt().options(selectinload(ModelVersion.metadata_items)).where(*_versions_where(clauses))
    stmt = stmt.order_by(*_ordering(order, _VERSION_COLUMNS, [ModelGroup.name.asc(), ModelVersion.version.desc()]))
    return [(g, v) for g, v in session.execute(stmt.limit(limit).offset(offset)).all()]


def count_versions(session: Session, clauses: Sequence[SearchTerm]) -> int:
    stmt = _versions_stmt().where(*_versions_where(clauses)).subquery()
    return session.scalar(select(func.count()).select_from(stmt)) or 0


# --- compliance report --------------------------------------------------------------------------------

def _decided_independently(session: Session, v: ModelVersion, d: ApprovalDecision) -> bool:
    """The compliance report applies the rule `decide` enforces (owners and both creation chains)."""
    if d.actor == v.registered_by:
        return False
    key = auth.key_by_pk(session, d.actor_key) if d.actor_key else None
    decider = auth.principal_of(key) if key is not None else auth.Principal(
        key_pk="", name=d.actor, role=auth.Role.approver, owner=d.actor_owner or d.actor)
    return auth.independent_keys(session, decider, v.registered_by_key, _registrant(session, v)[0]) is None


def _provisioning_warnings(session: Session, v: ModelVersion, decisions: list[ApprovalDecision]) -> list[str]:
    """Owners are names an admin types, so one admin could mint a registrant and a decider under two made-up
    owners. Not blocked (an admin who provisions every key is normal); made visible for the reviewer."""
    registrant = auth.key_by_pk(session, v.registered_by_key)
    out = []
    for d in decisions:
        decider = auth.key_by_pk(session, d.actor_key) if d.actor_key else None
        if registrant is None or decider is None or registrant.created_by_key is None:
            continue
        if registrant.created_by_key == decider.created_by_key:
            out.append(f"the registering key {registrant.name!r} and the deciding key {decider.name!r} were both "
                       f"created by {registrant.created_by!r}")
    return out


def _decision_row(d: ApprovalDecision) -> dict[str, Any]:
    row: dict[str, Any] = {"from": d.from_status, "to": d.to_status, "by": d.actor, "at": d.at.isoformat(),
                           "comment": d.comment}
    if d.actor_owner is not None and d.actor_owner != d.actor:
        row["by_owner"] = d.actor_owner
    if d.evidence is not None:
        row["evidence"] = d.evidence
    if d.policy_overridden:
        row["policy_overridden"] = d.policy_overridden
        row["passed_only_by_override"] = True
    return row


# What other domains know of a version. Monitor and Clarify call registry, so registry cannot call them: they add
# providers at composition (``mlgov.app``) and the compliance report asks each for its side of every version.
VersionKey = tuple[str, int]
FactsProvider = Callable[[Session, Sequence[VersionKey], dt.datetime, dt.datetime],
                         Mapping[VersionKey, Mapping[str, list[dict[str, Any]]]]]
"""(session, [(group, version)], from, to) → per version, lists by section: ``alerts`` and ``monitoring`` (activity
in the window), ``attachments`` (evidence attached to the version over time, each with ``kind``, ``id``, ``by``,
``at`` and ``until`` (when it was superseded, or None), ISO-8601 times). Many versions at once, in a few set-based
queries: the inbox and the compliance report ask for a page of versions."""
_FACTS: dict[str, FactsProvider] = {}
MAX_ATTACHMENTS = 500


def add_version_facts(name: str, provider: FactsProvider) -> None:
    """Add (or replace, by name: composing twice is harmless) a provider of facts about versions."""
    _FACTS[name] = provider


def audited_attachments(session: Session, versions: Sequence[VersionKey], action: str, kind: str, id_key: str, *,
                        replaces: bool) -> dict[VersionKey, list[dict[str, Any]]]:
    """Evidence attached to each version as the audit log recorded it (``action`` on the version): each in force
    from its event on, until the next one when a new attachment ``replaces`` the previous."""
    subjects = {f"{g}/{n}": (g, n) for g, n in versions}
    out: dict[VersionKey, list[dict[str, Any]]] = {key: [] for key in versions}
    for e in audit.events_of(session, "model_version", list(subjects), action):
        kept = out[subjects[e.subject_id]]
        if len(kept) < MAX_ATTACHMENTS:
            kept.append({"kind": kind, "id": (e.after or {}).get(id_key), "by": e.actor, "at": e.ts.isoformat(),
                         "until": None})
    if replaces:
        for items in out.values():
            for before, after in itertools.pairwise(items):
                before["until"] = after["at"]
    return out


def facts_of(session: Session, versions: Sequence[VersionKey], lo: dt.datetime | None = None,
             hi: dt.datetime | None = None) -> dict[VersionKey, dict[str, list[dict[str, Any]]]]:
    """What the other domains know of each version in [lo, hi) (default: all time): ``alerts``, ``monitoring`` (runs
    per endpoint and kind, with the newest) and ``attachments`` (oldest first), from the composed providers."""
    lo = lo or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    hi = hi or utcnow() + dt.timedelta(seconds=1)
    out: dict[VersionKey, dict[str, list[dict[str, Any]]]] = {
        key: {"alerts": [], "monitoring": [], "attachments": []} for key in versions}
    if not versions:
        return out
    for provider in _FACTS.values():
        for key, sections in provider(session, versions, lo, hi).items():
            for section, items in sections.items():
                out[key].setdefault(section, []).extend(items)
    for facts in out.values():
        facts["attachments"].sort(key=lambda a: dt.datetime.fromisoformat(a["at"]))
    return out


def other_facts(session: Session, group_name: str, number: int, lo: dt.datetime | None = None,
                hi: dt.datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """`facts_of` one version."""
    return facts_of(session, [(group_name, number)], lo, hi)[(group_name, number)]


def _add_version_facts(row: dict[str, Any], facts: dict[str, list[dict[str, Any]]]) -> None:
    """The providers' sections on a compliance row, and on each decision the attachments in force when it was
    taken (beside ``evidence``, the bias reports the decision assessed, recorded with it)."""
    row.update(facts)
    for d in row["decisions"]:
        at = dt.datetime.fromisoformat(d["at"])
        d["attached"] = [a for a in facts["attachments"] if dt.datetime.fromisoformat(a["at"]) <= at
                         and (a.get("until") is None or at < dt.datetime.fromisoformat(a["until"]))]


def _alias_moves_by_version(session: Session, group: ModelGroup, lo: dt.datetime,
                            hi: dt.datetime) -> dict[int, list[dict[str, Any]]]:
    """Every alias move in [lo, hi) (through any door: native, MLflow), listed on the version it pointed at before
    and on the one it points at after: ``{alias, from, to, by, at}`` (``to`` None: removed)."""
    out: dict[int, list[dict[str, Any]]] = {}
    pointing: dict[str, int | None] = {}
    for m in session.scalars(select(AliasMove).where(AliasMove.group_id == group.id, AliasMove.at < hi)
                             .order_by(AliasMove.id)):
        previous = pointing.get(m.alias)
        pointing[m.alias] = m.version
        if m.at < lo:
            continue
        item = {"alias": m.alias, "from": previous, "to": m.version, "by": m.actor, "at": m.at.isoformat()}
        for number in {previous, m.version} - {None}:
            out.setdefault(cast(int, number), []).append(item)
    return out


def name_history(session: Session, group: ModelGroup) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
    """The names ``group`` has had, newest first, each with when it took the name and when it gave it up (None:
    still). Audit subjects carry the name of their time: a renamed group's history lies under its old names, and
    events under its name from before it existed belong to a group deleted earlier."""
    out: list[tuple[str, dt.datetime, dt.datetime | None]] = []
    name, until = group.name, None
    for _ in range(1000):
        stmt = select(audit.AuditEvent).where(
            audit.AuditEvent.action == "model_group.renamed", audit.AuditEvent.subject_type == "model_group",
            audit.AuditEvent.subject_id == name, audit.AuditEvent.ts >= group.created_at)
        if until is not None:
            stmt = stmt.where(audit.AuditEvent.ts < until)
        renamed = session.scalar(stmt.order_by(audit.AuditEvent.seq.desc()).limit(1))
        if renamed is None or not isinstance((renamed.before or {}).get("name"), str):
            break
        out.append((name, renamed.ts, until))
        name, until = renamed.before["name"], renamed.ts
    out.append((name, group.created_at, until))
    return out


def group_events(session: Session, name: str, *, actor: str | None = None, action: str | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None, limit: int = 100,
                 offset: int = 0, newest_first: bool = False) -> tuple[list[audit.AuditEvent], int]:
    """The audit events of the group now called ``name`` and of its versions, under every name it has had while
    it had it: a rename does not cut its history off, and an earlier group's events under the same name are not
    mixed in. A name no group has now reads as a deleted group's: its events by that name."""
    group = session.scalar(select(ModelGroup).where(ModelGroup.name == name))
    names = name_history(session, group) if group is not None else None
    return audit.query(session, actor=actor, action=action, subject_under=None if names else name, names=names,
                       since=since, until=until, limit=limit, offset=offset, newest_first=newest_first)


def version_events(session: Session, group: ModelGroup, numbers: Sequence[int], actions: tuple[str, ...],
                   ) -> dict[str, dict[int, list[audit.AuditEvent]]]:
    """Each action's events of the group's versions under every name it has had (`name_history`), oldest first;
    one read of the log per name, not one per action."""
    out: dict[str, dict[int, list[audit.AuditEvent]]] = {a: {n: [] for n in numbers} for a in actions}
    for name, since, until in name_history(session, group):
        subjects = {f"{name}/{n}": n for n in numbers}
        for e in audit.events_of(session, "model_version", list(subjects), actions):
            if e.ts >= since and (until is None or e.ts < until):
                out[e.action][subjects[e.subject_id]].append(e)
    for by_number in out.values():
        for events_ in by_number.values():
            events_.sort(key=lambda e: e.seq)
    return out


_CHAINED = ("version.registered", "version.approval_changed", "version.stage_changed")
"""The events the report compares with the registry's tables (`_chain_disagreements`)."""


def _chain_disagreements(session: Session, versions: Sequence[ModelVersion],
                         decisions: dict[str, list[ApprovalDecision]],
                         transitions: dict[str, list[StageTransition]],
                         events_: dict[str, dict[int, list[audit.AuditEvent]]]) -> dict[str, list[str]]:
    """Where the registry's tables disagree with the audit chain, per version id, as the report's warnings. The
    report reads who registered, decided and moved a version from tables the chain does not hash; a row edited in
    the database (an approval's actor or comment, a registrant, a hash) would show there under "chain OK". Each
    fact is compared with the event the chain recorded for it, in order; ``decisions`` and ``transitions`` are
    every row of each version, whatever the report's window. An event that was itself modified after it was
    written (its hash no longer fits) is not the record: the warning then names the event, not the table.
    ``events_``: `version_events` of the versions, for at least the `_CHAINED` actions."""
    registered, decided = events_["version.registered"], events_["version.approval_changed"]
    moved = events_["version.stage_changed"]
    bad = audit.altered(session, (e for a in _CHAINED for es in events_[a].values() for e in es))

    def differs(what: str, row: tuple[Any, ...], event: audit.AuditEvent, recorded: tuple[Any, ...]) -> str:
        if event.seq in bad:
            return (f"ALTERED AUDIT EVENT: the chain's event for {what} (seq {event.seq}) was modified after it "
                    f"was written, so it is not the record; it reads {recorded}, the registry {row}")
        return (f"NOT THE RECORD: {what} reads {row} but the audit chain records {recorded}; the registry's "
                "tables were changed outside mlgov")

    out: dict[str, list[str]] = {}
    for v in versions:
        found: list[str] = []
        reg = registered[v.version]
        placed = [t for t in transitions[v.id] if t.from_stage is None]   # where registration put it
        stated = (v.registered_by, v.artifact_uri, v.artifact_sha256, placed[0].to_stage if placed else None)
        if not reg:
            found.append(f"NOT THE RECORD: the registration reads {stated} but the audit chain records none; "
                         "the registry's tables were changed outside mlgov")
        else:
            e = reg[0]
            chained = (e.actor, (e.after or {}).get("artifact_uri"), (e.after or {}).get("artifact_sha256"),
                       (e.after or {}).get("stage"))
            if chained != stated or e.seq in bad:
                found.append(differs("the registration", stated, e, chained))
        pairs: list[tuple[str, list[tuple[Any, ...]], list[tuple[audit.AuditEvent, tuple[Any, ...]]]]] = [
                 ("decision", [(d.actor, d.to_status, d.comment or None) for d in decisions[v.id]],
                  [(e, (e.actor, (e.after or {}).get("approval_status"), (e.after or {}).get("comment") or None))
                   for e in decided[v.version]]),
                 ("stage move", [(t.actor, t.to_stage) for t in transitions[v.id] if t.from_stage is not None],
                  [(e, (e.actor, (e.after or {}).get("stage"))) for e in moved[v.version]])]
        for what, table, chain in pairs:
            if len(table) != len(chain):
                found.append(f"NOT THE RECORD: the registry lists {len(table)} {what}(s) but the audit chain "
                             f"records {len(chain)}; the registry's tables were changed outside mlgov")
            for i, (row, (event, recorded)) in enumerate(zip(table, chain, strict=False), 1):
                if row != recorded or event.seq in bad:
                    found.append(differs(f"{what} {i}", row, event, recorded))
        if found:
            out[v.id] = found
    return out


def _deleted_versions(session: Session, group: ModelGroup, lo: dt.datetime, hi: dt.datetime) -> list[dict[str, Any]]:
    """The group's versions deleted at or after the window's start and registered before its end, read from the
    audit chain (their rows, decisions and moves left the tables with them): a version decided and then deleted
    stays part of the record. Its events are gathered under every name the group had, each while it had it (a
    rename between its rejection and its deletion must not lose the rejection); an altered event says so."""
    deletions, _ = audit.query(session, action="version.deleted", names=name_history(session, group), since=lo,
                               limit=10_000)
    numbers = sorted({int(e.subject_id.rsplit("/", 1)[1]) for e in deletions})
    by_action = version_events(session, group, numbers, _CHAINED)
    history = {n: [e for a in _CHAINED for e in by_action[a][n]] for n in numbers}
    bad = audit.altered(session, [*deletions, *(e for es in history.values() for e in es)])
    out = []
    for gone in deletions:
        name, number = gone.subject_id.rsplit("/", 1)
        events_ = sorted(history[int(number)], key=lambda e: e.seq)
        reg = next((e for e in events_ if e.action == "version.registered"), None)
        then = gone.before or {}
        registered = reg.ts if reg else _as_time(then.get("created_at"))
        if registered is not None and registered >= hi:
            continue
        out.append({
            "version": int(number), "name": name,
            "registered_by": reg.actor if reg else then.get("registered_by"),
            "registered_at": registered.isoformat() if registered else None,
            "artifact_uri": then.get("artifact_uri"), "artifact_sha256": then.get("artifact_sha256"),
            "status_when_deleted": then.get("approval_status"), "stage_when_deleted": then.get("stage"),
            "deleted_by": gone.actor, "deleted_at": gone.ts.isoformat(),
            "decisions": [{"to": (e.after or {}).get("approval_status"), "by": e.actor, "at": e.ts.isoformat(),
                           "comment": (e.after or {}).get("comment")}
                          for e in events_ if e.action == "version.approval_changed"],
            "stage_history": [{"to": (e.after or {}).get("stage"), "by": e.actor, "at": e.ts.isoformat()}
                              for e in events_ if e.action == "version.stage_changed"],
            "warnings": [f"ALTERED AUDIT EVENT: {e.action} (seq {e.seq}) was modified after it was written, so "
                         "it is not the record" for e in (gone, *events_) if e.seq in bad]
                        + ([] if reg else ["NOT THE RECORD: the audit chain holds no registration of this version"]),
        })
    return out


def _as_time(value: Any) -> dt.datetime | None:
    try:
        return as_utc(dt.datetime.fromisoformat(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _state_at(v: ModelVersion, decisions: Sequence[ApprovalDecision], moves: Sequence[StageTransition],
              at: dt.datetime) -> tuple[str, str | None]:
    """A version's approval status and stage as they stood at ``at``, from every decision and move it had: a
    report of a past window describes the version of that time, beside what it is now."""
    before = [d for d in decisions if d.at < at]
    status = before[-1].to_status if before else decisions[0].from_status if decisions else v.approval_status
    moved = [t for t in moves if t.at < at]
    stage = moved[-1].to_stage if moved else moves[0].from_stage if moves else v.stage
    return status, stage


def compliance_report(session: Session, group_name: str, since: dt.datetime | None,
                      until: dt.datetime | None, *, verify_chain: bool = True) -> dict[str, Any]:
    """Every version with activity in the window: who registered it, every decision and stage move, the evidence
    each decision used, its bias verdicts, and what the other domains know of it (alerts, monitoring runs).

    ``verify_chain=False`` leaves ``audit_chain`` None: the walk covers the whole log, not the group, so a page
    fetches it separately instead of making every view of the report wait for it."""
    if since is not None and until is not None and since >= until:
        raise Invalid(f"the report's window starts ({since.isoformat()}) at or after it ends ({until.isoformat()})",
                      fix="give a start before the end, or leave either out")
    group = get_group(session, group_name)
    lo = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    hi = until or utcnow() + dt.timedelta(seconds=1)
    versions = list(session.scalars(_version_stmt(group).where(ModelVersion.created_at < hi)
                                    .order_by(ModelVersion.version)))
    ids = [v.id for v in versions]
    all_decisions: dict[str, list[ApprovalDecision]] = {i: [] for i in ids}
    all_moves: dict[str, list[StageTransition]] = {i: [] for i in ids}
    for part in chunks(ids):   # every row once: the chain check needs them all, the report its window
        for d in session.scalars(select(ApprovalDecision).where(ApprovalDecision.version_id.in_(part))
                                 .order_by(ApprovalDecision.id)):
            all_decisions[d.version_id].append(d)
        for t in session.scalars(select(StageTransition).where(StageTransition.version_id.in_(part))
                                 .order_by(StageTransition.id)):
            all_moves[t.version_id].append(t)
    decisions = {i: [d for d in ds if lo <= d.at < hi] for i, ds in all_decisions.items()}
    moves = {i: [t for t in ts if lo <= t.at < hi] for i, ts in all_moves.items()}
    alias_moves = _alias_moves_by_version(session, group, lo, hi)
    shown = [v for v in versions if lo <= v.created_at < hi or decisions[v.id] or moves[v.id]
             or alias_moves.get(v.version)]
    chained = version_events(session, group, [v.version for v in shown], (*_CHAINED, "version.model_card_changed"))
    disagree = _chain_disagreements(session, shown, all_decisions, all_moves, chained)
    card_changes = chained["version.model_card_changed"]
    rows = []
    for v in shown:
        status_then, stage_then = _state_at(v, all_decisions[v.id], all_moves[v.id], hi)
        rows.append({
            "version": v.version,
            "artifact_uri": v.artifact_uri,
            "artifact_sha256": v.artifact_sha256,
            "registered_by": v.registered_by,
            "registered_at": v.created_at.isoformat(),
            "approval_status": v.approval_status,
            "stage": v.stage,
            "at_end": {"approval_status": status_then, "stage": stage_then},
            "training_data": list(v.training_data or []),
            "metrics": dict(v.metrics or {}),
            "model_card": v.model_card,
            "card_history": [{"at": e.ts.isoformat(), "by": e.actor, "card": (e.after or {}).get("card"),
                              "card_version": (e.after or {}).get("card_version"),
                              "status": ((e.after or {}).get("model_card") or {}).get("status")}
                             for e in card_changes[v.version] if lo <= e.ts < hi],
            "decisions": [_decision_row(d) for d in decisions[v.id]],
            "stage_history": [{"from": t.from_stage, "to": t.to_stage, "by": t.actor, "at": t.at.isoformat(),
                               "reason": t.reason, "comment": t.comment} for t in moves[v.id]],
            "alias_history": alias_moves.get(v.version, []),
            "registered_by_owner": _registrant(session, v)[0],
            "evidence": assess_evidence(session, group.name, v),
            "four_eyes_ok": v.id not in disagree and all(_decided_independently(session, v, d)
                                                         for d in decisions[v.id]),
            "flags": [f"{d.to_status} at {d.at.isoformat()} by {d.actor} passed only by admin override: "
                      f"{'; '.join(d.policy_overridden)}" for d in decisions[v.id] if d.policy_overridden],
            "warnings": disagree.get(v.id, []) + _provisioning_warnings(session, v, decisions[v.id]),
            "lineage": [n for n in lineage.upstream(session, lineage.model_version_uri(group.name, v.version), None)
                        if n["kind"] != "action" or n["type"] not in ("Approval", "StageTransition")],
        })
    facts = facts_of(session, [(group.name, cast(int, row["version"])) for row in rows], lo, hi)
    for row in rows:
        _add_version_facts(row, facts[(group.name, cast(int, row["version"]))])
    overrides = sum(1 for ds in decisions.values() for d in ds if d.policy_overridden)
    return {
        "model_group": group.name,
        "names": [{"name": name, "from": since_.isoformat(), "until": until_.isoformat() if until_ else None}
                  for name, since_, until_ in name_history(session, group)],
        "description": group.description,
        "from": lo.isoformat(),
        "to": hi.isoformat(),
        "generated_at": utcnow().isoformat(),
        "audit_chain": audit.verify(session) if verify_chain else None,
        "tables_agree_with_chain": not disagree,
        "decisions_passed_only_by_override": overrides,
        "versions": rows,
        "deleted_versions": _deleted_versions(session, group, lo, hi),
    }


# --- named model cards (SageMaker's ModelCard resource) -------------------------------------------------------
# A card has a name, a status (Draft → PendingReview → Approved → Archived), a JSON content and a version per
# change. When it documents a model version, that version's own ``model_card`` follows the card's current state.

CARD_APPROVED, CARD_ARCHIVED = "Approved", "Archived"


def get_card(session: Session, name: str, *, for_update: bool = False) -> ModelCardRecord:
    stmt = select(ModelCardRecord).where(ModelCardRecord.name == name)
    card = session.scalar(_lock(stmt, session) if for_update else stmt)
    if card is None:
        raise CardNotFound(name)
    return card


def card_version(session: Session, card: ModelCardRecord, number: int) -> ModelCardVersion:
    row = session.scalar(select(ModelCardVersion).where(ModelCardVersion.card_id == card.id,
                                                        ModelCardVersion.version == number))
    if row is None:
        raise CardNotFound(card.name, number)
    return row


def _check_card_approval(session: Session, card: ModelCardRecord | None, actor: Principal, name: str) -> None:
    """Approving a card is a review: an approver or admin, independent of whoever created the card."""
    if actor.role not in DECIDERS:
        raise Forbidden(f"role {actor.role.value!r} may not approve model card {name!r}",
                        fix="set Draft or PendingReview, and ask an approver to approve it")
    if card is None or card.created_by_key == actor.key_pk:
        raise Forbidden(f"four-eyes rule: key {actor.name!r} created model card {name!r}, so it cannot approve it",
                        fix="create the card as Draft or PendingReview; an approver owned by someone else approves")
    creator = auth.key_by_pk(session, card.created_by_key)
    why = auth.independent_keys(session, actor, card.created_by_key, creator.owner if creator else card.created_by)
    if why is not None:
        raise Forbidden(f"four-eyes rule: key {actor.name!r} is not independent of the creator of model card "
                        f"{name!r}: {why}", fix="ask an approver owned by someone else")
    for author in _card_authors(session, card):   # the review is of the content, whoever wrote it
        key = session.scalar(select(auth.ApiKey).where(auth.ApiKey.name == author))
        if key is not None and key.id == actor.key_pk:
            why = "it wrote the content"
        else:
            why = auth.independent_keys(session, actor, key.id if key else None, key.owner if key else author)
        if why is not None:
            raise Forbidden(f"four-eyes rule: key {actor.name!r} is not independent of {author!r}, who wrote "
                            f"content of model card {name!r}: {why}", fix="ask an approver owned by someone else")


def _card_authors(session: Session, card: ModelCardRecord) -> list[str]:
    """The keys (by name; names are never reused) that wrote a version of the card's content."""
    authors: dict[str, None] = {}
    previous: Any = None
    for actor, content in session.execute(select(ModelCardVersion.actor, ModelCardVersion.content).where(
            ModelCardVersion.card_id == card.id).order_by(ModelCardVersion.version)):
        if content != previous:
            authors[actor] = None
        previous = content
    return list(authors)


def _may_edit_card(session: Session, card: ModelCardRecord, actor: Principal, what: str) -> None:
    """A card's content (and the version it documents) is its creator's to write, or an admin's: a version's
    model card is what it reports about itself. Reviewers change its status only."""
    if actor.role == Role.admin or actor.key_pk == card.created_by_key:
        return
    creator = auth.key_by_pk(session, card.created_by_key)
    if creator is not None and auth.same_person(actor.owner, creator.owner):
        return
    raise Forbidden(f"only the creator of model card {card.name!r} ({card.created_by}) or an admin may change its "
                    f"{what}", fix="ask the creator or an admin; approvers review it by changing its status")


def _documented_id(session: Session, documents: tuple[str, int]) -> str | None:
    """The version row a card's content names (None if it names no existing version: `_document` then says so)."""
    try:
        return get_version(session, *documents)[1].id
    except NotFound:
        return None


def _document(session: Session, card: ModelCardRecord, documents: tuple[str, int] | None, actor: Principal) -> None:
    """Point the card at the model version it documents (at most one card per version) and mirror it there."""
    if documents is not None:
        group, v = get_version(session, *documents)
        other = session.scalar(select(ModelCardRecord.name).where(ModelCardRecord.version_id == v.id,
                                                                  ModelCardRecord.id != card.id))
        if other is not None:
            raise Conflict(f"{group.name} version {v.version} is already documented by model card {other!r}",
                           fix=f"update {other!r} instead, or point this card at another model package")
        card.version_id = v.id
    elif card.version_id is None:
        return
    row = session.scalar(select(ModelVersion).where(ModelVersion.id == card.version_id))
    if row is None:
        return
    before = row.model_card
    row.model_card = {"status": card.status, "content": card.content,
                      "markdown": (before or {}).get("markdown", "")}
    row.updated_at = utcnow()
    session.flush()
    subject = f"{session.scalar(select(ModelGroup.name).where(ModelGroup.id == row.group_id))}/{row.version}"
    audit.record(session, actor=actor.name, action="version.model_card_changed", subject_type="model_version",
                 subject_id=subject, before={"model_card": before},
                 after={"model_card": row.model_card, "card": card.name, "card_version": card.latest_version})


def _card_state(session: Session, card: ModelCardRecord, actor: Principal, at: dt.datetime) -> None:
    session.add(ModelCardVersion(card_id=card.id, version=card.latest_version, status=card.status,
                                 content=card.content, actor=actor.name, at=at))
    session.flush()


def create_card(session: Session, name: str, status: str, content: dict[str, Any],
                documents: tuple[str, int] | None, actor: Principal) -> ModelCardRecord:
    if session.scalar(select(ModelCardRecord.id).where(ModelCardRecord.name == name)) is not None:
        raise CardExists(name)
    if status == CARD_APPROVED:
        _check_card_approval(session, None, actor, name)
    now = utcnow()
    card = ModelCardRecord(id=new_id(), name=name, status=status, content=content, latest_version=1,
                           created_by=actor.name, created_by_key=actor.key_pk, updated_by=actor.name,
                           created_at=now, updated_at=now)
    session.add(card)
    session.flush()
    _card_state(session, card, actor, now)
    _document(session, card, documents, actor)
    after = {"status": status, "version": 1, "content": content}
    audit.record(session, actor=actor.name, action="model_card.created", subject_type="model_card", subject_id=name,
                 after=after)
    events.emit(session, "model_card.created", name, after)
    return card


def update_card(session: Session, name: str, status: str | None, content: dict[str, Any] | None,
                documents: tuple[str, int] | None, actor: Principal) -> ModelCardRecord:
    """A new version of the card. Archived cards change no more; an Approved card's content changes only with a
    new status (the approval covered the content it was given)."""
    card = get_card(session, name, for_update=True)
    if status is None and content is None:
        raise Invalid("nothing to update", fix="pass Content, ModelCardStatus or both")
    if card.status == CARD_ARCHIVED:
        raise Conflict(f"model card {name!r} is Archived and changes no more",
                       fix="create a new card for further changes")
    if card.status == CARD_APPROVED and content is not None and content != card.content and status in (None,
                                                                                                     CARD_APPROVED):
        raise Invalid(f"model card {name!r} is Approved: its content changes only together with a new status",
                      fix="pass ModelCardStatus Draft or PendingReview with the new Content; an approver approves "
                          "it again")
    if content is not None and content != card.content:
        _may_edit_card(session, card, actor, "content")
        if status == CARD_APPROVED:
            raise Forbidden(f"four-eyes rule: key {actor.name!r} cannot approve model card {name!r} with content it "
                            "writes in the same change", fix="write the content with Draft or PendingReview; an "
                            "approver owned by someone else approves it")
    if documents is not None and _documented_id(session, documents) != card.version_id:
        _may_edit_card(session, card, actor, "model package")   # (the same package, restated, changes nothing)
    if status is not None and status != card.status and actor.role not in DECIDERS:
        _may_edit_card(session, card, actor, "status")
    if status == CARD_APPROVED and card.status != CARD_APPROVED:
        _check_card_approval(session, card, actor, name)
    before = {"status": card.status, "version": card.latest_version}
    now = utcnow()
    card.status = status or card.status
    if content is not None:
        card.content = content
    card.latest_version += 1
    card.updated_by, card.updated_at = actor.name, now
    session.flush()
    _card_state(session, card, actor, now)
    _document(session, card, documents, actor)
    after = {"status": card.status, "version": card.latest_version,
             **({"content": content} if content is not None else {})}
    audit.record(session, actor=actor.name, action="model_card.updated", subject_type="model_card", subject_id=name,
                 before=before, after=after)
    events.emit(session, "model_card.updated", name, after)
    return card


def delete_card(session: Session, name: str, actor: Principal) -> None:
    """Cards in review history stay: an Approved card is archived, not deleted; only its creator or an admin
    deletes one. The version a card documented keeps its last copy of the card."""
    card = get_card(session, name, for_update=True)
    if card.status == CARD_APPROVED:
        raise Conflict(f"model card {name!r} is Approved", fix="archive it (ModelCardStatus Archived) instead")
    approved = session.scalar(select(ModelCardVersion.version).where(
        ModelCardVersion.card_id == card.id, ModelCardVersion.status == CARD_APPROVED).limit(1))
    if approved is not None:   # archiving first must not be the way round it: the reviewed record stays
        raise Conflict(f"model card {name!r} was Approved (version {approved}): a reviewed card is kept, with "
                       "every version", fix="leave it Archived; it changes no more")
    if actor.role != Role.admin and actor.key_pk != card.created_by_key:
        raise Forbidden(f"only the creator of model card {name!r} ({card.created_by}) or an admin may delete it",
                        fix="ask the creator or an admin")
    session.delete(card)
    session.flush()
    audit.record(session, actor=actor.name, action="model_card.deleted", subject_type="model_card", subject_id=name,
                 before={"status": card.status, "version": card.latest_version})
    events.emit(session, "model_card.deleted", name, {"name": name})


def card_order(sort: str) -> tuple[Any, ...]:
    """The ORDER BY of `list_cards` (a keyset page's cursor is a row's values under it)."""
    return sort_order(sort, {"name": ModelCardRecord.name, "created_at": ModelCardRecord.created_at,
                         "updated_at": ModelCardRecord.updated_at}), ModelCardRecord.id


def list_cards(session: Session, *, name_contains: str | None, status: str | None, created_after: dt.datetime | None,
               created_before: dt.datetime | None, sort: str, limit: int, offset: int,
               after: Sequence[Any] | None = None, name: str | None = None,
               documents: tuple[str, int] | None = None, group: str | None = None,
               ) -> tuple[list[ModelCardRecord], int]:
    """``documents``: only the card of that (group, version), if it has one; ``group``: cards of its versions."""
    where = [icontains(ModelCardRecord.name, name_contains),
             *equal((ModelCardRecord.status, status), (ModelCardRecord.name, name)),
             *in_window(ModelCardRecord.created_at, created_after, created_before)]
    for group_name, number in [*([documents] if documents else []), *([(group, None)] if group else [])]:
        versions = select(ModelVersion.id).join(ModelGroup, ModelVersion.group_id == ModelGroup.id).where(
            ModelGroup.name == group_name, *([ModelVersion.version == number] if number is not None else []))
        where.append(ModelCardRecord.version_id.in_(versions))
    return paginate(session, select(ModelCardRecord), *card_order(sort), limit=limit, offset=offset, after=after,
                    where=where)


def list_card_versions(session: Session, name: str, *, status: str | None, created_after: dt.datetime | None,
                       created_before: dt.datetime | None, descending: bool, limit: int, offset: int,
                       ) -> tuple[ModelCardRecord, list[ModelCardVersion], int]:
    card = get_card(session, name)
    column = ModelCardVersion.version
    rows, total = paginate(session, select(ModelCardVersion).where(ModelCardVersion.card_id == card.id),
                           column.desc() if descending else column.asc(), limit=limit, offset=offset,
                           where=[*equal((ModelCardVersion.status, status)),
                                  *in_window(ModelCardVersion.at, created_after, created_before)])
    return card, rows, total
