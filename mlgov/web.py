"""What every page the server sends has in common: autoescaped templates, security headers, same-origin assets.

Reports carry values that clients captured or typed (category values, feature names, model-card text), so a
page is only safe if (1) every template autoescapes and no code marks a built string as markup, and (2) the
browser refuses anything that slips through: the Content-Security-Policy forbids inline script and every
script not served by mlgov itself. The API docs (Swagger UI, ReDoc) are served from the package, so they
work offline and fit the same policy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import mimetypes
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from starlette._utils import get_route_path
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static"
KERNEL_TEMPLATES = Path(__file__).parent / "templates"


class Router(APIRouter):
    """An APIRouter that, once added at the app's root by `include`, declines at once a path none of its routes
    can match (one ``str.startswith`` over the routes' literal prefixes). FastAPI matches a request against every
    route of each router included before the right one, then the right one's routes a second time: an MLflow get
    walked ~120 native routes first (~90 µs of a ~1.3 ms request). Included any other way (under a prefix, inside
    another router), or holding anything but plain routes, it keeps FastAPI's full matching."""

    _root: Any = None
    _guard: tuple[int, tuple[str, ...] | None] = (-1, None)

    def _prefixes(self) -> tuple[str, ...] | None:
        count, prefixes = self._guard
        if count != len(self.routes):   # routes are only ever added
            literal = [r.path.split("{", 1)[0].rstrip("/") for r in self.routes if isinstance(r, APIRoute | Route)]
            prefixes = tuple(sorted(set(literal))) if len(literal) == len(self.routes) else None
            self._guard = (len(self.routes), prefixes)
        return prefixes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._root is not None and scope.get("router") is self._root:   # matched from the root, unprefixed
            prefixes = self._prefixes()
            if prefixes is not None and not get_route_path(scope).startswith(prefixes):
                return Match.NONE, {}
        return super().matches(scope)


def include(app: FastAPI, router: APIRouter) -> None:
    """``app.include_router(router)`` at the root, without a prefix: a `Router`'s paths are then its routes' own."""
    app.include_router(router)
    if isinstance(router, Router):
        router._root = app.router


def json_text(value: Any) -> str:
    """Structured user data (a model card's fields) as plain JSON text; autoescaping then makes it safe."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def templates(directory: Path, *behind: Path) -> Environment:
    """The one way a package builds its Jinja environment: autoescape on for every template, whatever its name;
    the directories ``behind`` it (another package's layouts it extends) and the kernel's templates
    (``{% include "report.css" %}``) visible behind the package's own."""
    dirs = [directory, *behind, KERNEL_TEMPLATES]
    env = Environment(loader=ChoiceLoader([FileSystemLoader(d) for d in dirs]), autoescape=True)
    env.filters["json_text"] = json_text
    return env


_templates = templates(KERNEL_TEMPLATES)


@functools.cache
def scoped_report_css() -> str:
    """The reports' stylesheet with every rule nested under ``.report`` (CSS nesting), for a page that shows a report
    inside its own layout (the console): the standalone report's body, heading and table rules stay in the report."""
    return ".report {\n" + _templates.get_template("report.css").render() + "\n}\n"


def _style_hash(template: str) -> str:
    digest = hashlib.sha256(_templates.get_template(template).render().encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


_SAME = "default-src 'self'; script-src 'self'; "
_TAIL = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
# Pages: nothing but same-origin resources; no inline script, no plugins, no framing, no <base> rewriting. The
# reports embed one stylesheet, allowed by its hash (no other inline style), so a saved report is one
# self-contained file that still renders styled offline.
PAGE_CSP = f"{_SAME}style-src 'self' {_style_hash('report.css')}; {_TAIL}"
# The docs pages show only the server's own OpenAPI document and keep script same-origin. Swagger UI's stylesheet
# draws its icons from data: URIs; ReDoc (styled-components) writes its styles into <style> elements at run time
# and runs its search index in a blob: worker made by its own bundle. Neither styles nor images run code.
DOCS_CSP = {
    "/docs": f"{_SAME}img-src 'self' data:; {_TAIL}",
    "/redoc": f"{_SAME}style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; {_TAIL}",
}

_COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY")]
# Starlette guesses types from the platform's table, which can say text/plain for .js (then nosniff blocks it).
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")


class HttpMiddleware(ABC):
    """An ASGI middleware that acts on HTTP requests (``http``) and passes every other scope (lifespan) through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    @abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (subclasses)."""


def adding_headers(send: Send, headers: list[tuple[bytes, bytes]], *, unless_set: bool = False) -> Send:
    """``send`` that appends ``headers`` to the response's start (``unless_set``: those the app did not set)."""
    async def sending(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            present = {k.lower() for k, _ in msg.get("headers", [])} if unless_set else set()
            msg["headers"] = [*msg.get("headers", []), *(h for h in headers if h[0] not in present)]
        await send(msg)

    return sending


class SecurityHeadersMiddleware(HttpMiddleware):
    """nosniff, no-referrer and DENY framing on every response; the CSP on every response too (it only
    matters where a browser renders the body, and covering all of them leaves no HTML route forgotten)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        csp = DOCS_CSP.get(path, PAGE_CSP)
        extra = [*_COMMON, (b"content-security-policy", csp.encode())]
        await self.app(scope, receive, adding_headers(send, extra, unless_set=True))


def install(app: FastAPI) -> None:
    """Serve the package's static files and the offline docs pages, and wrap the app in the security headers.

    The app must be created with ``docs_url=None, redoc_url=None``: FastAPI's own docs pages load their
    assets from a CDN and start with an inline script, which the CSP forbids."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="static")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    def page(name: str, request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(_templates.get_template(name).render(title=title, static=root + STATIC_URL,
                                                                 openapi_url=root + openapi_url))

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return page("swagger.html", request)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return page("redoc.html", request)

    # Outside Starlette's ServerErrorMiddleware too (add_middleware would sit inside it), so even a 500 has them.
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeadersMiddleware(build())  # type: ignore[method-assign]
