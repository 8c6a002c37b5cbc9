/** What is tracked without the site asking: page views (SPA routes too), page pings, outbound links. */

import type { Config } from '../core/config';
import type { Fields } from '../core/events';

export type Track = (type: string, fields?: Fields) => void;

export interface AutoHooks {
  track: Track;
  /** Wraps a listener so that nothing it throws reaches the host page. */
  safe<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  /** A route change: the new page's referrer is the previous URL; offer slots may be new. */
  route(previousUrl: string): void;
}

const ACTIVITY = ['scroll', 'mousemove', 'mousedown', 'keydown', 'touchstart', 'wheel'];

export function autoTrack(w: Window, cfg: Config, hooks: AutoHooks): void {
  const d = w.document;
  const loc = w.location;
  const { track, safe } = hooks;
  let path = loc.pathname + loc.search;
  let href = loc.href;
  let depth = 0;
  let engaged = 0;
  let active = false;

  const measure = safe(() => {
    const el = d.documentElement;
    const height = Math.max(el.scrollHeight, d.body ? d.body.scrollHeight : 0);
    const seen = (w.scrollY || el.scrollTop || 0) + w.innerHeight;
    depth = Math.max(depth, height > 0 ? Math.min(100, Math.round((seen / height) * 100)) : 100);
  });

  const pageView = () => {
    depth = engaged = 0;
    active = false;
    measure();
    track('page_view', { title: d.title });
  };

  if (cfg.pageViews) {
    const changed = safe(() => {
      const now = loc.pathname + loc.search;
      if (now === path) return; // same page (a fragment, or replaceState of the same URL)
      path = now;
      const previous = href;
      href = loc.href;
      hooks.route(previous);
      // Routers set the new title after they push the URL: read it on the next task.
      setTimeout(safe(pageView), 0);
    });
    const h = w.history;
    for (const name of ['pushState', 'replaceState'] as const) {
      const original = h[name];
      if (typeof original !== 'function') continue;
      h[name] = function (this: History, ...args: Parameters<History['pushState']>) {
        const result = original.apply(this, args);
        changed();
        return result;
      };
    }
    w.addEventListener('popstate', changed);
    pageView();
  }

  if (cfg.pingSeconds > 0) {
    const mark = () => {
      active = true;
    };
    for (const type of ACTIVITY) w.addEventListener(type, mark, { passive: true, capture: true });
    w.addEventListener('scroll', measure, { passive: true });
    // A ping for each interval in which the visible page was used: an idle tab sends nothing.
    setInterval(
      safe(() => {
        if (d.visibilityState !== 'visible' || !active) return;
        active = false;
        engaged += cfg.pingSeconds * 1000;
        measure();
        track('page_ping', { scroll_depth: depth, engaged_ms: engaged });
      }),
      cfg.pingSeconds * 1000,
    );
  }

  if (cfg.outboundLinks) {
    const click = safe((e: Event) => {
      const target = e.target as Element | null;
      const a = target && target.closest ? target.closest('a[href]') : null;
      if (!a) return;
      const url = new URL((a as HTMLAnchorElement).href, loc.href);
      if (/^https?:$/.test(url.protocol) && url.host !== loc.host) track('link_click', { target_url: url.href });
    });
    d.addEventListener('click', click, true);
    d.addEventListener('auxclick', click, true); // middle click: opens a tab
  }
}
