"""mlgov: self-hosted MLOps governance and monitoring (the shared kernel)."""

__version__ = "0.1.0"
