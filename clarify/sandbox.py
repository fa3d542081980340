"""Native model formats (XGBoost, LightGBM, ONNX) parsed and run in a child process, never in the server.

Their libraries parse the uploaded bytes in C++, and the bytes come from any publisher: a LightGBM header with a
wrong ``tree_sizes`` calls ``std::terminate`` (the whole server died with it), and an ONNX initializer stored as
"external data" is read from a file named relative to the working directory (a publisher read ``admin.key``
byte by byte through SHAP values). In the child a crash ends only the child (the caller gets ModelLoadError),
its working directory is an empty temporary folder and its environment holds none of mlgov's settings, so no
file name in a model reaches the server's files or secrets. Inputs go in as a pickle (the server wrote them);
results come back as JSON and ``.npy`` without pickle (the child is the untrusted side).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clarify.loaders import ModelLoadError
from clarify.metrics import shap_values
from clarify.metrics.shap_values import OutputSpaceUnavailable, ShapResult, predict_fn

NATIVE = frozenset({"xgboost", "lightgbm", "onnx"})
_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class NativeModel:
    """A native-format model the child loaded once without fault: its bytes, loaded again in each child run, and
    the feature names it was fitted on (`shap_values.feature_names`)."""

    data: bytes
    fmt: str
    names: tuple[str, ...] = ()


class ModelFailed(RuntimeError):
    """The model raised while predicting or being explained in the child (its exception's type and text)."""


_checked: dict[tuple[str, bytes], tuple[str, ...]] = {}


def check(data: bytes, fmt: str) -> NativeModel:
    """``data`` loaded once in a child (ModelLoadError if it cannot be, or crashes its library)."""
    key = (fmt, _digest(data))
    if key not in _checked:
        head, _ = _run({"op": "load", "fmt": fmt, "model": data})
        if len(_checked) >= 64:
            _checked.clear()
        _checked[key] = tuple(str(n) for n in head.get("names") or ())
    return NativeModel(data, fmt, _checked[key])


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """``predict_fn(model)(x)``: in a child for a `NativeModel` (one score per row)."""
    if not isinstance(model, NativeModel):
        return np.asarray(predict_fn(model)(x))
    rows = np.asarray(x)
    _, arr = _run({"op": "predict", "fmt": model.fmt, "model": model.data, "x": rows}, (len(rows),))
    return arr


def explain(model: Any, data: pd.DataFrame, **kwargs: Any) -> ShapResult:
    """``shap_values.explain(model, data, **kwargs)``: in a child for a `NativeModel`."""
    if not isinstance(model, NativeModel):
        return shap_values.explain(model, data, **kwargs)
    head, local = _run({"op": "explain", "fmt": model.fmt, "model": model.data, "data": data, "kwargs": kwargs},
                       data.shape)
    values = head.get("global_shap_values")
    if not isinstance(values, dict) or set(values) != {str(c) for c in data.columns} or not all(
            isinstance(v, int | float) for v in values.values()) or not isinstance(head.get("expected_value"),
                                                                                 int | float):
        raise ModelFailed("the explanation the model's process answered is not one of this data")
    return {"method": str(head.get("method")), "agg_method": str(head.get("agg_method")),
            "output_space": str(head.get("output_space")), "global_shap_values": values,
            "expected_value": float(head["expected_value"]), "local": pd.DataFrame(local, columns=data.columns)}


TIMEOUT_S = 900
"""Wall time a child may take (a model can loop for ever: an ONNX Loop of 10^15 turns); it then gets SIGKILL and
the request a 422. The child also limits its own CPU time to this, in case the server dies before it does."""


def _digest(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


def _run(job: dict[str, Any], shape: tuple[int, ...] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Run ``job`` in a child: its JSON head and its array, which must have ``shape`` (a child's answer is read
    no further than the bytes that shape needs, so a model cannot make the server hold gigabytes)."""
    fmt = job["fmt"]
    env = {k: os.environ[k] for k in _ENV_KEPT if k in os.environ}
    cap = 1 << 20 if shape is None else (1 << 20) + 8 * int(np.prod(shape))
    with tempfile.TemporaryDirectory(prefix="mlgov-model-") as cwd:
        env["HOME"] = env["TMPDIR"] = cwd
        proc = subprocess.Popen([sys.executable, "-I", "-m", "clarify.sandbox"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            out = _exchange(proc, pickle.dumps(job), cap)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if out is None:
        raise ModelLoadError(f"the {fmt} model ran longer than {TIMEOUT_S} s or answered more than its rows need, "
                             "and was stopped")
    head_line, _, rest = out.partition(b"\n")
    head, arr = _parsed(head_line, rest, shape)
    if proc.returncode != 0 or head is None:
        raise ModelLoadError(f"the {fmt} library failed on this model ({_ended(proc.returncode)}): the artifact "
                             f"is malformed, or not a {fmt} model")
    error = head.get("error")
    if error == "load":
        raise ModelLoadError(str(head.get("message"))[:2000])
    if error == "space":
        raise OutputSpaceUnavailable.restored(str(head.get("message"))[:2000],
                                              [str(p) for p in head.get("possible") or []])
    if error is not None:
        raise ModelFailed(f"{str(head.get('type'))[:100]}: {str(head.get('message'))[:1000]}")
    return head, arr


def _exchange(proc: subprocess.Popen[bytes], payload: bytes, cap: int) -> bytes | None:
    """Send the job, read the answer: None past the deadline or the cap (the caller kills the child)."""
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        proc.stdin.write(payload)   # the child reads all of it before it writes anything
        proc.stdin.close()
    except BrokenPipeError:   # it died first: its exit status says how
        pass
    chunks, size, fd = [], 0, proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None
    return b"".join(chunks)


def _parsed(head_line: bytes, rest: bytes, shape: tuple[int, ...] | None) -> tuple[dict[str, Any] | None,
                                                                                     np.ndarray]:
    """The child's head and array, checked: a dict, and an array of floats of exactly ``shape`` (an error head
    carries none)."""
    try:
        head = json.loads(head_line)
        if not isinstance(head, dict):
            return None, np.empty(0)
        if "error" in head or shape is None:
            return head, np.empty(0)
        buf = io.BytesIO(rest)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        reader = readers.get(np.lib.format.read_magic(buf))
        if reader is None:
            return None, np.empty(0)
        got, _, dtype = reader(buf)   # the shape, before anything is allocated for it
        if tuple(got) != tuple(shape) or dtype != np.dtype(float):
            return None, np.empty(0)
        buf.seek(0)
        return head, np.load(buf, allow_pickle=False)
    except (ValueError, RecursionError, MemoryError, EOFError, OSError):
        return None, np.empty(0)


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"it stopped with {signal.Signals(-code).name}"
        except ValueError:
            return f"it stopped with signal {-code}"
    return f"it exited with status {code}"


# --- the child -----------------------------------------------------------------------------------------------

def _child() -> None:
    import resource

    from clarify import loaders

    resource.setrlimit(resource.RLIMIT_CPU, (TIMEOUT_S, TIMEOUT_S + 5))   # ends even if the server died first

    job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by the server that started this process
    out = sys.stdout.buffer
    arr: np.ndarray | None = None
    try:
        model = loaders.load_here(job["model"], job["fmt"])
        head: dict[str, Any] = {}
        if job["op"] == "load":
            head = {"names": shap_values.feature_names(model) or []}
        elif job["op"] == "predict":
            arr = np.asarray(shap_values.predict_fn(model)(job["x"]), dtype=float)
        elif job["op"] == "explain":
            result = shap_values.explain(model, job["data"], **job["kwargs"])
            arr = np.asarray(result.pop("local"), dtype=float)   # type: ignore[misc]
            head = dict(result)
    except loaders.ModelLoadError as exc:
        head, arr = {"error": "load", "message": str(exc)}, None
    except OutputSpaceUnavailable as exc:
        head, arr = {"error": "space", "message": str(exc), "possible": exc.possible}, None
    except Exception as exc:   # reported to the server, which says the model failed on this data
        head, arr = {"error": "model", "type": type(exc).__name__, "message": str(exc)[:1000]}, None
    buf = io.BytesIO()
    if arr is not None:
        np.save(buf, arr, allow_pickle=False)
    out.write(json.dumps(head).encode() + b"\n" + buf.getvalue())
    out.flush()


if __name__ == "__main__":
    _child()
