"""``tracker offers ...``: the catalogue in Redis from a shell (operators with access to Redis).

The same compare-and-set writes as the admin API (:class:`~tracker.serve.catalogue_store.
CatalogueStore`), so the CLI and the API never lose each other's changes; every offer API
replica serves the result within ``TRACKER_CATALOGUE_REFRESH_SECONDS``. ``import`` publishes a
whole file (after a deploy that changed the file and restarted the replicas, which never
overwrite Redis with an unchanged file on their own).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tracker.errors import CatalogueError
from tracker.settings import Settings, get_settings

if TYPE_CHECKING:  # imported where used: `tracker --help` must not load the offer API
    from tracker.models.catalogue import Catalogue
    from tracker.serve.catalogue_store import CatalogueStore, StoredCatalogue

offers_app = typer.Typer(
    help="The offer catalogue in Redis (what every offer API replica serves).", no_args_is_help=True
)


@offers_app.command("list")
def list_offers() -> None:
    """Print the current catalogue version and one line per offer."""
    settings = get_settings()
    stored = _run(settings, lambda store: store.read())
    if stored is None:
        typer.echo(f"no catalogue in Redis yet (the API seeds it from {settings.catalogue_path})")
        return
    typer.echo(f"version {stored.version} ({stored.source}, {len(stored.catalogue.offers)} offers)")
    for offer in stored.catalogue.offers:
        state = "enabled " if offer.enabled else "disabled"
        typer.echo(f"{state} {offer.id:<32} {','.join(offer.slots):<24} {offer.title}")


@offers_app.command("show")
def show(offer_id: str) -> None:
    """Print one offer as JSON."""
    stored = _run(get_settings(), lambda store: store.read())
    offer = stored.catalogue.get(offer_id) if stored is not None else None
    if offer is None:
        raise _fail(f"offer {offer_id!r} is not in the catalogue in Redis")
    typer.echo(json.dumps(offer.model_dump(mode="json"), indent=2))


@offers_app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="One offer, as YAML or JSON.", exists=True, dir_okay=False)],
) -> None:
    """Create an offer, or replace the one with its id."""
    import yaml

    from tracker.models.catalogue import parse_offer

    try:
        data: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
        offer = parse_offer(data)
    except (yaml.YAMLError, CatalogueError) as exc:
        raise _fail(str(exc)) from None
    _change(lambda catalogue: catalogue.with_offer(offer))


@offers_app.command("disable")
def disable(offer_id: str) -> None:
    """Disable an offer (kept in the catalogue, never shown)."""
    _change(lambda catalogue: catalogue.with_enabled(offer_id, False))


@offers_app.command("enable")
def enable(offer_id: str) -> None:
    """Enable an offer again."""
    _change(lambda catalogue: catalogue.with_enabled(offer_id, True))


@offers_app.command("import")
def import_file(
    file: Annotated[
        Path | None, typer.Argument(help="Catalogue file; default TRACKER_CATALOGUE_PATH.", dir_okay=False)
    ] = None,
) -> None:
    """Publish a whole catalogue file, replacing the catalogue in Redis (admin edits included)."""
    from tracker.models.catalogue import load_catalogue

    settings = get_settings()
    _writable(settings)
    try:
        catalogue = load_catalogue(file or settings.catalogue_path)
    except CatalogueError as exc:
        raise _fail(str(exc)) from None
    version = _run(settings, lambda store: store.publish_file(catalogue, source="cli"))
    typer.echo(f"catalogue version {version}")


def _writable(settings: Settings) -> None:
    if settings.catalogue_source != "redis":
        raise _fail(
            "TRACKER_CATALOGUE_SOURCE is 'file': the offer API serves the file as is; edit "
            f"{settings.catalogue_path} instead"
        )


def _change(mutate: Callable[[Catalogue], Catalogue]) -> None:
    from tracker.models.catalogue import load_catalogue

    settings = get_settings()
    _writable(settings)

    async def change(store: CatalogueStore) -> StoredCatalogue:
        # While Redis holds no catalogue (no API started yet), the change applies to the file.
        fallback = await asyncio.to_thread(load_catalogue, settings.catalogue_path)
        return await store.change(mutate, fallback=fallback, source="cli")

    stored = _run(settings, change)
    typer.echo(f"catalogue version {stored.version} (was {stored.previous})")


def _run(settings: Settings, action: Callable[[CatalogueStore], Any]) -> Any:
    from redis.exceptions import RedisError

    from tracker.redisconn import background_client
    from tracker.serve.catalogue_store import CatalogueConflict, CatalogueStore

    async def run() -> Any:
        redis = background_client(settings.redis_url)
        try:
            return await action(CatalogueStore(redis, settings.worker_app_id))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except CatalogueError as exc:
        raise _fail(str(exc)) from None
    except CatalogueConflict as exc:
        raise _fail(str(exc)) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise _fail(
            f"cannot use the catalogue in Redis at {settings.redis_url}: {exc or type(exc).__name__}"
        ) from None


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)
