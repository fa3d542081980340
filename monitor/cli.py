"""`mlgov capture import|export`: move SageMaker capture trees in and out (admin tools: they work on the configured
database and store directly, not through the server)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from mlgov.terminal import CliError, Exit, JsonOut, Outcome, finish, message, progress

capture_app = typer.Typer(help="Endpoint capture data in SageMaker's layout (works on the database directly).",
                          no_args_is_help=True)

REASONS_SHOWN = 20
"""Distinct rejection reasons printed, each with its first record's place and how many records share it."""


@dataclass(frozen=True)
class Source:
    name: str
    size: int
    read: Callable[[], bytes]


def _sources(src: str) -> list[Source]:
    """The *.jsonl files under a directory or an s3:// prefix, listed (with sizes, for the progress bar) before
    any is read."""
    if src.startswith("s3://"):
        from urllib.parse import urlparse

        from mlgov.settings import get_settings
        from mlgov.storage import s3_client

        u = urlparse(src)
        client = s3_client(get_settings())

        def reader(key: str) -> Callable[[], bytes]:
            return lambda: bytes(client.get_object(Bucket=u.netloc, Key=key)["Body"].read())

        out = [Source(obj["Key"], int(obj.get("Size", 0)), reader(obj["Key"]))
               for page in client.get_paginator("list_objects_v2").paginate(Bucket=u.netloc, Prefix=u.path.lstrip("/"))
               for obj in page.get("Contents", []) if obj["Key"].endswith(".jsonl")]
        return sorted(out, key=lambda s: s.name)
    root = Path(src)
    if not root.exists():
        raise CliError(f"{src} does not exist", fix="pass a directory holding the capture tree, or s3://bucket/prefix",
                       code=Exit.USAGE)
    return [Source(str(p), p.stat().st_size, p.read_bytes) for p in sorted(root.rglob("*.jsonl"))]


@dataclass
class Totals:
    accepted: int = 0
    sampled_out: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: dict[str, list[Any]] = field(default_factory=dict)   # reason → [records, first place]

    def add(self, result: dict[str, Any], where: str, first_line: int) -> None:
        for k in ("accepted", "sampled_out", "duplicates"):
            setattr(self, k, getattr(self, k) + int(result[k]))
        self.reject(result["rejected"], len(result["rejected"]), where, first_line)

    def reject(self, items: list[dict[str, Any]], count: int, where: str, first_line: int) -> None:
        self.rejected += count
        for r in items:
            seen = self.reasons.setdefault(str(r["reason"]), [0, f"{where}: line {first_line + int(r['index'])}"])
            seen[0] += 1
        if count > len(items) and items:   # the server listed only the first reasons of a refused chunk
            self.reasons[str(items[-1]["reason"])][0] += count - len(items)

    def outcome(self, files: int) -> Outcome:
        stored = self.accepted + self.sampled_out + self.duplicates
        code = Exit.OK if not self.rejected else Exit.PARTIAL if stored else Exit.REFUSED
        notes = [f"{place}: {reason}" + (f" (and {n - 1} more records)" if n > 1 else "")
                 for reason, (n, place) in list(self.reasons.items())[:REASONS_SHOWN]]
        if len(self.reasons) > REASONS_SHOWN:
            notes.append(f"… {len(self.reasons) - REASONS_SHOWN} more reasons not shown")
        if code == Exit.REFUSED:
            notes.append(f"error: all {self.rejected} records were rejected and nothing was imported (fix: correct "
                         "them as the reasons above say; the endpoint's schema names the features in order)")
        elif code == Exit.PARTIAL:
            were = "record was" if self.rejected == 1 else "records were"
            notes.append(f"error: {self.rejected} {were} rejected; the others were imported (fix: correct the "
                         "rejected records and import again: known eventIds are skipped)")
        data = {"files": files, "accepted": self.accepted, "sampled_out": self.sampled_out,
                "duplicates": self.duplicates, "rejected": self.rejected}
        return Outcome(data, code, notes)


@capture_app.command("import")
def import_tree(source: Annotated[str, typer.Argument(help="a directory or s3://bucket/prefix")],
                endpoint: Annotated[str, typer.Option(help="the mlgov endpoint to import into")],
                batch: Annotated[int, typer.Option(min=1, help="records per transaction")] = 1000,
                json_out: JsonOut = False) -> None:
    """Import every *.jsonl capture file under SOURCE (idempotent: re-importing skips known eventIds). Exits 6 when
    some records were rejected, 4 when all were."""
    from mlgov.cli import database
    from mlgov.errors import Invalid
    from mlgov.settings import get_settings
    from mlgov.storage import open_store
    from monitor import service

    db = database()
    store = open_store(get_settings())
    with db.session_scope(write=False) as s:
        service.get_endpoint(s, endpoint)   # an unknown endpoint fails before any file is read
    sources = _sources(source)
    if not sources:
        raise CliError(f"no *.jsonl capture files under {source}", code=Exit.NOT_FOUND,
                       fix="point at the root of a capture tree ({endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl)")
    totals = Totals()
    with progress("importing capture", sum(src.size for src in sources), unit="bytes", accepted=0,
                  rejected=0) as advance:
        for src in sources:
            lines = src.read().splitlines(keepends=True)
            for i in range(0, len(lines), batch):
                chunk = lines[i:i + batch]
                try:
                    with db.session_scope() as s:
                        res = service.ingest(s, store, endpoint, b"".join(chunk), "application/x-ndjson")
                    totals.add(res, src.name, i + 1)
                except Invalid as exc:   # the whole chunk refused (unreadable, or every record rejected)
                    listed = exc.extra.get("rejected") or [{"index": 0, "reason": exc.detail}]
                    totals.reject(listed, int(exc.extra.get("rejected_count", len(chunk))), src.name, i + 1)
                advance(sum(len(line) for line in chunk), accepted=totals.accepted, rejected=totals.rejected)
    finish(totals.outcome(len(sources)), message("accepted={accepted} sampled_out={sampled_out} "
                                                 "duplicates={duplicates} rejected={rejected}"), json_out)


@capture_app.command("export")
def export_tree(endpoint: Annotated[str, typer.Option(help="endpoint to export")],
                to: Annotated[Path, typer.Option(help="target directory")],
                json_out: JsonOut = False) -> None:
    """Write the endpoint's captured records as SageMaker's tree: {endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl."""
    from sqlalchemy import func, select

    from mlgov.cli import database
    from mlgov.settings import get_settings
    from mlgov.storage import open_store
    from monitor import service
    from monitor.orm import CaptureBatch

    db = database()
    store = open_store(get_settings())
    n = files = 0
    with db.session_scope(write=False) as s:
        ep = service.get_endpoint(s, endpoint)
        total = s.scalar(select(func.coalesce(func.sum(CaptureBatch.records), 0))
                         .where(CaptureBatch.endpoint_id == ep.id))
        batches = select(CaptureBatch).where(CaptureBatch.endpoint_id == ep.id).order_by(CaptureBatch.hour)
        with progress("exporting capture", total) as advance:
            for b in s.scalars(batches):
                target = to / ep.name / ep.variant / f"{b.hour:%Y/%m/%d/%H}" / f"{b.id}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(store.get(b.jsonl_key))
                n, files = n + b.records, files + 1
                advance(b.records)
    finish(Outcome({"endpoint": ep.name, "records": n, "files": files, "to": str(to)}),
           message("exported {records} records in {files} files to {to}"), json_out)
