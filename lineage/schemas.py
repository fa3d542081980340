"""Lineage API shapes. Names follow SageMaker's (Ascendants/Descendants, ContributedTo, …)."""

from __future__ import annotations

import datetime as dt
import json
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

PROPERTIES_MAX = 100_000
"""Characters of compact JSON an entity's properties may take: a lineage node describes, it does not carry the
data (a trial stored a 5 MB value, then returned on every read and in every audit event of the entity)."""


def properties_size(props: dict[str, Any]) -> int:
    return len(json.dumps(props, separators=(",", ":"), ensure_ascii=False, default=str))


def properties_size_problem(size: int) -> str | None:
    return None if size <= PROPERTIES_MAX else \
        f"take {size:,} characters as JSON; at most {PROPERTIES_MAX:,} fit (store large content elsewhere and link it)"


def _sized(props: dict[str, Any]) -> dict[str, Any]:
    problem = properties_size_problem(properties_size(props))
    if problem:
        raise ValueError(problem)
    return props


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v


Properties = Annotated[dict[str, Any], AfterValidator(_sized)]


class ArtifactCreate(Strict):
    type: TypeName = Field(description="Dataset, Model, Image, Baseline, Report, Code, …")
    uri: Annotated[str, AfterValidator(_not_blank)] = Field(
        min_length=1, max_length=2048, description="where the artifact is; URIs under mlgov:// name "
                     "what mlgov records itself (model versions) and may only refer to existing ones")
    sha256: str | None = Field(default=None, description="content hash; a new hash for a known URI is a new node",
                               json_schema_extra={"pattern": "^[0-9a-fA-F]{64}$"})
    name: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=4000)
    properties: Properties = Field(default_factory=dict, max_length=100)

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
    properties: Properties = Field(default_factory=dict, max_length=100)


class ContextCreate(Strict):
    type: TypeName = Field(description="Endpoint, ModelGroup, Pipeline, Experiment, …")
    name: str = Field(min_length=1, max_length=512)
    key: str | None = Field(default=None, max_length=1024, description="default: type:name")
    description: str | None = Field(default=None, max_length=4000)
    properties: Properties = Field(default_factory=dict, max_length=100)


class EntityUpdate(Strict):
    """Fields that may change after creation; identity (kind, type, uri, hash, key) never does."""

    name: str | None = Field(default=None, max_length=512)
    description: str | None = Field(default=None, max_length=4000)
    status: ActionStatus | None = Field(default=None, description="actions only")
    end_time: Timestamp | None = Field(default=None, description="actions only")
    properties: Properties | None = Field(default=None, max_length=100, description="merged into existing")
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
    properties: Properties = Field(default_factory=dict, max_length=50)


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
    max_depth: Integer = Field(default=10, ge=0, le=50, description="associations walked from a start; 0: the starts "
                                "alone")
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
