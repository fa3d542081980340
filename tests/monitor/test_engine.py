"""The pure monitoring engine against references: SageMaker's own files, scipy, Evidently's formulas."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial import distance

from monitor.engine import constraints, drift, ecdf, kll
from monitor.engine.analysis import DriftConfig, analyze, profile
from monitor.engine.columns import columns, read_table
from monitor.engine.stats import merge_profiles, profile_column, profiles_from_statistics, statistics_json

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker"


def fixture(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def fixture_csv() -> bytes:
    """The 100 raw rows behind SageMaker's statistics.json: its KLL level 0 holds every value."""
    stats = fixture("data_quality_statistics.json")
    cols = [f["numerical_statistics"]["distribution"]["kll"]["sketch"]["data"][0] for f in stats["features"]]
    return "\n".join(",".join(f"{c[i]:.1f}" for c in cols) for i in range(len(cols[0]))).encode()


def base_profiles():
    cols = columns(read_table(fixture_csv(), header=False))
    return cols, [profile_column(c) for c in cols]


def test_reproduces_sagemaker_statistics_from_the_same_values():
    sm = fixture("data_quality_statistics.json")
    _, profiles = base_profiles()
    ours = statistics_json(profiles)
    assert ours["dataset"] == sm["dataset"]
    for a, b in zip(ours["features"], sm["features"], strict=True):
        assert a["name"] == b["name"] and a["inferred_type"] == b["inferred_type"]
        na, nb = a["numerical_statistics"], b["numerical_statistics"]
        assert na["common"] == nb["common"]
        for k in ("mean", "sum", "std_dev", "min", "max"):
            assert na[k] == pytest.approx(nb[k], rel=1e-12)
        ka, kb = na["distribution"]["kll"], nb["distribution"]["kll"]
        assert ka["buckets"] == kb["buckets"]
        assert ka["sketch"]["parameters"] == kb["sketch"]["parameters"]
        assert [sorted(x) for x in ka["sketch"]["data"]] == [sorted(x) for x in kb["sketch"]["data"]]


def test_suggested_constraints_match_sagemaker():
    _, profiles = base_profiles()
    assert constraints.suggest(profiles) == fixture("data_quality_constraints_suggested.json")


def test_bad_case_raises_data_type_check_for_c5_only():
    cols, profiles = base_profiles()
    v = constraints.check(fixture("data_quality_constraints_bad_case.json"), profiles, profiles, cols)
    assert [(x["feature_name"], x["constraint_check_type"]) for x in v] == [("_c5", "data_type_check")]
    assert "Expected data type: String" in v[0]["description"]
    assert constraints.check(fixture("data_quality_constraints_suggested.json"), profiles, profiles, cols) == []


def test_reads_sagemaker_statistics_back_into_profiles():
    sm = fixture("data_quality_statistics.json")
    back = profiles_from_statistics(sm)
    assert statistics_json(back)["features"][0]["numerical_statistics"]["mean"] == pytest.approx(2.31)
    # an imported (sketch-only) baseline still judges drift; with ≤ k values the sketch is exact
    _, profiles = base_profiles()
    r = drift.compare(back[0], profiles[0], "linf_simple", 0.1)
    assert r.statistic == 0.0 and r.exact


def _table(**cols) -> pa.Table:
    return pa.table(cols)


def _run(ref: pd.DataFrame, cur: pd.DataFrame, cons: dict | None = None, config: DriftConfig | None = None):
    _, base = profile(ref)
    return analyze(base, cons if cons is not None else constraints.suggest(base), cur, config)


def test_each_violation_fires_and_not():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"age": rng.integers(18, 90, 2000), "income": rng.normal(50, 10, 2000),
                        "state": rng.choice(["CA", "NY", "TX"], 2000), "gone": np.arange(2000)})
    ok = _run(ref, ref)
    assert ok.violations == []
    cur = ref.drop(columns=["gone"]).copy()
    cur["extra"] = 1
    cur.loc[:99, "income"] = np.nan                                   # completeness
    cur["age"] = cur["age"].astype(float) + 0.5                      # data type: no longer Integral
    cur["state"] = np.where(np.arange(2000) < 100, "ZZ", cur["state"])  # outside the domain
    cur["income"] = cur["income"] + 30                               # drift
    got = {(v["feature_name"], v["constraint_check_type"]) for v in _run(ref, cur).violations}
    assert got == {("gone", "missing_column_check"), ("extra", "extra_column_check"),
                   ("income", "completeness_check"), ("age", "data_type_check"),
                   ("state", "categorical_values_check"), ("income", "baseline_drift_check")}


def test_thresholds_overrides_and_disabled():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    cur = pd.DataFrame({"x": rng.normal(0.6, 1, 3000)})
    _, base = profile(ref)
    cons = constraints.suggest(base)
    assert [v["constraint_check_type"] for v in analyze(base, cons, cur).violations] == ["baseline_drift_check"]
    cons["features"][0]["monitoringConfigOverrides"] = {"comparison_threshold": 0.5}
    assert analyze(base, cons, cur).violations == []
    cons["features"][0]["monitoringConfigOverrides"] = {}
    cons["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Disabled"
    assert analyze(base, cons, cur).violations == []
    cons["monitoring_config"]["evaluate_constraints"] = "Disabled"
    assert analyze(base, cons, cur).violations == []


def test_robust_is_simple_minus_ks_critical_distance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 300), rng.normal(0.2, 1, 200)
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    simple = drift.compare(ra, rb, "linf_simple", 0.1)
    rob = drift.compare(ra, rb, "linf_robust", 0.1)
    d = sps.ks_2samp(a, b).statistic
    assert simple.statistic == pytest.approx(d, abs=1e-12)
    assert rob.statistic == pytest.approx(max(0.0, d - 1.8 * math.sqrt(500 / (300 * 200))), abs=1e-12)


@pytest.mark.parametrize("n,m", [(50, 70), (900, 400), (5000, 3000)])
def test_ks_wasserstein_equal_scipy(n, m):
    rng = np.random.default_rng(n)
    a = np.round(rng.normal(0, 1, n), 2)     # ties on purpose
    b = np.round(rng.normal(0.1, 1.2, m), 2)
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    ks = drift.compare(ra, rb, "ks", 0.05)
    ref = sps.ks_2samp(a, b)
    assert ks.statistic == pytest.approx(ref.pvalue, abs=1e-6) and ks.exact
    assert ks.linf == pytest.approx(ref.statistic, abs=1e-9)
    w = drift.compare(ra, rb, "wasserstein", 0.1)
    assert w.statistic == pytest.approx(sps.wasserstein_distance(a, b) / max(np.std(a), 0.001), abs=1e-9)


def test_large_samples_are_compared_exactly():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 200_000), rng.normal(0.05, 1, 150_000)
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    pair = drift.pair_of(ra, rb)
    r = drift.compare(ra, rb, "linf_simple", 0.1, pair)
    assert r.exact and r.bound == 0.0
    assert r.statistic == pytest.approx(sps.ks_2samp(a, b).statistic, abs=1e-12)
    w = drift.compare(ra, rb, "wasserstein", 0.1, pair)
    assert w.exact and w.statistic == pytest.approx(sps.wasserstein_distance(a, b) / np.std(a), rel=1e-9)
    assert pair.n_unique() == len(np.union1d(a, b))


def _numpy_walk(va, wa, vb, wb) -> tuple[float, float, float, int]:
    """The reference the compiled walk is held to: one stable merge of both sorted samples, cumulative weights,
    each CDF read after the last of equal values (the engine's NumPy path before the walk)."""
    wa = np.ones(len(va)) if wa is None else wa
    wb = np.ones(len(vb)) if wb is None else wb
    values = np.concatenate([va, vb])
    order = np.argsort(values, kind="stable")
    v = values[order]
    from_a = order < len(va)
    w = np.concatenate([wa, wb])[order]
    fa = np.cumsum(np.where(from_a, w, 0.0)) / np.cumsum(wa)[-1]   # a CDF ends at 1 exactly
    fb = np.cumsum(np.where(from_a, 0.0, w)) / np.cumsum(wb)[-1]
    last = np.append(v[1:] != v[:-1], True)
    v, fa, fb = v[last], fa[last], fb[last]
    return (float(np.max(np.abs(fa - fb))), float(np.sum(np.abs(fa[:-1] - fb[:-1]) * np.diff(v))),
            float(np.sum(np.sqrt(fa[:-1] * (1 - fa[:-1])) * np.diff(v))), len(v))


def _assert_walk_is_numpys(va, wa, vb, wb) -> None:
    got = ecdf.walk(va, wa, vb, wb)
    linf, wass, spread, distinct = _numpy_walk(va, wa, vb, wb)
    assert got.distinct == distinct
    assert got.linf == pytest.approx(linf, abs=1e-12)
    assert got.wasserstein == pytest.approx(wass, rel=1e-9, abs=1e-12)
    assert got.spread == pytest.approx(spread, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shape", ["continuous", "rounded", "integers", "disjoint", "uneven sizes", "one value",
                                   "one each", "identical", "touching ends"])
@pytest.mark.parametrize("weighted", ["neither", "reference", "both"])
def test_the_compiled_walk_equals_numpys_merge(shape, weighted):
    """Ties within and across the samples, runs of one side, one side past the other's end, single values and
    weighted sides (quantile summaries, sketches): the walk's L∞, Wasserstein, spread and distinct count are
    those of NumPy's exact merge."""
    rng = np.random.default_rng(11)
    a, b = {
        "continuous": (rng.normal(0, 1, 100_000), rng.normal(0.3, 1.5, 90_000)),
        "rounded": (np.round(rng.normal(0, 1, 60_000), 2), np.round(rng.normal(0, 1, 70_001), 2)),
        "integers": (rng.integers(0, 50, 100_000).astype(float), rng.integers(0, 60, 130_000).astype(float)),
        "disjoint": (rng.uniform(0, 1, 50_000), rng.uniform(2, 3, 50_000)),
        "uneven sizes": (rng.exponential(1, 400_000), rng.exponential(1.1, 30_000)),
        "one value": (np.full(50_000, 7.0), np.concatenate([np.full(40_000, 7.0), rng.normal(7, 1, 10_000)])),
        "one each": (np.array([2.0]), np.array([1.0])),
        "identical": (np.arange(1000.0), np.arange(1000.0)),
        "touching ends": (np.array([1.0, 2.0, 3.0, 3.0]), np.array([3.0, 3.0, 4.0])),
    }[shape]
    a, b = np.sort(a), np.sort(b)
    wa = rng.uniform(0.5, 20, len(a)) if weighted != "neither" else None
    wb = rng.uniform(0.5, 20, len(b)) if weighted == "both" else None
    _assert_walk_is_numpys(a, wa, b, wb)
    if shape == "identical" and weighted == "neither":
        assert ecdf.walk(a, None, b, None).linf == 0.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=40), st.lists(st.integers(0, 12), min_size=1, max_size=40),
       st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_the_compiled_walk_equals_numpys_merge_on_small_tied_samples(xs, ys, weigh_a, weigh_b, seed):
    rng = np.random.default_rng(seed)
    a, b = np.sort(np.array(xs, float) / 4), np.sort(np.array(ys, float) / 4)
    _assert_walk_is_numpys(a, rng.uniform(0.1, 5, len(a)) if weigh_a else None,
                           b, rng.uniform(0.1, 5, len(b)) if weigh_b else None)


@pytest.mark.parametrize("n, m", [(3, 33), (7, 49), (10, 30), (100, 300), (1, 9)])
def test_equal_cdfs_of_different_sizes_are_exactly_equal(n, m):
    """The same distribution at n and m values: no difference at all, so a threshold of 0 holds (a CDF computed
    as count × 1/total would differ from the other side's in the last bit)."""
    a = np.repeat(np.arange(1.0, n + 1), 1)
    b = np.repeat(np.arange(1.0, n + 1), m // n)
    got = ecdf.walk(a, None, b, None)
    assert got.linf == 0.0 and got.wasserstein == 0.0
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    assert constraints.baseline_drift(ra, rb, {"comparison_method": "Simple", "comparison_threshold": 0.0}, {}) is None


def test_the_walk_never_reads_past_an_array_whatever_the_input():
    """numba does not check bounds: the walk compiled with checks, on inputs that break its preconditions (NaN,
    unsorted, infinities, weights on either side), must raise no IndexError."""
    import numba

    checked = numba.njit(boundscheck=True)(ecdf._walk.py_func)
    rng = np.random.default_rng(5)
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 2.0])
    for _ in range(400):
        a, b = rng.choice(pool, rng.integers(1, 8)), rng.choice(pool, rng.integers(1, 8))
        cwa, cwb = (np.cumsum(rng.uniform(0, 2, len(x))) if rng.random() < 0.5 else np.empty(0) for x in (a, b))
        checked(a, cwa, float(cwa[-1]) if len(cwa) else float(len(a)), b, cwb, float(cwb[-1]) if len(cwb) else
                float(len(b)))


def test_the_walk_compiles_where_nothing_is_writable_to_cache_it():
    """A read-only install (the container's root filesystem, no writable home): numba cannot cache the machine
    code, so the walk is compiled per process instead of failing the import."""
    code = ("import numba.core.caching as c, numpy as np\n"
            "def refuse(self): raise OSError('read-only file system')\n"
            "c._CacheLocator.ensure_cache_path = refuse\n"
            "from monitor.engine import ecdf\n"
            "print(tuple(ecdf.walk(np.array([1.0, 2.0]), None, np.array([1.5]), None)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(0.5, 0.5, 0.5, 3)"


def test_the_walk_of_an_empty_side_counts_the_other_sides_values():
    assert ecdf.walk(np.array([]), None, np.array([1.0, 1.0, 2.0]), None) == (0.0, 0.0, 0.0, 2)


def _evidently_binned(ref: np.ndarray, cur: np.ndarray, fill: bool):
    """Evidently 0.7's get_binned_data, restated."""
    if len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        p, q = np.histogram(ref, bins)[0] / len(ref), np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = sorted(set(ref) | set(cur))
        p = np.array([np.sum(ref == k) / len(ref) for k in keys])
        q = np.array([np.sum(cur == k) / len(cur) for k in keys])
    if fill:
        for arr in (p, q):
            nz = arr[arr != 0].min()
            arr[arr == 0] = nz / 10**6 if nz <= 0.0001 else 0.0001
    return p, q


def test_psi_and_jensenshannon_follow_evidently():
    rng = np.random.default_rng(4)
    a, b = rng.gamma(2, 1, 3000), rng.gamma(2.3, 1, 2500)
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    p, q = _evidently_binned(a, b, True)
    assert drift.compare(ra, rb, "psi", 0.1).statistic == pytest.approx(np.sum((p - q) * np.log(p / q)), rel=1e-9)
    p, q = _evidently_binned(a, b, False)
    assert drift.compare(ra, rb, "jensenshannon", 0.1).statistic == pytest.approx(distance.jensenshannon(p, q),
                                                                                    rel=1e-9)


def test_categorical_methods():
    rng = np.random.default_rng(5)
    a = rng.choice(["a", "b", "c"], 800, p=[0.5, 0.3, 0.2])
    b = rng.choice(["a", "b", "c", "d"], 600, p=[0.3, 0.3, 0.3, 0.1])
    ra, rb = (profile_column(columns(_table(x=v))[0]) for v in (a, b))
    keys = ["a", "b", "c", "d"]
    ca, cb = [np.sum(a == k) for k in keys], [np.sum(b == k) for k in keys]
    f_exp = np.array(ca) * len(b) / len(a)
    with np.errstate(divide="ignore"):
        assert drift.compare(ra, rb, "chisquare", 0.05).statistic == pytest.approx(sps.chisquare(cb, f_exp).pvalue)
    linf = max(abs(x / len(a) - y / len(b)) for x, y in zip(ca, cb, strict=True))
    assert drift.compare(ra, rb, "linf_simple", 0.1).statistic == pytest.approx(linf)
    bin_a = rng.choice(["y", "n"], 500, p=[0.5, 0.5])
    bin_b = rng.choice(["y", "n"], 500, p=[0.7, 0.3])
    za, zb = (profile_column(columns(_table(x=v))[0]) for v in (bin_a, bin_b))
    p1, p2 = np.mean(bin_a != "n"), np.mean(bin_b != "n")
    pooled = (p1 * 500 + p2 * 500) / 1000
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (2 / 500))
    assert drift.compare(za, zb, "z", 0.05).statistic == pytest.approx(2 * (1 - sps.norm.cdf(abs(z))))
    with pytest.raises(ValueError, match="categorical"):
        drift.compare(ra, rb, "wasserstein", 0.1)


def test_default_methods_follow_evidentlys_rules():
    rng = np.random.default_rng(6)
    small = pd.DataFrame({"num": rng.normal(size=500), "few": rng.integers(0, 4, 500),
                          "bin": rng.choice(["a", "b"], 500), "cat": rng.choice(list("abcd"), 500)})
    big = pd.DataFrame({"num": rng.normal(size=3000), "few": rng.integers(0, 4, 3000),
                        "cat": rng.choice(list("abcd"), 3000)})
    got = {d.feature: d.method for d in _run(small, small).drift}
    assert got == {"num": "ks", "few": "chisquare", "bin": "z", "cat": "chisquare"}
    got = {d.feature: d.method for d in _run(big, big).drift}
    assert got == {"num": "wasserstein", "few": "jensenshannon", "cat": "jensenshannon"}
    cfg = DriftConfig(numerical="psi", per_feature={"cat": "chisquare"}, thresholds={"psi": 0.2})
    res = {d.feature: (d.method, d.threshold) for d in _run(big, big, config=cfg).drift}
    assert res == {"num": ("psi", 0.2), "few": ("psi", 0.2), "cat": ("chisquare", 0.05)}


def test_same_verdicts_as_evidently():
    evidently = pytest.importorskip("evidently")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    assert evidently.__version__.startswith("0.7")
    rng = np.random.default_rng(7)
    for n in (600, 4000):
        ref = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(5, 2, n), "c": rng.choice(list("xyz"), n),
                            "d": rng.integers(0, 3, n).astype(float)})
        cur = pd.DataFrame({"a": rng.normal(0.4, 1, n), "b": rng.normal(5, 2, n),
                            "c": rng.choice(list("xyz"), n, p=[0.6, 0.2, 0.2]), "d": rng.integers(0, 3, n) * 1.0})
        dd = DataDefinition(numerical_columns=["a", "b", "d"], categorical_columns=["c"])
        snap = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=dd),
                                               reference_data=Dataset.from_pandas(ref, data_definition=dd))
        theirs = {m["config"]["column"]: float(m["value"]) for m in snap.dict()["metrics"]
                  if m["config"].get("type") == "evidently:metric_v2:ValueDrift"}
        ours = {d.feature: d for d in _run(ref, cur).drift}
        for col, value in theirs.items():
            assert ours[col].statistic == pytest.approx(value, rel=1e-7, abs=1e-12), (n, col)


def test_missing_infinities_empty_and_new_categories():
    ref = pd.DataFrame({"x": [1.0, 2.0, np.inf, np.nan, 3.0] * 100, "s": ["a", "b", None, "a", "b"] * 100})
    cur = pd.DataFrame({"x": [np.nan] * 500, "s": ["c"] * 500})
    res = _run(ref, cur)
    by = {d.feature: d for d in res.drift}
    assert by["x"].note and "all values missing" in by["x"].note and not by["x"].drifted
    assert by["s"].drifted   # a new category is drift, not a crash
    stats = {f["name"]: f for f in res.statistics["features"]}
    assert stats["x"]["inferred_type"] == "Unknown"
    _, base = profile(ref)
    x = base[0].summary
    assert x.present == 400 and x.missing == 100 and x.finite == 300   # inf is present but not distributed
    empty = analyze(base, constraints.suggest(base), pd.DataFrame({"x": pd.Series([], dtype=float),
                                                                    "s": pd.Series([], dtype=object)}))
    assert empty.rows == 0 and all(math.isnan(d.statistic) for d in empty.drift)


@pytest.mark.parametrize("values", [
    ["a", "b", None, np.nan, "a", pd.NA, pd.NaT, "é", "",   # every missing marker pandas knows, non-ASCII, blank
     np.float32("nan"), np.datetime64("NaT")],
    ["a", 1, "b"],                                            # a non-string value: read through Arrow
    [None, np.nan],                                           # nothing present
])
def test_text_columns_from_pandas_count_as_arrow_does(values):
    """The pandas fast path (one hash pass) gives what reading the column through Arrow gives, or declines."""
    from monitor.engine.columns import column, text_column

    fast = text_column("s", pd.Series(values, dtype=object))
    strings = [v if isinstance(v, str) else None for v in values]
    if any(not isinstance(v, str) and not pd.isna(v) for v in values) or all(v is None for v in strings):
        assert fast is None
        return
    assert fast is not None
    slow = column("s", pa.array(strings, type=pa.string()))
    assert (fast.present, fast.missing, fast.counts) == (slow.present, slow.missing, slow.counts)
    for dtype in ("string", "string[pyarrow]"):   # pandas' own string dtypes take the same path
        typed = text_column("s", pd.Series(strings, dtype=dtype))
        assert typed is not None and (typed.missing, typed.counts) == (slow.missing, slow.counts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.none()), min_size=1, max_size=300),
       st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=300), st.integers(1, 5))
def test_partitions_merge_to_one_pass(nums, cats, parts):
    n = min(len(nums), len(cats))
    table = pa.table({"x": pa.array(nums[:n], type=pa.float64()), "s": pa.array(cats[:n], type=pa.string())})
    _, whole = profile(table, threads=1)
    cuts = np.linspace(0, n, parts + 1).astype(int)
    merged = None
    for lo, hi in itertools.pairwise(cuts):
        _, part = profile(table.slice(lo, hi - lo), threads=1)
        merged = part if merged is None else merge_profiles(merged, part)
    for w, m in zip(whole, merged, strict=True):
        assert w.rows == m.rows
        if w.summary is None:
            continue
        ws, ms = w.summary, m.summary
        assert (ws.present, ws.missing) == (ms.present, ms.missing)
        if hasattr(ws, "counts"):
            assert ws.counts == ms.counts
        else:
            assert (ws.finite, ws.min, ws.max) == (ms.finite, ms.min, ms.max)
            assert ms.total == pytest.approx(ws.total, rel=1e-9, abs=1e-6)
            assert ms.m2 == pytest.approx(ws.m2, rel=1e-6, abs=1e-3)
            assert ms.sketch.n == ws.finite
            assert np.array_equal(ms.exact, ws.exact)


def test_kll_rank_error_within_bound_and_merge():
    rng = np.random.default_rng(8)
    x = rng.lognormal(size=400_000)
    parts = np.array_split(x, 7)
    sk = kll.from_values(np.sort(parts[0]))
    for p in parts[1:]:
        sk = sk.merge(kll.from_values(p))
    assert sk.n == len(x)
    xs = np.sort(x)
    qs = np.linspace(0.001, 0.999, 200)
    ranks = np.searchsorted(xs, sk.quantiles(qs), side="right") / len(x)
    assert np.max(np.abs(ranks - qs)) <= 2 * kll.rank_error_bound()
    assert len(kll.KLL.from_json(sk.to_json()).weighted()[0]) == len(sk.weighted()[0])


def test_sagemaker_chisquared_regroups_sparse_categories():
    ref = {"a": 500, "b": 480, "c": 30, "d": 2}
    cur = {"a": 520, "b": 470, "c": 28}
    p = drift.regrouped_chi2(ref, cur)
    pooled = np.array([[500, 480, 32], [520, 470, 28]])   # d pooled with c: now no expected count below 5
    expected = sps.chi2_contingency(pooled, correction=False).pvalue
    assert 0.01 < expected < 0.99 and p == pytest.approx(expected, rel=1e-12)
    # 2×2 needs every expected count ≥ 10 (Cochran): a sparse third category is pooled away
    p2 = drift.regrouped_chi2({"a": 100, "b": 90, "c": 4}, {"a": 95, "b": 99, "c": 3})
    assert p2 == pytest.approx(sps.chi2_contingency(np.array([[100, 94], [95, 102]]), correction=False).pvalue,
                               rel=1e-12)
    assert math.isnan(drift.regrouped_chi2({"a": 3}, {"a": 4}))
    rng = np.random.default_rng(11)
    a = pd.DataFrame({"s": rng.choice(list("xyz"), 3000)})
    b = pd.DataFrame({"s": rng.choice(list("xyz"), 3000, p=[0.5, 0.3, 0.2])})
    _, base = profile(a)
    cons = constraints.suggest(base)
    cons["monitoring_config"]["distribution_constraints"].update(categorical_drift_method="ChiSquared",
                                                                 categorical_comparison_threshold=0.05)
    got = analyze(base, cons, b).violations
    assert [v["constraint_check_type"] for v in got] == ["baseline_drift_check"]
    assert "chi-squared p-value" in got[0]["description"]
    assert analyze(base, cons, a).violations == []


def test_json_bytes_writes_the_same_strict_json_as_the_indenting_encoder():
    from monitor.engine.stats import json_bytes, json_safe

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.normal(0, 1, 5000), "y": rng.integers(0, 9, 5000), "s": rng.choice(["a", "b"], 5000)})
    _, profs = profile(df)
    doc = {"stats": statistics_json(profs), "odd": [1.0, math.nan, 2, 3, math.inf, 4, 5, -math.inf, 6],
           "flags": [True] * 9, "mixed": [1, "a", 2, 3, 4, 5, 6, 7, 8], "t": (1, 2), "name": "\x00\"ü", "n": math.nan,
           "keys": {True: 1, None: 2, 3: 4, 2.5: 5}, "numpy": [np.float64(0.25), 1e-05, 1e16, -0.0, 2**70]}
    out = json_bytes(doc)
    expected = json.dumps(json_safe(doc), indent=2, ensure_ascii=False).encode()
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict {c}")) == json.loads(expected)
    assert out.decode().count("\n") < expected.decode().count("\n")   # number lists on one line each
    assert json_bytes({"a": []}) == json.dumps({"a": []}, indent=2).encode()
