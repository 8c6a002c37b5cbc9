/**
 * The tracker a page gets: it takes the commands of the `tracker(...)` function and
 * wires the pure core (consent, events, queue and retry policy) to the browser.
 * Nothing here throws into the host page: every entry point is guarded.
 *
 * Identity: the visitor id lives in a first-party cookie plus a localStorage mirror,
 * the session id in localStorage; both only once the visitor has consented. Safari
 * caps cookies written by scripts at 7 days: with `serverCookie`, the collector also
 * keeps the id in an HttpOnly cookie of its own (set on its answers to consented
 * batches), and when both local copies are gone the snippet asks for it
 * (`GET /v1/id`) before it makes a new id.
 */

import { type Config, parseConfig } from '../core/config';
import { type ConsentState, effectiveConsent, isConsentState } from '../core/consent';
import { type Draft, type Fields, buildDraft, finalize } from '../core/events';
import { isId, touchSession } from '../core/ids';
import { uuid4 } from '../core/uuid';
import { autoTrack } from './auto';
import { type Delivery, createDelivery } from './delivery';
import { fetchWithin } from './net';
import { fillSlots } from './offers';
import { PREFIX, localStore, readCookie, writeCookie } from './storage';

/** Calls held while consent is pending (or before init): enough for a page, bounded for a page left open. */
const MAX_HELD = 100;
/** Calls whose fields go to the event as they are (checked there). */
const PASSED = 'product_view add_to_cart remove_from_cart purchase'.split(' ');
/** How long events wait for the collector's copy of the visitor id before a new id is made. */
const ID_TIMEOUT_MS = 2000;
const MIRROR = `${PREFIX}id`;
const SESSION = `${PREFIX}s`;

export interface Tracker {
  /** Runs one `tracker(name, ...args)` call. */
  _run(args: ArrayLike<unknown>): void;
}

type Nav = Navigator & { globalPrivacyControl?: boolean };

export function createTracker(w: Window): Tracker {
  const d = w.document;
  const nav = w.navigator as Nav;
  const store = localStore(w);
  const newId = () => uuid4((b) => w.crypto.getRandomValues(b));
  const tab = newId();

  let cfg: Config;
  let consent: ConsentState = 'pending';
  // The visitor's consent is a recorded, explicit choice (what overrides DNT/GPC at the collector too).
  let recorded = false;
  // Known only while consent is granted (set once granted, cleared by any change from it).
  let visitor: string | null = null;
  let resolving = false;
  // Made by init; it stores nothing until given an event.
  let delivery: Delivery;
  let referrer = d.referrer;
  // An id for offer requests made without consent: per page, never stored, never an event's.
  const anonymous = `anon-${newId()}`;
  // Calls made while consent is pending (or the id is being fetched): memory only.
  let held: Draft[] = [];
  const early: ArrayLike<unknown>[] = [];

  const warn = (message: string) => {
    try {
      console.warn(`[tracker] ${message}`);
    } catch {
      /* no console */
    }
  };

  function safe<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (e) {
        warn(`E2 ${e}`);
      }
    };
  }

  /** DNT and GPC: a refusal unless the site passes recorded consent. */
  const refusalSignal = () => nav.doNotTrack === '1' || nav.globalPrivacyControl === true;

  /** The visitor id stored on this browser (cookie, else mirror), if any. */
  const storedId = () => [readCookie(d, cfg.cookieName), store._get(MIRROR)].find(isId);

  /** Forgets both ids and everything else the tracker stored (the collector's cookie too). */
  function wipe(): void {
    const keys = store._keys(PREFIX);
    const traces = readCookie(d, cfg.cookieName) !== null || keys.length;
    writeCookie(d, cfg.cookieName, '', 0, null);
    if (cfg.cookieDomain) writeCookie(d, cfg.cookieName, '', 0, cfg.cookieDomain);
    keys.forEach(store._del);
    // Only a browser that had consented can hold the collector's copy (HttpOnly: only the
    // collector can delete it); others send nothing.
    if (cfg.serverCookie && traces) {
      w.fetch(`${cfg.collector}/v1/id/forget`, { method: 'POST', credentials: 'include', keepalive: true }).catch(() => {});
    }
  }

  const draft = (type: string, fields?: Fields): Draft | null =>
    buildDraft(type, fields, { event_id: newId(), ts: Date.now(), url: w.location.href, referrer }, warn);

  /** The event of a draft: with the ids, the session extended to the draft's time. */
  function final(dr: Draft) {
    const session = touchSession(store._get(SESSION), dr.ts, cfg.sessionMinutes * 60_000, newId);
    store._set(SESSION, session);
    return finalize(dr, cfg.site, visitor as string, session.split('.')[0]);
  }

  const track = safe((type: string, fields?: Fields) => {
    if (!cfg || consent === 'denied') return;
    const dr = draft(type, fields);
    if (!dr) return;
    if (visitor) return delivery._enqueue(final(dr));
    if (held.length < MAX_HELD) held.push(dr);
  });

  /** Consent granted and the id known: store it, send what was held and what earlier pages left. */
  function begin(id: string): void {
    // Again: refreshes the cookie's lifetime.
    store._set(MIRROR, id);
    writeCookie(d, cfg.cookieName, id, cfg.cookieDays * 86_400, cfg.cookieDomain);
    visitor = id;
    for (const dr of held.splice(0)) delivery._enqueue(final(dr));
    delivery._flush();
  }

  function start(): void {
    const local = storedId();
    if (local || !cfg.serverCookie) return begin(local || newId());
    if (resolving) return;
    resolving = true;
    // The collector's copy, or none: unknown, disabled, unreachable or slow.
    fetchWithin(w, `${cfg.collector}/v1/id`, { credentials: 'include' }, ID_TIMEOUT_MS)
      .then((res) => res.json())
      .then((body) => body.visitor_id)
      .catch(() => {})
      .then(
        safe((id: unknown) => {
          resolving = false;
          if (consent === 'granted' && !visitor) begin([id, storedId()].find(isId) || newId());
        }),
      );
  }

  /** A change of consent (`quiet`: the state a page starts in, which is not announced). */
  function setConsent(state: unknown, isRecorded: boolean, quiet?: boolean): void {
    if (!isConsentState(state)) return warn(`E9 ${state}`);
    const from = consent;
    const to = effectiveConsent(state, isRecorded, refusalSignal());
    if (to === from) return;
    if (from === 'granted') {
      // A withdrawal is announced with the id it withdraws, so that downstream can act on
      // it; it goes out directly: the queue it could wait in is about to be wiped.
      const dr = visitor && draft('consent', { state: to });
      if (dr) delivery._sendNow(final(dr), to);
    }
    if (to === 'denied') held = [];
    if (from === 'granted' || to === 'denied') {
      delivery._stop();
      wipe();
      visitor = null;
    }
    consent = to;
    recorded = to === 'granted' && isRecorded;
    if (to === 'granted') {
      start();
      if (!quiet) track('consent', { state: to });
    }
  }

  function offers(): void {
    if (cfg && cfg.offers !== null) fillSlots(w, cfg, visitor || anonymous, track);
  }

  function init(options: unknown): void {
    if (cfg) return warn('E3');
    if (!AbortSignal.timeout) return warn('E4'); // and with it fetch keepalive, sendBeacon...
    const c = parseConfig(options, warn);
    if (!c) return;
    cfg = c;
    delivery = createDelivery(w, store, c, tab, () => recorded, warn, (count) =>
      track('custom', { name: 'tracker.dropped', properties: { count } }),
    );
    // Denied: wipes what an earlier consent left.
    setConsent(c.consent, c.consentRecorded, true);

    // Exit: visibilitychange covers mobile (pagehide may never come); pagehide covers navigation.
    // A page restored from the back/forward cache becomes visible again: visibilitychange too.
    d.addEventListener(
      'visibilitychange',
      safe(() => (d.visibilityState === 'hidden' ? delivery._hide(false) : delivery._show())),
    );
    w.addEventListener('pagehide', safe(() => delivery._hide(true)));

    autoTrack(w, c, {
      track,
      safe,
      _route(previous) {
        referrer = previous;
        setTimeout(safe(offers));
      },
    });
    // A cached script can run before the body is parsed: wait for the slots to exist.
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', safe(offers));
    else offers();
    early.splice(0).forEach(run);
  }

  const COMMANDS: Record<string, (...args: unknown[]) => void> = {
    init,
    consent: (state, options) => setConsent(state, (options as { recorded?: unknown } | null)?.recorded === true),
    page_view: (f) => track('page_view', { title: d.title, ...(f as Fields) }),
    search: (q) => track('search', typeof q === 'object' ? (q as Fields) : { query: q }),
    identify: (h) => track('identify', typeof h === 'object' ? (h as Fields) : { customer_hash: h }),
    event: (name, properties) => track('custom', { name, properties }),
    flush: () => visitor && delivery._flush(),
    offers,
    visitor: (cb) => typeof cb === 'function' && cb(visitor),
  };

  function run(args: ArrayLike<unknown>): void {
    const [name, ...rest] = Array.from(args);
    const command = Object.hasOwn(COMMANDS, name as string)
      ? COMMANDS[name as string]
      : PASSED.includes(name as string) && ((f: unknown) => track(name as string, f as Fields));
    if (!command) return warn(`E8 ${name}`);
    if (!cfg && name !== 'init') {
      if (early.length < MAX_HELD) early.push(args);
      return;
    }
    command(...rest);
  }

  return { _run: safe(run) };
}
