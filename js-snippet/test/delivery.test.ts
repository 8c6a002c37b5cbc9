// The delivery glue with a fake window (fetch, sendBeacon) and an in-memory localStorage
// shared by "tabs": what is sent, when, and never twice. Time is faked.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { TrackedEvent } from '../src/core/events';
import { type Delivery, type DeliveryConfig, createDelivery } from '../src/browser/delivery';
import type { Store } from '../src/browser/storage';

function memoryStore(): Store & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return {
    map,
    _get: (k) => map.get(k) ?? null,
    _set: (k, v) => void map.set(k, `${v}`),
    _del: (k) => void map.delete(k),
    _keys: (p) => [...map.keys()].filter((k) => k.startsWith(p)),
  };
}

interface Call {
  ids: string[];
  body: Record<string, unknown>;
  answer(status: number | null, retryAfter?: string): void;
}

/** A window whose fetch answers only when the test says so. */
function fakeWindow() {
  const calls: Call[] = [];
  const beacons: string[][] = [];
  const w = {
    fetch: vi.fn((_url: string, init: RequestInit) =>
      new Promise((resolve, reject) => {
        const body = JSON.parse(String(init.body));
        calls.push({
          ids: body.events.map((e: TrackedEvent) => e.event_id),
          body,
          answer: (status, retryAfter) =>
            status === null
              ? reject(new TypeError('network'))
              : resolve({ status, headers: { get: (h: string) => (h === 'Retry-After' ? (retryAfter ?? null) : null) } }),
        });
      }),
    ),
    navigator: {
      sendBeacon: vi.fn((_url: string, body: string) => {
        beacons.push(JSON.parse(body).events.map((e: TrackedEvent) => e.event_id));
        return true;
      }),
    },
  };
  return { w: w as unknown as Window, calls, beacons };
}

let n = 0;
const event = (type = 'page_view'): TrackedEvent => ({
  type,
  event_id: `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`,
  ts: Date.now(),
  site_id: 'shop',
  visitor_id: 'visitor-1234',
});

function tab(
  store: Store,
  w: Window,
  name: string,
  cfg: Partial<DeliveryConfig> = {},
  onDropped: (count: number) => void = () => {},
): Delivery {
  const config = { collector: 'https://c.example', site: 'shop', serverCookie: false, batchSize: 10, batchMs: 1000, maxQueue: 50, ...cfg };
  return createDelivery(w, store, config, name, () => false, () => {}, onDropped);
}

const flushPromises = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(1_700_000_000_000);
});
afterEach(() => vi.useRealTimers());

describe('batching', () => {
  it('sends after the time bound, with the envelope', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const d = tab(store, w, 'a');
    d._enqueue(event());
    d._enqueue(event());
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(1);
    expect(calls[0].body).toMatchObject({ site_id: 'shop', consent: { state: 'granted', recorded: false } });
    expect(calls[0].ids).toHaveLength(2);
    calls[0].answer(202);
    await flushPromises();
    expect(store._keys('trk:q:')).toHaveLength(0);
  });

  it('sends at once when the size bound is reached', async () => {
    const { w, calls } = fakeWindow();
    const d = tab(memoryStore(), w, 'a');
    for (let i = 0; i < 10; i++) d._enqueue(event());
    await flushPromises();
    expect(calls).toHaveLength(1);
    expect(calls[0].ids).toHaveLength(10);
  });

  it('keeps one request in flight at a time', async () => {
    const { w, calls } = fakeWindow();
    const d = tab(memoryStore(), w, 'a');
    for (let i = 0; i < 25; i++) d._enqueue(event());
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toHaveLength(1);
    calls[0].answer(202);
    await flushPromises();
    expect(calls).toHaveLength(2);
    expect(new Set([...calls[0].ids, ...calls[1].ids]).size).toBe(calls[0].ids.length + calls[1].ids.length);
  });
});

describe('retries', () => {
  it('keeps the batch on 503 and retries no sooner than Retry-After', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const d = tab(store, w, 'a');
    d._enqueue(event());
    await vi.advanceTimersByTimeAsync(1000);
    calls[0].answer(503, '30');
    await flushPromises();
    expect(store._keys('trk:q:')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(29_000);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_100);
    expect(calls).toHaveLength(2);
    expect(calls[1].ids).toEqual(calls[0].ids);
    calls[1].answer(202);
    await flushPromises();
    expect(store._keys('trk:q:')).toHaveLength(0);
  });

  it('backs off exponentially on network errors, and never beyond the cap', async () => {
    const { w, calls } = fakeWindow();
    const d = tab(memoryStore(), w, 'a');
    d._enqueue(event());
    await vi.advanceTimersByTimeAsync(1000);
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const before = calls.length;
      calls[calls.length - 1].answer(null);
      const start = Date.now();
      while (calls.length === before) await vi.advanceTimersByTimeAsync(100);
      times.push(Date.now() - start);
    }
    expect(times[1]).toBeGreaterThan(times[0] * 0.9);
    expect(times[4]).toBeGreaterThanOrEqual(8000);
    expect(Math.max(...times)).toBeLessThanOrEqual(60_100);
  });

  it('drops a batch refused with another 4xx, and splits one refused as too large', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const d = tab(store, w, 'a');
    for (let i = 0; i < 4; i++) d._enqueue(event());
    await vi.advanceTimersByTimeAsync(1000);
    calls[0].answer(413);
    await flushPromises();
    expect(calls[1].ids).toEqual(calls[0].ids.slice(0, 2));
    calls[1].answer(422);
    await flushPromises();
    expect(calls[2].ids).toEqual(calls[0].ids.slice(2));
    calls[2].answer(202);
    await flushPromises();
    expect(store._keys('trk:q:')).toHaveLength(0);
    expect(calls).toHaveLength(3);
  });
});

describe('the persistent queue', () => {
  it('drops the oldest beyond its cap and reports how many after the next delivery', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const dropped: number[] = [];
    const d = tab(store, w, 'a', { maxQueue: 10, batchSize: 100 }, (c) => dropped.push(c));
    const first = event();
    d._enqueue(first);
    for (let i = 0; i < 12; i++) {
      vi.advanceTimersByTime(1); // distinct timestamps; short of the batch timer
      d._enqueue(event());
    }
    expect(store._keys('trk:q:')).toHaveLength(10);
    expect(store._get(`trk:q:${first.event_id}`)).toBeNull();
    await vi.advanceTimersByTimeAsync(1000);
    calls[0].answer(202);
    await flushPromises();
    expect(dropped).toEqual([3]);
    expect(store._get('trk:d')).toBeNull();
  });
});

describe('page exit', () => {
  it('beacons what is left when the collector was just healthy, and counts it delivered', async () => {
    const store = memoryStore();
    const { w, calls, beacons } = fakeWindow();
    const d = tab(store, w, 'a');
    d._enqueue(event());
    await vi.advanceTimersByTimeAsync(1000);
    calls[0].answer(202);
    await flushPromises();
    const late = event();
    d._enqueue(late);
    d._hide(true);
    expect(beacons).toEqual([[late.event_id]]);
    expect(store._keys('trk:q:')).toHaveLength(0);
  });

  it('keeps everything for the next page when the collector was failing', async () => {
    const store = memoryStore();
    const { w, calls, beacons } = fakeWindow();
    const d = tab(store, w, 'a');
    d._enqueue(event());
    await vi.advanceTimersByTimeAsync(1000);
    calls[0].answer(503, '5');
    await flushPromises();
    d._enqueue(event());
    d._hide(true);
    expect(beacons).toEqual([]);
    expect(store._keys('trk:q:')).toHaveLength(2);
    expect(store._keys('trk:t:')).toHaveLength(0); // the next page may adopt them at once
  });
});

describe('tabs', () => {
  it('send only their own events, and one of them adopts a closed tab\'s', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const sent: string[] = [];
    const a = tab(store, w, 'tab-a');
    const orphans = [event(), event(), event()];
    for (const e of orphans) a._enqueue(e);
    a._hide(true); // never healthy: the events stay, the tab is gone

    const b = tab(store, w, 'tab-b');
    const c = tab(store, w, 'tab-c');
    const own = [event(), event()];
    b._enqueue(own[0]);
    c._enqueue(own[1]);
    b._flush();
    c._flush();
    for (let i = 0; i < 30; i++) {
      await vi.advanceTimersByTimeAsync(100);
      for (const call of calls.splice(0)) {
        sent.push(...call.ids);
        call.answer(202);
      }
    }
    expect(sent.sort()).toEqual([...orphans, ...own].map((e) => e.event_id).sort());
    expect(new Set(sent).size).toBe(sent.length);
  });

  it('leave a live tab\'s events alone', async () => {
    const store = memoryStore();
    const { w, calls } = fakeWindow();
    const a = tab(store, w, 'tab-a');
    a._enqueue(event());
    calls.length = 0;
    const b = tab(store, w, 'tab-b');
    b._flush();
    await vi.advanceTimersByTimeAsync(500);
    expect(calls).toHaveLength(0); // a's batch timer has not fired, and b must not send a's event
  });
});
