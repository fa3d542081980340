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


MAP_TYPES = ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null",
             "expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set",
             "expect_column_values_to_be_between", "expect_column_values_to_match_regex",
             "expect_column_values_to_be_unique", "expect_column_values_to_be_in_type_list")
STATS = {"expect_column_mean_to_be_between": "mean", "expect_column_min_to_be_between": "min",
         "expect_column_max_to_be_between": "max", "expect_column_stdev_to_be_between": "stddev",
         "expect_column_sum_to_be_between": "sum"}
TABLE_TYPES = ("expect_table_row_count_to_be_between", "expect_table_columns_to_match_ordered_list",
               "expect_column_to_exist")


def _type(exp: dict[str, Any]) -> Any:
    return exp.get("type") or exp.get("expectation_type")


def measure(table: pa.Table, exp: dict[str, Any]) -> dict[str, Any] | None:
    """What judging ``exp`` needs from ``table``, as counts that add up over partitions (None: a table-level or
    unsupported type, judged from the suite's row count and columns or by GX)."""
    etype, kw = _type(exp), exp.get("kwargs", {})
    col_name = kw.get("column")
    if etype in TABLE_TYPES or col_name is None or (etype not in MAP_TYPES and etype not in STATS):
        return None
    if col_name not in table.column_names:   # absent from this partition: its rows are missing values
        return {"seen": False, "total": table.num_rows, "present": 0}
    col = table.column(col_name)
    nonnull = pc.drop_null(col)
    if pa.types.is_floating(col.type):
        nonnull = pc.filter(nonnull, pc.invert(pc.is_nan(nonnull)))
    out: dict[str, Any] = {"seen": True, "total": len(col), "present": len(nonnull), "type": col.type}
    if etype in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        values = pa.array(kw.get("value_set", []))
        try:
            inside = pc.is_in(nonnull, value_set=values.cast(nonnull.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            inside = pc.is_in(pc.cast(nonnull, pa.string()), value_set=values.cast(pa.string()))
        out["hits"] = int(pc.sum(inside).as_py() or 0)
    elif etype == "expect_column_values_to_be_between":
        out["numeric"] = pa.types.is_integer(nonnull.type) or pa.types.is_floating(nonnull.type)
        bad = pa.array([False] * len(nonnull))
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if out["numeric"] and lo is not None:
            bad = pc.or_(bad, pc.less_equal(nonnull, lo) if kw.get("strict_min") else pc.less(nonnull, lo))
        if out["numeric"] and hi is not None:
            bad = pc.or_(bad, pc.greater_equal(nonnull, hi) if kw.get("strict_max") else pc.greater(nonnull, hi))
        out["bad"] = int(pc.sum(bad).as_py() or 0)
    elif etype == "expect_column_values_to_match_regex":
        out["hits"] = int(pc.sum(pc.match_substring_regex(pc.cast(nonnull, pa.string()), kw["regex"])).as_py() or 0)
    elif etype == "expect_column_values_to_be_unique":   # every occurrence of a repeated value is unexpected (GX)
        counts = pc.value_counts(nonnull)
        out["counts"] = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
    elif etype in STATS and len(nonnull):
        values = nonnull.to_numpy(zero_copy_only=False)
        mean = float(np.mean(values, dtype=float))
        out.update(sum=pc.sum(nonnull).as_py(), min=pc.min(nonnull).as_py(), max=pc.max(nonnull).as_py(),
                   mean=mean, m2=float(np.sum((values - mean) ** 2)))
    return out


def merge_measures(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two partitions' measures of one expectation: counts add, extremes fold, moments merge (Chan)."""
    if a is None or b is None:
        return a if b is None else b
    out = {**a, **{k: v for k, v in b.items() if k not in a}, "seen": a["seen"] or b["seen"],
           "total": a["total"] + b["total"], "present": a["present"] + b["present"]}
    out["type"] = a.get("type") if a["seen"] else b.get("type")
    for k in ("hits", "bad"):
        if k in a or k in b:
            out[k] = a.get(k, 0) + b.get(k, 0)
    if "numeric" in a and "numeric" in b:
        out["numeric"] = a["numeric"] and b["numeric"]
    if "counts" in a and "counts" in b:
        counts = dict(a["counts"])
        for v, c in b["counts"].items():
            counts[v] = counts.get(v, 0) + c
        out["counts"] = counts
    if "mean" in a and "mean" in b:
        na, nb = a["present"], b["present"]
        delta = b["mean"] - a["mean"]
        out.update(sum=a["sum"] + b["sum"], min=min(a["min"], b["min"]), max=max(a["max"], b["max"]),
                   mean=a["mean"] + delta * nb / (na + nb), m2=a["m2"] + b["m2"] + delta * delta * na * nb / (na + nb))
    return out


def judge(exp: dict[str, Any], m: dict[str, Any] | None, rows: int, columns: list[str]) -> dict[str, Any]:
    """The expectation's result (GX's semantics) from its measure and the table's row count and columns."""
    etype = _type(exp)
    kw = dict(exp.get("kwargs", {}))
    col_name = kw.get("column")
    out: dict[str, Any] = {"type": etype, "kwargs": kw}
    if etype == "expect_table_row_count_to_be_between":
        return {**out, "success": _between(rows, kw), "result": {"observed_value": rows}}
    if etype == "expect_table_columns_to_match_ordered_list":
        return {**out, "success": columns == kw.get("column_list", []), "result": {"observed_value": columns}}
    if col_name is None or (etype != "expect_column_to_exist" and m is None):
        return {**out, "success": None, "unsupported": f"expectation type {etype!r} is not supported"}
    if etype == "expect_column_to_exist":
        return {**out, "success": col_name in columns}
    assert m is not None
    if not m["seen"]:
        return {**out, "success": False, "result": {"details": f"column {col_name!r} is missing"}}
    total, present = m["total"], m["present"]
    mostly = float(kw.get("mostly", 1.0))
    if etype in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null"):
        unexpected = total - present if "not" in etype else present
        ok, res = _mostly(unexpected, total, total, mostly)
        return {**out, "success": ok, "result": {k: v for k, v in res.items() if k != "missing_count"}}
    if etype in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        unexpected = m["hits"] if "not" in etype else present - m["hits"]
        ok, res = _mostly(unexpected, total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_between":
        if not m["numeric"]:
            return {**out, "success": False, "result": {"details": "column is not numeric"}}
        ok, res = _mostly(m["bad"], total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_match_regex":
        ok, res = _mostly(present - m["hits"], total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_unique":
        ok, res = _mostly(sum(c for c in m["counts"].values() if c > 1), total, present, mostly)
        return {**out, "success": ok, "result": res}
    if etype == "expect_column_values_to_be_in_type_list":
        names = [str(t).lower() for t in kw.get("type_list", [])]
        ctype = m["type"]
        ok = any(_TYPES.get(n, lambda t: False)(ctype) for n in names)
        if pa.types.is_string(ctype) or pa.types.is_large_string(ctype):
            # GX checks the values of an object column one by one: a map result
            ok, res = _mostly(0 if ok else present, total, present, mostly)
            return {**out, "success": ok, "result": res}
        return {**out, "success": ok, "result": {"observed_value": np.dtype(ctype.to_pandas_dtype()).name}}
    fn = STATS[etype]
    value = None
    if present:
        value = {"mean": m["mean"], "min": m["min"], "max": m["max"], "sum": m["sum"],
                 "stddev": math.sqrt(m["m2"] / (present - 1)) if present > 1 else None}[fn]
    return {**out, "success": _between(value, kw), "result": {"observed_value": value}}


class SuiteCounts:
    """A suite's measures of one partition (or of merged partitions): row count, columns, one measure per
    expectation. Merged, they judge every expectation mlgov evaluates exactly as one pass over the whole table
    would (counts, minima and maxima exactly; sums, means and deviations to floating-point rounding; uniqueness
    keeps a frequency table of the column's values)."""

    def __init__(self, rows: int, columns: list[str], measures: list[dict[str, Any] | None]) -> None:
        self.rows, self.columns, self.measures = rows, columns, measures

    @classmethod
    def of(cls, table: pa.Table, suite: dict[str, Any]) -> SuiteCounts:
        return cls(table.num_rows, list(table.column_names), [measure(table, e) for e in suite.get("expectations", [])])

    def merge(self, o: SuiteCounts) -> SuiteCounts:
        columns = self.columns + [c for c in o.columns if c not in self.columns]
        return SuiteCounts(self.rows + o.rows, columns,
                           [merge_measures(a, b) for a, b in zip(self.measures, o.measures, strict=True)])


def run_suite(table: pa.Table, suite: dict[str, Any]) -> dict[str, Any]:
    return suite_result(suite, SuiteCounts.of(table, suite), table)


def suite_result(suite: dict[str, Any], counts: SuiteCounts, table: pa.Table | None = None) -> dict[str, Any]:
    """The suite's report from its (merged) measures. Types mlgov does not evaluate go to GX with the ``table``;
    without one (a window summarised in partitions) they are reported unsupported, never passed."""
    exps = suite.get("expectations", [])
    results = [{**judge(e, m, counts.rows, counts.columns), "evaluated_by": "mlgov"}
               for e, m in zip(exps, counts.measures, strict=True)]
    rest = [i for i, r in enumerate(results) if r["success"] is None]
    if rest and table is not None:
        from monitor.engine import gx

        for i, r in zip(rest, gx.validate(table, [exps[i] for i in rest]), strict=True):
            results[i] = r
    elif rest:
        for i in rest:
            results[i]["unsupported"] = ("Great Expectations runs this type only on a table read whole; this window "
                                         "was evaluated in partitions on the compute cluster")
    failed = sum(1 for r in results if r["success"] is False)
    unsupported = sum(1 for r in results if r["success"] is None)
    return {"suite": suite.get("name"), "success": failed == 0 and unsupported == 0,
            "statistics": {"evaluated": len(results), "successful": len(results) - failed - unsupported,
                           "failed": failed, "unsupported": unsupported}, "results": results}
