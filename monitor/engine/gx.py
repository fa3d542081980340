"""Great Expectations itself, for the expectation types mlgov's Arrow evaluator does not implement.

GX takes seconds to import (half a minute on a busy 2-core machine), so it is imported on first use:
``expectations.run_suite`` answers the types it implements with GX's semantics (tests/monitor/
test_gx_parity.py runs both on the same data and compares every result) and hands the rest to GX.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pyarrow as pa

SUITE_KEYS = ("name", "expectations", "meta", "notes", "id", "suite_parameters")
RESULT_KEYS = ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count",
               "missing_percent", "unexpected_percent_nonmissing", "details")


@functools.cache
def _gx() -> Any:
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


def load_suite(doc: dict[str, Any]) -> Any:
    """The document as GX's own ``ExpectationSuite`` (GX logs and drops expectations it cannot load: compare
    the counts)."""
    return _gx().ExpectationSuite(**{"name": "mlgov", **{k: v for k, v in doc.items() if k in SUITE_KEYS}})


def _plain(value: Any) -> Any:
    """GX results carry numpy scalars; reports are JSON."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def validate(table: pa.Table, expectations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each expectation run by GX on the table, in mlgov's result shape; one GX cannot load is reported
    unsupported with GX's reason, and does not stop the others."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    out: list[dict[str, Any] | None] = [None] * len(expectations)
    runnable: list[tuple[int, dict[str, Any]]] = []
    objects: list[Any] = []
    for i, exp in enumerate(expectations):
        etype = exp.get("type") or exp.get("expectation_type")
        kwargs = dict(exp.get("kwargs", {}))
        base = {"type": etype, "kwargs": kwargs, "evaluated_by": "great_expectations"}
        try:  # built one by one: a suite built from dicts logs and drops what GX cannot load
            objects.append(ExpectationConfiguration(type=str(etype), kwargs=kwargs,
                                                    meta={"mlgov_position": i}).to_domain_obj())
        except Exception as exc:
            out[i] = {**base, "success": None, "unsupported": f"Great Expectations cannot run it: "
                                                              f"{str(exc).splitlines()[0][:300]}"}
            continue
        runnable.append((i, base))
    if runnable:
        ctx = gx.get_context(mode="ephemeral")  # in memory: writes no files
        ctx.enable_analytics(False)  # 1.24 ships no sender (only checkpoint actions post; none run here)
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_def = (ctx.data_sources.add_pandas("mlgov").add_dataframe_asset("table")
                     .add_batch_definition_whole_dataframe("whole"))
        batch = batch_def.get_batch(batch_parameters={"dataframe": table.to_pandas()})
        # GX orders its results its own way: each expectation carries its position in ``meta``
        suite = gx.ExpectationSuite(name="mlgov", expectations=objects)
        results = batch.validate(suite).to_json_dict()["results"]
        bases = dict(runnable)
        for res in results:
            i = int(res["expectation_config"]["meta"]["mlgov_position"])
            base = bases[i]
            info = res.get("exception_info") or {}
            if info.get("raised_exception"):
                out[i] = {**base, "success": None,
                          "unsupported": f"Great Expectations failed: {str(info.get('exception_message'))[:300]}"}
            else:
                result = {k: _plain(v) for k, v in (res.get("result") or {}).items() if k in RESULT_KEYS}
                out[i] = {**base, "success": bool(res["success"]), "result": result}
    return [r for r in out if r is not None]
