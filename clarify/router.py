"""Clarify HTTP routes."""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Request, Response

from clarify.metrics.analysis import ConfigError, analyze
from mlgov import audit
from mlgov.auth import DECIDERS, PUBLISHERS, Principal, SessionDep, require
from mlgov.db import new_id
from mlgov.errors import Invalid

router = APIRouter(prefix="/api/v1/clarify", tags=["clarify"])
Analyst = Annotated[Principal, Depends(require(PUBLISHERS, DECIDERS))]


async def _parts(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise Invalid("send multipart/form-data with a `file` (CSV with header) and a `config` "
                      "(SageMaker analysis_config.json)",
                      fix="e.g. curl -F file=@data.csv -F config=@analysis_config.json")
    form = await request.form()
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        out[key] = await value.read() if hasattr(value, "read") else value.encode() if isinstance(value, str) else value
    return out


@router.post("/bias", response_model=None)
def bias_analysis(p: Analyst, session: SessionDep, request: Request,
                  parts: Annotated[dict[str, Any], Depends(_parts)]) -> Response:
    """SageMaker Clarify pre-/post-training bias: returns analysis.json (and stores it)."""
    if "file" not in parts or "config" not in parts:
        raise Invalid("both a `file` part and a `config` part are required",
                      fix="send the dataset as `file` and analysis_config.json as `config`")
    try:
        cfg = json.loads(parts["config"])
    except ValueError as exc:
        raise Invalid(f"config is not valid JSON: {exc}", fix="send SageMaker's analysis_config.json") from None
    if not isinstance(cfg, dict):
        raise Invalid("config must be a JSON object", fix="send SageMaker's analysis_config.json")
    try:
        headers = cfg.get("headers")
        df = pd.read_csv(io.BytesIO(parts["file"]), header=None if headers else "infer")
        if headers:
            if len(headers) != df.shape[1]:
                raise ConfigError(f"headers lists {len(headers)} names for {df.shape[1]} columns")
            df.columns = headers
        if df.empty:
            raise ConfigError("the dataset has no rows")
        result = analyze(df, cfg)
    except ConfigError as exc:
        raise Invalid(f"analysis config: {exc}", fix="check analysis_config.json against the dataset") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise Invalid(f"the dataset is not a readable CSV: {exc}", fix="upload a CSV with a header row") from None
    aid = new_id()
    body = json.dumps(result).encode()   # Infinity stays Infinity, as Clarify's Python writer emits it
    request.app.state.get_store().put(f"clarify/{aid}/analysis.json", body, "application/json")
    audit.record(session, actor=p.name, action="clarify.bias_analysis", subject_type="clarify_analysis",
                 subject_id=aid, after={"rows": int(df.shape[0]), "facets": [f["name_or_index"] for f in cfg["facet"]]})
    return Response(body, media_type="application/json", headers={"X-Mlgov-Analysis-Id": aid})
