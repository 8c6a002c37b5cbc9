import { describe, expect, it } from 'vitest';
import { changeConsent, effectiveConsent } from '../src/core/consent';

describe('effectiveConsent', () => {
  it('is what the site asks when the browser sends no privacy signal', () => {
    expect(effectiveConsent('pending', false, false)).toBe('pending');
    expect(effectiveConsent('granted', false, false)).toBe('granted');
    expect(effectiveConsent('denied', true, false)).toBe('denied');
  });

  it('treats Do-Not-Track / GPC as a refusal', () => {
    expect(effectiveConsent('pending', false, true)).toBe('denied');
    expect(effectiveConsent('granted', false, true)).toBe('denied');
  });

  it('lets recorded consent override the signal, and only a grant', () => {
    expect(effectiveConsent('granted', true, true)).toBe('granted');
    expect(effectiveConsent('pending', true, true)).toBe('denied');
  });
});

describe('changeConsent', () => {
  it('does nothing when the state does not change', () => {
    expect(changeConsent('granted', 'granted', false, false)).toEqual({
      to: 'granted',
      announce: null,
      wipe: false,
      dropHeld: false,
      start: false,
    });
  });

  it('starts and announces on a grant', () => {
    const c = changeConsent('pending', 'granted', false, false);
    expect(c).toMatchObject({ to: 'granted', start: true, announce: 'granted', wipe: false, dropHeld: false });
  });

  it('wipes storage and held calls on a refusal, announcing only a withdrawal', () => {
    expect(changeConsent('pending', 'denied', false, false)).toMatchObject({
      to: 'denied',
      wipe: true,
      dropHeld: true,
      announce: null,
      start: false,
    });
    expect(changeConsent('granted', 'denied', false, false)).toMatchObject({ wipe: true, announce: 'denied' });
  });

  it('stops storing when a grant goes back to pending, but keeps holding calls', () => {
    expect(changeConsent('granted', 'pending', false, false)).toMatchObject({
      to: 'pending',
      wipe: true,
      dropHeld: false,
      announce: 'pending',
    });
  });

  it('refuses a grant under DNT/GPC unless it was recorded', () => {
    expect(changeConsent('pending', 'granted', false, true)).toMatchObject({ to: 'denied', wipe: true, start: false });
    expect(changeConsent('denied', 'granted', true, true)).toMatchObject({ to: 'granted', start: true });
  });
});
