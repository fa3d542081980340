"""Headless Chromium for page tests (Debian's /usr/bin/chromium; never a downloaded browser)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.infra import unavailable

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        unavailable("Chromium not installed (apt-get install chromium); .ci/run installs it")
    return str(exe)


def render(html: str, workdir: Path) -> tuple[str, Path]:
    """Load the page in Chromium: return the DOM after scripts ran and a screenshot of it."""
    page = workdir / "page.html"
    page.write_text(html, encoding="utf-8")
    shot = workdir / "page.png"
    profile = tempfile.mkdtemp(dir=workdir)
    common = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60, check=True)
    return dom.stdout, shot
