"""All Clarify bias metrics for one facet value: mlgov vs smclarify 0.5 itself (the library SageMaker Clarify's
bias container runs), on the same CSV, each in its own process.

The CSV has three numeric features, a facet column (sensitive value "F"), a binary label, a binary prediction
and a group variable with ten subgroups. Both tools compute every pre-training metric (CI, DPL, KL, JS, LP, TVD,
KS, CDDL) and every post-training one (DPPL, DI, DCA, DCR, RD, DAR, DRR, AD, CDDPL, TE, GE, FT) for that one
facet value, the group variable feeding CDDL/CDDPL and left out of FlipTest's features on both sides.
mlgov runs its analysis_config.json path (``clarify.metrics.analysis.analyze``); smclarify runs
``bias_report`` for both stages. FlipTest (a kNN over the features) is timed on its own line: it dominates.

smclarify 0.5 pins old pandas and a plain ``pip install smclarify`` backtracks on aiobotocore for a long time, so it
runs in its own virtualenv, created by this script under ``.peers/smclarify`` (gitignored) on first use:
``pip install --no-deps smclarify==0.5`` then its runtime needs. Each process reads the CSV, warms up on its
first 2,000 rows, then is timed; numeric libraries' own pools are pinned to one thread in both, and each line
says how many threads each tool had (mlgov's FlipTest neighbours come from scipy's cKDTree on every core,
``workers=-1``; smclarify's scikit-learn kNN uses one).

    .venv/bin/python benchmarks/bias_vs_reference.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent))

import measure  # noqa: E402

PEER = ROOT / ".peers" / "smclarify"
PEER_DEPS = ["pandas<2.3", "numpy<2.3", "pyarrow", "pyfunctional", "boto3", "scikit-learn"]
FEATURES = ["x0", "x1", "x2"]
PRE = ["CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD"]
POST = ["AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "GE", "RD", "SD", "TE"]  # FT apart

SMCLARIFY_WORKER = textwrap.dedent("""
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    spec = json.loads(open(sys.argv[1]).read())
    sys.path.insert(0, spec["benchmarks"])
    import measure
    import pandas as pd
    from smclarify.bias import report

    def run(df, pre, post):
        label = report.LabelColumn("label", df["label"], [1])
        facet = report.FacetColumn("facet", ["F"])
        group = df["group"]
        frame = df.drop(columns=["group"])      # the group variable is not a feature (FlipTest's kNN)
        out = {}
        if pre:
            res = report.bias_report(frame, facet, label, report.StageType.PRE_TRAINING, metrics=pre,
                                     group_variable=group)
            out.update({m["name"]: m["value"] for m in res[0]["metrics"]})
        if post:
            pred = report.LabelColumn("pred", df["pred"], [1])
            res = report.bias_report(frame, facet, label, report.StageType.POST_TRAINING, pred, metrics=post,
                                     group_variable=group)
            out.update({m["name"]: m["value"] for m in res[0]["metrics"]})
        return out

    df = pd.read_csv(spec["csv"])
    run(df.head(2000), spec["pre"], spec["post"] + ["FT"])   # warm: imports, code paths
    metrics_m, values = measure.timed(lambda: run(df, spec["pre"], spec["post"]))
    ft_m, ft = measure.timed(lambda: run(df, [], ["FT"]))
    values.update(ft)
    measure.emit({"metrics": metrics_m, "ft": ft_m, "values": values})
""")


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    sensitive = rng.random(rows) < 0.35
    y = rng.random(rows) < np.where(sensitive, 0.45, 0.55) + 0.05 * x[:, 0].clip(-1, 1)
    p = np.where(rng.random(rows) < 0.8, y, ~y)
    pd.DataFrame(
        {
            "x0": x[:, 0].round(6),
            "x1": x[:, 1].round(6),
            "x2": x[:, 2].round(6),
            "facet": np.where(sensitive, "F", "M"),
            "label": y.astype(int),
            "pred": p.astype(int),
            "group": rng.integers(0, 10, rows),
        }
    ).to_csv(path, index=False)


def ours_worker(csv: str) -> None:
    from clarify.metrics import analysis

    def run(df: pd.DataFrame, pre: list[str], post: list[str]) -> dict[str, float]:
        methods: dict[str, Any] = {}
        if pre:
            methods["pre_training_bias"] = {"methods": pre}
        if post:
            methods["post_training_bias"] = {"methods": post}
        cfg = {
            "label": "label",
            "label_values_or_threshold": [1],
            "predicted_label": "pred",
            "facet": [{"name_or_index": "facet", "value_or_threshold": ["F"]}],
            "group_variable": "group",
            "methods": methods,
        }
        out = analysis.analyze(df, cfg)
        return {
            m["name"]: analysis.metric_value(m)
            for key in ("pre_training_bias_metrics", "post_training_bias_metrics")
            if key in out
            for m in out[key]["facets"]["facet"][0]["metrics"]
        }

    df = pd.read_csv(csv)
    run(df.head(2000), PRE, [*POST, "FT"])
    metrics_m, values = measure.timed(lambda: run(df, PRE, POST))
    ft_m, ft = measure.timed(lambda: run(df, [], ["FT"]))
    measure.emit({"metrics": metrics_m, "ft": ft_m, "values": {**values, **ft}})


def peer_python() -> Path:
    """smclarify's virtualenv (created once, under the gitignored .peers/)."""
    py = PEER / "bin" / "python"
    ready = "import smclarify.bias.report, sklearn, pyarrow"
    if py.exists() and subprocess.run([str(py), "-c", ready], capture_output=True).returncode == 0:
        return py
    base = next((c for c in ("python3.11", "python3.12", "python3.10") if shutil.which(c)), None)
    if base is None:
        raise SystemExit("smclarify 0.5 needs Python 3.10–3.12 (none found)")
    print(f"creating smclarify's virtualenv in {PEER} (first run only; a minute or two)", flush=True)
    subprocess.run([base, "-m", "venv", str(PEER)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "smclarify==0.5"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_DEPS], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        ours_worker(a.worker)
        return
    py = peer_python()
    work = Path(tempfile.mkdtemp(prefix="bias-bench-"))
    try:
        csv = work / "data.csv"
        make_csv(csv, a.rows)
        print(f"{a.rows:,} rows; load average before: {measure.load_average()}", flush=True)
        ours = measure.run_worker(sys.executable, str(HERE), ["--worker", str(csv)])
        spec = work / "spec.json"
        spec.write_text(json.dumps({"csv": str(csv), "pre": PRE, "post": POST, "benchmarks": str(HERE.parent)}))
        (work / "smclarify_worker.py").write_text(SMCLARIFY_WORKER)
        theirs = measure.run_worker(str(py), str(work / "smclarify_worker.py"), [str(spec)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    worst = 0.0
    print(f"{'metric':6} {'mlgov':>22} {'smclarify 0.5':>22} {'|difference|':>13}")
    for name in [*PRE, *POST, "FT"]:
        mine, ref = ours["values"].get(name), theirs["values"].get(name)
        mine_f = float("nan") if mine is None else float(mine)
        ref_f = float("nan") if ref is None else float(ref)
        both_inf = math.isinf(mine_f) and mine_f == ref_f
        gap = 0.0 if both_inf else abs(mine_f - ref_f)
        worst = max(worst, gap) if not math.isnan(gap) else math.inf
        print(f"{name:6} {mine_f: .15e} {ref_f: .15e} {gap:13.2e}")
    print(measure.describe("mlgov, all metrics but FT", ours["metrics"]))
    print(measure.describe("smclarify, all metrics but FT", theirs["metrics"]))
    print(measure.describe("mlgov, FT", ours["ft"]))
    print(measure.describe("smclarify, FT", theirs["ft"]))
    o_all = ours["metrics"]["seconds"] + ours["ft"]["seconds"]
    t_all = theirs["metrics"]["seconds"] + theirs["ft"]["seconds"]
    o_cpu = ours["metrics"]["cpu_s"] + ours["ft"]["cpu_s"]
    t_cpu = theirs["metrics"]["cpu_s"] + theirs["ft"]["cpu_s"]
    print(
        f"rows={a.rows} ours_s={ours['metrics']['seconds']:.3f} smclarify_s={theirs['metrics']['seconds']:.3f} "
        f"ratio={theirs['metrics']['seconds'] / ours['metrics']['seconds']:.1f} "
        f"ours_with_ft_s={o_all:.3f} smclarify_with_ft_s={t_all:.3f} ratio_with_ft={t_all / o_all:.1f} "
        f"cpu_ratio={t_cpu / o_cpu:.1f} "
        f"largest_difference={worst:.2e} load_after={measure.load_average().replace(' ', '/')}"
    )


if __name__ == "__main__":
    main()
