"""The SDK's kernel: every route has a method, errors arrive as typed problem+json, 503s are retried within bounds,
lists page transparently, uploads take paths, DataFrames and bytes."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route as StarletteRoute

from mlgov.client import (
    ApiError,
    Client,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Route,
    ServerError,
    Unauthorized,
    Unavailable,
)
from mlgov.sdk import error_class, retry_after, upload

# Pages for people, not API routes: the SDK has no business calling them.
NOT_API = {("GET", "/docs"): "Swagger UI page (HTML for a browser)",
           ("GET", "/redoc"): "ReDoc page (HTML for a browser)",
           ("POST", "/"): "SageMaker's AWS JSON protocol: boto3 and the SageMaker SDK are its clients",
           ("GET", "/"): "redirect to the console (pages for a browser)"}


# MLflow's registry REST API is served to MLflow's own client (MlflowClient, mlflow.register_model): test_mlflow.py;
# the console's pages and forms are for a browser (tests/console).
MLFLOW_API = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/console/")


def app_routes(app: Any) -> set[Route]:
    """(method, path template) of every route the app serves, straight from its route table."""
    found = set()
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute | StarletteRoute):
            found |= {Route(m, rc.path) for m in rc.methods or () if m not in ("HEAD", "OPTIONS")}
    return found


def test_every_route_has_an_sdk_method(app: Any) -> None:
    served = app_routes(app)
    declared = set(Client.routes().values())
    assert len(served) > 80 and Route("GET", "/openapi.json") in served
    missing = sorted(r for r in served - declared - set(NOT_API) if not r.path.startswith(MLFLOW_API))
    assert missing == [], "routes without an SDK method (add one with @route in the domain's client.py):\n" + \
        "\n".join(f"  {m} {p}" for m, p in missing)
    stale = sorted(declared - served)
    assert stale == [], f"SDK methods declare routes the app does not serve: {stale}"
    assert set(NOT_API) <= served, "an exclusion names a route that no longer exists"


def test_the_route_map_is_what_the_methods_call() -> None:
    routes = Client.routes()
    assert routes["get_version"] == Route("GET", "/api/v1/model-groups/{group}/versions/{version}")
    assert routes["capture"] == Route("POST", "/api/v1/endpoints/{name}/capture")
    assert routes["create_version"] == routes["register_version"]       # aliases share their method's route
    assert "approve" not in routes   # a convenience over `decide` declares nothing of its own
    import inspect
    assert "call" not in inspect.signature(Client.get_version).parameters


def _client(app: Any, key: str, **kw: Any) -> Client:
    return Client("http://testserver", key, http=TestClient(app), **kw)


def test_problem_json_becomes_typed_errors(app: Any, keys: Any) -> None:
    pub = _client(app, keys.plain["publisher"])
    with pytest.raises(NotFound) as nf:
        pub.get_model_group("nope")
    e = nf.value
    assert (e.status, e.title) == (404, "Not found") and "nope" in e.detail and e.fix and e.request_id
    assert str(e).startswith("404: ") and "fix:" in str(e)
    with pytest.raises(InvalidInput) as bad:
        pub.create_model_group("team/churn")
    assert bad.value.status == 422 and bad.value.errors[0]["field"] == "body.name" and bad.value.fix
    pub.create_model_group("g")
    with pytest.raises(Conflict):
        pub.create_model_group("g")
    with pytest.raises(Forbidden):
        pub.list_keys()
    with pytest.raises(Unauthorized) as unauth:
        _client(app, "mlgov_nope_nope").list_model_groups().page()
    assert unauth.value.status == 401
    for status, cls in [(400, InvalidInput), (413, InvalidInput), (422, InvalidInput), (401, Unauthorized),
                        (403, Forbidden), (404, NotFound), (409, Conflict), (503, Unavailable), (429, Unavailable),
                        (500, ServerError), (502, ServerError), (405, ApiError)]:
        assert error_class(status) is cls
    assert all(issubclass(c, ApiError) for c in (InvalidInput, Unauthorized, Forbidden, NotFound, Conflict,
                                                 Unavailable, ServerError))


def test_lists_page_transparently(app: Any, keys: Any) -> None:
    pub = _client(app, keys.plain["publisher"])
    for i in range(5):
        pub.create_model_group(f"g{i}", tags={"team": "a" if i % 2 else "b"})
    groups = pub.list_model_groups(page_size=2)
    assert [g.name for g in groups] == ["g0", "g1", "g2", "g3", "g4"]   # three requests behind one loop
    page = groups.page(limit=2, offset=2)
    assert [g.name for g in page.items] == ["g2", "g3"] and page.total == 5
    assert groups.total == 5 and groups.first() is not None and groups.first().name == "g0"
    assert [g.name for g in pub.list_model_groups(tags={"team": "a"})] == ["g1", "g3"]
    assert list(pub.list_model_groups(name_contains="zzz")) == [] and pub.list_model_groups().all()[-1].name == "g4"
    with pytest.raises(ValueError, match="page_size"):
        pub.list_model_groups(page_size=1001)
    # a loop deleting what it is given: with plain offsets every page skipped as many items as were deleted
    for i in range(7):
        pub.create_action("Pipeline", f"a{i}")
    seen = []
    for a in pub.list_actions(name_contains="a", page_size=2):
        seen.append(a.name)
        pub.delete_action(a.id)
    assert sorted(seen) == [f"a{i}" for i in range(7)] and pub.list_actions(name_contains="a").all() == []
    # groups created meanwhile shift the pages the other way: nothing is yielded twice
    newest_first = pub.list_model_groups(sort="-name", page_size=2)
    seen = []
    for g in newest_first:
        seen.append(g.name)
        if g.name == "g3":
            pub.create_model_group("g9")
    assert seen == ["g4", "g3", "g2", "g1", "g0"]


class Busy:
    """A real HTTP server that answers 503 (with a Retry-After) ``busy`` times, then 200."""

    def __init__(self, busy: int, header: str | None = "7") -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.headers.get("Authorization", ""))
                if len(outer.requests) <= busy:
                    body = json.dumps({"type": "about:blank", "title": "Service busy", "status": 503,
                                       "detail": "the database is busy", "fix": "retry"}).encode()
                    self.send_response(503)
                    if header is not None:
                        self.send_header("Retry-After", header)
                    self.send_header("Content-Type", "application/problem+json")
                else:
                    body = b'{"status": "ok"}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def busy() -> Iterator[type[Busy]]:
    made: list[Busy] = []

    def make(*a: Any, **kw: Any) -> Busy:
        made.append(Busy(*a, **kw))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_503_is_retried_as_retry_after_says_within_bounds(busy: Any) -> None:
    waits: list[float] = []
    srv = busy(2)
    with Client(srv.url, "k", retries=3, max_retry_wait=5, sleep=waits.append) as c:
        assert c.health() == {"status": "ok"}
    assert waits == [5, 5] and len(srv.requests) == 3        # Retry-After 7 capped at max_retry_wait
    assert srv.requests[0] == "Bearer k"

    waits.clear()
    srv = busy(10)
    with Client(srv.url, "k", retries=2, sleep=waits.append) as c, pytest.raises(Unavailable) as err:
        c.health()
    assert waits == [7, 7] and len(srv.requests) == 3        # gave up after two retries
    assert err.value.retry_after == 7 and err.value.fix == "retry" and err.value.status == 503

    waits.clear()
    srv = busy(2, header=None)
    with Client(srv.url, "k", sleep=waits.append) as c:
        c.health()
    assert waits == [1, 2]                                   # no Retry-After: 1, 2, 4 … s

    srv = busy(1)
    with Client(srv.url, "k", retries=0, sleep=waits.append) as c, pytest.raises(Unavailable):
        c.health()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    assert retry_after("3", now) == 3.0
    assert retry_after(email.utils.format_datetime(now + dt.timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after(email.utils.format_datetime(now - dt.timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after("soon", now) is None and retry_after(None) is None


def test_uploads_from_paths_frames_bytes_and_files(tmp_path: Any) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert upload(df) == ("data.csv", b"a,b\n1,x\n2,y\n", "text/csv")
    assert upload(df, header=False)[1] == b"1,x\n2,y\n"
    name, data, ctype = upload(df, name="train", format="parquet")
    assert (name, ctype) == ("train.parquet", "application/vnd.apache.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(data)), df)
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\n1\n")
    assert upload(path) == upload(str(path)) == ("t.csv", b"a\n1\n", "text/csv")
    assert upload(b"a\n1\n") == ("data.csv", b"a\n1\n", "text/csv")
    with path.open("rb") as f:
        assert upload(f) == ("t.csv", b"a\n1\n", "text/csv")
    with pytest.raises(FileNotFoundError, match="pass bytes"):
        upload("a,b\n1,2\n")
