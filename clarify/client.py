"""Clarify's SDK methods: bias analyses, SHAP explanations and their stored reports.

Both analyses answer SageMaker's analysis.json and the id it was stored under, returned together as
``clarify.schemas.ClarifyAnalysis``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd

from clarify.schemas import AnalysisConfig, ClarifyAnalysis
from mlgov.sdk import BaseClient, Call, Document, Upload, document, route, upload

Time = dt.datetime | str
ANALYSIS_ID = "x-mlgov-analysis-id"


def _analysis(call: Call, **kw: Any) -> ClarifyAnalysis:
    r = call.send(**kw)
    return ClarifyAnalysis(id=r.headers[ANALYSIS_ID], analysis=r.json())


def _names_columns(config: bytes) -> bool:
    """Whether an analysis_config.json lists ``headers`` (the dataset then has no header row, as in SageMaker)."""
    try:
        parsed = json.loads(config)
    except ValueError:
        return False   # the server says what is wrong with it
    return isinstance(parsed, dict) and bool(parsed.get("headers"))


class ClarifyClient(BaseClient):
    """Bias analyses (pre- and post-training), explanations (SHAP) and their reports."""

    @route("POST", "/api/v1/clarify/bias")
    def bias_analysis(self, call: Call, config: AnalysisConfig | Document, data: Upload | None = None, *,
                      dataset_uri: str | None = None, endpoint: str | None = None, start: Time | None = None,
                      end: Time | None = None, model_group: str | None = None, model_version: int | None = None,
                      predict_with_model: bool = False, model_format: str | None = None,
                      model: Upload | None = None) -> ClarifyAnalysis:
        """SageMaker Clarify's bias metrics for ``config`` (analysis_config.json: a mapping, an ``AnalysisConfig``,
        JSON bytes or a path) on ``data`` (CSV; a DataFrame is sent with its header row unless the config lists
        ``headers``), a ``dataset_uri``, or an ``endpoint``'s captured window joined to ground truth. With
        ``model_group`` and ``model_version`` the report is attached to that version as approval evidence;
        ``predict_with_model`` makes the predictions with the registered artifact (``model`` uploads it when it
        is not in mlgov's object store)."""
        cfg = document(config)
        files = {"config": ("analysis_config.json", cfg, "application/json")}
        if data is not None:
            files["file"] = upload(data, header=not (isinstance(data, pd.DataFrame) and _names_columns(cfg)))
        if model is not None:
            files["model"] = upload(model, name="model", format=model_format or "skops")
        return _analysis(call, data={
            "dataset_uri": dataset_uri, "endpoint": endpoint, "start": start, "end": end, "model_group": model_group,
            "model_version": model_version, "predict_with_model": predict_with_model or None,
            "model_format": model_format}, files=files)

    @route("POST", "/api/v1/clarify/explain")
    def explain(self, call: Call, model_group: str, model_version: int, data: Upload, *, model: Upload | None = None,
                model_format: str | None = None, predict_url: str | None = None, baseline: Upload | None = None,
                agg_method: str | None = None, label: str | None = None,
                num_clusters: int | None = None) -> ClarifyAnalysis:
        """SHAP attributions of a registered version on ``data`` (all-numeric CSV with header, or a DataFrame):
        the model is ``model`` (checked against the registered sha256; ``model_format`` skops, xgboost, lightgbm,
        onnx), the artifact in mlgov's object store, or whatever answers at ``predict_url``. ``baseline`` rows
        are the reference (default: a k-means summary of ``data`` into ``num_clusters``); ``label`` is dropped."""
        files = {"file": upload(data)}
        if model is not None:
            files["model"] = upload(model, name="model", format=model_format or "skops")
        if baseline is not None:
            files["baseline"] = upload(baseline, name="baseline")
        return _analysis(call, data={
            "model_group": model_group, "model_version": model_version, "model_format": model_format,
            "predict_url": predict_url, "agg_method": agg_method, "label": label, "num_clusters": num_clusters},
            files=files)

    @route("GET", "/api/v1/clarify/reports/{analysis_id}")
    def get_clarify_report(self, call: Call, analysis_id: str) -> dict[str, Any]:
        """A stored analysis.json (``ClarifyAnalysis.id``)."""
        return call.json({"analysis_id": analysis_id}, params={"format": "json"})

    @route("GET", "/api/v1/clarify/reports/{analysis_id}")
    def get_clarify_report_html(self, call: Call, analysis_id: str) -> str:
        """The readable report: bias tables, attribution bars, the policy verdict of an attached report."""
        return call.text({"analysis_id": analysis_id}, params={"format": "html"})

