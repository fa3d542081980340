"""Kernel routes: health, API keys, audit log and webhooks. Domain routers live in their packages."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, Generic, TypeVar

import pydantic_core
from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter
from starlette.formparsers import MultiPartParser

from mlgov import audit, auth, events, workers
from mlgov.auth import Admin, Auditor, SessionDep
from mlgov.db import SchemaNotAtHead, as_utc, busy_reason, check_at_head, ping
from mlgov.errors import Conflict, DomainError, Invalid, NotFound, store_unavailable
from mlgov.outbound import OutboundDep
from mlgov.secrets import SecretsDep
from mlgov.types import Timestamp
from mlgov.web import Router

T = TypeVar("T")

# form_parts reads every uploaded file whole into memory, and the body limit (MLGOV_MAX_BODY_BYTES) bounds it.
# Starlette's default spools a file part to disk past 1 MiB, a thread hop per 64 KiB chunk written and a read back:
# 80 ms of a 39 MB CSV upload's parsing, 40 ms in memory.
MultiPartParser.spool_max_size = sys.maxsize


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def json_response(adapter: TypeAdapter[Any], value: Any, status_code: int = 200) -> Response:
    """``value`` serialised once by ``adapter`` (the route's response model): for hot read routes whose service
    builds the answer from database rows, so FastAPI neither re-validates nor re-encodes it. The route keeps
    ``response_model`` for its documentation."""
    return Response(adapter.dump_json(value), status_code=status_code, media_type="application/json")


def encoded_response(value: Any, status_code: int = 200) -> Response:
    """``value`` (dicts, lists, str, numbers, datetimes … already in the response model's shape and JSON types)
    encoded by pydantic's core encoder as it is: for the hottest read routes, where even building the response
    model per row costs more than the query (the route keeps ``response_model`` for its documentation)."""
    return Response(pydantic_core.to_json(value), status_code=status_code, media_type="application/json")


def page(items: Any, total: int, limit: int, offset: int) -> dict[str, Any]:
    """The body of every paginated list."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}


async def form_parts(request: Request) -> dict[str, Any]:
    """A form (files as (bytes, filename), fields as str) or a JSON object under "__json__", whichever the
    client sent; routes that take uploads read their input through this one dependency, so the input policy
    (mlgov.inputs) holds for every one of them: malformed JSON is 400, NUL in a field or a too-deep or
    non-standard JSON document is 422 naming the field."""
    from mlgov import inputs

    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                raise Invalid(f"form field {key!r} contains a NUL character",
                              fix="remove the NUL characters (\\u0000); PostgreSQL cannot store them", field=key)
            out[key] = (await value.read(), getattr(value, "filename", None)) if hasattr(value, "read") else value
        return out
    if ctype.startswith("application/json") or not ctype:
        body = inputs.body_document(request, await request.body() or b"{}", "body")
        if not isinstance(body, dict):
            raise Invalid("the JSON body must be an object", fix='send {"baseline_id": …, …}')
        return {"__json__": body}
    raise Invalid(f"unsupported Content-Type {ctype!r}",
                  fix="use multipart/form-data (file upload) or application/json")


Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=2**63 - 1, description="rows to skip")]

health = Router(tags=["health"])
log = logging.getLogger("mlgov")


class ServiceUnavailable(DomainError):
    status, title = 503, "Not ready"


@health.get("/healthz", summary="Liveness (no auth)")
async def healthz() -> dict[str, str]:   # on the event loop: alive even while every request thread is busy
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description="ready: the database answers and is at the expected schema")
    scheduler: workers.WorkerStatus = Field(description="whether a monitoring scheduler (in any server or "
                                            "`mlgov scheduler` process) ticked recently; informational, not a "
                                            "condition of readiness")
    store: str = Field(description="ok, or why the object store cannot serve now (unreachable, refusing the "
                                   "server's credentials); informational: registry and lineage calls need no store")


@health.get("/readyz", summary="Readiness: the database answers and is at the expected schema (no auth)",
            response_model=Readiness)
def readyz(request: Request) -> Any:
    db = auth.get_db(request)
    try:
        ping(db.engine)
        check_at_head(db.engine)
        with db.session_scope(write=False) as s:
            scheduler = workers.status(s, workers.SCHEDULER)
    except SchemaNotAtHead as exc:
        raise ServiceUnavailable(f"database not ready: {exc}", fix="run `mlgov db upgrade`") from None
    except Exception as exc:   # the driver's text names hosts and databases: the log has it, not this open route
        log.warning("readiness: the database is not ready: %s", exc)
        raise ServiceUnavailable(f"database not ready: {busy_reason(exc) or type(exc).__name__}",
                                 fix="check MLGOV_DATABASE_URL and the database server (the server's log says "
                                     "more)") from None
    return Readiness(status="ready", scheduler=scheduler, store=_store_status(request))


STORE_PROBE_S = 2.0
"""How long readiness waits for the store: boto3 retries a dead endpoint for minutes, and a probe must answer."""


def _store_status(request: Request) -> str:
    """One look at the store at a time per app (a look still under way from an earlier probe is waited on, not
    repeated), at most STORE_PROBE_S."""
    state = request.app.state
    look: Future[bool] | None = getattr(state, "store_look", None)
    if look is None or look.done():
        look = state.store_look = _STORE_LOOKS.submit(state.get_store().exists, "audit/checkpoints/latest.json")
        state.store_look_began = time.monotonic()
    try:
        look.result(timeout=STORE_PROBE_S)
    except FutureTimeout:
        return f"not answering (asked {time.monotonic() - state.store_look_began:.0f} s ago)"
    except Exception as exc:
        log.warning("readiness: the object store is not ready: %s", exc)
        return store_unavailable(exc) or f"failing ({type(exc).__name__})"
    return "ok"


_STORE_LOOKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlgov-store-look")


router = Router(prefix="/api/v1")


# --- keys ---------------------------------------------------------------------------------------------

class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    role: auth.Role
    owner: str | None = Field(default=None, min_length=1, max_length=128,
                              description="the person holding the key (default: the name); four-eyes compares owners")
    aws_credentials: StrictBool = Field(default=False, description="also issue an AWS access key id and secret (SigV4) "
                                  "for the SageMaker API; the secret is shown once")


class KeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    role: str
    owner: str
    created_by: str = Field(description="owner of the key that created this one (or 'cli' / 'system')")
    key_id: str
    active: bool
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    aws_access_key_id: str | None = None


class KeyCreated(KeyRead):
    key: str = Field(description="the API key; shown once, stored only as a hash")
    aws_secret_access_key: str | None = Field(default=None, description="shown once; stored encrypted")


@router.get("/keys", tags=["keys"], response_model=list[KeyRead])
def list_keys(session: SessionDep, _: Admin) -> Any:
    return auth.list_keys(session)


@router.post("/keys", tags=["keys"], status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, session: SessionDep, principal: Admin, box: SecretsDep) -> Any:
    row, full = auth.create_key(session, body.name, body.role.value, actor=principal.name, owner=body.owner,
                                creator=principal, aws=box if body.aws_credentials else None)
    return KeyCreated.model_validate({**KeyRead.model_validate(row).model_dump(), "key": full,
                                      "aws_secret_access_key": auth.aws_secret_of(row, box)})


@router.delete("/keys/{name}", tags=["keys"], status_code=204)
def revoke_key(name: str, session: SessionDep, principal: Admin) -> Response:
    auth.revoke_key(session, name, actor=principal.name)
    return Response(status_code=204)


# --- audit --------------------------------------------------------------------------------------------

class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    seq: int
    ts: dt.datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    before: Any
    after: Any
    request_id: str | None
    prev_hash: str
    hash: str


def event_filters(
    actor: str | None = None,
    action: Annotated[str | None, Query(description="exact action or a pattern like 'version.*'")] = None,
    since: Annotated[Timestamp | None, Query(alias="from")] = None,
    until: Annotated[Timestamp | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """The filters every read of the audit log takes, as ``audit.query``'s keywords (declared once here). An empty
    window is refused, as the compliance report refuses it, rather than answered with no events."""
    lo, hi = as_utc(since), as_utc(until)
    if lo is not None and hi is not None and lo >= hi:
        raise Invalid(f"the window starts ({lo.isoformat()}) at or after it ends ({hi.isoformat()})",
                      fix="give `from` before `to`, or leave either out")
    return {"actor": actor, "action": action, "since": lo, "until": hi}


EventFilters = Annotated[dict[str, Any], Depends(event_filters)]


@router.get("/audit/events", tags=["audit"], response_model=Page[AuditEventRead])
def audit_events(
    session: SessionDep,
    _: Auditor,
    filters: EventFilters,
    subject_type: str | None = None,
    subject: Annotated[str | None, Query(description="subject id, e.g. 'churn/3'")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    rows, total = audit.query(session, subject_type=subject_type, subject_id=subject, limit=limit, offset=offset,
                              **filters)
    return page(rows, total, limit, offset)



@router.get("/audit/verify", tags=["audit"])
def audit_verify(
    session: SessionDep, _: Auditor
) -> dict[str, Any]:
    return audit.verify(session)


@router.post("/audit/checkpoint", tags=["audit"])
def audit_checkpoint(session: SessionDep, _: Admin) -> dict[str, Any]:
    """Sign the current head and write it to the object store (refused if the chain disagrees with the last one)."""
    try:
        return audit.write_checkpoint(session)
    except audit.CheckpointRefused as exc:
        raise Conflict(str(exc), fix="run GET /api/v1/audit/verify to see where the chain breaks") from None


# --- webhooks -----------------------------------------------------------------------------------------

class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2048, pattern="^https?://")
    secret: str = Field(min_length=16, max_length=256)
    events: list[str] = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=1000)


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    url: str = Field(description="the URL with its password and query values shown as *** (they often carry "
                                 "tokens); the server keeps the URL itself encrypted")
    events: list[str]
    description: str | None
    active: bool
    created_by: str
    created_at: dt.datetime


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    attempt: int
    at: dt.datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryRead(BaseModel):
    id: str
    event_type: str
    sequence: int | None = Field(description="per-subscription number in the order events were committed (header "
                                 "X-Mlgov-Sequence); null until the dispatcher numbers it")
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    history: list[AttemptRead]


def _webhook(session: SessionDep, webhook_id: str) -> events.Webhook:
    """A subscription that exists and was not deleted: DELETE keeps the row (inactive) for its delivery history,
    but to the API it is gone, as its 204 said."""
    hook = events.get_webhook(session, webhook_id)
    if not hook.active:
        raise NotFound(f"webhook {webhook_id!r} was deleted", fix="list webhooks with GET /api/v1/webhooks")
    return hook


@router.post("/webhooks", tags=["webhooks"], status_code=201, response_model=WebhookRead)
def create_webhook(body: WebhookCreate, session: SessionDep, principal: Admin,
                   policy: OutboundDep, box: SecretsDep) -> Any:
    """The URL must pass the outbound policy (no loopback/private/link-local unless MLGOV_OUTBOUND_ALLOW)."""
    return events.create_webhook(session, url=body.url, secret=body.secret, events=body.events,
                                 description=body.description, actor=principal.name, policy=policy, box=box)


@router.get("/webhooks", tags=["webhooks"], response_model=list[WebhookRead])
def list_webhooks(session: SessionDep, _: Admin) -> Any:
    return events.list_webhooks(session, limit=None)


@router.get("/webhooks/{webhook_id}", tags=["webhooks"], response_model=WebhookRead)
def get_webhook(webhook_id: str, session: SessionDep, _: Admin) -> Any:
    return _webhook(session, webhook_id)


@router.delete("/webhooks/{webhook_id}", tags=["webhooks"], status_code=204)
def delete_webhook(webhook_id: str, session: SessionDep,
                   principal: Admin) -> Response:
    _webhook(session, webhook_id)
    events.delete_webhook(session, webhook_id, actor=principal.name)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", tags=["webhooks"], response_model=list[DeliveryRead])
def webhook_deliveries(webhook_id: str, session: SessionDep, _: Admin,
                       limit: Limit = 100, offset: Offset = 0) -> Any:
    _webhook(session, webhook_id)
    return [_delivery(d, attempts) for d, attempts in events.list_deliveries(session, webhook_id, limit, offset)]


def _delivery(d: events.Delivery, attempts: list[events.DeliveryAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=d.id, event_type=d.event_type, sequence=d.sequence, status=d.status, attempts=d.attempts,
        next_attempt_at=d.next_attempt_at, last_status_code=d.last_status_code, last_error=d.last_error,
        delivered_at=d.delivered_at, created_at=d.created_at,
        history=[AttemptRead.model_validate(a) for a in attempts])


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tags=["webhooks"], status_code=202,
             response_model=DeliveryRead)
def retry_delivery(webhook_id: str, delivery_id: str, session: SessionDep,
                   principal: Admin) -> Any:
    """Redeliver a dead letter (audited); it keeps its sequence number and gets a fresh attempt budget."""
    _webhook(session, webhook_id)   # a deleted subscription is gone (404), as on its other routes
    d = events.retry_delivery(session, webhook_id, delivery_id, actor=principal.name)
    return _delivery(d, events.delivery_history(session, d.id))
