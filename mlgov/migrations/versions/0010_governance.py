"""governance: key owners and creators, keyed audit chain, evidence records, protected lineage

Revision ID: 0010
Revises: 0009

Existing rows:
- API keys: ``owner`` = the key's name (what four-eyes compared before), ``created_by`` = "(before 0010)".
- Audit events keep ``chain = 1`` (their plain SHA-256 hashes); new events are HMAC-keyed (``chain = 2``).
  The first checkpoint written after the upgrade (``mlgov serve`` writes one at start, or run
  ``mlgov audit checkpoint``) records where the legacy prefix ends; ``verify`` accepts legacy rows only up to it.
- Lineage: rows mlgov recorded itself are marked ``system`` by what recorded them: governance actions
  (approval:, stage:, alert:, deployment:, training-job:, retraining: keys), model-group and endpoint contexts,
  Model and Baseline artifacts and the datasets a registration's training job consumed; an association is
  system when both its ends are. ``creator_owner`` = ``created_by`` (key names were the owners).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SYSTEM_ACTIONS = ("approval:%", "stage:%", "alert:%", "deployment:%", "training-job:%", "retraining:%")
SYSTEM_CONTEXTS = ("model-group:%", "endpoint:%")


def upgrade() -> None:
    with op.batch_alter_table('auth_api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('created_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('created_by_key', sa.String(length=32), nullable=True))
    op.execute("UPDATE auth_api_keys SET owner = name, created_by = '(before 0010)'")
    with op.batch_alter_table('auth_api_keys', schema=None) as batch_op:
        batch_op.alter_column('owner', existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column('created_by', existing_type=sa.String(length=128), nullable=False)
        batch_op.create_index(batch_op.f('ix_auth_api_keys_owner'), ['owner'], unique=False)

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.Integer(), server_default='1', nullable=False))
        batch_op.create_index('ix_audit_events_chain_seq', ['chain', 'seq'], unique=False)

    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('evidence', sa.JSON(), nullable=True))
    with op.batch_alter_table('registry_approval_decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_owner', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('actor_key', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('policy_overridden', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('evidence', sa.JSON(), nullable=True))
    op.execute("UPDATE registry_approval_decisions SET actor_owner = actor")

    for table in ('lineage_entities', 'lineage_edges'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('creator_owner', sa.String(length=128), nullable=True))
            batch_op.add_column(sa.Column('system', sa.Boolean(), server_default='0', nullable=False))
    ent = sa.table('lineage_entities', sa.column('id', sa.String), sa.column('kind', sa.String),
                   sa.column('type', sa.String), sa.column('identity', sa.String), sa.column('system', sa.Boolean),
                   sa.column('created_by', sa.String), sa.column('creator_owner', sa.String))
    edge = sa.table('lineage_edges', sa.column('source_id', sa.String), sa.column('target_id', sa.String),
                    sa.column('system', sa.Boolean), sa.column('created_by', sa.String),
                    sa.column('creator_owner', sa.String))
    op.execute(ent.update().values(creator_owner=ent.c.created_by))
    op.execute(edge.update().values(creator_owner=edge.c.created_by))
    op.execute(ent.update().where(sa.or_(
        sa.and_(ent.c.kind == 'action', sa.or_(*[ent.c.identity.like(p) for p in SYSTEM_ACTIONS])),
        sa.and_(ent.c.kind == 'context', sa.or_(*[ent.c.identity.like(p) for p in SYSTEM_CONTEXTS])),
        sa.and_(ent.c.kind == 'artifact', ent.c.type.in_(['Model', 'Baseline'])),
    )).values(system=True))
    job = ent.alias('job')
    trained_on = (sa.select(edge.c.source_id).select_from(edge.join(job, job.c.id == edge.c.target_id))
                  .where(job.c.kind == 'action', job.c.identity.like('training-job:%')))
    op.execute(ent.update().where(ent.c.kind == 'artifact', ent.c.type == 'Dataset', ent.c.id.in_(trained_on))
               .values(system=True))
    recorded = sa.select(ent.c.id).where(ent.c.system.is_(True))
    op.execute(edge.update().where(edge.c.source_id.in_(recorded), edge.c.target_id.in_(recorded))
               .values(system=True))


def downgrade() -> None:
    for table in ('lineage_edges', 'lineage_entities'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('system')
            batch_op.drop_column('creator_owner')
    with op.batch_alter_table('registry_approval_decisions', schema=None) as batch_op:
        batch_op.drop_column('evidence')
        batch_op.drop_column('policy_overridden')
        batch_op.drop_column('actor_key')
        batch_op.drop_column('actor_owner')
    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.drop_column('evidence')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_chain_seq')
        batch_op.drop_column('chain')
    with op.batch_alter_table('auth_api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_api_keys_owner'))
        batch_op.drop_column('created_by_key')
        batch_op.drop_column('created_by')
        batch_op.drop_column('owner')
