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


def test_a_registered_kind_is_documented_and_accepted_without_editing_monitor(
        monkeypatch: pytest.MonkeyPatch, settings: Any, db: Any, keys: Any) -> None:
    """The /baselines form and ScheduleCreate.type list every kind registered at composition, not a fixed four."""
    from fastapi.testclient import TestClient

    from mlgov.app import create_app
    from mlgov.errors import Invalid

    made: list[str] = []

    def baseline(session: Any, store: Any, form: Any, name: Any, actor: Any) -> Any:
        made.append(str(form.get("label")))
        raise Invalid("the test kind builds nothing", fix="none")

    app = create_app(settings, db=db)
    monkeypatch.setitem(kinds._KINDS, "Canary", kinds.MonitorKind(   # registered after composition, too
        name="Canary", create_baseline=baseline, run_window=lambda *a: None, checks=("canary_check",)))
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
        listed = ["DataQuality", "ModelQuality", "ModelBias", "ModelExplainability", "Canary"]
        assert doc["components"]["schemas"]["MonitorType"]["enum"] == listed
        form = doc["paths"]["/api/v1/baselines"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["properties"]["type"]["$ref"] == "#/components/schemas/MonitorType"
        check = doc["components"]["schemas"]["AlertRead"]["properties"]["check"]["description"]
        assert "ModelBias: bias_drift_check; " in check and check.endswith("Canary: canary_check)")
        create = doc["components"]["schemas"]["ScheduleCreate"]["properties"]["type"]
        assert create == {"$ref": "#/components/schemas/MonitorType"}
        pub = keys("publisher")
        r = client.post("/api/v1/baselines", headers=pub, data={"type": "Canary", "label": "y"})
        assert r.status_code == 422 and made == ["y"], r.text
        body = {"name": "c", "endpoint": "nope", "type": "Canary", "schedule": "hourly", "baseline_id": "b"}
        r = client.post("/api/v1/monitoring-schedules", headers=pub, json=body)
        assert r.status_code == 404, r.text   # past the schema: the endpoint is what is missing
        r = client.post("/api/v1/monitoring-schedules", headers=pub, json={**body, "type": "Nope"})
        assert r.status_code == 422 and r.json()["errors"][0]["message"] == (
            "Input should be 'DataQuality', 'ModelQuality', 'ModelBias', 'ModelExplainability' or 'Canary'"), r.text


def test_series_read_what_each_kind_charts() -> None:
    """Trend charts (console) read each kind's numbers with the threshold they are judged against."""
    from clarify import kinds as clarify_kinds

    clarify_kinds.register()
    dq = kinds.get("DataQuality").points({"drift": {"features": [
        {"feature": "age", "method": "psi", "statistic": 0.31, "threshold": 0.2},
        {"feature": "city", "method": "chisquare", "statistic": None, "threshold": 0.05},
        {"feature": "tenure", "method": "wasserstein", "statistic": 0.11, "threshold": 0.1, "small_sample": True}]}})
    # a small sample's statistic is not judged: beyond its threshold in a run without drift, drawn apart
    assert [p[:4] for p in dq] == [
        ("age · psi", 0.31, 0.2, "age · psi"), ("city · chisquare", None, 0.05, "city · chisquare"),
        ("tenure · wasserstein not judged", 0.11, 0.1, "tenure · wasserstein")]
    mq = kinds.get("ModelQuality").points({
        "statistics": {"version": 0.0, "binary_classification_metrics": {
            "accuracy": {"value": 0.81, "standard_deviation": 0.01}, "auc": {"value": 0.9},
            "confusion_matrix": {"0": {"0": 5}}}},
        "constraints": {"version": 0.0, "binary_classification_constraints": {
            "accuracy": {"threshold": 0.85, "comparison_operator": "LessThanThreshold"}}},
        "violations": {"violations": [{"metric_name": "accuracy", "constraint_check_type": "LessThanThreshold"}]}})
    assert [p[:4] for p in mq] == [
        ("accuracy", 0.81, 0.85, "accuracy"), ("auc", 0.9, None, "auc")]
    assert [p.breached for p in mq] == [True, False] and not any(p.breached for p in dq)   # 0.81 < 0.85
    est = kinds.get("ModelQuality").points({
        "statistics": None, "constraints": {"binary_classification_constraints": {"accuracy": {"threshold": 0.85}}},
        "estimate": {"rows": 10, "labelled_rows": 0, "estimated": {
            "accuracy": {"estimate": 0.8, "lower": 0.75, "upper": 0.86}, "auc": {"estimate": None}}}})
    assert [p[:4] for p in est] == [
        ("accuracy estimated", 0.8, 0.85, "accuracy"), ("accuracy band lower", 0.75, None, "accuracy"),
        ("accuracy band upper", 0.86, None, "accuracy")]
    # the estimator's names are not SageMaker's: estimated roc_auc and specificity were charted apart from the
    # realised auc and true_negative_rate they estimate, with no threshold (the constraints say auc)
    named = kinds.get("ModelQuality").points({
        "statistics": {"binary_classification_metrics": {"auc": {"value": 0.7}, "true_negative_rate": {"value": 0.6}}},
        "constraints": {"binary_classification_constraints": {"auc": {"threshold": 0.73}}},
        "estimate": {"problem_type": "BinaryClassification", "estimated": {
            "roc_auc": {"estimate": 0.78, "lower": 0.74, "upper": 0.82},
            "specificity": {"estimate": 0.67, "lower": 0.62, "upper": 0.72}}}})
    assert [p[:4] for p in named] == [
        ("auc", 0.7, 0.73, "auc"), ("true_negative_rate", 0.6, None, "true_negative_rate"),
        ("auc estimated", 0.78, 0.73, "auc"), ("auc band lower", 0.74, None, "auc"),
        ("auc band upper", 0.82, None, "auc"),
        ("true_negative_rate estimated", 0.67, None, "true_negative_rate"),
        ("true_negative_rate band lower", 0.62, None, "true_negative_rate"),
        ("true_negative_rate band upper", 0.72, None, "true_negative_rate")]
    bias = kinds.get("ModelBias").points({"analysis": {"post_training_bias_metrics": {"facets": {"sex": [
        {"value_or_threshold": "f", "metrics": [{"name": "DPPL", "value": 0.12}, {"name": "DI", "value": None}]}]}}}})
    assert [p[:4] for p in bias] == [   # its chart by name: the bounds of its allowed range join it (none without
        ("DPPL (sex=f)", 0.12, None, "DPPL (sex=f)")]   # a baseline analysis)
    attr = kinds.get("ModelExplainability").points({"analysis": {   # it charted nothing: "no completed execution"
        "ndcg": 0.8988, "ndcg_threshold": 0.9,
        "explanations": {"kernel_shap": {"label0": {"global_shap_values": {"age": 0.3, "income": 0.1}}}}}})
    assert attr[0].breached and [p[:4] for p in attr] == [
        ("nDCG", 0.8988, 0.9, ""), ("age mean |SHAP|", 0.3, None, "global SHAP values"),
        ("income mean |SHAP|", 0.1, None, "global SHAP values")]
