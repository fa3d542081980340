"""`mlgov lineage …` against a live server: the graph as tables, DOT/Mermaid, entities, exit codes."""

from __future__ import annotations

import json

import pytest

from tests.clirun import Cli, live_cli, one_line_error
from tests.helpers import sha

pytestmark = pytest.mark.live


@pytest.fixture
def cli(tmp_path):
    with live_cli(tmp_path) as c:
        yield c


def test_lineage_in_a_real_shell(cli: Cli):
    assert cli.invoke("groups", "create", "g", key="publisher").code == 0
    assert cli.invoke("versions", "register", "g", "--artifact-uri", "s3://m/1", "--sha256", sha("1"),
                      "--training-data", "s3://data/train.csv", key="publisher").code == 0
    r = cli.run("lineage", "query", "s3://data/train.csv", key="viewer")   # what the dataset went into
    assert r.code == 0, r.stderr
    entities, edges = r.stdout.split("\n\n")
    assert {line.split("│")[2].strip() for line in entities.splitlines()[2:]} >= {"Dataset", "TrainingJob"}
    ends = [(line.split("│")[0].strip(), line.split("│")[2].strip()) for line in edges.splitlines()[2:]]
    assert ("Dataset: s3://data/train.csv", "TrainingJob: g/1/training") in ends   # edges name their ends
    dot = cli.run("lineage", "export", "s3://m/1", key="viewer")
    assert dot.code == 0 and dot.stdout.startswith("digraph")
    graph = json.loads(cli.invoke("lineage", "query", "s3://m/1", "--direction", "Both", "--json").stdout)
    assert {"vertices", "edges"} <= set(graph)
    assert "graph LR" in cli.invoke("lineage", "export", "s3://m/1", "--format", "mermaid").stdout


def test_lineage_entities_and_errors(cli: Cli):
    made = json.loads(cli.invoke("lineage", "artifacts", "create", "DataSet", "s3://data/a.csv", "--name", "a",
                                 "--properties", '{"rows": 10}', "--json", key="publisher").stdout)
    other = json.loads(cli.invoke("lineage", "artifacts", "create", "DataSet", "s3://data/b.csv", "--json",
                                  key="publisher").stdout)
    edge = cli.invoke("lineage", "associate", made["id"], "DerivedFrom", other["id"], key="publisher")
    assert edge.code == 0 and edge.stdout.startswith(f"{made['id']} DerivedFrom {other['id']} (association ")
    listed = json.loads(cli.invoke("lineage", "associations", "--source", made["id"], "--json").stdout)
    assert [(a["type"], a["target"]) for a in listed] == [("DerivedFrom", other["id"])]
    # ends given by URI, as `lineage query` takes them (a trial's `associate s3://… … s3://…` exited 3)
    by_uri = cli.invoke("lineage", "associate", "s3://data/b.csv", "ContributedTo", "s3://data/a.csv",
                        key="publisher")
    assert by_uri.code == 0 and by_uri.stdout.startswith(f"{other['id']} ContributedTo {made['id']}"), by_uri.stderr
    missing = cli.invoke("lineage", "associate", "s3://data/none.csv", "ContributedTo", made["id"], key="publisher")
    assert missing.code == 3
    one_line_error(missing, "no lineage artifact has URI 's3://data/none.csv'")
    assert json.loads(cli.invoke("lineage", "artifacts", "show", made["id"], "--json").stdout)["properties"] == {
        "rows": 10}
    assert [a["name"] for a in json.loads(cli.invoke("lineage", "artifacts", "list", "--name-contains", "a",
                                                     "--json").stdout)] == ["a"]
    assert cli.invoke("lineage", "actions", "list").stdout.strip() == "nothing found"

    unknown = cli.invoke("lineage", "query", "nope")
    assert unknown.code == 3
    one_line_error(unknown, "'nope'")
    assert cli.invoke("lineage", "contexts", "show", "nope").code == 3
    bad_type = cli.invoke("lineage", "associate", made["id"], "Likes", other["id"], key="publisher")
    assert bad_type.code == 4
    no_status = cli.invoke("lineage", "artifacts", "list", "--status", "Completed")
    assert no_status.code == 2
    one_line_error(no_status, "artifacts have no status")
    bad_props = cli.invoke("lineage", "artifacts", "create", "DataSet", "s3://c", "--properties", "{x")
    assert bad_props.code == 2
