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
import signal
import subprocess
import sys
import tempfile
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
    """``predict_fn(model)(x)``: in a child for a `NativeModel`."""
    if not isinstance(model, NativeModel):
        return np.asarray(predict_fn(model)(x))
    _, arr = _run({"op": "predict", "fmt": model.fmt, "model": model.data, "x": np.asarray(x)})
    return arr


def explain(model: Any, data: pd.DataFrame, **kwargs: Any) -> ShapResult:
    """``shap_values.explain(model, data, **kwargs)``: in a child for a `NativeModel`."""
    if not isinstance(model, NativeModel):
        return shap_values.explain(model, data, **kwargs)
    head, local = _run({"op": "explain", "fmt": model.fmt, "model": model.data, "data": data, "kwargs": kwargs})
    return {**head, "local": pd.DataFrame(local, columns=data.columns)}  # type: ignore[typeddict-item]


def _digest(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


def _run(job: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    fmt = job["fmt"]
    env = {k: os.environ[k] for k in _ENV_KEPT if k in os.environ}
    with tempfile.TemporaryDirectory(prefix="mlgov-model-") as cwd:
        env["HOME"] = env["TMPDIR"] = cwd
        proc = subprocess.run([sys.executable, "-I", "-m", "clarify.sandbox"], input=pickle.dumps(job),
                              capture_output=True, cwd=cwd, env=env, check=False)
    head_line, _, rest = proc.stdout.partition(b"\n")
    try:
        head = json.loads(head_line)
        arr = np.load(io.BytesIO(rest), allow_pickle=False) if rest else np.empty(0)
    except ValueError:
        head, arr = None, np.empty(0)
    if proc.returncode != 0 or not isinstance(head, dict):
        raise ModelLoadError(f"the {fmt} library failed on this model ({_ended(proc.returncode)}): the artifact "
                             f"is malformed, or not a {fmt} model")
    error = head.get("error")
    if error == "load":
        raise ModelLoadError(str(head.get("message")))
    if error == "space":
        raise OutputSpaceUnavailable.restored(str(head.get("message")), list(head.get("possible") or []))
    if error is not None:
        raise ModelFailed(f"{head.get('type')}: {head.get('message')}")
    return head, arr


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"it stopped with {signal.Signals(-code).name}"
        except ValueError:
            return f"it stopped with signal {-code}"
    return f"it exited with status {code}"


# --- the child -----------------------------------------------------------------------------------------------

def _child() -> None:
    from clarify import loaders

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
