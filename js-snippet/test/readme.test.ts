// The README's paste-in snippet is the loader this package builds (build.mjs minifies
// src/loader.js with these options), so site owners copy what the tests run.
import { readFileSync } from 'node:fs';
import { transformSync } from 'esbuild';
import { describe, expect, it } from 'vitest';

const here = new URL('..', import.meta.url);

describe('README', () => {
  it('shows the built loader verbatim', () => {
    const loader = transformSync(readFileSync(new URL('src/loader.js', here), 'utf8'), {
      minify: true,
      target: 'es5',
      loader: 'js',
    }).code.trim();
    expect(readFileSync(new URL('README.md', here), 'utf8')).toContain(loader);
  });
});
