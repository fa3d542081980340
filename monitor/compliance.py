"""Monitor's side of a model version in registry's compliance report: the alerts its endpoints raised, the
monitoring runs on them (per endpoint and kind), and the drift baselines attached to it over time (from the audit
log: the link row keeps only the newest).

Registry cannot import monitor (monitor calls registry), so ``register()`` hands ``version_facts`` to registry at
composition (``mlgov.app``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from monitor.orm import Alert, Analysis, Endpoint, Schedule
from registry import service as registry
from registry.service import VersionKey


def _alerts(session: Session, versions: Sequence[VersionKey], lo: dt.datetime, hi: dt.datetime
            ) -> dict[VersionKey, list[dict[str, Any]]]:
    """Alerts open at some time in [lo, hi): opened before its end, not resolved before its start."""
    out: dict[VersionKey, list[dict[str, Any]]] = {key: [] for key in versions}
    rows = session.execute(
        select(Alert, Schedule.name, Schedule.endpoint).join(Schedule, Schedule.id == Alert.schedule_id)
        .where(Alert.model_group.in_({g for g, _ in versions}), Alert.model_version.in_({n for _, n in versions}),
               Alert.opened_at < hi, or_(Alert.resolved_at.is_(None), Alert.resolved_at >= lo))
        .order_by(Alert.opened_at, Alert.id))
    for a, schedule, endpoint in rows:
        key = (a.model_group or "", a.model_version or 0)
        if key in out:
            out[key].append({
                "id": a.id, "check": a.check, "status": a.status, "schedule": schedule, "endpoint": endpoint,
                "opened_at": a.opened_at.isoformat(),
                "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None, "occurrences": a.occurrences,
                "subjects": [a.subject] if a.subject else _subjects(a.details)})
    return out


def _subjects(details: list[dict[str, object]] | None) -> list[str]:
    """What an alert opened before 0013 (one per check, not per subject) was about: every violation's subject."""
    return sorted({str(d.get("feature_name") or d.get("metric_name") or "") for d in details or []} - {""})


def _monitoring(session: Session, versions: Sequence[VersionKey], lo: dt.datetime, hi: dt.datetime
                ) -> dict[VersionKey, list[dict[str, Any]]]:
    """Per endpoint serving each version and monitoring kind: runs in the window, how many breached or failed,
    and the newest run (two queries for all the versions: counts grouped, the newest by a window function)."""
    out: dict[VersionKey, list[dict[str, Any]]] = {key: [] for key in versions}
    serving = {name: (g, n) for name, g, n in session.execute(
        select(Endpoint.name, Endpoint.model_group, Endpoint.model_version)
        .where(Endpoint.model_group.in_({g for g, _ in versions}),
               Endpoint.model_version.in_({n for _, n in versions}))) if (g, n) in out}
    if not serving:
        return out
    in_window = (Analysis.endpoint.in_(list(serving)), Analysis.created_at >= lo, Analysis.created_at < hi)
    counts = session.execute(
        select(Analysis.endpoint, Analysis.kind, func.count(),
               func.sum(case((Analysis.violation_count > 0, 1), else_=0)),
               func.sum(case((Analysis.status == "Failed", 1), else_=0)))
        .where(*in_window).group_by(Analysis.endpoint, Analysis.kind).order_by(Analysis.endpoint, Analysis.kind))
    rank = func.row_number().over(partition_by=(Analysis.endpoint, Analysis.kind),
                                  order_by=(Analysis.created_at.desc(), Analysis.id.desc())).label("rank")
    ranked = select(Analysis.id, rank).where(*in_window).subquery()
    newest = {(a.endpoint, a.kind): a for a in session.scalars(
        select(Analysis).join(ranked, ranked.c.id == Analysis.id).where(ranked.c.rank == 1))}
    for endpoint, kind, runs, breached, failed in counts:
        last = newest[(endpoint, kind)]
        out[serving[endpoint]].append({
            "endpoint": endpoint, "kind": kind, "runs": runs, "with_violations": int(breached or 0),
            "failed": int(failed or 0),
            "last": {"analysis_id": last.id, "status": last.status, "violations": last.violation_count,
                     "at": last.created_at.isoformat(),
                     "window_end": last.window_end.isoformat() if last.window_end else None}})
    return out


def version_facts(session: Session, versions: Sequence[VersionKey], lo: dt.datetime, hi: dt.datetime
                  ) -> dict[VersionKey, dict[str, list[dict[str, Any]]]]:
    alerts, monitoring = _alerts(session, versions, lo, hi), _monitoring(session, versions, lo, hi)
    attached = registry.audited_attachments(session, versions, "version.drift_baseline_attached", "drift baseline",
                                            "baseline_id", replaces=True)
    return {key: {"alerts": alerts[key], "monitoring": monitoring[key], "attachments": attached[key]}
            for key in versions}


def register() -> None:
    registry.add_version_facts("monitor", version_facts)
