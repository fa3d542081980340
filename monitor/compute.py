"""Where the engine's summaries run: in this process (``MLGOV_COMPUTE=local``, the default) or on a Dask cluster
(``MLGOV_COMPUTE=dask://host:8786``, extra ``mlgov[dask]``).

With a cluster, the input of a baseline or an analysis is Parquet in the object store (uploads are stored first).
Each worker reads its partitions straight from the store (pyarrow's S3 filesystem, or a directory every worker
mounts), summarises them with a pure summariser and the summaries merge pairwise on the cluster; this process
receives only the merged summary, never raw rows. The summarisers: profiles and type counts for data quality and
drift (``monitor.engine.partition``), expectation-suite measures (``monitor.engine.expectations.SuiteCounts``),
model-quality counts and histograms (``monitor.engine.quality_partition``) and bias group counts
(``clarify.metrics.partition``, passed in by clarify: monitor never imports it). A captured window that needs its
ground truth gets the labels broadcast once and joined on the workers (``labelled``). ``MLGOV_COMPUTE_MIN_ROWS``
keeps inputs with fewer rows local.

Faults: a worker lost mid-run has its tasks re-run by the scheduler on the others (Dask's own retry, up to its
``allowed-failures``); a cluster that cannot be reached or keeps losing workers raises ``ComputeFailed``, whose
message says which cluster and why — a scheduled execution then ends Failed with that reason, and nothing was
written. The store's credentials travel to the workers inside ``Location`` (masked in every repr, never logged).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlgov import cpu
from mlgov.errors import DomainError
from mlgov.settings import Settings, get_settings
from mlgov.storage import LocalStore, ObjectStore, S3Store
from monitor.engine.partition import TableSummary
from monitor.engine.stats import MixedColumn
from monitor.errors import PartitionGone

ROW_GROUP_ROWS = 100_000       # rows per Parquet row group of a stored upload: one worker task reads a few of them
GROUPS_PER_TASK = 4
TIME_COLUMN = "__inference_time"
LABEL = "__label"   # the ground truth joined to a captured row


class ComputeFailed(DomainError):
    status, title = 503, "Compute cluster unavailable"


@dataclass(frozen=True)
class Secret:
    """A credential that travels to the workers but never shows in a repr, a log line or an error."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Location:
    """How a worker reaches the store's objects: a directory (every worker mounts the same path) or an S3 bucket
    and prefix, with the endpoint and credentials of the server's settings (None: the workers' own AWS chain)."""

    root: str
    s3: bool = False
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: Secret | None = None
    secret_key: Secret | None = None

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        if not self.s3:
            return pafs.LocalFileSystem()
        kw: dict[str, Any] = {"region": self.region}
        if self.endpoint:
            url = urlparse(self.endpoint)
            kw.update(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
        if self.access_key is not None and self.secret_key is not None:
            kw.update(access_key=self.access_key.value, secret_key=self.secret_key.value)
        return pafs.S3FileSystem(**kw)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"


def location_of(store: ObjectStore, settings: Settings) -> Location:
    if isinstance(store, LocalStore):
        return Location(str(store.root))
    if isinstance(store, S3Store):
        root = f"{store.bucket}/{store.prefix}" if store.prefix else store.bucket
        return Location(root, s3=True, endpoint=settings.s3_endpoint_url, region=settings.s3_region,
                        access_key=Secret(settings.s3_access_key_id) if settings.s3_access_key_id else None,
                        secret_key=Secret(settings.s3_secret_access_key) if settings.s3_secret_access_key else None)
    raise ComputeFailed(f"the object store {type(store).__name__} cannot be read by Dask workers",
                        fix="use a file:// store every worker mounts, or an s3:// store")


@dataclass(frozen=True)
class Part:
    """One task's share: a Parquet object, or some of its row groups."""

    key: str
    row_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Read:
    """What a task keeps of its rows: columns (None: all but the hidden ``__`` ones), hidden columns it needs too
    (the capture keys a label join uses) and an inference-time window."""

    columns: frozenset[str] | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    hidden: frozenset[str] = frozenset()
    text: frozenset[str] = frozenset()   # read as text wherever a partition holds them as numbers


class Mergeable(Protocol):
    def merge(self, other: Any, /) -> Any: ...


S = TypeVar("S", bound=Mergeable)
Summariser = Callable[..., Any]
"""``fn(table, *extra)``: one row group (an Arrow table) to its mergeable summary; runs on a worker, so it is a
module-level function (or a ``functools.partial`` of one) of the engine."""


class PartUnreadable(RuntimeError):
    """A worker could not read its partition from the store (raised on the worker, re-raised here)."""


class PartGone(PartUnreadable):
    """The partition's object is not in the store (compaction merged a capture batch and deleted its files after
    the window was listed): the caller lists the window again (`endpoints.reread_if_compacted`)."""


def summarise_part(location: Location, part: Part, read: Read, fn: Summariser = TableSummary.of,
                   *extra: Any) -> Any:
    """Runs on a worker: read ``part`` one row group at a time and summarise it with ``fn(table, *extra)``
    (memory: one row group). A ``ValueError`` of ``fn`` (input that does not fit the summary) travels back as is."""
    cpu.tune_malloc()   # a Dask worker's process: its column-sized temporaries reuse freed pages (once per process)
    try:
        return _summarise(location, part, read, fn, extra)
    except FileNotFoundError as exc:   # pyarrow's, for a local file and an S3 object alike
        raise PartGone(f"{part.key}: {exc}") from None
    except OSError as exc:   # pyarrow's file and S3 errors; the message names the object, never the credentials
        raise PartUnreadable(f"{part.key}: {exc}") from None


def _summarise(location: Location, part: Part, read: Read, fn: Summariser, extra: tuple[Any, ...]) -> Any:
    fs = location.filesystem()
    with fs.open_input_file(location.path(part.key)) as fh:
        pf = pq.ParquetFile(fh)
        present = pf.schema_arrow.names
        names = [n for n in present if n.startswith("__") and n in read.hidden] + \
            [n for n in present if not n.startswith("__") and (read.columns is None or n in read.columns)]
        timed = read.start is not None and read.end is not None and TIME_COLUMN in present
        extra_time = [TIME_COLUMN] if timed and TIME_COLUMN not in names else []
        groups = part.row_groups if part.row_groups is not None else range(pf.num_row_groups)
        out: Any = None
        for g in groups:
            table = pf.read_row_group(g, columns=names + extra_time)
            if read.text:
                table = as_text(table, read.text)
            if timed:
                table = _in_window(table, read)
                if extra_time:
                    table = table.drop_columns(extra_time)
            one = fn(table, *extra)
            out = one if out is None else out.merge(one)
        return out if out is not None else fn(pf.schema_arrow.empty_table().select(names), *extra)


def as_text(table: pa.Table, columns: frozenset[str]) -> pa.Table:
    """``table`` with those of ``columns`` it holds as numbers cast to text (as Arrow writes numbers): a window's
    column numeric in one capture batch and text in another, read alike by the local and the cluster path."""
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if f.name in columns and not pa.types.is_string(
        f.type) and not pa.types.is_null(f.type) else f for f in table.schema]))


def _in_window(table: pa.Table, read: Read) -> pa.Table:
    t = table.column(TIME_COLUMN)
    ts = pa.timestamp("us", tz="UTC")
    return table.filter(pc.and_(pc.greater_equal(t, pa.scalar(read.start, ts)), pc.less(t, pa.scalar(read.end, ts))))


def labelled(table: pa.Table, labels: dict[str, str], *, fn: Summariser, every: bool = False) -> Any:
    """Runs on a worker: ``fn`` of the captured rows that have a label (``every``: of all of them, null where no
    label arrived), the label in ``__label`` (joined by ``__inference_id``, else ``__event_id``)."""
    if table.num_rows == 0:
        return fn(table.append_column(LABEL, pa.array([], pa.string())))
    ids = table.column("__inference_id").to_pylist() if "__inference_id" in table.column_names \
        else [None] * table.num_rows
    found = [labels.get(i if i is not None else e) for i, e in zip(ids, table.column("__event_id").to_pylist(),
                                                                      strict=True)]
    joined = table.append_column(LABEL, pa.array(found, pa.string()))
    return fn(joined if every else joined.filter(pa.array([v is not None for v in found])))


def merge_summaries(a: S, b: S) -> S:
    merged: S = a.merge(b)
    return merged


def parquet_parts(table: pa.Table, rows_per_group: int | None = None) -> tuple[bytes, int]:
    """An uploaded table as Parquet bytes in row groups workers can share out, and how many groups it has."""
    rows_per_group = rows_per_group or ROW_GROUP_ROWS
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=rows_per_group)
    groups = max(1, -(-table.num_rows // rows_per_group))
    return buf.getvalue(), groups


def row_group_parts(key: str, groups: int, per_task: int | None = None) -> list[Part]:
    per_task = per_task or GROUPS_PER_TASK
    return [Part(key, tuple(range(i, min(i + per_task, groups)))) for i in range(0, groups, per_task)]


def stored_parts(store: ObjectStore, table: pa.Table, key: str) -> list[Part]:
    """An uploaded table stored at ``key`` as Parquet (uploads are stored first, then read by the workers) and the
    tasks' shares of its row groups."""
    data, groups = parquet_parts(table)
    store.put(key, data, "application/vnd.apache.parquet")
    return row_group_parts(key, groups)


class Cluster:
    """A Dask scheduler this process submits to (one client per process, reconnected when lost)."""

    def __init__(self, address: str, settings: Settings) -> None:
        self.address, self.settings = address, settings
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None or self._client.status not in ("running", "connecting"):
                try:
                    from distributed import Client
                except ImportError:
                    raise ComputeFailed(f"MLGOV_COMPUTE names the Dask scheduler {self.address} but Dask is not "
                                        "installed", fix="pip install 'mlgov[dask]', or set MLGOV_COMPUTE=local") \
                        from None
                try:
                    connect: Any = Client   # distributed has no type hints
                    self._client = connect(self.address, timeout=self.settings.compute_connect_timeout_s,
                                           set_as_default=False)
                except (OSError, TimeoutError) as exc:
                    raise ComputeFailed(f"the Dask scheduler {self.address} cannot be reached: "
                                        f"{type(exc).__name__}: {exc}",
                                        fix="start the scheduler and workers, or set MLGOV_COMPUTE=local; the next "
                                            "scheduled run tries again") from None
                except TypeError as exc:
                    if not self.address.startswith("tls://"):
                        raise
                    # distributed's own words for a tls:// address without certificates: "TLS expects a
                    # `ssl_context` argument of type ssl.SSLContext (perhaps check your TLS configuration?)"
                    raise ComputeFailed(f"the Dask scheduler {self.address} takes TLS, and this process has no Dask "
                                        f"TLS configuration ({exc})",
                                        fix="give it Dask's client certificate: DASK_DISTRIBUTED__COMM__TLS__CA_FILE, "
                                            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and …__CLIENT__KEY (the Helm "
                                            "chart's dask.tls.existingSecret sets them)") from None
            return self._client

    def summarise(self, store: ObjectStore, parts: Sequence[Part], read: Read, fn: Summariser = TableSummary.of,
                  broadcast: Any = None) -> Any:
        """Summaries ``fn(table[, broadcast])`` of ``parts`` computed and merged in a tree on the workers; only the
        result comes back. ``broadcast`` (e.g. the window's labels) is sent to every worker once, not per task.
        A column numeric in some partitions and text in others is read as text everywhere, as the local path
        reads it (`endpoints._as_text_where_mixed`): found when a merge meets it, then summarised again."""
        while True:
            try:
                return self._summarise(store, parts, read, fn, broadcast)
            except MixedColumn as exc:
                if exc.column in read.text:
                    raise
                read = dataclasses.replace(read, text=read.text | {exc.column})

    def _summarise(self, store: ObjectStore, parts: Sequence[Part], read: Read, fn: Summariser,
                   broadcast: Any) -> Any:
        if not parts:
            return TableSummary() if fn == TableSummary.of else fn(pa.table({}), *(() if broadcast is None
                                                                                      else (broadcast,)))
        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError

        loc = location_of(store, self.settings)
        client = self.client()
        run = uuid.uuid4().hex[:12]
        try:
            extra = () if broadcast is None else (client.scatter([broadcast], broadcast=True, hash=False)[0],)
            futs = [client.submit(summarise_part, loc, p, read, fn, *extra, key=f"mlgov-summarise-{run}-{i}",
                                  pure=False)
                    for i, p in enumerate(parts)]
            level = 0
            while len(futs) > 1:
                level += 1
                nxt = [client.submit(merge_summaries, a, b, key=f"mlgov-merge-{run}-{level}-{i}", pure=False)
                       for i, (a, b) in enumerate(zip(futs[0::2], futs[1::2], strict=False))]
                futs = nxt + ([futs[-1]] if len(futs) % 2 else [])
            return futs[0].result(timeout=self.settings.compute_timeout_s)
        except PartGone as exc:
            raise PartitionGone(f"a partition of this input is not in the object store any more ({exc})") from None
        except PartUnreadable as exc:
            raise ComputeFailed(f"a worker of the Dask cluster at {self.address} could not read its input from the "
                                f"object store ({exc}); nothing was written",
                                fix="check that every worker reaches the store (network, endpoint, credentials)") \
                from None
        except KilledWorker as exc:
            raise ComputeFailed(f"the Dask cluster at {self.address} lost the workers running part of this input "
                                f"too often ({exc.task}); nothing was written",
                                fix="check the workers' memory limits and logs; the next scheduled run tries again") \
                from None
        except (OSError, TimeoutError, CommClosedError) as exc:
            raise ComputeFailed(f"the Dask cluster at {self.address} failed during the computation: "
                                f"{type(exc).__name__}: {exc}; nothing was written",
                                fix="check the scheduler and workers; the next scheduled run tries again") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


_configured: tuple[Settings, Cluster | None] | None = None
_guard = threading.Lock()


def configure(settings: Settings) -> Cluster | None:
    """Use ``settings`` (MLGOV_COMPUTE, MLGOV_COMPUTE_MIN_ROWS) in this process; the cluster, or None for local.
    Summaries may compute here, so the allocator is tuned for their column-sized temporaries (once per process)."""
    global _configured
    cpu.tune_malloc()
    with _guard:
        if _configured is not None and _configured[0] == settings:
            return _configured[1]
        if _configured is not None and _configured[1] is not None:
            _configured[1].close()
        cluster = None
        if settings.compute != "local":
            address = settings.compute.removeprefix("dask://")
            cluster = Cluster(address if "://" in address else f"tcp://{address}", settings)
        _configured = (settings, cluster)
        return cluster


def cluster_for(rows: int) -> Cluster | None:
    """The cluster to run an input of ``rows`` rows on, or None to run it here."""
    if _configured is None:
        configure(get_settings())
    assert _configured is not None
    settings, cluster = _configured
    return cluster if cluster is not None and rows >= settings.compute_min_rows else None

