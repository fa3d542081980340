"""Imports every module that defines tables, so Base.metadata is complete (migrations, schema checks)."""

from __future__ import annotations


def load_all_models() -> None:
    import registry.orm  # noqa: F401
