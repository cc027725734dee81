// bench/browser/run.mjs: forwards of a model in headless Chromium (Debian's, driven
// by playwright-core), through wasm/quantscope.mjs as the demo page loads it.
//
//   node bench/browser/run.mjs DIR [rounds] [min_ms] [--threads] [--profile FILE]
//
// --threads: the pthreads build instead (batch evaluation and training steps
// on 1 and 2 threads), in a page of its own. --profile: V8's CPU profile of the
// measured part in the first page (the relaxed-SIMD module where Chromium has
// it), written to FILE (.cpuprofile, as node --cpu-prof writes it).
//
// Serves only what the page needs, from 127.0.0.1, with the cross-origin
// isolation headers the demo server sends (docs/toolchain.md).
import { createServer } from 'node:http';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
};
// docs/toolchain.md: without the background-networking flags Chromium floods the
// closed network with refused connections.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const MIME = { '.html': 'text/html; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json',
  '.safetensors': 'application/octet-stream', '.txt': 'text/plain; charset=utf-8' };

/** Repository folders the page may load, plus the model under /model/. */
function serve(modelDir) {
  const roots = [['bench/browser/', join(ROOT, 'bench/browser')], ['wasm/', join(ROOT, 'wasm')],
    ['build/wasm/', join(ROOT, 'build/wasm')], ['build/wasm-threads/', join(ROOT, 'build/wasm-threads')],
    ['model/', resolve(modelDir)]];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname).slice(1);
    const hit = roots.find(([prefix]) => path.startsWith(prefix));
    const file = hit && join(hit[1], path.slice(hit[0].length));
    const inside = hit && (file === hit[1] || file.startsWith(hit[1] + sep)) && !path.includes('..');
    try {
      if (!inside || !(await stat(file)).isFile()) throw new Error('not found');
      res.writeHead(200, { 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream',
        'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
        'Cross-Origin-Resource-Policy': 'same-origin' });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const args = process.argv.slice(2);
const threadsMode = args.includes('--threads');
const profileAt = args.indexOf('--profile');
const profileFile = profileAt >= 0 ? args.splice(profileAt, 2)[1] : null;
if (profileAt >= 0 && !profileFile) {
  console.error('--profile needs a file name');
  process.exit(2);
}
const [dir, roundsArg, minMsArg] = args.filter((a) => a !== '--threads');
if (!dir) {
  console.error('usage: node bench/browser/run.mjs DIR [rounds] [min_ms] [--threads] [--profile FILE]');
  process.exit(2);
}
const rounds = Math.max(parseInt(roundsArg ?? '5', 10) || 5, 1);
const minMs = parseFloat(minMsArg ?? '100') || 100;
for (const [need, why] of [[CHROMIUM, 'scripts/setup.sh --browser'], [join(ROOT, 'node_modules/playwright-core'), 'npm ci'],
  threadsMode ? [join(ROOT, 'build/wasm-threads/quantscope_core.worker.js'), 'scripts/build-wasm.sh --threads']
    : [join(ROOT, 'build/wasm/quantscope_core.wasm'), 'scripts/build-wasm.sh']]) {
  if (!existsSync(need)) {
    console.log(`headless Chromium: not measured: ${need} is missing (${why})`);
    process.exit(0);
  }
}

const { chromium } = await import('playwright-core');
const server = await serve(dir);
const base = `http://127.0.0.1:${server.address().port}/`;
const profile = await mkdtemp(join(tmpdir(), 'quantscope-bench-'));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
try {
  const page = context.pages()[0] ?? await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}bench/browser/index.html`);
  await page.waitForFunction(() => globalThis.benchReady === true, null, { timeout: 30000 })
    .catch(() => { throw new Error(`the bench page did not start: ${errors.join('; ')}`); });
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]);
  const cdp = profileFile ? await context.newCDPSession(page) : null;
  if (cdp) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.start');
  }
  if (threadsMode) {
    const out = await page.evaluate((args) => globalThis.runThreadsBench(args), { modelUrl: `${base}model/`, rounds, minMs });
    console.log(`headless Chromium (${version}), pthreads build${out.relaxedSimd ? ' (relaxed SIMD)' : ''}, ${dir}: `
                + `median of ${rounds} rounds, 1 vs 2 threads alternating`);
    for (const { name, ms } of out.evals) {
      console.log(`  evaluate ${out.windows} x ${out.T} tokens, ${name.padEnd(10)} 1 thread ${ms[0].toFixed(1).padStart(7)} ms`
                  + `   2 threads ${ms[1].toFixed(1).padStart(7)} ms   speedup ${(ms[0] / ms[1]).toFixed(2)} x`);
    }
    const [one, two] = out.train.ms;
    console.log(`  training step, 16 x ${out.T} tokens    1 thread ${one.toFixed(1).padStart(7)} ms   2 threads `
                + `${two.toFixed(1).padStart(7)} ms   speedup ${(one / two).toFixed(2)} x `
                + `(${Math.round(out.train.tokens / one * 1e3)} vs ${Math.round(out.train.tokens / two * 1e3)} tokens/s)`);
  } else {
    // Two pages, one module each: the relaxed-SIMD module (what Chromium runs by
    // default) and plain SIMD128, rounds alternating between them.
    const plainPage = await context.newPage();
    await plainPage.goto(`${base}bench/browser/index.html`);
    await plainPage.waitForFunction(() => globalThis.benchReady === true, null, { timeout: 30000 });
    const pages = [[page, true], [plainPage, false]];
    const samples = pages.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (const [i, [p, relaxedSimd]] of pages.entries()) {
        samples[i].push(await p.evaluate((args) => globalThis.runBench(args),
          { modelUrl: `${base}model/`, rounds: 1, minMs, relaxedSimd }));
      }
    }
    console.log(`headless Chromium (${version}) forward of ${dir} through quantscope.mjs: ms per forward, `
                + `median of ${rounds} rounds, the two modules alternating`);
    const [first] = samples[0];
    if (!first.variants.includes('w8a8 int8')) console.log('(w8a8 int8: not measured: quantscope.mjs has no quant.int8 yet)');
    const msOf = (runs, t, i) => median(runs.map((o) => o.rows[t].ms[i]));
    const hasRelaxed = first.relaxedSimd; // else both pages ran SIMD128: show one
    first.rows.forEach(({ T }, t) => {
      for (const runs of hasRelaxed ? samples : samples.slice(0, 1)) {
        const label = runs[0].relaxedSimd ? 'relaxed SIMD' : 'SIMD128';
        first.variants.forEach((name, i) => {
          const ms = msOf(runs, t, i);
          console.log(`  T = ${String(T).padStart(3)}  ${`${name} ${label}`.padEnd(30)} ${ms.toFixed(3).padStart(8)} ms  `
                      + `(${(ms / msOf(runs, t, 0)).toFixed(2)} x f32)`);
        });
      }
      if (hasRelaxed) {
        console.log(`  T = ${String(T).padStart(3)}  SIMD128 / relaxed SIMD, f32: ${(msOf(samples[1], t, 0) / msOf(samples[0], t, 0)).toFixed(2)} x`);
      } else console.log('  (relaxed SIMD: not measured: this Chromium has none)');
    });
  }
  if (cdp) {
    const { profile: cpuProfile } = await cdp.send('Profiler.stop');
    await writeFile(profileFile, JSON.stringify(cpuProfile));
    console.log(`CPU profile: ${profileFile}`);
  }
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
