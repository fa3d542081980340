"""Registry rules: numbering, four-eyes approvals, stage lifecycle, history; every change audited and emitted.

Lock order, kept everywhere to avoid deadlocks on PostgreSQL: group row → version row → audit chain.
Services only flush; the request or ``session_scope`` commits.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Select, UnaryExpression, func, select, update
from sqlalchemy.orm import QueryableAttribute, Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from lineage import service as lineage
from mlgov import audit, auth, events
from mlgov.auth import DECIDERS, Principal, Role
from mlgov.db import equal, icontains, in_window, is_postgres, new_id, paginate, utcnow
from mlgov.errors import Conflict, Forbidden, Invalid, NotFound
from registry.errors import FourEyesViolation, GroupNotFound, TransitionNotAllowed, VersionNotFound
from registry.orm import ApprovalDecision, ModelGroup, ModelVersion, StageTransition, VersionMetadata
from registry.schemas import (
    DEFAULT_STAGES,
    ApprovalRequest,
    GroupCreate,
    GroupUpdate,
    StageConfig,
    StageRequest,
    VersionCreate,
    VersionRead,
)

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
APPROVAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    PENDING: (APPROVED, REJECTED),
    APPROVED: (REJECTED,),
    REJECTED: (APPROVED,),
}


_T = TypeVar("_T")


def _lock(stmt: Select[_T], session: Session) -> Select[_T]:
    return stmt.with_for_update() if is_postgres(session) else stmt


# --- groups -------------------------------------------------------------------------------------------

def get_group(session: Session, name: str, *, for_update: bool = False) -> ModelGroup:
    stmt = select(ModelGroup).where(ModelGroup.name == name)
    group = session.scalar(_lock(stmt, session) if for_update else stmt)
    if group is None:
        raise GroupNotFound(name)
    return group


def create_group(session: Session, body: GroupCreate, actor: Principal) -> ModelGroup:
    if session.scalar(select(ModelGroup.id).where(ModelGroup.name == body.name)) is not None:
        raise Conflict(f"model group {body.name!r} already exists", fix="pick another name or register a version in it")
    now = utcnow()
    cfg = (body.stage_config or DEFAULT_STAGES).model_dump()
    group = ModelGroup(id=new_id(), name=body.name, description=body.description, tags=dict(body.tags),
                       stage_config=cfg, latest_version=0, created_by=actor.name, created_at=now, updated_at=now)
    session.add(group)
    session.flush()
    after = {"name": group.name, "description": group.description, "tags": group.tags, "stage_config": cfg}
    audit.record(session, actor=actor.name, action="model_group.created", subject_type="model_group",
                 subject_id=group.name, after=after)
    events.emit(session, "model_group.created", group.name, after)
    return group


def update_group(session: Session, name: str, body: GroupUpdate, actor: Principal) -> ModelGroup:
    group = get_group(session, name, for_update=True)
    before = {"description": group.description, "tags": group.tags, "stage_config": group.stage_config,
              "approval_policy": group.approval_policy}
    fields = body.model_fields_set
    if "description" in fields:
        group.description = body.description
    if "tags" in fields and body.tags is not None:
        group.tags = dict(body.tags)
    if "approval_policy" in fields:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may change a group's approval policy",
                            fix="ask an admin, or leave approval_policy out of the update")
        group.approval_policy = body.approval_policy.model_dump() if body.approval_policy else None
    if "stage_config" in fields and body.stage_config is not None:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may change a group's stage configuration",
                            fix="ask an admin, or leave stage_config out of the update")
        _check_stages_still_valid(session, group, body.stage_config)
        group.stage_config = body.stage_config.model_dump()
    group.updated_at = utcnow()
    session.flush()
    after = {"description": group.description, "tags": group.tags, "stage_config": group.stage_config,
             "approval_policy": group.approval_policy}
    audit.record(session, actor=actor.name, action="model_group.updated", subject_type="model_group",
                 subject_id=group.name, before=before, after=after)
    events.emit(session, "model_group.updated", group.name, after)
    return group


def _check_stages_still_valid(session: Session, group: ModelGroup, cfg: StageConfig) -> None:
    names = {s.name for s in cfg.stages}
    used = set(session.scalars(select(ModelVersion.stage).where(ModelVersion.group_id == group.id,
                                                                ModelVersion.stage.is_not(None)).distinct()))
    missing = sorted(s for s in used if s is not None and s not in names)
    if missing:
        raise Conflict(f"versions of {group.name!r} are in stage(s) {missing} that the new configuration drops",
                       fix="keep those stages or move the versions out of them first")


def list_groups(session: Session, *, name_contains: str | None, tags: dict[str, str], sort: str, limit: int,
                offset: int) -> tuple[list[ModelGroup], int]:
    order = _order(sort, {"name": ModelGroup.name, "created_at": ModelGroup.created_at})
    return paginate(session, select(ModelGroup), order, ModelGroup.id, limit=limit, offset=offset, where=[
        icontains(ModelGroup.name, name_contains), *(ModelGroup.tags[k].as_string() == v for k, v in tags.items())])


def _order(sort: str, columns: dict[str, QueryableAttribute[Any]]) -> UnaryExpression[Any]:
    """``name`` sorts ascending by that column, ``-name`` descending."""
    column = columns[sort.lstrip("-")]
    return column.desc() if sort.startswith("-") else column.asc()


# --- versions -----------------------------------------------------------------------------------------

def to_read(group_name: str, v: ModelVersion) -> VersionRead:
    return VersionRead(
        group=group_name, version=v.version, approval_status=v.approval_status,
        approval_description=v.approval_description, stage=v.stage, description=v.description,
        artifact_uri=v.artifact_uri, artifact_sha256=v.artifact_sha256, framework=v.framework,
        framework_version=v.framework_version, flavor=v.flavor, inference_spec=v.inference_spec,
        metrics=v.metrics or {}, model_metrics=v.model_metrics, metadata={m.key: m.value for m in v.metadata_items},
        domain=v.domain, task=v.task, model_card=v.model_card, training_data=list(v.training_data or []),
        training_job=v.training_job, source=v.source, triggered_by_alert=v.triggered_by_alert,
        artifact_trusted=bool(v.artifact_trusted), bias_report=v.bias_report,
        registered_by=v.registered_by, created_at=v.created_at,
        updated_at=v.updated_at,
    )


def _payload(group_name: str, v: ModelVersion) -> dict[str, Any]:
    data: dict[str, Any] = to_read(group_name, v).model_dump(mode="json")
    return data


def register_version(session: Session, group_name: str, body: VersionCreate, actor: Principal) -> ModelVersion:
    group = get_group(session, group_name, for_update=True)
    alert_node = None
    if body.triggered_by_alert:
        alert_node = lineage.find_action(session, lineage.alert_key(body.triggered_by_alert))
        if alert_node is None:
            raise NotFound(f"no monitoring alert with id {body.triggered_by_alert!r}",
                           fix="pass the alert id from the retraining request (GET /api/v1/alerts)")
    number = session.execute(
        update(ModelGroup).where(ModelGroup.id == group.id)
        .values(latest_version=ModelGroup.latest_version + 1, updated_at=utcnow())
        .returning(ModelGroup.latest_version),
        execution_options={"synchronize_session": False},
    ).scalar_one()
    cfg = StageConfig.model_validate(group.stage_config)
    now = utcnow()
    v = ModelVersion(
        id=new_id(), group_id=group.id, version=number, approval_status=PENDING, stage=cfg.initial,
        description=body.description, artifact_uri=body.artifact_uri, artifact_sha256=body.artifact_sha256,
        framework=body.framework, framework_version=body.framework_version, flavor=body.flavor,
        inference_spec=body.inference_spec.model_dump(mode="json") if body.inference_spec else None,
        metrics=dict(body.metrics),
        model_metrics=body.model_metrics.model_dump(mode="json") if body.model_metrics else None,
        domain=body.domain, task=body.task,
        model_card=body.model_card.model_dump(mode="json") if body.model_card else None,
        training_data=list(body.training_data),
        training_job=body.training_job.model_dump(mode="json") if body.training_job else None,
        source=body.source.model_dump(mode="json") if body.source else None,
        triggered_by_alert=body.triggered_by_alert, registered_by=actor.name, registered_by_key=actor.key_pk,
        created_at=now, updated_at=now,
    )
    v.metadata_items = [VersionMetadata(key=k, value=val) for k, val in sorted(body.metadata.items())]
    session.add(v)
    session.add(StageTransition(group_id=group.id, version_id=v.id, from_stage=None, to_stage=cfg.initial,
                                actor=actor.name, comment=None, reason="registered", at=now))
    session.flush()
    _record_training_lineage(session, group, v, actor.name)
    if alert_node is not None:
        run, _ = lineage.ensure_action(session, action_type="RetrainingRun",
                                       key=f"retraining:{body.triggered_by_alert}:{v.id}",
                                       name=f"retraining of {group.name} after alert {body.triggered_by_alert}",
                                       status="Completed", end_time=now, actor=actor.name)
        lineage.chain(session, [(alert_node, run, "ContributedTo"),
                                (run, version_entity(session, group, v, actor.name), "Produced")], actor=actor.name)
    payload = _payload(group.name, v)
    audit.record(session, actor=actor.name, action="version.registered", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", after=payload)
    events.emit(session, "version.registered", f"{group.name}/{number}", payload)
    return v


def version_entity(session: Session, group: ModelGroup, v: ModelVersion, actor: str) -> lineage.Entity:
    """The version's own lineage node, which the model artifact (URI + sha256) ContributedTo. Training, approvals,
    stage moves, baselines and deployments attach here, never to the artifact: versions that ship the same file
    share the artifact node but not each other's lineage."""
    node, created = lineage.ensure_artifact(session, artifact_type="ModelPackage",
                                            uri=lineage.model_version_uri(group.name, v.version),
                                            name=f"{group.name}/{v.version}", actor=actor,
                                            properties={"model_group": group.name, "version": v.version})
    if created:
        model, _ = lineage.ensure_artifact(session, artifact_type="Model", uri=v.artifact_uri,
                                           sha256=v.artifact_sha256, actor=actor)
        lineage.link(session, model, node, "ContributedTo", actor=actor)
    return node


def _record_training_lineage(session: Session, group: ModelGroup, v: ModelVersion, actor: str) -> None:
    """training data → training job → version (← model artifact) → model-group context (SageMaker's
    auto-lineage)."""
    version = version_entity(session, group, v, actor)
    ctx, _ = lineage.ensure_context(session, context_type="ModelGroup", name=group.name,
                                    key=f"model-group:{group.name}", actor=actor)
    job_ref = v.training_job or {}
    job_name = job_ref.get("name") or f"{group.name}/{v.version}/training"
    job, _ = lineage.ensure_action(
        session, action_type="TrainingJob", key=f"training-job:{job_ref.get('uri') or job_name}", name=job_name,
        status="Completed", start_time=_parse_time(job_ref.get("started_at")),
        end_time=_parse_time(job_ref.get("ended_at")),
        properties={k: val for k, val in {"uri": job_ref.get("uri"), "parameters": job_ref.get("parameters")}.items()
                    if val}, actor=actor)
    steps: list[tuple[lineage.Entity, lineage.Entity, str]] = []
    for uri in v.training_data or []:
        data, _ = lineage.ensure_artifact(session, artifact_type="Dataset", uri=uri, actor=actor)
        steps.append((data, job, "ContributedTo"))
    steps += [(job, version, "Produced"), (version, ctx, "AssociatedWith")]
    lineage.chain(session, steps, actor=actor)


def _governance_action(session: Session, group: ModelGroup, v: ModelVersion, actor: str, action_type: str, key: str,
                       properties: dict[str, Any]) -> None:
    """An approval or stage change as an action hanging off the version's node."""
    act, _ = lineage.ensure_action(session, action_type=action_type, key=key,
                                   name=f"{group.name}/{v.version} {action_type}", status="Completed",
                                   start_time=utcnow(), end_time=utcnow(), properties={**properties, "actor": actor},
                                   actor=actor)
    lineage.link(session, version_entity(session, group, v, actor), act, "AssociatedWith", actor=actor)


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    t = dt.datetime.fromisoformat(str(value))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _version_stmt(group: ModelGroup) -> Select[ModelVersion]:
    return (select(ModelVersion).where(ModelVersion.group_id == group.id)
            .options(selectinload(ModelVersion.metadata_items)))


def get_version(session: Session, group_name: str, number: int) -> tuple[ModelGroup, ModelVersion]:
    group = get_group(session, group_name)
    v = session.scalar(_version_stmt(group).where(ModelVersion.version == number))
    if v is None:
        raise VersionNotFound(group_name, number)
    return group, v


def list_versions(
    session: Session, group_name: str, *, status: str | None, stage: str | None,
    created_after: dt.datetime | None, created_before: dt.datetime | None, metadata: dict[str, str],
    sort: str, limit: int, offset: int,
) -> tuple[ModelGroup, list[ModelVersion], int]:
    group = get_group(session, group_name)
    order = _order(sort, {"version": ModelVersion.version, "created_at": ModelVersion.created_at})
    rows, total = paginate(session, _version_stmt(group), order, ModelVersion.version, limit=limit, offset=offset,
                           where=[*equal((ModelVersion.approval_status, status), (ModelVersion.stage, stage)),
                                  *in_window(ModelVersion.created_at, created_after, created_before),
                                  *(select(VersionMetadata.version_id).where(
                                      VersionMetadata.version_id == ModelVersion.id, VersionMetadata.key == k,
                                      VersionMetadata.value == val).exists() for k, val in metadata.items())])
    return group, rows, total


def latest_version(session: Session, group_name: str, status: str | None) -> tuple[ModelGroup, ModelVersion]:
    group = get_group(session, group_name)
    stmt = _version_stmt(group)
    if status:
        stmt = stmt.where(ModelVersion.approval_status == status)
    v = session.scalar(stmt.order_by(ModelVersion.version.desc()).limit(1))
    if v is None:
        what = f"with approval status {status}" if status else "at all"
        raise VersionNotFound(group_name, f"{what} (no versions match)")
    return group, v


# --- approvals ----------------------------------------------------------------------------------------

def decide(session: Session, group_name: str, number: int, req: ApprovalRequest, actor: Principal) -> ModelVersion:
    if actor.role not in DECIDERS:
        raise Forbidden(f"role {actor.role.value!r} may not decide approvals", fix="use an approver or admin key")
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    if v.registered_by_key == actor.key_pk:
        raise FourEyesViolation(actor.name, group_name, number)
    why = auth.independent_keys(session, actor, v.registered_by_key, _registrant(session, v)[0])
    if why is not None:
        raise FourEyesViolation(actor.name, group_name, number, why)
    current = v.approval_status
    if req.expected_status is not None and req.expected_status != current:
        raise Conflict(f"{group_name} version {number} is {current}, not {req.expected_status} as expected",
                       fix="re-read the version and decide again if still appropriate", current_status=current)
    allowed = APPROVAL_TRANSITIONS[current]
    if req.status not in allowed:
        raise TransitionNotAllowed(
            f"cannot move {group_name} version {number} from {current} to {req.status}",
            fix=f"from {current} the allowed statuses are: {', '.join(allowed)}",
            current_status=current, allowed=list(allowed))
    assessment = assess_evidence(session, group.name, v)
    overridden = _check_policy(group, req, actor, assessment)
    now = utcnow()
    # Session.execute is typed Result[Any]; a bulk UPDATE returns a CursorResult, which carries rowcount
    res = cast(CursorResult[Any], session.execute(
        update(ModelVersion).where(ModelVersion.id == v.id, ModelVersion.approval_status == current)
        .values(approval_status=req.status, approval_description=req.comment, updated_at=now),
        execution_options={"synchronize_session": False}))
    if res.rowcount != 1:
        raise Conflict(f"{group_name} version {number} was decided concurrently",
                       fix="re-read the version; its status changed while this request ran")
    for attr, val in (("approval_status", req.status), ("approval_description", req.comment), ("updated_at", now)):
        set_committed_value(v, attr, val)
    decision = ApprovalDecision(version_id=v.id, from_status=current, to_status=req.status, comment=req.comment,
                                actor=actor.name, actor_owner=actor.owner, actor_key=actor.key_pk,
                                policy_overridden=overridden or None, evidence=assessment or None, at=now)
    session.add(decision)
    session.flush()
    _governance_action(session, group, v, actor.name, "Approval", f"approval:{v.id}:{decision.id}",
                       {"from": current, "to": req.status, "comment": req.comment})
    cfg = StageConfig.model_validate(group.stage_config)
    stage_def = next((s for s in cfg.stages if s.name == v.stage), None)
    if req.status == REJECTED and stage_def is not None and stage_def.requires_approval:
        # A rejected version may not stay where only approved ones belong (SageMaker's rollback case).
        target = stage_def.displace_to or cfg.initial
        _set_stage(session, group, v, target, actor, f"rejected: {req.comment}", "rejected")
    subject = f"{group.name}/{number}"
    audit.record(session, actor=actor.name, action="version.approval_changed", subject_type="model_version",
                 subject_id=subject, before={"approval_status": current},
                 after={"approval_status": req.status, "comment": req.comment, "decided_by_owner": actor.owner,
                        **({"policy_overridden": overridden} if overridden else {}),
                        **({"evidence": _evidence_summary(assessment)} if assessment else {})})
    events.emit(session, "version.approval_changed", subject,
                {**_payload(group.name, v), "previous_approval_status": current, "decided_by": actor.name})
    return v


def set_artifact_trust(session: Session, group_name: str, number: int, trusted: bool, reason: str,
                       actor: Principal) -> ModelVersion:
    """Admin-only: allow (or withdraw) loading this version's pickle/joblib artifact. Audited."""
    if actor.role != Role.admin:
        raise Forbidden("only admin keys may mark an artifact as trusted", fix="ask an admin")
    group, v = get_version(session, group_name, number)
    before = bool(v.artifact_trusted)
    v.artifact_trusted = trusted
    v.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="version.artifact_trust_changed", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", before={"artifact_trusted": before},
                 after={"artifact_trusted": trusted, "reason": reason, "artifact_sha256": v.artifact_sha256})
    return v


def _registrant(session: Session, v: ModelVersion) -> tuple[str, str | None]:
    """Owner and creator of the key that registered ``v`` (its name, for keys that no longer resolve)."""
    key = auth.key_by_pk(session, v.registered_by_key)
    return (key.owner, key.created_by) if key is not None else (v.registered_by, None)


def assess_evidence(session: Session, group_name: str, v: ModelVersion) -> list[dict[str, Any]]:
    """Every bias report attached to ``v``, oldest first, with whether it counts for the approval gate and why.

    A report counts when mlgov computed it from the version's own predictions (its endpoint's captured window
    joined to ground truth, or its registered artifact run on a dataset), or when someone independent of the
    registrant produced it. A report the registrant's side computed on data it supplied does not count: it
    could have set predictions = labels."""
    reg_owner, reg_creator = _registrant(session, v)
    items = list(v.evidence or []) or ([v.bias_report] if v.bias_report else [])
    out = []
    for item in items:
        source = item.get("source") or {"kind": "unrecorded (attached before revision 0010)"}
        kind = source.get("kind")
        by_owner, by_creator = item.get("by_owner"), item.get("by_created_by")
        if by_owner is None:  # legacy report: only the key name was kept
            key = session.scalar(select(auth.ApiKey).where(auth.ApiKey.name == item.get("by")))
            by_owner, by_creator = (key.owner, key.created_by) if key else (item.get("by") or "?", None)
        counted, reason = False, ""
        if kind == "captured_window" and source.get("model_version") == f"{group_name}/{v.version}":
            counted, reason = True, (f"computed by mlgov from this version's own predictions: endpoint "
                                     f"{source.get('endpoint')!r} captured traffic joined to ground truth")
        elif kind == "model_run" and source.get("artifact_sha256") == v.artifact_sha256:
            counted, reason = True, (f"computed by mlgov running this version's registered artifact (sha256 "
                                     f"{v.artifact_sha256[:12]}…) on {source.get('dataset', 'a dataset')}")
        else:
            why = auth.independent(by_owner, by_creator, reg_owner, reg_creator)
            if why is None:
                counted, reason = True, f"produced by {by_owner!r}, independent of the registrant {reg_owner!r}"
            else:
                reason = (f"not independent of the registrant ({why}) and computed on data the submitter supplied "
                          f"({kind}); predictions in supplied data prove nothing about the model")
        out.append({"analysis_id": item.get("analysis_id"), "passed": bool(item.get("passed")),
                    "failures": list(item.get("failures") or []), "by": item.get("by"), "by_owner": by_owner,
                    "at": item.get("at"), "source": source, "counted": counted, "reason": reason})
    return out


def _evidence_summary(assessment: list[dict[str, Any]]) -> dict[str, Any]:
    return {"counted": [{"analysis_id": e["analysis_id"], "passed": e["passed"], "reason": e["reason"]}
                        for e in assessment if e["counted"]],
            "not_counted": [{"analysis_id": e["analysis_id"], "reason": e["reason"]}
                            for e in assessment if not e["counted"]]}


def _check_policy(group: ModelGroup, req: ApprovalRequest, actor: Principal,
                  assessment: list[dict[str, Any]]) -> list[str]:
    """The group's evidence requirements for approval; returns what an admin override waived. The newest report
    that counts as evidence decides; reports that do not count are listed with the reason."""
    policy = group.approval_policy or {}
    if req.status != APPROVED or not policy.get("require_bias_report"):
        if req.override_policy and actor.role != Role.admin:
            raise Forbidden("only admin keys may override the approval policy", fix="drop override_policy")
        return []
    counted = [e for e in assessment if e["counted"]]
    ignored = [f"report {e['analysis_id']} does not count: {e['reason']}" for e in assessment if not e["counted"]]
    missing: str | None = None
    if not assessment:
        missing = "no bias report is attached"
    elif not counted:
        missing = "no attached bias report counts as evidence (" + "; ".join(ignored) + ")"
    elif not counted[-1]["passed"]:
        missing = (f"the bias report fails: {', '.join(counted[-1]['failures'])} (newest report that counts as "
                   f"evidence: {counted[-1]['analysis_id']})")
    if missing is None:
        return []
    if req.override_policy:
        if actor.role != Role.admin:
            raise Forbidden("only admin keys may override the approval policy", fix="drop override_policy")
        return [missing]
    raise Conflict(f"{group.name} requires a passing bias report before approval; {missing}",
                   fix="have mlgov compute it from the version's own predictions (POST /api/v1/clarify/bias with "
                       "model_group, model_version and either an endpoint window of this version or "
                       "predict_with_model=true), or have someone independent of the registrant run it; an admin "
                       "may approve with override_policy=true (flagged in the compliance report)",
                   evidence=_evidence_summary(assessment))


def attach_bias_report(session: Session, group_name: str, number: int, analysis_id: str, passed: bool,
                       failures: list[str], actor: Principal, source: dict[str, Any] | None = None) -> ModelVersion:
    """Attach a bias report as evidence, recording who produced it and from what data (``source``: kind
    upload | dataset_uri | captured_window | model_run, plus what identifies the data)."""
    group, v = get_version(session, group_name, number)
    item = {"analysis_id": analysis_id, "passed": passed, "failures": failures, "by": actor.name,
            "by_key": actor.key_pk, "by_owner": actor.owner, "by_created_by": actor.created_by,
            "source": source or {"kind": "unspecified"}, "at": utcnow().isoformat()}
    v.bias_report = item
    v.evidence = [*(v.evidence or []), item]
    v.updated_at = utcnow()
    session.flush()
    audit.record(session, actor=actor.name, action="version.bias_report_attached", subject_type="model_version",
                 subject_id=f"{group.name}/{number}", after=item)
    return v


def approval_policy(session: Session, group_name: str) -> dict[str, Any]:
    return dict(get_group(session, group_name).approval_policy or {})


def decision_evidence(session: Session, version: ModelVersion) -> dict[str, Any] | None:
    """For the approval response: what the newest decision counted as evidence, ignored, and overrode."""
    d = session.scalar(select(ApprovalDecision).where(ApprovalDecision.version_id == version.id)
                       .order_by(ApprovalDecision.id.desc()).limit(1))
    if d is None:
        return None
    return {**_evidence_summary(d.evidence or []), "policy_overridden": list(d.policy_overridden or []),
            "passed_only_by_override": bool(d.policy_overridden)}


def approval_history(session: Session, version: ModelVersion) -> list[ApprovalDecision]:
    return list(session.scalars(select(ApprovalDecision).where(ApprovalDecision.version_id == version.id)
                                .order_by(ApprovalDecision.id)))


# --- stages -------------------------------------------------------------------------------------------

def _set_stage(session: Session, group: ModelGroup, v: ModelVersion, target: str, actor: Principal,
               comment: str | None, reason: str) -> None:
    previous = v.stage
    v.stage = target
    v.updated_at = utcnow()
    move = StageTransition(group_id=group.id, version_id=v.id, from_stage=previous, to_stage=target,
                           actor=actor.name, comment=comment, reason=reason, at=utcnow())
    session.add(move)
    session.flush()
    _governance_action(session, group, v, actor.name, "StageTransition", f"stage:{v.id}:{move.id}",
                       {"from": previous, "to": target, "reason": reason})
    subject = f"{group.name}/{v.version}"
    audit.record(session, actor=actor.name, action="version.stage_changed", subject_type="model_version",
                 subject_id=subject, before={"stage": previous},
                 after={"stage": target, "reason": reason, "comment": comment})
    events.emit(session, "version.stage_changed", subject,
                {"group": group.name, "version": v.version, "from_stage": previous, "to_stage": target,
                 "reason": reason, "actor": actor.name, "comment": comment})


def move_stage(session: Session, group_name: str, number: int, req: StageRequest, actor: Principal) -> ModelVersion:
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    cfg = StageConfig.model_validate(group.stage_config)
    defs = {s.name: s for s in cfg.stages}
    if req.stage not in defs:
        raise Invalid(f"stage {req.stage!r} is not configured for {group_name!r}",
                      fix=f"use one of: {', '.join(defs)}")
    if req.expected_stage is not None and req.expected_stage != v.stage:
        raise Conflict(f"{group_name} version {number} is in {v.stage}, not {req.expected_stage} as expected",
                       fix="re-read the version and retry", current_stage=v.stage)
    if v.stage == req.stage:
        raise Conflict(f"{group_name} version {number} is already in {req.stage}")
    allowed = cfg.transitions.get(v.stage or cfg.initial, [])
    if req.stage not in allowed:
        raise TransitionNotAllowed(f"cannot move {group_name} version {number} from {v.stage} to {req.stage}",
                                   fix=f"from {v.stage} the allowed stages are: {', '.join(allowed) or 'none'}",
                                   allowed=allowed)
    target = defs[req.stage]
    if target.requires_approval and actor.role not in DECIDERS:
        raise Forbidden(f"stage {req.stage} is governed: only approver or admin keys may move versions into it",
                        fix="ask an approver to make this move")
    if target.requires_approval and v.approval_status != APPROVED:
        raise Conflict(f"stage {req.stage} accepts only Approved versions; version {number} is {v.approval_status}",
                       fix="have an approver approve the version first")
    if target.exclusive:
        displaced = list(session.scalars(_lock(select(ModelVersion).where(
            ModelVersion.group_id == group.id, ModelVersion.stage == req.stage, ModelVersion.id != v.id), session)))
        for other in displaced:
            _set_stage(session, group, other, target.displace_to or cfg.initial, actor,
                       f"displaced by version {number}", "displaced")
    _set_stage(session, group, v, req.stage, actor, req.comment, "requested")
    return v


def stage_history(session: Session, group_name: str, number: int | None = None) -> list[tuple[int, StageTransition]]:
    group = get_group(session, group_name)
    stmt = (select(ModelVersion.version, StageTransition)
            .join(ModelVersion, ModelVersion.id == StageTransition.version_id)
            .where(StageTransition.group_id == group.id))
    if number is not None:
        stmt = stmt.where(ModelVersion.version == number)
    return [(n, t) for n, t in session.execute(stmt.order_by(StageTransition.id))]


def occupants_at(session: Session, group_name: str, stage: str, at: dt.datetime) -> list[int]:
    """Versions that were in ``stage`` at time ``at``: each version's last transition at or before ``at``."""
    group = get_group(session, group_name)
    last = (select(StageTransition.version_id, func.max(StageTransition.id).label("tid"))
            .where(StageTransition.group_id == group.id, StageTransition.at <= at)
            .group_by(StageTransition.version_id).subquery())
    stmt = (select(ModelVersion.version).join(last, last.c.version_id == ModelVersion.id)
            .join(StageTransition, StageTransition.id == last.c.tid)
            .where(StageTransition.to_stage == stage).order_by(ModelVersion.version))
    return list(session.scalars(stmt))


# --- compliance report --------------------------------------------------------------------------------

def _decided_independently(session: Session, v: ModelVersion, d: ApprovalDecision) -> bool:
    """The compliance report applies the rule `decide` enforces (owners and both creation chains)."""
    if d.actor == v.registered_by:
        return False
    key = auth.key_by_pk(session, d.actor_key) if d.actor_key else None
    decider = auth.principal_of(key) if key is not None else auth.Principal(
        key_pk="", name=d.actor, role=auth.Role.approver, owner=d.actor_owner or d.actor)
    return auth.independent_keys(session, decider, v.registered_by_key, _registrant(session, v)[0]) is None


def _provisioning_warnings(session: Session, v: ModelVersion, decisions: list[ApprovalDecision]) -> list[str]:
    """Owners are names an admin types, so one admin could mint a registrant and a decider under two made-up
    owners. Not blocked (an admin who provisions every key is normal); made visible for the reviewer."""
    registrant = auth.key_by_pk(session, v.registered_by_key)
    out = []
    for d in decisions:
        decider = auth.key_by_pk(session, d.actor_key) if d.actor_key else None
        if registrant is None or decider is None or registrant.created_by_key is None:
            continue
        if registrant.created_by_key == decider.created_by_key:
            out.append(f"the registering key {registrant.name!r} and the deciding key {decider.name!r} were both "
                       f"created by {registrant.created_by!r}")
    return out


def _decision_row(d: ApprovalDecision) -> dict[str, Any]:
    row: dict[str, Any] = {"from": d.from_status, "to": d.to_status, "by": d.actor, "at": d.at.isoformat(),
                           "comment": d.comment}
    if d.actor_owner is not None and d.actor_owner != d.actor:
        row["by_owner"] = d.actor_owner
    if d.evidence is not None:
        row["evidence"] = d.evidence
    if d.policy_overridden:
        row["policy_overridden"] = d.policy_overridden
        row["passed_only_by_override"] = True
    return row


# What other domains know of a version. Monitor and Clarify call registry, so registry cannot call them: they add
# providers at composition (``mlgov.app``) and the compliance report asks each for its side of every version.
VersionFacts = Callable[[Session, str, int, dt.datetime, dt.datetime], Mapping[str, list[dict[str, Any]]]]
"""(session, group, version, from, to) → lists by section: ``alerts`` and ``monitoring`` (activity in the window),
``attachments`` (evidence attached to the version over time, each with ``kind``, ``id``, ``by``, ``at`` and ``until``
(when it was superseded, or None), ISO-8601 times)."""
_FACTS: dict[str, VersionFacts] = {}
MAX_ATTACHMENTS = 500


def add_version_facts(name: str, provider: VersionFacts) -> None:
    """Add (or replace, by name: composing twice is harmless) a provider of facts about versions."""
    _FACTS[name] = provider


def audited_attachments(session: Session, group_name: str, number: int, action: str, kind: str, id_key: str, *,
                        replaces: bool) -> list[dict[str, Any]]:
    """Evidence attached to a version as the audit log recorded it (``action`` on the version): each in force from
    its event on, until the next one when a new attachment ``replaces`` the previous."""
    events, _ = audit.query(session, subject_type="model_version", subject_id=f"{group_name}/{number}", action=action,
                            limit=MAX_ATTACHMENTS)
    out: list[dict[str, Any]] = [{"kind": kind, "id": (e.after or {}).get(id_key), "by": e.actor,
                                  "at": e.ts.isoformat(), "until": None} for e in events]
    if replaces:
        for before, after in itertools.pairwise(out):
            before["until"] = after["at"]
    return out


def _add_version_facts(session: Session, group_name: str, row: dict[str, Any], lo: dt.datetime,
                       hi: dt.datetime) -> None:
    """The providers' sections on a compliance row, and on each decision the attachments in force when it was
    taken (beside ``evidence``, the bias reports the decision assessed, recorded with it)."""
    facts: dict[str, list[dict[str, Any]]] = {"alerts": [], "monitoring": [], "attachments": []}
    for provider in _FACTS.values():
        for key, items in provider(session, group_name, row["version"], lo, hi).items():
            facts.setdefault(key, []).extend(items)
    facts["attachments"].sort(key=lambda a: dt.datetime.fromisoformat(a["at"]))
    row.update(facts)
    for d in row["decisions"]:
        at = dt.datetime.fromisoformat(d["at"])
        d["attached"] = [a for a in facts["attachments"] if dt.datetime.fromisoformat(a["at"]) <= at
                         and (a.get("until") is None or at < dt.datetime.fromisoformat(a["until"]))]


def compliance_report(session: Session, group_name: str, since: dt.datetime | None,
                      until: dt.datetime | None) -> dict[str, Any]:
    """Every version with activity in the window: who registered it, every decision and stage move, the evidence
    each decision used, its bias verdicts, and what the other domains know of it (alerts, monitoring runs)."""
    group = get_group(session, group_name)
    lo = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    hi = until or utcnow() + dt.timedelta(seconds=1)
    versions = list(session.scalars(_version_stmt(group).where(ModelVersion.created_at < hi)
                                    .order_by(ModelVersion.version)))
    ids = [v.id for v in versions]
    decisions: dict[str, list[ApprovalDecision]] = {i: [] for i in ids}
    moves: dict[str, list[StageTransition]] = {i: [] for i in ids}
    if ids:
        for d in session.scalars(select(ApprovalDecision).where(ApprovalDecision.version_id.in_(ids),
                                                                ApprovalDecision.at >= lo, ApprovalDecision.at < hi)
                                 .order_by(ApprovalDecision.id)):
            decisions[d.version_id].append(d)
        for t in session.scalars(select(StageTransition).where(StageTransition.version_id.in_(ids),
                                                               StageTransition.at >= lo, StageTransition.at < hi)
                                 .order_by(StageTransition.id)):
            moves[t.version_id].append(t)
    rows = []
    for v in versions:
        if not (lo <= v.created_at < hi or decisions[v.id] or moves[v.id]):
            continue
        rows.append({
            "version": v.version,
            "artifact_uri": v.artifact_uri,
            "artifact_sha256": v.artifact_sha256,
            "registered_by": v.registered_by,
            "registered_at": v.created_at.isoformat(),
            "approval_status": v.approval_status,
            "stage": v.stage,
            "training_data": list(v.training_data or []),
            "metrics": dict(v.metrics or {}),
            "model_card": v.model_card,
            "decisions": [_decision_row(d) for d in decisions[v.id]],
            "stage_history": [{"from": t.from_stage, "to": t.to_stage, "by": t.actor, "at": t.at.isoformat(),
                               "reason": t.reason, "comment": t.comment} for t in moves[v.id]],
            "registered_by_owner": _registrant(session, v)[0],
            "evidence": assess_evidence(session, group.name, v),
            "four_eyes_ok": all(_decided_independently(session, v, d) for d in decisions[v.id]),
            "flags": [f"{d.to_status} at {d.at.isoformat()} by {d.actor} passed only by admin override: "
                      f"{'; '.join(d.policy_overridden)}" for d in decisions[v.id] if d.policy_overridden],
            "warnings": _provisioning_warnings(session, v, decisions[v.id]),
            "lineage": [n for n in lineage.upstream(session, lineage.model_version_uri(group.name, v.version), None)
                        if n["kind"] != "action" or n["type"] not in ("Approval", "StageTransition")],
        })
    for row in rows:
        _add_version_facts(session, group.name, row, lo, hi)
    overrides = sum(1 for ds in decisions.values() for d in ds if d.policy_overridden)
    return {
        "model_group": group.name,
        "description": group.description,
        "from": lo.isoformat(),
        "to": hi.isoformat(),
        "generated_at": utcnow().isoformat(),
        "audit_chain": audit.verify(session),
        "decisions_passed_only_by_override": overrides,
        "versions": rows,
    }


# --- deletion (SageMaker's DeleteModelPackage / DeleteModelPackageGroup) --------------------------------------

def delete_version(session: Session, group_name: str, number: int, actor: Principal) -> None:
    """Withdraw a version nobody has decided yet (its registrant or an admin). Decided versions stay: their
    decisions are the audit trail. The number is never reused; lineage keeps the artifact as it was recorded."""
    group = get_group(session, group_name, for_update=True)
    v = session.scalar(_lock(_version_stmt(group).where(ModelVersion.version == number), session))
    if v is None:
        raise VersionNotFound(group_name, number)
    registrant = _registrant(session, v)[0]
    if actor.role != Role.admin and not auth.same_person(actor.owner, registrant):
        raise Forbidden(f"{group_name} version {number} was registered by {registrant!r}; only its registrant or an "
                        "admin may delete it", fix=f"ask {registrant!r} or an admin")
    if v.approval_status != PENDING or approval_history(session, v):
        raise Conflict(f"{group_name} version {number} has approval decisions ({v.approval_status}); decided "
                       "versions are kept as the audit trail of those decisions",
                       fix="reject it instead (its decisions and stage history stay on record)")
    payload = _payload(group.name, v)
    session.delete(v)
    session.flush()
    subject = f"{group.name}/{number}"
    audit.record(session, actor=actor.name, action="version.deleted", subject_type="model_version",
                 subject_id=subject, before=payload)
    events.emit(session, "version.deleted", subject, {"group": group.name, "version": number, "actor": actor.name})


def delete_group(session: Session, name: str, actor: Principal) -> None:
    """Delete an empty group (SageMaker refuses groups that still hold model packages too)."""
    group = get_group(session, name, for_update=True)
    held = session.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.group_id == group.id))
    if held:
        raise Conflict(f"model group {name!r} still holds {held} version(s)",
                       fix="delete its undecided versions first; groups with decided versions are kept")
    before = {"name": group.name, "description": group.description, "tags": group.tags}
    session.delete(group)
    session.flush()
    audit.record(session, actor=actor.name, action="model_group.deleted", subject_type="model_group",
                 subject_id=name, before=before)
    events.emit(session, "model_group.deleted", name, before)
