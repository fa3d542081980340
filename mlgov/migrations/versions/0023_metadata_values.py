"""Version metadata (MLflow's version tags) keeps keys up to 250 and values up to 5,000 characters

Revision ID: 0023_metadata_values
Revises: 0022_model_names

SageMaker's 128/256 limits refused the tags MLflow users keep (JSON, signatures, notes: MLflow's keys go to 250
characters and its values further). The (key, value) index becomes (key, substr(value, 1, 200)): a whole long
value would pass PostgreSQL's btree entry limit, and equality filters compare the prefix too, so they still
probe it. The downgrade fails if a longer key or value was stored since, rather than cut them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023_metadata_values'
down_revision = '0022_model_names'
branch_labels = None
depends_on = None

INDEX = 'ix_registry_version_metadata_kv'


def upgrade() -> None:
    with op.batch_alter_table('registry_version_metadata', schema=None) as batch_op:
        batch_op.drop_index(INDEX)
        batch_op.alter_column('key', existing_type=sa.String(length=128), type_=sa.String(length=250),
                              existing_nullable=False)
        batch_op.alter_column('value', existing_type=sa.String(length=256), type_=sa.Text(),
                              existing_nullable=False)
    op.create_index(INDEX, 'registry_version_metadata', ['key', sa.text('substr(value, 1, 200)')], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name='registry_version_metadata')
    with op.batch_alter_table('registry_version_metadata', schema=None) as batch_op:
        batch_op.alter_column('value', existing_type=sa.Text(), type_=sa.String(length=256), existing_nullable=False)
        batch_op.alter_column('key', existing_type=sa.String(length=250), type_=sa.String(length=128),
                              existing_nullable=False)
        batch_op.create_index(INDEX, ['key', 'value'], unique=False)
