/**
 * Building events in the collector's schema (tracker/schema.py).
 *
 * A call becomes a *draft* at once (event id, client timestamp, page, type-specific
 * fields), and an *event* once the visitor has consented (site, visitor and session
 * ids added). Only the fields the schema knows are kept, so that an unknown field
 * can never get a whole event refused; a missing or invalid required field refuses
 * the call with a warning, an invalid optional one is left out with a warning.
 */

export type Fields = Record<string, unknown>;

export interface Draft {
  type: string;
  event_id: string;
  ts: number;
  url?: string;
  referrer?: string;
  [field: string]: unknown;
}

export type TrackedEvent = Draft & { site_id: string; visitor_id: string; session_id?: string };

export interface Base {
  event_id: string;
  ts: number;
  url?: string;
  referrer?: string;
}

/**
 * Field kinds: T title, Q search query, U url (texts, truncated to their limit);
 * S short text, P product id, C category, X custom name, H SHA-256 hex,
 * K currency (refused when invalid); N money, I quantity, D scroll depth, M engaged ms;
 * L cart lines, O custom properties. `!` marks a required field.
 */
const LINE = 'product_id:P! category:C price:N quantity:I';
const CART = `${LINE} currency:K`;
const OFFER = 'decision_id:S! offer_id:S! slot:S';
const SPECS: Record<string, string> = {
  page_view: 'title:T category:C',
  page_ping: 'scroll_depth:D engaged_ms:M',
  product_view: 'product_id:P! category:C! price:N currency:K',
  add_to_cart: CART,
  remove_from_cart: CART,
  purchase: 'order_id:S! value:N! currency:K! items:L',
  search: 'query:Q!',
  link_click: 'target_url:U!',
  offer_impression: OFFER,
  offer_click: OFFER,
  identify: 'customer_hash:H!',
  consent: 'state:S!', // made by the tracker only, like pings and offer events
  custom: 'name:X! properties:O',
};

/** The event types calls can make (those of the collector's schema). */
export const EVENT_TYPES = /* @__PURE__ */ Object.keys(SPECS);

// (Empty values never get here: they count as missing.)
const text = (max: number) => (v: unknown) => (typeof v === 'string' ? v.slice(0, max) : undefined);
/** A text (a finite number becomes one) of at most `max` characters matching `re`, after `fix`. */
const match =
  (re: RegExp, max: number, fix = (s: string) => s) =>
  (v: unknown) => {
    const s = typeof v === 'number' && isFinite(v) ? String(v) : v;
    return typeof s === 'string' && s.length <= max && re.test(fix(s)) ? fix(s) : undefined;
  };
const num = (min: number, max: number, int?: boolean) => (v: unknown) => {
  const n = typeof v === 'string' && v.trim() ? Number(v) : v;
  return typeof n === 'number' && n >= min && n <= max && (!int || Number.isInteger(n)) ? n : undefined;
};
const clampInt = (max: number) => (v: unknown) =>
  typeof v === 'number' && isFinite(v) ? Math.min(max, Math.max(0, Math.round(v))) : undefined;

const KINDS: Record<string, (v: unknown) => unknown> = {
  T: text(512),
  Q: text(200),
  U: text(2048),
  S: match(/^/, 128),
  P: match(/^\S+$/, 128),
  C: match(/^/, 64),
  X: match(/^[\w.:-]+$/, 64),
  H: match(/^[0-9a-f]{64}$/, 64, (s) => s.toLowerCase()),
  K: match(/^[A-Z]{3}$/, 3, (s) => s.toUpperCase()),
  N: num(0, 1e9),
  I: num(1, 10_000, true),
  D: clampInt(100),
  M: clampInt(3_600_000),
  L: (v) => {
    if (!Array.isArray(v) || v.length > 200) return undefined;
    const lines = v.map((line) => pick('item', LINE, line));
    return lines.every((l) => typeof l !== 'string') ? lines : undefined;
  },
  O: (v) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    const out: Fields = {};
    let n = 0;
    for (const [k, p] of Object.entries(v as Fields)) {
      const ok = typeof p === 'string' ? p.length <= 256 : typeof p === 'boolean' || (typeof p === 'number' && isFinite(p));
      if (ok && k.length <= 64 && n++ < 32) out[k] = p;
    }
    return out;
  },
};

/**
 * The fields of `spec` taken from `input`, or an error message naming the bad field.
 * Invalid optional fields are left out, each with a warning.
 */
function pick(what: string, spec: string, input: unknown, warn?: (message: string) => void): Fields | string {
  const src = (input && typeof input === 'object' ? input : {}) as Fields;
  const out: Fields = {};
  for (const part of spec.split(' ')) {
    const [name, kind] = part.split(':');
    const required = kind[1]; // `!`
    const raw = src[name];
    if (raw === undefined || raw === null || raw === '') {
      if (required) return `E11 ${what}.${name}`;
      continue;
    }
    const value = KINDS[kind[0]](raw);
    if (value !== undefined) out[name] = value;
    else if (required) return `E12 ${what}.${name}`;
    else warn?.(`E13 ${what}.${name}`);
  }
  return out;
}

/**
 * A draft of a `type` event from the site's fields, or null when a required field is
 * missing or invalid (never throws). Every refusal or omission is passed to `warn`.
 */
export function buildDraft(type: string, fields: unknown, base: Base, warn: (message: string) => void): Draft | null {
  const spec = SPECS[type];
  const picked = spec === undefined ? `E10 ${type}` : pick(type, spec, fields, warn);
  if (typeof picked === 'string') {
    warn(picked);
    return null;
  }
  return { type, event_id: base.event_id, ts: base.ts, ...(pick('', 'url:U referrer:U', base) as Fields), ...picked };
}

/** The event the collector receives: the draft plus the ids it could only get after consent. */
export const finalize = (draft: Draft, site_id: string, visitor_id: string, session_id?: string): TrackedEvent => ({
  ...draft,
  site_id,
  visitor_id,
  session_id,
});
