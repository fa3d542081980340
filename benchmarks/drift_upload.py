"""The path a user takes: a CSV or Parquet file uploaded through ``POST /api/v1/analyses`` (in-process, Starlette's
TestClient: no sockets), against ``pandas.read_csv``/``read_parquet`` of the same files + Evidently 0.7's
DataDriftPreset. Each tool in its own process, warmed up (imports and one run on a 2,000-row file), numeric
libraries' thread pools pinned to one thread (``measure``), then timed once per format.

mlgov's figure is the whole request: multipart parsing, reading the file with Arrow, loading the baseline from the
store, profiling, constraint checks, drift, writing statistics/violations/drift documents and the database row.
The baseline (made from the reference file by ``POST /api/v1/baselines`` beforehand) is not timed on our side;
Evidently has no stored baseline, so its figure includes reading the reference file and its share of the work
(the reference read is also printed apart). ``--profile`` prints our request's cProfile breakdown.

    .venv/bin/python benchmarks/drift_upload.py --rows 100000 --cols 25
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

import measure  # noqa: E402
from drift_vs_evidently import make_frames, run_evidently  # noqa: E402

# this folder out of the path again (drift_vs_evidently put it first): benchmarks/registry.py would shadow the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]

FORMATS = ("csv", "parquet")


def write_files(tmp: Path, rows: int, cols: int) -> dict[str, tuple[Path, Path]]:
    ref, cur, _, _ = make_frames(rows, cols)
    out = {}
    for fmt in FORMATS:
        r, c = tmp / f"ref-{rows}.{fmt}", tmp / f"cur-{rows}.{fmt}"
        for df, p in ((ref, r), (cur, c)):
            df.to_csv(p, index=False) if fmt == "csv" else df.to_parquet(p, index=False)
        out[fmt] = (r, c)
    return out


def ours(tmp: Path, small: dict[str, tuple[Path, Path]], big: dict[str, tuple[Path, Path]],
         profile: bool) -> dict[str, Any]:
    os.environ["MLGOV_COMPUTE"] = "local"
    from alembic import command
    from fastapi.testclient import TestClient

    from mlgov import auth
    from mlgov.app import create_app
    from mlgov.db import Database, alembic_config
    from mlgov.settings import Settings

    url = f"sqlite:///{tmp}/bench.db"
    command.upgrade(alembic_config(url), "head")
    db = Database(url)
    app = create_app(Settings(home=tmp / "home", database_url=url, background_workers=False, scheduler=False), db=db)
    with db.session_scope() as s:
        _, key = auth.create_key(s, "bench", "publisher", actor="bench")
    h = {"Authorization": f"Bearer {key}"}
    out: dict[str, Any] = {}
    with TestClient(app, base_url="http://testserver") as c:

        def baseline(path: Path) -> str:
            r = c.post("/api/v1/baselines", files={"file": (path.name, path.read_bytes())}, data={"name": path.stem},
                       headers=h)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        def analyse(bid: str, path: Path) -> dict[str, Any]:
            r = c.post("/api/v1/analyses", data={"baseline_id": bid}, files={"file": (path.name, path.read_bytes())},
                       headers=h)
            assert r.status_code == 201, r.text
            return dict(r.json())

        for fmt in FORMATS:
            analyse(baseline(small[fmt][0]), small[fmt][1])   # warm
            bid = baseline(big[fmt][0])
            m, body = measure.timed(functools.partial(analyse, bid, big[fmt][1]))
            out[fmt] = {**m, "drifted": sorted(body.get("drifted_features") or [])}
            if profile:   # the request runs on the server's thread: profile the service call there
                from monitor import service

                pr = cProfile.Profile()
                inner = service.analyze_file

                def profiled(*args: Any, pr: Any = pr, inner: Any = inner, **kw: Any) -> Any:
                    return pr.runcall(inner, *args, **kw)

                service.analyze_file = profiled
                c0 = time.process_time()
                analyse(bid, big[fmt][1])
                whole = time.process_time() - c0
                service.analyze_file = inner
                buf = io.StringIO()
                st = pstats.Stats(pr, stream=buf)
                buf.write(f"whole request (profiled) {whole:.3f} s CPU; service.analyze_file:\n")
                st.sort_stats("tottime").print_stats(22)
                st.sort_stats("cumulative").print_stats(30)
                out[fmt]["profile"] = buf.getvalue()
    return out


def evidently(small: dict[str, tuple[Path, Path]], big: dict[str, tuple[Path, Path]], cols: int) -> dict[str, Any]:
    import pandas as pd

    out: dict[str, Any] = {}
    for fmt in FORMATS:
        read = pd.read_csv if fmt == "csv" else pd.read_parquet

        def run(files: tuple[Path, Path], read: Any = read) -> dict[str, tuple[str, float, bool]]:
            ref, cur = read(files[0]), read(files[1])
            num = [n for n in ref.columns if n.startswith("num_")]
            cat = [n for n in ref.columns if n.startswith("cat_")]
            return run_evidently(ref, cur, num, cat)

        run(small[fmt])
        t0 = time.process_time()
        read(big[fmt][0])
        ref_read = time.process_time() - t0
        m, verdicts = measure.timed(functools.partial(run, big[fmt]))
        out[fmt] = {**m, "ref_read_cpu_s": ref_read, "drifted": sorted(c for c, v in verdicts.items() if v[2])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cols", type=int, default=25)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--worker", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        tmp = Path(a.dir or ".")
        small, big = write_files(tmp, 2000, a.cols), write_files(tmp, a.rows, a.cols)
        result = ours(tmp, small, big, a.profile) if a.worker == "ours" else evidently(small, big, a.cols)
        measure.emit(result)
        return
    print(f"load average before: {measure.load_average()}")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        base = ["--rows", str(a.rows), "--cols", str(a.cols)]
        mine = measure.run_worker(sys.executable, str(HERE),
                                  ["--worker", "ours", "--dir", d1, *base, *(["--profile"] if a.profile else [])])
        theirs = None if a.skip_evidently else measure.run_worker(sys.executable, str(HERE),
                                                                   ["--worker", "evidently", "--dir", d2, *base])
    for fmt in FORMATS:
        print(measure.describe(f"mlgov POST /api/v1/analyses ({fmt})", mine[fmt]))
        if "profile" in mine[fmt]:
            print(mine[fmt]["profile"])
        if theirs is None:
            continue
        ev = theirs[fmt]
        print(measure.describe(f"pandas.read_{fmt} + evidently ({fmt})", ev)
              + f"; reading the reference alone {ev['ref_read_cpu_s']:.2f} s CPU")
        print(f"rows={a.rows} cols={a.cols} format={fmt} ours_s={mine[fmt]['seconds']:.3f} "
              f"ours_cpu_s={mine[fmt]['cpu_s']:.3f} evidently_s={ev['seconds']:.3f} evidently_cpu_s={ev['cpu_s']:.3f} "
              f"ratio={ev['seconds'] / mine[fmt]['seconds']:.1f} cpu_ratio={ev['cpu_s'] / mine[fmt]['cpu_s']:.1f} "
              f"ours_threads={mine[fmt]['threads']} evidently_threads={ev['threads']} "
              f"same_drifted={mine[fmt]['drifted'] == ev['drifted']} load_after={measure.load_average()}")


if __name__ == "__main__":
    main()
