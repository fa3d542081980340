"""Registry-specific errors (all map to HTTP through mlgov.errors)."""

from __future__ import annotations

from mlgov.errors import Conflict, Forbidden, NotFound


class GroupNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"model group {name!r} does not exist",
                         fix="create it with POST /api/v1/model-groups or check the name (GET /api/v1/model-groups)")


class VersionNotFound(NotFound):
    def __init__(self, group: str, version: int | str) -> None:
        super().__init__(f"model group {group!r} has no version {version}",
                         fix=f"list versions with GET /api/v1/model-groups/{group}/versions")


class FourEyesViolation(Forbidden):
    def __init__(self, actor: str, group: str, version: int) -> None:
        super().__init__(
            f"four-eyes rule: key {actor!r} registered {group} version {version} and so cannot decide its approval",
            fix="ask a different approver (a key with role approver or admin that did not register it)",
        )


class TransitionNotAllowed(Conflict):
    pass
