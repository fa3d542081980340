"""The monitoring scheduler: an APScheduler interval job that runs `schedules.tick`.

Run it as its own process (`mlgov scheduler`) or inside the API (`mlgov serve --with-scheduler`). Several
processes may run at once against one database: each due run is claimed by a unique execution row.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from mlgov.db import Database
from mlgov.settings import Settings
from mlgov.storage import ObjectStore
from monitor import schedules

log = logging.getLogger("mlgov.scheduler")


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
        ran = schedules.tick(db, store, now(), grace)
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
