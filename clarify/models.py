"""Loading model artifacts safely for explanations.

Safe formats load by default: skops for scikit-learn (only types from scikit-learn, NumPy, SciPy and the
standard library are accepted), XGBoost and LightGBM native files, ONNX through onnxruntime. A pickle or
joblib artifact is refused unless an admin marked that model version's artifact as trusted (audited in
the registry). The bytes must hash to the registered sha256 first, whatever the format.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

FORMATS = ("skops", "xgboost", "lightgbm", "onnx", "pickle", "joblib")
SAFE_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class ModelLoadError(ValueError):
    pass


class UntrustedModel(ModelLoadError):
    pass


def check_digest(data: bytes, expected_sha256: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise ModelLoadError(f"the artifact's sha256 is {actual}, the registry says {expected_sha256}; "
                             "it is not the registered model")


def load(data: bytes, fmt: str, *, trusted: bool) -> Any:
    try:
        return _load(data, fmt, trusted=trusted)
    except ImportError as exc:
        raise ModelLoadError(f"the {fmt} loader is not installed on this server ({exc.name}); "
                             f"install it (pip install {exc.name})") from None


def _load(data: bytes, fmt: str, *, trusted: bool) -> Any:
    if fmt not in FORMATS:
        raise ModelLoadError(f"model format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "skops":
        import skops.io as sio

        try:
            unknown = [t for t in sio.get_untrusted_types(data=data) if not t.startswith(SAFE_TYPE_PREFIXES)]
        except Exception as exc:
            raise ModelLoadError(f"not a skops file: {exc}") from None
        if unknown and not trusted:
            raise UntrustedModel(f"the skops file contains types outside scikit-learn/NumPy/SciPy: {unknown[:5]}")
        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    if fmt == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
        return booster
    if fmt == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_str=data.decode())
    if fmt == "onnx":
        import onnxruntime

        return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    if not trusted:
        raise UntrustedModel(f"{fmt} artifacts can run arbitrary code when loaded; an admin must mark this "
                             "version's artifact as trusted first")
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    import pickle

    return pickle.loads(data)  # noqa: S301 - only after an audited admin trust decision
