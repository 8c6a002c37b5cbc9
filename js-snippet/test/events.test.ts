import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, buildDraft, finalize } from '../src/core/events';

const base = { event_id: '0b7e2c1e-9a4f-4c1e-8f3a-2d5b6c7d8e9f', ts: 1_700_000_000_000, url: 'https://shop.example/p/1', referrer: '' };

/** The draft (or null) and the warnings given while building it. */
const build = (type: string, fields: unknown) => {
  const warnings: string[] = [];
  return { draft: buildDraft(type, fields, base, (m) => warnings.push(m)), warnings };
};
const ok = (type: string, fields: unknown) => {
  const r = build(type, fields);
  if (!r.draft) throw new Error(r.warnings.join('; '));
  return r.draft;
};
const error = (type: string, fields: unknown) => {
  const r = build(type, fields);
  return r.draft ? null : r.warnings[0];
};

describe('buildDraft', () => {
  it('covers every event type of the schema', () => {
    expect(EVENT_TYPES.sort()).toEqual(
      [
        'page_view', 'page_ping', 'product_view', 'add_to_cart', 'remove_from_cart', 'purchase', 'search',
        'link_click', 'offer_impression', 'offer_click', 'identify', 'consent', 'custom',
      ].sort(),
    );
  });

  it('carries the id, timestamp and page, without an empty referrer', () => {
    expect(ok('page_view', { title: 'Home' })).toEqual({
      type: 'page_view',
      event_id: base.event_id,
      ts: base.ts,
      url: base.url,
      title: 'Home',
    });
  });

  it('keeps only the fields the schema knows', () => {
    const d = ok('product_view', { product_id: 'sku-1', category: 'shoes', price: '49.50', currency: 'eur', email: 'a@b.c' });
    expect(d).toMatchObject({ product_id: 'sku-1', category: 'shoes', price: 49.5, currency: 'EUR' });
    expect(d).not.toHaveProperty('email');
  });

  it('refuses a call missing a required field, naming it', () => {
    expect(error('product_view', { product_id: 'sku-1' })).toBe('E11 product_view.category');
    expect(error('purchase', { order_id: 'o-1', value: 10 })).toBe('E11 purchase.currency');
    expect(error('search', { query: '' })).toBe('E11 search.query');
    expect(error('nope', {})).toBe('E10 nope');
  });

  it('refuses invalid required fields and leaves out invalid optional ones', () => {
    expect(error('product_view', { product_id: 'has space', category: 'x' })).toBe('E12 product_view.product_id');
    expect(error('purchase', { order_id: 'o-1', value: -1, currency: 'EUR' })).toBe('E12 purchase.value');
    const r = build('add_to_cart', { product_id: 7, quantity: 0.5, price: -3 });
    expect(r.warnings).toEqual(['E13 add_to_cart.price', 'E13 add_to_cart.quantity']);
    expect(r).not.toHaveProperty('draft.price');
    expect(r).not.toHaveProperty('draft.quantity');
    expect(ok('add_to_cart', { product_id: 7 }).product_id).toBe('7');
  });

  it('builds a purchase with its cart lines', () => {
    const d = ok('purchase', {
      order_id: 'o-77',
      value: 99.9,
      currency: 'EUR',
      items: [{ product_id: 'a', quantity: 2, price: 10, name: 'not in schema' }, { product_id: 'b', category: 'shoes' }],
    });
    expect(d.items).toEqual([{ product_id: 'a', quantity: 2, price: 10 }, { product_id: 'b', category: 'shoes' }]);
    // A bad cart line loses the lines, not the purchase (its value still counts).
    const r = build('purchase', { order_id: 'o', value: 1, currency: 'EUR', items: [{ quantity: 1 }] });
    expect(r.warnings).toEqual(['E13 purchase.items']);
    expect(r).not.toHaveProperty('draft.items');
  });

  it('takes only a SHA-256 hex hash for identify', () => {
    const hash = 'A'.repeat(64);
    expect(ok('identify', { customer_hash: hash }).customer_hash).toBe('a'.repeat(64));
    expect(error('identify', { customer_hash: 'jane@example.com' })).toBe('E12 identify.customer_hash');
  });

  it('keeps custom properties within the schema bounds', () => {
    const props: Record<string, unknown> = { ok: 'yes', n: 3, flag: true, nested: { no: 1 }, long: 'x'.repeat(257) };
    for (let i = 0; i < 40; i++) props[`p${i}`] = i;
    const d = ok('custom', { name: 'newsletter.signup', properties: props });
    const kept = d.properties as Record<string, unknown>;
    expect(Object.keys(kept).length).toBe(32);
    expect(kept).toMatchObject({ ok: 'yes', n: 3, flag: true });
    expect(kept).not.toHaveProperty('nested');
    expect(kept).not.toHaveProperty('long');
    expect(error('custom', { name: 'has space' })).toBe('E12 custom.name');
  });

  it('truncates long texts to the schema limits', () => {
    expect((ok('search', { query: 'q'.repeat(500) }).query as string).length).toBe(200);
    expect(buildDraft('page_view', {}, { ...base, url: `https://x.example/${'a'.repeat(3000)}` }, () => {})).toMatchObject({
      url: expect.stringMatching(/^.{2048}$/),
    });
  });

  it('clamps page ping measures into range', () => {
    expect(ok('page_ping', { scroll_depth: 140.4, engaged_ms: -5 })).toMatchObject({ scroll_depth: 100, engaged_ms: 0 });
  });
});

describe('finalize', () => {
  it('adds the ids known only after consent', () => {
    const e = finalize(ok('search', { query: 'boots' }), 'shop', 'visitor-123', 'session-456');
    expect(e).toMatchObject({ site_id: 'shop', visitor_id: 'visitor-123', session_id: 'session-456', type: 'search' });
  });
});
