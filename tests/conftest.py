"""Fixtures: every API test runs on SQLite and on PostgreSQL, schema built by Alembic, rolled back after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from mlgov.settings import Settings
from tests.infra import Seaweed, TransactionalDatabase, fresh_database, upgrade

BACKENDS = ["sqlite", "postgres"]
# One audit key for every app and direct session in the test process (apps and fixtures share databases).
os.environ.setdefault("MLGOV_AUDIT_KEY", "test-audit-key-" + "0" * 32)


@pytest.fixture(scope="session", params=BACKENDS)
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated database per backend for the whole run."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        db = Database(url)
        yield db
        db.dispose()


@pytest.fixture(params=BACKENDS)
def live_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated, committed database per backend, for tests that serve it from a real server thread or
    process (the rolled-back `db` fixture cannot be shared across connections)."""
    with fresh_database(request.param, tmp_path) as url:
        upgrade(url)
        db = Database(url)
        yield db
        db.dispose()


@pytest.fixture
def db(migrated: Database) -> Iterator[TransactionalDatabase]:
    tdb = TransactionalDatabase(migrated)
    yield tdb
    tdb.close()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": tmp_path / ".mlgov", "background_workers": False, "scheduler": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings, db: TransactionalDatabase) -> Any:
    return create_app(settings, db=db)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


class Keys:
    """API keys per role (plus a second approver/publisher for four-eyes tests)."""

    def __init__(self, db: Database) -> None:
        self.plain: dict[str, str] = {}
        with db.session_scope() as s:
            for name, role in [("admin", "admin"), ("approver", "approver"), ("approver2", "approver"),
                               ("publisher", "publisher"), ("publisher2", "publisher"), ("viewer", "viewer"),
                               ("ingest", "ingest")]:
                _, self.plain[name] = auth.create_key(s, f"test-{name}", role, actor="test")

    def __call__(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[name]}"}


@pytest.fixture
def keys(db: TransactionalDatabase) -> Keys:
    return Keys(db)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    sw = Seaweed(tmp_path_factory.mktemp("seaweed"))
    sw.start()
    yield sw
    sw.stop()
