"""Every error mlgov raises for a caller says how to fix it (the README promises `fix` beside `detail`), checked on
the source with ``ast``: a raise of a DomainError class passes ``fix=``, and a subclass that builds its own
message passes one to its base."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlgov", "registry", "monitor", "clarify", "lineage", "console")


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _passes_fix(call: ast.Call) -> bool:
    return any(k.arg in ("fix", None) for k in call.keywords) or len(call.args) > 1


def errors_without_fix(sources: dict[str, str]) -> list[str]:
    trees = {where: ast.parse(text) for where, text in sources.items()}
    classes = {n.name: n for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.ClassDef)}
    domain = {"DomainError"}
    grew = True
    while grew:   # subclasses of subclasses, in any file
        found = {name for name, c in classes.items() if any(_name(b) in domain for b in c.bases)}
        grew, domain = not found <= domain, domain | found
    own_init = {name for name in domain - {"DomainError"} if name in classes and any(
        isinstance(f, ast.FunctionDef) and f.name == "__init__" for f in classes[name].body)}
    missing = []
    for where, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = _name(node.exc.func)
                if name in domain and name not in own_init and not _passes_fix(node.exc):
                    missing.append(f"{where}:{node.lineno} {name}")
            if isinstance(node, ast.ClassDef) and node.name in own_init:
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and _name(call.func) == "__init__" and \
                            isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Call) and \
                            _name(call.func.value.func) == "super" and not _passes_fix(call):
                        missing.append(f"{where}:{call.lineno} {node.name}.__init__")
    return sorted(missing)


def test_every_domain_error_raised_says_how_to_fix_it() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert len(sources) > 100
    missing = errors_without_fix(sources)
    assert not missing, f"give these errors fix=... (how the caller can fix it): {missing}"


def test_the_rule_finds_an_error_without_fix() -> None:
    source = (
        "class DomainError(Exception): ...\n"
        "class Invalid(DomainError): ...\n"
        "class Gone(Invalid):\n"
        "    def __init__(self, what):\n"
        "        super().__init__(f'{what} is gone')\n"
        "class Kept(Invalid):\n"
        "    def __init__(self, what):\n"
        "        super().__init__(what, fix='ask again')\n"
        "raise Invalid('bad', fix='send a good one')\n"
        "raise Invalid('bad')\n"
        "raise Gone('x')\n"
        "raise Kept('x')\n"
        "raise ValueError('not ours')\n"
    )
    assert errors_without_fix({"m.py": source}) == ["m.py:10 Invalid", "m.py:5 Gone.__init__"]
