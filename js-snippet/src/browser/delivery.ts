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
import { type Item, MAX_BODY_BYTES, MAX_EVENT_BYTES, batchBody, envelope, mayAdopt, overflow, planBatches, utf8Length } from '../core/queue';
import { DEFAULT_BACKOFF, backoffDelay, formatHealth, parseHealth, parseRetryAfter, trustUnanswered, verdict } from '../core/retry';
import { fetchWithin } from './net';
import { PREFIX, type Store } from './storage';

const QUEUE = `${PREFIX}q:`;
const TABS = `${PREFIX}t:`;
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

export interface DeliveryOptions {
  w: Window;
  store: Store;
  /** The collector (`POST /v1/events`), the site, and the batching options. */
  cfg: Pick<Config, 'collector' | 'site' | 'serverCookie' | 'batchSize' | 'batchMs' | 'maxQueue'>;
  /** Whether the visitor's consent is a recorded, explicit choice (see {@link envelope}). */
  recorded(): boolean;
  tab: string;
  warn(message: string): void;
  /** Called after a delivery with how many events were dropped from a full queue since the last report. */
  onDropped(count: number): void;
}

export interface Delivery {
  enqueue(event: TrackedEvent): void;
  flush(): void;
  /** Page hidden (`final`: being unloaded or frozen): send what is left if that is safe. */
  hide(final: boolean): void;
  /** Page shown again (from the back/forward cache too). */
  show(): void;
  /** Send one event now without queueing it (the consent withdrawal, just before a wipe). */
  sendNow(event: TrackedEvent, consent: string): void;
  /** Forget everything in memory; the caller wipes storage. */
  stop(): void;
}

export function createDelivery(opt: DeliveryOptions): Delivery {
  const { w, store, tab, cfg } = opt;
  const url = `${cfg.collector}/v1/events`;
  const nav = w.navigator;
  // Used when storage refuses a write (full, disabled): this page still sends the event.
  const memory = new Map<string, Rec>();
  const inflight = new Map<string, Rec>();
  let attempt = 0;
  let retryAt = 0;
  let perRequest = MAX_EVENTS_PER_REQUEST;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let beat: ReturnType<typeof setInterval> | undefined;
  let sending = false;
  let generation = 0;

  const now = () => Date.now();
  const head = (consent: string) => envelope(cfg.site, consent, opt.recorded());
  const room = () => MAX_BODY_BYTES - utf8Length(head('granted'));
  // text/plain is CORS-safelisted: no preflight round trip before each batch.
  const postInit = (body: string): RequestInit => ({
    method: 'POST',
    body,
    headers: { 'Content-Type': 'text/plain' },
    // The collector sets its visitor cookie on its answers only when asked to keep one.
    credentials: cfg.serverCookie ? 'include' : 'omit',
    keepalive: true,
  });
  const setHealth = (ok: boolean) => store.set(HEALTH, formatHealth({ ok, at: now() }));

  function write(r: Rec): void {
    const value = `{"o":${JSON.stringify(r.o)},"a":${r.a},"e":${r.json}}`;
    if (store.set(QUEUE + r.id, value)) memory.delete(r.id);
    else memory.set(r.id, r);
  }

  function read(key: string): Rec | null {
    const raw = store.get(key);
    try {
      const v = raw ? JSON.parse(raw) : null;
      if (v && typeof v.o === 'string' && v.e && typeof v.e.event_id === 'string') {
        return { id: v.e.event_id, ts: Number(v.e.ts) || 0, json: JSON.stringify(v.e), o: v.o, a: Number(v.a) || 0 };
      }
    } catch {
      /* corrupt: removed below */
    }
    if (raw !== null) store.del(key);
    return null;
  }

  function all(): Rec[] {
    const recs = store.keys(QUEUE).map(read).filter((r): r is Rec => r !== null);
    for (const r of memory.values()) if (!recs.some((x) => x.id === r.id)) recs.push(r);
    return recs.sort((a, b) => a.ts - b.ts);
  }

  function remove(recs: Rec[]): void {
    for (const r of recs) {
      store.del(QUEUE + r.id);
      memory.delete(r.id);
    }
  }

  function heartbeat(): void {
    store.set(TABS + tab, String(now() + HEARTBEAT_TTL_MS));
  }

  function startBeat(): void {
    heartbeat();
    beat = setInterval(heartbeat, HEARTBEAT_MS);
  }

  /** Takes over events whose tab is gone; forgets expired heartbeats. */
  function adopt(t: number): void {
    const expiries = new Map<string, number>();
    for (const key of store.keys(TABS)) {
      const exp = Number(store.get(key));
      if (exp > t) expiries.set(key.slice(TABS.length), exp);
      else store.del(key);
    }
    for (const r of all()) {
      if (mayAdopt(r.o, tab, expiries.get(r.o) ?? null, t)) write({ ...r, o: tab, a: t });
    }
  }

  function schedule(delay: number): void {
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      flush();
    }, Math.max(0, delay));
  }

  /** This tab's events that may be sent now, and whether some must wait for adoption to settle. */
  function sendable(t: number, settle: boolean): [Rec[], boolean] {
    let waiting = false;
    const recs = all().filter((r) => {
      if (r.o !== tab || inflight.has(r.id)) return false;
      const ready = !settle || !r.a || t - r.a >= ADOPT_SETTLE_MS;
      waiting ||= !ready;
      return ready;
    });
    return [recs, waiting];
  }

  function flush(): void {
    if (sending) return;
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    const t = now();
    if (t < retryAt) return schedule(retryAt - t);
    adopt(t);
    const [recs, waiting] = sendable(t, true);
    if (waiting) schedule(ADOPT_SETTLE_MS);
    if (recs.length) post(planBatches(recs, room(), perRequest)[0]);
  }

  function post(batch: Rec[]): void {
    sending = true;
    const gen = generation;
    for (const r of batch) inflight.set(r.id, r);
    const done = (status: number | null, retryAfter: string | null) => {
      if (gen === generation) settle(batch, status, retryAfter);
    };
    try {
      fetchWithin(w, url, postInit(batchBody(batch, now(), head('granted'))), REQUEST_TIMEOUT_MS).then(
        (res) => done(res.status, res.headers.get('Retry-After')),
        () => done(null, null),
      );
    } catch {
      done(null, null);
    }
  }

  function settle(batch: Rec[], status: number | null, retryAfter: string | null): void {
    sending = false;
    for (const r of batch) inflight.delete(r.id);
    const v = verdict(status);
    if (v === 'retry') {
      setHealth(false);
      attempt++;
      const t = now();
      retryAt = t + backoffDelay(attempt, Math.random(), DEFAULT_BACKOFF, parseRetryAfter(retryAfter, t));
      // Events counted as delivered at page exit (then the page came back): queue them again.
      for (const r of batch) if (store.get(QUEUE + r.id) === null && !memory.has(r.id)) write({ ...r, o: tab, a: 0 });
      return schedule(retryAt - t);
    }
    setHealth(true); // the collector answered: it is reachable
    attempt = 0;
    retryAt = 0;
    if (v === 'split' && batch.length > 1) {
      // Too large for the collector: resend in halves rather than drop.
      perRequest = Math.ceil(batch.length / 2);
    } else {
      if (v !== 'ok') opt.warn(`the collector refused ${batch.length} event(s) with HTTP ${status}; they are dropped`);
      remove(batch);
      perRequest = MAX_EVENTS_PER_REQUEST;
      const dropped = Number(store.get(DROPPED)) || 0;
      if (v === 'ok' && dropped > 0) {
        store.del(DROPPED);
        opt.onDropped(dropped);
      }
    }
    flush();
  }

  function beacon(body: string): boolean {
    try {
      if (nav.sendBeacon) return nav.sendBeacon(url, body);
      w.fetch(url, postInit(body)).catch(() => {});
      return true;
    } catch {
      return false; // over the keepalive quota, or no way to send
    }
  }

  return {
    enqueue(event) {
      const json = JSON.stringify(event);
      if (utf8Length(json) > MAX_EVENT_BYTES) {
        return opt.warn(`a ${event.type} event is over ${MAX_EVENT_BYTES} bytes; it is not sent`);
      }
      if (beat === undefined) startBeat();
      write({ id: event.event_id, ts: event.ts, json, o: tab, a: 0 });
      if (store.keys(QUEUE).length + memory.size > cfg.maxQueue) {
        const victims = overflow(all(), cfg.maxQueue);
        remove(victims);
        store.set(DROPPED, String((Number(store.get(DROPPED)) || 0) + victims.length));
      }
      const own = sendable(now(), false)[0].length;
      if (own >= cfg.batchSize) flush();
      else schedule(cfg.batchMs);
    },
    flush() {
      if (beat === undefined) startBeat();
      flush();
    },
    hide(final) {
      const t = now();
      // On exit our leftovers become the next page's at once, not after the heartbeat expires.
      if (final) store.del(TABS + tab);
      if (!trustUnanswered(parseHealth(store.get(HEALTH)), t, TRUST_MS)) return;
      // A keepalive request outlives the page that sent it.
      if (final) remove([...inflight.values()]);
      for (const batch of planBatches(sendable(t, false)[0], room(), MAX_EVENTS_PER_REQUEST)) {
        if (!beacon(batchBody(batch, t, head('granted')))) break; // quota used up: the rest waits for the next page
        remove(batch);
      }
    },
    show() {
      if (beat !== undefined) heartbeat();
    },
    sendNow(event, consent) {
      beacon(batchBody([{ id: event.event_id, ts: event.ts, json: JSON.stringify(event) }], now(), head(consent)));
    },
    stop() {
      generation++;
      clearTimeout(timer);
      clearInterval(beat);
      timer = beat = undefined;
      sending = false;
      inflight.clear();
      memory.clear();
      attempt = retryAt = 0;
    },
  };
}
