"""MLGOV_COMPUTE=dask://…: baselines and analyses summarised on a real Dask cluster equal the local path.

One real ``distributed.LocalCluster`` (two worker processes) for the module, reading Parquet straight from the
SeaweedFS S3 server the fixtures start; the same data is computed locally and compared: counts, completeness,
min/max, categorical frequencies and constraints exactly; sums, means and deviations to floating-point rounding;
bucket counts and drift statistics within the sketch bound the results state. A worker killed mid-analysis costs a
re-run of its tasks, not the analysis; an unreachable cluster ends the scheduled execution Failed with the reason
and writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from mlgov.settings import Settings
from mlgov.storage import ObjectStore, open_store
from monitor import compute, schedules, service
from monitor.engine import kll
from monitor.errors import PartitionGone
from monitor.orm import Analysis
from monitor.service import model_quality as mq
from tests.conftest import make_settings
from tests.helpers import seed_endpoint, seed_schedule
from tests.infra import S3_KEY, S3_SECRET, Seaweed
from tests.monitor.test_api import record

FEATURES = [{"name": "age", "type": "Integral"}, {"name": "income", "type": "Fractional"},
            {"name": "state", "type": "String"}, {"name": "score", "type": "Fractional"}]
T0 = dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)


def frame(n: int, shift: float = 0.0, seed: int = 0, states: tuple[str, ...] = ("CA", "NY", "TX")) -> pd.DataFrame:
    """Integers, floats with missing values, text with missing values: every summary kind and completeness."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50 + shift, 10, n)
    income[rng.random(n) < 0.05] = np.nan
    state = rng.choice(list(states), n).astype(object)
    state[rng.random(n) < 0.03] = None
    return pd.DataFrame({"age": rng.integers(18, 90, n), "income": income, "state": state,
                         "score": rng.exponential(1.0 + shift / 10, n)})


def parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  worker_dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def bucket(seaweed: Seaweed) -> str:
    name = "dask-compute"
    client = seaweed.client()
    if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:   # per backend, same server
        client.create_bucket(Bucket=name)
    return name


def s3_settings(tmp_path: Path, seaweed: Seaweed, bucket: str, compute_url: str = "local", **kw: Any) -> Settings:
    return make_settings(tmp_path, store_url=f"s3://{bucket}/{tmp_path.name}", s3_endpoint_url=seaweed.endpoint,
                         s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET, compute=compute_url, **kw)


class Modes:
    """Switch this process between the local path and the cluster (the store is the same S3 prefix)."""

    def __init__(self, tmp_path: Path, seaweed: Seaweed, bucket: str, cluster: Any) -> None:
        self.local = s3_settings(tmp_path, seaweed, bucket)
        self.dask = s3_settings(tmp_path, seaweed, bucket, cluster.scheduler_address)
        self.store: ObjectStore = open_store(self.local)

    def use(self, which: str) -> None:
        compute.configure(self.dask if which == "dask" else self.local)


@pytest.fixture
def modes(tmp_path: Path, seaweed: Seaweed, bucket: str, cluster: Any,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Modes]:
    monkeypatch.setattr(compute, "ROW_GROUP_ROWS", 2_000)   # small data, still many partitions and a merge tree
    monkeypatch.setattr(compute, "GROUPS_PER_TASK", 2)
    m = Modes(tmp_path, seaweed, bucket, cluster)
    yield m
    compute.configure(make_settings(tmp_path))


def assert_statistics_equal(local: dict[str, Any], remote: dict[str, Any]) -> None:
    assert local["dataset"] == remote["dataset"]
    assert [f["name"] for f in local["features"]] == [f["name"] for f in remote["features"]]
    for a, b in zip(local["features"], remote["features"], strict=True):
        assert a["inferred_type"] == b["inferred_type"], a["name"]
        if "string_statistics" in a:
            assert a["string_statistics"] == b["string_statistics"], a["name"]
            continue
        na, nb = a["numerical_statistics"], b["numerical_statistics"]
        assert na["common"] == nb["common"], a["name"]
        assert (na["min"], na["max"]) == (nb["min"], nb["max"]), a["name"]
        for k in ("mean", "sum", "std_dev"):
            assert math.isclose(na[k], nb[k], rel_tol=1e-12, abs_tol=1e-9), (a["name"], k, na[k], nb[k])
        # the ten equal-width buckets: exact counts locally, from the merged sketch on the cluster
        n = nb["distribution"]["kll"]["sketch"]
        sketch = kll.KLL.from_json(n)
        slack = 2 * kll.rank_error_bound(sketch.k) * sketch.n + 1
        for x, y in zip(na["distribution"]["kll"]["buckets"], nb["distribution"]["kll"]["buckets"], strict=True):
            assert (x["lower_bound"], x["upper_bound"]) == (y["lower_bound"], y["upper_bound"])
            assert abs(x["count"] - y["count"]) <= slack, (a["name"], x, y, slack)


def test_baseline_on_the_cluster_equals_local(db, modes):
    data = parquet(frame(30_000))
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        modes.use("local")
        here = service.create_baseline(s, modes.store, data=data, fmt=None, header=True, name="local",
                                       dataset_uri=None, actor=p).record(s)
        modes.use("dask")
        there = service.create_baseline(s, modes.store, data=data, fmt=None, header=True, name="dask",
                                        dataset_uri=None, actor=p).record(s)
        assert (here.exact, there.exact) == (True, False)   # the cluster's reference is its sketches
        assert here.row_count == there.row_count == 30_000
    st = modes.store
    assert st.exists(f"{there.prefix}/dataset.parquet")   # the upload was stored first, then read by the workers
    assert not st.exists(f"{here.prefix}/dataset.parquet")
    assert_statistics_equal(json.loads(st.get(f"{here.prefix}/statistics.json")),
                            json.loads(st.get(f"{there.prefix}/statistics.json")))
    assert json.loads(st.get(f"{here.prefix}/constraints.json")) == \
        json.loads(st.get(f"{there.prefix}/constraints.json"))
    assert json.loads(st.get(f"{here.prefix}/categories.json")) == json.loads(st.get(f"{there.prefix}/categories.json"))


def _captured(s: Any, store: ObjectStore, n: int, shifted: pd.DataFrame) -> None:
    """``n`` records every 12 s from 10:00 (two hour partitions, some rows before and after the 10:30-11:30
    window), shifted and with a state the baseline never saw."""
    start = T0 - dt.timedelta(minutes=30)
    recs = [record(i, start + dt.timedelta(seconds=12 * i),
                   (shifted.age[i], "" if pd.isna(shifted.income[i]) else shifted.income[i],
                    shifted.state[i] or "", shifted.score[i])) for i in range(n)]
    for chunk in range(0, n, 250):   # several capture batches: several partitions per hour
        service.ingest(s, store, "ep", json.dumps(recs[chunk:chunk + 250]).encode(), "application/json")


def _data_quality_here_and_there(db: Any, modes: Modes, shifted: pd.DataFrame,
                                 more: Sequence[dict[str, Any]] = ()) -> tuple[Analysis, Analysis]:
    """The "dq" schedule's 10:30-11:30 window of ``shifted`` (and ``more`` records) run locally, then on the
    cluster: both CompletedWithViolations, with the same statistics and violations."""
    modes.use("local")
    st = modes.store
    with db.session_scope() as s:
        p = seed_schedule(s, st, FEATURES, parquet(frame(5_000)), name="dq", expression="hourly",
                          window_start="-PT1H", now=T0)
        _captured(s, st, len(shifted), shifted)
        if more:
            service.ingest(s, st, "ep", json.dumps(list(more)).encode(), "application/json")
        end = T0 + dt.timedelta(hours=1)
        here = schedules.run_now(s, st, "dq", T0, end, p)
        modes.use("dask")
        there = schedules.run_now(s, st, "dq", T0, end, p)
        assert here.status == there.status == "CompletedWithViolations", (here.failure_reason, there.failure_reason)
        a, b = s.get(Analysis, here.analysis_id), s.get(Analysis, there.analysis_id)
        assert a is not None and b is not None
        assert a.row_count == b.row_count == 300 + len(more)   # 10:30 ≤ t < 11:30 of the 10:00-14:00 records
        assert (a.violation_count, a.drifted_features) == (b.violation_count, b.drifted_features)
    assert_statistics_equal(json.loads(st.get(f"{a.prefix}/statistics.json")),
                            json.loads(st.get(f"{b.prefix}/statistics.json")))
    assert json.loads(st.get(f"{a.prefix}/constraint_violations.json")) == \
        json.loads(st.get(f"{b.prefix}/constraint_violations.json"))
    return a, b


def test_scheduled_data_quality_and_drift_run_on_the_cluster_equals_local(db, modes):
    st = modes.store
    a, b = _data_quality_here_and_there(db, modes, frame(1_200, shift=3, seed=7, states=("CA", "NY", "TX", "ZZ")))
    da, dd = json.loads(st.get(f"{a.prefix}/drift.json")), json.loads(st.get(f"{b.prefix}/drift.json"))
    assert dd["compute"] == "dask"
    for x, y in zip(da["features"], dd["features"], strict=True):
        assert (x["feature"], x["method"], x["kind"], x["drifted"]) == (y["feature"], y["method"], y["kind"],
                                                                      y["drifted"])
        if y["exact"]:   # frequency tables merge exactly, and a sketch of fewer than k values holds them all
            assert x["statistic"] == pytest.approx(y["statistic"], rel=1e-9, abs=1e-12), (x, y)
        else:            # the current side is a merged sketch: within the bound it states
            assert y["bound"] > 0 and abs(x["statistic"] - y["statistic"]) <= 2 * y["bound"], (x, y)


def test_a_window_with_a_column_numeric_in_one_batch_and_text_in_another_reads_as_locally(db, modes):
    """A batch that captured text for the Integral age stores its age column as text: the local path reads the
    column as text in every batch; the cluster's merge met a numeric and a text summary and failed the run.
    Now it summarises again with the column read as text: same statistics and violations as locally."""
    bad = [record(5000 + i, T0 + dt.timedelta(minutes=10, seconds=i), ("abc", 51.5, "CA", 1.0)) for i in range(5)]
    a, _ = _data_quality_here_and_there(db, modes, frame(1_200, shift=3, seed=7), bad)
    violations = json.loads(modes.store.get(f"{a.prefix}/constraint_violations.json"))["violations"]
    assert ("age", "data_type_check") in {(v["feature_name"], v["constraint_check_type"]) for v in violations}


def test_a_window_compacted_while_the_cluster_reads_it_is_listed_again(live_db, modes, monkeypatch):
    """The window's batches are listed, then compaction (another process's: its own connections, committed)
    merges them and deletes their files before the workers read them: the workers' missing objects come back as
    such, the window is listed again, and the analysis is the one the local path makes. The run computes on a read
    session, as the API and the scheduler run it: on SQLite too, compaction commits meanwhile."""
    from monitor import jobs
    from monitor.service import analyses

    modes.use("local")
    st = modes.store
    with live_db.session_scope() as s:
        p = seed_schedule(s, st, FEATURES, parquet(frame(5_000)), name="dq", expression="hourly",
                          window_start="-PT1H", now=T0)
        _captured(s, st, 1_200, frame(1_200, shift=3, seed=7))
    end = T0 + dt.timedelta(hours=1)
    with live_db.session_scope() as s:
        here = schedules.run_now(s, st, "dq", T0, end, p)
    listed = analyses.window_batches
    merged: list[int] = []

    def listing_then_compaction(session: Any, ep: Any, start: dt.datetime, stop: dt.datetime) -> Any:
        got = listed(session, ep, start, stop)
        if not merged:
            merged.append(jobs.compact(live_db, st, T0 + dt.timedelta(days=1), lookback=None).merged)
        return got

    monkeypatch.setattr(analyses, "window_batches", listing_then_compaction)
    modes.use("dask")
    with live_db.session_scope(write=False) as s:
        ex, ran = schedules.compute_now(s, st, "dq", T0, end, p)
    with live_db.session_scope() as s:
        there = schedules.record_now(s, st, "dq", ex, ran, p)
        assert there.status == here.status, there.failure_reason
        a, b = s.get(Analysis, here.analysis_id), s.get(Analysis, there.analysis_id)
        assert a is not None and b is not None and a.row_count == b.row_count == 300
    assert sum(merged) >= 4   # hours 10 and 11 held two batches or more each


@contextlib.contextmanager
def own_cluster(modes: Modes) -> Iterator[Any]:
    """A cluster of its own for a kill test: the module's cluster is not left waiting for a killed worker's
    restart."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  worker_dashboard_address=None) as own:
        modes.dask = modes.dask.model_copy(update={"compute": own.scheduler_address})
        yield own


@contextlib.contextmanager
def killing_a_busy_worker(cluster: Any) -> Iterator[list[int]]:
    """SIGKILL the first worker seen running an mlgov summary task, once, during the block; yields the killed pids."""
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    killed: list[int] = []

    def kill_one_worker_once_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items()
                    if any(str(t).startswith("mlgov-summarise-") for t in tasks)]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker_once_busy)
    killer.start()
    try:
        yield killed
    finally:
        killer.join()
        client.close()


def test_a_worker_killed_mid_analysis_costs_a_rerun_not_the_analysis(db, modes):
    modes.use("local")
    st = modes.store
    current = parquet(frame(60_000, shift=2, seed=3))
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        base = service.create_baseline(s, st, data=parquet(frame(4_000)), fmt=None, header=True, name="b",
                                       dataset_uri=None, actor=p).record(s)
        here = service.analyze_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True,
                                    dataset_uri=None, config=None, actor=p).record(s)
    with own_cluster(modes) as own:
        modes.use("dask")
        with killing_a_busy_worker(own) as killed, db.session_scope() as s:
            there = service.analyze_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True,
                                         dataset_uri=None, config=None, actor=p).record(s)
        assert killed, "no worker was busy with the analysis to kill"
    assert there.status == here.status and there.row_count == here.row_count == 60_000
    assert_statistics_equal(json.loads(st.get(f"{here.prefix}/statistics.json")),
                            json.loads(st.get(f"{there.prefix}/statistics.json")))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def unreachable_cluster(tmp_path: Path, seaweed: Seaweed, bucket: str) -> Iterator[None]:
    """MLGOV_COMPUTE naming a port nobody listens on, for the block; local again after it."""
    compute.configure(s3_settings(tmp_path, seaweed, bucket, f"dask://127.0.0.1:{_free_port()}",
                                  compute_connect_timeout_s=1.0))
    try:
        yield
    finally:
        compute.configure(make_settings(tmp_path))


def assert_failed_unreachable(ex: Any) -> None:
    assert ex.status == "Failed" and ex.analysis_id is None
    assert ex.failure_reason is not None and "cannot be reached" in ex.failure_reason, ex.failure_reason
    assert "127.0.0.1" in ex.failure_reason


def test_an_unreachable_cluster_fails_the_execution_with_the_reason_and_writes_nothing(db, tmp_path, seaweed,
                                                                                        bucket):
    local = s3_settings(tmp_path, seaweed, bucket)
    st = open_store(local)
    with db.session_scope() as s:
        compute.configure(local)
        p = seed_schedule(s, st, FEATURES, parquet(frame(2_000)), name="dq", expression="hourly",
                          window_start="-PT1H", now=T0)
        _captured(s, st, 400, frame(400, seed=2))
        before = s.scalar(select(func.count()).select_from(Analysis))
        files = sorted(st.list("analyses/"))
        with unreachable_cluster(tmp_path, seaweed, bucket):
            ex = schedules.run_now(s, st, "dq", T0, T0 + dt.timedelta(hours=1), p)
        assert_failed_unreachable(ex)
        assert s.scalar(select(func.count()).select_from(Analysis)) == before
    assert sorted(st.list("analyses/")) == files


def test_the_store_credentials_never_show_in_errors_reprs_or_worker_logs(modes, cluster):
    modes.use("dask")
    loc = compute.location_of(modes.store, modes.dask)
    assert S3_SECRET not in repr(loc) and S3_KEY not in repr(loc)
    cl = compute.cluster_for(1)
    assert cl is not None
    with pytest.raises(PartitionGone) as err:   # a missing object: the caller lists its input again
        cl.summarise(modes.store, [compute.Part("no/such/object.parquet")], compute.Read())
    assert S3_SECRET not in str(err.value) and S3_SECRET not in str(err.value.fix)
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    try:
        logs = json.dumps(client.get_worker_logs()) + json.dumps(client.get_scheduler_logs())
    finally:
        client.close()
    assert "no/such/object.parquet" in logs or "mlgov-summarise" in logs   # the failure was logged …
    assert S3_SECRET not in logs                                            # … without the secret


# --- model quality ------------------------------------------------------------------------------------------------

def labelled(n: int, seed: int = 0, decimals: int | None = 3) -> pd.DataFrame:
    """Binary labels with scores (rounded to ``decimals``: one distinct score per histogram bin, so the AUC is
    exact), regression targets and multiclass labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    score = np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1)
    if decimals is not None:
        score = np.round(score, decimals)
    target = rng.normal(10, 3, n)
    cls = rng.choice(["a", "b", "c"], n)
    guess = np.where(rng.random(n) < 0.7, cls, rng.choice(["a", "b", "c", "d"], n))
    return pd.DataFrame({"y": y, "score": score, "target": target, "estimate": target + rng.normal(0, 1, n),
                         "cls": cls, "guess": guess})


def _metrics(stats: dict[str, Any]) -> dict[str, Any]:
    return next(v for k, v in stats.items() if k.endswith("_metrics"))


def assert_quality_equal(local: dict[str, Any], remote: dict[str, Any], exact_auc: bool) -> None:
    """Counts and count-made metrics exactly, sums to rounding, the AUC within the bound the cluster states."""
    assert local["dataset"] == remote["dataset"]
    a, b = _metrics(local), _metrics(remote)
    assert set(a) == set(b)
    for name, m in a.items():
        x, y = m["value"], b[name]["value"]
        if name == "auc":
            bound = remote["compute"]["auc_max_error"]
            assert (x == y and bound == 0) if exact_auc else (bound > 0 and abs(x - y) <= bound), (x, y, bound)
        elif name in ("mae", "mse", "rmse", "r2"):
            assert math.isclose(x, y, rel_tol=1e-9), (name, x, y)
        elif name.endswith("_curve"):
            if exact_auc:
                assert x == y, name
        else:
            assert x == y, (name, x, y)
        sd = b[name]["standard_deviation"]   # another draw of the same estimator: same order, not the same value
        assert (sd == "NaN") == (m["standard_deviation"] == "NaN"), name


@pytest.mark.parametrize(("problem", "columns", "decimals"), [
    ("BinaryClassification", {"label": "y", "probability": "score"}, 3),
    ("BinaryClassification", {"label": "y", "probability": "score"}, None),
    ("Regression", {"label": "target", "prediction": "estimate"}, 3),
    ("MulticlassClassification", {"label": "cls", "prediction": "guess"}, 3)])
def test_model_quality_baseline_and_file_on_the_cluster_equal_local(db, modes, problem, columns, decimals):
    data = parquet(labelled(20_000, decimals=decimals))
    current = parquet(labelled(12_000, seed=5, decimals=decimals))
    exact = decimals is not None
    st = modes.store
    kw: dict[str, Any] = {"prediction": None, "probability": None, **columns}
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        runs = {}
        for which in ("local", "dask"):
            modes.use(which)
            base = mq.create_quality_baseline(s, st, data=data, fmt=None, header=True, problem_type=problem,
                                              threshold=0.5, name=which, actor=p, **kw).record(s)
            here = mq.quality_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True,
                                   actor=p).record(s)
            runs[which] = (base, here)
        (lb, la), (db_, da) = runs["local"], runs["dask"]
        assert st.exists(f"{db_.prefix}/dataset.parquet") and not st.exists(f"{lb.prefix}/dataset.parquet")
        assert (la.status, la.row_count, la.violation_count) == (da.status, da.row_count, da.violation_count)
    assert_quality_equal(json.loads(st.get(f"{lb.prefix}/statistics.json")),
                         json.loads(st.get(f"{db_.prefix}/statistics.json")), exact)
    assert_quality_equal(json.loads(st.get(f"{la.prefix}/statistics.json")),
                         json.loads(st.get(f"{da.prefix}/statistics.json")), exact)
    ca, cb = (next(v for k, v in json.loads(st.get(f"{b.prefix}/constraints.json")).items()
                   if k.endswith("_constraints")) for b in (lb, db_))
    assert {k: c["comparison_operator"] for k, c in ca.items()} == {k: c["comparison_operator"] for k, c in cb.items()}
    for k, c in ca.items():   # the same statistics give the same thresholds (the AUC's within its bound)
        assert math.isclose(c["threshold"], cb[k]["threshold"], rel_tol=1e-9) or (k == "auc" and not exact), k


def _captured_scores(s: Any, store: ObjectStore, df: pd.DataFrame, labelled_share: float = 0.8) -> None:
    """One record every 12 s from 10:00 with its score as the endpoint's prediction, and labels for a share."""
    start = T0 - dt.timedelta(minutes=30)
    recs = [{"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "encoding": "CSV",
                                               "data": f"{30 + i % 40},{50.5},CA,{1.0}"},
                             "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "encoding": "CSV",
                                                "data": str(df.score[i])}},
             "eventMetadata": {"eventId": f"ev-{i}", "inferenceId": f"inf-{i}",
                               "inferenceTime": (start + dt.timedelta(seconds=12 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")},
             "eventVersion": "0"} for i in range(len(df))]
    for chunk in range(0, len(recs), 250):
        service.ingest(s, store, "ep", json.dumps(recs[chunk:chunk + 250]).encode(), "application/json")
    truth = [{"eventMetadata": {"eventId": f"inf-{i}"}, "groundTruthData": {"data": str(df.y[i]), "encoding": "CSV"},
              "eventVersion": "0"} for i in range(int(len(df) * labelled_share))]
    service.ingest_ground_truth(s, store, "ep", json.dumps(truth).encode(), "application/json")


def _binary_quality_window_both_ways(db: Any, modes: Modes) -> tuple[Any, Any, Any, Any, dict[str, Any],
                                                                        dict[str, Any]]:
    """A binary ModelQuality schedule's window run locally, then on the cluster: both executions, both analyses and
    both statistics.json documents."""
    st = modes.store
    modes.use("local")
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        base = mq.create_quality_baseline(s, st, data=parquet(labelled(4_000)), fmt=None, header=True,
                                          problem_type="BinaryClassification", label="y", prediction=None,
                                          probability="score", threshold=0.5, name="mq", actor=p).record(s)
        base.settings = {**(base.settings or {}), "probability": "prediction"}   # the endpoint captures it so
        _captured_scores(s, st, labelled(1_500, seed=9))
        schedules.create(s, name="mq", endpoint="ep", monitoring_type="ModelQuality", expression="hourly",
                         baseline_id=base.id, window_start="-PT1H", window_end="PT0S", drift=None, alerting=None,
                         actor=p, now=T0)
        end = T0 + dt.timedelta(hours=1)
        here = schedules.run_now(s, st, "mq", T0, end, p)
        modes.use("dask")
        there = schedules.run_now(s, st, "mq", T0, end, p)
        a, b = s.get(Analysis, here.analysis_id), s.get(Analysis, there.analysis_id)
    docs = [json.loads(st.get(f"{x.prefix}/statistics.json")) if x is not None else {} for x in (a, b)]
    return here, there, a, b, docs[0], docs[1]


def test_scheduled_model_quality_window_on_the_cluster_equals_local(db, modes):
    here, there, a, b, local, remote = _binary_quality_window_both_ways(db, modes)
    assert here.status == there.status, (here.failure_reason, there.failure_reason)
    assert a is not None and b is not None
    assert a.row_count == b.row_count == 300 and a.violation_count == b.violation_count
    assert "engine" not in local["compute"] and remote["compute"]["engine"] == "dask"   # labels joined on the workers
    assert "10002 per curve" in local["compute"]["curve_points"] and "10001" in remote["compute"]["curve_points"]
    assert_quality_equal(local, remote, True)


def test_labels_that_arrived_before_their_window_join_on_the_cluster_as_locally(db, modes, monkeypatch):
    """A label ingested before its capture's hour (a backfill, a client clock ahead of the server) is joined by key
    on both paths: the cluster's labels come from the same database join as the local ones."""
    from monitor.service import ground_truth

    monkeypatch.setattr(ground_truth, "utcnow", lambda: T0 - dt.timedelta(days=2))   # labels "arrived" 2 days early
    here, there, a, b, local, remote = _binary_quality_window_both_ways(db, modes)
    assert a is not None and b is not None, (here.failure_reason, there.failure_reason)
    assert a.row_count == b.row_count == 300
    assert remote["compute"]["engine"] == "dask"
    assert_quality_equal(local, remote, True)


# --- label-free estimates (CBPE, DLE) of a scheduled ModelQuality window -------------------------------------------

def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def scored(n: int, seed: int, centre: float = 0.0, spread: float = 1.0, decimals: int | None = 3) -> pd.DataFrame:
    """A miscalibrated classifier: truth P(y=1) = σ(2x - 1), the model scores σ(0.6x - 0.2) (so the baseline's
    estimator calibrates); rounded to ``decimals`` (one distinct score per bin: the AUC is exact on the cluster).
    ``target``/``guess``: a regressor whose error grows with |x| (income = 50 + 10x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(centre, spread, n)
    score = _sigmoid(0.6 * x - 0.2)
    age = rng.integers(18, 90, n)
    guess = 3 * (age - 50) / 10
    return pd.DataFrame({"age": age, "income": np.round(50 + 10 * x, 4), "state": "CA",
                         "score": score if decimals is None else np.round(score, decimals),
                         "y": (rng.random(n) < _sigmoid(2 * x - 1)).astype(int),
                         "guess": np.round(guess, 4), "target": guess + rng.normal(0, 0.2 + np.abs(x), n)})


def _captured_rows(s: Any, store: ObjectStore, df: pd.DataFrame, output: str, label: str, labelled_rows: int,
                   inputs: tuple[str, ...] = ("age", "income", "state", "score")) -> None:
    """One record every 12 s from 10:00 (its ``inputs`` as input, ``output`` as the endpoint's prediction) and labels
    for the first ``labelled_rows``: the hour from 10:30 holds rows 150-449, half of them labelled."""
    start = T0 - dt.timedelta(minutes=30)
    recs = [{"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "encoding": "CSV",
                                               "data": ",".join(str(df[c][i]) for c in inputs)},
                             "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "encoding": "CSV",
                                                "data": str(df[output][i])}},
             "eventMetadata": {"eventId": f"ev-{i}", "inferenceId": f"inf-{i}",
                               "inferenceTime": (start + dt.timedelta(seconds=12 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")},
             "eventVersion": "0"} for i in range(len(df))]
    for chunk in range(0, len(recs), 250):
        service.ingest(s, store, "ep", json.dumps(recs[chunk:chunk + 250]).encode(), "application/json")
    truth = [{"eventMetadata": {"eventId": f"inf-{i}"},
              "groundTruthData": {"data": v if isinstance(v := df[label][i], str) else f"{v:.9g}", "encoding": "CSV"},
              "eventVersion": "0"} for i in range(labelled_rows)]
    service.ingest_ground_truth(s, store, "ep", json.dumps(truth).encode(), "application/json")


def _estimate_on_both(db: Any, modes: Modes, problem: str, columns: dict[str, Any], window: pd.DataFrame,
                      output: str, label: str, reference: pd.DataFrame | None = None,
                      features: list[dict[str, str]] = FEATURES, prediction: dict[str, str] | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A ModelQuality baseline on ``reference`` (its estimator fitted locally), the window captured (``features``
    as input), the schedule run on the cluster then locally: both estimates, and the checks of the alerts the
    cluster's execution opened."""
    from monitor.orm import Alert

    st = modes.store
    modes.use("local")
    with db.session_scope() as s:
        p = seed_endpoint(s, features, prediction)
        ref = scored(4_000, seed=1) if reference is None else reference
        base = mq.create_quality_baseline(s, st, data=parquet(ref), fmt=None, header=True,
                                          problem_type=problem, threshold=0.5, name="mq", actor=p, **columns).record(s)
        captured = "probability" if problem == "BinaryClassification" else "prediction"
        base.settings = {**(base.settings or {}), captured: "prediction"}   # the endpoint captures it so
        _captured_rows(s, st, window, output, label, 300, tuple(f["name"] for f in features))
        schedules.create(s, name="mq", endpoint="ep", monitoring_type="ModelQuality", expression="hourly",
                         baseline_id=base.id, window_start="-PT1H", window_end="PT0S", drift=None, alerting=None,
                         actor=p, now=T0)
        end = T0 + dt.timedelta(hours=1)
        modes.use("dask")
        there = schedules.run_now(s, st, "mq", T0, end, p)
        opened = [f"{x.check}:{x.subject}"
                  for x in s.scalars(select(Alert).where(Alert.opened_execution_id == there.id))]
        modes.use("local")
        here = schedules.run_now(s, st, "mq", T0, end, p)
        assert here.status == there.status, (here.failure_reason, there.failure_reason)
        a, b = s.get(Analysis, here.analysis_id), s.get(Analysis, there.analysis_id)
        assert a is not None and b is not None
        assert a.row_count == b.row_count == 150 and a.violation_count == b.violation_count   # the labelled rows
        va, vb = (json.loads(st.get(f"{x.prefix}/constraint_violations.json"))["violations"] for x in (a, b))
        assert {(v["metric_name"], v["constraint_check_type"]) for v in va} == \
            {(v["metric_name"], v["constraint_check_type"]) for v in vb}
    return json.loads(st.get(f"{a.prefix}/estimate.json")), json.loads(st.get(f"{b.prefix}/estimate.json")), opened


def assert_estimates_equal(local: dict[str, Any], remote: dict[str, Any]) -> None:
    """Sums equal to rounding; the AUC (estimate, band and realised) within the bounds the cluster's result
    states, to rounding when they are 0."""
    assert remote["compute"]["engine"] == "dask" and "compute" not in local
    for k in ("problem_type", "rows", "labelled_rows", "decisions", "threshold"):
        assert local.get(k) == remote.get(k), k
    bound = remote["compute"].get("roc_auc_max_error", 0.0)
    real_bound = remote["compute"].get("realised_roc_auc_max_error", 0.0)
    assert set(local["estimated"]) == set(remote["estimated"])
    for m, x in local["estimated"].items():
        y = remote["estimated"][m]
        assert x["calibrated"] == y["calibrated"], m
        if m == "roc_auc" and bound > 0:
            assert abs(x["estimate"] - y["estimate"]) <= bound, (x["estimate"], y["estimate"], bound)
            assert abs(x["realised"] - y["realised"]) <= real_bound, (x["realised"], y["realised"], real_bound)
            band = remote["compute"]["roc_auc_band_max_error"]
            assert abs(x["lower"] - y["lower"]) <= band and abs(x["upper"] - y["upper"]) <= band, (x, y, band)
            continue
        for k in ("estimate", "lower", "upper", "realised"):
            assert math.isclose(x[k], y[k], rel_tol=1e-9, abs_tol=1e-12), (m, k, x[k], y[k])
        assert x["within_band"] == y["within_band"], m


@pytest.mark.parametrize("decimals", [3, None])
def test_binary_estimate_of_a_scheduled_window_on_the_cluster_equals_local_and_alerts(db, modes, decimals):
    # traffic near the true boundary: the calibrated estimate of accuracy falls below the baseline's
    window = scored(1_500, seed=9, centre=0.5, spread=0.35, decimals=decimals)
    local, remote, opened = _estimate_on_both(db, modes, "BinaryClassification",
                                              {"label": "y", "prediction": None, "probability": "score"},
                                              window, "score", "y")
    assert local["rows"] == 300 and local["labelled_rows"] == 150
    assert local["estimated"]["accuracy"]["calibrated"]["method"] == "isotonic"   # the miscalibration was fixed
    assert_estimates_equal(local, remote)
    bound = remote["compute"]["roc_auc_max_error"]
    assert (bound == 0) if decimals is not None else (0 < bound < 0.01), bound
    assert "EstimatedLessThanThreshold:accuracy" in opened, opened


def test_regression_estimate_of_a_scheduled_window_on_the_cluster_equals_local_and_alerts(db, modes):
    # a wider spread of income: the loss model predicts larger errors than the baseline's
    window = scored(1_500, seed=9, spread=1.8)
    local, remote, opened = _estimate_on_both(db, modes, "Regression",
                                              {"label": "target", "prediction": "guess", "probability": None,
                                               "features": ["age", "income"]}, window, "guess", "target")
    assert local["labelled_rows"] == 150 and local["decisions"] == {"loss_model": "HistGradientBoostingRegressor"}
    assert_estimates_equal(local, remote)
    assert "EstimatedGreaterThanThreshold:mae" in opened, opened


def classes_scored(n: int, seed: int, scale: float = 1.5, decimals: int | None = None) -> pd.DataFrame:
    """A timid three-class model (softmax of half the true logits, so the baseline's estimator calibrates each
    class), its probabilities pa, pb, pc (rounded to ``decimals``), its call and the true class; a smaller
    ``scale`` makes the classes harder to tell apart (lower accuracy)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, 3)) * scale
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    model = np.exp(0.5 * logits) / np.exp(0.5 * logits).sum(axis=1, keepdims=True)
    if decimals is not None:
        model = np.round(model, decimals)
    names = np.array(["a", "b", "c"])
    y = (rng.random(n)[:, None] > np.cumsum(true, axis=1)).sum(axis=1)
    return pd.DataFrame({"pa": model[:, 0], "pb": model[:, 1], "pc": model[:, 2],
                         "guess": names[np.argmax(model, axis=1)], "cls": names[y]})


@pytest.mark.parametrize("decimals", [3, None])
def test_multiclass_estimate_of_a_scheduled_window_on_the_cluster_equals_local_and_alerts(db, modes, decimals):
    # classes harder to tell apart than in the reference: the calibrated estimate of accuracy falls below the
    # baseline's
    local, remote, opened = _estimate_on_both(
        db, modes, "MulticlassClassification",
        {"label": "cls", "prediction": "guess", "probability": None,
         "class_probabilities": {"a": "pa", "b": "pb", "c": "pc"}},
        classes_scored(1_500, seed=9, scale=0.7, decimals=decimals), "guess", "cls",
        reference=classes_scored(4_000, seed=1, decimals=decimals),
        features=[{"name": c, "type": "Fractional"} for c in ("pa", "pb", "pc")],
        prediction={"name": "prediction", "type": "String"})
    assert local["rows"] == 300 and local["labelled_rows"] == 150
    assert local["decisions"] == {"captured_prediction": 300, "highest_probability": 0}
    assert local["estimated"]["accuracy"]["calibrated"]["method"] == "isotonic"
    assert_estimates_equal(local, remote)
    bound = remote["compute"]["roc_auc_max_error"]
    assert (bound == 0) if decimals is not None else (0 < bound < 0.01), bound
    assert "EstimatedLessThanThreshold:accuracy" in opened, opened


# --- bias (clarify's ModelBias kind, through its services) --------------------------------------------------------

BIAS_FEATURES = [{"name": "age", "type": "Fractional"}, {"name": "income", "type": "Fractional"},
                 {"name": "sex", "type": "String"}]
POST = ["AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "GE", "RD", "SD", "TE"]


def population(n: int, seed: int, favour: float) -> pd.DataFrame:
    """The model under-accepts group f with probability ``favour``; ``band`` is CDDPL's subgroup."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(40, 10, n).round(1), "income": rng.normal(50, 10, n).round(2),
                       "sex": rng.choice(["f", "m"], n)})
    df["band"] = np.where(df.age > 40, "old", "young")
    df["label"] = (rng.random(n) < 0.5).astype(int)
    df["prediction"] = np.where((df.sex == "f") & (rng.random(n) < favour), 0, df.label)
    return df


def assert_bias_equal(local: dict[str, Any], remote: dict[str, Any]) -> None:
    """Every metric of every facet group: exactly, CDD and GE (floating-point sums in another order) to 1e-12."""
    for section in ("pre_training_bias_metrics", "post_training_bias_metrics"):
        assert (section in local) == (section in remote)
        if section not in local:
            continue
        a, b = local[section], remote[section]
        assert (a["label"], a["label_value_or_threshold"]) == (b["label"], b["label_value_or_threshold"])
        assert a["facets"].keys() == b["facets"].keys()
        for facet, groups in a["facets"].items():
            assert [g["value_or_threshold"] for g in groups] == [g["value_or_threshold"] for g in b["facets"][facet]]
            for ga, gb in zip(groups, b["facets"][facet], strict=True):
                assert [m["name"] for m in ga["metrics"]] == [m["name"] for m in gb["metrics"]]
                for ma, mb in zip(ga["metrics"], gb["metrics"], strict=True):
                    if ma["name"] in ("CDDL", "CDDPL", "GE") and ma.get("value") is not None:
                        assert ma["value"] == pytest.approx(mb["value"], rel=1e-12, abs=1e-15), ma["name"]
                    else:
                        assert ma == mb


def test_bias_baseline_and_window_on_the_cluster_equal_local(db, modes):
    from clarify.service import monitors as bias_monitors

    cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
           "group_variable": "band", "facet": [{"name_or_index": "sex", "value_or_threshold": ["f"]}],
           "methods": {"post_training_bias": {"methods": POST}}}
    reference = population(20_000, 1, favour=0.05).to_csv(index=False).encode()
    st = modes.store
    with db.session_scope() as s:
        p = seed_endpoint(s, BIAS_FEATURES)
        bases = {}
        for which in ("local", "dask"):
            modes.use(which)
            bases[which] = bias_monitors.create_bias_baseline(s, st, data=reference, config=json.dumps(cfg).encode(),
                                                              name=which, actor=p).record(s)
        lb, db_ = bases["local"], bases["dask"]
        assert st.exists(f"{db_.prefix}/dataset.parquet") and not st.exists(f"{lb.prefix}/dataset.parquet")
        assert_bias_equal(json.loads(st.get(f"{lb.prefix}/analysis.json")),
                          json.loads(st.get(f"{db_.prefix}/analysis.json")))
        unfair = population(1_500, 3, favour=0.6)     # much more unfair than the baseline
        start = T0 - dt.timedelta(minutes=30)
        recs = []
        for i, row in enumerate(unfair.itertuples()):
            rec = record(i, start + dt.timedelta(seconds=2 * i), (row.age, row.income, row.sex))
            rec["captureData"]["endpointOutput"]["data"] = str(row.prediction)
            recs.append(rec)
        for chunk in range(0, len(recs), 250):
            service.ingest(s, st, "ep", json.dumps(recs[chunk:chunk + 250]).encode(), "application/json")
        truth = [{"groundTruthData": {"data": str(row.label), "encoding": "CSV"},
                  "eventMetadata": {"eventId": f"inf-{i}"}, "eventVersion": "0"}
                 for i, row in enumerate(unfair.itertuples()) if i % 5]          # a fifth still unlabelled
        service.ingest_ground_truth(s, st, "ep", json.dumps(truth).encode(), "application/json")
        window_cfg = {**cfg, "group_variable": None,   # the capture has no band: no CDDPL
                      "methods": {"post_training_bias": {"methods": POST[:1] + POST[2:]}}}
        base = bias_monitors.create_bias_baseline(s, st, data=reference, config=json.dumps(window_cfg).encode(),
                                                  name="w", actor=p).record(s)
        runs = {}
        for which in ("local", "dask"):
            modes.use(which)
            runs[which] = bias_monitors.bias_window(s, st, baseline_id=base.id, endpoint="ep", start=T0,
                                                    end=T0 + dt.timedelta(hours=1), actor=p).record(s)
        a, b = runs["local"], runs["dask"]
        assert a.status == b.status == "CompletedWithViolations", (a.failure_reason, b.failure_reason)
        assert a.row_count == b.row_count == 480   # the 600 records from 10:30 (every 2 s from 10:00), 4 in 5 labelled
        va = json.loads(st.get(f"{a.prefix}/constraint_violations.json"))["violations"]
        vb = json.loads(st.get(f"{b.prefix}/constraint_violations.json"))["violations"]
        # the intervals are other bootstrap draws of the same distribution: the clear breaches are the same
        assert {v["metric_name"] for v in va} == {v["metric_name"] for v in vb} and "DPPL" in {v["metric_name"]
                                                                                                 for v in va}
    assert_bias_equal(json.loads(st.get(f"{a.prefix}/analysis.json")), json.loads(st.get(f"{b.prefix}/analysis.json")))


# --- Great Expectations suites ----------------------------------------------------------------------------------

SUITE = {"name": "inputs", "expectations": [
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1000}},
    {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": ["age", "income", "state",
                                                                                      "score"]}},
    {"type": "expect_column_to_exist", "kwargs": {"column": "zip"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "income", "mostly": 0.97}},
    {"type": "expect_column_values_to_be_null", "kwargs": {"column": "state", "mostly": 0.01}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "state", "value_set": ["CA", "NY"],
                                                              "mostly": 0.5}},
    {"type": "expect_column_values_to_not_be_in_set", "kwargs": {"column": "state", "value_set": ["ZZ"]}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 18, "max_value": 80,
                                                               "mostly": 0.9}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "state", "regex": "^[A-Z]{2}$"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "score", "mostly": 0.99}},
    {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "age", "type_list": ["int"]}},
    {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "state", "type_list": ["str"]}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "income", "min_value": 40, "max_value": 60}},
    {"type": "expect_column_min_to_be_between", "kwargs": {"column": "age", "min_value": 18}},
    {"type": "expect_column_max_to_be_between", "kwargs": {"column": "age", "max_value": 85}},
    {"type": "expect_column_stdev_to_be_between", "kwargs": {"column": "income", "max_value": 9}},
    {"type": "expect_column_sum_to_be_between", "kwargs": {"column": "age", "min_value": 0}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "missing_col", "min_value": 0}},
    {"type": "expect_column_median_to_be_between", "kwargs": {"column": "age", "min_value": 0}}]}


def test_an_expectation_suite_on_the_cluster_equals_local(db, modes):
    """Every type mlgov evaluates: the merged measures give local's results (floats to rounding); a type only GX
    runs is reported unsupported on the cluster, never passed."""
    st = modes.store
    current = parquet(frame(20_000, shift=1, seed=11))
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        modes.use("local")
        base = service.create_baseline(s, st, data=parquet(frame(3_000)), fmt=None, header=True, name="b",
                                       dataset_uri=None, actor=p).record(s)
        service.put_expectations(s, st, base.id, json.dumps(SUITE).encode(), p)
        runs = {}
        for which in ("local", "dask"):
            modes.use(which)
            runs[which] = service.analyze_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True,
                                               dataset_uri=None, config=None, actor=p).record(s)
        assert runs["local"].status == runs["dask"].status == "CompletedWithViolations"
    here, there = (json.loads(st.get(f"{runs[w].prefix}/expectations.json")) for w in ("local", "dask"))
    assert "compute" not in here and there["compute"] == "dask"
    assert here["results"][-1]["evaluated_by"] == "great_expectations" and there["results"][-1]["success"] is None
    assert here["statistics"]["failed"] == there["statistics"]["failed"] > 0
    for a, b in zip(here["results"][:-1], there["results"][:-1], strict=True):
        assert (a["type"], a["success"]) == (b["type"], b["success"]), (a, b)
        ra, rb = a.get("result", {}), b.get("result", {})
        assert ra.keys() == rb.keys(), (a, b)
        for k, v in ra.items():
            assert v == (pytest.approx(rb[k], rel=1e-12) if isinstance(v, float) else rb[k]), (a["type"], k)


def test_an_unreachable_cluster_fails_model_quality_and_bias_windows_and_writes_nothing(db, tmp_path, seaweed,
                                                                                         bucket):
    """The contract covers every kind: a ModelQuality execution ends Failed with the reason; a bias window raises
    the same ComputeFailed (which an execution records the same way); no analysis row or file is written."""
    from clarify.service import monitors as bias_monitors

    local = s3_settings(tmp_path, seaweed, bucket)
    st = open_store(local)
    with db.session_scope() as s:
        compute.configure(local)
        p = seed_endpoint(s, FEATURES)
        base = mq.create_quality_baseline(s, st, data=parquet(labelled(2_000).rename(columns={"score": "prediction"})),
                                          fmt=None, header=True, problem_type="BinaryClassification", label="y",
                                          prediction=None, probability="prediction", threshold=0.5, name="mq",
                                          actor=p).record(s)
        cfg = {"label": "label", "label_values_or_threshold": [1], "predicted_label": "prediction",
               "facet": [{"name_or_index": "state", "value_or_threshold": ["CA"]}],
               "methods": {"post_training_bias": {"methods": ["DPPL"]}}}
        ref = pd.DataFrame({"state": ["CA", "NY"] * 50, "label": [0, 1] * 50, "prediction": [1, 1, 0, 0] * 25})
        bias_base = bias_monitors.create_bias_baseline(s, st, data=ref.to_csv(index=False).encode(),
                                                       config=json.dumps(cfg).encode(), name="bias", actor=p).record(s)
        _captured_scores(s, st, labelled(400, seed=2))
        schedules.create(s, name="mq", endpoint="ep", monitoring_type="ModelQuality", expression="hourly",
                         baseline_id=base.id, window_start="-PT1H", window_end="PT0S", drift=None, alerting=None,
                         actor=p, now=T0)
        before = s.scalar(select(func.count()).select_from(Analysis))
        files = sorted(st.list("analyses/"))
        with unreachable_cluster(tmp_path, seaweed, bucket):
            ex = schedules.run_now(s, st, "mq", T0, T0 + dt.timedelta(hours=1), p)
            with pytest.raises(compute.ComputeFailed, match="cannot be reached"):
                bias_monitors.bias_window(s, st, baseline_id=bias_base.id, endpoint="ep", start=T0,
                                          end=T0 + dt.timedelta(hours=1), actor=p)
        assert_failed_unreachable(ex)
        assert s.scalar(select(func.count()).select_from(Analysis)) == before
    assert sorted(st.list("analyses/")) == files


def test_a_worker_killed_mid_model_quality_costs_a_rerun_not_the_analysis(db, modes):
    modes.use("local")
    st = modes.store
    current = parquet(labelled(80_000, seed=6))
    with db.session_scope() as s:
        p = seed_endpoint(s, FEATURES)
        base = mq.create_quality_baseline(s, st, data=parquet(labelled(4_000)), fmt=None, header=True,
                                          problem_type="BinaryClassification", label="y", prediction=None,
                                          probability="score", threshold=0.5, name="mq", actor=p).record(s)
        here = mq.quality_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True, actor=p).record(s)
    with own_cluster(modes) as own:
        modes.use("dask")
        with killing_a_busy_worker(own) as killed, db.session_scope() as s:
            there = mq.quality_file(s, st, baseline_id=base.id, data=current, fmt=None, header=True,
                                    actor=p).record(s)
        assert killed, "no worker was busy with the analysis to kill"
    assert (there.status, there.row_count) == (here.status, here.row_count) == (here.status, 80_000)
    assert_quality_equal(json.loads(st.get(f"{here.prefix}/statistics.json")),
                         json.loads(st.get(f"{there.prefix}/statistics.json")), True)
