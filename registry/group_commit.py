"""Group commit of registrations (HTTP layer): requests registering versions into one model group while an earlier
group of them is being written wait, then are numbered and written in one transaction (`register_versions`).

Registrations of a group are serialised by its row lock from numbering to commit anyway; one transaction per
request paid a commit, the lock hand-over and some fifteen statements each, so concurrent publishers queued behind
each other. A group pays them once. Every request is answered only after the commit, with its own version; a
request whose registration fails (an unknown alert, a value the database refuses) gets its own error: when a group
fails with a request's error, each of its registrations is retried in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import cast

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from mlgov.auth import database_turn
from mlgov.db import Database
from mlgov.errors import DomainError
from mlgov.group_commit import GroupCommit
from registry import service
from registry.orm import ModelVersion

GROUP_REGISTRATIONS = 64
"""At most this many registrations per transaction (the lock is held for the whole group)."""


async def register(db: Database, group_name: str, reg: service.Registration) -> ModelVersion:
    """``reg``'s version, committed, numbered in order of arrival with whatever else of its group was waiting."""
    return await _groups.submit((db, group_name), reg)


async def _once(db: Database, group_name: str, regs: list[service.Registration]) -> list[ModelVersion]:
    async with database_turn(db, write=True) as session:
        return await run_in_threadpool(service.register_versions, session, group_name, regs)


async def _write(key: tuple[Hashable, ...],
                 regs: list[service.Registration]) -> list[ModelVersion | BaseException]:
    db, group_name = cast(Database, key[0]), cast(str, key[1])
    try:
        return list(await _once(db, group_name, regs))
    except (DomainError, IntegrityError):
        if len(regs) == 1:
            raise
    out: list[ModelVersion | BaseException] = []
    for reg in regs:    # whose error it was: each alone (the group's transaction rolled back whole)
        try:
            out += await _once(db, group_name, [reg])
        except (DomainError, IntegrityError) as exc:
            out.append(exc)
    return out


_groups: GroupCommit[service.Registration, ModelVersion] = GroupCommit(
    _write, limit=GROUP_REGISTRATIONS, name="registration group commit")
