"""Settings read from the environment (prefix ``MLGOV_``); embedded defaults live under ``./.mlgov/``."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import importlib.util
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """Settings that cannot be used (``MLGOV_*`` variables, key files): what is wrong, naming the variable, and how
    to fix it; never a value, which may hold a password or key. The CLI shows it as a usage error (exit 2)."""

    def __init__(self, detail: str, *, fix: str) -> None:
        super().__init__(f"{detail} (fix: {fix})")
        self.detail, self.fix = detail, fix


class _Refused(ValueError):
    """A validator's refusal with its fix (pydantic keeps the exception in the error's ``ctx``)."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


# What a value of each pydantic type error should look like, and an example (its wording needs no value).
_ISO = ("an ISO 8601 time", " (e.g. 2026-01-31T12:00:00Z)")
_EXPECTED = {"bool_parsing": ("true or false", ""), "bool_type": ("true or false", ""),
             "int_parsing": ("a whole number", ""), "int_from_float": ("a whole number", ""),
             "float_parsing": ("a number", ""), "datetime_from_date_parsing": _ISO, "datetime_parsing": _ISO}
# The database backends mlgov runs on, and the DB-API module each driver needs.
_DRIVERS = {"sqlite": {"pysqlite": "sqlite3"}, "postgresql": {"psycopg": "psycopg", "psycopg2": "psycopg2"}}
_DB_FIX = "set MLGOV_DATABASE_URL to e.g. postgresql+psycopg://user:password@host:5432/mlgov, or unset it for " \
          "SQLite under MLGOV_HOME"


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
            scheme = v.split("://", 1)[0] if "://" in v else ""
            raise _Refused("MLGOV_COMPUTE must be 'local' or a Dask scheduler's URL" +
                           (f" (its scheme is {scheme!r})" if scheme.isalnum() and len(scheme) <= 16 else ""),
                           "set MLGOV_COMPUTE to local or dask://host:8786 (tcp:// and tls:// too)")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        """A URL mlgov can open: SQLite or PostgreSQL with an installed driver. Refusals never show the URL (it
        may hold a password); at most its scheme."""
        if not v:   # set but empty: the default, as before
            return None
        if "changeme" in v:
            raise _Refused("MLGOV_DATABASE_URL still holds a placeholder ('changeme')", _DB_FIX)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except (ArgumentError, ValueError):
            raise _Refused("MLGOV_DATABASE_URL is not a database URL", _DB_FIX) from None
        scheme = url.drivername
        if scheme == "postgres" or scheme.startswith("postgres+"):
            raise _Refused(f"MLGOV_DATABASE_URL's scheme {scheme!r} is not SQLAlchemy's name for PostgreSQL",
                           "write postgresql+psycopg:// instead of postgres:// in MLGOV_DATABASE_URL")
        backend = scheme.split("+", 1)[0]
        if backend not in _DRIVERS:
            raise _Refused(f"MLGOV_DATABASE_URL names a database mlgov does not run on ({backend[:40]!r}); "
                           "it runs on PostgreSQL or SQLite", _DB_FIX)
        drivers = _DRIVERS[backend]
        driver = scheme.split("+", 1)[1] if "+" in scheme else next(iter(drivers))
        if driver not in drivers or importlib.util.find_spec(drivers[driver]) is None:
            raise _Refused(f"MLGOV_DATABASE_URL's driver {driver[:40]!r} is not one mlgov can use here",
                           f"use {backend}+{next(iter(drivers))}:// in MLGOV_DATABASE_URL")
        return v

    @field_validator("audit_key")
    @classmethod
    def _audit_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 16:
            raise _Refused("MLGOV_AUDIT_KEY is shorter than 16 characters",
                           "set MLGOV_AUDIT_KEY to a long random key, e.g. `openssl rand -hex 32`, the same for "
                           "every process, or unset it to use <MLGOV_HOME>/audit.key")
        return v

    @field_validator("secrets_key")
    @classmethod
    def _fernet_keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        keys = [k.strip() for k in v.get_secret_value().split(",") if k.strip()]
        for n, key in enumerate(keys, 1):
            try:
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise _Refused(f"MLGOV_SECRETS_KEY's key {n} of {len(keys)} is not a Fernet key (32 url-safe "
                               "base64-encoded bytes)",
                               "set MLGOV_SECRETS_KEY to keys made by `python -c \"from cryptography.fernet import "
                               "Fernet; print(Fernet.generate_key().decode())\"` (newest first, comma-separated)")
        if not keys:
            raise _Refused("MLGOV_SECRETS_KEY is set but holds no key",
                           "set it to one or more Fernet keys, or unset it to use <MLGOV_HOME>/secrets.key")
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


def settings_error(exc: ValidationError) -> SettingsError:
    """pydantic's refusal of the environment as one sentence per variable, each with its fix. pydantic's own text
    is not used: it shows every input value (a database URL with its password, a key)."""
    problems, fixes = [], []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err.get("loc", ())
        var = f"MLGOV_{str(loc[0]).upper()}" if loc else "an MLGOV_ variable"
        refused = err.get("ctx", {}).get("error")
        if isinstance(refused, _Refused):
            problems.append(str(refused))
            fixes.append(refused.fix)
            continue
        kind = str(err.get("type", ""))
        expected, example = _EXPECTED.get(kind, (None, ""))
        if expected == "a whole number" and var.endswith("_BYTES"):
            expected, example = "a whole number of bytes", " (e.g. 10485760 for 10 MiB)"
        if expected is not None:
            problems.append(f"{var} is not {expected}")
            fixes.append(f"set {var} to {expected}{example}, or unset it for the default")
        else:   # a bound (greater_than_equal, less_than_equal, string_pattern_mismatch …): pydantic words it
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            problems.append(f"{var} is not valid: {_plain(message)}")
            fixes.append(f"correct {var} (see the README's Configuration table), or unset it for the default")
    return SettingsError("; ".join(problems) or "the MLGOV_ settings are not valid",
                         fix="; ".join(dict.fromkeys(fixes)) or "correct the MLGOV_ variables")


def _plain(message: str) -> str:
    return message.replace("Input should be", "it should be").replace("String should", "it should")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings from the environment; ``SettingsError`` (what and how to fix it, no value) when they
    cannot be used."""
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
