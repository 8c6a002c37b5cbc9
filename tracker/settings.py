"""The one settings object: every service reads its configuration from here.

Values come from environment variables prefixed ``TRACKER_`` (for example
``TRACKER_KAFKA_BOOTSTRAP=10.0.0.5:9092``), with defaults that are safe for a
developer machine. Nothing else in the code reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_ADMIN_TOKEN = "change-me"
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration for the collector, the stream workers and the offer API."""

    model_config = SettingsConfigDict(env_prefix="TRACKER_", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"

    # Where the local stack caches downloaded Kafka jars (reused across runs).
    cache_dir: Path = Path.home() / ".cache" / "tracker"

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_events: str = "events"
    topic_events_dlq: str = "events.dlq"
    topic_decisions: str = "decisions"
    topic_sessions: str = "sessions"
    topic_erasures: str = "erasures"
    # Partitions for topics the project creates; visitors are spread over them.
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication: int = Field(default=1, ge=1, le=7)

    # --- Redis -------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_seconds: float = Field(default=0.05, gt=0, le=10)

    # --- Collector -----------------------------------------------------------
    collector_host: str = "127.0.0.1"
    collector_port: int = Field(default=8001, ge=0, le=65535)
    max_body_bytes: int = Field(default=512_000, ge=1024)
    max_event_bytes: int = Field(default=32_768, ge=256)
    max_batch_events: int = Field(default=500, ge=1)
    # How long the collector waits for Kafka's acknowledgement before answering 503.
    produce_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    dlq_payload_max_bytes: int = Field(default=4096, ge=0)
    # A client that has not sent its whole body by then gets 408 (protects against slow senders).
    body_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # --- Stream worker -------------------------------------------------------
    worker_app_id: str = "tracker-profiles"
    worker_store: str = "memory://"
    worker_web_host: str = "127.0.0.1"
    # Port of the worker's web server (/metrics); 0 turns it off.
    worker_web_port: int = Field(default=6066, ge=0, le=65535)
    # Event ids remembered per visitor to skip redelivered duplicates.
    dedupe_window: int = Field(default=64, ge=1, le=10_000)
    interest_half_life_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)
    profile_retention_seconds: int = Field(default=180 * 24 * 3600, ge=60)

    # --- Offer API -----------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8002, ge=0, le=65535)
    catalogue_path: Path = REPO_ROOT / "deploy" / "catalogue.yaml"
    # Below this decayed interest a visitor gets the non-personalised default.
    min_interest_to_personalise: float = Field(default=0.5, ge=0)

    # --- Security ------------------------------------------------------------
    admin_token: str = PLACEHOLDER_ADMIN_TOKEN

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(
                    f"TRACKER_KAFKA_BOOTSTRAP entry {server!r} must look like host:port "
                    "(several separated by commas)"
                )
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_token_in_production(self) -> Settings:
        if self.environment == "production" and self.admin_token == PLACEHOLDER_ADMIN_TOKEN:
            raise ValueError(
                "TRACKER_ADMIN_TOKEN is still the placeholder; set a long random value "
                "before running with TRACKER_ENVIRONMENT=production"
            )
        return self

    @property
    def all_topics(self) -> list[str]:
        """Every topic the project owns, in the order they are created."""
        return [
            self.topic_events,
            self.topic_events_dlq,
            self.topic_decisions,
            self.topic_sessions,
            self.topic_erasures,
        ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment; services use this as a dependency."""
    return Settings()
