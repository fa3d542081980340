"""Alembic environment: the URL comes from mlgov settings unless the caller set one."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mlgov.db import Base, make_engine
from mlgov.metadata import load_all_models
from mlgov.settings import get_settings

load_all_models()
target_metadata = Base.metadata
config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), pooled=False)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _foreign_keys(conn, on=False)
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            _foreign_keys(conn, on=True)
    engine.dispose()


def _foreign_keys(conn: Connection, *, on: bool) -> None:
    """SQLite batch migrations recreate a table by copy, drop and rename; with foreign keys on, dropping the old
    table runs ON DELETE CASCADE and empties its children (e.g. recreating events_webhooks would delete every
    delivery). The pragma only takes effect outside a transaction, so it is set on the raw connection before
    the migration transaction begins; violations are checked before turning enforcement back on."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if on:
        bad = raw.execute("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise RuntimeError(f"migration left rows violating foreign keys: {bad[:5]}")
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
