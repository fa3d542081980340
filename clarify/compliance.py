"""Clarify's side of a model version in registry's compliance report: the explanation reports computed for it.
(Its bias reports are registry's own evidence.) ``register()`` hands ``version_facts`` to registry at composition
(``mlgov.app``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from registry import service as registry


def version_facts(session: Session, group: str, version: int, lo: dt.datetime, hi: dt.datetime
                  ) -> dict[str, list[dict[str, Any]]]:
    return {"attachments": registry.audited_attachments(session, group, version, "clarify.explanation",
                                                        "explanation report", "analysis", replaces=False)}


def register() -> None:
    registry.add_version_facts("clarify", version_facts)
