"""The ``mlgov`` command: serve, db, keys, audit, demo, scheduler (domains add their own sub-commands).

A composition root: it imports domains. What only one command needs and takes seconds to load (alembic, uvicorn,
the monitoring runner with pandas and pyarrow, Clarify's monitor kinds, the demo's registry) is imported in that
command, so ``mlgov keys list`` does not pay for ``mlgov scheduler``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from mlgov import audit, auth
from mlgov.cli_support import database
from mlgov.db import alembic_config, current_revision, head_revision, private_dir
from mlgov.errors import DomainError
from mlgov.settings import get_settings
from mlgov.storage import open_store
from monitor.cli import capture_app

app = typer.Typer(help="mlgov: governed model registry, lineage, monitoring and audit.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations shipped with mlgov).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)
audit_app = typer.Typer(help="Tamper-evident audit log.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(demo_app, name="demo")
app.add_typer(capture_app, name="capture")


def _fail(msg: str, code: int = 1) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    from alembic import command

    s = get_settings()
    private_dir(s.home)
    command.upgrade(alembic_config(s.resolved_database_url), revision)
    typer.echo(f"database at {revision}: {_redact(s.resolved_database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")]) -> None:
    """Migrate the database down to REVISION."""
    from alembic import command

    command.downgrade(alembic_config(get_settings().resolved_database_url), revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    db = database(at_head=False)
    cur, head = current_revision(db.engine), head_revision()
    state = "up to date" if cur == head else "run `mlgov db upgrade`"
    typer.echo(f"current: {cur or 'none'}\nhead:    {head}\n{state}")


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="unique key name (shown in the audit log)")],
                role: Annotated[str, typer.Option(help="admin|approver|publisher|viewer|ingest")],
                owner: Annotated[str | None, typer.Option(help="the person holding the key (default: the name); "
                                                                "four-eyes compares owners")] = None) -> None:
    """Create a key; the key itself is printed once, as the last line."""
    db = database()
    try:
        with db.session_scope() as s:
            row, full = auth.create_key(s, name, role, actor="cli", owner=owner)
            typer.echo(f"created key {row.name!r} with role {row.role} (store it now; it is not shown again):")
    except DomainError as exc:
        _fail(f"{exc.detail}" + (f" — {exc.fix}" if exc.fix else ""))
    typer.echo(full)


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
    try:
        with db.session_scope() as s:
            auth.revoke_key(s, name, actor="cli")
    except DomainError as exc:
        _fail(f"{exc.detail}" + (f" — {exc.fix}" if exc.fix else ""))
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
        _fail(str(exc))
    typer.echo(json.dumps(doc))


@demo_app.command("seed")
def demo_seed(if_empty: Annotated[bool, typer.Option("--if-empty", help="do nothing if groups exist")] = False) -> None:
    """Seed a small demo registry (groups, versions, a four-eyes approval, a production stage)."""
    from mlgov.demo import seed

    db = database()
    typer.echo(seed(db, if_empty=if_empty))


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    with_scheduler: Annotated[bool, typer.Option("--with-scheduler", help="also run monitoring schedules")] = False,
) -> None:
    """Serve the API (refuses to start on a database not at the current schema)."""
    import uvicorn

    if with_scheduler:
        os.environ["MLGOV_WITH_SCHEDULER"] = "true"
        get_settings.cache_clear()

    s = get_settings()
    db = database()
    created = auth.bootstrap_admin_key(db, s.admin_key_path)
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
    db.dispose()
    typer.echo(f"mlgov serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    sys.stdout.flush()
    uvicorn.run("mlgov.asgi:app", host=host, port=port, workers=workers, log_level="info",
                http="mlgov.server:NoDelayHttpToolsProtocol")


@app.command("scheduler")
def scheduler() -> None:
    """Run due monitoring schedules (as many of these processes as you like; each run executes once)."""
    from clarify import kinds as clarify_kinds
    from monitor import jobs

    clarify_kinds.register()   # ModelBias and ModelExplainability monitors, beside monitor's own kinds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = get_settings()
    db = database()
    typer.echo(f"mlgov scheduler: checking every {s.scheduler_interval_s:g} s")
    jobs.blocking(db, open_store(s), s)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
