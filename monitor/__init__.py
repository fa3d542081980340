"""Monitoring: endpoints and capture, baselines, data-quality and drift analyses."""

import mlgov  # noqa: F401  (first: it tunes NumPy's CPU dispatch before NumPy loads)
