"""A 100k-row tree model: global SHAP attributions for a baseline and a current window, and the nDCG
attribution-drift check (a Clarify user reported a 17-hour job for this; the goal is under 60 s).

    .venv/bin/python benchmarks/shap_attribution.py [--rows 100000] [--features 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clarify.metrics.drift import ndcg
from clarify.metrics.shap_values import explain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cols = [f"f{i}" for i in range(a.features)]
    x = pd.DataFrame(rng.normal(size=(a.rows, a.features)), columns=cols)
    w = np.linspace(2, 0.05, a.features)
    y = (x.to_numpy() @ w + rng.normal(0, 1, a.rows) > 0).astype(int)
    t0 = time.perf_counter()
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x.head(20_000), y[:20_000])
    train_s = time.perf_counter() - t0
    current = pd.DataFrame(rng.normal(size=(a.rows, a.features)), columns=cols)
    current["f0"] = 0.0                                   # the strongest feature stops varying
    t0 = time.perf_counter()
    base = explain(model, x)
    cur = explain(model, current)
    score = ndcg(base["global_shap_values"], cur["global_shap_values"])
    total = time.perf_counter() - t0
    print(f"model: GradientBoosting 100 trees depth 3 ({train_s:.1f} s to train on 20k rows, not counted)")
    print(f"method={base['method']} rows={a.rows} features={a.features} ndcg={score:.3f} "
          f"drift={'true' if score < 0.9 else 'false'} seconds={total:.2f} (two windows of global SHAP + nDCG)")


if __name__ == "__main__":
    main()
