"""Topic creation shared by the CLI, the local stack and the worker, against the real broker."""

from __future__ import annotations

import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from tracker.devstack.process import free_port
from tracker.devstack.topics import DLQ_RETENTION, create_topics
from tracker.errors import StackError
from tracker.kafka_admin import TopicShape, admin_client, ensure_topics
from tracker.settings import Settings


def test_an_unreachable_broker_is_a_clear_error() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    with pytest.raises(
        StackError, match=r"cannot reach Kafka at 127\.0\.0\.1:\d+ to create topics.*TRACKER_KAFKA_BOOTSTRAP"
    ):
        admin_client(settings, client_id="tracker-tests", purpose="create topics", timeout_ms=1_000)


@pytest.mark.integration
def test_project_topics_are_created_once_with_the_dlq_kept_longer(settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = settings.model_copy(
        update={
            "topic_events": f"ka-{tag}-events",
            "topic_events_dlq": f"ka-{tag}-events.dlq",
            "topic_decisions": f"ka-{tag}-decisions",
            "topic_sessions": f"ka-{tag}-sessions",
            "topic_erasures": f"ka-{tag}-erasures",
            "topic_partitions": 3,
        }
    )
    assert sorted(create_topics(settings)) == sorted(settings.all_topics)
    assert create_topics(settings) == []  # idempotent
    admin = admin_client(settings, client_id="tracker-tests", purpose="check topics")
    try:
        described = {t["name"]: t for t in admin.describe_topics(settings.all_topics)}
        assert all(len(described[name]["partitions"]) == 3 for name in settings.all_topics)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic_events_dlq)]
        )
        retention = configs["topic"][settings.topic_events_dlq]["retention.ms"]["value"]
        assert retention == DLQ_RETENTION["retention.ms"]
    finally:
        admin.close()


@pytest.mark.integration
def test_ensure_topics_creates_only_what_is_missing(settings: Settings) -> None:
    name = f"ka-{uuid.uuid4().hex[:8]}-one"
    shapes = {name: TopicShape(1)}
    assert ensure_topics(settings, shapes, client_id="tracker-tests", purpose="test") == [name]
    assert ensure_topics(settings, shapes, client_id="tracker-tests", purpose="test") == []
