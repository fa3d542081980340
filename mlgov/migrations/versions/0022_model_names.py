"""Model group names up to 256 characters (MLflow's registered-model names), where a group's name is stored

Revision ID: 0022_model_names
Revises: 0021_capture_inference_index

MLflow names models freely (``fraud_model``, ``team.churn``: anything but ``/`` and ``:``, up to its 256-character
column), so the MLflow API needs more than SageMaker's 63 letters, digits and hyphens. The downgrade narrows the
columns back and fails if a longer name was stored since, rather than cut names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022_model_names'
down_revision = '0021_capture_inference_index'
branch_labels = None
depends_on = None

# (table, column, nullable) of every column that holds a model group's name
COLUMNS = (
    ('registry_model_groups', 'name', False),
    ('monitor_version_baselines', 'model_group', False),
    ('monitor_endpoints', 'model_group', False),
    ('monitor_alerts', 'model_group', True),
    ('monitor_retraining_triggers', 'model_group', False),
)


def _widths(old: int, new: int) -> None:
    for table, column, nullable in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=old), type_=sa.String(length=new),
                                  existing_nullable=nullable)


def upgrade() -> None:
    _widths(63, 256)


def downgrade() -> None:
    _widths(256, 63)
