"""What both halves of the service read: registered versions' model artifacts (the bytes checked against the
registered sha256, loaded through ``clarify.loaders``' exact-type allow-lists unless an admin trusted them) and
uploaded CSV datasets."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from clarify import loaders
from clarify.errors import ArtifactNotLoadable, ArtifactOutsideStore, ArtifactUntrusted, DatasetUnreadable
from mlgov import inputs
from mlgov.errors import Invalid
from mlgov.storage import ObjectStore
from registry import service as registry

CSV_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)


def load_model(session: Session, store: ObjectStore, group: str, version: int, fmt: str,
               artifact: bytes | None) -> tuple[Any, bytes]:
    """The registered version's model: uploaded bytes or its artifact in mlgov's store, checked against the
    registered sha256, loaded through the exact-type allow-lists (anything else only if an admin trusted
    this exact artifact). Refusal is 403 naming the refused types; bytes of another format are 422."""
    _, v = registry.get_version(session, group, version)
    if artifact is None:
        key = store.key_of(v.artifact_uri)
        if key is None:
            raise ArtifactOutsideStore(v.artifact_uri)
        artifact = store.get(key)
    try:
        loaders.check_digest(artifact, v.artifact_sha256)
        return loaders.load(artifact, fmt, trusted=bool(v.artifact_trusted)), artifact
    except loaders.UntrustedModel as exc:
        raise ArtifactUntrusted(exc, group=group, version=version, artifact_sha256=v.artifact_sha256) from None
    except loaders.ModelLoadError as exc:
        raise ArtifactNotLoadable(exc) from None


def read_csv(data: bytes) -> pd.DataFrame:
    inputs.check_csv(data, "the dataset")
    try:
        df = pd.read_csv(io.BytesIO(data))
    except CSV_ERRORS as exc:
        raise DatasetUnreadable(exc) from None
    if df.empty:
        raise Invalid("the dataset has no rows", fix="upload at least one row")
    return df
