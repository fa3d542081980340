"""A capture window too big for one process: the local engine vs a 2-worker Dask LocalCluster, same Parquet files.

The window is ``--rows`` × ``--cols`` (40 Fractional, 5 Integral, 5 String columns at 50) written in partitions of
``--rows-per-file`` to a local object store, each file in row groups of 50,000 rows. A reference of 200,000 rows
is the baseline (exact, as a local baseline is). For windows of 1/8, 1/4, 1/2 and all of the rows:

- local: one process reads the window's files into one Arrow table (as ``window_table`` does) and runs
  ``analyze`` — time and peak RSS;
- dask: ``monitor.compute.Cluster.summarise`` (the service's path): the workers read the files from the store, one
  row group at a time, summarise and merge in a tree; the driver runs ``analyze_profiles`` on the merged summary —
  time, peak RSS of the driver (which also hosts the Dask scheduler) and of each worker (sampled every 50 ms).

Each run is a fresh child process so peak RSS is its own. The point is bounded memory per process as rows grow:
the largest window each handles within ``--limit-gib`` per process is the largest size run whose peaks stay under
it, and, for the local engine, the size at which its measured bytes-per-row would reach the limit.

    .venv/bin/python benchmarks/dask_window.py                       # 4M rows × 50 (a few minutes)
    .venv/bin/python benchmarks/dask_window.py --rows 20000000 --fractions 1/16,1/8,1  # the issue's window
    (local runs stop once their extrapolated peak passes twice the limit; --local-max-rows caps them too)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUP_ROWS = 50_000
CATEGORIES = np.array([f"cat-{i:02d}" for i in range(30)], dtype=object)


def columns_for(n_cols: int) -> tuple[int, int, int]:
    strings = max(1, n_cols // 10)
    ints = max(1, n_cols // 10)
    return n_cols - strings - ints, ints, strings


def make_table(rows: int, n_cols: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    floats, ints, strings = columns_for(n_cols)
    cols: dict[str, Any] = {}
    for i in range(floats):
        cols[f"f{i:02d}"] = rng.normal(i + shift, 1.0 + i / 10, rows)
    for i in range(ints):
        cols[f"i{i:02d}"] = rng.integers(0, 1000, rows)
    for i in range(strings):
        cols[f"s{i:02d}"] = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 30, rows).astype(np.int32)),
                                                           pa.array(CATEGORIES)).dictionary_decode()
    return pa.table(cols)


def generate(root: Path, rows: int, n_cols: int, per_file: int) -> list[str]:
    """The window's files, one ``per_file`` table at a time (generation's memory is one file's rows, whatever
    ``rows`` is); files already there are kept, so a larger run reuses a smaller one's."""
    keys = []
    (root / "window").mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, rows, per_file)):
        key = f"window/part-{i:05d}.parquet"
        path = root / key
        if not path.exists():
            t = make_table(min(per_file, rows - start), n_cols, seed=1000 + i, shift=0.05)
            pq.write_table(t, path, compression="zstd", row_group_size=GROUP_ROWS)
        keys.append(key)
    ref = root / "reference.parquet"
    if not ref.exists():
        pq.write_table(make_table(200_000, n_cols, seed=1), ref, compression="zstd")
    return keys


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(root: Path) -> tuple[list[Any], dict[str, Any]]:
    from monitor.engine import constraints
    from monitor.engine.analysis import profile

    _, profiles = profile(pq.read_table(root / "reference.parquet"))
    return profiles, constraints.suggest(profiles)


def child_local(root: Path, keys: list[str]) -> dict[str, Any]:
    from monitor.engine.analysis import analyze

    ref, cons = baseline(root)
    t0 = time.perf_counter()
    table = pa.concat_tables([pq.read_table(root / k) for k in keys])
    result = analyze(ref, cons, table)
    return {"seconds": time.perf_counter() - t0, "rows": result.rows, "driver_mb": peak_rss_mb(),
            "violations": len(result.violations), "drifted": len(result.summary()["drifted_features"])}


def child_dask(root: Path, keys: list[str], limit_gib: float) -> dict[str, Any]:
    import psutil
    from distributed import Client, LocalCluster

    from mlgov.settings import Settings
    from mlgov.storage import LocalStore
    from monitor import compute
    from monitor.engine.analysis import analyze_profiles

    ref, cons = baseline(root)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=f"{limit_gib}GiB",
                      dashboard_address=None) as lc, Client(lc) as client:
        pids = list(client.run(os.getpid).values())
        procs = [psutil.Process(p) for p in pids]
        peaks = [p.memory_info().rss for p in procs]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                for i, p in enumerate(procs):
                    with contextlib.suppress(psutil.Error):
                        peaks[i] = max(peaks[i], p.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cluster = compute.Cluster(lc.scheduler_address, Settings(compute=lc.scheduler_address))
        store = LocalStore(root)
        cluster.summarise(store, [compute.Part(keys[0], (0,))], compute.Read())   # warm up: imports on the workers
        t0 = time.perf_counter()
        summary = cluster.summarise(store, [compute.Part(k) for k in keys], compute.Read())
        result = analyze_profiles(ref, cons, summary.profiles, summary.types, summary.rows)
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        restarts = len([p for p in client.run(os.getpid).values() if p not in pids])
        cluster.close()
    return {"seconds": seconds, "rows": result.rows, "driver_mb": peak_rss_mb(),
            "workers_mb": [p / 2**20 for p in peaks], "restarted_workers": restarts,
            "violations": len(result.violations), "drifted": len(result.summary()["drifted_features"])}


def run_child(mode: str, root: Path, keys: list[str], limit_gib: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--root", str(root), "--limit-gib", str(limit_gib),
           "--keys", ",".join(keys)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def _would_exceed(slope: list[tuple[int, float]], rows: int, mb: float) -> bool:
    """Whether the local engine's peak, extrapolated from the runs so far, passes ``mb`` at ``rows`` (the shared
    machine is not pushed into swap to show what the extrapolation already says)."""
    if len(slope) < 2:
        return False
    (r0, m0), (r1, m1) = slope[0], slope[-1]
    return r1 > r0 and m0 + (m1 - m0) / (r1 - r0) * (rows - r0) > mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--cols", type=int, default=50)
    ap.add_argument("--rows-per-file", type=int, default=250_000)
    ap.add_argument("--limit-gib", type=float, default=2.0)
    ap.add_argument("--local-max-rows", type=int, default=None, help="skip local runs above this (RAM)")
    ap.add_argument("--fractions", default="1/8,1/4,1/2,1",
                    help="the window sizes run, as fractions of --rows (e.g. 1/8,1 to save time at 20M rows)")
    ap.add_argument("--root", type=Path, default=None, help="where the window is written (kept between runs)")
    ap.add_argument("--child", choices=["local", "dask"], help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        keys = args.keys.split(",")
        res = child_local(args.root, keys) if args.child == "local" else child_dask(args.root, keys, args.limit_gib)
        print(json.dumps(res))
        return
    root = args.root or Path(tempfile.gettempdir()) / f"mlgov-dask-window-{args.cols}c-{args.rows_per_file}"
    t0 = time.perf_counter()
    keys = generate(root, args.rows, args.cols, args.rows_per_file)
    on_disk = sum((root / k).stat().st_size for k in keys) / 2**20
    print(f"window: {args.rows:,} rows × {args.cols} columns in {len(keys)} Parquet files ({on_disk:,.0f} MiB, "
          f"zstd) under {root}; ready in {time.perf_counter() - t0:.0f} s (generator peak {peak_rss_mb():,.0f} MiB); "
          f"limit {args.limit_gib} GiB per process; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    limit_mb = args.limit_gib * 1024
    fractions = [Fraction(f) for f in args.fractions.split(",")]
    sizes = sorted({max(1, int(len(keys) * f)) for f in fractions})
    rows_of = {n: min(n * args.rows_per_file, args.rows) for n in sizes}
    print(f"{'rows':>12} | {'local s':>8} {'local MiB':>10} | {'dask s':>7} {'driver MiB':>10} "
          f"{'worker MiB (each)':>18} | same verdict")
    fits: dict[str, int] = {"local": 0, "dask": 0}
    slope: list[tuple[int, float]] = []
    for n in sizes:
        rows = rows_of[n]
        local = {"skipped": True} if (args.local_max_rows and rows > args.local_max_rows) or \
            _would_exceed(slope, rows, 2 * limit_mb) else run_child("local", root, keys[:n], args.limit_gib)
        dask = run_child("dask", root, keys[:n], args.limit_gib)
        if "driver_mb" in local:
            slope.append((rows, local["driver_mb"]))
            if local["driver_mb"] <= limit_mb:
                fits["local"] = max(fits["local"], rows)
        if "workers_mb" in dask and max(dask["workers_mb"] + [dask["driver_mb"]]) <= limit_mb \
                and not dask["restarted_workers"]:
            fits["dask"] = max(fits["dask"], rows)
        same = "—" if "violations" not in local or "violations" not in dask else \
            str((local["violations"], local["drifted"]) == (dask["violations"], dask["drifted"]))
        ls = f"{local['seconds']:8.1f} {local['driver_mb']:10,.0f}" if "seconds" in local else \
            f"{local.get('error', 'skipped')[:19]:>19}"
        each = " / ".join(f"{w:,.0f}" for w in dask.get("workers_mb", []))
        ds = f"{dask['seconds']:7.1f} {dask['driver_mb']:10,.0f} {each:>18}" if "seconds" in dask else \
            f"{dask.get('error', '')[:37]:>37}"
        print(f"{rows:>12,} | {ls} | {ds} | {same} (load {os.getloadavg()[0]:.1f})")
        sys.stdout.flush()
    print(f"largest window run within {args.limit_gib} GiB per process: local {fits['local']:,} rows, "
          f"dask {fits['dask']:,} rows (of {args.rows:,})")
    if len(slope) >= 2:
        (r0, m0), (r1, m1) = slope[0], slope[-1]
        per_row = (m1 - m0) / (r1 - r0) if r1 > r0 else 0.0
        if per_row > 0:
            print(f"local engine: {per_row * 2**20 / args.cols:,.1f} bytes per row per column at peak → "
                  f"{int(r0 + (limit_mb - m0) / per_row):,} rows × {args.cols} columns reach {args.limit_gib} GiB")


if __name__ == "__main__":
    main()
