"""Lineage query results as DOT and Mermaid text: pure (the walk itself is SQL, in `lineage.service`)."""

from __future__ import annotations

import json
from typing import Any

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
