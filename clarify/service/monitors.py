"""Clarify's monitors: bias-drift and attribution-drift baselines, and their runs on captured windows.

Baselines and analyses are monitor's rows (kind ModelBias / ModelExplainability), written through monitor's one
maker of each (``finish_baseline``, ``finish_analysis``), so lineage, audit, schedules, executions, alerts and
retraining work the same way for every monitor; ``clarify.kinds`` registers both kinds with monitor. A window's run
only reads the database (its caller records the `Finished` analysis); the rest flushes, never commits.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy.orm import Session

from clarify import loaders
from clarify.errors import ConfigInvalid
from clarify.metrics import bias, partition
from clarify.metrics.analysis import ConfigError, analyze, facet_groups, metric_value, parse_config
from clarify.metrics.drift import (
    DEFAULT_NDCG_THRESHOLD,
    NOT_DRIFT_CHECKED,
    bias_violation,
    bootstrap_interval,
    bootstrap_interval_of_counts,
    matching_group,
    ndcg,
)
from clarify.metrics.shap_values import analysis_json
from clarify.schemas import PostTraining
from clarify.service.artifacts import explained, load_model, read_csv
from mlgov import inputs
from mlgov.auth import Principal
from mlgov.db import new_id
from mlgov.errors import Conflict, DomainError, Invalid
from mlgov.storage import ObjectStore
from monitor import compute
from monitor import service as monitor
from monitor.engine.stats import json_safe
from registry import service as registry


def _bias_config(config: bytes) -> Any:
    """The analysis config of a bias monitor: post-training metrics only (SageMaker's defaults if none named)."""
    try:
        parsed = parse_config(inputs.loads(config, "config"))   # kernel JSON policy first
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    if parsed.methods.post_training_bias is None:
        parsed.methods.post_training_bias = PostTraining(methods=["DPPL", "DI", "DCA", "DCR", "RD", "DAR", "AD"])
    parsed.methods.pre_training_bias = None
    return parsed


def _judges_predictions(parsed: Any) -> None:
    """analyze's "predicted_label: None is not a column" said nothing useful to a pre-training-only config."""
    if parsed.predicted_label is None:
        raise ConfigInvalid(ConfigError([{"field": "predicted_label", "message": (
            "a ModelBias monitor judges the model's predictions (post-training bias): name the predicted_label "
            "column (the endpoint's captured prediction)")}]))


def create_bias_baseline(session: Session, store: ObjectStore, *, data: bytes, config: bytes, name: str | None,
                         actor: Principal) -> monitor.FinishedBaseline:
    """A ModelBias baseline: the post-training analysis.json of a labelled validation set."""
    parsed = _bias_config(config)
    cfg = parsed.as_dict()
    df = read_csv(data, parsed.headers)
    _judges_predictions(parsed)
    bid = new_id()
    prefix = monitor.baseline_prefix(bid)
    cluster = compute.cluster_for(len(df))
    try:
        if cluster is None:
            result = analyze(df, parsed)
        else:   # stored first, then counted by the workers (the flip test is not computed there)
            try:
                table = pa.Table.from_pandas(df, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise Invalid(f"the dataset cannot be stored as Parquet for the compute cluster: {exc}",
                              fix="give each column one type (numbers or text)") from None
            summary = cluster.summarise(store, compute.stored_parts(store, table, f"{prefix}/dataset.parquet"),
                                        compute.Read(), functools.partial(partition.summarise_table, config=cfg))
            result = partition.analysis(summary, cfg)
    except ConfigError as exc:
        raise ConfigInvalid(exc) from None
    store.put(f"{prefix}/analysis.json", json.dumps(result, allow_nan=False).encode(), "application/json")
    store.put(f"{prefix}/analysis_config.json", json.dumps(cfg, allow_nan=False).encode(), "application/json")
    return monitor.finish_baseline(store, baseline_id=bid, kind="ModelBias", source="computed",
                                   settings={"config": cfg}, dataset_sha256=hashlib.sha256(data).hexdigest(),
                                   rows=len(df), features=df.shape[1], name=name, actor=actor,
                                   summary={"kind": "ModelBias", "rows": len(df)}, document="analysis.json")


def import_bias_baseline(session: Session, store: ObjectStore, *, analysis: bytes, config: bytes,
                         name: str | None, actor: Principal) -> monitor.FinishedBaseline:
    """A ModelBias baseline from SageMaker Clarify's files: the bias baseline's analysis.json (post-training
    metrics per facet group) and the analysis_config.json it was computed with."""
    cfg = _bias_config(config).as_dict()
    doc = inputs.loads(analysis, "analysis.json")
    facets = (doc.get("post_training_bias_metrics") or {}).get("facets") if isinstance(doc, dict) else None

    def group_ok(g: Any) -> bool:
        return isinstance(g, dict) and isinstance(g.get("metrics"), list) and all(
            isinstance(m, dict) and isinstance(m.get("name"), str) and
            (m.get("value") is None or isinstance(m.get("value"), int | float)) for m in g["metrics"])

    if not isinstance(facets, dict) or not facets or not all(
            isinstance(groups, list) and all(map(group_ok, groups)) for groups in facets.values()):
        raise Invalid("analysis.json needs post_training_bias_metrics.facets: for each facet a list of groups, each "
                      "with metrics [{name, value}]", fix="use the analysis.json a Clarify bias baseline job wrote")
    missing = [str(f["name_or_index"]) for f in cfg["facet"] if str(f["name_or_index"]) not in facets]
    if missing:
        raise Invalid(f"analysis.json has no post-training metrics for facet(s) {missing} of the analysis config",
                      fix="use the analysis.json computed with this analysis_config.json")
    bid = new_id()
    prefix = monitor.baseline_prefix(bid)
    store.put(f"{prefix}/analysis.json", json.dumps(doc, allow_nan=False).encode(), "application/json")
    store.put(f"{prefix}/analysis_config.json", json.dumps(cfg, allow_nan=False).encode(), "application/json")
    return monitor.finish_baseline(store, baseline_id=bid, kind="ModelBias", source="imported",
                                   settings={"config": cfg}, rows=0, features=0, name=name, actor=actor,
                                   action="baseline.imported", summary={"kind": "ModelBias"}, document="analysis.json")


def create_explainability_baseline(session: Session, store: ObjectStore, *, data: bytes, group: str, version: int,
                                   fmt: str, artifact: bytes | None, label: str | None, threshold: float,
                                   name: str | None, actor: Principal) -> monitor.FinishedBaseline:
    """A ModelExplainability baseline: global SHAP of the model on reference data, and the model itself."""
    df = read_csv(data)
    if label and label in df.columns:
        df = df.drop(columns=[label])
    model, raw, version_id = load_model(session, store, group, version, fmt, artifact)
    return _explainability_baseline(
        session, store, version_id, analysis=json_safe(analysis_json(explained(model, df))), model=raw, group=group,
        version=version, fmt=fmt, features=list(df.columns), threshold=threshold, name=name, actor=actor,
        source="computed", rows=len(df), dataset_sha256=hashlib.sha256(data).hexdigest())


def import_explainability_baseline(session: Session, store: ObjectStore, *, analysis: bytes, config: bytes,
                                   group: str, version: int, fmt: str, name: str | None,
                                   actor: Principal) -> monitor.FinishedBaseline:
    """A ModelExplainability baseline from SageMaker Clarify's files: the explainability baseline's analysis.json
    (global SHAP values per feature) and the analysis_config.json it was computed with, explaining the registered
    version ``group``/``version`` (loaded now, so a model mlgov cannot load is refused before any run)."""
    cfg = inputs.loads(config, "analysis_config.json")
    if not isinstance(cfg, dict) or not isinstance((cfg.get("methods") or {}).get("shap"), dict):
        raise Invalid("analysis_config.json needs methods.shap (the SHAP configuration of the explainability "
                      "baseline)", fix="use the analysis_config.json a Clarify explainability baseline job used")
    doc = inputs.loads(analysis, "analysis.json")
    shap = ((doc.get("explanations") or {}).get("kernel_shap") or {}).get("label0") if isinstance(doc, dict) else None
    values = shap.get("global_shap_values") if isinstance(shap, dict) else None
    if not isinstance(values, dict) or not values or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values.values()):
        raise Invalid("analysis.json needs explanations.kernel_shap.label0.global_shap_values: a number per feature",
                      fix="use the analysis.json a Clarify explainability baseline job wrote")
    headers = cfg.get("headers")
    if isinstance(headers, list):
        unknown = [f for f in values if f not in headers]
        if unknown:
            raise Invalid(f"analysis.json explains feature(s) {unknown[:5]} that analysis_config.json's headers do "
                          "not name", fix="use the analysis.json computed with this analysis_config.json")
    _, raw, version_id = load_model(session, store, group, version, fmt, None)
    return _explainability_baseline(
        session, store, version_id, analysis=doc, model=raw, group=group, version=version, fmt=fmt,
        features=list(values), threshold=DEFAULT_NDCG_THRESHOLD, name=name, actor=actor, source="imported", rows=0,
        dataset_sha256=None, config=cfg)


def _explainability_baseline(session: Session, store: ObjectStore, version_id: str, *, analysis: dict[str, Any],
                             model: bytes, group: str, version: int, fmt: str, features: list[str], threshold: float,
                             name: str | None, actor: Principal, source: str, rows: int, dataset_sha256: str | None,
                             config: dict[str, Any] | None = None) -> monitor.FinishedBaseline:
    """The baseline's files (analysis.json, the model, the analysis config when imported) and its row, upstream of
    the explained version: the row ``version_id``, whose model was loaded."""
    bid = new_id()
    prefix = monitor.baseline_prefix(bid)
    store.put(f"{prefix}/analysis.json", json.dumps(analysis, allow_nan=False).encode(), "application/json")
    store.put(f"{prefix}/model.bin", model, "application/octet-stream")
    if config is not None:
        store.put(f"{prefix}/analysis_config.json", json.dumps(config, allow_nan=False).encode(), "application/json")
    settings = {"model_group": group, "model_version": version, "model_format": fmt, "features": features,
                "ndcg_threshold": threshold}

    def explained(writer: Session) -> list[Any]:   # the explained version's lineage node, if it is still that row
        g, v = registry.get_version(writer, group, version)
        if v.id != version_id:
            raise Conflict(f"{group} version {version} is no longer the version whose model this baseline explains: "
                           "while it computed, the group or version was deleted and another took its name and "
                           "number", fix="create the baseline again for the version registered now")
        return [registry.version_entity(writer, g, v, actor.name)]

    extra: dict[str, Any] = {"dataset_sha256": dataset_sha256} if dataset_sha256 else {"action": "baseline.imported"}
    return monitor.finish_baseline(store, baseline_id=bid, kind="ModelExplainability", source=source,
                                   settings=settings, rows=rows, features=len(features), name=name, actor=actor,
                                   summary={"kind": "ModelExplainability", "rows": rows}, document="analysis.json",
                                   upstream=explained, **extra)


def _finished(store: ObjectStore, *, base: monitor.Baseline, kind: str, endpoint: str, start: dt.datetime,
              end: dt.datetime, actor: Principal, rows: int, violations: list[dict[str, Any]],
              result: dict[str, Any] | None, failure: str | None, t0: float) -> monitor.Finished:
    """The run's analysis.json (when it produced one), then its row to record, made by monitor's one maker."""
    aid = new_id()
    if result is not None:
        store.put(f"{monitor.analysis_prefix(aid)}/analysis.json",
                  json.dumps(json_safe(result), allow_nan=False).encode(), "application/json")
    return monitor.finish_analysis(store, analysis_id=aid, baseline=base, kind=kind, source="endpoint",
                                   actor=actor, started=t0, violations=violations, rows=rows, failure=failure,
                                   endpoint=endpoint, start=start, end=end)


def bias_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                end: dt.datetime, actor: Principal, draws: int = 200) -> monitor.Finished:
    """Post-training bias of the labelled window vs the baseline: a metric violates when its bootstrap interval
    lies entirely farther from 0 than the baseline value (SageMaker's rule, without alerts on noise). With
    MLGOV_COMPUTE naming a cluster the window's group counts are computed and merged there (``_bias_on_cluster``)."""
    base = monitor.get_baseline(session, baseline_id)
    cfg = dict((base.settings or {}).get("config", {}))
    ep = monitor.get_endpoint(session, endpoint)
    t0 = time.perf_counter()
    window = f"between {start.isoformat()} and {end.isoformat()}"
    finish = functools.partial(_finished, store, base=base, kind="ModelBias", endpoint=endpoint, start=start,
                               end=end, actor=actor, t0=t0)
    baseline = json.loads(store.get(f"{base.prefix}/analysis.json"))
    on_cluster = _bias_on_cluster(session, store, ep, start, end, cfg, draws)
    if on_cluster is not None:
        rows, found, drawn, failure = on_cluster
        if failure is not None:
            return finish(rows=rows, violations=[], result=None, failure=failure)
        assert found is not None and drawn is not None
        return finish(rows=rows, violations=_bias_violations(cfg, baseline, found, drawn), result=found,
                      failure=None)
    df = monitor.labelled_window(session, store, ep, start, end)
    if df.empty:
        return finish(rows=0, violations=[], result=None,
                       failure=f"no data captured {window} for endpoint {endpoint!r}")
    df = df[df["__label"].notna()].copy()
    if df.empty:
        return finish(rows=0, violations=[], result=None,
                       failure=f"no ground truth yet for the records captured {window}")
    label_col = cfg["label"]
    df[label_col], cfg["label_values_or_threshold"] = bias.captured_labels(df["__label"],
                                                                           cfg["label_values_or_threshold"])
    try:
        current = analyze(df.drop(columns=[c for c in df.columns if c.startswith("__")]), cfg)
    except ConfigError as exc:
        return finish(rows=len(df), violations=[], result=None,
                       failure=f"the window does not fit the baseline's analysis config: {exc}")
    y = bias.positive(df[label_col].to_numpy(), cfg["label_values_or_threshold"])
    pred = df[cfg["predicted_label"]]
    yhat = pred.to_numpy(dtype=float) > float(cfg.get("probability_threshold", 0.5)) if pred.dtype.kind == "f" \
        and set(np.unique(pred.dropna())) - {0.0, 1.0} else bias.positive(pred.to_numpy(),
                                                                          cfg["label_values_or_threshold"])
    masks = [[m for _, m in facet_groups(df[f["name_or_index"]], f.get("value_or_threshold"))] for f in cfg["facet"]]

    def interval(facet: int, group: int, name: str) -> tuple[float, float]:
        sensitive = masks[facet][group]

        def metric(idx: np.ndarray) -> float:
            c = bias.Counts.of(sensitive[idx], y[idx], yhat[idx])
            return bias.post_training(c, y[idx], yhat[idx], None, None)[name]

        return bootstrap_interval(metric, len(df), draws=draws)

    return finish(rows=len(df), violations=_bias_violations(cfg, baseline, current, interval), result=current,
                  failure=None)


Interval = Callable[[int, int, str], tuple[float, float]]


def _bias_on_cluster(session: Session, store: ObjectStore, ep: Any, start: dt.datetime, end: dt.datetime,
                     cfg: dict[str, Any], draws: int
                     ) -> tuple[int, dict[str, Any] | None, Interval | None, str | None] | None:
    """The window's group counts from the compute cluster (the workers read the captured batches, join the labels
    and count; the rows never come here): rows, analysis.json, the bootstrap interval of a group's metric (drawn
    from its counts) and a failure; or None when this process computes the window."""
    window = f"between {start.isoformat()} and {end.isoformat()}"
    try:
        summary = monitor.labelled_summary(session, store, ep, start, end, None,
                                           functools.partial(partition.summarise_captured, config=cfg))
    except ConfigError as exc:
        return 0, None, None, f"the window does not fit the baseline's analysis config: {exc}"
    if summary is None:
        return None
    if summary.rows == 0:
        return 0, None, None, f"no ground truth yet for the records captured {window}"
    current = partition.analysis(summary, cfg)

    def interval(facet: int, group: int, name: str) -> tuple[float, float]:
        def metric(cells: np.ndarray) -> float:
            return bias.post_training(bias.Counts.of_cells(cells), None, None, None, None,
                                      ge=partition.entropy(cells.sum(axis=0)))[name]

        return bootstrap_interval_of_counts(metric, partition.group_cells(summary, facet, summary.order[facet][group]),
                                            draws=draws)

    return summary.rows, current, interval, None


def _bias_violations(cfg: dict[str, Any], baseline: dict[str, Any], current: dict[str, Any],
                     interval: Interval) -> list[dict[str, Any]]:
    violations: list[dict[str, Any]] = []
    section = "post_training_bias_metrics"
    for fi, facet in enumerate(cfg["facet"]):
        name = str(facet["name_or_index"])
        base_groups = baseline.get(section, {}).get("facets", {}).get(name, [])
        cur_groups = current.get(section, {}).get("facets", {}).get(name, [])
        for i, cur_group in enumerate(cur_groups):
            base_group = matching_group(base_groups, cur_group, i, len(cur_groups))
            if base_group is None:
                continue
            base_vals = {m["name"]: metric_value(m) for m in base_group["metrics"]}
            for m in cur_group["metrics"]:
                if m["name"] not in base_vals or m["name"] in NOT_DRIFT_CHECKED:
                    continue
                ci = interval(fi, i, m["name"])
                if bias_violation(base_vals[m["name"]], metric_value(m), ci, metric=m["name"]):
                    violations.append({"facet": name, "facet_value": cur_group["value_or_threshold"],
                                       "metric_name": m["name"], "constraint_check_type": "bias_drift_check",
                                       "description": f"Metric value {metric_value(m):.4g} doesn't meet the "
                                                      f"baseline constraint requirement "
                                                      f"{base_vals[m['name']]:.4g} "
                                                      f"(95% interval {ci[0]:.4g} to {ci[1]:.4g})"})
    return violations


def attribution_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str,
                       start: dt.datetime, end: dt.datetime, actor: Principal) -> monitor.Finished:
    """Global SHAP of the window with the baseline's model; violation when nDCG falls below the threshold."""

    base = monitor.get_baseline(session, baseline_id)
    s = base.settings or {}
    ep = monitor.get_endpoint(session, endpoint)
    t0 = time.perf_counter()
    finish = functools.partial(_finished, store, base=base, kind="ModelExplainability", endpoint=endpoint,
                               start=start, end=end, actor=actor, t0=t0)
    table = monitor.window_table(session, store, ep, start, end)
    if table is None or table.num_rows == 0:
        return finish(rows=0, violations=[], result=None,
                       failure=f"no data captured between {start.isoformat()} and {end.isoformat()}")
    features = [f for f in s.get("features", []) if f in table.column_names]
    df = table.select(features).to_pandas().dropna()
    _, v = registry.get_version(session, s["model_group"], int(s["model_version"]))
    raw = store.get(f"{base.prefix}/model.bin")
    try:   # the trust decision is read again on every run: withdrawing it stops the monitor loading the model
        loaders.check_digest(raw, v.artifact_sha256)
        model = loaders.load(raw, s["model_format"], trusted=bool(v.artifact_trusted))
        cur = explained(model, df)
    except loaders.ModelLoadError as exc:
        return finish(rows=len(df), violations=[], result=None, failure=f"the baseline's model: {exc}")
    except DomainError as exc:   # the window's data does not fit the model (`explained` says how)
        return finish(rows=len(df), violations=[], result=None, failure=f"the baseline's model: {exc.detail}")
    baseline = json.loads(store.get(f"{base.prefix}/analysis.json"))["explanations"]["kernel_shap"]["label0"]
    score = ndcg(baseline["global_shap_values"], cur["global_shap_values"])
    threshold = float(s.get("ndcg_threshold", DEFAULT_NDCG_THRESHOLD))
    violations = [] if score >= threshold else [{
        "label": "label0", "metric_name": "shap", "constraint_check_type": "feature_attribution_drift_check",
        "description": f"Feature attribution drift {score:.4f} exceeds threshold {threshold}"}]   # 0.8988, never 0.90
    result = {**analysis_json(cur), "ndcg": score, "ndcg_threshold": threshold}
    return finish(rows=len(df), violations=violations, result=result, failure=None)


# --- reports (``clarify.kinds`` hands them to monitor's report route) ---------------------------------------------

def _documents(session: Session, store: ObjectStore, row: monitor.Analysis) -> tuple[monitor.Baseline, dict[str, Any]]:
    base = monitor.get_baseline(session, row.baseline_id)
    return base, {"analysis": json.loads(store.get(f"{row.prefix}/analysis.json")),
                  "baseline_analysis": json.loads(store.get(f"{base.prefix}/analysis.json"))}


def bias_report(session: Session, store: ObjectStore, row: monitor.Analysis) -> dict[str, Any]:
    """The window's post-training bias beside the baseline's, and the analysis config both were computed with."""
    base, docs = _documents(session, store, row)
    return {**docs, "config": (base.settings or {}).get("config", {})}


def attribution_report(session: Session, store: ObjectStore, row: monitor.Analysis) -> dict[str, Any]:
    """The window's global SHAP values (and nDCG) beside the baseline's, with the threshold and the explained
    version."""
    base, docs = _documents(session, store, row)
    s = base.settings or {}
    return {**docs, "ndcg_threshold": float(s.get("ndcg_threshold", DEFAULT_NDCG_THRESHOLD)),
            "model_group": s.get("model_group"), "model_version": s.get("model_version")}
