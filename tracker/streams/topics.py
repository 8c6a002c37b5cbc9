"""The worker's internal topics, created before the worker joins its consumer group.

Faust creates internal topics itself, but only while the group's first
rebalance is already under way: a topic created that late is missing from
the first assignment until the next metadata refresh, minutes later. Creating
them first (idempotent) avoids that gap; brokers with
``auto.create.topics.enable=false`` are fine either way.
"""

from __future__ import annotations

from kafka.errors import KafkaError

from tracker.kafka_admin import TopicShape, admin_client, ensure_topics
from tracker.settings import Settings

CLIENT_ID = "tracker-worker"


def internal_topics(settings: Settings) -> dict[str, TopicShape]:
    """The topics the worker owns (the table changelog is Faust's)."""
    from tracker.streams.app import control_topic_name, rewards_topic_name, samples_topic_name

    return {
        control_topic_name(settings): TopicShape(settings.topic_partitions),
        samples_topic_name(settings): TopicShape(1),
        rewards_topic_name(settings): TopicShape(1),
    }


def prepare_topics(settings: Settings) -> Settings:
    """Settings whose ``topic_partitions`` is the events topic's real partition count (the table's
    changelog and the control topic must match it), with the worker's internal topics created."""
    admin = admin_client(settings, client_id=CLIENT_ID, purpose="prepare the worker's topics")
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
    return ensure_topics(
        settings, internal_topics(settings), client_id=CLIENT_ID, purpose="create the worker's topics"
    )
