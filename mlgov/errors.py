"""Domain errors and the one place that turns errors into RFC 9457 problem+json responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlgov.db import DatabaseBusy, busy_reason, is_unique_violation

log = logging.getLogger("mlgov.errors")
PROBLEM = "application/problem+json"


class DomainError(Exception):
    """Base of every error a service raises; carries its HTTP status so routers stay thin."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, fix: str | None = None, fixes: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix
        self.fixes = dict(fixes or {})
        self.extra = extra

    def fix_for(self, door: str) -> str | None:
        """The fix in the words of the protocol the caller speaks ("sagemaker", "mlflow"): a SageMaker client
        is told of ListModelPackages, not of mlgov's own route. Falls back to the native fix."""
        return self.fixes.get(door, self.fix)


class NotFound(DomainError):
    status, title = 404, "Not found"


class Conflict(DomainError):
    status, title = 409, "Conflict"


class MalformedBody(DomainError):
    """A body that cannot be read at all (not valid gzip under Content-Encoding: gzip)."""

    status, title = 400, "Malformed body"


class MalformedJSON(DomainError):
    """A request body that does not parse: 400 on every route, as FastAPI-parsed bodies already answer."""

    status, title = 400, "Malformed JSON"


class Forbidden(DomainError):
    status, title = 403, "Forbidden"


class Unauthorized(DomainError):
    status, title = 401, "Unauthorized"


class Invalid(DomainError):
    status, title = 422, "Invalid request"


class PayloadTooLarge(DomainError):
    status, title = 413, "Payload too large"


def problem(status: int, title: str, detail: str, *, fix: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if fix:
        body["fix"] = fix
    body.update(extra)
    headers = {**({"WWW-Authenticate": "Bearer"} if status == 401 else {}), **(headers or {})}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette's Allow names only the first matching route)."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Match

    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches({**request.scope, "method": "\0"})
        if match == Match.PARTIAL and route.methods:
            methods |= set(route.methods)
    return sorted(methods)


def _busy(request: Request, detail: str, fix: str) -> JSONResponse:
    """503 + Retry-After: overload is the client's cue to come back later, not a server bug (never 500)."""
    settings = getattr(request.app.state, "settings", None)
    retry_after = int(getattr(settings, "retry_after_s", 2))
    log.warning("overloaded on %s %s: %s", request.method, request.url.path, detail)
    return problem(503, "Service busy", detail, fix=fix, headers={"Retry-After": str(retry_after)},
                   retry_after_s=retry_after)


def store_unavailable(exc: BaseException) -> str | None:
    """Why ``exc`` means the object store cannot serve mlgov now (down, unreachable, refusing the server's
    credentials), or None: a condition of the server, not of the request, so it answers 503, never 500."""
    try:
        from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as StoreConnectionError
    except ImportError:   # pragma: no cover - a dependency
        return None
    if isinstance(exc, StoreConnectionError | ConnectionClosedError | ReadTimeoutError):
        return "it cannot be reached"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "ExpiredToken",
                    "InvalidToken", "InvalidClientTokenId"):
            return f"it refuses the server's credentials ({code}); check MLGOV_S3_* and the bucket's policy"
        if code == "NoSuchBucket":
            return "its bucket does not exist (MLGOV_STORE_URL)"
        if isinstance(status, int) and status >= 500:
            return f"it answered {status} {code}".strip()
    return None


STORE_FIX = "retry later; if it persists, an operator should check the object store (MLGOV_STORE_URL) and /readyz"


def unavailable(exc: BaseException) -> str | None:
    """Why ``exc`` is the server's momentary condition rather than a fault, as the start of a sentence (the database
    busy or out of reach, `busy_reason`; the object store, `store_unavailable`), or None. Every protocol answers
    it with 503 and Retry-After."""
    if (reason := busy_reason(exc)) is not None:
        return f"the database is busy: {reason}"
    if (store := store_unavailable(exc)) is not None:
        return f"the object store is unavailable: {store}"
    return None


_BUSY_FIX = ("nothing was stored; retry after the Retry-After interval. If it persists, send fewer concurrent "
             "requests, or raise the server's MLGOV_DB_* limits (see the configuration reference)")


def field_message(err: Any) -> str:
    """A pydantic error's message as a user reads it: validators' own sentences without pydantic's "Value error, "
    prefix (every protocol's error mapping words field problems the same way)."""
    return str(err.get("msg", "")).removeprefix("Value error, ")


def field_path(err: Any, skip: int = 0) -> str:
    """Where a pydantic error points, dotted (``body.tags.0``; ``skip=1`` drops the ``body``/``query`` part); empty
    for the whole document."""
    return ".".join(str(p) for p in tuple(err.get("loc", ()))[skip:])


def _validation_problem(exc: RequestValidationError, content_type: str) -> JSONResponse:
    errors = exc.errors()
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json") and \
            any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors):
        # FastAPI reads a body of another type as bytes, which then "is not a valid dictionary": say why
        return problem(
            415,
            "Unsupported media type",
            f"this route takes a JSON body, but the request's Content-Type is {media or 'missing'}",
            fix="send the body with Content-Type: application/json",
        )
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = e.get("ctx", {}).get("error", "")
        return problem(
            400,
            "Malformed JSON",
            f"the request body is not valid JSON ({where})".replace(" ()", ""),
            fix="send a well-formed JSON document with Content-Type: application/json",
        )
    items = [
        {"field": field_path(e), "message": field_message(e), "type": e.get("type", "")} for e in errors
    ]
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    return problem(
        422,
        "Invalid request",
        f"the request does not match the expected shape: {summary}",
        fix="correct the listed fields (see the API schema at /docs) and retry",
        errors=json.loads(json.dumps(items, default=str)),
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, fix=exc.fix, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(exc, request.headers.get("content-type", ""))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return problem(
                404,
                "Not found",
                f"no route matches {request.method} {request.url.path}",
                fix="check the path against the API reference at /docs",
            )
        if exc.status_code == 405:
            allow = allowed_methods(request) or [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")]
            return problem(
                405,
                "Method not allowed",
                f"{request.method} is not supported on {request.url.path}; allowed: {', '.join(allow)}",
                fix=f"use one of the methods listed in the Allow header: {', '.join(allow)}",
                headers={"Allow": ", ".join(allow)},
            )
        return problem(exc.status_code, "HTTP error", str(exc.detail))

    @app.exception_handler(DatabaseBusy)
    async def _turn_timeout(request: Request, exc: DatabaseBusy) -> JSONResponse:
        return _busy(request, exc.detail, exc.fix)

    from botocore.exceptions import BotoCoreError, ClientError

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(BotoCoreError)
    @app.exception_handler(ClientError)
    async def _database_or_store(request: Request, exc: Exception) -> JSONResponse:
        reason = busy_reason(exc)
        if reason is not None:
            return _busy(request, f"the database is busy: {reason}", _BUSY_FIX)
        store = store_unavailable(exc)
        if store is not None:
            return _busy(request, f"the object store is unavailable: {store}; nothing was stored", STORE_FIX)
        if is_unique_violation(exc):   # lost an insert race a service did not resolve itself: not a server bug
            log.warning("unique key race on %s %s: %s", request.method, request.url.path, exc)
            return problem(409, "Conflict", "a concurrent request stored the same thing first; nothing was stored",
                           fix="re-read the resource and retry if your change is still needed")
        return _unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _unexpected_error(request, exc)


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")
