"""SageMaker's Search over the registry (Resource ModelPackage and ModelPackageGroup), with boto3 against a live
server: filters, nested filters, sub-expressions, sorting, paging, and the refusals. Every response is held to
botocore's output shape by the ``sm`` fixture's clients."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.test_sagemaker_api import ACCOUNT, REGION, SageMaker, _code, _conform, _package, _signed
from tests.test_sagemaker_api import sm as sm  # the live-server fixture

pytestmark = pytest.mark.live


def _packages(found: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["ModelPackage"]["ModelPackageGroupName"], r["ModelPackage"]["ModelPackageVersion"])
            for r in found["Results"]]


def _groups(found: dict[str, Any]) -> list[str]:
    return [r["ModelPackageGroup"]["ModelPackageGroupName"] for r in found["Results"]]


@pytest.fixture
def catalogue(sm: SageMaker) -> SageMaker:
    """Two groups, four versions; churn/1 approved; metadata and containers that differ."""
    pat, ann = sm.client("pat"), sm.client("ann")
    pat.create_model_package_group(ModelPackageGroupName="churn", ModelPackageGroupDescription="churn risk",
                                   Tags=[{"Key": "team", "Value": "risk"}])
    pat.create_model_package_group(ModelPackageGroupName="fraud", Tags=[{"Key": "team", "Value": "payments"},
                                                                        {"Key": "tier", "Value": "1"}])
    pat.create_model_package(**_package(sm, "churn", b"c1", ModelPackageDescription="baseline xgboost",
                                        CustomerMetadataProperties={"owner": "risk", "dataset": "2025q4"}))
    pat.create_model_package(**_package(sm, "churn", b"c2", ModelPackageDescription="retrained",
                                        CustomerMetadataProperties={"owner": "risk"}, Domain="FINANCE"))
    pat.create_model_package(**_package(sm, "churn", b"c3"))
    fraud = _package(sm, "fraud", b"f1", CustomerMetadataProperties={"owner": "payments"})
    fraud["InferenceSpecification"]["Containers"][0].update(Image="123.dkr.ecr.eu-west-1.amazonaws.com/torch:2",
                                                            Framework="PYTORCH")
    pat.create_model_package(**fraud)
    ann.update_model_package(ModelPackageArn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/1",
                             ModelApprovalStatus="Approved", ApprovalDescription="holdout AUC 0.91")
    return sm


def test_search_model_packages(catalogue: SageMaker) -> None:
    vic = catalogue.client("vic")

    def search(**kw: Any) -> list[tuple[str, int]]:     # (sorting itself: test_search_sorts_and_pages)
        return sorted(_packages(vic.search(Resource="ModelPackage", MaxResults=100, **kw)))

    def where(*filters: dict[str, str], **expr: Any) -> list[tuple[str, int]]:
        return search(SearchExpression={**({"Filters": list(filters)} if filters else {}), **expr})

    assert search() == [("churn", 1), ("churn", 2), ("churn", 3), ("fraud", 1)]
    assert where({"Name": "ModelPackageGroupName", "Operator": "Equals", "Value": "churn"},
                 {"Name": "ModelApprovalStatus", "Operator": "NotEquals", "Value": "Approved"}) == \
        [("churn", 2), ("churn", 3)]
    assert where({"Name": "ModelPackageGroupName", "Value": "fraud"}) == [("fraud", 1)]   # Equals by default
    assert where({"Name": "ModelPackageVersion", "Operator": "GreaterThanOrEqualTo", "Value": "2"}) == \
        [("churn", 2), ("churn", 3)]
    assert where({"Name": "ModelPackageVersion", "Operator": "LessThan", "Value": "2"},
                 {"Name": "ModelPackageGroupName", "Operator": "In", "Value": "fraud, other"}) == [("fraud", 1)]
    assert where({"Name": "ModelPackageDescription", "Operator": "Contains", "Value": "XGBoost"}) == [("churn", 1)]
    assert where({"Name": "Domain", "Operator": "Exists"}) == [("churn", 2)]
    assert where({"Name": "ApprovalDescription", "Operator": "NotExists"},
                 {"Name": "ModelPackageGroupName", "Value": "churn"}) == [("churn", 2), ("churn", 3)]
    assert where({"Name": "CustomerMetadataProperties.owner", "Value": "risk"}) == [("churn", 1), ("churn", 2)]
    assert where({"Name": "CustomerMetadataProperties.dataset", "Operator": "Exists"}) == [("churn", 1)]
    assert where({"Name": "CustomerMetadataProperties.dataset", "Operator": "NotExists"}) == \
        [("churn", 2), ("churn", 3), ("fraud", 1)]
    assert where({"Name": "CreatedBy.IamIdentity.PrincipalId", "Value": "pat"})[:1] == [("churn", 1)]
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/2"
    assert where({"Name": "ModelPackageArn", "Value": arn}) == [("churn", 2)]
    assert where({"Name": "ModelPackageArn", "Operator": "NotEquals", "Value": arn},
                 {"Name": "ModelPackageGroupName", "Value": "churn"}) == [("churn", 1), ("churn", 3)]

    # times: ISO-8601 or epoch seconds
    now = dt.datetime.now(dt.UTC)
    before = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(where({"Name": "CreationTime", "Operator": "GreaterThan", "Value": before})) == 4
    assert where({"Name": "CreationTime", "Operator": "LessThan", "Value": str(int(now.timestamp()) - 3600)}) == []

    # Or, nested filters on the container, and sub-expressions
    assert where({"Name": "ModelApprovalStatus", "Value": "Approved"},
                 {"Name": "ModelPackageGroupName", "Value": "fraud"}, Operator="Or") == [("churn", 1), ("fraud", 1)]
    nested = {"NestedPropertyName": "InferenceSpecification.Containers", "Filters": [
        {"Name": "InferenceSpecification.Containers.Framework", "Value": "PYTORCH"},
        {"Name": "InferenceSpecification.Containers.Image", "Operator": "Contains", "Value": "torch"}]}
    assert where(NestedFilters=[nested]) == [("fraud", 1)]
    sub = {"SubExpressions": [
        {"Filters": [{"Name": "ModelPackageGroupName", "Value": "churn"},
                     {"Name": "ModelPackageVersion", "Operator": "GreaterThan", "Value": "2"}]},
        {"Filters": [{"Name": "ModelPackageGroupName", "Value": "fraud"}]}], "Operator": "Or"}
    assert where(**sub) == [("churn", 3), ("fraud", 1)]

    # the record is the whole model package, as DescribeModelPackage answers it
    record = vic.search(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "ModelApprovalStatus", "Value": "Approved"}]})["Results"][0]["ModelPackage"]
    described = vic.describe_model_package(ModelPackageName=record["ModelPackageArn"])
    assert record == {k: v for k, v in described.items() if k != "ResponseMetadata"}
    assert record["CustomerMetadataProperties"] == {"owner": "risk", "dataset": "2025q4"}
    assert "Search" in _conform.seen  # type: ignore[attr-defined]   # held to botocore's output shape, strictly


def test_search_sorts_and_pages(catalogue: SageMaker) -> None:
    vic = catalogue.client("vic")
    newest_first = _packages(vic.search(Resource="ModelPackage"))   # CreationTime, Descending
    assert newest_first == [("fraud", 1), ("churn", 3), ("churn", 2), ("churn", 1)]
    seen: list[tuple[str, int]] = []
    kw: dict[str, Any] = {"Resource": "ModelPackage", "MaxResults": 3, "SortBy": "ModelPackageGroupName",
                          "SortOrder": "Descending"}
    while True:
        page = vic.search(**kw)
        assert page["TotalHits"] == {"Value": 4, "Relation": "EqualTo"}
        seen += _packages(page)
        if "NextToken" not in page:
            break
        kw["NextToken"] = page["NextToken"]
    assert [g for g, _ in seen] == ["fraud", "churn", "churn", "churn"] and len(set(seen)) == 4
    # the SDK-style paginator
    pages = list(vic.get_paginator("search").paginate(Resource="ModelPackage", PaginationConfig={"PageSize": 1}))
    assert len(pages) == 4


def test_search_model_package_groups(catalogue: SageMaker) -> None:
    vic = catalogue.client("vic")

    def where(*filters: dict[str, str], **kw: Any) -> list[str]:
        expr = {"SearchExpression": {"Filters": list(filters)}} if filters else {}
        return _groups(vic.search(Resource="ModelPackageGroup", SortBy="ModelPackageGroupName",
                                  SortOrder="Ascending", **expr, **kw))

    assert where() == ["churn", "fraud"]
    assert where({"Name": "Tags.team", "Value": "payments"}) == ["fraud"]
    assert where({"Name": "Tags.tier", "Operator": "Exists"}) == ["fraud"]
    assert where({"Name": "Tags.tier", "Operator": "NotExists"}) == ["churn"]
    assert where({"Name": "Tags.team", "Operator": "In", "Value": "risk,payments"}) == ["churn", "fraud"]
    assert where({"Name": "ModelPackageGroupDescription", "Operator": "Contains", "Value": "RISK"}) == ["churn"]
    assert where({"Name": "ModelPackageGroupArn",
                  "Value": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/fraud"}) == ["fraud"]
    record = vic.search(Resource="ModelPackageGroup", SearchExpression={"Filters": [
        {"Name": "ModelPackageGroupName", "Value": "fraud"}]})["Results"][0]["ModelPackageGroup"]
    assert record["Tags"] == [{"Key": "team", "Value": "payments"}, {"Key": "tier", "Value": "1"}]
    assert record["ModelPackageGroupStatus"] == "Completed"
    assert record["CreatedBy"]["IamIdentity"]["PrincipalId"] == "pat"

    # the native search sees the same groups (one registry behind both doors)
    with httpx.Client(base_url=catalogue.url, timeout=60) as native:
        got = native.get("/api/v1/model-groups", params={"name_contains": "fra"},
                         headers=catalogue.headers["vic"]).json()
    assert [g["name"] for g in got["items"]] == ["fraud"]


def test_search_refusals(catalogue: SageMaker) -> None:
    vic = catalogue.client("vic")

    def refused(**kw: Any) -> str:
        with pytest.raises(ClientError) as exc:
            vic.search(**kw)
        assert _code(exc) == "ValidationException"
        return str(exc.value)

    msg = refused(Resource="ModelPackage", SearchExpression={"Filters": [{"Name": "SamplePayloadUrl", "Value": "x"}]})
    assert "SamplePayloadUrl" in msg and "CustomerMetadataProperties.<key>" in msg
    assert "Tags.team" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "Tags.team", "Value": "risk"}]})
    assert "not Endpoint" in refused(Resource="Endpoint")
    # TrainingJob: mlgov keeps none, so a search finds none, but a filter it cannot mean is still refused
    assert "HyperParameters.eta" in refused(Resource="TrainingJob", SearchExpression={"Filters": [
        {"Name": "HyperParameters.eta", "Operator": "Equals", "Value": "0.1"}]})
    assert "'Nope'" in refused(Resource="ModelPackage", SortBy="Nope")
    assert "needs a Value" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "ModelPackageGroupName", "Operator": "Equals"}]})
    assert "integer" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "ModelPackageVersion", "Operator": "Equals", "Value": "two"}]})
    assert "not text" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "ModelPackageVersion", "Operator": "Contains", "Value": "1"}]})
    assert "CreationTime is a time" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "CreationTime", "Operator": "GreaterThan", "Value": "yesterday"}]})   # SageMaker's name, not ours
    assert "outside the years 1-9999" in refused(Resource="ModelPackage", SearchExpression={"Filters": [
        {"Name": "CreationTime", "Operator": "GreaterThan", "Value": "0001-01-01T00:00:00+01:00"}]})   # was a 500
    assert "nested property" in refused(Resource="ModelPackage", SearchExpression={"NestedFilters": [
        {"NestedPropertyName": "ModelMetrics", "Filters": [{"Name": "ModelMetrics.Bias", "Value": "x"}]}]})
    for resource in ("ModelPackage", "ModelPackageGroup", "ModelCard", "TrainingJob"):   # cards answered 200
        assert "CrossAccount" in refused(Resource=resource, CrossAccountFilterOption="CrossAccount"), resource
    assert "NextToken" in refused(Resource="ModelPackage", NextToken="garbage")
    huge = base64.urlsafe_b64encode(b'{"offset": 99999999999999999999999}').decode()   # named a 64-bit column
    assert "NextToken is not one this server returned" in refused(Resource="ModelPackage", NextToken=huge)


def test_search_abuse_deep_and_huge_expressions(catalogue: SageMaker) -> None:
    vic = catalogue.client("vic")
    # deep: sub-expressions inside sub-expressions, past the registry's depth limit (within the JSON depth limit)
    expr: dict[str, Any] = {"Filters": [{"Name": "ModelPackageGroupName", "Value": "churn"}]}
    for _ in range(12):
        expr = {"SubExpressions": [expr]}
    with pytest.raises(ClientError) as exc:
        vic.search(Resource="ModelPackage", SearchExpression=expr)
    assert _code(exc) == "ValidationException" and "deep" in str(exc.value)
    # at the limit it still answers
    ok: dict[str, Any] = {"Filters": [{"Name": "ModelPackageGroupName", "Value": "churn"}]}
    for _ in range(6):
        ok = {"SubExpressions": [ok]}
    assert len(vic.search(Resource="ModelPackage", SearchExpression=ok)["Results"]) == 3

    # huge: 20 × 20 filters is what the model allows per level; the registry caps conditions at 200
    wide = {"SubExpressions": [{"Filters": [{"Name": "ModelPackageGroupName", "Value": f"g{i}-{j}"}
                                            for j in range(20)], "Operator": "Or"} for i in range(20)],
            "Operator": "Or"}
    with pytest.raises(ClientError) as exc:
        vic.search(Resource="ModelPackage", SearchExpression=wide)
    assert _code(exc) == "ValidationException" and "more than 200 conditions" in str(exc.value)
    # past the model's own bounds (21 filters), refused before any handler runs
    with pytest.raises(ClientError) as exc:
        vic.search(Resource="ModelPackage", SearchExpression={"Filters": [
            {"Name": "ModelPackageGroupName", "Value": "x"}] * 21})
    assert _code(exc) == "ValidationException" and "less than or equal to 20" in str(exc.value)
    # nesting past the JSON depth limit: a 4xx, never a RecursionError
    deep: dict[str, Any] = {"Filters": [{"Name": "ModelPackageGroupName", "Value": "x"}]}
    for _ in range(200):
        deep = {"SubExpressions": [deep]}
    request = _signed(catalogue, "vic", "Search", {"Resource": "ModelPackage", "SearchExpression": deep})
    r = httpx.post(catalogue.url, content=request.body, headers={
        k: v for k, v in request.headers.items() if k.lower() != "content-length"}, timeout=60)
    assert r.status_code == 400 and r.json()["__type"] in ("ValidationException", "SerializationException")
    assert "nested" in json.dumps(r.json())
