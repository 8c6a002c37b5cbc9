/**
 * Offer slots: `<div data-offer-slot="home-hero">` is filled with the banner the offer
 * API chooses. The banner is built node by node: server strings only ever become
 * text or checked http(s) URLs, never markup. A page without a slot asks nothing.
 */

import type { Config } from '../core/config';
import type { Track } from './auto';
import { fetchWithin } from './net';

export interface OfferAnswer {
  decision_id: string;
  slot: string;
  offer: { id: string; title: string; body: string; image: string | null; link: string; cta: string } | null;
}

/** Fills every slot not filled yet (`data-offer-state` tells how far each got), asking for `visitor`. */
export function fillSlots(w: Window, cfg: Config, visitor: string, track: Track): void {
  w.document.querySelectorAll<HTMLElement>('[data-offer-slot]:not([data-offer-state])').forEach((el) => {
    const data = el.dataset;
    const slot = data.offerSlot as string;
    const q = new URLSearchParams({ site: cfg.site, visitor, slot });
    data.offerState = 'loading';
    fetchWithin(w, `${cfg.offers}/v1/offers?${q}`, { credentials: 'omit' }, cfg.offerTimeoutMs)
      .then((res) => (res.ok ? res.json() : Promise.reject()))
      .then((answer: OfferAnswer) => render(w, el, slot, answer, track))
      .catch(() => (data.offerState = 'error')); // the slot keeps whatever the page put in it
  });
}

/** An absolute http(s) URL, or '' (no `javascript:` links, no `data:` images). */
function safeUrl(w: Window, u: unknown): string {
  try {
    const url = new URL(u as string, w.location.href);
    return typeof u === 'string' && /^https?:$/.test(url.protocol) ? url.href : '';
  } catch {
    return '';
  }
}

function render(w: Window, el: HTMLElement, slot: string, answer: OfferAnswer, track: Track): void {
  const d = w.document;
  const data = el.dataset;
  const offer = answer && answer.offer;
  if (!offer || typeof answer.decision_id !== 'string' || typeof offer.id !== 'string') {
    data.offerState = 'empty';
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
  el.replaceChildren(banner);
  data.offerState = 'filled';
  data.offerId = offer.id;
  data.decisionId = answer.decision_id;

  const ids = { decision_id: answer.decision_id, offer_id: offer.id, slot };
  banner.addEventListener('click', () => track('offer_click', ids));
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
