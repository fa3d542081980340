"""Registry-specific errors (all map to HTTP through mlgov.errors)."""

from __future__ import annotations

from mlgov.errors import Conflict, Forbidden, NotFound


class GroupNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"model group {name!r} does not exist",
                         fix="create it with POST /api/v1/model-groups or check the name (GET /api/v1/model-groups)",
                         fixes={"sagemaker": "create it with CreateModelPackageGroup or check the name "
                                             "(ListModelPackageGroups)",
                                "mlflow": "create it with registered-models/create or check the name "
                                          "(registered-models/search)",
                                "console": "check the name on the Models page"})


class VersionNotFound(NotFound):
    def __init__(self, group: str, version: int | str) -> None:
        super().__init__(f"model group {group!r} has no version {version}",
                         fix=f"list versions with GET /api/v1/model-groups/{group}/versions",
                         fixes={"sagemaker": f"list versions with ListModelPackages (ModelPackageGroupName {group!r})",
                                "mlflow": f"list versions with model-versions/search (filter \"name='{group}'\")",
                                "console": "the group's page on the Models page lists its versions"})


class GroupExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"model group {name!r} already exists", fix="pick another name or register a version in it")


class RuleRefusal(Conflict):
    """A governance rule refused a well-formed change (not approved yet, policy not met): 409 on the native API;
    protocol adapters that have no such status answer "permission denied" with this message, which names the rule."""


class FourEyesViolation(Forbidden):
    def __init__(self, actor: str, group: str, version: int, why: str | None = None,
                 act: str = "decide the version's approval") -> None:
        reason = f"key {actor!r} registered {group} version {version}" if why is None else (
            f"key {actor!r} is not independent of whoever registered {group} version {version}: {why}")
        super().__init__(
            f"four-eyes rule: {reason}, so it cannot {act}",
            fix="ask a different person: an approver or admin key owned by someone else, not created by the "
                "registrant's owner",
        )


class TransitionNotAllowed(Conflict):
    pass


class AlreadyInStage(Conflict):
    """A move to the stage the version is in: 409 natively; MLflow's transition-stage answers it as done."""

    def __init__(self, group: str, version: int, stage: str) -> None:
        super().__init__(f"{group} version {version} is already in {stage}",
                         fix="nothing to do; to move it, name another stage")


class CardNotFound(NotFound):
    def __init__(self, name: str, version: int | None = None) -> None:
        what = f"model card {name!r}" + (f" has no version {version}" if version is not None else " does not exist")
        super().__init__(what, fix="list model cards (ListModelCards) or their versions (ListModelCardVersions)")


class CardExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"model card {name!r} already exists", fix="update it, or pick another name")
