"""ASGI entry point for uvicorn (``mlgov.asgi:app``); settings from the environment."""

from mlgov.app import create_app

app = create_app()
