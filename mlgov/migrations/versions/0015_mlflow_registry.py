"""MLflow registry door: aliases with history, run ids, unverified artifacts, MLflow-format webhooks

Revision ID: 0015_mlflow
Revises: 0014_version_lineage

- ``registry_aliases`` (one row per group and alias) and ``registry_alias_moves`` (every change, so what an
  alias pointed at, at time T, stays answerable); ``registry_model_groups.governed_aliases`` (null: the default
  ``champion`` and ``production``).
- ``registry_model_versions.run_id`` / ``run_link``: the training run a version came from (MLflow's fields).
- ``registry_model_versions.artifact_sha256`` becomes nullable: a version registered through MLflow from a
  source mlgov cannot read has no hash (unverified). Existing rows all have one. Downgrade refuses while such
  versions exist (it cannot invent a hash): delete or re-register them first.
- ``events_webhooks.wire_format`` (``mlgov`` for every existing row) and ``name``: subscriptions made through
  MLflow's webhook API are delivered in MLflow's format and signature.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_mlflow'
down_revision = '0014_version_lineage'
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('registry_model_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('governed_aliases', sa.JSON(), nullable=True))
    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_id', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('run_link', sa.String(length=2048), nullable=True))
        batch_op.alter_column('artifact_sha256', existing_type=sa.String(length=64), nullable=True)
        batch_op.create_index(batch_op.f('ix_registry_model_versions_run_id'), ['run_id'], unique=False)
    op.create_table(
        'registry_aliases',
        sa.Column('group_id', sa.String(length=32), nullable=False),
        sa.Column('alias', sa.String(length=255), nullable=False),
        sa.Column('version_id', sa.String(length=32), nullable=False),
        sa.Column('set_by', sa.String(length=128), nullable=False),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['registry_model_groups.id'],
                                name=op.f('fk_registry_aliases_group_id_registry_model_groups'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['version_id'], ['registry_model_versions.id'],
                                name=op.f('fk_registry_aliases_version_id_registry_model_versions'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'alias', name=op.f('pk_registry_aliases')),
    )
    with op.batch_alter_table('registry_aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registry_aliases_version_id'), ['version_id'], unique=False)
    op.create_table(
        'registry_alias_moves',
        sa.Column('id', BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column('group_id', sa.String(length=32), nullable=False),
        sa.Column('alias', sa.String(length=255), nullable=False),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=128), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['registry_model_groups.id'],
                                name=op.f('fk_registry_alias_moves_group_id_registry_model_groups'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_alias_moves')),
    )
    with op.batch_alter_table('registry_alias_moves', schema=None) as batch_op:
        batch_op.create_index('ix_registry_alias_moves_group_alias_at', ['group_id', 'alias', 'at'], unique=False)
    with op.batch_alter_table('events_webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wire_format', sa.String(length=16), nullable=False, server_default='mlgov'))
        batch_op.add_column(sa.Column('name', sa.String(length=256), nullable=True))


def downgrade() -> None:
    unverified = op.get_bind().execute(
        sa.text("SELECT COUNT(*) FROM registry_model_versions WHERE artifact_sha256 IS NULL")).scalar_one()
    if unverified:
        raise RuntimeError(f"{unverified} model version(s) have no artifact sha256 (registered through MLflow from "
                           "a source mlgov could not read); revision 0011 requires one. Delete or re-register them "
                           "with a sha256, then downgrade again.")
    op.execute(sa.text("UPDATE events_webhooks SET active = :off WHERE wire_format <> 'mlgov'").bindparams(off=False))
    with op.batch_alter_table('events_webhooks', schema=None) as batch_op:
        batch_op.drop_column('name')
        batch_op.drop_column('wire_format')
    with op.batch_alter_table('registry_alias_moves', schema=None) as batch_op:
        batch_op.drop_index('ix_registry_alias_moves_group_alias_at')
    op.drop_table('registry_alias_moves')
    with op.batch_alter_table('registry_aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registry_aliases_version_id'))
    op.drop_table('registry_aliases')
    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registry_model_versions_run_id'))
        batch_op.alter_column('artifact_sha256', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('run_link')
        batch_op.drop_column('run_id')
    with op.batch_alter_table('registry_model_groups', schema=None) as batch_op:
        batch_op.drop_column('governed_aliases')
