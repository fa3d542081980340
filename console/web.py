"""What every console page shares: the Jinja environment, the signed-in principal, CSRF, flash messages, the nav,
and the console's one error mapping (a domain error becomes a readable message on the page, never an error page).

How a page route looks::

    @router.get("/things", response_class=HTMLResponse)
    def things(request: Request, session: SessionDep, user: Viewer) -> HTMLResponse:
        return render(request, user, "things.html", things=service.list_things(session))

    @router.post("/things/{name}/delete")
    def delete(request: Request, name: str, session: SessionDep, user: AdminForm) -> RedirectResponse:
        back(request, f"/console/things")          # where a refusal is shown
        service.delete_thing(session, name, user.principal)
        return done(request, f"/console/things", f"deleted {name}")

``*Form`` dependencies also check the form's ``csrf_token`` field; every POST route takes one of them.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from console import sessions
from console.sessions import Signed, SignInRequired
from mlgov import auth, web
from mlgov.auth import Role, SessionDep
from mlgov.errors import DomainError, Forbidden, Invalid, field_message, field_path

HERE = Path(__file__).parent
PREFIX = "/console"
STATIC_URL = f"{PREFIX}/static"
COOKIE = "mlgov_console"
FLASH_COOKIE = "mlgov_console_flash"
LOGIN_CSRF_COOKIE = "mlgov_console_login"
_M = TypeVar("_M", bound=BaseModel)

templates = web.templates(HERE / "templates")


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    roles: frozenset[Role]


# The nav, in order; an entry shows only to the roles that may open it (the routes check the same sets).
NAV: list[NavItem] = [
    NavItem("Approvals", f"{PREFIX}/", auth.READERS),
    NavItem("Models", f"{PREFIX}/models", auth.READERS),
    NavItem("Monitoring", f"{PREFIX}/monitoring", auth.READERS),
    NavItem("Alerts", f"{PREFIX}/alerts", auth.READERS),
    NavItem("Audit", f"{PREFIX}/audit", auth.AUDITORS),
    NavItem("Admin", f"{PREFIX}/admin", auth.ADMINS),
]


def may(user: Signed | None, roles: frozenset[Role]) -> bool:
    return user is not None and user.principal.role in roles


def _flash_of(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    keep = value.get("keep")
    return {**{k: str(value.get(k) or "") for k in ("kind", "text", "fix")},
            "keep": {str(k): str(v) for k, v in keep.items() if isinstance(v, str)} if isinstance(keep, dict) else {}}


COOKIE_BYTES = 3900
"""The most the flash cookie may take: browsers drop a cookie over about 4 KB without a word, and the refusal's
message with it. Kept form values go first, then the message is cut to fit."""


def _kept_for(user: Signed) -> str:
    """Kept form values are bound to the session that typed them (a digest of its CSRF token, which no one else
    knows): a cookie planted from elsewhere cannot fill an admin's form with its own URL."""
    return hashlib.sha256(f"keep:{user.csrf}".encode()).hexdigest()[:32]


def _set_flash(response: Response, kind: str, text: str, fix: str | None = None,
               keep: Mapping[str, str] | None = None, user: Signed | None = None) -> None:
    flash: dict[str, Any] = {"kind": kind, "text": text[:1500], "fix": (fix or "")[:500]}
    if keep and user is not None:
        flash["keep"] = {**keep, "_for": _kept_for(user)}

    def encoded() -> str:
        return base64.urlsafe_b64encode(json.dumps(flash, ensure_ascii=False).encode()).decode()

    raw = encoded()
    if len(raw) > COOKIE_BYTES:
        flash.pop("keep", None)
        while len(raw := encoded()) > COOKIE_BYTES:
            flash["text"], flash["fix"] = flash["text"][:len(flash["text"]) * 3 // 4], flash["fix"][:200]
    response.set_cookie(FLASH_COOKIE, raw, max_age=60, httponly=True, samesite="strict", path=PREFIX)


def _kept(flash: Mapping[str, Any] | None, user: Signed | None) -> dict[str, str]:
    keep = dict((flash or {}).get("keep") or {})
    return keep if user is not None and keep.pop("_for", None) == _kept_for(user) else {}


def render(request: Request, user: Signed | None, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the base layout; reads (and clears) the flash message left by the previous action."""
    root = request.scope.get("root_path", "")
    flash = context.pop("flash", None) or _flash_of(request)
    html = templates.get_template(template).render(
        request=request, user=user, principal=user.principal if user else None, csrf=user.csrf if user else "",
        nav=[n for n in NAV if may(user, n.roles)], path=request.url.path, root=root, static=root + STATIC_URL,
        flash=flash, kept=_kept(flash, user), may=lambda roles: may(user, roles), roles=auth, **context)
    # console pages show what a role may see (and, once, a new key): not for a shared browser's cache
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def attachment(filename: str) -> str:
    """Content-Disposition for a download named after user data: a model's name may hold quotes, spaces and any
    script, and header values are Latin-1. An ASCII stand-in, and the exact name as RFC 6266's ``filename*``."""
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", filename).strip("_") or "download"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def back(request: Request, path: str, keep: Mapping[str, str] | None = None) -> None:
    """Where a refusal of this POST is shown (a console page; the error mapping redirects there with the message).
    ``keep``: the form's values to fill it with again when it is refused, so one wrong field does not cost the
    admin the others. Never a secret: it travels in the flash cookie (`keepable_url` for URLs)."""
    request.state.console_back = path
    request.state.console_keep = keep


def keepable_url(url: str) -> str:
    """``url`` when it may be kept for a refused form, else empty: one with any user info (a bare token is often
    the user name: https://TOKEN@host), a query or a fragment is typed again rather than stored in a cookie. A
    secret in the path cannot be told apart (`outbound.masked_url` says the same of reads)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return "" if "@" in parts.netloc or parts.query or parts.fragment else url


def done(request: Request, path: str, text: str | None = None) -> RedirectResponse:
    """Post/redirect/get: back to ``path`` with a success message."""
    response = RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)
    if text:
        _set_flash(response, "ok", text)
    return response


# --- who is signed in -----------------------------------------------------------------------------------------

def signed_in(roles: frozenset[Role], *, form: bool) -> Callable[..., Signed]:
    """Dependency: the session's principal, refused unless its role is in ``roles``; ``form``: POST routes, which
    also check the CSRF token of the submitted form."""

    def page(request: Request, session: SessionDep) -> Signed:
        user = sessions.current(session, request.cookies.get(COOKIE))
        request.state.principal = user.principal
        request.state.console_user = user
        if user.principal.role not in roles:
            raise Forbidden(f"your role {user.principal.role.value!r} (key {user.principal.name!r}) may not open "
                            f"{request.url.path}",
                            fix=f"ask for a key with one of the roles: {', '.join(sorted(r.value for r in roles))}")
        return user

    def posted(request: Request, session: SessionDep, csrf_token: Annotated[str, Form()] = "") -> Signed:
        user = sessions.current(session, request.cookies.get(COOKIE))
        request.state.console_user = user
        sessions.check_csrf(user, csrf_token)   # before the role: a forged form learns nothing
        return page(request, session)

    dep = posted if form else page
    dep.roles = roles  # type: ignore[attr-defined]
    return dep


Viewer = Annotated[Signed, Depends(signed_in(auth.READERS, form=False))]
AuditorPage = Annotated[Signed, Depends(signed_in(auth.AUDITORS, form=False))]
AdminPage = Annotated[Signed, Depends(signed_in(auth.ADMINS, form=False))]
ViewerForm = Annotated[Signed, Depends(signed_in(auth.READERS, form=True))]
PublisherForm = Annotated[Signed, Depends(signed_in(auth.PUBLISHERS, form=True))]
DeciderForm = Annotated[Signed, Depends(signed_in(auth.DECIDERS, form=True))]
MoverForm = Annotated[Signed, Depends(signed_in(auth.MOVERS, form=True))]
AuditorForm = Annotated[Signed, Depends(signed_in(auth.AUDITORS, form=True))]
AdminForm = Annotated[Signed, Depends(signed_in(auth.ADMINS, form=True))]


# --- the console's error mapping ----------------------------------------------------------------------------

def local_path(path: str | None) -> str:
    """A console path to go back to; anything else (another site, ``//host``) becomes the console's home."""
    if not path or not path.startswith(PREFIX + "/") or path.startswith("//") or "\\" in path:
        return PREFIX + "/"
    return path


def _form_page(request: Request) -> str | None:
    """The console page a POST's form lives on: its path less the trailing segments that name no page
    (``…/versions/3/decision`` → ``…/versions/3``). A form refused for a field (one the form's own limits should
    have stopped) before its route chose where to go back is then shown beside the form, not on the inbox."""
    root = request.scope.get("root_path", "")
    path = request.url.path.removeprefix(root) if root else request.url.path
    parts = path.rstrip("/").split("/")
    while len(parts) > 2:
        parts.pop()
        scope = {**request.scope, "path": root + "/".join(parts), "method": "GET"}
        if any(route.matches(scope)[0] == Match.FULL for route in iter_route_contexts(request.app.routes)):
            return "/".join(parts)
    return None


def console_error(request: Request, exc: DomainError) -> Response:
    root = request.scope.get("root_path", "")
    if isinstance(exc, SignInRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = RedirectResponse(
            f"{root}{PREFIX}/sign-in?next={quote(local_path(target) if request.method == 'GET' else PREFIX + '/')}",
            status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=PREFIX)
        if exc.detail != "you are not signed in":
            _set_flash(response, "error", exc.detail, exc.fix)
        return response
    user: Signed | None = getattr(request.state, "console_user", None)
    if request.method == "POST":
        # The request's transaction was rolled back before this runs: nothing of the refused action was stored.
        response = RedirectResponse(root + local_path(getattr(request.state, "console_back", None)), status_code=303)
        _set_flash(response, "error", exc.detail, exc.fix_for("console"), getattr(request.state, "console_keep", None),
                   user)
        return response
    return render(request, user, "message.html", status=exc.status, title=exc.title,
                  flash={"kind": "error", "text": exc.detail, "fix": exc.fix_for("console") or ""})


def _is_console(request: Request) -> bool:
    return request.url.path.startswith(PREFIX + "/") or request.url.path == PREFIX


async def _delegate(handler: Callable[[Request, Exception], Response | Awaitable[Response]], request: Request,
                    exc: Exception) -> Response:
    """The API's own handler for a request outside the console."""
    result = handler(request, exc)
    return await result if inspect.isawaitable(result) else result


def install(app: FastAPI, router: Any) -> None:
    """Mount the console: its pages, its static files, ``GET /`` → the console, and its error mapping in front of
    the API's (problem+json stays the answer everywhere else)."""
    from mlgov.errors import NotFound

    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + PREFIX + "/", status_code=303)

    native_domain = app.exception_handlers[DomainError]
    native_validation = app.exception_handlers[RequestValidationError]
    native_http = app.exception_handlers[StarletteHTTPException]

    async def domain(request: Request, exc: Exception) -> Response:
        if _is_console(request) and isinstance(exc, DomainError):
            return console_error(request, exc)
        return await _delegate(native_domain, request, exc)

    async def validation(request: Request, exc: Exception) -> Response:
        if _is_console(request) and isinstance(exc, RequestValidationError):
            if request.method == "POST" and getattr(request.state, "console_back", None) is None:
                request.state.console_back = _form_page(request)   # signed in, with the right role: the form
            return console_error(request, _refused_request(exc.errors()))
        return await _delegate(native_validation, request, exc)

    async def http(request: Request, exc: Exception) -> Response:
        if _is_console(request) and isinstance(exc, StarletteHTTPException) and exc.status_code == 404:
            return console_error(request, NotFound(f"there is no console page at {request.url.path}",
                                                   fix="use the navigation above"))
        return await _delegate(native_http, request, exc)

    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)


def _refused_request(errors: Sequence[Any]) -> Invalid:
    """A refused page address or form, one line per parameter: a union's several errors (``status``: a status or
    empty) read as its first, without pydantic's member tags, and an address parameter with the value it got."""
    lines: dict[tuple[str, str], str] = {}
    for e in errors:
        loc = tuple(str(p) for p in e.get("loc", ()))
        where, name = (loc[0] if loc else "body"), (loc[1] if len(loc) > 1 else "")
        if (where, name) not in lines and len(lines) < 5:
            got = e.get("input")
            shown = f" (got {got!r})" if where in ("path", "query") and isinstance(got, str) else ""
            lines[(where, name)] = f"{field_path(e, skip=1) if where == 'body' else name}: {field_message(e)}{shown}"
    problems = "; ".join(lines.values())
    if all(where in ("path", "query") for where, _ in lines):
        return Invalid(f"this page's address is not valid: {problems}",
                       fix="use the page's own links and filters, or correct the address")
    return Invalid(f"the form was not filled in correctly: {problems}",
                   fix="correct the fields and send the form again")


def parse(model: type[_M], **fields: Any) -> _M:
    """A domain schema built from form fields; a field the schema refuses is an Invalid naming it."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{field_path(e) or 'form'}: {field_message(e)}"
                             for e in exc.errors()[:5])
        raise Invalid(f"the form was not filled in correctly: {problems}",
                      fix="correct the fields and send the form again") from None


def page_of(offset: int, limit: int, total: int) -> dict[str, int | None]:
    """Previous/next offsets for a pager (None where there is no such page). An offset past the end (an edited
    URL) shows "none of N" and leads back to the last page, rather than "100000000–895 of 895"."""
    past = offset >= total > 0
    return {"offset": offset, "limit": limit, "total": total, "first": offset + 1 if total and not past else 0,
            "last": min(offset + limit, total) if not past else 0,
            "prev": (max(total - limit, 0) if past else max(offset - limit, 0)) if offset > 0 else None,
            "next": offset + limit if offset + limit < total else None}
