"""Runs inside the Helm tool virtualenv (`make helm-tools`, Python >= 3.12), not under pytest: lints and renders
the chart with Helm's own library and validates every rendered manifest against the Kubernetes schemas.

Reads one JSON request on stdin: {"chart": path, "kube_versions": [...], "cases": [{"name", "values"}]} and
prints one JSON answer: per case, `helm lint --strict` findings, the rendered manifests (or the render error), the
keys each manifest repeats, and the kubernetes-validate --strict verdict of each manifest for each Kubernetes
version. Judging is left to tests/deploy/test_helm_chart.py.

Libraries: helm-python-sdk (Helm v4's chart loader, renderer, linter and values-schema validator, in-process; no
helm binary, no cluster) and kubernetes-validate. helm-sdkpy's own lint (no values, no strict mode) is run too;
helm-sdkpy has no render or dry-run entry point, so it cannot render.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import helm_python
import helm_sdkpy
import kubernetes_validate
import yaml


def lint(chart: str, values: dict[str, Any], kube_version: str) -> dict[str, Any]:
    report = helm_python.lint(chart, values, strict=True, kube_version=f"v{kube_version}")
    return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}


def validate(doc: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return f"schema: {exc}"
    return None


class _Loader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping; this loader also notes them (a ConfigMap key written
    twice is ambiguous to whatever reads the manifest next)."""

    duplicates: list[str]


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            loader.duplicates.append(str(key))
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(text: str) -> list[tuple[Any, list[str]]]:
    """The documents of ``text``, each with the keys it repeats."""
    loader = _Loader(text)
    out = []
    try:
        while loader.check_data():
            loader.duplicates = []
            doc = loader.get_data()
            out.append((doc, loader.duplicates))
    finally:
        loader.dispose()
    return out


def run_case(chart: str, case: dict[str, Any], versions: list[str]) -> dict[str, Any]:
    values = case["values"]
    out: dict[str, Any] = {"name": case["name"], "lint": {v: lint(chart, values, v) for v in versions}}
    try:
        rendered = helm_python.Chart.load(chart).render(values, name="rel", namespace="mlgov", is_install=True)
    except helm_python.HelmError as exc:
        out["render_error"] = f"{type(exc).__name__}: {exc}"
        return out
    manifests = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for doc, duplicates in load_all(text):
            if doc:
                manifests.append({"template": template, "doc": doc, "duplicate_keys": duplicates,
                                  "invalid": {v: validate(doc, v) for v in versions}})
    out["manifests"] = manifests
    return out


def main() -> None:
    request = json.load(sys.stdin)
    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in request["kube_versions"]]
    cfg = helm_sdkpy.Configuration(namespace="mlgov")
    bare = asyncio.run(helm_sdkpy.Lint(cfg).run(request["chart"]))
    answer = {"versions": versions, "helm_sdkpy_lint": bare,
              "helm": helm_python.helm_sdk_version(),
              "cases": [run_case(request["chart"], c, versions) for c in request["cases"]]}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
