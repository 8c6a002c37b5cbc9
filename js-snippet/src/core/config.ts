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

/** Whether `key` is an own property of `table` (not one inherited, such as `toString`). */
export const has = (table: object, key: string): boolean => Object.prototype.hasOwnProperty.call(table, key);

type Check = (v: unknown) => boolean;
const isString: Check = (v) => typeof v === 'string';
const isBoolean: Check = (v) => typeof v === 'boolean';
const matches = (re: RegExp): Check => (v) => isString(v) && re.test(v as string);
const orNull = (check: Check): Check => (v) => v === null || check(v);
// Numbers outside their range are refused, not clamped silently.
const inRange = (min: number, max: number): Check => (v) => typeof v === 'number' && v >= min && v <= max;

/** What a valid value of each option is (its default is in {@link DEFAULTS}). */
const CHECKS: Record<keyof typeof DEFAULTS, Check> = {
  collector: orNull(isString),
  offers: orNull(isString),
  consent: isConsentState,
  consentRecorded: isBoolean,
  cookieName: matches(/^[A-Za-z0-9_]{1,32}$/),
  cookieDays: inRange(1, 395),
  cookieDomain: orNull(matches(/^\.?[a-z0-9.-]{1,253}$/i)),
  serverCookie: isBoolean,
  sessionMinutes: inRange(1, 24 * 60),
  pageViews: isBoolean,
  pingSeconds: inRange(0, 300),
  outboundLinks: isBoolean,
  batchSize: inRange(1, 100),
  batchMs: inRange(0, 60_000),
  maxQueue: inRange(10, 5000),
  offerTimeoutMs: inRange(100, 60_000),
};

/**
 * The configuration, with a warning for each option left at its default because it
 * was unknown or invalid; or null (and a warning) when there is no valid site id.
 */
export function parseConfig(input: unknown, warn: (message: string) => void): Config | null {
  const o = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  if (!matches(SITE)(o.site)) {
    warn('init: site must be a site id like "my-shop"');
    return null;
  }
  const c = { ...DEFAULTS, site: o.site } as Config & Record<string, unknown>;
  for (const [key, value] of Object.entries(o)) {
    if (key === 'site' || value === undefined) continue;
    const known = has(CHECKS, key);
    if (known && CHECKS[key as keyof typeof CHECKS](value)) {
      // Base URLs without their trailing slashes.
      c[key] = key === 'collector' || key === 'offers' ? value && (value as string).replace(/\/+$/, '') : value;
    } else warn(`init: option ${key} is ${known ? 'invalid' : 'unknown'}; using the default`);
  }
  return c;
}
