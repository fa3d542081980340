"""Drift end to end, mlgov's engine vs Evidently 0.7 DataDriftPreset, same frames, same process.

Ours includes the baseline (profiling the reference, KLL sketches, suggested constraints, statistics.json),
then the analysis of the current frame (profile, six constraint checks, per-column drift with Evidently's
default method choice, current statistics.json). Evidently runs DataDriftPreset on the same frames. Both
verdicts are compared column by column (same method, as Evidently chooses it).

    .venv/bin/python benchmarks/drift_vs_evidently.py --rows 100000 --cols 25
    .venv/bin/python benchmarks/drift_vs_evidently.py --rows 1000000 --cols 50 --skip-evidently
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.engine import constraints, stats
from monitor.engine.analysis import analyze, profile

EVIDENTLY_METHOD = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
                    "K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z", "PSI": "psi"}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS:
    """Samples RSS every 5 ms while the block runs; reports the peak above the level at entry."""

    def __enter__(self) -> PeakRSS:
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def delta(self) -> float:
        return self.peak - self.start


def make_frames(rows: int, cols: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    n_cat = max(1, cols // 5)
    num_names = [f"num_{i}" for i in range(cols - n_cat)]
    cat_names = [f"cat_{i}" for i in range(n_cat)]
    ref, cur = {}, {}
    for i, name in enumerate(num_names):
        shift = 0.5 if i % 4 == 0 else 0.0          # a quarter of the numeric columns drift
        ref[name] = rng.normal(10 + i, 1 + i % 3, rows)
        cur[name] = rng.normal(10 + i + shift * (1 + i % 3), 1 + i % 3, rows)
    cats = np.array([f"c{j}" for j in range(12)])
    p = np.linspace(1, 2, 12)
    p /= p.sum()
    for i, name in enumerate(cat_names):
        q = p[::-1] if i % 2 == 0 else p                # every other categorical column drifts
        ref[name] = rng.choice(cats, rows, p=p)
        cur[name] = rng.choice(cats, rows, p=q)
    return pd.DataFrame(ref), pd.DataFrame(cur), num_names, cat_names


def run_ours(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, tuple[str, float, bool]]:
    _, base = profile(ref)
    cons = constraints.suggest(base)
    stats.statistics_json(base)
    result = analyze(base, cons, cur)
    return {d.feature: (d.method, d.statistic, d.drifted) for d in result.drift}


def run_evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str]
) -> dict[str, tuple[str, float, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snap = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=dd),
                                           reference_data=Dataset.from_pandas(ref, data_definition=dd))
    out = {}
    for m in snap.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method = EVIDENTLY_METHOD.get(cfg["method"], cfg["method"])
        value, thr = float(m["value"]), float(cfg["threshold"])
        drifted = value < thr if method in ("chisquare", "z") else value <= thr if method == "ks" else value >= thr
        out[cfg["column"]] = (method, value, drifted)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cols", type=int, default=25)
    ap.add_argument("--skip-evidently", action="store_true", help="only time ours (e.g. for scaling runs)")
    a = ap.parse_args()
    ref, cur, num, cat = make_frames(a.rows, a.cols)
    run_ours(ref.head(2000), cur.head(2000))  # warm imports and code paths
    with PeakRSS() as ours_mem:
        t0 = time.perf_counter()
        ours = run_ours(ref, cur)
        ours_s = time.perf_counter() - t0
    print(f"ours: {ours_s:.3f} s, peak RSS +{ours_mem.delta:.0f} MB (process {ours_mem.peak:.0f} MB)")
    ev_s, ev_mem, same = float("nan"), float("nan"), None
    if not a.skip_evidently:
        with PeakRSS() as m:
            t0 = time.perf_counter()
            theirs = run_evidently(ref, cur, num, cat)
            ev_s = time.perf_counter() - t0
        ev_mem = m.delta
        print(f"evidently: {ev_s:.3f} s, peak RSS +{m.delta:.0f} MB (process {m.peak:.0f} MB)")
        mismatches = [(c, ours.get(c), theirs[c]) for c in theirs
                      if ours.get(c) is None or ours[c][0] != theirs[c][0] or ours[c][2] != theirs[c][2]]
        worst = max((abs(ours[c][1] - theirs[c][1]) for c in theirs if c in ours), default=0.0)
        same = not mismatches
        print(f"columns compared: {len(theirs)}; method+verdict mismatches: {len(mismatches)}; "
              f"largest statistic difference: {worst:.2e}")
        for mm in mismatches[:5]:
            print("  mismatch:", mm)
    drifted = sorted(c for c, v in ours.items() if v[2])
    print(f"drifted columns (ours): {len(drifted)} of {len(ours)}")
    ratio = ev_s / ours_s if ev_s == ev_s else float("nan")
    print(f"rows={a.rows} cols={a.cols} ours_s={ours_s:.3f} evidently_s={ev_s:.3f} ratio={ratio:.1f} "
          f"ours_peak_mb={ours_mem.delta:.0f} evidently_peak_mb={ev_mem:.0f} "
          f"same_verdicts={'true' if same else 'false' if same is not None else 'n/a'}")


if __name__ == "__main__":
    main()
