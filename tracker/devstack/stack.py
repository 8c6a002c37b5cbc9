"""Kafka and Redis together, as one context manager: ``with LocalStack() as stack: ...``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from tracker.devstack.kafka import KafkaBroker
from tracker.devstack.maven import require_java, resolve_kafka_jars
from tracker.devstack.redis_server import RedisServer, ensure_redis_installed
from tracker.devstack.topics import create_topics
from tracker.settings import Settings


def prepare(settings: Settings) -> Path:
    """Install what the stack needs (Kafka jars, redis-server) without starting anything."""
    libs = resolve_kafka_jars(settings.cache_dir)
    ensure_redis_installed()
    return libs


class LocalStack:
    """A real single-node Kafka (KRaft) and a Redis on free loopback ports, topics created.

    ``kafka_port``/``redis_port`` of 0 pick free ports. Data lives in a temporary
    folder removed on exit unless ``data_dir`` is given.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        data_dir: Path | None = None,
        kafka_port: int = 0,
        redis_port: int = 0,
    ):
        self.settings = settings or Settings()
        self._own_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="tracker-stack-"))
        self._kafka_port = kafka_port
        self._redis_port = redis_port
        self.kafka: KafkaBroker | None = None
        self.redis: RedisServer | None = None

    @property
    def kafka_bootstrap(self) -> str:
        assert self.kafka is not None, "stack not started"
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        assert self.redis is not None, "stack not started"
        return self.redis.url

    def service_settings(self) -> Settings:
        """The stack's settings with Kafka and Redis pointing at the running services."""
        return self.settings.model_copy(
            update={"kafka_bootstrap": self.kafka_bootstrap, "redis_url": self.redis_url}
        )

    def start(self) -> LocalStack:
        try:
            java = require_java()
            libs = resolve_kafka_jars(self.settings.cache_dir)
            self.redis = RedisServer(data_dir=self.data_dir / "redis", port=self._redis_port)
            self.redis.start()
            self.kafka = KafkaBroker(
                java=java,
                libs_dir=libs,
                data_dir=self.data_dir / "kafka",
                port=self._kafka_port,
                partitions=self.settings.topic_partitions,
            )
            self.kafka.start()
            create_topics(self.service_settings())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()
        if self.redis is not None:
            self.redis.stop()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["LocalStack", "ensure_redis_installed", "prepare"]
