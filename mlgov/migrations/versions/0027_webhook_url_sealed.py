"""Webhook URLs are stored encrypted; the database keeps only their masked form in plaintext

Revision ID: 0027_webhook_url_sealed
Revises: 0026_webhooks_updated_at

A webhook URL often carries a token (``?token=…``, ``user:password@``). Reads already masked it, but the column
held it in plaintext, so a copy of the database handed it out. ``sealed_url`` now holds the URL encrypted with
the secrets key (``enc:v1:…``) and ``url`` only the masked form every read shows. This migration cannot encrypt
(the key may live only in the server's environment, as for migration 0011's secrets): it moves each URL to
``sealed_url`` as legacy plaintext, which the server encrypts when it starts (``seal_legacy_secrets``) and
``mlgov secrets rotate`` encrypts too.

Downgrade, like 0011's, cannot decrypt: a subscription whose URL is encrypted keeps its masked URL and is
deactivated (subscribe it again after the downgrade); plaintext ones get their URL back.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa
from alembic import op

revision = '0027_webhook_url_sealed'
down_revision = '0026_webhooks_updated_at'
branch_labels = None
depends_on = None

def _masked(url: str) -> str:
    """The URL with its password and query values as ``***``, as ``mlgov.outbound.masked_url`` wrote it when this
    migration was made (frozen here: a later change to that function must not change what this migration wrote)."""
    try:
        u = urlsplit(url)
        host, port = u.hostname or "", u.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(u.scheme)
    user = ((u.username or "") + (":***" if u.password else "") + "@") if u.username or u.password else ""
    query = "&".join(f"{k}=***" if v else k for k, v in parse_qsl(u.query, keep_blank_values=True))
    return (f"{u.scheme}://{user}{host}{f':{port}' if port and port != default else ''}{u.path or '/'}"
            + (f"?{query}" if query else ""))


_hooks = sa.table('events_webhooks', sa.column('id', sa.String), sa.column('url', sa.Text),
                  sa.column('sealed_url', sa.Text))


def upgrade() -> None:
    with op.batch_alter_table('events_webhooks') as batch:
        batch.add_column(sa.Column('sealed_url', sa.Text(), nullable=True))
        # the masked form can be longer than the URL (a one-character value becomes ***)
        batch.alter_column('url', existing_type=sa.String(2048), type_=sa.Text(), existing_nullable=False)
    conn = op.get_bind()
    for hook_id, url in conn.execute(sa.select(_hooks.c.id, _hooks.c.url)).all():
        conn.execute(_hooks.update().where(_hooks.c.id == hook_id).values(sealed_url=url, url=_masked(url)))
    with op.batch_alter_table('events_webhooks') as batch:
        batch.alter_column('sealed_url', existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    op.execute(sa.text("UPDATE events_webhooks SET active = :off WHERE sealed_url LIKE 'enc:v1:%'")
               .bindparams(off=False))
    op.execute("UPDATE events_webhooks SET url = sealed_url WHERE sealed_url NOT LIKE 'enc:v1:%'")
    op.execute("UPDATE events_webhooks SET url = substr(url, 1, 2048)")   # a masked form can be longer
    with op.batch_alter_table('events_webhooks') as batch:
        batch.drop_column('sealed_url')
        batch.alter_column('url', existing_type=sa.Text(), type_=sa.String(2048), existing_nullable=False)
