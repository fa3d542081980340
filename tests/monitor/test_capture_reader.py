"""The capture reader's two paths agree: a record's JSON text decoded into the usual shape (`Reader.parse` on a
msgspec.Raw) gives exactly what reading the parsed dict gives (the reference), for every record: the usual
shape, any field missing, null or mistyped, extra fields, every encoding, text between tokens."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgov import inputs
from monitor import capture

SCHEMA = capture.CaptureSchema.model_validate({
    "features": [{"name": "age", "type": "Integral"}, {"name": "income", "type": "Fractional"},
                 {"name": "state", "type": "String"}],
    "prediction": {"name": "prediction"}, "probability": {"name": "p", "csv_index": 1, "json_key": "p"}})
NO_OUTPUTS = capture.CaptureSchema.model_validate({"features": SCHEMA.model_dump()["features"], "prediction": None})

_RARELY = st.sampled_from([False] * 24 + [True])   # a defect in one field: most records keep the usual shape
_ODD = st.sampled_from([None, 5, 1.5, True, [], {}, "", "x"])
_CSV = st.sampled_from(["30,40.5,CA", "30,40.5", " 1 , 2 ,x", '"a,b",2,3', "", "1,,", "é,2,3"])
_JSON_IN = st.sampled_from(['{"age": 1, "income": 2, "state": "CA"}', "[1, 2, 3]", "[1]", '{"zip": 1}', "5",
                            '{"age": {"x": 1}}', "not json"])
_OUT = st.sampled_from(["0.7", "1,0.3", "", '{"prediction": 1, "p": 0.2}', "[1, 0.2]", "0.5\n0.6"])


@st.composite
def _part(draw: Any, data: Any) -> Any:
    part: dict[str, Any] = {}
    if not draw(_RARELY):
        part["data"] = draw(data)
    else:
        part["data"] = draw(_ODD)
    enc = draw(st.sampled_from([None, 3, "XML"]) if draw(_RARELY) else
               st.sampled_from(["CSV", "JSON", "BASE64", "csv", "Json", "absent"]))
    if enc == "BASE64" and isinstance(part["data"], str):
        part["data"] = draw(st.sampled_from([base64.b64encode(part["data"].encode()).decode(), "!!"]))
    if enc != "absent":
        part["encoding"] = enc
    ctype = draw(st.sampled_from([None, 7]) if draw(_RARELY) else
                 st.sampled_from(["text/csv", "application/json", "absent"]))
    if ctype != "absent":
        part["observedContentType"] = ctype
    if draw(st.booleans()):
        part["mode"] = "INPUT"
    return draw(_ODD) if draw(_RARELY) else part


@st.composite
def _record(draw: Any) -> Any:
    meta: dict[str, Any] = {}
    for key, good in (("eventId", st.sampled_from(["e1", "x" * 128, "é"])),
                      ("inferenceId", st.sampled_from(["i1", "y" * 64])),
                      ("inferenceTime", st.sampled_from(["2026-11-20T10:05:00Z", "2026-11-20T10:05:00+02:00",
                                                         "2026-11-20T10:05:00", "yesterday"]))):
        if draw(_RARELY) or (key == "inferenceId" and draw(st.booleans())):
            continue
        meta[key] = draw(st.sampled_from(["", "z" * 129, None, 1, []])) if draw(_RARELY) else draw(good)
    cap: dict[str, Any] = {}
    if not draw(_RARELY):
        cap["endpointInput"] = draw(_part(st.one_of(_CSV, _JSON_IN)))
    out = draw(st.sampled_from(["part"] * 8 + ["absent", None]))
    if out != "absent":
        cap["endpointOutput"] = out and draw(_part(_OUT))
    rec: dict[str, Any] = {}
    if not draw(_RARELY):
        rec["captureData"] = draw(_ODD) if draw(_RARELY) else cap
    if not draw(_RARELY):
        rec["eventMetadata"] = draw(_ODD) if draw(_RARELY) else meta
    if draw(st.booleans()):
        rec["eventVersion"] = "0"
    if draw(st.booleans()):
        rec["customAttributes"] = {"a": [1, "é"]}
    return draw(_ODD) if draw(_RARELY) else rec


def _read(reader: capture.Reader, item: Any) -> Any:
    try:
        p = reader.parse(item)
    except capture.RecordError as exc:
        return ("rejected", str(exc))
    row = {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in p.row.items()}
    return (p.event_id, p.inference_id, p.inference_time, row, json.loads(p.raw), b"\n" in p.raw)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_record(), min_size=1, max_size=4), st.sampled_from([None, 2, "lines"]), st.booleans(),
       st.booleans(), st.booleans())
def test_a_records_text_reads_as_its_parsed_value(records: list[Any], layout: int | str | None, ascii_only: bool,
                                                  outputs: bool, guarded: bool) -> None:
    """``layout``: a JSON array, compact or indented (text between tokens), or JSON Lines; ``guarded``: the body
    as the request guard screened it, or as an in-process caller passes it (split_body screens it itself)."""
    if layout == "lines":
        ctype = "application/x-ndjson"
        body = b"\n".join(json.dumps(r, ensure_ascii=ascii_only).encode() for r in records)
    else:
        ctype = "application/json"
        body = json.dumps(records, indent=layout, ensure_ascii=ascii_only).encode()
    screened = inputs.screen(body, "body", lines=layout == "lines")
    assert screened is (inputs.CLEAN_LINES if layout == "lines" else inputs.CLEAN)
    texts = capture.split_body(body, ctype, parsed=screened if guarded else inputs.NOT_PARSED, raw=True)
    values = capture.split_body(body, ctype)
    assert all(isinstance(t, msgspec.Raw) for t in texts) and values == records
    schema = SCHEMA if outputs else NO_OUTPUTS
    for text, value in zip(texts, values, strict=True):
        fast, reference = _read(capture.Reader(schema), text), _read(capture.Reader(schema), value)
        assert fast == reference, (text, value)
        if fast[0] != "rejected":
            assert fast[4] == value   # the stored line is the record as sent, on one line
            assert not fast[5]


def test_the_usual_record_takes_the_decoded_path_and_keeps_its_text() -> None:
    rec = {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                             "data": "30,40.5,CA", "encoding": "CSV"},
                           "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "1,0.25",
                                              "encoding": "CSV"}},
           "eventMetadata": {"eventId": "e1", "inferenceId": "i1", "inferenceTime": "2026-11-20T10:05:00Z"},
           "eventVersion": "0", "customAttributes": "é"}
    text = json.dumps(rec, ensure_ascii=False).encode()
    [raw] = capture.split_body(b"[" + text + b"]", "application/json", raw=True)
    p = capture.Reader(SCHEMA).parse(raw)
    assert p.raw == text   # byte for byte as sent
    assert p.row == {"age": 30.0, "income": 40.5, "state": "CA", "prediction": 1.0, "p": 0.25}


def test_records_nested_past_the_fast_parsers_reach_are_stored(monkeypatch: Any) -> None:
    """MLGOV_MAX_JSON_DEPTH may allow up to 512 levels; pydantic-core parses and encodes only 200-255: a record
    nested 300 deep (in a field the reader ignores) is read and stored as one line on every path, not a 500."""
    monkeypatch.setattr(inputs.LIMITS, "max_json_depth", 512)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    rec = {"captureData": {"endpointInput": {"data": "30,40.5,CA", "encoding": "CSV"}},
           "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-20T10:00:00Z"}, "customAttributes": deep}
    for body, ctype in ((json.dumps([rec], indent=1).encode(), "application/json"),
                        (json.dumps([rec]).encode(), "application/json"),
                        (json.dumps(rec).encode(), "application/x-ndjson")):
        for raw in (True, False):
            [item] = capture.split_body(body, ctype, raw=raw)
            p = capture.Reader(NO_OUTPUTS).parse(item)
            assert json.loads(p.raw) == rec and b"\n" not in p.raw
            assert p.row == {"age": 30.0, "income": 40.5, "state": "CA"}


_FIELD = st.sampled_from(["30", "40.5", " 2 ", "-1e5", "1_0", "inf", "NaN", "x", "", "  ", "\xa0", "é", "0x1", "+.5",
                          "9" * 400])


@st.composite
def _plain_record(draw: Any, n: int) -> Any:
    """A record of the plain CSV shape `Reader.parse_many` reads a column at a time, its fields anything a CSV
    line may hold without quotes; now and then one that is not plain (so the whole body goes record by record)."""
    fields = draw(st.lists(_FIELD, min_size=n, max_size=n + 1 if draw(_RARELY) else n))
    data = ",".join(fields)
    if draw(_RARELY):
        data = draw(st.sampled_from(["", " ", '"a",1,2', "1,2\n3", data.lower()]))
    out = ",".join(draw(st.lists(_FIELD, min_size=0 if draw(_RARELY) else 1, max_size=3)))
    rec: dict[str, Any] = {
        "captureData": {"endpointInput": {"data": data, "encoding": "CSV" if not draw(_RARELY) else "csv"},
                        "endpointOutput": {"data": out, "encoding": "CSV"}},
        "eventMetadata": {"eventId": draw(st.sampled_from(["e1", "x" * 128] + (["", "z" * 129] if draw(_RARELY)
                                                                                 else []))),
                          "inferenceTime": draw(st.sampled_from(["2026-11-20T10:05:00Z", "2026-11-20T10:05:00"]
                                                                + (["soon"] if draw(_RARELY) else [])))}}
    if draw(st.booleans()):
        rec["eventMetadata"]["inferenceId"] = draw(st.sampled_from(["i1", "y" * 64, "y" * 65]))
    if draw(_RARELY):
        del rec["captureData"]["endpointOutput"]
    return rec


@settings(max_examples=1500, deadline=None)
@given(st.data(), st.booleans(), st.booleans())
def test_a_bodys_records_read_together_as_each_alone(data: Any, outputs: bool, indented: bool) -> None:
    """`parse_many`'s column-at-a-time read of plain CSV bodies gives, record for record, what `parse` gives
    each record (the dict path, the reference of the test above) and the same rejections."""
    schema = SCHEMA if outputs else NO_OUTPUTS
    records = data.draw(st.lists(_plain_record(len(schema.features)), min_size=0, max_size=6))
    body = json.dumps(records, ensure_ascii=False, indent=2 if indented else None).encode()
    texts = capture.split_body(body, "application/json", raw=True)
    together = capture.Reader(schema).parse_many(texts)
    for item, got in zip(capture.split_body(body, "application/json"), together, strict=True):
        want = _read(capture.Reader(schema), item)
        if isinstance(got, capture.RecordError):
            assert want == ("rejected", str(got))
            continue
        row = {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in got.row.items()}
        assert (got.event_id, got.inference_id, got.inference_time, row, json.loads(got.raw), b"\n" in got.raw) \
            == want


def test_a_plain_csv_body_is_read_a_column_at_a_time(monkeypatch: Any) -> None:
    """The batch read is taken (not silently `parse` on each) for the shape every SageMaker endpoint sends."""
    rec = {"captureData": {"endpointInput": {"data": "30,40.5,CA", "encoding": "CSV"},
                           "endpointOutput": {"data": "1,0.25", "encoding": "CSV"}},
           "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-11-20T10:05:00Z"}}
    body = json.dumps([rec, {**rec, "eventMetadata": {"eventId": "e2", "inferenceTime": "2026-11-20T10:06:00Z"}}])
    reader = capture.Reader(SCHEMA)
    monkeypatch.setattr(reader, "parse", None)   # the batch read must not need it
    got = reader.parse_many(capture.split_body(body.encode(), "application/json", raw=True))
    assert [(p.event_id, p.row) for p in got if isinstance(p, capture.Parsed)] == [
        ("e1", {"age": 30.0, "income": 40.5, "state": "CA", "prediction": 1.0, "p": 0.25}),
        ("e2", {"age": 30.0, "income": 40.5, "state": "CA", "prediction": 1.0, "p": 0.25})]
