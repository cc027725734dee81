// tests/browser/helpers.mjs: what the page tests share: the server on a free port,
// Debian's Chromium through playwright-core with a fresh profile, console capture,
// screenshots under test-results/, and waiting for the page's state.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from '../../scripts/serve.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS = join(ROOT, 'test-results');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// The models the page shows: the shipped ones, or QS_MODELS (a folder laid out like models/).
export const MODELS = process.env.QS_MODELS ? resolve(process.env.QS_MODELS) : join(ROOT, 'models');

// docs/toolchain.md: without the background-networking flags Chromium floods the
// closed network with refused connections.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Why the browser tests cannot run here, or null. */
export function missing() {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (scripts/setup.sh --browser)`;
  if (!existsSync(join(ROOT, 'node_modules/playwright-core'))) return 'playwright-core is missing (npm ci)';
  if (!existsSync(join(ROOT, 'build/wasm/quantscope_core.wasm'))) return 'the WASM build is missing (scripts/build.sh)';
  if (!existsSync(join(MODELS, 'index.json'))) return `${MODELS}/index.json is missing`;
  return null;
}

/** Server + browser + page with console errors collected; close() undoes it all. */
export async function open({ width = 1280, height = 900 } = {}) {
  const { chromium } = await import('playwright-core');
  const { server, url } = await startServer({ port: 0, models: MODELS });
  const profile = await mkdtemp(join(tmpdir(), 'quantscope-chromium-'));
  await mkdir(RESULTS, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width, height },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${url}web/`);
  return {
    page, url, errors,
    async close() {
      await context.close();
      server.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The page state (a structured copy). */
export const state = (page) => page.evaluate(() => {
  const s = globalThis.quantscope.state();
  // Typed arrays and big captures are not needed by the tests.
  return JSON.parse(JSON.stringify(s, (k, v) => (ArrayBuffer.isView(v) ? undefined : v)));
});

/** Resolves once the page has rendered its state and drawn every queued chart, and painted. */
export const painted = (page) => page.evaluate(async () => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  await frame(); // the state's render
  await globalThis.quantscope.drawn(); // charts drawn a few per frame
  await frame();
});

/**
 * Waits until fn(arg) is true in the page, then for a paint. fn runs in the page
 * (serialised by Playwright: no closures) and reads globalThis.quantscope.state().
 */
export async function until(page, fn, arg = null, timeout = 30000) {
  await page.waitForFunction(fn, arg, { timeout, polling: 20 });
  await painted(page);
}

/** A full-page screenshot, and with readme a 1280 x 1500 crop from the top for README. */
export async function screenshot(page, name, { readme = false } = {}) {
  const path = join(RESULTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  if (readme) {
    await page.screenshot({ path: join(RESULTS, `readme-${name}.png`), fullPage: true,
      clip: { x: 0, y: 0, width: 1280, height: 1500 } });
  }
  return path;
}

export function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? a[Math.floor(a.length / 2)] : NaN;
}

/** Sets a number field the way a person does: its value, then its change event. */
export async function setNumber(page, sel, v) {
  await page.fill(sel, String(v));
  await page.dispatchEvent(sel, 'change');
}

/** Waits until the perplexities match the current quant settings and models shown. */
export async function pplDone(page) {
  await until(page, () => {
    const s = globalThis.quantscope.state();
    return s.ppl && !s.ppl.pending && s.ppl.byModel && JSON.stringify(s.ppl.quant) === JSON.stringify(s.quant)
      && JSON.stringify(s.ppl.models) === JSON.stringify(globalThis.quantscope.shown());
  }, null, 60000);
}
