/**
 * Retry policy: what to do with a response, how long to wait before trying again,
 * and when the collector counts as healthy.
 */

/** ok: delivered; retry: keep and send again later; drop: refused for good; split: too large. */
export type Verdict = 'ok' | 'retry' | 'drop' | 'split';

/**
 * The verdict for an HTTP status, `null` meaning a network error (no answer, or one
 * the browser would not show, such as a CORS failure). Network errors, 429, 5xx and
 * 408 (the body was too slow to arrive: a network problem, not a refusal) are retried;
 * 413 splits the batch; any other 4xx would fail again, so is dropped.
 */
export function verdict(status: number | null): Verdict {
  if (status === null || status === 408 || status === 429 || status >= 500) return 'retry';
  if (status >= 200 && status < 300) return 'ok';
  if (status === 413) return 'split';
  return status >= 400 ? 'drop' : 'retry';
}

/** The longest `Retry-After` honoured (ms): a broken header must not silence a page forever. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** `Retry-After` (delta-seconds or an HTTP date) in milliseconds from `now`. */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : /[a-z]/i.test(v) ? Date.parse(v) - now : Number.NaN;
  return Number.isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : undefined;
}

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, capMs: 60_000 };

/**
 * Milliseconds to wait before retry number `attempt` (1 for the first): capped
 * exponential growth with "equal jitter" (half fixed, half random, so tabs that failed
 * together spread out but never retry at once), and never less than `Retry-After`.
 * `random` is in [0, 1).
 */
export function backoffDelay(attempt: number, random: number, opts: BackoffOptions, retryAfterMs?: number): number {
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  const delay = Math.round(ceiling / 2 + (random * ceiling) / 2);
  return retryAfterMs === undefined ? delay : Math.max(delay, retryAfterMs);
}

/**
 * The last delivery outcome, shared by the tabs of a site: `ok` and the time of the
 * last success, or not ok and the time of the last failure.
 */
export interface Health {
  ok: boolean;
  at: number;
}

export function formatHealth(h: Health): string {
  return `${h.ok ? 1 : 0}:${h.at}`;
}

export function parseHealth(raw: string | null | undefined): Health | null {
  const m = raw ? /^([01]):(\d+)$/.exec(raw) : null;
  return m ? { ok: m[1] === '1', at: Number(m[2]) } : null;
}

/**
 * Whether an unanswered send on page exit (`sendBeacon`, or a keepalive fetch the page
 * will not see finish) may count as delivered: only if the collector's last answer, at
 * most `windowMs` ago, was a success. Otherwise the events stay queued and the next page
 * sends them again (at the cost of a possible duplicate, which downstream removes by
 * event id, rather than a possible loss).
 */
export function trustUnanswered(h: Health | null, now: number, windowMs: number): boolean {
  return !!h && h.ok && now - h.at < windowMs && now >= h.at;
}
