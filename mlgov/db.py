"""Engine, declarative base, sessions and the schema-at-head check.

SQLite allows one writer at a time; a deferred transaction that later tries to write can fail with
"database is locked" instead of waiting. Write sessions therefore open with ``BEGIN IMMEDIATE`` on SQLite
(they queue on ``busy_timeout``), while read sessions stay deferred so reads never wait for writers (WAL).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    String,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_R = TypeVar("_R")
BIGINT_PK = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER keys


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Query-string times without an offset are taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def paginate(session: Session, stmt: Select[_R], *order_by: Any, limit: int, offset: int) -> tuple[list[_R], int]:
    """One page of ``stmt`` and the total number of matching rows."""
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(*order_by).limit(limit).offset(offset))), total


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; mlgov stores aware UTC datetimes only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON(), str: String()}


# --- what a column can hold: every bound value is checked before the driver sees it ---------------------------

_INT_RANGES = ((SmallInteger, 2**15), (BigInteger, 2**63), (Integer, 2**31))


def check_column_value(key: str, col_type: Any, value: Any, *, lengths: bool = True) -> None:
    """Refuse, as a 422 naming the field, what the column cannot hold on one of the backends.

    SQLite would take most of it silently and PostgreSQL answers with an error that becomes a 500: NUL in text or
    JSON, strings over ``String(n)``, integers past the column's width, NaN/Infinity and over-deep JSON.
    """
    from mlgov import inputs
    from mlgov.errors import Invalid

    if value is None:
        return
    if isinstance(col_type, TypeDecorator):
        col_type = col_type.impl_instance
    if isinstance(col_type, JSON):
        inputs.check_value(value, key)
    elif isinstance(col_type, String) and isinstance(value, str):
        if "\x00" in value:
            raise Invalid(f"{key} contains a NUL character", fix="remove the NUL characters (\\u0000); "
                          "PostgreSQL cannot store them", field=key)
        if lengths and col_type.length is not None and len(value) > col_type.length:
            raise Invalid(f"{key} is {len(value)} characters long; at most {col_type.length} fit",
                          fix=f"shorten {key} to {col_type.length} characters", field=key, maximum=col_type.length)
    elif isinstance(col_type, Integer) and isinstance(value, int) and not isinstance(value, bool):
        bound = next(b for t, b in _INT_RANGES if isinstance(col_type, t))
        if not -bound <= value < bound:
            raise Invalid(f"{key} is outside [{-bound}, {bound - 1}] (a {bound.bit_length()}-bit integer column)",
                          fix=f"send {key} between {-bound} and {bound - 1}", field=key,
                          minimum=-bound, maximum=bound - 1)


_BIND_SUFFIX = re.compile(r"_\d+$")


@event.listens_for(Engine, "before_cursor_execute")
def _check_params(_conn: Any, _cursor: Any, _stmt: str, params: Any, context: Any, executemany: bool) -> None:
    """Every value bound to a statement is checked against the type it is bound as, before the driver sees it:
    writes and lookups alike (a path's version compared with an INTEGER column, a form field with NUL), on every
    backend, with the column's name in the 422. Statements without compiled binds get the NUL/64-bit check."""
    if getattr(context, "_mlgov_checked", False):   # insertmanyvalues runs one context in several batches
        return
    if context is not None:
        context._mlgov_checked = True
    compiled = getattr(context, "compiled", None)
    binds = getattr(compiled, "binds", None)
    if not binds:
        for row in (params if executemany else [params]):
            for v in (row.values() if isinstance(row, dict) else row or ()):
                check_column_value("a value", BigInteger() if isinstance(v, int) else String(), v)
        return
    writing = bool(context.isinsert or context.isupdate)
    for row in context.compiled_parameters:
        for key, value in row.items():
            bind = binds.get(key)
            if bind is None:
                continue
            name = _BIND_SUFFIX.sub("", key)
            for v in (value if bind.expanding and isinstance(value, list | tuple) else [value]):
                check_column_value(name, bind.type, v, lengths=writing)


def _sqlite_pragmas(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def private_dir(path: Path | str) -> None:
    """Create ``path`` (and parents) as 0700 if missing: it holds the database, API keys and the audit key.
    An existing directory is left as the operator set it up."""
    p = Path(path)
    if not p.exists():
        p.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(p, 0o700)


def private_file(path: Path | str) -> None:
    """Create an empty file readable by its owner only (0600) unless it exists; SQLite then keeps the mode and
    gives its -wal/-shm files the same one."""
    p = Path(path)
    private_dir(p.parent)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(p, 0o600)


def make_engine(url: str, *, immediate: bool = False, echo: bool = False, pooled: bool = True) -> Engine:
    u = make_url(url)
    extra: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            private_file(u.database)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}, **extra)
        _sqlite_pragmas(engine, immediate)
        return engine
    if pooled:
        extra = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
    return create_engine(url, echo=echo, **extra)


class Database:
    """Holds the engines and session factories; one per app (tests build their own).

    ``audit_chain`` (set by the app and the CLI) is handed to every session, so ``mlgov.audit`` keys and
    anchors the chain without each service passing the key along."""

    audit_chain: Any = None

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.backend = make_url(url).get_backend_name()
        self.engine = make_engine(url, echo=echo)
        self.write_engine = make_engine(url, immediate=True, echo=echo) if self.backend == "sqlite" else self.engine
        self.read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)

    def session(self, *, write: bool = True) -> Session:
        session = (self.write_sessions if write else self.read_sessions)()
        session.info["audit_chain"] = self.audit_chain
        return session

    @contextmanager
    def session_scope(self, *, write: bool = True) -> Iterator[Session]:
        """The transaction boundary for jobs and CLI commands: commit on success, roll back on error."""
        session = self.session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head: str | None = script.get_current_head()
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


class SchemaNotAtHead(RuntimeError):
    pass


def check_at_head(engine: Engine) -> None:
    """Refuse to serve a database whose schema is older (or newer) than this code expects."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotAtHead(
            f"database schema is at revision {current or 'none (empty database)'}, this mlgov needs {head}; "
            "run `mlgov db upgrade` (same MLGOV_DATABASE_URL) and start again"
        )


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
