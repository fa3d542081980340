"""/metrics is prometheus-client's exposition: the reference parser reads back every family and label."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mlgov.storage import LocalStore
from monitor import schedules
from tests.helpers import seed_endpoint


def test_exposition_parses_with_the_reference_parser(db, tmp_path: Path) -> None:
    with db.session_scope() as s:
        seed_endpoint(s, [{"name": "income", "type": "Fractional"}])
        text = schedules.prometheus(s, LocalStore(tmp_path / "store")).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["mlgov_capture_records"].type == "counter"
    assert [(x.name, x.labels, x.value) for x in families["mlgov_capture_records"].samples
            if x.name.endswith("_total")] == [("mlgov_capture_records_total", {"endpoint": "ep"}, 0.0)]
    assert families["mlgov_alerts_open"].type == "gauge"
    assert "# HELP mlgov_feature_drift drift statistic per feature in the latest execution" in text
