"""Versions indexed by (group, last update, version): MLflow's default order for a model's versions

Revision ID: 0024_versions_by_update
Revises: 0023_metadata_values

MLflow's server answers a version search without order_by newest update first; with this index a search of one
model's versions in that order reads the page from the index instead of sorting every version of the model.
"""

from __future__ import annotations

from alembic import op

revision = '0024_versions_by_update'
down_revision = '0023_metadata_values'
branch_labels = None
depends_on = None

INDEX = 'ix_registry_model_versions_group_updated'


def upgrade() -> None:
    op.create_index(INDEX, 'registry_model_versions', ['group_id', 'updated_at', 'version'], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name='registry_model_versions')
