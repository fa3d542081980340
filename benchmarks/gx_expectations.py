"""A Great Expectations suite on 1M rows: mlgov's Arrow evaluator vs Great Expectations 1.x itself, same data.

Each side runs in its own process (GX's import, ~5-35 s here, is outside the timer and its memory
outside mlgov's), warmed up with one run, then best of three. Prints times, the ratio, each process's
peak RSS, and whether every result (success, counts, observed values) agrees.

    .venv/bin/python benchmarks/gx_expectations.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUITE = {"name": "bench", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "income", "mostly": 0.9}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 18, "max_value": 90}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "state",
                                                            "value_set": ["CA", "NY", "TX", "WA"], "mostly": 0.9}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "income", "min_value": 45, "max_value": 55}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "code", "regex": "^[A-Z]\\d{3}$"}},
]}
KEYS = ("success", "element_count", "unexpected_count", "unexpected_percent", "observed_value")


def make(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    income = rng.normal(50, 10, rows)
    income[rng.random(rows) < 0.02] = np.nan
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    code = np.char.add(rng.choice(letters, rows), rng.integers(100, 1000, rows).astype(str))
    pq.write_table(pa.table({"age": rng.integers(18, 91, rows), "income": income,
                             "state": rng.choice(["CA", "NY", "TX", "WA", "OR"], rows, p=[.3, .3, .2, .15, .05]),
                             "code": code}), path)


def side(which: str, path: str) -> None:
    """One side, in its own process: prints JSON with its best time, peak RSS and flat results."""
    table = pq.read_table(path)
    if which == "mlgov":
        from monitor.engine import expectations

        def run() -> list[dict[str, Any]]:
            return expectations.run_suite(table, SUITE)["results"]
    else:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = (ctx.data_sources.add_pandas("p").add_dataframe_asset("t").add_batch_definition_whole_dataframe("b")
                 .get_batch(batch_parameters={"dataframe": table.to_pandas()}))
        suite = gx.ExpectationSuite(**{**SUITE, "expectations": [
            {**e, "meta": {"i": i}} for i, e in enumerate(SUITE["expectations"])]})

        def run() -> list[dict[str, Any]]:
            res = sorted(batch.validate(suite).to_json_dict()["results"],
                         key=lambda r: r["expectation_config"]["meta"]["i"])
            return [{"success": r["success"], "result": r["result"]} for r in res]
    run()  # warm-up
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t0)
    flat = [{k: (r.get(k) if k == "success" else (r.get("result") or {}).get(k)) for k in KEYS} for r in out]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": best, "peak_mb": peak_mb, "results": flat}, default=float))


def agree(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--side", choices=["mlgov", "gx"])
    ap.add_argument("--data")
    a = ap.parse_args()
    if a.side:
        side(a.side, a.data)
        return
    data = Path("/tmp") / f"mlgov-gx-bench-{a.rows}.parquet"
    if not data.exists():
        make(data, a.rows)
    out = {}
    for which in ("mlgov", "gx"):
        proc = subprocess.run([sys.executable, __file__, "--side", which, "--data", str(data)],
                              capture_output=True, text=True, check=True)
        out[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    same = all(agree(x[k], y[k]) for x, y in zip(out["mlgov"]["results"], out["gx"]["results"], strict=True)
               for k in KEYS if y[k] is not None)
    m, g = out["mlgov"], out["gx"]
    print(f"{a.rows:,} rows x {len(SUITE['expectations'])} expectations, each side in its own process, warmed up")
    print(f"  mlgov (Arrow):           {m['seconds']:.3f} s   peak RSS {m['peak_mb']:.0f} MB")
    print(f"  Great Expectations 1.x:  {g['seconds']:.3f} s   peak RSS {g['peak_mb']:.0f} MB")
    print(f"  ratio {g['seconds'] / m['seconds']:.1f}x   results agree: {same}")


if __name__ == "__main__":
    main()
