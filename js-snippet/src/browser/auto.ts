/** What is tracked without the site asking: page views (SPA routes too), page pings, outbound links. */

import type { Config } from '../core/config';
import type { Fields } from '../core/events';

export type Track = (type: string, fields?: Fields) => void;

export interface AutoHooks {
  track: Track;
  /** Wraps a listener so that nothing it throws reaches the host page. */
  safe<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  /** A route change: the new page's referrer is the previous URL; offer slots may be new. */
  _route(previousUrl: string): void;
}

const ACTIVITY = 'scroll mousemove mousedown keydown touchstart wheel'.split(' ');

export function autoTrack(w: Window, cfg: Config, hooks: AutoHooks): void {
  const d = w.document;
  const loc = w.location;
  const { track, safe } = hooks;
  const page = () => loc.pathname + loc.search;
  let path = page();
  let href = loc.href;
  let depth = 0;
  let engaged = 0;
  let active = false;
  const ms = cfg.pingSeconds * 1000;

  const measure = safe(() => {
    const el = d.documentElement;
    const height = Math.max(el.scrollHeight, d.body?.scrollHeight || 0);
    depth = Math.max(depth, height > 0 ? Math.min(100, Math.round(((w.scrollY + w.innerHeight) / height) * 100)) : 100);
  });

  const pageView = safe(() => {
    depth = engaged = 0;
    active = false;
    measure();
    track('page_view', { title: d.title });
  });

  if (cfg.pageViews) {
    const changed = safe(() => {
      if (page() === path) return; // same page (a fragment, or replaceState of the same URL)
      path = page();
      hooks._route(href);
      href = loc.href;
      // Routers set the new title after they push the URL: read it on the next task.
      setTimeout(pageView);
    });
    const h = w.history;
    for (const name of ['pushState', 'replaceState'] as const) {
      const original = h[name];
      h[name] = function (this: History, ...args: Parameters<History['pushState']>) {
        original.apply(this, args);
        changed();
      };
    }
    w.addEventListener('popstate', changed);
    pageView();
  }

  if (ms > 0) {
    for (const type of ACTIVITY) w.addEventListener(type, () => (active = true), { passive: true, capture: true });
    w.addEventListener('scroll', measure, { passive: true });
    // A ping for each interval in which the visible page was used: an idle tab sends nothing.
    setInterval(
      safe(() => {
        if (d.visibilityState !== 'visible' || !active) return;
        active = false;
        engaged += ms;
        measure();
        track('page_ping', { scroll_depth: depth, engaged_ms: engaged });
      }),
      ms,
    );
  }

  if (cfg.outboundLinks) {
    const click = safe((e: Event) => {
      const a = (e.target as Element).closest?.('a[href]') as HTMLAnchorElement | null;
      const url = a && new URL(a.href, loc.href);
      if (url && /^https?:$/.test(url.protocol) && url.host !== loc.host) track('link_click', { target_url: url.href });
    });
    d.addEventListener('click', click, true);
    d.addEventListener('auxclick', click, true); // middle click: opens a tab
  }
}
