"""Request and response shapes of the registry API (Create / Read / Update families)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
    field_validator,
    model_validator,
)

from mlgov.names import readable_problem
from mlgov.types import Strict, Timestamp

ApprovalStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
Decision = Literal["Approved", "Rejected"]
CardStatus = Literal["Draft", "PendingReview", "Approved", "Archived"]

# MLflow allows 256; the subject of a version's audit events and webhooks, "<name>/<version>", must fit in 256 too.
GROUP_NAME_MAX = 245
def group_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a model group, or None. MLflow's rule for registered models (``fraud_model``,
    ``team.churn`` and SageMaker's names all pass): not blank, no ``/`` or ``:``, not ``.`` nor starting with
    ``..`` (names become path segments); at most 245 characters (MLflow's 256 less a version's suffix). Stricter,
    because approvers must be able to tell two names apart by reading them: `names.readable_problem`."""
    if not name.strip():
        return "must not be blank"
    if len(name) > GROUP_NAME_MAX:
        return f"must be at most {GROUP_NAME_MAX} characters, got {len(name)}"
    if "/" in name or ":" in name:
        return "must not contain '/' or ':'"
    if name == "." or name.startswith(".."):
        return "must not be '.' or start with '..'"
    return readable_problem(name)


STAGE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")

ShortStr = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


SHA256_PATTERN = "^[0-9a-fA-F]{64}$"


def _sha256(v: str) -> str:
    v = v.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise ValueError("must be 64 hexadecimal characters (a SHA-256 digest)")
    return v


Sha256 = Annotated[str, AfterValidator(_sha256), Field(json_schema_extra={"pattern": SHA256_PATTERN})]


DESCRIPTION_MAX = 5000   # MLflow's limit (SageMaker's is 1024: its own clients check that before sending)


# --- stages -------------------------------------------------------------------------------------------

class StageDef(Strict):
    name: str = Field(pattern=STAGE_NAME_RE.pattern)
    exclusive: StrictBool = Field(default=False,
                                  description="holds at most one version; moving one in moves the other out")
    requires_approval: StrictBool = Field(default=False, description="only Approved versions may enter")
    displace_to: str | None = Field(default=None, description="where an exclusive stage's previous version goes")


class StageConfig(Strict):
    stages: list[StageDef] = Field(min_length=1, max_length=20)
    initial: str
    transitions: dict[str, list[str]]

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique")
        known = set(names)
        if self.initial not in known:
            raise ValueError(f"initial stage {self.initial!r} is not one of the stages {names}")
        for src, dsts in self.transitions.items():
            bad = [d for d in [src, *dsts] if d not in known]
            if bad:
                raise ValueError(f"transitions name unknown stage(s) {bad}; known stages are {names}")
        for s in self.stages:
            if s.displace_to is not None and s.displace_to not in known:
                raise ValueError(f"stage {s.name!r} displaces to unknown stage {s.displace_to!r}")
        return self


DEFAULT_STAGES = StageConfig(
    stages=[
        StageDef(name="Development"),
        StageDef(name="Staging"),
        StageDef(name="Production", exclusive=True, requires_approval=True, displace_to="Archived"),
        StageDef(name="Archived"),
    ],
    initial="Development",
    transitions={
        "Development": ["Staging", "Archived"],
        "Staging": ["Production", "Development", "Archived"],
        "Production": ["Staging", "Archived"],
        "Archived": ["Development"],
    },
)


# --- groups -------------------------------------------------------------------------------------------

# Tags and metadata: MLflow's key length, values as long as a description (MLflow's own go further), 100 pairs.
TAG_KEY_MAX, TAG_VALUE_MAX, TAGS_MAX = 250, 5000, 100
TAG_LIMITS = f"tags: at most {TAGS_MAX}, keys up to {TAG_KEY_MAX} and values up to {TAG_VALUE_MAX:,} characters"
Tags = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=TAG_KEY_MAX)],
                      Annotated[str, StringConstraints(max_length=TAG_VALUE_MAX)]], Field(max_length=TAGS_MAX)]


class GroupCreate(Strict):
    name: str = Field(min_length=1, max_length=GROUP_NAME_MAX,
                      description=f"up to {GROUP_NAME_MAX} characters, without '/', ':', control or invisible "
                                  "characters, in NFC (MLflow's rule, made readable)")
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    tags: Tags = Field(default_factory=dict)
    stage_config: StageConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = group_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class ApprovalPolicy(Strict):
    """Evidence a version needs before it can be Approved (admins may override, audited)."""

    require_bias_report: StrictBool = False
    require_artifact_hash: StrictBool = Field(default=False, description="refuse approval of versions without a "
                                              "sha256 (registered through MLflow from a source mlgov could not read)")
    bias_limits: dict[str, StrictFloat] = Field(default_factory=dict, description="metric → largest allowed |value| "
                                          "(for DI: largest allowed |1 − DI|); default DPPL/DPL 0.1, DI 0.2")


ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
DEFAULT_GOVERNED_ALIASES = ("champion", "production")
AliasName = Annotated[str, StringConstraints(pattern=ALIAS_RE.pattern)]


class GroupUpdate(Strict):
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    tags: Tags | None = None
    stage_config: StageConfig | None = None
    approval_policy: ApprovalPolicy | None = None
    governed_aliases: list[AliasName] | None = Field(
        default=None, max_length=50, description="admin only: aliases that may point only at Approved versions and "
        f"only be moved by an approver independent of the registrant (default {list(DEFAULT_GOVERNED_ALIASES)})")


class GroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    description: str | None
    tags: dict[str, str]
    stage_config: StageConfig
    approval_policy: ApprovalPolicy | None = None
    governed_aliases: list[str] = Field(default_factory=lambda: list(DEFAULT_GOVERNED_ALIASES))
    latest_version: int = Field(description="the last version number the group gave; numbers are never reused, so "
                                "after a deletion it may name no version (GET …/versions/latest reads the newest)")
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @field_validator("governed_aliases", mode="before")
    @classmethod
    def _default_aliases(cls, v: Any) -> Any:
        return list(DEFAULT_GOVERNED_ALIASES) if v is None else v


# --- versions -----------------------------------------------------------------------------------------

class InferenceSpec(Strict):
    image: str | None = Field(default=None, max_length=255)
    image_digest: str | None = Field(default=None, max_length=72)
    environment: dict[str, str] = Field(default_factory=dict, max_length=100)
    supported_content_types: list[ShortStr] = Field(default_factory=list, max_length=30)
    supported_response_mime_types: list[ShortStr] = Field(default_factory=list, max_length=30)
    supported_realtime_inference_instance_types: list[ShortStr] = Field(default_factory=list, max_length=30)
    supported_transform_instance_types: list[ShortStr] = Field(default_factory=list, max_length=30)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


class MetricsSource(Strict):
    content_type: str = Field(min_length=1, max_length=256)
    uri: Uri
    content_digest: Sha256 | None = None


class ModelMetrics(Strict):
    """SageMaker's ModelMetrics: where the quality, data-quality, bias and explainability reports live."""

    model_quality: dict[Literal["statistics", "constraints"], MetricsSource] = Field(default_factory=dict)
    model_data_quality: dict[Literal["statistics", "constraints"], MetricsSource] = Field(default_factory=dict)
    bias: dict[Literal["report", "pre_training_report", "post_training_report"], MetricsSource] = Field(
        default_factory=dict)
    explainability: dict[Literal["report"], MetricsSource] = Field(default_factory=dict)


CARD_MAX = 100_000   # characters: SageMaker's limit on a model card's Content (its JSON), and on the markdown


class ModelCard(Strict):
    status: CardStatus = "Draft"
    content: dict[str, Any] = Field(default_factory=dict, description=(
        f"structured card (intended uses, risks …); at most {CARD_MAX:,} characters as compact JSON"))
    markdown: str = Field(default="", max_length=CARD_MAX)

    @field_validator("content")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Unbounded content made every page and report that shows the card as large as it (a 30 MB card took a
        minute to load in the console, and the audit log embeds each change)."""
        size = len(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
        if size > CARD_MAX:
            raise ValueError(f"is {size:,} characters as JSON, over the limit of {CARD_MAX:,} (SageMaker's for "
                             "a card's Content): keep long material in a document the card links to")
        return v


class TrainingJobRef(Strict):
    name: str = Field(min_length=1, max_length=256)
    uri: Uri | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=200)


class SourceInfo(Strict):
    """SageMaker's MetadataProperties: where the version came from."""

    commit_id: str | None = Field(default=None, max_length=1024)
    repository: str | None = Field(default=None, max_length=1024)
    generated_by: str | None = Field(default=None, max_length=1024)
    project_id: str | None = Field(default=None, max_length=1024)


MetricValue = Annotated[StrictFloat, Field(allow_inf_nan=False)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=TAG_KEY_MAX)]
MetaValue = Annotated[str, StringConstraints(max_length=TAG_VALUE_MAX)]


class VersionFields(Strict):
    """Everything a registration carries. ``artifact_sha256`` may be missing only where mlgov is not given a hash
    and could not compute one (the MLflow door, for a source outside mlgov's store): such a version is
    unverified, and a group's policy may refuse to approve it."""

    artifact_uri: Uri
    artifact_sha256: Sha256 | None = None
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    framework: str | None = Field(default=None, max_length=64)
    framework_version: str | None = Field(default=None, max_length=64)
    flavor: str | None = Field(default=None, max_length=64)
    inference_spec: InferenceSpec | None = None
    metrics: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], MetricValue] = Field(
        default_factory=dict, max_length=500)
    model_metrics: ModelMetrics | None = None
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict, max_length=TAGS_MAX)
    domain: str | None = Field(default=None, max_length=128)
    task: str | None = Field(default=None, max_length=128)
    model_card: ModelCard | None = None
    training_data: list[Uri] = Field(default_factory=list, max_length=100)
    training_job: TrainingJobRef | None = None
    source: SourceInfo | None = None
    triggered_by_alert: str | None = Field(default=None, max_length=64,
                                           description="id of the monitoring alert whose retraining made this version")
    run_id: str | None = Field(default=None, max_length=256, description="the training run (e.g. an MLflow run id)")
    run_link: Uri | None = Field(default=None, description="where the training run can be seen")


class VersionCreate(VersionFields):
    artifact_sha256: Sha256


class VersionRead(BaseModel):
    group: str
    version: int
    approval_status: ApprovalStatus
    approval_description: str | None
    stage: str | None
    description: str | None
    artifact_uri: str
    artifact_sha256: str | None = Field(description="null: registered without a hash mlgov could verify")
    framework: str | None
    framework_version: str | None
    flavor: str | None
    inference_spec: dict[str, Any] | None
    metrics: dict[str, float]
    model_metrics: dict[str, Any] | None
    metadata: dict[str, str]
    domain: str | None
    task: str | None
    model_card: dict[str, Any] | None
    training_data: list[str]
    training_job: dict[str, Any] | None
    source: dict[str, Any] | None
    triggered_by_alert: str | None = None
    run_id: str | None = None
    run_link: str | None = None
    artifact_trusted: bool = False
    bias_report: dict[str, Any] | None = None
    registered_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    approval_evidence: dict[str, Any] | None = Field(
        default=None, description="approval responses only: which evidence counted for the policy gate and why, "
                                  "which did not, and what an admin override waived")


class ApprovalRequest(Strict):
    status: Decision
    comment: str = Field(min_length=1, max_length=4000, description="why; required for the audit trail")
    expected_status: ApprovalStatus | None = Field(default=None, description="optimistic concurrency guard")
    override_policy: StrictBool = Field(default=False, description=(
        "admin only: approve despite a missing or failing bias report the group's policy requires (flagged in "
        "the compliance report); it does not waive require_artifact_hash"))

    @field_validator("comment")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class TrustRequest(Strict):
    trusted: StrictBool
    reason: str = Field(min_length=1, max_length=2000, description="why this artifact may be unpickled")


class StageRequest(Strict):
    stage: str = Field(min_length=1, max_length=63)
    comment: str | None = Field(default=None, max_length=4000)
    expected_stage: str | None = Field(default=None, max_length=63)
    archive_others: StrictBool = Field(
        default=False, description="also move the other versions in the target stage to Archived (if the group "
        "has that stage; otherwise to its initial stage), as MLflow's archive_existing_versions does")


class ApprovalDecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    from_status: str
    to_status: str
    comment: str
    actor: str
    at: dt.datetime


class StageTransitionRead(BaseModel):
    version: int
    from_stage: str | None
    to_stage: str
    actor: str
    comment: str | None
    reason: str
    at: dt.datetime


class AliasesAt(BaseModel):
    group: str
    at: dt.datetime
    aliases: dict[str, int] = Field(description="alias → the version it pointed at, at `at`")


class StageOccupant(BaseModel):
    group: str
    stage: str
    at: dt.datetime
    versions: list[int]


SearchOp = Literal["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN", ">", ">=", "<", "<=", "CONTAINS", "EXISTS",
                   "NOT EXISTS"]


class SearchClause(BaseModel):
    """One condition of a search: ``field op value`` (``field`` "tag" compares the tag named ``key``). Values are
    text as the caller sent them; the service reads them as the field's type (integers, ISO-8601 or epoch-second
    times). ``CONTAINS`` is a case-insensitive substring; ``EXISTS``/``NOT EXISTS`` ignore the value."""

    model_config = ConfigDict(frozen=True)
    field: str
    op: SearchOp
    value: str | list[str] = ""
    key: str | None = None
    label: str | None = None   # the caller's name of the field (SageMaker's ModelPackageVersion), for errors


class SearchGroup(BaseModel):
    """Clauses (or further groups) joined by AND or OR: a search expression is a tree of these."""

    model_config = ConfigDict(frozen=True)
    join: Literal["AND", "OR"] = "AND"
    items: list[SearchClause | SearchGroup]


SearchTerm = SearchClause | SearchGroup
