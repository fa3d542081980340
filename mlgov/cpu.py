"""NumPy's CPU dispatch, tuned before NumPy loads; glibc's allocator, tuned for NumPy's large temporaries.

On AMD Zen 4 (family 19h with AVX-512) NumPy dispatches ``np.sort``/``argsort``/``partition`` to x86-simd-sort's
AVX-512 kernels, whose memory-destination compress-store is microcoded there: a sort of 100k floats took 3.9 ms
against 0.6-1.0 ms on the AVX2 kernels (NumPy 2.2 and 2.4) (measured on this project's CI machines; NumPy PR #32690 and
x86-simd-sort #6 describe it). Sorting is most of a drift analysis, so the whole analysis ran 2.3x slower. Zen 4
executes AVX-512 at AVX2 width anyway, so disabling NumPy's AVX-512 dispatch loses nothing else.

NumPy reads ``NPY_DISABLE_CPU_FEATURES`` once, when it is first imported, so this runs on ``import mlgov`` and
only when NumPy is not loaded yet; a value the operator set is never replaced. Child processes (server
workers, Dask workers, benchmark peers) inherit the environment and so the same dispatch.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import MutableMapping

ENV = "NPY_DISABLE_CPU_FEATURES"
AVX512_GROUP = "X86_V4 AVX512F"
"""NumPy 2.4 names the AVX-512 group X86_V4; 2.0-2.3 know AVX512F, whose dependants go with it. Each ignores the
other's name. NumPy 1.x is left alone: without AVX-512 its sort falls back to scalar code, slower still."""


def slow_avx512_sort(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo describes an AMD family 19h CPU with AVX-512 (Zen 4; Zen 5 is family 1Ah)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break   # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
            and "avx512f" in fields.get("flags", "").split())


@functools.cache
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process (benchmarks ask for every worker they start)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read(65536)
    except OSError:
        return ""


@functools.cache
def _numpy_2() -> bool:
    """Whether the installed NumPy is 2.x or later, read from its metadata (importing it would fix the dispatch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("numpy").split(".")[0]) >= 2
    except (PackageNotFoundError, ValueError):
        return False


def numpy_dispatch(environ: MutableMapping[str, str]) -> str | None:
    """Disable NumPy's AVX-512 group in ``environ`` on Zen 4 unless the operator chose; the reason, or None.
    For a process that has not loaded NumPy yet, or the environment of one about to start."""
    if ENV in environ or not slow_avx512_sort(_cpuinfo()) or not _numpy_2():
        return None
    environ[ENV] = AVX512_GROUP
    return (f"{ENV}={AVX512_GROUP}: AMD Zen 4 runs NumPy's AVX-512 sort kernels ~4x slower than its AVX2 ones; "
            f"set {ENV} yourself to override")


def tune_numpy(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """``numpy_dispatch`` for this process, when NumPy is not loaded yet (it reads the variable once, on import)."""
    return None if "numpy" in sys.modules else numpy_dispatch(environ)


TUNED = tune_numpy()


# --- glibc malloc ---------------------------------------------------------------------------------------------
#
# A drift analysis allocates and frees a few hundred arrays of a column's size (sorted copies, masks, grids).
# glibc's defaults give each fresh pages: blocks above the mmap threshold (dynamic, starting at 128 KiB) are
# mapped and unmapped per call, and the heap is trimmed back to the kernel whenever 2x that threshold lies free at
# its top, so the next array faults its pages in again. At 100k rows x 25 columns that was 18,000 page faults and
# 30% of the analysis' CPU (83 -> 57 ms on one thread). glibc raises both thresholds itself, but only to the size of
# the largest block freed so far (a 100k-row column: 0.8 MiB, so the heap was trimmed past 1.6 MiB free). Fixed at
# the ceiling of that adjustment, 32 MiB (a 4M-row float column comes from the heap) and 64 MiB (kept free at an
# arena's top), freed memory is reused. The cost, as after glibc's own adjustment to a 32 MiB block: each arena may
# hold up to 64 MiB of freed memory resident after a large analysis.

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # <malloc.h>
_OPERATOR_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


@functools.cache
def tune_malloc() -> str | None:
    """Fixed mmap and trim thresholds for this process (glibc only, once, never over the operator's own malloc
    settings); what was set, or None. For processes that compute summaries: the server and the scheduler."""
    if any(v in os.environ for v in _OPERATOR_VARS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):   # not glibc (musl, macOS): its allocator is left as it is
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return None
    return (f"malloc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB "
            "(NumPy temporaries reuse freed pages; set MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES to choose)")
