// The command dispatcher with a fake window: what each consent change stores, holds,
// sends and wipes (the transitions of src/core/consent.ts, wired in tracker.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTracker } from '../src/browser/tracker';

interface Sent {
  via: 'fetch' | 'beacon';
  body: { consent: { state: string; recorded: boolean }; events: Record<string, unknown>[] };
}

function fakeWindow(privacy: { doNotTrack?: string; globalPrivacyControl?: boolean } = {}) {
  const sent: Sent[] = [];
  const items: Record<string, string> = {};
  // Stored items are the own enumerable keys, as with the real Storage.
  const localStorage = Object.defineProperties(items, {
    getItem: { value: (k: string) => (Object.hasOwn(items, k) ? items[k] : null) },
    setItem: { value: (k: string, v: string) => void (items[k] = String(v)) },
    removeItem: { value: (k: string) => void delete items[k] },
  });
  let cookie = '';
  const location = { href: 'https://shop.example/p/1', pathname: '/p/1', search: '', host: 'shop.example', protocol: 'https:' };
  const document = {
    referrer: '',
    title: 'Tent',
    readyState: 'complete',
    visibilityState: 'visible',
    location,
    addEventListener: () => {},
    querySelectorAll: () => [],
    get cookie() {
      return cookie;
    },
    set cookie(v: string) {
      // One cookie is enough here: the last one written, or none once expired.
      cookie = /Max-Age=0/.test(v) ? '' : v.split(';')[0];
    },
  };
  const w = {
    document,
    location,
    localStorage,
    crypto: globalThis.crypto,
    history: { pushState: () => {}, replaceState: () => {} },
    addEventListener: () => {},
    navigator: {
      ...privacy,
      sendBeacon: (_url: string, body: string) => (sent.push({ via: 'beacon', body: JSON.parse(body) }), true),
    },
    fetch: vi.fn(async (_url: string, init: RequestInit) => {
      sent.push({ via: 'fetch', body: JSON.parse(String(init.body)) });
      return { status: 202, headers: { get: () => null } };
    }),
  };
  return { w: w as unknown as Window, sent, items, cookie: () => cookie };
}

function start(privacy = {}, options: Record<string, unknown> = {}) {
  const page = fakeWindow(privacy);
  const tracker = createTracker(page.w);
  const call = (...args: unknown[]) => tracker._run(args);
  call('init', { site: 'shop', pageViews: false, pingSeconds: 0, outboundLinks: false, batchMs: 100, ...options });
  const events = (): Record<string, unknown>[] =>
    page.sent.flatMap((s) => s.body.events.map((e) => ({ ...e, via: s.via, consent: s.body.consent })));
  return { ...page, call, events };
}

const types = (events: Record<string, unknown>[]) => events.map((e) => e.type);

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('consent', () => {
  it('pending: stores and sends nothing, holds the calls until a grant, then sends them', async () => {
    const t = start();
    t.call('product_view', { product_id: 'tent', category: 'outdoor' });
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.sent).toEqual([]);
    expect(t.items).toEqual({});
    expect(t.cookie()).toBe('');

    t.call('consent', 'granted');
    await vi.advanceTimersByTimeAsync(200);
    expect(types(t.events())).toEqual(['product_view', 'consent']);
    const visitor = t.events()[0].visitor_id;
    expect(t.events().every((e) => e.visitor_id === visitor && e.session_id)).toBe(true);
    expect(t.cookie()).toBe(`_trk_id=${visitor}`);
    expect(t.items['trk:id']).toBe(visitor);
  });

  it('starting granted sends no consent event', async () => {
    const t = start({}, { consent: 'granted' });
    t.call('search', 'tents');
    await vi.advanceTimersByTimeAsync(200);
    expect(types(t.events())).toEqual(['search']);
  });

  it('a withdrawal is announced with the id it withdraws, then everything is wiped', async () => {
    const t = start({}, { consent: 'granted' });
    t.call('search', 'tents');
    await vi.advanceTimersByTimeAsync(200);
    const visitor = t.events()[0].visitor_id;

    t.call('consent', 'denied');
    const last = t.events().at(-1) as Record<string, unknown>;
    expect(last).toMatchObject({ type: 'consent', state: 'denied', visitor_id: visitor, via: 'beacon' });
    expect(last.consent).toMatchObject({ state: 'denied' });
    expect(t.items).toEqual({});
    expect(t.cookie()).toBe('');

    const before = t.sent.length;
    t.call('search', 'more tents');
    t.call('flush');
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.sent.length).toBe(before);
    expect(t.items).toEqual({});
  });

  it('a refusal drops the held calls; a later grant starts afresh', async () => {
    const t = start();
    t.call('search', 'tents');
    t.call('consent', 'denied');
    t.call('consent', 'granted');
    await vi.advanceTimersByTimeAsync(200);
    expect(types(t.events())).toEqual(['consent']);
  });

  it('counts Do-Not-Track and GPC as a refusal unless consent was recorded', async () => {
    for (const privacy of [{ doNotTrack: '1' }, { globalPrivacyControl: true }]) {
      const t = start(privacy, { consent: 'granted' });
      t.call('search', 'tents');
      t.call('consent', 'granted');
      await vi.advanceTimersByTimeAsync(5000);
      expect(t.sent).toEqual([]);
      expect(t.items).toEqual({});

      t.call('consent', 'granted', { recorded: true });
      t.call('search', 'tents');
      await vi.advanceTimersByTimeAsync(200);
      expect(types(t.events())).toEqual(['consent', 'search']);
      expect(t.events()[0].consent).toEqual({ state: 'granted', recorded: true });
    }
  });

  it('refuses an unknown state, and never throws', () => {
    const t = start();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect(() => t.call('consent', 'maybe')).not.toThrow();
    expect(() => t.call('no_such_call')).not.toThrow();
    expect(warn.mock.calls.map((c) => c[0])).toEqual(['[tracker] E9 maybe', '[tracker] E8 no_such_call']);
    warn.mockRestore();
  });
});
