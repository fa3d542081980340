"""`mlgov lineage …`: query and export the lineage graph, browse and record its entities, over the Python SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlgov.terminal import (
    CliError,
    Everything,
    Exit,
    Limit,
    Offset,
    json_arg,
    listing,
    message,
    record,
    remote,
    table,
    text,
)

if TYPE_CHECKING:
    from lineage.client import LineageClient as Client

lineage_app = typer.Typer(help="The lineage graph: what a model was trained on, what came of it, who decided.",
                          no_args_is_help=True)

Start = Annotated[list[str], typer.Argument(help="entity ids or artifact URIs to start from")]
Direction = Annotated[str, typer.Option(help="Ascendants (where it came from), Descendants or Both")]
Depth = Annotated[int | None, typer.Option(min=0, max=50, help="hops to follow (default 10; 0: the starts alone)")]
Kinds = Annotated[list[str] | None, typer.Option("--kind", help="only artifact, action or context (repeat)")]
Types = Annotated[list[str] | None, typer.Option("--type", help="only these entity types, e.g. Model (repeat)")]
Properties = Annotated[str | None, typer.Option(help="properties: JSON text or file")]
ENTITY_ROWS = table("id", "type", "name", "uri", "status", "created_by", "created_at", empty="nothing found")
ENTITY_FIELDS = record("id", "kind", "type", "name", "uri", "sha256", "status", "start_time", "end_time",
                       "description", "properties", "created_by", "created_at")


def _filters(kind: list[str] | None, type: list[str] | None) -> dict[str, Any] | None:
    filters = {k: v for k, v in (("kinds", kind), ("types", type)) if v}
    return filters or None


def _graph_view(data: Any) -> None:
    """The entities, then the edges named by their ends' type and name (``--json`` keeps the ids)."""
    vertices = data.get("vertices", [])
    table("id", "kind", "type", "name", "uri", "depth", empty="no entities reachable")(vertices)
    named = {v["id"]: f"{v['type']}: {v.get('name') or v.get('uri') or v['id']}" for v in vertices}
    if data.get("edges"):
        typer.echo("")
        table("source", "type:association", "target")([
            {**e, "source": named.get(e["source"], e["source"]), "target": named.get(e["target"], e["target"])}
            for e in data["edges"]])


@lineage_app.command("query")
@remote(_graph_view)
def query(api: Client, start: Start, direction: Direction = "Descendants", depth: Depth = None, kind: Kinds = None,
          type: Types = None,
          edges: Annotated[bool, typer.Option("--edges/--no-edges", help="list the edges too")] = True) -> Any:
    """The graph reachable from START: entities with their depth, and the edges between them."""
    return api.query_lineage(start, direction, max_depth=depth, include_edges=edges, filters=_filters(kind, type))


@lineage_app.command("export")
@remote(text)
def export(api: Client, start: Start, direction: Direction = "Both", depth: Depth = None, kind: Kinds = None,
           type: Types = None,
           format: Annotated[str, typer.Option(help="dot (Graphviz) or mermaid")] = "dot") -> Any:
    """The graph reachable from START as Graphviz DOT or Mermaid text (e.g. `| dot -Tsvg > lineage.svg`)."""
    return api.export_lineage(start, direction, format=format,  # type: ignore[arg-type]   # the server checks it
                              max_depth=depth, filters=_filters(kind, type))


EntityFilter = Annotated[str | None, typer.Option()]


def _entity_commands(noun: str, lister: Callable[..., Any], getter: Callable[[Client, str], Any],
                     status_filter: bool) -> typer.Typer:
    """`list` (by type and name) and `show ID` for one kind of entity."""
    app = typer.Typer(help=f"Lineage {noun}s.", no_args_is_help=True)

    @app.command("list", help=f"List {noun}s, newest first.")
    @remote(ENTITY_ROWS)
    def list_(api: Client, type: Annotated[str | None, typer.Option("--type", help="e.g. Model, DataSet")] = None,
              name_contains: Annotated[str | None, typer.Option(help="part of the name")] = None,
              status: Annotated[str | None, typer.Option(help="actions: Completed, Failed, …")] = None,
              limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
        if status is not None and not status_filter:
            raise CliError(f"{noun}s have no status", fix="drop --status (only actions have one)", code=Exit.USAGE)
        filters = {"type": type, "name_contains": name_contains, **({"status": status} if status_filter else {})}
        return listing(lister(api, **filters), limit, offset, everything)

    @app.command("show", help=f"Show one {noun}.")
    @remote(ENTITY_FIELDS)
    def show(api: Client, entity_id: str) -> Any:
        return getter(api, entity_id)

    return app


artifacts_app = _entity_commands("artifact", lambda api, **f: api.list_artifacts(**f),
                                 lambda api, entity_id: api.get_artifact(entity_id), False)
actions_app = _entity_commands("action", lambda api, **f: api.list_actions(**f),
                               lambda api, entity_id: api.get_action(entity_id), True)
contexts_app = _entity_commands("context", lambda api, **f: api.list_contexts(**f),
                                lambda api, entity_id: api.get_context(entity_id), False)
lineage_app.add_typer(artifacts_app, name="artifacts")
lineage_app.add_typer(actions_app, name="actions")
lineage_app.add_typer(contexts_app, name="contexts")


@artifacts_app.command("create")
@remote(message("artifact {id}: {type} {uri}"))
def create_artifact(api: Client, type: Annotated[str, typer.Argument(help="e.g. DataSet, Model, Image")],
                    uri: Annotated[str, typer.Argument(help="where it lives")],
                    sha256: Annotated[str | None, typer.Option(help="its content hash")] = None,
                    name: Annotated[str | None, typer.Option()] = None,
                    description: Annotated[str | None, typer.Option()] = None,
                    properties: Properties = None) -> Any:
    """Record an artifact (the same URI and hash again returns the existing one)."""
    return api.create_artifact(type, uri, sha256, name=name, description=description,
                               properties=json_arg(properties, "--properties") if properties else None)


@lineage_app.command("associate")
@remote(message("{source} {type} {target} (association {id})"))
def associate(api: Client, source: str,
              type: Annotated[str, typer.Argument(help="ContributedTo, AssociatedWith, DerivedFrom, Produced or "
                                                       "SameAs")],
              target: str, properties: Properties = None) -> Any:
    """Record an edge SOURCE —TYPE→ TARGET between two entities, each an id or an artifact's URI."""
    return api.create_association(_entity_id(api, source), _entity_id(api, target), type,
                                  properties=json_arg(properties, "--properties") if properties else None)


def _entity_id(api: Client, ref: str) -> str:
    """An entity id as given, or the id of the one artifact recorded at a URI (as `lineage query` takes them)."""
    if "://" not in ref:
        return ref
    found = api.list_artifacts(uri=ref).page(limit=2)
    if found.total == 1:
        return found.items[0].id
    if not found.total:
        raise CliError(f"no lineage artifact has URI {ref!r}", fix="record it first (mlgov lineage artifacts "
                       "create) or pass an entity id", code=Exit.NOT_FOUND)
    raise CliError(f"{found.total} artifacts have URI {ref!r} (one per content hash)",
                   fix="pass the entity id of the one meant (mlgov lineage artifacts list --uri …)", code=Exit.USAGE)


@lineage_app.command("associations")
@remote(table("id", "source", "type", "target", "created_by", "created_at", empty="no associations"))
def associations(api: Client, source: Annotated[str | None, typer.Option(help="from this entity id")] = None,
                 target: Annotated[str | None, typer.Option(help="to this entity id")] = None,
                 type: Annotated[str | None, typer.Option("--type", help="association type")] = None,
                 limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
    """List associations (edges)."""
    return listing(api.list_associations(source=source, target=target, type=type), limit, offset, everything)


@lineage_app.command("openlineage")
@remote(text)
def openlineage(api: Client, event: Annotated[str, typer.Argument(
        help="an OpenLineage RunEvent, JobEvent or DatasetEvent: JSON text or file")]) -> Any:
    """Record an OpenLineage event (a run as an action, a job as a context, datasets as artifacts; idempotent)."""
    return api.send_openlineage(json_arg(event, "EVENT"))
