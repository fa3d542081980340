"""Model groups store the key of how their name reads, under a unique index

Revision ID: 0028_group_reading_key
Revises: 0027_webhook_url_sealed

A group name that reads the same in print as another's ("ｍ1" full-width beside "m1", "srch–01" with an en dash)
was refused by scanning every group's name on each create and rename, and no constraint backed the scan: two
concurrent creates of "m1" and "ｍ1" could both pass. ``reading_key`` holds the SHA-256 of the name's reading key
(NFKC, dashes as '-', runs of spaces as one) under a unique index, so the database refuses the second.

Look-alikes stored before this migration cannot both keep the key: the oldest group of each set keeps it and the
later ones get NULL (a unique index admits any number of NULLs). Their names stay as they were; renaming one
gives it a key again, and the service compares a new name with the unkeyed ones too, so a name reading like any
of them stays refused even after the oldest is renamed or deleted.
"""

from __future__ import annotations

import hashlib
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0028_group_reading_key'
down_revision = '0027_webhook_url_sealed'
branch_labels = None
depends_on = None


def _key(name: str) -> str:
    """``mlgov.names.stored_reading_key`` as it was when this migration was made (frozen here: a later change to
    the fold must not change what this migration wrote)."""
    folded = "".join("-" if unicodedata.category(ch) == "Pd" or ch == "\u2212" else ch
                     for ch in unicodedata.normalize("NFKC", name))
    return hashlib.sha256(" ".join(folded.split()).encode()).hexdigest()


_groups = sa.table('registry_model_groups', sa.column('id', sa.String), sa.column('name', sa.String),
                   sa.column('created_at', sa.DateTime), sa.column('reading_key', sa.String))


def upgrade() -> None:
    with op.batch_alter_table('registry_model_groups') as batch:
        batch.add_column(sa.Column('reading_key', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    taken: set[str] = set()
    rows = conn.execute(sa.select(_groups.c.id, _groups.c.name).order_by(_groups.c.created_at, _groups.c.id)).all()
    for group_id, name in rows:
        key = _key(name)
        if key not in taken:   # the oldest of a set of look-alikes keeps the key; the later ones keep NULL
            taken.add(key)
            conn.execute(_groups.update().where(_groups.c.id == group_id).values(reading_key=key))
    op.create_index('ix_registry_model_groups_reading_key', 'registry_model_groups', ['reading_key'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_registry_model_groups_reading_key', table_name='registry_model_groups')
    with op.batch_alter_table('registry_model_groups') as batch:
        batch.drop_column('reading_key')
