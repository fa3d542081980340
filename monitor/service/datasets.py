"""Datasets handed to the monitoring services: uploaded bytes read as a checked Arrow table, or a dataset named
by its place in the object store (no Session).
"""

from __future__ import annotations

import pyarrow as pa

from mlgov import inputs
from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from monitor.engine.columns import TableError, read_table


def dataset_table(data: bytes, fmt: str | None, header: bool) -> pa.Table:
    if not data:
        raise Invalid("the dataset is empty", fix="upload a CSV with a header row, or a Parquet file")
    fmt = fmt or ("parquet" if inputs.is_parquet(data) else "csv")
    parquet = fmt == "parquet"
    if not parquet:
        inputs.check_csv(data, "the dataset")
    try:
        table = read_table(data, fmt, header=header)
    except TableError as exc:
        raise Invalid(str(exc), fix="upload a CSV with a header row (or header=false), or a Parquet file") from None
    if parquet:
        inputs.check_columns(table.num_columns, "the dataset")
    if table.num_columns == 0 or table.num_rows == 0:
        raise Invalid("the dataset has no rows", fix="upload at least one data row")
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Invalid(f"the dataset has duplicate column names: {dupes}", fix="give every column a unique name")
    return table


def read_dataset_uri(store: ObjectStore, uri: str) -> bytes:
    """A dataset named by its key in the object store, or by the store's own s3://… / file://… URI."""
    key = store.key_of(uri)
    if key is None and "://" in uri:
        raise Invalid(f"dataset URI {uri!r} is outside the configured object store ({store.root_uri}…)",
                      fix="upload the file, or put it in the store and give its key")
    return store.get(key if key is not None else uri)
