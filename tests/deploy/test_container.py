"""The container image. With an OCI builder on the machine (a Docker engine, podman or buildah) the image is built
and `mlgov --help` runs inside it as a non-root user; without one that test skips, saying so. Offline, always:
the Dockerfile's shape (multi-stage, no compilers in the final stage, non-root, HEALTHCHECK, `mlgov` entrypoint),
and the exact build context its COPY lines take (after .dockerignore) builds a wheel that carries the migrations,
templates and the `mlgov` command."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
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


def builder() -> list[str] | None:
    for cmd in (["docker"], ["podman"], ["buildah"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = ["buildah", "info"] if cmd == ["buildah"] else [*cmd, "info"]
        if subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0:
            return cmd
    return None


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
    assert "/healthz" in health
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
    assert any(n.startswith("monitor/") for n in names) and any(n.startswith("clarify/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mlgov = mlgov.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_image_builds_and_runs_mlgov_as_non_root() -> None:
    cmd = builder()
    if cmd is None:
        pytest.skip("no OCI builder here: no Docker engine answers `docker info`, no podman or buildah")
    tag = "localhost/mlgov-test:ci"
    build = [*cmd, "bud", "-t", tag, str(ROOT)] if cmd == ["buildah"] else [*cmd, "build", "-t", tag, str(ROOT)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    runner = ["podman"] if cmd == ["buildah"] else cmd
    helped = subprocess.run([*runner, "run", "--rm", "--read-only", "--tmpfs", "/tmp", tag, "--help"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert helped.returncode == 0 and "serve" in helped.stdout and "scheduler" in helped.stdout, helped
    who = subprocess.run([*runner, "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert who.stdout.strip() == "10001", who
    inspect = subprocess.run([*runner, "image", "inspect", tag], capture_output=True, text=True, timeout=60,
                             check=True)
    (image,) = json.loads(inspect.stdout)
    config = image.get("Config") or image.get("config") or {}
    assert config.get("Entrypoint") == ["mlgov"] and config.get("Healthcheck")
