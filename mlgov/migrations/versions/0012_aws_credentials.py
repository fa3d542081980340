"""AWS protocol: SigV4 credentials on API keys, idempotency tokens

Revision ID: 0012_aws
Revises: 0011
Create Date: 2026-12-10 09:00:00

- ``auth_api_keys.aws_access_key_id`` (unique) and ``aws_secret`` (encrypted with mlgov.secrets: SigV4 needs
  the secret back, so it cannot be hashed like the key itself). Existing keys get none; create a key with
  ``aws_credentials: true`` to call the SageMaker API.
- ``aws_idempotent_calls``: the answer to each (operation, key, ClientToken), so a retried create does nothing
  twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = '0012_aws'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('auth_api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('aws_access_key_id', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('aws_secret', sa.Text(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_auth_api_keys_aws_access_key_id'), ['aws_access_key_id'])
    op.create_table('aws_idempotent_calls',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('operation', sa.String(length=128), nullable=False),
    sa.Column('key_pk', sa.String(length=32), nullable=False),
    sa.Column('token', sa.String(length=128), nullable=False),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', mlgov.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aws_idempotent_calls')),
    sa.UniqueConstraint('operation', 'key_pk', 'token', name=op.f('uq_aws_idempotent_calls_operation_key_pk_token'))
    )


def downgrade() -> None:
    op.drop_table('aws_idempotent_calls')
    with op.batch_alter_table('auth_api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_auth_api_keys_aws_access_key_id'), type_='unique')
        batch_op.drop_column('aws_secret')
        batch_op.drop_column('aws_access_key_id')
