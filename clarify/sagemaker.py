"""Clarify's SageMaker operations: Create/Describe/Delete/List ModelBias and ModelExplainability
JobDefinition(s), registered with monitor's job-definition operations (``monitor.sagemaker.register_job_definitions``),
so monitor never imports Clarify.

A bias job definition's baseline is SageMaker Clarify's own pair of files in mlgov's object store: the bias
baseline's ``analysis.json`` (``ModelBiasBaselineConfig.ConstraintsResource``) and the ``analysis_config.json`` it
was computed with (``ModelBiasAppSpecification.ConfigUri``); each run joins the endpoint's captured predictions to
its ground truth (mlgov's ground-truth API) and judges post-training bias against that baseline. The container is
SageMaker's Clarify image, named by one of its published URIs; mlgov runs its own engine in its place.

An explainability job definition's baseline is the explainability baseline's ``analysis.json`` (global SHAP values,
``ModelExplainabilityBaselineConfig.ConstraintsResource``) with its ``analysis_config.json`` (``ConfigUri``); the
explained model is the version the endpoint serves (SageMaker's shadow endpoint of ``predictor.model_name`` is not
needed: mlgov loads the registered artifact, in the format ``Environment['model_format']`` names, skops by
default). Each run computes the window's global SHAP and judges its nDCG against the baseline's (0.9, as Clarify).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clarify import loaders, service
from mlgov.aws import AwsService, Call, require_absent, validation
from mlgov.storage import ObjectStore
from monitor import definitions
from monitor.sagemaker import DefinitionKind, check_image, ecr_images, register_job_definitions
from monitor.service import get_endpoint

# SageMaker Clarify's processing image (sagemaker-clarify-processing:1.0): its registry's account per region, as the
# SageMaker Python SDK v2 publishes them (sagemaker/image_uri_config/clarify.json).
CLARIFY_REPOSITORY = "sagemaker-clarify-processing:1.0"
CLARIFY_REGISTRIES = {
    "af-south-1": "811711786498", "ap-east-1": "098760798382", "ap-northeast-1": "377024640650",
    "ap-northeast-2": "263625296855", "ap-northeast-3": "912233562940", "ap-south-1": "452307495513",
    "ap-southeast-1": "834264404009", "ap-southeast-2": "007051062584", "ap-southeast-3": "705930551576",
    "ca-central-1": "675030665977", "cn-north-1": "122526803553", "cn-northwest-1": "122578899357",
    "eu-central-1": "017069133835", "eu-central-2": "730335477804", "eu-north-1": "763603941244",
    "eu-south-1": "638885417683", "eu-west-1": "131013547314", "eu-west-2": "440796970383",
    "eu-west-3": "341593696636", "me-south-1": "835444307964", "sa-east-1": "520018980103",
    "us-east-1": "205585389593", "us-east-2": "211330385671", "us-gov-west-1": "598674086554",
    "us-west-1": "740489534195", "us-west-2": "306415355426",
}
CLARIFY_IMAGES = ecr_images(CLARIFY_REGISTRIES, CLARIFY_REPOSITORY)


def _check_clarify(kind: str) -> Callable[[dict[str, Any]], None]:
    def check(app: dict[str, Any]) -> None:
        check_image(app["ImageUri"], CLARIFY_IMAGES, member=f"{kind}AppSpecification.ImageUri",
                    what="SageMaker Clarify's image", repository=CLARIFY_REPOSITORY, sdk="clarify")
    return check


def _bias_baseline(call: Call, p: dict[str, Any]) -> str:
    cfg = p.get("ModelBiasBaselineConfig") or {}
    require_absent(cfg, ["BaseliningJobName"], "mlgov runs no Clarify baselining jobs; give ConstraintsResource, "
                   "the analysis.json of the bias baseline")
    uri = (cfg.get("ConstraintsResource") or {}).get("S3Uri")
    if not uri:
        raise validation("mlgov judges every run against a baseline: give ModelBiasBaselineConfig.ConstraintsResource"
                         ".S3Uri (the bias baseline's analysis.json)")
    store: ObjectStore = call.extras["store"]()
    analysis = definitions.one_object(store, uri, "ConstraintsResource")
    config = definitions.one_object(store, p["ModelBiasAppSpecification"]["ConfigUri"], "ConfigUri")
    return service.import_bias_baseline(call.session, store, analysis=analysis, config=config,
                                        name=p["JobDefinitionName"], actor=call.principal).record(call.session).id


MODEL_BIAS = DefinitionKind("ModelBias", "model-bias-job-definition", _bias_baseline, _check_clarify("ModelBias"))


def _explainability_baseline(call: Call, p: dict[str, Any]) -> str:
    cfg = p.get("ModelExplainabilityBaselineConfig") or {}
    require_absent(cfg, ["BaseliningJobName"], "mlgov runs no Clarify baselining jobs; give ConstraintsResource, "
                   "the analysis.json of the explainability baseline")
    uri = (cfg.get("ConstraintsResource") or {}).get("S3Uri")
    if not uri:
        raise validation("mlgov judges every run against a baseline: give ModelExplainabilityBaselineConfig."
                         "ConstraintsResource.S3Uri (the explainability baseline's analysis.json)")
    app = p["ModelExplainabilityAppSpecification"]
    fmt = (app.get("Environment") or {}).get("model_format", "skops")
    if fmt not in loaders.FORMATS:
        raise validation(f"ModelExplainabilityAppSpecification.Environment['model_format'] {fmt!r} is not one of "
                         f"{', '.join(loaders.FORMATS)} (the format of the endpoint's registered model artifact)")
    store: ObjectStore = call.extras["store"]()
    endpoint = get_endpoint(call.session, p["ModelExplainabilityJobInput"]["EndpointInput"]["EndpointName"])
    return service.import_explainability_baseline(
        call.session, store, analysis=definitions.one_object(store, uri, "ConstraintsResource"),
        config=definitions.one_object(store, app["ConfigUri"], "ConfigUri"), group=endpoint.model_group,
        version=endpoint.model_version, fmt=fmt, name=p["JobDefinitionName"],
        actor=call.principal).record(call.session).id


MODEL_EXPLAINABILITY = DefinitionKind("ModelExplainability", "model-explainability-job-definition",
                                      _explainability_baseline, _check_clarify("ModelExplainability"))


def register(api: AwsService) -> None:
    register_job_definitions(api, MODEL_BIAS)
    register_job_definitions(api, MODEL_EXPLAINABILITY)
