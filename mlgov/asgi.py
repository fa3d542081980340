"""ASGI entry point for uvicorn (``mlgov.asgi:app``); settings from the environment."""

import gc

from mlgov.app import create_app
from mlgov.settings import get_settings

app = create_app(request_threads=get_settings().request_threads)

# Everything loaded by now (modules, routes, ORM metadata, pydantic schemas) lives as long as the worker: moved out
# of the collector's reach, it is not walked again by every full collection a large answer triggers (a depth-10
# lineage answer of ~4,500 rows spent 5-10 ms in them). Only here, in the server process: tests build many apps.
gc.collect()
gc.freeze()
