"""Webhook URLs are stored encrypted; the database keeps only their masked form in plaintext

Revision ID: 0027_webhook_url_sealed
Revises: 0026_webhooks_updated_at

A webhook URL often carries a token (``?token=…``, ``user:password@``). Reads already masked it, but the column
held it in plaintext, so a copy of the database handed it out. ``sealed_url`` now holds the URL encrypted with
the secrets key (``enc:v1:…``) and ``url`` only the masked form every read shows. This migration cannot encrypt
(the key may live only in the server's environment, as for migration 0011's secrets): it moves each URL to
``sealed_url`` as legacy plaintext, which the server encrypts when it starts (``seal_legacy_secrets``) and
``mlgov secrets rotate`` encrypts too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mlgov.outbound import masked_url

revision = '0027_webhook_url_sealed'
down_revision = '0026_webhooks_updated_at'
branch_labels = None
depends_on = None

_hooks = sa.table('events_webhooks', sa.column('id', sa.String), sa.column('url', sa.Text),
                  sa.column('sealed_url', sa.Text))


def upgrade() -> None:
    with op.batch_alter_table('events_webhooks') as batch:
        batch.add_column(sa.Column('sealed_url', sa.Text(), nullable=True))
        # the masked form can be longer than the URL (a one-character value becomes ***)
        batch.alter_column('url', existing_type=sa.String(2048), type_=sa.Text(), existing_nullable=False)
    conn = op.get_bind()
    for hook_id, url in conn.execute(sa.select(_hooks.c.id, _hooks.c.url)).all():
        conn.execute(_hooks.update().where(_hooks.c.id == hook_id).values(sealed_url=url, url=masked_url(url)))
    with op.batch_alter_table('events_webhooks') as batch:
        batch.alter_column('sealed_url', existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    conn = op.get_bind()
    sealed = conn.execute(sa.select(sa.func.count()).select_from(_hooks)
                          .where(_hooks.c.sealed_url.like('enc:%'))).scalar_one()
    if sealed:
        raise RuntimeError(f"{sealed} webhook URL(s) are encrypted and revision 0026 stores URLs in plaintext; "
                           "delete those webhooks (and subscribe them again after the downgrade) first")
    conn.execute(_hooks.update().values(url=_hooks.c.sealed_url))
    with op.batch_alter_table('events_webhooks') as batch:
        batch.drop_column('sealed_url')
        batch.alter_column('url', existing_type=sa.Text(), type_=sa.String(2048), existing_nullable=False)
