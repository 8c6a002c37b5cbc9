/**
 * Queue policy: how big a request may be, how batches are cut, which events go when
 * the queue is full, and which tab may send an event.
 */

/**
 * Bytes of one request body. `fetch(keepalive)` and `sendBeacon` share a 64 KiB quota
 * of bytes in flight per page; this leaves room for one request's headers.
 */
export const MAX_BODY_BYTES = 60_000;
/** The collector's limit for one event (tracker/settings.py, max_event_bytes). */
export const MAX_EVENT_BYTES = 32_768;

export interface Item {
  id: string;
  ts: number;
  /** The event serialised as JSON. */
  json: string;
}

/** Bytes of `s` in UTF-8 (what goes on the wire). */
export const utf8Length = (s: string): number => new Blob([s]).size;

/**
 * The envelope of a batch as JSON members, each followed by a comma: the site, and
 * the consent under which it is sent (`recorded`: the visitor's explicit choice, which
 * the collector requires under Do-Not-Track / GPC).
 */
export function envelope(siteId: string, state: string, recorded: boolean): string {
  return `"site_id":${JSON.stringify(siteId)},"consent":${JSON.stringify({ state, recorded })},`;
}

/** The request body of ``POST /v1/events`` for these items, after the `head` from {@link envelope}. */
export function batchBody(items: Item[], sentAt: number, head = ''): string {
  return `{${head}"sent_at":${sentAt},"events":[${items.map((i) => i.json).join(',')}]}`;
}

// ASCII, so its length is its size in bytes.
const OVERHEAD = batchBody([], 1e12).length;

/**
 * Items cut into batches, in order, each with at most `maxEvents` events and a body
 * (without its envelope: subtract it from the bound) of at most `maxBytes` bytes. An
 * item too big for any batch gets one of its own (the caller refuses such items before
 * they are queued).
 */
export function planBatches<T extends Item>(items: T[], maxBytes: number, maxEvents: number): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = OVERHEAD;
  for (const item of items) {
    const size = utf8Length(item.json) + 1; // and its comma
    if (batch.length && (batch.length >= maxEvents || bytes + size > maxBytes)) {
      batches.push(batch);
      batch = [];
      bytes = OVERHEAD;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length) batches.push(batch);
  return batches;
}

/**
 * Whether the tab `me` may send an event owned by `owner`, given when the owner's
 * heartbeat expires (0 when it has none: it was closed or never existed).
 * A tab sends only its own events, and adopts those whose owner is gone.
 */
export function mayAdopt(owner: string, me: string, ownerExpiry: number, now: number): boolean {
  return owner !== me && ownerExpiry <= now;
}
