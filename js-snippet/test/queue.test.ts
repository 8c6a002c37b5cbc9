import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES, batchBody, envelope, mayAdopt, planBatches, utf8Length } from '../src/core/queue';

const item = (n: number, size = 50) => ({ id: `e${n}`, ts: 1_700_000_000_000 + n, json: JSON.stringify({ n, pad: 'x'.repeat(size) }) });

describe('utf8Length', () => {
  it('counts bytes as TextEncoder does', () => {
    for (const s of ['', 'abc', 'é', '€uro', '😀 smile', 'mixé€😀\u0000', '\ud800']) {
      expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    }
  });
});

describe('batchBody', () => {
  it('is a valid collector batch', () => {
    const body = JSON.parse(batchBody([item(1), item(2)], 1_700_000_000_123));
    expect(body.sent_at).toBe(1_700_000_000_123);
    expect(body.events.map((e: { n: number }) => e.n)).toEqual([1, 2]);
  });

  it('carries the site and the consent it is sent under', () => {
    const body = JSON.parse(batchBody([item(1)], 1_700_000_000_000, envelope('shop"x', 'granted', true)));
    expect(body).toMatchObject({ site_id: 'shop"x', consent: { state: 'granted', recorded: true } });
    expect(Object.keys(body)).toEqual(['site_id', 'consent', 'sent_at', 'events']);
  });
});

describe('planBatches', () => {
  it('keeps order and bounds the number of events per batch', () => {
    const items = Array.from({ length: 25 }, (_, i) => item(i));
    const batches = planBatches(items, MAX_BODY_BYTES, 10);
    expect(batches.map((b) => b.length)).toEqual([10, 10, 5]);
    expect(batches.flat()).toEqual(items);
  });

  it('keeps every body under the byte bound (the 64 KiB keepalive quota)', () => {
    const items = Array.from({ length: 40 }, (_, i) => item(i, 5000 + ((i * 997) % 3000)));
    const batches = planBatches(items, MAX_BODY_BYTES, 100);
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(utf8Length(batchBody(b, 1_700_000_000_000))).toBeLessThanOrEqual(MAX_BODY_BYTES);
    expect(batches.flat()).toEqual(items);
  });

  it('counts multi-byte characters as bytes, not characters', () => {
    const wide = { id: 'w', ts: 1, json: JSON.stringify({ t: '€'.repeat(15_000) }) }; // 45 000 bytes
    const batches = planBatches([wide, { ...wide, id: 'w2' }], MAX_BODY_BYTES, 100);
    expect(batches.length).toBe(2);
  });

  it('gives an oversized item a batch of its own rather than losing it', () => {
    const big = item(1, MAX_BODY_BYTES);
    expect(planBatches([item(0), big, item(2)], MAX_BODY_BYTES, 100)).toEqual([[item(0)], [big], [item(2)]]);
  });

  it('makes no batch from nothing', () => {
    expect(planBatches([], MAX_BODY_BYTES, 10)).toEqual([]);
  });
});

describe('mayAdopt', () => {
  it('never takes its own events, nor those of a live tab', () => {
    expect(mayAdopt('me', 'me', 0, 10)).toBe(false);
    expect(mayAdopt('other', 'me', 11, 10)).toBe(false);
  });

  it('takes events whose tab closed or stopped beating', () => {
    expect(mayAdopt('other', 'me', 0, 10)).toBe(true);
    expect(mayAdopt('other', 'me', 10, 10)).toBe(true);
  });
});
