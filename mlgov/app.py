"""Composition root: builds the FastAPI app from settings and every domain's router."""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clarify import compliance as clarify_compliance
from clarify import kinds as clarify_kinds
from clarify import sagemaker as clarify_sagemaker
from clarify.router import router as clarify_router
from console import web as console_web
from console.router import router as console_router
from lineage import sagemaker as lineage_sagemaker
from lineage.router import router as lineage_router
from mlgov import __version__, audit, auth, aws, cpu, events, inputs, web
from mlgov.api import health, router
from mlgov.context import request_id_var
from mlgov.db import Database, check_at_head
from mlgov.errors import DomainError, MalformedBody, PayloadTooLarge, install_error_handlers, problem
from mlgov.events import Dispatcher
from mlgov.openapi import install_openapi
from mlgov.outbound import OutboundPolicy
from mlgov.secrets import SecretBox
from mlgov.settings import Settings, get_settings
from mlgov.storage import open_store
from mlgov.web import HttpMiddleware, adding_headers, include
from monitor import compliance as monitor_compliance
from monitor import compute, jobs
from monitor import sagemaker as monitor_sagemaker
from monitor.router import metrics_router
from monitor.router import router as monitor_router
from monitor.service.endpoints import model_references
from registry import mlflow as registry_mlflow
from registry import sagemaker as registry_sagemaker
from registry import service as registry_service
from registry.router import router as registry_router

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


_RECORD_ROUTES = ("/capture", "/ground-truth")
"""Bodies of records (capture, ground truth) that their own reader parses record by record: the body guard's
repeated-key check, a second parse of every body, is left to the governance requests (capture is the hot path)."""


class JsonGuardMiddleware:
    """Screen every JSON (and JSON Lines) request body under the input policy before routing, so no route can
    forget it: too deep, NaN/Infinity, NUL characters, integers past 64 bits → 422 problem+json.

    The body is buffered (BodyLimitMiddleware, outside this one, bounds it) and replayed to the app; large bodies
    are screened in a worker thread so the event loop keeps serving.
    """

    JSON_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/jsonlines",
                  "application/x-jsonlines")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1").lower()
        mime = ctype.split(";")[0].strip()
        if mime and mime not in self.JSON_TYPES and not mime.endswith("+json"):
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        lines = mime in self.JSON_TYPES[1:]
        try:
            if len(body) > 65536:
                parsed = await run_in_threadpool(inputs.screen, body, "body", lines=lines)
            else:
                parsed = inputs.screen(body, "body", lines=lines)
            if parsed is not inputs.NOT_PARSED:   # routes reading the raw body take it from here, parsed once
                scope.setdefault("state", {})[inputs.PARSED_BODY] = parsed
            if not lines and not scope.get("path", "").endswith(_RECORD_ROUTES):
                if len(body) > 65536:
                    await run_in_threadpool(inputs.check_unique_keys, body, "the request body")
                else:
                    inputs.check_unique_keys(body, "the request body")
                scope.setdefault("state", {})[inputs.KEYS_CHECKED] = True
        except DomainError as exc:
            await problem(exc.status, exc.title, exc.detail, fix=exc.fix, **exc.extra)(scope, receive, send)
            return
        await self.app(scope, _replaying(body, receive), send)


async def _whole_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app after a middleware read the body: the body once, then the client's messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class GzipRequestMiddleware:
    """Bodies sent with ``Content-Encoding: gzip`` (OpenLineage's HTTP transport with compression on, curl
    --compressed uploads) are inflated before the JSON guard and the routes read them. The inflated body is held
    to the same limit as a plain one, so a small compressed body cannot expand past what may be sent
    uncompressed. Other encodings are a 415 rather than JSON parse errors about bytes nobody can read."""

    RATIO = 100
    """A gzip body inflates to at most this many times its size (and at least FLOOR bytes), below the body limit:
    this runs before authentication, and an anonymous 100 KB bomb that inflates to the full 100 MiB limit cost 13 s
    of CPU and 300 MB. JSON and CSV compress 5-20 times."""
    FLOOR = 1 << 20

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = list(scope.get("headers") or []) if scope["type"] == "http" else []
        encoding = next((v for k, v in headers if k == b"content-encoding"), b"").decode("latin-1").strip().lower()
        if encoding in ("", "identity"):
            await self.app(scope, receive, send)
            return
        if encoding not in ("gzip", "x-gzip"):
            await problem(415, "Unsupported media type", f"the request body's Content-Encoding {encoding!r} is not "
                          "supported", fix="send the body uncompressed or gzip-compressed (Content-Encoding: gzip)"
                          )(scope, receive, send)
            return
        packed = await _whole_body(receive)
        try:   # on the event loop only what inflates to a few MB at most
            body = await run_in_threadpool(self._inflate, packed) if len(packed) > 16384 else self._inflate(packed)
        except DomainError as exc:
            await problem(exc.status, exc.title, exc.detail, fix=exc.fix)(scope, receive, send)
            return
        headers = [(k, v) for k, v in headers if k not in (b"content-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replaying(body, receive), send)

    def _inflate(self, packed: bytes) -> bytes:
        limit = min(self.limit, max(self.FLOOR, self.RATIO * len(packed)))
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(packed, limit + 1)
        except zlib.error as exc:
            raise MalformedBody(f"the request body is not valid gzip ({exc})", fix="compress the body with gzip, or "
                          "send it uncompressed without Content-Encoding") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"the request body inflates to more than {limit} bytes (a gzip body may inflate to {self.RATIO} times "
                f"its size, at least {self.FLOOR} bytes, within the {self.limit}-byte body limit)",
                fix="send it uncompressed, or in smaller parts")
        if not inflater.eof or inflater.unused_data:
            raise MalformedBody("the request body is not one whole gzip stream (truncated, or followed by other data)",
                          fix="send exactly one complete gzip-compressed body")
        return body


class RequestIdMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, adding_headers(send, [(b"x-request-id", rid.encode("latin-1"))]))
        finally:
            request_id_var.reset(token)


def create_app(settings: Settings | None = None, db: Database | None = None, *, check_schema: bool = True,
               request_threads: int | None = None) -> FastAPI:
    """The service. ``request_threads``: cap the thread pool that runs sync handlers (the server passes
    MLGOV_REQUEST_THREADS; in-process test clients keep anyio's default)."""
    settings = settings or get_settings()
    if request_threads is not None and settings.db_write_sessions >= request_threads:
        # A writer holding a row or advisory lock may need another thread turn before it commits; with every
        # thread taken by writers waiting on that lock it would never get one (each would end at lock_timeout
        # with 503). Fewer writers than threads always leaves one turn free.
        settings = settings.model_copy(update={"db_write_sessions": max(request_threads - 1, 1)})
    database = db or Database.from_settings(settings)
    outbound = OutboundPolicy.from_settings(settings)
    secrets = SecretBox.from_settings(settings)
    compute.configure(settings)   # MLGOV_COMPUTE: where monitoring summaries run (this process or a Dask cluster)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if request_threads is not None:   # anyio's limiter belongs to this event loop: set once it runs
            anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        for tuned in (cpu.TUNED, cpu.tune_malloc()):   # the allocator line: what compute.configure set
            if tuned:
                log.info("%s", tuned)
        if check_schema:
            check_at_head(database.engine)
            with database.session_scope() as session:
                if sealed := events.seal_legacy_secrets(session, secrets):
                    log.info("encrypted the plaintext secrets or URLs of %d webhook(s) (rows from before migrations "
                             "0011 and 0027)", sealed)
        dispatcher = Dispatcher(database, settings, outbound, secrets) if settings.background_workers else None
        if dispatcher:
            dispatcher.start()
        # The scheduler's threads tick and run due schedules beside request handling (exactly once across replicas).
        scheduler = jobs.background(database, store(), settings) if settings.scheduler else None
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if dispatcher:
                dispatcher.stop()
            if db is None:
                database.dispose()

    inputs.configure(settings.max_json_depth, settings.max_columns)
    app = FastAPI(
        title="mlgov",
        version=__version__,
        description="Governed model registry, lineage, monitoring and audit.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,   # mlgov.web serves offline docs pages that fit its CSP
        dependencies=[Depends(inputs.guard_params)],
    )
    app.state.settings = settings
    app.state.db = database
    app.state.outbound = outbound   # mlgov.outbound.OutboundDep: the one policy for every URL the server calls
    app.state.secrets = secrets     # mlgov.secrets.SecretsDep: encryption of secrets stored for reading back
    app.state.store = None

    def store() -> Any:
        if app.state.store is None:
            app.state.store = open_store(settings)
        return app.state.store

    app.state.get_store = store
    database.audit_chain = audit.chain_for(settings, store())  # key outside the database, checkpoints in the store
    install_error_handlers(app)

    clarify_kinds.register()   # ModelBias and ModelExplainability monitors, beside monitor's own kinds
    monitor_compliance.register()   # alerts, monitoring runs, drift baselines and explanation reports of each
    clarify_compliance.register()   # version in registry's compliance report
    include(app, health)
    include(app, router)
    include(app, registry_router)
    # MLflow's registry REST API on the same services. Its paths share nothing with /api/v1, so where it sits only
    # decides how many routes a request is matched against first: here, before the other domains' ~120 routes.
    registry_mlflow.install(app)
    include(app, lineage_router)
    include(app, monitor_router)
    include(app, metrics_router)
    include(app, clarify_router)
    console_web.install(app, console_router)   # the web console under /console (GET / leads there)
    registry_service.register_reference_check(model_references)   # rename/delete ask monitor
    install_openapi(app)

    # The SageMaker API (AWS JSON 1.1 on POST /): each domain registers its operations.
    sagemaker = aws.AwsService(aws.botocore_model("sagemaker"), account=settings.aws_account_id,
                               lookup=lambda session, akid: auth.aws_credentials(session, akid, secrets),
                               extras={"store": store}, retry_after_s=settings.retry_after_s)
    registry_sagemaker.register(sagemaker)
    lineage_sagemaker.register(sagemaker)
    monitor_sagemaker.register(sagemaker)
    clarify_sagemaker.register(sagemaker)   # ModelBias job definitions, beside monitor's own
    app.state.sagemaker = sagemaker
    sagemaker.install(app)

    app.add_middleware(JsonGuardMiddleware)
    app.add_middleware(GzipRequestMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    registry_mlflow.install_error_shape(app)   # MLflow's error body on its paths, for errors raised before routing

    web.install(app)   # static assets, offline /docs and /redoc; security headers outermost, on every response
    return app
