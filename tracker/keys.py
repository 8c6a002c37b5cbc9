"""The Redis key layout: every key the project reads or writes is built here.

Keys that belong to one visitor carry the hash tag ``{site:visitor}`` so that,
on Redis Cluster, everything touched for one visitor in a pipeline or script
lives in one slot. ``docs/ARCHITECTURE.md`` lists each key with its writer and
readers.
"""

from __future__ import annotations

PREFIX = "trk:v1"


def visitor_tag(site_id: str, visitor_id: str) -> str:
    """The Redis Cluster hash tag shared by all of a visitor's keys."""
    return f"{{{site_id}:{visitor_id}}}"


def profile(site_id: str, visitor_id: str) -> str:
    """String (JSON): the visitor's live profile. Writer: stream worker. Reader: offer API."""
    return f"{PREFIX}:profile:{visitor_tag(site_id, visitor_id)}"
