// tests/browser/soak.test.mjs: the page under a long session in headless Chromium:
// 1,000 analyses driven through the controls (typing, fix chips, side by side,
// capture points, bit sliders) with the worker's WASM heap and the page's JS heap
// sampled after garbage collection: both must stay flat, and the figures are
// printed. Then the worker is killed: the page says so and comes back with the
// same model and settings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { missing, open, until, state } from './helpers.mjs';

const skip = missing() ?? false;
let b; // {page, url, errors, close}
const STEPS = Number(process.env.QS_SOAK_STEPS ?? 1000); // fewer for a quick look; the suite runs 1,000
const SAMPLE_EVERY = Math.min(100, STEPS);
const MiB = 2 ** 20;

const ready = (page) => until(page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);

before(async () => {
  if (skip) return;
  b = await open();
  await ready(b.page);
});

after(async () => {
  if (!b) return;
  await b.close();
  assert.deepEqual(b.errors, [], 'console errors');
});

/**
 * Runs steps [from, to) in the page, each a change through a control followed
 * by a wait until its result is in and drawn. Done in the page: a round trip
 * per step through the test's protocol would cost more than the analysis.
 */
const drive = (page, from, to) => page.evaluate(async ([from, to]) => {
  const q = globalThis.quantscope;
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
  const answered = () => {
    const s = q.state();
    if (s.view === 'quant') {
      const r = s.quantResult;
      return r && !r.pending && r.byModel && same(r.quant, s.quant) && r.input.text === s.text && same(r.models, q.shown());
    }
    const a = s.analysis;
    return a && !a.pending && a.byModel && a.input.text === s.text && a.point === s.point && same(a.models, q.shown());
  };
  const fire = (el, type) => el.dispatchEvent(new Event(type, { bubbles: true }));
  const $ = (sel) => document.querySelector(sel);
  const chips = ['gated', 'clipped', 'op', 'softmax1'];
  const points = ['ffn_res', 'ffn_out', 'layer_out', 'attn_res'];
  const t0 = performance.now();
  let analyses = 0;
  // Each hundred steps: 90 on the outlier and attention views (typing, fix chips,
  // side by side, capture point), then 10 bit-slider moves on the Quantization view
  // across the fix chips, ending where they started: every block visits every
  // model in every view and leaves the same settings.
  const bits = [[7, 8], [6, 8], [6, 6], [4, 6], [4, 4], [3, 4], [3, 8], [5, 8], [5, 5], [8, 8]];
  for (let i = from; i < to; i++) {
    const k = i % 100;
    if (k >= 90) {
      if (k === 90) $('#tab-quant').click();
      const [w, a] = bits[k - 90];
      if (k % 2 === 0 && k > 90) $(`.chip[data-variant=${chips[(k - 92) / 2]}]`).click();
      for (const [sel, v] of [['#wbits', w], ['#abits', a]]) {
        const el = $(sel);
        if (el.value !== String(v)) { el.value = String(v); fire(el, 'input'); }
      }
    } else if (k === 0) {
      $(i % 200 ? '#tab-attention' : '#tab-outliers').click();
    } else if (k % 10 === 3) {
      $(`.chip[data-variant=${chips[(i / 10 | 0) % chips.length]}]`).click();
    } else if (k % 10 === 7) {
      $('#compare').click();
    } else if (k % 10 === 9) {
      $('#point').value = points[(i / 10 | 0) % points.length];
      fire($('#point'), 'change');
    } else {
      // Short inputs: the fastest analyses (the forward's cost grows with the tokens).
      const text = $('#text');
      text.value = `Let there be light ${i}.`;
      fire(text, 'input');
    }
    // Until the answer is in; its charts draw a few per frame meanwhile (a newer
    // draw of a chart replaces a queued one, as when a person types fast).
    for (;;) {
      await frame();
      if (answered()) break;
    }
    analyses++;
  }
  await q.drawn();
  return { analyses, ms: performance.now() - t0 };
}, [from, to]);

/** Heaps after a full garbage collection: the worker's WASM memory and malloc'd bytes, the page's JS heap. */
async function sample(page, cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize } = await cdp.send('Runtime.getHeapUsage');
  const m = await page.evaluate(() => globalThis.quantscope.memory());
  return { wasmHeap: m.heapBytes, wasmUsed: m.usedBytes, pageJs: usedSize };
}

const mib = (v) => (v / MiB).toFixed(2);

test(`${STEPS} analyses through the controls leave both heaps flat`, { skip }, async () => {
  const p = b.page;
  const cdp = await p.context().newCDPSession(p);
  await cdp.send('HeapProfiler.enable');
  const samples = [];
  let ms = 0, analyses = 0;
  for (let at = 0; at < STEPS; at += SAMPLE_EVERY) {
    const r = await drive(p, at, at + SAMPLE_EVERY);
    ms += r.ms;
    analyses += r.analyses;
    samples.push({ step: at + SAMPLE_EVERY, ...await sample(p, cdp) });
  }
  const counts = await p.evaluate(() => globalThis.quantscope.requests());
  console.log(`# soak: ${analyses} steps in ${(ms / 1000).toFixed(1)} s (${(ms / analyses).toFixed(1)} ms each); `
    + `worker requests: ${JSON.stringify(counts)}`);
  console.log('# soak: step, WASM memory MiB, WASM malloc\'d MiB, page JS heap MiB (after GC)');
  for (const s of samples) console.log(`#   ${s.step}, ${mib(s.wasmHeap)}, ${mib(s.wasmUsed)}, ${mib(s.pageJs)}`);
  assert.equal(analyses, STEPS);
  // The baseline is step 200: blocks of a hundred alternate between starting on
  // the outlier and the attention view, so only the first two hundred steps have
  // visited every model in every view (and filled every cache) once. In CI the
  // memory grew once, between steps 100 and 200, then stayed flat to 1,000.
  const first = samples.find((x) => x.step >= 2 * 100) ?? samples[0], last = samples.at(-1);
  const growth = (k) => last[k] - first[k];
  console.log(`# soak: first (step ${first.step}) vs last (step ${last.step}): WASM memory ${mib(first.wasmHeap)} -> ${mib(last.wasmHeap)} MiB, `
    + `malloc'd ${mib(first.wasmUsed)} -> ${mib(last.wasmUsed)} MiB, page JS ${mib(first.pageJs)} -> ${mib(last.pageJs)} MiB`);
  assert.ok(growth('wasmHeap') === 0, `the WASM memory grew by ${mib(growth('wasmHeap'))} MiB`);
  assert.ok(Math.abs(growth('wasmUsed')) < 2 * MiB, `malloc'd WASM bytes moved by ${mib(growth('wasmUsed'))} MiB`);
  assert.ok(growth('pageJs') < 4 * MiB, `the page's JS heap grew by ${mib(growth('pageJs'))} MiB`);
  await cdp.detach();
});

test('a dead worker is reported and replaced, with the same model and settings', { skip }, async () => {
  const p = b.page;
  await p.goto(`${b.url}web/`);
  await ready(p);
  await p.click('.chip[data-variant=gated]');
  await p.fill('#text', 'Let there be light.');
  await p.click('#tab-quant');
  await p.fill('#abits', '6');
  await p.selectOption('#estimator', 'mse');
  await until(p, () => { const s = globalThis.quantscope.state(); return s.quantResult?.byModel && !s.quantResult.pending && s.quantResult.quant.actBits === 6; });
  const before = await state(p);
  const search = new URL(p.url()).search;
  assert.equal(p.workers().length, 1);
  const old = p.workers()[0];
  // The worker closes itself: no error event, no message; only its lock tells the page.
  await old.evaluate(() => self.close());
  await until(p, () => globalThis.quantscope.state().messages.some((m) => m.source === 'worker' && /stopped/.test(m.text)), null, 10000);
  // The notice that it is back (an info message: it goes after 8 s), then the results again.
  await until(p, () => globalThis.quantscope.state().messages.some((m) => m.source === 'worker' && m.kind === 'info'), null, 60000);
  const notice = (await state(p)).messages.find((m) => m.source === 'worker').text;
  assert.match(notice, /^The worker stopped \(it closed or its process ended\) and was restarted with the same model and settings\.$/);
  await until(p, () => {
    const s = globalThis.quantscope.state();
    const r = s.quantResult;
    return s.phase === 'ready' && r?.byModel && !r.pending && JSON.stringify(r.quant) === JSON.stringify(s.quant);
  }, null, 60000);
  const s = await state(p);
  for (const k of ['selected', 'text', 'view', 'quant', 'ranges', 'hist', 'attn', 'point']) assert.deepEqual(s[k], before[k], k);
  assert.equal(new URL(p.url()).search, search);
  assert.equal(p.workers().length, 1);
  assert.notEqual(p.workers()[0], old);
  // The new worker answers: a change computes again.
  await p.fill('#abits', '5');
  await until(p, () => globalThis.quantscope.state().quantResult?.quant?.actBits === 5 && !globalThis.quantscope.state().quantResult.pending);
  assert.equal(await p.textContent('#phase'), 'Ready');
});
