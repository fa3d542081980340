"""Clarify's side of a model version in registry's compliance report: the explanation reports computed for it.
(Its bias reports are registry's own evidence.) ``register()`` hands ``version_facts`` to registry at composition
(``mlgov.app``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from registry import service as registry
from registry.service import VersionKey


def version_facts(session: Session, versions: Sequence[VersionKey], lo: dt.datetime, hi: dt.datetime
                  ) -> dict[VersionKey, dict[str, list[dict[str, Any]]]]:
    attached = registry.audited_attachments(session, versions, "clarify.explanation", "explanation report",
                                            "analysis", replaces=False)
    return {key: {"attachments": items} for key, items in attached.items()}


def register() -> None:
    registry.add_version_facts("clarify", version_facts)
