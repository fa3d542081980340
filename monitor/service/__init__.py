"""Monitoring services, one module per concern; ``from monitor import service`` reaches every public function.

- ``endpoints``: endpoints and capture ingest, captured windows read back
- ``ground_truth``: labels keyed by inferenceId, windows joined to them
- ``baselines``: data-quality baselines, constraints, expectation suites, the version's drift baseline
- ``analyses``: data-quality and drift analyses, what every analysis report shows and the drift report's data
- ``model_quality``: model-quality baselines and analyses, the label-free performance estimate
- ``datasets``: uploaded or stored datasets read as checked tables

Other domains that add monitor kinds (``monitor.kinds``) make their baselines and analyses through the one
maker of each row kind, ``finish_baseline`` and ``finish_analysis``: each computes on a session it only reads, and
the caller records the result in a short write transaction (``FinishedBaseline.record``, ``Finished.record``). They
name the rows by the types re-exported here (``Baseline``, ``Analysis``) and never import ``monitor.orm``.

Services flush; callers commit. Files go to the object store before the rows that point at them are flushed, so
a committed row always finds its files, and files whose rows never committed are unreachable (and harmless).
"""

from monitor.orm import Analysis, Baseline
from monitor.service.analyses import (
    Finished,
    analysis_file,
    analysis_prefix,
    analysis_results,
    analysis_summary,
    analyze_file,
    analyze_window,
    check_drift,
    data_quality_report,
    drift_config,
    evidently_snapshot,
    finish_analysis,
    get_analysis,
    list_analyses,
    reference_kinds,
    run_analysis,
    violations_of,
)
from monitor.service.baselines import (
    FinishedBaseline,
    attach_baseline,
    baseline_file,
    baseline_prefix,
    create_baseline,
    finish_baseline,
    get_baseline,
    gx_suite,
    import_baseline,
    list_baselines,
    put_expectations,
    update_constraints,
    version_baseline,
)
from monitor.service.datasets import read_dataset_uri
from monitor.service.endpoints import (
    PreparedCapture,
    capture_volume,
    captured_count,
    commit_capture,
    create_endpoint,
    get_endpoint,
    ingest,
    last_capture_hour,
    list_endpoints,
    prepare_capture,
    read_capture,
    window_table,
)
from monitor.service.estimation import constraint_names
from monitor.service.ground_truth import (
    PreparedLabels,
    commit_ground_truth,
    ingest_ground_truth,
    label_files,
    labelled_summary,
    labelled_window,
    prepare_ground_truth,
    read_label_file,
    unreadable_labels,
)
from monitor.service.model_quality import (
    RUN_CONSTRAINTS,
    create_quality_baseline,
    import_quality_baseline,
    performance_estimate,
    quality_file,
    quality_report,
    quality_window,
    run_quality_analysis,
)

__all__ = [
    "RUN_CONSTRAINTS",
    "Analysis",
    "Baseline",
    "Finished",
    "FinishedBaseline",
    "PreparedCapture",
    "PreparedLabels",
    "analysis_file",
    "analysis_prefix",
    "analysis_results",
    "analysis_summary",
    "analyze_file",
    "analyze_window",
    "attach_baseline",
    "baseline_file",
    "baseline_prefix",
    "capture_volume",
    "captured_count",
    "check_drift",
    "commit_capture",
    "commit_ground_truth",
    "constraint_names",
    "create_baseline",
    "create_endpoint",
    "create_quality_baseline",
    "data_quality_report",
    "drift_config",
    "evidently_snapshot",
    "finish_analysis",
    "finish_baseline",
    "get_analysis",
    "get_baseline",
    "get_endpoint",
    "gx_suite",
    "import_baseline",
    "import_quality_baseline",
    "ingest",
    "ingest_ground_truth",
    "label_files",
    "labelled_summary",
    "labelled_window",
    "last_capture_hour",
    "list_analyses",
    "list_baselines",
    "list_endpoints",
    "performance_estimate",
    "prepare_capture",
    "prepare_ground_truth",
    "put_expectations",
    "quality_file",
    "quality_report",
    "quality_window",
    "read_capture",
    "read_dataset_uri",
    "read_label_file",
    "reference_kinds",
    "run_analysis",
    "run_quality_analysis",
    "unreadable_labels",
    "update_constraints",
    "version_baseline",
    "violations_of",
    "window_table",
]
