"""The Python SDK's kernel: one HTTP transport, problem+json answers raised as typed exceptions, bounded retries on
503/429 with ``Retry-After``, paginated lists as iterators, uploads from paths, DataFrames or bytes, and the
kernel's own routes (health, keys, audit log, webhooks).

Each domain adds its methods in its own ``client.py`` (a mixin over ``BaseClient``, returning the pydantic models
its server routes return); ``mlgov.client`` composes them into ``Client``. A method that calls the server is
declared with ``@route(METHOD, PATH)`` and receives that route bound as a ``Call``, the only way it can reach the
server: ``BaseClient.routes()`` is therefore the exact map of which method calls which route, and a test holds that
map to the app's route table so no route is left without a method.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import inspect
import io
import json
import os
import re
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Concatenate, Generic, NamedTuple, ParamSpec, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import pandas as pd
from pydantic import BaseModel

from mlgov import __version__
from mlgov.api import AuditEventRead, DeliveryRead, KeyCreated, KeyRead, Page, WebhookRead

JSON = dict[str, Any]
M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="BaseClient")

DEFAULT_URL = "http://127.0.0.1:8000"


# --- errors -------------------------------------------------------------------------------------------------------

class ApiError(Exception):
    """The server refused the request. ``status``, ``title``, ``detail`` and ``fix`` are the RFC 9457 problem+json
    fields mlgov sends with every error; ``problem`` is the whole body (``errors`` lists a 422's fields)."""

    def __init__(self, status: int, problem: Mapping[str, Any], *, request_id: str | None = None,
                 retry_after: float | None = None) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title") or "")
        self.detail = str(problem.get("detail") or problem)
        fix = problem.get("fix")
        self.fix = str(fix) if fix else None
        errors = problem.get("errors")
        self.errors: list[JSON] = list(errors) if isinstance(errors, list) else []
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(f"{status}: {self.detail}" + (f" (fix: {self.fix})" if self.fix else ""))


class InvalidInput(ApiError):
    """400, 413, 415, 422: the request itself is wrong (``errors`` names the fields of a 422)."""


class Unauthorized(ApiError):
    """401: no key, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the key's role may not do this, or a governance rule (four-eyes, system lineage) refuses it."""


class NotFound(ApiError):
    """404: no such resource (or route)."""


class Conflict(ApiError):
    """409: the resource is not in the state the request expects (exists already, stale expected_status, …)."""


class Unavailable(ApiError):
    """503 or 429 after the client's retries ran out: nothing was stored; try again after ``retry_after``."""


class ServerError(ApiError):
    """500 and other 5xx: a server bug (logged there under ``request_id``)."""


_FAMILIES: dict[int, type[ApiError]] = {
    400: InvalidInput, 413: InvalidInput, 415: InvalidInput, 422: InvalidInput, 401: Unauthorized,
    403: Forbidden, 404: NotFound, 410: NotFound, 409: Conflict, 412: Conflict, 429: Unavailable, 503: Unavailable}


def error_class(status: int) -> type[ApiError]:
    return _FAMILIES.get(status) or (ServerError if status >= 500 else ApiError)


def error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):   # not problem+json (a proxy's page, say): keep what it said, briefly
        body = {"status": response.status_code, "title": response.reason_phrase,
                "detail": response.text[:500] or response.reason_phrase}
    return error_class(response.status_code)(response.status_code, body,
                                             request_id=response.headers.get("x-request-id"),
                                             retry_after=retry_after(response.headers.get("retry-after")))


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


# --- routes and calls ---------------------------------------------------------------------------------------------

class Route(NamedTuple):
    method: str
    path: str      # the app's path template, e.g. /api/v1/model-groups/{group}


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


class Call:
    """One declared route bound to a client. ``path`` fills the template's ``{names}``; the helpers parse the
    answer into the route's response model, a list, a page, a JSON object, text or nothing."""

    def __init__(self, client: BaseClient, route: Route) -> None:
        self.client, self.route = client, route

    def url(self, path: Mapping[str, object] | None = None) -> str:
        values = dict(path or {})

        def fill(m: re.Match[str]) -> str:
            value = str(values.pop(m.group(1)))
            if not value:
                raise ValueError(f"{m.group(1)} must not be empty ({self.route.method} {self.route.path})")
            return quote(value, safe="")

        url = _PARAM.sub(fill, self.route.path)
        if values:
            raise TypeError(f"{self.route.path} has no parameter(s) {sorted(values)}")
        return url

    def send(self, path: Mapping[str, object] | None = None, *, params: Mapping[str, Any] | None = None,
             json: Any = None, data: Mapping[str, Any] | None = None,
             files: Mapping[str, tuple[str, bytes, str]] | None = None, content: bytes | None = None,
             content_type: str | None = None) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        response = self.client._send(self.route.method, self.url(path), params=query(params or {}), json=json,
                                     data=form_fields(data) if data else None, files=files or None, content=content,
                                     headers=headers)
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def model(self, model: type[M], path: Mapping[str, object] | None = None, **kw: Any) -> M:
        return model.model_validate(self.send(path, **kw).json())

    def models(self, model: type[M], path: Mapping[str, object] | None = None, **kw: Any) -> list[M]:
        return [model.model_validate(item) for item in self.send(path, **kw).json()]

    def page(self, model: type[M], path: Mapping[str, object] | None = None, **kw: Any) -> Page[M]:
        body = self.send(path, **kw).json()
        return Page[M](items=[model.model_validate(i) for i in body["items"]], total=body["total"],
                       limit=body["limit"], offset=body["offset"])

    def pager(self, model: type[M], path: Mapping[str, object] | None = None, *,
              params: Mapping[str, Any] | None = None, page_size: int = 100) -> Pager[M]:
        def fetch(limit: int, offset: int) -> Page[M]:
            return self.page(model, path, params={**(params or {}), "limit": limit, "offset": offset})

        return Pager(fetch, page_size)

    def json(self, path: Mapping[str, object] | None = None, **kw: Any) -> JSON:
        body = self.send(path, **kw).json()
        if not isinstance(body, dict):
            raise TypeError(f"{self.route.method} {self.route.path} answered {type(body).__name__}, not an object")
        return body

    def text(self, path: Mapping[str, object] | None = None, **kw: Any) -> str:
        return self.send(path, **kw).text

    def none(self, path: Mapping[str, object] | None = None, **kw: Any) -> None:
        self.send(path, **kw)


def route(method: str, path: str) -> Callable[[Callable[Concatenate[C, Call, P], R]], Callable[Concatenate[C, P], R]]:
    """Declare the route a client method calls; the method receives it bound as its first argument after self
    (hidden from callers and from ``help()``)."""
    declared = Route(method, path)

    def decorate(fn: Callable[Concatenate[C, Call, P], R]) -> Callable[Concatenate[C, P], R]:
        @functools.wraps(fn)
        def method_(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return fn(self, Call(self, declared), *args, **kwargs)

        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        setattr(method_, "__signature__", sig.replace(parameters=[params[0], *params[2:]]))  # noqa: B010
        setattr(method_, "__mlgov_route__", declared)  # noqa: B010
        return method_

    return decorate


# --- request shaping ------------------------------------------------------------------------------------------------

class Unset:
    """Marks an update argument left out (unchanged), as opposed to None (cleared)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def body(values: Mapping[str, Any], *, keep_none: bool = False) -> JSON:
    """A JSON body from keyword arguments: models dumped as JSON, UNSET always left out, None left out unless
    ``keep_none`` (updates, where None clears a field)."""
    return {k: plain(v) for k, v in values.items()
            if not isinstance(v, Unset) and (keep_none or v is not None)}


def plain(value: Any) -> Any:
    """A value as JSON sends it: models by their field aliases (what the server reads), times in ISO-8601."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def iso(value: dt.datetime | str) -> str:
    """ISO-8601; a naive time is UTC, as the server reads it."""
    if isinstance(value, str):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def _given(values: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The arguments given, each as a query or form field reads it (booleans as true/false, times ISO-8601)."""
    for k, v in values.items():
        if v is None or isinstance(v, Unset):
            continue
        yield k, ("true" if v else "false") if isinstance(v, bool) else iso(v) if isinstance(v, dt.datetime) else v


def query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters; a list repeats its key."""
    return {k: [str(x) for x in v] if isinstance(v, list | tuple) else v for k, v in _given(params)}


def pairs(values: Mapping[str, str] | None) -> list[str] | None:
    """``{"team": "a"}`` → ``["team=a"]``, the repeated key=value filters of list routes."""
    return [f"{k}={v}" for k, v in values.items()] if values else None


def form_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Text fields of a form; structured values (drift settings, say) as JSON."""
    return {k: json.dumps(plain(v)) if isinstance(v, Mapping | list | BaseModel) else str(v)
            for k, v in _given(values)}


# --- uploads --------------------------------------------------------------------------------------------------------

Upload: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | pd.DataFrame | IO[bytes]
"""A file to upload: a path (``str`` is always a path), bytes, a binary file object, or a DataFrame (sent as CSV
with a header row, or Parquet when the method's ``format`` says so)."""

Document: TypeAlias = Mapping[str, Any] | BaseModel | str | os.PathLike[str] | bytes
"""A JSON document to upload: a mapping or model, JSON bytes, or a path to a JSON file."""


def _read_path(value: str | os.PathLike[str]) -> tuple[bytes, str]:
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file (a str argument is a path; pass bytes to send content)")
    return path.read_bytes(), path.name


def upload(value: Upload, *, name: str = "data", format: str | None = None, header: bool = True,
           content_type: str | None = None) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` of a multipart file part. The server reads a table's format from the
    file name, so a DataFrame or bytes gets ``name.csv`` or ``name.parquet`` after ``format``."""
    fmt = (format or "csv").lower()
    filename = f"{name}.{'parquet' if fmt == 'parquet' else fmt}"
    if isinstance(value, pd.DataFrame):
        if fmt == "parquet":
            buf = io.BytesIO()
            value.to_parquet(buf, index=False)
            data = buf.getvalue()
        else:
            data = value.to_csv(index=False, header=header).encode()
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str | os.PathLike):
        data, filename = _read_path(value)
    else:
        data = value.read()
        filename = os.path.basename(str(getattr(value, "name", ""))) or filename
    ctype = content_type or ("application/vnd.apache.parquet" if filename.endswith(".parquet") else
                             "application/json" if filename.endswith(".json") else
                             "text/csv" if filename.endswith(".csv") else "application/octet-stream")
    return filename, data, ctype


def document(value: Document) -> bytes:
    """JSON bytes of a document argument (files are sent as they are, for the server to judge)."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True, exclude_unset=True).encode()
    if isinstance(value, Mapping):
        return json.dumps(plain(value), allow_nan=False).encode()
    if isinstance(value, bytes):
        return value
    return _read_path(value)[0]


# --- pagination -----------------------------------------------------------------------------------------------------

def _identity(item: BaseModel) -> Hashable | None:
    """What tells a listed item from the others: its id, else a version's (group, version), else its name (None:
    nothing does, and it is never taken for another)."""
    found: Hashable | None = getattr(item, "id", None)
    if found is not None:
        return found
    key = (getattr(item, "group", None), getattr(item, "version", None), getattr(item, "name", None))
    return None if key == (None, None, None) else key


class Pager(Generic[M]):
    """The items of a paginated list: iterating yields every item across pages (fetched ``page_size`` at a time,
    as they are consumed); ``page(limit, offset)`` fetches one page with its ``total``."""

    def __init__(self, fetch: Callable[[int, int], Page[M]], page_size: int = 100) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000 (the server's largest page)")
        self._fetch, self.page_size = fetch, page_size

    def page(self, limit: int | None = None, offset: int = 0) -> Page[M]:
        return self._fetch(limit or self.page_size, offset)

    def __iter__(self) -> Iterator[M]:
        """Every item once, even while the loop deletes what it was given (``for v in …: delete(v)``) or items
        are added: the server pages by offset, so when the total shrank since the last page the next one starts
        back by as many (the rest shifted forward), and an item already yielded is not yielded again."""
        offset, seen, total = 0, set[Hashable | None](), None
        while True:
            page = self._fetch(self.page_size, offset)
            if total is not None and page.total < total and offset:
                offset = max(0, offset - (total - page.total))
                page = self._fetch(self.page_size, offset)
            total = page.total
            for item in page.items:
                key = _identity(item)
                if key is None or key not in seen:
                    seen.add(key)
                    yield item
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def all(self) -> list[M]:
        return list(self)

    def first(self) -> M | None:
        items = self._fetch(1, 0).items
        return items[0] if items else None

    @property
    def total(self) -> int:
        return self._fetch(1, 0).total


# --- the client -----------------------------------------------------------------------------------------------------

class BaseClient:
    """Transport, authentication and retries. ``url`` and ``api_key`` default to ``MLGOV_URL`` (else
    http://127.0.0.1:8000) and ``MLGOV_API_KEY``. A 503 or 429 is retried up to ``retries`` times, waiting what
    its ``Retry-After`` says (else 1, 2, 4 … s) but never more than ``max_retry_wait`` seconds at once; the server
    answers 503 only when nothing was stored, so every method is safe to retry."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 3, max_retry_wait: float = 30.0, transport: httpx.BaseTransport | None = None,
                 http: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if retries < 0 or max_retry_wait < 0:
            raise ValueError("retries and max_retry_wait must not be negative")
        self.url = (url or os.environ.get("MLGOV_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("MLGOV_API_KEY", "")
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries, self.max_retry_wait, self._sleep = retries, max_retry_wait, sleep
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _send(self, method: str, url: str, *, headers: Mapping[str, str], **kw: Any) -> httpx.Response:
        all_headers = {"User-Agent": f"mlgov-sdk/{__version__}", **self._auth, **headers}
        attempt = 0
        while True:
            response = self._http.request(method, url, headers=all_headers, **kw)
            if response.status_code not in (429, 503) or attempt >= self.retries:
                return response
            wait = retry_after(response.headers.get("retry-after"))
            self._sleep(min(wait if wait is not None else 2.0 ** attempt, self.max_retry_wait))
            attempt += 1

    @classmethod
    def routes(cls) -> dict[str, Route]:
        """Every method that calls the server → the route it calls (aliases included)."""
        found: dict[str, Route] = {}
        for name in dir(cls):
            declared = getattr(getattr(cls, name, None), "__mlgov_route__", None)
            if isinstance(declared, Route):
                found[name] = declared
        return found


class KernelClient(BaseClient):
    """Health, API keys, the audit log and webhooks (the kernel's own routes)."""

    @route("GET", "/healthz")
    def health(self, call: Call) -> dict[str, Any]:
        return call.json()

    @route("GET", "/readyz")
    def ready(self, call: Call) -> dict[str, Any]:
        return call.json()

    @route("GET", "/openapi.json")
    def openapi(self, call: Call) -> dict[str, Any]:
        """The OpenAPI document of the server."""
        return call.json()

    # keys
    @route("GET", "/api/v1/keys")
    def list_keys(self, call: Call) -> list[KeyRead]:
        return call.models(KeyRead)

    @route("POST", "/api/v1/keys")
    def create_key(self, call: Call, name: str, role: str, owner: str | None = None) -> KeyCreated:
        """Admin: the returned ``key`` is shown once; the server stores only its hash."""
        return call.model(KeyCreated, json=body({"name": name, "role": role, "owner": owner}))

    @route("DELETE", "/api/v1/keys/{name}")
    def revoke_key(self, call: Call, name: str) -> None:
        call.none({"name": name})

    delete_key = revoke_key

    # audit
    @route("GET", "/api/v1/audit/events")
    def list_audit_events(self, call: Call, *, subject_type: str | None = None, subject: str | None = None,
                          actor: str | None = None, action: str | None = None,
                          since: dt.datetime | str | None = None, until: dt.datetime | str | None = None,
                          page_size: int = 100) -> Pager[AuditEventRead]:
        """Events oldest first; ``action`` may be a pattern like ``version.*``; ``subject`` e.g. ``churn/3``."""
        return call.pager(AuditEventRead, params={"subject_type": subject_type, "subject": subject, "actor": actor,
                                                  "action": action, "from": since, "to": until}, page_size=page_size)

    def audit_events(self, *, limit: int = 100, offset: int = 0, **filters: Any) -> Page[AuditEventRead]:
        """One page of ``list_audit_events`` (same filters)."""
        return self.list_audit_events(**filters).page(limit, offset)

    @route("GET", "/api/v1/audit/verify")
    def verify_audit(self, call: Call) -> dict[str, Any]:
        """``ok``, ``checked``, ``checkpoint``, ``anchored``; on failure where and why the chain breaks."""
        return call.json()

    audit_verify = verify_audit

    @route("POST", "/api/v1/audit/checkpoint")
    def audit_checkpoint(self, call: Call) -> dict[str, Any]:
        """Admin: sign the chain's head and write it to the server's object store."""
        return call.json()

    # webhooks
    @route("POST", "/api/v1/webhooks")
    def create_webhook(self, call: Call, url: str, secret: str, events: Sequence[str],
                       description: str | None = None) -> WebhookRead:
        return call.model(WebhookRead, json=body({"url": url, "secret": secret, "events": list(events),
                                                  "description": description}))

    @route("GET", "/api/v1/webhooks")
    def list_webhooks(self, call: Call) -> list[WebhookRead]:
        return call.models(WebhookRead)

    @route("GET", "/api/v1/webhooks/{webhook_id}")
    def get_webhook(self, call: Call, webhook_id: str) -> WebhookRead:
        return call.model(WebhookRead, {"webhook_id": webhook_id})

    @route("DELETE", "/api/v1/webhooks/{webhook_id}")
    def delete_webhook(self, call: Call, webhook_id: str) -> None:
        call.none({"webhook_id": webhook_id})

    @route("GET", "/api/v1/webhooks/{webhook_id}/deliveries")
    def webhook_deliveries(self, call: Call, webhook_id: str, limit: int = 100, offset: int = 0) -> list[DeliveryRead]:
        """One page of deliveries, newest first, each with its attempt history."""
        return call.models(DeliveryRead, {"webhook_id": webhook_id}, params={"limit": limit, "offset": offset})

    def list_webhook_deliveries(self, webhook_id: str, *, page_size: int = 100) -> Iterator[DeliveryRead]:
        """Every delivery of a subscription, fetched ``page_size`` at a time."""
        offset = 0
        while True:
            batch = self.webhook_deliveries(webhook_id, page_size, offset)
            yield from batch
            if len(batch) < page_size:
                return
            offset += len(batch)

    @route("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
    def retry_delivery(self, call: Call, webhook_id: str, delivery_id: str) -> DeliveryRead:
        """Admin: redeliver a dead letter (it keeps its sequence number)."""
        return call.model(DeliveryRead, {"webhook_id": webhook_id, "delivery_id": delivery_id})
