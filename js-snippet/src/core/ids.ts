/** Visitor and session ids: what a valid id is, and when a session ends. */

/** The collector's pattern for visitor and session ids (tracker/schema.py, VisitorId). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;

export const isId = (v: unknown): v is string => typeof v === 'string' && ID_PATTERN.test(v);

/**
 * The session an event at `now` belongs to, in its stored form `id.last` (`.` never
 * occurs in an id; `last`: the time of its last event, epoch ms): the stored one
 * (`raw`) if it saw an event less than `timeoutMs` ago, else a new one (30 minutes of
 * inactivity end a session). Garbage counts as no session.
 */
export function touchSession(raw: string | null, now: number, timeoutMs: number, newId: () => string): string {
  const [id, at] = (raw || '').split('.');
  const last = Number(at);
  // A clock that went backwards keeps the session rather than splitting it.
  return isId(id) && last > 0 && now - last < timeoutMs ? `${id}.${Math.max(now, last)}` : `${newId()}.${now}`;
}
