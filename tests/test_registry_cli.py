"""`mlgov groups|versions|approve|reject|stage` against a live server: tables, --json, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.clirun import Cli, live_cli, one_line_error
from tests.helpers import sha

pytestmark = pytest.mark.live


@pytest.fixture
def cli(tmp_path):
    with live_cli(tmp_path) as c:
        yield c


def test_the_story_in_a_real_shell(cli: Cli, tmp_path):
    """register → four-eyes refusal → approve → stage, as real `mlgov` processes."""
    r = cli.run("groups", "create", "credit-risk", "--description", "loan defaults", "--tag", "team=risk",
                key="publisher")
    assert (r.code, r.stdout.strip()) == (0, "created model group credit-risk"), r.stderr
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"model bytes")
    r = cli.run("versions", "register", "credit-risk", "--artifact-file", str(artifact), "--metric", "auc=0.91",
                "--metadata", "run=42", "--json", key="publisher")
    assert r.code == 0, r.stderr
    v = json.loads(r.stdout)
    assert (v["version"], v["artifact_sha256"], v["metrics"]) == (1, sha("model bytes"), {"auc": 0.91})
    assert v["artifact_uri"] == artifact.resolve().as_uri()

    mine = cli.run("approve", "credit-risk", "1", "-m", "my own", key="publisher")
    assert mine.code == 4
    one_line_error(mine, "may not call", "fix: use a key with one of the roles")

    ok = cli.run("approve", "credit-risk", "1", "-m", "auc holds on the holdout", key="approver")
    assert (ok.code, ok.stdout.strip()) == (0, "credit-risk/1 is Approved"), ok.stderr
    staged = cli.run("stage", "credit-risk", "1", "Staging", "--json", key="approver")
    assert staged.code == 0 and json.loads(staged.stdout)["stage"] == "Staging"

    table = cli.run("versions", "list", "credit-risk", key="viewer")
    assert table.code == 0, table.stderr
    header, _, row = table.stdout.splitlines()[:3]
    assert header.split() == ["version", "┃", "status", "┃", "stage", "┃", "artifact", "uri", "┃", "metrics", "┃",
                              "registered", "by", "┃", "created", "at"]
    cells = [c.strip() for c in row.split("│")]
    assert cells[:3] == ["1", "Approved", "Staging"] and cells[4] == "auc=0.91"
    assert artifact.resolve().as_uri().startswith(cells[3].rstrip("…"))   # long values are cut to 80 characters


def test_exit_codes_and_one_line_errors(cli: Cli, tmp_path):
    assert cli.invoke("groups", "create", "g", key="publisher").code == 0
    dup = cli.invoke("groups", "create", "g", key="publisher")
    assert dup.code == 4
    one_line_error(dup, "already exists", "(fix: ")

    missing = cli.invoke("versions", "show", "g", "9")
    assert missing.code == 3
    one_line_error(missing, "has no version 9")
    assert cli.invoke("groups", "show", "nope").code == 3

    bad_option = cli.invoke("versions", "list", "g", "--limit", "0")
    assert bad_option.code == 2
    one_line_error(bad_option, "--limit", " versions list --help`)")
    no_comment = cli.invoke("approve", "g", "1")
    assert no_comment.code == 2
    one_line_error(no_comment, "missing option '--comment'")
    typo = cli.invoke("grops", "list")
    assert typo.code == 2
    one_line_error(typo, "no such command 'grops'")
    bad_pair = cli.invoke("groups", "list", "--tag", "team")
    assert bad_pair.code == 2
    one_line_error(bad_pair, "--tag 'team' is not key=value")
    no_sha = cli.invoke("versions", "register", "g", "--artifact-uri", "s3://m/1", key="publisher")
    assert no_sha.code == 2
    one_line_error(no_sha, "needs its artifact's URI and SHA-256", "--artifact-file")

    invalid = cli.invoke("versions", "register", "g", "--artifact-uri", "s3://m/1", "--sha256", "abc",
                         key="publisher")
    assert invalid.code == 4
    one_line_error(invalid, "artifact_sha256")

    no_key = cli.invoke("groups", "list", key=None)
    assert no_key.code == 2
    one_line_error(no_key, "no API key", "MLGOV_API_KEY")
    wrong_key = cli.invoke("groups", "list", key=None, MLGOV_API_KEY="mlgov_nope_nope")
    assert wrong_key.code == 4
    one_line_error(wrong_key)

    down = cli.run("groups", "list", MLGOV_URL="http://127.0.0.1:9")   # a real process, nothing listening
    assert down.code == 5
    one_line_error(down, "cannot be reached", "http://127.0.0.1:9", "mlgov serve")


def test_tables_and_json_agree(cli: Cli):
    for name in ("alpha", "beta"):
        assert cli.invoke("groups", "create", name, "--tag", "team=risk", key="publisher").code == 0
    for n in (1, 2, 3):
        r = cli.invoke("versions", "register", "alpha", "--artifact-uri", f"s3://m/{n}", "--sha256", sha(str(n)),
                       "--metric", f"auc=0.{n}", key="publisher")
        assert r.stdout.strip() == f"registered alpha/{n} (PendingManualApproval)", r.stderr

    listed = json.loads(cli.invoke("groups", "list", "--tag", "team=risk", "--json").stdout)
    assert [g["name"] for g in listed] == ["alpha", "beta"]
    assert json.loads(cli.invoke("versions", "list", "alpha", "--limit", "2", "--json").stdout)[0]["version"] == 3
    paged = cli.invoke("versions", "list", "alpha", "--limit", "2")
    assert paged.stdout.splitlines()[-1].strip() == "1–2 of 3 (more with --offset/--limit)"
    assert cli.invoke("groups", "list", "--name-contains", "zzz").stdout.strip() == "no model groups"

    shown = cli.invoke("versions", "show", "alpha", "latest")
    assert shown.code == 0
    fields = {line.split(None, 1)[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert "3" in fields["version"] and "auc=0.3" in fields["metrics"]

    assert cli.invoke("reject", "alpha", "2", "-m", "auc too low", key="approver").stdout.strip() == \
        "alpha/2 is Rejected"
    stale = cli.invoke("approve", "alpha", "2", "-m", "late", "--expect", "PendingManualApproval", key="approver")
    assert stale.code == 4
    history = json.loads(cli.invoke("versions", "approvals", "alpha", "2", "--json").stdout)
    assert [(h["to_status"], h["actor"]) for h in history] == [("Rejected", "approver")]
    assert cli.invoke("approve", "alpha", "3", "-m", "ok", key="approver").code == 0
    assert cli.invoke("stage", "alpha", "3", "Staging", key="approver").code == 0
    moved = cli.invoke("stage", "alpha", "3", "Production", "-m", "go", key="approver")
    assert moved.stdout.strip() == "alpha/3 is in Production"
    assert cli.invoke("groups", "stage", "alpha", "Production").stdout.startswith(
        "versions of alpha in Production at ")
    moves = json.loads(cli.invoke("versions", "history", "alpha", "--version", "3", "--json").stdout)
    assert [m["to_stage"] for m in moves] == ["Development", "Staging", "Production"]
    updated = json.loads(cli.invoke("groups", "update", "beta", "--description", "new", "--json",
                                    key="publisher").stdout)
    assert updated["description"] == "new"


def test_profiles(cli: Cli, tmp_path):
    """--profile picks url and key from the profile file; an explicit profile wins over MLGOV_API_KEY."""
    key_file = tmp_path / "viewer.key"
    key_file.write_text(cli.keys["viewer"] + "\n")
    config = cli.home / ".config" / "mlgov"
    config.mkdir(parents=True)
    (config / "profiles.toml").write_text(
        f'[default]\nurl = "{cli.url}"\napi_key = "{cli.keys["publisher"]}"\n\n'
        f'[ops]\nurl = "{cli.url}"\napi_key_file = "{key_file}"\n')
    created = cli.invoke("groups", "create", "p", key=None, MLGOV_URL="")
    assert created.code == 0, created.stderr   # [default]'s publisher key
    refused = cli.invoke("--profile", "ops", "groups", "create", "q", MLGOV_URL="http://127.0.0.1:9")
    assert refused.code == 4, refused.stderr   # ops' viewer key and url, not the environment's admin key
    one_line_error(refused, "role 'viewer'")
    unknown = cli.invoke("--profile", "nope", "groups", "list")
    assert unknown.code == 2
    one_line_error(unknown, "no profile 'nope'", "default, ops")
