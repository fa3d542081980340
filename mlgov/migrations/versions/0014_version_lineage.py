"""lineage: every model version is its own node that uses the model artifact

Revision ID: 0014_version_lineage
Revises: 0013

Before, a version's lineage hung off the model artifact, keyed by URI + sha256, so two versions shipping the same
file were one node: v2's training data, approvals and deployments showed up under v1. Now each version is an
artifact of type ``ModelPackage`` at ``mlgov://model-groups/<group>/versions/<n>`` (SageMaker's model package
artifact) that the model artifact ContributedTo.

Existing rows: a version node is created for every registered version (and the model artifact if lineage never
recorded it), and what mlgov recorded against the model artifact moves to the version it belongs to:
- approvals and stage moves (keys ``approval:<version id>:``, ``stage:<version id>:``), retraining runs
  (``retraining:<alert>:<version id>``) and deployments (``deployment:<endpoint>:<group>/<n>``) name their version;
- the training job goes to every version whose registration names that job (the key is recomputed from each
  version's ``training_job``, as registration builds it); the model-group context to the artifact's versions in
  that group;
- baselines and Clarify reports (other artifacts mlgov recorded) go to the artifact's only version; when several
  versions share the artifact, to the one their records name: a report's name starts with ``<group>/<n> ``, a
  baseline is attached to a version (``monitor_version_baselines``) or explains one (its settings).
What cannot be attributed stays on the model artifact, upstream of every version that uses it, as before: an
association a user recorded against the artifact (it is about the file), DerivedFrom links between content versions
of one URI, and a baseline of a shared artifact that no record ties to one version. The model artifact loses the
name and the ``model_group``/``version`` properties of the first version that registered it.

Downgrade folds each version node back into its model artifact (the shape before; shared artifacts merge again).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0014_version_lineage'
down_revision = '0013'
branch_labels = None
depends_on = None

PREFIX = "mlgov://model-groups/"

ent = sa.table('lineage_entities', sa.column('id', sa.String), sa.column('kind', sa.String),
               sa.column('type', sa.String), sa.column('name', sa.String), sa.column('identity', sa.String),
               sa.column('uri', sa.String), sa.column('sha256', sa.String), sa.column('properties', sa.JSON),
               sa.column('created_by', sa.String), sa.column('creator_owner', sa.String),
               sa.column('system', sa.Boolean), sa.column('created_at', sa.DateTime),
               sa.column('updated_at', sa.DateTime))
edge = sa.table('lineage_edges', sa.column('id', sa.String), sa.column('source_id', sa.String),
                sa.column('target_id', sa.String), sa.column('type', sa.String), sa.column('properties', sa.JSON),
                sa.column('created_by', sa.String), sa.column('creator_owner', sa.String),
                sa.column('system', sa.Boolean), sa.column('created_at', sa.DateTime))
versions_t = sa.table('registry_model_versions', sa.column('id', sa.String), sa.column('group_id', sa.String),
                      sa.column('version', sa.Integer), sa.column('artifact_uri', sa.String),
                      sa.column('artifact_sha256', sa.String), sa.column('training_job', sa.JSON),
                      sa.column('registered_by', sa.String), sa.column('created_at', sa.DateTime))
groups_t = sa.table('registry_model_groups', sa.column('id', sa.String), sa.column('name', sa.String))
attached_t = sa.table('monitor_version_baselines', sa.column('baseline_id', sa.String),
                      sa.column('model_group', sa.String), sa.column('model_version', sa.Integer))
baselines_t = sa.table('monitor_baselines', sa.column('id', sa.String), sa.column('settings', sa.JSON))


class Version:
    def __init__(self, row: Any) -> None:
        self.id, self.number, self.group = row.id, row.version, row.group
        self.ref = f"{row.group}/{row.version}"
        job = row.training_job or {}
        self.job_key = f"training-job:{job.get('uri') or job.get('name') or f'{self.ref}/training'}"
        self.uri, self.sha = row.artifact_uri, (row.artifact_sha256 or "").lower() or None
        self.by, self.at = row.registered_by, row.created_at
        self.node = ""


def _new_id() -> str:
    return uuid.uuid4().hex


def _ensure(conn: sa.Connection, *, type_: str, uri: str, sha: str | None, name: str | None,
            properties: dict[str, Any], by: str, at: Any) -> str:
    identity = f"{uri}#{sha or ''}"
    found = conn.execute(sa.select(ent.c.id).where(ent.c.kind == 'artifact', ent.c.identity == identity)).scalar()
    if found is not None:
        conn.execute(ent.update().where(ent.c.id == found).values(system=True))
        return str(found)
    new = _new_id()
    conn.execute(ent.insert().values(id=new, kind='artifact', type=type_, name=name, identity=identity, uri=uri,
                                     sha256=sha, properties=properties, created_by=by, creator_owner=by, system=True,
                                     created_at=at, updated_at=at))
    return new


def _baseline_versions(conn: sa.Connection) -> dict[str, set[str]]:
    """Baseline id → the versions (``group/n``) it is attached to or explains."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(sa.select(attached_t.c.baseline_id, attached_t.c.model_group, attached_t.c.model_version)):
        out[row.baseline_id].add(f"{row.model_group}/{row.model_version}")
    for bid, settings in conn.execute(sa.select(baselines_t.c.id, baselines_t.c.settings)):
        s = settings if isinstance(settings, dict) else {}
        if s.get("model_group") and s.get("model_version") is not None:
            out[bid].add(f"{s['model_group']}/{s['model_version']}")
    return out


def _owners(e: Any, using: list[Version], baselines: dict[str, set[str]]) -> list[Version]:
    """The versions of the model artifact that association ``e`` (joined with its other end, ``o_*``) belongs to;
    [] keeps it on the artifact."""
    ident = e.o_identity or ""
    if not e.system:   # what a user recorded against the artifact is about the file
        return []
    if e.o_kind == 'action':
        if ident.startswith(("approval:", "stage:")):
            return [v for v in using if v.id == ident.split(":")[1]]
        if ident.startswith("retraining:"):
            return [v for v in using if v.id == ident.rsplit(":", 1)[1]]
        if ident.startswith("deployment:"):
            return [v for v in using if v.ref == ident.rsplit(":", 1)[1]]
        return [v for v in using if v.job_key == ident]
    if e.o_kind == 'context':
        return [v for v in using if ident == f"model-group:{v.group}"]
    if not e.o_system or e.o_type == 'Model' or e.type == 'DerivedFrom':
        return []
    if len(using) == 1:
        return using
    props = e.o_properties if isinstance(e.o_properties, dict) else {}
    attached = baselines.get(str(props.get("baseline_id") or ""), set())
    return [v for v in using if (e.o_name or "").startswith(f"{v.ref} ") or v.ref in attached]


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(versions_t.c.id, versions_t.c.version, versions_t.c.artifact_uri, versions_t.c.artifact_sha256,
                  versions_t.c.training_job, versions_t.c.registered_by, versions_t.c.created_at,
                  groups_t.c.name.label('group'))
        .join(groups_t, groups_t.c.id == versions_t.c.group_id)
        .order_by(versions_t.c.created_at, versions_t.c.id)).all()
    by_model: dict[str, list[Version]] = defaultdict(list)
    for row in rows:
        v = Version(row)
        v.node = _ensure(conn, type_='ModelPackage', uri=f"{PREFIX}{v.group}/versions/{v.number}", sha=None,
                         name=v.ref, properties={"model_group": v.group, "version": v.number}, by=v.by, at=v.at)
        by_model[_ensure(conn, type_='Model', uri=v.uri, sha=v.sha, name=None, properties={}, by=v.by,
                         at=v.at)].append(v)
    baselines = _baseline_versions(conn) if by_model else {}
    node = sa.select(ent.c.id).where(ent.c.kind == 'artifact', ent.c.identity.like(f"{PREFIX}%"))
    taken = {(r.source_id, r.target_id, r.type) for r in conn.execute(
        sa.select(edge.c.source_id, edge.c.target_id, edge.c.type)
        .where(edge.c.source_id.in_(node) | edge.c.target_id.in_(node)))}
    o = ent.alias('o')
    for model, using in by_model.items():
        linked = conn.execute(
            sa.select(edge, o.c.kind.label('o_kind'), o.c.type.label('o_type'), o.c.name.label('o_name'),
                      o.c.identity.label('o_identity'), o.c.system.label('o_system'),
                      o.c.properties.label('o_properties'))
            .select_from(edge.join(o, sa.or_(sa.and_(edge.c.source_id == model, o.c.id == edge.c.target_id),
                                             sa.and_(edge.c.target_id == model, o.c.id == edge.c.source_id))))
        ).all()
        for e in linked:
            owners = _owners(e, using, baselines)
            if not owners:
                continue
            moved = False
            for v in owners:
                src, dst = (v.node, e.target_id) if e.source_id == model else (e.source_id, v.node)
                if (src, dst, e.type) in taken:
                    continue
                taken.add((src, dst, e.type))
                if not moved:
                    conn.execute(edge.update().where(edge.c.id == e.id).values(source_id=src, target_id=dst))
                    moved = True
                else:
                    conn.execute(edge.insert().values(
                        id=_new_id(), source_id=src, target_id=dst, type=e.type, properties=e.properties,
                        created_by=e.created_by, creator_owner=e.creator_owner, system=e.system,
                        created_at=e.created_at))
            if not moved:   # every owner already had it
                conn.execute(edge.delete().where(edge.c.id == e.id))
        for v in using:
            if (model, v.node, 'ContributedTo') not in taken:
                taken.add((model, v.node, 'ContributedTo'))
                conn.execute(edge.insert().values(id=_new_id(), source_id=model, target_id=v.node,
                                                  type='ContributedTo', properties={}, created_by=v.by,
                                                  creator_owner=v.by, system=True, created_at=v.at))
        props = conn.execute(sa.select(ent.c.properties).where(ent.c.id == model)).scalar() or {}
        conn.execute(ent.update().where(ent.c.id == model, ent.c.type == 'Model').values(
            name=None, properties={k: val for k, val in props.items() if k not in ("model_group", "version")}))


def downgrade() -> None:
    conn = op.get_bind()
    nodes = conn.execute(sa.select(ent.c.id, ent.c.name, ent.c.properties)
                         .where(ent.c.kind == 'artifact', ent.c.type == 'ModelPackage',
                                ent.c.identity.like(f"{PREFIX}%"))
                         .order_by(ent.c.created_at.desc(), ent.c.id.desc())).all()
    for node in nodes:   # newest first, so each artifact ends up named after its first version
        model = conn.execute(sa.select(edge.c.source_id)
                             .select_from(edge.join(ent, ent.c.id == edge.c.source_id))
                             .where(edge.c.target_id == node.id, edge.c.type == 'ContributedTo',
                                    ent.c.type == 'Model')).scalar()
        if model is not None:
            conn.execute(edge.delete().where(edge.c.source_id == model, edge.c.target_id == node.id))
            for e in conn.execute(sa.select(edge).where((edge.c.source_id == node.id)
                                                        | (edge.c.target_id == node.id))).all():
                src = model if e.source_id == node.id else e.source_id
                dst = model if e.target_id == node.id else e.target_id
                clash = conn.execute(sa.select(edge.c.id).where(edge.c.source_id == src, edge.c.target_id == dst,
                                                                edge.c.type == e.type)).scalar()
                if clash is None:
                    conn.execute(edge.update().where(edge.c.id == e.id).values(source_id=src, target_id=dst))
            props = conn.execute(sa.select(ent.c.properties).where(ent.c.id == model)).scalar() or {}
            conn.execute(ent.update().where(ent.c.id == model).values(
                name=node.name, properties={**props, **(node.properties or {})}))
        conn.execute(edge.delete().where((edge.c.source_id == node.id) | (edge.c.target_id == node.id)))
        conn.execute(ent.delete().where(ent.c.id == node.id))
