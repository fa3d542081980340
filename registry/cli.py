"""`mlgov groups|versions|approve|reject|stage`: the registry's everyday verbs, over the Python SDK (the server
decides everything: four-eyes, policies and stages are enforced there, never here)."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlgov.terminal import (
    CliError,
    Everything,
    Exit,
    Limit,
    Offset,
    listing,
    message,
    pairs,
    progress,
    record,
    remote,
    table,
)

if TYPE_CHECKING:
    from registry.client import RegistryClient as Client

groups_app = typer.Typer(help="Model groups (a model's versions, stages and approval policy).", no_args_is_help=True)
versions_app = typer.Typer(help="Model versions: register, list, show, approvals and stage history.",
                           no_args_is_help=True)

Tags = Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeat for several)")]
Group = Annotated[str, typer.Argument(help="model group name")]
VersionNo = Annotated[int, typer.Argument(min=1, help="version number")]
Comment = Annotated[str, typer.Option("--comment", "-m", help="why (kept in the audit log)")]

GROUP_ROWS = table("name", "latest_version:last no.", "description", "tags", "created_by", "created_at",
                   empty="no model groups")
GROUP_FIELDS = record("name", "description", "tags", "latest_version", "approval_policy", "created_by",
                      "created_at", "updated_at")
VERSION_ROWS = table("version", "approval_status:status", "stage", "artifact_uri", "metrics", "registered_by",
                     "created_at", empty="no versions")
VERSION_FIELDS = record("group", "version", "approval_status", "approval_description", "stage", "artifact_uri",
                        "artifact_sha256", "description", "framework", "metrics", "metadata", "training_data",
                        "triggered_by_alert", "registered_by", "created_at", "updated_at")


# --- groups ------------------------------------------------------------------------------------------------------

@groups_app.command("list")
@remote(GROUP_ROWS)
def groups_list(api: Client,
                name_contains: Annotated[str | None, typer.Option(help="part of the name")] = None,
                tag: Tags = None, limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
    """List model groups."""
    return listing(api.list_model_groups(name_contains=name_contains, tags=pairs(tag, "--tag")), limit, offset,
                   everything)


@groups_app.command("show")
@remote(GROUP_FIELDS)
def groups_show(api: Client, name: Group) -> Any:
    """Show one model group."""
    return api.get_model_group(name)


@groups_app.command("create")
@remote(message("created model group {name}"))
def groups_create(api: Client, name: Group,
                  description: Annotated[str | None, typer.Option(help="what the model is for")] = None,
                  tag: Tags = None) -> Any:
    """Create a model group."""
    return api.create_model_group(name, description=description, tags=pairs(tag, "--tag") or None)


@groups_app.command("update")
@remote(GROUP_FIELDS)
def groups_update(api: Client, name: Group,
                  description: Annotated[str | None, typer.Option(help="new description")] = None,
                  tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value; replaces all tags")] = None,
                  ) -> Any:
    """Change a group's description or tags."""
    fields: dict[str, Any] = {}
    if description is not None:
        fields["description"] = description
    if tag is not None:
        fields["tags"] = pairs(tag, "--tag")
    if not fields:
        raise CliError("nothing to change", fix="pass --description and/or --tag", code=Exit.USAGE)
    return api.update_model_group(name, **fields)


@groups_app.command("stage")
@remote(message("versions of {group} in {stage} at {at}: {versions}"))
def groups_stage(api: Client, group: Group, stage: Annotated[str, typer.Argument(help="e.g. Production")],
                 at: Annotated[str | None, typer.Option(help="ISO-8601 time (default now)")] = None) -> Any:
    """Which versions are in STAGE (now, or at a past time)."""
    return api.stage_occupants(group, stage, at=at)


# --- versions ----------------------------------------------------------------------------------------------------

@versions_app.command("list")
@remote(VERSION_ROWS)
def versions_list(api: Client, group: Group,
                  status: Annotated[str | None, typer.Option(help="PendingManualApproval|Approved|Rejected")] = None,
                  stage: Annotated[str | None, typer.Option(help="only versions in this stage")] = None,
                  metadata: Annotated[list[str] | None, typer.Option("--metadata", help="key=value")] = None,
                  created_after: Annotated[str | None, typer.Option(help="ISO-8601 time")] = None,
                  created_before: Annotated[str | None, typer.Option(help="ISO-8601 time")] = None,
                  limit: Limit = 50, offset: Offset = 0, everything: Everything = False) -> Any:
    """List a group's versions, newest first."""
    return listing(api.list_versions(group, status=status, stage=stage, metadata=pairs(metadata, "--metadata"),
                                     created_after=created_after, created_before=created_before),
                   limit, offset, everything)


@versions_app.command("show")
@remote(VERSION_FIELDS)
def versions_show(api: Client, group: Group,
                  version: Annotated[str, typer.Argument(help="version number, or `latest`")],
                  status: Annotated[str | None, typer.Option(help="with `latest`: newest with this status")] = None,
                  ) -> Any:
    """Show one version (or the latest, optionally the latest Approved)."""
    if version == "latest":
        return api.latest_version(group, status=status)
    if not version.isdigit() or int(version) < 1:
        raise CliError(f"version {version!r} is not a number", fix="pass a version number or `latest`",
                       code=Exit.USAGE)
    return api.get_version(group, int(version))


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, progress(f"hashing {path.name}", path.stat().st_size, unit="bytes") as advance:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


def _metrics(values: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in pairs(values, "--metric").items():
        try:
            out[k] = float(v)
        except ValueError:
            raise CliError(f"--metric {k}={v}: {v!r} is not a number", fix="write --metric name=0.91",
                           code=Exit.USAGE) from None
    return out


@versions_app.command("register")
@remote(message("registered {group}/{version} ({approval_status})"))
def versions_register(
    api: Client, group: Group,
    artifact_uri: Annotated[str | None, typer.Option(help="where the model artifact lives (s3://, file://, …)")] = None,
    sha256: Annotated[str | None, typer.Option(help="the artifact's SHA-256")] = None,
    artifact_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                       help="a local copy of the artifact: its SHA-256 is computed "
                                                            "(and its file:// URI used if --artifact-uri is not)")]
    = None,
    description: Annotated[str | None, typer.Option()] = None,
    framework: Annotated[str | None, typer.Option(help="e.g. sklearn, xgboost")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="name=value (repeat)")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", help="key=value (repeat)")] = None,
    training_data: Annotated[list[str] | None, typer.Option("--training-data", help="dataset URI (repeat)")] = None,
    triggered_by_alert: Annotated[str | None, typer.Option(help="the alert this retraining answers")] = None,
    body: Annotated[Path | None, typer.Option("--from", exists=True, dir_okay=False,
                                              help="a JSON file with any version fields (the API's body); options "
                                                   "given here override it")] = None,
) -> Any:
    """Register a new version of GROUP (numbered by the server)."""
    fields: dict[str, Any] = {}
    if body is not None:
        try:
            loaded = json.loads(body.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"{body} is not valid JSON: {exc}", fix="correct the file", code=Exit.USAGE) from None
        if not isinstance(loaded, dict):
            raise CliError(f"{body} must hold a JSON object of version fields", code=Exit.USAGE)
        fields.update(loaded)
    if artifact_file is not None:
        fields["artifact_sha256"] = _sha256_of(artifact_file)
        fields.setdefault("artifact_uri", artifact_file.resolve().as_uri())
    given = {"artifact_uri": artifact_uri, "artifact_sha256": sha256, "description": description,
             "framework": framework, "triggered_by_alert": triggered_by_alert,
             "metrics": _metrics(metric) or None, "metadata": pairs(metadata, "--metadata") or None,
             "training_data": training_data or None}
    fields.update({k: v for k, v in given.items() if v is not None})
    uri, digest = fields.pop("artifact_uri", None), fields.pop("artifact_sha256", None)
    if not uri or not digest:
        raise CliError("a version needs its artifact's URI and SHA-256",
                       fix="pass --artifact-uri and --sha256, or --artifact-file PATH", code=Exit.USAGE)
    known = set(inspect.signature(api.register_version).parameters) - {"group"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise CliError(f"{body}: unknown version fields {', '.join(unknown)}",
                       fix=f"use only: {', '.join(sorted(known | {'artifact_uri', 'artifact_sha256'}))}",
                       code=Exit.USAGE)
    return api.register_version(group, uri, digest, **fields)


@versions_app.command("approvals")
@remote(table("at", "from_status:from", "to_status:to", "actor", "comment", empty="no decisions yet"))
def versions_approvals(api: Client, group: Group, version: VersionNo) -> Any:
    """The approval decisions of a version, oldest first."""
    return api.approvals(group, version)


@versions_app.command("history")
@remote(table("at", "version", "from_stage:from", "to_stage:to", "actor", "comment", empty="no stage moves"))
def versions_history(api: Client, group: Group,
                     version: Annotated[int | None, typer.Option(min=1, help="only this version")] = None) -> Any:
    """Stage moves of a group's versions, oldest first."""
    return api.stage_history(group, version)


# --- decisions and stages (top-level verbs) ------------------------------------------------------------------------

Expect = Annotated[str | None, typer.Option("--expect", help="refuse unless the version is still in this status "
                                                              "(e.g. PendingManualApproval)")]
DECIDED = message("{group}/{version} is {approval_status}")


@remote(DECIDED)
def approve(api: Client, group: Group, version: VersionNo, comment: Comment, expect: Expect = None,
            override_policy: Annotated[bool, typer.Option(help="admin: approve although the group's approval policy "
                                                               "is not met (recorded and flagged)")] = False) -> Any:
    """Approve a version (four-eyes: not the key owner who registered it; the group's policy must pass)."""
    return api.approve(group, version, comment, expected_status=expect, override_policy=override_policy)


@remote(DECIDED)
def reject(api: Client, group: Group, version: VersionNo, comment: Comment, expect: Expect = None) -> Any:
    """Reject a version (four-eyes applies, as for approve)."""
    return api.reject(group, version, comment, expected_status=expect)


@remote(message("{group}/{version} is in {stage}"))
def stage(api: Client, group: Group, version: VersionNo,
          to: Annotated[str, typer.Argument(metavar="STAGE", help="target stage, e.g. Staging or Production")],
          comment: Annotated[str | None, typer.Option("--comment", "-m", help="why")] = None,
          expect_stage: Annotated[str | None, typer.Option(help="refuse unless the version is in this stage")]
          = None) -> Any:
    """Move a version to another lifecycle stage (Production holds one version; the previous one moves out)."""
    return api.move_stage(group, version, to, comment=comment, expected_stage=expect_stage)
