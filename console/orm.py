"""Console sign-in sessions: one row per signed-in browser, tied to the API key that signed in."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, utcnow


class ConsoleSession(Base):
    """The cookie holds a random 256-bit token; only its SHA-256 is stored (a copy of the table signs nobody in).
    The key is re-checked on every request, so revoking it ends all of its sessions at once."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_pk: Mapped[str] = mapped_column(String(32), ForeignKey("auth_api_keys.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
