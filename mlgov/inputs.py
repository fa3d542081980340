"""One policy for untrusted input: JSON documents, CSV uploads and path/query parameters.

Every door into mlgov (the ASGI body guard, the form reader, services reading JSON or CSV parts, the
database layer) calls these functions, so the same bad input gets the same 4xx everywhere instead of a
RecursionError, a UnicodeDecodeError or a database overflow turning into a 500.

Refused: JSON nested deeper than ``MLGOV_MAX_JSON_DEPTH``; ``NaN``/``Infinity`` (and numbers that overflow
to infinity), which RFC 8259 does not allow and PostgreSQL's ``json`` rejects; NUL characters, which
PostgreSQL ``text`` and ``json`` cannot hold; integers outside signed 64 bits; CSV that is not UTF-8 or
holds NUL bytes; tables wider than ``MLGOV_MAX_COLUMNS``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pydantic_core
from fastapi import Request
from fastapi.routing import APIRoute

from mlgov.errors import Invalid, MalformedJSON

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)


@dataclass
class Limits:
    max_json_depth: int = 64
    max_columns: int = 2000


LIMITS = Limits()


def configure(max_json_depth: int, max_columns: int) -> None:
    """Set by ``create_app`` from settings: parsers deep inside services read the same limits as the ASGI guard."""
    LIMITS.max_json_depth, LIMITS.max_columns = max_json_depth, max_columns


# --- JSON ---------------------------------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SUSPECT = re.compile(rb"NaN|Infinity|\d{19,}|\d[eE]\+?\d{3,}")
_OPEN, _CLOSE = (0x5B, 0x7B), (0x5D, 0x7D)
_NUL_FIX = "remove the NUL characters (\\u0000); PostgreSQL cannot store them"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_FIX = "escape characters outside the BMP as a pair (\\ud83d\\ude00) or send them as UTF-8"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _strip(raw: bytes) -> bytes:
    """``raw`` with every JSON string emptied, so brackets and number patterns inside strings are not seen.

    Without backslashes quotes simply alternate, so one vectorised pass finds the strings (4x faster than the
    regex on a 500-record capture body); it stands only when it pairs the quotes as the regex would: an even
    count and no line break inside a string (JSON Lines with a broken line go to the regex)."""
    if b'"' not in raw:
        return raw
    if b"\\" not in raw:
        a = np.frombuffer(raw, dtype=np.uint8)
        quote = a == 0x22
        inside = (np.cumsum(quote) & 1).astype(bool)
        if not inside[-1] and not (inside & (a == 0x0A)).any():
            return bytes(a[~inside | quote].tobytes())
    return _STRING.sub(b'""', raw)


def _depth_fix() -> str:
    return (f"send a document nested at most {LIMITS.max_json_depth} levels deep "
            "(the server's limit is MLGOV_MAX_JSON_DEPTH)")


def check_depth(raw: bytes, what: str, *, stripped: bytes | None = None) -> None:
    """Refuse nesting past the limit before any recursive parser sees the bytes (one vectorised pass).
    ``stripped`` is ``raw`` with its strings emptied (`_strip`), when the caller has it already."""
    if stripped is None:
        stripped = _strip(raw)
    a = np.frombuffer(stripped, dtype=np.uint8)
    brackets = a[(a == _OPEN[0]) | (a == _OPEN[1]) | (a == _CLOSE[0]) | (a == _CLOSE[1])]
    if brackets.size <= LIMITS.max_json_depth:
        return
    steps = np.where((brackets == _OPEN[0]) | (brackets == _OPEN[1]), 1, -1).astype(np.int64)
    deepest = int(np.cumsum(steps).max())
    if deepest > LIMITS.max_json_depth:
        raise Invalid(f"{what} is nested {deepest} levels deep; the limit is {LIMITS.max_json_depth}",
                      fix=_depth_fix(), limit=LIMITS.max_json_depth)


class _BigInt(str):
    """An integer literal too long to be a 64-bit integer, kept as text (Python refuses to parse >4300 digits)."""


def _parse_int(text: str) -> int | _BigInt:
    return int(text) if len(text.lstrip("-")) <= 20 else _BigInt(text)


BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte-order mark, which the standard parser skips at the start of a document."""
FAST_PARSER_MAX_DEPTH = 200   # pydantic-core's parser refuses deeper documents ("recursion limit exceeded")


def _parse(doc: bytes, *, clean: bool = False) -> Any:
    """``clean``: `_suspect` found no NaN/Infinity, NUL escape or wide number in ``doc``, so pydantic-core's parser
    gives what the standard one would, twice as fast (a 500-record capture body: 1.45 -> 0.73 ms); it refuses a
    lone surrogate escape, which the standard parser lets through. Suspect documents keep the standard parser,
    whose ``parse_int`` hook keeps a too-long integer as text for `check_value` to name (a 422, not a 400)."""
    if clean and LIMITS.max_json_depth <= FAST_PARSER_MAX_DEPTH:
        return pydantic_core.from_json(doc.removeprefix(BOM))   # the standard parser skips a BOM
    return json.loads(doc, parse_int=_parse_int)


def check_value(value: Any, path: str) -> None:
    """Walk a parsed document: non-finite numbers, NUL characters and integers past 64 bits name their path."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        v, where, depth = stack.pop()
        if depth > LIMITS.max_json_depth:
            raise Invalid(f"{where} is nested deeper than {LIMITS.max_json_depth} levels",
                          fix=_depth_fix(), field=where, limit=LIMITS.max_json_depth)
        if isinstance(v, _BigInt) or (isinstance(v, int) and not isinstance(v, bool)
                                      and not INT64[0] <= v <= INT64[1]):
            raise Invalid(f"{where} is an integer outside the signed 64-bit range [{INT64[0]}, {INT64[1]}]",
                          fix="send an integer within that range (a field that takes text also takes it as a string)",
                          field=where)
        if isinstance(v, str):
            if "\x00" in v:
                raise Invalid(f"{where} contains a NUL character", fix=_NUL_FIX, field=where)
            if not v.isascii() and _SURROGATE.search(v):
                raise Invalid(f"{where} contains a lone UTF-16 surrogate escape, which is not a character",
                              fix=_SURROGATE_FIX, field=where)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise Invalid(f"{where} is {v!r}, which is not a JSON number (RFC 8259 has no NaN or Infinity)",
                              fix="send null for an undefined value, or a finite number", field=where)
        elif isinstance(v, dict):
            for k, item in v.items():
                key = str(k)
                if "\x00" in key:
                    raise Invalid(f"a key under {where} contains a NUL character", fix=_NUL_FIX, field=where)
                if not key.isascii() and _SURROGATE.search(key):
                    raise Invalid(f"a key under {where} contains a lone UTF-16 surrogate escape",
                                  fix=_SURROGATE_FIX, field=where)
                stack.append((item, f"{where}.{key}", depth + 1))
        elif isinstance(v, list | tuple):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(v))


def _scan(raw: bytes, what: str) -> bool:
    """The byte-level half of the policy: refuse nesting past the limit (422); whether the document is suspect."""
    stripped = _strip(raw)
    check_depth(raw, what, stripped=stripped)
    return _suspect(raw, stripped)


def loads(raw: bytes | str, what: str) -> Any:
    """Parse one JSON document under the policy: 400 when it is not JSON, 422 naming the path when it breaks a rule."""
    data = raw.encode() if isinstance(raw, str) else raw
    suspect = _scan(data, what)
    try:
        doc = _parse(data, clean=not suspect)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedJSON(f"{what} is not valid JSON ({exc})",
                            fix="send a well-formed UTF-8 JSON document") from None
    if suspect:
        check_value(doc, what)
    check_unique_keys(data, what)   # the AWS and MLflow bodies, raw-body routes of any content type
    return doc


class _RepeatedKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def check_unique_keys(raw: bytes, what: str) -> None:
    """Refuse a well-formed document whose object repeats a key (422): parsers disagree about which value counts,
    and ours took the last, so ``{"status": "Rejected", …, "status": "Approved"}`` recorded an approval that a
    log or proxy reading the first value saw as a rejection."""
    if b'"' not in raw:
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _RepeatedKey as exc:
        key = str(exc)[:100]
        raise Invalid(f"{what} repeats the key {key!r} in one object; which of its values counts is not defined",
                      fix=f"send {key!r} once") from None
    except (ValueError, RecursionError):   # not ours to judge here: the other checks say what is wrong
        return


def has_surrogate_escape(raw: bytes) -> bool:
    """Whether the JSON text escapes a UTF-16 surrogate (``\\ud83d``): a pair is one character, a lone one none."""
    return b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None


def _utf16_or_32(raw: bytes) -> bool:
    """A UTF-16 or UTF-32 document (RFC 8259 allows receiving them; the standard parser reads them): a BOM, or a NUL
    byte among the first four, which UTF-8 JSON cannot have."""
    return raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4]


def _suspect(raw: bytes, stripped: bytes | None = None) -> bool:
    """Whether the bytes could hold a NaN/Infinity, a NUL escape, a wide integer or an overflowing exponent;
    clean documents (nearly all) skip the walk over every value."""
    if b"\\u0000" in raw or _utf16_or_32(raw):   # wide encodings hide every pattern below behind NUL bytes
        return True
    if has_surrogate_escape(raw):   # pairs are fine; a lone one is refused by `check_value`
        return True
    text = _strip(raw) if stripped is None else stripped
    if b"NaN" in text or b"Infinity" in text:
        return True
    a = np.frombuffer(text, dtype=np.uint8)
    digit = (a >= 0x30) & (a <= 0x39)
    if not (digit[:-2] & digit[1:-1] & digit[2:]).any():   # a wide integer and a wide exponent both need 3 digits
        return False
    return _SUSPECT.search(text) is not None


NOT_PARSED = object()
"""What `screen` returns for a body it did not parse (empty, or JSON Lines)."""
CLEAN = object()
"""What `screen` returns for a well-formed JSON document it found nothing suspect in: not parsed, since a clean
document needs no walk over its values (`document` parses it when a route wants the values)."""
CLEAN_LINES = object()
"""What `screen` returns for a JSON Lines body it found nothing suspect in as a whole. Its lines' syntax is not
checked, and the finding holds only once every line is well-formed (a broken line's quote or brackets can hide
another line's values from a whole-body check): `split_body` checks that before it relies on it."""
PARSED_BODY = "mlgov_parsed_body"
"""Where the body guard leaves what `screen` returned for the body in the request's state (``request.state``)."""

KEYS_CHECKED = "mlgov_keys_checked"
"""Set in the request's state when the body guard also refused repeated keys in the body (`check_unique_keys`)."""

_WELL_FORMED = msgspec.json.Decoder(msgspec.Raw)


def parsed_body(request: Request) -> Any:
    """What the guard's `screen` returned for the request body: CLEAN, the parsed and checked document (a suspect
    one), or NOT_PARSED (JSON Lines, not JSON, no guard)."""
    return getattr(request.state, PARSED_BODY, NOT_PARSED)


def body_document(request: Request, raw: bytes, what: str) -> Any:
    """The value of a JSON request body, checked under the policy once: what the body guard screened (and refused
    repeated keys in) is only parsed, by the fast parser; any other body goes through `loads`."""
    screened = parsed_body(request)
    if screened is NOT_PARSED or not getattr(request.state, KEYS_CHECKED, False):   # (never set for JSON Lines)
        return loads(raw, what)
    try:   # ``raw`` must be the bytes the guard screened (the request's own body)
        return document(raw, screened)
    except (ValueError, RecursionError) as exc:   # a text the guard's syntax check passed and the parser refuses
        raise _malformed(what, exc) from None


def _malformed(what: str, exc: BaseException) -> MalformedJSON:
    return MalformedJSON(f"{what} is not valid JSON ({exc})",
                         fix="send a well-formed UTF-8 JSON document with Content-Type: application/json")


def well_formed(raw: bytes, what: str = "the request body") -> msgspec.Raw:
    """``raw`` as one JSON text (a leading BOM skipped, as the standard parser skips it), or MalformedJSON (a 400)
    unless it is one well-formed UTF-8 JSON text. msgspec checks the syntax without building a value (a
    500-record capture body: ~0.1 ms, where parsing it took 0.6-2.5 ms and a megabyte of objects); its check skips
    over string bytes, so UTF-8 is checked apart. For clean documents only (`_suspect`): the standard parser
    decides for NaN, wide numbers and escapes."""
    doc = raw.removeprefix(BOM)
    try:
        if not doc.isascii():
            doc.decode()
        try:
            return _WELL_FORMED.decode(doc)
        except RecursionError:   # nested past msgspec's own limit, which MLGOV_MAX_JSON_DEPTH may allow
            _parse(doc)          # the standard parser's verdict
            return msgspec.Raw(doc)
    except (ValueError, RecursionError) as exc:   # msgspec's DecodeError and UnicodeDecodeError are ValueErrors
        raise _malformed(what, exc) from None


def clean_lines(raw: bytes) -> bool:
    """Whether a JSON Lines body holds nothing the policy looks at twice (nothing suspect, no nesting past the
    limit), so each line needs only `well_formed`: sound only once every line is well-formed (`CLEAN_LINES`)."""
    try:
        return not _scan(raw, "the body")
    except Invalid:
        return False


def document(raw: bytes, screened: Any) -> Any:
    """The value of a body `screen` returned ``screened`` for (CLEAN: parsed now, by the fast parser)."""
    return _parse(raw, clean=True) if screened is CLEAN else screened


def screen(raw: bytes, what: str, *, lines: bool = False) -> Any:
    """Check of a whole request body: depth always; a JSON document must be well-formed (400 otherwise, on every
    route); the walk for NaN/NUL/wide integers runs only when a byte pattern looks suspect, so big clean bodies
    stay cheap.

    Returns CLEAN for a clean document (checked, not parsed: routes parse what they read), the parsed and checked
    document for a suspect one (a route may use it instead of parsing again), or NOT_PARSED (empty). JSON Lines:
    CLEAN_LINES when nothing is suspect, else NOT_PARSED once every line's values passed; syntax errors are left to
    the route, which rejects such a record alone.
    """
    if not raw.strip():
        return NOT_PARSED
    suspect = _scan(raw, what)
    if not suspect:
        if lines:
            return CLEAN_LINES
        well_formed(raw)
        return CLEAN
    if not lines:
        try:
            parsed = _parse(raw)
        except (ValueError, RecursionError) as exc:
            raise _malformed("the request body", exc) from None
        check_value(parsed, what)
        return parsed
    for i, doc in enumerate(raw.splitlines()):
        try:
            line = _parse(doc)
        except (ValueError, RecursionError):
            continue
        check_value(line, f"{what} line {i + 1}")
    return NOT_PARSED


# --- CSV ----------------------------------------------------------------------------------------------------------

def _row(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def check_columns(count: int, what: str) -> None:
    if count > LIMITS.max_columns:
        raise Invalid(f"{what} has {count} columns; at most {LIMITS.max_columns} are accepted",
                      fix="send fewer columns (split the table), or raise MLGOV_MAX_COLUMNS on the server",
                      limit=LIMITS.max_columns)


def is_parquet(data: bytes) -> bool:
    """Parquet's layout: its magic at both ends around a footer whose stated length fits (a CSV may well start with
    "PAR1", a column named PAR1_score, and end with it too)."""
    return len(data) >= 12 and data[:4] == b"PAR1" and data[-4:] == b"PAR1" \
        and int.from_bytes(data[-8:-4], "little") <= len(data) - 12


def check_csv(data: bytes, what: str = "the CSV") -> None:
    """Every CSV upload passes here before a parser sees it: UTF-8, no NUL bytes, a bounded number of columns."""
    if is_parquet(data):   # its first NUL was the reason given

        raise Invalid(f"{what} is a Parquet file, and this route reads CSV", fix="send the data as a CSV with a "
                      "header row (pandas: df.to_csv(path, index=False))")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise Invalid(f"{what} holds a NUL byte at byte offset {nul} (row {_row(data, nul)})",
                      fix="send a text CSV without NUL bytes", offset=nul, row=_row(data, nul))
    if not data.isascii():   # ASCII is UTF-8: the usual file is checked without decoding it into a second copy
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = data[exc.start:exc.start + 1].hex()
            raise Invalid(f"{what} is not UTF-8: byte 0x{bad} at byte offset {exc.start} "
                          f"(row {_row(data, exc.start)})",
                          fix="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)",
                          offset=exc.start, row=_row(data, exc.start)) from None
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).decode("utf-8")
    header = next(csv.reader(io.StringIO(first)), [])
    check_columns(len(header), what)


# --- path and query parameters ------------------------------------------------------------------------------------

_INTEGER = re.compile(r"^\s*[-+]?\d+\s*$")


def _params(dependant: Any) -> list[tuple[str, str, Any]]:
    """(location, name, field) of every path/query parameter of a route, its dependencies included."""
    out: list[tuple[str, str, Any]] = []
    seen: set[int] = set()
    todo = [dependant]
    while todo:
        d = todo.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        for where, fields in (("path", d.path_params), ("query", d.query_params)):
            out += [(where, f.alias, f.field_info) for f in fields]
        todo.extend(d.dependencies)
    return out


def _int_params(dependant: Any, params: list[tuple[str, str, Any]] | None = None) -> list[tuple[str, str, Any]]:
    """(location, name, field) of every integer path/query parameter of a route, its dependencies included
    (``params``: its `_params`, when already walked)."""
    return [(where, name, info) for where, name, info in (params if params is not None else _params(dependant))
            if info.annotation is int or int in getattr(info.annotation, "__args__", ())]


@dataclass(frozen=True)
class _RouteParams:
    ints: list[tuple[str, str, Any]]
    query: frozenset[str]


_ROUTE_PARAMS: dict[int, tuple[APIRoute, _RouteParams]] = {}


def _route_params(route: APIRoute) -> _RouteParams:
    """A route's integer parameters and query names, worked out once per route instead of on every request
    (routes live as long as the app; the route is kept beside its id so a reused id cannot return another
    route's parameters)."""
    cached = _ROUTE_PARAMS.get(id(route))
    if cached is None or cached[0] is not route:
        every = _params(route.dependant)   # one walk of the route's dependencies for both
        cached = _ROUTE_PARAMS[id(route)] = (route, _RouteParams(
            _int_params(route.dependant, every), frozenset(name for where, name, _ in every if where == "query")))
    return cached[1]


STRICT_QUERY_PREFIX = "/api/v1/"   # mlgov's own API; MLflow's and the console's keep their clients' habits


def _bounds(field_info: Any) -> tuple[int, int]:
    """A parameter's declared bounds, clamped to 64 bits; undeclared sides default to 32 bits, because the
    integers in mlgov's paths and queries (versions, counts) land in PostgreSQL INTEGER columns."""
    lo, hi = INT32
    for m in field_info.metadata:
        if getattr(m, "le", None) is not None:
            hi = min(int(m.le), INT64[1])
        if getattr(m, "lt", None) is not None:
            hi = min(int(m.lt) - 1, INT64[1])
        if getattr(m, "ge", None) is not None:
            lo = max(int(m.ge), INT64[0])
        if getattr(m, "gt", None) is not None:
            lo = max(int(m.gt) + 1, INT64[0])
    return lo, hi


def _in(v: str, lo: int, hi: int) -> bool:
    digits = v.strip().lstrip("+-")
    return len(digits) <= 20 and lo <= int(v) <= hi


async def guard_params(request: Request) -> None:
    """App-wide dependency: NUL characters and out-of-range integers in path and query parameters are 422
    naming the parameter and its bound, before any database sees them."""
    values: dict[tuple[str, str], list[str]] = {}
    for k, v in request.path_params.items():
        values.setdefault(("path", k), []).append(str(v))
    for k, v in request.query_params.multi_items():
        values.setdefault(("query", k), []).append(v)
    for (where, name), vs in values.items():
        if "\x00" in name or any("\x00" in v for v in vs):
            raise Invalid(f"{where} parameter {name!r} contains a NUL character", fix=_NUL_FIX, field=name)
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    params = _route_params(route)
    if route.path.startswith(STRICT_QUERY_PREFIX):
        unknown = sorted({k for k in request.query_params if k not in params.query})
        if unknown:   # ignored, a misspelt filter (?stauts=Approved) would answer everything
            raise Invalid(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(u[:60]) for u in unknown[:5])} for {route.path}",
                          fix=f"this route takes: {', '.join(sorted(params.query)) or 'no query parameters'}",
                          field=unknown[0][:60])
    for where, name, info in params.ints:
        lo, hi = _bounds(info)
        for v in values.get((where, name), []):
            if _INTEGER.match(v) and not _in(v, lo, hi):
                raise Invalid(f"{where} parameter {name!r} = {v.strip()[:40]} is outside [{lo}, {hi}]",
                              fix=f"send {name} between {lo} and {hi}", field=name, minimum=lo, maximum=hi)
