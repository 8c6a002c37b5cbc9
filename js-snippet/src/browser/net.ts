/** `fetch` with a deadline: the request is aborted (and its promise rejected) after `ms` milliseconds. */
export const fetchWithin = (w: Window, url: string, init: RequestInit, ms: number): Promise<Response> =>
  w.fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
