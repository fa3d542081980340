"""scheduler heartbeats; alerts keyed by (schedule, subject, check)

Revision ID: 0013
Revises: 0012_aws
Create Date: 2026-12-04 09:00:00

- ``workers_heartbeats``: one row per background worker process (the monitoring scheduler, in `mlgov serve` or
  `mlgov scheduler`), so /readyz and the schedules list say whether one is running.
- ``monitor_alerts.subject``: the metric or feature an alert is about. Existing alerts get the subject all of
  their violations share (a feature, a metric, or a bias metric of one facet group); an alert whose violations
  name several subjects (e.g. one ``LessThanThreshold`` alert holding TNR and AUC) keeps an empty subject, which
  the scheduler reads as "the whole check": it stays open while any violation of that check continues and
  resolves when a run passes the check; alerts opened from then on carry one subject each.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = '0013'
down_revision = '0012_aws'
branch_labels = None
depends_on = None


def _subject(violation: dict[str, Any]) -> str:
    """As the monitor kinds name it (monitor.kinds.feature_or_metric, clarify's bias subject), frozen here."""
    if "facet" in violation:
        return f"{violation.get('metric_name', '')} ({violation.get('facet', '')}={violation.get('facet_value', '')})"
    return str(violation.get("feature_name") or violation.get("metric_name") or "")


def upgrade() -> None:
    op.create_table(
        'workers_heartbeats',
        sa.Column('instance', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('interval_s', sa.Float(), nullable=False),
        sa.Column('started_at', mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('beat_at', mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('tick_at', mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('stopped_at', mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('instance', name=op.f('pk_workers_heartbeats')),
    )
    with op.batch_alter_table('workers_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_heartbeats_role'), ['role'], unique=False)
    with op.batch_alter_table('monitor_alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=256), nullable=False, server_default=''))

    alerts = sa.table('monitor_alerts', sa.column('id', sa.String()), sa.column('details', sa.JSON()),
                      sa.column('subject', sa.String()))
    conn = op.get_bind()
    for alert_id, details in conn.execute(sa.select(alerts.c.id, alerts.c.details)).all():
        subjects = {_subject(v)[:256] for v in details or [] if isinstance(v, dict)}
        if len(subjects) == 1 and "" not in subjects:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(subject=subjects.pop()))


def downgrade() -> None:
    with op.batch_alter_table('monitor_alerts', schema=None) as batch_op:
        batch_op.drop_column('subject')
    with op.batch_alter_table('workers_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workers_heartbeats_role'))
    op.drop_table('workers_heartbeats')
