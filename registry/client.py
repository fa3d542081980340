"""The registry's SDK methods: model groups, versions, approvals, stages and the compliance report.

They return the models the registry's routes return (``registry.schemas``); ``mlgov.client.Client`` composes them
with the other domains' methods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from mlgov.api import AuditEventRead
from mlgov.sdk import UNSET, BaseClient, Call, Pager, Unset, body, pairs, route
from registry.schemas import (
    AliasesAt,
    ApprovalDecisionRead,
    ApprovalPolicy,
    GroupRead,
    InferenceSpec,
    ModelCard,
    ModelMetrics,
    SourceInfo,
    StageConfig,
    StageOccupant,
    StageTransitionRead,
    TrainingJobRef,
    VersionRead,
)

Time = dt.datetime | str
VERSION = "/api/v1/model-groups/{group}/versions/{version}"


class RegistryClient(BaseClient):
    """Model groups, versions, four-eyes approvals, lifecycle stages, compliance reports."""

    # groups
    @route("POST", "/api/v1/model-groups")
    def create_model_group(self, call: Call, name: str, description: str | None = None,
                           tags: Mapping[str, str] | None = None,
                           stage_config: StageConfig | Mapping[str, Any] | None = None) -> GroupRead:
        return call.model(GroupRead, json=body({"name": name, "description": description, "tags": tags,
                                                "stage_config": stage_config}))

    @route("GET", "/api/v1/model-groups")
    def list_model_groups(self, call: Call, name_contains: str | None = None, tags: Mapping[str, str] | None = None,
                          sort: str = "name", *, page_size: int = 100) -> Pager[GroupRead]:
        """``tags`` must all match; ``sort`` is name, -name, created_at or -created_at."""
        return call.pager(GroupRead, params={"name_contains": name_contains, "tag": pairs(tags), "sort": sort},
                          page_size=page_size)

    @route("GET", "/api/v1/model-groups/{group}")
    def get_model_group(self, call: Call, name: str) -> GroupRead:
        return call.model(GroupRead, {"group": name})

    @route("PATCH", "/api/v1/model-groups/{group}")
    def update_model_group(self, call: Call, name: str, *, description: str | Unset | None = UNSET,
                           tags: Mapping[str, str] | Unset = UNSET,
                           stage_config: StageConfig | Mapping[str, Any] | Unset = UNSET,
                           approval_policy: ApprovalPolicy | Mapping[str, Any] | Unset | None = UNSET) -> GroupRead:
        """Only the arguments given change; ``None`` clears a description or an approval policy (admin)."""
        return call.model(GroupRead, {"group": name}, json=body(
            {"description": description, "tags": tags, "stage_config": stage_config,
             "approval_policy": approval_policy}, keep_none=True))

    # versions
    @route("POST", "/api/v1/model-groups/{group}/versions")
    def register_version(self, call: Call, group: str, artifact_uri: str, artifact_sha256: str, *,
                         description: str | None = None, framework: str | None = None,
                         framework_version: str | None = None, flavor: str | None = None,
                         inference_spec: InferenceSpec | Mapping[str, Any] | None = None,
                         metrics: Mapping[str, float] | None = None,
                         model_metrics: ModelMetrics | Mapping[str, Any] | None = None,
                         metadata: Mapping[str, str] | None = None, domain: str | None = None,
                         task: str | None = None, model_card: ModelCard | Mapping[str, Any] | None = None,
                         training_data: Sequence[str] | None = None,
                         training_job: TrainingJobRef | Mapping[str, Any] | None = None,
                         source: SourceInfo | Mapping[str, Any] | None = None,
                         triggered_by_alert: str | None = None) -> VersionRead:
        """A new version, numbered next in its group, PendingManualApproval; ``triggered_by_alert`` names the
        monitoring alert whose retraining made it."""
        return call.model(VersionRead, {"group": group}, json=body({
            "artifact_uri": artifact_uri, "artifact_sha256": artifact_sha256, "description": description,
            "framework": framework, "framework_version": framework_version, "flavor": flavor,
            "inference_spec": inference_spec, "metrics": metrics, "model_metrics": model_metrics,
            "metadata": metadata, "domain": domain, "task": task, "model_card": model_card,
            "training_data": list(training_data) if training_data is not None else None,
            "training_job": training_job, "source": source, "triggered_by_alert": triggered_by_alert}))

    create_version = register_version

    @route("GET", "/api/v1/model-groups/{group}/versions")
    def list_versions(self, call: Call, group: str, status: str | None = None, stage: str | None = None,
                      created_after: Time | None = None, created_before: Time | None = None,
                      metadata: Mapping[str, str] | None = None, sort: str = "-version", *,
                      page_size: int = 100) -> Pager[VersionRead]:
        """Newest first by default; ``metadata`` pairs must all match."""
        return call.pager(VersionRead, {"group": group}, params={
            "status": status, "stage": stage, "created_after": created_after, "created_before": created_before,
            "metadata": pairs(metadata), "sort": sort}, page_size=page_size)

    @route("GET", "/api/v1/model-groups/{group}/versions/latest")
    def latest_version(self, call: Call, group: str, status: str | None = None) -> VersionRead:
        return call.model(VersionRead, {"group": group}, params={"status": status})

    get_latest_version = latest_version

    @route("GET", VERSION)
    def get_version(self, call: Call, group: str, version: int) -> VersionRead:
        return call.model(VersionRead, {"group": group, "version": version})

    # approvals
    @route("POST", VERSION + "/approval")
    def decide(self, call: Call, group: str, version: int, status: str, comment: str,
               expected_status: str | None = None, override_policy: bool = False) -> VersionRead:
        """Approved or Rejected, with the reason. Four-eyes: never by the registrant's owner. ``expected_status``
        guards against a concurrent decision (Conflict); ``override_policy`` (admin) approves despite the group's
        policy, recorded. The answer's ``approval_evidence`` says which evidence counted."""
        return call.model(VersionRead, {"group": group, "version": version}, json=body({
            "status": status, "comment": comment, "expected_status": expected_status,
            "override_policy": override_policy or None}))

    def approve(self, group: str, version: int, comment: str, expected_status: str | None = None,
                override_policy: bool = False) -> VersionRead:
        return self.decide(group, version, "Approved", comment, expected_status, override_policy)

    def reject(self, group: str, version: int, comment: str, expected_status: str | None = None) -> VersionRead:
        return self.decide(group, version, "Rejected", comment, expected_status)

    @route("GET", VERSION + "/approvals")
    def approvals(self, call: Call, group: str, version: int) -> list[ApprovalDecisionRead]:
        """The version's approval decisions, oldest first."""
        return call.models(ApprovalDecisionRead, {"group": group, "version": version})

    list_approvals = approvals

    @route("POST", VERSION + "/artifact-trust")
    def set_artifact_trust(self, call: Call, group: str, version: int, trusted: bool, reason: str) -> VersionRead:
        """Admin: allow (or stop allowing) the artifact to be loaded with pickle/joblib for explanations."""
        return call.model(VersionRead, {"group": group, "version": version},
                          json={"trusted": trusted, "reason": reason})

    # stages
    @route("POST", VERSION + "/stage")
    def move_stage(self, call: Call, group: str, version: int, stage: str, comment: str | None = None,
                   expected_stage: str | None = None) -> VersionRead:
        return call.model(VersionRead, {"group": group, "version": version}, json=body(
            {"stage": stage, "comment": comment, "expected_stage": expected_stage}))

    @route("GET", "/api/v1/model-groups/{group}/stage-history")
    def stage_history(self, call: Call, group: str, version: int | None = None) -> list[StageTransitionRead]:
        return call.models(StageTransitionRead, {"group": group}, params={"version": version})

    list_stage_history = stage_history

    @route("GET", "/api/v1/model-groups/{group}/stages/{stage}")
    def stage_occupants(self, call: Call, group: str, stage: str, at: Time | None = None) -> StageOccupant:
        """The versions in ``stage`` now, or at time ``at``."""
        return call.model(StageOccupant, {"group": group, "stage": stage}, params={"at": at})

    get_stage = stage_occupants

    @route("GET", "/api/v1/model-groups/{group}/aliases")
    def aliases_at(self, call: Call, group: str, at: Time | None = None) -> AliasesAt:
        """Where every alias (``@champion`` …) pointed now, or at time ``at`` (from the audited alias moves)."""
        return call.model(AliasesAt, {"group": group}, params={"at": at})

    @route("GET", "/api/v1/model-groups/{group}/audit-events")
    def list_group_audit_events(self, call: Call, group: str, *, actor: str | None = None,
                                action: str | None = None, since: Time | None = None, until: Time | None = None,
                                page_size: int = 100) -> Pager[AuditEventRead]:
        """The group's and its versions' audit events, oldest first, under every name the group has had."""
        return call.pager(AuditEventRead, {"group": group},
                          params={"actor": actor, "action": action, "from": since, "to": until}, page_size=page_size)

    # compliance report
    @route("GET", "/api/v1/audit/report")
    def compliance_report(self, call: Call, model_group: str, since: Time | None = None,
                          until: Time | None = None) -> dict[str, Any]:
        """Who registered, decided and moved each version of a group, on what evidence, with the flags."""
        return call.json(params={"model_group": model_group, "from": since, "to": until, "format": "json"})

    @route("GET", "/api/v1/audit/report")
    def compliance_report_html(self, call: Call, model_group: str, since: Time | None = None,
                               until: Time | None = None) -> str:
        return call.text(params={"model_group": model_group, "from": since, "to": until, "format": "html"})

    def audit_report(self, model_group: str, since: Time | None = None, until: Time | None = None,
                     format: str = "json") -> dict[str, Any] | str:
        """``compliance_report`` or, with ``format="html"``, ``compliance_report_html``."""
        if format == "html":
            return self.compliance_report_html(model_group, since, until)
        return self.compliance_report(model_group, since, until)
