"""The offer API's in-process catalogue: reloaded when the file changes, last good kept on errors.

Each test runs with the file as the only source (``TRACKER_CATALOGUE_SOURCE=file``) and with
Redis's catalogue (the default), where a changed file is published to Redis and served from there.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from serve_support import metric_value, offer_params, running, visitor

from tracker.serve import create_app
from tracker.serve.snapshots import VersionedCache
from tracker.settings import Settings

pytestmark = pytest.mark.integration


def catalogue_doc(default_id: str, title: str = "Welcome") -> dict:
    return {
        "version": 1,
        "offers": [{"id": default_id, "slots": ["home-hero"], "title": title, "link": "/", "default": True}],
    }


def write(path: Path, doc: dict | str, *, bump: int) -> None:
    """Write, then move the mtime forward: coarse file-system clocks must not hide the change."""
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    later = time.time_ns() + bump * 1_000_000_000
    os.utime(path, ns=(later, later))


SOURCES = pytest.mark.parametrize("source", ["redis", "file"])


def own(settings: Settings, source: str, path: Path, **update: object) -> Settings:
    """The file at ``path``, from ``source``; a catalogue namespace in Redis of the test's own."""
    return settings.model_copy(
        update={
            "catalogue_source": source,
            "catalogue_path": path,
            "worker_app_id": f"cat-{uuid.uuid4().hex[:10]}",
            **update,
        }
    )


def catalogue_versions(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "tracker_offer_catalogue_info":
            return {s.labels["version"]: s.value for s in family.samples}
    return {}


@SOURCES
async def test_catalogue_edit_is_served_without_restart(
    settings: Settings, site_id: str, tmp_path: Path, source: str
) -> None:
    path = tmp_path / "catalogue.yaml"
    write(path, catalogue_doc("welcome-a"), bump=1)
    app = create_app(own(settings, source, path, catalogue_refresh_seconds=0.05))
    async with running(app) as client:

        async def offer_id() -> str:
            response = await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))
            return response.json()["offer"]["id"]

        assert await offer_id() == "welcome-a"
        first = catalogue_versions((await client.get("/metrics")).text)
        version_a = app.state.catalogue.version
        write(path, catalogue_doc("welcome-b"), bump=2)
        async with asyncio.timeout(10):
            while await offer_id() != "welcome-b":  # noqa: ASYNC110 - polling the API is the test
                await asyncio.sleep(0.05)
        text = (await client.get("/metrics")).text
        ready = (await client.get("/readyz")).json()
    assert first == {version_a: 1.0}
    assert catalogue_versions(text) == {app.state.catalogue.version: 1.0}  # the old version is gone
    assert app.state.catalogue.version != version_a
    assert ready["catalogue_version"] == app.state.catalogue.version
    assert metric_value(text, "tracker_offer_catalogue_offers") == 1


@SOURCES
async def test_broken_edit_keeps_the_last_good_catalogue(
    settings: Settings, site_id: str, tmp_path: Path, source: str
) -> None:
    path = tmp_path / "catalogue.yaml"
    write(path, catalogue_doc("welcome-a"), bump=1)
    app = create_app(own(settings, source, path, catalogue_refresh_seconds=0))
    async with running(app) as client:
        cache: VersionedCache = app.state.catalogue
        good = cache.version
        write(path, "offers: [this is: not, valid", bump=2)
        assert await cache.refresh() is False
        # A valid YAML document that breaks a catalogue rule (a slot without a default).
        write(path, {"offers": [{"id": "x", "slots": ["home-hero"], "title": "X", "link": "/"}]}, bump=3)
        assert await cache.refresh() is False
        body = (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id)))).json()
        text = (await client.get("/metrics")).text
        write(path, catalogue_doc("welcome-c"), bump=4)
        assert await cache.refresh() is True
        assert await cache.refresh() is False  # unchanged file: no reload
    assert body["offer"]["id"] == "welcome-a"
    assert cache.version != good
    assert metric_value(text, "tracker_offer_catalogue_reload_errors_total") == 2
    assert catalogue_versions(text) == {good: 1.0}


@SOURCES
async def test_comment_only_edit_keeps_the_version(settings: Settings, tmp_path: Path, source: str) -> None:
    path = tmp_path / "catalogue.yaml"
    write(path, catalogue_doc("welcome-a"), bump=1)
    app = create_app(own(settings, source, path, catalogue_refresh_seconds=0))
    async with running(app):
        before = app.state.catalogue.version
        write(path, "# a marketer's note\n" + yaml.safe_dump(catalogue_doc("welcome-a")), bump=2)
        # The file changed: it is read again (file), or read and found equal: nothing published (redis).
        assert await app.state.catalogue.refresh() is (source == "file")
        assert app.state.catalogue.version == before  # the same catalogue


@SOURCES
async def test_invalid_catalogue_at_start_up_stops_the_api(
    settings: Settings, tmp_path: Path, source: str
) -> None:
    path = tmp_path / "catalogue.yaml"
    write(path, {"offers": [{"id": "x", "slots": ["home-hero"], "title": "X", "link": "/"}]}, bump=1)
    app = create_app(own(settings, source, path))
    with pytest.raises(ValueError, match="slot 'home-hero' has no enabled"):
        async with running(app):
            pass
