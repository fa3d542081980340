"""`mlgov capture import|export`: move SageMaker capture trees in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from sqlalchemy import select

from mlgov.cli_support import database
from mlgov.settings import get_settings
from mlgov.storage import open_store, s3_client
from monitor.orm import CaptureBatch

capture_app = typer.Typer(help="Endpoint capture data in SageMaker's layout.", no_args_is_help=True)


def _sources(src: str) -> list[tuple[str, bytes]]:
    if src.startswith("s3://"):
        u = urlparse(src)
        client = s3_client(get_settings())
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=u.netloc, Prefix=u.path.lstrip("/")):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".jsonl"):
                    out.append((obj["Key"], client.get_object(Bucket=u.netloc, Key=obj["Key"])["Body"].read()))
        return sorted(out)
    root = Path(src)
    if not root.exists():
        raise typer.BadParameter(f"{src} does not exist")
    return [(str(p), p.read_bytes()) for p in sorted(root.rglob("*.jsonl"))]


@capture_app.command("import")
def import_tree(source: Annotated[str, typer.Argument(help="a directory or s3://bucket/prefix")],
                endpoint: Annotated[str, typer.Option(help="the mlgov endpoint to import into")],
                batch: Annotated[int, typer.Option(help="records per transaction")] = 1000) -> None:
    """Import every *.jsonl capture file under SOURCE (idempotent: re-importing skips known eventIds)."""
    from monitor import service  # pandas and pyarrow: loaded by the commands that need them, not by `mlgov keys`

    db = database()
    store = open_store(get_settings())
    totals = {"accepted": 0, "sampled_out": 0, "duplicates": 0, "rejected": 0}
    for name, data in _sources(source):
        lines = data.splitlines()
        for i in range(0, len(lines), batch):
            with db.session_scope() as s:
                res = service.ingest(s, store, endpoint, b"\n".join(lines[i:i + batch]), "application/x-ndjson")
            for k in ("accepted", "sampled_out", "duplicates"):
                totals[k] += res[k]
            totals["rejected"] += len(res["rejected"])
            for r in res["rejected"][:5]:
                typer.echo(f"{name}: line {i + r['index'] + 1}: {r['reason']}", err=True)
    typer.echo(" ".join(f"{k}={v}" for k, v in totals.items()))


@capture_app.command("export")
def export_tree(endpoint: Annotated[str, typer.Option(help="endpoint to export")],
                to: Annotated[Path, typer.Option(help="target directory")]) -> None:
    """Write the endpoint's captured records as SageMaker's tree: {endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl."""
    from monitor import service

    db = database()
    store = open_store(get_settings())
    n = 0
    with db.session_scope(write=False) as s:
        ep = service.get_endpoint(s, endpoint)
        for b in s.scalars(select(CaptureBatch).where(CaptureBatch.endpoint_id == ep.id).order_by(CaptureBatch.hour)):
            target = to / ep.name / ep.variant / f"{b.hour:%Y/%m/%d/%H}" / f"{b.id}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get(b.jsonl_key))
            n += b.records
    typer.echo(f"exported {n} records to {to}")
