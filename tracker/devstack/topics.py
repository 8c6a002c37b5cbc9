"""Create the project's Kafka topics (idempotent), with kafka-python's admin client."""

from __future__ import annotations

from tracker.kafka_admin import TopicShape, ensure_topics
from tracker.settings import Settings

# The DLQ keeps bad input longer than the other topics, so someone can look at it.
DLQ_RETENTION = {"retention.ms": str(30 * 24 * 3600 * 1000)}


def create_topics(settings: Settings) -> list[str]:
    """Create every topic in ``settings.all_topics`` that does not exist yet; return those created."""
    shapes = {
        name: TopicShape(
            settings.topic_partitions, DLQ_RETENTION if name == settings.topic_events_dlq else {}
        )
        for name in settings.all_topics
    }
    return ensure_topics(settings, shapes, client_id="tracker-topics", purpose="create topics")
