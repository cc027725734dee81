// tests/browser/package.test.mjs: the npm package in a user's page: a minimal page
// that imports 'quantscope', bundled with esbuild from the installed tarball
// (scripts/pack.sh), runs the golden BERT forward in a module Worker in headless
// Chromium, on the single-threaded build and on the pthreads build (the page is
// cross-origin isolated), under the demo server's strict CSP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';

import { CSP, SECURITY_HEADERS } from '../../scripts/serve.mjs';
import { CHROMIUM, ROOT, missing } from './helpers.mjs';

const GOLDEN = join(ROOT, 'tests/golden/bert');
const skip = missing() ?? (existsSync(join(ROOT, 'node_modules/esbuild')) ? false : 'esbuild is missing (npm ci)');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The user's code: a page that starts a Worker, and the Worker that uses the package.
const MAIN_JS = `
globalThis.runForward = (threads, relaxedSimd, ids, tokenTypes) => new Promise((resolve) => {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (e) => { worker.terminate(); resolve(e.data); };
  worker.onerror = (e) => resolve({ error: e.message });
  worker.postMessage({ threads, relaxedSimd, ids, tokenTypes });
});
`;
const WORKER_JS = `
import { configure, loadModel, runtimeInfo } from 'quantscope';
self.onmessage = async ({ data: { threads, relaxedSimd, ids, tokenTypes } }) => {
  try {
    configure({ threads, relaxedSimd });
    const model = await loadModel('/model/');
    const r = await model.forward(ids, { tokenTypes });
    self.postMessage({ runtime: await runtimeInfo(), shape: r.shape, logits: Array.from(r.logits) });
  } catch (e) {
    self.postMessage({ error: \`\${e.code}: \${e.message}\` });
  }
};
`;
const INDEX_HTML = '<!doctype html><meta charset="utf-8"><title>consumer</title><script type="module" src="main.js"></script>\n';

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.safetensors': 'application/octet-stream' };

let dir, server, url, context, profile;
const notFound = []; // paths answered 404

/** The bundled site on 127.0.0.1, /model/ the golden BERT, with the demo server's headers (COOP/COEP, CSP). */
function serve(site) {
  server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = path.startsWith('/model/') ? join(GOLDEN, path.slice(7)) : join(site, path === '/' ? 'index.html' : path);
    if (path.includes('..') || !existsSync(file)) {
      notFound.push(path);
      res.writeHead(404, SECURITY_HEADERS).end();
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}/`)));
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'qs-bundle-'));
  const pack = spawnSync(join(ROOT, 'scripts/pack.sh'), [dir], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(pack.status, 0, pack.stderr);
  const consumer = join(dir, 'consumer'), site = join(consumer, 'site');
  await mkdir(join(consumer, 'src'));
  await writeFile(join(consumer, 'src/main.js'), MAIN_JS);
  await writeFile(join(consumer, 'src/worker.js'), WORKER_JS);
  const esbuild = await import('esbuild');
  const built = await esbuild.build({ entryPoints: [join(consumer, 'src/main.js'), join(consumer, 'src/worker.js')],
    bundle: true, format: 'esm', platform: 'browser', outdir: site, logLevel: 'silent' });
  assert.deepEqual(built.warnings, []);
  await writeFile(join(site, 'index.html'), INDEX_HTML);
  // The bundle holds the JavaScript; the WASM files stay in the package, and the
  // module finds them at ../../build/ from its own URL: the site's /build/ here.
  await cp(join(consumer, 'node_modules/quantscope/build'), join(site, 'build'), { recursive: true });
  url = await serve(site);
  const { chromium } = await import('playwright-core');
  profile = await mkdtemp(join(tmpdir(), 'quantscope-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  await context?.close();
  server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a page bundled with esbuild runs the installed package in a Worker, single-threaded and on pthreads',
  { skip }, async () => {
    const expected = JSON.parse(await readFile(join(GOLDEN, 'expected.json'), 'utf8'));
    const ids = expected.input_ids;
    const tokenTypes = ids.map((_, i) => (i < Math.floor(ids.length / 2) ? 0 : 1)); // tests/golden/README.md
    const page = context.pages()[0] ?? await context.newPage();
    const errors = [];
    // A 404 is logged as a console error: which ones came is checked on the server's side.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/the server responded with a status of 404/.test(m.text())) errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto(url);
    assert.equal(res.headers()['content-security-policy'], CSP);
    assert.ok(await page.evaluate(() => crossOriginIsolated));
    await page.waitForFunction(() => typeof globalThis.runForward === 'function');
    const runs = {};
    // Each build's relaxed-SIMD module (Chromium's default) and its plain SIMD128 one.
    for (const [name, threads, relaxedSimd] of [['relaxed', 1, true], ['plain', 1, false], ['threads', 2, false],
      ['threads relaxed', 2, true]]) {
      const r = await page.evaluate(([t, rs, i, tt]) => globalThis.runForward(t, rs, i, tt),
        [threads, relaxedSimd, ids, tokenTypes]);
      assert.equal(r.error, undefined, r.error);
      assert.deepEqual(r.shape, expected.logits_shape);
      let worst = 0;
      r.logits.forEach((v, k) => { worst = Math.max(worst, Math.abs(v - expected.logits[k])); });
      console.log(`bundled page, ${threads} thread(s) (pool ${r.runtime.pool}, relaxed SIMD ${r.runtime.relaxedSimd}): `
                  + `logits max |diff| ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `max diff ${worst}`);
      runs[name] = r;
    }
    assert.deepEqual(runs.relaxed.runtime, { threads: 1, pool: 1, relaxedSimd: true }, 'the relaxed module ran');
    assert.deepEqual(runs.plain.runtime, { threads: 1, pool: 1, relaxedSimd: false });
    assert.equal(runs.threads.runtime.threads, 2);
    assert.ok(runs.threads.runtime.pool >= 2, 'the pthreads build ran');
    assert.deepEqual(runs.threads.logits, runs.plain.logits, 'both SIMD128 builds give the same logits');
    assert.equal(runs['threads relaxed'].runtime.relaxedSimd, true);
    assert.deepEqual(runs['threads relaxed'].logits, runs.relaxed.logits, 'both relaxed builds give the same logits');
    assert.deepEqual(errors, []);
    // BERT without a tokenizer key may have a WordPiece vocab.txt: loadModel asks (wasm/js/sources.mjs)
    assert.deepEqual(notFound.filter((p) => !['/model/vocab.txt', '/favicon.ico'].includes(p)), []);
  });
