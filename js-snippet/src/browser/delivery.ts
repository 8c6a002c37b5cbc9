/**
 * Delivery: the persistent outbox and how it is sent.
 *
 * Each event is one localStorage key (`trk:q:<event id>`), so tabs never overwrite
 * each other's writes. Each tab sends only the events it owns; events whose tab is
 * gone (its heartbeat key removed on exit, or expired) are adopted by the next tab
 * that looks, which waits a moment and re-reads before sending, so that two tabs
 * adopting at once agree on one owner. One request is in flight per tab at a time,
 * under the 64 KiB keepalive quota. Failures back off; on page exit what is left goes
 * by `sendBeacon`, but only while the collector is known to be healthy: otherwise it
 * stays queued for the next page.
 */

import type { Config } from '../core/config';
import type { TrackedEvent } from '../core/events';
import { type Item, MAX_BODY_BYTES, MAX_EVENT_BYTES, batchBody, envelope, mayAdopt, planBatches, utf8Length } from '../core/queue';
import { backoffDelay, parseRetryAfter, trustUnanswered, verdict } from '../core/retry';
import { fetchWithin } from './net';
import { PREFIX, type Store, attempt as tryOr } from './storage';

const QUEUE = `${PREFIX}q:`;
const TABS = `${PREFIX}t:`;
/** The collector's last answer: `1:<time>` after a success, `0:<time>` after a failure. */
const HEALTH = `${PREFIX}h`;
const DROPPED = `${PREFIX}d`;
const HEARTBEAT_MS = 30_000;
// Background tabs may run timers only once a minute: a heartbeat must outlive that.
const HEARTBEAT_TTL_MS = 180_000;
const TRUST_MS = 60_000;
// Long enough for another tab's write to the same key to become visible here.
const ADOPT_SETTLE_MS = 300;
const REQUEST_TIMEOUT_MS = 20_000;
const MAX_EVENTS_PER_REQUEST = 100;

interface Rec extends Item {
  /** Owning tab. */
  o: string;
  /** When this tab adopted it (0: created here). */
  a: number;
}

/** The collector (`POST /v1/events`), the site, and the batching options. */
export type DeliveryConfig = Pick<Config, 'collector' | 'site' | 'serverCookie' | 'batchSize' | 'batchMs' | 'maxQueue'>;

export interface Delivery {
  _enqueue(event: TrackedEvent): void;
  _flush(): void;
  /** Page hidden (`final`: being unloaded or frozen): send what is left if that is safe. */
  _hide(final: boolean): void;
  /** Page shown again (from the back/forward cache too). */
  _show(): void;
  /** Send one event now without queueing it (the consent withdrawal, just before a wipe). */
  _sendNow(event: TrackedEvent, consent: string): void;
  /** Forget everything in memory; the caller wipes storage. */
  _stop(): void;
}

/**
 * The outbox of the tab `tab`. `recorded`: whether the visitor's consent is a recorded,
 * explicit choice (see {@link envelope}); `onDropped` is called after a delivery with how
 * many events were dropped from a full queue since the last report.
 */
export function createDelivery(
  w: Window,
  store: Store,
  cfg: DeliveryConfig,
  tab: string,
  recorded: () => boolean,
  warn: (message: string) => void,
  onDropped: (count: number) => void,
): Delivery {
  const url = `${cfg.collector}/v1/events`;
  const nav = w.navigator;
  // The batch in flight (one at a time).
  let inflight: Rec[] = [];
  let attempt = 0;
  let retryAt = 0;
  let perRequest = MAX_EVENTS_PER_REQUEST;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let beat: ReturnType<typeof setInterval> | undefined;

  const now = () => Date.now();
  const room = MAX_BODY_BYTES - utf8Length(envelope(cfg.site, 'granted', false));
  const count = (key: string) => +(store._get(key) as string) || 0;
  const body = (batch: Item[], t: number, consent = 'granted') => batchBody(batch, t, envelope(cfg.site, consent, recorded()));

  const write = (r: Rec) => store._set(QUEUE + r.id, `{"o":${JSON.stringify(r.o)},"a":${r.a},"e":${r.json}}`);

  function read(key: string): Rec[] {
    try {
      const v = JSON.parse(store._get(key) as string);
      if (typeof v.o === 'string' && typeof v.e.event_id === 'string') {
        return [{ id: v.e.event_id, ts: +v.e.ts || 0, json: JSON.stringify(v.e), o: v.o, a: +v.a || 0 }];
      }
    } catch {
      /* corrupt: removed below */
    }
    store._del(key);
    return [];
  }

  const all = (): Rec[] => store._keys(QUEUE).flatMap(read).sort((a, b) => a.ts - b.ts);

  function remove(recs: Rec[]): void {
    for (const r of recs) store._del(QUEUE + r.id);
  }

  const heartbeat = () => beat && store._set(TABS + tab, now() + HEARTBEAT_TTL_MS);

  function schedule(delay: number): void {
    timer ??= setTimeout(() => {
      timer = undefined;
      flush();
    }, delay);
  }

  /** This tab's events, but those in flight. */
  const own = () => all().filter((r) => r.o === tab && !inflight.some((x) => x.id === r.id));

  function flush(): void {
    if (inflight.length) return;
    clearTimeout(timer);
    timer = undefined;
    const t = now();
    if (t < retryAt) return schedule(retryAt - t);
    // Take over the events whose tab is gone; forget expired heartbeats.
    for (const key of store._keys(TABS)) if (count(key) <= t) store._del(key);
    for (const r of all()) if (mayAdopt(r.o, tab, count(TABS + r.o), t)) write({ ...r, o: tab, a: t });
    // What this tab adopted waits a moment, then goes if no other tab took it meanwhile.
    const recs = own();
    const ready = recs.filter((r) => t - r.a >= ADOPT_SETTLE_MS);
    if (ready.length < recs.length) schedule(ADOPT_SETTLE_MS);
    if (ready.length) post(planBatches(ready, room, perRequest)[0]);
  }

  function post(batch: Rec[]): void {
    inflight = batch;
    // An answer after stop() (consent withdrawn) is ignored: the batch is no longer the one in flight.
    const done = (status: number | null, retryAfter?: string | null) => inflight === batch && settle(batch, status, retryAfter);
    try {
      // A text body goes as text/plain, CORS-safelisted: no preflight round trip before each batch.
      const init: RequestInit = {
        method: 'POST',
        body: body(batch, now()),
        // The collector sets its visitor cookie on its answers only when asked to keep one.
        credentials: cfg.serverCookie ? 'include' : 'omit',
        keepalive: true,
      };
      fetchWithin(w, url, init, REQUEST_TIMEOUT_MS).then(
        (res) => done(res.status, res.headers.get('Retry-After')),
        () => done(null),
      );
    } catch {
      done(null);
    }
  }

  function settle(batch: Rec[], status: number | null, retryAfter?: string | null): void {
    inflight = [];
    const v = verdict(status);
    const t = now();
    // Any answer but a retry one: the collector is reachable.
    store._set(HEALTH, `${+(v !== 'retry')}:${t}`);
    if (v === 'retry') {
      retryAt = t + backoffDelay(++attempt, Math.random(), parseRetryAfter(retryAfter, t));
      // Events counted as delivered at page exit (then the page came back): queue them again.
      for (const r of batch) if (store._get(QUEUE + r.id) === null) write({ ...r, o: tab, a: 0 });
      return schedule(retryAt - t);
    }
    attempt = retryAt = 0;
    perRequest = MAX_EVENTS_PER_REQUEST;
    if (v === 'split' && batch.length > 1) {
      // Too large for the collector: resend in halves rather than drop.
      perRequest = Math.ceil(batch.length / 2);
    } else {
      if (v !== 'ok') warn(`E15 ${status}`);
      remove(batch);
      const dropped = count(DROPPED);
      if (v === 'ok' && dropped) {
        store._del(DROPPED);
        onDropped(dropped);
      }
    }
    flush();
  }

  // False when over the keepalive quota.
  const beacon = (data: string) => tryOr(() => nav.sendBeacon(url, data), false);


  function start(): void {
    if (!beat) {
      beat = setInterval(heartbeat, HEARTBEAT_MS);
      heartbeat();
    }
  }

  return {
    _enqueue(event) {
      const json = JSON.stringify(event);
      if (utf8Length(json) > MAX_EVENT_BYTES) return warn(`E14 ${event.type}`);
      start();
      write({ id: event.event_id, ts: event.ts, json, o: tab, a: 0 });
      const recs = all();
      const over = recs.length - cfg.maxQueue;
      if (over > 0) {
        // Full: the oldest go first, and are counted.
        remove(recs.slice(0, over));
        store._set(DROPPED, count(DROPPED) + over);
      }
      if (own().length >= cfg.batchSize) flush();
      else schedule(cfg.batchMs);
    },
    _flush() {
      start();
      flush();
    },
    _hide(final) {
      const t = now();
      // On exit our leftovers become the next page's at once, not after the heartbeat expires.
      if (final) store._del(TABS + tab);
      const health = store._get(HEALTH) || '';
      if (!trustUnanswered(health[0] === '1' ? +health.slice(2) : 0, t, TRUST_MS)) return;
      // A keepalive request outlives the page that sent it.
      if (final) remove(inflight);
      for (const batch of planBatches(own(), room, MAX_EVENTS_PER_REQUEST)) {
        if (!beacon(body(batch, t))) break; // quota used up: the rest waits for the next page
        remove(batch);
      }
    },
    _show: heartbeat,
    _sendNow(event, consent) {
      beacon(body([{ json: JSON.stringify(event) } as Item], now(), consent));
    },
    _stop() {
      clearTimeout(timer);
      clearInterval(beat);
      timer = beat = undefined;
      inflight = [];
      attempt = retryAt = 0;
    },
  };
}
