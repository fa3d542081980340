"""Engine, declarative base, sessions, admission of requests to the database, and the schema-at-head check.

SQLite allows one writer at a time; a deferred transaction that later tries to write can fail with
"database is locked" instead of waiting. Write sessions therefore open with ``BEGIN IMMEDIATE`` on SQLite
(they queue on ``busy_timeout``), while read sessions stay deferred so reads never wait for writers (WAL).

Why requests pass a :class:`Gate` before they get a session: FastAPI runs a sync endpoint in one threadpool
hop and validates its response in another, while the request's transaction stays open until the session
dependency exits. If every worker thread is blocked on the pool, a row lock or SQLite's lock, the holder
never gets a thread to finish and everyone times out (the "QueuePool limit reached" / "database is locked"
500s). So a request first waits for its turn on the event loop (no thread, no connection), and at most
``read_sessions + write_sessions`` requests per process hold a session; writers that can block each other
are fewer than the worker threads, and the pool has room for every admitted session.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    SQLColumnExpression,
    String,
    Text,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import JSON as PgJSON
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import operators, sqltypes
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.visitors import InternalTraversal

if TYPE_CHECKING:
    from mlgov.settings import Settings

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
    """A time a request gave, in UTC (one without an offset is taken as UTC). 0001-01-01T00:00+01:00 parses but
    has no UTC time (nor can the database store it): a 422, not an OverflowError later."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:
        from mlgov.errors import Invalid  # mlgov.errors imports this module

        raise Invalid(f"time {value.isoformat()} is outside the years 1-9999 once converted to UTC",
                      fix="give a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z") from None


# --- list queries: filter, then paginate ---------------------------------------------------------------------
# A list endpoint's optional filters are conditions or None (the filter was not asked for); ``paginate`` applies
# the given ones, so no service writes ``if x: stmt = stmt.where(...)`` again.

Condition = ColumnElement[bool] | None
_V = TypeVar("_V")


def paginate(session: Session, stmt: Select[_R], *order_by: Any, limit: int, offset: int,
             where: Iterable[Condition] = (), after: Sequence[Any] | None = None) -> tuple[list[_R], int]:
    """One page of ``stmt`` narrowed by every condition in ``where`` that is not None, and the number of rows
    matching in all. ``after``: the `cursor_of` a row, to page on from it (the count is then of the rows after
    it): rows deleted meanwhile do not shift the page, as they shift an offset."""
    stmt = stmt.where(*(c for c in where if c is not None), *([_after(order_by, after)] if after else []))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(*order_by).limit(limit).offset(offset))), total


def _sort_keys(order_by: Sequence[Any]) -> list[tuple[Any, bool]]:
    """(column, descending) of each ORDER BY term."""
    return [(o.element, o.modifier is operators.desc_op) if isinstance(o, UnaryExpression) else (o, False)
            for o in order_by]


def sort_order(sort: str, columns: Mapping[str, Any]) -> Any:
    """``key`` sorts ascending by that column of a listing service's sortable ``columns``, ``-key`` descending: an
    adapter asks for an order by name and never holds the service's ORM columns."""
    column = columns[sort.lstrip("-")]
    return column.desc() if sort.startswith("-") else column.asc()


def cursor_of(row: Any, order_by: Sequence[Any]) -> list[Any]:
    """The values ``row`` sorts by under ``order_by`` (ORM columns, plain or ``.desc()``): where a keyset page
    that follows it starts. The order must end in a unique, non-null column."""
    return [getattr(row, column.key) for column, _ in _sort_keys(order_by)]


def _fits(column: Any, value: Any) -> bool:
    """Whether a cursor value (from a token a client may have edited) is of its column's type: a time with its
    zone, an integer, text. Widths and NUL are checked at bind (`check_column_value`)."""
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, DateTime):
        return isinstance(value, dt.datetime) and value.tzinfo is not None
    if isinstance(kind, Integer):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(kind, String) and isinstance(value, str)


def _after(order_by: Sequence[Any], cursor: Sequence[Any]) -> ColumnElement[bool]:
    """Rows that sort after ``cursor`` under ``order_by``: (a > x) or (a = x and b > y) …, each comparison turned
    for a descending term (a row value comparison cannot mix directions)."""
    keys = _sort_keys(order_by)
    if len(cursor) != len(keys) or not all(_fits(c, v) for (c, _), v in zip(keys, cursor, strict=False)):
        from mlgov.errors import Invalid  # mlgov.errors imports this module

        raise Invalid("the page token is not one this server returned for this list (its values do not fit the "
                      "list's order)", fix="start again without the token")
    terms = []
    for i, (column, desc) in enumerate(keys):
        beyond = column < cursor[i] if desc else column > cursor[i]
        terms.append(and_(*[c == v for (c, _), v in zip(keys[:i], cursor[:i], strict=True)], beyond))
    return or_(*terms)


def equal(*pairs: tuple[SQLColumnExpression[Any], Any]) -> list[Condition]:
    """``column == value`` for each (column, value) pair whose value was given (empty or None: no filter)."""
    return [column == value for column, value in pairs if value]


def icontains(column: SQLColumnExpression[Any], text: str | None) -> Condition:
    """Case-insensitive substring match, ``%`` and ``_`` taken literally; None when no text was given."""
    return func.lower(column).contains(text.lower(), autoescape=True) if text else None


class _Like(ColumnElement[bool]):
    """``column LIKE pattern``, case-sensitive on both backends: PostgreSQL's LIKE is; SQLite's ignores ASCII case,
    so there it is the same pattern as a GLOB (which also keeps an index usable for a fixed prefix)."""

    inherit_cache = True
    type = sqltypes.Boolean()
    _traverse_internals = [("as_like", InternalTraversal.dp_clauseelement),
                           ("as_glob", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: SQLColumnExpression[Any], pattern: str) -> None:
        tokens = _like_tokens(pattern)
        self.as_like = column.like("".join(t if w else "\\" + t if t in "%_\\" else t for w, t in tokens),
                                   escape="\\")
        self.as_glob = column.op("GLOB", is_comparison=True)(
            "".join(_GLOB_WILDCARD[t] if w else f"[{t}]" if t in "*?[" else t for w, t in tokens))


_GLOB_WILDCARD = {"%": "*", "_": "?"}


def _like_tokens(pattern: str) -> list[tuple[bool, str]]:
    """A LIKE pattern as (is wildcard, character): ``%`` and ``_`` are wildcards, a backslash makes the next
    character itself (PostgreSQL's default escape); a trailing lone backslash is itself, not PostgreSQL's error."""
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append((False, next(chars, "\\")))
        else:
            out.append((ch in _GLOB_WILDCARD, ch))
    return out


def like_matches(text: str, pattern: str, *, ignore_case: bool = False) -> bool:
    """What ``text LIKE pattern`` (or ILIKE) answers, in Python: for values a row shows but does not store.
    Greedy matching with one backtrack point (the last ``%``): at most len(text) x len(pattern) steps, where a
    regular expression of ``.*`` runs backtracks exponentially on a pattern such as ``%%%…x``."""
    tokens = _like_tokens(pattern.lower() if ignore_case else pattern)
    text = text.lower() if ignore_case else text
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(tokens) and tokens[p] == (True, "%"):
            star, mark, p = p, t, p + 1
        elif p < len(tokens) and (tokens[p] == (True, "_") or tokens[p] == (False, text[t])):
            t, p = t + 1, p + 1
        elif star >= 0:   # let the last % take one more character
            mark += 1
            t, p = mark, star + 1
        else:
            return False
    return all(tok == (True, "%") for tok in tokens[p:])


@compiles(_Like)
def _like_elsewhere(element: _Like, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.as_like, **kw))


@compiles(_Like, "sqlite")
def _like_sqlite(element: _Like, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.as_glob, **kw))


def like(column: SQLColumnExpression[Any], pattern: str) -> ColumnElement[bool]:
    """SQL's LIKE (``%`` any run, ``_`` one character), case-sensitive on SQLite as on PostgreSQL (MLflow's
    search filters: ``ILIKE`` is the case-insensitive one)."""
    return _Like(column, pattern)


def in_window(column: SQLColumnExpression[Any], after: dt.datetime | None,
              before: dt.datetime | None) -> list[Condition]:
    """``after <= column < before``; a bound that was not given does not filter."""
    return [column >= after if after else None, column < before if before else None]


IN_CHUNK = 500   # values per ``IN (...)`` list: far below the bound-parameter limits of SQLite and PostgreSQL


def chunks(values: Sequence[_V], size: int = IN_CHUNK) -> Iterator[Sequence[_V]]:
    """``values`` in slices of at most ``size``, for ``column.in_(chunk)`` lookups over many keys."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def per_backend(build: Callable[[Callable[[Any], Any]], _R]) -> dict[str, _R]:
    """A statement testing membership in the bound list ``ids``, built once per backend (pick it by the
    connection's ``dialect.name``; pass each `chunks` slice as ``ids``): ``build(ids_in)`` where ``ids_in(column)``
    is, on PostgreSQL, ``column = ANY(<one array parameter>)``, elsewhere ``column IN (<one parameter per id>)``.
    psycopg parses a statement's text afresh on every execution once it has more than 50 parameters (it caches
    only smaller ones): an IN of 100 ids was a quarter of the CPU of a 100-version page."""
    ids_array = bindparam("ids", type_=ARRAY(String))
    ids_list: Any = bindparam("ids", expanding=True)
    return {"postgresql": build(lambda column: column == any_(ids_array)),
            "sqlite": build(lambda column: column.in_(ids_list))}


def present_keys(column: Any, scope: Any, *, scope_leads: bool = True) -> dict[str, Select[Any]]:
    """Per backend, the statement giving which of the bound ``ids`` occur in ``column`` among the rows whose
    ``scope`` column equals the bound ``scope`` (one `chunks` slice per execution), for a unique or plain index on
    (scope, column), or on (column, scope) with ``scope_leads=False``. On PostgreSQL each id is probed through
    that index on its own (``LATERAL … LIMIT 1`` over the unnested array), whatever the statistics say: the plain
    ``scope = $1 AND column = ANY($2)`` was planned as a walk over every row of the scope with the array searched
    for each until ANALYZE gave the table statistics (measured on capture: 4.8 ms per 500 ids on an empty endpoint,
    385 ms at 40,000 events, growing with every batch until autovacuum's analyze; 1.6 ms after it), where the
    probes cost 1.7-2.9 ms per 500 ids at any size, analyzed or not. SQLite plans the IN list on the index by
    itself. The ids travel as one JSON text (`JsonList`): psycopg dumps an array parameter element by element in
    Python, 1.8 ms of client CPU per 500 ids where their JSON costs 0.26 ms (measured).

    ``scope_leads=False``: the index serving ``column`` is (column, scope). The probe's scope is then compared in a
    form no index can use: otherwise, while the statistics say the table is tiny (a new endpoint before
    autovacuum's analyze), PostgreSQL costs every index that matches anything alike and may probe on another
    index leading with scope (the unique one), filtering every row of the scope per id (measured: 67 ms for 140
    ids at 2,000 events)."""
    ids = func.json_array_elements_text(cast(bindparam("ids", type_=JsonList(column.type)), PgJSON))
    wanted = ids.table_valued("id").render_derived()
    probed_scope = scope if scope_leads else scope.op("||")(literal_column("''"))
    hit = (select(column).where(probed_scope == bindparam("scope"), column == cast(wanted.c.id, column.type))
           .limit(literal_column("1")).lateral())
    return {"postgresql": select(*hit.c).select_from(wanted).join(hit, true()),
            "sqlite": select(column).where(scope == bindparam("scope"),
                                           column.in_(bindparam("ids", expanding=True)))}


def keys_present(session: Session, statements: dict[str, Select[Any]], scope: Any, ids: Iterable[Any]) -> set[Any]:
    """Which of ``ids`` a `present_keys` statement finds under ``scope``, chunk by chunk."""
    stmt = statements[session.get_bind().dialect.name]
    found: set[Any] = set()
    for chunk in chunks(list(ids)):
        found.update(session.scalars(stmt, {"scope": scope, "ids": list(chunk)}))
    return found


class JsonList(TypeDecorator[list[Any]]):
    """A list bound as one JSON text (PostgreSQL unpacks it with ``json_array_elements_text``) instead of an array
    parameter. The bind check sees each item as ``item_type`` (as an ARRAY's), so a NUL, which JSON would carry
    escaped and PostgreSQL refuse in text, is a 422 before the statement runs."""

    impl = Text
    cache_ok = True

    def __init__(self, item_type: Any) -> None:
        super().__init__()
        self.item_type = item_type

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else pydantic_core.to_json(value).decode()


_SqlitePlan = tuple[str, Callable[[Any], Any], list[tuple[int, Callable[[Any], Any]]]]   # SQL, order, processors


class BulkRows:
    """Many rows of ``table`` (``columns`` in order; ``constants``: columns with one value for every row) in one
    statement, without SQLAlchemy's per-row work, on either backend.

    PostgreSQL: one INSERT with the rows as one JSON parameter (an array of arrays) unpacked by
    ``json_array_elements`` and cast to each column's type. psycopg dumps an array parameter element by element in
    Python: the capture index's five arrays cost ~5 ms of client CPU per 500 rows, their JSON ~0.9 ms (measured).
    SQLite: the driver's own executemany over tuples. SQLAlchemy's executemany builds and processes every row's
    parameter dict: 7.5 of 18.6 ms per 500 capture index rows (measured); sqlite3 binds tuples in C. Datetimes go
    through the column type's own bind processor, so they are stored as any other write stores them.
    Neither path lets the bind check see the values, so `check` runs it on every value first
    (`check_column_value`)."""

    def __init__(self, table: Any, columns: Sequence[str], constants: Sequence[str] = ()) -> None:
        cols = [table.c[c] for c in columns]
        row = func.json_array_elements(cast(bindparam("rows", type_=Text()), PgJSON), type_=PgJSON).column_valued("r")
        values = [cast(row.op("->>")(literal_column(str(i))), col.type) for i, col in enumerate(cols)]
        self.statement = insert(table).from_select(
            [*constants, *columns], select(*(bindparam(c, type_=table.c[c].type) for c in constants), *values))
        self._table, self._constants, self._columns = table, tuple(constants), tuple(columns)
        self._kinds = [(col.name, col.type, *_kind(col.type, True)) for col in cols]
        self._sqlite: _SqlitePlan | None = None

    def check(self, rows: Sequence[Sequence[Any]]) -> None:
        """Every row value checked as a bound one would be (a 422 naming the column)."""
        for i, (name, col_type, kind, limit) in enumerate(self._kinds):
            if kind is not None:    # None: a type the bind check has nothing to test in (a datetime)
                _check_values(name, col_type, kind, limit, (row[i] for row in rows), lengths=True)

    def params(self, rows: Sequence[Sequence[Any]], **constants: Any) -> dict[str, Any]:
        """PostgreSQL: the statement's parameters for ``rows`` (aware datetimes for datetime columns), checked
        (the constants are bound parameters: the bind check sees them)."""
        self.check(rows)
        return {**constants, "rows": pydantic_core.to_json(rows).decode()}

    def execute(self, session: Session, rows: Sequence[Sequence[Any]], **constants: Any) -> None:
        if not rows:
            return
        if is_postgres(session):
            session.execute(self.statement, self.params(rows, **constants))
            return
        self.check(rows)
        for name, value in constants.items():   # bound through the driver here: the bind check does not see them
            check_column_value(name, self._table.c[name].type, value)
        conn = session.connection()
        sql, order, processors = self._sqlite_plan(conn.dialect)
        fixed = tuple(constants[c] for c in self._constants)
        values = [list(r) for r in rows]
        for i, process in processors:
            done: dict[dt.datetime, Any] = {}   # a batch's rows mostly share a few times: each converted once
            for r in values:
                v = r[i]
                if type(v) is dt.datetime:   # equal datetimes (any zone) are one instant: one stored text
                    r[i] = done.get(v) or done.setdefault(v, process(v))
                else:
                    r[i] = process(v)
        params = [order((*fixed, *r)) for r in values]
        cursor = conn.connection.dbapi_connection.cursor()   # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
        except sqlite3.Error as exc:   # as SQLAlchemy would raise it (IntegrityError for a unique violation)
            raise DBAPIError.instance(sql, params, exc, sqlite3.Error, hide_parameters=True,
                                      dialect=conn.dialect) from exc
        finally:
            cursor.close()

    def _sqlite_plan(self, dialect: Dialect) -> _SqlitePlan:
        if self._sqlite is None:
            names = [*self._constants, *self._columns]
            compiled = insert(self._table).values({n: bindparam(n) for n in names}).compile(dialect=dialect)
            bound = list(compiled.positiontup or ())   # qmark style: values are bound in this order
            if sorted(bound) != sorted(names):   # e.g. a column with a Python-side default left out of ``columns``
                raise ValueError(f"BulkRows binds {names}, the INSERT {bound}: list every such column")
            idx = [names.index(n) for n in bound]
            order = itemgetter(*idx) if len(idx) > 1 else (lambda row: (row[idx[0]],))
            processors = []
            for i, c in enumerate(self._columns):
                # the dialect's own processor (a UTCDateTime through SQLite's DATETIME text form, microseconds
                # always written), not the generic type's, which would leave formatting to sqlite3's adapter
                process = self._table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((i, process))
            self._sqlite = (str(compiled), order, processors)
        return self._sqlite


# --- locks --------------------------------------------------------------------------------------------------

def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def advisory_lock_key(name: str) -> int:
    """A stable 56-bit PostgreSQL advisory-lock key for ``name`` (the same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")


def advisory_xact_lock(session: Session, key: int | str) -> None:
    """Serialise the transactions that take ``key`` until this one commits or rolls back. PostgreSQL: an advisory
    lock (a string key is hashed with :func:`advisory_lock_key`); what the holder reads after it, under READ
    COMMITTED (set on every connection), includes whatever the previous holder committed. SQLite has one writer
    at a time: a write session takes the database's write lock here (its BEGIN IMMEDIATE), not at its first
    statement, so checks made after this call are made under the lock on both backends."""
    if is_postgres(session):
        number = key if isinstance(key, int) else advisory_lock_key(key)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
    else:
        session.connection()


def insert_or_skip(session: Session, model: Any, conflict: list[str], claim: Any = None) -> Any:
    """INSERT … ON CONFLICT (``conflict``) DO NOTHING on either backend: idempotent writes without a look-up or a
    savepoint. ``claim`` (a boolean column): on conflict set it true where it is false instead (rows recorded by a
    user become evidence once mlgov records the same thing)."""
    from sqlalchemy.dialects import postgresql, sqlite

    ins = (postgresql.insert if is_postgres(session) else sqlite.insert)(model)
    if claim is None:
        return ins.on_conflict_do_nothing(index_elements=conflict)
    return ins.on_conflict_do_update(index_elements=conflict, set_={claim.key: True}, where=claim.is_(False))


def new_id() -> str:
    return uuid.uuid4().hex


def ids_from(base: str, count: int) -> list[str]:
    """Ids for ``count`` rows inserted together: ``base`` (a `new_id`) with each row's position in place of its last
    8 hex digits. Unique (rows of one base differ in position, bases in their first 24 hex digits, 90 random bits),
    one uuid per set instead of one per row, and the primary key grows in runs rather than at a random place per
    row."""
    stem = base[:24]
    return [f"{stem}{i:08x}" for i in range(count)]


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
    rows = context.compiled_parameters     # an executemany's rows carry the same binds: one plan per bind
    for key in rows[0] if rows else ():
        bind = binds.get(key)
        if bind is None:
            continue
        col_type, many = bind.type, bind.expanding   # an expanding IN list and an array: checked value by value
        if isinstance(col_type, sqltypes.ARRAY | JsonList):
            col_type, many = col_type.item_type, True
        kind, limit = _kind(col_type, writing)
        if kind is None:
            continue
        values: Iterable[Any] = (row.get(key) for row in rows)
        if many:
            values = (v for value in values for v in (value if isinstance(value, list | tuple) else [value]))
        _check_values(_BIND_SUFFIX.sub("", key), col_type, kind, limit, values, lengths=writing)


def _check_values(name: str, col_type: Any, kind: str, limit: int, values: Iterable[Any], *, lengths: bool) -> None:
    """`check_column_value` over ``values`` (as `_kind` plans it), the common case decided without it: a string
    without NUL within the limit, an integer within the column's width; a list of strings all at once (an index
    row batch's ids: ~0.4 us a value in the loop)."""
    values = list(values)
    if kind == "str" and values and set(map(type, values)) == {str} and "\x00" not in "".join(values) \
            and max(map(len, values)) <= limit:
        return
    for v in values:
        if v is None or (kind == "str" and type(v) is str and "\x00" not in v and len(v) <= limit) or (
                kind == "int" and type(v) is int and -limit <= v < limit):
            continue
        check_column_value(name, col_type, v, lengths=lengths)


def _kind(col_type: Any, writing: bool) -> tuple[str | None, int]:
    """What `check_column_value` tests for a bind type: ("json"|"str"|"int", limit), or (None, 0) for nothing."""
    impl = col_type.impl_instance if isinstance(col_type, TypeDecorator) else col_type
    if isinstance(impl, JSON):
        return "json", 0
    if isinstance(impl, String):
        return "str", (impl.length or 2**62) if writing else 2**62
    if isinstance(impl, Integer):
        return "int", next(b for t, b in _INT_RANGES if isinstance(impl, t))
    return None, 0


@dataclass(frozen=True)
class DbLimits:
    """How many requests use the database at once per process and how long anything waits (see module doc)."""

    read_sessions: int = 16
    write_sessions: int = 8          # PostgreSQL; SQLite has one writer, so one write turn per process
    wait_timeout_s: float = 30.0     # waiting for a turn (Gate)
    pool_size: int | None = None
    max_overflow: int | None = None
    pool_timeout_s: float = 30.0
    busy_timeout_s: float = 30.0     # SQLite: another process holds the write lock
    lock_timeout_s: float = 30.0     # PostgreSQL lock_timeout

    @classmethod
    def from_settings(cls, s: Settings) -> DbLimits:
        return cls(read_sessions=s.db_read_sessions, write_sessions=s.db_write_sessions,
                   wait_timeout_s=s.db_wait_timeout_s, pool_size=s.db_pool_size, max_overflow=s.db_max_overflow,
                   pool_timeout_s=s.db_pool_timeout_s, busy_timeout_s=s.db_busy_timeout_s,
                   lock_timeout_s=s.db_lock_timeout_s)

    def pool_args(self, sessions: int) -> dict[str, Any]:
        """Room for every admitted session plus the in-process jobs (dispatcher, scheduler) that are not gated, all
        of it kept: the pool opens connections as concurrency first needs them and keeps them. A smaller kept pool
        with overflow closed every connection past it on return and opened a new one for the next request: under
        load a PostgreSQL backend's start-up took up to 1-2 s (p99 of 600 ms measured beside 16 busy connections),
        which became the p99 of plain reads (0.5-1.2 s at 16 connections, 27 ms with every connection kept)."""
        capacity = sessions + POOL_MARGIN
        size = self.pool_size if self.pool_size is not None else capacity
        overflow = self.max_overflow if self.max_overflow is not None else max(capacity - size, 0)
        return {"pool_size": size, "max_overflow": overflow, "pool_timeout": self.pool_timeout_s}


POOL_MARGIN = 6   # in-process jobs (webhook dispatcher, scheduler tick, startup); PostgreSQL total stays 30


class DatabaseBusy(Exception):
    """The database could not take this request in time; the caller should retry later (HTTP 503)."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def _sqlite_busy(error: BaseException) -> bool:
    """SQLite refused because another connection holds a lock it needs."""
    return type(error).__module__.startswith("sqlite3") and any(m in str(error).lower() for m in _SQLITE_BUSY)

# serialization_failure, deadlock_detected, lock_not_available, query_canceled (statement/lock timeout),
# too_many_connections, cannot_connect_now
_PG_BUSY = {"40001": "a concurrent transaction conflicted with this one", "40P01": "a deadlock was detected",
            "55P03": "a row or table lock was not granted within the lock timeout",
            "57014": "the statement was cancelled by a timeout", "53300": "the database has no free connections",
            "57P03": "the database is starting up or shutting down"}


def busy_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is a transient overload of the database (retrying later will work), or None if it is not."""
    if isinstance(exc, PoolTimeout):
        return "no database connection became free in time"
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:   # the pool replaces it; the next request gets a live one
            return "the connection to the database was lost (a restart or a network cut)"
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(code, str) and code in _PG_BUSY:
            return _PG_BUSY[code]
        if orig is not None and _sqlite_busy(orig):
            return "another writer held the SQLite database past the busy timeout"
        if orig is not None and _unreachable(orig, code):
            return "the database cannot be reached or is not accepting connections"
    return None


def _unreachable(orig: BaseException, code: object) -> bool:
    """A connection that could not be made (refused, timed out, the database closed to connections): PostgreSQL's
    driver says so without a SQLSTATE, or in class 08 (connection exception)."""
    try:
        import psycopg
    except ImportError:   # pragma: no cover - a dependency
        return False
    return isinstance(orig, psycopg.OperationalError) and (
        code is None or (isinstance(code, str) and code.startswith("08")))


def is_unique_violation(exc: BaseException) -> bool:
    """A concurrent request committed the same unique key first (the loser of an insert race)."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == "23505" or (type(orig).__module__.startswith("sqlite3") and "UNIQUE constraint failed" in str(orig))


class Gate:
    """FIFO admission for at most ``capacity`` holders; waiters are coroutines, so they hold no thread.

    Thread-safe and not bound to one event loop: ``release`` may run in any thread (the session is finished
    in a worker thread) and hands the slot straight to the oldest waiter.
    """

    def __init__(self, capacity: int, timeout_s: float, what: str) -> None:
        self.capacity, self.timeout_s, self.what = capacity, timeout_s, what
        self._held = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._held < self.capacity and not self._waiters:
                self._held += 1
                return
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter[1]), self.timeout_s)
        except BaseException as exc:
            with self._lock:
                try:
                    self._waiters.remove(waiter)
                    granted = False
                except ValueError:
                    granted = True          # the slot was handed over as we gave up: pass it on
            if granted:
                self.release()
            if isinstance(exc, TimeoutError):
                raise DatabaseBusy(
                    f"the server is busy: this request waited {self.timeout_s:g} s for a {self.what} turn "
                    f"({self.capacity} at a time per server process)",
                    fix="retry after the Retry-After interval; if this persists, send fewer concurrent requests "
                        "or raise MLGOV_DB_WAIT_TIMEOUT_S",
                ) from None
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_grant, fut)
                    return
                except RuntimeError:        # that waiter's loop is gone; try the next one
                    continue
            self._held -= 1


def _grant(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# SQLite checkpoints the WAL into the database file on the commit that takes it past this many pages (SQLite's
# default: 1,000, 4 MB). A write whose keys land at random in a large index (capture's eventIds are UUIDs)
# dirties a page per key, so at 1,000 pages every second batch of 500 paid for a checkpoint on its commit; a
# checkpoint writes each page once however often it changed since the last, so fewer, larger ones write less
# (500-record index insert at 300k rows: 14.6 -> 6.5 ms). The WAL file is cut back to WAL_KEEP_BYTES once a
# checkpoint lets it restart.
WAL_CHECKPOINT_PAGES = 10_000
WAL_KEEP_BYTES = 64 * 2**20


def _sqlite_pragmas(engine: Engine, immediate: bool, busy_timeout_s: float, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if read_only:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if immediate:
            _begin_immediate(conn, busy_timeout_s)
        else:
            conn.exec_driver_sql("BEGIN")


def _begin_immediate(conn: Any, busy_timeout_s: float) -> None:
    """Take SQLite's write lock, retrying every 0.25-2 ms while another process holds it. SQLite's own busy handler
    backs off to 100 ms sleeps, and a process whose next write is always ready re-takes the lock within
    microseconds of releasing it, so the other process's waits ran to seconds (creates through two workers: p50
    25 ms, p99 1.7-2.9 s). Past ``busy_timeout_s`` SQLite's own "database is locked" error is raised (a 503)."""
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline, delay = time.monotonic() + busy_timeout_s, 0.0005
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _sqlite_busy(exc) or time.monotonic() >= deadline:
                    break
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.002)
        conn.exec_driver_sql("BEGIN IMMEDIATE")   # once more, so the error reaches the caller wrapped as any other
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")


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


def key_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The key stored at ``path``, created 0600 (directory 0700) from ``make()`` on first use. Concurrent first
    starts (several workers) agree on one key: it is written whole to a private temporary file and linked into
    place, which fails if another process got there first; nobody reads a half-written file."""
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(make() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):   # another process linked its key first: use that one
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def json_loads(data: str | bytes) -> Any:
    """JSON columns as the engines read them: pydantic-core's parser, 1.1 µs where ``json.loads`` took 5.8 µs on a
    version's metadata pairs from psycopg (bytes: the standard parser first sniffs their encoding); a version page
    reads one to three JSON values per row. Same values (NaN and big integers included); a lone surrogate escape,
    which pydantic-core refuses and mlgov never writes, is left to the standard parser."""
    try:
        return pydantic_core.from_json(data)
    except ValueError:
        return json.loads(data)


def make_engine(url: str, *, immediate: bool = False, echo: bool = False, pooled: bool = True,
                limits: DbLimits | None = None, sessions: int | None = None, read_only: bool = False) -> Engine:
    """An engine whose pool has room for ``sessions`` admitted sessions (see :class:`DbLimits`); ``read_only``:
    SQLite refuses writes on its connections (the read engine, so a write in a read session fails loudly)."""
    limits = limits or DbLimits()
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        extra: dict[str, Any] = {"poolclass": NullPool}
        if pooled:
            extra = limits.pool_args(sessions if sessions is not None else limits.read_sessions)
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            private_file(u.database)
        engine = create_engine(url, echo=echo, hide_parameters=True, json_deserializer=json_loads, **extra,
                               connect_args={"check_same_thread": False, "timeout": limits.busy_timeout_s})
        _sqlite_pragmas(engine, immediate, limits.busy_timeout_s, read_only)
        return engine
    extra = {"poolclass": NullPool}
    if pooled:
        total = sessions if sessions is not None else limits.read_sessions + limits.write_sessions
        extra = limits.pool_args(total)
    connect_args: dict[str, Any] = {}
    if u.get_backend_name() == "postgresql":
        connect_args["options"] = f"-c lock_timeout={int(limits.lock_timeout_s * 1000)}"
        # Whatever the server's default_transaction_isolation says: a check made after a lock (`advisory_xact_lock`)
        # must see what the lock's previous holder committed, which a snapshot taken before the wait would not.
        extra["isolation_level"] = "READ COMMITTED"
    engine = create_engine(url, echo=echo, hide_parameters=True, connect_args=connect_args,
                           json_deserializer=json_loads, **extra)
    if pooled:
        _ping_idle_connections(engine)
    return engine


PING_IDLE_S = 5.0   # a pooled connection idle this long is pinged before use; a busier one is not


def _ping_idle_connections(engine: Engine) -> None:
    """Hand out only live connections, pinging the ones that sat idle in the pool: after a database restart or an
    idle-connection cut those are the dead ones. SQLAlchemy's ``pool_pre_ping`` pings every checkout, a round trip
    of ~0.1 ms client CPU on requests of 1.5-2 ms; a connection checked in moments ago is as alive as a ping would
    show. A dead one is discarded and the pool hands out another (`DisconnectionError`)."""
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi: Any, record: Any) -> None:
        record.info["mlgov_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("mlgov_idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return      # new (just connected) or busy
        try:
            if not engine.dialect.do_ping(dbapi_conn):
                raise DisconnectionError("the pooled connection did not answer a ping")
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"the pooled connection is gone: {exc}") from exc


def finish(session: Session, *, commit: bool) -> None:
    """End a session's transaction, committing it or rolling it back, and close it (its connection goes back to
    the pool even when the commit fails). Jobs and the CLI (``session_scope``) and requests (``get_session``:
    a write session in a worker thread of its own, a read session on the event loop) end theirs through here."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


class Database:
    """Holds the engines, session factories and admission gates; one per app (tests build their own).

    ``audit_chain`` (set by the app and the CLI) is handed to every session, so ``mlgov.audit`` keys and
    anchors the chain without each service passing the key along."""

    audit_chain: Any = None

    limits = DbLimits()
    _gates: dict[bool, Gate] | None = None
    reads_end_inline = True
    """Ending a read session never waits, so requests end theirs on the event loop rather than in a worker thread:
    PostgreSQL's run without a transaction (AUTOCOMMIT, below); SQLite's end a read transaction in WAL mode,
    which releases a read mark in shared memory and touches neither the file nor a lock another process holds
    (single-record capture on SQLite: one hop of five per request)."""

    def __init__(self, url: str, *, echo: bool = False, limits: DbLimits | None = None) -> None:
        self.url = url
        self.limits = limits or DbLimits()
        self.backend = make_url(url).get_backend_name()
        if self.backend == "sqlite":
            self.engine = make_engine(url, echo=echo, limits=self.limits, read_only=True)
            self.write_engine = make_engine(url, immediate=True, echo=echo, limits=self.limits, sessions=1)
            read_bind: Engine = self.engine
        else:
            self.engine = self.write_engine = make_engine(url, echo=echo, limits=self.limits)
            # Reads run without BEGIN/COMMIT: under READ COMMITTED each statement has its own snapshot inside a
            # transaction too, so the answer is the same and two round trips fewer (PostgreSQL CPU of a single
            # read -25-30%). SQLite's read engine refuses writes (query_only), which keeps this safe: a service
            # writing in a read session fails the SQLite tests instead of committing statement by statement here.
            read_bind = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessions = sessionmaker(read_bind, expire_on_commit=False)
        self.write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.resolved_database_url, echo=settings.log_sql, limits=DbLimits.from_settings(settings))

    def gate(self, *, write: bool) -> Gate:
        """The per-process turn a request waits for before it gets a session (one writer at a time on SQLite)."""
        if self._gates is None:
            lim = self.limits
            writers = 1 if self.backend == "sqlite" else lim.write_sessions
            self._gates = {False: Gate(lim.read_sessions, lim.wait_timeout_s, "database read"),
                           True: Gate(writers, lim.wait_timeout_s, "database write")}
        return self._gates[write]

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
        except BaseException:
            finish(session, commit=False)
            raise
        finish(session, commit=True)

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
