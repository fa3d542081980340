"""Sign in with an API key, sign out."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console import sessions
from console.web import COOKIE, LOGIN_CSRF_COOKIE, PREFIX, ViewerForm, back, done, local_path, render
from mlgov.auth import SessionDep
from mlgov.errors import Forbidden

router = APIRouter()


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: Annotated[str, Query(max_length=2048)] = "") -> Response:
    # Login CSRF: the form carries a token that must match a SameSite=Strict cookie set with the page.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, None, "signin.html", login_csrf=token, next=local_path(next))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path=PREFIX,
                        secure=request.url.scheme == "https")
    return response


@router.post("/sign-in")
def sign_in(request: Request, session: SessionDep, api_key: Annotated[str, Form(max_length=512)] = "",
            csrf_token: Annotated[str, Form(max_length=128)] = "",
            next: Annotated[str, Form(max_length=2048)] = "") -> Response:
    # a refused key comes back to the sign-in page still bound for where the user was going
    back(request, f"{PREFIX}/sign-in" + (f"?next={quote(local_path(next))}" if next else ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        raise Forbidden("the sign-in form was not sent from this browser's sign-in page (CSRF token missing)",
                        fix="open the sign-in page again and submit the form from there")
    token, _ = sessions.sign_in(session, api_key)
    response = done(request, local_path(next))
    response.set_cookie(COOKIE, token, max_age=int(sessions.TTL.total_seconds()), httponly=True, samesite="strict",
                        path=PREFIX, secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
def sign_out(request: Request, session: SessionDep, user: ViewerForm) -> RedirectResponse:
    sessions.sign_out(session, user)
    response = done(request, f"{PREFIX}/sign-in", "you are signed out")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
