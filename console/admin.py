"""Page 6, admin: API keys (create with owner and role, revoke), webhooks and their deliveries (redeliver dead
letters), retraining triggers, approval policies. Every action is the same service call the API makes."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from console.web import PREFIX, AdminForm, AdminPage, back, done, keepable_url, page_of, parse, render
from mlgov import auth, events
from mlgov.api import KeyCreate, WebhookCreate
from mlgov.auth import SessionDep
from mlgov.outbound import OutboundDep
from mlgov.secrets import SecretsDep
from monitor import schedules
from monitor.schemas import TriggerSet
from registry import service as registry
from registry.schemas import ApprovalPolicy, GroupUpdate

router = APIRouter()
HERE = f"{PREFIX}/admin"
Name = Annotated[str, Path(max_length=128)]
Id = Annotated[str, Path(max_length=32)]
POLICY_PAGE = 50


def _page(request: Request, session: Session, user: Any, group: str | None = None, offset: int = 0,
          **extra: Any) -> HTMLResponse:
    """``group`` (a part of a name) and ``offset`` page the approval-policy table: it listed only the first 500
    groups, and a trial's 527th could not be given a policy here."""
    groups, total = registry.list_groups(session, name_contains=group or None, tags={}, sort="name",
                                         limit=POLICY_PAGE, offset=offset)
    suggested = registry.list_groups(session, name_contains=None, tags={}, sort="name", limit=500,
                                     offset=0)[0]   # the trigger form's names, whatever the policy table shows
    hooks = events.list_webhooks(session)
    return render(request, user, "admin.html", title="Admin", keys=auth.list_keys(session), webhooks=hooks,
                  triggers=schedules.list_triggers(session), groups=groups, suggested_groups=suggested,
                  roles_list=[r.value for r in auth.Role], hook_urls={h.id: h.url for h in hooks},
                  group_filter=group or "", pager=page_of(offset, POLICY_PAGE, total), policy_offset=offset,
                  # absolute: this page is also the answer of POST /admin/keys, where "?offset=" would go astray
                  pager_base=request.scope.get("root_path", "") + HERE,
                  query=urlencode({"group": group}) + "&" if group else "", **extra)


@router.get("/admin", response_class=HTMLResponse)
def admin(request: Request, session: SessionDep, user: AdminPage,
          group: Annotated[str | None, Query(max_length=256)] = None,
          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> HTMLResponse:
    return _page(request, session, user, group, offset)


@router.post("/admin/keys", response_class=HTMLResponse)
def create_key(request: Request, session: SessionDep, user: AdminForm,
               name: Annotated[str, Form(max_length=128)] = "", owner: Annotated[str, Form(max_length=128)] = "",
               role: Annotated[str, Form(max_length=16)] = "viewer") -> HTMLResponse:
    back(request, HERE, {"name": name, "owner": owner, "role": role})
    body = parse(KeyCreate, name=name, role=role, owner=owner or None)
    row, full = auth.create_key(session, body.name, body.role.value, actor=user.principal.name, owner=body.owner,
                                creator=user.principal)
    # Shown once, on this response only (never put in a cookie or a redirect).
    return _page(request, session, user, created={"name": row.name, "role": row.role, "owner": row.owner,
                                                   "key": full})


@router.post("/admin/keys/{name}/revoke")
def revoke_key(request: Request, name: Name, session: SessionDep, user: AdminForm) -> RedirectResponse:
    back(request, HERE)
    auth.revoke_key(session, name, actor=user.principal.name)
    return done(request, HERE, f"key {name} is revoked; its console sessions have ended")


@router.post("/admin/webhooks")
def create_webhook(request: Request, session: SessionDep, user: AdminForm, policy: OutboundDep, box: SecretsDep,
                   url: Annotated[str, Form(max_length=2048)] = "", secret: Annotated[str, Form(max_length=256)] = "",
                   event_types: Annotated[str, Form(max_length=4000)] = "",
                   description: Annotated[str, Form(max_length=1000)] = "") -> RedirectResponse:
    back(request, HERE, {"hook_url": keepable_url(url), "event_types": event_types, "description": description})
    body = parse(WebhookCreate, url=url, secret=secret, description=description or None,
                 events=[e.strip() for e in event_types.replace("\n", ",").split(",") if e.strip()])
    hook = events.create_webhook(session, url=body.url, secret=body.secret, events=body.events,
                                 description=body.description, actor=user.principal.name, policy=policy, box=box)
    return done(request, HERE, f"webhook {hook.id} subscribed")


@router.post("/admin/webhooks/{webhook_id}/delete")
def delete_webhook(request: Request, webhook_id: Id, session: SessionDep, user: AdminForm) -> RedirectResponse:
    back(request, HERE)
    events.delete_webhook(session, webhook_id, actor=user.principal.name)
    return done(request, HERE, f"webhook {webhook_id} deleted")


@router.get("/admin/webhooks/{webhook_id}", response_class=HTMLResponse)
def deliveries(request: Request, webhook_id: Id, session: SessionDep, user: AdminPage) -> HTMLResponse:
    hook = events.get_webhook(session, webhook_id)
    return render(request, user, "deliveries.html", title="Deliveries", hook=hook,
                  deliveries=events.list_deliveries(session, webhook_id, limit=100, offset=0))


@router.post("/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
def redeliver(request: Request, webhook_id: Id, delivery_id: Id, session: SessionDep,
              user: AdminForm) -> RedirectResponse:
    here = f"{HERE}/webhooks/{webhook_id}"
    back(request, here)
    events.retry_delivery(session, webhook_id, delivery_id, actor=user.principal.name)
    return done(request, here, f"delivery {delivery_id} is queued again")


@router.post("/admin/triggers")
def set_trigger(request: Request, session: SessionDep, user: AdminForm, policy: OutboundDep, box: SecretsDep,
                group: Annotated[str, Form(max_length=256)] = "", url: Annotated[str, Form(max_length=2048)] = "",
                secret: Annotated[str, Form(max_length=256)] = "",
                cooldown_seconds: Annotated[str, Form(max_length=12)] = "3600") -> RedirectResponse:
    back(request, HERE, {"group": group, "trigger_url": keepable_url(url), "cooldown_seconds": cooldown_seconds})
    body = parse(TriggerSet, url=url, secret=secret, cooldown_seconds=cooldown_seconds.strip() or "3600")
    schedules.set_trigger(session, group, url=body.url, secret=body.secret, cooldown_seconds=body.cooldown_seconds,
                          actor=user.principal, policy=policy, box=box)
    return done(request, HERE, f"retraining trigger of {group} set")


@router.post("/admin/triggers/{group}/delete")
def delete_trigger(request: Request, group: Annotated[str, Path(max_length=256)], session: SessionDep,
                   user: AdminForm) -> RedirectResponse:
    back(request, HERE)
    schedules.delete_trigger(session, group, actor=user.principal)
    return done(request, HERE, f"retraining trigger of {group} removed")


@router.post("/admin/policies/{group}")
def set_policy(request: Request, group: Annotated[str, Path(max_length=256)], session: SessionDep, user: AdminForm,
               shown_id: Annotated[str, Form(max_length=32)],
               shown_bias: Annotated[bool, Form()],
               shown_hash: Annotated[bool, Form()],
               require_bias_report: Annotated[bool, Form()] = False,
               require_artifact_hash: Annotated[bool, Form()] = False,
               shown_filter: Annotated[str, Form(max_length=256)] = "",
               shown_offset: Annotated[int, Form(ge=0, le=10_000_000)] = 0) -> RedirectResponse:
    """``shown_id``/``shown_bias``/``shown_hash``: the group and policy the page showed (a stale page is refused);
    ``shown_filter``/``shown_offset``: the table the admin was looking at, to return to it."""
    back(request, HERE)
    registry.require_shown_policy(session, group, shown_id, {"require_bias_report": shown_bias,
                                                             "require_artifact_hash": shown_hash})
    current = registry.approval_policy(session, group)
    policy = parse(ApprovalPolicy, **{**current, "require_bias_report": require_bias_report,
                                      "require_artifact_hash": require_artifact_hash})
    registry.update_group(session, group, GroupUpdate(approval_policy=policy), user.principal)
    shown = {k: v for k, v in (("group", shown_filter), ("offset", shown_offset)) if v}
    return done(request, f"{HERE}?{urlencode(shown)}" if shown else HERE, f"approval policy of {group} saved")
