"""The README's Python SDK example runs as written against a live server, and does what it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlgov import auth
from mlgov.app import create_app
from mlgov.client import Client
from mlgov.db import Database
from tests.conftest import make_settings
from tests.infra import LiveServer

pytestmark = pytest.mark.live
README = Path(__file__).resolve().parents[1] / "README.md"


def sdk_examples() -> list[str]:
    """The ```python blocks of the README's "Python SDK" section, in order."""
    text = README.read_text()
    section = text[text.index("## Python SDK"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_sdk_example_runs_as_written(live_db: Database, tmp_path: Path, monkeypatch: Any,
                                                capsys: Any) -> None:
    story, errors = sdk_examples()
    assert "register_version" in story and "list_alerts" in story
    with live_db.session_scope() as s:
        _, admin_key = auth.create_key(s, "admin", "admin", actor="test")
    with LiveServer(create_app(make_settings(tmp_path), db=live_db)) as srv:
        monkeypatch.setenv("MLGOV_URL", srv.url)
        monkeypatch.setenv("MLGOV_API_KEY", admin_key)
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        exec(compile(story, "README.md (Python SDK example)", "exec"), namespace)
        exec(compile(errors, "README.md (Python SDK errors)", "exec"), namespace)
        out = capsys.readouterr().out
        assert "captured 500 records" in out and "run CompletedWithViolations" in out
        assert re.search(r"^alert \w+ on sdk-tour v1: ", out, re.M)
        assert re.search(r"^403 .+ → .+", out, re.M)
        with Client(srv.url, admin_key) as admin:
            assert admin.get_version("sdk-tour", 1).approval_status == "Approved"
            assert admin.get_attached_baseline("sdk-tour", 1).baseline_id
            assert {a.model_group for a in admin.list_alerts(status="open")} == {"sdk-tour"}
