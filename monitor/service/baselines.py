"""Data-quality baselines: computed from a dataset or imported from SageMaker files, their constraints and Great
Expectations suites, and the baseline attached to a model version (DriftCheckBaselines).

Services flush; callers commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage import service as lineage
from mlgov import audit, auth, events, inputs
from mlgov.auth import Principal
from mlgov.db import new_id, paginate, utcnow
from mlgov.errors import Invalid, NotFound
from mlgov.storage import ObjectStore
from monitor import compute, documents, layout
from monitor.engine import constraints as cons
from monitor.engine.analysis import profile
from monitor.engine.stats import (
    FeatureProfile,
    NumericSummary,
    bounded_reference,
    profiles_from_statistics,
    statistics_json,
)
from monitor.errors import BaselineNotFound
from monitor.orm import Baseline, VersionBaseline
from monitor.service.datasets import dataset_table
from registry import service as registry


def create_baseline(session: Session, store: ObjectStore, *, data: bytes, fmt: str | None, header: bool,
                    name: str | None, dataset_uri: str | None, actor: Principal) -> FinishedBaseline:
    table = dataset_table(data, fmt, header)
    bid = new_id()
    prefix = baseline_prefix(bid)
    cluster = compute.cluster_for(table.num_rows)
    if cluster is None:
        _, profiles = profile(table)
    else:   # stored first, then summarised by the workers: a sketch-based (not exact) reference
        profiles = cluster.summarise(store, compute.stored_parts(store, table, f"{prefix}/dataset.parquet"),
                                     compute.Read()).profiles
    stats = statistics_json(profiles)
    constraints = cons.suggest(profiles)
    store.put(f"{prefix}/statistics.json", layout.dumps(stats), "application/json")
    store.put(f"{prefix}/constraints.json", layout.dumps(constraints), "application/json")
    kept, exact = bounded_reference(profiles)   # large columns keep a bounded summary, not every value
    layout.save_profile(store, prefix, kept)
    sha = hashlib.sha256(data).hexdigest()
    return finish_baseline(store, baseline_id=bid, source="computed", dataset_uri=dataset_uri,
                           settings=reference_columns(profiles),
                           dataset_sha256=sha, exact=cluster is None and exact, rows=table.num_rows,
                           features=table.num_columns,
                           name=name, actor=actor,
                           summary={"rows": table.num_rows, "features": table.num_columns, "dataset_sha256": sha,
                                    "dataset_uri": dataset_uri})


def import_baseline(session: Session, store: ObjectStore, *, statistics: bytes, constraints: bytes,
                    name: str | None, actor: Principal) -> FinishedBaseline:
    stats = inputs.loads(statistics, "statistics")
    constr = inputs.loads(constraints, "constraints")
    if not isinstance(stats, dict) or not isinstance(stats.get("dataset"), dict) or \
            "item_count" not in stats["dataset"]:
        swapped = isinstance(stats, dict) and "monitoring_config" in stats
        raise Invalid("the statistics part has no dataset.item_count, which every statistics.json holds" +
                      (": it looks like a constraints.json (are the two parts swapped?)" if swapped else ""),
                      fix="send statistics.json as the `statistics` part and constraints.json as `constraints`")
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
    prefix = baseline_prefix(bid)
    store.put(f"{prefix}/statistics.json", statistics, "application/json")
    store.put(f"{prefix}/constraints.json", constraints, "application/json")
    return finish_baseline(store, baseline_id=bid, source="imported",
                           settings=reference_columns(profiles),
                           rows=int((stats.get("dataset") or {}).get("item_count") or 0), features=len(profiles),
                           name=name, actor=actor, action="baseline.imported", summary={"features": len(profiles)})


def reference_columns(profiles: Sequence[FeatureProfile]) -> dict[str, list[str]]:
    """What a data-quality baseline's row records of its columns: their names, the numeric ones and the
    all-missing ones, so schedules check a baseline's fit and drift settings without reading its files."""
    return {"columns": [p.name for p in profiles],
            "numeric": [p.name for p in profiles if isinstance(p.summary, NumericSummary)],
            "missing": [p.name for p in profiles if p.summary is None]}


def baseline_prefix(baseline_id: str) -> str:
    """The object-store folder of a baseline's files (stored before its row is recorded)."""
    return f"baselines/{baseline_id}"


@dataclass(frozen=True)
class FinishedBaseline:
    """A baseline computed, its files stored, not yet on the record: `record` writes its row, lineage and audit in
    a short write transaction (computing a baseline may take minutes, and must not hold the write turn)."""

    id: str
    recorder: Callable[[Session], Baseline]

    def record(self, session: Session) -> Baseline:
        return self.recorder(session)


def finish_baseline(store: ObjectStore, *, baseline_id: str, kind: str = "DataQuality", source: str, rows: int,
                    features: int, name: str | None, actor: Principal, summary: dict[str, Any],
                    action: str = "baseline.created", exact: bool = False, dataset_uri: str | None = None,
                    dataset_sha256: str | None = None, problem_type: str | None = None,
                    settings: dict[str, Any] | None = None, document: str = "statistics.json",
                    upstream: Callable[[Session], Sequence[lineage.Entity]] = lambda session: ()
                    ) -> FinishedBaseline:
    """The one maker of baselines, for every monitor kind (monitor's and those other domains register), for files
    already stored under ``baseline_prefix(baseline_id)``. Recorded: the row, its lineage (``document``, the file
    that is the baseline, as a Baseline artifact; the dataset at ``dataset_uri`` and the ``upstream`` nodes it was
    built from contributing to it) and the audit row (``action``, ``summary``)."""

    def record(session: Session) -> Baseline:
        row = Baseline(id=baseline_id, name=name, source=source, kind=kind, problem_type=problem_type,
                       settings=settings, dataset_uri=dataset_uri, dataset_sha256=dataset_sha256,
                       prefix=baseline_prefix(baseline_id), exact=exact, row_count=rows, feature_count=features,
                       created_by=actor.name, created_at=utcnow())
        session.add(row)
        session.flush()
        art, _ = lineage.ensure_artifact(session, artifact_type="Baseline", uri=store.uri(f"{row.prefix}/{document}"),
                                         name=row.name or row.id, actor=actor.name, properties={"baseline_id": row.id})
        sources = list(upstream(session))
        if row.dataset_uri:
            data, _ = lineage.ensure_artifact(session, artifact_type="Dataset", uri=row.dataset_uri, actor=actor.name)
            sources.insert(0, data)
        lineage.chain(session, [(src, art, "ContributedTo") for src in sources], actor=actor.name)
        audit.record(session, actor=actor.name, action=action, subject_type="baseline", subject_id=baseline_id,
                     after=summary)
        return row

    return FinishedBaseline(baseline_id, record)


def get_baseline(session: Session, baseline_id: str) -> Baseline:
    row = session.get(Baseline, baseline_id)
    if row is None:
        raise BaselineNotFound(baseline_id)
    return row


def list_baselines(session: Session, limit: int, offset: int) -> tuple[list[Baseline], int]:
    return paginate(session, select(Baseline), Baseline.created_at.desc(), Baseline.id, limit=limit, offset=offset)


def baseline_file(session: Session, store: ObjectStore, baseline_id: str, name: str) -> bytes:
    row = get_baseline(session, baseline_id)
    return store.get_named(row.prefix, name, f"{row.kind} baseline {baseline_id}")


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
    _mine(session, row, actor, "change its constraints")
    new = documents.validate_constraints(inputs.loads(body, "constraints.json"), row.kind)
    raw_old = store.get(f"{row.prefix}/constraints.json")
    old = json.loads(raw_old)
    if row.kind == "DataQuality":
        _same_columns(old, new)
    written = layout.dumps(new)
    if written == raw_old:   # a repeated PUT: nothing changes, nothing to keep or audit
        return dict(new)
    kept = _keep_replaced(store, row, "constraints.json", raw_old)
    store.put(f"{row.prefix}/constraints.json", written, "application/json")
    audit.record(session, actor=actor.name, action="baseline.constraints_updated", subject_type="baseline",
                 subject_id=row.id, before={"monitoring_config": old.get("monitoring_config"), **kept},
                 after={"monitoring_config": new.get("monitoring_config"),
                        "sha256": hashlib.sha256(written).hexdigest()})
    return dict(new)


def _mine(session: Session, row: Baseline, actor: Principal, verb: str) -> None:
    """A baseline's thresholds and suites judge every schedule and analysis that uses it: its creator's (by owner)
    or an admin's to change, as the schedules themselves (one team cannot quietly loosen another's monitoring)."""
    auth.require_creator(session, row.created_by, actor, f"baseline {row.id}", verb)


def _keep_replaced(store: ObjectStore, row: Baseline, name: str, data: bytes) -> dict[str, str]:
    """The document a change replaces, kept beside the baseline under a new key; the audit event holds its key and
    SHA-256, so the chain vouches for the thresholds that judged earlier runs (only the summary was kept)."""
    key = f"{row.prefix}/replaced/{new_id()}-{name}"
    store.put(key, data, "application/json")
    return {"object_key": key, "sha256": hashlib.sha256(data).hexdigest()}


def _same_columns(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Edited data-quality constraints name the baseline's columns (a renamed or invented one would leave the
    real column unchecked and check one that never arrives) and keep thresholds >= 0."""
    known = [f.get("name") for f in old.get("features") or [] if isinstance(f, dict)]
    unknown = [f.get("name") for f in new.get("features") or [] if isinstance(f, dict) and f.get("name") not in known]
    if unknown:
        raise Invalid(f"constraints.json names {', '.join(repr(n) for n in unknown[:10])}, which the baseline has no "
                      f"column of (its columns: {', '.join(repr(n) for n in known[:20])})",
                      fix="edit the constraints of the baseline's own columns (GET …/constraints.json first)")
    dist = ((new.get("monitoring_config") or {}).get("distribution_constraints") or {})
    for key in ("comparison_threshold", "categorical_comparison_threshold"):
        value = dist.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise Invalid(f"monitoring_config.distribution_constraints.{key} is {value}; a distance threshold is "
                          ">= 0 (every distance would exceed a negative one)", fix="use a threshold such as 0.1")


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
    _mine(session, row, actor, "attach expectations to it")
    suite = _document(body, "the ExpectationSuite", "expectations", ("type", "expectation_type"),
                      'e.g. {"name": "s", "expectations": [{"type": "expect_column_to_exist", '
                      '"kwargs": {"column": "age"}}]}')
    if not isinstance(suite.get("name", ""), str):
        raise Invalid("the ExpectationSuite's name must be a string", fix='e.g. "name": "churn-inputs"')
    written = layout.dumps(suite)
    try:
        raw_old = store.get(f"{row.prefix}/expectations.json")
    except NotFound:
        kept = None
    else:
        if raw_old == written:   # a repeated PUT: nothing changes, nothing to keep or audit
            return dict(suite)
        kept = _keep_replaced(store, row, "expectations.json", raw_old)
    store.put(f"{row.prefix}/expectations.json", written, "application/json")
    audit.record(session, actor=actor.name, action="baseline.expectations_attached", subject_type="baseline",
                 subject_id=row.id, before=kept, after={"suite": suite.get("name"), "expectations":
                                                        len(suite["expectations"]),
                                                        "sha256": hashlib.sha256(written).hexdigest()})
    return dict(suite)


def attach_baseline(session: Session, store: ObjectStore, group: str, version: int, baseline_id: str,
                    actor: Principal) -> VersionBaseline:
    g, v = registry.get_version(session, group, version)
    registry.may_edit_version(session, g, v, actor, "drift baseline")   # approvers read it as evidence
    row = get_baseline(session, baseline_id)
    if row.kind != "DataQuality":
        raise Invalid(f"baseline {row.id} is a {row.kind} baseline; a version's drift baseline is a DataQuality one",
                      fix="attach a DataQuality baseline (POST /api/v1/baselines with the training data)")
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
    base_art, _ = lineage.ensure_artifact(session, artifact_type="Baseline",
                                          uri=store.uri(f"{row.prefix}/statistics.json"),
                                          name=row.name or row.id, actor=actor.name)
    model = registry.version_entity(session, g, v, actor.name)
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
