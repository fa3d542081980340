"""The OpenAPI document: what FastAPI cannot infer from the routes is added here, once, for every operation.

Routes declare only their own shape (models, and `openapi_extra` where a route reads its body itself). This
module adds what is common to all of them: the bearer security scheme on every operation that authenticates
(so `/docs` has an Authorize button and clients know which calls need a key), and the problem+json error
responses each operation can answer, all sharing one `Problem` schema. The status set follows from how the
kernel answers (see `mlgov/errors.py`), so a new route is documented correctly without touching it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel

from mlgov.errors import PROBLEM

SCHEME = "bearer"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details: what was wrong (`detail`) and how to fix it (`fix`).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "always about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what was wrong"},
        "fix": {"type": "string", "description": "how to fix it"},
        "errors": {
            "type": "array",
            "description": "every invalid field (422 on a request that does not match its schema)",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                               "type": {"type": "string", "description": "the validator's error code, where one "
                                        "applies (request-schema errors)"}},
            },
        },
    },
    "additionalProperties": True,
}

_WHY = {
    400: "Malformed request body (e.g. JSON that does not parse).",
    401: "No API key, or an unknown, revoked or malformed one.",
    403: "The key's role may not make this call, or a governance rule forbids it.",
    404: "A resource named by the path or the body does not exist.",
    409: "The request conflicts with the current state (duplicate name, stale status, …).",
    413: "The request body is larger than MLGOV_MAX_BODY_BYTES.",
    422: "The request is well-formed but invalid; `errors` lists each field when the schema rejected it.",
    503: "The service is not ready or overloaded; retry after the Retry-After delay when one is given.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}},
}


def _dependants(dep: Dependant) -> Iterator[Dependant]:
    yield dep
    for sub in dep.dependencies:
        yield from _dependants(sub)


def authenticates(route: RouteContext) -> bool:
    """Whether the route depends on `mlgov.auth.require` (whose dependency carries the allowed `roles`)."""
    return any(getattr(d.call, "roles", None) is not None for d in _dependants(route.dependant))


def error_statuses(method: str, operation: dict[str, Any], protected: bool) -> list[int]:
    """Every error status the kernel can answer for this operation."""
    has_body = "requestBody" in operation
    has_params = bool(operation.get("parameters")) or has_body
    out = []
    if has_body:
        out += [400, 413]
    if protected:
        out += [401, 403]
    if has_params:
        out += [404, 422]   # services raise NotFound/Invalid on ids and values the schema cannot check
    if method in ("post", "put", "patch", "delete"):
        out.append(409)
    out.append(503)
    return sorted(out)


def _problem_response(status: int) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "description": _WHY[status],
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in _HEADERS:
        resp["headers"] = _HEADERS[status]
    return resp


def complete(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Add the security scheme, the Problem schema and each operation's error responses to `schema`."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "an mlgov API key (`mlgov_<id>_<secret>`), created with `mlgov keys create`",
    }
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        protected = authenticates(route)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if protected:
                operation["security"] = [{SCHEME: []}]
            responses = operation.setdefault("responses", {})
            for status in error_statuses(method.lower(), operation, protected):
                responses[str(status)] = _problem_response(status)   # replaces FastAPI's HTTPValidationError
    _hoist_defs(schema, schemas)
    _no_nul(schemas)
    for item in schema["paths"].values():
        for op in item.values():
            _no_nul(op.get("requestBody", {}))
            _no_nul([p.get("schema", {}) for p in op.get("parameters", [])])   # guard_params refuses NUL there too
    _expand_enum_paths(schema)
    if "#/components/schemas/HTTPValidationError" not in json.dumps(schema["paths"]):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return schema


def _expand_enum_paths(schema: dict[str, Any]) -> None:
    """Give each value of an enum path parameter its own path (`/baselines/{id}/{name}` with name ∈ {…,
    constraints.json} → `/baselines/{id}/constraints.json`), so one concrete resource has one path item listing
    every method it allows, as its 405 `Allow` header does; otherwise a GET documented under the template and a
    PUT under the literal path look like two resources."""
    paths: dict[str, Any] = schema["paths"]
    for template in [t for t in paths if "{" in t]:
        item = paths[template]
        for method, op in list(item.items()):
            enum_param = next((p for p in op.get("parameters", []) if p.get("in") == "path"
                               and "enum" in p.get("schema", {}) and f"{{{p['name']}}}" in template), None)
            if enum_param is None:
                continue
            for value in enum_param["schema"]["enum"]:
                concrete = paths.setdefault(template.replace(f"{{{enum_param['name']}}}", str(value)), {})
                if method in concrete:
                    continue   # a route of its own already serves this method on the literal path
                copy = json.loads(json.dumps(op))
                copy["parameters"] = [p for p in copy["parameters"] if p != enum_param]
                if "operationId" in copy:
                    copy["operationId"] += "_" + "".join(c if c.isalnum() else "_" for c in str(value))
                concrete[method] = copy
            del item[method]
        if not item:
            del paths[template]


NO_NUL = "^[^\\u0000]*$"


def _no_nul(node: Any) -> None:
    """State what the input policy enforces on every stored string: no NUL character (PostgreSQL cannot store
    it; `mlgov.inputs` answers 422), in text values, parameters and the keys of free-form objects. Strings that are
    uploads (`format: binary`) or already carry a pattern or a fixed set of values are left as they are."""
    if isinstance(node, dict):
        types = node.get("type")
        if (types == "string" or (isinstance(types, list) and "string" in types)) and not (
                {"pattern", "enum", "const", "format"} & set(node)):
            node["pattern"] = NO_NUL
        if types == "object" and node.get("additionalProperties", True) is not False:
            names = node.setdefault("propertyNames", {})
            if not {"pattern", "enum", "const", "format"} & set(names):
                names["pattern"] = NO_NUL
        for value in node.values():
            _no_nul(value)
    elif isinstance(node, list):
        for value in node:
            _no_nul(value)


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> None:
    """Move `$defs` of schemas declared through `openapi_extra` (pydantic `model_json_schema`) into components."""
    if isinstance(node, dict):
        for name, sub in node.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
            _hoist_defs(sub, schemas)
        for value in node.values():
            _hoist_defs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, schemas)


BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON schema for `openapi_extra`, its references pointing into components."""
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def request_body(*, multipart: dict[str, Any] | None = None, json_body: dict[str, Any] | None = None,
                 ndjson: bool = False, description: str | None = None,
                 encoding: dict[str, str] | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its own body (uploads through `mlgov.api.form_parts`, raw JSON):
    FastAPI sees no body parameter there, so the route states the media types and schemas it accepts."""
    content: dict[str, Any] = {}
    if multipart is not None:
        content["multipart/form-data"] = {"schema": multipart}
        if encoding:   # parts sent with their own media type, e.g. a JSON document
            content["multipart/form-data"]["encoding"] = {k: {"contentType": v} for k, v in encoding.items()}
    if json_body is not None:
        content["application/json"] = {"schema": json_body}
    if ndjson:
        content["application/x-ndjson"] = {"schema": {"type": "string", "description": "one JSON record per line"}}
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return {"requestBody": body}


def alternatives(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose 200 may also be another media type (HTML report, text export)."""
    return {200: {"content": {m: {"schema": {"type": "string"}} for m in media_types}}}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with one that builds FastAPI's document and completes it (cached like FastAPI's)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            base = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                               description=app.description, routes=app.routes)
            app.openapi_schema = complete(base, app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
