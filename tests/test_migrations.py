"""Migrations: upgrade → downgrade → upgrade on both backends; the models equal the migrated schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mlgov.db import Base, Database, SchemaNotAtHead, UTCDateTime, alembic_config, check_at_head, make_engine
from mlgov.metadata import load_all_models
from tests.infra import fresh_database


# SQLite cannot reflect expression indexes (the metadata value prefix index): compared on PostgreSQL only.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
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


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_0014_gives_each_version_its_own_lineage_node(kind, tmp_path):
    """Lineage recorded before 0014 merged versions that share an artifact; the upgrade splits what mlgov recorded
    by the version its records name, and the downgrade folds it back."""
    import datetime as dt

    from sqlalchemy import MetaData, Table, select
    from sqlalchemy.orm import Session

    from lineage import service as lineage
    from lineage.schemas import QueryRequest
    from tests.infra import upgrade

    now = dt.datetime(2026, 1, 1)
    with fresh_database(kind, tmp_path) as url:
        upgrade(url, "0011")
        engine = make_engine(url, pooled=False)
        t = {n: Table(n, MetaData(), autoload_with=engine) for n in (
            "registry_model_groups", "registry_model_versions", "lineage_entities", "lineage_edges",
            "monitor_baselines", "monitor_version_baselines")}
        ents = {  # id: (kind, type, identity, name, properties, system) as registrations before 0014 left them
            "M": ("artifact", "Model", "s3://m/credit.tar.gz#" + "a" * 64, "credit-risk/1",
                  {"model_group": "credit-risk", "version": 1}, True),
            "M3": ("artifact", "Model", "s3://m/churn.tar.gz#" + "b" * 64, "churn/1", {}, True),
            "ctx": ("context", "ModelGroup", "model-group:credit-risk", "credit-risk", {}, True),
            "d1": ("artifact", "Dataset", "s3://d/2025.csv#", None, {}, True),
            "d2": ("artifact", "Dataset", "s3://d/2026.csv#", None, {}, True),
            "j1": ("action", "TrainingJob", "training-job:train-1", "train-1", {}, True),
            "j2": ("action", "TrainingJob", "training-job:train-2", "train-2", {}, True),
            "j3": ("action", "TrainingJob", "training-job:churn/1/training", "churn/1/training", {}, True),
            "a1": ("action", "Approval", "approval:v1:1", "credit-risk/1 Approval", {}, True),
            "s2": ("action", "StageTransition", "stage:v2:2", "credit-risk/2 StageTransition", {}, True),
            "dep2": ("action", "Deployment", "deployment:prod:credit-risk/2", "deploy", {}, True),
            "r1": ("artifact", "BiasReport", "file:///s/clarify/x/analysis.json#", "credit-risk/1 BiasReport", {},
                   True),
            "b2": ("artifact", "Baseline", "file:///s/baselines/b2/statistics.json#", "b2", {"baseline_id": "b2"},
                   True),
            "b0": ("artifact", "Baseline", "file:///s/baselines/b0/statistics.json#", "b0", {"baseline_id": "b0"},
                   True),
            "b3": ("artifact", "Baseline", "file:///s/baselines/b3/statistics.json#", "b3", {"baseline_id": "b3"},
                   True),
            "u": ("artifact", "Dataset", "s3://u/eval.csv#", None, {}, False),
        }
        edges = [("d1", "j1", "ContributedTo"), ("d2", "j2", "ContributedTo"), ("j1", "M", "Produced"),
                 ("j2", "M", "Produced"), ("M", "ctx", "AssociatedWith"), ("M", "a1", "AssociatedWith"),
                 ("M", "s2", "AssociatedWith"), ("M", "dep2", "ContributedTo"), ("r1", "M", "AssociatedWith"),
                 ("b2", "M", "AssociatedWith"), ("b0", "M", "AssociatedWith"), ("u", "M", "ContributedTo"),
                 ("j3", "M3", "Produced"), ("b3", "M3", "AssociatedWith")]
        common = {"created_by": "pub", "creator_owner": "pub", "created_at": now}
        with engine.begin() as conn:
            for gid, name in [("g1", "credit-risk"), ("g2", "churn")]:
                conn.execute(t["registry_model_groups"].insert().values(
                    id=gid, name=name, tags={}, stage_config={}, latest_version=2, created_by="pub", created_at=now,
                    updated_at=now))
            for vid, gid, n, uri, sha_, job in [("v1", "g1", 1, "s3://m/credit.tar.gz", "a" * 64, {"name": "train-1"}),
                                                ("v2", "g1", 2, "s3://m/credit.tar.gz", "A" * 64, {"name": "train-2"}),
                                                ("c1", "g2", 1, "s3://m/churn.tar.gz", "b" * 64, None)]:
                conn.execute(t["registry_model_versions"].insert().values(
                    id=vid, group_id=gid, version=n, approval_status="Pending", artifact_uri=uri,
                    artifact_sha256=sha_, metrics={}, training_data=[], training_job=job, registered_by="pub",
                    registered_by_key="k", created_at=now + dt.timedelta(minutes=n), updated_at=now))
            for bid in ("b0", "b2", "b3"):
                conn.execute(t["monitor_baselines"].insert().values(
                    id=bid, source="computed", prefix=f"baselines/{bid}", exact=False, row_count=1, feature_count=1,
                    created_by="pub", created_at=now))
            conn.execute(t["monitor_version_baselines"].insert().values(
                id="vb", model_group="credit-risk", model_version=2, kind="ModelDataQuality", baseline_id="b2",
                attached_by="pub", attached_at=now))
            for eid, (k, typ, ident, name, props, system) in ents.items():
                uri = ident.split("#")[0] if k == "artifact" else None
                conn.execute(t["lineage_entities"].insert().values(
                    id=eid, kind=k, type=typ, identity=ident, name=name, uri=uri, properties=props, system=system,
                    updated_at=now, **common))
            for src, dst, typ in edges:
                conn.execute(t["lineage_edges"].insert().values(
                    id=f"{src}-{dst}", source_id=src, target_id=dst, type=typ, properties={}, system=src != "u",
                    **common))

        def upstream(group, n):
            with Session(engine) as s:
                return {x["name"] or x["uri"] for x in lineage.upstream(s, lineage.model_version_uri(group, n), None)}

        upgrade(url)
        shared = {"s3://m/credit.tar.gz", "s3://u/eval.csv", "b0"}   # the file, and what no record ties to one
        assert upstream("credit-risk", 1) == shared | {"train-1", "s3://d/2025.csv", "credit-risk/1 BiasReport"}
        assert upstream("credit-risk", 2) == shared | {"train-2", "s3://d/2026.csv", "b2"}
        assert upstream("churn", 1) == {"s3://m/churn.tar.gz", "churn/1/training", "b3"}
        with Session(engine) as s:
            def down(group, n):
                res = lineage.query(s, QueryRequest(start=[lineage.model_version_uri(group, n)],
                                                    direction="Descendants"))
                return {v.name for v in res.vertices if v.kind != "artifact"}

            assert down("credit-risk", 1) == {"credit-risk/1 Approval", "credit-risk"}
            assert down("credit-risk", 2) == {"credit-risk/2 StageTransition", "deploy", "credit-risk"}
            model = s.execute(select(t["lineage_entities"].c.name, t["lineage_entities"].c.properties)
                              .where(t["lineage_entities"].c.id == "M")).one()
            assert tuple(model) == (None, {})
        command.downgrade(alembic_config(url), "0011")
        with engine.connect() as conn:
            e = t["lineage_edges"]
            back = {(r.source_id, r.target_id) for r in conn.execute(select(e.c.source_id, e.c.target_id))}
            assert back == {(src, dst) for src, dst, _ in edges}
            assert conn.execute(select(t["lineage_entities"].c.name).where(
                t["lineage_entities"].c.type == "ModelPackage")).all() == []
        upgrade(url)
        assert upstream("credit-risk", 1) == shared | {"train-1", "s3://d/2025.csv", "credit-risk/1 BiasReport"}
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_0025_drops_alert_rules_the_reader_cannot_read(kind, tmp_path):
    """Before writes checked `alerting`, a PATCH could store a rule like {"datapoints": "many"}, and reading it made
    ListMonitoringAlerts answer 500 for everyone. The upgrade keeps the valid rules and drops the rest."""
    import datetime as dt

    from alembic import command
    from sqlalchemy.orm import Session

    from monitor import schedules
    from monitor.orm import Baseline, Schedule
    from tests.infra import upgrade

    good = {"datapoints": 2, "period": 3, "updated_at": "2026-11-01T00:00:00+00:00"}
    stored = {"ok": {"rules": {"data_type_check": good}},
              "bad": {"rules": {"data_type_check": {"datapoints": "many", "period": 1}, "baseline_drift_check": good,
                                "completeness_check": {"datapoints": 3, "period": 2}}},
              "free": {"datapoints": "many"},
              "listy": {"rules": [1, 2]},
              "odd": ["x"],
              "none": None}
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with fresh_database(kind, tmp_path) as url:
        upgrade(url)
        command.downgrade(alembic_config(url), "0024_versions_by_update")
        engine = make_engine(url, pooled=False)
        with Session(engine) as s:
            s.add(Baseline(id="b1", source="computed", prefix="baselines/b1", created_by="t"))
            s.flush()
            # the table as it was at 0024 (the ORM's Schedule has columns added later)
            s.execute(sa.table("monitor_schedules", *(sa.column(c) for c in (
                "id", "name", "endpoint", "type", "expression", "window_start", "window_end", "baseline_id",
                "status", "created_by")), sa.column("alerting", sa.JSON), sa.column("next_run_at", UTCDateTime()),
                sa.column("created_at", UTCDateTime()), sa.column("updated_at", UTCDateTime())).insert(), [
                {"id": f"s-{name}", "name": name, "endpoint": "ep", "type": "DataQuality", "expression": "0 * * * *",
                 "window_start": "-PT1H", "window_end": "PT0S", "baseline_id": "b1", "status": "Scheduled",
                 "created_by": "t", "alerting": alerting, "next_run_at": now, "created_at": now, "updated_at": now}
                for name, alerting in stored.items()])
            s.commit()
        upgrade(url)
        with Session(engine) as s:
            found = {row.name: row.alerting for row in s.query(Schedule)}
            assert found == {"ok": stored["ok"], "bad": {"rules": {"baseline_drift_check": good}},
                             "free": {"rules": {}}, "listy": {"rules": {}}, "odd": None, "none": None}
            for row in s.query(Schedule):
                assert schedules.alert_rule(row, "data_type_check")["datapoints"] in (1, 2)
        engine.dispose()
