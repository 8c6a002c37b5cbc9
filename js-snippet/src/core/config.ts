/** The site's configuration (`tracker('init', {...})`), checked and completed with defaults. */

import type { ConsentState } from './consent';

export interface Config {
  /** Site id, as registered with the collector. */
  site: string;
  /** Base URL of the collector (`''`: the page's own origin, e.g. behind the site's proxy). */
  collector: string;
  /** Base URL of the offer API; without it offer slots are left alone. */
  offers: string | null;
  /** Consent state at page load. */
  consent: ConsentState;
  /** The site recorded the visitor's consent itself: it overrides Do-Not-Track and GPC. */
  consentRecorded: boolean;
  cookieName: string;
  /** Lifetime of the visitor id cookie (default 13 months, the CNIL-style bound). */
  cookieDays: number;
  cookieDomain: string | null;
  /** Have the collector set the id cookie (`POST /v1/id`): Safari caps script-set cookies at 7 days. */
  serverCookie: boolean;
  sessionMinutes: number;
  /** Automatic page views, including History API route changes. */
  pageViews: boolean;
  /** Seconds between page pings while the page is visible and used; 0 turns them off. */
  pingSeconds: number;
  /** Clicks on links to other hosts. */
  outboundLinks: boolean;
  /** Events per request, and the longest an event waits for its batch (ms). */
  batchSize: number;
  batchMs: number;
  /** Events kept in the persistent queue; beyond it the oldest are dropped (and counted). */
  maxQueue: number;
  /** Milliseconds an offer request may take before the slot keeps its own content. */
  offerTimeoutMs: number;
}

type Option = [value: unknown, check?: RegExp | number, max?: number];

/**
 * Each option: its default, and what a valid value is. A number is valid between the
 * two bounds given (numbers outside are refused, not clamped silently); a boolean if it
 * is one; a text if it matches the pattern given (any text without one); `null` where
 * the default is null.
 */
const OPTIONS: Record<keyof Config, Option> = {
  // Required: refused (and then the whole configuration) when missing or invalid.
  site: [null, /^[a-z0-9][a-z0-9_-]{0,63}$/],
  collector: [''],
  offers: [null],
  consent: ['pending', /^(pending|granted|denied)$/],
  consentRecorded: [false],
  cookieName: ['_trk_id', /^[A-Za-z0-9_]{1,32}$/],
  cookieDays: [395, 1, 395],
  cookieDomain: [null, /^\.?[a-z0-9.-]{1,253}$/i],
  serverCookie: [false],
  sessionMinutes: [30, 1, 24 * 60],
  pageViews: [true],
  pingSeconds: [15, 0, 300],
  outboundLinks: [true],
  batchSize: [10, 1, 100],
  batchMs: [1000, 0, 60_000],
  maxQueue: [500, 10, 5000],
  offerTimeoutMs: [3000, 100, 60_000],
};

function valid([def, check, max]: Option, v: unknown): boolean {
  if (typeof def === 'number') return typeof v === 'number' && v >= (check as number) && v <= (max as number);
  if (typeof def === 'boolean') return typeof v === 'boolean';
  return v === null ? def === null : typeof v === 'string' && (!check || (check as RegExp).test(v));
}

/** The defaults, and what the site set (each option unknown or invalid is warned about and left at its default). */
function options(input: unknown, warn: (message: string) => void): Record<string, unknown> {
  const c = Object.fromEntries(Object.entries(OPTIONS).map(([k, [v]]) => [k, v]));
  for (const [key, value] of Object.entries(input && typeof input === 'object' ? input : {})) {
    if (value === undefined) continue;
    const known = Object.hasOwn(OPTIONS, key);
    if (known && valid(OPTIONS[key as keyof Config], value)) {
      // Base URLs without their trailing slashes.
      c[key] = typeof value === 'string' ? value.replace(/\/+$/, '') : value;
    } else warn(`E${known ? 7 : 6} ${key}`);
  }
  return c;
}

export const DEFAULTS = /* @__PURE__ */ options({}, () => {}) as Omit<Config, 'site'>;

/**
 * The configuration, with a warning for each option left at its default because it
 * was unknown or invalid; or null (and a warning) when there is no valid site id.
 */
export function parseConfig(input: unknown, warn: (message: string) => void): Config | null {
  const c = options(input, warn) as unknown as Config;
  if (c.site) return c;
  warn('E5');
  return null;
}
