"""Encryption at rest of secrets the server must read back (webhook and retraining-trigger signing secrets and
URLs, which often carry tokens; AWS credentials).

Why: such secrets cannot be hashed like API keys, and a copy of the database (backup, replica, SQL
injection elsewhere) must not hand them out. The key is held outside the database: ``MLGOV_SECRETS_KEY``
(Fernet keys, comma-separated, newest first: the first encrypts, all decrypt, which allows rotation), or a
0600 file ``secrets.key`` under ``MLGOV_HOME`` created on first use.

Stored form: ``enc:v1:<Fernet token>``. A value without the prefix is a plaintext row written before
encryption existed (migrations 0011 and 0027 cannot encrypt them: the key may live only in the server's environment,
not where ``mlgov db upgrade`` runs). Such rows are still read, and re-encrypted the first time the server
uses them (the webhook dispatcher does this when it signs a delivery). What this does not protect against:
an attacker who reads both the database and the key (the server process or its home directory).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from mlgov.db import key_file
from mlgov.errors import DomainError
from mlgov.settings import Settings

PREFIX = "enc:v1:"


class SecretsUnavailable(DomainError):
    status, title = 503, "Secrets key unavailable"


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)




class SecretBox:
    """Encrypts and decrypts stored secrets; the key is loaded lazily (first use creates the key file)."""

    def __init__(self, keys: list[bytes] | None = None, key_path: Path | None = None) -> None:
        self._keys, self._path = keys, key_path
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secrets_key is not None:
            keys = [k.strip().encode() for k in settings.secrets_key.get_secret_value().split(",") if k.strip()]
            return cls(keys=keys)
        return cls(key_path=settings.secrets_key_path)

    def _f(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                keys = self._keys if self._keys is not None else [
                    key_file(self._path or Path("secrets.key"), Fernet.generate_key)]
                try:
                    self._fernet = MultiFernet([Fernet(k) for k in keys])
                except (ValueError, TypeError):
                    raise SecretsUnavailable(
                        "the secrets key is not a valid Fernet key",
                        fix="set MLGOV_SECRETS_KEY to keys made by `python -c \"from cryptography.fernet import "
                            "Fernet; print(Fernet.generate_key().decode())\"`") from None
            return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return PREFIX + self._f().encrypt(plaintext.encode()).decode()

    def rotate(self, stored: str) -> str:
        """``stored`` encrypted again with the newest key (legacy plaintext encrypted for the first time)."""
        return self.encrypt(self.decrypt(stored))

    def decrypt(self, stored: str) -> str:
        """The plaintext of a stored value; values without the prefix are legacy plaintext, returned as is."""
        if not is_encrypted(stored):
            return stored
        try:
            return self._f().decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretsUnavailable(
                "a stored secret cannot be decrypted with the configured key",
                fix="restore the key it was encrypted with (MLGOV_SECRETS_KEY or secrets.key under MLGOV_HOME); "
                    "to rotate, list the new key first and the old one after it, run `mlgov secrets rotate`, "
                    "then drop the old key") from None


def rotate_columns(session: Session, box: SecretBox, columns: Sequence[InstrumentedAttribute[Any]]) -> dict[str, int]:
    """Encrypt every stored value of these columns again with the newest key, so the older keys can be removed
    from MLGOV_SECRETS_KEY: how many values per column. A value no configured key decrypts stops the whole
    rotation (SecretsUnavailable) before anything is written, as the caller's transaction rolls back."""
    counts: dict[str, int] = {}
    for column in columns:
        model = column.class_
        rows = list(session.scalars(select(model).where(column.is_not(None))))
        for row in rows:
            setattr(row, column.key, box.rotate(getattr(row, column.key)))
        counts[f"{model.__tablename__}.{column.key}"] = len(rows)
    session.flush()
    return counts


def rotate_stored(session: Session, box: SecretBox, *, actor: str) -> dict[str, int]:
    """`rotate_columns` of every column mlgov stores encrypted (each ``box.encrypt`` caller's), audited as
    ``secrets.rotated``: the list lives here, beside the encryption, not in a caller that may miss a new one."""
    from mlgov import audit, auth, events

    counts = rotate_columns(session, box, [events.Webhook.secret, events.Webhook.sealed_url, auth.ApiKey.aws_secret])
    audit.record(session, actor=actor, action="secrets.rotated", subject_type="secrets", subject_id="stored",
                 after=counts)
    return counts


def get_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secrets
    return box


SecretsDep = Annotated[SecretBox, Depends(get_box)]
