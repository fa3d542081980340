"""The capture events' inferenceId index: led by inference_id, over rows that have one

Revision ID: 0021_capture_inference_index
Revises: 0020_lineage_list_order

- ``ix_monitor_capture_events_inference`` becomes (inference_id, endpoint_id) WHERE inference_id IS NOT NULL.
  As (endpoint_id, inference_id), PostgreSQL chose it for the duplicate check's per-event probe (endpoint_id = $1
  AND event_id = id) whenever the statistics said the table was tiny (a new deployment or endpoint, until
  autovacuum's next analyze): each probe then walked every event of the endpoint (measured: a batch of 500 took
  1.3 s after 2,500 single-record captures; the unique (endpoint_id, event_id) index answers it in 1.5-2 ms).
  Led by inference_id and partial, it serves only a condition on inference_id, so the unique index is the only
  one an event-id probe can use; the inferenceId probe compares endpoint_id in a form no index uses
  (`present_keys(scope_leads=False)`), so it cannot pick the unique index by its endpoint_id prefix either.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021_capture_inference_index'
down_revision = '0020_lineage_list_order'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('monitor_capture_events', schema=None) as batch_op:
        batch_op.drop_index('ix_monitor_capture_events_inference')
        batch_op.create_index('ix_monitor_capture_events_inference', ['inference_id', 'endpoint_id'], unique=False,
                              postgresql_where=sa.text('inference_id IS NOT NULL'),
                              sqlite_where=sa.text('inference_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('monitor_capture_events', schema=None) as batch_op:
        batch_op.drop_index('ix_monitor_capture_events_inference')
        batch_op.create_index('ix_monitor_capture_events_inference', ['endpoint_id', 'inference_id'], unique=False)
