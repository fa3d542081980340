"""Lineage lists in creation order by index

Revision ID: 0020_lineage_list_order
Revises: 0019_console

- ``ix_lineage_entities_kind_created`` (kind, created_at, id): the order every artifact/action/context list pages
  in. Without it a page of one kind was a scan and top-N sort of all its entities (136 ms for the first artifact
  page at 175k artifacts on PostgreSQL); with it, the page reads its rows off the index.
"""

from __future__ import annotations

from alembic import op

revision = '0020_lineage_list_order'
down_revision = '0019_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lineage_entities', schema=None) as batch_op:
        batch_op.create_index('ix_lineage_entities_kind_created', ['kind', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lineage_entities', schema=None) as batch_op:
        batch_op.drop_index('ix_lineage_entities_kind_created')
