"""Lineage API shapes. Names follow SageMaker's (Ascendants/Descendants, ContributedTo, …)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from mlgov.types import Integer, Strict, Timestamp

Kind = Literal["artifact", "action", "context"]
AssociationType = Literal["ContributedTo", "AssociatedWith", "DerivedFrom", "Produced", "SameAs"]
ActionStatus = Literal["Unknown", "InProgress", "Completed", "Failed", "Stopping", "Stopped"]
Direction = Literal["Ascendants", "Descendants", "Both"]


TYPE_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"


def _type(v: str) -> str:
    if not re.fullmatch(TYPE_PATTERN, v):
        raise ValueError("must be 1-64 letters, digits, '_', '-' or '.' (e.g. Dataset, TrainingJob)")
    return v


TypeName = Annotated[str, AfterValidator(_type), Field(json_schema_extra={"pattern": TYPE_PATTERN})]


class ArtifactCreate(Strict):
    type: TypeName = Field(description="Dataset, Model, Image, Baseline, Report, Code, …")
    uri: str = Field(min_length=1, max_length=2048, description="where the artifact is; URIs under mlgov:// name "
                     "what mlgov records itself (model versions) and may only refer to existing ones")
    sha256: str | None = Field(default=None, description="content hash; a new hash for a known URI is a new node",
                               json_schema_extra={"pattern": "^[0-9a-fA-F]{64}$"})
    name: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=4000)
    properties: dict[str, Any] = Field(default_factory=dict, max_length=100)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("must be 64 hexadecimal characters")
        return v


class ActionCreate(Strict):
    type: TypeName = Field(description="TrainingJob, ProcessingJob, Approval, Deployment, …")
    name: str = Field(min_length=1, max_length=512)
    key: str | None = Field(default=None, max_length=1024, description="idempotency key; same key, same action")
    status: ActionStatus = "Unknown"
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    description: str | None = Field(default=None, max_length=4000)
    properties: dict[str, Any] = Field(default_factory=dict, max_length=100)


class ContextCreate(Strict):
    type: TypeName = Field(description="Endpoint, ModelGroup, Pipeline, Experiment, …")
    name: str = Field(min_length=1, max_length=512)
    key: str | None = Field(default=None, max_length=1024, description="default: type:name")
    description: str | None = Field(default=None, max_length=4000)
    properties: dict[str, Any] = Field(default_factory=dict, max_length=100)


class EntityUpdate(Strict):
    """Fields that may change after creation; identity (kind, type, uri, hash, key) never does."""

    name: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=4000)
    status: ActionStatus | None = Field(default=None, description="actions only")
    end_time: Timestamp | None = Field(default=None, description="actions only")
    properties: dict[str, Any] | None = Field(default=None, max_length=100, description="merged into existing")
    properties_to_remove: list[str] = Field(default_factory=list, max_length=100)


class EntityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: Kind
    type: str
    name: str | None
    uri: str | None
    sha256: str | None
    status: str | None
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    description: str | None
    properties: dict[str, Any]
    created_by: str
    created_at: dt.datetime
    system: bool = Field(default=False, description="recorded by mlgov itself (a version, approval, stage move, "
                         "deployment …) and protected, rather than by an API caller")


class AssociationCreate(Strict):
    source: str = Field(min_length=1, max_length=64, description="entity id")
    target: str = Field(min_length=1, max_length=64, description="entity id")
    type: AssociationType
    properties: dict[str, Any] = Field(default_factory=dict, max_length=50)


class AssociationRead(BaseModel):
    id: str
    source: str
    target: str
    type: str
    properties: dict[str, Any]
    created_by: str
    created_at: dt.datetime


class QueryFilters(Strict):
    kinds: list[Kind] | None = None
    types: list[str] | None = Field(default=None, max_length=20)
    association_types: list[AssociationType] | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None


class QueryRequest(Strict):
    start: list[str] = Field(min_length=1, max_length=100, description="entity ids or artifact URIs")
    direction: Direction = "Descendants"
    max_depth: Integer = Field(default=10, ge=1, le=50)
    include_edges: StrictBool = True
    filters: QueryFilters | None = None


class Vertex(BaseModel):
    id: str
    kind: Kind
    type: str
    name: str | None = None
    uri: str | None = None
    sha256: str | None = None
    status: str | None = None
    depth: int


class EdgeRead(BaseModel):
    source: str
    target: str
    type: str


class QueryResult(BaseModel):
    vertices: list[Vertex]
    edges: list[EdgeRead]
