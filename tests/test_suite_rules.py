"""Rules for the test suite itself, checked on its source with ``ast``.

Every HTTP call a test makes states its timeout. httpx's default is 5 s, and a live server on CI's shared 2-core
machine, with the other test worker building an image or running Schemathesis, has twice answered later than that
(stops 37 and 38 failed on it) without anything being wrong with the server. A call that means to give up early
(a readiness poll in a loop) says so with its own short timeout.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HTTPX_CALLS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream", "Client"}


def calls_without_timeout(source: str) -> list[int]:
    """Line numbers of ``httpx.<call>(...)`` without a ``timeout=`` keyword."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "httpx"
        and node.func.attr in HTTPX_CALLS
        and not any(k.arg == "timeout" for k in node.keywords)
    ]


def test_every_http_call_in_the_tests_states_its_timeout() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 80       # the walk really sees the suite
    missing = [f"{p.relative_to(TESTS.parent)}:{line}" for p in files for line in calls_without_timeout(p.read_text())]
    assert not missing, f"give these httpx calls timeout=60 (or a short one in a retry loop): {missing}"


def test_the_rule_finds_a_call_without_timeout() -> None:
    source = (
        "import httpx\n"
        "httpx.get('u', timeout=60)\n"
        "r = httpx.post('u', json={})\n"
        "with httpx.Client(base_url='u') as c:\n"
        "    c.get('/x')\n"
        "with httpx.Client(base_url='u', timeout=60) as c:\n"
        "    pass\n"
    )
    assert calls_without_timeout(source) == [3, 4]
