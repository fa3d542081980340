"""Lineage rows: one table of entities (artifact | action | context) and one of typed edges.

One entity table keeps the recursive walk a single self-join on ``lineage_edges``.
``identity`` is what makes an entity the same entity: ``uri#sha256`` for artifacts (so an overwritten file
is a new node), a caller-chosen key for actions and contexts; unique per kind.
``system`` marks what mlgov recorded itself (registrations, approvals, stage moves, baselines, deployments,
alerts): evidence that no API caller may patch or delete. ``creator_owner`` is the owner of the key that
created a user entity, who (or an admin) may change it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, new_id, utcnow


class Entity(Base):
    __tablename__ = "lineage_entities"
    __table_args__ = (
        UniqueConstraint("kind", "identity"),
        Index("ix_lineage_entities_uri", "uri"),
        Index("ix_lineage_entities_kind_type", "kind", "type"),
        # lists page one kind in creation order: without it a page is a scan and sort of every entity of the kind
        Index("ix_lineage_entities_kind_created", "kind", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # artifact | action | context
    type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    identity: Mapped[str] = mapped_column(String(2200))
    uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    start_time: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    end_time: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    creator_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    system: Mapped[bool] = mapped_column(Boolean, default=True, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Edge(Base):
    __tablename__ = "lineage_edges"
    __table_args__ = (
        UniqueConstraint("source_id", "target_id", "type"),
        Index("ix_lineage_edges_target", "target_id", "source_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source_id: Mapped[str] = mapped_column(ForeignKey("lineage_entities.id", ondelete="CASCADE"))
    target_id: Mapped[str] = mapped_column(ForeignKey("lineage_entities.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    creator_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    system: Mapped[bool] = mapped_column(Boolean, default=True, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
