"""Transactional outbox and signed webhook delivery.

``emit`` writes the event and one delivery row per subscribed webhook in the caller's transaction, so an
action and its notifications commit together. A dispatcher claims due deliveries with a lease (``SKIP
LOCKED`` on PostgreSQL), POSTs them outside any transaction through the outbound policy, and records every
attempt; failures back off exponentially and dead-letter after ``webhook_max_attempts``.

Ordering: the dispatcher numbers each subscription's new deliveries (``sequence``, sent as
``X-Mlgov-Sequence``) in the order they became visible to it (outbox order within what has committed), under
a lock on the subscription's row. Numbering there rather than in ``emit`` keeps request transactions free
of any shared lock (no serialisation or deadlock between concurrent writers), and numbers only what has
committed, so no number is ever skipped by a rolled-back transaction. Only a subscription's lowest
pending delivery is ever claimed, so a failing delivery holds back the later ones of that subscription
while other subscriptions keep flowing; once it is dead-lettered it stops holding back. An admin can
redeliver a dead letter; it goes out with its original sequence number, so a receiver can tell it is late.

Signing secrets are stored encrypted (``mlgov.secrets``); the dispatcher decrypts them to sign.

Wire formats: a subscription is delivered in mlgov's envelope and signature unless it was made through a foreign
protocol's webhook API (MLflow's), whose adapter registers a ``WireFormat`` at composition time: which events it
carries under which names, and how a delivery looks and is signed. The outbox, ordering, retries and dead letters
are the same for every format.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    exists,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from mlgov.audit import canonical
from mlgov.db import BIGINT_PK, Base, Database, new_id, utcnow
from mlgov.errors import Conflict, DomainError, Invalid, NotFound
from mlgov.outbound import OutboundClient, OutboundPolicy, masked_url, safe_url
from mlgov.secrets import SecretBox, is_encrypted
from mlgov.settings import Settings

log = logging.getLogger("mlgov.events")
SIGNATURE_HEADER = "X-Mlgov-Signature"
SEQUENCE_HEADER = "X-Mlgov-Sequence"


class OutboxEvent(Base):
    __tablename__ = "events_outbox"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    payload: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


_QUEUE = insert(cast(Table, OutboxEvent.__table__)).returning(OutboxEvent.__table__.c.id)
_QUEUE_MANY = insert(cast(Table, OutboxEvent.__table__)).returning(OutboxEvent.__table__.c.id,
                                                                   sort_by_parameter_order=True)


class Webhook(Base):
    __tablename__ = "events_webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(Text)   # masked (outbound.masked_url): what every read shows
    sealed_url: Mapped[str] = mapped_column(Text)   # "enc:v1:…": what the dispatcher calls (tokens ride in URLs)
    secret: Mapped[str] = mapped_column(Text)  # "enc:v1:…" (mlgov.secrets); never returned or logged
    events: Mapped[Any] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)   # of its newest delivery
    updated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=utcnow)   # MLflow shows it
    wire_format: Mapped[str] = mapped_column(String(16), default="mlgov", server_default="mlgov")
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)


class Delivery(Base):
    __tablename__ = "events_deliveries"
    __table_args__ = (Index("ix_events_deliveries_due", "status", "next_attempt_at"),
                      UniqueConstraint("webhook_id", "sequence"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("events_webhooks.id", ondelete="CASCADE"), index=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("events_outbox.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)   # per subscription from 1; see _sequence
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt_base: Mapped[int] = mapped_column(Integer, default=0)   # attempts before the latest redelivery
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SinkCursor(Base):
    """How far an external sink (SNS, EventBridge) has published the outbox."""

    __tablename__ = "events_sink_cursors"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_outbox_id: Mapped[int] = mapped_column(BIGINT_PK, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeliveryAttempt(Base):
    __tablename__ = "events_delivery_attempts"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("events_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


EVENT_TYPES = frozenset({
    "model_group.created", "model_group.updated", "model_group.renamed", "model_group.deleted",
    "version.registered", "version.approval_changed", "version.stage_changed", "version.metadata_changed",
    "version.alias_set", "version.alias_removed", "version.drift_baseline_attached", "version.deleted",
    "model_card.created", "model_card.updated", "model_card.deleted",
    "analysis.completed", "execution.completed", "alert.opened", "alert.resolved", "retraining.requested",
})
"""Every event type mlgov emits (a test holds the emitting code to it): subscriptions name these or patterns
matching some of them."""


def matches(patterns: list[str], event_type: str) -> bool:
    return any(p in ("*", event_type) or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class WireFormat:
    """A foreign protocol's webhooks. ``translate`` names an mlgov event in that protocol (None: not carried);
    ``render`` builds the delivery at send time from (delivery id, event, secret)."""

    translate: Callable[[str, dict[str, Any]], str | None]
    render: Callable[[str, OutboxEvent, str], Rendered]


FORMATS: dict[str, WireFormat] = {}


def register_format(name: str, fmt: WireFormat) -> None:
    FORMATS[name] = fmt


_HOOKS = select(Webhook.id, Webhook.events, Webhook.wire_format).where(Webhook.active.is_(True)).order_by(Webhook.id)
# PostgreSQL: insert the outbox row and read the active subscriptions in one statement (a data-modifying CTE); a
# row per hook, or one row with NULL hook columns when there is none.
_QUEUED = _QUEUE.values({c: bindparam(c) for c in ("event_id", "type", "subject", "payload", "created_at")}) \
    .cte("queued")
_QUEUE_WITH_HOOKS = (
    select(_QUEUED.c.id, Webhook.id, Webhook.events, Webhook.wire_format)
    .select_from(_QUEUED.outerjoin(Webhook, Webhook.active.is_(True)))
    .order_by(Webhook.id)
)


def _wanted(wire: str, patterns: list[str], event_type: str, payload: dict[str, Any]) -> bool:
    if wire == "mlgov":
        return matches(patterns, event_type)
    fmt = FORMATS.get(wire)
    name = fmt.translate(event_type, payload) if fmt is not None else None
    return name is not None and name in patterns


def emit(session: Session, event_type: str, subject: str, payload: dict[str, Any],
         to: list[str] | None = None) -> OutboxEvent:
    """Queue an event (and its webhook deliveries) in the caller's transaction; ``to`` addresses given
    webhooks only (e.g. one model group's retraining pipeline) instead of every subscriber."""
    return emit_many(session, event_type, [(subject, payload)], to)[0]


def emit_many(session: Session, event_type: str, events: Sequence[tuple[str, dict[str, Any]]],
              to: list[str] | None = None) -> list[OutboxEvent]:
    """`emit` for several ``(subject, payload)`` of one type, in order: the outbox rows in one statement."""
    now = utcnow()
    evs = [OutboxEvent(event_id=new_id(), type=event_type, subject=subject, payload=payload, created_at=now)
           for subject, payload in events]
    session.flush()   # the caller's pending rows first, as the unit of work would
    # Prebuilt Core inserts (the unit of work cost more than the rows); the events answer, detached, with their ids.
    values = [{"event_id": ev.event_id, "type": event_type, "subject": ev.subject, "payload": ev.payload,
               "created_at": now} for ev in evs]
    conn = session.connection()
    # In id order: inserting a delivery share-locks its webhook row, and the dispatcher locks those rows in id order
    # (_sequence); any other order can deadlock a request against the dispatcher on PostgreSQL.
    hooks: list[tuple[str, Any, str]]
    if conn.dialect.name == "postgresql" and len(evs) == 1:   # one round trip: the row and its subscriptions
        rows = conn.execute(_QUEUE_WITH_HOOKS, values[0]).all()
        evs[0].id = rows[0][0]
        hooks = [(r[1], r[2], r[3]) for r in rows if r[1] is not None]
    else:
        ids = conn.execute(_QUEUE_MANY if len(evs) > 1 else _QUEUE, values).scalars().all()
        for ev, ev_id in zip(evs, ids, strict=True):
            ev.id = ev_id
        hooks = [(r[0], r[1], r[2]) for r in conn.execute(_HOOKS)]
    for hook_id, patterns, wire in hooks:
        for ev in evs:
            if (hook_id in to) if to is not None else _wanted(wire, list(patterns), event_type, ev.payload):
                session.add(Delivery(id=new_id(), webhook_id=hook_id, outbox_id=ev.id, event_type=event_type,
                                     sequence=None, status="pending", attempts=0, attempt_base=0,
                                     next_attempt_at=now))
    session.flush()
    return evs


def envelope(ev: OutboxEvent) -> bytes:
    body = {"id": ev.event_id, "type": ev.type, "subject": ev.subject,
            "created_at": ev.created_at.astimezone(dt.UTC).isoformat(), "data": ev.payload}
    return canonical(body).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- webhook management (service functions used by the kernel router) --------------------------------

def create_webhook(session: Session, *, url: str, secret: str, events: list[str], description: str | None,
                   actor: str, policy: OutboundPolicy, box: SecretBox, wire_format: str = "mlgov",
                   name: str | None = None, kind: str = "webhook") -> Webhook:
    """Subscribe ``url``: checked by the outbound policy now (and again at every send); the URL and secret are
    stored encrypted, the URL also masked for reads. ``kind`` is what the caller calls it in errors (a retraining
    trigger is a webhook underneath, but its user set a "retraining trigger url")."""
    from mlgov import audit

    _check_subscription(policy, url, secret, events, wire_format, kind)
    hook = Webhook(id=new_id(), url=masked_url(url), sealed_url=box.encrypt(url), secret=box.encrypt(secret),
                   events=events, description=description, active=True, created_by=actor, created_at=utcnow(),
                   last_sequence=0, wire_format=wire_format, name=name)
    session.add(hook)
    session.flush()
    audit.record(session, actor=actor, action="webhook.created", subject_type="webhook", subject_id=hook.id,
                 after={"url": safe_url(url), "events": events, "wire_format": wire_format})
    return hook


def _check_subscription(policy: OutboundPolicy, url: str | None, secret: str | None, events: list[str] | None,
                        wire_format: str, kind: str = "webhook") -> None:
    """What a subscription needs, for each part given: an http(s) URL the outbound policy allows, a secret of 16+
    characters, at least one event, and (mlgov's own format; a foreign one checks its names in its adapter) only
    events that can fire."""
    if url is not None and not url.startswith(("http://", "https://")):
        raise Invalid(f"{kind} url {url!r} is not http(s)", fix="give an absolute http:// or https:// URL")
    if secret is not None and len(secret) < 16:
        raise Invalid(f"{kind} secret is shorter than 16 characters", fix="use a random secret of 16+ characters")
    if events is not None and not events:
        raise Invalid("events is empty", fix='subscribe to at least one event type, e.g. ["version.*"] or ["*"]')
    unknown = [p for p in events or () if wire_format == "mlgov" and not any(matches([p], t) for t in EVENT_TYPES)]
    if unknown:
        raise Invalid(f"no event type is or matches {', '.join(repr(p) for p in unknown)}, so it would never fire",
                      fix=f"use '*', a prefix such as 'version.*', or one of: {', '.join(sorted(EVENT_TYPES))}")
    if url is not None:
        policy.check_url(url, f"{kind} url")


def update_webhook(session: Session, webhook_id: str, *, actor: str, policy: OutboundPolicy, box: SecretBox,
                   url: str | None = None, secret: str | None = None, events: list[str] | None = None,
                   description: str | None = None, name: str | None = None) -> Webhook:
    """Change what was given (the URL is checked again; a new secret is stored encrypted); audited."""
    from mlgov import audit

    hook = get_webhook(session, webhook_id)
    if not hook.active:
        raise NotFound(f"webhook {webhook_id!r} was deleted", fix="create a new webhook subscription")
    before = {"url": safe_url(hook.url), "events": hook.events, "name": hook.name, "description": hook.description}
    _check_subscription(policy, url, secret, events, hook.wire_format)
    if url is not None:
        hook.url, hook.sealed_url = masked_url(url), box.encrypt(url)
    if secret is not None:
        hook.secret = box.encrypt(secret)
    if events is not None:
        hook.events = events
    if description is not None:
        hook.description = description
    if name is not None:
        hook.name = name
    hook.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor, action="webhook.updated", subject_type="webhook", subject_id=hook.id,
                 before=before, after={"url": safe_url(hook.url), "events": hook.events, "name": hook.name,
                                       "description": hook.description, "secret_changed": secret is not None})
    return hook


def seal_legacy_secrets(session: Session, box: SecretBox) -> int:
    """Encrypt every secret and URL still stored in plaintext (rows from before migrations 0011 and 0027, which
    could not know the key): run when the server starts, so an unused webhook's secret or tokened URL does not
    stay readable in the database."""
    rows = list(session.scalars(select(Webhook).where(~Webhook.secret.startswith("enc:")
                                                      | ~Webhook.sealed_url.startswith("enc:"))))
    for hook in rows:
        _seal_plaintext(hook, box)
    session.flush()
    return len(rows)


def _seal_plaintext(hook: Webhook, box: SecretBox) -> None:
    """Encrypt the secret and URL where still plaintext (rows from before 0011 and 0027); only those: a value
    sealed with a key since removed must neither stop the server's start nor be touched."""
    if not is_encrypted(hook.secret):
        hook.secret = box.encrypt(hook.secret)
    if not is_encrypted(hook.sealed_url):
        hook.sealed_url = box.encrypt(hook.sealed_url)


def list_webhooks(session: Session, *, wire_format: str | None = None, limit: int | None = 1000,
                  offset: int = 0) -> list[Webhook]:
    """Active subscriptions, oldest first (of one wire format, when given); ``limit`` None: all of them."""
    stmt = select(Webhook).where(Webhook.active.is_(True))
    if wire_format is not None:
        stmt = stmt.where(Webhook.wire_format == wire_format)
    return list(session.scalars(stmt.order_by(Webhook.created_at, Webhook.id).limit(limit).offset(offset)))


def get_webhook(session: Session, webhook_id: str) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook with id {webhook_id!r}", fix="list webhooks with GET /api/v1/webhooks")
    return hook


def delete_webhook(session: Session, webhook_id: str, *, actor: str) -> None:
    from mlgov import audit

    hook = get_webhook(session, webhook_id)
    if not hook.active:   # every door: a second delete (a stale console page) must not audit a change again
        raise NotFound(f"webhook {webhook_id!r} was deleted already", fix="list webhooks with GET /api/v1/webhooks")
    hook.active = False
    session.flush()
    audit.record(session, actor=actor, action="webhook.deactivated", subject_type="webhook", subject_id=hook.id,
                 before={"active": True}, after={"active": False})


def retry_delivery(session: Session, webhook_id: str, delivery_id: str, *, actor: str) -> Delivery:
    """Put a dead letter back in the queue with a fresh attempt budget; it keeps its sequence number."""
    from mlgov import audit

    hook = get_webhook(session, webhook_id)
    d = session.get(Delivery, delivery_id)
    if d is None or d.webhook_id != webhook_id:
        raise NotFound(f"webhook {webhook_id} has no delivery {delivery_id!r}",
                       fix=f"list them with GET /api/v1/webhooks/{webhook_id}/deliveries")
    if d.status != "dead":
        raise Conflict(f"delivery {delivery_id} is {d.status}; only dead-lettered deliveries can be redelivered",
                       fix="wait for pending deliveries; delivered ones need no retry")
    if not hook.active:
        raise Conflict(f"webhook {webhook_id} is deactivated, so its deliveries cannot be redelivered",
                       fix="create a new webhook subscription for this receiver")
    d.status, d.attempt_base, d.next_attempt_at = "pending", d.attempts, utcnow()
    session.flush()
    audit.record(session, actor=actor, action="webhook.delivery_retried", subject_type="webhook",
                 subject_id=webhook_id, before={"delivery": d.id, "status": "dead"},
                 after={"delivery": d.id, "status": "pending", "sequence": d.sequence})
    return d


def delivery_history(session: Session, delivery_id: str) -> list[DeliveryAttempt]:
    return list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                .order_by(DeliveryAttempt.attempt)))


def list_deliveries(
    session: Session, webhook_id: str, limit: int, offset: int
) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    get_webhook(session, webhook_id)
    return _with_attempts(session, list(session.scalars(
        select(Delivery).where(Delivery.webhook_id == webhook_id)
        .order_by(Delivery.created_at.desc(), Delivery.id).limit(limit).offset(offset))))


def _with_attempts(session: Session, rows: list[Delivery]) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    attempts: dict[str, list[DeliveryAttempt]] = {r.id: [] for r in rows}
    if rows:
        for a in session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(list(attempts)))
                                 .order_by(DeliveryAttempt.attempt)):
            attempts[a.delivery_id].append(a)
    return [(r, attempts[r.id]) for r in rows]


@dataclass
class EventDeliveries:
    event: OutboxEvent
    deliveries: list[tuple[Delivery, list[DeliveryAttempt]]]


def event_deliveries(session: Session, event_type: str, subject: str, limit: int = 200) -> list[EventDeliveries]:
    """The newest events of a type about a subject, each with its deliveries and their attempts."""
    evs = list(session.scalars(select(OutboxEvent).where(OutboxEvent.type == event_type, OutboxEvent.subject == subject)
                               .order_by(OutboxEvent.id.desc()).limit(limit)))
    out = {e.id: EventDeliveries(e, []) for e in evs}
    if evs:
        for d, attempts in _with_attempts(session, list(session.scalars(
                select(Delivery).where(Delivery.outbox_id.in_(list(out))).order_by(Delivery.created_at, Delivery.id)))):
            out[d.outbox_id].deliveries.append((d, attempts))
    return list(out.values())


# --- dispatcher ---------------------------------------------------------------------------------------

@dataclass
class _Claim:
    delivery_id: str
    attempt: int
    budget_used: int
    url: str
    secret: str
    event_type: str
    sequence: int
    event: OutboxEvent
    wire_format: str = "mlgov"

    def rendered(self) -> Rendered:
        """The body and headers as they go out now (foreign formats sign a send-time timestamp)."""
        fmt = FORMATS.get(self.wire_format)
        if fmt is not None:
            return fmt.render(self.delivery_id, self.event, self.secret)
        body = envelope(self.event)
        return Rendered(body, {SIGNATURE_HEADER: sign(self.secret, body), "X-Mlgov-Event": self.event_type,
                               "X-Mlgov-Delivery": self.delivery_id, SEQUENCE_HEADER: str(self.sequence)})


def _sequence(s: Session, postgres: bool) -> None:
    """Number committed, unnumbered deliveries per subscription in outbox order, holding the subscription's row
    lock (dispatchers in several processes take these locks in id order, so they cannot deadlock)."""
    hook_ids = sorted(set(s.scalars(select(Delivery.webhook_id).where(Delivery.status == "pending",
                                                                      Delivery.sequence.is_(None)))))
    for hook_id in hook_ids:
        lock = select(Webhook).where(Webhook.id == hook_id)
        hook = s.scalars(lock.with_for_update() if postgres else lock).one()
        fresh = s.scalars(select(Delivery).where(Delivery.webhook_id == hook_id, Delivery.sequence.is_(None))
                          .order_by(Delivery.outbox_id, Delivery.id))
        for d in fresh:
            hook.last_sequence += 1
            d.sequence = hook.last_sequence
    s.flush()


def _claim(db: Database, settings: Settings, box: SecretBox, now: dt.datetime, limit: int) -> list[_Claim]:
    """Lease due deliveries, at most one per subscription: its lowest pending one (in-order delivery)."""
    lease = dt.timedelta(seconds=settings.outbound_connect_timeout_s + 2 * settings.webhook_timeout_s + 30)
    earlier = aliased(Delivery)
    with db.session_scope() as s:
        _sequence(s, db.backend == "postgresql")
        stmt = (select(Delivery).where(
                    Delivery.status == "pending", Delivery.next_attempt_at <= now, Delivery.sequence.is_not(None),
                    ~exists().where(earlier.webhook_id == Delivery.webhook_id, earlier.status == "pending",
                                    earlier.sequence < Delivery.sequence))
                .order_by(Delivery.next_attempt_at).limit(limit))
        if db.backend == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=Delivery)
        claims: list[_Claim] = []
        for d in s.scalars(stmt):
            hook = s.get(Webhook, d.webhook_id)
            ev = s.get(OutboxEvent, d.outbox_id)
            if hook is None or ev is None or not hook.active:
                d.status, d.last_error = "dead", "webhook deactivated"
                continue
            try:
                secret, url = box.decrypt(hook.secret), box.decrypt(hook.sealed_url)
            except DomainError as exc:
                d.last_error = exc.detail   # stays pending: the operator can restore the key
                d.next_attempt_at = now + dt.timedelta(seconds=settings.webhook_backoff_max_s)
                log.error("webhook %s: %s", hook.id, exc.detail)
                continue
            _seal_plaintext(hook, box)
            d.next_attempt_at = now + lease
            d.attempts += 1
            claims.append(_Claim(d.id, d.attempts, d.attempts - d.attempt_base, url, secret, d.event_type,
                                 d.sequence or 0, ev, hook.wire_format))
        return claims


def backoff(settings: Settings, attempt: int) -> float:
    return float(min(settings.webhook_backoff_max_s, settings.webhook_backoff_base_s * (2 ** (attempt - 1))))


def _send(policy: OutboundPolicy, client: OutboundClient, settings: Settings,
          c: _Claim) -> tuple[int | None, str | None, int]:
    """One attempt through the outbound policy (re-checked now); the receiver's body is never stored."""
    start = time.perf_counter()
    out = c.rendered()
    try:
        r = policy.post(c.url, out.body, {"Content-Type": "application/json", **out.headers,
                                          "User-Agent": "mlgov-webhooks/1"}, purpose="webhook url", client=client,
                        read_timeout_s=settings.webhook_timeout_s, max_bytes=0)
        code: int | None = r.status_code
        err = None if 200 <= r.status_code < 300 else f"HTTP {r.status_code} from the receiver"
    except DomainError as exc:   # refused by the policy, timeout, oversize, redirect, connection error
        code, err = exc.extra.get("status_code"), exc.detail[:500]
    return code, err, int((time.perf_counter() - start) * 1000)


def deliver_due(db: Database, settings: Settings, policy: OutboundPolicy, box: SecretBox,
                client: OutboundClient | None = None, now: dt.datetime | None = None, limit: int = 50) -> int:
    """Attempt every due delivery once; returns how many were attempted."""
    now = now or utcnow()
    claims = _claim(db, settings, box, now, limit)
    if not claims:
        return 0
    http = client or policy.client(settings.webhook_timeout_s)
    try:
        for c in claims:
            _record(db, settings, c, *_send(policy, http, settings, c))
    finally:
        if client is None:
            http.close()
    return len(claims)


def _record(db: Database, settings: Settings, c: _Claim, code: int | None, err: str | None, ms: int) -> None:
    with db.session_scope() as s:
        d = s.get(Delivery, c.delivery_id)
        if d is None:
            return
        s.add(DeliveryAttempt(delivery_id=d.id, attempt=c.attempt, at=utcnow(), status_code=code, error=err,
                              duration_ms=ms))
        d.last_status_code, d.last_error = code, err
        if err is None:
            d.status, d.delivered_at = "delivered", utcnow()
        elif c.budget_used >= settings.webhook_max_attempts:
            d.status = "dead"
            log.warning("webhook delivery %s dead after %d attempts: %s", d.id, c.attempt, err)
        else:
            d.next_attempt_at = utcnow() + dt.timedelta(seconds=backoff(settings, c.budget_used))


# --- AWS sinks (optional) -------------------------------------------------------------------------------

AWS_EVENT_PREFIXES = ("alert.", "retraining.")


def _aws_client(settings: Settings, service: Literal["sns", "events"]) -> Any:
    import boto3

    return boto3.client(service, region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


def publish_aws(db: Database, settings: Settings, batch: int = 100) -> int:
    """Publish new alert/retraining events to the configured SNS topic and/or EventBridge bus.

    At least once: the cursor moves only after a batch is accepted; consumers de-duplicate by event id
    (SNS message attribute ``event_id``, EventBridge ``detail.id``)."""
    sinks = [s for s in (("sns", settings.alert_sns_topic_arn), ("eventbridge", settings.alert_eventbridge_bus))
             if s[1]]
    sent = 0
    for sink, target in sinks:
        with db.session_scope() as s:
            cur = s.get(SinkCursor, sink) or SinkCursor(sink=sink, last_outbox_id=0)
            rows = list(s.scalars(select(OutboxEvent).where(OutboxEvent.id > cur.last_outbox_id)
                                  .order_by(OutboxEvent.id).limit(batch)))
            wanted = [r for r in rows if r.type.startswith(AWS_EVENT_PREFIXES)]
            bodies = [(r, envelope(r).decode()) for r in wanted]
            last = rows[-1].id if rows else cur.last_outbox_id
        if not rows:
            continue
        if sink == "sns":
            client = _aws_client(settings, "sns")
            for r, body in bodies:
                client.publish(TopicArn=target, Message=body, Subject=r.type[:100], MessageAttributes={
                    "event_type": {"DataType": "String", "StringValue": r.type},
                    "event_id": {"DataType": "String", "StringValue": r.event_id}})
        else:
            client = _aws_client(settings, "events")
            for i in range(0, len(bodies), 10):
                chunk = bodies[i:i + 10]
                res = client.put_events(Entries=[{"Source": "mlgov", "DetailType": r.type, "Detail": body,
                                                  "EventBusName": target} for r, body in chunk])
                if res.get("FailedEntryCount"):
                    raise RuntimeError(f"EventBridge rejected {res['FailedEntryCount']} event(s)")
        with db.session_scope() as s:
            saved = s.get(SinkCursor, sink)
            if saved is None:
                s.add(SinkCursor(sink=sink, last_outbox_id=last, updated_at=utcnow()))
            else:
                saved.last_outbox_id, saved.updated_at = last, utcnow()
        sent += len(bodies)
    return sent


class Dispatcher:
    """Background thread that drains due deliveries; safe to run in several processes at once."""

    def __init__(self, db: Database, settings: Settings, policy: OutboundPolicy, box: SecretBox) -> None:
        self.db, self.settings, self.policy, self.box = db, settings, policy, box
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlgov-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.settings.webhook_timeout_s + 5)

    def _run(self) -> None:
        with self.policy.client(self.settings.webhook_timeout_s) as client:
            while not self._stop.is_set():
                try:
                    n = deliver_due(self.db, self.settings, self.policy, self.box, client)
                except Exception:
                    log.exception("webhook dispatcher iteration failed")
                    n = 0
                if self.settings.alert_sns_topic_arn or self.settings.alert_eventbridge_bus:
                    try:
                        n += publish_aws(self.db, self.settings)
                    except Exception:
                        log.exception("publishing to SNS/EventBridge failed; will retry")
                if n == 0:
                    self._stop.wait(self.settings.dispatcher_poll_s)
