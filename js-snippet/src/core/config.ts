/** The site's configuration (`tracker('init', {...})`), checked and completed with defaults. */

import { type ConsentState, isConsentState } from './consent';

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

export const DEFAULTS: Omit<Config, 'site'> = {
  collector: '',
  offers: null,
  consent: 'pending',
  consentRecorded: false,
  cookieName: '_trk_id',
  cookieDays: 395,
  cookieDomain: null,
  serverCookie: false,
  sessionMinutes: 30,
  pageViews: true,
  pingSeconds: 15,
  outboundLinks: true,
  batchSize: 10,
  batchMs: 1000,
  maxQueue: 500,
  offerTimeoutMs: 3000,
};

const SITE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const COOKIE = /^[A-Za-z0-9_]{1,32}$/;
const DOMAIN = /^\.?[a-z0-9.-]{1,253}$/i;
// [min, max] of the numeric options: values outside are refused, not clamped silently.
const RANGES: Record<string, [number, number]> = {
  cookieDays: [1, 395],
  sessionMinutes: [1, 24 * 60],
  pingSeconds: [0, 300],
  batchSize: [1, 100],
  batchMs: [0, 60_000],
  maxQueue: [10, 5000],
  offerTimeoutMs: [100, 60_000],
};

const trimSlash = (u: string) => u.replace(/\/+$/, '');

/**
 * The configuration, with a warning for each option left at its default because it
 * was unknown or invalid; or an error when there is no valid site id.
 */
export function parseConfig(input: unknown): { config: Config; warnings: string[] } | { error: string } {
  const o = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  if (typeof o.site !== 'string' || !SITE.test(o.site)) return { error: 'init: site must be a site id like "my-shop"' };
  const c: Config = { ...DEFAULTS, site: o.site };
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(o)) {
    if (key === 'site' || value === undefined) continue;
    const def = (DEFAULTS as unknown as Record<string, unknown>)[key];
    const range = RANGES[key];
    const ok =
      key === 'consent'
        ? isConsentState(value)
        : key === 'cookieName'
          ? typeof value === 'string' && COOKIE.test(value)
          : key === 'cookieDomain'
            ? value === null || (typeof value === 'string' && DOMAIN.test(value))
            : key === 'collector' || key === 'offers'
              ? value === null || typeof value === 'string'
              : range
                ? typeof value === 'number' && value >= range[0] && value <= range[1]
                : def !== undefined && typeof value === typeof def;
    if (!ok) {
      warnings.push(`init: option ${key} is ${def === undefined && !range ? 'unknown' : 'invalid'}; using the default`);
      continue;
    }
    const url = typeof value === 'string' && (key === 'collector' || key === 'offers');
    (c as unknown as Record<string, unknown>)[key] = url ? trimSlash(value) : value;
  }
  return { config: c, warnings };
}
