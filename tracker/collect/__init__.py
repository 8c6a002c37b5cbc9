"""The collector: validates, enriches and writes tracked events to Kafka."""

from tracker.collect.app import create_app, serve

__all__ = ["create_app", "serve"]
