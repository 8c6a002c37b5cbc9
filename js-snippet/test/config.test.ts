import { describe, expect, it } from 'vitest';
import { DEFAULTS, parseConfig as parseWithWarn } from '../src/core/config';

/** The configuration (or null) and the warnings given while parsing it. */
function parseConfig(input: unknown) {
  const warnings: string[] = [];
  const config = parseWithWarn(input, (m) => warnings.push(m));
  return config ? { config, warnings } : { error: warnings[0] };
}

describe('parseConfig', () => {
  it('needs a valid site id', () => {
    expect(parseConfig({})).toEqual({ error: 'E5' });
    expect(parseConfig({ site: 'Bad Site' })).toHaveProperty('error');
    expect(parseConfig(null)).toHaveProperty('error');
  });

  it('fills in the defaults', () => {
    expect(parseConfig({ site: 'shop' })).toEqual({ config: { ...DEFAULTS, site: 'shop' }, warnings: [] });
    expect(DEFAULTS.cookieDays).toBe(395); // 13 months
    expect(DEFAULTS.sessionMinutes).toBe(30);
    expect(DEFAULTS.consent).toBe('pending');
  });

  it('takes valid options and trims trailing slashes from base URLs', () => {
    const r = parseConfig({ site: 'shop', collector: 'https://c.example/', offers: 'https://o.example//', consent: 'granted', pingSeconds: 10 });
    expect(r).toMatchObject({ config: { collector: 'https://c.example', offers: 'https://o.example', consent: 'granted', pingSeconds: 10 }, warnings: [] });
  });

  it('warns about unknown or invalid options and keeps their defaults', () => {
    const r = parseConfig({ site: 'shop', consent: 'yes', cookieDays: 1000, colector: 'x', cookieName: 'a b' });
    if ('error' in r) throw new Error(r.error);
    expect(r.config.consent).toBe('pending');
    expect(r.config.cookieDays).toBe(395);
    expect(r.warnings).toEqual([
      'E7 consent',
      'E7 cookieDays',
      'E6 colector',
      'E7 cookieName',
    ]);
  });
});
