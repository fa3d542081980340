"""Data-quality and drift analyses of a file or a captured window against a baseline, and their reports.

Services flush; callers commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlgov import audit, events
from mlgov.auth import Principal
from mlgov.db import as_utc, new_id, paginate, utcnow
from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor import compute, evidently_export, layout
from monitor.engine import expectations
from monitor.engine.analysis import DEFAULT_DRIFT_SHARE, AnalysisResult, DriftConfig, analyze, analyze_profiles
from monitor.engine.partition import TableSummary
from monitor.errors import AnalysisNotFound
from monitor.orm import Analysis, Baseline
from monitor.service.baselines import get_baseline, reference_columns
from monitor.service.datasets import dataset_table
from monitor.service.endpoints import get_endpoint, reread_if_compacted, window_batches, window_table


def check_drift(config: DriftConfig | None, numeric: set[str], categorical: set[str]) -> None:
    """422 naming every drift setting that does not fit the reference's columns (`DriftConfig.problems`)."""
    problems = config.problems(numeric, categorical) if config is not None else []
    if problems:
        raise Invalid("drift settings that cannot apply: " + "; ".join(problems[:10]),
                      fix="name the baseline's columns, methods for their kinds and thresholds >= 0",
                      problems=problems[:100])


def reference_kinds(base: Baseline) -> tuple[set[str], set[str]] | None:
    """(numeric, categorical) columns of a data-quality baseline as its row records them; None for one recorded
    before they were."""
    s = base.settings or {}
    return _kinds(s) if "columns" in s and "numeric" in s else None


def _kinds(columns: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(numeric, categorical) of `reference_columns`' record."""
    numeric = set(columns["numeric"])
    return numeric, set(columns["columns"]) - numeric - set(columns.get("missing", []))


def _check_drift_early(base: Baseline, config: DriftConfig | None) -> None:
    """`check_drift` before any data is read, from the columns the baseline's row records (a baseline recorded
    before it recorded them is checked by `run_analysis`, from its files)."""
    reference = reference_kinds(base)
    if reference is not None:
        check_drift(config, *reference)


def drift_config(settings: Mapping[str, Any] | None) -> DriftConfig | None:
    """The engine's drift configuration from DriftSettings as sent or stored (None: Evidently's defaults)."""
    return None if not settings else DriftConfig(numerical=settings.get("numerical"),
                                                 categorical=settings.get("categorical"),
                                                 per_feature=dict(settings.get("per_feature", {})),
                                                 thresholds=dict(settings.get("thresholds", {})),
                                                 drift_share=float(settings.get("drift_share", 0.5)))


def _store_analysis(store: ObjectStore, prefix: str, result: AnalysisResult, meta: dict[str, Any]) -> None:
    store.put(f"{prefix}/statistics.json", layout.dumps(result.statistics), "application/json")
    drift = {"summary": result.summary(), "features": [d.as_dict() for d in result.drift],
             "drift_share_threshold": result.drift_share_threshold, **meta}
    store.put(f"{prefix}/drift.json", layout.dumps(drift), "application/json")


def analysis_prefix(analysis_id: str) -> str:
    """The object-store folder of an analysis's files (stored before its row is recorded)."""
    return f"analyses/{analysis_id}"


@dataclass(frozen=True)
class Finished:
    """An analysis computed, its files stored, not yet on the record. Computing reads (a read session is enough)
    and may take minutes; `record` then writes the row, audit entry and event in a short write transaction, so a
    long analysis never holds the write turn capture ingest and every other write wait for."""

    columns: dict[str, Any]   # the Analysis row's, but created_at (stamped when recorded)
    violations: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.columns["id"])

    @property
    def status(self) -> str:
        return str(self.columns["status"])

    @property
    def prefix(self) -> str:
        return str(self.columns["prefix"])

    def discard(self, store: ObjectStore) -> None:
        """Delete the stored files of an analysis that will not be recorded (its run was taken over meanwhile)."""
        for key in list(store.list(f"{self.prefix}/")):
            store.delete(key)

    def record(self, session: Session) -> Analysis:
        """The row for the files already stored, its audit entry and the analysis.completed event."""
        c = self.columns
        row = Analysis(**c, created_at=utcnow())
        session.add(row)
        session.flush()
        count = len(self.violations)
        after: dict[str, Any] = {"kind": c["kind"], "status": c["status"], "violations": count}
        payload: dict[str, Any] = {"id": row.id, "kind": c["kind"], "status": c["status"],
                                   "baseline_id": c["baseline_id"], "violations": count, "endpoint": c["endpoint"]}
        if c["kind"] == "DataQuality":   # the shapes data-quality audit rows and webhooks have always had
            after = {"status": c["status"], "violations": count, "baseline_id": c["baseline_id"]}
            payload = {"id": row.id, "status": c["status"], "baseline_id": c["baseline_id"], "violations": count,
                       "endpoint": c["endpoint"], "drifted_features": c["drifted_features"]}
        audit.record(session, actor=c["created_by"], action="analysis.completed", subject_type="analysis",
                     subject_id=row.id, after=after)
        events.emit(session, "analysis.completed", row.id, payload)
        return row


def finish_analysis(store: ObjectStore, *, analysis_id: str, baseline: Baseline, kind: str, source: str,
                    actor: Principal, started: float, violations: list[dict[str, Any]], rows: int = 0,
                    failure: str | None = None, passed: bool = True, endpoint: str | None = None,
                    dataset_uri: str | None = None, start: dt.datetime | None = None,
                    end: dt.datetime | None = None, drift_share: float | None = None,
                    dataset_drift: bool | None = None, drifted_features: list[str] | None = None) -> Finished:
    """The one maker of analyses, for every monitor kind (monitor's and those other domains register): its
    ``constraint_violations.json`` (what schedules read to open alerts) beside the files already stored under
    ``analysis_prefix(analysis_id)``, and the row to record (`Finished.record`).

    The status: Failed with ``failure``, else CompletedWithViolations when there are violations or another check
    did not pass (``passed``: a Great Expectations suite), else Completed. ``started`` is the run's
    ``time.perf_counter()`` at its start."""
    prefix = analysis_prefix(analysis_id)
    store.put(f"{prefix}/constraint_violations.json", layout.dumps({"violations": violations}), "application/json")
    status = "Failed" if failure is not None else \
        "CompletedWithViolations" if violations or not passed else "Completed"
    return Finished(dict(id=analysis_id, baseline_id=baseline.id, kind=kind, status=status, failure_reason=failure,
                         source=source, dataset_uri=dataset_uri, endpoint=endpoint, window_start=start,
                         window_end=end, row_count=rows, violation_count=len(violations), drift_share=drift_share,
                         dataset_drift=dataset_drift, drifted_features=list(drifted_features or []), prefix=prefix,
                         duration_ms=int((time.perf_counter() - started) * 1000), created_by=actor.name),
                    list(violations))


def run_analysis(session: Session, store: ObjectStore, *, baseline_id: str, actor: Principal,
                 table: pa.Table | None = None, source: str, dataset_uri: str | None = None,
                 endpoint: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
                 config: DriftConfig | None = None, failure: str | None = None,
                 summary: TableSummary | None = None, suite: expectations.SuiteCounts | None = None) -> Finished:
    """Judge the current data — a ``table`` read here, or the ``summary`` (and the ``suite``'s measures, when the
    baseline has an expectation suite) a compute cluster merged from its partitions — against the baseline."""
    base = get_baseline(session, baseline_id)
    aid = new_id()
    prefix = analysis_prefix(aid)
    t0 = time.perf_counter()
    finish = functools.partial(finish_analysis, store, analysis_id=aid, baseline=base, kind="DataQuality",
                               source=source, actor=actor, started=t0, endpoint=endpoint, dataset_uri=dataset_uri,
                               start=start, end=end)
    if failure is not None or (table is None and summary is None):
        return finish(violations=[], failure=failure or "no data")
    baseline = layout.load_profiles(store, base.prefix)
    if reference_kinds(base) is None:   # else the caller checked before reading the data (`_check_drift_early`)
        check_drift(config, *_kinds(reference_columns(baseline)))
    constraints = json.loads(store.get(f"{base.prefix}/constraints.json"))
    meta: dict[str, Any] = {"baseline_id": base.id, "window": {"start": start.isoformat() if start else None,
                                                               "end": end.isoformat() if end else None}}
    if summary is not None:
        result = analyze_profiles(baseline, constraints, summary.profiles, summary.types, summary.rows, config)
        meta["compute"] = "dask"
    else:
        assert table is not None
        result = analyze(baseline, constraints, table, config)
    _store_analysis(store, prefix, result, meta)
    gx_ok = True
    if store.exists(f"{base.prefix}/expectations.json"):
        doc = json.loads(store.get(f"{base.prefix}/expectations.json"))
        gx = expectations.run_suite(table, doc) if table is not None else \
            {**expectations.suite_result(doc, suite), "compute": "dask"} if suite is not None else \
            {"evaluated": False, "reason": "the suite was attached after the cluster summarised this input"}
        gx_ok = bool(gx.get("success", True))
        store.put(f"{prefix}/expectations.json", layout.dumps(gx), "application/json")
    summ = result.summary()
    return finish(violations=result.violations, passed=gx_ok, rows=result.rows,
                  drift_share=summ["drift_share"], dataset_drift=summ["dataset_drift"],
                  drifted_features=summ["drifted_features"])


def _summaries(store: ObjectStore, cluster: compute.Cluster, base: Baseline, parts: list[compute.Part],
               read: compute.Read) -> dict[str, Any]:
    """The profiles of ``parts`` and, when the baseline has an expectation suite, its measures (a second pass over
    the same partitions), both merged on the cluster — as ``run_analysis`` arguments."""
    out: dict[str, Any] = {"summary": cluster.summarise(store, parts, read)}
    if store.exists(f"{base.prefix}/expectations.json"):
        suite = json.loads(store.get(f"{base.prefix}/expectations.json"))
        out["suite"] = cluster.summarise(store, parts, read, functools.partial(expectations.SuiteCounts.of,
                                                                                suite=suite))
    return out


def analyze_file(session: Session, store: ObjectStore, *, baseline_id: str, data: bytes, fmt: str | None,
                 header: bool, dataset_uri: str | None, config: DriftConfig | None, actor: Principal) -> Finished:
    """An uploaded file against the baseline; on the compute cluster (stored first, then read by the workers)
    unless MLGOV_COMPUTE=local or it has fewer rows than MLGOV_COMPUTE_MIN_ROWS."""
    base = get_baseline(session, baseline_id)
    _check_drift_early(base, config)
    table = dataset_table(data, fmt, header)
    run = functools.partial(run_analysis, session, store, baseline_id=baseline_id, actor=actor,
                            source="uri" if dataset_uri else "file", dataset_uri=dataset_uri, config=config)
    cluster = compute.cluster_for(table.num_rows)
    if cluster is None:
        return run(table=table)
    parts = compute.stored_parts(store, table, f"inputs/{new_id()}/dataset.parquet")
    return run(**_summaries(store, cluster, base, parts, compute.Read()))


def analyze_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                   end: dt.datetime, config: DriftConfig | None, actor: Principal) -> Finished:
    base = get_baseline(session, baseline_id)
    if end <= start:
        raise Invalid(f"window end {end.isoformat()} is not after start {start.isoformat()}",
                      fix="give start < end (ISO-8601 times)")
    _check_drift_early(base, config)
    ep = get_endpoint(session, endpoint)
    wanted = {f["name"] for f in json.loads(store.get(f"{base.prefix}/constraints.json")).get("features", [])}
    wanted |= {f["name"] for f in ep.schema["features"]}
    no_data = f"no data captured between {start.isoformat()} and {end.isoformat()} for endpoint {endpoint!r}"
    run = functools.partial(run_analysis, session, store, baseline_id=baseline_id, actor=actor, source="endpoint",
                            endpoint=endpoint, start=start, end=end, config=config)

    def on_cluster() -> dict[str, Any] | None:   # the workers read the batches; only summaries come back
        batches = window_batches(session, ep, start, end)
        cluster = compute.cluster_for(sum(b.records for b in batches)) if batches else None
        return None if cluster is None else _summaries(
            store, cluster, base, [compute.Part(b.parquet_key) for b in batches],
            compute.Read(frozenset(wanted), start, end))

    found = reread_if_compacted(session, on_cluster)
    if found is not None:
        return run(**found, failure=no_data if found["summary"].rows == 0 else None)
    table = window_table(session, store, ep, start, end)
    if table is None or table.num_rows == 0:
        return run(failure=no_data)
    return run(table=table.select([c for c in table.column_names if c in wanted]))


def get_analysis(session: Session, analysis_id: str) -> Analysis:
    row = session.get(Analysis, analysis_id)
    if row is None:
        raise AnalysisNotFound(analysis_id)
    return row


def list_analyses(session: Session, *, baseline_id: str | None, endpoint: str | None, status: str | None,
                  limit: int, offset: int) -> tuple[list[Analysis], int]:
    stmt = select(Analysis)
    if baseline_id:
        stmt = stmt.where(Analysis.baseline_id == baseline_id)
    if endpoint:
        stmt = stmt.where(Analysis.endpoint == endpoint)
    if status:
        stmt = stmt.where(Analysis.status == status)
    return paginate(session, stmt, Analysis.created_at.desc(), Analysis.id, limit=limit, offset=offset)


def violations_of(store: ObjectStore, row: Analysis) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(store.get(f"{row.prefix}/constraint_violations.json"))["violations"]
    return found


def analysis_results(store: ObjectStore, row: Analysis) -> dict[str, Any]:
    """What an analysis found, from its stored files: the violations, a data-quality run's drift table (and whether
    its sample was too small to judge), and its Great Expectations results when its baseline has a suite."""
    out: dict[str, Any] = {"violations": violations_of(store, row)}
    if row.status != "Failed" and row.kind == "DataQuality":
        drift = json.loads(store.get(f"{row.prefix}/drift.json"))
        out.update(drift=drift["features"], small_sample=bool(drift["summary"].get("small_sample")),
                   note=drift["summary"].get("note"))
    if store.exists(f"{row.prefix}/expectations.json"):
        out["expectations"] = json.loads(store.get(f"{row.prefix}/expectations.json"))
    return out


def analysis_file(session: Session, store: ObjectStore, analysis_id: str, name: str) -> bytes:
    row = get_analysis(session, analysis_id)
    return store.get_named(row.prefix, name, f"{row.kind} analysis {analysis_id}")


def analysis_summary(session: Session, store: ObjectStore, row: Analysis) -> dict[str, Any]:
    """What every kind's report shows: status, baseline, window, rows and the violations."""
    out: dict[str, Any] = {"id": row.id, "kind": row.kind, "status": row.status,
                           "failure_reason": row.failure_reason, "baseline_id": row.baseline_id,
                           "rows": row.row_count, "violations": violations_of(store, row), "source": row.source,
                           "endpoint": row.endpoint, "dataset_uri": row.dataset_uri,
                           "created_at": row.created_at.isoformat()}
    if row.window_start is not None and row.window_end is not None:
        out["window"] = {"start": row.window_start.isoformat(), "end": row.window_end.isoformat()}
    return out


def evidently_snapshot(session: Session, store: ObjectStore, analysis_id: str) -> dict[str, Any]:
    """A drift analysis as an Evidently 0.7 snapshot, from its stored files (``monitor.evidently_export``)."""
    row = get_analysis(session, analysis_id)
    if row.kind != "DataQuality":
        raise Invalid(f"analysis {analysis_id} is a {row.kind} analysis; only drift (DataQuality) analyses export as "
                      "Evidently snapshots", fix="pick an analysis of a data-quality baseline")
    if row.status == "Failed":
        raise Invalid(f"analysis {analysis_id} failed ({row.failure_reason}); it has no drift results to export",
                      fix="fix the cause and run a new analysis")
    report = data_quality_report(session, store, row)
    when = as_utc(row.window_end or row.created_at) or row.created_at
    info = {"id": row.id, "baseline_id": row.baseline_id, "endpoint": row.endpoint, "source": row.source,
            "timestamp": when.replace(tzinfo=None).isoformat()}   # Evidently's timestamps are naive UTC
    threshold = float(report["drift"].get("drift_share_threshold", DEFAULT_DRIFT_SHARE))
    return evidently_export.snapshot(info, report["drift"], report["statistics"], report["baseline_statistics"],
                                     threshold)


def data_quality_report(session: Session, store: ObjectStore, row: Analysis) -> dict[str, Any]:
    """The drift table and both statistics.json files (the report draws each feature's two distributions)."""
    base = get_baseline(session, row.baseline_id)
    return {"drift": json.loads(store.get(f"{row.prefix}/drift.json")),
            "statistics": json.loads(store.get(f"{row.prefix}/statistics.json")),
            "baseline_statistics": json.loads(store.get(f"{base.prefix}/statistics.json"))}
