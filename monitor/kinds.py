"""The registry of monitor kinds: what a monitoring type needs so baselines, schedules, executions, alerts and
retraining work the same way for every one of them.

A kind says how to build its baseline from a ``POST /baselines`` form, how to run a captured window against that
baseline (an analysis, recorded by the caller, whose ``constraint_violations.json`` holds SageMaker-shaped
violations, each naming its ``constraint_check_type``), which checks its violations carry, what each violation is
about (its subject: alerts open one per schedule, subject and check), and whether a baseline fits an endpoint (the
columns it reads are captured there), so a schedule that could never run is refused when it is created, not on
every run.

A kind also says how its analyses read as a report: ``report`` adds the kind's stored results to what every report
shows (status, window, violations), and ``render`` turns that into the HTML page, which extends monitor's layout
``analysis_base.html`` (``monitor.report.TEMPLATES``). So a kind from another domain renders its own report without
monitor knowing its templates.

Monitor registers its own two kinds here (``DataQuality``, ``ModelQuality``). Other domains register theirs at
composition time (``mlgov.app``, ``mlgov.cli``): Clarify adds ``ModelBias`` and ``ModelExplainability`` through
``clarify.kinds.register()``, so monitor never imports Clarify.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from mlgov.auth import Principal
from mlgov.errors import Invalid, NotFound
from mlgov.storage import ObjectStore
from monitor import report as reports
from monitor import service
from monitor.capture import CaptureSchema
from monitor.service import Analysis, Baseline, Finished, FinishedBaseline

# A POST /baselines form as ``mlgov.api.form_parts`` reads it: text parts as str, files as (bytes, filename);
# a JSON body's fields as sent.
Form = Mapping[str, Any]
Violation = Mapping[str, Any]


class Point(NamedTuple):
    """One number of an analysis for trend charts."""

    series: str
    value: float | None
    threshold: float | None = None   # what the value is judged against (drawn as a dashed line)
    chart: str = ""                  # the chart it is drawn on, beside other series; "" = a chart of its own
    breached: bool = False           # the run judged it beyond its threshold (the direction is the kind's to know)


class Line(NamedTuple):
    """What a kind's trend charts draw as the dashed line (a Point's ``threshold``) and how they name a breach."""

    label: str = "threshold"
    beyond: str = "beyond threshold"          # the red series' suffix
    judged: str = "beyond the threshold"      # "Points filled red were judged ..."
    note: str = ("the dashed line is the threshold each value is judged against (for p-value tests drift is below "
                 "it)")


THRESHOLD = Line()

BOUNDS = ("allowed low", "allowed high")
"""Suffixes of the series that bound another on its chart, where a kind judges against a range, not a threshold
(drawn dashed like the threshold)."""


def feature_or_metric(violation: Violation) -> str:
    """The subject of a SageMaker violation: its feature (data quality) or its metric (model quality)."""
    return str(violation.get("feature_name") or violation.get("metric_name") or "")[:256]


@dataclass(frozen=True)
class Window:
    """One run of a monitor: the baseline to judge against and the endpoint's captured window [start, end)."""

    baseline_id: str
    endpoint: str
    start: dt.datetime
    end: dt.datetime
    drift: Mapping[str, Any] | None = None   # the schedule's DriftSettings (data quality)


@dataclass(frozen=True)
class MonitorKind:
    name: str
    create_baseline: Callable[[Session, ObjectStore, Form, str | None, Principal], FinishedBaseline]
    """A baseline of this kind from the form's parts (``name`` already read), computed on a session it only reads;
    the caller records it. Raises Invalid naming what is missing."""
    run_window: Callable[[Session, ObjectStore, Window, Principal], Finished]
    """The analysis of a captured window, computed on a session it only reads (a run may take minutes and must not
    hold the write turn); the caller records it (`Finished.record`). A window without data is a Failed analysis,
    not an error."""
    checks: tuple[str, ...]
    """The ``constraint_check_type`` values this kind's violations carry (data quality: per feature); the OpenAPI
    document lists them for an alert's ``check`` (``monitor.schemas.AlertRead``)."""
    report: Callable[[Session, ObjectStore, Analysis], dict[str, Any]] = lambda session, store, row: {}
    """The kind's own part of a completed analysis's report (its stored results, the baseline's beside them)."""
    render: Callable[[Mapping[str, Any]], str] = reports.generic
    """The HTML report from the whole report (``analysis_report``); autoescaped Jinja extending analysis_base.html."""
    subject: Callable[[Violation], str] = feature_or_metric
    """What a violation is about; alerts are keyed by (schedule, subject, check)."""
    fits_endpoint: Callable[[Baseline, str, CaptureSchema], None] | None = None
    """Raise Invalid (naming the columns on both sides and the fix) unless a run of the baseline on the endpoint
    (name, capture schema) finds every column the baseline reads; None: any endpoint fits."""
    points: Callable[[Mapping[str, Any]], list[Point]] = lambda report: []
    """The numbers of a completed analysis worth charting over time (drift statistic per feature, metric per name),
    each with the threshold it is judged against, from the report's parts named in ``charted``: the console's
    trend charts read them (`series`)."""
    charted: tuple[tuple[str, str], ...] = ()
    """The parts of the report ``points`` reads: (report key, file) in the analysis's folder; a missing file is None."""
    charted_baseline: tuple[tuple[str, str], ...] = ()
    """Likewise, files of the analysis's baseline, for a part the analysis's own folder lacks (read once per baseline
    by `series`, not once per analysis): a run from before runs kept their own copy."""
    line: Line = THRESHOLD
    """What the dashed line of its trend charts stands for."""


_KINDS: dict[str, MonitorKind] = {}


def register(kind: MonitorKind) -> None:
    """Add (or replace, by name: composing twice is harmless) a kind."""
    _KINDS[kind.name] = kind


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def listed(quote: Callable[[str], str] = str) -> str:
    """The registered kinds as a sentence: ``DataQuality, ModelQuality or ModelBias``."""
    known = [quote(n) for n in names()]
    return f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else "".join(known)


def get(name: str) -> MonitorKind:
    kind = _KINDS.get(name)
    if kind is None:
        raise Invalid(f"monitoring type {name!r} is not {listed()}", fix="omit type for a data-quality monitor")
    return kind


def _document(store: ObjectStore, key: str) -> Any:
    try:
        return json.loads(store.get(key))
    except NotFound:
        return None


def series(session: Session, store: ObjectStore, rows: Sequence[Analysis]) -> list[list[Point]]:
    """Each analysis's charted numbers (its kind's ``points``; none for a failed run or a kind no longer registered),
    reading only the files they come from, and each baseline's once: a trend chart of 60 runs reads 60 small
    files, not 60 whole reports with 60 copies of the baseline's statistics."""
    baselines: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[list[Point]] = []
    for row in rows:
        kind = _KINDS.get(row.kind)
        if kind is None or row.status == "Failed":
            out.append([])
            continue
        report = {k: _document(store, f"{row.prefix}/{f}") for k, f in kind.charted}
        wanted = [(k, f) for k, f in kind.charted_baseline if report.get(k) is None]
        if wanted and (kind.name, row.baseline_id) not in baselines:
            prefix = service.get_baseline(session, row.baseline_id).prefix
            baselines[(kind.name, row.baseline_id)] = {k: _document(store, f"{prefix}/{f}")
                                                       for k, f in kind.charted_baseline}
        out.append(kind.points({**report, **{k: baselines[(kind.name, row.baseline_id)][k] for k, _ in wanted}}))
    return out


def analysis_report(session: Session, store: ObjectStore, analysis_id: str) -> dict[str, Any]:
    """The report of an analysis of any kind: what every report shows, and its kind's results unless it failed."""
    row = service.get_analysis(session, analysis_id)
    out = service.analysis_summary(session, store, row)
    kind = _KINDS.get(row.kind)
    if kind is not None and row.status != "Failed":
        out.update(kind.report(session, store, row))
    return out


def analysis_html(session: Session, store: ObjectStore, analysis_id: str,
                  trail: Sequence[tuple[str, str]] = ()) -> str:
    """The readable report, drawn by the analysis's kind (a kind no longer registered: the common part only).
    ``trail`` (label, href) pairs head it as breadcrumbs when a page of the console shows it, and it is then the
    report's part only, for the console's layout; the API's report is a standalone document without them."""
    rep = analysis_report(session, store, analysis_id)
    if trail:
        rep["trail"] = list(trail)
    kind = _KINDS.get(rep["kind"])
    return kind.render(rep) if kind is not None else reports.generic(rep)


# --- form parts -------------------------------------------------------------------------------------------------

def file_part(form: Form, key: str) -> tuple[bytes, str | None] | None:
    """An uploaded part as (bytes, filename), None if absent; a text value where a file belongs is 422."""
    v = form.get(key)
    if v is None:
        return None
    if isinstance(v, tuple):
        return v
    raise Invalid(f"form field {key!r} must be a file upload", fix=f"send {key} as a file part")


def table_format(filename: str | None, explicit: str | None) -> str | None:
    if explicit:
        if explicit not in ("csv", "parquet"):
            raise Invalid(f"format {explicit!r} is not csv or parquet", fix="use format=csv or format=parquet")
        return explicit
    if filename and filename.lower().endswith((".parquet", ".pq")):
        return "parquet"
    return None


def flag(form: Form, key: str, default: bool) -> bool:
    v = form.get(key)
    if v is None:
        return default
    if str(v).lower() in ("true", "1", "yes"):
        return True
    if str(v).lower() in ("false", "0", "no"):
        return False
    raise Invalid(f"form field {key!r} must be true or false", fix=f"send {key}=true or {key}=false")


def require_columns(base: Baseline, endpoint: str, schema: CaptureSchema, reads: Mapping[str, str]) -> None:
    """422 unless the endpoint captures every column the baseline reads (``reads``: role → column, e.g.
    ``{"probability": "prob"}``); the error names the columns on both sides and the endpoint's column for each
    role it has."""
    outputs = {role: o.name for role, o in (("prediction", schema.prediction), ("probability", schema.probability))
               if o is not None}
    features = [f.name for f in schema.features]
    missing = {role: col for role, col in reads.items() if col not in features and col not in outputs.values()}
    if not missing:
        return
    said = ", ".join(f"{role}={col!r}" for role, col in list(reads.items())[:20]) + \
        (f" … ({len(reads)} columns in all)" if len(reads) > 20 else "")
    has = ", ".join(f"{role}={col!r}" for role, col in outputs.items()) or "no prediction or probability"
    shown = ", ".join(features[:20]) + (f" … ({len(features)} in all)" if len(features) > 20 else "")
    renames = [f"{role}={outputs[role]}" for role in missing if role in outputs]
    rebuild = f"rebuild the {base.kind} baseline with {', '.join(renames)}" if renames else \
        f"rebuild the {base.kind} baseline from columns the endpoint captures"
    raise Invalid(
        f"{base.kind} baseline {base.id} reads {said}, but endpoint {endpoint!r} captures no column "
        f"{', '.join(repr(c) for c in missing.values())} (its outputs: {has}; its features: {shown})",
        fix=f"{rebuild}, or name those columns {', '.join(repr(c) for c in missing.values())} in the endpoint's "
            "schema; then use that baseline (PATCH the schedule's baseline_id)",
        baseline_columns=dict(reads), endpoint_columns={**outputs, "features": features})


# --- monitor's own kinds ----------------------------------------------------------------------------------------

def _data_quality_baseline(session: Session, store: ObjectStore, form: Form, name: str | None,
                           actor: Principal) -> FinishedBaseline:
    """A file or a ``dataset_uri`` → computed baseline; SageMaker ``statistics`` + ``constraints`` → imported."""
    up, stats, constr = file_part(form, "file"), file_part(form, "statistics"), file_part(form, "constraints")
    if stats or constr:
        if not (stats and constr):
            raise Invalid("an imported baseline needs both `statistics` and `constraints` files",
                          fix="send statistics.json and constraints.json together")
        return service.import_baseline(session, store, statistics=stats[0], constraints=constr[0], name=name,
                                       actor=actor)
    uri = form.get("dataset_uri")
    if up is None and not uri:
        raise Invalid("no dataset given", fix="send a `file` part, `statistics`+`constraints` parts, or `dataset_uri`")
    if up is not None and uri:   # the baseline said it came from the URI, unchecked, while the file made it
        raise Invalid("both a `file` and a `dataset_uri` were given", fix="send one: the file, or the dataset's key "
                      "in the object store")
    data, filename = up if up else (service.read_dataset_uri(store, str(uri)), str(uri))
    return service.create_baseline(session, store, data=data, fmt=table_format(filename, form.get("format")),
                                   header=flag(form, "header", True), name=name,
                                   dataset_uri=str(uri) if uri else None, actor=actor)


def _model_quality_baseline(session: Session, store: ObjectStore, form: Form, name: str | None,
                            actor: Principal) -> FinishedBaseline:
    up = file_part(form, "file")
    if up is None:
        raise Invalid("a ModelQuality baseline needs a `file` with labels and predictions",
                      fix="upload the validation set (CSV with header or Parquet)")
    try:
        threshold = float(form.get("threshold", 0.5))
    except ValueError:
        raise Invalid("threshold must be a number", fix="e.g. threshold=0.5") from None
    return service.create_quality_baseline(
        session, store, data=up[0], fmt=table_format(up[1], form.get("format")), header=flag(form, "header", True),
        problem_type=str(form.get("problem_type", "")), label=str(form.get("label", "label")),
        prediction=form.get("prediction") or None, probability=form.get("probability") or None,
        threshold=threshold, name=name, actor=actor, class_probabilities=_class_probabilities(form),
        features=_names(form, "features"))


def _names(form: Form, key: str) -> list[str] | None:
    """A comma-separated list of column names (``features=age,income``)."""
    raw = form.get(key)
    if raw is None or raw == "":
        return None
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    if not names or len(names) > 2000 or any(len(n) > 256 for n in names):
        raise Invalid(f"form field {key!r} must list 1 to 2000 column names, comma-separated",
                      fix=f"e.g. {key}=age,income")
    return names


def _class_probabilities(form: Form) -> dict[str, str] | None:
    """``class_probabilities=cat:p_cat,dog:p_dog``: each class's probability column (multiclass estimates)."""
    pairs = _names(form, "class_probabilities")
    if pairs is None:
        return None
    if any(":" not in p for p in pairs):
        raise Invalid("class_probabilities must be class:column pairs, comma-separated",
                      fix="e.g. class_probabilities=cat:p_cat,dog:p_dog")
    out: dict[str, str] = {}
    for p in pairs:
        cls, col = p.rsplit(":", 1)
        out[cls] = col
    if len(out) < 2 or len(set(out.values())) != len(out):
        raise Invalid("class_probabilities needs at least two classes, each with its own column",
                      fix="e.g. class_probabilities=cat:p_cat,dog:p_dog")
    return out


def _model_quality_fits(base: Baseline, endpoint: str, schema: CaptureSchema) -> None:
    """Every output column the baseline was built from must be captured under that name (labels come from the
    endpoint's ground truth, not its capture)."""
    settings = base.settings or {}
    reads = {role: str(settings[role]) for role in ("prediction", "probability") if settings.get(role)}
    reads.update({f"probability of {c}": col for c, col in (settings.get("class_probabilities") or {}).items()})
    reads.update({f"feature {f}": f for f in settings.get("features") or []})
    require_columns(base, endpoint, schema, reads)


def _data_quality_fits(base: Baseline, endpoint: str, schema: CaptureSchema) -> None:
    """The endpoint captures at least one of the baseline's columns. Only some is fine (a training set holds the
    label, which capture does not: each run reports what is missing, as SageMaker's missing_column_check), none
    is a baseline of another model. Baselines from before their columns were recorded are not checked."""
    columns = (base.settings or {}).get("columns")
    if not columns:
        return
    captured = [f.name for f in schema.features] + [o.name for o in schema.output_columns()]
    if set(columns) & set(captured):
        return
    shown = ", ".join(repr(c) for c in columns[:20]) + (f" … ({len(columns)} in all)" if len(columns) > 20 else "")
    raise Invalid(f"DataQuality baseline {base.id} has the columns {shown}, and endpoint {endpoint!r} captures none "
                  f"of them (it captures {', '.join(repr(c) for c in captured[:20])})",
                  fix="use a baseline built from this endpoint's features (POST /api/v1/baselines with data in "
                      "its columns), or fix the endpoint's schema names",
                  baseline_columns=columns[:100], endpoint_columns=captured[:100])


def _data_quality_window(session: Session, store: ObjectStore, w: Window, actor: Principal) -> Finished:
    return service.analyze_window(session, store, baseline_id=w.baseline_id, endpoint=w.endpoint, start=w.start,
                                  end=w.end, config=service.drift_config(w.drift), actor=actor)


def _model_quality_window(session: Session, store: ObjectStore, w: Window, actor: Principal) -> Finished:
    return service.quality_window(session, store, baseline_id=w.baseline_id, endpoint=w.endpoint, start=w.start,
                                  end=w.end, actor=actor)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


NOT_JUDGED = " not judged"
"""The suffix of a drift series' points that were not judged (too few values to tell drift from sampling noise:
`small_sample`), drawn on the feature's chart apart from its judged ones: a value beyond the threshold in a run
that found no drift reads as a missed alert otherwise."""


def _drift_points(report: Mapping[str, Any]) -> list[Point]:
    """Each feature's drift statistic (distance or p-value, as its method gives) and the threshold it met."""
    out = []
    for f in (report.get("drift") or {}).get("features", []):
        name = f"{f['feature']} · {f['method']}"
        unjudged = bool(f.get("small_sample"))
        out.append(Point(name + (NOT_JUDGED if unjudged else ""), _number(f.get("statistic")),
                         _number(f.get("threshold")), name, bool(f.get("drifted")) and not unjudged))
    return out


def _quality_points(report: Mapping[str, Any]) -> list[Point]:
    """Each metric of SageMaker's model-quality statistics.json (realised, from labels) and of the window's label-free
    estimate with its band, on one chart per metric with the constraint's threshold when one is set."""
    stats, cons = report.get("statistics") or {}, report.get("constraints") or {}
    metrics = next((v for k, v in stats.items() if k.endswith("_metrics") and isinstance(v, dict)), {})
    limits = next((v for k, v in cons.items() if k.endswith("_constraints") and isinstance(v, dict)), {})

    def limit(name: str) -> float | None:
        return _number((limits.get(name) or {}).get("threshold"))

    # breached as the run judged it (its constraint_violations.json): an estimate is judged only while labels are
    # missing, and a later edit of the baseline's constraints must not recolour runs already judged
    found = {(str(v.get("metric_name")), str(v.get("constraint_check_type", "")).startswith("Estimated"))
             for v in (report.get("violations") or {}).get("violations") or [] if isinstance(v, dict)}

    points = [Point(name, _number(m.get("value")), limit(name), name, (name, False) in found)
              for name, m in metrics.items() if isinstance(m, dict) and _number(m.get("value")) is not None]
    estimate = report.get("estimate") or {}
    realised = service.constraint_names(estimate.get("problem_type"))
    for name, e in (estimate.get("estimated") or {}).items():
        if isinstance(e, dict) and _number(e.get("estimate")) is not None:
            metric = realised.get(name, name)   # drawn on the realised metric's chart, judged by its threshold
            points += [Point(f"{metric} estimated", _number(e.get("estimate")), limit(metric), metric,
                             (metric, True) in found),
                       Point(f"{metric} band lower", _number(e.get("lower")), None, metric),
                       Point(f"{metric} band upper", _number(e.get("upper")), None, metric)]
    return points


register(MonitorKind(
    name="DataQuality", create_baseline=_data_quality_baseline, run_window=_data_quality_window,
    checks=("data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
            "extra_column_check", "categorical_values_check"),
    report=service.data_quality_report, render=reports.data_quality, points=_drift_points,
    fits_endpoint=_data_quality_fits, charted=(("drift", "drift.json"),)))
register(MonitorKind(
    name="ModelQuality", create_baseline=_model_quality_baseline, run_window=_model_quality_window,
    checks=("LessThanThreshold", "GreaterThanThreshold", "EstimatedLessThanThreshold",
            "EstimatedGreaterThanThreshold"), report=service.quality_report, render=reports.model_quality,
    fits_endpoint=_model_quality_fits, points=_quality_points,
    charted=(("statistics", "statistics.json"), ("estimate", "estimate.json"),
             ("violations", "constraint_violations.json"), ("constraints", service.RUN_CONSTRAINTS)),
    charted_baseline=(("constraints", "constraints.json"),)))
