import { describe, expect, it } from 'vitest';
import {
  BACKOFF_CAP_MS,
  MAX_RETRY_AFTER_MS,
  backoffDelay,
  parseRetryAfter,
  trustUnanswered,
  verdict,
} from '../src/core/retry';

describe('verdict', () => {
  it('retries network errors, 408, 429 and every 5xx', () => {
    for (const s of [null, 408, 429, 500, 502, 503, 504]) expect(verdict(s)).toBe('retry');
  });

  it('counts 2xx as delivered', () => {
    for (const s of [200, 202, 204]) expect(verdict(s)).toBe('ok');
  });

  it('does not retry other 4xx, and splits on 413', () => {
    for (const s of [400, 401, 403, 404, 415, 422]) expect(verdict(s)).toBe('drop');
    expect(verdict(413)).toBe('split');
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('5', now)).toBe(5000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
  });

  it('reads an HTTP date', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
  });

  it('ignores garbage and caps absurd values', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-3', now)).toBe(0); // no wait imposed
    expect(parseRetryAfter('999999999', now)).toBe(MAX_RETRY_AFTER_MS);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially, jittered between half and all of the ceiling', () => {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const ceiling = 1000 * 2 ** (attempt - 1);
      expect(backoffDelay(attempt, 0)).toBe(ceiling / 2);
      expect(backoffDelay(attempt, 0.999999)).toBeLessThanOrEqual(ceiling);
      expect(backoffDelay(attempt, 0.999999)).toBeGreaterThan(ceiling * 0.99);
    }
  });

  it('is capped', () => {
    expect(backoffDelay(50, 0.999999)).toBeLessThanOrEqual(BACKOFF_CAP_MS);
    expect(backoffDelay(5000, 0.5)).toBeLessThanOrEqual(BACKOFF_CAP_MS);
  });

  it('spreads clients that failed together', () => {
    const delays = new Set([0.1, 0.4, 0.7, 0.95].map((r) => backoffDelay(4, r)));
    expect(delays.size).toBe(4);
  });

  it('never retries before Retry-After, even above the cap', () => {
    expect(backoffDelay(1, 0, 5000)).toBe(5000);
    expect(backoffDelay(1, 0, 120_000)).toBe(120_000);
    expect(backoffDelay(10, 0.5, 100)).toBeGreaterThan(100);
  });
});

describe('collector health', () => {
  it('trusts an unanswered send only after a recent success', () => {
    const now = 1_700_000_000_000;
    expect(trustUnanswered(now - 500, now, 60_000)).toBe(true);
    expect(trustUnanswered(now - 60_000, now, 60_000)).toBe(false);
    expect(trustUnanswered(0, now, 60_000)).toBe(false); // the last answer was a failure, or none
    expect(trustUnanswered(now + 4000, now, 60_000)).toBe(false); // clock went back
  });
});
