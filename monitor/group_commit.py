"""Group commit of capture requests (HTTP layer): requests of one endpoint that arrive while an earlier group is
being stored wait, then are stored as one set of files and indexed in one write transaction.

Each request is parsed, validated and checked against the index on its own (`read_capture`: a bad record or a
refused request never reaches a group). The group's records are stored (fsynced or PUT) and indexed once, and
every request of the group is answered only after that transaction committed, each with its own counts. No
request waits for a timer: the first one starts at once, and whatever arrives during its store and commit forms
the next group. If storing or indexing fails, every request of that group gets the error (nothing of it was
acknowledged; a retry is idempotent by event id).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool

from mlgov.auth import database_turn
from mlgov.db import Database
from mlgov.storage import ObjectStore
from monitor.service.endpoints import PreparedCapture, group_results, index_capture, merge_captures, store_capture

GROUP_RECORDS = 5000
"""A group takes waiting requests up to this many records (a single request may be bigger and goes alone)."""

_Waiting = list[tuple[PreparedCapture, "asyncio.Future[dict[str, Any]]"]]
_queues: dict[tuple[Any, ...], _Waiting] = {}
_tasks: set[asyncio.Task[None]] = set()


async def commit(db: Database, store: ObjectStore, prep: PreparedCapture) -> dict[str, Any]:
    """Store and index a read request with whatever else of its endpoint is waiting; its counts once committed."""
    if not prep.records:    # all sampled out, duplicates or rejected: nothing to store or index
        return group_results([prep], [set()], set())[0]
    loop = asyncio.get_running_loop()
    key = (loop, db, store, *prep.group_key)
    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
    queue = _queues.get(key)
    if queue is not None:       # a group of this endpoint is being written: join the next one
        queue.append((prep, fut))
    else:
        _queues[key] = [(prep, fut)]
        task = loop.create_task(_drain(key, db, store))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    return await asyncio.shield(fut)    # a disconnected client does not cancel the group's write


def _take(queue: _Waiting) -> _Waiting:
    n, records = 0, 0
    while n < len(queue) and (n == 0 or records + len(queue[n][0].records) <= GROUP_RECORDS):
        records += len(queue[n][0].records)
        n += 1
    group = queue[:n]
    del queue[:n]
    return group


async def _drain(key: tuple[Any, ...], db: Database, store: ObjectStore) -> None:
    queue = _queues[key]
    try:
        while queue:
            group = _take(queue)
            try:
                results = await _write([p for p, _ in group], db, store)
            except BaseException as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(group, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
    finally:
        del _queues[key]
        for _, fut in queue:    # only when the loop itself is going away
            if not fut.done():
                fut.set_exception(RuntimeError("capture group commit stopped"))


async def _write(preps: list[PreparedCapture], db: Database, store: ObjectStore) -> list[dict[str, Any]]:
    merged, owned = merge_captures(preps)
    await run_in_threadpool(store_capture, store, merged)
    async with database_turn(db, write=True) as writer:
        indexed = await run_in_threadpool(index_capture, writer, store, merged)
    return group_results(preps, owned, indexed)
