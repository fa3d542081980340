"""All Clarify bias metrics for one facet on 1M rows: mlgov (counts once) vs a straightforward pandas
implementation of SageMaker's formulas (each metric computed from the frame, as smclarify does).

FlipTest (kNN over the features) is timed on its own line: it dominates any implementation.

    .venv/bin/python benchmarks/bias_vs_reference.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clarify.metrics import bias


def reference(df: pd.DataFrame) -> dict[str, float]:
    """One pandas expression per metric, SageMaker's definitions (0/0 → 0, x/0 → ±inf)."""
    def div(a: float, b: float) -> float:
        return (0.0 if a == 0 else math.copysign(math.inf, a)) if b == 0 else a / b

    a, d = df[~df.d], df[df.d]
    out: dict[str, float] = {}
    out["CI"] = div(len(a) - len(d), len(a) + len(d))
    qa, qd = a.y.mean(), d.y.mean()
    out["DPL"] = qa - qd
    pa, pd_ = np.array([qa, 1 - qa]), np.array([qd, 1 - qd])
    out["KL"] = float(sum(x * math.log(x / z) for x, z in zip(pa, pd_, strict=True) if x > 0 and z > 0))
    m = (pa + pd_) / 2
    out["JS"] = 0.5 * float(sum(x * math.log(x / z) for x, z in zip(pa, m, strict=True) if x > 0)
                            + sum(x * math.log(x / z) for x, z in zip(pd_, m, strict=True) if x > 0))
    out["LP"] = float(np.sqrt(((pa - pd_) ** 2).sum()))
    out["TVD"] = 0.5 * float(np.abs(pa - pd_).sum())
    out["KS"] = float(np.abs(pa - pd_).max())

    def cdd(col: str) -> float:
        total = 0.0
        for _, g in df.groupby("g"):
            rej, acc = g[~g[col]], g[g[col]]
            total += len(g) * (div(rej.d.sum(), len(rej)) - div(acc.d.sum(), len(acc)))
        return total / len(df)

    out["CDDL"] = cdd("y")
    out["DPPL"] = a.p.mean() - d.p.mean()
    out["DI"] = div(d.p.mean(), a.p.mean())
    out["DCA"] = div(a.y.sum(), a.p.sum()) - div(d.y.sum(), d.p.sum())
    out["DCR"] = div((~d.y).sum(), (~d.p).sum()) - div((~a.y).sum(), (~a.p).sum())

    def cm(g: pd.DataFrame) -> tuple[int, int, int, int]:
        return int((g.y & g.p).sum()), int((~g.y & g.p).sum()), int((~g.y & ~g.p).sum()), int((g.y & ~g.p).sum())

    (tpa, fpa, tna, fna), (tpd, fpd, tnd, fnd) = cm(a), cm(d)
    out["SD"] = div(tnd, tnd + fpd) - div(tna, tna + fpa)
    out["RD"] = div(tpa, tpa + fna) - div(tpd, tpd + fnd)
    out["DAR"] = div(tpa, tpa + fpa) - div(tpd, tpd + fpd)
    out["DRR"] = div(tnd, tnd + fnd) - div(tna, tna + fna)
    out["AD"] = (a.y == a.p).mean() - (d.y == d.p).mean()
    out["TE"] = div(fnd, fpd) - div(fna, fpa)
    out["CDDPL"] = cdd("p")
    b = df.p.astype(float) - df.y.astype(float) + 1
    out["GE"] = float(((b / b.mean()) ** 2 - 1).sum() / (2 * len(b)))
    return out


def ours(d: np.ndarray, y: np.ndarray, p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    c = bias.Counts.of(d, y, p)
    out = bias.pre_training(c, bias.conditional_disparity(d, y, g))
    out.update(bias.post_training(c, y, p, bias.conditional_disparity(d, p, g), None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.rows
    x = rng.normal(size=(n, 3))
    d = rng.random(n) < 0.35
    y = rng.random(n) < np.where(d, 0.45, 0.55)
    p = np.where(rng.random(n) < 0.8, y, ~y)
    g = rng.integers(0, 10, n)
    df = pd.DataFrame({"d": d, "y": y, "p": p, "g": g})
    t0 = time.perf_counter()
    mine = ours(d, y, p, g)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference(df)
    ref_s = time.perf_counter() - t0
    equal = all(math.isclose(mine[k], ref[k], rel_tol=1e-9, abs_tol=1e-12) for k in ref)
    for k in sorted(ref):
        print(f"{k:6s} ours={mine[k]: .12f} reference={ref[k]: .12f}")
    t0 = time.perf_counter()
    ft = bias.flip_test(x, d, p)
    ft_s = time.perf_counter() - t0
    print(f"FT (kNN k=5 on {n - d.sum():,} rows of group a, predicting {d.sum():,}): {ft:.4f} in {ft_s:.2f} s")
    print(f"rows={n} ours_s={ours_s:.3f} reference_s={ref_s:.3f} ratio={ref_s / ours_s:.1f} "
          f"equal={'true' if equal else 'false'}")


if __name__ == "__main__":
    main()
