"""MLflow's model-registry REST API (``/api/2.0/mlflow/…``) served on mlgov's registry.

Only translation: MLflow's request messages (``mlflow/protos/model_registry.proto``, ``webhooks.proto``) in,
mlgov service calls, MLflow's response messages out. Four-eyes, governed stages and aliases, policies, audit,
events and lineage all happen in ``registry.service``, as for every other door. A registered model is a model
group, a model version a version; MLflow's stage "None" is the group's initial stage; tags are metadata, and
``mlgov.*`` tags show mlgov's own facts (approval status, approver), which nobody can set.

Errors have one shape here, MLflow's ``{"error_code", "message"}`` with MLflow's HTTP statuses, fed by the same
domain errors as problem+json on the native API (``MlflowRoute`` turns them into ``MlflowError`` after the
request's transaction was rolled back; ``install`` registers the handler).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote_plus, urlsplit

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from mlgov import events, inputs
from mlgov.auth import (
    ADMINS,
    MOVERS,
    PUBLISHERS,
    READERS,
    Principal,
    ReadSessionDep,
    SessionDep,
    end_read,
    get_db,
    require,
    require_reading,
)
from mlgov.context import request_id_var
from mlgov.db import DatabaseBusy, is_unique_violation, like_matches
from mlgov.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    MalformedJSON,
    NotFound,
    Unauthorized,
    field_message,
    field_path,
    unavailable,
)
from mlgov.outbound import OutboundDep
from mlgov.secrets import SecretsDep
from mlgov.storage import ObjectStore, StoreDep
from mlgov.web import Router, include
from registry import group_commit, service
from registry.errors import (
    AlreadyInStage,
    GroupExists,
    GroupNotFound,
    RuleRefusal,
    TransitionNotAllowed,
    VersionNotFound,
)
from registry.orm import ModelGroup
from registry.schemas import (
    DESCRIPTION_MAX,
    GROUP_NAME_MAX,
    TAG_KEY_MAX,
    TAG_LIMITS,
    TAG_VALUE_MAX,
    TAGS_MAX,
    GroupCreate,
    GroupUpdate,
    SearchClause,
    SearchGroup,
    SearchTerm,
    StageConfig,
    StageRequest,
    VersionFields,
)

PREFIX = "/api/2.0/mlflow"
# rows per page: MlflowClient's own default for versions (10,000) fits in one, since
# MlflowClient.search_model_versions does not follow next_page_token (mlflow.search_… does)
MAX_PAGE = {"models": 1000, "versions": 10_000, "webhooks": 1000}
MAX_RESULTS = {"models": 1000, "versions": 200_000, "webhooks": 1000}   # MLflow's own thresholds: beyond, an error
MAX_OFFSET = 2**31 - 1
MLFLOW_WIRE = "mlflow"
PROMPT_TAG = "mlflow.prompt.is_prompt"


# --- errors --------------------------------------------------------------------------------------------

class MlflowError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class EndpointNotFound(DomainError):
    status, title = 404, "Not found"


def _message(exc: DomainError) -> str:
    fix = exc.fix_for("mlflow")
    return f"{exc.detail.rstrip('.')}. Fix: {fix}" if fix else exc.detail


def to_mlflow(exc: Exception, retry_after_s: int) -> MlflowError:
    """The one MLflow error mapping: domain errors and overload to MLflow's error codes and statuses."""
    if isinstance(exc, EndpointNotFound):
        return MlflowError(404, "ENDPOINT_NOT_FOUND", _message(exc))
    if isinstance(exc, GroupExists):
        return MlflowError(400, "RESOURCE_ALREADY_EXISTS", _message(exc))
    if isinstance(exc, Forbidden | RuleRefusal | TransitionNotAllowed):
        # a governance rule refused it (four-eyes, not approved, policy, the group's stage transitions); the message
        # names the rule, and PERMISSION_DENIED tells the client it is not a mistake in the request
        return MlflowError(403, "PERMISSION_DENIED", _message(exc))
    if isinstance(exc, Unauthorized):
        return MlflowError(401, "UNAUTHENTICATED", _message(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, NotFound):
        return MlflowError(404, "RESOURCE_DOES_NOT_EXIST", _message(exc))
    if isinstance(exc, Conflict):
        return MlflowError(409, "RESOURCE_CONFLICT", _message(exc))
    if isinstance(exc, MalformedJSON):   # MLflow's server reads a broken body as no fields: a parameter error
        return MlflowError(400, "INVALID_PARAMETER_VALUE", _message(exc))
    if isinstance(exc, DomainError):
        return MlflowError(400, "INVALID_PARAMETER_VALUE", _message(exc))
    why = f"the database is busy: {exc.detail}" if isinstance(exc, DatabaseBusy) else unavailable(exc)
    if why is not None:
        return MlflowError(503, "TEMPORARILY_UNAVAILABLE", f"{why}; nothing was stored, retry",
                           {"Retry-After": str(retry_after_s)})
    if is_unique_violation(exc):
        return MlflowError(400, "RESOURCE_ALREADY_EXISTS", "a concurrent request stored the same thing first")
    raise exc


class MlflowRoute(APIRoute):
    """Errors of these routes (their dependencies included) leave as ``MlflowError``: raised, not returned, so
    the request's transaction is rolled back exactly as on the native API."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (DomainError, DatabaseBusy, PoolTimeout, DBAPIError) as exc:
                retry = int(getattr(request.app.state.settings, "retry_after_s", 2))
                raise to_mlflow(exc, retry) from exc

        return route


# Errors raised before a route runs (no route, wrong method, malformed or over-deep JSON screened by the kernel's
# middleware, an oversized body, overload) leave the kernel as problem+json; on MLflow's paths they are re-shaped
# here, by status, so MLflow's client always reads an error_code.
_CODE_BY_STATUS = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "ENDPOINT_NOT_FOUND", 405: "ENDPOINT_NOT_FOUND", 409: "RESOURCE_CONFLICT",
                   413: "INVALID_PARAMETER_VALUE", 422: "INVALID_PARAMETER_VALUE", 429: "REQUEST_LIMIT_EXCEEDED",
                   503: "TEMPORARILY_UNAVAILABLE"}
MLFLOW_PATHS = (PREFIX + "/", "/api/3.0/mlflow/")


def mlflow_error_body(status: int, problem: dict[str, Any]) -> dict[str, str]:
    """A problem+json body as MLflow's ``{"error_code", "message"}``."""
    code = _CODE_BY_STATUS.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    detail, fix = str(problem.get("detail") or problem.get("title") or "error"), problem.get("fix")
    return {"error_code": code, "message": f"{detail}. Fix: {fix}" if fix else detail}


class MlflowErrorShape:
    """ASGI middleware: a problem+json answer on an MLflow path becomes MLflow's error body (same status and
    headers: Allow, Retry-After, WWW-Authenticate). Installed outside the kernel's body and JSON guards."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(MLFLOW_PATHS):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def reshaping(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                if ctype.startswith(b"application/problem+json"):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = int(start["status"])
                try:
                    problem = json.loads(b"".join(chunks))
                except ValueError:
                    problem = {}
                body = json.dumps(mlflow_error_body(status, problem if isinstance(problem, dict) else {})).encode()
                headers = [(k, v) for k, v in start.get("headers") or []
                           if k.lower() not in (b"content-type", b"content-length")]
                await send({**start, "headers": [*headers, (b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshaping)


async def _handle(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlflowError)
    return JSONResponse({"error_code": exc.code, "message": exc.message}, status_code=exc.status,
                        headers=exc.headers or None)


router = Router(prefix=PREFIX, route_class=MlflowRoute, include_in_schema=False, tags=["mlflow"])
Reader = Annotated[Principal, Depends(require(READERS))]
Writer = Annotated[Principal, Depends(require(PUBLISHERS))]
ReadingWriter = Annotated[Principal, Depends(require_reading(PUBLISHERS))]   # group-committed writes
Mover = Annotated[Principal, Depends(require(MOVERS))]
Admin = Annotated[Principal, Depends(require(ADMINS))]


def install(app: FastAPI) -> None:
    """Serve MLflow's registry routes, answer MLflow's error shape on them, deliver MLflow-format webhooks. Call
    `install_error_shape` once the kernel's middlewares are added."""
    include(app, router)
    include(app, fallback)
    app.add_exception_handler(MlflowError, _handle)
    events.register_format(MLFLOW_WIRE, events.WireFormat(translate=_webhook_event_name, render=_render_delivery))


def install_error_shape(app: FastAPI) -> None:
    """MLflow's error body for what the kernel answers before routing, on MLflow's paths (outside its guards)."""
    app.add_middleware(MlflowErrorShape)


# --- request messages ----------------------------------------------------------------------------------

async def _fields(request: Request) -> dict[str, Any]:
    """The request message: query parameters for GET (repeated ones as lists), the JSON body otherwise."""
    if request.method == "GET":
        out: dict[str, Any] = {}
        for k, v in request.query_params.multi_items():
            out[k] = [*out[k], v] if isinstance(out.get(k), list) else ([out[k], v] if k in out else v)
        return out
    if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip().lower() \
            != "application/json":   # as MLflow's server: no form or text POSTs a browser could send cross-site
        raise Invalid("Bad Request. Content-Type must be application/json",
                      fix="send the request message as JSON with Content-Type: application/json")
    raw = await request.body()
    body = inputs.body_document(request, raw or b"{}", "body")
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object", fix="send the fields of the MLflow request message")
    return body


Fields = Annotated[dict[str, Any], Depends(_fields)]


class Message(BaseModel):
    """An MLflow request message: unknown fields ignored (newer clients send more), strings coerced as the proto
    JSON mapping allows (a GET carries every field as text)."""

    model_config = ConfigDict(extra="ignore")


M = TypeVar("M", bound=Message)


def _parse(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = field_path(first) or "request"
        raise Invalid(f"invalid value for parameter '{where}': {field_message(first)}",
                      fix="send the fields of MLflow's request message (see mlflow/protos/model_registry.proto)") \
            from None


Name = Annotated[str, Field(min_length=1, max_length=256)]


class Tag(Message):
    key: str = Field(min_length=1, max_length=TAG_KEY_MAX)
    value: str = Field(default="", max_length=TAG_VALUE_MAX)


class ByName(Message):
    name: Name


class CreateModel(ByName):
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)


class Rename(ByName):
    new_name: Name


class UpdateModel(ByName):
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)


class Search(Message):
    # room for a whole tag value (5,000 characters) and more clauses; the parser is linear in the length
    filter: str | None = Field(default=None, max_length=20_000)
    max_results: int | None = None
    order_by: list[str] | str | None = None
    page_token: str | None = Field(default=None, max_length=512)


class LatestVersions(ByName):
    stages: list[str] | str | None = None


class ModelTag(ByName):
    key: str = Field(min_length=1, max_length=TAG_KEY_MAX)
    value: str = Field(default="", max_length=TAG_VALUE_MAX)


class ModelTagKey(ByName):
    key: str = Field(min_length=1, max_length=TAG_KEY_MAX)


class SetAlias(ByName):
    alias: str = Field(min_length=1, max_length=256)
    version: str


class AliasRef(ByName):
    alias: str = Field(min_length=1, max_length=256)


class CreateVersion(ByName):
    source: str = Field(min_length=1, max_length=2048)
    run_id: str | None = Field(default=None, max_length=256)
    run_link: str | None = Field(default=None, max_length=2048)
    tags: list[Tag] = Field(default_factory=list, max_length=TAGS_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)


class VersionRef(ByName):
    version: str


class UpdateVersion(VersionRef):
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)


class Transition(VersionRef):
    stage: str = Field(min_length=1, max_length=63)
    archive_existing_versions: bool = False


class VersionTag(VersionRef):
    key: str = Field(min_length=1, max_length=TAG_KEY_MAX)
    value: str = Field(default="", max_length=TAG_VALUE_MAX)


class VersionTagKey(VersionRef):
    key: str = Field(min_length=1, max_length=TAG_KEY_MAX)


def _version_number(text: str) -> int:
    """A version number; an integer that no version can have (0, -1, past 2^31) is a version that does not exist,
    as MLflow answers it."""
    if not re.fullmatch(r"-?[0-9]{1,30}", text.strip()):
        raise Invalid(f"version {text!r} is not a version number", fix="pass the version as a number: '1', '2', …")
    if not 1 <= int(text) <= MAX_OFFSET:
        raise NotFound(f"model version {text.strip()} does not exist", fix="versions are numbered from 1")
    return int(text)


def _no_prompts(keys: list[str]) -> None:
    if PROMPT_TAG in keys:
        raise Invalid("mlgov's registry holds models, not prompts", fix="keep prompts in MLflow's prompt registry")


def _group_create(name: str, description: str | None, tags: dict[str, str]) -> GroupCreate:
    _no_prompts(list(tags))
    try:
        return GroupCreate(name=name, description=description, tags=tags)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = field_path(first)
        suggestion = service.suggest_name(name)
        fix = (f"names are up to {GROUP_NAME_MAX} characters without '/', ':', control or invisible characters, "
               f"letters of one script" + (f": try {suggestion!r}" if suggestion else "")
               if field == "name" else TAG_LIMITS)
        raise Invalid(f"invalid {field or 'request'} for registered model {name!r}: {field_message(first)}",
                      fix=fix) from None


# --- pagination and search -----------------------------------------------------------------------------

def _page(search: Search, kind: Literal["models", "versions", "webhooks"], default: int) -> tuple[int, int]:
    """(page size, offset) from max_results and page_token. Sizes up to MLflow's thresholds are accepted and
    served in pages of at most MAX_PAGE (the client follows next_page_token); larger ones are refused. A size of 0
    as MLflow's server takes it: an empty page of models (with a next_page_token when one follows), the default
    number of webhooks, and an error for versions."""
    wanted = default if search.max_results is None else search.max_results
    if wanted == 0 and kind == "webhooks":
        wanted = default
    low = 0 if kind == "models" else 1
    if not low <= wanted <= MAX_RESULTS[kind]:
        raise Invalid(f"invalid value {wanted} for parameter 'max_results': it must be between {low} and "
                      f"{MAX_RESULTS[kind]}", fix="ask for fewer results and follow next_page_token")
    offset = 0
    if search.page_token:
        try:
            doc = json.loads(base64.urlsafe_b64decode(search.page_token.encode() + b"=" * 4))
            offset = int(doc["offset"])
            if not 0 <= offset <= MAX_OFFSET or type(doc["offset"]) is not int:
                raise ValueError
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise Invalid(f"invalid page_token {search.page_token[:60]!r}",
                          fix="pass the next_page_token of the previous response unchanged, or none") from None
    return min(wanted, MAX_PAGE[kind]), offset


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


_QUOTED = r"'(?:[^'\\]|\\.|'')*'" + "|" + r'"(?:[^"\\]|\\.|"")*"'
_CLAUSE = re.compile(
    r"""\s*(?P<field>`[^`]+`|[A-Za-z_][\w.]*(?:\.`[^`]+`)?)\s*
        (?P<op>!=|>=|<=|=|>|<|(?:NOT\s+)?IN\b|I?LIKE\b)\s*
        (?P<value>""" + _QUOTED + r"""|\((?:[^()'"]|'(?:[^']|'')*'|"(?:[^"]|"")*")*\)|-?\d+)\s*""",
    re.IGNORECASE | re.VERBOSE)
_ITEM = re.compile(r"""'((?:[^'\\]|\\.|'')*)'|"((?:[^"\\]|\\.|"")*)"|(-?\d+)""")
_FIELDS = {"models": {"name": "name"},
           "versions": {"name": "name", "run_id": "run_id", "source_path": "source", "version_number": "version",
                        "current_stage": "mlflow_stage"}}
_COMPARISONS = (">", ">=", "<", "<=")
_MLFLOW_STAGES = {s.lower(): s for s in ("None", "Staging", "Production", "Archived")}
# The mlgov.* tags a version shows (`model_version`) are its facts, not stored tags: a filter on one reads the fact.
_FACT_TAGS = {"mlgov.approval_status": "approval_status", "mlgov.stage": "stage",
              "mlgov.artifact_sha256": "artifact_sha256"}
UNVERIFIED = "unverified"   # what mlgov.artifact_sha256 shows for a version without a verified hash


_SPLIT = re.compile(_QUOTED + r"|`[^`]*`|\s+AND\s+", re.IGNORECASE)


def _clauses(text: str) -> list[str]:
    """The filter's clauses: split at each AND outside quoted values and backquoted names (a quote of the other
    kind inside a value, ``"o'brien"``, is part of it)."""
    parts, start = [], 0
    for m in _SPLIT.finditer(text):
        if m.group()[0].isspace():
            parts.append(text[start:m.start()])
            start = m.end()
    return [*parts, text[start:]]


def _or_missing(clause: SearchClause, shown: str) -> SearchTerm:
    """A clause on a field a version shows as ``shown`` when it has no value (MLflow stores a version without a
    run as run_id "", mlgov as no run id; mlgov.artifact_sha256 shows "unverified" for no hash): when ``shown``
    satisfies it, the versions without a value match too (``run_id = ''``, ``run_id != 'abc'``, ``LIKE 'un%'``)."""
    values = clause.value if isinstance(clause.value, list) else [clause.value]
    first = values[0] if values else ""
    shown_matches = {"=": shown == first, "!=": shown != first, "IN": shown in values, "NOT IN": shown not in values,
                     "LIKE": like_matches(shown, first), "ILIKE": like_matches(shown, first, ignore_case=True)}
    if not shown_matches.get(clause.op, False):
        return clause
    return SearchGroup(join="OR", items=[clause, SearchClause(field=clause.field, op="NOT EXISTS")])


def parse_filter(text: str | None, kind: Literal["models", "versions"]) -> list[SearchTerm]:
    """MLflow's search filter (``name LIKE 'churn%' AND tags.team = 'growth' AND version_number > 3``) as clauses;
    anything else is INVALID_PARAMETER_VALUE, never ignored."""
    if not text or not text.strip():
        return []
    clauses: list[SearchTerm] = []
    for part in _clauses(text.strip()):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise Invalid(f"invalid clause {part[:200]!r} in filter string",
                          fix="write clauses like name = 'x', name LIKE 'x%', tags.key = 'v', version_number > 3, "
                              "joined by AND")
        field, op = m["field"], re.sub(r"\s+", " ", m["op"].upper())
        raw = m["value"]
        # a value is the text between its quotes, as MLflow's server takes it ('o''brien' is o''brien there)
        values = [a or b or c for a, b, c in _ITEM.findall(raw)] if raw.startswith("(") else \
            [raw[1:-1] if raw[0] in "'\"" else raw]
        key = None
        if field.lower().startswith(("tags.", "tag.")):
            key = field.split(".", 1)[1].strip("`")
            name = "tag"
            if key == PROMPT_TAG:   # the client adds "is_prompt != 'true'" to every search; mlgov holds no prompts
                if (op, values[0].lower()) in (("!=", "true"), ("=", "false")):
                    continue
                clauses.append(SearchClause(field="name", op="IN", value=[]))
                continue
            if op not in ("=", "!=", "LIKE", "ILIKE"):
                raise Invalid(f"tags cannot be compared with {op}", fix="use =, !=, LIKE or ILIKE on tags")
            if kind == "versions" and key.startswith(service.RESERVED_METADATA_PREFIX):
                clauses.append(_fact_clause(key, op, values[0]))
                continue
        else:
            attr = field.split(".", 1)[1] if field.lower().startswith("attribute.") else field
            if attr.strip("`") not in _FIELDS[kind]:
                raise Invalid(f"cannot search registered {kind} by {field!r}",
                              fix=f"search by {', '.join(_FIELDS[kind])} or tags.<key>")
            name = _FIELDS[kind][attr.strip("`")]
        if op in _COMPARISONS and name != "version":
            raise Invalid(f"{field} cannot be compared with {op}", fix="compare version_number with <, <=, > or >=; "
                          "other fields with =, !=, LIKE, ILIKE or IN")
        if op in ("IN", "NOT IN") and not raw.startswith("("):
            raise Invalid(f"{op} needs a parenthesised list", fix="write run_id IN ('a', 'b')")
        if name == "mlflow_stage" and op not in ("LIKE", "ILIKE"):   # MLflow's stage names read in any case, as
            values = [_MLFLOW_STAGES.get(v.lower(), v) for v in values]  # get_latest_versions reads them
        value: str | list[str] = values if op in ("IN", "NOT IN") else values[0]
        clause = SearchClause(field=name, op=op, value=value, key=key)
        clauses.append(_or_missing(clause, "") if name == "run_id" else clause)
    return clauses


def _fact_clause(key: str, op: str, value: str) -> SearchTerm:
    """A filter on one of the mlgov.* tags versions show, as a condition on the fact it shows."""
    field = _FACT_TAGS.get(key)
    if field is None:
        raise Invalid(f"tags.`{key}` cannot be searched", fix=f"search by tags.`{', '.join(_FACT_TAGS)}`")
    clause = SearchClause(field=field, op=op, value=value)
    return _or_missing(clause, UNVERIFIED) if field == "artifact_sha256" else clause


_ORDER = {"models": {"name": "name", "creation_timestamp": "created_at", "last_updated_timestamp": "updated_at",
                     "timestamp": "updated_at"},
          "versions": {"name": "name", "version_number": "version", "creation_timestamp": "created_at",
                       "last_updated_timestamp": "updated_at", "timestamp": "updated_at", "current_stage": "stage"}}


# MLflow's server orders a version search without order_by by last update, newest first, then name, then version.
DEFAULT_VERSION_ORDER = [("updated_at", False), ("name", True), ("version", False)]


def parse_order(order_by: list[str] | str | None, kind: Literal["models", "versions"]) -> list[tuple[str, bool]]:
    items = [order_by] if isinstance(order_by, str) else list(order_by or [])
    out = []
    for item in items:
        parts = item.split()
        if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise Invalid(f"invalid order_by clause {item[:100]!r}", fix="write e.g. 'name ASC' or "
                          "'last_updated_timestamp DESC'")
        column = parts[0].removeprefix("attribute.").strip("`")
        if column not in _ORDER[kind]:
            raise Invalid(f"cannot order registered {kind} by {column!r}", fix=f"use {', '.join(_ORDER[kind])}")
        out.append((_ORDER[kind][column], len(parts) == 1 or parts[1].upper() == "ASC"))
    return out


# --- response messages ---------------------------------------------------------------------------------

def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _initial(group: ModelGroup) -> str:
    return str(group.stage_config.get("initial") or "")


def _stage_in(group: ModelGroup, stage: str) -> str:
    """MLflow's stage name as the group's: "None" is the initial stage; others match case-insensitively."""
    if stage.strip().lower() == "none":
        return _initial(group)
    names = [s.name for s in StageConfig.model_validate(group.stage_config).stages]
    for n in names:
        if n.lower() == stage.strip().lower():
            return n
    raise Invalid(f"stage {stage!r} is not configured for {group.name!r}",
                  fix=f"use None or one of: {', '.join(n for n in names if n != _initial(group))}")


def model_version(v: service.VersionView) -> dict[str, Any]:
    """MLflow's ModelVersion message from a version view (rows, not ORM objects: see `service.version_views`)."""
    tags = [{"key": k, "value": val} for k, val in v.metadata]
    tags.append({"key": "mlgov.approval_status", "value": v.approval_status})
    if v.approved_by:
        tags.append({"key": "mlgov.approved_by", "value": v.approved_by})
    if v.stage is not None:
        tags.append({"key": "mlgov.stage", "value": v.stage})
    tags.append({"key": "mlgov.artifact_sha256", "value": v.artifact_sha256 or UNVERIFIED})
    out: dict[str, Any] = {
        "name": v.group_name, "version": str(v.version), "creation_timestamp": _ms(v.created_at),
        "last_updated_timestamp": _ms(v.updated_at), "user_id": v.registered_by,
        "current_stage": "None" if v.stage is None or v.stage == v.initial_stage else v.stage,
        "description": v.description or "", "source": v.artifact_uri, "status": "READY", "tags": tags,
        "aliases": v.aliases,
    }
    if v.artifact_sha256 is None:
        out["status_message"] = ("unverified: mlgov could not hash the source when it was registered (outside its "
                                 f"object store, not there yet, or more than {service.MAX_HASHED_FILES} files)")
    out["run_id"], out["run_link"] = v.run_id or "", v.run_link or ""   # MLflow's server sends "" for none
    if (logged := _logged_model(v.artifact_uri)) is not None:
        out["model_id"] = logged
    return out


def _listed(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A search answer's list as MLflow's server writes it: proto3 JSON leaves an empty list out (``{}``)."""
    return {key: items} if items else {}


def _without_aliases(version: dict[str, Any]) -> dict[str, Any]:
    """A version as listed in a registered model's latest_versions, where MLflow's server leaves aliases out (the
    model carries them)."""
    version.pop("aliases", None)
    return version


def answer(message: dict[str, Any]) -> Response:
    """A response message as JSON, encoded once (no response model to validate it against, no jsonable_encoder
    walk: every value here is already a str, int, bool, list or dict), by pydantic's Rust encoder: the same bytes
    as compact ``json.dumps(ensure_ascii=False)``, a third of the time (100 versions: 0.57 -> 0.19 ms)."""
    return Response(to_json(message, inf_nan_mode="null"), media_type="application/json")


def registered_models(session: SessionDep, groups: list[ModelGroup]) -> list[dict[str, Any]]:
    ids = [g.id for g in groups]
    latest = service.view_latest_by_stage(session, ids)
    aliases = service.group_aliases(session, ids)
    out = []
    for g in groups:
        out.append({
            "name": g.name, "creation_timestamp": _ms(g.created_at), "last_updated_timestamp": _ms(g.updated_at),
            "user_id": g.created_by, "description": g.description or "",
            "latest_versions": [_without_aliases(model_version(v)) for v in latest[g.id]],
            "tags": [{"key": k, "value": val} for k, val in sorted((g.tags or {}).items())],
            "aliases": [{"alias": a, "version": str(n)} for a, n in aliases[g.id]],
        })
    return out


def _one_version(session: SessionDep, name: str, version: str) -> dict[str, Any]:
    return {"model_version": model_version(service.view_version(session, name, _version_number(version)))}


def _one_model(session: SessionDep, name: str) -> dict[str, Any]:
    return {"registered_model": registered_models(session, [service.get_group(session, name)])[0]}


@contextlib.contextmanager
def _already_gone() -> Iterator[None]:
    """A delete of a tag or alias that is not there succeeds doing nothing, as on MLflow (retries and clean-up
    scripts rely on it); a missing model or version is still RESOURCE_DOES_NOT_EXIST."""
    try:
        yield
    except (GroupNotFound, VersionNotFound):
        raise
    except NotFound:
        pass


# --- registered models ---------------------------------------------------------------------------------

@router.post("/registered-models/create")
def create_registered_model(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(CreateModel, fields)
    group = service.create_group(session, _group_create(m.name, m.description, {t.key: t.value for t in m.tags}),
                                 principal)
    return {"registered_model": registered_models(session, [group])[0]}


@router.post("/registered-models/rename")
def rename_registered_model(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(Rename, fields)
    group = service.rename_group(session, m.name, m.new_name, principal)
    return {"registered_model": registered_models(session, [group])[0]}


@router.patch("/registered-models/update")
def update_registered_model(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(UpdateModel, fields)
    group = service.update_group(session, m.name, GroupUpdate(description=m.description), principal)
    return {"registered_model": registered_models(session, [group])[0]}


@router.delete("/registered-models/delete")
def delete_registered_model(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    service.delete_group(session, _parse(ByName, fields).name, principal)
    return {}


@router.get("/registered-models/get")
def get_registered_model(fields: Fields, session: SessionDep, _: Reader) -> Response:
    return answer(_one_model(session, _parse(ByName, fields).name))


@router.get("/registered-models/search")
def search_registered_models(fields: Fields, session: SessionDep, _: Reader) -> Response:
    m = _parse(Search, fields)
    size, offset = _page(m, "models", 100)
    groups = service.search_groups(session, parse_filter(m.filter, "models"), parse_order(m.order_by, "models"),
                                   size + 1, offset)
    out: dict[str, Any] = _listed("registered_models", registered_models(session, groups[:size]))
    if len(groups) > size:
        out["next_page_token"] = _token(offset + size)
    return answer(out)


@router.api_route("/registered-models/get-latest-versions", methods=["POST", "GET"])
def get_latest_versions(fields: Fields, session: SessionDep, _: Reader) -> Response:
    m = _parse(LatestVersions, fields)
    group = service.get_group(session, m.name)
    wanted = [m.stages] if isinstance(m.stages, str) else list(m.stages or [])
    stages = [_stage_in(group, s) for s in wanted] or None
    latest = service.view_latest_by_stage(session, [group.id], stages)[group.id]
    return answer(_listed("model_versions", [model_version(v) for v in latest]))


@router.post("/registered-models/set-tag")
def set_registered_model_tag(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(ModelTag, fields)
    _no_prompts([m.key])
    service.set_group_tag(session, m.name, m.key, m.value, principal)
    return {}


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(ModelTagKey, fields)
    with _already_gone():
        service.set_group_tag(session, m.name, m.key, None, principal)
    return {}


@router.post("/registered-models/alias")
def set_registered_model_alias(fields: Fields, session: SessionDep, principal: Mover) -> dict[str, Any]:
    m = _parse(SetAlias, fields)
    service.set_alias(session, m.name, m.alias, _version_number(m.version), principal)
    return {}


@router.delete("/registered-models/alias")
def delete_registered_model_alias(fields: Fields, session: SessionDep, principal: Mover) -> dict[str, Any]:
    m = _parse(AliasRef, fields)
    with _already_gone():
        service.delete_alias(session, m.name, m.alias, principal)
    return {}


@router.get("/registered-models/alias")
def get_model_version_by_alias(fields: Fields, session: SessionDep, _: Reader) -> Response:
    m = _parse(AliasRef, fields)
    try:
        view = service.view_by_alias(session, m.name, m.alias)
    except GroupNotFound:
        raise
    except NotFound:   # the model exists: MLflow answers a missing alias as a parameter error
        raise Invalid(f"Registered model alias {m.alias} not found.",
                      fix="list the model's aliases (registered-models/get)") from None
    return answer({"model_version": model_version(view)})


# --- model versions ------------------------------------------------------------------------------------

@router.post("/model-versions/create")
async def create_model_version(fields: Fields, request: Request, principal: ReadingWriter, session: ReadSessionDep,
                               store: StoreDep) -> Response:
    """Written with the registrations into the same model arriving meanwhile (`group_commit`). ``mlgov.*`` tags
    are mlgov's own facts about a version (approval, stage, hash): a client copying a version
    (``copy_model_version``) sends back those it read, so they are left out, never stored, and the new version
    gets its own. A ``models:/`` source is the artifact of the version it names (its URI and hash)."""
    m = _parse(CreateVersion, fields)
    logged = _logged_model(m.source)
    source = (await run_in_threadpool(_models_uri, session, m.source)) \
        if m.source.startswith("models:/") and logged is None else None
    await end_read(request, session)
    metadata = {t.key: t.value for t in m.tags if not t.key.startswith(service.RESERVED_METADATA_PREFIX)}
    uri = source.artifact_uri if source is not None else m.source if logged else _checked_source(m.source, store)
    _check_run_source(m.source, m.run_id)
    run_id = m.run_id or None
    if source is not None:   # as MLflow: the run is the referenced version's, and a stated one must be it
        if m.run_id is not None and (m.run_id or None) != source.run_id:
            raise Invalid(f"invalid model version source {m.source!r}: run_id {m.run_id!r} is not the referenced "
                          f"version's ({source.run_id or 'none'})", fix="leave run_id out; it is copied from the "
                                                                         "version the source names")
        run_id = source.run_id
    try:
        body = VersionFields(artifact_uri=uri,
                             artifact_sha256=source.artifact_sha256 if source is not None else None if logged
                             else await run_in_threadpool(service.hash_artifact, store, uri),
                             description=m.description, metadata=metadata, run_id=run_id,
                             run_link=m.run_link or None)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(f"invalid {field_path(first)}: {field_message(first)}",
                      fix=f"{TAG_LIMITS}; run_link a URI") \
            from None
    v = await group_commit.register(get_db(request), m.name,
                                    service.Registration(body, principal, request_id_var.get()))
    return answer({"model_version": model_version(service.registered_view(m.name, v))})


_LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
"""MLflow 3's logged model ids (``m-`` and a UUID's hex): only those are taken as one (``models:/..`` is not)."""


def _logged_model(source: str) -> str | None:
    """The logged model a ``models:/<model_id>`` source names (MLflow 3's `log_model` keeps a model as one, and
    `register_model` then sends that source), as MLflow's own parser tells it from ``models:/<name>/<ref>`` and
    ``models:/<name>@<alias>``: one path segment and no '@'. The tracking server keeps it, which mlgov does not
    reach: its version records the source as MLflow's server does, unverified (no hash), and clients resolve it
    against their tracking server when they load the version."""
    path = source.removeprefix("models:/") if source.startswith("models:/") else ""
    return path if _LOGGED_MODEL_ID.fullmatch(path) else None


def _check_run_source(source: str, run_id: str | None) -> None:
    """As MLflow's server: a ``runs:/<run>/<path>`` source comes with that run's ``run_id``; and an http(s) source
    addresses a host other than the artifact store, which MLflow refuses (the native API registers any URI)."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        raise Invalid(f"'source' cannot use the '{scheme}' scheme: the '{scheme}' scheme addresses a host other than "
                      "the artifact store", fix="register the artifact's s3:// (or object store) URI, or use the "
                                                "native API (POST /api/v1/model-groups/{group}/versions)")
    if scheme == "runs":
        run = source.removeprefix("runs:/").lstrip("/").split("/", 1)[0]
        if not run or run != run_id:
            raise Invalid(f"Invalid model version source: {source[:200]!r}. The run_id request parameter must "
                          "identify the run the source names", fix=f"send run_id={run or '<run id>'!r} with it")


def _checked_source(uri: str, store: ObjectStore) -> str:
    """MLflow's server refuses a source with relative path segments (``s3://b/models/../other``: percent-encoded
    too) and a local path it cannot tie to a run; mlgov keeps no runs, so a local path is a source only inside
    mlgov's own store (which is then hashed)."""
    text = uri
    while (unquoted := unquote_plus(text)) != text:
        text = unquoted
    if "\x00" in text or ".." in text.replace("\\", "/").split("/"):
        raise Invalid(f"invalid model version source {uri[:200]!r}: relative path segments ('..') are refused",
                      fix="give the artifact's absolute URI")
    scheme = urlsplit(text).scheme.lower()
    if (scheme in ("", "file") or len(scheme) == 1) and store.key_of(uri) is None:   # "C:" is a drive, not a scheme
        raise Invalid(f"invalid model version source {uri[:200]!r}: a local path is a source only inside mlgov's "
                      "object store", fix="upload the model to the object store (or S3) and register that URI")
    return uri


# As MLflow's own parser reads it (mlflow.store.artifact.utils.models._parse_model_uri): a name may hold '@' (MLflow
# and mlgov allow it in names); `name/ref` splits at the '/', `name@alias` at the last '@' (aliases hold none).
_MODELS_URI = re.compile(r"models:/(?P<name>[^/]+?)(?:/(?P<ref>[^/]+)|@(?P<alias>[^/@]+))/?")


def _models_uri(session: SessionDep, uri: str) -> service.VersionView:
    """The version a ``models:/<name>/<version | stage | latest>`` or ``models:/<name>@<alias>`` URI names."""
    m = _MODELS_URI.fullmatch(uri)
    if m is None:
        raise Invalid(f"source {uri[:200]!r} is not a models:/ URI mlgov can read",
                      fix="write models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest or "
                          "models:/<name>@<alias>")
    name, ref = m["name"], m["ref"]
    if m["alias"] is not None:
        return service.view_by_alias(session, name, m["alias"])
    if ref is not None and ref.lstrip("-").isdigit():
        return service.view_version(session, name, _version_number(ref))
    group = service.get_group(session, name)
    stages = None if ref.lower() == "latest" else [_stage_in(group, ref)]
    latest = service.view_latest_by_stage(session, [group.id], stages)[group.id]
    if not latest:
        raise NotFound(f"model {name!r} has no version{'' if stages is None else ' in ' + stages[0]}",
                       fix="name an existing version in the models:/ URI")
    return max(latest, key=lambda v: v.version)


@router.patch("/model-versions/update")
def update_model_version(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(UpdateVersion, fields)
    service.update_version(session, m.name, _version_number(m.version), m.description, principal)
    return _one_version(session, m.name, m.version)


@router.post("/model-versions/transition-stage")
def transition_model_version_stage(fields: Fields, session: SessionDep, principal: Mover) -> dict[str, Any]:
    """mlgov's stage rules apply (transitions, approval for governed stages); an exclusive stage (Production)
    always moves its previous version out, whatever archive_existing_versions says; into Staging the flag moves
    the other Staging versions to Archived."""
    m = _parse(Transition, fields)
    group = service.get_group(session, m.name)
    stage, number = _stage_in(group, m.stage), _version_number(m.version)
    if m.archive_existing_versions and m.stage.strip().lower() not in ("staging", "production"):
        raise Invalid(f"archive_existing_versions applies to Staging and Production only, not {m.stage!r}",
                      fix="leave archive_existing_versions out (or false) for this stage")
    with contextlib.suppress(AlreadyInStage):   # already there: a retry succeeds, as on MLflow
        service.move_stage(session, m.name, number, StageRequest(stage=stage,
                                                                  archive_others=m.archive_existing_versions),
                           principal)
    return _one_version(session, m.name, m.version)


@router.delete("/model-versions/delete")
def delete_model_version(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(VersionRef, fields)
    service.delete_version(session, m.name, _version_number(m.version), principal)
    return {}


@router.get("/model-versions/get")
def get_model_version(fields: Fields, session: SessionDep, _: Reader) -> Response:
    m = _parse(VersionRef, fields)
    return answer(_one_version(session, m.name, m.version))


@router.get("/model-versions/search")
def search_model_versions(fields: Fields, session: SessionDep, _: Reader) -> Response:
    m = _parse(Search, fields)
    size, offset = _page(m, "versions", 10_000)
    views = service.view_search(session, parse_filter(m.filter, "versions"),
                                parse_order(m.order_by, "versions") or DEFAULT_VERSION_ORDER, size + 1, offset)
    out: dict[str, Any] = _listed("model_versions", [model_version(v) for v in views[:size]])
    if len(views) > size:
        out["next_page_token"] = _token(offset + size)
    return answer(out)


@router.get("/model-versions/get-download-uri")
def get_model_version_download_uri(fields: Fields, session: SessionDep, _: Reader) -> dict[str, Any]:
    m = _parse(VersionRef, fields)
    return {"artifact_uri": service.get_version(session, m.name, _version_number(m.version))[1].artifact_uri}


@router.post("/model-versions/set-tag")
def set_model_version_tag(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(VersionTag, fields)
    service.set_version_metadata(session, m.name, _version_number(m.version), m.key, m.value, principal)
    return {}


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(fields: Fields, session: SessionDep, principal: Writer) -> dict[str, Any]:
    m = _parse(VersionTagKey, fields)
    with _already_gone():
        service.set_version_metadata(session, m.name, _version_number(m.version), m.key, None, principal)
    return {}


# --- webhooks ------------------------------------------------------------------------------------------

# (mlgov event, payload) → MLflow's entity.action and data; events MLflow has no name for are not delivered.
def _mlflow_event(event_type: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if event_type == "model_group.created":
        return "registered_model.created", {"name": p["name"], "tags": p.get("tags") or {},
                                            "description": p.get("description")}
    if event_type == "version.registered":
        return "model_version.created", {"name": p["group"], "version": str(p["version"]),
                                         "source": p["artifact_uri"], "run_id": p.get("run_id"),
                                         "tags": p.get("metadata") or {}, "description": p.get("description")}
    if event_type == "version.metadata_changed":
        base = {"name": p["group"], "version": str(p["version"]), "key": p["key"]}
        if p.get("value") is None:
            return "model_version_tag.deleted", base
        return "model_version_tag.set", {**base, "value": p["value"]}
    if event_type == "version.alias_set":
        return "model_version_alias.created", {"name": p["group"], "alias": p["alias"], "version": str(p["version"])}
    if event_type == "version.alias_removed":
        return "model_version_alias.deleted", {"name": p["group"], "alias": p["alias"]}
    return None


WEBHOOK_EVENTS = ("registered_model.created", "model_version.created", "model_version_tag.set",
                  "model_version_tag.deleted", "model_version_alias.created", "model_version_alias.deleted")


def _webhook_event_name(event_type: str, payload: dict[str, Any]) -> str | None:
    found = _mlflow_event(event_type, payload)
    return found[0] if found else None


def _render_delivery(delivery_id: str, ev: events.OutboxEvent, secret: str) -> events.Rendered:
    """MLflow's delivery: {entity, action, timestamp, data}, signed as MLflow documents it: base64 HMAC-SHA256 of
    ``<delivery id>.<unix timestamp>.<body>`` under the subscription's secret, as ``v1,<signature>``."""
    found = _mlflow_event(ev.type, ev.payload)
    name, data = found if found else (ev.type, ev.payload)
    entity, _, action = name.partition(".")
    body = json.dumps({"entity": entity, "action": action, "timestamp": ev.created_at.astimezone(dt.UTC).isoformat(),
                       "data": data})
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{delivery_id}.{stamp}.{body}".encode(), hashlib.sha256).digest()
    return events.Rendered(body.encode(), {"X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
                                           "X-MLflow-Timestamp": stamp, "X-MLflow-Delivery-Id": delivery_id})


class WebhookEvent(Message):
    entity: str
    action: str


class WebhookFields(Message):
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=1000)
    url: str | None = Field(default=None, max_length=2048)
    events: list[WebhookEvent] | None = Field(default=None, max_length=20)
    secret: str | None = Field(default=None, max_length=256)
    status: str | None = None


def _event_names(given: list[WebhookEvent] | None) -> list[str] | None:
    if given is None:
        return None
    names = [f"{e.entity.lower()}.{e.action.lower()}" for e in given]
    bad = [n for n in names if n not in WEBHOOK_EVENTS]
    if bad:
        raise Invalid(f"mlgov delivers no MLflow webhook event {', '.join(bad)}",
                      fix=f"subscribe to {', '.join(WEBHOOK_EVENTS)}")
    return names


def _check_status(status: str | None) -> None:
    if status is not None and status.upper() != "ACTIVE":
        raise Invalid(f"webhook status {status!r} is not supported: mlgov has no paused subscriptions",
                      fix="leave status ACTIVE, or delete the webhook")


def _webhook(hook: events.Webhook) -> dict[str, Any]:
    return {"webhook_id": hook.id, "name": hook.name or "", "description": hook.description or "",
            "url": hook.url,   # stored masked
            "events": [{"entity": e.partition(".")[0].upper(), "action": e.partition(".")[2].upper()}
                       for e in hook.events],
            "status": "ACTIVE", "creation_timestamp": _ms(hook.created_at),
            "last_updated_timestamp": _ms(hook.updated_at or hook.created_at)}


def _mlflow_hook(session: SessionDep, webhook_id: str) -> events.Webhook:
    hook = events.get_webhook(session, webhook_id)
    if not hook.active or hook.wire_format != MLFLOW_WIRE:
        raise NotFound(f"no MLflow webhook with id {webhook_id!r}", fix="list them with GET /api/2.0/mlflow/webhooks")
    return hook


@router.post("/webhooks")
def create_webhook(fields: Fields, session: SessionDep, principal: Admin, policy: OutboundDep,
                   box: SecretsDep) -> dict[str, Any]:
    m = _parse(WebhookFields, fields)
    _check_status(m.status)
    names = _event_names(m.events)
    if not m.url or not names or not m.name:
        raise Invalid("name, url and events are required", fix="send name, url and at least one event")
    if not m.secret:
        raise Invalid("mlgov signs every delivery: a secret is required",
                      fix="pass secret= (16+ random characters); receivers verify X-MLflow-Signature with it")
    hook = events.create_webhook(session, url=m.url, secret=m.secret, events=names, description=m.description,
                                 actor=principal.name, policy=policy, box=box, wire_format=MLFLOW_WIRE, name=m.name)
    return {"webhook": _webhook(hook)}


@router.get("/webhooks")
def list_webhooks(fields: Fields, session: SessionDep, _: Admin) -> dict[str, Any]:
    m = _parse(Search, fields)
    size, offset = _page(m, "webhooks", 100)
    hooks = events.list_webhooks(session, wire_format=MLFLOW_WIRE, limit=size + 1, offset=offset)
    out: dict[str, Any] = {"webhooks": [_webhook(h) for h in hooks[:size]]}
    if len(hooks) > size:
        out["next_page_token"] = _token(offset + size)
    return out


@router.get("/webhooks/{webhook_id}")
def get_webhook(webhook_id: str, session: SessionDep, _: Admin) -> dict[str, Any]:
    return {"webhook": _webhook(_mlflow_hook(session, webhook_id))}


@router.patch("/webhooks/{webhook_id}")
def update_webhook(webhook_id: str, fields: Fields, session: SessionDep, principal: Admin, policy: OutboundDep,
                   box: SecretsDep) -> dict[str, Any]:
    m = _parse(WebhookFields, fields)
    _check_status(m.status)
    _mlflow_hook(session, webhook_id)
    hook = events.update_webhook(session, webhook_id, actor=principal.name, policy=policy, box=box, url=m.url,
                                 secret=m.secret, events=_event_names(m.events), description=m.description,
                                 name=m.name)
    return {"webhook": _webhook(hook)}


@router.post("/webhooks/{webhook_id}/test")
def test_webhook(webhook_id: str, session: SessionDep, _: Admin) -> dict[str, Any]:
    """MLflow's test-fire: not offered (every delivery mlgov makes is of an event that happened, signed and in the
    audited outbox), and said so here rather than as a tracking call mlgov does not serve."""
    _mlflow_hook(session, webhook_id)
    raise Invalid("test-firing a webhook is not supported: mlgov delivers only events that happened",
                  fix="cause a real event the webhook subscribes to (e.g. set a tag on a version) and read its "
                      f"deliveries with GET /api/v1/webhooks/{webhook_id}/deliveries")


@router.delete("/webhooks/{webhook_id}")
def delete_webhook(webhook_id: str, session: SessionDep, principal: Admin) -> dict[str, Any]:
    _mlflow_hook(session, webhook_id)
    events.delete_webhook(session, webhook_id, actor=principal.name)
    return {}


# --- everything else -----------------------------------------------------------------------------------

fallback = Router(route_class=MlflowRoute, include_in_schema=False, tags=["mlflow"])


_ANY = ["GET", "POST", "PATCH", "DELETE", "PUT"]


@fallback.api_route(PREFIX + "/{path:path}", methods=_ANY)
@fallback.api_route("/api/3.0/mlflow/{path:path}", methods=_ANY)
def not_served(path: str, request: Request, _: Reader) -> dict[str, Any]:
    """Experiments, runs, logged models, traces: mlgov serves MLflow's model registry only. A registry call with
    the wrong method is a 405 naming the methods its path takes, as on MLflow."""
    allowed = sorted({method for route in router.routes if isinstance(route, APIRoute)
                      and route.path_regex.fullmatch(request.url.path) for method in route.methods or ()})
    if allowed:
        raise MlflowError(405, "ENDPOINT_NOT_FOUND", f"{request.method} is not allowed on {request.url.path}; "
                          f"it takes {', '.join(allowed)}", {"Allow": ", ".join(allowed)})
    raise EndpointNotFound(f"mlgov serves MLflow's model registry only; {request.method} {request.url.path} is not "
                           "one of its calls",
                           fix="keep the tracking server for experiments and runs and point only the registry at "
                               "mlgov: MlflowClient(tracking_uri=<tracking server>, registry_uri=<mlgov>) or "
                               "MLFLOW_REGISTRY_URI")
