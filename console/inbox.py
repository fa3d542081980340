"""Page 1, the approvals inbox: versions waiting for a decision across groups, each with its evidence, and the
decision form (the registry's `decide` applies four-eyes and the group's policy; the page only shows refusals)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from console.web import PREFIX, DeciderForm, Viewer, back, done, page_of, parse, render
from mlgov.auth import Principal, SessionDep
from registry import service as registry
from registry.schemas import ApprovalRequest

router = APIRouter()
PAGE = 20


def metric_rows(metrics: dict[str, Any], reference: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each metric of the version beside the approved version's (and the difference when both are numbers)."""
    names = sorted(set(metrics) | set(reference or {}))
    rows = []
    for name in names:
        mine, theirs = metrics.get(name), (reference or {}).get(name)
        delta = mine - theirs if isinstance(mine, int | float) and isinstance(theirs, int | float) else None
        rows.append({"name": name, "value": mine, "approved": theirs, "delta": delta})
    return rows


def evidence_of(session: Session, group: Any, v: Any, approved: Any | None,
                facts: dict[str, list[dict[str, Any]]], viewer: Principal | None = None) -> dict[str, Any]:
    """What an approver looks at before deciding, all from the domains' services (``facts``: `registry.facts_of`
    the version, asked for a whole page of versions at once); ``not_yours``: why ``viewer`` may not decide it
    (four-eyes), so the page says so instead of offering buttons that would be refused; ``unhashed`` and
    ``policy_gap``: why the group's policy would refuse an approval (the form then closes or asks for the admin's
    override)."""
    assessment = registry.assess_evidence(session, group.name, v)
    counted = [e for e in assessment if e["counted"]]
    baselines = [a for a in facts.get("attachments", []) if a.get("kind") == "drift baseline"]
    quality = [m for m in facts.get("monitoring", []) if m.get("kind") == "DataQuality"]
    newest_quality = max(quality, key=lambda m: m["last"]["at"]) if quality else None
    policy = dict(group.approval_policy or {})
    return {
        "group": group, "version": v, "approved": approved,
        "metrics": metric_rows(dict(v.metrics or {}), dict(approved.metrics or {}) if approved else None),
        "baseline": next((b for b in reversed(baselines) if b.get("until") is None), None),
        "data_quality": newest_quality,
        "bias": counted[-1] if counted else None, "bias_ignored": [e for e in assessment if not e["counted"]],
        "policy": policy, "policy_gap": registry.policy_gap(group, assessment),
        "unhashed": registry.unhashed_gap(group, v),
        "open_alerts": [a for a in facts.get("alerts", []) if a.get("status") == "open"],
        "not_yours": registry.why_not_decider(session, v, viewer) if viewer is not None else None,
    }


@router.get("/", response_class=HTMLResponse)
def inbox(request: Request, session: SessionDep, user: Viewer,
          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> HTMLResponse:
    rows, total = registry.pending_versions(session, limit=PAGE, offset=offset)
    approved = registry.approved_now(session, sorted({g.id for g, _ in rows}))
    facts = registry.facts_of(session, [(g.name, v.version) for g, v in rows])
    items = [evidence_of(session, g, v, approved.get(g.id), facts[(g.name, v.version)], user.principal)
             for g, v in rows]
    return render(request, user, "inbox.html", title="Approvals", items=items, pager=page_of(offset, PAGE, total))


@router.post("/models/{group}/versions/{number}/decision")
def decide(request: Request, group: str, number: int, session: SessionDep, user: DeciderForm,
           decision: Annotated[Literal["Approved", "Rejected"], Form()],
           shown_id: Annotated[str, Form(max_length=32)],
           comment: Annotated[str, Form(max_length=4000)] = "",
           shown_on: Annotated[Literal["inbox", "version"], Form()] = "inbox",
           override_policy: Annotated[bool, Form()] = False) -> RedirectResponse:
    here = f"{PREFIX}/" if shown_on == "inbox" else f"{PREFIX}/models/{quote(group, safe='')}/versions/{number}"
    back(request, here)
    # both forms are shown only for pending versions: a page left open while someone else decided must not
    # overturn that decision (a console trial rejected, from a stale version page, what another had approved)
    req = parse(ApprovalRequest, status=decision, comment=comment, expected_status="PendingManualApproval",
                override_policy=override_policy)
    v = registry.decide(session, group, number, req, user.principal)
    registry.require_shown(v, group, number, shown_id)
    return done(request, here, f"{group} version {number} is now {v.approval_status}")
