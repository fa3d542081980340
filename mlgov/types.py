"""Request field types whose validation matches the JSON Schema they publish.

Pydantic's lax mode reads `true` as 1, `10` as Unix seconds and `"2026-01-01"` as midnight; clients generated
from the OpenAPI document (and fuzzers holding the server to it) rightly expect those to be refused. Plain
`StrictBool`/`StrictFloat` cover booleans and numbers; these cover what pydantic has no strict form for. `Strict`
is the base of every request body: an unknown field is a 422, not silently dropped.
Pure: no kernel imports, so schema modules anywhere can use them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_time(value: Any) -> Any:
    if isinstance(value, int | float):
        raise ValueError("must be an ISO-8601 date and time string, e.g. 2026-11-20T10:00:00Z, not a number")
    if isinstance(value, str) and not _DATE_TIME.match(value.strip()):
        raise ValueError("must be an ISO-8601 date and time, e.g. 2026-11-20T10:00:00Z")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """In UTC, one without an offset taken as UTC: a body mixing the two compared them (a 500) before any
    service's `mlgov.db.as_utc` ran."""
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is outside the years 1-9999 once converted to UTC") from None


Timestamp = Annotated[dt.datetime, BeforeValidator(_iso_time), AfterValidator(_utc)]
"""A request time: ISO-8601 date and time, answered in UTC (one without an offset is read as UTC)."""

Integer = Annotated[int, BeforeValidator(_no_bool)]
"""An integer that is not a boolean (10.0 stays acceptable: JSON Schema counts it as an integer)."""


class Strict(BaseModel):
    """A request body that refuses fields it does not declare."""

    model_config = ConfigDict(extra="forbid")
