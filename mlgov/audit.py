"""Append-only, hash-chained audit log.

Each event stores ``seq`` (gap-free, assigned under a lock), the previous event's hash and the SHA-256 of
its own canonical JSON. Editing a row breaks its hash; deleting one breaks ``seq`` continuity and the next
row's ``prev_hash``. Removing the newest rows can only be caught against an anchor kept elsewhere, so
``verify`` returns the head hash for auditors to record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from mlgov.context import request_id_var
from mlgov.db import BIGINT_PK, Base, paginate, utcnow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x6D6C676F76  # "mlgov"


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        Index("ix_audit_events_ts", "ts"),
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


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _content(ev: AuditEvent) -> dict[str, Any]:
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


def compute_hash(ev: AuditEvent) -> str:
    return hashlib.sha256(canonical(_content(ev)).encode()).hexdigest()


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
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appenders so seq/prev_hash form one chain; released at commit/rollback.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    ev = AuditEvent(
        seq=seq,
        ts=utcnow(),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        before=_jsonable(before),
        after=_jsonable(after),
        request_id=request_id_var.get(),
        prev_hash=prev,
    )
    ev.hash = compute_hash(ev)
    session.add(ev)
    session.flush()
    return ev


def _iter_events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq)
                                    .limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> dict[str, Any]:
    """Walk the chain in seq order and report every event that does not fit, and why.

    After a break the walk re-anchors on the stored hash, so one edit and one deletion show as two problems.
    """
    checked = 0
    prev_hash, expected_seq = GENESIS, 1
    problems: list[dict[str, Any]] = []
    for ev in _iter_events(session):
        checked += 1
        if ev.seq != expected_seq:
            problems.append(_bad(ev, f"sequence gap: expected seq {expected_seq}, found {ev.seq} "
                                     f"({ev.seq - expected_seq} event(s) deleted before this one)"))
        elif ev.prev_hash != prev_hash:
            problems.append(_bad(ev, "prev_hash does not match the previous event's hash "
                                     "(the previous event was altered or replaced)"))
        if compute_hash(ev) != ev.hash:
            problems.append(_bad(ev, "content hash mismatch: this event was modified after it was written"))
        prev_hash, expected_seq = ev.hash, ev.seq + 1
    if not problems:
        return {"ok": True, "checked": checked, "head_seq": expected_seq - 1, "head_hash": prev_hash}
    first = problems[0]
    return {"ok": False, "checked": checked, "first_bad_id": first["id"], "reason": first["reason"],
            "problems": problems}


def _bad(ev: AuditEvent, reason: str) -> dict[str, Any]:
    return {"id": ev.id, "seq": ev.seq, "reason": reason}


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
) -> tuple[list[AuditEvent], int]:
    stmt = select(AuditEvent)
    if subject_type:
        stmt = stmt.where(AuditEvent.subject_type == subject_type)
    if subject_id:
        stmt = stmt.where(AuditEvent.subject_id == subject_id)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if action:
        stmt = stmt.where(AuditEvent.action.like(action.replace("*", "%")) if "*" in action
                          else AuditEvent.action == action)
    if since:
        stmt = stmt.where(AuditEvent.ts >= since)
    if until:
        stmt = stmt.where(AuditEvent.ts < until)
    return paginate(session, stmt, AuditEvent.seq, limit=limit, offset=offset)
