/** Visitor and session ids: what a valid id is, and when a session ends. */

/** The collector's pattern for visitor and session ids (tracker/schema.py, VisitorId). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;

export const isId = (v: unknown): v is string => typeof v === 'string' && ID_PATTERN.test(v);

/** A session: its id and the time of its last event (epoch ms). */
export interface Session {
  id: string;
  last: number;
}

/** Sessions are stored as `id.last`: short, and `.` never occurs in an id. */
export function formatSession(s: Session): string {
  return `${s.id}.${s.last}`;
}

export function parseSession(raw: string | null | undefined): Session | null {
  if (!raw) return null;
  const dot = raw.lastIndexOf('.');
  const id = raw.slice(0, dot);
  const last = Number(raw.slice(dot + 1));
  return dot > 0 && isId(id) && Number.isFinite(last) && last > 0 ? { id, last } : null;
}

/**
 * The session an event at `now` belongs to: the stored one if it saw an event less
 * than `timeoutMs` ago, else a new one (30 minutes of inactivity end a session).
 */
export function touchSession(
  prev: Session | null,
  now: number,
  timeoutMs: number,
  newId: () => string,
): Session {
  // A clock that went backwards keeps the session rather than splitting it.
  return prev && now - prev.last < timeoutMs ? { id: prev.id, last: Math.max(now, prev.last) } : { id: newId(), last: now };
}
