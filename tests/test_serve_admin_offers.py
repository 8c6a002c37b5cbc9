"""The catalogue's admin API and its Redis copy: create, update, disable, list; auth and
validation errors; compare-and-set conflicts; and changes reaching every replica without restart."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from redis.asyncio import Redis
from serve_support import closed_port, offer_params, running, visitor

from tracker import keys
from tracker.serve import create_app
from tracker.serve.catalogue_store import SNAPSHOT_SCHEMA, SNAPSHOT_SCHEMA_VERSION
from tracker.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "a-long-random-admin-token-for-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
OFFERS = "/v1/admin/offers"
SIDE = "side-bar"


def catalogue_doc(title: str = "Welcome") -> dict:
    return {
        "version": 1,
        "offers": [
            {"id": "welcome", "slots": ["home-hero"], "title": title, "link": "/", "default": True},
            {"id": "shoes", "slots": ["home-hero"], "categories": ["shoes"], "title": "Shoes", "link": "/s"},
        ],
    }


def side_offer(title: str = "Side deal", **extra: object) -> dict:
    return {"id": "side-deal", "slots": [SIDE], "title": title, "link": "/deal", "default": True, **extra}


@pytest.fixture
def admin_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Its own catalogue namespace in the session's Redis, a seed file, a fast refresh."""
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue_doc()))
    return settings.model_copy(
        update={
            "worker_app_id": f"cat-{uuid.uuid4().hex[:10]}",
            "catalogue_path": path,
            "catalogue_refresh_seconds": 0.05,
            "admin_token": TOKEN,
            "privacy_rate_burst": 1000,
        }
    )


async def served(client: httpx.AsyncClient, site_id: str, slot: str) -> str | None:
    body = (await client.get("/v1/offers", params=offer_params(site_id, visitor(site_id), slot))).json()
    return body["offer"]["title"] if body.get("offer") else None


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - polling what replicas serve is the test
            await asyncio.sleep(0.05)


async def test_create_update_disable_list_round_trip(admin_settings: Settings, site_id: str) -> None:
    app = create_app(admin_settings)
    async with running(app) as client:
        listed = await client.get(OFFERS, headers=ADMIN)
        assert listed.status_code == 200
        seed = listed.json()
        assert seed["source"] == "redis"  # the file seeded Redis at start-up
        assert [offer["id"] for offer in seed["offers"]] == ["welcome", "shoes"]
        assert seed["version"] == seed["served_version"] == app.state.catalogue.version
        assert listed.headers["etag"] == f'"{seed["version"]}"'
        assert await served(client, site_id, SIDE) is None

        created = await client.post(OFFERS, json=side_offer(), headers=ADMIN)
        assert created.status_code == 201, created.text
        assert created.json()["previous"] == seed["version"]
        assert created.json()["offer"]["title"] == "Side deal"
        # This replica serves the change when the answer arrives: no restart, no wait.
        assert await served(client, site_id, SIDE) == "Side deal"

        one = await client.get(f"{OFFERS}/side-deal", headers=ADMIN)
        assert one.json()["offer"]["link"] == "/deal"
        assert one.json()["version"] == created.json()["version"]

        updated = await client.put(f"{OFFERS}/side-deal", json=side_offer("Better deal"), headers=ADMIN)
        assert updated.status_code == 200, updated.text
        assert updated.json()["previous"] == created.json()["version"]
        assert await served(client, site_id, SIDE) == "Better deal"

        disabled = await client.post(f"{OFFERS}/side-deal/disable", headers=ADMIN)
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["offer"]["enabled"] is False
        assert await served(client, site_id, SIDE) is None

        enabled = await client.post(f"{OFFERS}/side-deal/enable", headers=ADMIN)
        assert enabled.json()["offer"]["enabled"] is True
        assert await served(client, site_id, SIDE) == "Better deal"
        # Enabling an enabled offer changes nothing and publishes nothing.
        again = await client.post(f"{OFFERS}/side-deal/enable", headers=ADMIN)
        assert again.json()["version"] == enabled.json()["version"]

        final = (await client.get(OFFERS, headers=ADMIN)).json()
        ready = (await client.get("/readyz")).json()
    assert [offer["id"] for offer in final["offers"]] == ["welcome", "shoes", "side-deal"]
    assert final["version"] == enabled.json()["version"] == ready["catalogue_version"]

    redis = Redis.from_url(admin_settings.redis_url)
    try:
        app_id = admin_settings.worker_app_id
        pointer = (await redis.get(keys.catalogue_current(app_id))).decode()
        snapshot = orjson.loads(await redis.get(keys.catalogue(app_id, pointer)))
        replaced_ttl = await redis.ttl(keys.catalogue(app_id, seed["version"]))
        current_ttl = await redis.ttl(keys.catalogue(app_id, pointer))
    finally:
        await redis.aclose()
    assert pointer == final["version"]
    assert snapshot["schema"] == SNAPSHOT_SCHEMA and snapshot["schema_version"] == SNAPSHOT_SCHEMA_VERSION
    assert snapshot["source"] == "admin" and snapshot["version"] == pointer
    assert [offer["id"] for offer in snapshot["catalogue"]["offers"]] == ["welcome", "shoes", "side-deal"]
    assert replaced_ttl > 0  # history expires
    assert current_ttl == -1  # the served version never does


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
async def test_admin_routes_need_the_token(admin_settings: Settings, headers: dict[str, str]) -> None:
    app = create_app(admin_settings)
    async with running(app) as client:
        answers = [
            await client.get(OFFERS, headers=headers),
            await client.get(f"{OFFERS}/welcome", headers=headers),
            await client.post(OFFERS, json=side_offer(), headers=headers),
            await client.put(f"{OFFERS}/welcome", json=side_offer(), headers=headers),
            await client.post(f"{OFFERS}/welcome/disable", headers=headers),
        ]
        listed = (await client.get(OFFERS, headers=ADMIN)).json()
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in answer.json()["detail"]
    assert [offer["id"] for offer in listed["offers"]] == ["welcome", "shoes"]  # nothing changed


async def test_invalid_changes_are_refused_naming_offer_and_field(admin_settings: Settings) -> None:
    app = create_app(admin_settings)
    async with running(app) as client:
        before = app.state.catalogue.version
        bad_fields = await client.post(OFFERS, json=side_offer(margin=2, categoris=["shoes"]), headers=ADMIN)
        rule = await client.post(OFFERS, json=side_offer(require_interest=True), headers=ADMIN)
        no_default = await client.post(OFFERS, json=side_offer(default=False), headers=ADMIN)
        last_default = await client.post(f"{OFFERS}/welcome/disable", headers=ADMIN)
        renamed = await client.put(f"{OFFERS}/welcome", json=side_offer(), headers=ADMIN)
        not_json = await client.post(OFFERS, content=b"{nope", headers=ADMIN)
        not_object = await client.post(OFFERS, json=[1, 2], headers=ADMIN)
        duplicate = await client.post(OFFERS, json=catalogue_doc()["offers"][0], headers=ADMIN)
        missing_put = await client.put(f"{OFFERS}/nope", json=side_offer(id="nope"), headers=ADMIN)
        missing_disable = await client.post(f"{OFFERS}/nope/disable", headers=ADMIN)
        missing_get = await client.get(f"{OFFERS}/nope", headers=ADMIN)
        bad_id = await client.get(f"{OFFERS}/Not%20An%20Id", headers=ADMIN)
        too_big = await client.post(OFFERS, json=side_offer(body="x" * 70_000), headers=ADMIN)
        after = app.state.catalogue.version
    assert bad_fields.status_code == 422
    detail = bad_fields.json()["detail"]
    assert "offer 'side-deal', field 'margin': Input should be less than or equal to 1" in detail
    assert "field 'categoris': Extra inputs are not permitted" in detail
    assert rule.status_code == 422 and "require_interest needs categories" in rule.json()["detail"]
    assert no_default.status_code == 422
    assert f"slot '{SIDE}' has no enabled, undated default offer" in no_default.json()["detail"]
    assert last_default.status_code == 422
    assert "slot 'home-hero' has no enabled, undated default offer" in last_default.json()["detail"]
    assert renamed.status_code == 422 and "cannot be renamed" in renamed.json()["detail"]
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"]
    assert not_object.status_code == 422 and "valid dictionary" in not_object.json()["detail"]
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]
    assert missing_put.status_code == missing_disable.status_code == missing_get.status_code == 404
    assert "'nope' is not in the catalogue" in missing_put.json()["detail"]
    assert bad_id.status_code == 422
    assert too_big.status_code == 413
    assert after == before  # nothing refused was published


async def test_if_match_refuses_a_stale_change_and_racing_admins_lose_nothing(
    admin_settings: Settings,
) -> None:
    first, second = create_app(admin_settings), create_app(admin_settings)
    async with running(first) as a, running(second) as b:
        version = (await a.get(OFFERS, headers=ADMIN)).json()["version"]
        fresh = await a.post(OFFERS, json=side_offer(), headers={**ADMIN, "If-Match": f'"{version}"'})
        assert fresh.status_code == 201, fresh.text
        stale = await b.put(
            f"{OFFERS}/side-deal", json=side_offer("Stale"), headers={**ADMIN, "If-Match": f'"{version}"'}
        )
        assert stale.status_code == 412
        assert stale.headers["etag"] == f'"{fresh.json()["version"]}"'
        assert "read it again and retry" in stale.json()["detail"]

        # Twelve admins on two replicas create offers at once: every one lands.
        def offer(n: int) -> dict:
            return {
                "id": f"race-{n}",
                "slots": ["home-hero"],
                "categories": ["shoes"],
                "title": f"R{n}",
                "link": "/",
            }

        answers = await asyncio.gather(
            *((a if n % 2 else b).post(OFFERS, json=offer(n), headers=ADMIN) for n in range(12))
        )
        assert [answer.status_code for answer in answers] == [201] * 12, [a.text for a in answers]
        listed_a = (await a.get(OFFERS, headers=ADMIN)).json()
        listed_b = (await b.get(OFFERS, headers=ADMIN)).json()
    ids = {offer["id"] for offer in listed_a["offers"]}
    assert {f"race-{n}" for n in range(12)} <= ids
    assert listed_a["version"] == listed_b["version"]


async def test_a_change_reaches_every_replica_without_restart(admin_settings: Settings, site_id: str) -> None:
    other_file = admin_settings.catalogue_path.with_name("other.yaml")
    other_file.write_text(yaml.safe_dump(catalogue_doc("Welcome from another file")))
    first = create_app(admin_settings)
    # A replica started later with another file: Redis, seeded by the first, wins over its file.
    second = create_app(admin_settings.model_copy(update={"catalogue_path": other_file}))
    async with running(first) as a, running(second) as b:
        assert second.state.catalogue.version == first.state.catalogue.version
        assert await served(b, site_id, "home-hero") == "Welcome"

        changed = await a.put(f"{OFFERS}/welcome", json=catalogue_doc("Hello")["offers"][0], headers=ADMIN)
        assert changed.status_code == 200, changed.text
        await eventually(lambda: _is(served(b, site_id, "home-hero"), "Hello"))
        created = await a.post(OFFERS, json=side_offer(), headers=ADMIN)
        assert created.status_code == 201
        await eventually(lambda: _is(served(b, site_id, SIDE), "Side deal"))
        # Reads go to Redis: replica b lists what a just wrote, whatever b serves yet.
        assert (await b.get(OFFERS, headers=ADMIN)).json()["version"] == created.json()["version"]
        await eventually(lambda: _is(_version(second), created.json()["version"]))


def rewrite(path: Path, doc: dict, *, bump: int) -> None:
    """Write, then move the mtime forward: coarse file-system clocks must not hide the change."""
    path.write_text(yaml.safe_dump(doc))
    later = time.time_ns() + bump * 1_000_000_000
    os.utime(path, ns=(later, later))


async def test_a_file_change_is_published_once_and_admin_edits_made_since_stay(
    admin_settings: Settings,
) -> None:
    file_a = admin_settings.catalogue_path
    file_b = file_a.with_name("b.yaml")  # another pod's copy of the same ConfigMap
    file_b.write_text(file_a.read_text())
    first = create_app(admin_settings)
    second = create_app(admin_settings.model_copy(update={"catalogue_path": file_b}))
    async with running(first) as a, running(second):

        async def title() -> str:
            return (await a.get(f"{OFFERS}/welcome", headers=ADMIN)).json()["offer"]["title"]

        rewrite(file_a, catalogue_doc("From the file"), bump=1)
        await eventually(lambda: _is(title(), "From the file"))  # the file won
        edit = await a.put(f"{OFFERS}/welcome", json=catalogue_doc("Admin edit")["offers"][0], headers=ADMIN)
        assert edit.status_code == 200
        # The second pod sees the same file change late: already published, so the edit stays.
        rewrite(file_b, catalogue_doc("From the file"), bump=1)
        await second.state.catalogue.refresh()
        assert await title() == "Admin edit"
        assert second.state.catalogue.version == edit.json()["version"]


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _version(app: object) -> str:
    return app.state.catalogue.version  # type: ignore[attr-defined]


async def test_lost_catalogue_is_published_again_by_the_replicas(admin_settings: Settings) -> None:
    app = create_app(admin_settings)
    async with running(app) as client:
        created = await client.post(OFFERS, json=side_offer(), headers=ADMIN)
        redis = Redis.from_url(admin_settings.redis_url)
        try:
            # Redis lost its data (no persistence): the replicas republish what they serve (with
            # the admin's change), not their file.
            pointer = keys.catalogue_current(admin_settings.worker_app_id)
            await redis.delete(pointer)
            await eventually(lambda: _exists(redis, pointer))
            restored = (await redis.get(pointer)).decode()
        finally:
            await redis.aclose()
    assert restored == created.json()["version"]


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def test_redis_down_at_start_serves_the_file_and_refuses_changes(
    admin_settings: Settings, site_id: str
) -> None:
    down = admin_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    app = create_app(down)
    async with running(app) as client:
        title = await served(client, site_id, "home-hero")
        write = await client.post(OFFERS, json=side_offer(), headers=ADMIN)
        listed = await client.get(OFFERS, headers=ADMIN)
    assert title == "Welcome"
    assert write.status_code == 503 and "retry-after" in write.headers
    assert listed.status_code == 503


async def test_file_source_serves_the_file_and_refuses_changes(admin_settings: Settings) -> None:
    app = create_app(admin_settings.model_copy(update={"catalogue_source": "file"}))
    async with running(app) as client:
        listed = await client.get(OFFERS, headers=ADMIN)
        write = await client.post(f"{OFFERS}/shoes/disable", headers=ADMIN)
    assert listed.status_code == 200 and listed.json()["source"] == "file"
    assert write.status_code == 409 and "edit the file instead" in write.json()["detail"]
    redis = Redis.from_url(admin_settings.redis_url)
    try:
        assert not await redis.exists(keys.catalogue_current(admin_settings.worker_app_id))
    finally:
        await redis.aclose()


async def test_admin_routes_are_in_the_openapi_schema(admin_settings: Settings) -> None:
    spec = create_app(admin_settings).openapi()
    assert set(spec["paths"][OFFERS]) == {"get", "post"}
    assert set(spec["paths"][f"{OFFERS}/{{offer_id}}"]) == {"get", "put"}
    body = spec["paths"][OFFERS]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"id", "slots", "title", "link"} <= set(body["required"])
    assert body["properties"]["caps"]["anyOf"][0]["properties"].keys() == {"per_session", "per_day"}


def test_cli_lists_imports_and_disables(
    admin_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tracker.cli import app as cli
    from tracker.settings import get_settings

    for name, value in {
        "TRACKER_REDIS_URL": admin_settings.redis_url,
        "TRACKER_WORKER_APP_ID": admin_settings.worker_app_id,
        "TRACKER_CATALOGUE_PATH": str(admin_settings.catalogue_path),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    offer = tmp_path / "offer.yaml"
    offer.write_text(yaml.safe_dump(side_offer()))
    runner = CliRunner()
    try:
        empty = runner.invoke(cli, ["offers", "list"])
        imported = runner.invoke(cli, ["offers", "import"])
        put = runner.invoke(cli, ["offers", "put", str(offer)])
        disabled = runner.invoke(cli, ["offers", "disable", "shoes"])
        missing = runner.invoke(cli, ["offers", "disable", "nope"])
        listed = runner.invoke(cli, ["offers", "list"])
    finally:
        get_settings.cache_clear()
    assert "no catalogue in Redis yet" in empty.output
    assert imported.exit_code == 0 and imported.output.startswith("catalogue version ")
    assert put.exit_code == 0 and disabled.exit_code == 0, put.output + disabled.output
    assert missing.exit_code == 1 and "'nope' is not in the catalogue" in missing.output
    lines = listed.output.splitlines()
    assert lines[0].startswith(f"version {disabled.output.split()[2]} (cli, 3 offers)")
    assert [line.split()[:2] for line in lines[1:]] == [
        ["enabled", "welcome"],
        ["disabled", "shoes"],
        ["enabled", "side-deal"],
    ]


def test_snapshots_round_trip_and_refuse_altered_or_foreign_data() -> None:
    from serve_support import small_catalogue

    from tracker.errors import CatalogueError
    from tracker.serve.catalogue_store import StoredCatalogue, decode_snapshot, encode_snapshot
    from tracker.serve.snapshots import catalogue_version

    catalogue = small_catalogue()
    version = catalogue_version(catalogue)
    stored = StoredCatalogue(version, catalogue, previous="0123456789ab", published_at=5, source="admin")
    raw = encode_snapshot(stored)
    assert decode_snapshot(raw, version) == stored
    data = orjson.loads(raw)
    altered = data | {"catalogue": data["catalogue"] | {"offers": data["catalogue"]["offers"][:1]}}
    for bad, message in [
        (b"not json", "is not JSON"),
        (orjson.dumps(data | {"schema": "other"}), "is not a tracker.catalogue snapshot"),
        (orjson.dumps(data | {"schema_version": 2}), "has schema_version 2"),
        (orjson.dumps(altered), "altered or mislabelled"),
    ]:
        with pytest.raises(CatalogueError, match=message):
            decode_snapshot(bad, version)
