"""Monitoring errors (mapped to HTTP by mlgov.errors)."""

from __future__ import annotations

from mlgov.errors import Conflict, NotFound


class BaselineNotFound(NotFound):
    def __init__(self, baseline_id: str) -> None:
        super().__init__(f"no baseline with id {baseline_id!r}", fix="list baselines with GET /api/v1/baselines")


class AnalysisNotFound(NotFound):
    def __init__(self, analysis_id: str) -> None:
        super().__init__(f"no analysis with id {analysis_id!r}", fix="list analyses with GET /api/v1/analyses")


class EndpointNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no endpoint named {name!r}", fix="create it with POST /api/v1/endpoints")


class PartitionGone(Conflict):
    """A partition listed for a read (a capture batch's file) is not in the store any more: compaction merged it
    between the listing and the read. The read lists again (`endpoints.reread_if_compacted`); a second miss
    reaches the caller as 409."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, fix="run it again (compaction merges a capture hour's files and deletes the parts); "
                                     "if it keeps failing, the object was deleted from the store")
