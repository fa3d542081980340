"""The ``mlgov`` command: serve, db, keys, audit, demo, scheduler, and each domain's everyday verbs (groups,
versions, approve, … from the domains' ``cli.py``, over the Python SDK).

A composition root: it imports domains. What only one command needs and takes seconds to load (alembic, uvicorn,
the monitoring runner with pandas and pyarrow, Clarify's monitor kinds, the demo's registry, the SDK) is imported
in that command, so ``mlgov keys list`` does not pay for ``mlgov scheduler``. Errors, exit codes, output and
progress are ``mlgov.terminal``'s.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url

from clarify import cli as clarify_cli
from lineage import cli as lineage_cli
from mlgov import audit, auth
from mlgov.cli_support import database
from mlgov.db import Database, alembic_config, current_revision, head_revision, make_engine, private_dir
from mlgov.settings import get_settings
from mlgov.storage import open_store
from mlgov.terminal import EXIT_CODES_HELP, CliError, Connection, Exit, GuardedGroup, closed_stdout_ends_quietly
from monitor import cli as monitor_cli
from registry import cli as registry_cli

app = typer.Typer(cls=GuardedGroup, no_args_is_help=True, epilog=EXIT_CODES_HELP,
                  help="mlgov: governed model registry, lineage, monitoring and audit. The everyday verbs talk to "
                       "a server (MLGOV_URL, default http://127.0.0.1:8000) with a key (MLGOV_API_KEY), or use a "
                       "profile from ~/.config/mlgov/profiles.toml; the admin verbs (db, keys, audit, demo, capture) "
                       "work on the configured database directly.")
db_app = typer.Typer(help="Database schema (Alembic migrations shipped with mlgov).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)
audit_app = typer.Typer(help="Tamper-evident audit log.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets stored encrypted (webhook signing secrets, AWS credentials).",
                          no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")
app.add_typer(secrets_app, name="secrets")
app.add_typer(monitor_cli.capture_app, name="capture")

# The everyday verbs, over the SDK, grouped in `mlgov --help` by domain.
REGISTRY, MONITORING, CLARIFY = "Registry (server)", "Monitoring (server)", "Clarify and lineage (server)"
app.add_typer(registry_cli.groups_app, name="groups", rich_help_panel=REGISTRY)
app.add_typer(registry_cli.versions_app, name="versions", rich_help_panel=REGISTRY)
app.command("approve", rich_help_panel=REGISTRY)(registry_cli.approve)
app.command("reject", rich_help_panel=REGISTRY)(registry_cli.reject)
app.command("stage", rich_help_panel=REGISTRY)(registry_cli.stage)
app.add_typer(monitor_cli.endpoints_app, name="endpoints", rich_help_panel=MONITORING)
app.add_typer(monitor_cli.baselines_app, name="baselines", rich_help_panel=MONITORING)
app.add_typer(monitor_cli.analyses_app, name="analyses", rich_help_panel=MONITORING)
app.add_typer(monitor_cli.schedules_app, name="schedules", rich_help_panel=MONITORING)
app.add_typer(monitor_cli.alerts_app, name="alerts", rich_help_panel=MONITORING)
app.add_typer(clarify_cli.bias_app, name="bias", rich_help_panel=CLARIFY)
app.add_typer(clarify_cli.explain_app, name="explain", rich_help_panel=CLARIFY)
app.add_typer(lineage_cli.lineage_app, name="lineage", rich_help_panel=CLARIFY)


@app.callback()
def root(ctx: typer.Context,
         profile: Annotated[str | None, typer.Option(
             help="a profile of ~/.config/mlgov/profiles.toml (or MLGOV_PROFILES): [NAME] with url and api_key or "
                  "api_key_file; also MLGOV_PROFILE")] = None,
         url: Annotated[str | None, typer.Option(help="the server (default: MLGOV_URL, the profile's url, "
                                                      "http://127.0.0.1:8000)")] = None) -> None:
    ctx.obj = Connection(profile=profile, url=url)




@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision, e.g. head or +1")] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    s = get_settings()
    private_dir(s.home)
    _migrate("upgrade", s.resolved_database_url, revision)


# `-1` is a relative revision, not an option: unknown options reach the command as its argument.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")]) -> None:
    """Migrate the database down to REVISION."""
    _migrate("downgrade", get_settings().resolved_database_url, revision)


def _migrate(direction: str, url: str, revision: str) -> None:
    """Run Alembic's upgrade or downgrade to ``revision``; then say the revision the database is at (not the one
    asked for: `-1` or `+1` name none), with the URL's password masked."""
    from alembic import command
    from alembic.util import CommandError

    try:
        getattr(command, direction)(alembic_config(url), revision)
    except CommandError as exc:   # an unknown revision, or a step past base or head: the argument is wrong
        step, end = ("+1", "head") if direction == "upgrade" else ("-1", "base")
        raise CliError(f"cannot {direction} to {revision!r}: {exc}",
                       fix=f"give `mlgov db {direction}` a revision id, a relative step such as {step}, or {end}; "
                           "`mlgov db current` shows where the database is", code=Exit.USAGE) from None
    engine = make_engine(url, pooled=False)
    try:
        cur = current_revision(engine)
    finally:
        engine.dispose()
    at = "head" if cur is not None and cur == head_revision() else cur or "base (no mlgov tables)"
    typer.echo(f"database at {at}{f' ({cur})' if at == 'head' else ''}: {redact_database_url(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    db = database(at_head=False)
    cur, head = current_revision(db.engine), head_revision()
    state = "up to date" if cur == head else "run `mlgov db upgrade`"
    typer.echo(f"current: {cur or 'none'}\nhead:    {head}\n{state}")


_SECRET_QUERY = ("password", "sslpassword", "passfile", "sslkey", "token", "secret")


def redact_database_url(url: str) -> str:
    """The URL as logs and terminals may show it: the password, and query parameters that carry one
    (``?password=``, ``sslpassword=``, as libpq accepts them), as ``***``."""
    u = make_url(url)
    query = {k: ("***" if any(word in k.lower() for word in _SECRET_QUERY) else v) for k, v in u.query.items()}
    return u.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="unique key name (shown in the audit log)")],
                role: Annotated[str, typer.Option(help="admin|approver|publisher|viewer|ingest")],
                owner: Annotated[str | None, typer.Option(help="the person holding the key (default: the name); "
                                                                "four-eyes compares owners")] = None,
                aws: Annotated[bool, typer.Option("--aws", help="also issue AWS credentials (SigV4) for the "
                                                                "SageMaker API")] = False) -> None:
    """Create a key; the key itself is printed once, as the last line (with --aws, after the AWS credentials)."""
    from mlgov.secrets import SecretBox

    db = database()
    box = SecretBox.from_settings(get_settings()) if aws else None
    with db.session_scope() as s:
        row, full = auth.create_key(s, name, role, actor="cli", owner=owner, aws=box)
        typer.echo(f"created key {row.name!r} with role {row.role} (store it now; it is not shown again):")
        if box is not None:
            typer.echo(f"AWS_ACCESS_KEY_ID={row.aws_access_key_id}")
            typer.echo(f"AWS_SECRET_ACCESS_KEY={auth.aws_secret_of(row, box)}")
    typer.echo(full)


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Encrypt every stored secret again with the newest key (the first of MLGOV_SECRETS_KEY), so the older keys
    can be removed; audited. All or nothing: a value no configured key decrypts stops it."""
    from mlgov.secrets import SecretBox, SecretsUnavailable, rotate_stored

    db = database()
    try:
        with db.session_scope() as s:
            counts = rotate_stored(s, SecretBox.from_settings(get_settings()), actor="cli")
    except SecretsUnavailable as exc:   # the server's 503; here it is the configured keys that are wrong: no retry
        raise CliError(exc.detail, fix=exc.fix, code=Exit.USAGE) from None
    for where, n in counts.items():
        typer.echo(f"{where}: {n} re-encrypted")
    typer.echo("every stored secret now opens with the first key alone: remove the others from MLGOV_SECRETS_KEY")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the secrets)."""
    db = database()
    with db.session_scope(write=False) as s:
        for k in auth.list_keys(s):
            state = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "revoked"
            typer.echo(f"{k.name}\t{k.role}\t{k.key_id}\t{state}\towner={k.owner}\tcreated_by={k.created_by}")


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke the key NAME."""
    db = database()
    with db.session_scope() as s:
        auth.revoke_key(s, name, actor="cli")
    typer.echo(f"revoked {name}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the keyed hash chain against the newest signed checkpoint; exit 1 and say where it breaks."""
    db = database()
    with db.session_scope(write=False) as s:
        result = audit.verify(s)
    typer.echo(json.dumps(result))
    if not result["ok"]:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the current head of the chain and write it to the object store (anchors it outside the database)."""
    db = database()
    try:
        with db.session_scope(write=False) as s:
            doc = audit.write_checkpoint(s)
    except audit.CheckpointRefused as exc:
        raise CliError(str(exc), fix="run `mlgov audit verify` to see where the chain breaks") from None
    typer.echo(json.dumps(doc))


@audit_app.command("reanchor")
def audit_reanchor(reason: Annotated[str, typer.Option(help="why: the backup restored, who decided")]) -> None:
    """After restoring the database from a backup older than the newest checkpoint: set aside (keep, under
    audit/superseded-checkpoints/) the checkpoints the restored chain does not reach, record that in the chain,
    and anchor it again. Refused if the chain itself is broken (that is tampering, not a restore)."""
    db = database()
    try:
        with db.session_scope() as s:
            doc = audit.reanchor_after_restore(s, actor="cli", reason=reason)
    except audit.CheckpointRefused as exc:
        raise CliError(str(exc), fix="run `mlgov audit verify` to see where the chain breaks") from None
    typer.echo(json.dumps(doc))


@demo_app.command("seed")
def demo_seed(if_empty: Annotated[bool, typer.Option("--if-empty", help="do nothing if groups exist")] = False) -> None:
    """Seed a small demo: groups, versions, a four-eyes approval, a production stage, and an endpoint with a few
    hours of captured, labelled traffic, its baselines and the data-quality, model-quality and bias runs over it."""
    from mlgov.demo import seed

    db = database()
    typer.echo(seed(db, open_store(get_settings()), if_empty=if_empty))


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    scheduler: Annotated[bool | None, typer.Option(
        "--scheduler/--no-scheduler", help="run due monitoring schedules in this server (default: MLGOV_SCHEDULER, "
        "true); turn it off when `mlgov scheduler` processes run them")] = None,
) -> None:
    """Serve the API and, unless told not to, run the monitoring schedules (refuses to start on a database not at
    the current schema)."""
    import uvicorn

    if scheduler is not None:   # the app is built in each worker process from the environment
        os.environ["MLGOV_SCHEDULER"] = "true" if scheduler else "false"
        get_settings.cache_clear()

    s = get_settings()
    _check_listenable(host, port)   # before any work, and before "serving on" is printed
    db = _database_with_our_audit_key()
    created = auth.bootstrap_admin_key(db, s.admin_key_path) if s.bootstrap_admin else None
    try:
        with db.session_scope(write=False) as session:
            audit.write_checkpoint(session)  # anchor the head (and any pre-0010 legacy rows) at every start
    except audit.CheckpointRefused as exc:
        typer.echo(f"WARNING: audit checkpoint not written: {exc}", err=True)
    except Exception as exc:  # store unreachable: serve anyway; the periodic checkpoints retry
        typer.echo(f"WARNING: audit checkpoint not written, the object store failed: {type(exc).__name__}: {exc}",
                   err=True)
    key_path = s.admin_key_path.resolve()
    if created:
        typer.echo(f"created the first admin key; it is in {key_path} (mode 0600)")
    elif key_path.exists():
        typer.echo(f"admin key: {key_path}")
    elif not s.bootstrap_admin:
        typer.echo("MLGOV_BOOTSTRAP_ADMIN is off: create the first admin key with "
                   "`mlgov keys create --name admin --role admin` if there is none")
    db.dispose()
    runs = "runs monitoring schedules" if s.scheduler else "does not run monitoring schedules (--no-scheduler)"
    typer.echo(f"mlgov serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs); it {runs}")
    sys.stdout.flush()
    # A worker imports the whole app (pandas, pyarrow, …) before it answers uvicorn's health check; on a busy
    # machine that takes longer than uvicorn's 5 s default, and the supervisor would kill and respawn it forever.
    # Idle connections stay open 75 s (past a load balancer's usual 60 s): the SageMaker SDK polls every 5 s on one
    # connection, and uvicorn's 5 s default closed it just as the next request went out.
    try:
        uvicorn.run("mlgov.asgi:app", host=host, port=port, workers=workers, log_level="info",
                    log_config=_serve_logging(), http="mlgov.server:NoDelayHttpToolsProtocol",
                    timeout_worker_healthcheck=60, timeout_keep_alive=75)
    except SystemExit as exc:   # uvicorn's STARTUP_FAILURE (3) is no "not found": its reason is logged above
        if exc.code in (0, None):
            raise
        raise CliError("the server did not start (uvicorn's reason is logged above)",
                       fix="correct what the log names, then start it again") from None


def _database_with_our_audit_key() -> Database:
    """The database, once its audit log's newest event verifies with this process's key (`audit.check_tip`): a
    long-running process with another key would fail every write, so `serve` and `scheduler` refuse to start."""
    db = database()
    with db.session_scope(write=False) as session:
        audit.check_tip(session)
    return db


def _check_listenable(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will (SO_REUSEADDR: a port held only by closed connections is free) and let
    it go: a port another process listens on is one line and exit 5 (it may come free: another server is still
    stopping), an address this machine does not have or a port it may not use is a usage error."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise CliError(f"cannot serve on {where}: another process is listening on it",
                               fix="stop it (e.g. an mlgov serve still running), or choose another --port",
                               code=Exit.UNAVAILABLE) from None
            reason = exc.strerror or str(exc)
            raise CliError(f"cannot serve on {where}: {reason}",
                           fix="give --host an address of this machine (127.0.0.1, 0.0.0.0) and --port a free port "
                               "(below 1024 needs privileges)", code=Exit.USAGE) from None


def _serve_logging() -> dict[str, Any]:
    """uvicorn's logging, plus mlgov's own INFO lines (one per scheduled run) through uvicorn's handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlgov"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["apscheduler"] = {"level": "WARNING"}
    return config


@app.command("scheduler")
def scheduler() -> None:
    """Run due monitoring schedules (as many of these processes as you like; each run executes once)."""
    from clarify import kinds as clarify_kinds
    from monitor import jobs

    clarify_kinds.register()   # ModelBias and ModelExplainability monitors, beside monitor's own kinds
    # mlgov's own lines at INFO (one per run); libraries (alembic, apscheduler …) only when something is wrong
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("mlgov").setLevel(logging.INFO)
    s = get_settings()
    db = _database_with_our_audit_key()
    jobs.blocking(db, open_store(s), s)


def main() -> None:
    with closed_stdout_ends_quietly():
        app()


if __name__ == "__main__":
    main()
