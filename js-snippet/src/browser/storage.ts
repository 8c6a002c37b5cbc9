/** localStorage and cookies, made safe: storage can be missing, full or forbidden. */

/** Every localStorage key the tracker writes starts with this; a refusal removes them all. */
export const PREFIX = 'trk:';

export interface Store {
  _get(key: string): string | null;
  /** Numbers are stored as text (localStorage's way). */
  _set(key: string, value: string | number): void;
  _del(key: string): void;
  /** Keys that start with `prefix`. */
  _keys(prefix: string): string[];
}

/** `fn()`, or `fallback` if it throws. */
export function attempt<T>(fn: () => T, fallback?: T): T {
  try {
    return fn();
  } catch {
    return fallback as T;
  }
}

/**
 * localStorage, and for what it refuses (full, private mode, disabled: reading the
 * property itself may throw) a copy in memory, so that this page still has it.
 */
export function localStore(w: Window): Store {
  const memory = new Map<string, string>();
  const ls = (): Storage => w.localStorage;
  return {
    _get: (key) => memory.get(key) ?? attempt(() => ls().getItem(key), null),
    _set: (key, value) => {
      try {
        ls().setItem(key, value as string);
        memory.delete(key);
      } catch {
        memory.set(key, `${value}`);
      }
    },
    _del: (key) => {
      memory.delete(key);
      attempt(() => ls().removeItem(key));
    },
    _keys: (prefix) =>
      [...new Set([...attempt(() => Object.keys(ls()), []), ...memory.keys()])].filter((k) => k.startsWith(prefix)),
  };
}
/** The value of the cookie `name` (letters, digits and `_` only: the configuration checks it). */
export function readCookie(d: Document, name: string): string | null {
  try {
    const m = d.cookie.match(`(?:^|; )${name}=([^;]*)`);
    return m && decodeURIComponent(m[1]);
  } catch {
    return null; // cookies disabled, or a value that is not ours
  }
}

/** Writes (or with `maxAgeSeconds` 0, deletes) a first-party cookie for the whole site. */
export function writeCookie(d: Document, name: string, value: string, maxAgeSeconds: number, domain: string | null): void {
  try {
    const secure = d.location.protocol === 'https:' ? '; Secure' : '';
    const dom = domain ? `; Domain=${domain}` : '';
    d.cookie = `${name}=${encodeURIComponent(value)}; Max-Age=${maxAgeSeconds}; Path=/; SameSite=Lax${dom}${secure}`;
  } catch {
    /* cookies disabled: the localStorage mirror still holds the id */
  }
}
