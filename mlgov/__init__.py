"""mlgov: self-hosted MLOps governance and monitoring (the shared kernel)."""

from mlgov import cpu as _cpu  # noqa: F401  (tunes NumPy's CPU dispatch before anything imports NumPy)

__version__ = "0.1.0"
