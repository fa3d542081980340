"""The monitoring runner: `tick` claims and executes every due schedule, each step in a transaction of its own;
a `Ticker` calls it every ``MLGOV_SCHEDULER_INTERVAL_S`` seconds.

It runs inside every `mlgov serve` process by default (``MLGOV_SCHEDULER=false`` or `--no-scheduler` turn it
off) and as its own process (`mlgov scheduler`). Several processes may run at once against one database. Exactly
once: a due run is claimed by inserting its execution row, unique per (schedule, fire time), in a transaction of
its own; a second process inserting the same row fails and moves on. The claimed execution's analysis is then
computed on a read session (`schedules.compute_run`), and recorded (`schedules.record_run`) in one short transaction
with its alerts and events; if that transaction cannot commit, the execution is ended as Failed with the reason in a
fresh one, so a claimed execution never stays Pending.

Stopping (SIGTERM): the run in progress finishes first. A claimer killed mid-run (a pod past its grace period,
an OOM kill) leaves its execution Pending — its transaction rolls back, nothing of the run is kept — with its
instance id in ``worker``; once that instance's heartbeat reads stopped or silent, another ticker takes the claim
over with a compare-and-set on (status Pending, worker) and runs it. A run records only if its execution is still
Pending and claimed by the worker that computed it, holding the row locked (``FOR UPDATE``) while it records: an
execution taken over mid-run is recorded once, by its new claimer.

Every ticker records heartbeats (``mlgov.workers``), so ``/readyz`` and ``GET /monitoring-schedules`` say whether a
scheduler is running anywhere; it logs one line per run, nothing when there is nothing to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from mlgov import workers
from mlgov.auth import SYSTEM
from mlgov.db import Database, new_id, utcnow
from mlgov.errors import DomainError, NotFound
from mlgov.settings import Settings
from mlgov.storage import ObjectStore
from monitor import definitions, recurrence, schedules, service
from monitor.errors import PartitionGone
from monitor.orm import CaptureBatch, Endpoint, Execution, Schedule
from monitor.service import compaction

log = logging.getLogger("mlgov.scheduler")
DEFAULT_GRACE = dt.timedelta(hours=1)
TAKE_OVER_EVERY_S = 10.0   # how often a ticker looks for claims left by gone claimers (a scan of Pending runs)
COMPACT_EVERY_S = 60.0     # how often a ticker compacts settled capture hours (`compaction`)
COMPACT_HOURS = 24         # endpoint-hours compacted per pass at most (the rest wait for the next pass)
COMPACT_LOOKBACK = dt.timedelta(days=2)   # hours a pass looks back over (older ones: `mlgov capture compact`)
SWEEP_EVERY_S = 3600.0     # how often a ticker deletes capture files no batch refers to (`sweep`)


def claim(db: Database, schedule_id: str, fire: dt.datetime, start: dt.datetime, end: dt.datetime,
          trigger: str, worker: str | None = None) -> str | None:
    """Insert the execution row in its own transaction; None if another process already claimed it. ``worker``
    names the claimer (a ticker's heartbeat instance, so a dead claimer's runs can be taken over)."""
    try:
        with db.session_scope() as s:
            ex = Execution(id=new_id(), schedule_id=schedule_id, scheduled_for=fire, trigger=trigger,
                           status="Pending", window_start=start, window_end=end,
                           worker=worker or f"{socket.gethostname()}:{os.getpid()}", created_at=utcnow())
            s.add(ex)
            s.flush()
            return ex.id
    except IntegrityError:
        return None


def take_over(db: Database, store: ObjectStore, worker: str) -> list[str]:
    """Run the scheduled executions whose claimer is gone (its heartbeat stopped or went silent) while they were
    still Pending; the ids of those this call took over and ended."""
    with db.session_scope(write=False) as s:
        pending = list(s.execute(select(Execution.id, Execution.schedule_id, Execution.worker).where(
            Execution.status == "Pending", Execution.trigger == "schedule", Execution.worker != worker)))
        orphans = [(ex_id, sid, old) for ex_id, sid, old in pending if old and workers.gone(s, old)]
    ran: list[str] = []
    for ex_id, sid, old in orphans:
        with db.session_scope() as s:   # compare-and-set: waits while the old claimer's run still holds the row
            taken = cast(CursorResult[Any], s.execute(
                update(Execution).where(Execution.id == ex_id, Execution.status == "Pending", Execution.worker == old)
                .values(worker=worker), execution_options={"synchronize_session": False})).rowcount
        if taken != 1:
            continue
        log.warning("execution %s of schedule %s: its claimer %s is gone; running it here", ex_id, sid, old)
        if run_claimed(db, store, sid, ex_id, worker):
            ran.append(ex_id)
    return ran


def tick(db: Database, store: ObjectStore, now: dt.datetime, grace: dt.timedelta = DEFAULT_GRACE,
         worker: str | None = None) -> list[str]:
    """Run every due schedule once; the ids of the executions this call claimed and ended. Safe to call from
    several processes at the same time. A schedule with no fire time left (a one-time NOW schedule after its run,
    a cron whose years are over) is stopped. ``worker`` names the claimer (a ticker's heartbeat instance)."""
    ran: list[str] = []
    with db.session_scope(write=False) as s:
        due_ids = list(s.scalars(select(Schedule.id).where(Schedule.status == "Scheduled",
                                                            Schedule.next_run_at <= now)))
    for sid in due_ids:
        try:
            ex_id = _tick_one(db, store, sid, now, grace, worker)
        except Exception:   # one schedule that cannot run must not hold up the others due in this tick
            log.exception("schedule %s: its turn in this tick failed", sid)
            continue
        if ex_id is not None:
            ran.append(ex_id)
    return ran


def _tick_one(db: Database, store: ObjectStore, sid: str, now: dt.datetime, grace: dt.timedelta,
              worker: str | None) -> str | None:
    """One due schedule's turn in `tick`: the id of the execution it claimed and ended, if any."""
    with db.session_scope() as s:
        sched = s.get(Schedule, sid)
        if sched is None or sched.status != "Scheduled" or sched.next_run_at > now:
            return None
        name = sched.name
        fire, nxt, skipped = recurrence.due(sched.expression, sched.next_run_at, now, grace)
        if nxt is None:
            schedules.finished(s, sched)
        else:
            sched.next_run_at = nxt
        window = (recurrence.duration(sched.window_start), recurrence.duration(sched.window_end))
    if skipped:
        log.warning("schedule %s: %d missed run(s) coalesced or skipped (grace %s)", name, skipped, grace)
    if fire is None:
        return None
    ex_id = claim(db, sid, fire, fire + window[0], fire + window[1], "schedule", worker)
    if ex_id is None:
        return None
    return ex_id if run_claimed(db, store, sid, ex_id, worker) else None


_UNMERGEABLE: dict[tuple[str, dt.datetime], int] = {}
"""Endpoint-hours whose small batches could not be merged (a big batch or a type change between each two),
with their count then: not read again while it stays the same."""


def compact(db: Database, store: ObjectStore, now: dt.datetime, *, endpoint_id: str | None = None,
            lookback: dt.timedelta | None = COMPACT_LOOKBACK, hours: int = COMPACT_HOURS,
            stop: threading.Event | None = None) -> compaction.Compacted:
    """Compact up to ``hours`` settled endpoint-hours of the last ``lookback`` (None: all), newest first: each
    hour's merged files written (`compaction.plan_hour`, no lock held), then each merge indexed in a short
    transaction of its own (`apply_merges`) and its parts' files deleted once it committed. A merge that is not
    indexed (a failure, or another process merged its parts first) has its files deleted. Stops between two
    merges once ``stop`` is set."""
    since = None if lookback is None else now - lookback
    with db.session_scope(write=False) as s:
        todo = [t for t in compaction.settled_hours(s, now, since=since, endpoint_id=endpoint_id)
                if _UNMERGEABLE.get((t[0], t[1])) != t[2]][:hours]
    total = compaction.Compacted()
    for ep_id, hour, small in todo:
        if stop is not None and stop.is_set():
            break
        with db.session_scope(write=False) as s:
            merges = compaction.plan_hour(s, store, ep_id, hour)
        if not merges:
            if len(_UNMERGEABLE) >= 10_000:
                _UNMERGEABLE.clear()
            _UNMERGEABLE[(ep_id, hour)] = small
            continue
        for i, merge in enumerate(merges):
            if stop is not None and stop.is_set():
                compaction.discard(store, merges[i:])
                return total
            try:
                with db.session_scope() as s:
                    done = compaction.apply_merges(s, store, ep_id, [merge])
            except BaseException:
                compaction.discard(store, merges[i:])
                raise
            compaction.delete_files(store, done.stale_keys)
            total.add(done)
        log.info("capture compaction: hour %s of endpoint %s merged (%d batches so far this pass)",
                 f"{hour:%Y-%m-%dT%H}", ep_id, total.merged)
    return total


def sweep(db: Database, store: ObjectStore, now: dt.datetime, *, endpoint_id: str | None = None,
          lookback: dt.timedelta = COMPACT_LOOKBACK, older_batches: bool = False,
          stop: threading.Event | None = None) -> int:
    """Delete the capture files that no batch refers to and that are old enough to be a dead process's
    (`compaction.orphans`, listed without a lock; deleted under the endpoint's lock by `sweep_orphans`) in the
    hours `compaction.swept_hours` names; how many were deleted. ``now`` is the real time (file ages are the
    store's clock), never a scheduler's fake clock."""
    with db.session_scope(write=False) as s:
        todo = compaction.swept_hours(s, now, lookback, endpoint_id=endpoint_id, older_batches=older_batches)
    deleted = 0
    for swept in todo:
        if stop is not None and stop.is_set():
            break
        with db.session_scope(write=False) as s:
            keys = compaction.orphans(s, store, swept, now)
        if keys:
            with db.session_scope() as s:
                n = compaction.sweep_orphans(s, store, swept.endpoint_id, swept.hour, keys)
            if n:
                log.warning("capture sweep: endpoint %s, hour %s: deleted %d file(s) no batch refers to (left by a "
                            "process that stopped before indexing them)", swept.endpoint, f"{swept.hour:%Y-%m-%dT%H}",
                            n)
            deleted += n
    return deleted


EXPORT_TRIES = 3   # copies of one hour `export_capture` starts before it gives up (each lost to a compaction)
_BATCH_FILE = re.compile(r"[0-9a-f]{32}\.jsonl|\.[0-9a-f]{32}\.jsonl\.tmp-.+")   # a batch's file, or one half-copied


@dataclasses.dataclass
class Exported:
    """What `export_capture` did: the tree holds ``records`` in ``files``; ``copied`` of them were new,
    ``removed`` files of batches merged or deleted since an earlier export into the same directory are gone."""

    records: int = 0
    files: int = 0
    copied: int = 0
    removed: int = 0


def export_capture(db: Database, store: ObjectStore, endpoint_id: str, to: Path,
                   advance: Callable[[int], None] = lambda n: None) -> Exported:
    """Mirror the endpoint's JSONL files under ``to`` as SageMaker's tree ({endpoint}/{variant}/yyyy/mm/dd/hh/, the
    variant each batch was captured under), hour by hour, so that the tree holds each record once however often
    it is exported into: a batch file already there is kept (batch files never change; each is written under a
    temporary name and renamed), and once every hour is copied, the batch files of an earlier export that no
    batch refers to any more (merged by compaction since, or deleted) are removed. An hour that compaction merges
    while it is copied is copied again from the merged batch, this attempt's copies removed first."""
    with db.session_scope(write=False) as s:
        name = s.get_one(Endpoint, endpoint_id).name
        hours = list(s.scalars(select(CaptureBatch.hour).where(CaptureBatch.endpoint_id == endpoint_id)
                               .distinct().order_by(CaptureBatch.hour)))
    done = Exported()
    exported: set[Path] = set()
    for hour in hours:
        for attempt in range(EXPORT_TRIES):
            with db.session_scope(write=False) as s:
                batches = list(s.execute(select(CaptureBatch.jsonl_key, CaptureBatch.records).where(
                    CaptureBatch.endpoint_id == endpoint_id, CaptureBatch.hour == hour)
                    .order_by(CaptureBatch.created_at, CaptureBatch.id)))
            copied: list[Path] = []
            made: list[Path] = []
            targets = [to / key.split("/", 1)[1] for key, _ in batches]   # capture/{endpoint}/… → {endpoint}/…
            try:
                for (key, _), target in zip(batches, targets, strict=True):
                    if target.exists():
                        continue
                    made += reversed([d for d in target.parents if not d.exists()])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                    partial.write_bytes(store.get(key))
                    partial.replace(target)
                    copied.append(target)
            except NotFound as exc:
                for path in copied:
                    path.unlink()
                for folder in reversed(made):   # deepest first: the folders this attempt made, now empty
                    folder.rmdir()
                if attempt == EXPORT_TRIES - 1:
                    raise PartitionGone(exc.detail) from None
                continue
            n = sum(r for _, r in batches)
            done.records, done.files, done.copied = done.records + n, done.files + len(batches), \
                done.copied + len(copied)
            exported.update(targets)
            advance(n)
            break
    done.removed = _remove_stale(to / name, exported)
    return done


def _remove_stale(tree: Path, exported: set[Path]) -> int:
    """Delete the batch files in ``tree``'s hour folders ({variant}/yyyy/mm/dd/hh) that are not ``exported``, and
    the folders that leaves empty; other files are not mlgov's and stay. How many files were deleted."""
    removed = 0
    for path in sorted(tree.glob("*/*/*/*/*/*")):
        if path in exported or not path.is_file() or not _BATCH_FILE.fullmatch(path.name):
            continue
        path.unlink()
        removed += 1
        folder = path.parent
        while folder != tree and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed


def import_labels(db: Database, store: ObjectStore, schedule_id: str, execution_id: str) -> int:
    """The ground-truth files uploaded to the schedule's GroundTruthS3Input that its earlier runs have not read
    (`definitions.label_import`), each read on a read session and stored in a short write turn as an upload through
    the API is; labels already stored are duplicates. The number of labels stored; Invalid naming the files no
    label could be read from, once every other file was read (a broken file must not hide the good ones after it)."""
    with db.session_scope(write=False) as s:
        sched, ex = s.get(Schedule, schedule_id), s.get(Execution, execution_id)
        if sched is None or ex is None:
            return 0
        todo = definitions.label_import(s, store, sched, ex.window_start)
    if todo is None:
        return 0
    stored, failures = 0, []
    for key in service.label_files(store, todo.folder, todo.since):
        try:
            with db.session_scope(write=False) as s:
                prep = service.read_label_file(s, store, todo.endpoint, key)
            with db.session_scope() as s:
                stored += service.commit_ground_truth(s, store, prep)["accepted"]
        except DomainError as exc:   # this file only: the next ones are still read
            failures.append(exc)
    with db.session_scope() as s:
        definitions.labels_imported(s, store, todo)
    if failures:
        raise service.unreadable_labels(failures)
    return stored


def run_claimed(db: Database, store: ObjectStore, schedule_id: str, execution_id: str,
                worker: str | None = None) -> bool:
    """Execute a claimed execution: compute it on a read session (minutes, perhaps, holding no write turn), then
    record it in a short transaction of its own that holds its row locked and finds it still Pending and still
    claimed by the same worker (compare-and-set: a run taken over meanwhile is recorded once, by its new claimer).
    If recording fails (a database error at the final flush or the commit), end the execution as Failed with the
    reason in a fresh transaction; False if the schedule or the execution is gone, or (with ``worker``) another
    worker took the claim over. Logs the outcome: one line per run."""
    claimer = worker   # the claim this run holds: read from the row below when not given
    try:
        unread = None   # why the uploaded labels could not be read: the run's failure
        try:
            import_labels(db, store, schedule_id, execution_id)
        except DomainError as exc:
            unread = schedules.failure_reason(exc)
        with db.session_scope(write=False) as s:
            sched = s.get(Schedule, schedule_id)
            ex = s.get(Execution, execution_id)
            if sched is None or ex is None or ex.status != "Pending" or (worker and ex.worker != worker):
                return False
            claimer = ex.worker
            ran = schedules.compute_run(s, store, sched, ex, SYSTEM) if unread is None else \
                schedules.Ran(utcnow(), (sched.type, sched.baseline_id), None, unread)
        with db.session_scope() as s:
            sched = s.get(Schedule, schedule_id)
            ex = s.get(Execution, execution_id, with_for_update=True)
            outcome = None
            if sched is not None and ex is not None and ex.status == "Pending" and ex.worker == claimer:
                schedules.record_run(s, store, sched, ex, ran)
                outcome = _outcome(sched, ex)
        if outcome is None:
            log.info("execution %s of schedule %s: ended or taken over while it ran; its result is not kept",
                     execution_id, schedule_id)
            _discard(store, ran)
            return False
        log.info("%s", outcome)
        return True
    except Exception as exc:
        log.exception("execution %s of schedule %s could not be saved; recording it as Failed", execution_id,
                      schedule_id)
        reason = schedules.failure_reason(exc)
    try:
        with db.session_scope() as s:
            ex = schedules.record_failure(s, execution_id, reason, claimer)
            sched = s.get(Schedule, schedule_id) if ex is not None else None
            failed = _outcome(sched, ex) if sched is not None and ex is not None else None
        if failed:
            log.info("%s", failed)
        return failed is not None
    except Exception:
        log.exception("could not record execution %s as Failed; it stays Pending", execution_id)
        return False


def _discard(store: ObjectStore, ran: schedules.Ran) -> None:
    """Delete a run's files that will never be recorded; best effort (unreachable files are harmless, and the
    execution belongs to another claimer now: nothing here may end it)."""
    if ran.analysis is None:
        return
    try:
        ran.analysis.discard(store)
    except Exception:
        log.exception("could not delete the files of analysis %s, which was not recorded", ran.analysis.id)


def _outcome(sched: Schedule, ex: Execution) -> str:
    """The log line of one run: schedule, window, status, violations (and why it failed)."""
    line = (f"schedule {sched.name} ({sched.type}) window {ex.window_start:%Y-%m-%dT%H:%M:%SZ} to "
            f"{ex.window_end:%Y-%m-%dT%H:%M:%SZ}: {ex.status}, {ex.violation_count} violation(s)")
    return f"{line}: {ex.failure_reason}" if ex.status == "Failed" and ex.failure_reason else line


def clock(settings: Settings) -> Callable[[], dt.datetime]:
    """Real UTC time, or (for tests and demos) a clock that starts at MLGOV_FAKE_CLOCK_START at the wall-clock
    moment MLGOV_FAKE_CLOCK_ANCHOR and runs MLGOV_FAKE_CLOCK_SPEED times faster — the same in every process."""
    start = settings.fake_clock_start
    if start is None:
        return lambda: dt.datetime.now(dt.UTC)
    anchor, speed = settings.fake_clock_anchor or time.time(), settings.fake_clock_speed
    begin = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    return lambda: begin + dt.timedelta(seconds=(time.time() - anchor) * speed)


class Ticker:
    """The scheduler loop of one process: a thread that ticks every interval (never two ticks at once, so a long
    run delays the next tick instead of piling up), and a thread that beats the heartbeat, so a worker busy with a
    long run still reads alive. ``stop`` lets the current run finish."""

    _running: Ticker | None = None   # one ticker per process, however many apps the process composes
    _guard = threading.Lock()

    def __init__(self, db: Database, store: ObjectStore, settings: Settings) -> None:
        self.db, self.store = db, store
        self.interval = settings.scheduler_interval_s
        self.grace = dt.timedelta(seconds=settings.scheduler_grace_s)
        self.now: Callable[[], dt.datetime] = clock(settings)
        self.instance = workers.instance_id()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def start_once(cls, db: Database, store: ObjectStore, settings: Settings) -> Ticker | None:
        """Start this process's ticker; None if one already runs here (it keeps that job; the claim would make a
        second one harmless, only wasteful)."""
        with cls._guard:
            if cls._running is not None:
                return None
            cls._running = cls(db, store, settings)
        cls._running.start()
        return cls._running

    def start(self) -> None:
        self._beat()   # known before its first claim, so a claim it leaves behind can be judged and taken over
        self._threads = [threading.Thread(target=self._loop, name="mlgov-scheduler", daemon=True),
                         threading.Thread(target=self._beating, name="mlgov-scheduler-heartbeat", daemon=True),
                         threading.Thread(target=self._compacting, name="mlgov-capture-compaction", daemon=True)]
        for t in self._threads:
            t.start()
        log.info("scheduler %s: looking for due schedules every %g s", self.instance, self.interval)

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop ticking; wait up to ``timeout`` s for the run in progress. A run still going then is cut off when
        the process exits: nothing of it is recorded and, this instance being stopped, another replica takes its
        claim over (a run records only while it still holds the claim, so the two never both record)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                log.warning("scheduler %s: the run in progress did not finish within %s s; another replica takes "
                            "its claim over", self.instance, timeout)
        self._beat(stopped=True)
        with Ticker._guard:
            if Ticker._running is self:
                Ticker._running = None

    def run_until_signalled(self) -> None:
        """Block until SIGTERM or Ctrl-C (``mlgov scheduler``), then stop: the run in progress finishes first."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        log.info("scheduler %s: stopping after the run in progress", self.instance)
        self.stop(timeout=None)

    def _loop(self) -> None:
        next_take_over = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if began >= next_take_over:
                    take_over(self.db, self.store, self.instance)
                    next_take_over = began + TAKE_OVER_EVERY_S
                tick(self.db, self.store, self.now(), self.grace, self.instance)
                self._beat(ticked=True)
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def _compacting(self) -> None:
        """A compaction pass every COMPACT_EVERY_S and a sweep every SWEEP_EVERY_S, in a thread of their own (a
        long pass never delays a due schedule), by the first live scheduler instance only: every `mlgov serve`
        worker runs a ticker, and N of them would read and write every hour N times to keep one result."""
        next_sweep = time.monotonic()
        while True:
            began = time.monotonic()
            try:
                with self.db.session_scope(write=False) as s:
                    mine = workers.first_alive(s, workers.SCHEDULER) in (None, self.instance)
            except Exception:
                log.exception("capture compaction: the live schedulers could not be read; the next pass tries again")
                mine = False
            if mine:
                try:
                    compact(self.db, self.store, self.now(), stop=self._stop)
                except Exception:
                    log.exception("capture compaction failed; the next pass tries again")
            if mine and began >= next_sweep:
                next_sweep = began + SWEEP_EVERY_S
                try:
                    sweep(self.db, self.store, dt.datetime.now(dt.UTC), stop=self._stop)   # file ages: real time
                except Exception:
                    log.exception("capture sweep failed; the next one tries again")
            if self._stop.wait(max(0.0, COMPACT_EVERY_S - (time.monotonic() - began))):
                return

    def _beating(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self, *, ticked: bool = False, stopped: bool = False) -> None:
        try:
            with self.db.session_scope() as s:
                workers.beat(s, workers.SCHEDULER, self.instance, self.interval, ticked=ticked, stopped=stopped)
        except Exception as exc:   # e.g. SQLite busy with a long run: the next beat tries again
            log.debug("scheduler heartbeat not written: %s", exc)


def background(db: Database, store: ObjectStore, settings: Settings) -> Ticker | None:
    """The scheduler inside `mlgov serve`: started by the app's lifespan, stopped at shutdown."""
    return Ticker.start_once(db, store, settings)


def blocking(db: Database, store: ObjectStore, settings: Settings) -> None:
    """`mlgov scheduler`: tick until signalled."""
    ticker = Ticker.start_once(db, store, settings)
    if ticker is not None:
        ticker.run_until_signalled()
