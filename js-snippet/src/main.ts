/**
 * The entry point of the built file: replaces the loader's stub with the real
 * `tracker` function and runs the calls the stub queued (`init` first).
 */

import { createTracker } from './browser/tracker';

type Stub = ((...args: unknown[]) => void) & { q?: ArrayLike<unknown>[]; loaded?: boolean };

(() => {
  const w = window as unknown as Record<string, unknown> & Window;
  const name = typeof w.TrackerObject === 'string' ? w.TrackerObject : 'tracker';
  const stub = w[name] as Stub | undefined;
  if (stub && stub.loaded) return; // the file was included twice
  try {
    const tracker = createTracker(w);
    const api: Stub = (...args: unknown[]) => tracker.run(args);
    api.loaded = true;
    w[name] = api;
    const queued = (stub && stub.q) || [];
    for (const args of queued) if (args[0] === 'init') tracker.run(args);
    for (const args of queued) if (args[0] !== 'init') tracker.run(args);
  } catch (e) {
    try {
      console.warn(`[tracker] could not start: ${e}`);
    } catch {
      /* nothing more to do */
    }
  }
})();
