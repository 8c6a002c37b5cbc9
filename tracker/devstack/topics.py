"""Create the project's Kafka topics (idempotent), with kafka-python's admin client."""

from __future__ import annotations

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from tracker.errors import StackError
from tracker.settings import Settings

# Per-topic overrides: the DLQ keeps bad input longer so someone can look at it.
_TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "dlq": {"retention.ms": str(30 * 24 * 3600 * 1000)},
}


def create_topics(settings: Settings) -> list[str]:
    """Create every topic in ``settings.all_topics`` that does not exist yet; return those created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="tracker-topics",
            bootstrap_timeout_ms=15_000,
        )
    except KafkaError as exc:
        raise StackError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} to create topics ({exc}). "
            "Start the broker or fix TRACKER_KAFKA_BOOTSTRAP."
        ) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=_TOPIC_CONFIGS["dlq"] if name == settings.topic_events_dlq else {},
            )
            for name in settings.all_topics
            if name not in existing
        ]
        if wanted:
            # Another process may create them between our list and create: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
        return [topic.name for topic in wanted]
    finally:
        admin.close()
