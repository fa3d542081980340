"""Console sign-in sessions

Revision ID: 0019_console
Revises: 0018_regspeed

- ``console_sessions``: one row per signed-in browser (SHA-256 of the cookie's token, the API key it belongs to,
  the CSRF token of its forms, expiry, sign-out time). Deleted with the key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019_console'
down_revision = '0018_regspeed'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('key_pk', sa.String(length=32), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['key_pk'], ['auth_api_keys.id'],
                                name=op.f('fk_console_sessions_key_pk_auth_api_keys'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_console_sessions')),
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_key_pk'), ['key_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_console_sessions_key_pk'))
    op.drop_table('console_sessions')
