"""Clarify's two monitor kinds, registered with monitor's registry (``monitor.kinds``) at composition time:
``ModelBias`` (bias drift) and ``ModelExplainability`` (feature-attribution drift).

Each kind brings its report: the stored results (``clarify.service.monitors``) and the page drawn from them
(``clarify.report``), so monitor's report route shows them without knowing Clarify.

``register()`` is called by the composition roots (``mlgov.app.create_app``, ``mlgov.cli``); calling it again
replaces the same entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from clarify import report
from clarify.metrics.drift import NOT_DRIFT_CHECKED, allowed_range, matching_group
from clarify.service import monitors
from mlgov import inputs
from mlgov.auth import Principal
from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor import kinds
from monitor.capture import CaptureSchema
from monitor.report import number
from monitor.service import Baseline, Finished, FinishedBaseline


def _reference(form: kinds.Form, kind: str) -> bytes:
    up = kinds.file_part(form, "file")
    if up is None:
        raise Invalid(f"a {kind} baseline needs a `file` (CSV with header)", fix="upload the reference data")
    return up[0]


def _bias_baseline(session: Session, store: ObjectStore, form: kinds.Form, name: str | None,
                   actor: Principal) -> FinishedBaseline:
    """Parts: `file` (the labelled validation set, CSV with header), `config` (SageMaker analysis_config.json)."""
    data = _reference(form, "ModelBias")
    cfg = kinds.file_part(form, "config")
    if cfg is None:
        raise Invalid("a ModelBias baseline needs a `config` part (SageMaker analysis_config.json)",
                      fix="send the label, predicted_label and facet configuration")
    return monitors.create_bias_baseline(session, store, data=data, config=cfg[0], name=name, actor=actor)


def _explainability_baseline(session: Session, store: ObjectStore, form: kinds.Form, name: str | None,
                             actor: Principal) -> FinishedBaseline:
    """Parts: `file` (reference rows), `model_group` + `model_version` (the explained version), `model_format`,
    `model` (the artifact, unless it is in mlgov's store), `label` (dropped), `ndcg_threshold` (default 0.9)."""
    data = _reference(form, "ModelExplainability")
    version = str(form.get("model_version", ""))
    if not form.get("model_group") or not version.isdigit():
        raise Invalid("a ModelExplainability baseline needs model_group and model_version",
                      fix="name the registered version whose model is explained")
    if len(version) > 10 or int(version) > inputs.INT32[1]:
        raise Invalid(f"model_version {version[:20]} is past the largest version number {inputs.INT32[1]}",
                      fix="send the number of a registered version", field="model_version")
    model = kinds.file_part(form, "model")
    try:
        threshold = float(form.get("ndcg_threshold", 0.9))
    except ValueError:
        raise Invalid("ndcg_threshold must be a number", fix="e.g. 0.9") from None
    return monitors.create_explainability_baseline(
        session, store, data=data, group=str(form["model_group"]), version=int(version),
        fmt=str(form.get("model_format", "skops")), artifact=model[0] if model else None,
        label=form.get("label"), threshold=threshold, name=name, actor=actor)


def _bias_fits(base: Baseline, endpoint: str, schema: CaptureSchema) -> None:
    """The predicted label and every facet of the analysis config must be captured columns (the label comes from
    the endpoint's ground truth)."""
    cfg = (base.settings or {}).get("config", {})
    reads = {"predicted_label": str(cfg.get("predicted_label", ""))} if cfg.get("predicted_label") else {}
    for i, facet in enumerate(cfg.get("facet", [])):
        reads[f"facet[{i}]"] = str(facet.get("name_or_index"))
    kinds.require_columns(base, endpoint, schema, reads)


def _explainability_fits(base: Baseline, endpoint: str, schema: CaptureSchema) -> None:
    """Every feature the model was explained on must be captured: a missing one would silently drop out of SHAP."""
    features = (base.settings or {}).get("features", [])
    kinds.require_columns(base, endpoint, schema, {f"feature[{i}]": str(f) for i, f in enumerate(features)})


def _bias_window(session: Session, store: ObjectStore, w: kinds.Window, actor: Principal) -> Finished:
    return monitors.bias_window(session, store, baseline_id=w.baseline_id, endpoint=w.endpoint, start=w.start,
                                end=w.end, actor=actor)


def _attribution_window(session: Session, store: ObjectStore, w: kinds.Window, actor: Principal) -> Finished:
    return monitors.attribution_window(session, store, baseline_id=w.baseline_id, endpoint=w.endpoint,
                                       start=w.start, end=w.end, actor=actor)


def _bias_subject(violation: kinds.Violation) -> str:
    """A bias violation is about one metric of one facet group: ``DPPL (sex=f)``."""
    return f"{violation.get('metric_name', '')} ({violation.get('facet', '')}={violation.get('facet_value', '')})"[:256]


def _facets(doc: Any) -> Mapping[str, list[dict[str, Any]]]:
    return ((doc or {}).get("post_training_bias_metrics") or {}).get("facets") or {}


def _bias_points(rep: Mapping[str, Any]) -> list[kinds.Point]:
    """Each post-training bias metric per facet group (SageMaker's analysis.json), breached as the run's
    constraint_violations.json says, drawn between the bounds of its allowed range (parity ± the baseline's distance
    from it, `allowed_range`): a run breaches when the window's whole 95% interval lies outside them. FT and CDDPL
    are never judged, so they get no bounds. A metric that drifted to infinite or undefined (DI when the rest of
    the window never got the positive outcome) is kept without a value, so the chart still marks the breach."""
    base = _facets(rep.get("baseline_analysis"))
    found = {(str(v.get("facet")), str(v.get("facet_value")), str(v.get("metric_name")))
             for v in (rep.get("violations") or {}).get("violations") or [] if isinstance(v, dict)}
    points = []
    for col, groups in _facets(rep.get("analysis")).items():
        for i, group in enumerate(groups):
            then = matching_group(base.get(col) or [], group, i, len(groups))
            before = {m.get("name"): number(m.get("value")) for m in (then or {}).get("metrics", [])}
            value = group.get("value_or_threshold")
            for m in group.get("metrics", []):
                name, now = str(m.get("name")), number(m.get("value"))
                series = f"{name} ({col}={value})"
                flagged = (col, str(value), name) in found
                if now is None and not flagged:   # undefined or infinite, and not judged drifted: nothing to draw
                    continue
                points.append(kinds.Point(series, now, None, series, flagged))
                then_value = before.get(name)
                if then_value is not None and name not in NOT_DRIFT_CHECKED:
                    points += [kinds.Point(f"{series} {suffix}", bound, None, series)
                               for suffix, bound in zip(kinds.BOUNDS, allowed_range(name, then_value), strict=True)]
    return points


def _attribution_points(rep: Mapping[str, Any]) -> list[kinds.Point]:
    """The window's nDCG against the baseline's attributions (a run below its threshold violates), and each
    feature's global SHAP value on a chart of their own."""
    doc = rep.get("analysis") or {}
    shap = ((doc.get("explanations") or {}).get("kernel_shap") or {}).get("label0") or {}
    score, threshold = doc.get("ndcg"), doc.get("ndcg_threshold")
    limit = float(threshold) if isinstance(threshold, int | float) else None
    points = [kinds.Point("nDCG", float(score), limit, breached=limit is not None and score < limit)] \
        if isinstance(score, int | float) else []
    return points + [kinds.Point(f"{feature} mean |SHAP|", float(v), None, "global SHAP values")
                     for feature, v in (shap.get("global_shap_values") or {}).items()
                     if isinstance(v, int | float) and not isinstance(v, bool)]


BIAS_LINE = kinds.Line(
    "allowed range", "drifted", "drifted: the window's whole 95% interval lay outside the allowed range",
    "a bias metric's dashed lines bound its allowed range: no farther from parity (0; 1 for DI) than the baseline's "
    "value; a run breaches when the window's whole 95% bootstrap interval lies outside them")
"""Bias drift has no threshold: each window's interval is judged against the range the baseline allows."""
MODEL_BIAS = kinds.MonitorKind(name="ModelBias", create_baseline=_bias_baseline, run_window=_bias_window,
                               checks=("bias_drift_check",), report=monitors.bias_report, render=report.bias_drift,
                               subject=_bias_subject, fits_endpoint=_bias_fits, points=_bias_points,
                               charted=(("analysis", "analysis.json"), ("violations", "constraint_violations.json")),
                               charted_baseline=(("baseline_analysis", "analysis.json"),),
                               line=BIAS_LINE)
MODEL_EXPLAINABILITY = kinds.MonitorKind(name="ModelExplainability", create_baseline=_explainability_baseline,
                                         run_window=_attribution_window,
                                         checks=("feature_attribution_drift_check",),
                                         report=monitors.attribution_report, render=report.attribution_drift,
                                         fits_endpoint=_explainability_fits, points=_attribution_points,
                                         charted=(("analysis", "analysis.json"),))


def register() -> None:
    kinds.register(MODEL_BIAS)
    kinds.register(MODEL_EXPLAINABILITY)
