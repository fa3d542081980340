"""SHAP attributions in SageMaker's `explanations.kernel_shap` shape (the method actually used is named), with the
space the attributions add up in.

SHAP values add up (with the expected value) to the model output the explainer explains, and that output differs
by explainer: a tree ensemble's raw output is log-odds for gradient boosting (scikit-learn, XGBoost, LightGBM
binary objectives) but a probability for a random forest; a logistic regression's margin is log-odds; the
model-agnostic explainer explains ``predict_proba`` (a probability) or ``predict`` (raw). Every result says which
(``output_space``), and a caller may ask for another where SHAP can compute it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np
import pandas as pd

AGGREGATIONS = ("mean_abs", "mean_sq", "median")
OUTPUT_SPACES = ("log_odds", "probability", "raw")
_TREE_SPACE = {"log_odds": "log_odds", "probability": "probability"}   # shap's TreeEnsemble.tree_output; else raw


class OutputSpaceUnavailable(ValueError):
    """The caller asked for an output space this model's explainer cannot produce; ``possible`` lists those it
    can."""

    def __init__(self, wanted: str, explainer: str, possible: list[str], why: str) -> None:
        super().__init__(f"output_space={wanted} is not possible with the {explainer} explainer of this model "
                         f"({why}); possible: {', '.join(possible)}")
        self.possible = possible

    @classmethod
    def restored(cls, message: str, possible: list[str]) -> OutputSpaceUnavailable:
        """The error as a child process reported it (`clarify.sandbox`)."""
        exc = cls.__new__(cls)
        ValueError.__init__(exc, message)
        exc.possible = possible
        return exc

Predict = Callable[[np.ndarray], np.ndarray]


class ShapResult(TypedDict):
    """What ``explain`` returns: global attributions, the base value, per-row values and the method that ran."""
    method: str
    agg_method: str
    output_space: str
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
    if type(model).__module__.startswith("xgboost.") and type(model).__name__ == "Booster":
        import xgboost

        def booster(x: np.ndarray) -> np.ndarray:   # a Booster predicts on a DMatrix only
            out: np.ndarray = model.predict(xgboost.DMatrix(x), validate_features=False)
            return out
        return booster
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


def feature_names(model: Any) -> list[str] | None:
    """The columns the model was fitted on, by name, when it kept them (scikit-learn's ``feature_names_in_``,
    XGBoost's and LightGBM's feature names; a `sandbox.NativeModel` carries what its child read)."""
    try:
        if hasattr(model, "feature_names_in_"):
            names = list(model.feature_names_in_)
        elif hasattr(model, "feature_name") and callable(model.feature_name):      # lightgbm.Booster
            names = list(model.feature_name())
        elif type(model).__module__.startswith("xgboost.") and hasattr(model, "feature_names"):
            names = list(model.feature_names or [])
        else:
            names = list(getattr(model, "names", None) or [])
    except (TypeError, ValueError, AttributeError):
        return None
    return [str(n) for n in names] or None


def in_model_order(model: Any, data: pd.DataFrame) -> pd.DataFrame:
    """``data``'s columns as the model reads them: by the names it was fitted on (a frame whose columns come in
    another order was fed by position, and its attributions landed on the wrong features). A model fitted
    without names (LightGBM's Column_0…, none of them in the data) reads by position."""
    names = feature_names(model)
    if not names or list(data.columns) == names or not set(names) & {str(c) for c in data.columns}:
        return data
    columns = {str(c): c for c in data.columns}
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValueError(f"the model was fitted on columns the data does not have: {', '.join(missing[:10])} "
                         f"(the model reads {', '.join(names[:10])}{', …' if len(names) > 10 else ''})")
    return data[[columns[n] for n in names]]


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


def _positive(sv: Any, base: Any) -> tuple[np.ndarray, float]:
    """The positive (last) class of a multi-output explanation: per-class lists (older shap) or a 3-D array."""
    if isinstance(sv, list):
        sv = sv[-1]
    elif np.ndim(sv) == 3:                          # (rows, features, classes)
        sv = sv[:, :, -1]
    return np.asarray(sv), float(np.atleast_1d(base)[-1])


def _linear_space(model: Any) -> str:
    """A linear model's margin is log-odds only under a logistic link."""
    name = type(model).__name__
    logistic = name.startswith("LogisticRegression") or (
        name == "SGDClassifier" and getattr(model, "loss", None) in ("log_loss", "log"))
    return "log_odds" if logistic else "raw"


def agnostic_space(model: Any) -> str:
    """What the model-agnostic explainer explains: ``predict_fn``'s output, a probability when it comes from
    predict_proba or an ONNX classifier's probabilities, else the model's raw prediction."""
    if hasattr(model, "predict_proba"):
        return "probability"
    if hasattr(model, "get_inputs") and hasattr(model, "get_outputs"):   # onnxruntime session
        out = model.get_outputs()[-1]
        shape = getattr(out, "shape", None) or []
        wide = len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 2
        return "probability" if str(out.type).startswith("seq(map") or wide else "raw"
    return "raw"


def _check_space(wanted: str, explainer: str, possible: list[str], why: str) -> None:
    if wanted not in OUTPUT_SPACES:
        raise OutputSpaceUnavailable(wanted, explainer, possible, f"it is not one of {', '.join(OUTPUT_SPACES)}")
    if wanted not in possible:
        raise OutputSpaceUnavailable(wanted, explainer, possible, why)


def explain(model: Any, data: pd.DataFrame, *, agg_method: str = "mean_abs", background: pd.DataFrame | None = None,
            num_clusters: int = 10, seed: int = 0, max_evals: int | None = None,
            output_space: str | None = None) -> ShapResult:
    """SHAP values of ``model`` on ``data`` in ``output_space`` (None: the explainer's own, as SHAP defines it).

    Probability space is computed where SHAP supports it: a log-odds tree ensemble through TreeExplainer with
    model_output="probability" (interventional, over the background rows), a logistic linear model through the
    model-agnostic explainer on predict_proba. Anything else raises OutputSpaceUnavailable naming what is."""
    import shap

    if agg_method not in AGGREGATIONS:
        raise ValueError(f"agg_method {agg_method!r} is not one of {', '.join(AGGREGATIONS)}")
    x = data.astype(float)
    width = model_width(model)
    if width is not None and width != x.shape[1]:   # SHAP's tree code indexes columns unchecked
        raise ValueError(f"the model takes {width} features, the data has {x.shape[1]} columns "
                         f"({', '.join(map(str, data.columns[:10]))})")

    def summary() -> np.ndarray:
        """The background: the caller's reference rows, else a k-means summary of the data."""
        if background is not None:
            return np.asarray(background.astype(float))
        return np.asarray(shap.kmeans(x, min(num_clusters, len(x))).data)

    def agnostic() -> tuple[np.ndarray, float]:
        explainer = shap.PermutationExplainer(predict_fn(model), summary(), seed=seed)
        res = explainer(np.asarray(x), max_evals=max_evals or 2 * x.shape[1] + 1)
        return np.asarray(res.values), float(np.mean(res.base_values))

    kind = type(model).__module__
    values: np.ndarray
    if kind.startswith(("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm")):
        explainer = shap.TreeExplainer(model)
        space = _TREE_SPACE.get(str(explainer.model.tree_output), "raw")
        possible = [space, "probability"] if space == "log_odds" else [space]
        wanted = output_space or space
        _check_space(wanted, "tree", possible, f"the trees' output is {space}" + (
            "; SHAP converts only log-odds trees to probability" if space != "probability" else ""))
        if wanted != space:   # probability of a log-odds ensemble: interventional, over the background
            explainer = shap.TreeExplainer(model, summary(), feature_perturbation="interventional",
                                           model_output="probability")
        values, expected = _positive(explainer.shap_values(x), explainer.expected_value)
        method, space = "tree", wanted
    elif kind.startswith("sklearn.linear_model"):
        space = _linear_space(model)
        possible = [space, "probability"] if hasattr(model, "predict_proba") and space != "probability" else [space]
        wanted = output_space or space
        _check_space(wanted, "linear", possible, f"the model's margin is {space}" + (
            "" if hasattr(model, "predict_proba") else " and it has no predict_proba"))
        if wanted == space:
            bg = background if background is not None else x
            linear = shap.LinearExplainer(model, bg.astype(float))
            values, expected = _positive(linear.shap_values(x), linear.expected_value)
            method = "linear"
        else:   # SHAP's linear explainer works on the margin: predict_proba needs the model-agnostic one
            (values, expected), method, space = agnostic(), "permutation", wanted
    else:
        space = agnostic_space(model)
        wanted = output_space or space
        _check_space(wanted, "permutation", [space], "it explains the model's predictions as they come "
                     f"({space}), and mlgov cannot convert them")
        (values, expected), method = agnostic(), "permutation"
    agg = {"mean_abs": np.mean(np.abs(values), axis=0), "mean_sq": np.mean(values ** 2, axis=0),
           "median": np.median(values, axis=0)}[agg_method]
    return {"method": method, "agg_method": agg_method, "output_space": space,
            "global_shap_values": {c: float(v) for c, v in zip(data.columns, agg, strict=True)},
            "expected_value": expected, "local": pd.DataFrame(values, columns=data.columns)}


def analysis_json(result: ShapResult, label: str = "label0") -> dict[str, Any]:
    """SageMaker's explanations block: kernel_shap is the key Clarify uses; `method` says what really ran and
    `output_space` what the values add up to (with expected_value): log_odds, probability or raw."""
    return {"version": "1.0", "explanations": {"kernel_shap": {label: {
        "global_shap_values": result["global_shap_values"], "expected_value": result["expected_value"],
        "method": result["method"], "agg_method": result["agg_method"], "output_space": result["output_space"]}}}}
