"""Typed Python client over the HTTP API. Errors raise ``ApiError`` carrying the problem+json body."""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Any

import httpx

JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, problem: JSON) -> None:
        super().__init__(f"{status}: {problem.get('detail', problem)}")
        self.status, self.problem = status, problem


def _iso(value: dt.datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _req(self, method: str, path: str, **kw: Any) -> Any:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {"detail": r.text}
            raise ApiError(r.status_code, body)
        if r.status_code == 204:
            return None
        if r.headers.get("content-type", "").startswith("text/html"):
            return r.text
        return r.json()

    # health
    def health(self) -> JSON:
        return dict(self._req("GET", "/healthz"))

    def ready(self) -> JSON:
        return dict(self._req("GET", "/readyz"))

    # keys
    def list_keys(self) -> list[JSON]:
        return list(self._req("GET", "/api/v1/keys"))

    def create_key(self, name: str, role: str, owner: str | None = None) -> JSON:
        body = {"name": name, "role": role, **({"owner": owner} if owner else {})}
        return dict(self._req("POST", "/api/v1/keys", json=body))

    def revoke_key(self, name: str) -> None:
        self._req("DELETE", f"/api/v1/keys/{name}")

    # model groups
    def create_model_group(self, name: str, description: str | None = None, tags: dict[str, str] | None = None,
                           stage_config: JSON | None = None) -> JSON:
        body = _clean({"name": name, "description": description, "tags": tags, "stage_config": stage_config})
        return dict(self._req("POST", "/api/v1/model-groups", json=body))

    def list_model_groups(self, name_contains: str | None = None, tags: dict[str, str] | None = None,
                          sort: str = "name", limit: int = 50, offset: int = 0) -> JSON:
        params: dict[str, Any] = _clean({"name_contains": name_contains, "sort": sort, "limit": limit,
                                         "offset": offset})
        if tags:
            params["tag"] = [f"{k}={v}" for k, v in tags.items()]
        return dict(self._req("GET", "/api/v1/model-groups", params=params))

    def get_model_group(self, name: str) -> JSON:
        return dict(self._req("GET", f"/api/v1/model-groups/{name}"))

    def update_model_group(self, name: str, **fields: Any) -> JSON:
        return dict(self._req("PATCH", f"/api/v1/model-groups/{name}", json=fields))

    # versions
    def register_version(self, group: str, artifact_uri: str, artifact_sha256: str, **fields: Any) -> JSON:
        body = {"artifact_uri": artifact_uri, "artifact_sha256": artifact_sha256, **fields}
        return dict(self._req("POST", f"/api/v1/model-groups/{group}/versions", json=body))

    def get_version(self, group: str, version: int) -> JSON:
        return dict(self._req("GET", f"/api/v1/model-groups/{group}/versions/{version}"))

    def latest_version(self, group: str, status: str | None = None) -> JSON:
        path = f"/api/v1/model-groups/{group}/versions/latest"
        return dict(self._req("GET", path, params=_clean({"status": status})))

    def list_versions(self, group: str, status: str | None = None, stage: str | None = None,
                      created_after: dt.datetime | str | None = None, created_before: dt.datetime | str | None = None,
                      metadata: dict[str, str] | None = None, sort: str = "-version", limit: int = 50,
                      offset: int = 0) -> JSON:
        params: dict[str, Any] = _clean({"status": status, "stage": stage, "created_after": _iso(created_after),
                                         "created_before": _iso(created_before), "sort": sort, "limit": limit,
                                         "offset": offset})
        if metadata:
            params["metadata"] = [f"{k}={v}" for k, v in metadata.items()]
        return dict(self._req("GET", f"/api/v1/model-groups/{group}/versions", params=params))

    def decide(self, group: str, version: int, status: str, comment: str, expected_status: str | None = None) -> JSON:
        body = _clean({"status": status, "comment": comment, "expected_status": expected_status})
        return dict(self._req("POST", f"/api/v1/model-groups/{group}/versions/{version}/approval", json=body))

    def approve(self, group: str, version: int, comment: str) -> JSON:
        return self.decide(group, version, "Approved", comment)

    def reject(self, group: str, version: int, comment: str) -> JSON:
        return self.decide(group, version, "Rejected", comment)

    def approvals(self, group: str, version: int) -> list[JSON]:
        return list(self._req("GET", f"/api/v1/model-groups/{group}/versions/{version}/approvals"))

    def move_stage(self, group: str, version: int, stage: str, comment: str | None = None,
                   expected_stage: str | None = None) -> JSON:
        body = _clean({"stage": stage, "comment": comment, "expected_stage": expected_stage})
        return dict(self._req("POST", f"/api/v1/model-groups/{group}/versions/{version}/stage", json=body))

    def stage_history(self, group: str, version: int | None = None) -> list[JSON]:
        return list(self._req("GET", f"/api/v1/model-groups/{group}/stage-history",
                              params=_clean({"version": version})))

    def stage_occupants(self, group: str, stage: str, at: dt.datetime | str | None = None) -> JSON:
        return dict(self._req("GET", f"/api/v1/model-groups/{group}/stages/{stage}", params=_clean({"at": _iso(at)})))

    # audit
    def audit_events(self, **filters: Any) -> JSON:
        params = _clean({("from" if k == "since" else "to" if k == "until" else k): _iso(v) if isinstance(
            v, dt.datetime) else v for k, v in filters.items()})
        return dict(self._req("GET", "/api/v1/audit/events", params=params))

    def audit_verify(self) -> JSON:
        return dict(self._req("GET", "/api/v1/audit/verify"))

    def audit_checkpoint(self) -> JSON:
        """Admin: sign the chain's head and write it to the server's object store."""
        return dict(self._req("POST", "/api/v1/audit/checkpoint"))

    def audit_report(self, model_group: str, since: dt.datetime | str | None = None,
                     until: dt.datetime | str | None = None, format: str = "json") -> Any:
        params = _clean({"model_group": model_group, "from": _iso(since), "to": _iso(until), "format": format})
        return self._req("GET", "/api/v1/audit/report", params=params)

    # webhooks
    def create_webhook(self, url: str, secret: str, events: list[str], description: str | None = None) -> JSON:
        body = _clean({"url": url, "secret": secret, "events": events, "description": description})
        return dict(self._req("POST", "/api/v1/webhooks", json=body))

    def list_webhooks(self) -> list[JSON]:
        return list(self._req("GET", "/api/v1/webhooks"))

    def get_webhook(self, webhook_id: str) -> JSON:
        return dict(self._req("GET", f"/api/v1/webhooks/{webhook_id}"))

    def delete_webhook(self, webhook_id: str) -> None:
        self._req("DELETE", f"/api/v1/webhooks/{webhook_id}")

    def webhook_deliveries(self, webhook_id: str, limit: int = 100, offset: int = 0) -> list[JSON]:
        return list(self._req("GET", f"/api/v1/webhooks/{webhook_id}/deliveries",
                              params={"limit": limit, "offset": offset}))

    def retry_delivery(self, webhook_id: str, delivery_id: str) -> JSON:
        """Redeliver a dead-lettered delivery (admin)."""
        return dict(self._req("POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"))
