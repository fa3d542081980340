"""The registry of monitor kinds: monitor knows its own two; the composition roots add Clarify's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor import kinds

ROOT = Path(__file__).resolve().parents[2]


def test_monitor_alone_knows_only_its_own_kinds() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from monitor import kinds; print(*kinds.names())"], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["DataQuality", "ModelQuality"]


def test_the_app_registers_clarifys_kinds_once(app: Any, settings: Any, db: Any) -> None:
    from mlgov.app import create_app

    create_app(settings, db=db)   # composing again replaces, never duplicates
    assert kinds.names() == ("DataQuality", "ModelQuality", "ModelBias", "ModelExplainability")
    assert kinds.get("ModelBias").checks == ("bias_drift_check",)
    assert kinds.get("ModelExplainability").checks == ("feature_attribution_drift_check",)


def test_an_unknown_kind_is_invalid_naming_the_known_ones(app: Any) -> None:
    from mlgov.errors import Invalid

    with pytest.raises(Invalid, match="is not DataQuality, ModelQuality, ModelBias or ModelExplainability"):
        kinds.get("ModelDrift")
