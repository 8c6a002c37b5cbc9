"""Streaming, real-time visitor behaviour tracker and next-best-offer engine."""

__version__ = "0.1.0"
