import { describe, expect, it } from 'vitest';
import { effectiveConsent } from '../src/core/consent';

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
