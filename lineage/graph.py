"""Graph queries and exports. The walk is one recursive CTE evaluated by the database (PostgreSQL or
SQLite); Python only receives the reached vertices, never the whole graph.

UNION (not UNION ALL) over (id, depth) drops repeated rows, so cycles end at ``max_depth`` and each vertex
appears at most once per depth; the outer query keeps each vertex's smallest depth.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import CTE, CompoundSelect, Integer, Select, String, func, literal, null, select, union_all
from sqlalchemy.orm import Session

from lineage.orm import Edge, Entity


def _walk_rows(start_ids: Sequence[str], descend: bool, max_depth: int,
               association_types: Sequence[str] | None) -> Select[Any]:
    e = Edge.__table__
    src, dst = (e.c.source_id, e.c.target_id) if descend else (e.c.target_id, e.c.source_id)
    seed = select(Entity.id.label("id"), literal(0).label("depth")).where(Entity.id.in_(list(start_ids)))
    walk = seed.cte("walk_down" if descend else "walk_up", recursive=True)
    step = (select(dst.label("id"), (walk.c.depth + 1).label("depth"))
            .select_from(e.join(walk, src == walk.c.id))
            .where(walk.c.depth < max_depth))
    if association_types:
        step = step.where(e.c.type.in_(list(association_types)))
    walk = walk.union(step)
    return select(walk.c.id, walk.c.depth)


def reached(start_ids: Sequence[str], direction: str, max_depth: int,
            association_types: Sequence[str] | None) -> CTE:
    """Vertex id and smallest depth of everything reachable: Ascendants, Descendants or Both."""
    parts = [_walk_rows(start_ids, d, max_depth, association_types)
             for d in {"Descendants": [True], "Ascendants": [False]}.get(direction, [True, False])]
    rows = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("walked")
    return select(rows.c.id, func.min(rows.c.depth).label("depth")).group_by(rows.c.id).cte("reached")


def subgraph(session: Session, r: CTE, *, include_edges: bool, association_types: Sequence[str] | None,
             kinds: Sequence[str] | None = None, types: Sequence[str] | None = None,
             created_after: dt.datetime | None = None, created_before: dt.datetime | None = None,
             ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Reached vertices (output filters applied) and the associations among them, in one statement: the walk
    runs once (a CTE used twice is materialised) and only columns travel, never properties."""
    text_null = null().cast(String)
    v = (select(literal("v").label("row"), Entity.id, Entity.kind, Entity.type, Entity.name, Entity.uri,
                Entity.sha256, Entity.status, r.c.depth).join(r, r.c.id == Entity.id))
    if kinds:
        v = v.where(Entity.kind.in_(list(kinds)))
    if types:
        v = v.where(Entity.type.in_(list(types)))
    if created_after is not None:
        v = v.where(Entity.created_at >= created_after)
    if created_before is not None:
        v = v.where(Entity.created_at < created_before)
    stmt: Select[Any] | CompoundSelect[Any] = v
    if include_edges:
        e = Edge.__table__
        r2 = r.alias("reached_target")
        edges = (select(literal("e"), e.c.source_id, e.c.target_id, e.c.type, text_null, text_null, text_null,
                        text_null, null().cast(Integer))
                 .join(r, r.c.id == e.c.source_id).join(r2, r2.c.id == e.c.target_id))
        if association_types:
            edges = edges.where(e.c.type.in_(list(association_types)))
        stmt = union_all(v, edges)
    vertices: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    for row in session.execute(stmt).all():   # fetchall: one driver call, not one per row
        (vertices if row[0] == "v" else links).append(row)
    vertices.sort(key=itemgetter(8, 2, 3, 1))   # depth, kind, type, id (a C key function: no Python call per row)
    links.sort(key=itemgetter(1, 2, 3))
    return vertices, links


# --- exports ------------------------------------------------------------------------------------------

def _label(v: dict[str, Any]) -> str:
    main = v.get("uri") or v.get("name") or v["id"]
    return f"{v['type']}: {main}"


def to_dot(result: dict[str, Any]) -> str:
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string is a valid DOT quoted string

    shapes = {"artifact": "box", "action": "ellipse", "context": "folder"}
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for v in result["vertices"]:
        lines.append(f"  {q(v['id'])} [label={q(_label(v))}, shape={shapes.get(v['kind'], 'box')}];")
    for e in result["edges"]:
        lines.append(f"  {q(e['source'])} -> {q(e['target'])} [label={q(e['type'])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(result: dict[str, Any]) -> str:
    def text(s: str) -> str:
        return s.replace('"', "#quot;").replace("\n", " ")

    shapes = {"artifact": ('["', '"]'), "action": ('(["', '"])'), "context": ('[["', '"]]')}
    ids = {v["id"]: f"n{i}" for i, v in enumerate(result["vertices"])}
    lines = ["graph LR"]
    for v in result["vertices"]:
        a, b = shapes.get(v["kind"], ('["', '"]'))
        lines.append(f"  {ids[v['id']]}{a}{text(_label(v))}{b}")
    for e in result["edges"]:
        if e["source"] in ids and e["target"] in ids:
            lines.append(f"  {ids[e['source']]} -->|{e['type']}| {ids[e['target']]}")
    return "\n".join(lines) + "\n"
