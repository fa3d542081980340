"""SageMaker data-capture records → rows of features (pure; no I/O).

A record is SageMaker's JSONL line: ``captureData.endpointInput/endpointOutput`` with ``data`` and
``encoding`` (CSV, JSON or BASE64) and ``eventMetadata`` (eventId, inferenceId, inferenceTime). The
endpoint's schema names the features in order; JSON inputs are flattened with a separator so nested
payloads map to names like ``customer.age``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

import msgspec
import pydantic_core
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from mlgov import inputs
from mlgov.errors import DomainError, MalformedJSON
from mlgov.types import Integer

TYPE_ALIASES: dict[str, str] = {
    "fractional": "Fractional", "float": "Fractional", "double": "Fractional",
    "integral": "Integral", "int": "Integral", "integer": "Integral", "long": "Integral",
    "string": "String", "str": "String", "category": "String", "bool": "String", "boolean": "String",
}
"""The names users write for a column type (any case), each mapped to SageMaker's canonical one."""


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


def _canonical_type(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() not in TYPE_ALIASES:
            raise ValueError(f"type {value[:40]!r} is not Integral, Fractional or String (also accepted, any case: "
                             f"{', '.join(k for k in TYPE_ALIASES if k not in ('integral', 'fractional', 'string'))})")
        return TYPE_ALIASES[value.lower()]
    return value


ColumnType = Annotated[
    Literal["Integral", "Fractional", "String"], BeforeValidator(_canonical_type),
    WithJsonSchema({"type": "string", "pattern": "^(" + "|".join(_any_case(w) for w in TYPE_ALIASES) + ")$",
                    "description": "Integral, Fractional or String (SageMaker's names, stored and returned so); "
                                   "any case of " + ", ".join(TYPE_ALIASES) + " is read as its canonical name"}),
]
"""A column type as SageMaker names it; users' aliases (float, int, str, ...) are read as the canonical name."""


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    type: ColumnType = "Fractional"


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    type: ColumnType = Field(default="Fractional", description="how the captured value is stored; a probability "
                                                               "is always Fractional")
    csv_index: Integer = Field(default=0, ge=0, description="position in a CSV response")
    json_key: str | None = Field(default=None, description="flattened key in a JSON response")


class CaptureSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[FeatureSpec] = Field(min_length=1, max_length=2000)
    prediction: OutputSpec | None = Field(default_factory=lambda: OutputSpec(name="prediction"))
    probability: OutputSpec | None = None
    flatten_separator: str = Field(default=".", min_length=1, max_length=3)

    @model_validator(mode="after")
    def _unique(self) -> CaptureSchema:
        names = [f.name for f in self.features] + [o.name for o in (self.prediction, self.probability) if o]
        if len(set(names)) != len(names):
            raise ValueError("feature, prediction and probability names must be unique")
        if self.probability is not None and self.probability.type != "Fractional":
            raise ValueError(f"probability type {self.probability.type} is not possible: a probability is a number "
                             "in [0, 1]; leave type out or give Fractional (a class label belongs in prediction)")
        return self

    def output_columns(self) -> list[OutputSpec]:
        return [o for o in (self.prediction, self.probability) if o is not None]


class RecordError(ValueError):
    pass


@dataclass
class Parsed:
    event_id: str
    inference_id: str | None
    inference_time: dt.datetime
    row: dict[str, str | float | None]
    raw: bytes
    """The record as one line of JSON (its JSONL line in the store)."""


def sampled(endpoint: str, event_id: str, percentage: float) -> bool:
    """Deterministic per event: the same eventId always samples the same way (retries stay consistent)."""
    if percentage >= 100:
        return True
    h = int.from_bytes(hashlib.sha256(f"{endpoint}\0{event_id}".encode()).digest()[:8], "big")
    return (h / 2**64) * 100 < percentage


def _decode(part: dict[str, Any], where: str) -> tuple[str, str]:
    if not isinstance(part, dict):
        raise RecordError(f"{where} must be an object")
    data = part.get("data")
    if not isinstance(data, str):
        raise RecordError(f"{where}.data must be a string")
    return _decoded(data, part.get("encoding", "CSV"), part.get("observedContentType", ""), where)


def _decoded(data: str, enc: Any, ctype: Any, where: str) -> tuple[str, str]:
    """A part's payload text and its encoding, CSV or JSON (BASE64 decoded, its content type naming which)."""
    if enc == "CSV" or enc == "JSON":       # SageMaker's own spelling: nothing to normalise
        return data, enc
    enc = str(enc).upper()
    if enc == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RecordError(f"{where}.data is not valid BASE64-encoded UTF-8") from None
        enc = "JSON" if "json" in str(ctype).lower() else "CSV"
    if enc not in ("CSV", "JSON"):
        raise RecordError(f"{where}.encoding {enc!r} is not CSV, JSON or BASE64")
    return data, enc


def _flatten(obj: Any, sep: str, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, sep, f"{prefix}{sep}{k}" if prefix else str(k)))
    elif isinstance(obj, list) and prefix:
        for i, v in enumerate(obj):
            out.update(_flatten(v, sep, f"{prefix}{sep}{i}"))
    else:
        out[prefix] = obj
    return out


def payload_json(data: str, where: str) -> Any:
    """A JSON payload carried inside a record (capture data, a label): nesting is bounded before parsing, as for
    bodies; NaN stays accepted here because model servers emit it and the analyzer counts it as missing."""
    try:
        raw = data.encode()
        inputs.check_depth(raw, where)
        obj = json.loads(data)
        if inputs.has_surrogate_escape(raw):
            json.dumps(obj, ensure_ascii=False).encode()   # a lone surrogate cannot be stored: UnicodeEncodeError
        return obj
    except (DomainError, RecursionError) as exc:
        raise RecordError(str(getattr(exc, "detail", exc))) from None
    except UnicodeEncodeError:
        raise RecordError(f"{where} escapes a lone UTF-16 surrogate, which is not a character") from None
    except ValueError as exc:   # JSONDecodeError, or an integer longer than Python will parse
        raise RecordError(f"{where} is not valid JSON: {getattr(exc, 'msg', exc)}") from None


def _csv_values(data: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(data.strip())))
    if len(rows) != 1:
        raise RecordError(f"CSV payload has {len(rows)} lines; one inference per record is supported")
    return rows[0]


def _typed(value: Any, ftype: str) -> str | float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if ftype == "String":
        return ("true" if value else "false") if isinstance(value, bool) else str(value)   # JSON's spelling, as CSV
    try:
        num = float(value)
    except (TypeError, ValueError, OverflowError):   # OverflowError: an integer wider than any float
        return str(value)  # kept: the data-type check will count it against the feature
    if math.isinf(num) or math.isnan(num):
        return num
    return num


AHEAD = dt.timedelta(days=1)
"""How far ahead of the server's clock an inferenceTime may be (clock skew between hosts): a record from next year
would stand in the capture volume and window reads as if it had happened."""


def _when(text: Any) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise RecordError("eventMetadata.inferenceTime must be an ISO-8601 time, e.g. 2026-11-22T10:00:00Z") from None
    try:
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except OverflowError:    # 0001-01-01T00:00+01:00: no UTC time
        raise RecordError("eventMetadata.inferenceTime is outside the years 1-9999 once converted to UTC") from None
    if when > dt.datetime.now(dt.UTC) + AHEAD:
        raise RecordError(f"eventMetadata.inferenceTime {when.isoformat()} is more than a day ahead of the server's "
                          "clock: it is the time the prediction was made")
    return when


def _csv_text(value: str) -> str | None:
    """A CSV field of a String feature: what `_typed` gives for a string, without its type dispatch."""
    return value if value.strip() else None


def _csv_number(value: str) -> str | float | None:
    """A CSV field of a numeric feature: what `_typed` gives for a string (float() refuses blank text, so a
    blank field still reads as missing and unparseable text is kept for the data-type check)."""
    try:
        return float(value)
    except ValueError:
        return value if value.strip() else None


def _plain_split(data: str) -> list[str] | None:
    """A plain CSV line's fields (not blank, no quotes or line breaks: nearly every capture), split directly,
    which gives what the csv module gives for it; None for any other line."""
    if '"' in data or "\r" in data or "\n" in data:
        return None
    text = data.strip()
    return text.split(",") if text else None


def _csv_fields(data: str) -> list[str]:
    """One CSV line's fields: `_plain_split`'s for a plain line, the csv module's for any other."""
    fields = _plain_split(data)
    return fields if fields is not None else _csv_values(data)


class _Part(msgspec.Struct):
    data: str
    encoding: str = "CSV"
    observedContentType: str = ""


class _CaptureData(msgspec.Struct):
    endpointInput: _Part
    endpointOutput: _Part | msgspec.UnsetType = msgspec.UNSET   # present but null: the dict path says why


class _Metadata(msgspec.Struct):
    eventId: str
    inferenceTime: str
    inferenceId: str | None = None


class _Record(msgspec.Struct):
    """The usual shape of a capture record, decoded straight from its JSON text; a record that differs in any
    way (a missing or mistyped field) fails to decode and is read as a dict instead (`Reader.parse`), which
    names what is wrong. Other fields are ignored here as there, and kept in the stored line."""

    captureData: _CaptureData
    eventMetadata: _Metadata


_RECORD = msgspec.json.Decoder(_Record)
_RECORDS = msgspec.json.Decoder(list[msgspec.Raw])


class Reader:
    """Reads records against one endpoint schema (its names and types worked out once per request)."""

    def __init__(self, schema: CaptureSchema) -> None:
        self.schema = schema
        self.features = [(f.name, f.type) for f in schema.features]
        self.names = [f.name for f in schema.features]
        self.outputs = schema.output_columns()
        self.csv_features = [(f.name, _csv_text if f.type == "String" else _csv_number) for f in schema.features]
        self._times: dict[str, dt.datetime] = {}

    def _when(self, text: Any) -> dt.datetime:
        """`_when`, remembered per text: a batch's records mostly share a handful of inference times."""
        if not isinstance(text, str):
            return _when(text)
        when = self._times.get(text)
        if when is None:
            if len(self._times) >= 4096:
                self._times.clear()
            when = self._times[text] = _when(text)
        return when

    def parse(self, record: Any) -> Parsed:
        """A record as split from a body: a clean record's JSON text (`split_body`'s msgspec.Raw) or a parsed
        value. The text is decoded into the usual shape when it has it, and otherwise parsed and read as a dict;
        both give the same result for every record (the dict path is the reference)."""
        if isinstance(record, msgspec.Raw):
            try:
                rec = _RECORD.decode(record)
            except msgspec.DecodeError:   # not the usual shape (ValidationError): the dict path says why
                try:
                    value = inputs.document(bytes(record), inputs.CLEAN)
                except (ValueError, RecursionError) as exc:   # only text split from a screened body gets here
                    raise RecordError(f"record is not valid JSON ({exc})") from None
                return self.parse(value)
            m = rec.eventMetadata
            event_id, inference_id = _check_ids(m.eventId, m.inferenceId)
            line = bytes(record)
            if b"\n" in line or b"\r" in line:   # a pretty-printed record: one compact line in the store
                line = _one_line(inputs.document(line, inputs.CLEAN))
            return self._read(event_id, inference_id, self._when(m.inferenceTime), rec.captureData, line)
        if not isinstance(record, dict):
            raise RecordError("record must be a JSON object")
        meta = record.get("eventMetadata")
        if not isinstance(meta, dict):
            raise RecordError("eventMetadata is missing")
        event_id, inference_id = _check_ids(meta.get("eventId"), meta.get("inferenceId"))
        when = self._when(meta.get("inferenceTime", ""))
        cap = record.get("captureData")
        if not isinstance(cap, dict) or "endpointInput" not in cap:
            raise RecordError("captureData.endpointInput is missing")
        return self._read(event_id, inference_id, when, cap, _one_line(record))

    def parse_many(self, items: list[Any]) -> list[Parsed | RecordError]:
        """`parse` of each item (a `split_body` result), its RecordError in its place. A body whose records all
        have the plain CSV shape (`_plain_csv`) is read a column at a time; any other goes record by record,
        which is the reference the batch read is held to."""
        fast = self._plain_csv(items)
        if fast is not None:
            return fast
        out: list[Parsed | RecordError] = []
        for item in items:
            if isinstance(item, RecordError):
                out.append(item)
                continue
            try:
                out.append(self.parse(item))
            except RecordError as exc:
                out.append(exc)
        return out

    def _plain_csv(self, items: list[Any]) -> list[Parsed | RecordError] | None:
        """Records that all decode into the usual shape with valid ids and times and plain one-line CSV payloads
        (no quotes or line breaks; the feature count right; an output, when the schema has one, in CSV too), read
        with one list pass per field and per column instead of a dozen calls per record (5 -> ~1.5 us a record).
        None as soon as any record is not like that: `parse` then reads each, and says what is wrong."""
        if not items or not all(type(i) is msgspec.Raw for i in items):
            return None
        try:
            recs = [_RECORD.decode(i) for i in items]
            metas = [r.eventMetadata for r in recs]
            times = [self._when(m.inferenceTime) for m in metas]
        except (msgspec.DecodeError, RecordError):
            return None
        event_ids = [m.eventId for m in metas]
        inference_ids = [m.inferenceId for m in metas]
        if not all(0 < len(e) <= 128 for e in event_ids) or not all(
                i is None or 0 < len(i) <= 64 for i in inference_ids):
            return None
        parts = [r.captureData.endpointInput for r in recs]
        fields = _plain_fields(parts, len(self.names))
        if fields is None:
            return None
        columns = [_csv_column(col, conv) for col, (_, conv) in zip(zip(*fields, strict=True), self.csv_features,
                                                                        strict=True)]
        keys = list(self.names)
        if self.outputs:
            outs = [r.captureData.endpointOutput for r in recs]
            if any(o is msgspec.UNSET for o in outs):
                return None
            out_fields = _plain_fields(cast(list[_Part], outs), None)
            if out_fields is None:
                return None
            for o in self.outputs:
                at = o.csv_index
                picked = [f[at] if at < len(f) else None for f in out_fields]
                columns.append(_csv_column(picked, _csv_text if o.type == "String" else _csv_number))
                keys.append(o.name)
        lines = [bytes(i) for i in items]
        joined = b"".join(lines)
        if b"\n" in joined or b"\r" in joined:   # pretty-printed: `parse` makes each one line
            return None
        return [Parsed(e, i, t, dict(zip(keys, row, strict=True)), line)
                for e, i, t, row, line in zip(event_ids, inference_ids, times, zip(*columns, strict=True), lines,
                                                     strict=True)]

    def _read(self, event_id: str, inference_id: str | None, when: dt.datetime, cap: dict[str, Any] | _CaptureData,
              line: bytes) -> Parsed:
        """The row of a record whose metadata was read (its capture data a dict or `_CaptureData`)."""
        inp = _part(cap, "endpointInput")
        if inp is None:   # both callers checked it already
            raise RecordError("captureData.endpointInput is missing")
        data, enc = inp
        row = self._inputs(data, enc)
        out = _part(cap, "endpointOutput") if self.outputs else None
        if out is not None:
            self._outputs(row, enc, *out)
        return Parsed(event_id, inference_id, when, row, line)

    def _inputs(self, data: str, enc: str) -> dict[str, str | float | None]:
        names = self.names
        if enc == "CSV":
            values = _csv_fields(data)
            if len(values) != len(names):
                raise RecordError(f"schema mismatch: input has {len(values)} CSV values, the endpoint schema has "
                                  f"{len(names)} features")
            return {n: conv(v) for (n, conv), v in zip(self.csv_features, values, strict=True)}
        obj = payload_json(data, "captureData.endpointInput.data")
        if isinstance(obj, list):
            if len(obj) != len(names):
                raise RecordError(f"schema mismatch: input list has {len(obj)} values, the schema has {len(names)}")
            return {n: _typed(v, t) for (n, t), v in zip(self.features, obj, strict=True)}
        if isinstance(obj, dict):
            flat = _flatten(obj, self.schema.flatten_separator)
            if not any(n in flat for n in names):
                raise RecordError(f"schema mismatch: none of the features {names[:5]} is in the JSON input")
            return {n: _typed(flat.get(n), t) for n, t in self.features}
        raise RecordError("JSON input must be an object or a list")

    def _outputs(self, row: dict[str, str | float | None], enc: str, out_data: str, out_enc: str) -> None:
        if out_enc != enc:
            raise RecordError(f"encoding mismatch: input is {enc}, output is {out_enc}; use the same encoding "
                              "for both (as SageMaker's analyzer requires)")
        if out_enc == "CSV":
            vals = _csv_fields(out_data)
            for o in self.outputs:
                row[o.name] = _typed(vals[o.csv_index], o.type) if o.csv_index < len(vals) else None
            return
        out_obj = payload_json(out_data, "captureData.endpointOutput.data")
        flat = _flatten(out_obj, self.schema.flatten_separator) if isinstance(out_obj, dict | list) else {"": out_obj}
        for o in self.outputs:
            key = o.json_key if o.json_key is not None else (o.name if o.name in flat else "")
            row[o.name] = _typed(flat.get(key), o.type)


def _plain_fields(parts: list[_Part], count: int | None) -> list[list[str]] | None:
    """Each part's fields (`_plain_split`) when every part is spelled CSV and plain and has ``count`` fields (any
    number: None); else None."""
    if not all(p.encoding == "CSV" for p in parts):
        return None
    fields = [_plain_split(p.data) for p in parts]
    if None in fields or (count is not None and not all(len(f) == count for f in cast(list[list[str]], fields))):
        return None
    return cast(list[list[str]], fields)


def _csv_column(values: Sequence[str | None], conv: Callable[[str], str | float | None]) -> list[str | float | None]:
    """``conv`` of each value (None stays None: an output field the line does not have). A numeric column whose
    values all read as numbers converts in one C-level pass: ``float`` is what `_csv_number` tries first."""
    if conv is _csv_number and None not in values:
        try:
            return list(map(float, cast(list[str], values)))
        except ValueError:
            pass
    return [None if v is None else conv(v) for v in values]


def _part(cap: dict[str, Any] | _CaptureData, key: str) -> tuple[str, str] | None:
    """Capture data's ``key`` part as payload text and encoding (`_decoded`), or None when the record has none."""
    where = f"captureData.{key}"
    if isinstance(cap, _CaptureData):
        part = getattr(cap, key)
        return None if part is msgspec.UNSET else _decoded(part.data, part.encoding, part.observedContentType, where)
    return _decode(cap[key], where) if key in cap else None


def _one_line(record: dict[str, Any]) -> bytes:
    """A parsed record as one line of JSON. pydantic-core's encoder: 3x faster than json's per record; records
    passed the input policy (no NaN or Infinity, integers within 64 bits), so both write the same JSON, non-ASCII
    text kept as UTF-8 as SageMaker's. It stops at 255 levels, which MLGOV_MAX_JSON_DEPTH (up to 512) allows."""
    try:
        return pydantic_core.to_json(record)
    except pydantic_core.PydanticSerializationError:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def _check_ids(event_id: Any, inference_id: Any) -> tuple[str, str | None]:
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        raise RecordError("eventMetadata.eventId must be a non-empty string of at most 128 characters")
    if inference_id is not None and (not isinstance(inference_id, str) or not 1 <= len(inference_id) <= 64):
        raise RecordError("eventMetadata.inferenceId must be 1-64 characters")
    return event_id, inference_id


def parse(record: Any, schema: CaptureSchema) -> Parsed:
    """One record against ``schema`` (many records: build one `Reader`)."""
    return Reader(schema).parse(record)


_JSON_KIND = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def split_body(body: bytes, content_type: str, *, parsed: Any = inputs.NOT_PARSED, raw: bool = False) -> list[Any]:
    """A JSON array or JSON Lines (one record per line); a broken line is returned as an error marker.

    Records pass the kernel's input policy (depth, NaN/Infinity, NUL, 64-bit integers): a whole-array body that
    breaks it is refused (400 when it is not JSON, 422 naming the path), a JSON Lines record is rejected alone.
    ``parsed`` is what the request guard's `inputs.screen` returned for the body, if it screened it. ``raw``: the
    records of a clean body are returned as their JSON text (msgspec.Raw, for `Reader.parse`), not parsed.
    """
    content_type = content_type.lower()
    if "ndjson" in content_type or "jsonl" in content_type or "jsonlines" in content_type:
        lines = [(n, line) for n, line in enumerate(body.splitlines(), 1) if line.strip()]
        if raw and (parsed is inputs.CLEAN_LINES or (parsed is inputs.NOT_PARSED and inputs.clean_lines(body))):
            try:   # the whole body was found clean: each line then needs only its syntax checked
                return [inputs.well_formed(line, f"line {n}") for n, line in lines]
            except MalformedJSON:
                pass   # a broken line may have hidden another's values from the whole-body check: each alone
        items: list[Any] = []
        for n, line in lines:
            try:
                items.append(inputs.loads(line, f"line {n}"))
            except DomainError as exc:
                items.append(RecordError(exc.detail))
        return items
    try:
        if parsed is inputs.NOT_PARSED or parsed is inputs.CLEAN_LINES:   # not screened as one document
            parsed = inputs.screen(body, "body")
        obj = inputs.loads(body, "body") if parsed is inputs.NOT_PARSED else parsed   # an empty body: refused
    except MalformedJSON as exc:
        raise MalformedJSON(f"{exc.detail}; send a JSON array of records or JSON Lines with Content-Type: "
                                   "application/x-ndjson", fix=exc.fix) from None
    if obj is inputs.CLEAN:
        if raw:
            try:
                return _RECORDS.decode(body.removeprefix(inputs.BOM))   # screened well-formed
            except (msgspec.ValidationError, RecursionError):   # not an array (said below), or deeper than
                pass                                              # msgspec goes (MLGOV_MAX_JSON_DEPTH allows it)
        obj = inputs.document(body, obj)
    if not isinstance(obj, list):
        raise RecordError(f"body must be a JSON array of capture records, or JSON Lines sent with Content-Type: "
                          f"application/x-ndjson (this one is a JSON {_JSON_KIND.get(type(obj), 'value')} sent as "
                          f"{content_type or 'no Content-Type'})")
    return obj
