"""The AWS JSON 1.1 protocol, so AWS SDK code (boto3, the SageMaker Python SDK) can call mlgov unchanged.

What it does: ``POST /`` with ``X-Amz-Target: <Prefix>.<Operation>``; Signature Version 4 verified against the
secret of the API key that holds the access key id (clock skew ±15 minutes, the payload hash recomputed from the
body, ``host``, ``x-amz-date`` and ``x-amz-target`` required among the signed headers so a signature cannot be
moved to another operation); the request checked against botocore's own service model (required members,
types, enums, lengths, ranges, patterns) before any handler runs; errors as ``{"__type", "message"}``.

What it does not know: any domain. Domains register operations at composition time
(``AwsService.operation``); each operation declares the roles that may call it, whether it writes, and which
member (if any) is an idempotency token. A handler receives a :class:`Call` (session, principal, the ARN
builder for the caller's region and the configured account) and the validated parameters, and returns the
response members. Every DomainError a service raises is mapped here, once, to SageMaker's error codes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import anyio
import regex
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StringShape, StructureShape
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from sqlalchemy import JSON, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mlgov import auth, inputs
from mlgov.auth import Principal, Role
from mlgov.context import request_id_var
from mlgov.db import Base, DatabaseBusy, cursor_of, is_unique_violation, new_id, utcnow
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

log = logging.getLogger("mlgov.aws")

CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_SKEW = dt.timedelta(minutes=15)
ALGORITHM = "AWS4-HMAC-SHA256"
REQUIRED_SIGNED = ("host", "x-amz-date", "x-amz-target")


class AwsError(Exception):
    """An error in the protocol's own terms (``__type`` code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.headers = code, message, status, headers or {}


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def _text(exc: DomainError) -> str:
    fix = exc.fix_for("sagemaker")
    return f"{exc.detail.rstrip('.')}. Fix: {fix}" if fix else exc.detail


# DomainError family → SageMaker's codes (most specific class first). Statuses: SageMaker answers its modelled
# errors with 400; authentication failures are 403; overload is 503 with Retry-After (clients retry it).
_CODES: tuple[tuple[type[DomainError], str, int], ...] = (
    (NotFound, "ResourceNotFound", 400),
    (Conflict, "ConflictException", 400),
    (Forbidden, "AccessDeniedException", 400),
    (Unauthorized, "UnrecognizedClientException", 403),
    (MalformedJSON, "SerializationException", 400),
)


def to_aws_error(exc: BaseException, retry_after_s: int = 2) -> AwsError:
    """The one mapping of mlgov's errors to the AWS protocol."""
    if isinstance(exc, AwsError):
        return exc
    busy = {"Retry-After": str(retry_after_s)}
    if isinstance(exc, DomainError):
        if exc.status == 503:
            return AwsError("ServiceUnavailable", _text(exc), 503, busy)
        for cls, code, status in _CODES:
            if isinstance(exc, cls):
                return AwsError(code, _text(exc), status)
        return AwsError("ValidationException", _text(exc))   # Invalid (422), PayloadTooLarge and other 4xx
    if isinstance(exc, ValidationError):
        return validation("; ".join(f"{field_path(e) or 'value'}: {field_message(e)}"
                                    for e in exc.errors()[:5]))
    if isinstance(exc, DatabaseBusy):
        return AwsError("ServiceUnavailable", f"{exc.detail}. Fix: {exc.fix}", 503, busy)
    if (why := unavailable(exc)) is not None:
        log.warning("%s in an AWS protocol operation: %s", why, exc)
        return AwsError("ServiceUnavailable", f"{why}; nothing was stored, retry", 503, busy)
    if is_unique_violation(exc):
        return AwsError("ConflictException", "it already exists: a concurrent request stored the same thing "
                                             "first; nothing was stored. Re-read the resource and retry if still "
                                             "needed")
    log.error("unhandled error in an AWS protocol operation", exc_info=exc)
    return AwsError("InternalFailure", "an unexpected error occurred; it has been logged", 500)


# --- idempotency tokens -------------------------------------------------------------------------------------

class IdempotentCall(Base):
    """A response kept under a client token (SageMaker's ``ClientToken``): the same token from the same key with
    the same parameters gets the same answer, and nothing is done twice."""

    __tablename__ = "aws_idempotent_calls"
    __table_args__ = (UniqueConstraint("operation", "key_pk", "token"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    operation: Mapped[str] = mapped_column(String(128))
    key_pk: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(128))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def _replay(session: Session, op: str, key_pk: str, token: str, digest: str) -> dict[str, Any] | None:
    row = session.scalar(select(IdempotentCall).where(IdempotentCall.operation == op, IdempotentCall.key_pk == key_pk,
                                                      IdempotentCall.token == token))
    if row is None:
        return None
    if row.request_sha256 != digest:
        raise validation(f"ClientToken {token!r} was already used for a {op} call with different parameters; "
                         "use a new token for a new request")
    return dict(row.response)


# --- Signature Version 4 -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signed:
    access_key_id: str
    date: str          # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str


def _denied(message: str) -> AwsError:
    return AwsError("InvalidSignatureException", message, 403)


def parse_authorization(header: str | None, amz_date: str | None, service: str) -> Signed:
    if not header:
        raise AwsError("MissingAuthenticationTokenException",
                       "Request is missing Authentication Token: sign it with SigV4 (an access key id and secret "
                       "from `mlgov keys create … --aws`)", 403)
    algorithm, _, rest = header.partition(" ")
    if algorithm != ALGORITHM:
        raise AwsError("IncompleteSignatureException", f"only {ALGORITHM} signatures are accepted", 403)
    parts = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in rest.split(","))}
    try:
        akid, date, region, svc, terminator = parts["Credential"].split("/")
        signed = tuple(parts["SignedHeaders"].split(";"))
        signature = parts["Signature"]
    except (KeyError, ValueError):
        raise AwsError("IncompleteSignatureException",
                       "Authorization must carry Credential=<key>/<date>/<region>/<service>/aws4_request, "
                       "SignedHeaders and Signature", 403) from None
    if svc != service or terminator != "aws4_request":
        raise _denied(f"Credential should be scoped to correct service: '{service}'")
    if not amz_date:
        raise AwsError("IncompleteSignatureException", "the X-Amz-Date header is missing", 403)
    if not amz_date.startswith(date):
        raise _denied(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                      f"'{date}' != '{amz_date[:8]}'")
    missing = [h for h in REQUIRED_SIGNED if h not in signed]
    if missing:
        raise _denied(f"the signature must cover the headers {', '.join(missing)}")
    return Signed(akid, date, region, svc, signed, signature, amz_date)


def check_clock(amz_date: str, now: dt.datetime) -> None:
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AwsError("IncompleteSignatureException", f"X-Amz-Date {amz_date!r} is not YYYYMMDD'T'HHMMSS'Z'",
                       403) from None
    if abs(now - when) > MAX_SKEW:
        stamp = "%Y%m%dT%H%M%SZ"
        bound = (now - MAX_SKEW if when < now else now + MAX_SKEW).strftime(stamp)
        relation = "earlier" if when < now else "later"
        raise _denied(f"Signature expired: {amz_date} is now {relation} than {bound} "
                      f"({now.strftime(stamp)} {'-' if when < now else '+'} 15 min.)")


def canonical_request(method: str, raw_path: str, query: str, headers: list[tuple[str, str]],
                      signed_headers: Iterable[str], payload_sha256: str) -> str:
    """SigV4's canonical request, built as botocore builds it for non-S3 services."""
    path = urllib.parse.quote(raw_path or "/", safe="/~")
    pairs = sorted(tuple(p.partition("=")[::2]) for p in query.split("&") if p)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    names = list(signed_headers)
    lines = "".join(f"{n}:{','.join(sorted(values.get(n, [])))}\n" for n in names)
    return "\n".join([method.upper(), path, "&".join(f"{k}={v}" for k, v in pairs), lines, ";".join(names),
                      payload_sha256])


def signature(secret: str, signed: Signed, canonical: str) -> str:
    scope = f"{signed.date}/{signed.region}/{signed.service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, signed.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (signed.date, signed.region, signed.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


_DUMMY_SECRET = base64.b64encode(hashlib.sha256(b"mlgov-unknown-access-key").digest()).decode()


@dataclass(frozen=True)
class Wire:
    """What arrived: enough to verify the signature away from the event loop."""

    method: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


def verify(session: Session, wire: Wire, service: str, lookup: Callable[[Session, str], tuple[Principal, str] | None],
           now: dt.datetime) -> tuple[Principal, Signed]:
    """The principal whose secret signed this request, or an AwsError saying why not."""
    signed = parse_authorization(wire.header("authorization"), wire.header("x-amz-date"), service)
    check_clock(signed.amz_date, now)
    payload = hashlib.sha256(wire.body).hexdigest()
    declared = wire.header("x-amz-content-sha256")
    if declared is not None and declared != payload:
        raise _denied("the x-amz-content-sha256 header does not match the body (unsigned payloads are refused)")
    found = lookup(session, signed.access_key_id)
    expected = signature(found[1] if found else _DUMMY_SECRET, signed,
                         canonical_request(wire.method, wire.raw_path, wire.query, wire.headers,
                                           signed.signed_headers, payload))
    matches = hmac.compare_digest(expected, signed.signature)
    if found is None:
        raise AwsError("UnrecognizedClientException", "The security token included in the request is invalid.", 403)
    if not matches:
        raise _denied("The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method.")
    return found[0], signed


# --- validation against the service model ---------------------------------------------------------------------

def _java_pattern(p: str) -> str:
    """The model's patterns are Java regexes, matched whole as AWS's services match them (``Matcher.matches``;
    the model lost its ^…$ anchors, not their meaning); supplementary characters appear as UTF-16 surrogate
    pairs."""
    return p.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")


@cache
def _compiled(pattern: str) -> Any:
    return regex.compile(_java_pattern(pattern))


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


_JSON_TYPES: dict[str, tuple[type, str]] = {"structure": (dict, "an object"), "list": (list, "a list"),
                                            "map": (dict, "a map"), "string": (str, "a string"),
                                            "boolean": (bool, "a boolean")}


def _not_null(value: Any, where: str, errors: list[str]) -> None:
    """A null list item or map value: a null structure member is an absent one, but an item is a value, and the
    adapters read it as one (a 500, or a property stored as the text "null")."""
    if value is None:
        errors.append(f"Value null at '{where}' failed to satisfy constraint: Member must not be null")


def check_shape(shape: Shape, value: Any, path: str, errors: list[str], *, strict: bool = True) -> None:
    """Collect, in AWS's wording, every way ``value`` breaks ``shape`` (JSON 1.1 wire form: timestamps are epoch
    seconds, blobs base64). ``strict`` refuses members the model does not have."""
    meta = shape.metadata
    t = shape.type_name

    def fail(constraint: str) -> None:
        errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: {constraint}")

    if value is None:
        return
    expected = _JSON_TYPES.get(t)
    if expected is not None:
        if not isinstance(value, expected[0]):
            fail(f"Member must be {expected[1]}")
            return
        if t != "structure" and isinstance(value, list | dict | str):
            _bounds(len(value), meta, "Member must have length", fail)
    if isinstance(shape, StructureShape):
        members = shape.members
        for name in shape.required_members:
            if value.get(name) is None:
                where = f"{path}.{name}" if path else name
                errors.append(f"Value null at '{where}' failed to satisfy constraint: Member must not be null")
        for name, item in value.items():
            where = f"{path}.{name}" if path else name
            if name in members:
                check_shape(members[name], item, where, errors, strict=strict)
            elif strict:
                errors.append(f"'{where}' is not a member of {shape.name} in the service model")
    elif isinstance(shape, ListShape):
        for i, item in enumerate(value):
            _not_null(item, f"{path}.{i + 1}.member", errors)
            check_shape(shape.member, item, f"{path}.{i + 1}.member", errors, strict=strict)
    elif isinstance(shape, MapShape):
        for k, item in value.items():
            check_shape(shape.key, k, f"{path}.{k}.key", errors, strict=strict)
            _not_null(item, f"{path}.{k}.value", errors)
            check_shape(shape.value, item, f"{path}.{k}.value", errors, strict=strict)
    elif isinstance(shape, StringShape):
        if shape.enum and value not in shape.enum:
            fail(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = meta.get("pattern")
        if pattern and _compiled(pattern).fullmatch(value) is None:
            fail(f"Member must satisfy regular expression pattern: {pattern}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("Member must be an integer")
            return
        _bounds(value, meta, "Member must have value", fail)
    elif t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            fail("Member must be a finite number")
            return
        _bounds(value, meta, "Member must have value", fail)
    elif t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail("Member must be a timestamp in epoch seconds")
    elif t == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            fail("Member must be base64-encoded")


def _bounds(n: float, meta: dict[str, Any], what: str, fail: Callable[[str], None]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and n < lo:
        fail(f"{what} greater than or equal to {lo}")
    if hi is not None and n > hi:
        fail(f"{what} less than or equal to {hi}")


def validate(shape: Shape | None, params: dict[str, Any], *, strict: bool = True) -> list[str]:
    errors: list[str] = []
    if shape is not None:
        check_shape(shape, params, "", errors, strict=strict)
    return errors


def validation_message(errors: list[str]) -> str:
    n = len(errors)
    return f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors[:10])


# --- operations and dispatch --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """What a handler gets besides its parameters."""

    session: Session
    principal: Principal
    region: str
    account: str
    service: str
    extras: dict[str, Any] = field(default_factory=dict)   # composition-time objects (e.g. the object store getter)

    def arn(self, resource: str) -> str:
        return f"arn:aws:{self.service}:{self.region}:{self.account}:{resource}"

    def resource(self, arn_or_name: str, kind: str) -> str | None:
        """The part after ``<kind>/`` of one of our ARNs (any region); None when the value is not an ARN."""
        if not arn_or_name.startswith("arn:"):
            return None
        parts = arn_or_name.split(":", 5)
        if len(parts) != 6 or parts[2] != self.service or not parts[5].startswith(f"{kind}/"):
            raise validation(f"{arn_or_name!r} is not a {self.service} {kind} ARN "
                             f"(arn:aws:{self.service}:<region>:<account>:{kind}/…)")
        if parts[4] != self.account:
            raise AwsError("ResourceNotFound", f"{arn_or_name} belongs to account {parts[4]}, not to this server's "
                                               f"account {self.account} (MLGOV_AWS_ACCOUNT_ID)")
        return parts[5][len(kind) + 1:]


@dataclass(frozen=True)
class ThenRecord:
    """The answer of an operation that computes (`AwsService.operation`'s ``computes``): it ran on a read session,
    and ``record`` writes its rows and returns the response in a short write turn of its own, so a computation of
    minutes holds no write turn that capture ingest and every other write wait for."""

    record: Callable[[Session], dict[str, Any]]


Handler = Callable[[Call, dict[str, Any]], "dict[str, Any] | ThenRecord"]
TagReader = Callable[[Call, str], dict[str, str]]
"""The tags of one resource, by its name (the part of its ARN after ``<kind>/``); NotFound when there is none."""


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    roles: frozenset[Role]
    write: bool
    token: str | None = None   # the member holding an idempotency token
    computes: bool = False     # runs on a read session and answers a ThenRecord (a write turn of its own)


_NOT_OURS = "NextToken is not one this server returned; start again without it"


_operation: ContextVar[str] = ContextVar("aws_operation", default="")
"""The operation being served (set by `AwsService._run`): a NextToken belongs to it."""


def _binding(p: dict[str, Any]) -> str:
    """What a NextToken is bound to: the operation and the request's members but NextToken and MaxResults (the
    page size may change between pages), so a token is never read by another list, or against other filters or
    another order."""
    rest = {k: v for k, v in p.items() if k not in ("NextToken", "MaxResults")} | {"": _operation.get()}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _token(p: dict[str, Any], position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({**position, "q": _binding(p)}).encode()).decode()


def _read_token(p: dict[str, Any]) -> dict[str, Any] | None:
    token = p.get("NextToken")
    if not token:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(str(token).encode()))
    except (ValueError, TypeError, binascii.Error):
        raise validation(_NOT_OURS) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("q"), str):
        raise validation(_NOT_OURS)
    if doc["q"] != _binding(p):
        raise validation("NextToken was returned for another request (another operation, or other filters or "
                         "sort): send it with that request's parameters, or start again without it")
    return doc


def page_offset(p: dict[str, Any]) -> int:
    """Where the page of an offset-paged list starts (0 without a NextToken)."""
    doc = _read_token(p)
    if doc is None:
        return 0
    offset = doc.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**63:
        raise validation(_NOT_OURS)
    return offset


def paged(rows: list[Any], total: int, offset: int, p: dict[str, Any]) -> str | None:
    """The NextToken after a page of ``rows`` starting at ``offset`` (None on the last page)."""
    end = offset + len(rows)
    return _token(p, {"offset": end}) if end < total else None


def page_after(p: dict[str, Any]) -> list[Any] | None:
    """The cursor a keyset-paged list goes on from (None without a NextToken): the sort values of the last row
    the previous page returned, so rows deleted or added before it meanwhile neither skip nor repeat rows, as
    they would under an offset (a client deleting each package as it pages through them)."""
    doc = _read_token(p)
    if doc is None:
        return None
    after = doc.get("after")
    if not isinstance(after, list) or not after:
        raise validation(_NOT_OURS)
    values: list[Any] = []
    for v in after:
        if isinstance(v, dict) and isinstance(v.get("t"), str):
            try:
                values.append(dt.datetime.fromisoformat(v["t"]))
            except ValueError:
                raise validation(_NOT_OURS) from None
        elif isinstance(v, (str, int)) and not isinstance(v, bool):
            values.append(v)
        else:
            raise validation(_NOT_OURS)
    return values


def keyset_paged(rows: list[Any], remaining: int, order: Sequence[Any], p: dict[str, Any]) -> str | None:
    """The NextToken after a keyset page (None on the last page); ``remaining``: the rows from this page's start
    on, as `paginate` counts them with ``after``."""
    if not rows or len(rows) >= remaining:
        return None
    cursor = [{"t": v.isoformat()} if isinstance(v, dt.datetime) else v for v in cursor_of(rows[-1], order)]
    return _token(p, {"after": cursor})


def descending(p: dict[str, Any]) -> bool:
    """SageMaker's lists sort newest first unless SortOrder says Ascending (code taking ``…SummaryList[0]`` as the
    latest, as AWS's MLOps templates do, relies on it)."""
    return (p.get("SortOrder") or "Descending") == "Descending"


def sort_of(p: dict[str, Any], keys: dict[str, str], default: str) -> str:
    """The listing service's sort (``key``, or ``-key`` descending: `mlgov.db.sort_order`) for SortBy and
    SortOrder; ``keys`` maps the operation's SortBy values (botocore's model checked them) to the service's."""
    key = keys[p.get("SortBy") or default]
    return f"-{key}" if descending(p) else key


def drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    """Members with a value: AWS answers leave absent members out rather than sending null or empty."""
    return {k: v for k, v in d.items() if v not in (None, [], {})}


def clipped(text: str | None, limit: int) -> str | None:
    """Stored text SageMaker's model answers shorter than mlgov keeps it (a member's ``max``), cut there and marked
    where cut: answers stay within the model, the stored text whole (native API, audit)."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit - 1] + "…"


def failure_reason(text: str | None) -> str | None:
    """SageMaker's FailureReason (processing jobs, monitoring executions) is at most 1,024 characters; mlgov's
    reasons quote what failed (a dataset URI may be 1,024 characters itself)."""
    return clipped(text, 1024)


def user_context(name: str) -> dict[str, Any]:
    """SageMaker's UserContext (CreatedBy, LastModifiedBy) for an mlgov key."""
    return {"IamIdentity": {"PrincipalId": name}}


def from_epoch(value: float | None) -> dt.datetime | None:
    """A request timestamp (JSON 1.1 sends epoch seconds)."""
    if value is None:
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise Invalid(f"timestamp {value} is outside the years 1-9999",
                      fix="give a time between 0001-01-01 and 9999-12-31 (epoch seconds)") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@cache
def _operation_errors(model: ServiceModel, operation: str) -> tuple[Shape, ...]:
    return tuple(model.operation_model(operation).error_shapes)


class AwsService:
    """One AWS JSON 1.1 service: its botocore model, the operations domains registered, and the ``POST /`` route."""

    def __init__(self, model: ServiceModel, *, account: str, lookup: Callable[[Session, str],
                 tuple[Principal, str] | None], extras: dict[str, Any] | None = None, retry_after_s: int = 2,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.model = model
        self.prefix = str(model.metadata["targetPrefix"])
        self.signing_name = str(model.metadata.get("signingName") or model.endpoint_prefix)
        self.account, self.lookup, self.extras = account, lookup, extras or {}
        self.retry_after_s, self.clock = retry_after_s, clock
        self.operations: dict[str, Operation] = {}
        self.tag_readers: dict[str, TagReader] = {}

    def tags_of(self, kind: str, read: TagReader) -> None:
        """Let ListTags answer for ARNs of ``kind`` (``…:<kind>/<name>``): the domain that owns the resource
        registers how to read its tags, so the domain serving ListTags imports none of the others."""
        self.tag_readers[kind] = read

    def operation(self, name: str, *, roles: frozenset[Role], write: bool, idempotency_member: str | None = None,
                  computes: bool = False) -> Callable[[Handler], Handler]:
        """Register a handler. ``computes``: a write operation whose handler computes on a read session and
        answers a `ThenRecord`, recorded in a write turn taken after the read session ends."""
        if name not in self.model.operation_names:
            raise ValueError(f"{name} is not an operation of {self.prefix}")

        def register(fn: Handler) -> Handler:
            self.operations[name] = Operation(name, fn, roles, write, idempotency_member, computes)
            return fn

        return register

    def served(self) -> list[str]:
        return sorted(self.operations)

    def install(self, app: FastAPI, path: str = "/") -> None:
        """``POST /`` as a plain route: it declares no role because each operation declares its own, checked once
        the signature names the caller (``Operation.roles``)."""
        app.add_route(path, self.handle, methods=["POST"], include_in_schema=False)

    def _respond(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        rid = request_id_var.get() or ""
        return Response(json.dumps(body, default=_json_default, separators=(",", ":")), status_code=status,
                        media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": rid, **(headers or {})})

    def _error(self, exc: BaseException, op: Operation | None = None) -> Response:
        err = to_aws_error(exc, self.retry_after_s)
        if err.code == "ResourceNotFound" and op is not None and not self._declares(op.name, "ResourceNotFound"):
            # SageMaker answers ResourceNotFound only where its model declares it; elsewhere (DescribeModelPackage,
            # DescribeModelPackageGroup …) a missing resource is "ValidationException: … does not exist", which
            # client code tests for
            message = err.message if "does not exist" in err.message else f"does not exist: {err.message}"
            err = AwsError("ValidationException", message, err.status, err.headers)
        if err.code == "ConflictException" and op is not None and not self._declares(op.name, err.code):
            # where the model names the clash ResourceInUse (CreateMonitoringSchedule, the job definitions), client
            # code catches that (`except sm.exceptions.ResourceInUse`); where it names neither (CreateAction,
            # AddAssociation, CreateModelPackageGroup …), SageMaker answers "ValidationException: … already exists",
            # which the SageMaker SDK tests for to skip what exists (`experiments._utils.is_already_exist_error`)
            code = "ResourceInUse" if self._declares(op.name, "ResourceInUse") else "ValidationException"
            err = AwsError(code, err.message, err.status, err.headers)
        return self._respond(err.status, {"__type": err.code, "message": err.message}, err.headers)

    def _declares(self, operation: str, code: str) -> bool:
        return any(e.name == code for e in _operation_errors(self.model, operation))

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        op = self.operations.get(name) if prefix == self.prefix else None
        wire = Wire(request.method, request.scope.get("raw_path", b"/").decode("latin-1"),
                    request.scope.get("query_string", b"").decode("latin-1"),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]], body)
        db = auth.get_db(request)
        try:
            async with auth.database_turn(db, write=bool(op and op.write and not op.computes)) as session:
                result = await anyio.to_thread.run_sync(self._run, session, wire, target, op)
            if isinstance(result, ThenRecord):
                async with auth.database_turn(db, write=True) as writer:
                    result = await anyio.to_thread.run_sync(result.record, writer)
        except Exception as exc:
            if op is not None and op.token and is_unique_violation(exc):
                replay = await self._replay_after_race(db, wire, op)
                if replay is not None:
                    return self._respond(200, replay)
            return self._error(exc, op)
        return self._respond(200, result)

    def _authenticate(self, session: Session, wire: Wire) -> tuple[Principal, Signed]:
        return verify(session, wire, self.signing_name, self.lookup, self.clock())

    def _run(self, session: Session, wire: Wire, target: str, op: Operation | None) -> dict[str, Any] | ThenRecord:
        principal, signed = self._authenticate(session, wire)
        prefix, _, name = target.partition(".")
        if op is None:
            if prefix != self.prefix or name not in self.model.operation_names:
                raise validation(f"X-Amz-Target {target!r} names no {self.prefix} operation; send "
                                 f"'{self.prefix}.<Operation>'")
            raise validation(f"mlgov does not serve {self.prefix}.{name}; the served operations are listed in the "
                             "README (Coming from SageMaker)")
        if principal.role not in op.roles:
            raise AwsError("AccessDeniedException",
                           f"key {principal.name!r} (role {principal.role.value}) is not authorized to perform "
                           f"{self.signing_name}:{op.name}; it needs one of the roles "
                           f"{', '.join(sorted(r.value for r in op.roles))}")
        params = inputs.loads(wire.body or b"{}", "body")
        if not isinstance(params, dict):
            raise AwsError("SerializationException", "the request body must be a JSON object")
        errors = validate(self.model.operation_model(op.name).input_shape, params)
        if errors:
            raise validation(validation_message(errors))
        call = Call(session, principal, signed.region, self.account, self.signing_name, self.extras)
        _operation.set(op.name)
        token = params.get(op.token) if op.token else None
        digest = _digest(params, op.token)
        if token:
            replay = _replay(session, op.name, principal.key_pk, token, digest)
            if replay is not None:
                return replay
        result = op.handler(call, params)
        if op.computes != isinstance(result, ThenRecord):
            raise TypeError(f"{op.name} {'computes' if op.computes else 'writes'} and must answer "
                            f"{'a ThenRecord' if op.computes else 'its response'}")
        if not token:
            return result

        def remembered(writer: Session, response: dict[str, Any]) -> dict[str, Any]:
            writer.add(IdempotentCall(id=new_id(), operation=op.name, key_pk=principal.key_pk, token=token,
                                      request_sha256=digest, response=json.loads(json.dumps(response,
                                                                                            default=_json_default))))
            writer.flush()
            return response

        if isinstance(result, ThenRecord):
            record = result.record
            return ThenRecord(lambda writer: remembered(writer, record(writer)))
        return remembered(session, result)

    async def _replay_after_race(self, db: Any, wire: Wire, op: Operation) -> dict[str, Any] | None:
        """A concurrent call with the same token committed first: answer what it answered."""
        def look(session: Session) -> dict[str, Any] | None:
            principal, _ = self._authenticate(session, wire)
            params = inputs.loads(wire.body or b"{}", "body")
            assert op.token is not None
            return _replay(session, op.name, principal.key_pk, str(params[op.token]), _digest(params, op.token))

        try:
            async with auth.database_turn(db, write=False) as session:
                return await anyio.to_thread.run_sync(look, session)
        except AwsError:
            return None


def _digest(params: dict[str, Any], token_member: str | None) -> str:
    rest = {k: v for k, v in params.items() if k != token_member}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@cache
def botocore_model(service: str) -> ServiceModel:
    """The installed botocore's own model of ``service`` (read with botocore's loader)."""
    import botocore.session

    model: ServiceModel = botocore.session.get_session().get_service_model(service)
    return model


def require_absent(params: dict[str, Any], members: Iterable[str], why: str) -> None:
    """Members of the model mlgov does not keep: refused by name rather than silently dropped."""
    given = [m for m in members if params.get(m) not in (None, [], {})]
    if given:
        raise validation(f"mlgov does not keep {', '.join(given)} ({why}); leave {'them' if len(given) > 1 else 'it'} "
                         "out of the request")


__all__ = [
    "AwsError",
    "AwsService",
    "Call",
    "TagReader",
    "botocore_model",
    "drop_empty",
    "from_epoch",
    "keyset_paged",
    "page_after",
    "page_offset",
    "paged",
    "require_absent",
    "to_aws_error",
    "user_context",
    "validate",
    "validation",
]
