"""A small demo registry for `make run`.

A composition root, like ``app.py`` and ``cli.py``: the kernel may import domains only in these, and here only
through their public doors (``service`` and the request shapes in ``schemas``), never their rows (``orm``), so the
demo seeds exactly what an API client could and every rule (four-eyes, audit, lineage) applies to it. It stays in
the kernel because it will seed several domains (registry now; monitors and baselines later), which no single
domain may import.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlgov import auth
from mlgov.auth import Principal, Role
from mlgov.db import Database
from registry import service
from registry.schemas import ApprovalRequest, GroupCreate, ModelCard, StageRequest, VersionCreate


def _principal(session: Session, name: str, role: Role) -> Principal:
    row = session.scalar(select(auth.ApiKey).where(auth.ApiKey.name == name))
    if row is None:
        row, _ = auth.create_key(session, name, role.value, actor="demo")
    return Principal(key_pk=row.id, name=row.name, role=Role(row.role))


def seed(db: Database, *, if_empty: bool) -> str:
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
    return "demo: seeded groups churn-classifier (v1 Approved in Production, v2 pending) and fraud-detector"
