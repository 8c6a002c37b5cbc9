// Drives Debian's Chromium with playwright-core for the end-to-end tests
// (tests/test_snippet_browser.py). Protocol: one JSON command per line on stdin,
// one JSON answer per line on stdout: {"id", "ok": true, "result"} or {"id", "ok": false, "error"}.
// Every wait has a timeout; the browser is closed when stdin closes.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless=new',
  '--no-sandbox', // we run as root in CI; the sandbox needs user namespaces
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Timers of hidden pages are throttled; the tests open several tabs at once.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
];
const WAIT_MS = 15_000;

let context = null;
const pages = [];
const requests = [];
const pageErrors = [];
const consoleMessages = [];

function page(n = 0) {
  const p = pages[n];
  if (!p) throw new Error(`no page ${n}`);
  return p;
}

function watch(p) {
  p.on('pageerror', (e) => pageErrors.push(String(e)));
  p.on('console', (m) => consoleMessages.push({ type: m.type(), text: m.text() }));
  pages.push(p);
  return pages.length - 1;
}

const commands = {
  async launch({ userDataDir, initScript, headers, routes }) {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      extraHTTPHeaders: headers || {},
      timeout: 60_000,
    });
    context.setDefaultTimeout(WAIT_MS);
    if (initScript) await context.addInitScript({ content: initScript });
    // Off-site URLs (outbound links, offer images) are answered here: the tests use no network.
    for (const pattern of routes || []) {
      await context.route(pattern, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<p>elsewhere</p>' }));
    }
    // Each request, with its answer's status once it has one (null: none yet, or failed).
    const entries = new Map();
    context.on('request', (r) => {
      const entry = { url: r.url(), method: r.method(), type: r.resourceType(), body: r.postData(), status: null };
      entries.set(r, entry);
      requests.push(entry);
    });
    context.on('response', (res) => {
      const entry = entries.get(res.request());
      if (entry) entry.status = res.status();
    });
    for (const p of context.pages()) watch(p);
    if (!pages.length) watch(await context.newPage());
    return pages.length;
  },
  async newPage() {
    return watch(await context.newPage());
  },
  async goto({ page: n, url }) {
    await page(n).goto(url, { waitUntil: 'load' });
  },
  /** Loads `url` in several pages at once (tabs racing each other). */
  async gotoAll({ pages: ns, url }) {
    await Promise.all(ns.map((n) => page(n).goto(url, { waitUntil: 'load' })));
  },
  async reload({ page: n }) {
    await page(n).reload({ waitUntil: 'load' });
  },
  async eval({ page: n, expr }) {
    return await page(n).evaluate(expr);
  },
  async waitFor({ page: n, expr, timeout }) {
    await page(n).waitForFunction(expr, null, { timeout: timeout || WAIT_MS, polling: 100 });
  },
  async click({ page: n, selector, navigates }) {
    const p = page(n);
    if (navigates) {
      await Promise.all([p.waitForNavigation({ waitUntil: 'load' }), p.click(selector)]);
    } else {
      await p.click(selector);
    }
  },
  async wheel({ page: n, dy }) {
    const p = page(n);
    await p.mouse.move(100, 100);
    await p.mouse.wheel(0, dy);
  },
  async closePage({ page: n }) {
    await page(n).close({ runBeforeUnload: true });
  },
  async cookies() {
    return await context.cookies();
  },
  async clearCookies({ name }) {
    await context.clearCookies(name ? { name } : undefined);
  },
  async requests({ clear }) {
    const out = requests.slice();
    if (clear) requests.length = 0;
    return out;
  },
  async errors() {
    return { pageErrors, console: consoleMessages };
  },
  async sleep({ ms }) {
    await new Promise((r) => setTimeout(r, Math.min(ms, WAIT_MS)));
  },
  async close() {
    if (context) await context.close();
    context = null;
  },
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let msg;
  try {
    msg = JSON.parse(line);
    const result = await commands[msg.cmd](msg);
    process.stdout.write(`${JSON.stringify({ id: msg.id, ok: true, result: result ?? null })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ id: msg?.id ?? null, ok: false, error: String(e && e.stack ? e.stack : e) })}\n`);
  }
}
if (context) await context.close();
