"""Group commit: requests that would each write one short transaction wait while an earlier group of the same key
is being written, then are written together in one, and each is answered with its own result after the commit.

No request waits for a timer: the first one of a key starts at once, and whatever arrives during its write forms
the next group. One fsync, one lock hold and one set of statements then serve a whole group, where one commit per
request serialised them (capture ingest, registrations into one model group). The write function gets the
group's items and returns one result per item, in order: a value, or an exception for that item alone; if it
raises, every item of the group gets the error (nothing of the group was committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[tuple[Hashable, ...], list[T]], Awaitable[list[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    """A group takes waiting items while their summed ``size`` stays within ``limit`` (a single bigger item goes
    alone)."""

    def __init__(self, write: Write[T, R], *, limit: int, size: Callable[[T], int] = lambda _: 1,
                 name: str = "group commit") -> None:
        self._write, self._limit, self._size, self._name = write, limit, size, name
        self._queues: dict[tuple[Hashable, ...], list[tuple[T, asyncio.Future[R]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: tuple[Hashable, ...], item: T) -> R:
        """``item``'s result once its group committed. ``key`` names what groups may share (the running event loop
        is added: groups never span loops)."""
        loop = asyncio.get_running_loop()
        full = (loop, *key)
        fut: asyncio.Future[R] = loop.create_future()
        queue = self._queues.get(full)
        if queue is not None:       # a group of this key is being written: join the next one
            queue.append((item, fut))
        else:
            self._queues[full] = [(item, fut)]
            task = loop.create_task(self._drain(full, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(fut)    # a disconnected client does not cancel the group's write

    def _take(self, queue: list[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        n, total = 0, 0
        while n < len(queue) and (n == 0 or total + self._size(queue[n][0]) <= self._limit):
            total += self._size(queue[n][0])
            n += 1
        group = queue[:n]
        del queue[:n]
        return group

    async def _drain(self, full: tuple[Hashable, ...], key: tuple[Hashable, ...]) -> None:
        queue = self._queues[full]
        try:
            while queue:
                group = self._take(queue)
                try:
                    results = await self._write(key, [item for item, _ in group])
                except BaseException as exc:
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), result in zip(group, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            del self._queues[full]
            for _, fut in queue:    # only when the loop itself is going away
                if not fut.done():
                    fut.set_exception(RuntimeError(f"{self._name} stopped"))
