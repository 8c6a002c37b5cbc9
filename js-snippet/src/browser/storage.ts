/** localStorage and cookies, made safe: storage can be missing, full or forbidden. */

/** Every localStorage key the tracker writes starts with this; a refusal removes them all. */
export const PREFIX = 'trk:';

export interface Store {
  get(key: string): string | null;
  /** False when the write failed (quota, private mode, storage disabled). */
  set(key: string, value: string): boolean;
  del(key: string): void;
  /** Keys that start with `prefix`. */
  keys(prefix: string): string[];
}

/** `fn()`, or `fallback` if it throws. */
export function attempt<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

export function localStore(w: Window): Store {
  // Reading the property itself throws when storage is disabled (and it may be null):
  // every use is inside attempt().
  const ls = (): Storage => w.localStorage;
  return {
    get: (key) => attempt(() => ls().getItem(key), null),
    set: (key, value) => attempt(() => (ls().setItem(key, value), true), false),
    del: (key) => attempt(() => ls().removeItem(key), undefined),
    keys: (prefix) =>
      attempt(() => {
        const s = ls();
        const out: string[] = [];
        for (let i = 0; i < s.length; i++) {
          const k = s.key(i);
          if (k && k.startsWith(prefix)) out.push(k);
        }
        return out;
      }, []),
  };
}

export function readCookie(d: Document, name: string): string | null {
  try {
    for (const part of d.cookie.split(';')) {
      const eq = part.indexOf('=');
      if (part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
    }
  } catch {
    /* cookies disabled, or a value that is not ours */
  }
  return null;
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
