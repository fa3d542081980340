"""Page 4, alerts: open and resolved, the violations behind each, and the retraining request it sent with every
delivery attempt (an admin redelivers a dead letter here)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from console.web import PREFIX, AdminForm, PublisherForm, Viewer, back, done, page_of, parse, render
from mlgov import events
from mlgov.auth import SessionDep
from mlgov.errors import Invalid
from monitor import schedules
from monitor.schemas import AlertResolve

router = APIRouter()
PAGE = 50
Id = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
STATUSES = ("open", "resolved", "all")


@router.get("/alerts", response_class=HTMLResponse)
def alerts(request: Request, session: SessionDep, user: Viewer,
           status: Annotated[str, Query(max_length=16)] = "open",
           offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0) -> HTMLResponse:
    if status not in STATUSES:
        raise Invalid(f"status {status!r} is not open, resolved or all", fix="pick one of the tabs")
    rows, total = schedules.list_alerts(session, status=None if status == "all" else status, schedule=None,
                                        model_group=None, limit=PAGE, offset=offset)
    names = schedules.schedule_names(session, {a.schedule_id for a in rows})
    return render(request, user, "alerts.html", title="Alerts", alerts=rows, names=names, tab=status,
                  pager=page_of(offset, PAGE, total), query=f"status={status}&")


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert(request: Request, alert_id: Id, session: SessionDep, user: Viewer) -> HTMLResponse:
    row, sched = schedules.get_alert(session, alert_id)
    requests = schedules.retraining_requests(session, row)
    # a removed trigger's webhook is deactivated: its dead letters cannot be redelivered, so none is offered
    retired = {hook for hook in {d.webhook_id for r in requests for d, _ in r.deliveries}
               if not events.get_webhook(session, hook).active}
    return render(request, user, "alert.html", title=f"Alert {row.check}", a=row, s=sched, requests=requests,
                  retired=retired)


@router.post("/alerts/{alert_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
def redeliver(request: Request, alert_id: Id, webhook_id: Id, delivery_id: Id, session: SessionDep,
              user: AdminForm) -> RedirectResponse:
    back(request, f"{PREFIX}/alerts/{alert_id}")
    events.retry_delivery(session, webhook_id, delivery_id, actor=user.principal.name)
    return done(request, f"{PREFIX}/alerts/{alert_id}", "Redelivery queued.")


@router.post("/alerts/{alert_id}/resolve")
def resolve(request: Request, alert_id: Id, session: SessionDep, user: PublisherForm,
            reason: Annotated[str, Form(max_length=1000)] = "") -> RedirectResponse:
    here = f"{PREFIX}/alerts/{alert_id}"
    back(request, here, {"reason": reason})
    body = parse(AlertResolve, reason=reason)
    schedules.resolve_alert(session, alert_id, body.reason, user.principal)
    return done(request, here, "Alert resolved.")
