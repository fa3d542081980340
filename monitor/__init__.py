"""Monitoring: endpoints and capture, baselines, data-quality and drift analyses."""
