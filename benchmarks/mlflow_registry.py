"""MLflow's registry calls through mlgov's MLflow API, beside MLflow 3.17's own figures (same shape, same load).

One registered model holding 10k versions, 16 concurrent keep-alive clients, MLflow's REST paths and messages:
get version, get-latest-versions, search (100 hits) and create version. MLflow's figures were measured on the
same kind of machine (2 cores, PostgreSQL, 16 connections; issue 16); mlgov's are measured here, now.

    .venv/bin/python benchmarks/mlflow_registry.py [--versions 10000] [--seconds 5] [--clients 16] [--pg URL]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import httpx
from registry_get import prepare, run_clients, serve  # the same seeding, server and load as the native GET benchmark

MLFLOW_317 = {"get version": 162.0, "get-latest-versions": 3.4, "search 100 hits": 55.0, "create version": 125.0}
API = "/api/2.0/mlflow"


def ok(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text


def calls(n_versions: int) -> dict[str, Callable[[httpx.Client, int], None]]:
    return {
        "get version": lambda c, j: ok(c.get(f"{API}/model-versions/get",
                                             params={"name": "bench", "version": str(j % n_versions + 1)})),
        "get-latest-versions": lambda c, _: ok(c.post(f"{API}/registered-models/get-latest-versions",
                                                      json={"name": "bench"})),
        "search 100 hits": lambda c, _: ok(c.get(f"{API}/model-versions/search",
                                                 params={"filter": "name = 'bench'", "max_results": "100"})),
        "create version": lambda c, j: ok(c.post(f"{API}/model-versions/create",
                                                 json={"name": "bench", "source": f"s3://m/new/{j}"})),
    }


def main() -> None:
    a, home, url, key, port = prepare(clients=16)
    proc = serve(url, home, port, 1, True)
    try:
        for name, call in calls(a.versions).items():
            run_clients(port, key, call, 0.5, a.clients)   # warm-up
            rps, lat = run_clients(port, key, call, a.seconds, a.clients)
            q = statistics.quantiles(lat, n=100)
            print(f"{name:20s} mlgov rps={rps:7.1f} p50_ms={q[49] * 1000:7.1f}  MLflow 3.17 rps={MLFLOW_317[name]:6.1f}"
                  f"  ratio={rps / MLFLOW_317[name]:6.1f}x  (backend={url.split(':')[0]}, versions={a.versions}, "
                  f"clients={a.clients})")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
