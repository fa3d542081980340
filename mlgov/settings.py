"""Settings read from the environment (prefix ``MLGOV_``); embedded defaults live under ``./.mlgov/``."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLGOV_", extra="ignore")

    home: Path = Field(default=Path(".mlgov"), description="Directory for embedded state.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    store_url: str | None = Field(default=None, description="file:///dir or s3://bucket/prefix.")
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"

    max_body_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=8, le=512, description="deepest JSON nesting accepted in any input")
    max_columns: int = Field(default=2000, ge=1, description="widest CSV/Parquet table accepted in an upload")
    background_workers: bool = Field(default=True, description="Run the webhook dispatcher in-process.")
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_base_s: float = Field(default=2.0, gt=0)
    webhook_backoff_max_s: float = Field(default=600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    dispatcher_poll_s: float = Field(default=1.0, gt=0)
    log_sql: bool = False
    bootstrap_admin: bool = Field(default=True, description="`mlgov serve` with no active admin key creates one "
                                  "and writes it to <home>/admin.key; off where home is scratch space (Kubernetes)")

    outbound_allow: str = Field(default="", description="hostnames and CIDRs the server may call although they "
                                "are loopback/private/link-local (comma-separated), e.g. 'hooks.internal,10.0.0.0/8'")
    outbound_connect_timeout_s: float = Field(default=5.0, gt=0, description="connect timeout of outbound requests")
    outbound_read_timeout_s: float = Field(default=60.0, gt=0, description="read timeout of outbound requests")
    outbound_max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                             description="outbound replies larger than this are cut off and refused")
    secrets_key: SecretStr | None = Field(default=None, description="Fernet key(s), comma-separated, newest first, "
                                          "for secrets stored encrypted; default: a 0600 file under home")
    audit_key: SecretStr | None = Field(default=None, description="HMAC key of the audit chain (hex or text); "
                                        "default: a random key in <home>/audit.key (0600) made on first start")
    audit_accept_new_key: bool = Field(
        default=False, description="write audit events although the log's newest one was signed with another key "
        "(only after the old key is lost for good: `mlgov audit verify` reports the break from then on); off, a "
        "process with another key than the others refuses to write")
    audit_checkpoint_every: int = Field(default=100, ge=1, description="write a signed checkpoint of the audit "
                                        "head to the object store every N events")
    # Requests wait their turn for the database (FIFO, on the event loop: no thread, no connection held) instead of
    # piling up on the pool or SQLite's lock; past db_wait_timeout_s they get 503 with Retry-After.
    db_read_sessions: int = Field(default=16, ge=1, le=64, description="requests holding a read session at once")
    # Threads running request handlers in one `mlgov serve` process (anyio's pool; 40 by default there). More
    # runnable Python threads than cores fight over the GIL and starve the event loop that reads and answers every
    # connection: at 16 connections, plain reads had p99 0.2-1.8 s with 40 or 8 threads, 20-35 ms with 4. The server
    # then admits fewer writers than threads (db_write_sessions is capped at request_threads - 1).
    request_threads: int = Field(default=4, ge=2, le=256,
                                 description="threads per server process that run request handlers")
    db_write_sessions: int = Field(default=8, ge=1, le=32,
                                   description="PostgreSQL: requests writing at once (SQLite: always one per process)")
    db_wait_timeout_s: float = Field(default=30.0, gt=0, description="wait for a database turn before answering 503")
    db_pool_size: int | None = Field(default=None, ge=1, description="override; default sized from the session limits")
    db_max_overflow: int | None = Field(default=None, ge=0, description="override; default sized from the limits")
    db_pool_timeout_s: float = Field(default=30.0, gt=0, description="wait for a pooled connection before 503")
    db_busy_timeout_s: float = Field(default=30.0, gt=0, description="SQLite: wait for another process's write lock")
    db_lock_timeout_s: float = Field(default=30.0, gt=0, description="PostgreSQL lock_timeout for every session")
    retry_after_s: int = Field(default=2, ge=1, le=3600, description="Retry-After sent with 503 when overloaded")

    alert_sns_topic_arn: str | None = Field(default=None, description="also publish alert events to this SNS topic")
    alert_eventbridge_bus: str | None = Field(default=None, description="also put alert events on this bus")
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(default=None, description="AWS API endpoint override (local stacks)")
    aws_account_id: str = Field(default="000000000000", pattern=r"^[0-9]{12}$",
                                description="the account in the ARNs of mlgov's SageMaker API")

    scheduler: bool = Field(default=True, description="run the monitoring scheduler inside every `mlgov serve` "
                            "process (safe with several replicas: each due run executes once); false when "
                            "`mlgov scheduler` processes run the schedules instead")
    scheduler_interval_s: float = Field(default=10.0, gt=0, description="how often due schedules are looked for")
    scheduler_grace_s: float = Field(default=3600.0, ge=0, description="missed runs older than this are skipped")
    fake_clock_start: dt.datetime | None = Field(default=None, description="tests/demos: scheduler clock start")
    fake_clock_anchor: float | None = Field(default=None, description="tests/demos: wall time of clock start")
    fake_clock_speed: float = Field(default=1.0, gt=0, description="tests/demos: scheduler clock speed-up")

    compute: str = Field(default="local", description="where baselines and analyses compute their summaries: "
                         "'local' (this process) or 'dask://host:8786' (a dask.distributed scheduler; extra "
                         "mlgov[dask]; the workers read inputs from the object store); tcp:// and tls:// name "
                         "the transport (tls:// takes its certificates from Dask's distributed.comm.tls config)")
    compute_min_rows: int = Field(default=0, ge=0, description="with a Dask scheduler, inputs with fewer rows "
                                  "than this are still computed locally")
    compute_connect_timeout_s: float = Field(default=10.0, gt=0, description="wait for the Dask scheduler")
    compute_timeout_s: float = Field(default=3600.0, gt=0, description="longest one computation may take on Dask")

    @field_validator("compute")
    @classmethod
    def _compute_url(cls, v: str) -> str:
        if v != "local" and not (v.startswith(("dask://", "tcp://", "tls://")) and len(v.split("://", 1)[1]) > 0):
            raise ValueError(f"MLGOV_COMPUTE must be 'local' or 'dask://host:port' (or tcp://, tls://), "
                             f"not {v[:80]!r}")
        return v

    @field_validator("database_url")
    @classmethod
    def _no_placeholder(cls, v: str | None) -> str | None:
        if v is not None and "changeme" in v:
            raise ValueError("MLGOV_DATABASE_URL still holds a placeholder ('changeme'); set a real URL")
        return v

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'mlgov.db').resolve()}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or (self.home / "store").resolve().as_uri()

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin.key"

    @property
    def secrets_key_path(self) -> Path:
        return self.home / "secrets.key"

    @property
    def audit_key_path(self) -> Path:
        return self.home / "audit.key"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
