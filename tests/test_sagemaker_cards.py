"""SageMaker model cards on the registry's named cards, with boto3 against a live server: versions, statuses, the
review rule (four-eyes on Approved), the link to a model package, and the refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.test_sagemaker_api import ACCOUNT, REGION, SageMaker, _code, _conform, _package, _signed
from tests.test_sagemaker_api import sm as sm  # the live-server fixture

pytestmark = pytest.mark.live
CARD_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-card/"


def _refused(code: str, fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as exc:
        fn(**kw)
    assert _code(exc) == code, exc.value
    return str(exc.value)


def test_model_card_lifecycle(sm: SageMaker) -> None:
    pat, ann, alice, vic = sm.client("pat"), sm.client("ann"), sm.client("alice"), sm.client("vic")
    pat.create_model_package_group(ModelPackageGroupName="churn")
    # a registrant writes the package's card: registering it Approved would approve their own card (was accepted)
    assert "four-eyes" in _refused("AccessDeniedException", pat.create_model_package, **_package(sm, "churn", b"m0"),
                                   ModelCard={"ModelCardContent": "{}", "ModelCardStatus": "Approved"})
    package = pat.create_model_package(**_package(sm, "churn", b"m1"))["ModelPackageArn"]

    v1 = {"model_overview": {"model_description": "gradient boosting"},
          "model_package_details": {"model_package_arn": package}}
    arn = pat.create_model_card(ModelCardName="churn-card", Content=json.dumps(v1),
                                ModelCardStatus="Draft")["ModelCardArn"]
    assert arn == CARD_ARN + "churn-card"
    d = vic.describe_model_card(ModelCardName="churn-card")
    assert (d["ModelCardVersion"], d["ModelCardStatus"], json.loads(d["Content"])) == (1, "Draft", v1)
    assert d["CreatedBy"]["IamIdentity"]["PrincipalId"] == "pat"
    _refused("ConflictException", pat.create_model_card, ModelCardName="churn-card", Content="{}",
             ModelCardStatus="Draft")

    # the card documents the package: DescribeModelPackage and the native API show it
    card = vic.describe_model_package(ModelPackageName=package)["ModelCard"]
    assert (card["ModelCardStatus"], json.loads(card["ModelCardContent"])) == ("Draft", v1)
    # Search on ModelCard, as the SDK asks it (which card documents a package; the group's latest card)
    def found(**expression: Any) -> list[str]:
        return [r["ModelCard"]["ModelCardName"] for r in vic.search(Resource="ModelCard", **expression)["Results"]]

    assert found(SearchExpression={"Filters": [{"Name": "ModelId", "Operator": "Equals", "Value": package}]}) \
        == ["churn-card"]
    assert found(SearchExpression={"Filters": [{"Name": "ModelPackageGroupName", "Operator": "Equals",
                                                "Value": "churn"}]}, SortBy="LastModifiedTime") == ["churn-card"]
    assert found(SearchExpression={"Filters": [{"Name": "ModelPackageGroupName", "Operator": "Equals",
                                                "Value": "other"}]}) == []
    assert "ModelCardName (Equals/Contains)" in _refused(
        "ValidationException", vic.search, Resource="ModelCard",
        SearchExpression={"Filters": [{"Name": "RiskRating", "Operator": "Equals", "Value": "High"}]})
    # a reviewer's findings: "²" passed isdigit() and int() raised (500); a repeated filter kept only the last
    assert "names no versioned model package" in _refused(
        "ValidationException", vic.search, Resource="ModelCard",
        SearchExpression={"Filters": [{"Name": "ModelId", "Operator": "Equals", "Value": "churn/\u00b2"}]})
    assert "given twice" in _refused("ValidationException", vic.search, Resource="ModelCard", SearchExpression={
        "Filters": [{"Name": "ModelCardName", "Operator": "Equals", "Value": v} for v in ("a", "b")]})
    assert vic.search(Resource="TrainingJob", SearchExpression={"Filters": [{
        "Name": "ModelArtifacts.S3ModelArtifacts", "Operator": "Equals", "Value": "s3://b/m.tar.gz"}]})["Results"] \
        == []

    v2 = {**v1, "intended_uses": {"purpose_of_model": "retention campaigns"}}
    pat.update_model_card(ModelCardName=arn, Content=json.dumps(v2), ModelCardStatus="PendingReview")
    # the author may not approve its own card; a publisher may not approve at all; an independent approver may
    assert "may not approve" in _refused("AccessDeniedException", pat.update_model_card,
                                         ModelCardName="churn-card", ModelCardStatus="Approved")
    alice.create_model_card(ModelCardName="admin-card", Content="{}", ModelCardStatus="PendingReview")
    assert "four-eyes" in _refused("AccessDeniedException", alice.update_model_card, ModelCardName="admin-card",
                                   ModelCardStatus="Approved")
    assert "four-eyes" in _refused("AccessDeniedException", alice.create_model_card, ModelCardName="self-approved",
                                   Content="{}", ModelCardStatus="Approved")
    alice.delete_model_card(ModelCardName="admin-card")
    # the approver restates the content it reviewed with its approval (a trial was told "only the creator … may
    # change its model package": the package was named again, not changed)
    ann.update_model_card(ModelCardName="churn-card", ModelCardStatus="Approved", Content=json.dumps(v2))
    d = vic.describe_model_card(ModelCardName="churn-card")
    assert (d["ModelCardVersion"], d["ModelCardStatus"], json.loads(d["Content"])) == (3, "Approved", v2)
    assert d["LastModifiedBy"]["IamIdentity"]["PrincipalId"] == "ann"
    # an approved card's content changes only with a new status; it cannot be deleted, only archived
    assert "new status" in _refused("ValidationException", pat.update_model_card, ModelCardName="churn-card",
                                    Content=json.dumps({"changed": True}))
    _refused("ConflictException", alice.delete_model_card, ModelCardName="churn-card")

    old = vic.describe_model_card(ModelCardName="churn-card", ModelCardVersion=1)
    assert (old["ModelCardVersion"], old["ModelCardStatus"], json.loads(old["Content"])) == (1, "Draft", v1)
    _refused("ResourceNotFound", vic.describe_model_card, ModelCardName="churn-card", ModelCardVersion=9)
    versions = vic.list_model_card_versions(ModelCardName="churn-card", SortOrder="Ascending")
    assert [(x["ModelCardVersion"], x["ModelCardStatus"]) for x in versions["ModelCardVersionSummaryList"]] == \
        [(1, "Draft"), (2, "PendingReview"), (3, "Approved")]
    page = vic.list_model_card_versions(ModelCardName="churn-card", MaxResults=2)
    assert [x["ModelCardVersion"] for x in page["ModelCardVersionSummaryList"]] == [3, 2] and page["NextToken"]
    assert [x["ModelCardVersion"] for x in vic.list_model_card_versions(
        ModelCardName="churn-card", ModelCardStatus="Draft")["ModelCardVersionSummaryList"]] == [1]

    with httpx.Client(base_url=sm.url, timeout=60) as native:
        got = native.get("/api/v1/model-groups/churn/versions/1", headers=sm.headers["vic"]).json()
        events = native.get("/api/v1/audit/events", params={"action": "model_card.*"},
                            headers=sm.headers["root"]).json()["items"]
        report = native.get("/api/v1/audit/report", params={"model_group": "churn"},
                            headers=sm.headers["vic"]).json()
    # the compliance report says who approved the card, which version of it, and when (a trial found only
    # "Status: Approved")
    assert [(c["card"], c["card_version"], c["by"], c["status"]) for c in report["versions"][0]["card_history"]] == [
        ("churn-card", 1, "pat", "Draft"), ("churn-card", 2, "pat", "PendingReview"),
        ("churn-card", 3, "ann", "Approved")]
    assert got["model_card"]["status"] == "Approved" and got["model_card"]["content"] == v2
    assert sorted((e["action"], e["actor"]) for e in events if e["subject_id"] == "churn-card") == [
        ("model_card.created", "pat"), ("model_card.updated", "ann"), ("model_card.updated", "pat")]

    # a version has one named card
    assert "already documented" in _refused("ConflictException", pat.create_model_card, ModelCardName="another",
                                            Content=json.dumps(v1), ModelCardStatus="Draft")

    pat.create_model_card(ModelCardName="draft-two", Content="{}", ModelCardStatus="Draft")
    summaries = vic.list_model_cards(SortBy="Name", SortOrder="Ascending")["ModelCardSummaries"]
    assert [(c["ModelCardName"], c["ModelCardStatus"]) for c in summaries] == \
        [("churn-card", "Approved"), ("draft-two", "Draft")]
    assert [c["ModelCardName"] for c in vic.list_model_cards(ModelCardStatus="Draft")["ModelCardSummaries"]] == \
        ["draft-two"]
    assert [c["ModelCardName"] for c in vic.list_model_cards(NameContains="churn")["ModelCardSummaries"]] == \
        ["churn-card"]

    # archived: no more changes; deleted: gone (only the creator or an admin deletes)
    ann.update_model_card(ModelCardName="churn-card", ModelCardStatus="Archived")
    _refused("ConflictException", pat.update_model_card, ModelCardName="churn-card", ModelCardStatus="Draft")
    # a card once Approved stays, with its versions: archiving it first is no way to delete it (a trial did)
    assert "was Approved (version 3)" in _refused("ConflictException", pat.delete_model_card,
                                                  ModelCardName="churn-card")
    assert vic.describe_model_card(ModelCardName="churn-card", ModelCardVersion=3)["ModelCardStatus"] == "Approved"
    assert "nothing to update" in _refused("ValidationException", pat.update_model_card, ModelCardName="draft-two")
    _refused("AccessDeniedException", ann.delete_model_card, ModelCardName="draft-two")
    pat.delete_model_card(ModelCardName="draft-two")
    _refused("ResourceNotFound", vic.describe_model_card, ModelCardName="draft-two")
    # every answer above was also held to botocore's output shape, strictly (the fixture's clients)
    assert {"CreateModelCard", "DescribeModelCard", "UpdateModelCard", "ListModelCards",
            "ListModelCardVersions"} <= _conform.seen  # type: ignore[attr-defined]


def test_model_card_abuse(sm: SageMaker) -> None:
    pat, vic = sm.client("pat"), sm.client("vic")
    # a viewer creates nothing
    _refused("AccessDeniedException", vic.create_model_card, ModelCardName="v", Content="{}", ModelCardStatus="Draft")
    # Content that is not JSON, not an object, nested past the JSON depth limit, or over the model's 100,000
    assert "JSON" in _refused("ValidationException", pat.create_model_card, ModelCardName="x", Content="not json",
                              ModelCardStatus="Draft")
    assert "object" in _refused("ValidationException", pat.create_model_card, ModelCardName="x", Content="[1, 2]",
                                ModelCardStatus="Draft")
    assert "nested" in _refused("ValidationException", pat.create_model_card, ModelCardName="x",
                                Content="[" * 5000 + "]" * 5000, ModelCardStatus="Draft")
    request = _signed(sm, "pat", "CreateModelCard", {"ModelCardName": "x", "ModelCardStatus": "Draft",
                                                     "Content": json.dumps({"a": "x" * 100_001})})
    r = httpx.post(sm.url, content=request.body, headers={k: v for k, v in request.headers.items()
                                                          if k.lower() != "content-length"}, timeout=60)
    assert r.status_code == 400 and r.json()["__type"] == "ValidationException"
    assert "less than or equal to 100000" in r.json()["message"]
    # a card naming a package that does not exist, or something that is not a package ARN
    _refused("ValidationException", pat.create_model_card, ModelCardName="x", ModelCardStatus="Draft",
             Content=json.dumps({"model_package_details": {
                 "model_package_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/no/1"}}))
    _refused("ValidationException", pat.create_model_card, ModelCardName="x", ModelCardStatus="Draft",
             Content=json.dumps({"model_package_details": {"model_package_arn": 7}}))
    _refused("ValidationException", pat.create_model_card, ModelCardName="x", ModelCardStatus="Draft", Content="{}",
             Tags=[{"Key": "a", "Value": "b"}])
    _refused("ResourceNotFound", pat.update_model_card, ModelCardName="x", ModelCardStatus="Draft")
    assert vic.list_model_cards()["ModelCardSummaries"] == []     # nothing half-written


def test_a_card_is_written_by_its_creator_and_reviewed_by_someone_independent_of_every_writer(sm: SageMaker) -> None:
    """A migration trial: bob created a card, pat (another publisher) rewrote its content, and pat's own approver
    key approved it; the review rule only compared the approver with the card's creator. Now the content is the
    creator's (or an admin's) to write, status changes other than a review are the creator's, and an approver
    must be independent of everyone who wrote a version of the content."""
    with httpx.Client(base_url=sm.url, timeout=30) as c:
        for name, role, owner in (("bob", "publisher", "bob"), ("pat-appr", "approver", "pat")):
            r = c.post("/api/v1/keys", json={"name": name, "role": role, "owner": owner, "aws_credentials": True},
                       headers=sm.headers["root"])
            assert r.status_code == 201, r.text
            sm.creds[name] = (r.json()["aws_access_key_id"], r.json()["aws_secret_access_key"])
    bob, pat, pat_appr = sm.client("bob"), sm.client("pat"), sm.client("pat-appr")
    alice, ann = sm.client("alice"), sm.client("ann")
    content = {"model_overview": {"model_description": "written by bob"}}
    bob.create_model_card(ModelCardName="bob-card", Content=json.dumps(content), ModelCardStatus="Draft")
    forged = json.dumps({"model_overview": {"model_description": "written by pat"}})
    assert "only the creator of model card 'bob-card'" in _refused(
        "AccessDeniedException", pat.update_model_card, ModelCardName="bob-card", Content=forged,
        ModelCardStatus="PendingReview")
    _refused("AccessDeniedException", pat.update_model_card, ModelCardName="bob-card", ModelCardStatus="Archived")
    _refused("AccessDeniedException", ann.update_model_card, ModelCardName="bob-card", Content=forged,
             ModelCardStatus="Approved")            # an approver writing what it approves
    fixed = json.dumps({"model_overview": {"model_description": "written by bob, typo fixed by an admin"}})
    alice.update_model_card(ModelCardName="bob-card", Content=fixed, ModelCardStatus="PendingReview")
    assert "'alice', who wrote content of model card 'bob-card'" in _refused(
        "AccessDeniedException", alice.update_model_card, ModelCardName="bob-card", ModelCardStatus="Approved")
    pat_appr.update_model_card(ModelCardName="bob-card", ModelCardStatus="Approved")   # independent of both
    card = ann.describe_model_card(ModelCardName="bob-card")
    assert card["ModelCardStatus"] == "Approved" and json.loads(card["Content"]) == json.loads(fixed)
    assert [v["ModelCardVersion"] for v in ann.list_model_card_versions(ModelCardName="bob-card")[
        "ModelCardVersionSummaryList"]] == [3, 2, 1]   # newest first, as SageMaker lists them
