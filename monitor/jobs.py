"""The monitoring runner: `tick` claims and executes every due schedule, each step in a transaction of its own;
an APScheduler interval job calls it.

Run it as its own process (`mlgov scheduler`) or inside the API (`mlgov serve --with-scheduler`). Several
processes may run at once against one database. Exactly once: a due run is claimed by inserting its execution
row, unique per (schedule, fire time), in a transaction of its own; a second process inserting the same row fails
and moves on. The claimed execution then runs (`schedules.execute`) in one transaction with its alerts and
events; if that transaction cannot commit, the execution is ended as Failed with the reason in a fresh one, so a
claimed execution never stays Pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mlgov.auth import SYSTEM
from mlgov.db import Database, new_id, utcnow
from mlgov.settings import Settings
from mlgov.storage import ObjectStore
from monitor import recurrence, schedules
from monitor.orm import Execution, Schedule

log = logging.getLogger("mlgov.scheduler")
DEFAULT_GRACE = dt.timedelta(hours=1)


def claim(db: Database, schedule_id: str, fire: dt.datetime, start: dt.datetime, end: dt.datetime,
          trigger: str) -> str | None:
    """Insert the execution row in its own transaction; None if another process already claimed it."""
    try:
        with db.session_scope() as s:
            ex = Execution(id=new_id(), schedule_id=schedule_id, scheduled_for=fire, trigger=trigger,
                           status="Pending", window_start=start, window_end=end,
                           worker=f"{socket.gethostname()}:{os.getpid()}", created_at=utcnow())
            s.add(ex)
            s.flush()
            return ex.id
    except IntegrityError:
        return None


def tick(db: Database, store: ObjectStore, now: dt.datetime, grace: dt.timedelta = DEFAULT_GRACE) -> list[str]:
    """Run every due schedule once; the ids of the executions this call claimed and ended. Safe to call from
    several processes at the same time."""
    ran: list[str] = []
    with db.session_scope(write=False) as s:
        due_ids = list(s.scalars(select(Schedule.id).where(Schedule.status == "Scheduled",
                                                            Schedule.next_run_at <= now)))
    for sid in due_ids:
        with db.session_scope() as s:
            sched = s.get(Schedule, sid)
            if sched is None or sched.status != "Scheduled" or sched.next_run_at > now:
                continue
            fire, nxt, skipped = recurrence.due(sched.expression, sched.next_run_at, now, grace)
            sched.next_run_at = nxt
            window = (recurrence.duration(sched.window_start), recurrence.duration(sched.window_end))
        if fire is None:
            continue
        ex_id = claim(db, sid, fire, fire + window[0], fire + window[1], "schedule")
        if ex_id is None:
            continue
        if run_claimed(db, store, sid, ex_id):
            ran.append(ex_id)
        if skipped:
            log.warning("schedule %s: %d missed run(s) coalesced or skipped (grace %s)", sid, skipped, grace)
    return ran


def run_claimed(db: Database, store: ObjectStore, schedule_id: str, execution_id: str) -> bool:
    """Execute a claimed execution in a transaction of its own. If that transaction fails (a database error at the
    final flush or the commit), end the execution as Failed with the reason in a fresh transaction; False if the
    schedule or the execution is gone."""
    try:
        with db.session_scope() as s:
            sched = s.get(Schedule, schedule_id)
            ex = s.get(Execution, execution_id)
            if sched is None or ex is None:
                return False
            schedules.execute(s, store, sched, ex, SYSTEM)
        return True
    except Exception as exc:
        log.exception("execution %s of schedule %s could not be saved; recording it as Failed", execution_id,
                      schedule_id)
        reason = schedules.failure_reason(exc)
    try:
        with db.session_scope() as s:
            return schedules.record_failure(s, execution_id, reason) is not None
    except Exception:
        log.exception("could not record execution %s as Failed; it stays Pending", execution_id)
        return False


def clock(settings: Settings) -> Callable[[], dt.datetime]:
    """Real UTC time, or (for tests and demos) a clock that starts at MLGOV_FAKE_CLOCK_START at the wall-clock
    moment MLGOV_FAKE_CLOCK_ANCHOR and runs MLGOV_FAKE_CLOCK_SPEED times faster — the same in every process."""
    start = settings.fake_clock_start
    if start is None:
        return lambda: dt.datetime.now(dt.UTC)
    anchor, speed = settings.fake_clock_anchor or time.time(), settings.fake_clock_speed
    begin = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    return lambda: begin + dt.timedelta(seconds=(time.time() - anchor) * speed)


def _tick(db: Database, store: ObjectStore, now: Callable[[], dt.datetime], grace: dt.timedelta) -> None:
    try:
        ran = tick(db, store, now(), grace)
        if ran:
            log.info("ran %d execution(s)", len(ran))
    except Exception:
        log.exception("scheduler tick failed")


def _with_tick(s: BaseScheduler, db: Database, store: ObjectStore, settings: Settings) -> BaseScheduler:
    s.add_job(_tick, "interval", seconds=settings.scheduler_interval_s, id="mlgov-monitoring-tick",
              args=[db, store, clock(settings), dt.timedelta(seconds=settings.scheduler_grace_s)],
              max_instances=1, coalesce=True, next_run_time=dt.datetime.now(dt.UTC))
    return s


def background(db: Database, store: ObjectStore, settings: Settings) -> BaseScheduler:
    s = _with_tick(BackgroundScheduler(timezone=dt.UTC), db, store, settings)
    s.start()
    return s


def blocking(db: Database, store: ObjectStore, settings: Settings) -> None:
    _with_tick(BlockingScheduler(timezone=dt.UTC), db, store, settings).start()
