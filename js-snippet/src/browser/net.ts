/** `fetch` with a deadline: the request is aborted (and its promise rejected) after `ms` milliseconds. */
export function fetchWithin(w: Window, url: string, init: RequestInit, ms: number): Promise<Response> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  return w.fetch(url, { ...init, signal: abort.signal }).finally(() => clearTimeout(timer));
}
