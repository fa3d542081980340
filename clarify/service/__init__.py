"""Clarify's service: analyses on request (``analyses``), the bias-drift and attribution-drift monitors
(``monitors``), and the registered artifacts both load (``artifacts``). Routers and other domains call the names
re-exported here."""

from clarify.service.analyses import (
    DEFAULT_LIMITS,
    Computed,
    compute_bias,
    compute_explanation,
    dump,
    explanation_rows,
    get_report,
    policy_failures,
    record_bias,
    record_explanation,
)
from clarify.service.artifacts import load_model
from clarify.service.monitors import (
    attribution_window,
    bias_window,
    create_bias_baseline,
    create_explainability_baseline,
    import_bias_baseline,
    import_explainability_baseline,
)

__all__ = ["DEFAULT_LIMITS", "Computed", "attribution_window", "bias_window", "compute_bias", "compute_explanation",
           "create_bias_baseline", "create_explainability_baseline", "dump", "explanation_rows", "get_report",
           "import_bias_baseline", "import_explainability_baseline", "load_model", "policy_failures", "record_bias",
           "record_explanation"]
