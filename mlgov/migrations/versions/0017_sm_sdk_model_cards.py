"""Named, versioned model cards (SageMaker's Create/Describe/Update/Delete/List ModelCard(s), ListModelCardVersions)

Revision ID: 0017_sm_sdk
Revises: 0016_sm_monitor

- ``registry_model_cards``: one row per named card (current status and content, the model version it documents,
  if any: unique, so a version has at most one named card).
- ``registry_model_card_versions``: every state of every card (content, status, who, when).
Existing per-version cards (``registry_model_versions.model_card``) are left as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017_sm_sdk'
down_revision = '0016_sm_monitor'
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'registry_model_cards',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('content', sa.JSON(), nullable=False),
        sa.Column('latest_version', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.String(length=32), nullable=True),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_by_key', sa.String(length=32), nullable=False),
        sa.Column('updated_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['registry_model_versions.id'],
                                name=op.f('fk_registry_model_cards_version_id_registry_model_versions'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_model_cards')),
        sa.UniqueConstraint('name', name=op.f('uq_registry_model_cards_name')),
        sa.UniqueConstraint('version_id', name=op.f('uq_registry_model_cards_version_id')),
    )
    with op.batch_alter_table('registry_model_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registry_model_cards_created_at'), ['created_at'], unique=False)
    op.create_table(
        'registry_model_card_versions',
        sa.Column('id', BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column('card_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('content', sa.JSON(), nullable=False),
        sa.Column('actor', sa.String(length=128), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['card_id'], ['registry_model_cards.id'],
                                name=op.f('fk_registry_model_card_versions_card_id_registry_model_cards'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_model_card_versions')),
        sa.UniqueConstraint('card_id', 'version', name=op.f('uq_registry_model_card_versions_card_id_version')),
    )


def downgrade() -> None:
    op.drop_table('registry_model_card_versions')
    with op.batch_alter_table('registry_model_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registry_model_cards_created_at'))
    op.drop_table('registry_model_cards')
