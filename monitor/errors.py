"""Monitoring errors (mapped to HTTP by mlgov.errors)."""

from __future__ import annotations

from mlgov.errors import NotFound


class BaselineNotFound(NotFound):
    def __init__(self, baseline_id: str) -> None:
        super().__init__(f"no baseline with id {baseline_id!r}", fix="list baselines with GET /api/v1/baselines")


class AnalysisNotFound(NotFound):
    def __init__(self, analysis_id: str) -> None:
        super().__init__(f"no analysis with id {analysis_id!r}", fix="list analyses with GET /api/v1/analyses")


class EndpointNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no endpoint named {name!r}", fix="create it with POST /api/v1/endpoints")
