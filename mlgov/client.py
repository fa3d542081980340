"""The Python SDK: ``Client`` has a typed method for every route of the API.

Composition root: the kernel's transport and methods (``mlgov.sdk``) joined with each domain's (``registry.client``,
``monitor.client``, ``clarify.client``, ``lineage.client``), as ``mlgov.app`` joins their routers.

    from mlgov.client import Client
    with Client("http://127.0.0.1:8000", api_key) as c:      # or MLGOV_URL / MLGOV_API_KEY
        for v in c.list_versions("churn", status="Approved"):
            print(v.version, v.metrics)

Errors raise ``ApiError`` subclasses carrying the problem+json ``status``, ``title``, ``detail`` and ``fix``.
"""

from __future__ import annotations

from clarify.client import ClarifyClient
from clarify.schemas import ClarifyAnalysis
from lineage.client import LineageClient
from mlgov.sdk import (
    UNSET,
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    KernelClient,
    NotFound,
    Pager,
    Route,
    ServerError,
    Unauthorized,
    Unavailable,
)
from monitor.client import MonitorClient, capture_records, ground_truth_records
from registry.client import RegistryClient


class Client(KernelClient, RegistryClient, MonitorClient, ClarifyClient, LineageClient):
    """Every route of the mlgov API as a method returning the server's own response models."""


__all__ = ["UNSET", "ApiError", "ClarifyAnalysis", "Client", "Conflict", "Forbidden", "InvalidInput", "NotFound",
           "Pager", "Route", "ServerError", "Unauthorized", "Unavailable", "capture_records", "ground_truth_records"]
