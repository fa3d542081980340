"""Migrations: upgrade → downgrade → upgrade on both backends; the models equal the migrated schema."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mlgov.db import Base, Database, SchemaNotAtHead, alembic_config, check_at_head, make_engine
from mlgov.metadata import load_all_models
from tests.infra import fresh_database


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_downgrade_upgrade_and_no_drift(kind, tmp_path):
    load_all_models()
    with fresh_database(kind, tmp_path) as url:
        cfg = alembic_config(url)
        engine = make_engine(url, pooled=False)
        with pytest.raises(SchemaNotAtHead, match="mlgov db upgrade"):
            check_at_head(engine)
        command.upgrade(cfg, "head")
        check_at_head(engine)
        command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        engine.dispose()


def test_app_refuses_database_not_at_head(tmp_path):
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from tests.conftest import make_settings

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = create_app(make_settings(tmp_path), db=Database(url))
    with pytest.raises(SchemaNotAtHead, match="run `mlgov db upgrade`"), TestClient(app):
        pass
