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


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_0010_classifies_existing_keys_and_lineage(kind, tmp_path):
    """Keys get owner = name; lineage rows mlgov recorded become protected evidence, user rows stay the user's."""
    import datetime as dt

    from sqlalchemy import text

    from tests.infra import upgrade

    now = dt.datetime(2026, 1, 1)
    with fresh_database(kind, tmp_path) as url:
        upgrade(url, "0009")
        engine = make_engine(url, pooled=False)
        ents = [("e1", "action", "Approval", "approval:v:1"), ("e2", "action", "Processing", "api:x"),
                ("e3", "artifact", "Model", "s3://m#aa"), ("e4", "artifact", "Dataset", "s3://d#"),
                ("e5", "action", "TrainingJob", "training-job:t"), ("e6", "artifact", "Dataset", "s3://u#"),
                ("e7", "context", "ModelGroup", "model-group:g")]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO auth_api_keys (id, key_id, name, role, key_hash, created_at, active) "
                              "VALUES ('k1', 'abc', 'alice-ci', 'publisher', :h, :t, :a)"),
                         {"h": "0" * 64, "t": now, "a": True})
            for eid, k, t, ident in ents:
                conn.execute(text("INSERT INTO lineage_entities (id, kind, type, identity, properties, created_by, "
                                  "created_at, updated_at) VALUES (:id, :k, :t, :i, '{}', 'alice-ci', :n, :n)"),
                             {"id": eid, "k": k, "t": t, "i": ident, "n": now})
            for eid, src, dst in [("x1", "e3", "e1"), ("x2", "e4", "e5"), ("x3", "e6", "e2"), ("x4", "e5", "e3")]:
                conn.execute(text("INSERT INTO lineage_edges (id, source_id, target_id, type, properties, "
                                  "created_by, created_at) VALUES (:id, :s, :d, 'AssociatedWith', '{}', 'alice-ci', "
                                  ":n)"), {"id": eid, "s": src, "d": dst, "n": now})
        upgrade(url)
        with engine.connect() as conn:
            key = conn.execute(text("SELECT owner, created_by FROM auth_api_keys")).one()
            assert tuple(key) == ("alice-ci", "(before 0010)")
            system = {r[0]: bool(r[1]) for r in conn.execute(text("SELECT id, system FROM lineage_entities"))}
            assert system == {"e1": True, "e2": False, "e3": True, "e4": True, "e5": True, "e6": False, "e7": True}
            edges = {r[0]: bool(r[1]) for r in conn.execute(text("SELECT id, system FROM lineage_edges"))}
            assert edges == {"x1": True, "x2": True, "x3": False, "x4": True}
            owners = set(conn.execute(text("SELECT creator_owner FROM lineage_entities")).scalars())
            assert owners == {"alice-ci"}
        engine.dispose()
