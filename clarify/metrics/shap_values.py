"""SHAP attributions in SageMaker's `explanations.kernel_shap` shape (the method actually used is named)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np
import pandas as pd

AGGREGATIONS = ("mean_abs", "mean_sq", "median")

Predict = Callable[[np.ndarray], np.ndarray]


class ShapResult(TypedDict):
    """What ``explain`` returns: global attributions, the base value, per-row values and the method that ran."""
    method: str
    agg_method: str
    global_shap_values: dict[str, float]
    expected_value: float
    local: pd.DataFrame


def predict_fn(model: Any) -> Predict:
    """The scoring function; models without predict_proba (e.g. clarify.remote.RemoteModel) use predict."""
    if hasattr(model, "predict_proba"):
        def proba(x: np.ndarray) -> np.ndarray:
            positive: np.ndarray = model.predict_proba(x)[:, 1]
            return positive
        return proba
    if hasattr(model, "predict"):
        predict: Predict = model.predict   # the model is untyped (any loader's object): its predict is the boundary
        return predict
    if hasattr(model, "run"):   # onnxruntime session
        name = model.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            out = model.run(None, {name: np.asarray(x, dtype=np.float32)})
            last = out[-1]
            if isinstance(last, list) and last and isinstance(last[0], dict):   # zipmap probabilities
                return np.array([row.get(1, row.get("1", 0.0)) for row in last])
            arr = np.asarray(last)
            return arr[:, -1] if arr.ndim == 2 else arr
        return run
    raise TypeError(f"cannot call model of type {type(model).__name__}")


def model_width(model: Any) -> int | None:
    """How many feature columns the model reads, when it says (scikit-learn, XGBoost, LightGBM, ONNX)."""
    try:
        if hasattr(model, "n_features_in_"):
            return int(model.n_features_in_)
        if hasattr(model, "num_features"):       # xgboost.Booster
            return int(model.num_features())
        if hasattr(model, "num_feature"):        # lightgbm.Booster
            return int(model.num_feature())
        if hasattr(model, "get_inputs"):         # onnxruntime session: [batch, width]
            shape = model.get_inputs()[0].shape
            return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    except (TypeError, ValueError, AttributeError):
        return None
    return None


def explain(model: Any, data: pd.DataFrame, *, agg_method: str = "mean_abs", background: pd.DataFrame | None = None,
            num_clusters: int = 10, seed: int = 0, max_evals: int | None = None) -> ShapResult:
    import shap

    if agg_method not in AGGREGATIONS:
        raise ValueError(f"agg_method {agg_method!r} is not one of {', '.join(AGGREGATIONS)}")
    x = data.astype(float)
    width = model_width(model)
    if width is not None and width != x.shape[1]:   # SHAP's tree code indexes columns unchecked
        raise ValueError(f"the model takes {width} features, the data has {x.shape[1]} columns "
                         f"({', '.join(map(str, data.columns[:10]))})")
    kind = type(model).__module__
    method = "kernel"
    values: np.ndarray
    if kind.startswith(("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm")):
        explainer = shap.TreeExplainer(model)
        sv = explainer.shap_values(x)
        base = explainer.expected_value
        if isinstance(sv, list):                      # per-class lists (older shap): positive class
            sv, base = sv[-1], np.atleast_1d(base)[-1]
        elif np.ndim(sv) == 3:                       # (rows, features, classes)
            sv, base = sv[:, :, -1], np.atleast_1d(base)[-1]
        values, expected, method = np.asarray(sv), float(np.atleast_1d(base)[-1]), "tree"
    elif kind.startswith("sklearn.linear_model"):
        bg = background if background is not None else x
        explainer = shap.LinearExplainer(model, bg.astype(float))
        sv = explainer.shap_values(x)
        values = np.asarray(sv[-1] if isinstance(sv, list) else sv)
        if values.ndim == 3:
            values = values[:, :, -1]
        expected, method = float(np.atleast_1d(explainer.expected_value)[-1]), "linear"
    else:
        bg = background.astype(float) if background is not None else shap.kmeans(x, min(num_clusters, len(x))).data
        explainer = shap.PermutationExplainer(predict_fn(model), np.asarray(bg), seed=seed)
        res = explainer(np.asarray(x), max_evals=max_evals or 2 * x.shape[1] + 1)
        values, expected, method = np.asarray(res.values), float(np.mean(res.base_values)), "permutation"
    agg = {"mean_abs": np.mean(np.abs(values), axis=0), "mean_sq": np.mean(values ** 2, axis=0),
           "median": np.median(values, axis=0)}[agg_method]
    return {"method": method, "agg_method": agg_method,
            "global_shap_values": {c: float(v) for c, v in zip(data.columns, agg, strict=True)},
            "expected_value": expected, "local": pd.DataFrame(values, columns=data.columns)}


def analysis_json(result: ShapResult, label: str = "label0") -> dict[str, Any]:
    """SageMaker's explanations block: kernel_shap is the key Clarify uses; `method` says what really ran."""
    return {"version": "1.0", "explanations": {"kernel_shap": {label: {
        "global_shap_values": result["global_shap_values"], "expected_value": result["expected_value"],
        "method": result["method"], "agg_method": result["agg_method"]}}}}
