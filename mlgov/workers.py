"""Heartbeats of background workers (the monitoring scheduler today), kept in the database so every replica's
``/readyz`` and API can say whether one is running, whichever process it runs in.

Each worker process writes one row (its instance id: host, pid and a random suffix) on a short interval from a
thread of its own, so a worker busy with a long run still reads alive; ``tick_at`` says when it last finished a
round of work. A worker that stops cleanly stamps ``stopped_at``; one that dies simply stops beating. Knows no
domain: a worker is named by its role.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from pydantic import BaseModel, Field
from sqlalchemy import Float, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mlgov.db import Base, utcnow

SCHEDULER = "scheduler"              # the monitoring scheduler (monitor.jobs): in `mlgov serve` or `mlgov scheduler`
KEEP = dt.timedelta(days=7)          # rows of workers silent for longer are pruned
MIN_ALIVE = dt.timedelta(seconds=30)  # a worker is alive while it beat within max(3 intervals, this)


class Heartbeat(Base):
    __tablename__ = "workers_heartbeats"

    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), index=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    interval_s: Mapped[float] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column()
    beat_at: Mapped[dt.datetime] = mapped_column()
    tick_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class WorkerStatus(BaseModel):
    """Whether any worker of a role is running, across every process sharing the database."""

    alive: bool = Field(description="a worker beat within max(3 × its interval, 30 s) and has not stopped")
    last_tick_at: dt.datetime | None = Field(description="when any worker last finished a round (for the "
                                             "scheduler: looked for due schedules and ran them); null if never")
    instances: int = Field(description="workers alive now (e.g. one per server process and per `mlgov scheduler`)")


def instance_id() -> str:
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _alive(row: Heartbeat, now: dt.datetime) -> bool:
    return row.stopped_at is None and now - row.beat_at <= max(3 * dt.timedelta(seconds=row.interval_s), MIN_ALIVE)


def alive(row: Heartbeat, now: dt.datetime | None = None) -> bool:
    """Whether the worker of ``row`` is running: it beat within max(3 × its interval, 30 s) and has not stopped."""
    return _alive(row, now or utcnow())


def beat(session: Session, role: str, instance: str, interval_s: float, *, ticked: bool = False,
         stopped: bool = False, now: dt.datetime | None = None) -> None:
    """Record that ``instance`` is alive (and, with ``ticked``, that it finished a round; with ``stopped``, that
    it stopped cleanly). Only its own process writes an instance's row."""
    now = now or utcnow()
    row = session.get(Heartbeat, instance)
    if row is None:
        host, pid = socket.gethostname()[:255], os.getpid()
        row = Heartbeat(instance=instance, role=role, host=host, pid=pid, interval_s=interval_s, started_at=now,
                        beat_at=now)
        session.add(row)
        session.execute(delete(Heartbeat).where(Heartbeat.beat_at < now - KEEP))
    row.beat_at = now
    if ticked:
        row.tick_at = now
    if stopped:
        row.stopped_at = now
    session.flush()


def gone(session: Session, instance: str, now: dt.datetime | None = None) -> bool:
    """True if ``instance`` is known and no longer running: it stopped (cleanly, e.g. after SIGTERM) or its beats
    went silent (killed). False for an instance still beating, and for one never seen (nothing to judge by)."""
    row = session.get(Heartbeat, instance)
    return row is not None and not _alive(row, now or utcnow())


def first_alive(session: Session, role: str, now: dt.datetime | None = None) -> str | None:
    """The live instance of ``role`` that sorts first: one of many replicas elected for work that needs doing once
    (all agree while their beats do; a brief disagreement must be harmless)."""
    now = now or utcnow()
    rows = session.scalars(select(Heartbeat).where(Heartbeat.role == role).order_by(Heartbeat.instance))
    return next((r.instance for r in rows if _alive(r, now)), None)


def status(session: Session, role: str, now: dt.datetime | None = None) -> WorkerStatus:
    now = now or utcnow()
    rows = list(session.scalars(select(Heartbeat).where(Heartbeat.role == role)))
    ticks = [r.tick_at for r in rows if r.tick_at is not None]
    alive = sum(_alive(r, now) for r in rows)
    return WorkerStatus(alive=alive > 0, last_tick_at=max(ticks) if ticks else None, instances=alive)
