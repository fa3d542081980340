"""Measurements shared by the peer benchmarks: each tool runs in its own process, warmed up, and reports its
wall time, CPU time (CPU ÷ wall says how many cores it really kept busy), the most threads it had at once,
and its peak resident memory above the level at the start of the timed block (Linux's high-water mark,
reset just before the block, so imports, data generation and warm-up are not counted)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def release_free_memory() -> None:
    """Hands freed heap pages back to the kernel (glibc), so a block's peak above the start counts what the block
    needs, not less: a process that keeps freed pages for reuse (mlgov/cpu.py ``tune_malloc``) would otherwise
    meet part of its peak from pages already resident."""
    with suppress(OSError, AttributeError):   # not glibc: nothing to hand back this way
        ctypes.CDLL(None).malloc_trim(0)


@contextmanager
def measured(out: dict[str, Any], *, release: bool = False) -> Iterator[None]:
    """Fills ``out`` with seconds, cpu_s, threads (peak, sampled every 10 ms) and peak_mb for the block; with
    ``release``, freed memory is handed back first (peak_mb exact, but the block's time then includes faulting
    fresh pages in)."""
    if release:
        release_free_memory()
    start_rss = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as fh:  # resets VmHWM to the current RSS
        fh.write("5")
    seen = [_threads()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            seen.append(_threads() - 1)  # not counting this sampler

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        stop.set()
        sampler.join()
        out.update(seconds=seconds, cpu_s=cpu, threads=max(seen) if seen else 1, peak_mb=_status("VmHWM:") - start_rss)


def single_threaded_env() -> dict[str, str]:
    """The environment each worker gets: numeric libraries' own pools pinned to one thread, so the threads a
    tool uses are the ones it chooses (mlgov's column pool), the same for every tool."""
    from mlgov import cpu  # here, not at the top: peers' own virtualenvs import this module without mlgov

    env = dict(os.environ)
    cpu.numpy_dispatch(env)   # the same NumPy dispatch for every tool (AVX2 sorts on AMD Zen 4: see mlgov/cpu.py)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    return env


def numpy_dispatch() -> str:
    """What every worker's NumPy dispatches to, for the report."""
    value = single_threaded_env().get("NPY_DISABLE_CPU_FEATURES")
    return f"NPY_DISABLE_CPU_FEATURES={value}" if value else "NumPy's default CPU dispatch"


def run_worker(python: str, script: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``python script args`` and returns the JSON object it prints on its last line of stdout."""
    proc = subprocess.run([python, script, *args], capture_output=True, text=True, env=env or single_threaded_env())
    if proc.returncode != 0:
        raise SystemExit(f"worker {script} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe(name: str, m: dict[str, Any]) -> str:
    runs = m.get("all_seconds") or []
    return (
        f"{name}: {m['seconds']:.3f} s wall, {m['cpu_s']:.2f} s CPU ({m['cpu_s'] / m['seconds']:.2f} cores busy), "
        f"{m['threads']} OS threads at most, peak RSS +{m['peak_mb']:.0f} MB"
        + (f" (median of {len(runs)} runs: {', '.join(f'{x:.3f}' for x in runs)} s)" if len(runs) > 1 else "")
        + (f"; first full-size run {m['first_seconds']:.3f} s" if "first_seconds" in m else "")
    )


def timed(fn: Callable[[], Any], *, release: bool = False) -> tuple[dict[str, Any], Any]:
    out: dict[str, Any] = {}
    with measured(out, release=release):
        value = fn()
    return out, value


if __name__ == "__main__":
    sys.exit("a helper module for the benchmarks; run one of them")
