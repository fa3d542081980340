"""Baseline size on disk at 1M and 10M rows: every reference value (what local baselines kept before) against the
bounded quantile summary they keep now, and what the summary costs a drift run.

For each size it builds the same reference (four numeric columns of different shapes and one text column), writes
the baseline's files as ``create_baseline`` does into a local object store twice — once with every value
(``reference.parquet``, the old layout) and once bounded (``reference-quantiles.parquet``) — and prints each file's
bytes. Then one drift run per layout against a 100k-row window (Wasserstein, Evidently's default for these columns,
PSI and L∞), with CPU seconds, every statistic's difference, the bound each result states, and scipy's K-S distance
and Wasserstein distance on the raw values as the truth (a Wasserstein error is at most the CDF bound × the
column's range ÷ its standard deviation).

    python benchmarks/baseline_size.py [--rows 1000000 10000000] [--window 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import stats as sps

from mlgov.storage import LocalStore
from monitor import layout
from monitor.engine import constraints as cons
from monitor.engine import quantiles
from monitor.engine.analysis import DriftConfig, analyze, profile
from monitor.engine.stats import bounded_reference, statistics_json


def table(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"income": rng.normal(50_000 + shift, 12_000, n), "spend": rng.lognormal(3, 1, n),
                     "age": rng.integers(18, 90, n), "score": np.round(rng.normal(0.5, 0.2, n), 3),
                     "state": pa.array(rng.choice(["CA", "NY", "TX", "WA", "FL"], n))})


def files_of(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(root.iterdir())}


def run(rows: int, window: int) -> dict[str, Any]:
    ref = table(rows, seed=0)
    c0 = time.process_time()
    _, profiles = profile(ref)
    profile_cpu = time.process_time() - c0
    stats, constraints = statistics_json(profiles), cons.suggest(profiles)
    c0 = time.process_time()
    kept, exact = bounded_reference(profiles)
    bound_cpu = time.process_time() - c0
    out: dict[str, Any] = {"rows": rows, "columns": ref.num_columns, "profile_cpu_s": round(profile_cpu, 2),
                           "summarise_cpu_s": round(bound_cpu, 3), "bounded_exact": exact}
    cur = table(window, seed=1, shift=600.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        results = {}
        for name, which in (("before_every_value", profiles), ("after_bounded", kept)):
            store.put(f"{name}/statistics.json", layout.dumps(stats))
            store.put(f"{name}/constraints.json", layout.dumps(constraints))
            layout.save_profile(store, name, which)
            sizes = files_of(Path(tmp) / name)
            out[name] = {"files": sizes, "total_bytes": sum(sizes.values())}
            c0 = time.process_time()
            loaded = layout.load_profiles(store, name)
            load_cpu = time.process_time() - c0
            drift = {}
            for method in ("wasserstein", "psi", "linf_simple"):
                c0 = time.process_time()
                found = analyze(loaded, constraints, cur, DriftConfig(numerical=method)).drift
                drift[method] = ({r.feature: r for r in found}, time.process_time() - c0)
            out[name]["load_cpu_s"] = round(load_cpu, 3)
            out[name]["drift_cpu_s"] = {m: round(c, 3) for m, (_, c) in drift.items()}
            results[name] = drift
        diffs: dict[str, Any] = {}
        for method in ("wasserstein", "psi", "linf_simple"):
            e, b = results["before_every_value"][method][0], results["after_bounded"][method][0]
            diffs[method] = {f: {"exact": e[f].statistic, "bounded": b[f].statistic,
                                 "abs_diff": abs(e[f].statistic - b[f].statistic),
                                 "bound_exact": e[f].bound, "bound_bounded": b[f].bound,
                                 "same_verdict": e[f].drifted == b[f].drifted}
                             for f in e if e[f].kind == "numerical"}
        for f, row in diffs["linf_simple"].items():       # the truth on the raw values: scipy
            a, c = ref.column(f).to_numpy().astype(float), cur.column(f).to_numpy().astype(float)
            sd, span = float(np.std(a)), float(a.max() - a.min())
            row["scipy"] = float(sps.ks_2samp(a, c).statistic)
            w = diffs["wasserstein"][f]
            w["scipy"] = float(sps.wasserstein_distance(a, c)) / max(sd, 0.001)
            w["bound_bounded_in_wasserstein_units"] = w["bound_bounded"] * span / max(sd, 0.001)
        out["drift"] = diffs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--window", type=int, default=100_000)
    args = ap.parse_args()
    print(json.dumps({"load_average": os.getloadavg(), "points": quantiles.POINTS,
                      "exact_limit": quantiles.EXACT_LIMIT}))
    for rows in args.rows:
        print(json.dumps(run(rows, args.window), indent=1))
    print(json.dumps({"load_average_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
