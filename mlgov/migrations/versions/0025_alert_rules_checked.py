"""Schedules' alert rules brought to the shape writes now check (SageMaker's M-of-N)

Revision ID: 0025_alert_rules_checked
Revises: 0024_versions_by_update

Until the schedule API checked `alerting` (`monitor.schemas.Alerting`), a PATCH could store any JSON there, and
one malformed rule (``{"datapoints": "many"}``) made ListMonitoringAlerts answer 500 for every caller. Each rule is
kept only if it is a valid M-of-N rule (whole numbers, 1 <= datapoints <= period <= 1000), which is what the rule
reader assumes; the others are dropped (the check then alerts on the latest run, the default), and logged.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0025_alert_rules_checked'
down_revision = '0024_versions_by_update'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

SCHEDULES = sa.table('monitor_schedules', sa.column('name', sa.String), sa.column('alerting', sa.JSON))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000


def _valid(rule: Any) -> bool:
    return (isinstance(rule, dict) and _whole(rule.get("datapoints")) and _whole(rule.get("period"))
            and rule["datapoints"] <= rule["period"] and isinstance(rule.get("updated_at", ""), str)
            and set(rule) <= {"datapoints", "period", "updated_at"})


def checked(alerting: Any) -> Any:
    """``alerting`` with only its valid rules (None when it was not an object)."""
    if alerting is None:
        return None
    rules = alerting.get("rules") if isinstance(alerting, dict) else None
    return {"rules": {check: rule for check, rule in (rules.items() if isinstance(rules, dict) else ())
                      if isinstance(check, str) and _valid(rule)}} if isinstance(alerting, dict) else None


def upgrade() -> None:
    conn = op.get_bind()
    for name, alerting in conn.execute(sa.select(SCHEDULES.c.name, SCHEDULES.c.alerting)
                                       .where(SCHEDULES.c.alerting.is_not(None))).all():
        fixed = checked(alerting)
        if fixed != alerting:
            log.warning("schedule %s: alerting %r kept as %r (malformed rules dropped)", name, alerting, fixed)
            conn.execute(SCHEDULES.update().where(SCHEDULES.c.name == name).values(alerting=fixed))


def downgrade() -> None:
    """Nothing to undo: the rules dropped could not be read."""
