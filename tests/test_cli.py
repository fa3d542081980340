"""The `mlgov` command in a fresh directory: embedded defaults under ./.mlgov, keys, serve, audit verify."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.infra import free_port, wait_healthy

MLGOV = str(Path(sys.executable).parent / "mlgov")


def run(cwd: Path, *args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")} | extra_env
    p = subprocess.run([MLGOV, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def test_fresh_directory_keys_serve_and_verify(tmp_path):
    refused = run(tmp_path, "keys", "create", "--name", "a", "--role", "viewer", check=False)
    assert refused.returncode != 0 and "mlgov db upgrade" in refused.stderr
    assert "no mlgov database here" in refused.stderr
    assert not (tmp_path / ".mlgov").exists()     # a command run in the wrong directory leaves nothing there
    run(tmp_path, "db", "upgrade")
    assert (tmp_path / ".mlgov" / "mlgov.db").exists()
    out = run(tmp_path, "keys", "create", "--name", "ci", "--role", "publisher").stdout.strip().splitlines()
    key = out[-1]
    assert key.startswith("mlgov_") and len(key) > 40
    dup = run(tmp_path, "keys", "create", "--name", "ci", "--role", "viewer", check=False)
    assert dup.returncode == 4 and "already exists" in dup.stderr   # refused (409)
    bad = run(tmp_path, "keys", "create", "--name", "x", "--role", "root", check=False)
    assert bad.returncode == 4 and "unknown role" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("error: ")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")}
    proc = subprocess.Popen([MLGOV, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        admin_file = tmp_path / ".mlgov" / "admin.key"
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
        admin = admin_file.read_text().strip()
        h = {"Authorization": f"Bearer {admin}"}
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/model-groups", json={"name": "g"}, headers=h, timeout=60)
        assert r.status_code == 201
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/model-groups", json={"name": "g2"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert str(admin_file.resolve()) in out and admin not in out  # says where the key is, never prints it
    listed = run(tmp_path, "keys", "list").stdout
    assert "ci\tpublisher" in listed and "admin\tadmin" in listed
    ver = run(tmp_path, "audit", "verify")
    assert '"ok": true' in ver.stdout
    run(tmp_path, "keys", "revoke", "ci")
    assert "revoked" in run(tmp_path, "keys", "list").stdout
    assert "up to date" in run(tmp_path, "db", "current").stdout


def test_demo_seed_is_idempotent_and_monitors_what_it_captured(tmp_path):
    """`make run`'s demo shows monitoring too (the Monitoring page was empty): its last two captured hours drift
    and the model does worse on them (and predicts churn for month-to-month customers more often than for the rest,
    beyond what its validation set allowed), and mlgov's own runs over the hours it seeded say so, and only there."""
    run(tmp_path, "db", "upgrade")
    assert "seeded" in run(tmp_path, "demo", "seed", "--if-empty").stdout
    assert "nothing seeded" in run(tmp_path, "demo", "seed", "--if-empty").stdout
    from mlgov.db import Database
    from monitor import schedules, service

    db = Database(f"sqlite:///{tmp_path / '.mlgov' / 'mlgov.db'}")
    try:
        with db.session_scope(write=False) as s:
            assert service.captured_count(s, "churn-prod") == 6000
            verdicts = {}
            for name in ("churn-prod-data-quality", "churn-prod-model-quality", "churn-prod-bias"):
                assert schedules.get(s, name).status == "Stopped"   # no traffic comes: new hours would only fail
                runs, total = schedules.executions(s, name, 50, 0)
                assert total == 6
                verdicts[name] = [(e.status, e.violation_count) for e in sorted(runs, key=lambda e: e.window_start)]
            for name, runs in verdicts.items():
                assert [status for status, _ in runs] == ["Completed"] * 4 + ["CompletedWithViolations"] * 2, name
            alerts = schedules.list_alerts(s, status="open", schedule=None, model_group="churn-classifier",
                                           limit=50, offset=0)[0]
            assert {(a.subject, a.check) for a in alerts} == {
                ("monthly_charges", "baseline_drift_check"), ("contract", "baseline_drift_check"),
                ("accuracy", "LessThanThreshold"), ("auc", "LessThanThreshold"),
                ("DPPL (contract=month-to-month)", "bias_drift_check")}
    finally:
        db.dispose()


def test_capture_import_export_round_trip(tmp_path):
    import datetime as dt
    import json

    from tests.monitor.test_api import FEATURES, record

    run(tmp_path, "db", "upgrade")
    # a group, version and endpoint through the services (the CLI has no registry commands)
    from mlgov.db import Database
    from tests.helpers import seed_endpoint

    db = Database(f"sqlite:///{tmp_path / '.mlgov' / 'mlgov.db'}")
    with db.session_scope() as s:
        seed_endpoint(s, FEATURES)
    db.dispose()
    tree = tmp_path / "sm" / "ep" / "AllTraffic" / "2026" / "11" / "20" / "10"
    tree.mkdir(parents=True)
    t = dt.datetime(2026, 11, 20, 10, 1, tzinfo=dt.UTC)
    lines = [json.dumps(record(i, t, (30 + i, 40.0, "CA"))) for i in range(5)] + ["{broken"]
    (tree / "capture.jsonl").write_text("\n".join(lines) + "\n")
    out = run(tmp_path, "capture", "import", str(tmp_path / "sm"), "--endpoint", "ep", check=False)
    assert out.returncode == 6   # partly done: one record rejected
    assert "accepted=5" in out.stdout and "rejected=1" in out.stdout and "not valid JSON" in out.stderr
    again = run(tmp_path, "capture", "import", str(tmp_path / "sm"), "--endpoint", "ep", check=False)
    assert again.returncode == 6   # the broken line is still rejected
    assert "accepted=0" in again.stdout and "duplicates=5" in again.stdout
    run(tmp_path, "capture", "export", "--endpoint", "ep", "--to", str(tmp_path / "out"))
    exported = list((tmp_path / "out" / "ep" / "AllTraffic" / "2026" / "11" / "20" / "10").glob("*.jsonl"))
    records = [json.loads(line) for f in exported for line in f.read_text().splitlines()]
    assert sorted(r["eventMetadata"]["eventId"] for r in records) == [f"ev-{i}" for i in range(5)]


def test_audit_key_checkpoint_and_verify_exit_codes_on_tamper(tmp_path):
    """`mlgov audit verify` exits non-zero after the newest rows are deleted or a row is rewritten."""
    import json
    import sqlite3

    run(tmp_path, "db", "upgrade")
    home = tmp_path / ".mlgov"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "mlgov.db").stat().st_mode) == 0o600
    for i in range(4):
        run(tmp_path, "keys", "create", "--name", f"k{i}", "--role", "viewer", "--owner", "alice")
    assert stat.S_IMODE((home / "audit.key").stat().st_mode) == 0o600
    assert "owner=alice\tcreated_by=cli" in run(tmp_path, "keys", "list").stdout
    cp = json.loads(run(tmp_path, "audit", "checkpoint").stdout)
    assert cp["seq"] == 4 and (home / "store" / "audit" / "checkpoints" / "latest.json").exists()
    assert json.loads(run(tmp_path, "audit", "verify").stdout)["ok"] is True
    # an operator's trial: verify with the wrong key led with "this event was modified" at seq 1
    wrong = run(tmp_path, "audit", "verify", check=False, MLGOV_AUDIT_KEY="f" * 64)
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["reason"].startswith(
        "this process's audit key"), wrong.stdout
    with sqlite3.connect(home / "mlgov.db") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 4")
    bad = run(tmp_path, "audit", "verify", check=False)
    assert bad.returncode == 1 and "truncation" in json.loads(bad.stdout)["reason"]
    refused = run(tmp_path, "audit", "checkpoint", check=False)
    assert refused.returncode == 1 and "missing" in refused.stderr
    with sqlite3.connect(home / "mlgov.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    edited = json.loads(run(tmp_path, "audit", "verify", check=False).stdout)
    assert edited["first_bad_seq"] == 2 and "content hash" in edited["reason"]
    # an operator's trial: a process in another home (no MLGOV_AUDIT_KEY) made its own key and broke the chain
    elsewhere = {"MLGOV_HOME": str(tmp_path / "elsewhere"), "MLGOV_DATABASE_URL": f"sqlite:///{home / 'mlgov.db'}"}
    for args in (("keys", "create", "--name", "stray", "--role", "viewer"), ("serve", "--port", "1")):
        stray = run(tmp_path, *args, check=False, **elsewhere)
        assert stray.returncode == 1 and "does not verify with this process's audit key" in stray.stderr, stray.stderr
        assert "MLGOV_AUDIT_KEY" in stray.stderr and "serving" not in stray.stdout
    assert "stray" not in run(tmp_path, "keys", "list").stdout


def test_help_documents_exit_codes_and_loads_no_sdk(tmp_path):
    """`mlgov --help` lists the verbs and the exit codes, and imports neither the SDK nor pandas/numpy (the verbs
    import them when they run, so help stays quick)."""
    import json

    probe = ("import sys, json; sys.argv = ['mlgov', '--help']\n"
             "from mlgov.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "heavy = ('mlgov.client', 'mlgov.sdk', 'pandas', 'numpy', 'scipy', 'httpx')\n"
             "print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")} | {"COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []
    for verb in ("groups", "versions", "approve", "endpoints", "baselines", "analyses", "schedules", "alerts", "bias",
                 "explain", "lineage"):
        assert f"│ {verb} " in p.stdout, verb
    assert "Exit codes: 0 ok · 1 error · 2 usage" in " ".join(p.stdout.split())


def test_db_upgrade_never_prints_a_password_given_in_the_urls_query(tmp_path):
    """An operator's trial: `?password=QSECRETPW` (libpq's form, as some secret stores render URLs) was printed
    by `mlgov db upgrade`, and the Helm chart's migrate job logs that line; the user:password form was masked."""
    from tests.infra import fresh_database

    with fresh_database("postgres", tmp_path) as url:
        shown = run(tmp_path, "db", "upgrade",
                    MLGOV_DATABASE_URL=f"{url}?password=QSECRETPW&sslpassword=SSLSECRET&application_name=mlgov")
    out = shown.stdout + shown.stderr
    assert "database at head" in out and "application_name=mlgov" in out, out
    assert "QSECRETPW" not in out and "SSLSECRET" not in out and "password=***" in out


def test_serve_without_bootstrap_leaves_the_first_admin_key_to_the_operator(tmp_path):
    """An operator's trial: in the Helm chart serve had already made a key named 'admin' into the pod's scratch
    MLGOV_HOME (lost with the pod, active in the database), so the chart's own instruction `mlgov keys create
    --name admin --role admin` failed with 'already exists'. With MLGOV_BOOTSTRAP_ADMIN=false (the chart's
    setting) serve creates none and says how to make one; the instruction then works."""
    run(tmp_path, "db", "upgrade")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")} | {"MLGOV_BOOTSTRAP_ADMIN": "false"}
    proc = subprocess.Popen([MLGOV, "serve", "--port", str(port), "--no-scheduler"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert not (tmp_path / ".mlgov" / "admin.key").exists() and "mlgov keys create --name admin" in out
    assert run(tmp_path, "keys", "list").stdout.strip() == ""
    assert run(tmp_path, "keys", "create", "--name", "admin", "--role", "admin").stdout.strip().splitlines()[-1] \
        .startswith("mlgov_")


def test_secrets_rotate_lets_the_old_key_go(tmp_path):
    """An operator's trial rotated MLGOV_SECRETS_KEY to "NEW,OLD": everything worked, but the stored webhook
    secrets stayed sealed with OLD, so OLD could never be removed (nothing re-encrypted them). `mlgov secrets
    rotate` seals every stored secret with the first key, all or nothing, and is audited."""
    from cryptography.fernet import Fernet
    from sqlalchemy import select, text

    from mlgov.auth import ApiKey
    from mlgov.db import Database
    from mlgov.secrets import SecretBox, SecretsUnavailable

    old, new, stray = (Fernet.generate_key().decode() for _ in range(3))
    run(tmp_path, "db", "upgrade")
    made = run(tmp_path, "keys", "create", "--name", "ci", "--role", "publisher", "--aws",
               MLGOV_SECRETS_KEY=old).stdout
    aws_secret = next(line.split("=", 1)[1] for line in made.splitlines() if line.startswith("AWS_SECRET_ACCESS_KEY"))
    db = Database(f"sqlite:///{tmp_path / '.mlgov' / 'mlgov.db'}")

    def add_hook(hook_id: str, key: str) -> None:
        with db.write_engine.begin() as c:
            c.execute(text("INSERT INTO events_webhooks (id, url, sealed_url, secret, events, active, created_by, "
                           "created_at, last_sequence) VALUES (:i, 'https://hooks.example/x?t=***', :u, :s, "
                           "'[\"*\"]', 1, 'admin', '2026-12-01 00:00:00', 0)"),
                      {"i": hook_id, "u": "https://hooks.example/x?t=tok",   # plaintext, as migration 0027 leaves it
                       "s": SecretBox(keys=[key.encode()]).encrypt(f"signing-{hook_id}")})

    add_hook("h1", old)
    add_hook("h2", stray)            # sealed with a key the server does not have: the rotation must stop
    refused = run(tmp_path, "secrets", "rotate", check=False, MLGOV_SECRETS_KEY=f"{new},{old}")
    # keys to correct, not an outage a script should retry (5): a usage error, as an invalid key is
    one_error_line(refused, 2, "cannot be decrypted", "MLGOV_SECRETS_KEY")
    one_error_line(run(tmp_path, "secrets", "rotate", check=False, MLGOV_SECRETS_KEY=f"{new},not-a-key"), 2,
                   "MLGOV_SECRETS_KEY's key 2 of 2 is not a Fernet key")
    with db.session_scope() as s:     # all or nothing: the other rows were not touched either
        assert SecretBox(keys=[old.encode()]).decrypt(s.scalar(select(ApiKey.aws_secret))) == aws_secret
    with db.write_engine.begin() as c:
        c.execute(text("DELETE FROM events_webhooks WHERE id = 'h2'"))
    done = run(tmp_path, "secrets", "rotate", MLGOV_SECRETS_KEY=f"{new},{old}").stdout
    assert "events_webhooks.secret: 1 re-encrypted" in done and "api_keys.aws_secret: 1 re-encrypted" in done
    assert "events_webhooks.sealed_url: 1 re-encrypted" in done
    only_new = SecretBox(keys=[new.encode()])
    with db.session_scope() as s:
        assert only_new.decrypt(s.scalar(select(ApiKey.aws_secret))) == aws_secret
        hook_secret = s.scalar(text("SELECT secret FROM events_webhooks WHERE id = 'h1'"))
        assert only_new.decrypt(hook_secret) == "signing-h1"
        hook_url = s.scalar(text("SELECT sealed_url FROM events_webhooks WHERE id = 'h1'"))
        assert hook_url.startswith("enc:v1:") and only_new.decrypt(hook_url) == "https://hooks.example/x?t=tok"
        with pytest.raises(SecretsUnavailable):
            SecretBox(keys=[old.encode()]).decrypt(hook_secret)
        rotated = s.scalar(text("SELECT after FROM audit_events WHERE action = 'secrets.rotated'"))
        assert rotated is not None and "events_webhooks.secret" in str(rotated)
    db.dispose()
    assert '"ok": true' in run(tmp_path, "audit", "verify").stdout


def test_audit_reanchor_after_restoring_an_older_backup(tmp_path):
    """An operator's trial restored a database backup older than the newest checkpoint: verify rightly reported
    a truncation, but nothing could ever anchor the chain again (checkpoints refused, an error logged every N
    events). `mlgov audit reanchor` sets the unreachable checkpoints aside (kept), records that in the chain and
    anchors it; it refuses when the chain itself was edited (that is tampering, not a restore)."""
    import sqlite3

    home = tmp_path / ".mlgov"
    run(tmp_path, "db", "upgrade")
    for i in range(3):
        run(tmp_path, "keys", "create", "--name", f"before-{i}", "--role", "viewer")
    run(tmp_path, "audit", "checkpoint")
    backup = tmp_path / "backup.db"
    with sqlite3.connect(home / "mlgov.db") as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    for i in range(4):
        run(tmp_path, "keys", "create", "--name", f"after-{i}", "--role", "viewer")
    run(tmp_path, "audit", "checkpoint")
    for suffix in ("", "-wal", "-shm"):                      # the restore
        (home / f"mlgov.db{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(backup) as src, sqlite3.connect(home / "mlgov.db") as dst:
        src.backup(dst)
    broken = run(tmp_path, "audit", "verify", check=False)
    assert broken.returncode == 1 and "truncation" in broken.stdout
    assert run(tmp_path, "audit", "checkpoint", check=False).returncode != 0
    run(tmp_path, "keys", "create", "--name", "after-restore", "--role", "viewer")
    done = run(tmp_path, "audit", "reanchor", "--reason", "restored the nightly backup (ops ticket 42)")
    assert '"seq"' in done.stdout
    assert '"ok": true' in run(tmp_path, "audit", "verify").stdout
    run(tmp_path, "audit", "checkpoint")                     # anchoring works again
    kept = list(tmp_path.rglob("superseded-checkpoints/*/*.json"))
    assert len(kept) == 1 and '"seq"' in kept[0].read_text()  # the lost checkpoint, kept as evidence
    with sqlite3.connect(home / "mlgov.db") as c:
        (after,) = c.execute("SELECT after FROM audit_events WHERE action = 'audit.reanchored'").fetchone()
        assert "ops ticket 42" in after and '"superseded"' in after
        c.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")   # tampering is no restore
    refused = run(tmp_path, "audit", "reanchor", "--reason", "cover it up", check=False)
    assert refused.returncode != 0 and "not a restore" in refused.stderr


def test_a_closed_stdout_ends_quietly(tmp_path):
    """`mlgov --help | head` printed "error: internal error: BrokenPipeError … report it" and exited 1. A reader
    that stops early is not an error: no line on stderr, and 141, the status of a process SIGPIPE ends. Both
    ways output is written: rich's (help, tables) and typer.echo's (plain lines, --json)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGOV_")} | {
        "PYTHONPATH": str(Path(__file__).resolve().parents[1])}   # this checkout's code, as tests/clirun.py runs it
    assert subprocess.run([MLGOV, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True,
                          timeout=120).returncode == 0
    for args in (["--help"], ["schedules", "--help"], ["audit", "verify"]):
        p = subprocess.Popen([MLGOV, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()            # the reader is gone before mlgov has printed anything (it is still importing)
        err = p.stderr.read().decode()
        assert (p.wait(timeout=120), err) == (141, ""), args


def one_error_line(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with ``code`` and one `error: … (fix: …)` line on stderr, nothing else."""
    assert p.returncode == code, (p.returncode, p.stderr, p.stdout)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(fix: " in lines[0], p.stderr
    assert "internal error" not in lines[0] and "Traceback" not in p.stderr + p.stdout, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


UNUSABLE_SETTINGS = [   # (variable, value, what the error line must say besides the variable)
    ("MLGOV_DATABASE_URL", "postgresql://u:TopSecret1@db/changeme", "placeholder"),
    ("MLGOV_DATABASE_URL", "postgres://u:TopSecret1@db/mlgov", "postgresql+psycopg://"),
    ("MLGOV_DATABASE_URL", "mysql://u:TopSecret1@db/mlgov", "PostgreSQL or SQLite"),
    ("MLGOV_DATABASE_URL", "notaurl-TopSecret1", "not a database URL"),
    ("MLGOV_DATABASE_URL", "postgresql+asyncpg://u:TopSecret1@db/mlgov", "driver"),
    ("MLGOV_MAX_BODY_BYTES", "10MB", "whole number of bytes"),
    ("MLGOV_MAX_BODY_BYTES", "10", "greater than or equal to 1024"),
    ("MLGOV_SCHEDULER", "maybe", "true or false"),
    ("MLGOV_COMPUTE", "spark://u:TopSecret1@x", "dask://"),
    ("MLGOV_AUDIT_KEY", "TopSecret1", "shorter than 16"),
    ("MLGOV_SECRETS_KEY", "TopSecret1", "not a Fernet key"),
]


def test_unusable_settings_are_one_line_naming_the_variable_never_its_value(tmp_path):
    """An operator's trial: a bad MLGOV_* value was "internal error: ValidationError … report it", exit 1, with
    pydantic's dump naming the field (max_body_bytes), not the variable, and showing the value: the database
    password with it. Now: one line naming the variable, what is wrong and how to fix it, no value, exit 2 (a
    setting to correct, not a fault to report); `serve` and the app factory alike."""
    run(tmp_path, "db", "upgrade")
    for var, value, says in UNUSABLE_SETTINGS:
        # (serve's address is one it cannot listen on: were the setting accepted, it would fail, not serve)
        for args in (["keys", "list"], ["serve", "--host", "192.0.2.1"]):
            p = run(tmp_path, *args, check=False, **{var: value})
            line = one_error_line(p, 2, var, says)
            assert "TopSecret1" not in p.stderr + p.stdout and "input_value" not in line, line
            assert "mlgov serving" not in p.stdout
    short = tmp_path / "short"
    short.mkdir()
    run(short, "db", "upgrade")
    (short / ".mlgov" / "audit.key").write_text("TopSecret1\n")
    line = one_error_line(run(short, "keys", "list", check=False), 2, "audit key file", "backup")
    assert "TopSecret1" not in line


def test_the_app_factory_refuses_unusable_settings_without_their_values(monkeypatch):
    """`mlgov serve`'s workers (mlgov.asgi) and any other ASGI server build the app from the environment: the
    refusal is mlgov's sentence (the variable and the fix), pydantic's dump with the password is not even in the
    exception's context (a traceback in a server log would print it)."""
    from mlgov.app import create_app
    from mlgov.settings import SettingsError, get_settings

    monkeypatch.setenv("MLGOV_DATABASE_URL", "postgres://u:TopSecret1@db/mlgov")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as err:
            create_app()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "MLGOV_DATABASE_URL" in str(err.value) and err.value.fix and "TopSecret1" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_db_downgrade_takes_a_relative_revision_and_says_where_the_database_is(tmp_path):
    """An operator's trial: `mlgov db downgrade -1`, as its help says, failed with "No such option: -1"; with
    `-- -1` it printed "database at -1", not the revision. A wrong revision was an internal error (exit 1)."""
    from mlgov.db import head_revision

    run(tmp_path, "db", "upgrade")
    down = run(tmp_path, "db", "downgrade", "-1").stdout
    current = run(tmp_path, "db", "current").stdout.splitlines()[0].split()[-1]
    assert current != head_revision() and f"database at {current}:" in down, (down, current)
    one_error_line(run(tmp_path, "db", "downgrade", "nonsense", check=False), 2, "'nonsense'", "-1")
    one_error_line(run(tmp_path, "db", "upgrade", "nonsense", check=False), 2, "'nonsense'", "head")
    assert f"database at head ({head_revision()})" in run(tmp_path, "db", "upgrade").stdout
    assert "database at base" in run(tmp_path, "db", "downgrade", "base").stdout


def test_serve_on_a_port_in_use_is_one_line_and_unavailable(tmp_path):
    """An operator's trial: with the port taken, serve printed "mlgov serving on …", then uvicorn's [Errno 98]
    and exited 3 ("not found"). Now one line, before anything else is said or done, and 5 (unavailable)."""
    import socket

    run(tmp_path, "db", "upgrade")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = run(tmp_path, "serve", "--port", str(port), "--no-scheduler", check=False)
    one_error_line(p, 5, f"127.0.0.1:{port}", "--port")
    assert p.stdout == "" and not (tmp_path / ".mlgov" / "admin.key").exists()
    one_error_line(run(tmp_path, "serve", "--host", "192.0.2.1", "--port", str(free_port()), check=False), 2,
                   "192.0.2.1")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_servers_starting_at_once_bootstrap_one_admin_key(tmp_path, backend, monkeypatch):
    """An operator's trial: two `mlgov serve` started at once on a fresh PostgreSQL (MLGOV_BOOTSTRAP_ADMIN=true)
    both saw no admin key; one crashed with IntegrityError on uq_auth_api_keys_name. Both checks are made before
    either insert here (a barrier in create_key), as in the race: one creates the key, the other sees it."""
    import contextlib
    import threading

    from sqlalchemy import select

    from mlgov import auth
    from mlgov.db import Database
    from tests.infra import fresh_database, upgrade

    barrier, create = threading.Barrier(2), auth.create_key

    def create_when_both_checked(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):   # serialised, the other never gets here
            barrier.wait(timeout=3)
        return create(*args, **kwargs)

    monkeypatch.setattr(auth, "create_key", create_when_both_checked)
    with fresh_database(backend, tmp_path) as url:
        upgrade(url)
        dbs = [Database(url), Database(url)]
        results: list[object] = [None, None]

        def start(i: int) -> None:
            try:
                results[i] = auth.bootstrap_admin_key(dbs[i], tmp_path / f"home{i}" / "admin.key")
            except Exception as exc:   # the race's loser: reported below
                results[i] = exc

        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        try:
            assert not any(isinstance(r, Exception) for r in results), results
            assert sorted(r is None for r in results) == [False, True], results   # one created it, one saw it
            with dbs[0].session_scope(write=False) as s:
                assert s.scalars(select(auth.ApiKey.name)).all() == ["admin"]
            made = next(i for i, r in enumerate(results) if r is not None)
            assert (tmp_path / f"home{1 - made}").exists() is False   # the other wrote no key file
            assert (tmp_path / f"home{made}" / "admin.key").read_text().startswith("mlgov_")
        finally:
            for d in dbs:
                d.dispose()
