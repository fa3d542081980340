"""Append-only audit log: an HMAC-keyed hash chain, anchored by signed checkpoints outside the database.

Each event stores ``seq`` (gap-free, assigned under a lock), the previous event's hash and an HMAC-SHA256 (key
outside the database: ``MLGOV_AUDIT_KEY`` or ``<home>/audit.key``) of its canonical JSON, which includes
``prev_hash``. Without the key nobody can recompute the chain after editing a row. Every
``audit_checkpoint_every`` events (after commit), on ``mlgov audit checkpoint`` and when ``mlgov serve`` starts,
a checkpoint ``{seq, head_hash, time, legacy_until}`` signed with the same key is written to the object store;
``verify`` fails when the chain is shorter than, or differs from, the newest checkpoint (deleted newest rows).

Rows written before the chain was keyed (revision 0010) keep ``chain = 1`` (plain SHA-256). They are accepted
only as a prefix of the chain and only up to ``legacy_until`` of a checkpoint, which the first checkpoint after
the upgrade records; the first keyed row's HMAC covers the last legacy hash, so the legacy prefix cannot be
rewritten either. See README "Audit log" for what this does and does not protect against.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Table, and_, event, func, insert, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mlgov.context import request_id_var
from mlgov.db import (
    BIGINT_PK,
    Base,
    Condition,
    advisory_xact_lock,
    chunks,
    equal,
    in_window,
    key_file,
    paginate,
    utcnow,
)
from mlgov.errors import DomainError, NotFound
from mlgov.settings import SettingsError

if TYPE_CHECKING:
    from mlgov.settings import Settings
    from mlgov.storage import ObjectStore

log = logging.getLogger("mlgov.audit")

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x6D6C676F76  # "mlgov"
LEGACY, KEYED = 1, 2
CHECKPOINT_PREFIX = "audit/checkpoints/"


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        Index("ix_audit_events_ts", "ts"),
        Index("ix_audit_events_chain_seq", "chain", "seq"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    ts: Mapped[dt.datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(256))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    chain: Mapped[int] = mapped_column(Integer, default=KEYED, server_default="1")


# --- the key and the anchor ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditChain:
    """What keys and anchors the chain: the HMAC key, the store checkpoints go to, and how often."""

    key: bytes = field(repr=False)
    store: ObjectStore | None = None
    every: int = 100
    accept_new_key: bool = False

    @property
    def fingerprint(self) -> str:
        """Names the key in checkpoints (so a wrong key is reported as such) without revealing it."""
        return hmac.new(self.key, b"mlgov-audit-key-id", hashlib.sha256).hexdigest()[:16]


def load_key(settings: Settings) -> bytes:
    """``MLGOV_AUDIT_KEY``, else ``<home>/audit.key``, created (0600, 256 random bits) on first use."""
    if settings.audit_key is not None:     # Settings refused a short one
        return settings.audit_key.get_secret_value().strip().encode()
    path = settings.audit_key_path
    key_file(path, lambda: secrets.token_hex(32).encode())
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    value = path.read_text().strip()
    if len(value) < 16:
        raise SettingsError(f"the audit key file {path} is empty or too short",
                            fix="restore it from your backup (or set MLGOV_AUDIT_KEY to the key the chain was made "
                                "with)")
    return value.encode()


def chain_for(settings: Settings, store: ObjectStore | None) -> AuditChain:
    return AuditChain(key=load_key(settings), store=store, every=settings.audit_checkpoint_every,
                      accept_new_key=settings.audit_accept_new_key)


_default: AuditChain | None = None


def _chain(session: Session) -> AuditChain:
    """The chain configured on the session's Database (app, CLI); else the process settings' key, no anchor."""
    configured = session.info.get("audit_chain")
    if isinstance(configured, AuditChain):
        return configured
    global _default
    if _default is None:
        from mlgov.settings import get_settings

        _default = chain_for(get_settings(), None)
    return _default


# --- hashing --------------------------------------------------------------------------------------------

def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# One encoder for every event: json.dumps with options builds a new encoder per call, a third of a verify's time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(payload: Any) -> str:
    return _CANONICAL.encode(payload)


# The hashed fields, in the order verify selects them.
_HASHED = ("seq", "ts", "actor", "action", "subject_type", "subject_id", "before", "after", "request_id",
           "prev_hash")


def _content(ev: Any) -> dict[str, Any]:
    """The hashed content of an event: an ``AuditEvent`` or a row of verify's column select."""
    return {
        "seq": ev.seq,
        "ts": _ts(ev.ts),
        "actor": ev.actor,
        "action": ev.action,
        "subject_type": ev.subject_type,
        "subject_id": ev.subject_id,
        "before": ev.before,
        "after": ev.after,
        "request_id": ev.request_id,
        "prev_hash": ev.prev_hash,
    }


def compute_hash(ev: Any, key: bytes | None = None) -> str:
    """HMAC-SHA256 with the chain key; plain SHA-256 (``key=None``) only for legacy rows."""
    body = canonical(_content(ev)).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.digest(key, body, "sha256").hex()


_COLUMNS = (*_HASHED, "hash", "chain")
_APPEND = insert(cast(Table, AuditEvent.__table__))


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(canonical(value))


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append an event in the caller's transaction (it commits or rolls back with the action)."""
    return record_many(session, [Entry(actor, action, subject_type, str(subject_id), before, after,
                                       request_id_var.get())])[0]


@dataclass(frozen=True)
class Entry:
    """One event of `record_many`; ``request_id`` is the request that caused it (a group commit writes several
    requests' events in one transaction)."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    before: Any = None
    after: Any = None
    request_id: str | None = None


def record_many(session: Session, entries: Sequence[Entry]) -> list[AuditEvent]:
    """Append events in order in the caller's transaction, under one hold of the chain lock (one read of the head,
    one insert)."""
    chain = _chain(session)
    session.flush()   # the caller's pending rows before the chain lock, which is then held for the append alone
    advisory_xact_lock(session, _PG_AUDIT_LOCK)   # appenders in turn, so seq/prev_hash form one chain
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    if last:
        check_tip(session, chain, seq, prev)
    events = []
    for e in entries:
        seq += 1
        ev = AuditEvent(seq=seq, ts=utcnow(), actor=e.actor, action=e.action, subject_type=e.subject_type,
                        subject_id=e.subject_id, before=_jsonable(e.before), after=_jsonable(e.after),
                        request_id=e.request_id, prev_hash=prev, chain=KEYED)
        ev.hash = prev = compute_hash(ev, chain.key)
        events.append(ev)
    if not events:
        return events
    _SIGNED_TIP[chain.fingerprint] = events[-1].hash
    # A prebuilt Core insert of the same values (the unit of work cost more than the append); the events answer,
    # detached.
    session.connection().execute(_APPEND, [{c: getattr(ev, c) for c in _COLUMNS} for ev in events])
    due = [ev for ev in events if ev.seq % chain.every == 0]
    if chain.store is not None and due:
        problem = _disagrees_with_checkpoint(session, chain)
        if problem:
            log.error("not writing an audit checkpoint at seq %s: %s (run `mlgov audit verify`)", due[-1].seq,
                      problem)
        else:
            # Written only once the event is committed: a checkpoint of a rolled-back head would be a false alarm.
            session.info["audit_checkpoint_due"] = (chain, due[-1].seq, due[-1].hash, _legacy_until(session))
    return events


class WrongAuditKey(DomainError):
    """This process's audit key did not sign the log's newest event: what it appended would read as tampering
    from there on, and no re-chain can mend that."""

    status, title = 500, "Audit key mismatch"


_SIGNED_TIP: dict[str, str] = {}
"""Per key fingerprint, the hash of the newest event this process checked or wrote: an append after its own
needs no second look."""


def check_tip(session: Session, chain: AuditChain | None = None, seq: int | None = None,
              tip_hash: str | None = None) -> None:
    """WrongAuditKey unless the log's newest keyed event (``seq``/``tip_hash``: as the caller read it) was signed
    with ``chain``'s key. A process started without MLGOV_AUDIT_KEY beside others made a key of its own, and
    its first event broke the chain for good (an operator's trial)."""
    chain = chain or _chain(session)
    if seq is None:
        last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
                               ).first()
        if last is None:
            return
        seq, tip_hash = int(last[0]), str(last[1])
    if chain.accept_new_key or _SIGNED_TIP.get(chain.fingerprint) == tip_hash:
        return
    tip = session.execute(select(*[getattr(AuditEvent, c) for c in _HASHED], AuditEvent.chain)
                          .where(AuditEvent.seq == seq)).one()
    if tip.chain == KEYED and compute_hash(tip, chain.key) != tip_hash:
        raise WrongAuditKey(
            f"the audit log's newest event (seq {seq}) does not verify with this process's audit key "
            f"({chain.fingerprint}): another process signed it with another key, or the row was edited; writing "
            "would extend a broken chain, so nothing was written",
            fix="give every process the same key (MLGOV_AUDIT_KEY, or the same <home>/audit.key) and run `mlgov "
                "audit verify`; only if the key is lost for good, set MLGOV_AUDIT_ACCEPT_NEW_KEY=true (verify then "
                "reports the break)")
    _SIGNED_TIP[chain.fingerprint] = str(tip_hash)


def _legacy_until(session: Session) -> int:
    return int(session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.chain == LEGACY)) or 0)


@event.listens_for(Session, "after_commit")
def _checkpoint_after_commit(session: Session) -> None:
    due = session.info.pop("audit_checkpoint_due", None)
    if due is None:
        return
    chain, seq, head_hash, legacy_until = due
    try:
        _put_checkpoint(chain, seq, head_hash, legacy_until)
    except Exception:  # the action is committed; the next checkpoint will cover it
        log.exception("could not write the audit checkpoint for seq %s; the next one will cover it", seq)


@event.listens_for(Session, "after_rollback")
def _no_checkpoint_after_rollback(session: Session) -> None:
    session.info.pop("audit_checkpoint_due", None)


# --- checkpoints ----------------------------------------------------------------------------------------
# Each checkpoint is kept as its own object (never overwritten, so a rewritten chain cannot replace the old
# anchor at the same seq) and copied to ``latest.json``, the one object ``verify`` reads.

LATEST = f"{CHECKPOINT_PREFIX}latest.json"


def _sign(chain: AuditChain, payload: dict[str, Any]) -> str:
    return hmac.new(chain.key, canonical(payload).encode(), hashlib.sha256).hexdigest()


class CheckpointRefused(RuntimeError):
    """The chain in the database disagrees with the newest checkpoint; anchoring it would hide tampering."""


def write_checkpoint(session: Session, chain: AuditChain | None = None) -> dict[str, Any]:
    """Sign the committed head (seq, hash, time, legacy boundary) and put it in the object store, unless the
    database disagrees with the newest checkpoint (then a new anchor would launder a truncation)."""
    chain = chain or _chain(session)
    if chain.store is None:
        raise CheckpointRefused("no object store is configured for audit checkpoints")
    problem = _disagrees_with_checkpoint(session, chain)
    if problem:
        raise CheckpointRefused(f"{problem}; run `mlgov audit verify` and investigate before anchoring again")
    head = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    return _put_checkpoint(chain, seq, head_hash, _legacy_until(session))


def _put_checkpoint(chain: AuditChain, seq: int, head_hash: str, legacy_until: int) -> dict[str, Any]:
    assert chain.store is not None
    now = utcnow()
    payload = {"seq": seq, "head_hash": head_hash, "time": _ts(now), "legacy_until": legacy_until,
               "key": chain.fingerprint}
    doc = {**payload, "signature": _sign(chain, payload)}
    body = json.dumps(doc).encode()
    chain.store.put(f"{CHECKPOINT_PREFIX}{seq:020d}-{now:%Y%m%dT%H%M%S%f}.json", body, "application/json")
    current, _ = newest_checkpoint(chain)
    if current is None or int(current.get("seq", -1)) <= seq:  # concurrent writers: never move latest backwards
        chain.store.put(LATEST, body, "application/json")
    return doc


def _disagrees_with_checkpoint(session: Session, chain: AuditChain) -> str | None:
    """Cheap check (one object read, one indexed row) that the newest checkpoint's head is still in the chain."""
    checkpoint, problem = newest_checkpoint(chain)
    if problem or checkpoint is None:
        return problem
    seq = int(checkpoint["seq"])
    if seq == 0:
        return None
    stored = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))
    if stored is None:
        return f"event seq {seq} of the checkpoint of {checkpoint['time']} is missing from the database"
    if not hmac.compare_digest(stored, str(checkpoint["head_hash"])):
        return f"event seq {seq} differs from the checkpoint of {checkpoint['time']}"
    return None


def newest_checkpoint(chain: AuditChain) -> tuple[dict[str, Any] | None, str | None]:
    """The newest checkpoint in the store and, if it cannot be trusted, why."""
    if chain.store is None:
        return None, None
    try:
        raw = chain.store.get(LATEST)
    except NotFound:
        if next(iter(chain.store.list(CHECKPOINT_PREFIX)), None) is not None:
            return None, f"{LATEST} was deleted from the object store while older checkpoints remain"
        return None, None
    try:
        doc = json.loads(raw)
        payload = {k: doc[k] for k in ("seq", "head_hash", "time", "legacy_until", "key")}
    except (ValueError, KeyError, TypeError):
        return None, f"{LATEST} is not a valid checkpoint document"
    if payload["key"] != chain.fingerprint:
        return doc, (f"the newest checkpoint was signed with another audit key ({payload['key']}, this server "
                     f"uses {chain.fingerprint}): MLGOV_AUDIT_KEY or <home>/audit.key was changed or lost")
    if not _signed(chain, doc):
        return doc, "the newest checkpoint has an invalid signature: it was forged or altered"
    newer = _newer_than(chain, int(payload["seq"]))
    if newer is not None:   # an older (validly signed) checkpoint was copied over latest.json to hide a truncation
        name, found = newer
        return found, (f"{LATEST} (seq {payload['seq']}) is older than the signed checkpoint {name} (seq "
                       f"{found['seq']}): it was rolled back")
    return doc, None


def _signed(chain: AuditChain, doc: dict[str, Any]) -> bool:
    try:
        payload = {k: doc[k] for k in ("seq", "head_hash", "time", "legacy_until", "key")}
    except (KeyError, TypeError):
        return False
    return hmac.compare_digest(str(doc.get("signature", "")), _sign(chain, payload))


def _newer_than(chain: AuditChain, seq: int) -> tuple[str, dict[str, Any]] | None:
    """The highest validly signed checkpoint object above ``seq`` (each is kept under its own, never overwritten
    name, ``<seq:020d>-<time>.json``), or None. Forged names are skipped: only the signature counts."""
    assert chain.store is not None
    names = sorted((n for n in chain.store.list(CHECKPOINT_PREFIX) if n != LATEST), reverse=True)
    for name in names:
        try:
            if int(name[len(CHECKPOINT_PREFIX):][:20]) <= seq:
                return None
            doc = json.loads(chain.store.get(name))
        except (ValueError, NotFound):
            continue
        if isinstance(doc, dict) and _signed(chain, doc) and int(doc["seq"]) > seq:
            return name, doc
    return None


SUPERSEDED_PREFIX = "audit/superseded-checkpoints/"


def reanchor_after_restore(session: Session, *, actor: str, reason: str) -> dict[str, Any]:
    """After the database was restored from a backup older than the newest checkpoint (verify then reports a
    truncation, and checkpoints are refused forever), set aside the checkpoints the restored chain does not
    reach or contradicts, and anchor it again: those checkpoint objects move to ``SUPERSEDED_PREFIX`` (kept as
    evidence of what was lost), one ``audit.reanchored`` event records each one's seq, head hash and time and
    the reason, and a fresh checkpoint is signed. Refused while the chain in the database is itself broken
    (an edit or a gap is tampering, not a restore). Needs the audit key and the object store, which an attacker
    holding only the database does not have."""
    chain = _chain(session)
    if chain.store is None:
        raise CheckpointRefused("no object store is configured for audit checkpoints")
    result = verify(session)
    inner = [p for p in result.get("problems", []) if p.get("id") is not None]
    if inner:
        raise CheckpointRefused(f"the chain in the database is broken at seq {inner[0]['seq']} "
                                f"({inner[0]['reason']}): that is not a restore; investigate it")
    hashes = {seq: digest for seq, digest in session.execute(select(AuditEvent.seq, AuditEvent.hash))}
    superseded: list[dict[str, Any]] = []
    moved: list[str] = []
    for name in sorted(chain.store.list(CHECKPOINT_PREFIX)):
        try:
            doc = json.loads(chain.store.get(name))
        except (ValueError, NotFound):
            continue
        if not isinstance(doc, dict) or not _signed(chain, doc):
            continue
        seq = int(doc["seq"])
        if seq and hashes.get(seq) != doc["head_hash"]:
            if name != LATEST:
                superseded.append({k: doc[k] for k in ("seq", "head_hash", "time")})
            moved.append(name)
    if not moved:
        raise CheckpointRefused("every checkpoint agrees with the database: nothing to re-anchor")
    stamp = f"{utcnow():%Y%m%dT%H%M%S%f}"
    for name in moved:
        if name != LATEST:
            chain.store.put(f"{SUPERSEDED_PREFIX}{stamp}/{name[len(CHECKPOINT_PREFIX):]}", chain.store.get(name),
                            "application/json")
        chain.store.delete(name)
    record(session, actor=actor, action="audit.reanchored", subject_type="audit", subject_id="checkpoints",
           after={"reason": reason, "database_head_seq": result.get("head_seq"),
                  "superseded": superseded, "kept_under": f"{SUPERSEDED_PREFIX}{stamp}/"})
    session.flush()
    head = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    assert head is not None
    return _put_checkpoint(chain, int(head[0]), str(head[1]), _legacy_until(session))


# --- verification ---------------------------------------------------------------------------------------

def _iter_events(session: Session, batch: int = 5000) -> Iterator[Any]:
    """The chain in seq order as plain rows (no ORM objects: building them was half of a verify's time)."""
    cols = [getattr(AuditEvent, name) for name in ("id", "chain", "hash", *_HASHED)]
    last = 0
    while True:
        rows = session.execute(select(*cols).where(AuditEvent.seq > last).order_by(AuditEvent.seq)
                               .limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def altered(session: Session, events: Iterable[AuditEvent]) -> set[int]:
    """The seqs of ``events`` whose content no longer matches their own hash: modified after they were written
    (what `verify` says of them, without walking the whole log). A report comparing tables with these events
    must not take an altered event for the record."""
    events = list(events)
    chain = _chain(session)
    legacy_until = 0   # verify's rule: an unkeyed row is genuine only before every keyed row and the boundary
    if any(ev.chain == LEGACY for ev in events):   # the newest checkpoint recorded; else anyone could re-hash it
        checkpoint, problem = newest_checkpoint(chain)
        first_keyed = session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.chain != LEGACY))
        legacy_until = min(int(checkpoint["legacy_until"]) if checkpoint and not problem else 0,
                           first_keyed - 1 if first_keyed else 1 << 62)

    def intact(ev: AuditEvent) -> bool:
        if ev.chain == LEGACY:
            return ev.seq <= legacy_until and compute_hash(ev) == ev.hash
        return hmac.compare_digest(compute_hash(ev, chain.key), ev.hash)

    return {ev.seq for ev in events if not intact(ev)}


def verify(session: Session) -> dict[str, Any]:
    """Walk the chain in seq order and report every event that does not fit, and why; then compare the head
    with the newest signed checkpoint (catches deleted newest rows and a chain rebuilt from some point on).

    After a break the walk re-anchors on the stored hash, so one edit and one deletion show as two problems.
    """
    chain = _chain(session)
    checkpoint, cp_problem = newest_checkpoint(chain)
    legacy_until = int(checkpoint["legacy_until"]) if checkpoint and not cp_problem else 0
    cp_seq = int(checkpoint["seq"]) if checkpoint and not cp_problem else None
    cp_hash_seen: str | None = None
    checked = legacy = 0
    prev_hash, expected_seq = GENESIS, 1
    keyed_seen = False
    keyed = keyed_unverified = 0
    problems: list[dict[str, Any]] = []
    for ev in _iter_events(session):
        checked += 1
        if ev.seq != expected_seq:
            problems.append(_bad(ev, f"sequence gap: expected seq {expected_seq}, found {ev.seq} "
                                     f"({ev.seq - expected_seq} event(s) deleted before this one)"))
        elif ev.prev_hash != prev_hash:
            problems.append(_bad(ev, "prev_hash does not match the previous event's hash "
                                     "(the previous event was altered or replaced)"))
        if ev.chain == LEGACY:
            legacy += 1
            if keyed_seen:
                problems.append(_bad(ev, "unkeyed (legacy) hash after keyed events: the row was rewritten "
                                         "without the audit key"))
            elif ev.seq > legacy_until:
                problems.append(_bad(ev, "unkeyed (legacy) hash beyond the legacy boundary recorded in the "
                                         f"newest checkpoint (seq {legacy_until}); rows written since the "
                                         "upgrade are always keyed, so this row was rewritten without the key",
                                     fix="if this database was just upgraded, run `mlgov audit checkpoint` once "
                                         "to record where the legacy rows end"))
            elif compute_hash(ev) != ev.hash:
                problems.append(_bad(ev, "content hash mismatch: this event was modified after it was written"))
        else:
            keyed_seen = True
            keyed += 1
            if not hmac.compare_digest(compute_hash(ev, chain.key), ev.hash):
                keyed_unverified += 1
                problems.append(_bad(ev, "content hash mismatch: this event was modified after it was written "
                                         "(or the chain was recomputed without the audit key)"))
        if ev.seq == cp_seq:
            cp_hash_seen = ev.hash
        prev_hash, expected_seq = ev.hash, ev.seq + 1
    head_seq = expected_seq - 1
    if cp_problem:
        problems.append({"id": None, "seq": checkpoint["seq"] if checkpoint else None, "reason": cp_problem})
    elif checkpoint is not None and cp_seq:
        if head_seq < cp_seq or cp_hash_seen is None:
            problems.append({"id": None, "seq": cp_seq, "reason": (
                f"the chain ends at seq {head_seq} but the checkpoint of {checkpoint['time']} recorded seq "
                f"{cp_seq}: events after seq {head_seq} were deleted (truncation)")})
        elif not hmac.compare_digest(cp_hash_seen, str(checkpoint["head_hash"])):
            problems.append({"id": None, "seq": cp_seq, "reason": (
                f"event seq {cp_seq} differs from the checkpoint of {checkpoint['time']}: the chain up to it "
                "was rewritten")})
    anchor = None if checkpoint is None else {k: checkpoint.get(k) for k in ("seq", "head_hash", "time")}
    base = {"checked": checked, "legacy_events": legacy, "checkpoint": anchor,
            "anchored": chain.store is not None and checkpoint is not None}
    if not problems:
        return {"ok": True, **base, "head_seq": head_seq, "head_hash": prev_hash}
    first = problems[0]
    reason = first["reason"]
    signer = checkpoint.get("key") if checkpoint else None
    if (signer and signer != chain.fingerprint) or (keyed > 1 and keyed_unverified == keyed):
        # not one keyed event verifies: the key is the likelier culprit than an edit of every row
        reason = (f"this process's audit key ({chain.fingerprint}) is not the key that signed the log"
                  + (f" ({signer}, per the newest checkpoint)" if signer and signer != chain.fingerprint else
                     f": none of its {keyed} keyed events verifies with it") +
                  "; run verify with the servers' key (MLGOV_AUDIT_KEY or their <home>/audit.key) before "
                  "reading the problems below as tampering")
        problems.insert(0, {"id": None, "seq": None, "reason": reason})
    return {"ok": False, **base, "first_bad_id": first["id"], "first_bad_seq": first["seq"],
            "reason": reason, "problems": problems}


def _bad(ev: Any, reason: str, fix: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ev.id, "seq": ev.seq, "reason": reason}
    if fix:
        out["fix"] = fix
    return out


def query(
    session: Session,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    subject_under: str | None = None,
    names: Sequence[tuple[str, dt.datetime, dt.datetime | None]] | None = None,
    newest_first: bool = False,
) -> tuple[list[AuditEvent], int]:
    """``subject_under``: the subject itself and everything below it (``churn`` and ``churn/3``). ``names``: the
    same for each name a thing had, while it had it (a renamed model group's history lies under its old names;
    events under its name from before it existed are another group's)."""
    def below(name: str) -> Any:
        return or_(AuditEvent.subject_id == name, AuditEvent.subject_id.startswith(name + "/", autoescape=True))

    under = below(subject_under) if subject_under else None
    if names:
        under = or_(*(and_(below(name), *(c for c in in_window(AuditEvent.ts, since_, until_) if c is not None))
                      for name, since_, until_ in names))
    order = AuditEvent.seq.desc() if newest_first else AuditEvent.seq
    return paginate(session, select(AuditEvent), order, limit=limit, offset=offset, where=[
        *equal((AuditEvent.subject_type, subject_type), (AuditEvent.subject_id, subject_id), (AuditEvent.actor, actor)),
        _action_is(action), *in_window(AuditEvent.ts, since, until), under])


def events_of(session: Session, subject_type: str, subject_ids: Sequence[str],
              action: str | tuple[str, ...]) -> list[AuditEvent]:
    """Every ``action`` event (``*`` a wildcard; a tuple, any of those exact actions) on any of the subjects, oldest
    first: one query per 500 subjects (a page of versions' attachments), not one per subject."""
    out: list[AuditEvent] = []
    where = [AuditEvent.subject_type == subject_type, _action_is(action)]
    for part in chunks(subject_ids):
        out.extend(session.scalars(select(AuditEvent).where(*(c for c in where if c is not None),
                                                            AuditEvent.subject_id.in_(part))
                                   .order_by(AuditEvent.seq)))
    return sorted(out, key=lambda e: e.seq)


def _action_is(action: str | tuple[str, ...] | None) -> Condition:
    """``*`` is a wildcard (``version.*``: every version action); without one the action matches exactly."""
    if not action:
        return None
    if isinstance(action, tuple):
        return AuditEvent.action.in_(action)
    return AuditEvent.action.like(action.replace("*", "%")) if "*" in action else AuditEvent.action == action
