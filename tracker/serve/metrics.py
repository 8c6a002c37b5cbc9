"""Prometheus metrics of the offer API, and the ASGI middleware that times every endpoint.

Each app owns its registry instead of using the process-wide default, so that
tests (and anything else) can build many apps in one process without
"Duplicated timeseries" errors. When several processes share the API's port
(``TRACKER_API_WORKERS``), each process's app writes its figures where every
process's ``/metrics`` sums them (:mod:`tracker.serve.multiprocess_metrics`).
Labels never carry visitor or site ids: endpoints are labelled by their
route template (``/v1/offers``), never by the URL.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.http_protocol import received_at
from tracker.serve import multiprocess_metrics
from tracker.serve.breaker import STATE_VALUES, State

Outcome = Literal["personalised", "holdout", "default", "fallback", "empty"]
# personalised: the policy chose for a visitor with a profile; holdout: control group, got the
# default; default: anything else the policy served (a stranger, exploration, nothing known that
# matters); fallback: Redis unavailable or profile unreadable; empty: nothing can fill the slot.
OUTCOMES: tuple[Outcome, ...] = ("personalised", "holdout", "default", "fallback", "empty")
DROP_REASONS = ("queue_full", "kafka_error", "shutdown")
REDIS_ERRORS = ("timeout", "connection", "error", "circuit_open")

# The API aims at single-digit milliseconds; the top buckets catch Redis timeouts.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Info gauges: 1 for the version served. Several processes on one port report them per pid.
CATALOGUE_INFO = "tracker_offer_catalogue_info"
MODEL_INFO = "tracker_offer_model_info"
INFO_DOCUMENTATION = {
    CATALOGUE_INFO: "1 for the catalogue version (content hash) this replica serves.",
    MODEL_INFO: "1 for the click-model version this replica decides with (0000000000-...: the untrained "
    "priors, no snapshot published yet).",
}
UNMATCHED = "unmatched"  # handler label of requests no route matched (404s), so probes cannot add series
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class OfferMetrics:
    """The counters and histograms one offer API app reports at ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # Several processes on one port: the shared directory; their gauges say how to combine.
        self.shared_dir = multiprocess_metrics.multiprocess_dir()
        shared = self.shared_dir is not None
        if process_collectors and not shared:  # shared: /proc of each worker, at scrape time
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self._worker_versions = (
            multiprocess_metrics.WorkerVersions(self.shared_dir, INFO_DOCUMENTATION) if shared else None
        )
        r = self.registry
        # --- every endpoint -------------------------------------------------
        self.http_requests = Counter(
            "tracker_offer_http_requests",
            "HTTP requests answered by the offer API, by route template, method and status code.",
            ["handler", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "tracker_offer_http_request_duration_seconds",
            "Time from reading a request's first bytes to handing the last byte of its answer to "
            "the socket (waits for the event loop included), by route template.",
            ["handler"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # --- decisions ------------------------------------------------------
        self.requests = Counter(
            "tracker_offer_requests",
            "Offer decisions by outcome: personalised, holdout, default, fallback (Redis unavailable "
            "or profile unreadable), empty (nothing can fill the slot).",
            ["outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "tracker_offer_request_duration_seconds",
            "Time to decide an offer, from handler entry to response built (HTTP parsing excluded).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions_sent = Counter(
            "tracker_offer_decisions_sent", "Decision records acknowledged by Kafka.", registry=r
        )
        self.decisions_dropped = Counter(
            "tracker_offer_decisions_dropped",
            "Decision records not written to Kafka (the response was still served), by reason.",
            ["reason"],
            registry=r,
        )
        self.decision_queue_depth = Gauge(
            "tracker_offer_decision_queue_depth",
            "Decision records waiting in memory for Kafka (bounded by TRACKER_DECISION_QUEUE_MAX).",
            multiprocess_mode="livesum",
            registry=r,
        )
        # --- Redis ----------------------------------------------------------
        self.redis_duration = Histogram(
            "tracker_offer_redis_duration_seconds",
            "Time of the one Redis round trip per offer request (profile and frequency-cap counts), "
            "failures included.",
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "tracker_offer_redis_errors",
            "Visitor reads that did not reach Redis or got no answer, by kind "
            "(circuit_open: skipped because the breaker is open).",
            ["kind"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "tracker_offer_redis_breaker_state",
            "Circuit breaker in front of Redis: 0 closed (healthy), 1 half-open (probing), 2 open.",
            multiprocess_mode="livemax",  # the least healthy process
            registry=r,
        )
        self.breaker_opened = Counter(
            "tracker_offer_redis_breaker_opened",
            "Times the circuit breaker in front of Redis opened.",
            registry=r,
        )
        # --- catalogue ------------------------------------------------------
        catalogue_doc = INFO_DOCUMENTATION[CATALOGUE_INFO]
        self.catalogue_info = Gauge(CATALOGUE_INFO, catalogue_doc, ["version"], registry=r)
        self.catalogue_offers = Gauge(
            "tracker_offer_catalogue_offers",
            "Offers in the catalogue this replica serves.",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.catalogue_loaded_at = Gauge(
            "tracker_offer_catalogue_loaded_timestamp_seconds",
            "When this replica loaded the catalogue it serves (Unix time).",
            multiprocess_mode="livemin",  # the process serving the oldest
            registry=r,
        )
        self.catalogue_reload_errors = Counter(
            "tracker_offer_catalogue_reload_errors",
            "Catalogue reloads refused (unreadable or invalid file); the last good one is kept.",
            registry=r,
        )
        # --- click model ----------------------------------------------------
        self.model_info = Gauge(MODEL_INFO, INFO_DOCUMENTATION[MODEL_INFO], ["version"], registry=r)
        self.model_updates = Gauge(
            "tracker_offer_model_updates",
            "Rewards the click model this replica decides with has learned from.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "tracker_offer_model_loaded_timestamp_seconds",
            "When this replica loaded the click model it decides with (Unix time).",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.model_reload_errors = Counter(
            "tracker_offer_model_reload_errors",
            "Click-model snapshots that could not be read or were refused (missing, malformed, "
            "altered, other layout); the last good model is kept.",
            registry=r,
        )
        # --- frequency caps -------------------------------------------------
        self.caps_unreadable = Counter(
            "tracker_offer_caps_unreadable",
            "Requests whose stored frequency-cap counts could not be read (another layout, damaged): "
            "decided without caps.",
            registry=r,
        )
        # --- privacy --------------------------------------------------------
        self.erasures = Counter(
            "tracker_offer_erasure_requests",
            "Erasure requests, by result (accepted: acknowledged by Kafka; unavailable: Kafka did not ack).",
            ["result"],
            registry=r,
        )
        self.self_access = Counter(
            "tracker_offer_self_access_requests",
            "Visitor self-access requests (GET /v1/me), by how they were authorised or refused.",
            ["result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tracker_offer_rate_limited",
            "Requests refused with 429 by the in-process rate limit, by route template.",
            ["handler"],
            registry=r,
        )
        # Export every series from the start so that rate() and alerts see zeros, not gaps.
        self._outcome_children = {outcome: self.requests.labels(outcome=outcome) for outcome in OUTCOMES}
        for reason in DROP_REASONS:
            self.decisions_dropped.labels(reason=reason)
        for kind in REDIS_ERRORS:
            self.redis_errors.labels(kind=kind)
        for result in ("accepted", "unavailable"):
            self.erasures.labels(result=result)
        for result in ("signed_link", "cookie", "denied"):
            self.self_access.labels(result=result)
        for method, handler in (("GET", "/v1/offers"), ("GET", "/v1/me"), ("POST", "/v1/admin/erase")):
            for status in ("200", "202", "422", "500", "503"):
                self.http_requests.labels(handler=handler, method=method, status=status)
            self.http_duration.labels(handler=handler)
        self.breaker_state.set(0)

    def outcome(self, outcome: Outcome) -> Any:
        """The counter child of one outcome (looked up once: ``labels()`` costs on a hot path)."""
        return self._outcome_children[outcome]

    def exposition(self) -> bytes:
        """The text ``/metrics`` answers: this app's registry, or every process's figures."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        return multiprocess_metrics.exposition(self.shared_dir)

    def _serves(self, info: Gauge, name: str, version: str) -> None:
        if self._worker_versions is not None:
            self._worker_versions.set(name, version)  # removing a shared series is impossible
            return
        info.clear()
        info.labels(version=version).set(1)

    def model_loaded(self, version: str, updates: int) -> None:
        self._serves(self.model_info, MODEL_INFO, version)
        self.model_updates.set(updates)
        self.model_loaded_at.set(time.time())

    def breaker_changed(self, state: State) -> None:
        self.breaker_state.set(STATE_VALUES[state])
        if state == "open":
            self.breaker_opened.inc()

    def catalogue_loaded(self, offers: int, version: str) -> None:
        self._serves(self.catalogue_info, CATALOGUE_INFO, version)
        self.catalogue_offers.set(offers)
        self.catalogue_loaded_at.set(time.time())


class HttpMetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body copy, unlike ``BaseHTTPMiddleware``)."""

    def __init__(self, app: ASGIApp, metrics: OfferMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = received_at(scope)  # waits for this process's event loop count too
        status = 500  # what the client sees if the app raises before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            handler = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (handler, method, status)
            children = self._children.get(key)
            if children is None:  # label values are bounded: route templates, methods, statuses
                children = self._children[key] = (
                    self.metrics.http_requests.labels(handler=handler, method=method, status=str(status)),
                    self.metrics.http_duration.labels(handler=handler),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
