"""Composition root: builds the FastAPI app from settings and every domain's router."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlgov import __version__
from mlgov.context import request_id_var
from mlgov.db import Database, check_at_head
from mlgov.errors import install_error_handlers, problem
from mlgov.events import Dispatcher
from mlgov.openapi import install_openapi
from mlgov.settings import Settings, get_settings
from mlgov.storage import open_store

log = logging.getLogger("mlgov")


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Reject bodies over the limit before any handler sees them (declared or streamed length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            # Frameworks turn a failed body read into their own 4xx; answer 413 instead of whatever they say.
            nonlocal replaced
            if exceeded:
                if not replaced:
                    replaced = True
                    await self._reject(scope, receive, send)
                return
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not replaced:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = problem(413, "Payload too large", f"the request body is larger than {self.limit} bytes",
                       fix="send a smaller body, or raise MLGOV_MAX_BODY_BYTES on the server")
        await resp(scope, receive, send)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = request_id_var.set(rid)

        async def send_with_id(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg.setdefault("headers", [])
                msg["headers"] = [*msg["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def create_app(settings: Settings | None = None, db: Database | None = None, *, check_schema: bool = True) -> FastAPI:
    settings = settings or get_settings()
    database = db or Database(settings.resolved_database_url, echo=settings.log_sql)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if check_schema:
            check_at_head(database.engine)
        dispatcher = Dispatcher(database, settings) if settings.background_workers else None
        if dispatcher:
            dispatcher.start()
        scheduler = None
        if settings.with_scheduler:
            from monitor import jobs

            scheduler = jobs.background(database, store(), settings)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            if dispatcher:
                dispatcher.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="mlgov",
        version=__version__,
        description="Governed model registry, lineage, monitoring and audit.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.store = None

    def store() -> Any:
        if app.state.store is None:
            app.state.store = open_store(settings)
        return app.state.store

    app.state.get_store = store
    install_error_handlers(app)

    from clarify.router import router as clarify_router
    from lineage.router import router as lineage_router
    from mlgov.api import health, router
    from monitor.router import metrics_router
    from monitor.router import router as monitor_router
    from registry.router import router as registry_router

    app.include_router(health)
    app.include_router(router)
    app.include_router(registry_router)
    app.include_router(lineage_router)
    app.include_router(monitor_router)
    app.include_router(metrics_router)
    app.include_router(clarify_router)
    install_openapi(app)

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
