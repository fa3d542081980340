"""Registry tables. "Model" means an ML model here, so rows are named after what they hold."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from mlgov import names
from mlgov.db import BIGINT_PK, Base, new_id, utcnow


class ModelGroup(Base):
    __tablename__ = "registry_model_groups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    # names.stored_reading_key(name), kept by _keep_reading_key: two names a reader cannot tell apart ("ｍ1" and
    # "m1") cannot both be stored, even by concurrent creates. None only for a look-alike created before 0028.
    reading_key: Mapped[str | None] = mapped_column(String(64), index=True, unique=True, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    stage_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    approval_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    governed_aliases: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)   # None: the default pair
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @validates("name")
    def _keep_reading_key(self, _field: str, name: str) -> str:
        self.reading_key = names.stored_reading_key(name)
        return name


class ModelVersion(Base):
    __tablename__ = "registry_model_versions"
    __table_args__ = (
        UniqueConstraint("group_id", "version"),
        # the newest version with a status (latest Approved) is one probe of this index, not a sort of them all
        Index("ix_registry_model_versions_group_status_version", "group_id", "approval_status", "version"),
        Index("ix_registry_model_versions_group_stage", "group_id", "stage"),
        Index("ix_registry_model_versions_group_created", "group_id", "created_at"),
        Index("ix_registry_model_versions_group_updated", "group_id", "updated_at", "version"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    approval_status: Mapped[str] = mapped_column(String(32), default="PendingManualApproval")
    approval_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    stage: Mapped[str | None] = mapped_column(String(63), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact_uri: Mapped[str] = mapped_column(String(2048))
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)   # None: unverified
    framework: Mapped[str | None] = mapped_column(String(64), nullable=True)
    framework_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    flavor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inference_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    model_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    domain: Mapped[str | None] = mapped_column(String(128), nullable=True)
    task: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model_card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    training_data: Mapped[list[str]] = mapped_column(JSON, default=list)
    training_job: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    triggered_by_alert: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    run_link: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    artifact_trusted: Mapped[bool] = mapped_column(default=False, server_default="0")
    bias_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # every attached report, with who and how
    evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    registered_by: Mapped[str] = mapped_column(String(128))
    registered_by_key: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    metadata_items: Mapped[list[VersionMetadata]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="VersionMetadata.key"
    )


VALUE_PREFIX = 200   # characters of a metadata value its index holds


class VersionMetadata(Base):
    """Customer metadata pairs as rows, so ``metadata=key=value`` filters use an index on both backends."""

    __tablename__ = "registry_version_metadata"
    # Indexed on the value's first VALUE_PREFIX characters: a whole value (up to 5,000, MLflow's tags) may pass
    # PostgreSQL's btree entry limit (~2.7 kB); an equality filter compares the prefix (`service._value_is`).
    __table_args__ = (Index("ix_registry_version_metadata_kv", "key", func.substr(text("value"), 1, VALUE_PREFIX)),)

    version_id: Mapped[str] = mapped_column(ForeignKey("registry_model_versions.id", ondelete="CASCADE"),
                                            primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ApprovalDecision(Base):
    __tablename__ = "registry_approval_decisions"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("registry_model_versions.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    actor_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    actor_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    policy_overridden: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # what an admin override waived
    # which evidence counted for the gate, and why
    evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StageTransition(Base):
    __tablename__ = "registry_stage_transitions"
    __table_args__ = (Index("ix_registry_stage_transitions_group_at", "group_id", "at"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id", ondelete="CASCADE"))
    version_id: Mapped[str] = mapped_column(ForeignKey("registry_model_versions.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(63), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(63))
    actor: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(String(32), default="requested")  # requested | displaced | registered
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Alias(Base):
    """A named pointer at one version of a group (MLflow's ``@champion``); governed names need an Approved
    version and an independent approver."""

    __tablename__ = "registry_aliases"

    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id", ondelete="CASCADE"),
                                          primary_key=True)
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("registry_model_versions.id", ondelete="CASCADE"), index=True)
    set_by: Mapped[str] = mapped_column(String(128))
    set_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AliasMove(Base):
    """Every alias change, kept so "what did @champion point at, at time T" stays answerable."""

    __tablename__ = "registry_alias_moves"
    __table_args__ = (Index("ix_registry_alias_moves_group_alias_at", "group_id", "alias", "at"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("registry_model_groups.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(255))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)   # None: the alias was removed
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelCardRecord(Base):
    """A named, versioned model card (SageMaker's ModelCard resource). When it documents a model version
    (``version_id``), the version's own ``model_card`` is kept in step with the card's current version, so the
    native API and DescribeModelPackage show the same card."""

    __tablename__ = "registry_model_cards"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    latest_version: Mapped[int] = mapped_column(Integer)
    version_id: Mapped[str | None] = mapped_column(ForeignKey("registry_model_versions.id", ondelete="SET NULL"),
                                                   nullable=True, unique=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_by_key: Mapped[str] = mapped_column(String(32))
    updated_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelCardVersion(Base):
    """Every state a model card has had: content and status as of that version, and who made it."""

    __tablename__ = "registry_model_card_versions"
    __table_args__ = (UniqueConstraint("card_id", "version"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    card_id: Mapped[str] = mapped_column(ForeignKey("registry_model_cards.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
