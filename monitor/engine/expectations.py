"""Run a Great Expectations (1.x) ExpectationSuite JSON on a table: Arrow kernels first, GX for the rest.

The common column and table expectations are computed here with GX's semantics (``mostly``, nulls
ignored by value expectations, strict bounds, GX's counts and percentages) — tests/monitor/
test_gx_parity.py runs GX itself on the same data and suites and compares every result, and
benchmarks/gx_expectations.py times both. Every other type is run by GX itself (``gx.py``); what GX
cannot load either is reported as unsupported, never as passed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TYPES = {"int": pa.types.is_integer, "int64": pa.types.is_integer, "integer": pa.types.is_integer,
          "float": pa.types.is_floating, "float64": pa.types.is_floating, "double": pa.types.is_floating,
          "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
          "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
          "bool": pa.types.is_boolean, "boolean": pa.types.is_boolean}


def _mostly(unexpected: int, total: int, present: int, mostly: float) -> tuple[bool, dict[str, Any]]:
    """GX's result for a map expectation: percentages of the non-missing values (of all values for the null
    expectations, where ``present`` is the row count), ``mostly`` against the same share."""
    share = unexpected / present if present else 0.0
    return (1 - share) >= mostly - 1e-12, {"element_count": total, "unexpected_count": unexpected,
                                          "unexpected_percent": share * 100 if present else None,
                                          "missing_count": total - present}


def _between(value: float | None, kw: dict[str, Any]) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None and (value <= lo if kw.get("strict_min") else value < lo):
        return False
    return not (hi is not None and (value >= hi if kw.get("strict_max") else value > hi))


def run_expectation(table: pa.Table, exp: dict[str, Any]) -> dict[str, Any]:
    etype = exp.get("type") or exp.get("expectation_type")
    kw = dict(exp.get("kwargs", {}))
    col_name = kw.get("column")
    out: dict[str, Any] = {"type": etype, "kwargs": kw}
    if etype == "expect_table_row_count_to_be_between":
        return {**out, "success": _between(table.num_rows, kw), "result": {"observed_value": table.num_rows}}
    if etype == "expect_table_columns_to_match_ordered_list":
        cols = kw.get("column_list", [])
        return {**out, "success": table.column_names == cols, "result": {"observed_value": table.column_names}}
    if col_name is None:
        return {**out, "success": None, "unsupported": f"expectation type {etype!r} is not supported"}
    if etype == "expect_column_to_exist":
        return {**out, "success": col_name in table.column_names}
    if col_name not in table.column_names:
        return {**out, "success": False, "result": {"details": f"column {col_name!r} is missing"}}
    col = table.column(col_name)
    nonnull = pc.drop_null(col)
    if pa.types.is_floating(col.type):
        nonnull = pc.filter(nonnull, pc.invert(pc.is_nan(nonnull)))
    total, present = len(col), len(nonnull)
    mostly = float(kw.get("mostly", 1.0))
    if etype == "expect_column_values_to_not_be_null":
        ok, res = _mostly(total - present, total, total, mostly)
        return {**out, "success": ok, "result": {k: v for k, v in res.items() if k != "missing_count"}}
    if etype == "expect_column_values_to_be_null":
        ok, res = _mostly(present, total, total, mostly)
        return {**out, "success": ok, "result": {k: v for k, v in res.items() if k != "missing_count"}}
    if etype in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        values = pa.array(kw.get("value_set", []))
        try:
            inside = pc.is_in(nonnull, value_set=values.cast(nonnull.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            inside = pc.is_in(pc.cast(nonnull, pa.string()), value_set=values.cast(pa.string()))
        hits = int(pc.sum(inside).as_py() or 0)
        unexpected = present - hits if etype.endswith("be_in_set") and "not" not in etype else hits
        ok, res = _mostly(unexpected, total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_between":
        if not (pa.types.is_integer(nonnull.type) or pa.types.is_floating(nonnull.type)):
            return {**out, "success": False, "result": {"details": "column is not numeric"}}
        lo, hi = kw.get("min_value"), kw.get("max_value")
        bad = pa.array([False] * present)
        if lo is not None:
            bad = pc.or_(bad, pc.less_equal(nonnull, lo) if kw.get("strict_min") else pc.less(nonnull, lo))
        if hi is not None:
            bad = pc.or_(bad, pc.greater_equal(nonnull, hi) if kw.get("strict_max") else pc.greater(nonnull, hi))
        ok, res = _mostly(int(pc.sum(bad).as_py() or 0), total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_match_regex":
        hits = int(pc.sum(pc.match_substring_regex(pc.cast(nonnull, pa.string()), kw["regex"])).as_py() or 0)
        ok, res = _mostly(present - hits, total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_unique":
        counts = pc.value_counts(nonnull)  # GX: every occurrence of a repeated value is unexpected
        dupes = int(pc.sum(pc.filter(counts.field("counts"), pc.greater(counts.field("counts"), 1))).as_py() or 0)
        ok, res = _mostly(dupes, total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_in_type_list":
        names = [str(t).lower() for t in kw.get("type_list", [])]
        ok = any(_TYPES.get(n, lambda t: False)(col.type) for n in names)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            # GX checks the values of an object column one by one: a map result
            ok, res = _mostly(0 if ok else present, total, present, mostly)
            return {**out, "success": ok, "result": res}
        return {**out, "success": ok, "result": {"observed_value": np.dtype(col.type.to_pandas_dtype()).name}}
    stats = {"expect_column_mean_to_be_between": "mean", "expect_column_min_to_be_between": "min",
             "expect_column_max_to_be_between": "max", "expect_column_stdev_to_be_between": "stddev",
             "expect_column_sum_to_be_between": "sum"}
    if etype in stats:
        fn = stats[etype]
        value = (pc.stddev(nonnull, ddof=1) if fn == "stddev" else getattr(pc, fn)(nonnull)).as_py() \
            if present else None
        return {**out, "success": _between(value, kw), "result": {"observed_value": value}}
    return {**out, "success": None, "unsupported": f"expectation type {etype!r} is not supported"}


def run_suite(table: pa.Table, suite: dict[str, Any]) -> dict[str, Any]:
    exps = suite.get("expectations", [])
    results = [{**run_expectation(table, e), "evaluated_by": "mlgov"} for e in exps]
    rest = [i for i, r in enumerate(results) if r["success"] is None]
    if rest:
        from monitor.engine import gx

        for i, r in zip(rest, gx.validate(table, [exps[i] for i in rest]), strict=True):
            results[i] = r
    failed = sum(1 for r in results if r["success"] is False)
    unsupported = sum(1 for r in results if r["success"] is None)
    return {"suite": suite.get("name"), "success": failed == 0 and unsupported == 0,
            "statistics": {"evaluated": len(results), "successful": len(results) - failed - unsupported,
                           "failed": failed, "unsupported": unsupported}, "results": results}
