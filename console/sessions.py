"""Console sessions: sign in with an API key, resolve the cookie on every request, sign out.

The browser holds only a random token (HttpOnly, SameSite=Strict cookie); the server keeps its SHA-256, the key
it belongs to, the CSRF token of its forms and its expiry. Every request re-reads the key, so a revoked key (or a
key whose role changed) takes effect on the next click; sign-out ends the row, so a copied cookie dies with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from console.orm import ConsoleSession
from mlgov import audit, auth
from mlgov.db import utcnow
from mlgov.errors import Forbidden, Unauthorized

TTL = dt.timedelta(hours=8)
CONSOLE_ROLES = auth.READERS   # ingest keys push data; they have no pages


class SignInRequired(Unauthorized):
    """No valid session: the console answers with the sign-in page, never an error page."""


@dataclass(frozen=True)
class Signed:
    principal: auth.Principal
    csrf: str
    token_hash: str
    expires_at: dt.datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(session: Session, presented: str, *, ttl: dt.timedelta = TTL) -> tuple[str, Signed]:
    """Check the key like the API does and open a session; returns the cookie token (shown once, never stored)."""
    try:
        principal = auth.authenticate(session, presented.strip())
    except Unauthorized as exc:   # the API's fix speaks of Authorization headers; a person pastes a key here
        raise Unauthorized(exc.detail, fix="paste the whole key as `mlgov keys create` printed it "
                           "(mlgov_<id>_<secret>), or ask an admin for one") from None
    if principal.role not in CONSOLE_ROLES:
        raise Forbidden(f"the key {principal.name!r} has role {principal.role.value!r}, which has no console pages",
                        fix="sign in with an admin, approver, publisher or viewer key")
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(token_hash=_hash(token), key_pk=principal.key_pk, csrf=secrets.token_urlsafe(32),
                         created_at=utcnow(), expires_at=utcnow() + ttl)
    session.add(row)
    session.flush()
    audit.record(session, actor=principal.name, action="console.signed_in", subject_type="api_key",
                 subject_id=principal.name, after={"expires_at": row.expires_at})
    return token, Signed(principal, row.csrf, row.token_hash, row.expires_at)


def current(session: Session, token: str | None) -> Signed:
    """The signed-in principal behind a cookie token; SignInRequired when there is none any more."""
    if not token:
        raise SignInRequired("you are not signed in", fix="sign in with your API key")
    row = session.get(ConsoleSession, _hash(token))
    now = utcnow()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        raise SignInRequired("your session has ended", fix="sign in again with your API key")
    key = auth.key_by_pk(session, row.key_pk)
    if key is None or not key.active:
        raise SignInRequired("the API key of this session was revoked", fix="ask an admin for a new key")
    return Signed(auth.principal_of(key), row.csrf, row.token_hash, row.expires_at)


def check_csrf(signed: Signed, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(signed.csrf.encode(), presented.encode()):
        raise Forbidden("the form was not sent from this console session (missing or wrong CSRF token)",
                        fix="reload the page and submit the form again")


def sign_out(session: Session, signed: Signed) -> None:
    session.execute(update(ConsoleSession).where(ConsoleSession.token_hash == signed.token_hash)
                    .values(ended_at=utcnow()))
    audit.record(session, actor=signed.principal.name, action="console.signed_out", subject_type="api_key",
                 subject_id=signed.principal.name)

