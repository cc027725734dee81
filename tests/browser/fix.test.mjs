// tests/browser/fix.test.mjs: the Quantization view's post-hoc fix in headless
// Chromium: the control applies each fix to the models shown, the perplexities,
// heatmap and table equal the Node API's (model.withFix) for the same model and
// input, a refused parameter shows C's message and keeps the previous results;
// the time from choosing a fix to its perplexities on screen is printed, not enforced.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel } from '../../wasm/quantscope.mjs';
import { fixSpec } from '../../web/fixes.js';
import { CALIB_CHARS, fixOptions } from '../../web/worker/fix.js';
import { ROOT, MODELS, missing, open, state, until, pplDone, screenshot, setNumber } from './helpers.mjs';

const skip = missing() ?? (await readFile(join(ROOT, 'build/web/kjv-train.txt')).then(() => false,
  () => 'build/web/ has no corpus slice (scripts/kjv.sh && node scripts/web-corpus.mjs)'));
let b;
const timings = {};
const node = {};

/** Waits until the fix chosen is applied and every result shown answers it. */
async function fixShown(page, spec) {
  await until(page, (want) => {
    const s = globalThis.quantscope.state();
    const q = s.quantResult, p = s.ppl;
    const shown = JSON.stringify(globalThis.quantscope.shown());
    return !s.fixPending && q && !q.pending && p && !p.pending && p.byModel && p.fix === want
      && JSON.stringify(p.quant) === JSON.stringify(s.quant) && JSON.stringify(p.models) === shown
      && JSON.stringify(q.models) === shown && Object.values(q.byModel).every((r) => r.fix === want);
  }, spec, 60000);
}

/** What the page shows: perplexities of each card, the heatmap's max |x| per model. */
const shownNumbers = (page) => page.evaluate(() => ({
  ppl: Object.fromEntries([...document.querySelectorAll('#ppl .card')].map((c) => [c.dataset.model,
    { fp: c.querySelector('.fp-ppl')?.dataset.value, q: c.querySelector('.q-ppl')?.dataset.value }])),
  heat: Object.fromEntries([...document.querySelectorAll('figure.fix-heat')].map((f) => [f.dataset.model,
    f.querySelector('figcaption').dataset.maxAbs])),
  fixMs: Number(document.querySelector('#ppl').dataset.fixMs ?? NaN),
}));

before(async () => {
  if (skip) return;
  node.train = await readFile(join(ROOT, 'build/web/kjv-train.txt'), 'utf8');
  node.heldOut = await readFile(join(ROOT, 'build/web/kjv-heldout.txt'), 'utf8');
  node.vanilla = await loadModel(join(MODELS, 'bert-vanilla'));
  b = await open();
  await until(b.page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);
  await b.page.click('#tab-quant');
  // The layer output is a linear's input in BERT: the point every fix acts on.
  await b.page.selectOption('#hist-point', 'layer_out');
  await pplDone(b.page);
});

after(async () => {
  if (!b) return;
  await b.close();
  await node.vanilla?.dispose();
  console.log(`# post-hoc fix timings (headless Chromium, this machine; from choosing a fix to its perplexities drawn): ${JSON.stringify(timings)}`);
});

/** The page's numbers for the fix `spec` through the Node API: held-out perplexity and the heatmap's max |x|. */
async function nodeNumbers(spec, s) {
  const m = node.vanilla;
  const fixed = spec ? await m.withFix(spec, /^(smoothquant|gptq)/.test(spec) ? node.train.slice(0, CALIB_CHARS) : null,
    fixOptions(m, spec, s.quant)) : m;
  const r = await fixed.evaluate(node.heldOut, { seqLen: 128, maxWindows: 6, calibWindows: 2, quant: s.quant });
  const { ids, delimiters } = await m.tokenize(s.text);
  const f = await fixed.forward(ids, { delimiters, capture: ['layer_out'], transformed: !!spec });
  const L = m.config.nLayers;
  const st = f.points.find((p) => p.point === 'layer_out' && p.layer === L - 1);
  if (fixed !== m) await fixed.dispose();
  return { fp: String(r.fpPpl), q: String(r.qPpl), maxAbs: String(st.maxAbs) };
}

test('each post-hoc fix: applied to the model shown, numbers equal the Node API, time to perplexities (reported)', { skip }, async () => {
  const page = b.page;
  const none = await shownNumbers(page);
  const s0 = await state(page);
  const id = s0.selected;
  const ref0 = await nodeNumbers(null, s0);
  assert.deepEqual(none.ppl[id], { fp: ref0.fp, q: ref0.q });
  for (const kind of ['smoothquant', 'rotate', 'int8split', 'gptq']) {
    const before = await page.evaluate(() => Number(document.querySelector('#ppl').dataset.fixMs ?? NaN));
    await page.click(`#fix-${kind}`);
    const s = await state(page);
    const spec = fixSpec({ ...s.postHocFix, ...(s.fixPending?.fix ?? {}), kind }, s.quant);
    await fixShown(page, spec);
    await until(page, (t) => Number(document.querySelector('#ppl').dataset.fixMs ?? NaN) !== t, before);
    const shown = await shownNumbers(page);
    const ref = await nodeNumbers(spec, await state(page));
    assert.deepEqual(shown.ppl[id], { fp: ref.fp, q: ref.q }, `${spec}: page vs Node`);
    assert.equal(shown.heat[id], ref.maxAbs, `${spec}: the heatmap's max |x| at layer_out`);
    assert.ok(Math.abs(Number(ref.fp) / Number(ref0.fp) - 1) < 1e-4, `${spec} is exact in float`);
    const tm = (await state(page)).timing;
    timings[spec] = `${Math.round(shown.fixMs)} ms (perplexities ${Math.round(tm.pplMs)} ms of it, quantized pass ${Math.round(tm.quantWorkerMs)} ms)`;
    const status = await page.textContent('#fix-status');
    assert.match(status, new RegExp(`^${kind}.* covers `), status);
    if (kind === 'rotate') {
      // what the quantizer sees after the rotation: the outlier spread out
      assert.ok(Number(shown.heat[id]) < Number(none.heat[id]), `rotated max |x| ${shown.heat[id]} vs ${none.heat[id]}`);
      await screenshot(page, 'quantization-fix-rotate');
    }
  }
});

test('a refused parameter shows the message and keeps the fix and its results', { skip }, async () => {
  const page = b.page;
  await page.click('#fix-smoothquant');
  const s = await state(page);
  await fixShown(page, fixSpec({ ...s.postHocFix, kind: 'smoothquant' }, s.quant));
  const kept = await shownNumbers(page);
  await setNumber(page, '#fix-alpha-num', 1.5);
  await until(page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'fix'));
  const after = await state(page);
  const msg = after.messages.find((m) => m.source === 'fix');
  assert.match(msg.text, /alpha = 1.5 outside \[0, 1\]/);
  assert.equal(after.postHocFix.alpha, s.postHocFix.alpha);
  assert.equal(after.fixPending, null);
  assert.equal(await page.inputValue('#fix-alpha-num'), String(s.postHocFix.alpha), 'the control shows the fix in use');
  assert.deepEqual((await shownNumbers(page)).ppl, kept.ppl);
  // a good value clears the message
  await setNumber(page, '#fix-alpha-num', 0.7);
  await fixShown(page, 'smoothquant:alpha=0.7');
  assert.ok(!(await state(page)).messages.some((m) => m.source === 'fix'));
});

test('the comparison table: every shipped model, the chosen fix and none first, equal to the cards', { skip }, async () => {
  const page = b.page;
  const t0 = Date.now();
  await page.click('#fix-table-fill');
  // The chosen fix's column comes first, then none's; the rest follows (reported).
  const chosen = (await state(page)).postHocFix.kind;
  const first = [...new Set([chosen, 'none'])];
  await until(page, (kinds) => {
    const t = globalThis.quantscope.state().fixTable;
    return t && !t.error && kinds.every((k) => Object.keys(t.byColumn[k] ?? {}).length === t.models.length);
  }, first, 60000);
  const s = await state(page);
  const t = s.fixTable;
  const shipped = s.models.filter((m) => m.source === 'shipped').map((m) => m.id);
  assert.deepEqual(t.models, shipped);
  assert.deepEqual(t.columns.map((c) => c.kind), ['none', 'smoothquant', 'rotate', 'int8split', 'gptq']);
  for (const kind of first) {
    const n = await page.$$eval(`#fix-table td.num[data-kind="${kind}"][data-value]`, (tds) => tds.length);
    assert.equal(n, shipped.length, `${kind}: a perplexity for every shipped model`);
  }
  // The chosen fix's cell for the model shown is its card's numbers.
  const card = (await shownNumbers(page)).ppl[s.selected];
  const cell = (kind, attr) => page.getAttribute(`#fix-table tr[data-model="${s.selected}"] td[data-kind="${kind}"]`, attr);
  assert.equal(await cell(chosen, 'data-value'), card.q);
  assert.equal(await cell(chosen, 'data-fp'), card.fp);
  const done = Object.values(t.byColumn).reduce((n, col) => n + Object.keys(col).length, 0);
  timings.table = `${done} of ${shipped.length * t.columns.length} cells ${Math.round((Date.now() - t0) / 1000)} s after asking`;
  const rows = await page.$$eval('#fix-table tbody tr', (trs) => trs.map((tr) => [tr.dataset.model,
    [...tr.querySelectorAll('td')].map((td) => (td.dataset.value ? Number(td.dataset.value).toFixed(3) : td.textContent)).join(' ')]));
  console.log(`# fix table at W${s.quant.weightBits}A${s.quant.actBits} (${t.columns.map((c) => c.spec ?? 'none').join(', ')}): ${JSON.stringify(rows)}`);
  await screenshot(page, 'quantization-fix-table');
});
