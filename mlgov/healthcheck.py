"""The container image's HEALTHCHECK (`python -m mlgov.healthcheck`): checks what the container's command offers.

The image runs several commands, so one probe cannot fit all of them:

- `mlgov serve`: GET /healthz on the port (and address) it was given answers 200;
- `mlgov scheduler` (no HTTP listener): its ticker beats — a scheduler heartbeat of this very process (this host
  name and its pid) in the database is alive by the workers' rule (beat within max(3 intervals, 30 s), not
  stopped), the same rows `/readyz` and the take-over of claims judge by;
- anything else (`mlgov db upgrade` and other one-shot commands, `dask scheduler` / `dask worker` run from this
  image): nothing this check knows how to probe, so healthy.

The command is the first process (lowest pid) whose argv runs the `mlgov` script: PID 1 under the image's
ENTRYPOINT, or the child of an init (`docker run --init`). Exit 0 when healthy, 1 when not, with one line saying
why (Docker keeps it in `docker inspect`'s health log). Imports only what the command's check needs.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT_OPTIONS_WITH_VALUE = frozenset({"--profile"})   # `mlgov --profile NAME <command>`


@dataclass(frozen=True)
class Command:
    pid: int
    args: tuple[str, ...]   # what follows `mlgov`: the sub-command and its options

    @property
    def name(self) -> str | None:
        skip = False
        for arg in self.args:
            if skip:
                skip = False
            elif arg in ROOT_OPTIONS_WITH_VALUE:
                skip = True
            elif not arg.startswith("-"):
                return arg
        return None

    def option(self, name: str, default: str) -> str:
        """The value of ``--name VALUE`` or ``--name=VALUE`` (the last one given, as Click takes it)."""
        value = default
        for i, arg in enumerate(self.args):
            if arg == name and i + 1 < len(self.args):
                value = self.args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
        return value


def mlgov_args(argv: list[str]) -> tuple[str, ...] | None:
    """What follows the `mlgov` script in ``argv`` (python /opt/mlgov/bin/mlgov serve …, or mlgov serve …)."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "mlgov":
            return tuple(argv[i + 1:])
    return None


def main_command(proc: Path = Path("/proc")) -> Command | None:
    """The container's mlgov process: the lowest pid running the `mlgov` script; None if there is none."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:   # gone meanwhile, or not ours to read
            continue
        args = mlgov_args([a.decode(errors="replace") for a in raw.split(b"\0") if a])
        if args is not None:
            return Command(pid, args)
    return None


def check_serve(command: Command, timeout: float = 4.0) -> tuple[bool, str]:
    host = command.option("--host", "127.0.0.1")
    port = command.option("--port", "8000")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url} did not answer: {exc}"
    return status == 200, f"{url} answered {status}"


def check_scheduler(command: Command, host: str | None = None, timeout: float = 3.0) -> tuple[bool, str]:
    from sqlalchemy import create_engine, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    from mlgov import workers
    from mlgov.settings import Settings

    host = (host or socket.gethostname())[:255]
    url = make_url(Settings().resolved_database_url)
    connect = {"timeout": timeout} if url.get_backend_name() == "sqlite" else {"connect_timeout": max(1, int(timeout))}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect)
    try:
        with Session(engine) as session:
            rows = list(session.scalars(select(workers.Heartbeat).where(
                workers.Heartbeat.role == workers.SCHEDULER, workers.Heartbeat.host == host,
                workers.Heartbeat.pid == command.pid)))
            alive = any(workers.alive(row) for row in rows)
    except Exception as exc:   # the database cannot be read: the heartbeat cannot be judged (nor written)
        return False, f"scheduler heartbeats could not be read: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        engine.dispose()
    if alive:
        return True, f"scheduler pid {command.pid} on {host} is beating"
    what = "has stopped or gone silent" if rows else "has not beaten yet"
    return False, f"scheduler pid {command.pid} on {host} {what}"


def check(command: Command | None) -> tuple[bool, str]:
    if command is None:
        return True, "no mlgov process: nothing to probe"
    if command.name == "serve":
        return check_serve(command)
    if command.name == "scheduler":
        return check_scheduler(command)
    return True, f"`mlgov {command.name or ''}` offers nothing to probe"


def main() -> None:
    healthy, why = check(main_command())
    print(why)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
