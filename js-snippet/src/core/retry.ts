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
  if (status === null) return 'retry';
  if (status >= 200 && status < 300) return 'ok';
  if (status === 413) return 'split';
  return status < 400 || status >= 500 || status === 408 || status === 429 ? 'retry' : 'drop';
}

/** The longest `Retry-After` honoured (ms): a broken header must not silence a page forever. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** `Retry-After` (delta-seconds or an HTTP date) in milliseconds from `now`; a time past is 0. */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  const ms = Number(value) * 1000 || Date.parse(value as string) - now;
  return isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : undefined;
}

/** Backoff: the first retry after about a second, doubling up to a minute. */
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 60_000;

/**
 * Milliseconds to wait before retry number `attempt` (1 for the first): capped
 * exponential growth with "equal jitter" (half fixed, half random, so tabs that failed
 * together spread out but never retry at once), and never less than `Retry-After`.
 * `random` is in [0, 1).
 */
export function backoffDelay(attempt: number, random: number, retryAfterMs?: number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.max((ceiling * (1 + random)) / 2, retryAfterMs || 0);
}

/**
 * Whether an unanswered send on page exit (`sendBeacon`, or a keepalive fetch the page
 * will not see finish) may count as delivered: only if the collector's last answer was a
 * success (`lastOk`: its time, epoch ms; 0 when the last answer was a failure or there was
 * none), at most `windowMs` ago. Otherwise the events stay queued and the next page
 * sends them again (at the cost of a possible duplicate, which downstream removes by
 * event id, rather than a possible loss).
 */
export function trustUnanswered(lastOk: number, now: number, windowMs: number): boolean {
  return now >= lastOk && now - lastOk < windowMs;
}
