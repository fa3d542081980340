"""A schedule remembers up to when it has read its GroundTruthS3Input folder

Revision ID: 0029_schedule_labels_read
Revises: 0028_group_reading_key

A run read the label files written to its job definition's GroundTruthS3Input since its own window began. Files
written while the schedule was stopped (or while its runs were late) came before the next run's window and were
never read, and a long window re-read every file of it on each run. ``labels_read_through`` is where the next
import starts (the time the last listing began, less a margin for uploads still under way then);
``labels_folder`` is the folder it was read from: after the definition names another folder, that one is read
from the run's window start again. Existing schedules start with neither (their next run reads as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = '0029_schedule_labels_read'
down_revision = '0028_group_reading_key'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('monitor_schedules') as batch:
        batch.add_column(sa.Column('labels_folder', sa.String(2048), nullable=True))
        batch.add_column(sa.Column('labels_read_through', mlgov.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('monitor_schedules') as batch:
        batch.drop_column('labels_read_through')
        batch.drop_column('labels_folder')
