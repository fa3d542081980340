"""Data the console tests put in place through the public API (the same doors every client uses)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


def register(api: httpx.Client, group: str, *, description: str | None = None, metrics: dict[str, float] | None = None,
             **fields: Any) -> dict[str, Any]:
    """A group (created if new) and a new version of it registered by ``api``'s key."""
    r = api.get(f"/api/v1/model-groups/{group}")
    if r.status_code == 404:
        r = api.post("/api/v1/model-groups", json={"name": group, "description": description})
        assert r.status_code == 201, r.text
    body = {"artifact_uri": f"s3://models/{group}/{fields.get('n', 1)}/model.skops",
            "artifact_sha256": hashlib.sha256(f"{group}{fields.pop('n', 1)}".encode()).hexdigest(),
            "metrics": metrics or {"auc": 0.9}, "description": description, **fields}
    r = api.post(f"/api/v1/model-groups/{group}/versions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def approve(api: httpx.Client, group: str, number: int, comment: str = "ok") -> None:
    r = api.post(f"/api/v1/model-groups/{group}/versions/{number}/approval",
                 json={"status": "Approved", "comment": comment})
    assert r.status_code == 200, r.text


def lineage_graph(page: Any, drag: tuple[int, int] = (120, -60)) -> dict[str, Any]:
    """Scroll the version's lineage graph into view, zoom it in with the mouse wheel and pan it by dragging the
    background, asserting both took effect; returns the graph's nodes (label, type class, href) as drawn.

    Cytoscape gives a wheel event to the page, not the graph, within 250 ms of a page scroll (so scrolling down a
    page never gets stuck in a graph): the wheel waits until that is over, as a person's hand would."""
    page.wait_for_function("() => document.getElementById('lineage') && document.getElementById('lineage').__cy")
    # the scroll event fires at the next frame, not during scrollBy: wait for it before waiting for its 250 ms to end
    page.evaluate("""() => new Promise(done => {
        const y = window.scrollY;
        window.addEventListener('scroll', () => done(), {once: true});
        window.scrollBy(0, document.getElementById('lineage-h').getBoundingClientRect().top - 10);
        if (window.scrollY === y) done();   // nothing to scroll: no event will come
    })""")
    page.wait_for_function("() => !document.getElementById('lineage').__cy.renderer().scrollingPage")
    state = "(() => { const cy = document.getElementById('lineage').__cy; return {zoom: cy.zoom(), pan: cy.pan()}; })()"
    before = page.evaluate(state)
    scroll = page.evaluate("window.scrollY")
    box = page.locator("#lineage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -120)   # one notch up: zoom in around the pointer
    page.wait_for_function("z => document.getElementById('lineage').__cy.zoom() > z", arg=before["zoom"])
    assert page.evaluate("window.scrollY") == scroll          # the wheel zoomed the graph, the page did not move
    zoomed = page.evaluate(state)
    # drag the background by ``drag`` (from a bottom corner of the graph, away from the nodes)
    dx, dy = drag
    x, y = box["x"] + (12 if dx > 0 else box["width"] - 12), box["y"] + box["height"] - 12
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=5)
    page.mouse.move(x + dx, y + dy, steps=5)
    page.mouse.up()
    panned = page.evaluate(state)
    moved = (panned["pan"]["x"] - zoomed["pan"]["x"], panned["pan"]["y"] - zoomed["pan"]["y"])
    assert abs(moved[0] - dx) < 2 and abs(moved[1] - dy) < 2, (moved, drag)
    return {"box": page.locator("#lineage").bounding_box(), "nodes": page.evaluate("""() =>
        document.getElementById('lineage').__cy.nodes().map(n => ({label: n.data('label'), cls: n.data('cls'),
            href: n.data('href'), x: n.renderedPosition().x, y: n.renderedPosition().y}))""")}


def click_node(page: Any, graph: dict[str, Any], node: dict[str, Any]) -> None:
    """Click a node of `lineage_graph` where it is drawn now (after the zoom and pan) and wait for its page."""
    box = graph["box"]
    assert 0 < node["x"] < box["width"] and 0 < node["y"] < box["height"], (node, box)   # in sight, not off the edge
    page.mouse.click(box["x"] + node["x"], box["y"] + node["y"])
    page.wait_for_url(f"**{node['href']}")
