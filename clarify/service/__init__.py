"""Clarify's service: analyses on request (``analyses``), the bias-drift and attribution-drift monitors
(``monitors``), and the registered artifacts both load (``artifacts``). Routers and other domains call the names
re-exported here."""

from clarify.service.analyses import (
    DEFAULT_LIMITS,
    bias_analysis,
    dump,
    explain_version,
    explanation_rows,
    get_report,
    policy_failures,
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

__all__ = ["DEFAULT_LIMITS", "attribution_window", "bias_analysis", "bias_window", "create_bias_baseline",
           "create_explainability_baseline", "dump", "explain_version", "explanation_rows", "get_report",
           "import_bias_baseline", "import_explainability_baseline", "load_model", "policy_failures"]
