"""One object-store interface over a local directory or S3 (boto3, SigV4)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import posixpath
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import Depends, Request

from mlgov.errors import Invalid, NotFound
from mlgov.settings import Settings


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Invalid(f"object key {key!r} is not a clean relative path", fix="use keys like 'a/b/c.json'")
    return key


# The store's top-level folders mlgov writes itself (results, evidence, captured traffic). A user's URI may read
# from them, but nothing a user names as an output may land there: a processing job told to write into
# baselines/<someone else's id> would rewrite that baseline without its audit event.
SYSTEM_FOLDERS = frozenset({"audit", "baselines", "analyses", "clarify", "capture", "groundtruth",
                            "groundtruth-replaced", "inputs"})


def unclean_segment(key: str) -> str | None:
    """The first segment of ``key`` that an object store may read other than as written ('' of '//', '.' or
    '..'), or None. SeaweedFS collapses ``a//baselines`` to ``a/baselines``; S3 keeps it literally."""
    return next((p for p in key.split("/") if p in ("", ".", "..")), None) if key else None


def system_folder(key: str) -> str | None:
    """The mlgov-written top-level folder ``key`` lies in, or None; read as a store that normalises paths would
    (``/baselines/x``, ``./audit`` and ``x/../capture`` lie in them too)."""
    top = posixpath.normpath("/" + key).lstrip("/").split("/", 1)[0]
    return top if top in SYSTEM_FOLDERS else None


_GONE_FIX = ("check the id, name or URI the request gave; a file mlgov recorded that is missing was removed from the "
             "store outside mlgov (restore it, or create again what it belongs to)")


class ObjectStore(ABC):
    """Keys are '/'-separated relative paths; writes are atomic (a reader never sees half an object)."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def put_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """Several objects (key, data, content type), each written as by `put`; a store may share the work
        (the local store syncs a folder once for all the files put into it)."""
        for key, data, content_type in items:
            self.put(key, data, content_type)

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's length in bytes, without reading it (NotFound when there is none)."""

    def get_named(self, folder: str, name: str, owner: str) -> bytes:
        """One of the files a stored result (``owner``: "ModelQuality analysis 1f2e…") keeps in ``folder``. A name it
        never had is a 404 naming the ones it has, not a store path the caller never gave."""
        try:
            return self.get(f"{folder}/{name}")
        except NotFound:
            have = sorted(key.rsplit("/", 1)[-1] for key in self.list(f"{folder}/"))
            if not have:
                raise
            raise NotFound(f"{owner} has no {name}", fix=f"ask for one of the files it has: {', '.join(have)}") \
                from None

    def list(self, prefix: str = "") -> Iterator[str]:
        return (key for key, _ in self.listed(prefix))

    @abstractmethod
    def listed(self, prefix: str = "", *, unfinished: bool = False) -> Iterator[tuple[str, dt.datetime]]:
        """The keys under ``prefix`` with the time each was last written (UTC); ``unfinished``: also the temporary
        files of writes that never finished (a process killed mid-write; the local store's, S3 has none)."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def folder_uri(self, prefix: str) -> str:
        """The URI of a folder of keys (``a/b`` → ``s3://bucket/prefix/a/b/``), for readers outside mlgov."""
        return self.uri(prefix) + "/"

    @property
    def root_uri(self) -> str:
        """The URI prefix of every object in this store."""
        return self.uri("x")[:-1]

    def key_of(self, uri: str) -> str | None:
        """The key of one of this store's own URIs (as ``uri`` writes them); None for anything else."""
        base = self.root_uri
        return uri[len(base):] if uri.startswith(base) else None


_NO_SUCH_PATH = (errno.ENAMETOOLONG, errno.ENOTDIR)
"""Errors of a key no file can have (a segment over 255 bytes; a file used as a folder): not found, not a 500."""


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.put_many([(key, data, content_type)])

    def put_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """Each file written to a temporary name, fsynced and renamed into place; then each folder fsynced once
        (its renames durable), so two files of one folder cost three fsyncs, not four."""
        folders: dict[Path, None] = {}
        for key, data, _ in items:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            folders[path.parent] = None
        for folder in folders:
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and exc.errno not in _NO_SUCH_PATH:
                raise
            raise NotFound(f"object {key!r} does not exist in the store", fix=_GONE_FIX) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and exc.errno not in _NO_SUCH_PATH:
                raise
            raise NotFound(f"object {key!r} does not exist in the store", fix=_GONE_FIX) from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:   # a segment longer than the file system allows names no object
            if exc.errno in _NO_SUCH_PATH:
                return False
            raise

    def listed(self, prefix: str = "", *, unfinished: bool = False) -> Iterator[tuple[str, dt.datetime]]:
        """Walks only the folder the prefix names (an hour's folder, not the whole store)."""
        base = posixpath.dirname(prefix)
        top = self._path(base) if base else self.root
        for dirpath, _dirs, files in os.walk(top):
            for f in sorted(files):
                if f.startswith(".tmp-") and not unfinished:
                    continue
                path = Path(dirpath) / f
                rel = path.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    try:
                        mtime = path.stat().st_mtime
                    except FileNotFoundError:   # deleted since the walk listed it
                        continue
                    yield rel, dt.datetime.fromtimestamp(mtime, dt.UTC)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client

    def _k(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
            return body
        except self.client.exceptions.NoSuchKey:
            raise NotFound(f"object {key!r} does not exist in s3://{self.bucket}/{self.prefix}",
                           fix=_GONE_FIX) from None

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return head
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise NotFound(f"object {key!r} does not exist in s3://{self.bucket}/{self.prefix}", fix=_GONE_FIX)
        return int(head["ContentLength"])

    def listed(self, prefix: str = "", *, unfinished: bool = False) -> Iterator[tuple[str, dt.datetime]]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(base):], obj["LastModified"].astimezone(dt.UTC)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._k(key)}"


def s3_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name=settings.s3_region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    )


def open_store(settings: Settings) -> ObjectStore:
    url = settings.resolved_store_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise Invalid(f"store url {url!r} names no bucket", fix="use s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path, s3_client(settings))
    if parsed.scheme == "":
        return LocalStore(Path(url))
    raise Invalid(f"unsupported store url {url!r}", fix="use file:///path or s3://bucket/prefix")


def store_of(request: Request) -> ObjectStore:
    """The app's object store, for every door (native API, MLflow's, the console)."""
    store: ObjectStore = request.app.state.get_store()
    return store


StoreDep = Annotated[ObjectStore, Depends(store_of)]
