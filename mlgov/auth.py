"""API keys (stored as SHA-256 hashes), roles, and the ``require(...)`` dependency every route declares.

Keys are 256-bit random secrets, so a fast hash is the right tool (there is nothing to brute-force);
the public ``key_id`` prefix lets us find the row without scanning, and the digest is compared in
constant time. An unknown ``key_id`` is compared against a dummy digest, so it takes the same path as a
wrong secret and the response time does not tell which key ids exist.

A key belongs to an ``owner`` (the person; defaults to the key's name) and records who created it. Rules
that need two people (four-eyes) compare owners and creators, never key names, so one person holding
two keys is still one person.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import enum
import functools
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request
from sqlalchemy import BigInteger, Boolean, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.concurrency import run_in_threadpool

from mlgov.db import Base, Database, advisory_xact_lock, finish, new_id, private_dir, utcnow
from mlgov.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from mlgov.names import person_key, readable_problem
from mlgov.secrets import SecretBox

KEY_PREFIX = "mlgov"


class Role(enum.StrEnum):
    admin = "admin"
    approver = "approver"
    publisher = "publisher"
    viewer = "viewer"
    ingest = "ingest"


ALL_ROLES = frozenset(Role)
READERS = frozenset({Role.admin, Role.approver, Role.publisher, Role.viewer})
PUBLISHERS = frozenset({Role.admin, Role.publisher})
DECIDERS = frozenset({Role.admin, Role.approver})
MOVERS = PUBLISHERS | DECIDERS   # stage moves: ungoverned ones any publisher's, governed ones deciders' only
ADMINS = frozenset({Role.admin})
INGESTERS = frozenset({Role.admin, Role.ingest})
AUDITORS = frozenset({Role.admin, Role.approver, Role.viewer})


class ApiKey(Base):
    __tablename__ = "auth_api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128), index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_by_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # AWS-style credentials for SigV4 (mlgov.aws): the secret must be read back to verify signatures, so it is
    # stored encrypted (mlgov.secrets), never hashed.
    aws_access_key_id: Mapped[str | None] = mapped_column(String(20), unique=True, nullable=True, default=None)
    aws_secret: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)


class KeyEpoch(Base):
    """One row whose ``epoch`` a database trigger replaces (with a random value) on every INSERT, UPDATE or DELETE of
    ``auth_api_keys`` (migration 0016): the cache of verified keys (`authenticate`) trusts an entry only while the
    epoch it was loaded under is current, so a revocation, by mlgov or by hand in the database, takes effect on the
    very next request."""

    __tablename__ = "auth_key_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Principal:
    key_pk: str
    name: str
    role: Role
    owner: str = ""
    created_by: str = ""

    def __post_init__(self) -> None:
        if not self.owner:
            object.__setattr__(self, "owner", self.name)


SYSTEM = Principal(key_pk="system", name="system", role=Role.admin, owner="system", created_by="system")


def same_person(a: str | None, b: str | None) -> bool:
    """Owners are compared as a reader sees them: "Alice", "alice " and "ａｌｉｃｅ" are one person, as are
    "t-publisher" and "t‐publisher" (U+2010), so a look-alike spelling never counts as a second pair of eyes."""
    return a is not None and b is not None and person_key(a) == person_key(b)


def owner_of(session: Session, key_name: str) -> str:
    """The owner of the key named ``key_name`` (names are never reused), or the name itself for actors that are
    no key (``cli``, ``system``)."""
    return session.scalar(select(ApiKey.owner).where(ApiKey.name == key_name)) or key_name


def require_creator(session: Session, created_by: str, actor: Principal, what: str, verb: str) -> None:
    """What a user creates (a monitoring schedule, a job definition, a model group's tags) is its creator's to
    change, by owner, or an admin's: otherwise one team could quietly stop or loosen another's monitoring."""
    if actor.role == Role.admin:
        return
    owner = owner_of(session, created_by)
    if not same_person(owner, actor.owner):
        raise Forbidden(f"{what} was created by {created_by!r}" + (f" (owner {owner!r})" if owner != created_by
                                                                   else "")
                        + f"; only its creator or an admin may {verb}", fix=f"ask {owner!r} or an admin")


def independent(decider_owner: str, decider_creator: str | None, other_owner: str,
                other_creator: str | None) -> str | None:
    """Why two keys are not independent people (None when they are): same owner, or either key was created
    by the other's owner (a key you mint for yourself, or for a puppet, is still you)."""
    if same_person(decider_owner, other_owner):
        return f"both keys belong to owner {other_owner!r}"
    if same_person(decider_creator, other_owner):
        return f"the deciding key was created by {other_owner!r}"
    if same_person(other_creator, decider_owner):
        return f"the other key was created by {decider_owner!r}"
    return None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared when the key id is unknown, so that path costs one digest and one comparison like a wrong secret.
_DUMMY_HASH = _digest(secrets.token_urlsafe(32))


def generate_key() -> tuple[str, str, str]:
    """Return (full key, public key id, secret part)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}_{key_id}_{secret}", key_id, secret


def create_key(session: Session, name: str, role: str, *, actor: str, owner: str | None = None,
               creator: Principal | None = None, aws: SecretBox | None = None) -> tuple[ApiKey, str]:
    """Create a key; the plain key is returned once and never stored. ``creator`` is the key that asked (None
    for the CLI or the server itself, recorded as ``actor``). With ``aws`` (the secrets box) the key also gets an
    AWS access key id and secret: read the secret once with `aws_secret_of`, right after creation."""
    from mlgov import audit

    name = name.strip()
    if not name or len(name) > 128:
        raise Invalid("key name must be 1-128 characters", fix="pass --name with a short descriptive name")
    owner = (owner or name).strip()
    if not owner or len(owner) > 128:
        raise Invalid("key owner must be 1-128 characters", fix="pass the person's name as owner")
    for what, value in (("name", name), ("owner", owner)):
        if problem := readable_problem(value):
            raise Invalid(f"key {what} {value!r} {problem}", fix=f"write the {what} in plain characters of one script")
    _no_look_alike_owner(session, owner)
    try:
        role_v = Role(role)
    except ValueError:
        raise Invalid(
            f"unknown role {role!r}", fix=f"use one of: {', '.join(r.value for r in Role)}"
        ) from None
    taken = session.scalar(select(ApiKey.active).where(ApiKey.name == name))
    if taken is not None:
        # a revoked key keeps its name: audit events, approvals and registrations name keys, so a name never
        # passes to a new key (rotation is a new name, e.g. with a date, and the old key revoked)
        raise Conflict(f"an API key named {name!r} already exists" + ("" if taken else " (revoked; names of revoked "
                       "keys stay taken, as the audit log refers to them)"),
                       fix=f"choose another name (e.g. {name}-{utcnow():%Y%m%d})" + (
                           ", or revoke the old key first and then use a new name" if taken else ""))
    full, key_id, secret = generate_key()
    created_by = creator.owner if creator else actor
    row = ApiKey(id=new_id(), key_id=key_id, name=name, role=role_v.value, key_hash=_digest(secret), active=True,
                 owner=owner, created_by=created_by, created_by_key=creator.key_pk if creator else None)
    if aws is not None:
        row.aws_access_key_id = "MLGV" + "".join(secrets.choice(_AKID_ALPHABET) for _ in range(16))
        row.aws_secret = aws.encrypt(secrets.token_urlsafe(30))
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="key.created", subject_type="api_key", subject_id=name,
                 after={"name": name, "role": role_v.value, "key_id": key_id, "owner": owner,
                        "created_by": created_by, "created_by_key": row.created_by_key,
                        **({"aws_access_key_id": row.aws_access_key_id} if aws is not None else {})})
    return row, full


_AKID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _no_look_alike_owner(session: Session, owner: str) -> None:
    """An owner that reads like an existing one but is spelled otherwise (beyond case, which a reader sees) is
    refused: in the audit log and the compliance report the two would pass for one person, and four-eyes
    already treats them as one."""
    same = person_key(owner)
    for (known,) in session.execute(select(ApiKey.owner).distinct()):
        if known.casefold() != owner.casefold() and person_key(known) == same:
            raise Conflict(f"key owner {owner!r} reads like the existing owner {known!r} but is spelled otherwise",
                           fix=f"pass owner {known!r} if it is the same person, else a name that reads differently")


def aws_secret_of(row: ApiKey, box: SecretBox) -> str | None:
    return box.decrypt(row.aws_secret) if row.aws_secret else None


def aws_credentials(session: Session, access_key_id: str, box: SecretBox) -> tuple[Principal, str] | None:
    """The principal and secret behind an AWS access key id (None when unknown or revoked: both are refused the
    same way, after the same signature computation)."""
    row = session.scalar(select(ApiKey).where(ApiKey.aws_access_key_id == access_key_id))
    if row is None or not row.active or not row.aws_secret:
        return None
    return principal_of(row), box.decrypt(row.aws_secret)


def revoke_key(session: Session, name: str, *, actor: str) -> ApiKey:
    from mlgov import audit

    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound(f"no API key named {name!r}", fix="list keys with `mlgov keys list` or GET /api/v1/keys")
    if not row.active:
        raise Conflict(f"API key {name!r} is already revoked",
                       fix="nothing to do; create a new key (`mlgov keys create`) if its holder needs access")
    if row.role == Role.admin.value:
        others = session.scalar(select(ApiKey.id).where(ApiKey.role == Role.admin.value, ApiKey.active.is_(True),
                                                        ApiKey.id != row.id).limit(1))
        if others is None:
            raise Conflict(f"API key {name!r} is the last active admin key; revoking it would leave nobody able "
                           "to manage keys, policies or artifact trust",
                           fix="create another admin key first (POST /api/v1/keys with role admin), then revoke "
                               "this one")
    row.active = False
    row.revoked_at = utcnow()
    session.flush()
    audit.record(session, actor=actor, action="key.revoked", subject_type="api_key", subject_id=name,
                 before={"active": True}, after={"active": False})
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)))


@dataclass(frozen=True)
class _KnownKey:
    """A key row as `authenticate` needs it (``principal`` None: no such key id), cached per process under the
    epoch read before it was loaded."""

    epoch: int
    key_hash: str
    active: bool
    principal: Principal | None


_KEY_COLUMNS = (ApiKey.key_hash, ApiKey.active, ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.owner, ApiKey.created_by)
_known: dict[str, _KnownKey] = {}
# Built once and run as plain Core on the request's connection: every authenticated request reads the epoch.
_EPOCH = select(KeyEpoch.__table__.c.epoch).where(KeyEpoch.__table__.c.id == 1)
KNOWN_KEYS_MAX = 4096   # entries; past it the cache starts again (a flood of made-up key ids is never cached)


def _known_key(session: Session, key_id: str) -> _KnownKey:
    """The key with public id ``key_id``: from the process cache while the key epoch is unchanged, else from the
    database. The epoch is read first, so an entry can only be older than the epoch it carries, never newer."""
    epoch = session.connection().execute(_EPOCH).scalar_one()
    known = _known.get(key_id)
    if known is not None and known.epoch == epoch:
        return known
    row = session.execute(select(*_KEY_COLUMNS).where(ApiKey.key_id == key_id)).first()
    if row is None:   # remembered too (creating a key bumps the epoch): unknown ids cost what known ones cost
        known = _KnownKey(epoch, _DUMMY_HASH, False, None)
    else:
        key_hash, active, pk, name, role, owner, created_by = row
        known = _KnownKey(epoch, key_hash, bool(active),
                          Principal(key_pk=pk, name=name, role=Role(role), owner=owner, created_by=created_by))
    if len(_known) >= KNOWN_KEYS_MAX:
        _known.clear()
    _known[key_id] = known
    return known


def authenticate(session: Session, presented: str) -> Principal:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("the API key is malformed", fix="send `Authorization: Bearer mlgov_<id>_<secret>`")
    known = _known_key(session, parts[1])
    # One digest and one constant-time comparison whether or not the key id exists (an unknown id is compared
    # against the dummy digest).
    matches = hmac.compare_digest(known.key_hash, _digest(parts[2]))
    if known.principal is None or not matches:
        raise Unauthorized("the API key is not valid", fix="check the key or create one with `mlgov keys create`")
    if not known.active:
        raise Unauthorized(f"the API key {known.principal.name!r} was revoked", fix="ask an admin for a new key")
    return known.principal


def principal_of(row: ApiKey) -> Principal:
    return Principal(key_pk=row.id, name=row.name, role=Role(row.role), owner=row.owner, created_by=row.created_by)


def key_by_pk(session: Session, key_pk: str) -> ApiKey | None:
    return session.get(ApiKey, key_pk)


def minted_by(session: Session, key_pk: str | None, *, limit: int = 64) -> list[str]:
    """The owners of every key up ``key_pk``'s creation chain (its creator's owner first): a key minted by a
    key minted by Alice is still Alice's doing, however many keys lie in between."""
    owners: list[str] = []
    row = key_by_pk(session, key_pk) if key_pk else None
    while row is not None and len(owners) < limit:
        owners.append(row.created_by)
        row = key_by_pk(session, row.created_by_key) if row.created_by_key else None
    return owners


def independent_keys(session: Session, decider: Principal, other_key_pk: str | None, other_owner: str) -> str | None:
    """Why the deciding key and another key are not independent people, following both creation chains."""
    if same_person(decider.owner, other_owner):
        return f"both keys belong to owner {other_owner!r}"
    if any(same_person(o, other_owner) for o in minted_by(session, decider.key_pk) or [decider.created_by]):
        return f"the deciding key was created by {other_owner!r} (directly or through keys it created)"
    if any(same_person(o, decider.owner) for o in minted_by(session, other_key_pk)):
        return f"the other key was created by {decider.owner!r} (directly or through keys it created)"
    return None


def bootstrap_admin_key(db: Database, path: Any) -> str | None:
    """With no active admin key, create one and write it to ``path`` (0600); return the path.

    Race-safe: servers starting at once on a fresh database take turns (an advisory lock on PostgreSQL, the write
    lock on SQLite); the later ones find the first one's admin key and create none. The key is written to a
    private temporary file first (a failure there creates no key) and moved to ``path`` once it is committed, so
    the file never holds a key the database does not have."""
    import os
    from pathlib import Path

    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{new_id()}")
    try:
        with db.session_scope() as session:
            advisory_xact_lock(session, "mlgov.bootstrap_admin")
            stmt = select(ApiKey.id).where(ApiKey.role == Role.admin.value, ApiKey.active.is_(True)).limit(1)
            if session.scalar(stmt) is not None:
                return None
            name = "admin"
            while session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                name = f"admin-{secrets.token_hex(3)}"
            _, full = create_key(session, name, Role.admin.value, actor="system")
            private_dir(p.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(full + "\n")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    os.chmod(p, 0o600)
    return str(p)


# --- FastAPI dependencies -------------------------------------------------------------------------

def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@contextlib.asynccontextmanager
async def database_turn(db: Database, *, write: bool) -> AsyncIterator[Session]:
    """Wait for a database turn, then hold one transaction: committed when the block ends, rolled back if it
    raises (see `get_session`)."""
    gate = db.gate(write=write)
    await gate.acquire()
    session = db.session(write=write)
    inline = not write and db.reads_end_inline
    try:
        try:
            yield session
        except BaseException:
            await _finish(session, commit=False, inline=inline)
            raise
        await _finish(session, commit=True, inline=inline)
    finally:
        gate.release()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request, committed before the response is sent (scope="function").

    The request first receives its whole body, then waits on the event loop for its database turn
    (``Database.gate``), so a waiting request holds neither a worker thread nor a connection and a slow
    client cannot hold a turn; past the wait timeout it gets 503. The transaction ends in a worker thread of
    its own (never queued behind new requests) and only then is the turn handed on.
    """
    db = get_db(request)
    write = request.method not in READ_METHODS
    if write:
        # Cached on the Request, where JSON and raw-body routes read it; form routes parsed it already.
        with contextlib.suppress(RuntimeError):
            await request.body()
    async with database_turn(db, write=write) as session:
        yield session


async def _finish(session: Session, *, commit: bool, inline: bool = False) -> None:
    """End the session in a worker thread of its own; ``inline``: a read session, whose end does no I/O that can
    wait (see `Database.reads_end_inline`), so it is done on the event loop (one thread hop fewer)."""
    if inline:
        finish(session, commit=commit)
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(functools.partial(finish, session, commit=commit),
                                       limiter=anyio.CapacityLimiter(1))


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    """A read transaction for a write route that takes its write turn itself, later and briefly (capture ingest
    parses and stores its files first, then writes its index rows in `database_turn(write=True)`)."""
    async with database_turn(get_db(request), write=False) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


async def end_read(request: Request, session: Session) -> None:
    """End a read session's transaction before the route's write turn (the key check's snapshot is not held over
    the write): on the event loop where that cannot wait (`Database.reads_end_inline`), else in a worker thread."""
    if get_db(request).reads_end_inline:
        session.commit()
    else:
        await anyio.to_thread.run_sync(session.commit)


_Done = TypeVar("_Done")
_Recorded = TypeVar("_Recorded")


async def computed_then_recorded(request: Request, session: Session, compute: Callable[[], _Done],
                                 record: Callable[[Session, _Done], _Recorded]) -> _Recorded:
    """Compute on the route's read session (files stored), end it, then record in a short write turn: a
    computation of minutes must not hold the write turn that capture ingest and every other write wait for."""
    done = await run_in_threadpool(compute)
    await end_read(request, session)
    async with database_turn(get_db(request), write=True) as writer:
        return await run_in_threadpool(record, writer, done)


def _bearer(request: Request) -> str:
    """The key from ``Bearer <key>``, or from HTTP Basic with the key as the password (what MLflow's client sends
    with MLFLOW_TRACKING_USERNAME/PASSWORD; the user name is ignored: the key says who is calling)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("no API key was sent", fix="send `Authorization: Bearer <key>`")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "basic" and token.strip():
        try:
            token = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not base64 of user:password",
                               fix="send `Authorization: Bearer <key>`, or Basic with the key as password") from None
    elif scheme.lower() != "bearer":
        token = ""
    if not token.strip():
        raise Unauthorized("the Authorization header is not a Bearer token", fix="send `Authorization: Bearer <key>`")
    return token.strip()


def require(*roles: Role | frozenset[Role]) -> Callable[..., Principal]:
    """Dependency factory: authenticate and check the role; the allowed set is kept for the route audit."""
    allowed: set[Role] = set()
    for r in roles:
        allowed |= set(r) if isinstance(r, frozenset) else {r}
    frozen = frozenset(allowed)

    def dependency(request: Request, session: SessionDep) -> Principal:
        # The request's own session: the key lookup shares the request's database turn and connection.
        return _admit(request, session, frozen)

    dependency.roles = frozen  # type: ignore[attr-defined]
    return dependency


def require_reading(*roles: Role | frozenset[Role]) -> Callable[..., Principal]:
    """`require` for a write route that holds only a read session (`ReadSessionDep`) and takes its write turn
    itself: the key is checked in the same read transaction the route uses."""
    frozen = require(*roles).roles  # type: ignore[attr-defined]

    def dependency(request: Request, session: ReadSessionDep) -> Principal:
        return _admit(request, session, frozen)

    dependency.roles = frozen  # type: ignore[attr-defined]
    return dependency


def _admit(request: Request, session: Session, allowed: frozenset[Role]) -> Principal:
    principal = authenticate(session, _bearer(request))
    if principal.role not in allowed:
        raise Forbidden(
            f"role {principal.role.value!r} (key {principal.name!r}) may not call {request.method} "
            f"{request.url.path}",
            fix=f"use a key with one of the roles: {', '.join(sorted(r.value for r in allowed))}",
        )
    request.state.principal = principal
    return principal


# The role dependencies routes declare: ``_: Reader`` to check the role only, ``principal: Publisher`` to use it.
Reader = Annotated[Principal, Depends(require(READERS))]
Publisher = Annotated[Principal, Depends(require(PUBLISHERS))]
Decider = Annotated[Principal, Depends(require(DECIDERS))]
Admin = Annotated[Principal, Depends(require(ADMINS))]
Auditor = Annotated[Principal, Depends(require(AUDITORS))]
Ingester = Annotated[Principal, Depends(require(INGESTERS))]
