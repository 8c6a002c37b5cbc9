/**
 * The entry point of the built file: replaces the loader's stub with the real
 * `tracker` function and runs the calls the stub queued (calls made before `init`
 * wait for it).
 */

import { createTracker } from './browser/tracker';

type Stub = ((...args: unknown[]) => void) & { q?: ArrayLike<unknown>[]; loaded?: boolean };

const w = window as unknown as Record<string, unknown> & Window;
const name = (w.TrackerObject as string) || 'tracker';
const stub = w[name] as Stub | undefined;
// Unless the file was included twice.
if (!stub?.loaded) {
  try {
    const tracker = createTracker(w);
    const api: Stub = (...args: unknown[]) => tracker._run(args);
    api.loaded = true;
    w[name] = api;
    for (const args of stub?.q || []) tracker._run(args);
  } catch (e) {
    console.warn(`[tracker] E1 ${e}`);
  }
}
