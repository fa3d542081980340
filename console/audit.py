"""Page 5, audit: the event log with filters, chain verification, and the compliance report of a group as a page,
as the standalone HTML report, and as a PDF (headless Chromium, console/pdf.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

import registry
from console import pdf
from console.web import AuditorPage, attachment, page_of, render, templates
from mlgov import audit, web
from mlgov.auth import SessionDep
from mlgov.db import as_utc
from mlgov.errors import Invalid
from registry import service as registry_service

router = APIRouter()
PAGE = 50
# The registry's own standalone report template (the API's /api/v1/audit/report?format=html renders the same).
report_templates = web.templates(Path(registry.__file__).parent / "templates")
Text = Annotated[str, Query(max_length=256)]
Group = Annotated[str, Query(max_length=256)]


def _time(value: str, field: str) -> dt.datetime | None:
    """A ``datetime-local`` field (taken as UTC) or an ISO-8601 time; empty: no bound."""
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field} {value!r} is not a date and time", fix="use the form YYYY-MM-DDTHH:MM (UTC)") from None
    return as_utc(t)


def _log(request: Request, session: Any, user: Any, *, actor: str, action: str, group: str, since: str, until: str,
         offset: int, verification: dict[str, Any] | None = None) -> HTMLResponse:
    filters: dict[str, Any] = {"actor": actor or None, "action": action or None, "since": _time(since, "from"),
                               "until": _time(until, "to"), "limit": PAGE, "offset": offset, "newest_first": True}
    events, total = (registry_service.group_events(session, group, **filters) if group
                     else audit.query(session, **filters))
    given = {k: v for k, v in (("actor", actor), ("action", action), ("group", group), ("since", since),
                               ("until", until)) if v}
    return render(request, user, "audit.html", title="Audit", events=events, verification=verification,
                  filters={"actor": actor, "action": action, "group": group, "since": since, "until": until},
                  pager=page_of(offset, PAGE, total), query=urlencode(given) + "&" if given else "")


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request, session: SessionDep, user: AuditorPage, actor: Text = "", action: Text = "",
              group: Group = "", since: Text = "", until: Text = "",
              offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0) -> HTMLResponse:
    return _log(request, session, user, actor=actor, action=action, group=group, since=since, until=until,
                offset=offset)


@router.get("/audit/verify", response_class=HTMLResponse)
def verify(request: Request, session: SessionDep, user: AuditorPage) -> HTMLResponse:
    """Verification reads only; it is a GET (the Verify button is a GET form) and the result shows above the log."""
    return _log(request, session, user, actor="", action="", group="", since="", until="", offset=0,
                verification=audit.verify(session))


@router.get("/audit/chain", response_class=HTMLResponse)
def chain(request: Request, session: SessionDep, _: AuditorPage) -> HTMLResponse:
    """The chain's verification as a fragment, for the compliance page to swap in once it has rendered."""
    html = templates.get_template("chain_status.html").render(root=request.scope.get("root_path", ""),
                                                            verification=audit.verify(session))
    return HTMLResponse(html)


@router.get("/audit/report", response_class=HTMLResponse)
def report(request: Request, session: SessionDep, user: AuditorPage, group: Group = "", since: Text = "",
           until: Text = "") -> HTMLResponse:
    groups, _ = registry_service.list_groups(session, name_contains=None, tags={}, sort="name", limit=500, offset=0)
    # The chain's status is fetched by the page itself (htmx, /audit/chain): verifying walks every event of the log.
    r = registry_service.compliance_report(session, group, _time(since, "from"), _time(until, "to"),
                                           verify_chain=False) if group else None
    return render(request, user, "compliance.html", title="Compliance report", r=r, groups=groups,
                  filters={"group": group, "since": since, "until": until},
                  query=urlencode({k: v for k, v in (("group", group), ("since", since), ("until", until)) if v}))


def _standalone(session: Any, group: str, since: str, until: str) -> tuple[str, str]:
    if not group:
        raise Invalid("choose a model group for the report", fix="pick a group in the form")
    r = registry_service.compliance_report(session, group, _time(since, "from"), _time(until, "to"))
    stamp = dt.datetime.fromisoformat(r["generated_at"]).strftime("%Y%m%dT%H%M%SZ")
    return report_templates.get_template("report.html").render(r=r), f"compliance-{r['model_group']}-{stamp}"


@router.get("/audit/report.html", response_class=HTMLResponse)
def report_html(session: SessionDep, _: AuditorPage, group: Group = "", since: Text = "",
                until: Text = "") -> HTMLResponse:
    html, name = _standalone(session, group, since, until)
    return HTMLResponse(html, headers={"Content-Disposition": attachment(f"{name}.html")})


@router.get("/audit/report.pdf")
async def report_pdf(session: SessionDep, _: AuditorPage, group: Group = "", since: Text = "",
                     until: Text = "") -> Response:
    html, name = await run_in_threadpool(_standalone, session, group, since, until)
    body = await run_in_threadpool(pdf.html_to_pdf, html)
    return Response(body, media_type="application/pdf",
                    headers={"Content-Disposition": attachment(f"{name}.pdf")})
