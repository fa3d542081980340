"""Monitoring rules: baselines, analyses, endpoints and capture. Services flush; callers commit.

Files go to the object store before the rows that point at them are flushed, so a committed row always
finds its files, and files whose rows never committed are unreachable (and harmless).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lineage import service as lineage
from mlgov import audit, events, inputs
from mlgov.auth import Principal
from mlgov.db import new_id, paginate, utcnow
from mlgov.errors import Conflict, Invalid
from mlgov.storage import ObjectStore
from monitor import capture, documents, layout, report
from monitor.engine import constraints as cons
from monitor.engine import expectations
from monitor.engine.analysis import AnalysisResult, DriftConfig, analyze, profile
from monitor.engine.columns import TableError, read_table
from monitor.engine.stats import profiles_from_statistics, statistics_json
from monitor.errors import AnalysisNotFound, BaselineNotFound, EndpointNotFound
from monitor.orm import Analysis, Baseline, CaptureBatch, CaptureEvent, Endpoint, GroundTruth, VersionBaseline
from registry import service as registry

# --- baselines ----------------------------------------------------------------------------------------------


def _table(data: bytes, fmt: str | None, header: bool) -> pa.Table:
    if not data:
        raise Invalid("the dataset is empty", fix="upload a CSV with a header row, or a Parquet file")
    parquet = (fmt or ("parquet" if data[:4] == b"PAR1" else "csv")) == "parquet"
    if not parquet:
        inputs.check_csv(data, "the dataset")
    try:
        table = read_table(data, fmt, header=header)
    except TableError as exc:
        raise Invalid(str(exc), fix="upload a CSV with a header row (or header=false), or a Parquet file") from None
    if parquet:
        inputs.check_columns(table.num_columns, "the dataset")
    if table.num_columns == 0 or table.num_rows == 0:
        raise Invalid("the dataset has no rows", fix="upload at least one data row")
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Invalid(f"the dataset has duplicate column names: {dupes}", fix="give every column a unique name")
    return table


def read_dataset_uri(store: ObjectStore, uri: str) -> bytes:
    """A dataset named by its key in the object store, or by the store's own s3://… / file://… URI."""
    key = store.key_of(uri)
    if key is None and "://" in uri:
        raise Invalid(f"dataset URI {uri!r} is outside the configured object store ({store.root_uri}…)",
                      fix="upload the file, or put it in the store and give its key")
    return store.get(key if key is not None else uri)


def create_baseline(session: Session, store: ObjectStore, *, data: bytes, fmt: str | None, header: bool,
                    name: str | None, dataset_uri: str | None, actor: Principal) -> Baseline:
    table = _table(data, fmt, header)
    _, profiles = profile(table)
    stats = statistics_json(profiles)
    constraints = cons.suggest(profiles)
    bid = new_id()
    prefix = f"baselines/{bid}"
    store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
    store.put(f"{prefix}/constraints.json", layout.dumps(constraints), "application/json")
    layout.save_profile(store, prefix, profiles)
    sha = hashlib.sha256(data).hexdigest()
    row = Baseline(id=bid, name=name, source="computed", dataset_uri=dataset_uri, dataset_sha256=sha, prefix=prefix,
                   exact=True, row_count=table.num_rows, feature_count=table.num_columns, created_by=actor.name,
                   created_at=utcnow())
    session.add(row)
    session.flush()
    _baseline_lineage(session, row, store, actor.name)
    audit.record(session, actor=actor.name, action="baseline.created", subject_type="baseline", subject_id=bid,
                 after={"rows": row.row_count, "features": row.feature_count, "dataset_sha256": sha,
                        "dataset_uri": dataset_uri})
    return row


def import_baseline(session: Session, store: ObjectStore, *, statistics: bytes, constraints: bytes,
                    name: str | None, actor: Principal) -> Baseline:
    stats = inputs.loads(statistics, "statistics")
    constr = inputs.loads(constraints, "constraints")
    if isinstance(stats, dict) and isinstance(stats.get("features"), list):
        documents.validate_statistics(stats)
    if isinstance(constr, dict) and isinstance(constr.get("features"), list):
        documents.validate_constraints(constr, "DataQuality")
    try:
        profiles = profiles_from_statistics(stats)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Invalid(f"the SageMaker statistics/constraints files could not be read: {exc}",
                      fix="upload statistics.json and constraints.json as written by SageMaker or mlgov") from None
    if not isinstance(constr, dict) or not isinstance(constr.get("features"), list) or not profiles:
        raise Invalid("constraints.json must hold a 'features' list and statistics.json at least one feature",
                      fix="check the files are SageMaker's data-quality statistics.json and constraints.json")
    bid = new_id()
    prefix = f"baselines/{bid}"
    store.put(f"{prefix}/statistics.json", statistics, "application/json")
    store.put(f"{prefix}/constraints.json", constraints, "application/json")
    row = Baseline(id=bid, name=name, source="imported", prefix=prefix, exact=False,
                   row_count=int((stats.get("dataset") or {}).get("item_count") or 0), feature_count=len(profiles),
                   created_by=actor.name, created_at=utcnow())
    session.add(row)
    session.flush()
    _baseline_lineage(session, row, store, actor.name)
    audit.record(session, actor=actor.name, action="baseline.imported", subject_type="baseline", subject_id=bid,
                 after={"features": len(profiles)})
    return row


def _baseline_lineage(session: Session, row: Baseline, store: ObjectStore, actor: str) -> None:
    art, _ = lineage.ensure_artifact(session, type="Baseline", uri=store.uri(f"{row.prefix}/statistics.json"),
                                     name=row.name or row.id, actor=actor, properties={"baseline_id": row.id})
    if row.dataset_uri:
        data, _ = lineage.ensure_artifact(session, type="Dataset", uri=row.dataset_uri, actor=actor)
        lineage.link(session, data, art, "ContributedTo", actor=actor)


def get_baseline(session: Session, baseline_id: str) -> Baseline:
    row = session.get(Baseline, baseline_id)
    if row is None:
        raise BaselineNotFound(baseline_id)
    return row


def list_baselines(session: Session, limit: int, offset: int) -> tuple[list[Baseline], int]:
    return paginate(session, select(Baseline), Baseline.created_at.desc(), Baseline.id, limit=limit, offset=offset)


def baseline_file(session: Session, store: ObjectStore, baseline_id: str, name: str) -> bytes:
    return store.get(f"{get_baseline(session, baseline_id).prefix}/{name}")


def _document(body: bytes, what: str, items: str, key: tuple[str, ...], fix: str) -> dict[str, Any]:
    """A JSON object holding a list ``items`` whose entries are objects with one of the ``key`` fields."""
    doc = inputs.loads(body, what)

    def entry_ok(e: Any) -> bool:   # a dict naming itself by a non-empty string; the naming keys are strings
        return isinstance(e, dict) and any(isinstance(e.get(k), str) and e[k] for k in key) and all(
            isinstance(e[k], str) for k in key if k in e)

    if not isinstance(doc, dict) or not isinstance(doc.get(items), list) or not all(map(entry_ok, doc[items])):
        raise Invalid(f"{what} needs a {items!r} list of objects with a non-empty string {key[0]!r}", fix=fix)
    return doc


def update_constraints(session: Session, store: ObjectStore, baseline_id: str, body: bytes,
                       actor: Principal) -> dict[str, Any]:
    """Replace constraints.json (users tune thresholds and overrides, as in SageMaker)."""
    row = get_baseline(session, baseline_id)
    if row.kind not in ("DataQuality", "ModelQuality"):
        raise Invalid(f"the constraints of a {row.kind} baseline are its analysis; they cannot be edited",
                      fix="compute a new baseline instead")
    new = documents.validate_constraints(inputs.loads(body, "constraints.json"), row.kind)
    old = json.loads(store.get(f"{row.prefix}/constraints.json"))
    store.put(f"{row.prefix}/constraints.json", layout.dumps(new), "application/json")
    audit.record(session, actor=actor.name, action="baseline.constraints_updated", subject_type="baseline",
                 subject_id=row.id, before={"monitoring_config": old.get("monitoring_config")},
                 after={"monitoring_config": new.get("monitoring_config")})
    return dict(new)


def gx_suite(session: Session, store: ObjectStore, baseline_id: str) -> dict[str, Any]:
    """The baseline's constraints as a Great Expectations (1.x) ExpectationSuite."""
    row = get_baseline(session, baseline_id)
    constraints = json.loads(store.get(f"{row.prefix}/constraints.json"))
    exps: list[dict[str, Any]] = []
    gx_type = {"Integral": "int", "Fractional": "float", "String": "str"}
    for f in constraints.get("features", []):
        col = f["name"]
        exps.append({"type": "expect_column_to_exist", "kwargs": {"column": col}, "meta": {}})
        if f.get("inferred_type") in gx_type:
            exps.append({"type": "expect_column_values_to_be_in_type_list",
                         "kwargs": {"column": col, "type_list": [gx_type[f["inferred_type"]]]},
                         "meta": {"sagemaker": "data_type_check"}})
        if "completeness" in f:
            exps.append({"type": "expect_column_values_to_not_be_null",
                         "kwargs": {"column": col, "mostly": float(f["completeness"])},
                         "meta": {"sagemaker": "completeness_check"}})
        if (f.get("num_constraints") or {}).get("is_non_negative"):
            exps.append({"type": "expect_column_values_to_be_between", "kwargs": {"column": col, "min_value": 0},
                         "meta": {"sagemaker": "is_non_negative"}})
        domains = (f.get("string_constraints") or {}).get("domains")
        if domains:
            thr = float(constraints.get("monitoring_config", {}).get("domain_content_threshold", 1.0))
            exps.append({"type": "expect_column_values_to_be_in_set",
                         "kwargs": {"column": col, "value_set": domains, "mostly": thr},
                         "meta": {"sagemaker": "categorical_values_check"}})
    return {"name": f"mlgov-baseline-{row.id}", "expectations": exps,
            "meta": {"great_expectations_version": "1.x", "source": "mlgov constraints.json", "baseline_id": row.id}}


def put_expectations(session: Session, store: ObjectStore, baseline_id: str, body: bytes,
                     actor: Principal) -> dict[str, Any]:
    """Attach a Great Expectations suite to a baseline: every analysis against it also runs the suite."""
    row = get_baseline(session, baseline_id)
    suite = _document(body, "the ExpectationSuite", "expectations", ("type", "expectation_type"),
                      'e.g. {"name": "s", "expectations": [{"type": "expect_column_to_exist", '
                      '"kwargs": {"column": "age"}}]}')
    if not isinstance(suite.get("name", ""), str):
        raise Invalid("the ExpectationSuite's name must be a string", fix='e.g. "name": "churn-inputs"')
    store.put(f"{row.prefix}/expectations.json", layout.dumps(suite), "application/json")
    audit.record(session, actor=actor.name, action="baseline.expectations_attached", subject_type="baseline",
                 subject_id=row.id, after={"suite": suite.get("name"), "expectations": len(suite["expectations"])})
    return dict(suite)


def attach_baseline(session: Session, store: ObjectStore, group: str, version: int, baseline_id: str,
                    actor: Principal) -> VersionBaseline:
    g, v = registry.get_version(session, group, version)
    row = get_baseline(session, baseline_id)
    existing = session.scalar(select(VersionBaseline).where(VersionBaseline.model_group == g.name,
                                                            VersionBaseline.model_version == v.version,
                                                            VersionBaseline.kind == "ModelDataQuality"))
    before = {"baseline_id": existing.baseline_id} if existing else None
    if existing:
        existing.baseline_id, existing.attached_by, existing.attached_at = row.id, actor.name, utcnow()
        link = existing
    else:
        link = VersionBaseline(model_group=g.name, model_version=v.version, kind="ModelDataQuality",
                               baseline_id=row.id, attached_by=actor.name, attached_at=utcnow())
        session.add(link)
    session.flush()
    base_art, _ = lineage.ensure_artifact(session, type="Baseline", uri=store.uri(f"{row.prefix}/statistics.json"),
                                          name=row.name or row.id, actor=actor.name)
    model = registry.model_artifact(session, g, v, actor.name)
    lineage.link(session, base_art, model, "AssociatedWith", actor=actor.name,
                 properties={"role": "DriftCheckBaselines.ModelDataQuality"})
    audit.record(session, actor=actor.name, action="version.drift_baseline_attached", subject_type="model_version",
                 subject_id=f"{g.name}/{v.version}", before=before, after={"baseline_id": row.id})
    events.emit(session, "version.drift_baseline_attached", f"{g.name}/{v.version}",
                {"group": g.name, "version": v.version, "baseline_id": row.id})
    return link


def version_baseline(session: Session, group: str, version: int) -> VersionBaseline | None:
    return session.scalar(select(VersionBaseline).where(VersionBaseline.model_group == group,
                                                        VersionBaseline.model_version == version))


# --- analyses -------------------------------------------------------------------------------------------------

def _store_analysis(store: ObjectStore, prefix: str, result: AnalysisResult, baseline: Baseline,
                    meta: dict[str, Any]) -> None:
    store.put(f"{prefix}/constraint_violations.json", layout.dumps({"violations": result.violations}),
              "application/json")
    store.put(f"{prefix}/statistics.json", layout.dumps(result.statistics), "application/json")
    drift = {"summary": result.summary(), "features": [d.as_dict() for d in result.drift], **meta}
    store.put(f"{prefix}/drift.json", layout.dumps(drift), "application/json")


def run_analysis(session: Session, store: ObjectStore, *, baseline_id: str, actor: Principal,
                 table: pa.Table | None = None, source: str, dataset_uri: str | None = None,
                 endpoint: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
                 config: DriftConfig | None = None, failure: str | None = None) -> Analysis:
    base = get_baseline(session, baseline_id)
    aid = new_id()
    prefix = f"analyses/{aid}"
    t0 = time.perf_counter()
    row = Analysis(id=aid, baseline_id=base.id, source=source, dataset_uri=dataset_uri, endpoint=endpoint,
                   window_start=start, window_end=end, prefix=prefix, created_by=actor.name, created_at=utcnow())
    if failure is not None or table is None:
        row.status, row.failure_reason = "Failed", failure or "no data"
        store.put(f"{prefix}/constraint_violations.json", layout.dumps({"violations": []}), "application/json")
    else:
        baseline = layout.load_profiles(store, base.prefix, base.exact)
        constraints = json.loads(store.get(f"{base.prefix}/constraints.json"))
        result = analyze(baseline, constraints, table, config)
        meta = {"baseline_id": base.id, "window": {"start": start.isoformat() if start else None,
                                                    "end": end.isoformat() if end else None}}
        _store_analysis(store, prefix, result, base, meta)
        gx_ok = True
        if store.exists(f"{base.prefix}/expectations.json"):
            gx = expectations.run_suite(table, json.loads(store.get(f"{base.prefix}/expectations.json")))
            store.put(f"{prefix}/expectations.json", layout.dumps(gx), "application/json")
            gx_ok = gx["success"]
        summary = result.summary()
        row.status = "CompletedWithViolations" if result.violations or not gx_ok else "Completed"
        row.row_count, row.violation_count = result.rows, len(result.violations)
        row.drift_share, row.dataset_drift = summary["drift_share"], summary["dataset_drift"]
        row.drifted_features = summary["drifted_features"]
    row.duration_ms = int((time.perf_counter() - t0) * 1000)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="analysis.completed", subject_type="analysis", subject_id=aid,
                 after={"status": row.status, "violations": row.violation_count, "baseline_id": base.id})
    events.emit(session, "analysis.completed", aid, {"id": aid, "status": row.status, "baseline_id": base.id,
                                                     "violations": row.violation_count, "endpoint": endpoint,
                                                     "drifted_features": row.drifted_features})
    return row


def analyze_file(session: Session, store: ObjectStore, *, baseline_id: str, data: bytes, fmt: str | None,
                 header: bool, dataset_uri: str | None, config: DriftConfig | None, actor: Principal) -> Analysis:
    get_baseline(session, baseline_id)
    table = _table(data, fmt, header)
    return run_analysis(session, store, baseline_id=baseline_id, actor=actor, table=table,
                        source="uri" if dataset_uri else "file", dataset_uri=dataset_uri, config=config)


def analyze_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                   end: dt.datetime, config: DriftConfig | None, actor: Principal) -> Analysis:
    get_baseline(session, baseline_id)
    if end <= start:
        raise Invalid(f"window end {end.isoformat()} is not after start {start.isoformat()}",
                      fix="give start < end (ISO-8601 times)")
    ep = get_endpoint(session, endpoint)
    table = window_table(session, store, ep, start, end)
    base = get_baseline(session, baseline_id)
    failure = None
    if table is None or table.num_rows == 0:
        failure = f"no data captured between {start.isoformat()} and {end.isoformat()} for endpoint {endpoint!r}"
        table = None
    else:
        wanted = [f["name"] for f in json.loads(store.get(f"{base.prefix}/constraints.json")).get("features", [])]
        keep = [c for c in table.column_names if c in wanted or c in [f["name"] for f in ep.schema["features"]]]
        table = table.select(keep)
    return run_analysis(session, store, baseline_id=baseline_id, actor=actor, table=table, source="endpoint",
                        endpoint=endpoint, start=start, end=end, config=config, failure=failure)


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


def analysis_file(session: Session, store: ObjectStore, analysis_id: str, name: str) -> bytes:
    return store.get(f"{get_analysis(session, analysis_id).prefix}/{name}")


def analysis_report(session: Session, store: ObjectStore, analysis_id: str) -> dict[str, Any]:
    row = get_analysis(session, analysis_id)
    out: dict[str, Any] = {"id": row.id, "kind": row.kind, "status": row.status,
                           "failure_reason": row.failure_reason, "baseline_id": row.baseline_id,
                           "rows": row.row_count, "violations": violations_of(store, row)}
    if row.status != "Failed" and row.kind == "DataQuality":
        out["drift"] = json.loads(store.get(f"{row.prefix}/drift.json"))
        out["statistics"] = json.loads(store.get(f"{row.prefix}/statistics.json"))
        base = get_baseline(session, row.baseline_id)
        out["baseline_statistics"] = json.loads(store.get(f"{base.prefix}/statistics.json"))
    elif row.status != "Failed" and row.kind == "ModelQuality":   # the report shows the metrics it judged
        out["statistics"] = json.loads(store.get(f"{row.prefix}/statistics.json"))
    return out


def analysis_html(session: Session, store: ObjectStore, analysis_id: str) -> str:
    return report.render(analysis_report(session, store, analysis_id))


# --- endpoints and capture ----------------------------------------------------------------------------------

def create_endpoint(session: Session, *, name: str, model_group: str, model_version: int, variant: str,
                    sampling_percentage: float, schema: capture.CaptureSchema, actor: Principal) -> Endpoint:
    g, v = registry.get_version(session, model_group, model_version)
    if session.scalar(select(Endpoint.id).where(Endpoint.name == name)) is not None:
        raise Conflict(f"endpoint {name!r} already exists", fix="pick another name")
    ep = Endpoint(id=new_id(), name=name, model_group=g.name, model_version=v.version, variant=variant,
                  sampling_percentage=sampling_percentage, schema=schema.model_dump(), created_by=actor.name,
                  created_at=utcnow(), updated_at=utcnow())
    session.add(ep)
    session.flush()
    ctx, _ = lineage.ensure_context(session, type="Endpoint", name=name, key=f"endpoint:{name}", actor=actor.name,
                                    properties={"variant": variant})
    dep, _ = lineage.ensure_action(session, type="Deployment", key=f"deployment:{name}:{g.name}/{v.version}",
                                   name=f"deploy {g.name}/{v.version} to {name}", status="Completed",
                                   start_time=utcnow(), actor=actor.name)
    lineage.chain(session, [(registry.model_artifact(session, g, v, actor.name), dep, "ContributedTo"),
                            (dep, ctx, "AssociatedWith")], actor=actor.name)
    audit.record(session, actor=actor.name, action="endpoint.created", subject_type="endpoint", subject_id=name,
                 after={"model_group": g.name, "model_version": v.version, "variant": variant,
                        "sampling_percentage": sampling_percentage})
    return ep


def get_endpoint(session: Session, name: str) -> Endpoint:
    ep = session.scalar(select(Endpoint).where(Endpoint.name == name))
    if ep is None:
        raise EndpointNotFound(name)
    return ep


def list_endpoints(session: Session, limit: int, offset: int) -> tuple[list[Endpoint], int]:
    return paginate(session, select(Endpoint), Endpoint.name, limit=limit, offset=offset)


def _lock_endpoint(session: Session, ep: Endpoint) -> None:
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(ep.id.encode()).digest()[:7], "big")
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def ingest(session: Session, store: ObjectStore, endpoint: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Accept SageMaker capture records. Acknowledged (returned) means stored: files are fsynced/PUT before
    the index rows flush, and the caller's commit happens before the response leaves."""
    ep = get_endpoint(session, endpoint)
    schema = capture.CaptureSchema.model_validate(ep.schema)
    try:
        items = capture.split_body(body, content_type)
    except capture.RecordError as exc:
        raise Invalid(str(exc), fix="send SageMaker capture records") from None
    rejected: list[dict[str, Any]] = []
    parsed: list[capture.Parsed] = []
    sampled_out = 0
    for i, item in enumerate(items):
        if isinstance(item, capture.RecordError):
            rejected.append({"index": i, "reason": str(item)})
            continue
        try:
            rec = capture.parse(item, schema)
        except capture.RecordError as exc:
            rejected.append({"index": i, "reason": str(exc)})
            continue
        if not capture.sampled(ep.name, rec.event_id, ep.sampling_percentage):
            sampled_out += 1
            continue
        parsed.append(rec)
    _lock_endpoint(session, ep)
    seen: set[str] = set()
    fresh: list[capture.Parsed] = []
    ids = list({p.event_id for p in parsed})
    for chunk in range(0, len(ids), 500):
        seen |= set(session.scalars(select(CaptureEvent.event_id).where(
            CaptureEvent.endpoint_id == ep.id, CaptureEvent.event_id.in_(ids[chunk:chunk + 500]))))
    duplicates = 0
    for p in parsed:
        if p.event_id in seen:
            duplicates += 1
            continue
        seen.add(p.event_id)
        fresh.append(p)
    by_hour: dict[dt.datetime, list[capture.Parsed]] = {}
    for p in fresh:
        by_hour.setdefault(p.inference_time.replace(minute=0, second=0, microsecond=0), []).append(p)
    for hour, recs in sorted(by_hour.items()):
        batch = new_id()
        folder = f"capture/{ep.name}/{ep.variant}/{hour:%Y/%m/%d/%H}"
        jsonl = "".join(json.dumps(r.raw, separators=(",", ":")) + "\n" for r in recs).encode()
        store.put(f"{folder}/{batch}.jsonl", jsonl, "application/jsonl")
        store.put(f"{folder}/{batch}.parquet", _parquet(recs, schema), "application/vnd.apache.parquet")
        session.add(CaptureBatch(id=batch, endpoint_id=ep.id, hour=hour, jsonl_key=f"{folder}/{batch}.jsonl",
                                 parquet_key=f"{folder}/{batch}.parquet", records=len(recs),
                                 first_time=min(r.inference_time for r in recs),
                                 last_time=max(r.inference_time for r in recs), created_at=utcnow()))
        session.flush()
        session.add_all([CaptureEvent(endpoint_id=ep.id, event_id=r.event_id, inference_id=r.inference_id,
                                      inference_time=r.inference_time, batch_id=batch) for r in recs])
    session.flush()
    return {"accepted": len(fresh), "sampled_out": sampled_out, "duplicates": duplicates, "rejected": rejected}


def _parquet(recs: list[capture.Parsed], schema: capture.CaptureSchema) -> bytes:
    cols: dict[str, Any] = {
        "__event_id": pa.array([r.event_id for r in recs]),
        "__inference_id": pa.array([r.inference_id for r in recs], type=pa.string()),
        "__inference_time": pa.array([r.inference_time for r in recs], type=pa.timestamp("us", tz="UTC")),
    }
    specs: list[tuple[str, str]] = [(f.name, f.type) for f in schema.features]
    specs += [(o.name, "Fractional") for o in schema.output_columns()]
    for name, ftype in specs:
        values = [r.row.get(name) for r in recs]
        if ftype == "String" or any(isinstance(v, str) for v in values):
            cols[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        elif ftype == "Integral" and all(v is None or float(v).is_integer() for v in values):
            cols[name] = pa.array([None if v is None else int(v) for v in values], type=pa.int64())
        else:
            cols[name] = pa.array(values, type=pa.float64())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue()


def window_table(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime,
                 end: dt.datetime, *, keep_keys: bool = False) -> pa.Table | None:
    """Captured rows with inference time in [start, end), read from the committed Parquet batches."""
    batches = list(session.scalars(select(CaptureBatch).where(
        CaptureBatch.endpoint_id == ep.id, CaptureBatch.last_time >= start, CaptureBatch.first_time < end)
        .order_by(CaptureBatch.hour, CaptureBatch.created_at)))
    if not batches:
        return None
    tables = [pq.read_table(io.BytesIO(store.get(b.parquet_key))) for b in batches]
    table = pa.concat_tables(tables, promote_options="permissive")
    t = table.column("__inference_time")
    import pyarrow.compute as pc

    mask = pc.and_(pc.greater_equal(t, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
                   pc.less(t, pa.scalar(end, pa.timestamp("us", tz="UTC"))))
    table = table.filter(mask)
    if keep_keys:
        return table
    return table.drop_columns([c for c in table.column_names if c.startswith("__")])


def captured_count(session: Session, endpoint: str) -> int:
    from sqlalchemy import func

    ep = get_endpoint(session, endpoint)
    return int(session.scalar(select(func.count()).select_from(CaptureEvent).where(CaptureEvent.endpoint_id == ep.id))
               or 0)


# --- ground truth and model quality ---------------------------------------------------------------------------

def _gt_label(record: Any) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise capture.RecordError("record must be a JSON object")
    meta = record.get("eventMetadata")
    event_id = meta.get("eventId") if isinstance(meta, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        raise capture.RecordError("eventMetadata.eventId must be a non-empty string (the inferenceId or eventId "
                                  "of the captured request)")
    gt = record.get("groundTruthData")
    if not isinstance(gt, dict) or not isinstance(gt.get("data"), str):
        raise capture.RecordError("groundTruthData.data must be a string holding the label")
    data, enc = capture._decode(gt, "groundTruthData")
    label = data.strip()
    if enc == "JSON":
        value = capture.payload_json(label, "groundTruthData.data")
        label = str(value.get("label", value) if isinstance(value, dict) else value)
    else:
        label = capture._csv_values(label)[0] if label else ""
    if label == "":
        raise capture.RecordError("groundTruthData.data is empty")
    return event_id, label


def ingest_ground_truth(session: Session, store: ObjectStore, endpoint: str, body: bytes,
                        content_type: str) -> dict[str, Any]:
    """Labels, stored hour-partitioned by arrival (as SageMaker does); unknown ids are kept and reported."""
    ep = get_endpoint(session, endpoint)
    try:
        items = capture.split_body(body, content_type)
    except capture.RecordError as exc:
        raise Invalid(str(exc), fix="send SageMaker ground-truth records") from None
    rejected: list[dict[str, Any]] = []
    good: list[tuple[str, str, Any]] = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, capture.RecordError):
                raise item
            eid, label = _gt_label(item)
            good.append((eid, label, item))
        except capture.RecordError as exc:
            rejected.append({"index": i, "reason": str(exc)})
    _lock_endpoint(session, ep)
    ids = list({g[0] for g in good})
    known: set[str] = set()
    matched: set[str] = set()
    for c in range(0, len(ids), 500):
        chunk = ids[c:c + 500]
        known |= set(session.scalars(select(GroundTruth.event_id).where(GroundTruth.endpoint_id == ep.id,
                                                                       GroundTruth.event_id.in_(chunk))))
        matched |= set(session.scalars(select(CaptureEvent.inference_id).where(
            CaptureEvent.endpoint_id == ep.id, CaptureEvent.inference_id.in_(chunk))))
        matched |= set(session.scalars(select(CaptureEvent.event_id).where(
            CaptureEvent.endpoint_id == ep.id, CaptureEvent.event_id.in_(chunk))))
    fresh, duplicates = [], 0
    for eid, label, raw in good:
        if eid in known:
            duplicates += 1
            continue
        known.add(eid)
        fresh.append((eid, label, raw))
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    unmatched = [eid for eid, _, _ in fresh if eid not in matched]
    if fresh:
        key = f"groundtruth/{ep.name}/{hour:%Y/%m/%d/%H}/{new_id()}.jsonl"
        store.put(key, "".join(json.dumps(r, separators=(",", ":")) + "\n" for _, _, r in fresh).encode(),
                  "application/jsonl")
        session.add_all([GroundTruth(endpoint_id=ep.id, event_id=eid, label=label, arrived_hour=hour, object_key=key,
                                     created_at=now) for eid, label, _ in fresh])
        session.flush()
    return {"accepted": len(fresh), "duplicates": duplicates, "rejected": rejected,
            "unmatched": len(unmatched), "unmatched_ids": unmatched[:100]}


def _quality_arrays(problem: str, labels: list[Any], preds: list[Any] | None, probs: list[Any] | None
                    ) -> tuple[Any, Any, Any]:
    import numpy as np

    try:
        if problem != "BinaryClassification" and preds is None:
            raise Invalid(f"{problem} quality needs a prediction column", fix="configure prediction=")
        if problem == "Regression":
            return np.asarray(labels, dtype=float), np.asarray(preds, dtype=float), None
        if problem == "BinaryClassification":
            y = np.asarray([int(float(v)) for v in labels])
            if not set(np.unique(y)) <= {0, 1}:
                raise Invalid("binary labels must be 0 or 1", fix="map the positive class to 1")
            pr = None if probs is None else np.asarray(probs, dtype=float)
            lb = None if preds is None or (pr is not None) else np.asarray([int(float(v)) for v in preds])
            if pr is None and lb is None:
                raise Invalid("binary quality needs a prediction or a probability column", fix="configure one")
            return y, lb, pr
        return np.asarray([str(v) for v in labels]), np.asarray([str(v) for v in preds or []]), None
    except (TypeError, ValueError) as exc:
        raise Invalid(f"labels or predictions are not of the problem type {problem}: {exc}",
                      fix="check the label, prediction and probability columns") from None


def create_quality_baseline(session: Session, store: ObjectStore, *, data: bytes, fmt: str | None, header: bool,
                            problem_type: str, label: str, prediction: str | None, probability: str | None,
                            threshold: float, name: str | None, actor: Principal) -> Baseline:
    from monitor.engine import quality

    if problem_type not in quality.PROBLEMS:
        raise Invalid(f"problem_type {problem_type!r} is not one of {', '.join(quality.PROBLEMS)}",
                      fix="use Regression, BinaryClassification or MulticlassClassification")
    table = _table(data, fmt, header)
    cols = table.column_names
    for needed in [label, prediction, probability]:
        if needed is not None and needed not in cols:
            raise Invalid(f"column {needed!r} is not in the dataset (columns: {cols[:20]})",
                          fix="name the label/prediction/probability columns with label=, prediction=, probability=")
    y, pred, prob = _quality_arrays(problem_type, table.column(label).to_pylist(),
                                    table.column(prediction).to_pylist() if prediction else None,
                                    table.column(probability).to_pylist() if probability else None)
    stats = quality.statistics(problem_type, y, prediction=pred, probability=prob, threshold=threshold)
    constraints = quality.suggest_constraints(stats)
    bid = new_id()
    prefix = f"baselines/{bid}"
    store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
    store.put(f"{prefix}/constraints.json", layout.dumps(constraints), "application/json")
    row = Baseline(id=bid, name=name, source="computed", kind="ModelQuality", problem_type=problem_type,
                   settings={"label": label, "prediction": prediction, "probability": probability,
                             "threshold": threshold},
                   dataset_sha256=hashlib.sha256(data).hexdigest(), prefix=prefix, exact=False,
                   row_count=table.num_rows, feature_count=table.num_columns, created_by=actor.name,
                   created_at=utcnow())
    session.add(row)
    session.flush()
    _baseline_lineage(session, row, store, actor.name)
    audit.record(session, actor=actor.name, action="baseline.created", subject_type="baseline", subject_id=bid,
                 after={"kind": "ModelQuality", "problem_type": problem_type, "rows": row.row_count})
    return row


def run_quality_analysis(session: Session, store: ObjectStore, *, baseline_id: str, actor: Principal,
                         labels: list[Any] | None, preds: list[Any] | None, probs: list[Any] | None,
                         source: str, endpoint: str | None = None, start: dt.datetime | None = None,
                         end: dt.datetime | None = None, failure: str | None = None) -> Analysis:
    from monitor.engine import quality

    base = get_baseline(session, baseline_id)
    if base.kind != "ModelQuality" or base.problem_type is None:
        raise Invalid(f"baseline {baseline_id} is a {base.kind} baseline", fix="use a ModelQuality baseline")
    aid = new_id()
    prefix = f"analyses/{aid}"
    t0 = time.perf_counter()
    row = Analysis(id=aid, baseline_id=base.id, kind="ModelQuality", source=source, endpoint=endpoint,
                   window_start=start, window_end=end, prefix=prefix, created_by=actor.name, created_at=utcnow(),
                   drifted_features=[])
    if failure is not None or not labels:
        row.status, row.failure_reason = "Failed", failure or "no labelled predictions"
        store.put(f"{prefix}/constraint_violations.json", layout.dumps({"violations": []}), "application/json")
    else:
        settings = base.settings or {}
        y, pred, prob = _quality_arrays(base.problem_type, labels, preds, probs)
        stats = quality.statistics(base.problem_type, y, prediction=pred, probability=prob,
                                   threshold=float(settings.get("threshold", 0.5)))
        found = quality.violations(json.loads(store.get(f"{base.prefix}/constraints.json")), stats)
        store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
        store.put(f"{prefix}/constraint_violations.json", layout.dumps({"violations": found}), "application/json")
        row.status = "CompletedWithViolations" if found else "Completed"
        row.row_count, row.violation_count = len(y), len(found)
    row.duration_ms = int((time.perf_counter() - t0) * 1000)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="analysis.completed", subject_type="analysis", subject_id=aid,
                 after={"kind": "ModelQuality", "status": row.status, "violations": row.violation_count})
    events.emit(session, "analysis.completed", aid, {"id": aid, "kind": "ModelQuality", "status": row.status,
                                                     "baseline_id": base.id, "violations": row.violation_count,
                                                     "endpoint": endpoint})
    return row


def labelled_window(session: Session, store: ObjectStore, ep: Endpoint, start: dt.datetime,
                    end: dt.datetime) -> Any:
    """Captured rows with inference time in [start, end) as a DataFrame, with `__label` holding the ground
    truth joined by inferenceId (else eventId), or None where no label has arrived."""
    import pandas as pd

    table = window_table(session, store, ep, start, end, keep_keys=True)
    if table is None or table.num_rows == 0:
        return pd.DataFrame()
    df = table.to_pandas()
    df["__key"] = df["__inference_id"].where(df["__inference_id"].notna(), df["__event_id"])
    keys = df["__key"].tolist()
    labels: dict[str, str] = {}
    for c in range(0, len(keys), 500):
        for gt in session.scalars(select(GroundTruth).where(GroundTruth.endpoint_id == ep.id,
                                                            GroundTruth.event_id.in_(keys[c:c + 500]))):
            labels[gt.event_id] = gt.label
    df["__label"] = df["__key"].map(labels)
    return df


def quality_window(session: Session, store: ObjectStore, *, baseline_id: str, endpoint: str, start: dt.datetime,
                   end: dt.datetime, actor: Principal) -> Analysis:
    """Captured predictions in the window joined to their labels (inferenceId, else eventId)."""
    base = get_baseline(session, baseline_id)
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    ep = get_endpoint(session, endpoint)
    settings = base.settings or {}
    pred_col, prob_col = settings.get("prediction"), settings.get("probability")
    df = labelled_window(session, store, ep, start, end)
    window = f"between {start.isoformat()} and {end.isoformat()}"
    run = functools.partial(run_quality_analysis, session, store, baseline_id=baseline_id, actor=actor,
                            source="endpoint", endpoint=endpoint, start=start, end=end)
    if df.empty:
        return run(labels=None, preds=None, probs=None, failure=f"no data captured {window} for endpoint {endpoint!r}")
    joined = df[df["__label"].notna()]
    if joined.empty:
        return run(labels=None, preds=None, probs=None,
                   failure=f"no ground truth yet for the {len(df)} records captured {window}")

    def col(name: str | None) -> list[Any] | None:
        return joined[name].tolist() if name and name in joined else None

    return run(labels=joined["__label"].tolist(), preds=col(pred_col), probs=col(prob_col))


def quality_file(session: Session, store: ObjectStore, *, baseline_id: str, data: bytes, fmt: str | None,
                 header: bool, actor: Principal) -> Analysis:
    """A labelled file (the baseline's label/prediction/probability columns) judged against the baseline."""
    base = get_baseline(session, baseline_id)
    settings = base.settings or {}
    table = _table(data, fmt, header)
    cols = {k: settings.get(k) for k in ("label", "prediction", "probability")}
    missing = [c for c in cols.values() if c and c not in table.column_names]
    if missing:
        raise Invalid(f"the file lacks the baseline's columns {missing}", fix=f"include columns {list(cols.values())}")

    def col(name: str | None) -> list[Any] | None:
        return table.column(name).to_pylist() if name else None

    return run_quality_analysis(session, store, baseline_id=baseline_id, actor=actor, labels=col(cols["label"]),
                                preds=col(cols["prediction"]), probs=col(cols["probability"]), source="file")


def performance_estimate(session: Session, store: ObjectStore, endpoint: str, start: dt.datetime,
                         end: dt.datetime, threshold: float) -> dict[str, Any]:
    """CBPE on the captured window's probabilities; realised metrics beside them for labelled records."""
    import numpy as np

    from monitor.engine import cbpe, quality

    ep = get_endpoint(session, endpoint)
    schema = capture.CaptureSchema.model_validate(ep.schema)
    col = (schema.probability or schema.prediction)
    if col is None:
        raise Invalid(f"endpoint {endpoint!r} captures no probability or prediction", fix="add one to its schema")
    if end <= start:
        raise Invalid("window end is not after start", fix="give start < end")
    df = labelled_window(session, store, ep, start, end)
    df = df[df[col.name].notna()] if not df.empty and col.name in df else df.iloc[0:0]
    if df.empty:
        raise Invalid(f"no captured {col.name} values between {start.isoformat()} and {end.isoformat()}",
                      fix="pick a window with traffic")
    p = df[col.name].to_numpy(dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise Invalid(f"{col.name} values are not probabilities in [0, 1]", fix="capture calibrated probabilities")
    est = cbpe.estimate(p, threshold)
    out: dict[str, Any] = {"endpoint": endpoint, "window": {"start": start.isoformat(), "end": end.isoformat()},
                           "rows": len(df), "threshold": threshold, "estimated": est}
    labelled = df[df["__label"].notna()]
    out["labelled_rows"] = len(labelled)
    if len(labelled):
        y = labelled["__label"].astype(float).astype(int).to_numpy()
        realized = quality.binary_values(y, labelled[col.name].to_numpy(dtype=float), None, threshold, curves=False)
        out["comparison"] = cbpe.compare(est, realized)
    return out
