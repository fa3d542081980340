"""A model reachable through a predict URL, called under the outbound policy.

Kept out of ``clarify/metrics`` (pure computation, no HTTP). Rows go out as CSV; scores come back as JSON
(``{"predictions": [...]}`` or a list) or one number per line. Errors say what failed (status, timeout,
shape) and never repeat the reply: a predict URL pointed at an internal service must not turn mlgov into a
reader of that service's answers.
"""

from __future__ import annotations

import json

import numpy as np

from mlgov.outbound import OutboundPolicy, RemoteCallFailed, safe_url

FIX = ("make the predict URL answer {\"predictions\": [one number per row]} (or a JSON list, or one number per "
       "line) with HTTP 200 for CSV rows posted to it")


class RemoteModel:
    """Predictions of the model behind ``url``; the URL is checked when built and at every call."""

    def __init__(self, url: str, policy: OutboundPolicy) -> None:
        policy.check_url(url, "predict URL")
        self.url, self.policy = url, policy

    @property
    def source(self) -> dict[str, str]:
        """What an explanation computed through this model records as its origin."""
        return {"kind": "predict_url", "predict_url": safe_url(self.url)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        rows = np.asarray(x)
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()
        where = f"the predict URL {safe_url(self.url)}"
        r = self.policy.post(self.url, body, {"Content-Type": "text/csv", "User-Agent": "mlgov-clarify/1"},
                             purpose="predict URL")
        if not 200 <= r.status_code < 300:
            raise RemoteCallFailed(f"{where} answered HTTP {r.status_code}", fix=FIX, status_code=r.status_code)
        try:
            if r.headers.get("content-type", "").startswith("application/json"):
                data = json.loads(r.content)
                values = data["predictions"] if isinstance(data, dict) else data
            else:
                values = r.content.decode("utf-8").split()
            out = np.asarray(values, dtype=float)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise RemoteCallFailed(f"{where} answered something that is not a list of numbers", fix=FIX) from None
        if out.ndim == 2 and out.shape[0] == len(rows):
            out = out[:, -1]
        if out.ndim != 1 or len(out) != len(rows):
            raise RemoteCallFailed(f"{where} answered {out.size} values for {len(rows)} rows", fix=FIX)
        if not np.all(np.isfinite(out)):
            raise RemoteCallFailed(f"{where} answered values that are not finite numbers (NaN or infinity)", fix=FIX)
        return out
