"""Imports every module that defines tables, so Base.metadata is complete (migrations, schema checks)."""

from __future__ import annotations

import importlib

TABLE_MODULES = ("mlgov.auth", "mlgov.audit", "mlgov.events", "mlgov.aws", "mlgov.workers", "registry.orm",
                 "lineage.orm", "monitor.orm", "console.orm")


def load_all_models() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)
