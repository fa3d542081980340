"""Page 3, monitoring: endpoints and schedules at a glance, and per schedule its execution timeline with the trend of
every number its kind charts (drift statistic per feature, model-quality metric, bias metric) against its threshold;
each point opens that execution's report."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from console.web import PREFIX, Viewer, page_of, render
from mlgov import web
from mlgov.auth import SessionDep
from mlgov.db import utcnow
from mlgov.storage import StoreDep
from monitor import kinds, schedules, service

router = APIRouter()
PAGE = 50
TREND_RUNS = 60       # executions on the trend charts (the timeline table pages through all of them)
VOLUME_HOURS = 48     # capture sparkline span
Name = Annotated[str, Path(max_length=63)]
Id = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


def _epoch(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.UTC).timestamp() if t.tzinfo is None else t.timestamp())


def _volume(session: Any, endpoint: str, now: dt.datetime) -> dict[str, Any]:
    """Hourly capture counts over the 48 hours up to the latest captured hour (or now, before any traffic) as a
    sparkline; hours without traffic drawn as 0."""
    end = service.last_capture_hour(session, endpoint) or now
    start = (end - dt.timedelta(hours=VOLUME_HOURS)).replace(minute=0, second=0, microsecond=0)
    counts = dict(service.capture_volume(session, endpoint, start))
    hours = [start + dt.timedelta(hours=i) for i in range(VOLUME_HOURS + 1)]
    return {"x": [_epoch(h) for h in hours], "height": 60, "compact": True,
            "series": [{"label": "records/hour", "values": [counts.get(h, 0) for h in hours]}]}


@router.get("/monitoring", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, user: Viewer) -> HTMLResponse:
    now = utcnow()
    eps, ep_total = service.list_endpoints(session, limit=200, offset=0)
    scheds, sched_total, worker = schedules.list_schedules(session, limit=200, offset=0)
    open_alerts, _ = schedules.list_alerts(session, status="open", schedule=None, model_group=None, limit=1000,
                                           offset=0)
    by_schedule: dict[str, int] = {}
    for a in open_alerts:
        by_schedule[a.schedule_id] = by_schedule.get(a.schedule_id, 0) + 1
    endpoints = [{"ep": ep, "captured": service.captured_count(session, ep.name),
                  "volume": _volume(session, ep.name, now),
                  "alerts": sum(by_schedule.get(s.id, 0) for s in scheds if s.endpoint == ep.name)} for ep in eps]
    rows = []
    for s in scheds:
        rows.append({"s": s, "last": schedules.latest_execution(session, s), "alerts": by_schedule.get(s.id, 0)})
    return render(request, user, "monitoring.html", title="Monitoring", endpoints=endpoints, schedules=rows,
                  ep_total=ep_total, sched_total=sched_total, worker=worker, now=now)


STYLE: dict[str, dict[str, Any]] = {"estimated": {"color": "#b25e09"}, "band lower": {"color": "#9aa4b2", "dash": True},
         "band upper": {"color": "#9aa4b2", "dash": True}, kinds.NOT_JUDGED: {"color": "#6b7280", "dots": True},
         **{bound: {"color": "#b42318", "dash": True} for bound in kinds.BOUNDS}}
BREACH = {"color": "#b42318", "dots": True, "fill": "#b42318"}
"""A run that judged a value beyond its threshold: the point again, filled red, as a series of its own (which way is
beyond is the kind's to say: a distance above, an accuracy below)."""
EDGE = 1.0
UNDRAWABLE = " (infinite or undefined)"
"""A breached value that is not a finite number (a bias ratio over a zero rate) has no height: its red point is
drawn at ``EDGE`` on a scale of its own whose top that is (charts.js), and its series named with this suffix."""
PALETTE = ("#1f5fbf", "#0f8a6f", "#8e3fb5", "#c2410c", "#4b5563", "#b8860b", "#0e7490", "#be185d")
"""Colours of the series a chart draws together without a style of their own (global SHAP per feature), told apart
from each other and from the threshold's red; the first is the one-series charts' blue."""


def _charts(name: str, runs: list[tuple[Any, list[kinds.Point]]], root: str,
            line: kinds.Line = kinds.THRESHOLD) -> list[dict[str, Any]]:
    """One chart per series, or per group of series a kind draws together (a metric realised, estimated and its
    band): values per execution, the threshold as a line (a step where an edit of the constraints changed it between
    runs: each run is drawn against its own), each point linking to the execution's report."""
    charts_of: dict[str, list[str]] = {}
    for _, points in runs:
        for p in points:
            members = charts_of.setdefault(p.chart or p.series, [])
            if p.series not in members:
                members.append(p.series)
    x = [_epoch(ex.window_start) for ex, _ in runs]   # the data's time, not when the run happened
    back = quote(name, safe="")
    links = [f"{root}{PREFIX}/monitoring/analyses/{ex.analysis_id}?schedule={back}" if ex.analysis_id else None
             for ex, _ in runs]
    charts = []
    for title, members in charts_of.items():
        lines: list[dict[str, Any]] = []
        last: float | None = None
        unstyled = 0
        beyond: list[dict[str, Any]] = []
        limits: list[float | None] = [None] * len(runs)   # each run's threshold, as that run judged
        for series in members:
            values: list[float | None] = []
            breached: list[float | None] = []
            undrawable: list[float | None] = []   # breached with no finite value: marked on the plot's top edge
            for i, (_, points) in enumerate(runs):
                hit = next((p for p in points if p.series == series), None)
                values.append(hit.value if hit else None)
                breached.append(hit.value if hit and hit.breached else None)
                undrawable.append(EDGE if hit and hit.breached and hit.value is None else None)
                if hit and hit.threshold is not None and limits[i] is None:
                    limits[i] = hit.threshold
            style = next((v for k, v in STYLE.items() if series.endswith(k)), None)
            if style is None:
                style, unstyled = {"color": PALETTE[unstyled % len(PALETTE)]}, unstyled + 1
            # a line joins the runs either side of one with no value, except where that run breached with none:
            # drawn through it, the line passed inside the range under the red point that says it left it
            breaks = {"gaps": True} if any(v is not None for v in undrawable) else {}
            lines.append({"label": series, "values": values, **style, **breaks})
            if any(v is not None for v in breached):
                beyond.append({"label": f"{series} {line.beyond}", "values": breached, **BREACH})
            if any(v is not None for v in undrawable):
                beyond.append({"label": f"{series} {line.beyond}{UNDRAWABLE}", "values": undrawable, "edge": True,
                               **BREACH})
            if series == title or last is None:   # the latest run's, even when it has none (an infinite bias
                last = values[-1] if values else None   # metric): an older value shown as latest read as a pass
        chart: dict[str, Any] = {"x": x, "links": links, "series": lines + beyond}
        valued = [any(p.series in members for p in points) for _, points in runs]   # a value on this chart
        judged = [limit for limit, v in zip(limits, valued, strict=True) if v]
        known = [v for v in judged if v is not None]
        threshold = known[-1] if known else None
        if known and len(set(judged)) == 1:
            chart["lines"] = [{"label": line.label, "value": threshold}]
        elif known:   # edited between runs, or set for some runs only: each run's own, held over runs without a
            held: list[float | None] = []   # value on this chart; a gap where a run had none
            for limit, v in zip(limits, valued, strict=True):
                held.append(limit if v or not held else held[-1])
            chart["lines"] = [{"label": line.label, "values": held}]
        # a chart of several series named for none of them says each one's latest value
        each = [(s["label"], s["values"][-1] if s["values"] else None) for s in lines] \
            if title not in members and title + kinds.NOT_JUDGED not in members else []
        latest = {s["label"]: s["values"][-1] for s in lines if s["values"]}
        unjudged = latest.get(title + kinds.NOT_JUDGED) if latest.get(title) is None else None
        charts.append({"name": title, "spec": chart, "threshold": threshold, "last": last if unjudged is None
                       else unjudged, "each": each, "last_note": None if unjudged is None else
                       "not judged: too few values to tell drift from sampling noise"})
    return charts


@router.get("/monitoring/schedules/{name}", response_class=HTMLResponse)
def schedule(request: Request, name: Name, session: SessionDep, store: StoreDep, user: Viewer,
             offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
             chart: Annotated[str, Query(max_length=300)] = "") -> HTMLResponse:
    sched = schedules.get(session, name)
    execs, total = schedules.executions(session, name, PAGE, offset)
    runs = schedules.trends(session, store, name, TREND_RUNS)
    line = kinds.get(sched.type).line if sched.type in kinds.names() else kinds.THRESHOLD
    charts = _charts(name, runs, request.scope.get("root_path", ""), line)
    alerts, _ = schedules.list_alerts(session, status="open", schedule=name, model_group=None, limit=100, offset=0)
    flagged = {a.subject for a in alerts}
    # charts of what is alerting first, then the rest; ``chart`` filters by name
    charts.sort(key=lambda c: (not any(c["name"].startswith(f) for f in flagged if f), c["name"]))
    shown = [c for c in charts if chart.lower() in c["name"].lower()] if chart else charts
    labels = [line["label"] for c in shown for line in c["spec"]["series"]]
    return render(request, user, "schedule.html", title=f"Schedule {name}", s=sched, executions=execs,
                  pager=page_of(offset, PAGE, total), charts=shown, chart_filter=chart, chart_total=len(charts),
                  alerts=alerts, runs=len(runs), unjudged=any(s.endswith(kinds.NOT_JUDGED) for s in labels),
                  breached=any(s.endswith(line.beyond) for s in labels),
                  undrawable=any(s.endswith(UNDRAWABLE) for s in labels), line=line)


@router.get("/monitoring/analyses/{analysis_id}", response_class=HTMLResponse)
def analysis(request: Request, analysis_id: Id, session: SessionDep, store: StoreDep, user: Viewer,
             schedule: Annotated[str, Query(max_length=63)] = "") -> HTMLResponse:
    """The execution's report as its kind draws it (the API's ``/analyses/{id}/report``), headed by the way back
    to the console: Monitoring, and the schedule whose run it is when the link came from that schedule's page."""
    base = f"{request.scope.get('root_path', '')}{PREFIX}"
    trail = [("Console", f"{base}/"), ("Monitoring", f"{base}/monitoring")]
    ex = schedules.execution_of(session, schedule, analysis_id) if schedule else None
    if ex is not None:
        trail.append((f"Schedule {schedule}", f"{base}/monitoring/schedules/{quote(schedule, safe='')}"))
    # the report's part inside the console's layout: HTML already, the output of its kind's templates, which
    # autoescape every value they render (`web.templates`); marked so, it is not escaped a second time
    part = kinds.analysis_html(session, store, analysis_id, trail)
    return render(request, user, "report.html", title=f"Analysis {analysis_id}", report=Markup(part))  # noqa: S704


@router.get("/report.css", response_class=Response)
def report_css(_: Viewer) -> Response:
    """The reports' stylesheet scoped to the console's report pages (a stylesheet of 'self': the CSP allows it)."""
    return Response(web.scoped_report_css(), media_type="text/css", headers={"Cache-Control": "private, max-age=3600"})
