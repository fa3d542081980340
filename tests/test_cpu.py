"""NumPy's CPU dispatch: AVX-512 sort kernels are avoided on AMD Zen 4, and only there, and never over the operator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlgov import cpu

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512dq\n\n")
ZEN3 = ZEN4.replace(" avx512f avx512dq", "")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("cpu family\t: 25", "cpu family\t: 6")
ROOT = Path(__file__).resolve().parents[1]


def test_only_zen4_with_avx512_is_detected() -> None:
    assert cpu.slow_avx512_sort(ZEN4)
    assert not cpu.slow_avx512_sort(ZEN3)     # no AVX-512: nothing to disable
    assert not cpu.slow_avx512_sort(ZEN5)     # Zen 5 fixed the compress-store
    assert not cpu.slow_avx512_sort(INTEL)    # x86-simd-sort's fastest path
    assert not cpu.slow_avx512_sort("")


def _probe(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != cpu.ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_import_mlgov_first_sets_numpy_dispatch_on_this_machine() -> None:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        zen4 = cpu.slow_avx512_sort(f.read())
    code = ("import os, mlgov, numpy\nfrom numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "print(os.environ.get('NPY_DISABLE_CPU_FEATURES'), f.get('AVX512_SKX'), sep='|')")
    value, skx = _probe(code).split("|")
    if zen4:   # the dispatch NumPy actually uses, not only the variable
        assert (value, skx) == (cpu.AVX512_GROUP, "False")
    else:
        assert value == "None"


def test_operator_choice_and_an_already_loaded_numpy_are_left_alone() -> None:
    assert _probe("import os, mlgov; print(os.environ['NPY_DISABLE_CPU_FEATURES'])",
                  NPY_DISABLE_CPU_FEATURES="AVX512_ICL") == "AVX512_ICL"
    assert _probe("import os, numpy, mlgov; print(os.environ.get('NPY_DISABLE_CPU_FEATURES'))") == "None"
    env: dict[str, str] = {}
    sys.modules.setdefault("numpy", __import__("numpy"))
    assert cpu.tune_numpy(env) is None and env == {}


def test_numpy_1_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """NumPy 1.x has no AVX2 sort to fall back to: disabling AVX-512 there would make sorts slower, not faster."""
    monkeypatch.setattr(cpu, "slow_avx512_sort", lambda _info: True)
    monkeypatch.setattr(cpu, "_numpy_2", lambda: False)
    env: dict[str, str] = {}
    assert cpu.numpy_dispatch(env) is None and env == {}
    monkeypatch.setattr(cpu, "_numpy_2", lambda: True)
    assert cpu.numpy_dispatch(env) and env == {cpu.ENV: cpu.AVX512_GROUP}


FAULTS = """
import resource, numpy as np
from mlgov import cpu
print(cpu.tune_malloc() is not None, end='|')
def burst():   # eight column-sized temporaries at once, then all freed: an analysis step in miniature
    arrays = [np.ones(1 << 17) for _ in range(8)]
    del arrays
burst(); burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _bursts(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k not in cpu._OPERATOR_VARS and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", FAULTS], cwd=ROOT, env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout.strip()
    tuned, faults = out.split("|")
    return tuned, int(faults)


def test_tuned_malloc_reuses_freed_pages_instead_of_faulting_them_in_again() -> None:
    tuned, faults = _bursts()
    assert tuned == "True" and faults < 100   # 20 bursts of 8 MiB, all from pages already resident
    # glibc's defaults hand the heap back after each burst: every burst faults its 2,048 pages in again
    tuned, faults = _bursts(MALLOC_ARENA_MAX="4")   # an operator's malloc setting: tuning stands aside
    assert tuned == "False" and faults > 20 * 1000


def test_operator_malloc_settings_are_left_alone() -> None:
    for env in ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}):
        assert _probe("from mlgov import cpu; print(cpu.tune_malloc())", **env) == "None"
