import { describe, expect, it } from 'vitest';
import { isId, touchSession } from '../src/core/ids';
import { UUID4, uuid4 } from '../src/core/uuid';

const counter = () => {
  let n = 0;
  return (b: Uint8Array) => b.map(() => n++ % 256);
};

describe('uuid4', () => {
  it('is a version 4, RFC 4122 variant UUID, also from all-zero or all-one bytes', () => {
    for (const fill of [counter(), (b: Uint8Array) => b.fill(0), (b: Uint8Array) => b.fill(255)]) {
      expect(uuid4(fill)).toMatch(UUID4);
    }
  });

  it('is a valid visitor id for the collector', () => {
    expect(isId(uuid4(counter()))).toBe(true);
  });

  it('differs from call to call with crypto randomness', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => uuid4((b) => crypto.getRandomValues(b))));
    expect(ids.size).toBe(1000);
  });
});

describe('isId', () => {
  it('follows the schema pattern ^[A-Za-z0-9_-]{8,64}$', () => {
    expect(isId('abcd1234')).toBe(true);
    expect(isId('a'.repeat(64))).toBe(true);
    expect(isId('short')).toBe(false);
    expect(isId('a'.repeat(65))).toBe(false);
    expect(isId('someone@example.com')).toBe(false);
    expect(isId(null)).toBe(false);
    expect(isId(12345678)).toBe(false);
  });
});

describe('sessions', () => {
  const THIRTY_MIN = 30 * 60_000;
  let n = 0;
  const newId = () => `session-${++n}`.padEnd(12, 'x');

  it('continues within 30 minutes of the last event, and extends itself', () => {
    expect(touchSession('kept-session.1000', 1000 + THIRTY_MIN - 1, THIRTY_MIN, newId)).toBe(`kept-session.${1000 + THIRTY_MIN - 1}`);
  });

  it('starts a new session after 30 minutes of inactivity, or with none stored', () => {
    const s = touchSession('old-session.1000', 1000 + THIRTY_MIN, THIRTY_MIN, newId);
    expect(s).toMatch(new RegExp(`^session-\\w+\\.${1000 + THIRTY_MIN}$`));
    expect(touchSession(null, 5, THIRTY_MIN, newId)).toMatch(/^session-\w+\.5$/);
  });

  it('refuses stored garbage', () => {
    for (const raw of ['', 'nodot', 'bad id.123', 'abcdefgh.', 'abcdefgh.x', '.123', 'abcdefgh.-5']) {
      expect(touchSession(raw, 10, THIRTY_MIN, newId)).toMatch(/^session-\w+\.10$/);
    }
  });

  it('keeps the session when the clock goes backwards', () => {
    expect(touchSession('kept-session.5000', 4000, THIRTY_MIN, newId)).toBe('kept-session.5000');
  });
});
