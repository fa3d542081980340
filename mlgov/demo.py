"""A small demo for `make run`: a registry, and an endpoint whose last hours are monitored.

A composition root, like ``app.py`` and ``cli.py``: the kernel may import domains only in these, and here only
through their public doors (services, monitor kinds and the request shapes in ``schemas``), never their rows
(``orm``), so the demo seeds exactly what an API client could and every rule (four-eyes, audit, lineage) applies to
it. Nothing in it is made up after the fact: captured records, labels and baselines are generated data, and every
execution, violation and alert is what mlgov computed from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from clarify import kinds as clarify_kinds
from mlgov import auth
from mlgov.auth import Principal, Role
from mlgov.db import Database, utcnow
from mlgov.storage import ObjectStore
from monitor import kinds, schedules
from monitor import service as monitor
from monitor.capture import CaptureSchema, FeatureSpec, OutputSpec
from registry import service
from registry.schemas import ApprovalRequest, GroupCreate, ModelCard, StageRequest, VersionCreate


def _principal(session: Session, name: str, role: Role) -> Principal:
    row = session.scalar(select(auth.ApiKey).where(auth.ApiKey.name == name))
    if row is None:
        row, _ = auth.create_key(session, name, role.value, actor="demo")
    return Principal(key_pk=row.id, name=row.name, role=Role(row.role))


def seed(db: Database, store: ObjectStore, *, if_empty: bool) -> str:
    with db.session_scope() as s:
        if if_empty and service.list_groups(s, name_contains=None, tags={}, sort="name", limit=1, offset=0)[1]:
            return "demo: registry not empty, nothing seeded"
        publisher = _principal(s, "demo-publisher", Role.publisher)
        approver = _principal(s, "demo-approver", Role.approver)
        service.create_group(s, GroupCreate(name="churn-classifier", description="Predicts customer churn (demo)",
                                            tags={"team": "growth", "risk": "medium"}), publisher)
        for n, auc, accuracy in ((1, 0.81, 0.76), (2, 0.86, 0.81)):
            body = VersionCreate(
                artifact_uri=f"s3://demo-models/churn/v{n}/model.tar.gz",
                artifact_sha256=hashlib.sha256(f"churn-v{n}".encode()).hexdigest(),
                framework="xgboost", framework_version="2.1", task="CLASSIFICATION", domain="MACHINE_LEARNING",
                metrics={"auc": auc, "accuracy": accuracy},   # written out: 0.86 - 0.05 shows as 0.8099999999999999
                metadata={"git_commit": f"abc12{n}", "owner": "growth-ml"},
                training_data=[f"s3://demo-data/churn/train-2026-0{n}.csv"],
                model_card=ModelCard(status="PendingReview", content={"intended_use": "retention campaigns"},
                                     markdown=f"# Churn classifier v{n}\nGradient-boosted trees on 40 features."),
            )
            service.register_version(s, "churn-classifier", body, publisher)
        service.decide(s, "churn-classifier", 1, ApprovalRequest(status="Approved", comment="AUC above 0.8 on holdout"),
                       approver)
        service.move_stage(s, "churn-classifier", 1, StageRequest(stage="Staging"), approver)
        service.move_stage(s, "churn-classifier", 1, StageRequest(stage="Production", comment="initial launch"),
                           approver)
        service.create_group(s, GroupCreate(name="fraud-detector", description="Card fraud scoring (demo)",
                                            tags={"team": "risk"}), publisher)
        monitored = _monitoring(s, store, publisher)
    return ("demo: seeded groups churn-classifier (v1 Approved in Production, v2 pending) and fraud-detector; "
            f"{monitored}")


# --- monitoring: endpoint churn-prod serves churn-classifier v1; its last HOURS hours were captured and labelled,
# and the last DRIFTED of them come from another population (pricier plans, more month-to-month contracts) on
# which the model is also less accurate.

ENDPOINT = "churn-prod"
HOURS = 6
DRIFTED = 2
PER_HOUR = 1000
CONTRACTS = ("month-to-month", "one-year", "two-year")
FEATURES = ("tenure", "monthly_charges", "contract", "support_calls")


BIAS_CONFIG = {"label": "churned", "label_values_or_threshold": [1], "predicted_label": "churn",
               "facet": [{"name_or_index": "contract", "value_or_threshold": ["month-to-month"]}],
               "methods": {"post_training_bias": {"methods": ["DPPL", "DI", "AD", "DAR"]}}}
"""SageMaker's analysis_config.json of the demo's bias monitor."""


def _customers(rng: np.random.Generator, n: int, *, drifted: bool) -> pd.DataFrame:
    """Customers, the model's churn probability and call, and whether each churned (the ground truth)."""
    mix = (0.8, 0.12, 0.08) if drifted else (0.55, 0.25, 0.2)
    df = pd.DataFrame({
        "tenure": rng.integers(1, 73, n),
        "monthly_charges": np.round(np.clip(rng.normal(95 if drifted else 65, 20, n), 18, 150), 2),
        "contract": rng.choice(CONTRACTS, n, p=mix),
        "support_calls": rng.poisson(1.2, n),
    })
    logit = (-0.6 + 1.6 * (df["contract"] == "month-to-month") - 0.045 * df["tenure"]
             + 0.02 * (df["monthly_charges"] - 65) + 0.35 * df["support_calls"]).to_numpy(float)
    df["churn_probability"] = np.round(1 / (1 + np.exp(-logit)), 4)
    df["churn"] = (df["churn_probability"] >= 0.5).astype(int)
    # the new population churns for reasons the model never saw: its scores say less about who leaves
    truth = 0.35 * logit + rng.normal(0, 1.6, n) if drifted else logit
    df["churned"] = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(int)
    return df


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


def _capture_body(df: pd.DataFrame, start: dt.datetime, ids: list[str]) -> bytes:
    """SageMaker capture records (CSV in, CSV out: the call, then its probability) spread over one hour."""
    lines = []
    for i, (row, eid) in enumerate(zip(df.itertuples(index=False), ids, strict=True)):
        when = start + dt.timedelta(seconds=i * 3600 / len(df))
        lines.append(json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "encoding": "CSV",
                                  "data": f"{row.tenure},{row.monthly_charges},{row.contract},{row.support_calls}"},
                "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "encoding": "CSV",
                                   "data": f"{row.churn},{row.churn_probability}"}},
            "eventMetadata": {"eventId": eid, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
            "eventVersion": "0"}))
    return "\n".join(lines).encode()


def _labels_body(df: pd.DataFrame, ids: list[str]) -> bytes:
    return "\n".join(json.dumps({"groundTruthData": {"data": str(label), "encoding": "CSV"},
                                 "eventMetadata": {"eventId": eid}, "eventVersion": "0"})
                     for label, eid in zip(df["churned"], ids, strict=True)).encode()


def _monitoring(s: Session, store: ObjectStore, publisher: Principal) -> str:
    """Endpoint churn-prod, its data- and model-quality baselines and hourly schedules, and a run of each schedule
    over each captured hour. The schedules are then stopped: no traffic reaches the demo endpoint, so each new
    hour's run would only fail for want of data (start them once records arrive)."""
    rng = np.random.default_rng(7)
    schema = CaptureSchema(features=[FeatureSpec(name="tenure", type="Integral"),
                                     FeatureSpec(name="monthly_charges", type="Fractional"),
                                     FeatureSpec(name="contract", type="String"),
                                     FeatureSpec(name="support_calls", type="Integral")],
                           prediction=OutputSpec(name="churn", type="Integral", csv_index=0),
                           probability=OutputSpec(name="churn_probability", csv_index=1))
    monitor.create_endpoint(s, name=ENDPOINT, model_group="churn-classifier", model_version=1, variant="AllTraffic",
                            sampling_percentage=100.0, schema=schema, actor=publisher)
    training = _customers(rng, 3000, drifted=False)
    dq = kinds.get("DataQuality").create_baseline(
        s, store, {"file": (_csv(training[list(FEATURES)]), "churn-train.csv")}, "churn training set",
        publisher).record(s)
    validation = _customers(rng, 2000, drifted=False)
    mq = kinds.get("ModelQuality").create_baseline(
        s, store, {"file": (_csv(validation[["churned", "churn", "churn_probability"]]), "churn-validation.csv"),
                   "problem_type": "BinaryClassification", "label": "churned", "prediction": "churn",
                   "probability": "churn_probability"}, "churn validation set", publisher).record(s)
    # SageMaker suggests each metric's baseline value as its threshold: tuned here, as a user would, to a margin
    suggested = json.loads(monitor.baseline_file(s, store, mq.id, "constraints.json"))
    block = suggested["binary_classification_constraints"]
    margin = {"accuracy": 0.06, "auc": 0.06, "f1": 0.08}
    tuned = {name: {**block[name], "threshold": round(block[name]["threshold"] - m, 4)}
             for name, m in margin.items()}
    monitor.update_constraints(s, store, mq.id, json.dumps({**suggested, "binary_classification_constraints": tuned})
                               .encode(), publisher)
    # bias: does the model treat month-to-month customers differently from the rest, and more so than it did on
    # the validation set? (their predicted churn rate, acceptance and accuracy against the others')
    clarify_kinds.register()   # ModelBias, beside monitor's own kinds (as the app and the scheduler do)
    bias = kinds.get("ModelBias").create_baseline(
        s, store, {"file": (_csv(validation[["contract", "churned", "churn"]]), "churn-validation.csv"),
                   "config": (json.dumps(BIAS_CONFIG).encode(), "analysis_config.json")},
        "churn validation set: month-to-month customers", publisher).record(s)
    monitors = ((f"{ENDPOINT}-data-quality", "DataQuality", dq), (f"{ENDPOINT}-model-quality", "ModelQuality", mq),
                (f"{ENDPOINT}-bias", "ModelBias", bias))
    for name, kind, base in monitors:
        schedules.create(s, name=name, endpoint=ENDPOINT, monitoring_type=kind, expression="hourly",
                         baseline_id=base.id, window_start="-PT1H", window_end="PT0S", drift=None, alerting=None,
                         actor=publisher)
    top = utcnow().replace(minute=0, second=0, microsecond=0)
    hours = [top - dt.timedelta(hours=k) for k in range(HOURS, 0, -1)]
    for n, start in enumerate(hours):
        df = _customers(rng, PER_HOUR, drifted=n >= HOURS - DRIFTED)
        ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(len(df))]
        monitor.ingest(s, store, ENDPOINT, _capture_body(df, start, ids), "application/x-ndjson")
        monitor.ingest_ground_truth(s, store, ENDPOINT, _labels_body(df, ids), "application/x-ndjson",
                                    actor=publisher)
    verdicts = []
    for name, _, _ in monitors:
        runs = [schedules.run_now(s, store, name, start, start + dt.timedelta(hours=1), publisher) for start in hours]
        schedules.set_status(s, name, "Stopped", publisher)
        verdicts.append(f"{name}: {sum(r.status == 'CompletedWithViolations' for r in runs)} of {len(runs)} hours "
                        "with violations")
    return (f"endpoint {ENDPOINT} with {HOURS * PER_HOUR} captured and labelled records over the last {HOURS} hours "
            f"({'; '.join(verdicts)}; schedules stopped until traffic arrives)")
