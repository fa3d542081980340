"""Schedule expressions, ISO-8601 window offsets and the missed-run policy (pure).

Three spellings of a schedule, all UTC:

- five-field cron (minute resolution): ``*/5 * * * *``; ``hourly`` and ``daily`` as shorthands;
- SageMaker's ``ScheduleExpression``: ``cron(Minutes Hours Day-of-month Month Day-of-week Year)`` with ``?`` in
  one of the two day fields, days of the week numbered 1 (SUN) to 7 (SAT) or named, ``L`` (last day of the month,
  or ``6L``: last Friday) and ``#`` (``FRI#2``: second Friday); ``W`` is not supported;
- ``NOW``: run once, as soon as the scheduler sees it (SageMaker's one-time schedule).
"""

from __future__ import annotations

import datetime as dt
import re

from apscheduler.triggers.cron import CronTrigger

ALIASES = {"hourly": "0 * * * *", "daily": "0 0 * * *"}
ONCE = "now"
ONE_TIME_PERIOD = dt.timedelta(minutes=1)   # a one-time schedule is overdue a minute (the resolution) after it was due
_DURATION = re.compile(r"^(?P<sign>[-+])?P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")
_SAGEMAKER = re.compile(r"^cron\((?P<fields>[^()]*)\)$", re.IGNORECASE)
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")        # SageMaker/EventBridge numbering: 1 = SUN … 7 = SAT
_ORDINALS = {"1": "1st", "2": "2nd", "3": "3rd", "4": "4th", "5": "5th"}
FORMS = "5-field cron like '*/5 * * * *', hourly, daily, SageMaker's cron(0 * ? * * *), or NOW"


class RuleError(ValueError):
    pass


def is_once(expression: str) -> bool:
    return expression.strip().lower() == ONCE


def trigger(expression: str) -> CronTrigger:
    """The recurring trigger of a cron expression in any of the accepted spellings; RuleError saying what is wrong
    and what is accepted otherwise (``NOW`` has no recurring trigger: see :func:`first_run`)."""
    text = expression.strip()
    if is_once(text):
        raise RuleError("NOW is a one-time schedule, not a recurring one")
    sagemaker = _SAGEMAKER.match(text)
    if sagemaker:
        return _sagemaker_trigger(expression, sagemaker["fields"].split())
    if text.lower().startswith(("rate(", "at(")):
        raise RuleError(f"schedule {expression!r}: rate() and at() expressions are not SageMaker monitoring "
                        f"schedules; use {FORMS}")
    expr = ALIASES.get(text.lower(), text)
    if len(expr.split()) != 5:
        raise RuleError(f"schedule {expression!r} is not a {FORMS}")
    try:
        return CronTrigger.from_crontab(expr, timezone=dt.UTC)
    except ValueError as exc:
        raise RuleError(f"schedule {expression!r} is not a valid cron expression: {exc}") from None


def _sagemaker_trigger(expression: str, fields: list[str]) -> CronTrigger:
    if len(fields) != 6:
        raise RuleError(f"schedule {expression!r} has {len(fields)} fields; SageMaker's cron() has six: "
                        "Minutes Hours Day-of-month Month Day-of-week Year, e.g. cron(0 * ? * * *)")
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise RuleError(f"schedule {expression!r}: exactly one of Day-of-month and Day-of-week must be '?' "
                        "(e.g. cron(0 * ? * * *) or cron(0 9 1 * ? *))")
    if "W" in dom.upper():
        raise RuleError(f"schedule {expression!r}: the W (nearest weekday) wildcard is not supported; "
                        "name the days of the month instead")
    day, day_of_week = "*", "*"
    if dow == "?":
        day = "last" if dom.upper() == "L" else dom
    else:
        day, day_of_week = _day_of_week(expression, dow)
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month.lower(), day_of_week=day_of_week,
                           year=year, second=0, timezone=dt.UTC)
    except ValueError as exc:
        raise RuleError(f"schedule {expression!r} is not a valid SageMaker cron expression: {exc}") from None


def _day_of_week(expression: str, field: str) -> tuple[str, str]:
    """SageMaker's Day-of-week (1 = SUN) as APScheduler's (day, day_of_week): ``FRI#2`` and ``6L`` are positions
    within the month, so they go to APScheduler's day field."""
    up = field.upper()
    if m := re.fullmatch(r"(\w+)#([1-5])", up):
        return f"{_ORDINALS[m[2]]} {_day_name(expression, m[1])}", "*"
    if m := re.fullmatch(r"(\w+)L", up):
        return f"last {_day_name(expression, m[1])}", "*"
    if up == "*":
        return "*", "*"
    days: set[int] = set()
    for part in up.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            lo, hi = 1, 7
        elif "-" in rng:
            a, _, b = rng.partition("-")
            lo, hi = _day_number(expression, a), _day_number(expression, b)
        else:
            lo = _day_number(expression, rng)
            hi = 7 if step else lo
        if (step and not (step.isdigit() and int(step) > 0)) or hi < lo:
            raise RuleError(f"schedule {expression!r}: Day-of-week {field!r} is not a list of days 1-7 or SUN-SAT")
        days.update(range(lo, hi + 1, int(step or 1)))
    return "*", ",".join(_DAYS[d - 1] for d in sorted(days))


def _day_number(expression: str, token: str) -> int:
    if token.isdigit() and 1 <= int(token) <= 7:
        return int(token)
    if token.lower() in _DAYS:
        return _DAYS.index(token.lower()) + 1
    raise RuleError(f"schedule {expression!r}: {token!r} is not a day of the week (1-7 with 1 = SUN, or SUN-SAT)")


def _day_name(expression: str, token: str) -> str:
    return _DAYS[_day_number(expression, token) - 1]


def check(expression: str) -> None:
    """Raise RuleError unless the expression is accepted (and fires at least once more)."""
    if not is_once(expression):
        next_after(expression, dt.datetime.now(dt.UTC))


def duration(text: str) -> dt.timedelta:
    """ISO-8601 durations as SageMaker uses them for window offsets: -PT1H, -P8D, -P1DT12H …"""
    m = _DURATION.match(text.strip())
    if not m or text.strip().lstrip("+-") in ("P", "PT"):
        raise RuleError(f"{text!r} is not an ISO-8601 duration such as -PT1H or -P8D")
    try:
        delta = dt.timedelta(days=int(m["d"] or 0), hours=int(m["h"] or 0), minutes=int(m["m"] or 0),
                             seconds=int(m["s"] or 0))
    except (OverflowError, ValueError):
        raise RuleError(f"{text!r} reaches further than {MAX_OFFSET.days} days from the run's time") from None
    return -delta if m["sign"] == "-" else delta


def window_offset(text: str) -> dt.timedelta:
    """`duration`, for a window offset being set: at most MAX_OFFSET (offsets stored before the bound are still
    read as they are)."""
    delta = duration(text)
    if abs(delta) > MAX_OFFSET:
        raise RuleError(f"{text!r} reaches further than {MAX_OFFSET.days} days from the run's time")
    return delta


MAX_OFFSET = dt.timedelta(days=3660)
"""How far a window offset may reach (ten years): a run's window is computed from its fire time, and an offset
of 99,999,999 days made that computation overflow in the scheduler, which then never ran the schedule."""


def next_after(expression: str, t: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``t`` of a recurring expression."""
    fire: dt.datetime | None = trigger(expression).get_next_fire_time(None, t + dt.timedelta(seconds=1))
    if fire is None:
        raise RuleError(f"schedule {expression!r} never fires again")
    return fire.astimezone(dt.UTC)


def _next_or_none(expression: str, t: dt.datetime) -> dt.datetime | None:
    try:
        return next_after(expression, t)
    except RuleError:
        return None


def first_run(expression: str, now: dt.datetime) -> dt.datetime:
    """When a schedule created (or started) at ``now`` first runs: at once for NOW, else the next fire time."""
    return now if is_once(expression) else next_after(expression, now)


def period(expression: str, fire: dt.datetime) -> dt.timedelta:
    """The time from ``fire`` to the fire after it (a one-time schedule, or the last fire of a cron whose years
    are over: the scheduler's one-minute resolution)."""
    nxt = None if is_once(expression) else _next_or_none(expression, fire)
    return ONE_TIME_PERIOD if nxt is None else nxt - fire


def overdue(expression: str, next_run: dt.datetime, now: dt.datetime) -> bool:
    """Due more than one period ago and still not run: no scheduler is running it."""
    return now - next_run > period(expression, next_run)


def due(expression: str, next_run: dt.datetime, now: dt.datetime, grace: dt.timedelta
        ) -> tuple[dt.datetime | None, dt.datetime | None, int]:
    """Missed-run policy: of the fire times in [next_run, now], run only the newest (coalesce), and only if it
    is within ``grace`` of now; return (fire time to run or None, the next fire time after now, skipped).
    A one-time (NOW) schedule runs however late it is; it, and a cron whose last fire time has passed, have no
    next fire time (None)."""
    if next_run > now:
        return None, next_run, 0
    if is_once(expression):
        return next_run, None, 0
    fires = [next_run]
    while len(fires) <= 100_000:
        nxt = _next_or_none(expression, fires[-1])
        if nxt is None or nxt > now:
            break
        fires.append(nxt)
    newest = fires[-1]
    run = newest if now - newest <= grace else None
    return run, _next_or_none(expression, now), len(fires) - (1 if run else 0)
