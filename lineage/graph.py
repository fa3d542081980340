"""Graph queries and exports. The walk is one recursive CTE evaluated by the database (PostgreSQL or
SQLite); Python only receives the reached vertices, never the whole graph.

UNION (not UNION ALL) over (id, depth) drops repeated rows, so cycles end at ``max_depth`` and each vertex
appears at most once per depth; the outer query keeps each vertex's smallest depth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, func, literal, select
from sqlalchemy.orm import Session

from lineage.orm import Edge, Entity


def walk_stmt(start_ids: Sequence[str], descend: bool, max_depth: int,
              association_types: Sequence[str] | None) -> Select[Any]:
    e = Edge.__table__
    src, dst = (e.c.source_id, e.c.target_id) if descend else (e.c.target_id, e.c.source_id)
    seed = select(Entity.id.label("id"), literal(0).label("depth")).where(Entity.id.in_(list(start_ids)))
    walk = seed.cte("walk", recursive=True)
    step = (select(dst.label("id"), (walk.c.depth + 1).label("depth"))
            .select_from(e.join(walk, src == walk.c.id))
            .where(walk.c.depth < max_depth))
    if association_types:
        step = step.where(e.c.type.in_(list(association_types)))
    walk = walk.union(step)
    return select(walk.c.id, func.min(walk.c.depth).label("depth")).group_by(walk.c.id)


def walk(session: Session, start_ids: Sequence[str], direction: str, max_depth: int,
         association_types: Sequence[str] | None) -> dict[str, int]:
    """Reached vertex id → smallest depth, for Ascendants, Descendants or Both."""
    reached: dict[str, int] = {}
    for descend in ([True] if direction == "Descendants" else [False] if direction == "Ascendants"
                    else [True, False]):
        for vid, depth in session.execute(walk_stmt(start_ids, descend, max_depth, association_types)):
            if vid not in reached or depth < reached[vid]:
                reached[vid] = int(depth)
    return reached


def _chunks(ids: list[str], n: int = 900) -> Iterable[list[str]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def edges_among(session: Session, ids: Sequence[str], association_types: Sequence[str] | None) -> list[Edge]:
    """Associations whose two ends are both in ``ids`` (chunked to stay under bind-parameter limits)."""
    idl = list(ids)
    idset = set(idl)
    out: list[Edge] = []
    for chunk in _chunks(idl):
        cond = [Edge.source_id.in_(chunk)]
        if association_types:
            cond.append(Edge.type.in_(list(association_types)))
        out.extend(e for e in session.scalars(select(Edge).where(and_(*cond))) if e.target_id in idset)
    return out


def entities(session: Session, ids: Sequence[str]) -> list[Entity]:
    out: list[Entity] = []
    for chunk in _chunks(list(ids)):
        out.extend(session.scalars(select(Entity).where(Entity.id.in_(chunk))))
    return out


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
