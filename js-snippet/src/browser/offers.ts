/**
 * Offer slots: `<div data-offer-slot="home-hero">` is filled with the banner the offer
 * API chooses. The banner is built node by node: server strings only ever become
 * text or checked http(s) URLs, never markup. A page without a slot asks nothing.
 */

import type { Config } from '../core/config';
import type { Track } from './auto';
import { fetchWithin } from './net';

const STATE = 'data-offer-state';

export interface OfferAnswer {
  decision_id: string;
  slot: string;
  offer: { id: string; title: string; body: string; image: string | null; link: string; cta: string } | null;
}

/** Fills every slot not filled yet, asking for `visitor`; returns how many were asked for. */
export function fillSlots(w: Window, cfg: Config, visitor: string, track: Track): number {
  const d = w.document;
  const slots = d.querySelectorAll<HTMLElement>(`[data-offer-slot]:not([${STATE}])`);
  slots.forEach((el) => {
    const slot = el.getAttribute('data-offer-slot') || '';
    el.setAttribute(STATE, 'loading');
    const q = (k: string, v: string) => `${k}=${encodeURIComponent(v)}`;
    const url = `${cfg.offers}/v1/offers?${q('site', cfg.site)}&${q('visitor', visitor)}&${q('slot', slot)}`;
    fetchWithin(w, url, { credentials: 'omit' }, cfg.offerTimeoutMs)
      .then((res) => (res.ok ? res.json() : Promise.reject(new Error(`HTTP ${res.status}`))))
      .then(
        (answer: OfferAnswer) => render(w, el, slot, answer, track),
        () => el.setAttribute(STATE, 'error'), // the slot keeps whatever the page put in it
      )
      .catch(() => el.setAttribute(STATE, 'error'));
  });
  return slots.length;
}

/** An absolute http(s) URL, or null (no `javascript:` links, no `data:` images). */
function safeUrl(w: Window, u: unknown): string | null {
  try {
    const url = new URL(String(u), w.location.href);
    return typeof u === 'string' && /^https?:$/.test(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function render(w: Window, el: HTMLElement, slot: string, answer: OfferAnswer, track: Track): void {
  const d = w.document;
  const offer = answer && answer.offer;
  if (!offer || typeof answer.decision_id !== 'string' || typeof offer.id !== 'string') {
    el.setAttribute(STATE, 'empty');
    return;
  }
  const banner = d.createElement('a');
  banner.className = 'trk-offer';
  const link = safeUrl(w, offer.link);
  if (link) banner.href = link;
  const image = safeUrl(w, offer.image);
  if (image) {
    const img = d.createElement('img');
    img.className = 'trk-offer-image';
    img.alt = '';
    img.src = image;
    banner.appendChild(img);
  }
  for (const part of ['title', 'body', 'cta'] as const) {
    if (typeof offer[part] !== 'string') continue;
    const span = d.createElement('span');
    span.className = `trk-offer-${part}`;
    span.textContent = offer[part];
    banner.appendChild(span);
  }
  while (el.firstChild) el.removeChild(el.firstChild);
  el.appendChild(banner);
  el.setAttribute(STATE, 'filled');
  el.setAttribute('data-offer-id', offer.id);
  el.setAttribute('data-decision-id', answer.decision_id);

  const ids = { decision_id: answer.decision_id, offer_id: offer.id, slot };
  banner.addEventListener('click', () => track('offer_click', ids));
  if (typeof IntersectionObserver !== 'function') return track('offer_impression', ids);
  // Seen = at least half of the slot on screen (the IAB's display-ad rule, less its one second).
  const io = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting && e.intersectionRatio >= 0.49)) {
        io.disconnect();
        track('offer_impression', ids);
      }
    },
    { threshold: 0.5 },
  );
  io.observe(el);
}
