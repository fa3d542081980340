"""Tables in: CSV, Parquet, pandas or Arrow → typed columns with SageMaker's inferred types.

Arrow does the parsing (multithreaded C++); each column is then either numeric (finite values sorted once,
so every quantile, CDF and exact test below is a slice or a binary search) or categorical (value counts
from Arrow's hash kernels). Types follow Deequ's rule as SageMaker applies it: any string → String;
else any fractional → Fractional; else Integral; all missing → Unknown. Booleans and timestamps are Strings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from monitor.engine.kll import Floats

INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"
_INT_RE = r"^\s*[-+]?\d+\s*$"
_FRAC_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


class TableError(ValueError):
    """The input cannot be read as a table (the message says why)."""


@dataclass
class ColumnData:
    name: str
    inferred_type: str
    rows: int
    missing: int                                   # nulls (and NaN for numbers)
    sorted_values: Floats | None = None            # numeric: finite values, ascending
    non_finite: int = 0                            # numeric: ±inf (present, but outside distributions)
    counts: dict[str, int] = field(default_factory=dict)   # String: value → count

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def is_numeric(self) -> bool:
        return self.sorted_values is not None

    def share_matching(self, expected_type: str) -> float:
        """Share of present values whose type is ``expected_type`` (SageMaker's data_type_check).

        Values are typed as Deequ types them: a number is Integral or Fractional, never String, so numbers
        in a column the baseline calls String count against it. Integral values satisfy Fractional.
        """
        return self.matching(expected_type) / self.present if self.present else 1.0

    def matching(self, expected_type: str) -> int:
        """How many present values have type ``expected_type`` (all of them for Unknown): an exact count, so
        partitions counted apart add up to the count of the whole."""
        if self.present == 0 or expected_type == UNKNOWN:
            return self.present
        if expected_type == STRING:
            if self.is_numeric:
                return 0
            return self.present - self._count_matching(_FRAC_RE)
        if self.is_numeric:
            if expected_type == FRACTIONAL or self.inferred_type == INTEGRAL:
                return self.present
            vals = self.sorted_values
            assert vals is not None
            return int(np.count_nonzero(vals == np.floor(vals)))
        pattern = _INT_RE if expected_type == INTEGRAL else _FRAC_RE
        return self._count_matching(pattern)

    def _count_matching(self, pattern: str) -> int:
        """Rows whose value matches: the regex runs once per distinct value, weighted by its count."""
        if not self.counts:
            return 0
        values = pa.array(list(self.counts), type=pa.string())
        hits = pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)
        return int(np.dot(hits.astype(np.int64), np.fromiter(self.counts.values(), dtype=np.int64)))


@dataclass
class TypeCounts:
    """A column's present values and how many of them match each SageMaker type: what the data_type_check needs,
    mergeable (partitions add up), so a column summarised on several workers is checked as if read whole."""

    present: int = 0
    matching: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, col: ColumnData) -> TypeCounts:
        return cls(col.present, {t: col.matching(t) for t in (INTEGRAL, FRACTIONAL, STRING)})

    def merge(self, other: TypeCounts) -> TypeCounts:
        keys = self.matching.keys() | other.matching.keys()
        return TypeCounts(self.present + other.present,
                          {k: self.matching.get(k, 0) + other.matching.get(k, 0) for k in sorted(keys)})

    def share_matching(self, expected_type: str) -> float:
        if self.present == 0 or expected_type == UNKNOWN:
            return 1.0
        return self.matching.get(expected_type, 0) / self.present


def read_table(data: bytes, fmt: str = "csv", *, header: bool = True) -> pa.Table:
    """Bytes of a CSV (with or without header) or Parquet file → Arrow table. The caller names the format (the
    kernel's `inputs.is_parquet` tells an upload's)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            file = pq.ParquetFile(io.BytesIO(data))
            _profilable(file.schema_arrow)
            return file.read()
        read_opts = pacsv.ReadOptions(autogenerate_column_names=not header)
        conv = pacsv.ConvertOptions(strings_can_be_null=True,
                                    null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"])
        table = pacsv.read_csv(io.BytesIO(data), read_options=read_opts, convert_options=conv)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"could not read the {fmt} data: {exc}") from None
    if not header:  # SageMaker names headerless columns _c0, _c1, …
        table = table.rename_columns([f"_c{i}" for i in range(table.num_columns)])
    return table


def _profilable(schema: pa.Schema) -> None:
    """A Parquet file's columns are ones a profile reads: unique names (Arrow's reader failed on a repeated one with
    its internals' words) and flat values (a list, struct or map column, or bytes, cannot be read as text: a 500)."""
    names = schema.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TableError(f"the dataset has duplicate column names: {dupes[:20]}")
    bad = [f"{f.name!r} ({f.type})" for f in schema if not _flat(f.type)]
    if bad:
        raise TableError(f"column{'s' if len(bad) > 1 else ''} {', '.join(bad[:10])} hold{'' if len(bad) > 1 else 's'}"
                         " lists, structs, maps or raw bytes, which are not profiled: flatten them into columns of "
                         "numbers, text, booleans or times (or leave them out)")


def _flat(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _flat(t.value_type)
    return not (pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
                or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t))


def from_pandas(df: Any) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def column(name: str, arr: pa.ChunkedArray | pa.Array) -> ColumnData:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    rows = len(arr)
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_null(t) or arr.null_count == rows:
        return ColumnData(name, UNKNOWN, rows, rows)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        kind = INTEGRAL if pa.types.is_integer(t) else FRACTIONAL
        if np.isfinite(values).all():   # no nulls, NaN or ±inf: one sorted copy
            return ColumnData(name, kind, rows, 0, sorted_values=np.sort(values))
        nan = np.isnan(values)
        inf = np.isinf(values)
        finite = values[~(nan | inf)]
        finite.sort()
        return ColumnData(name, kind, rows, int(nan.sum()), sorted_values=finite, non_finite=int(inf.sum()))
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        arr = pc.cast(arr, pa.string()) if not pa.types.is_boolean(t) else pc.if_else(arr, "true", "false")
    present = pc.drop_null(arr)
    vc = pc.value_counts(present)
    counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    return ColumnData(name, STRING, rows, rows - len(present), counts=counts)


def numeric_column(name: str, values: np.ndarray, integral: bool) -> ColumnData:
    """A numeric NumPy column (pandas float/int without Arrow in between): NaN is missing, ±inf present."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) and np.isfinite(v).all():   # the common case: one check, then one sorted copy (no mask, no gather)
        return ColumnData(name, INTEGRAL if integral else FRACTIONAL, len(v), 0, sorted_values=np.sort(v))
    nan = np.isnan(v)
    n_missing = int(nan.sum())
    finite = v[np.isfinite(v)]
    finite.sort()
    if n_missing == len(v):
        return ColumnData(name, UNKNOWN, len(v), len(v))
    return ColumnData(name, INTEGRAL if integral else FRACTIONAL, len(v), n_missing, sorted_values=finite,
                      non_finite=len(v) - n_missing - len(finite))


def numbers_in(name: str, counts: dict[str, int]) -> ColumnData:
    """The values of a text column's frequency table that read as numbers (those the data_type_check counts as
    Fractional), as a numeric column: one regex and one cast per distinct value, then repeated by its count."""
    keys = pa.array(list(counts), type=pa.string())
    hits = pc.match_substring_regex(keys, _FRAC_RE)
    numeric = pc.filter(keys, hits)
    values = pc.cast(pc.utf8_trim_whitespace(numeric), pa.float64()).to_numpy(zero_copy_only=False)
    weights = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))[hits.to_numpy(zero_copy_only=False)]
    integral = bool(pc.all(pc.match_substring_regex(numeric, _INT_RE)).as_py() is not False)
    return numeric_column(name, np.repeat(values, weights), integral)


def text_column(name: str, values: Any) -> ColumnData | None:
    """A pandas object/string column: one hash pass (``value_counts``, without dropping missing values, which
    pandas does in a slower second mode) gives the frequency table directly, without first copying a million
    Python strings into Arrow. None when a present value is not a string (or none is present): the caller reads
    such a column through Arrow instead. Checking the distinct values replaces a type-inference pass over every row."""
    import pandas as pd

    vc = values.value_counts(dropna=False, sort=False)
    counts: dict[str, int] = {}
    missing = 0
    for value, count in zip(vc.index.tolist(), vc.tolist(), strict=True):
        if isinstance(value, str):
            counts[value] = count
        elif pd.api.types.is_scalar(value) and pd.isna(value):
            missing += count   # every marker pandas counts as missing (NaN of any float width, NaT, pd.NA)
        else:   # another type, or a missing marker not listed here: Arrow reads the column
            return None
    if not counts:
        return None
    return ColumnData(name, STRING, len(values), missing, counts=counts)


def columns(table: pa.Table) -> list[ColumnData]:
    names = table.column_names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise TableError(f"duplicate column names: {dupes}")
    return [column(n, table.column(n)) for n in names]
