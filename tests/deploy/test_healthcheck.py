"""The image's HEALTHCHECK (`python -m mlgov.healthcheck`) fits every command the image runs: it finds the
container's mlgov process the way it is started (the ENTRYPOINT's script, behind an init, with root options), probes
/healthz on the port `mlgov serve` was given, and judges a real `mlgov scheduler` — which has no HTTP listener, so
the former fixed probe of :8000 called it unhealthy for ever — by the heartbeat it writes to the database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgov import healthcheck
from mlgov.healthcheck import Command
from tests.infra import free_port, upgrade, wait_healthy

MLGOV = str(Path(sys.executable).parent / "mlgov")
DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()


@pytest.mark.parametrize(("argv", "name", "args"), [
    (["/opt/mlgov/bin/python", "/opt/mlgov/bin/mlgov", "serve", "--host", "0.0.0.0", "--port", "8000"], "serve",
     ("serve", "--host", "0.0.0.0", "--port", "8000")),                                    # the image's CMD
    (["/opt/mlgov/bin/python", "/opt/mlgov/bin/mlgov", "scheduler"], "scheduler", ("scheduler",)),   # the chart's
    (["/sbin/docker-init", "--", "mlgov", "scheduler"], "scheduler", ("scheduler",)),     # docker run --init
    (["mlgov", "--profile", "prod", "scheduler"], "scheduler", ("--profile", "prod", "scheduler")),
    (["mlgov", "db", "upgrade"], "db", ("db", "upgrade")),
])
def test_the_command_is_read_from_its_argv(argv: list[str], name: str, args: tuple[str, ...]) -> None:
    found = healthcheck.mlgov_args(argv)
    assert found == args and Command(1, found).name == name


@pytest.mark.parametrize("argv", [["/opt/mlgov/bin/python", "/opt/mlgov/bin/dask", "worker", "tcp://d:8786"],
                                  ["python", "-m", "mlgov.healthcheck"], ["/bin/sh"]])
def test_other_processes_are_not_mlgov(argv: list[str]) -> None:
    assert healthcheck.mlgov_args(argv) is None


def test_serve_options_as_click_reads_them() -> None:
    chart = Command(1, ("serve", "--host=0.0.0.0", "--port=8080", "--workers=2", "--no-scheduler"))
    assert (chart.option("--host", "127.0.0.1"), chart.option("--port", "8000")) == ("0.0.0.0", "8080")
    assert Command(1, ("serve",)).option("--port", "8000") == "8000"   # mlgov serve's default


def test_the_main_process_is_the_lowest_running_mlgov(tmp_path: Path) -> None:
    for pid, argv in {1: ["/sbin/docker-init", "--", "mlgov", "scheduler"], 7: ["/usr/bin/python3", "/x/mlgov",
                      "scheduler"], 30: ["python", "-c", "from multiprocessing.spawn import spawn_main"],
                      45: ["python", "-m", "mlgov.healthcheck"]}.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()
    assert healthcheck.main_command(tmp_path) == Command(1, ("scheduler",))
    (tmp_path / "1" / "cmdline").write_bytes(b"/sbin/tini\0--\0/bin/sh\0")
    assert healthcheck.main_command(tmp_path) == Command(7, ("scheduler",))
    for pid in ("1", "7"):
        (tmp_path / pid / "cmdline").write_bytes(b"dask\0scheduler\0")
    assert healthcheck.main_command(tmp_path) is None
    assert healthcheck.check(None)[0] is True   # a `dask scheduler` container: nothing of mlgov's to probe


def test_the_dockerfile_runs_this_check() -> None:
    (line,) = [ln for ln in DOCKERFILE.replace("\\\n", " ").splitlines() if ln.startswith("HEALTHCHECK ")]
    assert line.split(" CMD ", 1)[1].strip() == '["python", "-m", "mlgov.healthcheck"]'


def test_one_shot_commands_read_healthy() -> None:
    assert healthcheck.check(Command(1, ("db", "upgrade")))[0] is True


def _environment(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'mlgov.db'}"
    upgrade(url)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")},
            "MLGOV_DATABASE_URL": url, "MLGOV_STORE_URL": (tmp_path / "store").as_uri(),
            "MLGOV_HOME": str(tmp_path / "home"), "MLGOV_SCHEDULER_INTERVAL_S": "0.5"}


@pytest.mark.live
def test_a_serving_process_is_healthy_on_its_own_port(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    port = free_port()
    args = ("serve", "--host", "127.0.0.1", f"--port={port}", "--no-scheduler")
    server = subprocess.Popen([MLGOV, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        healthy, why = healthcheck.check(Command(server.pid, args))
        assert healthy, why
        assert f":{port}/healthz" in why
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    healthy, why = healthcheck.check(Command(server.pid, args))
    assert not healthy and "did not answer" in why


@pytest.mark.live
def test_a_scheduler_is_healthy_while_its_heartbeat_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(tmp_path)
    for key, value in env.items():
        if key.startswith("MLGOV_"):
            monkeypatch.setenv(key, value)
    scheduler = subprocess.Popen([MLGOV, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
    command = Command(scheduler.pid, ("scheduler",))
    try:
        deadline = time.time() + 120
        while not (verdict := healthcheck.check(command))[0]:
            assert scheduler.poll() is None, scheduler.stderr.read() if scheduler.stderr else ""
            assert time.time() < deadline, verdict
            time.sleep(0.2)
        assert "is beating" in verdict[1]
        # only this process's own heartbeat counts: another pid, or the same pid in another container, is not it
        assert healthcheck.check(Command(scheduler.pid + 100000, ("scheduler",))) == (
            False, f"scheduler pid {scheduler.pid + 100000} on {socket.gethostname()} has not beaten yet")
        assert healthcheck.check_scheduler(command, host="another-container")[0] is False
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=120)
    healthy, why = healthcheck.check(command)
    assert not healthy and "stopped or gone silent" in why   # it stamped stopped_at on SIGTERM


def test_a_scheduler_whose_database_cannot_be_read_is_unhealthy(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("MLGOV_DATABASE_URL", f"sqlite:///{tmp_path / 'missing' / 'mlgov.db'}")
    healthy, why = healthcheck.check(Command(1, ("scheduler",)))
    assert not healthy and "could not be read" in why
