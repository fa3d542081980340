"""The registry's SageMaker operations (model package groups, model packages, tags): shapes translated, the registry
service called. No rule lives here: four-eyes, audit, events and lineage happen in `registry.service`, so a
boto3 caller meets exactly what a native caller meets.

Members the registry does not keep are refused by name (ValidationException), never silently dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from sqlalchemy.orm import Session

from mlgov import inputs
from mlgov.auth import ADMINS, DECIDERS, PUBLISHERS, READERS, Role
from mlgov.aws import (
    AwsError,
    AwsService,
    Call,
    ThenRecord,
    descending,
    drop_empty,
    from_epoch,
    keyset_paged,
    page_after,
    page_offset,
    paged,
    require_absent,
    sort_of,
    to_aws_error,
    user_context,
    validation,
)
from mlgov.errors import Conflict, DomainError
from mlgov.storage import ObjectStore
from registry import service
from registry.orm import ModelCardRecord, ModelGroup, ModelVersion
from registry.schemas import (
    ApprovalRequest,
    GroupCreate,
    GroupUpdate,
    InferenceSpec,
    MetricsSource,
    ModelCard,
    ModelMetrics,
    SearchClause,
    SearchGroup,
    SearchTerm,
    SourceInfo,
    VersionCreate,
)

GROUP, PACKAGE = "model-package-group", "model-package"
SHA256_METADATA = "mlgov:artifact-sha256"   # the artifact's hash, for artifacts outside mlgov's object store
EDITORS = ADMINS | {Role.publisher}


# --- names and ARNs -----------------------------------------------------------------------------------------

def group_arn(call: Call, name: str) -> str:
    return call.arn(f"{GROUP}/{name}")


def package_arn(call: Call, group: str, version: int) -> str:
    return call.arn(f"{PACKAGE}/{group}/{version}")


def group_name(call: Call, value: str) -> str:
    rest = call.resource(value, GROUP)
    return rest if rest is not None else value


def package_ref(call: Call, value: str) -> tuple[str, int]:
    """(group, version) from a model package ARN or ``group/version``."""
    rest = call.resource(value, PACKAGE)
    group, sep, number = (rest if rest is not None else value).rpartition("/")
    if not sep or not group or not (number.isascii() and number.isdigit()):   # "²" is a digit to isdigit()
        raise validation(f"{value!r} names no versioned model package: mlgov keeps model packages as versions of a "
                         "group; pass its ARN (…:model-package/<group>/<version>) or <group>/<version>")
    return group, int(number)



def _tags_in(tags: list[dict[str, str]] | None) -> dict[str, str]:
    reserved = next((t["Key"] for t in tags or [] if t["Key"].lower().startswith("aws:")), None)
    if reserved is not None:   # AWS keeps the prefix for its own tags, and so refuses it in AddTags
        raise validation(f"tag key {reserved!r} uses the reserved prefix aws:; choose a key without it")
    return {t["Key"]: t.get("Value", "") for t in tags or []}


def _tags_out(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]



# --- shapes -------------------------------------------------------------------------------------------------

_METRIC_GROUPS = {"ModelQuality": "model_quality", "ModelDataQuality": "model_data_quality", "Bias": "bias",
                  "Explainability": "explainability"}
_METRIC_FILES = {"Statistics": "statistics", "Constraints": "constraints", "Report": "report",
                 "PreTrainingReport": "pre_training_report", "PostTrainingReport": "post_training_report"}
_DIGEST = re.compile(r"^sha256:", re.IGNORECASE)


def _metrics_in(sm: dict[str, Any] | None) -> ModelMetrics | None:
    if not sm:
        return None
    out: dict[str, dict[str, MetricsSource]] = {}
    for sm_group, ours in _METRIC_GROUPS.items():
        for sm_file, file in _METRIC_FILES.items():
            src = (sm.get(sm_group) or {}).get(sm_file)
            if src:
                digest = _DIGEST.sub("", src.get("ContentDigest") or "") or None
                out.setdefault(ours, {})[file] = MetricsSource(content_type=src["ContentType"], uri=src["S3Uri"],
                                                               content_digest=digest)
    return ModelMetrics.model_validate(out)


def _metrics_out(ours: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ours:
        return None
    out: dict[str, Any] = {}
    for sm_group, group in _METRIC_GROUPS.items():
        for sm_file, file in _METRIC_FILES.items():
            src = (ours.get(group) or {}).get(file)
            if src:
                out.setdefault(sm_group, {})[sm_file] = drop_empty({
                    "ContentType": src["content_type"], "S3Uri": src["uri"],
                    "ContentDigest": f"sha256:{src['content_digest']}" if src.get("content_digest") else None})
    return out or None


_CONTAINER_KEPT = {"Image", "ImageDigest", "ModelDataUrl", "Environment", "Framework", "FrameworkVersion"}
_SPEC_LISTS = {"SupportedContentTypes": "supported_content_types",
               "SupportedResponseMIMETypes": "supported_response_mime_types",
               "SupportedRealtimeInferenceInstanceTypes": "supported_realtime_inference_instance_types",
               "SupportedTransformInstanceTypes": "supported_transform_instance_types"}


def _container_in(spec: dict[str, Any] | None) -> dict[str, Any]:
    containers = (spec or {}).get("Containers") or []
    if len(containers) != 1:
        raise validation(f"mlgov keeps one container per model package; InferenceSpecification.Containers has "
                         f"{len(containers)}: pass exactly one, with ModelDataUrl")
    container: dict[str, Any] = containers[0]
    require_absent(container, sorted(set(container) - _CONTAINER_KEPT), "of a container mlgov keeps Image, "
                   "ImageDigest, ModelDataUrl, Environment, Framework and FrameworkVersion")
    if not container.get("ModelDataUrl"):
        raise validation("InferenceSpecification.Containers.1.ModelDataUrl is required: mlgov registers a model by "
                         "its artifact (URI and content hash)")
    return container


def _inference_in(spec: dict[str, Any], container: dict[str, Any]) -> InferenceSpec:
    return InferenceSpec.model_validate({"image": container.get("Image"), "image_digest": container.get("ImageDigest"),
                                         "environment": container.get("Environment") or {},
                                         **{ours: spec.get(sm) or [] for sm, ours in _SPEC_LISTS.items()}})


def _inference_out(v: ModelVersion) -> dict[str, Any]:
    spec = v.inference_spec or {}
    container = drop_empty({"Image": spec.get("image"), "ImageDigest": spec.get("image_digest"),
                            "ModelDataUrl": v.artifact_uri, "Environment": spec.get("environment") or None,
                            "Framework": v.framework, "FrameworkVersion": v.framework_version})
    return {"Containers": [container], **drop_empty({sm: spec.get(ours) for sm, ours in _SPEC_LISTS.items()})}


def _card_in(card: dict[str, Any] | None) -> ModelCard | None:
    if not card:
        return None
    content: Any = {}
    if card.get("ModelCardContent"):
        try:
            content = json.loads(card["ModelCardContent"])
        except ValueError:
            raise validation("ModelCard.ModelCardContent must be a JSON document (SageMaker's model card "
                             "schema)") from None
        if not isinstance(content, dict):
            raise validation("ModelCard.ModelCardContent must be a JSON object")
    return ModelCard.model_validate({"status": card.get("ModelCardStatus") or "Draft", "content": content})


def _card_out(card: dict[str, Any] | None) -> dict[str, Any] | None:
    if not card:
        return None
    return {"ModelCardContent": json.dumps(card.get("content") or {}), "ModelCardStatus": card.get("status", "Draft")}


_SOURCE = {"CommitId": "commit_id", "Repository": "repository", "GeneratedBy": "generated_by",
           "ProjectId": "project_id"}


def _source_in(sm: dict[str, str] | None) -> SourceInfo | None:
    return SourceInfo.model_validate({ours: sm.get(key) for key, ours in _SOURCE.items()}) if sm else None


def _group_out(call: Call, g: ModelGroup) -> dict[str, Any]:
    return drop_empty({"ModelPackageGroupName": g.name, "ModelPackageGroupArn": group_arn(call, g.name),
                       "ModelPackageGroupDescription": g.description, "CreationTime": g.created_at,
                       "ModelPackageGroupStatus": "Completed"})


def _summary(call: Call, group: str, v: ModelVersion) -> dict[str, Any]:
    return drop_empty({"ModelPackageName": group, "ModelPackageGroupName": group, "ModelPackageVersion": v.version,
                       "ModelPackageArn": package_arn(call, group, v.version),
                       "ModelPackageDescription": v.description, "CreationTime": v.created_at,
                       "ModelPackageStatus": "Completed", "ModelApprovalStatus": v.approval_status})


def _describe(call: Call, group: str, v: ModelVersion) -> dict[str, Any]:
    decided_by = service.approval_history(call.session, v)
    return {
        **_summary(call, group, v),
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "CertifyForMarketplace": False,
        "ModelPackageRegistrationType": "Registered",
        "InferenceSpecification": _inference_out(v),
        "CreatedBy": user_context(v.registered_by),
        **drop_empty({
            "MetadataProperties": drop_empty({sm: (v.source or {}).get(ours) for sm, ours in _SOURCE.items()}),
            "ModelMetrics": _metrics_out(v.model_metrics),
            "LastModifiedTime": v.updated_at,
            "LastModifiedBy": user_context(decided_by[-1].actor) if decided_by else None,
            "ApprovalDescription": v.approval_description,
            "Domain": v.domain, "Task": v.task,
            "CustomerMetadataProperties": {m.key: m.value for m in v.metadata_items},
            "ModelCard": _card_out(v.model_card),
        }),
    }


# --- the artifact's content hash ------------------------------------------------------------------------------

def artifact_sha256(call: Call, uri: str, metadata: dict[str, str]) -> str:
    """mlgov keys every model by its content hash: read the artifact from the object store, or take the hash the
    caller states in CustomerMetadataProperties (for artifacts kept elsewhere)."""
    store: ObjectStore = call.extras["store"]()
    stated = metadata.get(SHA256_METADATA)
    if store.key_of(uri) is not None:   # the same hash the native and MLflow doors record (files or a folder)
        return cast(str, service.checked_hash(store, uri, stated or None, readable=True))
    if stated and not re.fullmatch(r"[0-9a-fA-F]{64}", stated):
        raise validation(f"CustomerMetadataProperties[{SHA256_METADATA!r}] must be the artifact's SHA-256 as 64 "
                         f"hexadecimal characters, not {stated[:80]!r}")
    if not stated:
        raise validation(f"mlgov registers each model by its content hash, and ModelDataUrl {uri} is outside its "
                         f"object store ({store.root_uri}…): put the artifact there, or state its SHA-256 as "
                         f"CustomerMetadataProperties[{SHA256_METADATA!r}]")
    return stated


# --- operations ---------------------------------------------------------------------------------------------------

def register(api: AwsService) -> None:
    @api.operation("CreateModelPackageGroup", roles=PUBLISHERS, write=True)
    def create_group(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["ManagedConfiguration"], "mlgov manages its own storage")
        body = GroupCreate(name=p["ModelPackageGroupName"], description=p.get("ModelPackageGroupDescription"),
                           tags=_tags_in(p.get("Tags")))
        try:
            g = service.create_group(call.session, body, call.principal)
        except Conflict:
            # SageMaker's answer, which the SageMaker SDK recognises as "exists already"
            raise validation(f"Model Package Group already exists: {group_arn(call, body.name)}") from None
        return {"ModelPackageGroupArn": group_arn(call, g.name)}

    @api.operation("DescribeModelPackageGroup", roles=READERS, write=False)
    def describe_group(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        g = service.get_group(call.session, group_name(call, p["ModelPackageGroupName"]))
        return {**_group_out(call, g), "CreatedBy": user_context(g.created_by)}

    @api.operation("ListModelPackageGroups", roles=READERS, write=False)
    def list_groups(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("CrossAccountFilterOption") == "CrossAccount":
            raise validation("mlgov serves one account: CrossAccountFilterOption must be SameAccount")
        limit = p.get("MaxResults") or 10
        sort = sort_of(p, {"Name": "name", "CreationTime": "created_at"}, "CreationTime")
        rows, remaining = service.list_groups(call.session, name_contains=p.get("NameContains"), tags={}, sort=sort,
                                              limit=limit, offset=0, after=page_after(p),
                                              created_after=from_epoch(p.get("CreationTimeAfter")),
                                              created_before=from_epoch(p.get("CreationTimeBefore")))
        return drop_empty({"NextToken": keyset_paged(rows, remaining, service.group_order(sort), p)}) | {
            "ModelPackageGroupSummaryList": [_group_out(call, g) for g in rows]}

    @api.operation("DeleteModelPackageGroup", roles=EDITORS, write=True)
    def delete_group(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        service.delete_group(call.session, group_name(call, p["ModelPackageGroupName"]), call.principal)
        return {}

    @api.operation("CreateModelPackage", roles=PUBLISHERS, write=True, idempotency_member="ClientToken",
                   computes=True)
    def create_package(call: Call, p: dict[str, Any]) -> ThenRecord:
        """The artifact is read and hashed on the read session (a model of gigabytes takes seconds), and the
        version registered in a write turn of its own."""
        if not p.get("ModelPackageGroupName"):
            raise validation("mlgov keeps versioned model packages only: pass ModelPackageGroupName (and no "
                             "ModelPackageName)")
        require_absent(p, ["ModelPackageName", "ValidationSpecification", "SourceAlgorithmSpecification", "Tags",
                           "SamplePayloadUrl", "DriftCheckBaselines", "AdditionalInferenceSpecifications",
                           "SourceUri", "SecurityConfig", "ModelLifeCycle", "ManagedStorageType"],
                       "the registry has no place for it")
        if p.get("CertifyForMarketplace"):
            raise validation("mlgov has no marketplace: CertifyForMarketplace must be false")
        if p.get("ModelPackageRegistrationType") == "Logged":
            raise validation("mlgov registers every model package: ModelPackageRegistrationType must be Registered")
        spec = p.get("InferenceSpecification") or {}
        container = _container_in(spec)
        metadata = dict(p.get("CustomerMetadataProperties") or {})
        group = group_name(call, p["ModelPackageGroupName"])
        sha256 = artifact_sha256(call, container["ModelDataUrl"], metadata)
        if SHA256_METADATA in metadata:   # kept as the version's hash is stored (checked above, lower case)
            metadata[SHA256_METADATA] = sha256.lower()
        body = VersionCreate(
            artifact_uri=container["ModelDataUrl"],
            artifact_sha256=sha256,
            description=p.get("ModelPackageDescription"), framework=container.get("Framework"),
            framework_version=container.get("FrameworkVersion"), inference_spec=_inference_in(spec, container),
            model_metrics=_metrics_in(p.get("ModelMetrics")), metadata=metadata, domain=p.get("Domain"),
            task=p.get("Task"), model_card=_card_in(p.get("ModelCard")),
            source=_source_in(p.get("MetadataProperties")))
        status = p.get("ModelApprovalStatus")

        def register(writer: Session) -> dict[str, Any]:
            v = service.register_version(writer, group, body, call.principal, hash_in_metadata=True)
            if status in ("Approved", "Rejected"):
                # A decision at registration is the registrant deciding: the registry's four-eyes rule refuses it.
                service.decide(writer, group, v.version, ApprovalRequest(status=status, comment=(
                    "ModelApprovalStatus given at registration")), call.principal)
            return {"ModelPackageArn": package_arn(call, group, v.version)}

        return ThenRecord(register)

    @api.operation("DescribeModelPackage", roles=READERS, write=False)
    def describe_package(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        group, number = package_ref(call, p["ModelPackageName"])
        g, v = service.get_version(call.session, group, number)
        return _describe(call, g.name, v)

    @api.operation("BatchDescribeModelPackage", roles=READERS, write=False)
    def batch_describe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for arn in p["ModelPackageArnList"]:
            try:
                group, number = package_ref(call, arn)
                g, v = service.get_version(call.session, group, number)
            except (DomainError, AwsError) as exc:   # the protocol's one mapping (another account's ARN too)
                err = to_aws_error(exc)
                errors[arn] = {"ErrorCode": err.code, "ErrorResponse": err.message}
                continue
            summary = _summary(call, g.name, v)
            summary.pop("ModelPackageName")
            found[arn] = {**summary, "InferenceSpecification": _inference_out(v),
                          "ModelPackageRegistrationType": "Registered"}
        return drop_empty({"ModelPackageSummaries": found, "BatchDescribeModelPackageErrorMap": errors})

    @api.operation("ListModelPackages", roles=READERS, write=False)
    def list_packages(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["NameContains"], "list a group's versions by ModelPackageGroupName instead")
        kind = p.get("ModelPackageType")
        if not p.get("ModelPackageGroupName"):
            if kind in (None, "Unversioned"):
                return {"ModelPackageSummaryList": []}   # mlgov has no unversioned model packages
            raise validation("pass ModelPackageGroupName: mlgov lists model packages one group at a time")
        limit = p.get("MaxResults") or 10
        sort = sort_of(p, {"Name": "version", "CreationTime": "created_at"}, "CreationTime")
        g, rows, remaining = service.list_versions(
            call.session, group_name(call, p["ModelPackageGroupName"]), status=p.get("ModelApprovalStatus"),
            stage=None, created_after=from_epoch(p.get("CreationTimeAfter")),
            created_before=from_epoch(p.get("CreationTimeBefore")), metadata={}, sort=sort, limit=limit, offset=0,
            after=page_after(p))
        if kind == "Unversioned":
            rows, remaining = [], 0
        return drop_empty({"NextToken": keyset_paged(rows, remaining, service.version_order(sort), p)}) | {
            "ModelPackageSummaryList": [_summary(call, g.name, v) for v in rows]}

    @api.operation("UpdateModelPackage", roles=DECIDERS, write=True, idempotency_member="ClientToken")
    def update_package(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["ModelPackageRegistrationType", "CustomerMetadataProperties",
                           "CustomerMetadataPropertiesToRemove", "AdditionalInferenceSpecificationsToAdd",
                           "InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle"],
                       "through UpdateModelPackage mlgov changes the approval status only")
        group, number = package_ref(call, p["ModelPackageArn"])
        status = p.get("ModelApprovalStatus")
        if status is None:
            raise validation("pass ModelApprovalStatus (Approved or Rejected) with ApprovalDescription")
        if status == "PendingManualApproval":
            raise validation("a decided model package cannot go back to PendingManualApproval: decide Approved or "
                             "Rejected")
        comment = (p.get("ApprovalDescription") or "").strip()
        if not comment:
            raise validation("mlgov requires ApprovalDescription with every decision: the reason, kept in the audit "
                             "trail")
        if service.get_version(call.session, group, number)[1].approval_status != status:
            service.decide(call.session, group, number, ApprovalRequest(status=status, comment=comment),
                           call.principal)
        # else already decided so, and SageMaker accepts the same status again (a pipeline's approval step re-run)
        return {"ModelPackageArn": package_arn(call, group, number)}

    @api.operation("DeleteModelPackage", roles=PUBLISHERS, write=True)
    def delete_package(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        group, number = package_ref(call, p["ModelPackageName"])
        service.delete_version(call.session, group, number, call.principal)
        return {}

    # --- tags (model package groups hold them) ---

    def set_tags(call: Call, arn: str, change: Any) -> dict[str, str]:
        name = _tag_target(call, arn)
        g = service.get_group(call.session, name, for_update=True)
        tags = change(dict(g.tags or {}))
        if len(tags) > 50:
            raise AwsError("ResourceLimitExceeded", f"a model package group holds at most 50 tags; {name} would "
                                                    f"hold {len(tags)}")
        service.update_group(call.session, name, GroupUpdate(tags=tags), call.principal)
        return dict(tags)

    @api.operation("AddTags", roles=EDITORS, write=True)
    def add_tags(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        new = _tags_in(p["Tags"])
        set_tags(call, p["ResourceArn"], lambda tags: {**tags, **new})
        return {"Tags": _tags_out(new)}

    @api.operation("DeleteTags", roles=EDITORS, write=True)
    def delete_tags(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        gone = set(p["TagKeys"])
        set_tags(call, p["ResourceArn"], lambda tags: {k: v for k, v in tags.items() if k not in gone})
        return {}

    api.tags_of(GROUP, lambda call, name: dict(service.get_group(call.session, name).tags or {}))

    @api.operation("ListTags", roles=READERS, write=False)
    def list_tags(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        arn = p["ResourceArn"]
        kind = next((k for k in api.tag_readers if f":{k}/" in arn), None)
        name = call.resource(arn, kind) if kind else None
        if kind is None or name is None:
            raise validation(f"{arn!r} is not the ARN of a resource mlgov keeps tags for (model package groups; "
                             f"{', '.join(sorted(k for k in api.tag_readers if k != GROUP))} answer no tags)")
        items = _tags_out(api.tag_readers[kind](call, name))
        offset, limit = page_offset(p), p.get("MaxResults") or 50
        page = items[offset:offset + limit]
        return drop_empty({"NextToken": paged(page, len(items), offset, p)}) | {"Tags": page}

    register_search(api)
    register_cards(api)


def _tag_target(call: Call, arn: str) -> str:
    name = call.resource(arn, GROUP) if f":{GROUP}/" in arn else None
    if name is None:
        raise validation(f"mlgov keeps tags on model package groups only; {arn!r} is not a model package group ARN")
    return name




# --- Search (ModelPackage, ModelPackageGroup) -------------------------------------------------------------------
# SageMaker's property names → the registry's search fields. ``None`` keys are prefixes handled by ``_property``.

_PACKAGE_PROPERTIES = {
    "ModelPackageGroupName": "name", "ModelPackageName": "name", "ModelPackageVersion": "version",
    "ModelApprovalStatus": "approval_status", "ModelPackageDescription": "description",
    "ApprovalDescription": "approval_description", "CreationTime": "created_at", "LastModifiedTime": "updated_at",
    "Domain": "domain", "Task": "task", "CreatedBy.IamIdentity.PrincipalId": "registered_by",
    "InferenceSpecification.Containers.ModelDataUrl": "source",
    "InferenceSpecification.Containers.Image": "image",
    "InferenceSpecification.Containers.ImageDigest": "image_digest",
    "InferenceSpecification.Containers.Framework": "framework",
    "InferenceSpecification.Containers.FrameworkVersion": "framework_version",
}
_GROUP_PROPERTIES = {
    "ModelPackageGroupName": "name", "ModelPackageGroupDescription": "description", "CreationTime": "created_at",
    "CreatedBy.IamIdentity.PrincipalId": "created_by",
}
_NESTED = {"ModelPackage": ("InferenceSpecification.Containers",), "ModelPackageGroup": ()}
_OPERATORS = {"Equals": "=", "NotEquals": "!=", "GreaterThan": ">", "GreaterThanOrEqualTo": ">=", "LessThan": "<",
              "LessThanOrEqualTo": "<=", "Contains": "CONTAINS", "Exists": "EXISTS", "NotExists": "NOT EXISTS",
              "In": "IN"}


def _searchable(resource: str) -> str:
    props = _PACKAGE_PROPERTIES if resource == "ModelPackage" else _GROUP_PROPERTIES
    prefixes = ["CustomerMetadataProperties.<key>"] if resource == "ModelPackage" else ["Tags.<key>"]
    arn = "ModelPackageArn" if resource == "ModelPackage" else "ModelPackageGroupArn"
    return ", ".join([*props, arn, *prefixes])


def _filter(call: Call, resource: str, f: dict[str, Any]) -> SearchTerm:
    """One SageMaker Filter as a registry search term."""
    name, op = f["Name"], f.get("Operator") or "Equals"
    ours = _OPERATORS[op]
    value = f.get("Value")
    if value is None and ours not in ("EXISTS", "NOT EXISTS"):
        raise validation(f"Filter {name!r} with Operator {op} needs a Value")
    values: str | list[str] = [v.strip() for v in value.split(",")] if ours == "IN" and value else (value or "")
    tag_prefix = "CustomerMetadataProperties." if resource == "ModelPackage" else "Tags."
    if name.startswith(tag_prefix) and len(name) > len(tag_prefix):
        return SearchClause(field="tag", key=name[len(tag_prefix):], op=ours, value=values)
    if resource == "ModelPackage" and name.startswith("Tags."):
        raise validation(f"mlgov keeps tags on model package groups, not on model packages: search Resource "
                         f"ModelPackageGroup by {name}, or the packages by CustomerMetadataProperties.<key>")
    arn_property = {"ModelPackage": "ModelPackageArn", "ModelPackageGroup": "ModelPackageGroupArn"}[resource]
    if name == arn_property:
        return _arn_filter(call, resource, name, ours, values)
    props = _PACKAGE_PROPERTIES if resource == "ModelPackage" else _GROUP_PROPERTIES
    if name not in props:
        raise validation(f"mlgov cannot search {resource} by {name!r}; searchable properties: "
                         f"{_searchable(resource)}")
    return SearchClause(field=props[name], op=ours, value=values, label=name)


def _arn_filter(call: Call, resource: str, name: str, op: str, values: str | list[str]) -> SearchTerm:
    """An ARN names a group (and a version): Equals and In compare the parts, NotEquals negates Equals."""
    if op not in ("=", "IN", "!="):
        raise validation(f"{name} can be searched with Equals, NotEquals or In only")
    terms: list[SearchTerm] = []
    for arn in values if isinstance(values, list) else [values]:
        if resource == "ModelPackageGroup":
            terms.append(SearchClause(field="name", op="=", value=group_name(call, arn)))
        else:
            group, number = package_ref(call, arn)
            terms.append(SearchGroup(join="AND", items=[SearchClause(field="name", op="=", value=group),
                                                        SearchClause(field="version", op="=", value=str(number))]))
    if op != "!=":
        return SearchGroup(join="OR", items=terms)
    only = terms[0]
    if isinstance(only, SearchClause):
        return SearchClause(field="name", op="!=", value=only.value)
    group_clause, version_clause = (t for t in only.items if isinstance(t, SearchClause))
    return SearchGroup(join="OR", items=[SearchClause(field="name", op="!=", value=group_clause.value),
                                         SearchClause(field="version", op="!=", value=version_clause.value)])


def search_expression(call: Call, resource: str, expr: dict[str, Any]) -> SearchGroup:
    """SageMaker's SearchExpression (Filters, NestedFilters and SubExpressions joined by Operator) as the
    registry's search tree. Size and depth limits are the registry service's."""
    items: list[SearchTerm] = [_filter(call, resource, f) for f in expr.get("Filters") or []]
    for nested in expr.get("NestedFilters") or []:
        prop = nested["NestedPropertyName"]
        if prop not in _NESTED[resource]:
            raise validation(f"mlgov cannot search {resource} by nested property {prop!r}; nested properties: "
                             f"{', '.join(_NESTED[resource]) or 'none'}")
        outside = [f["Name"] for f in nested["Filters"] if not f["Name"].startswith(prop + ".")]
        if outside:
            raise validation(f"NestedFilters on {prop} may only filter its members ({prop}.<member>); "
                             f"{', '.join(outside)} is not one")
        # mlgov keeps one container per package, so "the same element matches every filter" is "all match"
        items.append(SearchGroup(join="AND", items=[_filter(call, resource, f) for f in nested["Filters"]]))
    items += [search_expression(call, resource, sub) for sub in expr.get("SubExpressions") or []]
    return SearchGroup(join="OR" if expr.get("Operator") == "Or" else "AND", items=items)


def _search_order(resource: str, p: dict[str, Any]) -> list[tuple[str, bool]]:
    props = _PACKAGE_PROPERTIES if resource == "ModelPackage" else _GROUP_PROPERTIES
    by = p.get("SortBy") or "CreationTime"
    if by not in props or by.startswith("InferenceSpecification."):
        raise validation(f"mlgov cannot sort {resource} by {by!r}; sort by one of: "
                         f"{', '.join(k for k in props if not k.startswith('InferenceSpecification.'))}")
    return [(props[by], p.get("SortOrder") == "Ascending")]


def register_search(api: AwsService) -> None:
    @api.operation("Search", roles=READERS, write=False)
    def search(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        resource = p["Resource"]
        if p.get("CrossAccountFilterOption") == "CrossAccount":   # every resource (model cards took it)
            raise validation("mlgov serves one account: CrossAccountFilterOption must be SameAccount")
        if resource == "ModelCard":
            return _search_cards(call, p)
        if resource == "TrainingJob":
            return _search_training_jobs(p)
        if resource not in _NESTED:
            raise validation(f"mlgov serves Search for Resource ModelPackage, ModelPackageGroup, ModelCard and "
                             f"TrainingJob, not {resource}")
        require_absent(p, ["VisibilityConditions"], "mlgov has no visibility conditions")
        where = [search_expression(call, resource, p["SearchExpression"])] if p.get("SearchExpression") else []
        order = _search_order(resource, p)
        offset, limit = page_offset(p), p.get("MaxResults") or 10
        if resource == "ModelPackage":
            rows = service.search_versions(call.session, where, order, limit, offset)
            total = service.count_versions(call.session, where)
            results = [{"ModelPackage": _describe(call, g.name, v)} for g, v in rows]
        else:
            groups = service.search_groups(call.session, where, order, limit, offset)
            total = service.count_groups(call.session, where)
            results = [{"ModelPackageGroup": {**_group_out(call, g), "CreatedBy": user_context(g.created_by),
                                              **drop_empty({"Tags": _tags_out(dict(g.tags or {}))})}}
                       for g in groups]
        return _search_page(results, total, offset, p)


def _search_page(results: list[dict[str, Any]], total: int, offset: int, p: dict[str, Any]) -> dict[str, Any]:
    """A Search answer: the page, its exact TotalHits and the NextToken of the next page, if any."""
    return drop_empty({"NextToken": paged(results, total, offset, p)}) | {
        "Results": results, "TotalHits": {"Value": total, "Relation": "EqualTo"}}


_CARD_FILTERS = {"ModelId": ("Equals",), "ModelPackageGroupName": ("Equals",), "ModelCardName": ("Equals", "Contains"),
                 "ModelCardStatus": ("Equals",)}


def _search_cards(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    """Search on ModelCard as the SageMaker SDK uses it (``ModelPackage.from_model_package_arn`` asks which card
    documents a package, ``ModelId Equals <package ARN>``, and which is the group's latest, ``ModelPackageGroupName``
    by LastModifiedTime): Filters on those, ModelCardName and ModelCardStatus, all of which must hold."""
    require_absent(p, ["VisibilityConditions"], "mlgov has no visibility conditions")
    expr = p.get("SearchExpression") or {}
    if expr.get("NestedFilters") or expr.get("SubExpressions") or expr.get("Operator") == "Or":
        raise validation("Search on ModelCard takes Filters that must all hold (no NestedFilters, SubExpressions "
                         "or Operator Or)")
    terms: dict[str, str] = {}
    for f in expr.get("Filters") or []:
        name, op = f["Name"], f.get("Operator") or "Equals"
        if op not in _CARD_FILTERS.get(name, ()):
            known = ", ".join(f"{k} ({'/'.join(v)})" for k, v in _CARD_FILTERS.items())
            raise validation(f"mlgov searches ModelCard by {known}; not by {name} with {op}")
        if f.get("Value") is None:
            raise validation(f"Filter {name!r} with Operator {op} needs a Value")
        if f"{name}:{op}" in terms:
            raise validation(f"Search on ModelCard takes each filter once; {name} {op} is given twice")
        terms[f"{name}:{op}"] = f["Value"]
    by = {None: "created_at", "CreationTime": "created_at", "LastModifiedTime": "updated_at",
          "Name": "name"}.get(p.get("SortBy"))
    if by is None:
        raise validation(f"mlgov sorts ModelCard by CreationTime, LastModifiedTime or Name, not {p.get('SortBy')!r}")
    model = terms.get("ModelId:Equals")
    offset, limit = page_offset(p), p.get("MaxResults") or 10
    cards, total = service.list_cards(
        call.session, name=terms.get("ModelCardName:Equals"), name_contains=terms.get("ModelCardName:Contains"),
        status=terms.get("ModelCardStatus:Equals"), created_after=None, created_before=None,
        sort=by if p.get("SortOrder") == "Ascending" else f"-{by}", limit=limit, offset=offset,
        documents=package_ref(call, model) if model else None, group=terms.get("ModelPackageGroupName:Equals"))
    results = [{"ModelCard": {**_named_card_out(call, c, c.status, c.content, c.latest_version, c.updated_by,
                                                c.updated_at), **({"ModelId": model} if model else {})}}
               for c in cards]
    return _search_page(results, total, offset, p)


def _search_training_jobs(p: dict[str, Any]) -> dict[str, Any]:
    """mlgov runs no training jobs and keeps none as SageMaker resources (a version records its training job by
    name, in lineage), so a search finds none; the model card SDK's auto-discovery then leaves training details
    for the author. The filter is still checked, so a misspelt search is not answered as a miss."""
    for f in (p.get("SearchExpression") or {}).get("Filters") or []:
        if f["Name"] not in ("ModelArtifacts.S3ModelArtifacts", "TrainingJobName", "TrainingJobArn"):
            raise validation(f"mlgov keeps no training jobs; Search on TrainingJob takes Filters on "
                             f"ModelArtifacts.S3ModelArtifacts, TrainingJobName or TrainingJobArn, not {f['Name']}")
    return _search_page([], 0, 0, p)


# --- model cards ------------------------------------------------------------------------------------------------
# SageMaker's named, versioned cards are the registry's named cards. A card whose Content names a model package
# (``model_package_details.model_package_arn``, SageMaker's own field) documents that version: the registry keeps
# the version's card (DescribeModelPackage's ModelCard, the native API's model_card) in step with it.

CARD = "model-card"
CARD_WRITERS = PUBLISHERS | DECIDERS


def card_name(call: Call, value: str) -> str:
    rest = call.resource(value, CARD)
    return rest if rest is not None else value


def _card_content(call: Call, text: str) -> tuple[dict[str, Any], tuple[str, int] | None]:
    """The Content string as a JSON object (mlgov's JSON policy: depth, NUL, numbers), and the model package it
    documents, if it names one."""
    try:
        content = inputs.loads(text.encode(), "Content")
    except DomainError as exc:
        raise validation(f"Content must be a JSON document (SageMaker's model card schema): {exc.detail}") from None
    if not isinstance(content, dict):
        raise validation("Content must be a JSON object (SageMaker's model card schema)")
    arn = (content.get("model_package_details") or {}).get("model_package_arn") \
        if isinstance(content.get("model_package_details"), dict) else None
    if arn is not None and not isinstance(arn, str):
        raise validation("Content.model_package_details.model_package_arn must be a model package ARN")
    return content, package_ref(call, arn) if arn else None


def _named_card_out(call: Call, card: ModelCardRecord, status: str, content: dict[str, Any], version: int,
              modified_by: str, modified_at: Any) -> dict[str, Any]:
    return {"ModelCardArn": call.arn(f"{CARD}/{card.name}"), "ModelCardName": card.name,
            "ModelCardVersion": version, "Content": json.dumps(content), "ModelCardStatus": status,
            "CreationTime": card.created_at, "CreatedBy": user_context(card.created_by),
            "LastModifiedTime": modified_at, "LastModifiedBy": user_context(modified_by)}


def register_cards(api: AwsService) -> None:
    @api.operation("CreateModelCard", roles=CARD_WRITERS, write=True)
    def create_card(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        require_absent(p, ["SecurityConfig"], "mlgov encrypts nothing per card")
        require_absent(p, ["Tags"], "mlgov keeps tags on model package groups only")
        content, documents = _card_content(call, p["Content"])
        card = service.create_card(call.session, p["ModelCardName"], p["ModelCardStatus"], content, documents,
                                   call.principal)
        return {"ModelCardArn": call.arn(f"{CARD}/{card.name}")}

    @api.operation("DescribeModelCard", roles=READERS, write=False)
    def describe_card(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        card = service.get_card(call.session, card_name(call, p["ModelCardName"]))
        number = p.get("ModelCardVersion")
        if number is None or number == card.latest_version:
            return _named_card_out(call, card, card.status, card.content, card.latest_version, card.updated_by,
                             card.updated_at)
        row = service.card_version(call.session, card, number)
        return _named_card_out(call, card, row.status, row.content, row.version, row.actor, row.at)

    @api.operation("UpdateModelCard", roles=CARD_WRITERS, write=True)
    def update_card(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        content, documents = _card_content(call, p["Content"]) if p.get("Content") is not None else (None, None)
        card = service.update_card(call.session, card_name(call, p["ModelCardName"]), p.get("ModelCardStatus"),
                                   content, documents, call.principal)
        return {"ModelCardArn": call.arn(f"{CARD}/{card.name}")}

    @api.operation("DeleteModelCard", roles=CARD_WRITERS, write=True)
    def delete_card(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        service.delete_card(call.session, p["ModelCardName"], call.principal)
        return {}

    @api.operation("ListModelCards", roles=READERS, write=False)
    def list_cards(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        limit = p.get("MaxResults") or 10
        sort = sort_of(p, {"Name": "name", "CreationTime": "created_at"}, "CreationTime")
        rows, remaining = service.list_cards(call.session, name_contains=p.get("NameContains"),
                                             status=p.get("ModelCardStatus"),
                                             created_after=from_epoch(p.get("CreationTimeAfter")),
                                             created_before=from_epoch(p.get("CreationTimeBefore")),
                                             sort=sort, limit=limit, offset=0, after=page_after(p))
        return drop_empty({"NextToken": keyset_paged(rows, remaining, service.card_order(sort), p)}) | {
            "ModelCardSummaries": [{"ModelCardName": c.name, "ModelCardArn": call.arn(f"{CARD}/{c.name}"),
                                    "ModelCardStatus": c.status, "CreationTime": c.created_at,
                                    "LastModifiedTime": c.updated_at} for c in rows]}

    @api.operation("ListModelCardVersions", roles=READERS, write=False)
    def list_card_versions(call: Call, p: dict[str, Any]) -> dict[str, Any]:
        offset, limit = page_offset(p), p.get("MaxResults") or 10
        card, rows, total = service.list_card_versions(
            call.session, card_name(call, p["ModelCardName"]), status=p.get("ModelCardStatus"),
            created_after=from_epoch(p.get("CreationTimeAfter")),
            created_before=from_epoch(p.get("CreationTimeBefore")),
            descending=descending(p), limit=limit, offset=offset)
        arn = call.arn(f"{CARD}/{card.name}")
        return drop_empty({"NextToken": paged(rows, total, offset, p)}) | {"ModelCardVersionSummaryList": [
            {"ModelCardName": card.name, "ModelCardArn": arn, "ModelCardStatus": r.status,
             "ModelCardVersion": r.version, "CreationTime": r.at, "LastModifiedTime": r.at} for r in rows]}
