"""Schedule expressions, ISO-8601 window offsets and the missed-run policy (pure)."""

from __future__ import annotations

import datetime as dt
import re

from apscheduler.triggers.cron import CronTrigger

ALIASES = {"hourly": "0 * * * *", "daily": "0 0 * * *"}
_DURATION = re.compile(r"^(?P<sign>[-+])?P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


class RuleError(ValueError):
    pass


def trigger(expression: str) -> CronTrigger:
    """A 5-field cron expression (minute resolution), or `hourly` / `daily`; always UTC."""
    expr = ALIASES.get(expression.strip().lower(), expression.strip())
    if len(expr.split()) != 5:
        raise RuleError(f"schedule {expression!r} is not a 5-field cron expression, 'hourly' or 'daily'")
    try:
        return CronTrigger.from_crontab(expr, timezone=dt.UTC)
    except ValueError as exc:
        raise RuleError(f"schedule {expression!r} is not a valid cron expression: {exc}") from None


def duration(text: str) -> dt.timedelta:
    """ISO-8601 durations as SageMaker uses them for window offsets: -PT1H, -P8D, -P1DT12H …"""
    m = _DURATION.match(text.strip())
    if not m or text.strip().lstrip("+-") in ("P", "PT"):
        raise RuleError(f"{text!r} is not an ISO-8601 duration such as -PT1H or -P8D")
    delta = dt.timedelta(days=int(m["d"] or 0), hours=int(m["h"] or 0), minutes=int(m["m"] or 0),
                         seconds=int(m["s"] or 0))
    return -delta if m["sign"] == "-" else delta


def next_after(expression: str, t: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``t``."""
    fire: dt.datetime | None = trigger(expression).get_next_fire_time(None, t + dt.timedelta(seconds=1))
    if fire is None:
        raise RuleError(f"schedule {expression!r} never fires again")
    return fire.astimezone(dt.UTC)


def due(expression: str, next_run: dt.datetime, now: dt.datetime, grace: dt.timedelta) -> tuple[dt.datetime | None,
                                                                                                 dt.datetime, int]:
    """Missed-run policy: of the fire times in [next_run, now], run only the newest (coalesce), and only if it
    is within ``grace`` of now; return (fire time to run or None, the next fire time after now, skipped)."""
    if next_run > now:
        return None, next_run, 0
    fires = [next_run]
    while True:
        nxt = next_after(expression, fires[-1])
        if nxt > now:
            break
        fires.append(nxt)
        if len(fires) > 100_000:
            break
    newest = fires[-1]
    run = newest if now - newest <= grace else None
    return run, next_after(expression, now), len(fires) - (1 if run else 0)
