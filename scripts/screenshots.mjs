// The README's screenshots, taken in Debian's Chromium with the snippet's playwright-core
// (js-snippet/node_modules, installed by scripts/bootstrap.sh). scripts/screenshots.py starts the
// product and writes the job; this file only drives the browser.
//
// Usage: node scripts/screenshots.mjs job.json   ->  one JSON line on stdout: {"shop": {...}, "pages": [...]}
// job: {userDataDir, viewport: {width, height},
//       shop?: {base, browse: [paths], slot, fitting: [offer ids], out, deadlineMs},
//       pages?: [{url, out, selector?}]}  (selector: photograph that element only)
// The shop part: a new visitor accepts the consent banner, browses one department, then reloads
// the home page until its slot shows an offer for that department, and takes the picture.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../js-snippet/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--hide-scrollbars',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 15_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function shop(page, job) {
  const base = job.base.replace(/\/$/, '');
  await page.goto(`${base}/`, { waitUntil: 'load' });
  await page.waitForFunction("!document.getElementById('consent-banner').hidden", null, { polling: 100 });
  await page.click('#consent-accept');
  for (const path of job.browse) {
    await page.goto(base + path, { waitUntil: 'load' });
    await sleep(400);
  }
  // Everything the snippet queued has been sent (its queue lives in localStorage).
  await page.waitForFunction("!Object.keys(localStorage).some((k) => k.startsWith('trk:q:'))", null,
    { polling: 100, timeout: 20_000 });
  const slot = `[data-offer-slot="${job.slot}"]`;
  const deadline = Date.now() + job.deadlineMs;
  const seen = [];
  while (Date.now() < deadline) {
    await page.goto(`${base}/`, { waitUntil: 'load' });
    await page.waitForFunction(`document.querySelector('${slot}')?.dataset.offerState`, null, { polling: 100 });
    const offerId = await page.evaluate(`document.querySelector('${slot}').dataset.offerId`);
    seen.push(offerId);
    if (job.fitting.includes(offerId)) {
      // The banner's picture and the page's product pictures are drawn before the shot.
      await page.waitForFunction('[...document.images].every((img) => img.complete)', null, { polling: 100 });
      await sleep(300);
      await page.screenshot({ path: job.out, type: 'png' });
      return { ok: true, offerId, tries: seen.length };
    }
    await sleep(1000);
  }
  return { ok: false, seen: [...new Set(seen)], tries: seen.length };
}

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const context = await chromium.launchPersistentContext(job.userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: ARGS,
  viewport: job.viewport,
  deviceScaleFactor: 1,
  timeout: 60_000,
});
context.setDefaultTimeout(WAIT_MS);
const result = { shop: null, pages: [] };
try {
  const page = context.pages()[0] || (await context.newPage());
  if (job.shop) result.shop = await shop(page, job.shop);
  for (const shot of job.pages || []) {
    await page.goto(shot.url, { waitUntil: 'load' });
    if (shot.selector) await page.locator(shot.selector).screenshot({ path: shot.out, type: 'png' });
    else await page.screenshot({ path: shot.out, type: 'png' });
    result.pages.push(shot.out);
  }
} finally {
  await context.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
