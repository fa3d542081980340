"""The `mlgov` CLI against a live server: a real subprocess (what a user's shell runs) or, for bulk, typer's
CliRunner in this process (same commands, same exit codes, no interpreter start per call)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlgov import auth
from mlgov.app import create_app
from mlgov.db import Database
from tests.conftest import make_settings
from tests.infra import LiveServer, fresh_database, upgrade

MLGOV = str(Path(sys.executable).parent / "mlgov")
ROLES = {"admin": ("admin", "root"), "publisher": ("publisher", "alice"), "approver": ("approver", "bob"),
         "viewer": ("viewer", "carol"), "ingest": ("ingest", "pipeline")}
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    url: str
    keys: dict[str, str]
    home: Path          # HOME and XDG_CONFIG_HOME of the commands (no profile unless a test writes one)
    db: Database

    def env(self, key: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"), MLGOV_URL=self.url,
                   COLUMNS="200", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        if key is not None:
            env["MLGOV_API_KEY"] = self.keys[key]
        env.update(extra)
        return env

    def run(self, *args: str, key: str | None = "admin", cwd: Path | None = None, **env: str) -> Ran:
        """A real `mlgov` process."""
        p = subprocess.run([MLGOV, *args], cwd=cwd or self.home, env=self.env(key, **env), capture_output=True,
                           text=True, timeout=180)
        return Ran(p.returncode, p.stdout, p.stderr)

    def invoke(self, *args: str, key: str | None = "admin", **env: str) -> Ran:
        """The same command in this process (typer's CliRunner; the environment is swapped for the call)."""
        from typer.testing import CliRunner

        from mlgov.cli import app

        full = self.env(key, **env)
        cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MLGOV_") and k not in full}
        r = CliRunner().invoke(app, list(args), env={**cleared, **full}, catch_exceptions=False)
        return Ran(r.exit_code, r.stdout, r.stderr)


def one_line_error(r: Ran, *needles: str) -> str:
    """The error is one `error: … (fix: …)` line on stderr, without a traceback."""
    assert TRACEBACK not in r.stderr and TRACEBACK not in r.stdout, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    return lines[0]


@contextmanager
def live_cli(tmp_path: Path, **settings: object) -> Iterator[Cli]:
    """A migrated SQLite database served by a live uvicorn thread, with a key per role (distinct owners, so
    four-eyes lets the approver decide the publisher's versions)."""
    with fresh_database("sqlite", tmp_path) as url:
        upgrade(url)
        db = Database(url)
        keys = {}
        with db.session_scope() as s:
            for name, (role, owner) in ROLES.items():
                keys[name] = auth.create_key(s, name, role, actor="test", owner=owner)[1]
        home = tmp_path / "home"
        home.mkdir()
        try:
            with LiveServer(create_app(make_settings(tmp_path, **settings), db=db)) as srv:
                yield Cli(srv.url, keys, home, db)
        finally:
            db.dispose()
