"""How baselines and reports are laid out in the object store (keys, JSON as SageMaker writes it, the reference
profile), and read back: pure I/O helpers, no Session."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlgov.storage import ObjectStore
from monitor.engine.stats import (
    CategoricalSummary,
    FeatureProfile,
    NumericSummary,
    json_safe,
    profiles_from_statistics,
)


def capture_folder(endpoint: str, variant: str, hour: dt.datetime | None = None) -> str:
    """Where an endpoint's captured records live, hour-partitioned as SageMaker writes them:
    ``capture/{endpoint}/{variant}/yyyy/mm/dd/hh``."""
    base = f"capture/{endpoint}/{variant}"
    return f"{base}/{hour:%Y/%m/%d/%H}" if hour is not None else base


def dumps(obj: Any) -> bytes:
    """JSON as SageMaker writes it: NaN/inf become null (strict JSON), UTF-8, indented."""
    return json.dumps(json_safe(obj), indent=2, ensure_ascii=False).encode()


def save_profile(store: ObjectStore, prefix: str, profiles: list[FeatureProfile]) -> None:
    """Keep the reference's sorted values and full frequency tables, so later analyses are exact."""
    numeric = {p.name: p.summary.exact for p in profiles
               if isinstance(p.summary, NumericSummary) and p.summary.exact is not None}
    if numeric:
        longest = max(len(v) for v in numeric.values())
        arrays = {n: pa.array(np.concatenate([v, np.full(longest - len(v), np.nan)]), mask=np.arange(longest) >= len(v))
                  for n, v in numeric.items()}
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf, compression="zstd")
        store.put(f"{prefix}/reference.parquet", buf.getvalue(), "application/vnd.apache.parquet")
    counts = {p.name: p.summary.counts for p in profiles if isinstance(p.summary, CategoricalSummary)}
    store.put(f"{prefix}/categories.json", json.dumps(counts).encode(), "application/json")


def load_profiles(store: ObjectStore, prefix: str, exact: bool) -> list[FeatureProfile]:
    stats = json.loads(store.get(f"{prefix}/statistics.json"))
    profiles = profiles_from_statistics(stats)
    if not exact:
        return profiles
    counts = json.loads(store.get(f"{prefix}/categories.json")) if store.exists(f"{prefix}/categories.json") else {}
    table = pq.read_table(io.BytesIO(store.get(f"{prefix}/reference.parquet"))) \
        if store.exists(f"{prefix}/reference.parquet") else None
    for p in profiles:
        s = p.summary
        if isinstance(s, NumericSummary) and table is not None and p.name in table.column_names:
            col = table.column(p.name)
            s.exact = col.drop_null().to_numpy() if col.null_count else col.to_numpy()
        elif isinstance(s, CategoricalSummary) and p.name in counts:
            s.counts = {str(k): int(v) for k, v in counts[p.name].items()}
    return profiles
