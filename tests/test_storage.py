"""The object store: a local directory and a real S3 server (SeaweedFS) behind one interface."""

from __future__ import annotations

import pytest

from mlgov.errors import Invalid, NotFound
from mlgov.settings import Settings
from mlgov.storage import LocalStore, ObjectStore, S3Store, open_store
from tests.infra import S3_KEY, S3_SECRET

pytestmark = []


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return open_store(Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri()))
    sw = request.getfixturevalue("seaweed")
    bucket = f"b{tmp_path.name[-8:].lower().replace('_', '')}"
    sw.client().create_bucket(Bucket=bucket)
    return open_store(Settings(home=tmp_path, store_url=f"s3://{bucket}/mlgov", s3_endpoint_url=sw.endpoint,
                               s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET))


def test_roundtrip_list_delete(store):
    store.put("a/b/one.json", b'{"x": 1}', "application/json")
    store.put("a/two.bin", b"\x00\x01" * 1000)
    store.put("c/three.txt", b"three")
    assert store.get("a/b/one.json") == b'{"x": 1}'
    assert store.exists("a/two.bin") and not store.exists("a/missing")
    assert sorted(store.list("a/")) == ["a/b/one.json", "a/two.bin"]
    assert sorted(store.list()) == ["a/b/one.json", "a/two.bin", "c/three.txt"]
    store.put("a/two.bin", b"overwritten")
    assert store.get("a/two.bin") == b"overwritten"
    store.delete("a/two.bin")
    assert not store.exists("a/two.bin")
    with pytest.raises(NotFound):
        store.get("a/two.bin")
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(Invalid):
            store.put(bad, b"x")
    for absent in ("x" * 300 + "/analysis.json", "c/three.txt/inside"):   # no file can have it: not a 500
        assert not store.exists(absent)
        with pytest.raises(NotFound):
            store.get(absent)
    uri = store.uri("c/three.txt")
    assert uri.startswith("s3://") if isinstance(store, S3Store) else uri.startswith("file://")


def test_listed_names_each_key_under_a_prefix_with_when_it_was_written(store):
    """The sweep of unreferenced capture files judges each by its age; a prefix is a string prefix, not a folder
    (the local store walks only the folder it names)."""
    import datetime as dt

    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    for key in ("cap/ep/2026/01/one.jsonl", "cap/ep/2026/01/two.parquet", "cap/ep/2026/02/x.jsonl",
                "cap/epsilon/y.jsonl", "other/z"):
        store.put(key, b"x")
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    listed = dict(store.listed("cap/ep/2026/01/"))
    assert sorted(listed) == ["cap/ep/2026/01/one.jsonl", "cap/ep/2026/01/two.parquet"]
    assert all(before <= t <= after and t.tzinfo is not None for t in listed.values())
    assert sorted(store.list("cap/ep")) == ["cap/ep/2026/01/one.jsonl", "cap/ep/2026/01/two.parquet",
                                            "cap/ep/2026/02/x.jsonl", "cap/epsilon/y.jsonl"]
    assert list(store.listed("nowhere/")) == []


def test_s3_store_rejects_wrong_credentials(seaweed, tmp_path):
    seaweed.client().create_bucket(Bucket="authcheck")
    bad = open_store(Settings(home=tmp_path, store_url="s3://authcheck/p", s3_endpoint_url=seaweed.endpoint,
                              s3_access_key_id=S3_KEY, s3_secret_access_key="wrong-secret-000"))
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        bad.put("x", b"y")


def test_s3_missing_bucket_is_an_error_not_created(seaweed, tmp_path):
    s = open_store(Settings(home=tmp_path, store_url="s3://no-such-bucket/p", s3_endpoint_url=seaweed.endpoint,
                            s3_access_key_id=S3_KEY, s3_secret_access_key=S3_SECRET))
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s.put("x", b"y")


def test_local_store_is_default_under_home(tmp_path):
    s = open_store(Settings(home=tmp_path / ".mlgov"))
    assert isinstance(s, LocalStore) and s.root == (tmp_path / ".mlgov" / "store").resolve()
    with pytest.raises(Invalid):
        open_store(Settings(home=tmp_path, store_url="ftp://x/y"))


def test_system_folders_are_found_however_the_key_is_spelt() -> None:
    """A store that normalises paths (SeaweedFS) writes prefix//baselines/x into baselines/x."""
    from mlgov.storage import system_folder, unclean_segment

    for key, folder in [("baselines/x", "baselines"), ("/baselines/x", "baselines"), ("./audit/x", "audit"),
                        ("mine/../capture/e", "capture"), ("mine/x", None), ("", None), ("baselinesx/y", None)]:
        assert system_folder(key) == folder, key
    assert [unclean_segment(k) for k in ("a/b", "a//b", "a/./b", "a/../b", "")] == [None, "", ".", "..", None]
