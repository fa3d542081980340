"""mlgov's Arrow evaluator against Great Expectations itself: same data, same suites, every result compared."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from monitor.engine import expectations, gx

N = 2000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    ints = rng.integers(-5, 50, N)
    floats = rng.normal(10, 3, N)
    floats[rng.random(N) < 0.05] = np.nan
    cities = rng.choice(["paris", "lyon", "nice", "lille"], N).astype(object)
    cities[rng.random(N) < 0.1] = None
    return pa.table({
        "age": pa.array(ints, mask=rng.random(N) < 0.03),
        "income": pa.array(floats),
        "city": pa.array(cities, pa.string()),
        "flag": pa.array(rng.random(N) < 0.3),
        "id": pa.array(np.arange(N)),
        "code": pa.array([f"A{i % 97:03d}" if i % 11 else f"b{i}" for i in range(N)]),
    })


def suite_cases() -> list[dict[str, Any]]:
    e = [
        ("expect_table_row_count_to_be_between", {"min_value": 10, "max_value": 5000}),
        ("expect_table_row_count_to_be_between", {"min_value": N, "max_value": N, "strict_max": True}),
        ("expect_table_columns_to_match_ordered_list",
         {"column_list": ["age", "income", "city", "flag", "id", "code"]}),
        ("expect_table_columns_to_match_ordered_list", {"column_list": ["income", "age"]}),
        ("expect_column_to_exist", {"column": "city"}),
        ("expect_column_to_exist", {"column": "nope"}),
        ("expect_column_values_to_not_be_null", {"column": "age"}),
        ("expect_column_values_to_not_be_null", {"column": "income", "mostly": 0.9}),
        ("expect_column_values_to_not_be_null", {"column": "city", "mostly": 0.95}),
        ("expect_column_values_to_be_null", {"column": "city", "mostly": 0.05}),
        ("expect_column_values_to_be_in_set", {"column": "city", "value_set": ["paris", "lyon", "nice"]}),
        ("expect_column_values_to_be_in_set", {"column": "city", "value_set": ["paris", "lyon", "nice"],
                                                "mostly": 0.7}),
        ("expect_column_values_to_not_be_in_set", {"column": "city", "value_set": ["lille"], "mostly": 0.8}),
        ("expect_column_values_to_be_in_set", {"column": "age", "value_set": list(range(0, 50))}),
        ("expect_column_values_to_be_between", {"column": "age", "min_value": 0, "max_value": 49, "mostly": 0.9}),
        ("expect_column_values_to_be_between", {"column": "age", "min_value": 0, "strict_min": True}),
        ("expect_column_values_to_be_between", {"column": "income", "max_value": 16.0, "strict_max": True,
                                                 "mostly": 0.97}),
        ("expect_column_values_to_match_regex", {"column": "code", "regex": "^A\\d{3}$", "mostly": 0.85}),
        ("expect_column_values_to_match_regex", {"column": "city", "regex": "^l"}),
        ("expect_column_values_to_be_unique", {"column": "id"}),
        ("expect_column_values_to_be_unique", {"column": "city", "mostly": 0.5}),
        ("expect_column_mean_to_be_between", {"column": "income", "min_value": 9, "max_value": 11}),
        ("expect_column_mean_to_be_between", {"column": "age", "min_value": 30}),
        ("expect_column_min_to_be_between", {"column": "age", "min_value": -5, "max_value": 0}),
        ("expect_column_max_to_be_between", {"column": "income", "max_value": 15}),
        ("expect_column_stdev_to_be_between", {"column": "income", "min_value": 2.5, "max_value": 3.5}),
        ("expect_column_sum_to_be_between", {"column": "id", "min_value": 0, "max_value": N * N}),
        # the type names mlgov's exported suites use (gx-suite.json), read the same way by GX
        ("expect_column_values_to_be_in_type_list", {"column": "id", "type_list": ["int"]}),
        ("expect_column_values_to_be_in_type_list", {"column": "income", "type_list": ["float"]}),
        ("expect_column_values_to_be_in_type_list", {"column": "city", "type_list": ["str"]}),
        ("expect_column_values_to_be_in_type_list", {"column": "income", "type_list": ["int"]}),
    ]
    return [{"type": t, "kwargs": kw} for t, kw in e]


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def test_every_result_equals_great_expectations(table: pa.Table) -> None:
    cases = suite_cases()
    ours = expectations.run_suite(table, {"name": "parity", "expectations": cases})["results"]
    theirs = gx.validate(table, cases)
    assert all(r["evaluated_by"] == "mlgov" for r in ours)
    mismatches = []
    for case, o, t in zip(cases, ours, theirs, strict=True):
        assert t["success"] is not None, t
        if o["success"] != t["success"]:
            mismatches.append((case, "success", o["success"], t["success"]))
        for key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count"):
            if key in t["result"] and key in (o.get("result") or {}) and not close(o["result"][key], t["result"][key]):
                mismatches.append((case, key, o["result"][key], t["result"][key]))
            elif key in t["result"] and key not in (o.get("result") or {}) and key != "observed_value":
                mismatches.append((case, f"{key} missing", None, t["result"][key]))
    assert not mismatches, "\n".join(map(str, mismatches))


def test_exported_and_failing_cases_load_in_gx(table: pa.Table) -> None:
    suite = gx.load_suite({"name": "parity", "expectations": suite_cases(), "meta": {"source": "test"}})
    assert len(suite.expectations) == len(suite_cases())


def test_types_outside_the_arrow_evaluator_run_in_gx(table: pa.Table) -> None:
    cases = [{"type": "expect_column_median_to_be_between", "kwargs": {"column": "income", "min_value": 9,
                                                                         "max_value": 11}},
             {"type": "expect_column_values_to_be_wonderful", "kwargs": {"column": "age"}},
             {"type": "expect_column_values_to_be_increasing", "kwargs": {"column": "id"}}]
    res = expectations.run_suite(table, {"expectations": cases})
    median, kl, increasing = res["results"]
    assert median["evaluated_by"] == "great_expectations" and median["success"] is True
    assert abs(median["result"]["observed_value"] - float(np.nanmedian(table["income"].to_numpy(
        zero_copy_only=False)))) < 1e-9
    assert kl["success"] is None and "Great Expectations" in kl["unsupported"]
    assert increasing["success"] is True
    assert res["statistics"] == {"evaluated": 3, "successful": 2, "failed": 0, "unsupported": 1}
    assert res["success"] is False
