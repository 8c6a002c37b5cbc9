"""Kafka administration shared by the CLI, the local stack and the stream worker: an admin
client that fails with a message saying what to do, and idempotent topic creation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from tracker.errors import StackError
from tracker.settings import Settings

BOOTSTRAP_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class TopicShape:
    """How a topic is created: its partitions and any per-topic configuration."""

    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


def admin_client(
    settings: Settings, *, client_id: str, purpose: str, timeout_ms: int = BOOTSTRAP_TIMEOUT_MS
) -> KafkaAdminClient:
    """An admin client for ``settings.kafka_bootstrap``; ``purpose`` completes the error message
    ("cannot reach Kafka at ... to <purpose>")."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise StackError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} to {purpose} ({exc}). "
            "Start the broker or fix TRACKER_KAFKA_BOOTSTRAP."
        ) from exc


def ensure_topics(
    settings: Settings, topics: Mapping[str, TopicShape], *, client_id: str, purpose: str
) -> list[str]:
    """Create those of ``topics`` that do not exist yet; return the names created."""
    admin = admin_client(settings, client_id=client_id, purpose=purpose)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=shape.partitions,
                replication_factor=settings.topic_replication,
                topic_configs=dict(shape.configs),
            )
            for name, shape in topics.items()
            if name not in existing
        ]
        if not wanted:
            return []
        # Another process may create some between our list and create: not an error. Waiting for
        # metadata means a consumer group started next sees every partition in its first assignment.
        response = admin.create_topics(wanted, raise_errors=False, wait_for_metadata=True)
        created = []
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if error is TopicAlreadyExistsError:
                continue
            if topic["error_code"]:
                raise StackError(
                    f"Kafka refused to create topic {topic['name']!r}: {error.__name__} "
                    f"({topic.get('error_message') or 'no detail'}). Check the broker's log and limits."
                )
            created.append(topic["name"])
        return created
    finally:
        admin.close()
