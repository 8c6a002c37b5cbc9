"""The offer API: which banner to show this visitor now."""

from tracker.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
