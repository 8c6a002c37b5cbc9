"""The worker's internal topics, created before the worker joins its consumer group.

Faust creates internal topics itself, but only while the group's first
rebalance is already under way: a topic created that late is missing from
the first assignment until the next metadata refresh, minutes later. Creating
them first (idempotent) avoids that gap; brokers with
``auto.create.topics.enable=false`` are fine either way.
"""

from __future__ import annotations

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from tracker.errors import StackError
from tracker.settings import Settings


def internal_topics(settings: Settings) -> dict[str, int]:
    """Name -> partitions of the topics the worker owns (the table changelog is Faust's)."""
    from tracker.streams.app import control_topic_name, samples_topic_name

    return {control_topic_name(settings): settings.topic_partitions, samples_topic_name(settings): 1}


def _admin(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="tracker-worker",
            bootstrap_timeout_ms=15_000,
        )
    except KafkaError as exc:
        raise StackError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} to prepare the worker's topics ({exc}). "
            "Start the broker or fix TRACKER_KAFKA_BOOTSTRAP."
        ) from exc


def prepare_topics(settings: Settings) -> Settings:
    """Settings whose ``topic_partitions`` is the events topic's real partition count (the table's
    changelog and the control topic must match it), with the worker's internal topics created."""
    admin = _admin(settings)
    try:
        described = admin.describe_topics([settings.topic_events])
    except KafkaError:
        described = []
    finally:
        admin.close()
    partitions = [len(t.get("partitions") or []) for t in described if not t.get("error_code")]
    if partitions and partitions[0] and partitions[0] != settings.topic_partitions:
        settings = settings.model_copy(update={"topic_partitions": partitions[0]})
    ensure_internal_topics(settings)
    return settings


def ensure_internal_topics(settings: Settings) -> list[str]:
    """Create the worker's internal topics that do not exist yet; return those created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="tracker-worker",
            bootstrap_timeout_ms=15_000,
        )
    except KafkaError as exc:
        raise StackError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} to create the worker's topics ({exc}). "
            "Start the broker or fix TRACKER_KAFKA_BOOTSTRAP."
        ) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=count, replication_factor=settings.topic_replication)
            for name, count in internal_topics(settings).items()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
        return [topic.name for topic in wanted]
    finally:
        admin.close()
