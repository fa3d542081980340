"""`mlgov capture import|export` (offline, on the database) and monitor's verbs over the SDK against a live server."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from mlgov.db import Database
from tests.clirun import TRACEBACK, Cli, Ran, live_cli, one_line_error
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
    assert json.loads(exported.stdout) == {"endpoint": "ep", "records": 30, "files": 5, "to": str(out),
                                           "files_copied": 5, "files_removed": 0}
    assert "exporting" not in exported.stderr   # no progress bar when stderr is not a terminal


def test_capture_compact_merges_an_imports_batches_once(offline: Path):
    """After an import in batches of 7 (5 batches of one hour): one batch; a second run finds nothing to merge.
    Exported before and after into the same directory, the tree holds each record once (before: the 5 parts'
    files stayed beside the merged one, every record twice); a file that is not a batch's stays."""
    tree = capture_tree(offline / "tree", good=30, bad=0)
    run(offline, "capture", "import", str(tree), "--endpoint", "ep", "--batch", "7")
    out = offline / "out"
    run(offline, "capture", "export", "--endpoint", "ep", "--to", str(out))
    [hour] = {p.parent for p in out.rglob("*.jsonl")}
    (hour / "notes.txt").write_text("mine")
    (hour / f".{'a' * 32}.jsonl.tmp-99").write_text("{}")   # a copy an export killed midway left
    r = run(offline, "capture", "compact", "--json")
    assert json.loads(r.stdout) == {"batches_merged": 5, "batches_written": 1, "records": 30,
                                     "unreferenced_files_deleted": 0}
    exported = run(offline, "capture", "export", "--endpoint", "ep", "--to", str(out), "--json")
    assert json.loads(exported.stdout) == {"endpoint": "ep", "records": 30, "files": 1, "to": str(out),
                                           "files_copied": 1, "files_removed": 6}
    assert sum(len(p.read_text().splitlines()) for p in out.rglob("*.jsonl")) == 30
    assert sorted(p.suffix for p in hour.iterdir()) == [".jsonl", ".txt"]
    assert run(offline, "capture", "export", "--endpoint", "ep", "--to", str(out)).stdout.strip() == (
        f"exported 30 records in 1 files to {out} (0 copied now; 0 removed: merged or deleted since an earlier "
        "export)")
    assert run(offline, "capture", "compact").stdout.strip() == (
        "merged 0 batches into 0 (0 records); deleted 0 files no batch refers to")


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


# --- monitor's verbs over the SDK, against a live server ----------------------------------------------------------

@pytest.fixture
def cli(tmp_path):
    with live_cli(tmp_path) as c:
        yield c


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _setup_endpoint(cli: Cli) -> None:
    assert cli.invoke("groups", "create", "g", key="publisher").code == 0
    assert cli.invoke("versions", "register", "g", "--artifact-uri", "s3://m/1", "--sha256", "a" * 64,
                      key="publisher").code == 0
    made = cli.invoke("endpoints", "create", "ep", "--group", "g", "--version", "1", "--feature", "age:Integral",
                      "--feature", "income:Fractional", "--feature", "state:String")
    assert made.stdout.strip() == "created endpoint ep serving g/1", made.stderr


def test_monitoring_story_in_a_real_shell(cli: Cli, tmp_path: Path):
    """endpoint → capture → baseline → analysis → schedule → run → alert, as real `mlgov` processes."""
    from tests.monitor.test_api import frame

    _setup_endpoint(cli)
    frame(400).to_csv(tmp_path / "train.csv", index=False)
    made = cli.run("baselines", "create", str(tmp_path / "train.csv"), "--name", "train", "--json")
    assert made.code == 0, made.stderr
    baseline = json.loads(made.stdout)
    assert (baseline["name"], baseline["row_count"], baseline["feature_count"]) == ("train", 400, 3)

    shifted = [record(i, T0, (80 + i % 5, 400.0 + i, "ZZ")) for i in range(50)]
    sent = cli.run("endpoints", "capture", "ep", str(jsonl(tmp_path / "traffic.jsonl", shifted)), key="ingest")
    assert (sent.code, sent.stdout.strip()) == (0, "accepted=50 sampled_out=0 duplicates=0 rejected=0"), sent.stderr

    analysed = cli.run("analyses", "run", baseline["id"], "--endpoint", "ep", "--start", "2026-11-20T10:00:00Z",
                       "--end", "2026-11-20T11:00:00Z")
    assert analysed.code == 0, analysed.stderr
    assert "violations:" in analysed.stdout and "drift:" in analysed.stdout
    drift_rows = analysed.stdout.split("drift:")[1].splitlines()
    assert any(line.split()[:1] == ["income"] and "yes" in line for line in drift_rows), analysed.stdout

    created = cli.run("schedules", "create", "ep-hourly", "--endpoint", "ep", "--baseline", baseline["id"],
                      "--schedule", "hourly")
    assert created.code == 0 and created.stdout.startswith("created schedule ep-hourly (DataQuality of ep, hourly)")
    ran = cli.run("schedules", "run", "ep-hourly", "--start", "2026-11-20T10:00:00Z", "--end",
                  "2026-11-20T11:00:00Z", "--json")
    assert ran.code == 0 and json.loads(ran.stdout)["violation_count"] >= 1, ran.stderr
    alerts = cli.run("alerts", "list", "--status", "open", "--json", key="viewer")
    assert alerts.code == 0
    assert {(a["check"], a["model_group"]) for a in json.loads(alerts.stdout)} >= {("baseline_drift_check", "g")}
    table = cli.run("alerts", "list", key="viewer")
    assert table.stdout.split()[:3] == ["id", "┃", "status"] and "baseline_drift_check" in table.stdout
    # a trial could not tell two alerts of the same check apart, nor open one, nor list every status at once
    first = json.loads(alerts.stdout)[0]
    assert first["schedule"] == "ep-hourly" and first["subject"]
    shown = cli.run("alerts", "show", first["id"], "--json", key="viewer")
    assert shown.code == 0 and json.loads(shown.stdout) == first, shown.stderr
    # a trial saw "model group" and "model version" empty and each violation cut at 80 characters
    text = cli.run("alerts", "show", first["id"], key="viewer").stdout
    assert re.search(r"model group\s+g\b", text) and re.search(r"model version\s+1\b", text), text
    item = ", ".join(f"{k}={v}" for k, v in first["details"][0].items())
    assert len(item) > 80 and item in " ".join(text.split()), text
    every = cli.run("alerts", "list", "--status", "all", "--json", key="viewer")
    resolved = cli.run("alerts", "list", "--status", "resolved", "--json", key="viewer")
    assert every.code == 0 and sorted(a["id"] for a in json.loads(every.stdout)) == sorted(
        a["id"] for a in json.loads(alerts.stdout) + json.loads(resolved.stdout))
    missing = cli.run("alerts", "show", "0" * 32, key="viewer")
    assert missing.code == 3 and "alert" in missing.stderr, (missing.code, missing.stderr)


def test_capture_over_the_api_exit_codes(cli: Cli, tmp_path: Path):
    _setup_endpoint(cli)
    good = [record(i, T0, (30 + i, 40.0, "CA")) for i in range(8)]
    bad = [record(i, T0, ("x", 40.0, "CA", 5), event_id=f"bad-{i}") for i in range(3)]
    (tmp_path / "array.json").write_text(json.dumps(good[:4]))
    mixed = jsonl(tmp_path / "mixed.jsonl", good[4:] + bad)
    r = cli.invoke("endpoints", "capture", "ep", str(tmp_path / "array.json"), str(mixed), "--batch", "3", "--json",
                   key="ingest")
    assert r.code == 6, r.stderr
    assert json.loads(r.stdout) == {"files": 2, "accepted": 8, "sampled_out": 0, "duplicates": 0, "rejected": 3}
    assert f"{mixed}: line 5: schema mismatch" in r.stderr and "(and 2 more records)" in r.stderr

    only_bad = cli.invoke("endpoints", "capture", "ep", str(jsonl(tmp_path / "bad.jsonl", bad)), key="ingest")
    assert only_bad.code == 4
    assert only_bad.stderr.strip().splitlines()[-1].startswith("error: all 3 records were rejected")
    assert cli.invoke("endpoints", "summary", "ep").stdout.strip() == "ep: 8 captured records"

    labels = [{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": f"inf-{i}"},
               "eventVersion": "0"} for i in range(3)]
    gt = cli.invoke("endpoints", "ground-truth", "ep", str(jsonl(tmp_path / "gt.jsonl", labels)), "--json",
                    key="ingest")
    assert gt.code == 0 and json.loads(gt.stdout)["accepted"] == 3, gt.stderr
    fixed = [{**r, "groundTruthData": {"data": "0", "encoding": "CSV"}} for r in labels[:2]]
    resent = cli.invoke("endpoints", "ground-truth", "ep", str(jsonl(tmp_path / "fix.jsonl", fixed)), key="ingest")
    assert resent.code == 0 and "replaced=0 duplicates=2" in resent.stdout, resent.stderr
    replaced = cli.invoke("endpoints", "ground-truth", "ep", str(tmp_path / "fix.jsonl"), "--replace", "--json",
                          key="ingest")
    assert json.loads(replaced.stdout) == {"files": 1, "accepted": 0, "replaced": 2, "duplicates": 0, "unmatched": 0,
                                           "rejected": 0}, replaced.stderr

    missing = cli.invoke("endpoints", "capture", "nope", str(mixed), key="ingest")
    assert missing.code == 3
    one_line_error(missing, "no endpoint named 'nope'")
    viewer = cli.invoke("endpoints", "capture", "ep", str(mixed), key="viewer")
    assert viewer.code == 4
    one_line_error(viewer, "role 'viewer'")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    bad_file = cli.invoke("endpoints", "capture", "ep", str(broken), key="ingest")
    assert bad_file.code == 2
    one_line_error(bad_file, "is not valid JSON")


def test_monitor_verbs_errors_and_json(cli: Cli, tmp_path: Path):
    from tests.monitor.test_api import frame

    _setup_endpoint(cli)
    assert json.loads(cli.invoke("endpoints", "list", "--json").stdout)[0]["schema"]["features"][0]["name"] == "age"
    no_features = cli.invoke("endpoints", "create", "ep2", "--group", "g", "--version", "1")
    assert no_features.code == 2
    one_line_error(no_features, "give the endpoint's features")
    bad_type = cli.invoke("endpoints", "create", "ep2", "--group", "g", "--version", "1", "--feature", "age:Number")
    assert bad_type.code == 4
    one_line_error(bad_type)

    frame(200).to_csv(tmp_path / "train.csv", index=False)
    baseline = json.loads(cli.invoke("baselines", "create", str(tmp_path / "train.csv"), "--json").stdout)
    assert json.loads(cli.invoke("baselines", "file", baseline["id"], "constraints.json").stdout)["features"]
    assert cli.invoke("baselines", "show", "nope").code == 3
    attached = cli.invoke("baselines", "attach", baseline["id"], "g", "1")
    assert attached.stdout.strip() == f"baseline {baseline['id']} is the ModelDataQuality baseline of g/1"
    frame(100, shift=30, seed=2).to_csv(tmp_path / "current.csv", index=False)
    run = cli.invoke("analyses", "run", baseline["id"], str(tmp_path / "current.csv"), "--json", "--drift",
                     '{"numerical": "ks"}')
    analysis = json.loads(run.stdout)
    assert analysis["dataset_drift"] is not None and {d["method"] for d in analysis["drift"]} >= {"ks"}
    listed = json.loads(cli.invoke("analyses", "list", "--baseline", baseline["id"], "--json").stdout)
    assert [a["id"] for a in listed] == [analysis["id"]]
    assert "<html" in cli.invoke("analyses", "report", analysis["id"], "--html").stdout.lower()
    no_window = cli.invoke("analyses", "run", baseline["id"], "--endpoint", "ep")
    assert no_window.code == 2
    bad_drift = cli.invoke("analyses", "run", baseline["id"], str(tmp_path / "current.csv"), "--drift", "{nope")
    assert bad_drift.code == 2
    one_line_error(bad_drift, "--drift is not valid JSON")
    # a run that Failed exits 1 after showing why (before: 0, so `mlgov analyses run … && deploy` went on)
    empty = ["--start", "2026-12-01T00:00:00Z", "--end", "2026-12-01T01:00:00Z"]     # nothing captured then
    failed = cli.invoke("analyses", "run", baseline["id"], "--endpoint", "ep", *empty)
    assert failed.code == 1 and "Failed" in failed.stdout and "no data captured" in failed.stdout, failed.stdout

    bad_cron = cli.invoke("schedules", "create", "s", "--endpoint", "ep", "--baseline", baseline["id"],
                          "--schedule", "every now")
    assert bad_cron.code == 4
    one_line_error(bad_cron, "not a 5-field cron")
    assert cli.invoke("schedules", "create", "s", "--endpoint", "ep", "--baseline", baseline["id"],
                      "--schedule", "*/5 * * * *").code == 0
    window = json.loads(cli.invoke("schedules", "update", "s", "--window-start", "-PT2H", "--json").stdout)
    assert (window["window_start"], window["window_end"]) == ("-PT2H", "PT0S")
    assert cli.invoke("schedules", "stop", "s").stdout.strip() == "schedule s is Stopped"
    assert cli.invoke("schedules", "start", "s").stdout.startswith("schedule s is Scheduled; next run ")
    assert cli.invoke("schedules", "executions", "s").stdout.strip() == "no executions yet"
    failed = cli.invoke("schedules", "run", "s", *empty, "--json")
    assert failed.code == 1 and json.loads(failed.stdout)["status"] == "Failed", failed.stdout
    assert cli.invoke("schedules", "delete", "s").stdout.strip() == "deleted schedule s"
    assert cli.invoke("schedules", "show", "s").code == 3
    assert cli.invoke("alerts", "list").stdout.strip() == "no alerts"
