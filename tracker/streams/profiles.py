"""Write one event into its visitor's profile in Redis: load, fold (pure), store."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from tracker import keys
from tracker.models.profile import Profile, apply_event
from tracker.schema import TrackedEvent
from tracker.settings import Settings


async def load_profile(redis: Redis, site_id: str, visitor_id: str) -> Profile | None:
    raw = await redis.get(keys.profile(site_id, visitor_id))
    return Profile.from_dict(orjson.loads(raw)) if raw else None


async def update_profile(redis: Redis, tracked: TrackedEvent, settings: Settings) -> bool:
    """Fold ``tracked`` into its visitor's profile; False when it was a duplicate.

    Idempotent: the profile remembers recent event ids and is written in one SET,
    so a redelivered event (worker crash before the offset commit) is skipped.
    Each visitor's events arrive on one partition, so one worker writes a profile
    at a time. The TTL is the retention period, refreshed on every write.
    """
    event = tracked.event
    profile = await load_profile(redis, event.site_id, event.visitor_id)
    if profile is None:
        profile = Profile.new(event.site_id, event.visitor_id)
    changed = apply_event(
        profile,
        event,
        received_at=tracked.server.received_at,
        half_life_seconds=settings.interest_half_life_seconds,
        dedupe_window=settings.dedupe_window,
    )
    if changed:
        await redis.set(
            keys.profile(event.site_id, event.visitor_id),
            orjson.dumps(profile.to_dict()),
            ex=settings.profile_retention_seconds,
        )
    return changed
