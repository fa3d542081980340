"""`mlgov capture import|export` (offline, on the database) and monitor's verbs over the SDK against a live server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mlgov.db import Database
from tests.clirun import TRACEBACK, Ran, one_line_error
from tests.helpers import seed_endpoint
from tests.monitor.test_api import FEATURES, record
from tests.test_cli import run

T0 = dt.datetime(2026, 11, 20, 10, 1, tzinfo=dt.UTC)


@pytest.fixture
def offline(tmp_path: Path) -> Path:
    """A migrated embedded database in tmp_path with endpoint "ep" (features age, income, state)."""
    run(tmp_path, "db", "upgrade")
    db = Database(f"sqlite:///{tmp_path / '.mlgov' / 'mlgov.db'}")
    with db.session_scope() as s:
        seed_endpoint(s, FEATURES)
    db.dispose()
    return tmp_path


def capture_tree(root: Path, good: int, bad: int) -> Path:
    folder = root / "ep" / "AllTraffic" / "2026" / "11" / "20" / "10"
    folder.mkdir(parents=True)
    lines = [json.dumps(record(i, T0, (30 + i % 40, 40.0, "CA"))) for i in range(good)]
    lines += [json.dumps(record(i, T0, ("x", 40.0, "CA", 5), event_id=f"bad-{i}")) for i in range(bad)]
    (folder / "capture.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _ran(p) -> Ran:
    return Ran(p.returncode, p.stdout, p.stderr)


def test_capture_import_of_only_rejected_records_fails(offline: Path):
    """Before: 6,000 rejected records exited 0 (and echoed 5 reasons per 1,000-record batch)."""
    tree = capture_tree(offline / "tree", good=0, bad=3000)
    r = run(offline, "capture", "import", str(tree), "--endpoint", "ep", check=False)
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stdout.strip() == "accepted=0 sampled_out=0 duplicates=0 rejected=3000"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and TRACEBACK not in r.stderr   # one reason (shared by 3,000 records), one error line
    assert lines[0].endswith("has 3 features (and 2999 more records)") and ": line 1: " in lines[0]
    assert lines[1].startswith("error: all 3000 records were rejected and nothing was imported (fix: ")


def test_capture_import_partly_rejected_json_and_progress(offline: Path):
    tree = capture_tree(offline / "tree", good=30, bad=2)
    r = run(offline, "capture", "import", str(tree), "--endpoint", "ep", "--batch", "7", "--json", check=False)
    assert r.returncode == 6
    assert json.loads(r.stdout) == {"files": 1, "accepted": 30, "sampled_out": 0, "duplicates": 0, "rejected": 2}
    assert r.stderr.strip().splitlines()[-1].startswith("error: 2 records were rejected; the others were imported")
    assert ": line 31: " in r.stderr   # the place of the first rejected record, across batches of 7

    again = run(offline, "capture", "import", str(tree), "--endpoint", "ep", check=False, TTY_COMPATIBLE="1")
    assert again.returncode == 6 and "duplicates=30" in again.stdout
    assert "importing capture" in again.stderr and "accepted=0" in again.stderr   # the progress bar, on a terminal

    out = offline / "out"
    exported = run(offline, "capture", "export", "--endpoint", "ep", "--to", str(out), "--json")
    # 5 files: the 30 records were stored in batches of 7
    assert json.loads(exported.stdout) == {"endpoint": "ep", "records": 30, "files": 5, "to": str(out)}
    assert "exporting" not in exported.stderr   # no progress bar when stderr is not a terminal


def test_capture_errors_are_one_line(offline: Path):
    """Before: `capture export --endpoint nope` printed a 25-line traceback."""
    r = _ran(run(offline, "capture", "export", "--endpoint", "nope", "--to", str(offline / "out"), check=False))
    assert r.code == 3
    one_line_error(r, "no endpoint named 'nope'", "(fix: ")
    r = _ran(run(offline, "capture", "import", str(offline / "missing"), "--endpoint", "ep", check=False))
    assert r.code == 2
    one_line_error(r, "missing does not exist")
    (offline / "empty").mkdir()
    r = _ran(run(offline, "capture", "import", str(offline / "empty"), "--endpoint", "ep", check=False))
    assert r.code == 3
    one_line_error(r, "no *.jsonl capture files")
    r = _ran(run(offline, "capture", "import", str(offline / "empty"), "--endpoint", "nope", check=False))
    assert r.code == 3
    one_line_error(r, "no endpoint named 'nope'")


@pytest.mark.s3
def test_capture_import_from_s3(offline: Path, seaweed):
    from tests.infra import S3_KEY, S3_SECRET

    s3 = seaweed.client()
    s3.create_bucket(Bucket="sm-capture")
    tree = capture_tree(offline / "tree", good=12, bad=0)
    for f in tree.rglob("*.jsonl"):
        s3.put_object(Bucket="sm-capture", Key=f"datacapture/{f.relative_to(tree)}", Body=f.read_bytes())
    s3.put_object(Bucket="sm-capture", Key="datacapture/README.txt", Body=b"not capture")
    env = {"MLGOV_S3_ENDPOINT_URL": seaweed.endpoint, "MLGOV_S3_ACCESS_KEY_ID": S3_KEY,
           "MLGOV_S3_SECRET_ACCESS_KEY": S3_SECRET}
    r = run(offline, "capture", "import", "s3://sm-capture/datacapture/", "--endpoint", "ep", "--json", **env)
    assert json.loads(r.stdout) == {"files": 1, "accepted": 12, "sampled_out": 0, "duplicates": 0, "rejected": 0}
