"""Large baselines keep a bounded quantile summary, not every value: drift from it stays within the CDF bound each
result states, gives the exact reference's verdicts on clear cases, and exact baselines written before still load."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from mlgov.storage import LocalStore
from monitor import layout
from monitor.engine import drift, kll, quantiles
from monitor.engine.analysis import DriftConfig, analyze, analyze_profiles, profile
from monitor.engine.partition import TableSummary, merge_all
from monitor.engine.stats import NumericSummary, bounded_reference, statistics_json

N_REF = 200_000


def empirical_cdf(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, x, side="right") / len(sorted_values)


def summary_cdf(q: quantiles.QuantileSummary, x: np.ndarray) -> np.ndarray:
    cum = np.concatenate([[0.0], np.cumsum(q.weights)])
    return cum[np.searchsorted(q.values, x, side="right")] / cum[-1]


def reference(n: int = N_REF, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"normal": rng.normal(50, 10, n), "lognormal": rng.lognormal(0, 1, n),
                         "rounded": np.round(rng.normal(0, 1, n), 2),       # ~800 distinct values: lossless
                         "count": rng.poisson(4, n), "state": rng.choice(["CA", "NY", "TX"], n)})


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60_000), distinct=st.sampled_from([3, 200, 20_000, None]), points=st.sampled_from([64, 1024]),
       tail=st.sampled_from([1, 16, 1024]), seed=st.integers(0, 2**16))
def test_summary_cdf_is_within_its_bound_everywhere(n, distinct, points, tail, seed):
    rng = np.random.default_rng(seed)
    raw = rng.standard_cauchy(n) if distinct is None else rng.integers(0, distinct, n).astype(float)
    v = np.sort(raw)
    q = quantiles.summarise(v, points, tail)
    assert q.weights.sum() == n and np.all(np.diff(q.values) > 0)
    assert (q.values[0], q.values[-1]) == (v[0], v[-1])                 # min and max kept as they are
    assert len(q.values) <= points + 2 * tail
    assert q.bound <= 1 / (2 * points) + 1 / (2 * n)
    if q.bound > 0:      # the far tails are kept value by value: there the CDF is the column's exactly
        far = np.concatenate([v[:tail][v[:tail] < v[tail]], v[-tail:][v[-tail:] > v[-tail - 1]]])
        assert np.array_equal(summary_cdf(q, far), empirical_cdf(v, far))
    # every data value, every midpoint between neighbours and beyond both ends
    x = np.concatenate([v, (v[1:] + v[:-1]) / 2, [v[0] - 1, v[-1] + 1]])
    err = np.max(np.abs(summary_cdf(q, x) - empirical_cdf(v, x)))
    assert err <= q.bound + 1e-12
    if len(np.unique(v)) <= points:                                      # lossless: every distinct value, counted
        u, c = np.unique(v, return_counts=True)
        assert q.bound == 0.0 and np.array_equal(q.values, u) and np.array_equal(q.weights, c)


def test_small_columns_stay_exact_and_large_ones_are_summarised():
    _, small = profile(reference(quantiles.EXACT_LIMIT))
    kept, exact = bounded_reference(small)
    assert exact and all(p.summary.exact is not None for p in kept if isinstance(p.summary, NumericSummary))
    _, large = profile(reference(quantiles.EXACT_LIMIT + 1))
    kept, exact = bounded_reference(large)
    s = {p.name: p.summary for p in kept}
    assert not exact
    for name in ("normal", "lognormal"):
        q = s[name].quantiles
        assert s[name].exact is None and q is not None and 0 < q.bound <= 1 / (2 * quantiles.POINTS) + 1e-9
    for name in ("rounded", "count"):           # few distinct values: summarised losslessly
        q = s[name].quantiles
        assert q is not None and q.bound == 0.0


def shifted(kind: str, m: int, seed: int) -> pd.DataFrame:
    """A current window: the reference's distributions ("same"), or every column clearly moved."""
    cur = reference(m, seed)
    if kind == "drifted":
        rng = np.random.default_rng(seed + 1)
        cur["normal"] += 5.0
        cur["lognormal"] *= 1.6
        cur["rounded"] = np.round(rng.normal(0.5, 1, m), 2)
        cur["count"] = rng.poisson(5, m)
    return cur


@pytest.fixture(scope="module")
def references():
    ref = reference()
    _, exact = profile(ref)
    bounded, _ = bounded_reference(exact)
    return ref, exact, bounded


@pytest.mark.parametrize("kind", ["same", "drifted"])
@pytest.mark.parametrize("method", drift.NUMERIC_METHODS)
def test_drift_from_the_summary_is_within_the_stated_bound_with_the_same_verdicts(references, kind, method):
    """Against the exact reference, with a window small enough that the bounded comparison merges every point (so
    only the summary's own bound applies): CDF statistics within the bound against scipy on the raw values, binned
    shares within twice it, and the same verdict on every clear case."""
    ref, exact, bounded = references
    cur = shifted(kind, 5_000, seed=11)
    cfg = DriftConfig(numerical=method)
    base = {r.feature: r for r in analyze(exact, {}, cur, cfg).drift}
    for r in analyze(bounded, {}, cur, cfg).drift:
        e = base[r.feature]
        assert r.drifted == e.drifted, (r, e)
        if r.kind == "categorical":
            assert r == e
            continue
        q = next(p.summary.quantiles for p in bounded if p.name == r.feature)
        assert q is not None and r.bound == pytest.approx(q.bound)
        assert r.exact == (q.bound == 0.0)
        a, b = np.sort(ref[r.feature].to_numpy(float)), np.sort(cur[r.feature].to_numpy(float))
        d = sps.ks_2samp(a, b).statistic
        assert r.linf is not None and abs(r.linf - d) <= r.bound + 1e-12, (r.feature, r.linf, d, r.bound)
        if method == "wasserstein":
            true = sps.wasserstein_distance(a, b) / np.std(a)
            assert abs(r.statistic - true) <= r.bound * (a[-1] - a[0]) / np.std(a) + 1e-9, (r, true)
        if method in ("psi", "jensenshannon"):
            summary = drift.Dist.of(NumericSummary(finite=len(a), quantiles=q))
            values = drift.Dist(a, None, len(a), True)
            other = drift.Dist(b, None, len(b), True)
            p_sum, _ = drift._binned(summary, other, fill=False)
            p_raw, _ = drift._binned(values, other, fill=False)
            assert np.max(np.abs(p_sum - p_raw)) <= 2 * q.bound + 1e-12
        if method == "ks" and r.exact:          # lossless: scipy's own (asymptotic at this size) p-value
            assert r.statistic == pytest.approx(sps.ks_2samp(a, b).pvalue, rel=1e-9, abs=1e-300)


def test_a_large_window_states_the_summary_bound(references):
    ref, exact, bounded = references
    cur = shifted("same", 60_000, seed=5)
    for r, e in zip(analyze(bounded, {}, cur, DriftConfig(numerical="linf_simple")).drift,
                    analyze(exact, {}, cur, DriftConfig(numerical="linf_simple")).drift, strict=True):
        if r.kind == "categorical":
            continue
        q = next(p.summary.quantiles for p in bounded if p.name == r.feature)
        assert q is not None and r.bound == pytest.approx(q.bound)   # the comparison itself is exact
        a, b = ref[r.feature].to_numpy(float), cur[r.feature].to_numpy(float)
        assert abs(r.statistic - sps.ks_2samp(a, b).statistic) <= r.bound + 1e-12   # rounding
        assert abs(r.statistic - e.statistic) <= r.bound + e.bound + 1e-12   # a lossless summary: rounding


def test_stored_summary_round_trips_and_old_exact_baselines_still_load(tmp_path, references):
    _, exact, bounded = references
    store = LocalStore(tmp_path)
    for prefix, profiles in (("old", exact), ("new", bounded)):
        store.put(f"{prefix}/statistics.json", layout.dumps(statistics_json(exact)))
        layout.save_profile(store, prefix, profiles)   # "old": what every baseline stored before: all values
    assert store.exists("old/reference.parquet") and not store.exists(f"old/{layout.QUANTILES}")
    assert store.exists(f"new/{layout.QUANTILES}") and not store.exists("new/reference.parquet")
    old = {p.name: p.summary for p in layout.load_profiles(store, "old")}
    new = {p.name: p.summary for p in layout.load_profiles(store, "new")}
    for p in exact:
        if isinstance(p.summary, NumericSummary):
            o, n = old[p.name], new[p.name]
            assert isinstance(o, NumericSummary) and isinstance(n, NumericSummary)
            assert o.exact is not None and np.array_equal(o.exact, p.summary.exact)
            want = next(b.summary.quantiles for b in bounded if b.name == p.name)
            assert n.exact is None and n.quantiles is not None and want is not None
            assert np.array_equal(n.quantiles.values, want.values)
            assert np.array_equal(n.quantiles.weights, want.weights) and n.quantiles.bound == want.bound
        else:
            assert old[p.name] == new[p.name] == p.summary
    size_old = len(store.get("old/reference.parquet"))
    size_new = len(store.get(f"new/{layout.QUANTILES}"))
    assert size_new * 5 < size_old      # at 200k rows; the summary does not grow with the rows (benchmark)


def test_a_stored_statistics_file_with_a_byte_order_mark_still_loads(tmp_path, references):
    """Imported files are kept as uploaded: one starting with a UTF-8 byte-order mark (which the upload's parser
    skips) loads as the same profiles as without it."""
    _, exact, _ = references
    store = LocalStore(tmp_path)
    doc = layout.dumps(statistics_json(exact))
    store.put("plain/statistics.json", doc)
    store.put("bom/statistics.json", b"\xef\xbb\xbf" + doc)
    plain, bom = (layout.load_profiles(store, p) for p in ("plain", "bom"))
    assert [p.name for p in bom] == [p.name for p in plain] == [p.name for p in exact]
    assert all(type(a.summary) is type(b.summary) for a, b in zip(plain, bom, strict=True))


def test_a_large_baseline_over_the_api_is_bounded_and_its_results_say_so(client, keys):
    n = quantiles.EXACT_LIMIT + 8_000
    ref = reference(n, seed=3)[["normal", "count", "state"]]
    pub = keys("publisher")
    r = client.post("/api/v1/baselines", files={"file": ("train.csv", ref.to_csv(index=False).encode(), "text/csv")},
                    headers=pub)
    assert r.status_code == 201, r.text
    meta = r.json()
    assert not meta["exact"] and meta["row_count"] == n    # "normal" is summarised with a bound
    cur = shifted("drifted", 3_000, seed=4)[["normal", "count", "state"]]
    buf = io.BytesIO()
    cur.to_parquet(buf)
    a = client.post("/api/v1/analyses", data={"baseline_id": meta["id"]}, files={"file": ("c.parquet", buf.getvalue())},
                    headers=pub)
    assert a.status_code == 201, a.text
    rows = {d["feature"]: d for d in a.json()["drift"]}
    assert rows["normal"]["method"] == "wasserstein" and rows["normal"]["drifted"]
    assert not rows["normal"]["exact"] and 0 < rows["normal"]["bound"] <= 1 / (2 * quantiles.POINTS) + 1e-9
    assert rows["count"]["exact"] and rows["count"]["bound"] == 0.0     # few distinct values: lossless
    drift_json = json.loads(client.get(f"/api/v1/analyses/{a.json()['id']}/drift.json", headers=keys("viewer")).content)
    assert {f["feature"]: f["bound"] for f in drift_json["features"]} == {k: v["bound"] for k, v in rows.items()}
    assert math.isfinite(rows["normal"]["statistic"])


def test_a_window_summarised_in_partitions_adds_its_sketch_bound(references):
    """The cluster's path: the current side is a merged KLL sketch; each result states both sides' bounds."""
    ref, _, bounded = references
    cur = shifted("drifted", 9_000, seed=21)
    parts = [TableSummary.of(pa.Table.from_pandas(cur.iloc[i:i + 3_000], preserve_index=False))
             for i in range(0, 9_000, 3_000)]
    whole = merge_all(parts)
    found = analyze_profiles(bounded, {}, whole.profiles, whole.types, whole.rows,
                             DriftConfig(numerical="linf_simple")).drift
    for r in found:
        if r.kind == "categorical":
            continue
        q = next(p.summary.quantiles for p in bounded if p.name == r.feature)
        s = next(p.summary for p in whole.profiles if p.name == r.feature)
        assert q is not None and isinstance(s, NumericSummary)
        sketch = 0.0 if s.sketch.n == len(s.sketch.weighted()[0]) else 2 * kll.rank_error_bound()
        assert r.bound == pytest.approx(q.bound + sketch) and r.drifted
        d = sps.ks_2samp(ref[r.feature].to_numpy(float), cur[r.feature].to_numpy(float)).statistic
        assert abs(r.statistic - d) <= r.bound
