"""Monitor's side of a model version in registry's compliance report: the alerts its endpoints raised, the
monitoring runs on them (per endpoint and kind), and the drift baselines attached to it over time (from the audit
log: the link row keeps only the newest).

Registry cannot import monitor (monitor calls registry), so ``register()`` hands ``version_facts`` to registry at
composition (``mlgov.app``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from monitor.orm import Alert, Analysis, Endpoint, Schedule
from registry import service as registry


def _alerts(session: Session, group: str, version: int, lo: dt.datetime, hi: dt.datetime) -> list[dict[str, Any]]:
    """Alerts open at some time in [lo, hi): opened before its end, not resolved before its start."""
    rows = session.execute(
        select(Alert, Schedule.name, Schedule.endpoint).join(Schedule, Schedule.id == Alert.schedule_id)
        .where(Alert.model_group == group, Alert.model_version == version, Alert.opened_at < hi,
               or_(Alert.resolved_at.is_(None), Alert.resolved_at >= lo))
        .order_by(Alert.opened_at, Alert.id))
    return [{"id": a.id, "check": a.check, "status": a.status, "schedule": schedule, "endpoint": endpoint,
             "opened_at": a.opened_at.isoformat(), "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
             "occurrences": a.occurrences,
             "subjects": [a.subject] if a.subject else _subjects(a.details)} for a, schedule, endpoint in rows]


def _subjects(details: list[dict[str, object]] | None) -> list[str]:
    """What an alert opened before 0013 (one per check, not per subject) was about: every violation's subject."""
    return sorted({str(d.get("feature_name") or d.get("metric_name") or "") for d in details or []} - {""})


def _monitoring(session: Session, group: str, version: int, lo: dt.datetime, hi: dt.datetime
                ) -> list[dict[str, Any]]:
    """Per endpoint serving the version and monitoring kind: runs in the window, how many breached or failed,
    and the newest run."""
    endpoints = select(Endpoint.name).where(Endpoint.model_group == group, Endpoint.model_version == version)
    in_window = (Analysis.endpoint.in_(endpoints), Analysis.created_at >= lo, Analysis.created_at < hi)
    counts = session.execute(
        select(Analysis.endpoint, Analysis.kind, func.count(),
               func.sum(case((Analysis.violation_count > 0, 1), else_=0)),
               func.sum(case((Analysis.status == "Failed", 1), else_=0)))
        .where(*in_window).group_by(Analysis.endpoint, Analysis.kind).order_by(Analysis.endpoint, Analysis.kind))
    out = []
    for endpoint, kind, runs, breached, failed in counts:
        last = session.scalars(select(Analysis).where(*in_window, Analysis.endpoint == endpoint, Analysis.kind == kind)
                               .order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(1)).one()
        out.append({"endpoint": endpoint, "kind": kind, "runs": runs, "with_violations": int(breached or 0),
                    "failed": int(failed or 0),
                    "last": {"analysis_id": last.id, "status": last.status, "violations": last.violation_count,
                             "at": last.created_at.isoformat(),
                             "window_end": last.window_end.isoformat() if last.window_end else None}})
    return out


def version_facts(session: Session, group: str, version: int, lo: dt.datetime, hi: dt.datetime
                  ) -> dict[str, list[dict[str, Any]]]:
    return {"alerts": _alerts(session, group, version, lo, hi),
            "monitoring": _monitoring(session, group, version, lo, hi),
            "attachments": registry.audited_attachments(session, group, version, "version.drift_baseline_attached",
                                                        "drift baseline", "baseline_id", replaces=True)}


def register() -> None:
    registry.add_version_facts("monitor", version_facts)
