/**
 * The consent state machine.
 *
 * - `pending`: nothing is stored or sent; calls are held in memory until a decision.
 * - `granted`: ids are stored, events are queued persistently and sent.
 * - `denied`: nothing is stored or sent; stored ids and queued events are wiped.
 *
 * Do-Not-Track and Global Privacy Control count as a refusal unless the site says
 * that the visitor's consent was recorded (e.g. by its consent platform).
 */

export type ConsentState = 'pending' | 'granted' | 'denied';

export const isConsentState = (v: unknown): v is ConsentState =>
  v === 'pending' || v === 'granted' || v === 'denied';

/** The state that applies, given what the site asks and the browser's privacy signal. */
export function effectiveConsent(requested: ConsentState, recorded: boolean, refusalSignal: boolean): ConsentState {
  return refusalSignal && !(requested === 'granted' && recorded) ? 'denied' : requested;
}

/** What a change of state obliges the tracker to do, in this order: announce, wipe, start. */
export interface ConsentChange {
  to: ConsentState;
  /** Send a `consent` event with this state (while the old id is still known). */
  announce: ConsentState | null;
  /** Delete the stored ids and the persistent queue. */
  wipe: boolean;
  /** Forget the calls held in memory while pending. */
  dropHeld: boolean;
  /** Start storing: create or reuse the ids, send what was held. */
  start: boolean;
}

export function changeConsent(
  from: ConsentState,
  requested: ConsentState,
  recorded: boolean,
  refusalSignal: boolean,
): ConsentChange {
  const to = effectiveConsent(requested, recorded, refusalSignal);
  if (to === from) return { to, announce: null, wipe: false, dropHeld: false, start: false };
  return {
    to,
    // A withdrawal is announced with the id it withdraws, so that downstream can act on it.
    announce: to === 'granted' || from === 'granted' ? to : null,
    wipe: from === 'granted' || to === 'denied',
    dropHeld: to === 'denied',
    start: to === 'granted',
  };
}
