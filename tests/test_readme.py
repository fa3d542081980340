"""The README says what the server does: its curl tour runs as written against `mlgov serve` in a fresh directory
(the way `make run` starts it), and its configuration table gives the real defaults."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlgov.settings import Settings
from tests.infra import free_port, wait_healthy

README = Path(__file__).resolve().parents[1] / "README.md"
VENV = Path(sys.executable).parents[1]


def tour_blocks() -> list[str]:
    """The ```bash blocks from "API tour (curl)" up to the next top-level section, in order."""
    text = README.read_text()
    section = text[text.index("## API tour (curl)"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_documented_body_limit_is_the_real_one() -> None:
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `MLGOV_MAX_BODY_BYTES`"))
    documented = re.search(r"\| (\d+) \(", row)
    assert documented and int(documented.group(1)) == Settings.model_fields["max_body_bytes"].default
    assert "(100 MiB)" in row


@pytest.mark.live
@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="the tour is bash and curl")
def test_the_curl_tour_runs_as_written_and_leaves_the_checkout_clean(tmp_path: Path) -> None:
    checkout, scratch = tmp_path / "checkout", tmp_path / "tmp"
    checkout.mkdir()
    scratch.mkdir()
    (checkout / ".venv").symlink_to(VENV)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}, "TMPDIR": str(scratch)}
    subprocess.run([str(VENV / "bin" / "mlgov"), "db", "upgrade"], cwd=checkout, env=env, check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen([str(VENV / "bin" / "mlgov"), "serve", "--port", str(port)], cwd=checkout, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        script = "\n".join(tour_blocks()).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        run = subprocess.run(["bash", "-e", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
                             timeout=600)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # the publisher's key may not decide at all (its role); an approver key of the registrant's owner may not
    # decide this version (four-eyes); an independent approver does
    assert "role 'publisher' (key 'tour-publisher') may not call POST" in out
    assert "four-eyes rule: key 'tour-self-approver' is not independent" in out
    assert '"approval_status":"Approved","approval_description":"AUC 0.91 on holdout"' in out
    assert '"mlgov://model-groups/tour/versions/1"' in out   # the lineage query reaches the version
    # without MLGOV_OUTBOUND_ALLOW (as the tour's notes say) the loopback receivers are refused, each by its name
    assert "the webhook url http://127.0.0.1:9999/hook resolves to 127.0.0.1" in out
    assert "the retraining trigger url http://127.0.0.1:9999/retrain resolves to 127.0.0.1" in out
    # what the tour wrote went to its temporary directory, not into the checkout
    assert sorted(p.name for p in checkout.iterdir()) == [".mlgov", ".venv"]
    [made] = list(scratch.iterdir())
    assert {p.name for p in made.iterdir()} == {"report.html", "train.csv", "current.csv", "bias.csv",
                                                "analysis_config.json"}
    assert "Upstream lineage" in (made / "report.html").read_text()
