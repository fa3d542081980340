"""The container image, built by `helm/build-image.sh` (a Docker engine, else Debian's buildah; the base made with
debootstrap where Docker Hub is unreachable) and then run: `mlgov --help` as user 10001, and a real server inside
it answering /healthz and /readyz. CI installs buildah (.ci/run), so there the build never skips. Offline, always:
the Dockerfile's shape (multi-stage, no compilers in the final stage, non-root, HEALTHCHECK, `mlgov` entrypoint),
and the exact build context its COPY lines take (after .dockerignore) builds a wheel that carries the migrations,
templates, every domain package, the console's assets and the `mlgov` command."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
IGNORED = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
           if ln.strip() and not ln.startswith("#")]


def stages() -> dict[str, str]:
    parts = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
    return {p.split("\n", 1)[0].split(" AS ")[1].strip(): p for p in parts}


def instructions(stage: str, op: str) -> list[str]:
    text = stages()[stage].replace("\\\n", " ")
    return [ln[len(op) + 1:].strip() for ln in text.splitlines() if ln.startswith(op + " ")]


def ignored(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat.removeprefix("**/"))
               or any(fnmatch.fnmatch(part, pat.removeprefix("**/")) for part in Path(rel).parts)
               for pat in IGNORED)


def engine() -> str | None:
    """The builder helm/build-image.sh will use: a Docker engine that answers, else Debian's buildah."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=60,
                                                 check=False).returncode == 0:
        return "docker"
    return "buildah" if shutil.which("buildah") else None


BUILDAH_ENV = {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    assert list(stages()) == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, flags=re.M)
    build, runtime = stages()["build"], stages()["runtime"]
    assert "build-essential" in build and "build-essential" not in runtime and "apt-get install" not in runtime
    assert instructions("runtime", "COPY") == ["--from=build /opt/mlgov /opt/mlgov"]   # the venv, nothing else
    (user,) = instructions("runtime", "USER")
    assert user.split(":")[0] not in ("0", "root") and int(user.split(":")[0]) >= 1000
    assert instructions("runtime", "ENTRYPOINT") == ['["mlgov"]']
    (health,) = instructions("runtime", "HEALTHCHECK")
    assert health.split(" CMD ", 1)[1] == '["python", "-m", "mlgov.healthcheck"]'   # fits serve and scheduler
    assert "MLGOV_HOME=/var/lib/mlgov" in runtime


@pytest.mark.parametrize("path", [".git", ".mlgov/admin.key", ".mlgov/secrets.key", ".venv/bin/python",
                                  "tests/conftest.py", "mlgov/__pycache__/app.cpython-311.pyc", ".venv-helm/x"])
def test_dockerignore_keeps_keys_state_and_tools_out_of_the_context(path: str) -> None:
    assert ignored(path)


def test_the_build_context_builds_a_complete_wheel(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for line in instructions("build", "COPY"):
        *sources, _dest = line.split()
        for src in sources:
            origin = ROOT / src
            assert not ignored(src), f"{src} is copied but .dockerignore leaves it out"
            if origin.is_dir():
                shutil.copytree(origin, context / src,
                                ignore=lambda d, names: [n for n in names if ignored(
                                    str((Path(d) / n).relative_to(ROOT)))])
            else:
                context.mkdir(exist_ok=True)
                shutil.copy2(origin, context / src)
    out = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(out), str(context)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("mlgov-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mlgov/migrations/env.py" in names
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("mlgov/migrations/versions/")} >= {
        p.name for p in (ROOT / "mlgov/migrations/versions").glob("*.py")}
    assert any(n.startswith("mlgov/templates/") for n in names)
    for package in ("registry", "lineage", "monitor", "clarify", "console"):
        assert any(n.startswith(f"{package}/") for n in names), f"the image would lack {package}/"
    assert any(n.startswith("console/static/vendor/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mlgov = mlgov.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_image_builds_and_serves_as_non_root(tmp_path: Path) -> None:
    """Built by the same script users run; then `mlgov --help`, the user, the image config, and a real
    `mlgov db upgrade && mlgov serve` inside it answering /healthz and /readyz on the host's loopback."""
    kind = engine()
    if kind is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must build the image: .ci/run installs buildah and debootstrap")
        pytest.skip("no OCI builder here: no Docker engine answers `docker info` and buildah is not installed")
    env = {**os.environ, **BUILDAH_ENV}
    tag = "localhost/mlgov-test:ci"
    proc = subprocess.run([str(ROOT / "helm/build-image.sh"), tag], capture_output=True, text=True, timeout=2400,
                          check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    if kind == "docker":
        inspect = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True, check=True)
        config = json.loads(inspect.stdout)[0]["Config"]
        run = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "sh", tag, "-c"]
    else:
        inspect = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True, text=True,
                                 check=True, env=env)
        config = json.loads(inspect.stdout)["Docker"]["config"]
        ctr = subprocess.run(["buildah", "from", "--quiet", tag], capture_output=True, text=True, check=True,
                             env=env).stdout.strip()
        run = ["buildah", "run", ctr, "--", "sh", "-c"]
    try:
        assert config["Entrypoint"] == ["mlgov"]
        assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "mlgov.healthcheck"]
        assert config["User"] == "10001:10001"
        helped = subprocess.run([*run, "mlgov --help"], capture_output=True, text=True, timeout=300, check=False,
                                env=env)
        assert helped.returncode == 0 and "serve" in helped.stdout and "scheduler" in helped.stdout, helped
        who = subprocess.run([*run, "id -u"], capture_output=True, text=True, timeout=300, check=False, env=env)
        assert who.stdout.strip() == "10001", who
        # the drift engine's compiled walk as the image's user: numba compiles it and caches it in NUMBA_CACHE_DIR
        walk = ("python -c 'import os, numpy as np; from monitor.engine import ecdf; "
                "print(tuple(ecdf.walk(np.array([1.0, 2.0]), None, np.array([1.5]), None)), "
                "bool(os.listdir(os.environ[\"NUMBA_CACHE_DIR\"])))'")
        walked = subprocess.run([*run, walk], capture_output=True, text=True, timeout=300, check=False, env=env)
        assert walked.returncode == 0 and walked.stdout.split() == ["(0.5,", "0.5,", "0.5,", "3)", "True"], walked
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = (tmp_path / "serve.log").open("w")
        server = subprocess.Popen([*run, f"mlgov db upgrade && exec mlgov serve --host 127.0.0.1 --port {port}"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            ready = None
            for _ in range(240):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                        ready = json.load(r)
                        break
                except OSError:
                    assert server.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
                    time.sleep(0.5)
            assert ready is not None and ready["status"] == "ready", (tmp_path / "serve.log").read_text()[-4000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                assert r.status == 200
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    finally:
        if kind == "buildah":
            subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False, env=env)
