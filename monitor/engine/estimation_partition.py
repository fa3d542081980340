"""Label-free estimates of a captured window from partitions: CBPE (binary, multiclass) and DLE (regression) sums
per row group, merged, then finished into the estimate — the one path for a window read here (one partition, exact)
and for a window read by the workers of a compute cluster (many partitions, merged there; no raw rows leave them).

What a partition keeps: for binary classifiers ``cbpe.BinarySums`` after the baseline's calibration map (Σp and
Σp(1-p) per call under the full and every bootstrap map, per score bin the rows, Σp per map and Σp(1-p), and for
the labelled rows their confusion counts and positives/negatives per bin); for regressors ``dle.LossSums`` (the
loss models' predictions summed, with their variances and regions, rebuilt from the stored arrays); for multiclass
``cbpe.MulticlassSums`` (the expected confusion matrix per map, Σp·p' per call, per class score bins as binary's),
and a second pass over the rows (``spread_table``) with the slopes the merged sums give, for the macro AUC's sampling
variance (a row's classes are coupled through their ranks, which only the whole window knows). Against the
whole window in one piece: everything but the AUC is a sum, equal to floating-point rounding; the AUC (estimated and
realised, and its band) ranks each bin's rows at its average rank, within the bounds the result states under
``compute`` (``roc_auc_max_error``, ``roc_auc_band_max_error``, ``realised_roc_auc_max_error``; 0 when no bin holds
two distinct scores, e.g. scores rounded to 1e-3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from monitor.engine import cbpe, dle

BINS = 10_000   # equal-width score bins of [0, 1] on a cluster (as quality_partition's)
LABEL = "__label"


class Unestimable(ValueError):
    """The window cannot be estimated (a column missing, values that are not probabilities); ``fix`` says what
    to do. A ValueError, so it travels back from a worker as one."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message, fix)

    @property
    def fix(self) -> str:
        return str(self.args[1])

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Spec:
    """What to estimate: the problem type, the baseline's estimator (``estimation.json``; None: a binary model's
    raw scores, uncalibrated), the score column and the captured 0/1 calls (binary), the prediction and feature
    columns (regression) and the threshold."""

    problem: str
    state: dict[str, Any] | None
    score: str | None = None
    prediction: str | None = None
    threshold: float = 0.5
    features: tuple[str, ...] = ()
    class_columns: tuple[str, ...] = ()    # multiclass: each class's probability column, in the estimator's order

    def columns(self) -> frozenset[str]:
        return frozenset(c for c in (self.score, self.prediction, *self.features, *self.class_columns) if c)


@dataclass
class WindowSums:
    """A partition's (or a merged window's) estimate sums: rows, labelled rows, rows decided by their captured
    call, and the problem's sums."""

    rows: int
    labelled: int
    captured: int
    binary: cbpe.BinarySums | None = None
    loss: dle.LossSums | None = None
    multiclass: cbpe.MulticlassSums | None = None

    def merge(self, o: WindowSums) -> WindowSums:
        return WindowSums(self.rows + o.rows, self.labelled + o.labelled, self.captured + o.captured,
                          None if self.binary is None or o.binary is None else self.binary.merge(o.binary),
                          None if self.loss is None or o.loss is None else self.loss.merge(o.loss),
                          None if self.multiclass is None or o.multiclass is None
                          else self.multiclass.merge(o.multiclass))


@dataclass
class Spread:
    """The second pass's sum over a partition's rows (the multiclass AUC's sampling variance)."""

    value: float

    def merge(self, o: Spread) -> Spread:
        return Spread(self.value + o.value)


def floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers of a captured or uploaded column (NaN where a value is not one)."""
    return np.asarray(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)


def _binary_decisions(df: pd.DataFrame, score: np.ndarray, pred_col: str | None, threshold: float
                      ) -> tuple[np.ndarray, int]:
    """The model's own 0/1 calls where captured, the threshold rule elsewhere; and how many rows were captured
    calls."""
    rule = score >= threshold
    if not pred_col or pred_col not in df:
        return rule, 0
    captured = floats(df[pred_col].tolist())
    usable = np.isin(captured, (0.0, 1.0))
    return np.where(usable, captured == 1.0, rule), int(usable.sum())


def _multiclass_inputs(df: pd.DataFrame, spec: Spec) -> tuple[np.ndarray, np.ndarray, int]:
    """The class probabilities (n, k; a missing one 0), the predicted class per row (the captured prediction where
    it names a class, else the highest probability) and how many rows were captured predictions."""
    if spec.state is None or not spec.class_columns:
        raise Unestimable("this multiclass baseline names no class probability columns",
                          fix="rebuild it with class_probabilities=class:column,… for every class")
    missing = [c for c in spec.class_columns if c not in df]
    if missing:
        raise Unestimable(f"the window lacks the class probability columns {missing}",
                          fix="capture them under the baseline's names")
    probs = np.nan_to_num(np.column_stack([floats(df[c].tolist()) for c in spec.class_columns])) if len(df) \
        else np.zeros((0, len(spec.class_columns)))
    if np.any((probs < 0) | (probs > 1)):
        raise Unestimable(f"the class probability columns {list(spec.class_columns)} hold values outside [0, 1]",
                          fix="capture each class's probability")
    calls = df[spec.prediction].tolist() if spec.prediction and spec.prediction in df else None
    return probs, *multiclass_decisions(probs, calls, spec.state["classes"])


def multiclass_decisions(probs: np.ndarray, calls: Sequence[Any] | None, classes: Sequence[str]
                         ) -> tuple[np.ndarray, int]:
    """The predicted class index per row — the model's captured call where it names one of ``classes``, else the
    highest probability — and how many rows were captured calls (the window's and the reference's alike)."""
    decision = np.argmax(probs, axis=1)
    if calls is None:
        return decision, 0
    index = {c: i for i, c in enumerate(classes)}
    named = np.asarray([index.get(str(v), -1) for v in calls], dtype=np.int64)
    return np.where(named >= 0, named, decision), int((named >= 0).sum())


def _calibrations(spec: Spec) -> list[cbpe.Calibration]:
    assert spec.state is not None
    return [cbpe.Calibration.from_dict(c) for c in spec.state["calibrations"]]


def summarise_frame(df: pd.DataFrame, spec: Spec, bins: int = 0) -> WindowSums:
    """The sums of one partition (``__label`` holds a row's ground truth, missing where none arrived); ``bins`` 0:
    exact, for a window in one piece."""
    labelled = df[LABEL].notna().to_numpy() if LABEL in df else np.zeros(len(df), bool)
    if spec.problem == "MulticlassClassification":
        probs, decision, captured = _multiclass_inputs(df, spec)
        assert spec.state is not None
        index = {c: i for i, c in enumerate(spec.state["classes"])}
        labels = np.full(len(df), -1, dtype=np.int64)
        if labelled.any():
            labels[labelled] = [index.get(str(v), len(index)) for v in df.loc[labelled, LABEL].tolist()]
        return WindowSums(len(df), int(labelled.sum()), captured,
                          multiclass=cbpe.multiclass_sums(probs, decision, calibrations=_calibrations(spec),
                                                          labels=labels, bins=bins))
    if spec.problem == "Regression":
        if spec.state is None or "dle" not in spec.state or not spec.prediction:
            raise Unestimable("this regression baseline has no loss model", fix="rebuild the ModelQuality baseline "
                              "with features= (the columns the loss model reads) and prediction=")
        missing = [c for c in [*spec.features, spec.prediction] if c not in df]
        if missing:
            raise Unestimable(f"the window lacks the columns {missing} the loss model reads",
                              fix="capture them under the baseline's names")
        x = np.column_stack([floats(df[f].tolist()) for f in (*spec.features, spec.prediction)]) if len(df) \
            else np.zeros((0, len(spec.features) + 1))
        y = np.full(len(df), np.nan)
        y[labelled] = floats(df.loc[labelled, LABEL].tolist())
        return WindowSums(len(df), int(labelled.sum()), 0, loss=dle.loss_sums(spec.state["dle"], x, y=y))
    if not spec.score or spec.score not in df:
        raise Unestimable(f"the window has no probability column {spec.score!r}",
                          fix="capture the model's probability of the positive class")
    score = floats(df[spec.score].tolist())
    if np.any(~np.isfinite(score)) or np.any((score < 0) | (score > 1)):
        raise Unestimable(f"{spec.score} values are not probabilities in [0, 1]",
                          fix="capture the probability of the positive class")
    decision, captured = _binary_decisions(df, score, spec.prediction if spec.prediction != spec.score else None,
                                           spec.threshold)
    y = floats(df.loc[labelled, LABEL].tolist())
    labels = np.full(len(df), -1, dtype=np.int64)
    labels[labelled] = np.where(np.isfinite(y), np.trunc(y), 1.0) != 0   # any non-zero label is the positive class
    return WindowSums(len(df), int(labelled.sum()), captured,
                      binary=cbpe.binary_sums(score, decision, calibration=_calibration(spec), labels=labels,
                                              bins=bins))


def summarise_table(table: pa.Table, *, spec: Spec) -> WindowSums:
    """One row group's sums over score bins (runs on a worker)."""
    return summarise_frame(table.to_pandas(), spec, BINS)


def spread_frame(df: pd.DataFrame, spec: Spec, slopes: np.ndarray, bins: int = 0) -> Spread:
    """The multiclass second pass over one partition: the macro AUC's sampling variance with ``slopes``
    (``cbpe.multiclass_auc_slopes`` of the window's merged sums, grouped with the same ``bins``)."""
    probs, decision, _ = _multiclass_inputs(df, spec)
    return Spread(cbpe.multiclass_spread(probs, decision, slopes, calibrations=_calibrations(spec), bins=bins))


def spread_table(table: pa.Table, *, spec: Spec, slopes: np.ndarray) -> Spread:
    """One row group's second pass over score bins (runs on a worker)."""
    return spread_frame(table.to_pandas(), spec, slopes, BINS)


def second_pass(sums: WindowSums) -> np.ndarray | None:
    """What the second pass over the rows needs from the merged sums (the multiclass AUC slopes), None when the
    problem needs no second pass."""
    if sums.multiclass is None or sums.rows == 0:
        return None
    return cbpe.multiclass_auc_slopes(sums.multiclass)


def estimate_frame(df: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """A window in one piece: its exact sums (and second pass), finished as the cluster's merged ones are."""
    sums = summarise_frame(df, spec)
    slopes = second_pass(sums)
    return finish(sums, spec, None if slopes is None else spread_frame(df, spec, slopes))


def _calibration(spec: Spec) -> cbpe.Calibration | None:
    return cbpe.Calibration.from_dict(spec.state["calibration"]) if spec.state else None


def finish(sums: WindowSums, spec: Spec, spread: Spread | None = None) -> dict[str, Any]:
    """The window's estimate from its merged sums (and, multiclass, its second pass's ``spread``): metrics with
    bands and calibration, the decisions used, and for labelled rows the realised values and whether each fell in
    its band; binned sums state their AUC bound."""
    if sums.rows == 0:
        raise Unestimable("no predictions to estimate from", fix="pick a window with traffic")
    out: dict[str, Any] = {"problem_type": spec.problem, "rows": sums.rows}
    if sums.multiclass is not None:
        if spread is None:
            raise ValueError("a multiclass estimate needs its second pass (spread_frame) over the rows")
        mc = sums.multiclass
        est = cbpe.estimate_multiclass_sums(mc, spread.value, calibrations=_calibrations(spec))
        realised = cbpe.realised_multiclass_sums(mc) if sums.labelled else None
        out["decisions"] = {"captured_prediction": sums.captured, "highest_probability": sums.rows - sums.captured}
        if mc.bins:
            out["compute"] = _bound(mc.bins, cbpe.multiclass_auc_error(mc))
    elif sums.loss is not None:
        assert spec.state is not None
        est = dle.estimate_sums(spec.state["dle"], sums.loss)
        realised = dle.realised_sums(sums.loss) if sums.labelled else None
        out["decisions"] = {"loss_model": spec.state["dle"].get("model")}
    else:
        assert sums.binary is not None
        est = cbpe.estimate_sums(sums.binary, calibration=_calibration(spec))
        realised = cbpe.realised_sums(sums.binary) if sums.labelled else None
        out["threshold"] = spec.threshold
        out["decisions"] = {"captured_prediction": sums.captured, "threshold": sums.rows - sums.captured}
        if sums.binary.bins:
            out["compute"] = _bound(sums.binary.bins, cbpe.auc_error(sums.binary))
    out["labelled_rows"] = sums.labelled
    out["estimated"] = cbpe.compare(est, dict(realised)) if realised is not None else est
    if realised is not None:
        out["comparison"] = out["estimated"]
    return out


def _bound(bins: int, bound: dict[str, float]) -> dict[str, Any]:
    return {"score_bins": bins, "roc_auc_max_error": bound["estimate"], "roc_auc_band_max_error": bound["band"],
            "realised_roc_auc_max_error": bound["realised"]}
