"""Webhooks remember when they were last changed (MLflow's last_updated_timestamp)

Revision ID: 0026_webhooks_updated_at
Revises: 0025_alert_rules_checked

MLflow's webhook API answers ``last_updated_timestamp`` and sets it on every update; mlgov answered the
creation time there, so a client watching for changes saw none. Existing rows start at their creation time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = '0026_webhooks_updated_at'
down_revision = '0025_alert_rules_checked'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events_webhooks') as batch:
        batch.add_column(sa.Column('updated_at', mlgov.db.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE events_webhooks SET updated_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table('events_webhooks') as batch:
        batch.drop_column('updated_at')
