"""Monitoring rows: baselines, analyses, endpoints and the index of captured records.

Captured payloads live in the object store (JSONL as SageMaker writes it, plus Parquet for analyses);
the database holds which batches exist and which event ids were accepted, so a batch is visible only once
its row commits and a retried record is recognised.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from mlgov.db import Base, new_id, utcnow


class Baseline(Base):
    __tablename__ = "monitor_baselines"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    source: Mapped[str] = mapped_column(String(16))          # computed | imported
    kind: Mapped[str] = mapped_column(String(32), default="DataQuality", server_default="DataQuality")
    problem_type: Mapped[str | None] = mapped_column(String(32), nullable=True)   # model quality only
    settings: Mapped[Any] = mapped_column(JSON, nullable=True)   # per kind: its columns (and threshold)
    dataset_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    dataset_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prefix: Mapped[str] = mapped_column(String(256))         # object-store folder of its files
    exact: Mapped[bool] = mapped_column(Boolean, default=False)   # every reference value kept (or losslessly)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    feature_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class VersionBaseline(Base):
    """SageMaker's DriftCheckBaselines: the baseline a model version is judged against."""

    __tablename__ = "monitor_version_baselines"
    __table_args__ = (UniqueConstraint("model_group", "model_version", "kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_group: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32), default="ModelDataQuality")
    baseline_id: Mapped[str] = mapped_column(ForeignKey("monitor_baselines.id"), index=True)
    attached_by: Mapped[str] = mapped_column(String(128))
    attached_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Analysis(Base):
    __tablename__ = "monitor_analyses"
    __table_args__ = (Index("ix_monitor_analyses_endpoint_created", "endpoint", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    baseline_id: Mapped[str] = mapped_column(ForeignKey("monitor_baselines.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))   # Completed | CompletedWithViolations | Failed
    kind: Mapped[str] = mapped_column(String(32), default="DataQuality", server_default="DataQuality")
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))   # file | uri | endpoint
    dataset_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(63), nullable=True)
    window_start: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    window_end: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    violation_count: Mapped[int] = mapped_column(Integer, default=0)
    drift_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    dataset_drift: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    drifted_features: Mapped[Any] = mapped_column(JSON, default=list)
    prefix: Mapped[str] = mapped_column(String(256))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Endpoint(Base):
    __tablename__ = "monitor_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model_group: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(63), default="AllTraffic")
    sampling_percentage: Mapped[float] = mapped_column(Float, default=100.0)
    schema: Mapped[Any] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaptureBatch(Base):
    __tablename__ = "monitor_capture_batches"
    __table_args__ = (Index("ix_monitor_capture_batches_endpoint_hour", "endpoint_id", "hour"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("monitor_endpoints.id", ondelete="CASCADE"))
    hour: Mapped[dt.datetime] = mapped_column()
    jsonl_key: Mapped[str] = mapped_column(String(512))
    parquet_key: Mapped[str] = mapped_column(String(512))
    records: Mapped[int] = mapped_column(Integer)
    first_time: Mapped[dt.datetime] = mapped_column()
    last_time: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaptureEvent(Base):
    __tablename__ = "monitor_capture_events"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),
                      Index("ix_monitor_capture_events_inference", "inference_id", "endpoint_id",
                            postgresql_where=text("inference_id IS NOT NULL"),
                            sqlite_where=text("inference_id IS NOT NULL")))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("monitor_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    inference_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    inference_time: Mapped[dt.datetime] = mapped_column()
    batch_id: Mapped[str] = mapped_column(ForeignKey("monitor_capture_batches.id", ondelete="CASCADE"), index=True)


class GroundTruth(Base):
    """A label that arrived for an endpoint, keyed by the capture's inferenceId (else its eventId)."""

    __tablename__ = "monitor_ground_truth"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("monitor_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(Text)
    arrived_hour: Mapped[dt.datetime] = mapped_column()
    object_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Schedule(Base):
    """A monitoring schedule; ``next_run_at`` is the scheduler's job state, kept in the database."""

    __tablename__ = "monitor_schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    endpoint: Mapped[str] = mapped_column(String(63), index=True)
    type: Mapped[str] = mapped_column(String(32))
    expression: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[str] = mapped_column(String(32), default="-PT1H")
    window_end: Mapped[str] = mapped_column(String(32), default="PT0S")
    baseline_id: Mapped[str] = mapped_column(ForeignKey("monitor_baselines.id"))
    drift: Mapped[Any] = mapped_column(JSON, nullable=True)
    alerting: Mapped[Any] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="Scheduled")   # Scheduled | Stopped
    output_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)   # reports published there too
    job_definition: Mapped[str | None] = mapped_column(String(63), nullable=True)   # the JobDefinition it runs
    next_run_at: Mapped[dt.datetime] = mapped_column(index=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # where the next import of the job definition's GroundTruthS3Input starts, and the folder it was read from
    labels_folder: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    labels_read_through: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobDefinition(Base):
    """A monitoring job definition (SageMaker's DataQuality/ModelQuality/… JobDefinition): what a schedule runs —
    its endpoint, baseline, window offsets and where its reports are published. ``spec`` keeps the definition
    as it was given, so it reads back unchanged."""

    __tablename__ = "monitor_job_definitions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(63), index=True)
    baseline_id: Mapped[str] = mapped_column(ForeignKey("monitor_baselines.id"))
    window_start: Mapped[str] = mapped_column(String(32), default="-PT1H")
    window_end: Mapped[str] = mapped_column(String(32), default="PT0S")
    output_uri: Mapped[str] = mapped_column(String(2048))
    spec: Mapped[Any] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProcessingJob(Base):
    """A baselining job run by mlgov's own engine (SageMaker's model-monitor analyzer, never pulled): the dataset
    read from the object store, statistics.json and constraints.json written to ``output_uri`` and kept as a
    baseline (``baseline_id``)."""

    __tablename__ = "monitor_processing_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="InProgress")   # InProgress | Completed | Failed
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    dataset_uri: Mapped[str] = mapped_column(String(2048))
    output_uri: Mapped[str] = mapped_column(String(2048))
    baseline_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    spec: Mapped[Any] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Execution(Base):
    """One run of a schedule. The unique (schedule, fire time) key is the claim: whichever scheduler process
    inserts it runs it, so two processes never run the same due run twice."""

    __tablename__ = "monitor_executions"
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("monitor_schedules.id", ondelete="CASCADE"), index=True)
    scheduled_for: Mapped[dt.datetime] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")   # schedule | manual
    status: Mapped[str] = mapped_column(String(32), default="Pending")
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    window_start: Mapped[dt.datetime] = mapped_column()
    window_end: Mapped[dt.datetime] = mapped_column()
    analysis_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    violation_count: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """One breach, keyed by (schedule, subject, check): the subject is the metric or feature that breached
    (``auc``, ``income``), so one alert never mixes two metrics that share a comparison operator. An empty subject
    marks an alert opened before alerts had subjects (migration 0012): it stands for its whole check."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (Index("ix_monitor_alerts_schedule_status", "schedule_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("monitor_schedules.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256), default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default="open")   # open | resolved
    model_group: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    opened_execution_id: Mapped[str] = mapped_column(String(32))
    last_execution_id: Mapped[str] = mapped_column(String(32))
    details: Mapped[Any] = mapped_column(JSON, default=list)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class RetrainingTrigger(Base):
    __tablename__ = "monitor_retraining_triggers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_group: Mapped[str] = mapped_column(String(256), unique=True)
    webhook_id: Mapped[str] = mapped_column(String(32))
    cooldown_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    last_triggered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
