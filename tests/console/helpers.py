"""Data the console tests put in place through the public API (the same doors every client uses)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


def register(api: httpx.Client, group: str, *, description: str | None = None, metrics: dict[str, float] | None = None,
             **fields: Any) -> dict[str, Any]:
    """A group (created if new) and a new version of it registered by ``api``'s key."""
    r = api.get(f"/api/v1/model-groups/{group}")
    if r.status_code == 404:
        r = api.post("/api/v1/model-groups", json={"name": group, "description": description})
        assert r.status_code == 201, r.text
    body = {"artifact_uri": f"s3://models/{group}/{fields.get('n', 1)}/model.skops",
            "artifact_sha256": hashlib.sha256(f"{group}{fields.pop('n', 1)}".encode()).hexdigest(),
            "metrics": metrics or {"auc": 0.9}, "description": description, **fields}
    r = api.post(f"/api/v1/model-groups/{group}/versions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def approve(api: httpx.Client, group: str, number: int, comment: str = "ok") -> None:
    r = api.post(f"/api/v1/model-groups/{group}/versions/{number}/approval",
                 json={"status": "Approved", "comment": comment})
    assert r.status_code == 200, r.text
