/**
 * The tracker a page gets: it takes the commands of the `tracker(...)` function and
 * wires the pure core (consent, events, queue and retry policy) to the browser.
 * Nothing here throws into the host page: every entry point is guarded.
 */

import { type Config, has, parseConfig } from '../core/config';
import { type ConsentState, changeConsent, effectiveConsent, isConsentState } from '../core/consent';
import { type Draft, type Fields, buildDraft, finalize } from '../core/events';
import { uuid4 } from '../core/uuid';
import { autoTrack } from './auto';
import { type Delivery, createDelivery } from './delivery';
import { type Identity, createIdentity } from './identity';
import { fillSlots } from './offers';
import { localStore } from './storage';

/** Calls held while consent is pending: enough for a page, bounded for a page left open. */
const MAX_HELD = 100;
const MAX_EARLY = 100;
/** How long events wait for the collector's copy of the visitor id before a new id is made. */
const ID_TIMEOUT_MS = 2000;

export interface Tracker {
  /** Runs one `tracker(name, ...args)` call. */
  run(args: ArrayLike<unknown>): void;
}

type Nav = Navigator & { globalPrivacyControl?: boolean };

export function createTracker(w: Window): Tracker {
  const d = w.document;
  const nav = w.navigator as Nav;
  const store = localStore(w);
  const crypto = w.crypto;
  const newId = () =>
    uuid4((b) => (crypto && crypto.getRandomValues ? crypto.getRandomValues(b) : b.map(() => (Math.random() * 256) | 0)));
  const tab = newId();

  let cfg: Config | null = null;
  let consent: ConsentState = 'pending';
  // The visitor's consent is a recorded, explicit choice (what overrides DNT/GPC at the collector too).
  let recorded = false;
  let visitor: string | null = null;
  let resolving = false;
  // Made by init (it only reads and writes storage when asked to).
  let identity: Identity;
  let delivery: Delivery | null = null;
  let referrer = d.referrer;
  // An id for offer requests made without consent: per page, never stored, never an event's.
  const anonymous = `anon-${newId().replace(/-/g, '')}`;
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
        warn(`internal error: ${e}`);
      }
    };
  }

  /** DNT and GPC: a refusal unless the site passes recorded consent. */
  const refusalSignal = () =>
    nav.doNotTrack === '1' || (w as unknown as { doNotTrack?: string }).doNotTrack === '1' || nav.globalPrivacyControl === true;

  const draft = (type: string, fields?: Fields): Draft | null =>
    buildDraft(type, fields, { event_id: newId(), ts: Date.now(), url: w.location.href, referrer }, warn);

  const final = (dr: Draft) => finalize(dr, (cfg as Config).site, visitor as string, identity.session(dr.ts));

  const track = safe((type: string, fields?: Fields) => {
    if (!cfg || consent === 'denied') return;
    const dr = draft(type, fields);
    if (!dr) return;
    if (consent === 'granted' && visitor) return delivery?.enqueue(final(dr));
    if (held.length < MAX_HELD) held.push(dr);
  });

  /** Consent granted and the id known: store it, send what was held and what earlier pages left. */
  function begin(id: string): void {
    if (!delivery) return;
    visitor = identity.keep(id);
    const drafts = held;
    held = [];
    for (const dr of drafts) delivery.enqueue(final(dr));
    delivery.flush();
  }

  function start(c: Config): void {
    delivery =
      delivery ||
      createDelivery({
        w,
        store,
        cfg: c,
        recorded: () => recorded,
        tab,
        warn,
        onDropped: (count) => track('custom', { name: 'tracker.dropped', properties: { count } }),
      });
    const local = identity.stored();
    if (local || !c.serverCookie) return begin(local || newId());
    if (resolving) return;
    resolving = true;
    identity.fromServer(ID_TIMEOUT_MS).then(
      safe((id: string | null) => {
        resolving = false;
        if (consent === 'granted' && !visitor) begin(id || identity.stored() || newId());
      }),
    );
  }

  function setConsent(state: unknown, options?: unknown): void {
    const c = cfg as Config;
    if (!isConsentState(state)) return warn(`consent: state must be "pending", "granted" or "denied"`);
    const isRecorded = !!(options && (options as { recorded?: unknown }).recorded === true);
    const change = changeConsent(consent, state, isRecorded, refusalSignal());
    if (change.to === consent) return;
    if (change.announce && change.announce !== 'granted' && visitor && delivery) {
      // The withdrawal goes out directly: the queue it could wait in is about to be wiped.
      const dr = draft('consent', { state: change.announce });
      if (dr) delivery.sendNow(final(dr), change.announce);
    }
    if (change.dropHeld) held = [];
    if (change.wipe) {
      delivery?.stop();
      identity.wipe();
      visitor = null;
    }
    consent = change.to;
    recorded = change.to === 'granted' && isRecorded;
    if (change.start) {
      start(c);
      track('consent', { state: 'granted' });
    }
  }

  function offers(): void {
    if (cfg && cfg.offers !== null) fillSlots(w, cfg, consent === 'granted' && visitor ? visitor : anonymous, track);
  }

  function init(options: unknown): void {
    if (cfg) return warn('init was called more than once; the first configuration stays');
    if (typeof w.fetch !== 'function') return warn('this browser has no fetch(); tracking is off');
    const c = parseConfig(options, warn);
    if (!c) return;
    cfg = c;
    consent = effectiveConsent(c.consent, c.consentRecorded, refusalSignal());
    recorded = consent === 'granted' && c.consentRecorded;
    identity = createIdentity(w, store, c, newId);
    if (consent === 'denied') identity.wipe(); // what an earlier consent left
    if (consent === 'granted') start(c);

    // Exit: visibilitychange covers mobile (pagehide may never come); pagehide covers navigation.
    d.addEventListener(
      'visibilitychange',
      safe(() => {
        if (d.visibilityState === 'hidden') delivery?.hide(false);
        else delivery?.show();
      }),
    );
    w.addEventListener('pagehide', safe(() => delivery?.hide(true)));
    w.addEventListener('pageshow', safe(() => delivery?.show()));

    autoTrack(w, c, {
      track,
      safe,
      route(previous) {
        referrer = previous;
        setTimeout(safe(offers), 0);
      },
    });
    // A cached script can run before the body is parsed: wait for the slots to exist.
    if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', safe(offers));
    else offers();
    const queued = early.splice(0);
    queued.forEach(run);
  }

  const fieldsOr = (key: string) => (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? { [key]: v } : (v as Fields));

  const COMMANDS: Record<string, (...args: unknown[]) => void> = {
    init,
    consent: setConsent,
    page_view: (f) => track('page_view', { title: d.title, ...(f as Fields) }),
    product_view: (f) => track('product_view', f as Fields),
    add_to_cart: (f) => track('add_to_cart', f as Fields),
    remove_from_cart: (f) => track('remove_from_cart', f as Fields),
    purchase: (f) => track('purchase', f as Fields),
    search: (q) => track('search', fieldsOr('query')(q)),
    identify: (h) => track('identify', fieldsOr('customer_hash')(h)),
    event: (name, properties) => track('custom', { name, properties }),
    flush: () => consent === 'granted' && delivery?.flush(),
    offers,
    visitor: (cb) => {
      if (typeof cb === 'function') cb(consent === 'granted' ? visitor : null);
    },
  };

  function run(args: ArrayLike<unknown>): void {
    const [name, ...rest] = Array.from(args);
    const command = typeof name === 'string' && has(COMMANDS, name) ? COMMANDS[name] : null;
    if (!command) return warn(`unknown call tracker(${JSON.stringify(name)}); see the snippet's README`);
    if (!cfg && name !== 'init') {
      if (early.length < MAX_EARLY) early.push(args);
      return;
    }
    command(...rest);
  }

  return { run: safe(run) };
}
