"""outbound webhooks: ordered deliveries, redelivery budget, encrypted secrets

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:30:00

- ``events_deliveries.sequence``: per-subscription number, unique per webhook; null until the dispatcher
  numbers a new delivery. Existing rows are numbered in creation order (created_at, id), and
  ``events_webhooks.last_sequence`` continues from the highest.
- ``events_deliveries.attempt_base``: attempts made before the latest redelivery of a dead letter.
- ``events_webhooks.secret`` becomes TEXT: an encrypted secret (``enc:v1:`` + Fernet token) is longer
  than the 256 characters a plaintext one was allowed.

Existing plaintext secrets are NOT encrypted here, on purpose: the key lives outside the database
(``MLGOV_SECRETS_KEY`` or ``secrets.key`` under ``MLGOV_HOME``) and is often absent where migrations run
(a Helm pre-upgrade Job, another host); encrypting with a key the server then does not have would make
every webhook undeliverable. Instead the stored form carries a marker prefix: rows without ``enc:v1:``
are legacy plaintext, still readable, and the server re-encrypts each one the first time it uses it
(mlgov.secrets, mlgov.events._claim). Downgrade cannot turn encrypted secrets back into plaintext (no key
here either), and they do not fit the old column: those webhooks are deactivated and their secret blanked;
re-create them after a downgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events_webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sequence', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.alter_column('secret', existing_type=sa.String(length=256), type_=sa.Text(),
                              existing_nullable=False)
    with op.batch_alter_table('events_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sequence', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('attempt_base', sa.Integer(), nullable=False, server_default='0'))

    # number existing deliveries per webhook in creation order (portable: a correlated count, no window functions)
    op.execute(sa.text(
        "UPDATE events_deliveries SET sequence = (SELECT COUNT(*) FROM events_deliveries e "
        "WHERE e.webhook_id = events_deliveries.webhook_id AND (e.created_at < events_deliveries.created_at "
        "OR (e.created_at = events_deliveries.created_at AND e.id <= events_deliveries.id)))"))
    op.execute(sa.text(
        "UPDATE events_webhooks SET last_sequence = COALESCE((SELECT MAX(d.sequence) FROM events_deliveries d "
        "WHERE d.webhook_id = events_webhooks.id), 0)"))

    with op.batch_alter_table('events_deliveries', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_events_deliveries_webhook_id_sequence'), ['webhook_id', 'sequence'])


def downgrade() -> None:
    op.execute(sa.text("UPDATE events_webhooks SET active = :off, secret = 'unavailable-after-downgrade' "
                       "WHERE secret LIKE 'enc:v1:%'").bindparams(off=False))
    with op.batch_alter_table('events_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_events_deliveries_webhook_id_sequence'), type_='unique')
        batch_op.drop_column('attempt_base')
        batch_op.drop_column('sequence')
    with op.batch_alter_table('events_webhooks', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.Text(), type_=sa.String(length=256),
                              existing_nullable=False)
        batch_op.drop_column('last_sequence')
