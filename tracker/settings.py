"""The one settings object: every service reads its configuration from here.

Values come from environment variables prefixed ``TRACKER_`` (for example
``TRACKER_KAFKA_BOOTSTRAP=10.0.0.5:9092``), with defaults that are safe for a
developer machine. Nothing else in the code reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_ADMIN_TOKEN = "change-me"
REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or trailing slash,
    as browsers send it in the ``Origin`` header. A leading ``*.`` in the host (allowed
    in site configuration) stands for any subdomain.

    >>> normalise_origin("HTTPS://Shop.Example:443/")
    'https://shop.example'
    >>> normalise_origin("http://localhost:8000")
    'http://localhost:8000'
    """
    parts = urlsplit(origin.strip())
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or port == -1
        or parts.username
        or parts.password
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"origin {origin!r} must look like https://shop.example or http://localhost:8000")
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{suffix}"


class SiteConfig(BaseModel):
    """One site that may send events: an entry of the sites file or of ``TRACKER_SITES``.

    ``origins`` are the browser origins allowed to send for the site (``https://*.shop.example``
    allows every subdomain); ``write_key``, when set, is required from senders without an
    ``Origin`` header (server-side callers), as ``Authorization: Bearer <write_key>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    origins: tuple[str, ...] = ()
    write_key: str | None = Field(default=None, min_length=16, max_length=256)

    @field_validator("origins")
    @classmethod
    def _normalise_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_origin(origin) for origin in value)


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
    # A connection that has not sent a request's complete headers by then is closed
    # (slowloris); headers over max_header_bytes get 431. Idle keep-alive connections
    # close after keep_alive_timeout_seconds.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)
    # On SIGTERM/SIGINT requests in flight get this long to finish before the process exits.
    shutdown_grace_seconds: int = Field(default=20, ge=1, le=600)
    # Bytes and events handed to Kafka but not yet acknowledged, across all requests;
    # beyond either bound the collector answers 503 instead of queueing.
    max_inflight_bytes: int = Field(default=64 * 1024 * 1024, ge=65_536)
    max_inflight_events: int = Field(default=100_000, ge=1)
    # Requests being read, checked or written at once; beyond, 503 at once: when the CPU is
    # the bottleneck, a short queue with fast refusals beats a long one that times out.
    max_concurrent_requests: int = Field(default=256, ge=1)
    # Token bucket per (client network, site): sustained requests per second and burst;
    # 0 turns the limit off. In-process: behind N replicas a client gets up to N times this.
    rate_limit_per_second: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    rate_limit_max_clients: int = Field(default=100_000, ge=100)
    # Client IP from X-Forwarded-For only when the TCP peer is in one of these networks
    # (comma-separated CIDRs, e.g. "10.0.0.0/8,192.168.0.0/16"); empty = never.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Requests whose user agent is a bot or crawler: "flag" (written with server.is_bot)
    # or "drop" (answered 202, not written).
    bot_policy: Literal["flag", "drop"] = "flag"
    cors_max_age_seconds: int = Field(default=7200, ge=0, le=86_400)
    # GET /v1/p.gif: anonymous page views from pages without JavaScript.
    pixel_enabled: bool = True
    # Server-set first-party visitor cookie (docs/ARCHITECTURE.md, "Collector HTTP contract").
    visitor_cookie_enabled: bool = False
    visitor_cookie_name: str = Field(default="trk_vid", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    visitor_cookie_domain: str | None = None
    visitor_cookie_max_age_seconds: int = Field(default=396 * 24 * 3600, ge=60, le=396 * 24 * 3600)
    # Off only for plain-http development: browsers drop Secure cookies there.
    visitor_cookie_secure: bool = True
    # The built browser snippet the collector serves at /s/t.js (js-snippet/: npm run build).
    snippet_path: Path = REPO_ROOT / "js-snippet" / "dist" / "t.js"

    # --- Sites (who may send events) ------------------------------------------
    # The site registry: YAML with a list of SiteConfig under "sites" (deploy/sites.yaml).
    sites_path: Path = REPO_ROOT / "deploy" / "sites.yaml"
    # More sites as JSON (TRACKER_SITES='[{"id": "demo", "origins": ["http://localhost:8000"]}]');
    # an id also in the file is replaced by this entry.
    sites: tuple[SiteConfig, ...] = ()
    # Development and tests only (an error in production): a site id missing from the
    # registry is accepted, from any origin, without a write key.
    allow_unregistered_sites: bool = False

    # --- Stream worker -------------------------------------------------------
    worker_app_id: str = "tracker-profiles"
    worker_store: str = "memory://"
    # Where Faust keeps local files (a rocksdb:// store's state), in a folder per app id.
    worker_data_dir: Path = Path.home() / ".cache" / "tracker" / "worker"
    worker_web_host: str = "127.0.0.1"
    # Port of the worker's web server (/metrics); 0 turns it off.
    worker_web_port: int = Field(default=6066, ge=0, le=65535)
    # Event ids remembered per visitor to skip redelivered duplicates.
    dedupe_window: int = Field(default=64, ge=1, le=10_000)
    interest_half_life_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)
    profile_retention_seconds: int = Field(default=180 * 24 * 3600, ge=60)
    # Products fall out of interest faster than categories; engagement (time, depth, returns) slower.
    product_half_life_seconds: float = Field(default=24 * 3600.0, gt=0)
    engagement_half_life_seconds: float = Field(default=14 * 24 * 3600.0, gt=0)
    # Sessions: a new one after this much inactivity (event time), and on a page view from a new
    # campaign or external referrer if split_on_source. The sweep closes idle ones (wall clock).
    session_gap_seconds: float = Field(default=30 * 60.0, gt=0)
    session_split_on_source: bool = True
    session_sweep_seconds: float = Field(default=30.0, gt=0)
    # Events folded per batch (one pipelined Redis write per batch) and the longest wait for a
    # batch to fill: the freshness/throughput trade-off.
    worker_batch_max: int = Field(default=500, ge=1, le=100_000)
    worker_batch_wait_seconds: float = Field(default=0.005, gt=0, le=10)
    # How long Kafka may hold a fetch to gather records (up to 256 KiB): with records trickling
    # in, a fetch per few records costs the worker and the broker more than the records do. Each
    # fetch costs both about a millisecond of CPU even when empty; 0.1 s adds at most that to
    # a profile's freshness (p99 133 ms at 1,000 events/s; goal 250 ms, docs/BENCHMARKS.md).
    worker_fetch_wait_seconds: float = Field(default=0.1, ge=0, le=1.5)
    # Offsets are committed this often (a crash re-reads at most this much; duplicates are skipped).
    worker_commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # Kafka group session: a worker that dies silently is replaced after this long.
    worker_session_timeout_seconds: float = Field(default=10.0, ge=1, le=300)
    # Segments: online KMeans over profile features, learned by one worker, read by all.
    segments_enabled: bool = True
    segment_clusters: int = Field(default=6, ge=2, le=64)
    # One profile update in this many is sent to the learner as a training sample.
    segment_sample_every: int = Field(default=10, ge=1)
    segment_publish_seconds: float = Field(default=30.0, gt=0)
    segment_refresh_seconds: float = Field(default=10.0, gt=0)

    # --- Offer API -----------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8002, ge=0, le=65535)
    # Offer API processes sharing its port on this host (uvicorn workers, restarted if one dies).
    # 1 where an orchestrator runs a replica per core; up to the host's cores on a machine whose
    # cores one event loop cannot use alone. /metrics then reports the sum over the processes.
    api_workers: int = Field(default=1, ge=1, le=64)

    catalogue_path: Path = REPO_ROOT / "deploy" / "catalogue.yaml"
    # Where replicas take the catalogue from. "redis": the versioned catalogue in Redis that the
    # admin API edits and every replica follows (the file seeds it, is published again when its
    # content changes, and is served while Redis is unreachable). "file": the file alone, as
    # each replica reads it (the admin API then only reads).
    catalogue_source: Literal["redis", "file"] = "redis"
    # How often the offer API checks the catalogue for changes (the file's mtime, and the Redis
    # pointer: one GET); 0 = never reload.
    catalogue_refresh_seconds: float = Field(default=2.0, ge=0, le=3600)
    # Consecutive Redis failures that open the circuit breaker (defaults served at once, no
    # Redis call) and how long it stays open before one request probes Redis again.
    redis_breaker_failures: int = Field(default=5, ge=1, le=1000)
    redis_breaker_reset_seconds: float = Field(default=1.0, gt=0, le=300)
    # Decision records held in memory until the API's Kafka producer first connects (then
    # librdkafka's queue holds them, up to the produce timeout); beyond this they are dropped
    # and counted (tracker_offer_decisions_dropped_total), never waited for.
    decision_queue_max: int = Field(default=10_000, ge=1, le=10_000_000)
    # Privacy endpoints (POST /v1/admin/erase, GET /v1/me): token bucket per client address
    # and replica, sustained requests per second and burst.
    privacy_rate_per_second: float = Field(default=1.0, gt=0)
    privacy_rate_burst: int = Field(default=20, ge=1)

    # --- Decisions and learning ----------------------------------------------------
    # Share of visitors (percent) who always get the slot's non-personalised default, to measure
    # lift; sticky by a hash of salt:site:visitor. A new salt draws a new group.
    holdout_percent: float = Field(default=5.0, ge=0, le=100)
    holdout_salt: str = Field(default="v1", min_length=1, max_length=64)

    # Exploration (epsilon-greedy): epsilon decays from the start value to the floor over about
    # explore_decay_updates learned rewards; after a detected drift it starts again from
    # explore_epsilon_restart.
    explore_epsilon_start: float = Field(default=0.1, ge=0, le=1)
    explore_epsilon_min: float = Field(default=0.02, ge=0, le=1)
    explore_decay_updates: int = Field(default=3_000, ge=1)
    explore_epsilon_restart: float = Field(default=0.2, ge=0, le=1)
    # How many impressions the click model's prediction counts for beside an offer's own record
    # with visitors of the same strongest interest (the estimate follows the record as it grows).
    explore_prior_impressions: float = Field(default=5.0, ge=0)
    # Offers are ranked by their estimate this many standard errors up (Wilson bound): an offer
    # with a short record and a fair chance of being better is shown until its record tells.
    # 0 ranks by the estimate alone (exploration then comes from epsilon only).
    explore_optimism_z: float = Field(default=1.5, ge=0)
    # An offer is ruled out for visitors with the same strongest interest once its click rate
    # among them is below the greedy choice's estimate by this many standard errors (Wilson upper
    # bound); it then keeps explore_ruled_out_weight of a plausible offer's exploration share.
    # 0 explores uniformly.
    explore_ceiling_z: float = Field(default=2.0, ge=0)
    # A ruled-out offer's share of exploration, relative to a plausible offer's.
    explore_ruled_out_weight: float = Field(default=0.1, gt=0, le=1)

    # Largest relative score change an offer's margin can make (margin only breaks near-ties).
    offer_margin_weight: float = Field(default=0.02, ge=0, le=0.5)

    # Weight of the conversion value attributed per click (per currency unit); 0 ranks by clicks.
    offer_value_weight: float = Field(default=0.0, ge=0)

    # How long after a decision its impression, click and purchases count towards its reward.
    attribution_window_seconds: float = Field(default=1800.0, gt=0, le=7 * 24 * 3600)
    # Extra wait after the window for feedback events still on their way, before the reward is final.
    attribution_lateness_seconds: float = Field(default=60.0, ge=0, le=24 * 3600)

    # SGD step of the click model, and how often its one trainer publishes a snapshot.
    model_learning_rate: float = Field(default=0.05, gt=0, le=1)
    model_publish_every_updates: int = Field(default=1_000, ge=1)
    model_publish_seconds: float = Field(default=10.0, gt=0)
    # How often each offer API replica checks the click-model pointer in Redis (one GET).
    model_refresh_seconds: float = Field(default=2.0, gt=0, le=3600)

    # --- Demo shop (tracker up) ------------------------------------------------
    # Where the demo shop of `tracker up` listens (its pages embed the browser snippet).
    shop_host: str = "127.0.0.1"
    shop_port: int = Field(default=8000, ge=0, le=65535)
    shop_site_id: str = Field(default="demo", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")

    # --- Security ------------------------------------------------------------
    admin_token: str = PLACEHOLDER_ADMIN_TOKEN
    # HMAC-SHA256 key for signed self-access links (GET /v1/me?...&expires=&sig=, see
    # tracker/serve/access.py); empty = signed links refused (the visitor cookie still works).
    access_signing_key: str = ""

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

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_are_networks(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        if isinstance(value, list | tuple):
            networks = []
            for part in value:
                try:
                    networks.append(str(ipaddress.ip_network(str(part).strip(), strict=False)))
                except ValueError:
                    raise ValueError(
                        f"TRACKER_TRUSTED_PROXIES entry {part!r} is not an IP network like 10.0.0.0/8"
                    ) from None
            return tuple(networks)
        return value

    @model_validator(mode="after")
    def _refuse_unregistered_sites_in_production(self) -> Settings:
        if self.environment == "production" and self.allow_unregistered_sites:
            raise ValueError(
                "TRACKER_ALLOW_UNREGISTERED_SITES is for development and tests; register the sites "
                f"in {self.sites_path} (or TRACKER_SITES) instead"
            )
        return self

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


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``TRACKER_*`` variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue  # unset in the child too: the field's default is None
        # Lists and objects (e.g. TRACKER_SITES) are read back as JSON.
        env[f"TRACKER_{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment; services use this as a dependency."""
    return Settings()
