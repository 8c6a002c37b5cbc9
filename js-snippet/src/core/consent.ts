/**
 * The consent state machine.
 *
 * - `pending`: nothing is stored or sent; calls are held in memory until a decision.
 * - `granted`: ids are stored, events are queued persistently and sent.
 * - `denied`: nothing is stored or sent; stored ids and queued events are wiped.
 *
 * Do-Not-Track and Global Privacy Control count as a refusal unless the site says
 * that the visitor's consent was recorded (e.g. by its consent platform).
 *
 * A change out of `granted` is announced (a `consent` event with the new state, sent
 * with the id it withdraws, so that downstream can act on it), then wipes; a change into
 * `granted` starts storing and sends what was held (src/browser/tracker.ts, setConsent).
 */

export type ConsentState = 'pending' | 'granted' | 'denied';

export const isConsentState = (v: unknown): v is ConsentState =>
  v === 'pending' || v === 'granted' || v === 'denied';

/** The state that applies, given what the site asks and the browser's privacy signal. */
export function effectiveConsent(requested: ConsentState, recorded: boolean, refusalSignal: boolean): ConsentState {
  return refusalSignal && !(requested === 'granted' && recorded) ? 'denied' : requested;
}
