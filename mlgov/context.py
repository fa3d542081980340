"""Per-request context (request id) that audit rows pick up without threading it through every call."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("mlgov_request_id", default=None)
