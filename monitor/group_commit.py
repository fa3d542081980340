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

from collections.abc import Hashable
from typing import Any, cast

from starlette.concurrency import run_in_threadpool

from mlgov.auth import database_turn
from mlgov.db import Database
from mlgov.group_commit import GroupCommit
from mlgov.storage import ObjectStore
from monitor.service.endpoints import PreparedCapture, group_results, index_capture, merge_captures, store_capture

GROUP_RECORDS = 5000
"""A group takes waiting requests up to this many records (a single request may be bigger and goes alone)."""


async def commit(db: Database, store: ObjectStore, prep: PreparedCapture) -> dict[str, Any]:
    """Store and index a read request with whatever else of its endpoint is waiting; its counts once committed."""
    if not prep.records:    # all sampled out, duplicates or rejected: nothing to store or index
        return group_results([prep], [set()], set())[0]
    return await _groups.submit((db, store, *prep.group_key), prep)


async def _write(key: tuple[Hashable, ...], preps: list[PreparedCapture]) -> list[dict[str, Any] | BaseException]:
    db, store = cast(Database, key[0]), cast(ObjectStore, key[1])
    merged, owned = merge_captures(preps)
    await run_in_threadpool(store_capture, store, merged)
    async with database_turn(db, write=True) as writer:
        indexed = await run_in_threadpool(index_capture, writer, store, merged)
    return list(group_results(preps, owned, indexed))


_groups: GroupCommit[PreparedCapture, dict[str, Any]] = GroupCommit(
    _write, limit=GROUP_RECORDS, size=lambda p: len(p.records), name="capture group commit")
