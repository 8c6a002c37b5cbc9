/**
 * The visitor id (first-party cookie plus a localStorage mirror) and the session id.
 * Only ever used once the visitor has consented.
 *
 * Safari caps cookies written by scripts at 7 days. With `serverCookie`, the collector
 * also keeps the id in an HttpOnly cookie of its own (set on its answers to consented
 * batches): when both local copies are gone, the snippet asks for it (`GET /v1/id`)
 * before it makes a new id.
 */

import type { Config } from '../core/config';
import { formatSession, isId, parseSession, touchSession } from '../core/ids';
import { fetchWithin } from './net';
import { PREFIX, type Store, readCookie, writeCookie } from './storage';

const MIRROR = `${PREFIX}id`;
const SESSION = `${PREFIX}s`;

export interface Identity {
  /** The id stored on this browser (cookie, else mirror), if any. */
  stored(): string | null;
  /** The collector's copy (`GET /v1/id`), or null: unknown, disabled, unreachable or slow. */
  fromServer(timeoutMs: number): Promise<string | null>;
  /** Stores `id` in both places (again: refreshes the cookie's lifetime); returns it. */
  keep(id: string): string;
  /** The session id for an event at `ts`, extending the session. */
  session(ts: number): string;
  /** Forgets both ids and everything else the tracker stored (the collector's cookie too). */
  wipe(): void;
}

export function createIdentity(w: Window, store: Store, cfg: Config, newId: () => string): Identity {
  const d = w.document;
  const idUrl = `${cfg.collector}/v1/id`;
  return {
    stored() {
      const cookie = readCookie(d, cfg.cookieName);
      if (isId(cookie)) return cookie;
      const mirror = store.get(MIRROR);
      return isId(mirror) ? mirror : null;
    },
    fromServer(timeoutMs) {
      return fetchWithin(w, idUrl, { credentials: 'include' }, timeoutMs)
        .then((res) => (res.ok ? res.json() : null))
        .then((body) => (body && isId(body.visitor_id) ? (body.visitor_id as string) : null))
        .catch(() => null);
    },
    keep(id) {
      store.set(MIRROR, id);
      writeCookie(d, cfg.cookieName, id, cfg.cookieDays * 86_400, cfg.cookieDomain);
      return id;
    },
    session(ts) {
      const s = touchSession(parseSession(store.get(SESSION)), ts, cfg.sessionMinutes * 60_000, newId);
      store.set(SESSION, formatSession(s));
      return s.id;
    },
    wipe() {
      const traces = readCookie(d, cfg.cookieName) !== null || store.keys(PREFIX).length > 0;
      writeCookie(d, cfg.cookieName, '', 0, null);
      if (cfg.cookieDomain) writeCookie(d, cfg.cookieName, '', 0, cfg.cookieDomain);
      for (const key of store.keys(PREFIX)) store.del(key);
      // Only a browser that had consented can hold the collector's copy: others send nothing.
      if (cfg.serverCookie && traces) {
        // HttpOnly: only the collector can delete its copy.
        w.fetch(`${idUrl}/forget`, { method: 'POST', credentials: 'include', keepalive: true }).catch(() => {});
      }
    },
  };
}
