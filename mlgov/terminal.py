"""What every ``mlgov`` command shares: which server and key (flags, environment, profiles), output as tables or
``--json``, errors as one line and an exit code scripts can trust, and progress bars on long work.

Light on purpose: ``mlgov --help`` imports this, so rich, httpx and the SDK are imported when a command runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from types import SimpleNamespace
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from mlgov.client import Client


class Exit(IntEnum):
    """The exit codes, one meaning each (documented in ``mlgov --help`` by EXIT_CODES_HELP)."""

    OK = 0
    ERROR = 1          # anything else: a server fault, a failed check (audit verify, a Failed analysis or
                       # schedule run), a bug
    USAGE = 2          # bad arguments or options, missing or unusable settings (no API key, a bad MLGOV_*
                       # variable or key), an unreadable local file
    NOT_FOUND = 3      # the thing named does not exist (404)
    REFUSED = 4        # the server refused: invalid input, not allowed, conflict (400, 401, 403, 409, 413, 422);
                       # also a batch in which every item was rejected
    UNAVAILABLE = 5    # the server (or the database) cannot be reached, timed out or is busy (503); the port
                       # `serve` should listen on is taken
    PARTIAL = 6        # part of the work was done; some items were rejected (their reasons are on stderr)
    CLOSED = 141       # stdout's reader went away (`mlgov … | head`): quiet, the status of a process SIGPIPE ends


EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 error · 2 usage (bad arguments, missing or bad settings, unreadable file) · 3 not found · "
    "4 refused (invalid input, forbidden, conflict, or every record rejected) · 5 server or database unavailable "
    "· 6 partly done (some records rejected) · 141 stdout closed by its reader (`| head`). Errors are one line on "
    "stderr: `error: <what> (fix: <how>)`; "
    "set MLGOV_DEBUG=1 for the traceback."
)

DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """An error the command itself detected (not the server's): printed as one line, exits with ``code``."""

    def __init__(self, detail: str, *, fix: str | None = None, code: Exit = Exit.ERROR) -> None:
        super().__init__(detail)
        self.detail, self.fix, self.code = detail, fix, code


def code_for_status(status: int) -> Exit:
    if status in (404, 410):
        return Exit.NOT_FOUND
    if status in (502, 503, 504):
        return Exit.UNAVAILABLE
    if 400 <= status < 500:
        return Exit.REFUSED
    return Exit.ERROR


def describe(exc: BaseException) -> CliError:
    """Any exception as (detail, fix, exit code). Server problems (the SDK's errors, whose ``status`` and problem
    carry ``detail`` and ``fix``), domain errors of the offline commands and transport failures are recognised
    by their shape, so this module imports neither the SDK nor the services."""
    if isinstance(exc, CliError):
        return exc
    settings = sys.modules.get("mlgov.settings")
    if settings is not None and isinstance(exc, settings.SettingsError):   # MLGOV_* unusable: says which, no value
        return CliError(exc.detail, fix=exc.fix, code=Exit.USAGE)
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        problem = getattr(exc, "problem", None)
        problem = problem if isinstance(problem, Mapping) else {}
        detail = getattr(exc, "detail", None) or problem.get("detail") or str(exc)
        fix = getattr(exc, "fix", None) or problem.get("fix")
        return CliError(str(detail), fix=str(fix) if fix else None, code=code_for_status(status))
    transport = _transport_error(exc)
    if transport is not None:
        return transport
    database = _database_error(exc)
    if database is not None:
        return database
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError | NotADirectoryError):
        return CliError(f"{exc.strerror or exc}: {exc.filename}", fix="check the path", code=Exit.USAGE)
    return CliError(f"internal error: {type(exc).__name__}: {exc}",
                    fix="run again with MLGOV_DEBUG=1 to see the traceback, and report it")


def _transport_error(exc: BaseException) -> CliError | None:
    httpx = sys.modules.get("httpx")
    if httpx is None or not isinstance(exc, httpx.TransportError):
        return None
    try:
        where = f"{exc.request.url.scheme}://{exc.request.url.netloc.decode()}"
    except RuntimeError:   # no request attached
        where = "the server"
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "cannot be reached"
    return CliError(f"the mlgov server at {where} {what} ({type(exc).__name__}: {exc})",
                    fix="start it (`mlgov serve`), or point MLGOV_URL, --url or --profile at the right server",
                    code=Exit.UNAVAILABLE)


def _database_error(exc: BaseException) -> CliError | None:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.OperationalError | sa_exc.TimeoutError):
        return None
    first = str(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).strip().splitlines()[0]
    return CliError(f"the database failed: {first}", fix="check MLGOV_DATABASE_URL and that the database is up and "
                    "not locked by another process, then retry", code=Exit.UNAVAILABLE)


def stdout_closed() -> NoReturn:
    """stdout's reader went away (`mlgov … | head`): nothing the user must hear of, so no error line. End with the
    status a process that SIGPIPE ends reports (141), stdout on /dev/null so the interpreter's last flush cannot
    fail again."""
    with suppress(OSError, ValueError, AttributeError):   # no real descriptor (an in-process runner's buffer)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(int(Exit.CLOSED))


def _is_devnull(fd: int) -> bool:
    try:
        st, null = os.fstat(fd), os.stat(os.devnull)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)


@contextmanager
def closed_stdout_ends_quietly() -> Iterator[None]:
    """Around the whole CLI: a closed stdout, wherever it is met, ends in `stdout_closed`. Met in a command it is
    a BrokenPipeError (GuardedGroup); in what is still buffered, at the flush below; in rich's output (help,
    tables) rich points stdout at /dev/null itself and exits 1, which becomes 141 here."""
    was_devnull = _is_devnull(1)
    try:
        try:
            yield
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()   # what is still buffered is written here, where a closed pipe can be caught
    except BrokenPipeError:
        stdout_closed()
    except SystemExit as exc:
        if exc.code == 1 and not was_devnull and _is_devnull(1):   # rich's Console.on_broken_pipe
            raise SystemExit(int(Exit.CLOSED)) from None
        raise


def report(err: CliError) -> NoReturn:
    """Print ``error: <detail> (fix: <fix>)`` on stderr, one line, and exit with the error's code."""
    line = " ".join(err.detail.split())
    if err.fix:
        line += f" (fix: {' '.join(err.fix.split())})"
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(int(err.code))


class GuardedGroup(TyperGroup):
    """The root command: every exception a command lets escape becomes one line and an exit code (a traceback
    only with MLGOV_DEBUG=1)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:   # the root's own options (`mlgov --bogus`)
        try:
            return list(super().parse_args(ctx, args))
        except Exception as exc:
            self._fail(ctx, exc)

    def invoke(self, ctx: Any) -> Any:   # a click Context (typer vendors click: its class is private)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            self._fail(ctx, exc)

    @staticmethod
    def _fail(ctx: Any, exc: Exception) -> NoReturn:
        if isinstance(exc, BrokenPipeError):   # `mlgov … | head`: the reader is done, not a bug to report
            stdout_closed()
        if isinstance(exc, typer.Exit | typer.Abort) or os.environ.get("MLGOV_DEBUG") or (
                hasattr(exc, "format_message") and not exc.format_message().strip()):   # no args: help was shown
            raise exc
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):   # click's usage errors (typer vendors it)
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or ctx.command_path
            report(CliError(exc.format_message(), fix=f"see `{where} --help`",
                            code=Exit.USAGE if exc.exit_code == 2 else Exit.ERROR))
        report(describe(exc))


# --- which server, which key ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    url: str
    api_key: str
    source: str   # where the key came from, for error messages


@dataclass
class Connection:
    """What the root command's options said; commands resolve it into a Target when they need the server."""

    profile: str | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def profiles_path() -> Path:
    explicit = os.environ.get("MLGOV_PROFILES")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlgov" / "profiles.toml"


def _read_profile(name: str, *, required: bool) -> dict[str, str]:
    import tomllib

    path = profiles_path()
    if not path.exists():
        if required:
            raise CliError(f"profile {name!r} asked for, but there is no profile file at {path}",
                           fix=f"create {path} with a [{name}] table holding url and api_key (or api_key_file), "
                               "or set MLGOV_PROFILES to its path", code=Exit.USAGE)
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path} is not valid TOML: {exc}", fix="correct the file", code=Exit.USAGE) from None
    table = doc.get(name)
    if table is None:
        if required:
            names = ", ".join(sorted(k for k, v in doc.items() if isinstance(v, dict))) or "none"
            raise CliError(f"no profile {name!r} in {path} (profiles: {names})",
                           fix=f"add a [{name}] table or pick one of the profiles listed", code=Exit.USAGE)
        return {}
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise CliError(f"profile {name!r} in {path} must be a table of strings (url, api_key, api_key_file)",
                       fix="correct the file", code=Exit.USAGE)
    out = dict(table)
    if "api_key_file" in out and "api_key" not in out:
        key_file = Path(out["api_key_file"]).expanduser()
        try:
            out["api_key"] = key_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"profile {name!r}: cannot read api_key_file {key_file}: {exc.strerror}",
                           fix="correct the path in the profile", code=Exit.USAGE) from None
    return out


def resolve(conn: Connection) -> Target:
    """Server URL and key. An explicitly chosen profile (``--profile`` or MLGOV_PROFILE) wins over MLGOV_URL and
    MLGOV_API_KEY, so a shell holding another server's key never sends it to the profile's server; without one,
    the environment wins over the profile file's ``[default]``. ``--url`` wins over everything."""
    chosen = conn.profile or os.environ.get("MLGOV_PROFILE") or None
    env = {k: v for k, v in (("url", os.environ.get("MLGOV_URL")), ("api_key", os.environ.get("MLGOV_API_KEY")))
           if v}
    if chosen:
        layers = [(_read_profile(chosen, required=True), f"profile {chosen!r}"), (env, "the environment")]
    else:
        layers = [(env, "the environment"), (_read_profile("default", required=False), "profile 'default'")]
    url = conn.url or next((layer["url"] for layer, _ in layers if layer.get("url")), DEFAULT_URL)
    key, source = next(((layer["api_key"], src) for layer, src in layers if layer.get("api_key")), (None, ""))
    if not key:
        raise CliError("no API key: set MLGOV_API_KEY or use a profile",
                       fix=f"export MLGOV_API_KEY=<key> (after `make run` the admin key is in .mlgov/admin.key), or "
                           f"add api_key to a profile in {profiles_path()}", code=Exit.USAGE)
    return Target(url=url.rstrip("/"), api_key=key, source=source)


def connection(ctx: typer.Context) -> Connection:
    """What the root command's options said (a default when a command is invoked without the root)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Connection):
        root.obj = Connection()
    return root.obj


@contextmanager
def sdk(ctx: typer.Context) -> Iterator[Client]:
    """The SDK client for this invocation's server and key."""
    from mlgov.client import Client

    target = resolve(connection(ctx))
    with Client(target.url, target.api_key) as api:
        yield api


# --- output ------------------------------------------------------------------------------------------------------

JsonOut = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")]


def plain(value: Any) -> Any:
    """SDK results (pydantic models, iterators, dicts of them) as JSON-ready Python values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)   # the names the server's JSON uses (``schema``)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or (isinstance(value, Iterable) and not isinstance(value, str | bytes)):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]00:00)?$")


def cell(value: Any, limit: int = 80) -> str:
    """One value as table text: timestamps to the second, mappings as k=v, lists comma-joined, text longer than
    ``limit`` cut."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        m = _TIMESTAMP.match(value)
        text = f"{m.group(1)} {m.group(2)}" if m else value
    elif isinstance(value, Mapping):
        flat = all(not isinstance(v, Mapping | list) for v in value.values())
        text = ", ".join(f"{k}={cell(v, limit)}" for k, v in value.items()) if flat else \
            json.dumps(value, default=str)
    elif isinstance(value, list):
        text = ", ".join(cell(v, limit) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def pick(row: Mapping[str, Any], path: str) -> Any:
    """``a.b.c`` inside nested mappings (missing parts are None)."""
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


View = Callable[[Any], None]


def _console(stderr: bool = False) -> Any:
    """Tables fit a terminal's width; into a pipe or file they are not cut to 80 columns (COLUMNS still wins)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = 1000
    return console


def table(*columns: str, empty: str = "nothing found", total_key: str | None = None) -> View:
    """Rows (a list of mappings, or a page ``{"items": [...], "total": n}``) as a table of ``columns``; a column
    is a dotted path, optionally ``path:Header``."""
    def show(data: Any) -> None:
        from rich.table import Table
        from rich.text import Text

        rows = data.get("items", []) if isinstance(data, Mapping) else data
        if not rows:
            typer.echo(empty)
            return
        t = Table(show_edge=False, pad_edge=False, header_style="bold")
        specs = _specs(columns)
        for _, header in specs:
            t.add_column(header)
        for row in rows:
            t.add_row(*(Text(cell(pick(row, path))) for path, _ in specs))   # Text: no rich markup from data
        console = _console()
        console.print(t)
        if isinstance(data, Mapping) and isinstance(data.get("total"), int) and data["total"] > len(rows):
            start = int(data.get("offset") or 0)
            console.print(Text(f"{start + 1}–{start + len(rows)} of {data['total']} (more with --offset/--limit)"),
                          style="dim")
    return show


def _specs(columns: Sequence[str]) -> list[tuple[str, str]]:
    """(path, header) of each ``path`` or ``path:Header``; the header defaults to the path's last part."""
    return [(c.split(":", 1)[0], c.split(":", 1)[1]) if ":" in c else (c, c.rsplit(".", 1)[-1].replace("_", " "))
            for c in columns]


def record(*fields: str) -> View:
    """One mapping as a two-column table of ``fields`` (all its fields when none are named), each a dotted path,
    optionally ``path:Label``."""
    def show(data: Any) -> None:
        from rich.table import Table
        from rich.text import Text

        t = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
        t.add_column(style="bold")
        t.add_column()
        for path, label in _specs(fields or tuple(data)):
            t.add_row(Text(label), Text(cell(pick(data, path), limit=2000)))
        _console().print(t)
    return show


def message(template: str) -> View:
    """A sentence filled from the result's fields (``{group}/{version} is {approval_status}``)."""
    def show(data: Any) -> None:
        typer.echo(template.format_map(_Fields(data if isinstance(data, Mapping) else {})))
    return show


class _Fields(dict[str, str]):
    """Fields formatted as table cells; a missing or empty one reads "none"."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__({k: cell(v) or "none" for k, v in data.items()})

    def __missing__(self, key: str) -> str:
        return "none"


def text(data: Any) -> None:
    """The result printed as it is (rendered documents: DOT, Mermaid, HTML)."""
    typer.echo(data if isinstance(data, str) else json.dumps(data, indent=2))


PAGE_KEYS = {"items", "total", "limit", "offset"}


def emit(data: Any, view: View, json_out: bool) -> None:
    """``--json``: the result as JSON, a page of a list as the array of its items; else the human view."""
    data = plain(data)
    if json_out:
        if isinstance(data, Mapping) and set(data) == PAGE_KEYS:
            data = data["items"]
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        view(data)


@dataclass
class Outcome:
    """A result with an exit code other than 0 (some records rejected, a run that Failed) and lines for stderr."""

    data: Any
    code: Exit = Exit.OK
    notes: list[str] = field(default_factory=list)


def finish(outcome: Outcome, view: View, json_out: bool) -> None:
    emit(outcome.data, view, json_out)
    for note in outcome.notes:
        typer.echo(note, err=True)
    if outcome.code != Exit.OK:
        raise typer.Exit(int(outcome.code))


def remote(view: View) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """A command over the SDK: the decorated function takes the client first (``api``) and returns what to show;
    the command gets a ``--json`` option, and errors become one line and an exit code (GuardedGroup)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., None]:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if not params or params[0].name != "api":
            raise TypeError(f"{fn.__name__}: a remote command takes the SDK client as its first parameter, `api`")
        # The options' annotations, resolved in the command's module; `api: Client` is left out, so the SDK is
        # imported only under TYPE_CHECKING there and `mlgov --help` never loads it.
        hints = typing.get_type_hints(SimpleNamespace(__wrapped__=fn, __annotations__={
            p.name: fn.__annotations__[p.name] for p in params[1:]}), include_extras=True)
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [inspect.Parameter("ctx", keyword, annotation=typer.Context),
                 inspect.Parameter("json_out", keyword, annotation=JsonOut, default=False)]
        kept = [p.replace(kind=keyword, annotation=hints[p.name]) for p in params[1:]]

        @functools.wraps(fn)
        def command(*, ctx: typer.Context, json_out: bool = False, **kwargs: Any) -> None:
            with sdk(ctx) as api:
                try:
                    result = fn(api, **kwargs)
                except ValueError as exc:
                    if hasattr(exc, "errors"):   # pydantic's: an answer the SDK could not read, not the user's fault
                        raise
                    raise CliError(str(exc), code=Exit.USAGE) from exc   # the SDK refused its arguments, sent nothing
                outcome = result if isinstance(result, Outcome) else Outcome(plain(result))
            finish(outcome, view, json_out)

        new_params = [*kept, *added]
        command.__signature__ = sig.replace(parameters=new_params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in new_params}
        del command.__wrapped__   # typer must read the signature above, not the wrapped function's
        return command
    return wrap


Limit = Annotated[int, typer.Option(min=1, max=1000, help="rows to show")]
Offset = Annotated[int, typer.Option(min=0, help="rows to skip")]
Everything = Annotated[bool, typer.Option("--all", help="every row (all pages), not one page")]


def listing(pager: Any, limit: int, offset: int, everything: bool) -> Any:
    """One page of an SDK pager (with its total, for the table's footer), or with ``--all`` every item."""
    return list(pager) if everything else pager.page(limit, offset)


def list_and_show(app: typer.Typer, noun: str, rows: View, fields: View, lister: Callable[[Client], Any],
                  getter: Callable[[Client, str], Any]) -> None:
    """`list` (paged) and `show NAME` for a resource whose list takes no filters."""
    @app.command("list", help=f"List {noun}s.")
    @remote(rows)
    def list_(api: Client, limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
        return listing(lister(api), limit, offset, everything)

    @app.command("show", help=f"Show one {noun}.")
    @remote(fields)
    def show(api: Client, name: str) -> Any:
        return getter(api, name)


def json_arg(value: str, what: str) -> Any:
    """An option holding a JSON document: the JSON text itself, or the path of a file holding it."""
    source = value
    if not value.lstrip().startswith(("{", "[")):
        try:
            source = Path(value).expanduser().read_text()
        except OSError as exc:
            raise CliError(f"{what}: {value!r} is neither JSON nor a readable file ({exc.strerror})",
                           fix=f"pass {what} '{{...}}' or {what} path/to/file.json", code=Exit.USAGE) from None
    try:
        return json.loads(source)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}", fix="correct the JSON", code=Exit.USAGE) from None


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``k=v`` options (``--tag team=risk --tag tier=1``) as a mapping."""
    out: dict[str, str] = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise CliError(f"{what} {v!r} is not key=value", fix=f"write {what} as key=value", code=Exit.USAGE)
        out[k] = val
    return out


# --- progress ----------------------------------------------------------------------------------------------------

@contextmanager
def progress(description: str, total: float | None, *, unit: str = "records",
             **fields: Any) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr (only on a terminal; scripts' stderr stays clean). Yields
    ``advance(n, **fields)``; extra ``fields`` are shown after the bar (``accepted=…``). With ``total`` None (work
    the server does, whose progress it does not report) a pulsing bar and the time elapsed."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _console(stderr=True)
    if total is None:
        count: list[Any] = [TimeElapsedColumn()]
    elif unit == "bytes":
        count = [DownloadColumn(), TimeRemainingColumn()]
    else:
        count = [MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn()]
    extra = [TextColumn(" ".join(f"{k}={{task.fields[{k}]}}" for k in fields))] if fields else []
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), *count, *extra, console=console,
                  transient=total is None, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total, **fields)

        def advance(n: float = 1, **changed: Any) -> None:
            bar.update(task, advance=n, **changed)

        yield advance


class CountingReader:
    """A binary file that reports each read to ``advance``: an upload's progress without touching the SDK."""

    def __init__(self, raw: IO[bytes], advance: Callable[..., None]) -> None:
        self._raw, self._advance = raw, advance
        self.name = getattr(raw, "name", "upload")

    def read(self, n: int = -1) -> bytes:
        chunk = self._raw.read(n)
        self._advance(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(64 * 1024):
            yield chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()
