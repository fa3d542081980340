"""Key revocation epoch: a value every change to an API key row replaces, so servers may cache keys

Revision ID: 0018_regspeed
Revises: 0017_sm_sdk

- ``auth_key_epoch`` (one row, ``id = 1``): ``epoch`` is replaced by a random value (a counter could repeat a value
  a rolled-back transaction had used) by a trigger on every INSERT, UPDATE or DELETE of
  ``auth_api_keys`` (revocation through mlgov, or an operator editing the table by hand), in the same transaction.
  A server keeps verified keys in memory tagged with the epoch it read before loading them and trusts an entry
  only while the epoch is unchanged, so a revocation takes effect on the next request, as before; unknown key
  ids are cached too (a new key bumps the epoch), so they cost the same time as known ones.
- ``registry_model_versions``: the (group, approval status) index gains ``version``, so "the newest Approved
  version" is one index probe instead of a sort of every approved version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018_regspeed'
down_revision = '0017_sm_sdk'
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION auth_key_epoch_bump() RETURNS trigger AS $$
BEGIN
    UPDATE auth_key_epoch SET epoch = (random() * 4503599627370496)::bigint WHERE id = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_registry_model_versions_group_status')
        batch_op.create_index('ix_registry_model_versions_group_status_version',
                              ['group_id', 'approval_status', 'version'], unique=False)
    op.create_table(
        'auth_key_epoch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_key_epoch')),
    )
    op.execute("INSERT INTO auth_key_epoch (id, epoch) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER auth_api_keys_epoch AFTER INSERT OR UPDATE OR DELETE ON auth_api_keys "
                   "FOR EACH STATEMENT EXECUTE FUNCTION auth_key_epoch_bump()")
    else:
        for what in ("INSERT", "UPDATE", "DELETE"):   # constants, no input
            op.execute(f"CREATE TRIGGER auth_api_keys_epoch_{what.lower()} AFTER {what} ON auth_api_keys "  # noqa: S608
                       "BEGIN UPDATE auth_key_epoch SET epoch = random() WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS auth_api_keys_epoch ON auth_api_keys")
        op.execute("DROP FUNCTION IF EXISTS auth_key_epoch_bump()")
    else:
        op.execute("DROP TRIGGER IF EXISTS auth_api_keys_epoch_insert")
        op.execute("DROP TRIGGER IF EXISTS auth_api_keys_epoch_update")
        op.execute("DROP TRIGGER IF EXISTS auth_api_keys_epoch_delete")
    op.drop_table('auth_key_epoch')
    with op.batch_alter_table('registry_model_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_registry_model_versions_group_status_version')
        batch_op.create_index('ix_registry_model_versions_group_status', ['group_id', 'approval_status'],
                              unique=False)
