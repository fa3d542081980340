"""The dependency direction of DESIGN.md, checked on the source with the standard ``ast`` module.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): an import
hidden in a function body is still a dependency, it only moves the failure to run time.

- the kernel (``mlgov``) imports a domain only in its composition roots;
- ``lineage`` is a sink: it imports no other domain;
- pure computation (``monitor/engine/``, ``clarify/metrics/``) imports no kernel, database, web or HTTP code;
- ``monitor`` never imports ``clarify`` (clarify registers its monitor kinds with monitor at composition time);
- a domain reaches another domain through its service, never its rows (``orm``);
- no domain imports a composition root (``mlgov.app``, ``mlgov.cli``, …): the roots import the domains;
- the packages form no cycle (composition roots stand outside the graph: they import everything by design).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "mlgov"
DOMAINS = ("registry", "lineage", "monitor", "clarify", "console")
PACKAGES = (KERNEL, *DOMAINS)
# The kernel's composition roots: they build the app, the CLI, the SDK client, the demo and the migrations'
# complete metadata.
COMPOSITION_ROOTS = ("mlgov.app", "mlgov.cli", "mlgov.client", "mlgov.demo", "mlgov.metadata",
                     "mlgov.migrations.env")
PURE = ("monitor.engine", "clarify.metrics", "lineage.graph")
NOT_IN_PURE = ("mlgov", "sqlalchemy", "alembic", "fastapi", "starlette", "httpx", "requests", "urllib.request",
               "urllib3", "http.client", "aiohttp", "boto3", "botocore", *DOMAINS)
PURE_MAY_USE = {"monitor.engine": ("monitor.engine",), "clarify.metrics": ("clarify.metrics",),
                "lineage.graph": ()}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        if not (ROOT / package).is_dir():
            continue
        for path in sorted((ROOT / package).rglob("*.py")):
            if "versions" in path.relative_to(ROOT).parts[:-1]:   # Alembic revisions: frozen, schema only
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def imports_of(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported name) for every import in the file, relative ones resolved; ``from a import b`` is ``a.b``
    (b may be a module or a name in a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _top(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _imports() -> list[tuple[str, int, str]]:
    return [(name, line, imported) for name, path in MODULES.items() for line, imported in imports_of(name, path)]


IMPORTS = _imports()


def _where(name: str, line: int, imported: str) -> str:
    return f"{MODULES[name].relative_to(ROOT)}:{line} imports {imported}"


def test_the_check_sees_the_tree() -> None:
    assert {"mlgov.app", "mlgov.db", "monitor.schedules", "clarify.service", "lineage.service"} <= set(MODULES)
    assert any(imported == "lineage.service" for name, _, imported in IMPORTS if name.startswith("registry"))


def test_kernel_imports_no_domain_outside_its_composition_roots() -> None:
    bad = [_where(*i) for i in IMPORTS if _top(i[0]) == KERNEL and i[0] not in COMPOSITION_ROOTS
           and _top(i[2]) in DOMAINS]
    assert bad == [], "the kernel may import domains only in " + ", ".join(COMPOSITION_ROOTS) + ":\n" + "\n".join(bad)


def test_no_domain_imports_a_composition_root() -> None:
    """Roots import the domains; a domain needing what a root offers (e.g. the CLI's database) gets it from a
    kernel module both import (``mlgov.cli_support``), else root and domain would import each other."""
    bad = [_where(*i) for i in IMPORTS if _top(i[0]) in DOMAINS and _within(i[2], COMPOSITION_ROOTS)]
    assert bad == [], "domains import the kernel, never its composition roots:\n" + "\n".join(bad)


def test_lineage_is_a_sink() -> None:
    bad = [_where(*i) for i in IMPORTS if _top(i[0]) == "lineage" and _top(i[2]) in DOMAINS
           and _top(i[2]) != "lineage"]
    assert bad == [], "lineage imports no other domain:\n" + "\n".join(bad)


@pytest.mark.parametrize("pure", PURE)
def test_pure_computation_imports_no_kernel_database_web_or_http(pure: str) -> None:
    assert any(_within(name, (pure,)) for name in MODULES), f"{pure} not found"
    bad = [_where(*i) for i in IMPORTS if _within(i[0], (pure,)) and _within(i[2], NOT_IN_PURE)
           and not _within(i[2], PURE_MAY_USE[pure])]
    assert bad == [], f"{pure} is pure computation (arrays in, typed results out):\n" + "\n".join(bad)


def test_monitor_never_imports_clarify() -> None:
    bad = [_where(*i) for i in IMPORTS if _top(i[0]) == "monitor" and _top(i[2]) == "clarify"]
    assert bad == [], "clarify registers its kinds with monitor; monitor never imports clarify:\n" + "\n".join(bad)


def test_no_domain_touches_another_domains_rows() -> None:
    bad = [_where(*i) for i in IMPORTS if _top(i[0]) in DOMAINS and _top(i[2]) in DOMAINS
           and _top(i[0]) != _top(i[2]) and _within(i[2], (f"{_top(i[2])}.orm",))]
    assert bad == [], "call the other domain's service, never its orm:\n" + "\n".join(bad)


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package → imported package → where, without the composition roots (they import everything by design)."""
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for name, line, imported in IMPORTS:
        src, dst = _top(name), _top(imported)
        if name in COMPOSITION_ROOTS or dst not in PACKAGES or dst == src:
            continue
        graph[src].setdefault(dst, []).append(_where(name, line, imported))
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every elementary cycle, each once (rotated to start at its smallest package)."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in graph[path[-1]]:
            if nxt == path[0]:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in graph:
        walk([start])
    return [list(c) for c in sorted(found)]


def test_no_package_cycle() -> None:
    graph = package_graph()
    found = cycles(graph)
    lines = []
    for cycle in found:
        lines.append(" → ".join([*cycle, cycle[0]]))
        for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            lines += [f"    {w}" for w in graph[a][b][:3]]
    assert found == [], "package cycles:\n" + "\n".join(lines)


def test_the_cycle_finder_finds_cycles() -> None:
    where = {"x": ["here"]}
    assert cycles({"a": {"b": where["x"]}, "b": {"c": where["x"]}, "c": {"a": where["x"]}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": where["x"]}, "b": {}}) == []
