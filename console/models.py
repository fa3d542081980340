"""Page 2, model groups and versions: the versions table (filtered, sorted and paged in the database), what each
stage holds now and how it got there, the model card, approval history, attached evidence, and the version's
lineage as an interactive graph (lineage.js + Cytoscape)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from console.inbox import evidence_of
from console.web import PREFIX, MoverForm, Viewer, back, done, page_of, parse, render
from lineage import service as lineage
from lineage.schemas import QueryRequest
from mlgov.auth import SessionDep
from registry import service as registry
from registry.schemas import ApprovalStatus, StageConfig, StageRequest

router = APIRouter()
PAGE = 50
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
VERSION_SORTS = {"-version": "newest first", "version": "oldest first", "-created_at": "registered, newest first",
                 "created_at": "registered, oldest first"}


@router.get("/models", response_class=HTMLResponse)
def groups(request: Request, session: SessionDep, user: Viewer, offset: Offset = 0,
           q: Annotated[str, Query(max_length=256)] = "") -> HTMLResponse:
    rows, total = registry.list_groups(session, name_contains=q or None, tags={}, sort="name", limit=PAGE,
                                       offset=offset)
    return render(request, user, "models.html", title="Models", groups=rows, q=q, pager=page_of(offset, PAGE, total),
                  counts=registry.version_counts(session, rows), query=urlencode({"q": q}) + "&" if q else "")


@router.get("/models/{group}", response_class=HTMLResponse)
def group_page(request: Request, group: str, session: SessionDep, user: Viewer, offset: Offset = 0,
               status: ApprovalStatus | Literal[""] = "", stage: Annotated[str, Query(max_length=63)] = "",
               sort: Literal["-version", "version", "-created_at", "created_at"] = "-version") -> HTMLResponse:
    g, versions, total = registry.list_versions(session, group, status=status or None, stage=stage or None,
                                                created_after=None, created_before=None, metadata={}, sort=sort,
                                                limit=PAGE, offset=offset)
    cfg = StageConfig.model_validate(g.stage_config)
    counts = registry.stage_counts(session, g)
    newest = {v.stage: v.version for v in registry.latest_by_stage(session, [g.id]).get(g.id, [])}
    stages = [{"name": s.name, "count": counts.get(s.name, 0), "newest": newest.get(s.name),
               "exclusive": s.exclusive, "governed": s.requires_approval} for s in cfg.stages]
    filters = {k: v for k, v in (("status", status), ("stage", stage), ("sort", sort)) if v and v != "-version"}
    return render(request, user, "group.html", title=g.name, group=g, versions=versions, stages=stages,
                  history=registry.stage_history(session, group, newest=25),
                  aliases=registry.group_aliases(session, [g.id]).get(g.id, []),
                  facts=registry.version_facts(session, versions), sorts=VERSION_SORTS,
                  filters={"status": status, "stage": stage, "sort": sort}, stage_names=[s.name for s in cfg.stages],
                  pager=page_of(offset, PAGE, total), query=urlencode(filters) + "&" if filters else "")


@router.get("/models/{group}/versions/{number}", response_class=HTMLResponse)
def version_page(request: Request, group: str, number: int, session: SessionDep, user: Viewer) -> HTMLResponse:
    g, v = registry.get_version(session, group, number)
    approved = registry.approved_now(session, [g.id]).get(g.id)
    node = lineage.node_of(session, lineage.model_version_uri(g.name, v.version))
    facts = registry.other_facts(session, g.name, v.version)
    return render(request, user, "version.html", title=f"{g.name} version {v.version}", group=g, v=v,
                  ev=evidence_of(session, g, v, approved if approved is not None and approved.id != v.id else None,
                                 facts, user.principal),
                  facts=facts,
                  decisions=registry.approval_history(session, v),
                  history=registry.stage_history(session, group, number),
                  moves=registry.stage_moves(g, v, user.principal), exclusive=_displacing(g),
                  graph=graph_of(session, node.id) if node is not None else None)


def _displacing(g: Any) -> str:
    """What a move into an exclusive stage also does, for the move's confirmation: Production silently archived
    the version there before."""
    cfg = StageConfig.model_validate(g.stage_config)
    texts = []
    for s in (s for s in cfg.stages if s.exclusive):
        to, ticked = registry.displaced_to(cfg, s, False), registry.displaced_to(cfg, s, True)
        texts.append(f"{s.name} holds one version: moving this one there moves the one there now to {to}"
                     + (f" (or to {ticked}, if you tick the box)." if ticked != to else "."))
    return " ".join(texts)


@router.post("/models/{group}/versions/{number}/stage")
def move_stage(request: Request, group: str, number: int, session: SessionDep, user: MoverForm,
               stage: Annotated[str, Form(max_length=63)],
               shown_id: Annotated[str, Form(max_length=32)],
               shown_stage: Annotated[str, Form(max_length=63)] = "",
               comment: Annotated[str, Form(max_length=4000)] = "",
               archive_others: Annotated[bool, Form()] = False) -> RedirectResponse:
    """The version page's stage move; `move_stage` applies every rule. ``shown_stage``: the stage the page showed,
    so a page left open while someone else moved the version cannot move it from where it no longer is."""
    here = f"{PREFIX}/models/{quote(group, safe='')}/versions/{number}"
    back(request, here)
    req = parse(StageRequest, stage=stage, comment=comment or None, expected_stage=shown_stage or None,
                archive_others=archive_others)
    v = registry.move_stage(session, group, number, req, user.principal)
    registry.require_shown(v, group, number, shown_id)
    return done(request, here, f"{group} version {number} is now in {v.stage}")


@router.get("/lineage/{entity_id}", response_class=HTMLResponse)
def entity_page(request: Request, entity_id: Annotated[str, Path(max_length=32)], session: SessionDep,
                user: Viewer) -> HTMLResponse:
    ent = lineage.any_entity(session, entity_id)
    live = _live_versions(session, [ent])
    version = _version_of(ent)
    return render(request, user, "entity.html", title=ent.name or ent.type, e=ent, href=_href(ent, live),
                  deleted=version if version is not None and version not in live else None,
                  graph=graph_of(session, ent.id))


# --- the lineage graph -----------------------------------------------------------------------------------------

_CLASS = {"Dataset": "data", "DataSet": "data", "Baseline": "data", "Model": "model", "ModelPackage": "model",
          "Alert": "alert", "Endpoint": "endpoint", "MonitoringSchedule": "monitor", "Monitor": "monitor"}
MAX_DEPTH = 4


def _version_of(ent: Any) -> tuple[str, int] | None:
    props = ent.properties or {}
    if ent.type == "ModelPackage" and props.get("model_group") and str(props.get("version", "")).isdigit():
        return str(props["model_group"]), int(props["version"])
    return None


def _live_versions(session: Session, ents: Iterable[Any]) -> set[tuple[str, int]]:
    return registry.versions_present(session, filter(None, map(_version_of, ents)))


def _href(ent: Any, live: set[tuple[str, int]]) -> str:
    """Where clicking a node leads: a version's (while it exists: a deleted one keeps its node), an alert's or a
    schedule's page, or the node's own page."""
    props = ent.properties or {}
    if (version := _version_of(ent)) is not None and version in live:
        return f"{PREFIX}/models/{quote(version[0], safe='')}/versions/{version[1]}"
    if ent.type == "Alert" and ent.identity.startswith("alert:"):
        return f"{PREFIX}/alerts/{ent.identity.removeprefix('alert:')}"
    if ent.type == "MonitoringSchedule" and props.get("schedule"):
        return f"{PREFIX}/monitoring/schedules/{props['schedule']}"
    return f"{PREFIX}/lineage/{ent.id}"


def _layered(level: dict[str, int], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    """Columns by the longest path from the start, not the shortest: a schedule and the alerts it raised both lie
    two steps from an endpoint, and in one column their edges ran down it through the nodes and labels between.
    Downstream each edge's target sits right of its source, upstream each source left of its target. Links can
    form cycles (two user links in opposite directions): each side is walked depth first from the start and an
    edge back into the walk is left out, so a cycle costs one column, not one per pass."""
    out = dict(level)
    for sign in (1, -1):
        side = {n for n, c in level.items() if c * sign > 0}
        away: dict[str, list[str]] = {}
        for src, dst, _type in edges:
            near, far = (src, dst) if sign > 0 else (dst, src)
            if far in side and (near in side or level.get(near) == 0):
                away.setdefault(near, []).append(far)
        order = _walk([n for n, c in level.items() if c == 0] + sorted(side, key=lambda n: (abs(level[n]), n)), away)
        rank = {n: i for i, n in enumerate(order)}
        for near in order:
            for far in away.get(near, []):
                if rank[far] > rank[near] and abs(out[far]) <= abs(out[near]):
                    out[far] = out[near] + sign
    return out


def _walk(roots: list[str], away: dict[str, list[str]]) -> list[str]:
    """Reverse post-order of a depth-first walk from ``roots``: every edge goes forward in it, except the edges
    that close a cycle."""
    seen: set[str] = set()
    post: list[str] = []
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(away.get(root, [])))]
        while stack:
            node, ahead = stack[-1]
            for nxt in ahead:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(away.get(nxt, []))))
                    break
            else:
                stack.pop()
                post.append(node)
    return post[::-1]


def _rows(level: dict[str, int], edges: list[tuple[str, str, str]], tie: Callable[[str], Any]) -> dict[str, int]:
    """Each node's row in its column: columns are placed outward from the start, each node near the mean row of
    its neighbours already placed (fewer edges crossing), ties by ``tie``."""
    near: dict[str, list[str]] = {}
    for src, dst, _type in edges:
        near.setdefault(src, []).append(dst)
        near.setdefault(dst, []).append(src)
    row: dict[str, int] = {}
    for col in sorted(set(level.values()), key=lambda c: (abs(c), c)):
        def key(i: str) -> tuple[float, Any]:
            placed = [row[n] for n in near.get(i, []) if n in row]
            return (sum(placed) / len(placed) if placed else float("inf"), tie(i))
        for r, i in enumerate(sorted((i for i in level if level[i] == col), key=key)):
            row[i] = r
    return row


def graph_of(session: Session, start: str) -> dict[str, Any]:
    """The node's upstream (left) and downstream (right) lineage in columns (`_layered`), for lineage.js."""
    level: dict[str, int] = {start: 0}
    edges: dict[tuple[str, str, str], None] = {}
    for direction, sign in (("Ascendants", -1), ("Descendants", 1)):
        res = lineage.query(session, QueryRequest(start=[start], direction=direction, max_depth=MAX_DEPTH))
        for vert in res.vertices:
            level.setdefault(vert.id, sign * vert.depth)
        for e in res.edges:
            edges[(e.source, e.target, e.type)] = None
    ents = lineage.entities_by_id(session, list(level))
    live = _live_versions(session, ents.values())
    level = {i: c for i, c in _layered(level, list(edges)).items() if i in ents}
    rows = _rows(level, list(edges), lambda i: (ents[i].type, i))
    nodes = []
    for node_id in sorted(level, key=lambda i: (level[i], rows[i])):
        ent = ents[node_id]
        shown = ent.name or ent.uri or ""
        # the end says most (a file, a version); a label wraps only at spaces, so a URI is cut to what fits a column
        most = 64 if " " in shown else 40
        shown = shown if len(shown) <= most else "…" + shown[1 - most:]
        nodes.append({"id": node_id, "label": f"{ent.type}\n{shown}",
                      "kind": ent.kind, "type": ent.type, "cls": _CLASS.get(ent.type, "action" if ent.kind == "action"
                                                                          else "data"),
                      "href": _href(ent, live), "x": level[node_id] * 240, "y": rows[node_id] * 90,
                      "start": node_id == start})
    kept = {n["id"] for n in nodes}
    # an edge not between neighbouring columns bends (lineage.js): straight, it ran through the nodes between
    return {"nodes": nodes, "edges": [{"source": s, "target": t, "type": ty, "bend": abs(level[s] - level[t]) != 1}
                                      for s, t, ty in edges if s in kept and t in kept]}
