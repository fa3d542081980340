"""Each domain's whole story driven through the Python SDK alone, against a live server on real sockets.

Only the first admin key is made directly (as `mlgov keys create` would); every other step is a client method.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier

from mlgov import auth
from mlgov.app import create_app
from mlgov.client import Client, Conflict, Forbidden, InvalidInput, NotFound, capture_records
from mlgov.db import Database
from tests.clarify.test_explain import data as explain_data
from tests.conftest import make_settings
from tests.helpers import sha
from tests.infra import LiveServer
from tests.monitor.test_api import FEATURES, frame

pytestmark = pytest.mark.live
T0 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)


@dataclass
class Live:
    url: str
    admin: Client

    def person(self, name: str, role: str) -> Client:
        """A client with a fresh key of ``role`` held by ``name`` (minted by the admin, through the SDK)."""
        created = self.admin.create_key(name, role, owner=name)
        assert created.role == role and created.owner == name and created.key.startswith("mlgov_")
        return Client(self.url, created.key)


@pytest.fixture
def live(live_db: Database, tmp_path) -> Iterator[Live]:
    with live_db.session_scope() as s:
        _, admin_key = auth.create_key(s, "root", "admin", actor="test")
    app = create_app(make_settings(tmp_path, outbound_allow="127.0.0.1"), db=live_db)
    with LiveServer(app) as srv, Client(srv.url, admin_key) as admin:
        yield Live(srv.url, admin)


def _registered(live: Live, group: str = "churn") -> tuple[Client, Client]:
    pub, appr = live.person("alice", "publisher"), live.person("bob", "approver")
    pub.create_model_group(group)
    pub.register_version(group, f"s3://models/{group}/1/model.tar.gz", sha(f"{group}-1"))
    appr.approve(group, 1, "holdout AUC 0.91")
    return pub, appr


def test_registry_story(live: Live) -> None:
    assert live.admin.health() == {"status": "ok"} and live.admin.ready()["status"] == "ready"
    pub, appr = live.person("alice", "publisher"), live.person("bob", "approver")
    viewer = live.person("carol", "viewer")
    group = pub.create_model_group("churn", description="retention", tags={"team": "growth"})
    assert (group.name, group.latest_version, group.tags) == ("churn", 0, {"team": "growth"})
    assert [s.name for s in group.stage_config.stages] == ["Development", "Staging", "Production", "Archived"]
    v = pub.register_version("churn", "s3://models/churn/1/model.tar.gz", sha("m1"), framework="xgboost",
                             metrics={"auc": 0.91}, metadata={"git_commit": "abc123"},
                             training_data=["s3://data/churn/train.csv"], training_job={"name": "train-1"})
    assert (v.version, v.approval_status, v.registered_by, v.stage) == (1, "PendingManualApproval", "alice",
                                                                        "Development")
    pub.register_version("churn", "s3://models/churn/2/model.tar.gz", sha("m2"), metadata={"git_commit": "def"})

    with pytest.raises(Forbidden) as four_eyes:       # a publisher key cannot decide; nor could alice's approver key
        pub.approve("churn", 1, "my own model")
    assert four_eyes.value.fix
    approved = appr.approve("churn", 1, "AUC 0.91 on holdout", expected_status="PendingManualApproval")
    assert approved.approval_status == "Approved" and approved.approval_evidence is not None
    with pytest.raises(Conflict):                     # the optimistic guard: it is no longer pending
        appr.reject("churn", 1, "too late", expected_status="PendingManualApproval")
    assert appr.reject("churn", 2, "no holdout metrics").approval_status == "Rejected"
    assert [d.actor for d in viewer.approvals("churn", 1)] == ["bob"]

    assert appr.move_stage("churn", 1, "Staging").stage == "Staging"
    assert appr.move_stage("churn", 1, "Production", comment="launch", expected_stage="Staging").stage == "Production"
    assert appr.move_stage("churn", 2, "Staging").stage == "Staging"
    with pytest.raises(Conflict, match="accepts only Approved versions"):
        appr.move_stage("churn", 2, "Production")
    assert viewer.stage_occupants("churn", "Production").versions == [1]
    assert viewer.stage_occupants("churn", "Production", at=T0.replace(year=2000)).versions == []
    assert [t.to_stage for t in viewer.stage_history("churn", 1)] == ["Development", "Staging", "Production"]

    assert [x.version for x in viewer.list_versions("churn", page_size=1)] == [2, 1]
    assert [x.version for x in viewer.list_versions("churn", metadata={"git_commit": "abc123"})] == [1]
    assert viewer.latest_version("churn", status="Approved").version == 1
    assert viewer.get_version("churn", 2).approval_status == "Rejected"
    assert [g.name for g in viewer.list_model_groups(tags={"team": "growth"})] == ["churn"]
    assert pub.update_model_group("churn", description=None).description is None
    assert live.admin.update_model_group("churn", approval_policy={"require_bias_report": False}).approval_policy
    trusted = live.admin.set_artifact_trust("churn", 1, True, "built by our CI from a pinned image")
    assert trusted.artifact_trusted is True

    assert viewer.aliases_at("churn").aliases == {}   # no alias moved (MLflow's @champion …) in this story
    report = viewer.compliance_report("churn")
    assert report and "Compliance report" in viewer.compliance_report_html("churn")
    events = list(live.admin.list_audit_events(subject="churn/1", page_size=2))
    assert len(events) == viewer.audit_events(subject="churn/1").total >= 4
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert live.admin.verify_audit()["ok"] is True
    assert live.admin.audit_checkpoint()["seq"] == live.admin.verify_audit()["checkpoint"]["seq"]

    hook = live.admin.create_webhook("http://127.0.0.1:9/hook", "a-long-random-secret", ["version.*"])
    assert [h.id for h in live.admin.list_webhooks()] == [hook.id] and live.admin.get_webhook(hook.id).active
    assert list(live.admin.list_webhook_deliveries(hook.id, page_size=1)) == []   # no dispatcher: none numbered
    with pytest.raises(NotFound):
        live.admin.retry_delivery(hook.id, "no-such-delivery")
    live.admin.delete_webhook(hook.id)
    assert live.admin.list_webhooks() == []
    assert {"alice", "bob", "carol", "root"} <= {k.name for k in live.admin.list_keys()}
    live.admin.revoke_key("carol")
    assert not next(k for k in live.admin.list_keys() if k.name == "carol").active
    assert "/api/v1/model-groups" in live.admin.openapi()["paths"]


def test_monitor_story(live: Live, tmp_path) -> None:
    pub, _ = _registered(live)
    ingest, viewer = live.person("edge", "ingest"), live.person("carol", "viewer")
    hour = (T0, T0 + dt.timedelta(hours=1))

    # baselines: from a DataFrame (CSV or Parquet on the wire) or a path; SageMaker's files; GX expectations
    train = frame(2000)
    base = pub.create_baseline(train, name="train")
    assert (base.kind, base.row_count, base.feature_count, base.created_by) == ("DataQuality", 2000, 3, "alice")
    train.to_parquet(tmp_path / "train.parquet", index=False)
    from_path = pub.create_baseline(tmp_path / "train.parquet")
    assert from_path.row_count == 2000 and pub.create_baseline(train, format="parquet").row_count == 2000
    assert {b.id for b in viewer.list_baselines(page_size=2)} >= {base.id, from_path.id}
    constraints = viewer.get_baseline_file(base.id, "constraints.json")
    assert {f["name"] for f in constraints["features"]} == {"age", "income", "state"}
    assert pub.update_constraints(base.id, constraints)["features"] == constraints["features"]
    pub.set_expectations(base.id, {"name": "inputs", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "age"}}]})
    assert viewer.get_baseline_file(base.id, "expectations.json")["name"] == "inputs"
    assert pub.attach_baseline("churn", 1, base.id).baseline_id == viewer.get_attached_baseline("churn", 1).baseline_id

    # an analysis of a file: violations, drift, the GX result, SageMaker's files, the report
    shifted = frame(800, shift=30, seed=2)
    a = pub.run_analysis(base.id, shifted, drift={"numerical": "psi"})
    assert a.status == "CompletedWithViolations" and a.drifted_features == ["income"] and a.expectations is not None
    assert viewer.get_analysis(a.id).violations == a.violations
    assert "violations" in viewer.get_analysis_file(a.id, "constraint_violations.json")
    assert viewer.get_analysis_report(a.id) and "<html" in viewer.get_analysis_report_html(a.id).lower()
    snapshot = viewer.get_evidently_snapshot(a.id)
    assert snapshot["metadata"]["mlgov_analysis_id"] == a.id and snapshot["metric_results"]
    with pytest.raises(ValueError, match="exactly one"):
        pub.run_analysis(base.id, shifted, endpoint="churn-prod", start=hour[0], end=hour[1])

    # an endpoint, its traffic from a DataFrame in batches, labels that arrive later
    ep = pub.create_endpoint("churn-prod", "churn", 1, {"features": FEATURES, "probability": {"name": "probability"}})
    assert ep.model_version == 1 and [f["name"] for f in ep.schema_["features"]] == ["age", "income", "state"]
    assert [e.name for e in viewer.list_endpoints()] == ["churn-prod"] == [viewer.get_endpoint("churn-prod").name]
    rng = np.random.default_rng(4)
    traffic = frame(300, shift=30, seed=3).assign(
        probability=rng.random(300), event_id=[f"ev-{i}" for i in range(300)],
        inference_id=[f"inf-{i}" for i in range(300)],
        inference_time=[T0 + dt.timedelta(seconds=i) for i in range(300)])
    traffic["prediction"] = (traffic.probability > 0.5).astype(int)
    seen: list[tuple[int, int]] = []
    cap = ingest.capture("churn-prod", traffic, batch_size=120, progress=lambda done, total: seen.append((done, total)))
    assert (cap.accepted, cap.duplicates, cap.rejected) == (300, 0, []) and seen == [(120, 300), (240, 300), (300, 300)]
    again = ingest.capture("churn-prod", [*capture_records(traffic.head(3)), {"eventMetadata": {}}], batch_size=2)
    assert again.duplicates == 3 and [r["index"] for r in again.rejected] == [3]   # indexes into the whole input
    assert viewer.capture_summary("churn-prod")["records"] == 300
    labels = {f"inf-{i}": int(p) if i % 5 else 1 - int(p) for i, p in enumerate(traffic.prediction)}
    gt = ingest.upload_ground_truth("churn-prod", labels, batch_size=100)
    assert (gt.accepted, gt.duplicates, gt.unmatched, gt.rejected) == (300, 0, 0, [])
    late = ingest.upload_ground_truth("churn-prod", pd.DataFrame({"inference_id": ["inf-0", "nobody"],
                                                                  "label": [1, 0]}))
    assert (late.duplicates, late.unmatched, late.unmatched_ids) == (1, 1, ["nobody"])
    estimate = viewer.estimate_performance("churn-prod", *hour)
    assert estimate["rows"] == 300 and estimate["labelled_rows"] == 300 and "comparison" in estimate

    # model quality of the labelled window against its own baseline
    val = pd.DataFrame({"label": rng.integers(0, 2, 600)})
    val["prediction"] = np.where(rng.random(600) < 0.85, val["label"], 1 - val["label"])
    mq = pub.create_baseline(val, type="ModelQuality", problem_type="BinaryClassification", label="label",
                             prediction="prediction")
    q = pub.run_analysis(mq.id, endpoint="churn-prod", start=hour[0], end=hour[1], type="ModelQuality")
    assert (q.kind, q.rows, q.endpoint) == ("ModelQuality", 300, "churn-prod")

    # a schedule, run over the shifted hour: violations open an alert on the version
    with pytest.raises(InvalidInput) as bad:
        pub.create_schedule("churn-dq", "churn-prod", "DataQuality", "every tuesday", base.id)
    assert bad.value.fix
    sched = pub.create_schedule("churn-dq", "churn-prod", "DataQuality", "hourly", base.id,
                                window={"start": "-PT1H", "end": "PT0S"})
    assert (sched.status, sched.baseline_id) == ("Scheduled", base.id)
    assert pub.update_schedule("churn-dq", schedule="*/5 * * * *").expression == "*/5 * * * *"
    assert pub.update_schedule("churn-dq", baseline_id=from_path.id).baseline_id == from_path.id
    with pytest.raises(InvalidInput, match=r"ModelQuality|baseline"):   # a kind's baseline must fit the schedule
        pub.update_schedule("churn-dq", baseline_id=mq.id)
    assert pub.update_schedule("churn-dq", baseline_id=base.id).overdue is False
    assert pub.stop_schedule("churn-dq").status == "Stopped" and pub.start_schedule("churn-dq").status == "Scheduled"
    ex = pub.run_schedule("churn-dq", *hour)
    assert ex.status == "CompletedWithViolations" and ex.violation_count > 0 and ex.trigger
    assert [e.id for e in viewer.list_executions("churn-dq")] == [ex.id]
    assert [s.name for s in viewer.list_schedules()] == ["churn-dq"] == [viewer.get_schedule("churn-dq").name]
    alerts = list(viewer.list_alerts(status="open", schedule="churn-dq"))
    assert alerts and {x.model_group for x in alerts} == {"churn"} and alerts[0].opened_execution_id == ex.id
    assert {x.subject for x in alerts} == {"income"}   # one alert per (schedule, feature, check)
    assert {x.id for x in viewer.list_analyses(endpoint="churn-prod")} >= {q.id, ex.analysis_id}
    trigger = live.admin.set_retraining_trigger("churn", "http://127.0.0.1:9/retrain", "a-long-random-secret",
                                                cooldown_seconds=60)
    assert (trigger.model_group, trigger.cooldown_seconds) == ("churn", 60)
    assert "mlgov_alerts_open" in viewer.metrics()
    pub.delete_schedule("churn-dq")
    with pytest.raises(NotFound):
        viewer.get_schedule("churn-dq")


def test_clarify_story(live: Live, tmp_path) -> None:
    pub, _ = _registered(live, "credit")
    viewer = live.person("carol", "viewer")
    x, y = explain_data()
    artifact = sio.dumps(GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y))
    pub.register_version("credit", "s3://models/credit/2/model.skops", hashlib.sha256(artifact).hexdigest())

    # bias of a labelled DataFrame, attached to version 2 as approval evidence
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"sex": rng.choice(["f", "m"], 500), "y": rng.integers(0, 2, 500)})
    d["pred"] = np.where(rng.random(500) < 0.8, d.y, 1 - d.y)
    config = {"label": "y", "label_values_or_threshold": [1], "predicted_label": "pred",
              "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
              "methods": {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": "all"}}}
    bias = pub.bias_analysis(config, d, model_group="credit", model_version=2)
    assert {"pre_training_bias_metrics", "post_training_bias_metrics"} <= set(bias.analysis)
    assert viewer.get_clarify_report(bias.id) == bias.analysis
    assert "<html" in viewer.get_clarify_report_html(bias.id).lower()
    assert viewer.get_version("credit", 2).bias_report is not None
    # the same data and config from files; a config naming the columns sends the frame without its header row
    (tmp_path / "analysis_config.json").write_text(json.dumps(config))
    d.to_csv(tmp_path / "bias.csv", index=False)
    from_files = pub.bias_analysis(tmp_path / "analysis_config.json", tmp_path / "bias.csv")
    headless = pub.bias_analysis({**config, "headers": ["sex", "y", "pred"]}, d)
    for other in (from_files, headless):
        assert other.id != bias.id
        assert other.analysis["post_training_bias_metrics"] == bias.analysis["post_training_bias_metrics"]
    with pytest.raises(InvalidInput) as bad:
        pub.bias_analysis({**config, "label": "nope"}, d)
    assert "nope" in bad.value.detail and bad.value.fix

    # SHAP attributions of version 2 from its artifact (checked against the registered sha256)
    exp = pub.explain("credit", 2, x.assign(label=y), model=artifact, model_format="skops", label="label")
    shap = exp.analysis["explanations"]["kernel_shap"]["label0"]
    assert shap["method"] == "tree" and max(shap["global_shap_values"], key=shap["global_shap_values"].get) == "a"
    assert viewer.get_clarify_report(exp.id)["explanations"] == exp.analysis["explanations"]
    rows = viewer.get_explanation_rows(exp.id, limit=5)
    assert (rows.total, len(rows.items), rows.output_space) == (len(x), 5, shap["output_space"])
    frame = viewer.get_explanation_rows_frame(exp.id, offset=5)
    assert len(frame) == len(x) - 5 and set(frame.columns) == set(x.columns) and frame.index[0] == 5
    prob = pub.explain("credit", 2, x.assign(label=y), model=artifact, model_format="skops", label="label",
                       output_space="probability")
    assert prob.analysis["explanations"]["kernel_shap"]["label0"]["output_space"] == "probability"
    other = sio.dumps(GradientBoostingClassifier(n_estimators=3).fit(x, y))
    with pytest.raises(InvalidInput, match="sha256"):
        pub.explain("credit", 2, x, model=other)
    with pytest.raises(NotFound):
        viewer.get_clarify_report("0123456789abcdef")


def test_lineage_story(live: Live) -> None:
    pub, other, viewer = live.person("alice", "publisher"), live.person("dave", "publisher"), live.person("carol",
                                                                                                          "viewer")
    data = pub.create_artifact("Dataset", "s3://data/credit/train.csv", sha("train"), name="train")
    assert pub.create_artifact("Dataset", "s3://data/credit/train.csv", sha("train")).id == data.id   # idempotent
    model = pub.create_artifact("Model", "s3://models/credit/1/model.tar.gz", sha("model"), properties={"auc": 0.9})
    job = pub.create_action("TrainingJob", "train-credit-1", key="train-credit-1", status="InProgress",
                            start_time=T0)
    with pytest.raises(Conflict, match="already exists"):
        pub.create_action("TrainingJob", "train-credit-1", key="train-credit-1")
    ctx = pub.create_context("Experiment", "credit-2026")
    edges = [pub.create_association(data.id, job.id, "ContributedTo"),
             pub.associate(job.id, model.id, "Produced", properties={"step": "fit"}),
             pub.associate(model.id, ctx.id, "AssociatedWith")]
    assert [e.type for e in edges] == ["ContributedTo", "Produced", "AssociatedWith"]

    down = viewer.query_lineage("s3://data/credit/train.csv", "Descendants")
    assert {v.id: v.depth for v in down.vertices} == {data.id: 0, job.id: 1, model.id: 2, ctx.id: 3}
    assert {(e.source, e.target) for e in down.edges} == {(data.id, job.id), (job.id, model.id), (model.id, ctx.id)}
    up = viewer.query_lineage([model.id], "Ascendants", max_depth=1, filters={"kinds": ["action"]})
    assert [v.id for v in up.vertices if v.depth == 1] == [job.id]
    assert data.id in viewer.export_lineage(data.id) and "graph" in viewer.export_lineage(data.id, format="mermaid")

    assert [a.id for a in viewer.list_artifacts(type="Dataset")] == [data.id]
    assert [a.id for a in viewer.list_artifacts(uri="s3://models/credit/1/model.tar.gz")] == [model.id]
    assert [a.id for a in viewer.list_actions(status="InProgress")] == [job.id] == [viewer.get_action(job.id).id]
    assert [c.id for c in viewer.list_contexts(name_contains="credit")] == [ctx.id] == [viewer.get_context(ctx.id).id]
    assert viewer.get_artifact(model.id).properties == {"auc": 0.9}
    assert {e.id for e in viewer.list_associations(source=job.id)} == {edges[1].id}
    assert len(list(viewer.list_associations(page_size=1))) == 3

    done = pub.update_action(job.id, status="Completed", end_time=T0 + dt.timedelta(hours=1))
    assert done.status == "Completed" and done.end_time is not None
    changed = pub.update_artifact(model.id, description="credit v1", properties={"f1": 0.8},
                                  properties_to_remove=["auc"])
    assert (changed.description, changed.properties) == ("credit v1", {"f1": 0.8})
    assert pub.update_artifact(model.id, description=None).description is None
    assert pub.update_context(ctx.id, name="credit-2026-q4").name == "credit-2026-q4"
    with pytest.raises(Forbidden):          # only its creator (or an admin) may change what a user recorded
        other.update_artifact(model.id, description="mine now")
    pub.delete_association(edges[2].id)
    pub.delete_artifact(data.id)            # with its associations
    with pytest.raises(NotFound):
        viewer.get_artifact(data.id)
    assert [e.id for e in viewer.list_associations()] == [edges[1].id]
    scratch = pub.create_context("Scratch", "tmp")
    pub.delete_context(scratch.id)
    pub.delete_action(pub.create_action("Note", "tmp").id)

    run = "3f5e83fa-3480-44ff-99c5-ff943cd3a4f3"
    event = {"eventType": "COMPLETE", "eventTime": "2026-11-20T10:00:00Z", "run": {"runId": run},
             "job": {"namespace": "airflow", "name": "features.build"},
             "inputs": [{"namespace": "postgres://db:5432", "name": "raw"}],
             "outputs": [{"namespace": "s3://lake", "name": "features"}], "producer": "https://example.invalid/p"}
    recorded = pub.send_openlineage(event)
    assert len(recorded["inputs"]) == len(recorded["outputs"]) == 1
    assert [a.uri for a in viewer.list_artifacts(uri="s3://lake/features")] == ["s3://lake/features"]
