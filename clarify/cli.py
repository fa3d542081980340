"""`mlgov bias|explain`: Clarify's bias analyses and SHAP explanations, over the Python SDK."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlgov.terminal import CliError, Exit, progress, remote, table, text

if TYPE_CHECKING:
    from clarify.client import ClarifyClient as Client

bias_app = typer.Typer(help="Bias metrics (SageMaker Clarify's pre- and post-training) from an analysis_config.json.",
                       no_args_is_help=True)
explain_app = typer.Typer(help="SHAP explanations of a registered version.", no_args_is_help=True)

File = Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="the dataset (CSV)")]
ModelFile = Annotated[Path | None, typer.Option("--model", exists=True, dir_okay=False,
                                                help="the model artifact (checked against the registered sha256)")]
ModelFormat = Annotated[str | None, typer.Option(help="skops (default), xgboost, lightgbm or onnx")]


def _bias_rows(analysis: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for section, stage in (("pre_training_bias_metrics", "pre"), ("post_training_bias_metrics", "post")):
        for facet, groups in (analysis.get(section) or {}).get("facets", {}).items():
            for group in groups:
                for m in group.get("metrics", []):
                    rows.append({"stage": stage, "facet": facet, "group": group.get("value_or_threshold"),
                                 "metric": m.get("name"), "value": m.get("value"), "note": m.get("note")})
    return rows


def _shap_rows(analysis: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    lines, rows = [], []
    for label, block in (analysis.get("explanations") or {}).get("kernel_shap", {}).items():
        lines.append(f"{label}: {block.get('method', 'kernel')} SHAP, {block.get('agg_method', 'mean_abs')} over "
                     f"rows, expected value {block.get('expected_value')}"
                     + (f", {block['output_space']} space" if block.get("output_space") else ""))
        ranked = sorted(block.get("global_shap_values", {}).items(), key=lambda kv: -abs(kv[1] or 0))
        rows += [{"label": label, "feature": f, "attribution": v} for f, v in ranked]
    return lines, rows


def clarify_view(data: Any) -> None:
    """An analysis.json (or the SDK's answer holding one and its id) as tables: bias metrics per facet and group,
    or SHAP attributions ranked."""
    if isinstance(data, str):   # the HTML report
        typer.echo(data)
        return
    analysis = data.get("analysis", data)
    if "id" in data:
        verb = "explain" if "explanations" in analysis else "bias"
        typer.echo(f"analysis {data['id']} (HTML report: mlgov {verb} report {data['id']} --html > report.html)")
    bias = _bias_rows(analysis)
    if bias:
        table("stage", "facet", "group", "metric", "value", "note")(bias)
    lines, shap = _shap_rows(analysis)
    for line in lines:
        typer.echo(line)
    if shap:
        table("feature", "attribution", *(["label"] if len(lines) > 1 else []))(shap)
    if not bias and not shap:
        text(analysis)


@bias_app.command("run")
@remote(clarify_view)
def bias_run(
    api: Client,
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="SageMaker Clarify's analysis_config.json")],
    data: File = None,
    dataset_uri: Annotated[str | None, typer.Option(help="a dataset in mlgov's object store, instead of DATA")] = None,
    endpoint: Annotated[str | None, typer.Option(help="an endpoint's captured window joined to ground truth")] = None,
    start: Annotated[str | None, typer.Option(help="with --endpoint: window start, ISO-8601")] = None,
    end: Annotated[str | None, typer.Option(help="with --endpoint: window end, ISO-8601")] = None,
    group: Annotated[str | None, typer.Option(help="attach the report to this model group's version …")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="… this version (approval evidence)")] = None,
    predict_with_model: Annotated[bool, typer.Option(help="predict with the registered artifact (replaces any "
                                                          "prediction column)")] = False,
    model: ModelFile = None, model_format: ModelFormat = None,
) -> Any:
    """Compute bias metrics for DATA (or a stored dataset, or an endpoint's window) as the config says."""
    if endpoint is not None and (start is None or end is None):
        raise CliError("an endpoint's window needs --start and --end", code=Exit.USAGE)
    if (group is None) != (version is None):
        raise CliError("--group and --version go together", fix="give both to attach the report to a version",
                       code=Exit.USAGE)
    with progress("computing bias metrics", None):
        return api.bias_analysis(config, data, dataset_uri=dataset_uri, endpoint=endpoint, start=start, end=end,
                                 model_group=group, model_version=version, predict_with_model=predict_with_model,
                                 model=model, model_format=model_format)


@explain_app.command("run")
@remote(clarify_view)
def explain_run(
    api: Client, group: str, version: Annotated[int, typer.Argument(min=1)],
    data: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="rows to explain: numeric CSV with header")],
    model: ModelFile = None, model_format: ModelFormat = None,
    predict_url: Annotated[str | None, typer.Option(help="explain whatever answers at this URL instead")] = None,
    baseline: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                  help="reference rows (default: k-means summary of DATA)")] = None,
    label: Annotated[str | None, typer.Option(help="a label column in DATA to drop")] = None,
    agg_method: Annotated[str | None, typer.Option(help="mean_abs (default), mean_sq or median")] = None,
    num_clusters: Annotated[int | None, typer.Option(min=1, help="k-means clusters of the default reference")]
    = None,
) -> Any:
    """SHAP attributions of GROUP/VERSION on DATA, ranked."""
    with progress("computing SHAP values", None):
        return api.explain(group, version, data, model=model, model_format=model_format, predict_url=predict_url,
                           baseline=baseline, label=label, agg_method=agg_method, num_clusters=num_clusters)


@remote(clarify_view)
def report(api: Client, analysis_id: str,
           html: Annotated[bool, typer.Option("--html", help="the readable HTML report (redirect it to a file)")]
           = False) -> Any:
    """Show a stored Clarify analysis (bias or explanation), or its HTML report."""
    return api.get_clarify_report_html(analysis_id) if html else api.get_clarify_report(analysis_id)


bias_app.command("report")(report)
explain_app.command("report")(report)
