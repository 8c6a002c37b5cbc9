// Builds dist/t.js (the tracker, one minified file) and dist/loader.js (the paste-in
// stub), and prints their sizes: minified, and minified + gzip (what goes over the wire).
// `node build.mjs --size` prints the sizes only when the files are already built.
import { build, transformSync } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const common = {
  bundle: true,
  minify: true,
  // Syntax of ES2020; the APIs used (AbortSignal.timeout, Object.hasOwn...) need Chrome/Edge 103+,
  // Firefox 100+, Safari 16+ (README, Browser support), which the tracker checks at init.
  target: 'es2020',
  format: 'iife',
  legalComments: 'none',
  // Internal property names start with `_` and are shortened; public API, options and the
  // wire format never do.
  mangleProps: /^_/,
  // No "use strict" prologue: nothing in the output depends on strict mode.
  tsconfigRaw: { compilerOptions: { alwaysStrict: false } },
  logLevel: 'warning',
};

if (!process.argv.includes('--size')) {
  mkdirSync(dist, { recursive: true });
  await build({ ...common, entryPoints: [join(root, 'src/main.ts')], outfile: join(dist, 't.js') });
  // The loader is pasted inline into pages: minified as it is, no module wrapper.
  // test/readme.test.ts checks that the README shows this output: keep their options equal.
  const loader = transformSync(readFileSync(join(root, 'src/loader.js'), 'utf8'), { minify: true, target: 'es5', loader: 'js' });
  writeFileSync(join(dist, 'loader.js'), loader.code);
}

for (const name of ['t.js', 'loader.js']) {
  const bytes = readFileSync(join(dist, name));
  const gz = gzipSync(bytes, { level: 9 }).length;
  console.log(`dist/${name}: ${bytes.length} bytes minified, ${gz} bytes minified + gzip`);
}
