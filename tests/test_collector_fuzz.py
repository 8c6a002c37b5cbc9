"""Fuzzing the collector's OpenAPI document with schemathesis: no input makes it answer 5xx.

The collector runs behind its real server on the session's Kafka, so a 503 would count
too: Kafka is up, nothing may fail. ``POST /v1/events`` documents its body (the batch
and the ``Event`` union of ``tracker/schema.py``), so the generated requests reach
per-event validation, not only the body checks. The example count is bounded to keep
the run short.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from collector_support import serving
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tracker.collect.app import create_app
from tracker.settings import Settings

pytestmark = pytest.mark.integration

# Any well-formed site id: generated events name sites nobody registered.
OPEN = {"allow_unregistered_sites": True, "rate_limit_per_second": 0.0}
schema = schemathesis.openapi.from_dict(create_app(Settings(environment="test", **OPEN)).openapi())


@pytest.fixture(scope="module")
def collector_url(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app_settings = Settings(environment="test", kafka_bootstrap=stack.kafka_bootstrap, **OPEN)
    with serving(create_app(app_settings), app_settings) as url:
        yield url


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_makes_the_collector_fail(case: schemathesis.Case, collector_url: str) -> None:
    case.call_and_validate(base_url=collector_url, checks=[not_a_server_error])


def test_the_events_body_is_documented_for_the_fuzzer() -> None:
    document = create_app(Settings(environment="test")).openapi()
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    assert "text/plain" in body
    batch = document["components"]["schemas"]["EventBatch"]
    assert batch["properties"]["events"]["items"] == {"$ref": "#/components/schemas/Event"}
    assert {"PageView", "Purchase", "BatchConsent"} <= set(document["components"]["schemas"])
