"""Clarify: bias metrics equal to SageMaker's, explanations, bias and attribution drift."""

import mlgov  # noqa: F401  (first: it tunes NumPy's CPU dispatch before NumPy loads)
