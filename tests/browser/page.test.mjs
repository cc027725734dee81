// tests/browser/page.test.mjs: the demo page in headless Chromium: loads the shipped
// models, every view and control works, numbers equal the Node API's, hostile files
// give specific messages, training runs in the tab; timings are reported, not enforced.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, truncate, rm, copyFile } from 'node:fs/promises';
import { join } from 'node:path';

import { loadModel, runtimeInfo } from '../../wasm/quantscope.mjs';
import { TRAIN_DEFAULTS } from '../../web/state.js';
import { ROOT, RESULTS, MODELS, missing, open, state, until, painted, screenshot, median, pplDone, setNumber as setNum }
  from './helpers.mjs';

const skip = missing() ?? false;
let b; // {page, errors, close}
const shots = [];
const timings = {};
const nodeModels = new Map();

async function nodeModel(id) {
  if (!nodeModels.has(id)) nodeModels.set(id, await loadModel(join(MODELS, id)));
  return nodeModels.get(id);
}

/** Waits until the page has analysed this text with this model. */
async function analysed(page, { text = null, model = null, ids = null } = {}) {
  await until(page, ([t, m, i]) => {
    const s = globalThis.quantscope.state();
    const a = s.analysis;
    return a && !a.pending && a.byModel && !s.messages.some((x) => x.source === 'input')
      && JSON.stringify(a.models) === JSON.stringify(globalThis.quantscope.shown())
      && (t === null || a.input.text === t) && (i === null || a.input.idsText === i)
      && (m === null || a.models.includes(m));
  }, [text, model, ids]);
}

/** Waits until the quantization results match the current settings. */
async function quantised(page) {
  await until(page, () => {
    const s = globalThis.quantscope.state();
    const q = s.quantResult;
    return q && !q.pending && q.byModel && JSON.stringify(q.quant) === JSON.stringify(s.quant)
      && q.input.text === s.text && q.ranges === s.ranges
      && JSON.stringify(q.models) === JSON.stringify(globalThis.quantscope.shown());
  });
}

/** The outlier table's exact numbers: {modelId: {layer: {key: value}}}. */
const outlierTable = (page) => page.$$eval('#outlier-table tbody tr', (rows) => {
  const out = {};
  for (const r of rows) {
    const m = (out[r.dataset.model] ??= {});
    const l = (m[r.dataset.layer] = {});
    for (const td of r.querySelectorAll('td[data-key]')) l[td.dataset.key] = td.dataset.value;
  }
  return out;
});

/** Messages currently shown, as text. */
const messages = (page) => page.$$eval('#messages .msg', (els) => els.map((e) => ({
  kind: e.classList.contains('error') ? 'error' : 'info', source: e.dataset.source, text: e.querySelector('.msg-text').textContent })));

async function shot(name, options) {
  shots.push(await screenshot(b.page, name, options));
}

before(async () => {
  if (skip) return;
  b = await open();
  await until(b.page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);
  await analysed(b.page);
});

after(async () => {
  if (!b) return;
  await b.close();
  for (const m of nodeModels.values()) await m.dispose();
  console.log(`# screenshots: ${shots.join(', ')}`);
  console.log(`# timings (headless Chromium, this machine): ${JSON.stringify(timings)}`);
});

test('the page loads the shipped models and shows the outlier view', { skip }, async () => {
  const s = await state(b.page);
  const index = JSON.parse(await readFile(join(MODELS, 'index.json'), 'utf8'));
  assert.deepEqual(s.models.filter((m) => m.source === 'shipped').map((m) => m.id), index.models.map((m) => m.id));
  assert.equal(s.selected, index.models.find((m) => m.variant === 'vanilla').id);
  const rows = await b.page.$$('#outlier-table tbody tr');
  assert.equal(rows.length, s.models.find((m) => m.id === s.selected).config.nLayers);
  assert.ok(await b.page.isVisible('canvas.heatmap'));
  // Hovering a heatmap cell shows its exact value.
  const heatmap = b.page.locator('#view-outliers canvas.heatmap').first();
  await heatmap.scrollIntoViewIfNeeded();
  const box = await heatmap.boundingBox();
  await b.page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await b.page.waitForSelector('.tooltip:not([hidden])');
  assert.match(await b.page.textContent('.tooltip'), /token \d+ .*dim \d+x = −?\d/);
  await b.page.mouse.move(0, 0);
  await shot('outliers');
});

test('Chromium runs the relaxed-SIMD module, and so does this Node (scripts/test-browser.sh)', { skip }, async () => {
  const page = await b.page.evaluate(async () => (await import('/wasm/quantscope.mjs')).runtimeInfo());
  assert.equal(page.relaxedSimd, true, 'Chromium 114+ has relaxed SIMD');
  assert.equal((await runtimeInfo()).relaxedSimd, page.relaxedSimd,
    'exact comparisons need the same module: run node --experimental-wasm-relaxed-simd --test');
});

test('numbers shown equal the Node API for the same input', { skip }, async () => {
  const text = 'And God said, Let there be light: and there was light.';
  await b.page.fill('#text', text);
  await analysed(b.page, { text });
  const s = await state(b.page);
  const shown = await outlierTable(b.page);
  const model = await nodeModel(s.selected);
  const enc = await model.tokenize(text);
  const r = await model.forward(enc.ids, { delimiters: enc.delimiters, capture: [s.point] });
  for (const p of r.points.filter((x) => x.point === s.point)) {
    const row = shown[s.selected][p.layer];
    assert.equal(row.maxAbs, String(p.maxAbs), `layer ${p.layer} max |x|`);
    assert.equal(row.kurtosis, String(p.kurtosis), `layer ${p.layer} kurtosis`);
    assert.equal(row.rmsKurtosis, String(p.rmsKurtosis), `layer ${p.layer} RMS kurtosis`);
    assert.equal(row.nOutliers, String(p.nOutliers));
  }
  // Head statistics in the attention view's table.
  await b.page.click('#tab-attention');
  await b.page.waitForSelector('#head-table');
  const heads = await b.page.$$eval('#head-table tbody tr', (rows) => rows.map((tr) => ({
    layer: Number(tr.dataset.layer), head: Number(tr.dataset.head),
    v: Object.fromEntries([...tr.querySelectorAll('td[data-key]')].map((td) => [td.dataset.key, td.dataset.value])),
  })));
  assert.equal(heads.length, model.config.nLayers * model.config.nHeads);
  for (const hd of heads) {
    const ref = r.heads[hd.layer][hd.head];
    for (const k of ['delimMass', 'outNorm', 'valueNorm', 'noopScore', 'gateMean', 'entropy']) {
      assert.equal(hd.v[k], String(ref[k]), `L${hd.layer} H${hd.head} ${k}`);
    }
  }
  await b.page.click('#tab-outliers');
});

test('typing fast computes only the latest text, and typing stays responsive', { skip }, async () => {
  const before = await b.page.evaluate(() => globalThis.quantscope.requests().analyze);
  await b.page.fill('#text', '');
  await b.page.focus('#text');
  const text = 'In the beginning was the Word, and the Word was with God.';
  const t0 = Date.now();
  await b.page.keyboard.type(text, { delay: 5 });
  const typingMs = Date.now() - t0;
  await analysed(b.page, { text });
  const after = await b.page.evaluate(() => globalThis.quantscope.requests().analyze);
  const sent = after.sent - before.sent, done = after.done - before.done, stale = after.stale - before.stale;
  timings.typing = { chars: text.length, typingMs, requests: sent, computed: done, dropped: stale };
  assert.equal(sent, done + stale, 'every request was answered');
  assert.ok(done <= sent);
  const s = await state(b.page);
  assert.equal(s.analysis.input.text, text);
  assert.equal(await b.page.inputValue('#text'), text);
});

test('forward with statistics over 64 tokens: latency (reported)', { skip }, async () => {
  const worker = [], roundTrip = [], toScreen = [];
  for (let i = 0; i < 12; i++) {
    // 62 bytes + [CLS] + [SEP] = 64 tokens; a different letter each time.
    const text = `The LORD is my shepherd; I shall not want. He leadeth me ${String.fromCharCode(97 + i)}`.padEnd(62, '.');
    const ms = await b.page.evaluate(async (t) => {
      const box = document.querySelector('#text');
      const t0 = performance.now();
      box.value = t;
      box.dispatchEvent(new Event('input', { bubbles: true }));
      for (;;) {
        await new Promise((r) => requestAnimationFrame(r));
        const a = globalThis.quantscope.state().analysis;
        if (a && !a.pending && a.input.text === t) break;
      }
      await new Promise((r) => requestAnimationFrame(r)); // the frame that rendered it
      await globalThis.quantscope.drawn(); // and its charts
      return performance.now() - t0;
    }, text);
    const s = await state(b.page);
    assert.equal(s.timing.forwardT, 64);
    if (i >= 2) { // the first ones include V8's tier-up
      worker.push(s.timing.forwardMs);
      roundTrip.push(s.timing.analyzeRoundTripMs);
      toScreen.push(ms);
    }
  }
  timings.forward64 = { workerMs: median(worker), roundTripMs: median(roundTrip), inputToScreenMs: median(toScreen),
    samples: worker.length };
  assert.ok(Number.isFinite(timings.forward64.workerMs));
});

test('each fix chip switches model, side by side shows both', { skip }, async () => {
  const s0 = await state(b.page);
  for (const variant of ['clipped', 'gated', 'op']) {
    const target = s0.models.find((m) => m.variant === variant && m.source === 'shipped');
    if (!target) continue;
    await b.page.click(`.chip[data-variant=${variant}]`);
    await analysed(b.page, { model: target.id });
    assert.equal((await state(b.page)).selected, target.id);
    assert.equal(await b.page.getAttribute(`.chip[data-variant=${variant}]`, 'aria-pressed'), 'true');
    await shot(`outliers-${variant}`);
  }
  // softmax1 has no shipped model: its chip is disabled and says why.
  if (!s0.models.some((m) => m.variant === 'softmax1')) {
    assert.ok(await b.page.isDisabled('.chip[data-variant=softmax1]'));
    assert.match(await b.page.getAttribute('.chip[data-variant=softmax1]', 'title'), /train one/);
  }
  // Pressing the active chip again goes back to vanilla.
  await b.page.click('.chip[data-variant=op]');
  const vanilla = s0.models.find((m) => m.variant === 'vanilla');
  await analysed(b.page, { model: vanilla.id });
  assert.equal((await state(b.page)).selected, vanilla.id);
  // Side by side: vanilla and the gated model on the same input.
  await b.page.click('.chip[data-variant=gated]');
  await b.page.check('#compare');
  const gated = s0.models.find((m) => m.variant === 'gated');
  await until(b.page, ([v, g]) => {
    const a = globalThis.quantscope.state().analysis;
    return a && !a.pending && a.models.length === 2 && a.models[0] === v && a.models[1] === g;
  }, [vanilla.id, gated.id]);
  assert.equal(await b.page.locator('#view-outliers .model-col').count(), 2);
  await shot('outliers-side-by-side', { readme: true });
});

test('attention view: maps, no-op statistics, gate values', { skip }, async () => {
  await b.page.click('#tab-attention');
  await b.page.waitForSelector('#view-attention button.head');
  const s = await state(b.page);
  const nHeads = s.models.filter((m) => s.analysis.models.includes(m.id)).reduce((n, m) => n + m.config.nLayers * m.config.nHeads, 0);
  assert.equal(await b.page.locator('#view-attention button.head').count(), nHeads);
  await b.page.locator('#view-attention button.head').nth(1).click();
  await until(b.page, () => globalThis.quantscope.state().attn.head === 1);
  // The gated model shows its gate per token.
  assert.ok(await b.page.locator('#view-attention figcaption', { hasText: 'Gate sigmoid' }).count() >= 1);
  await b.page.mouse.move(0, 0); // no tooltip in the picture
  await shot('attention', { readme: true });
  await b.page.uncheck('#compare');
  await b.page.click('.chip[data-variant=gated]'); // back to vanilla
  await analysed(b.page, { model: s.models.find((m) => m.variant === 'vanilla').id });
  await shot('attention-vanilla');
});

test('quantization view: sliders, settings, numbers equal the Node API, latency (reported)', { skip }, async () => {
  await b.page.click('#tab-quant');
  await quantised(b.page);
  await pplDone(b.page);
  // Move the activation slider with the keyboard: 8 -> 4 bits, one input event per step.
  await b.page.focus('#abits');
  for (let i = 0; i < 4; i++) await b.page.keyboard.press('ArrowLeft');
  await until(b.page, () => globalThis.quantscope.state().quant.actBits === 4);
  await quantised(b.page);
  await pplDone(b.page);
  let s = await state(b.page);
  assert.equal(s.quant.actBits, 4);
  assert.equal(await b.page.textContent('#abits-out'), '4');
  // The numbers against Node: same calibration windows, same quant config.
  const id = s.selected;
  const model = await nodeModel(id);
  const held = await readFile(join(ROOT, 'build/web/kjv-heldout.txt'), 'utf8').catch(() => null);
  if (held) {
    const heldIds = (await model.tokenize(held, { addSpecial: false })).ids;
    const sp = await model.specialTokens();
    const body = Math.min(64, model.config.maxPositions) - 2;
    const batches = [0, 1].map((k) => [sp.cls, ...heldIds.subarray(k * body, (k + 1) * body), sp.sep]);
    await model.calibrate(batches, { quant: s.quant });
    const enc = await model.tokenize(s.text);
    const r = await model.forward(enc.ids, { delimiters: enc.delimiters, quant: s.quant });
    const cells = await b.page.$$eval('#sqnr-table td[data-key=sqnr]', (tds) => tds.map((td) => ({
      point: td.dataset.point, layer: Number(td.dataset.layer), value: td.dataset.value })));
    assert.ok(cells.length > 0);
    for (const c of cells) {
      const p = r.points.find((x) => x.point === c.point && x.layer === c.layer);
      assert.equal(c.value, String(p.quantSqnrDb), `SQNR ${c.point} L${c.layer}`);
    }
    const ev = await model.evaluate(heldIds, { seqLen: Math.min(128, model.config.maxPositions), maxWindows: 6,
      calibWindows: 2, quant: s.quant });
    assert.equal(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .fp-ppl`, 'data-value'), String(ev.fpPpl));
    assert.equal(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .q-ppl`, 'data-value'), String(ev.qPpl));
  }
  await shot('quantization');

  // Latency of a slider move until every result (not perplexity) is on screen, then with perplexity.
  const quick = [], withPpl = [];
  for (const bits of [6, 5, 7, 3, 8, 4]) {
    const ms = await b.page.evaluate(async (v) => {
      const el = document.querySelector('#wbits');
      const res = document.querySelector('#quant-results');
      const n0 = Number(res.dataset.rendered || 0);
      const t0 = performance.now();
      el.value = String(v);
      el.dispatchEvent(new Event('input', { bubbles: true }));
      let quickMs = null;
      for (;;) {
        await new Promise((r) => requestAnimationFrame(r));
        const s = globalThis.quantscope.state();
        // dataset.rendered moves once this result's charts are drawn.
        if (quickMs === null && Number(res.dataset.rendered || 0) > n0 && s.quantResult?.quant.weightBits === v) {
          quickMs = performance.now() - t0;
        }
        if (quickMs !== null && s.ppl && !s.ppl.pending && s.ppl.quant?.weightBits === v) break;
      }
      await new Promise((r) => requestAnimationFrame(r));
      return [quickMs, performance.now() - t0];
    }, bits);
    quick.push(ms[0]);
    withPpl.push(ms[1]);
  }
  s = await state(b.page);
  timings.slider = { resultsMs: median(quick), withPerplexityMs: median(withPpl), samples: quick.length,
    appMeasuredMs: s.timing.quantUpdateMs, workerMs: s.timing.quantModelMs, perplexityMs: s.timing.pplMs };

  // Other settings: granularities, estimators, dynamic ranges.
  for (const [sel, value] of [['#agran', 'token'], ['#agran', 'tensor'], ['#wgran', 'channel'], ['#estimator', 'percentile'],
    ['#estimator', 'mse'], ['#estimator', 'minmax'], ['#ranges', 'dynamic'], ['#hist-point', 'ffn_out']]) {
    await b.page.selectOption(sel, value);
    await quantised(b.page);
  }
  // Extreme combination: 2-bit weights and activations; the page keeps working.
  await b.page.click('.presets button >> text=W8A8 (paper)');
  await b.page.$eval('#wbits', (el) => { el.value = '2'; el.dispatchEvent(new Event('input', { bubbles: true })); });
  await b.page.$eval('#abits', (el) => { el.value = '2'; el.dispatchEvent(new Event('input', { bubbles: true })); });
  await until(b.page, () => {
    const s = globalThis.quantscope.state();
    const q = s.quantResult;
    return s.quant.weightBits === 2 && s.quant.actBits === 2 && q && !q.pending
      && (JSON.stringify(q.quant) === JSON.stringify(s.quant) || s.messages.some((m) => m.source === 'quant'));
  });
  await shot('quantization-w2a2');
  await b.page.click('.presets button >> text=W8A8 (paper)');
  await quantised(b.page);
  // Dynamic ranges and ffn_out stay selected for the screenshot: vanilla beside the gated model.
  const gated = s.models.find((m) => m.variant === 'gated' && m.source === 'shipped');
  if (gated) await b.page.click('.chip[data-variant=gated]');
  await b.page.check('#compare');
  await quantised(b.page);
  await pplDone(b.page);
  await shot('quantization-side-by-side-dynamic');
  await b.page.uncheck('#compare');
  if (gated) await b.page.click('.chip[data-variant=gated]');
  await b.page.selectOption('#ranges', 'static');
  await b.page.selectOption('#hist-point', 'ffn_res');
  await quantised(b.page);
});

test('W8A8 and W8A6 on the shipped models side by side: at W8A6 vanilla loses more than twice what gated attention loses', { skip }, async () => {
  const s0 = await state(b.page);
  const vanilla = s0.models.find((m) => m.variant === 'vanilla' && m.source === 'shipped');
  const gated = s0.models.find((m) => m.variant === 'gated' && m.source === 'shipped');
  if (!vanilla || !gated || !s0.corpus.heldOut) return;
  await b.page.click('#tab-quant');
  // The paper's W8A8 (docs/science.md §4): per-tensor, running min-max, static ranges.
  await b.page.click('.presets button >> text=W8A8 (paper)');
  await b.page.selectOption('#wgran', 'tensor');
  await b.page.selectOption('#agran', 'tensor');
  await b.page.selectOption('#estimator', 'running_minmax');
  await b.page.selectOption('#ranges', 'static');
  const q0 = (await state(b.page)).quant;
  assert.deepEqual([q0.weightBits, q0.actBits, q0.weightGranularity, q0.actGranularity, q0.estimator],
    [8, 8, 'tensor', 'tensor', 'running_minmax']);
  await b.page.click('.chip[data-variant=gated]');
  await b.page.check('#compare');
  const loss = async (id) => {
    const fp = Number(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .fp-ppl`, 'data-value'));
    const q = Number(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .q-ppl`, 'data-value'));
    return { fp, q, increase: q / fp - 1 };
  };
  try {
    await quantised(b.page);
    await pplDone(b.page);
    const w8a8 = { vanilla: await loss(vanilla.id), gated: await loss(gated.id) };
    await b.page.click('.presets button >> text=W8A6');
    await quantised(b.page);
    await pplDone(b.page);
    const w8a6 = { vanilla: await loss(vanilla.id), gated: await loss(gated.id) };
    await shot('quantization-side-by-side', { readme: true }); // README's: W8A6, where the gap shows
    timings.shippedQuant = { w8a8, w8a6 };
    // The shipped models' quantization damage (qs eval over 400 windows:
    // W8A8 +1.9 % against +0.9 %, W8A6 +65 % against +17 %). The page scores
    // 6 held-out windows (about 115 masked bytes): at W8A8 a 1 % difference
    // is below that sample's noise (natively on the same text, 6 to 48
    // windows and 2 or 4 calibration windows gave vanilla -4.1 % to +2.4 %
    // and gated +0.3 % to +3.0 %), so W8A8 is shown and reported, not
    // ordered; at W8A6 the gap (vanilla +57 % to +78 %, gated +15 % to +20 %
    // in the same runs) is far outside it and the test asserts it.
    console.log(`# shipped models on the page: W8A8 vanilla ${(100 * w8a8.vanilla.increase).toFixed(2)} % `
      + `gated ${(100 * w8a8.gated.increase).toFixed(2)} %, W8A6 vanilla ${(100 * w8a6.vanilla.increase).toFixed(1)} % `
      + `gated ${(100 * w8a6.gated.increase).toFixed(1)} %`);
    for (const r of [w8a8, w8a6]) assert.ok(r.vanilla.q >= r.vanilla.fp * 0.9 && r.gated.q >= r.gated.fp * 0.9, JSON.stringify(r));
    assert.ok(w8a6.vanilla.increase > 2 * w8a6.gated.increase,
      `W8A6 perplexity increase: vanilla ${w8a6.vanilla.increase} vs gated ${w8a6.gated.increase}`);
  } finally {
    await b.page.click('.presets button >> text=W8A8 (paper)');
    await b.page.uncheck('#compare');
    await b.page.click('.chip[data-variant=gated]');
    await quantised(b.page);
  }
});

test('top-5: clicking a token masks it', { skip }, async () => {
  const strip = b.page.locator('#view-quant .top5 .strip button.tok');
  await strip.nth(3).click();
  await until(b.page, () => {
    const s = globalThis.quantscope.state();
    const q = s.quantResult;
    return s.maskPos === 3 && q && !q.pending && Object.values(q.byModel)[0].top5.pos === 3;
  });
  const items = await b.page.locator('#view-quant .toplist li').count();
  assert.equal(items, 10);
});

test('bad input: no tokens, bad ids; the previous results stay', { skip }, async () => {
  await b.page.click('#tab-outliers');
  await analysed(b.page); // the view's own statistics (web/needs.js), when the last analysis was another view's
  await painted(b.page);
  const before = await outlierTable(b.page);
  await b.page.fill('#text', '');
  await until(b.page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'input'));
  const msgs = await messages(b.page);
  assert.ok(msgs.some((m) => m.kind === 'error' && /no tokens/.test(m.text)), JSON.stringify(msgs));
  assert.deepEqual(await outlierTable(b.page), before, 'the last results stay on screen');
  await shot('bad-input-empty');
  const text = 'Blessed are the meek: for they shall inherit the earth.';
  await b.page.fill('#text', text);
  await analysed(b.page, { text });
  assert.ok(!(await messages(b.page)).some((m) => m.kind === 'error'), 'the error clears once fixed');
});

/** Sets files on the import input (paths), as a user picking them would. */
async function importFiles(paths) {
  await b.page.setInputFiles('#import-files', paths);
}

async function importError(paths, pattern) {
  const selected = (await state(b.page)).selected;
  await importFiles(paths);
  await until(b.page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'import' && m.kind === 'error'));
  const msgs = await messages(b.page);
  const m = msgs.find((x) => x.kind === 'error' && x.source === 'import');
  assert.match(m.text, pattern);
  assert.equal((await state(b.page)).selected, selected, 'the previous model stays selected');
  return m.text;
}

test('hostile files: a specific message each, the previous model stays usable', { skip }, async () => {
  const tmp = join(RESULTS, 'hostile');
  await rm(tmp, { recursive: true, force: true });
  await (await import('node:fs/promises')).mkdir(tmp, { recursive: true });
  const golden = join(ROOT, 'tests/golden/bert');
  const seen = {};
  // 1. Not a model at all.
  await writeFile(join(tmp, 'notes.txt'), 'just some text\n');
  seen.notModel = await importError([join(tmp, 'notes.txt')], /Not a model: expected config\.json and model\.safetensors/);
  // 2. A safetensors file without its config.
  seen.noConfig = await importError([join(golden, 'model.safetensors')], /No config\.json among the files/);
  // 3. Truncated safetensors.
  await copyFile(join(golden, 'config.json'), join(tmp, 'config.json'));
  const full = await readFile(join(golden, 'model.safetensors'));
  await writeFile(join(tmp, 'model.safetensors'), full.subarray(0, Math.floor(full.length / 2)));
  seen.truncated = await importError([join(tmp, 'config.json'), join(tmp, 'model.safetensors')], /Could not import .*safetensors/);
  // 4. A header that declares 2^40 bytes.
  const huge = Buffer.alloc(64);
  huge.writeBigUInt64LE(1n << 40n, 0);
  huge.write('{"a":1}', 8);
  await writeFile(join(tmp, 'model.safetensors'), huge);
  seen.hugeHeader = await importError([join(tmp, 'config.json'), join(tmp, 'model.safetensors')], /Could not import .*header/i);
  // 5. A checkpoint larger than the WASM memory can hold (sparse file: no disk used).
  await writeFile(join(tmp, 'model.safetensors'), '');
  await truncate(join(tmp, 'model.safetensors'), 3 * 2 ** 30);
  seen.tooBig = await importError([join(tmp, 'config.json'), join(tmp, 'model.safetensors')], /larger than this page can hold/);
  // 6. A broken config.json with real weights.
  await writeFile(join(tmp, 'config.json'), '{"model_type": "bert", "hidden_size": ');
  await copyFile(join(golden, 'model.safetensors'), join(tmp, 'model.safetensors'));
  seen.badConfig = await importError([join(tmp, 'config.json'), join(tmp, 'model.safetensors')], /Could not import .*config/);
  // 7. Dropped on the page rather than picked: the same check.
  await b.page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['not a checkpoint'], 'photo.png', { type: 'image/png' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await until(b.page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'import' && /photo\.png/.test(m.text)));
  seen.dropped = (await messages(b.page)).find((m) => m.source === 'import').text;
  assert.match(seen.dropped, /Not a model/);
  await shot('bad-input-import');
  timings.hostileMessages = seen;
  await rm(tmp, { recursive: true, force: true });
  // The previous model still answers.
  const text = 'The grass withereth, the flower fadeth.';
  await b.page.fill('#text', text);
  await analysed(b.page, { text });
});

test('import the golden Hugging Face BERT (no tokenizer): token ids, numbers equal Node', { skip }, async () => {
  const golden = join(ROOT, 'tests/golden/bert');
  await importFiles([join(golden, 'config.json'), join(golden, 'model.safetensors')]);
  await until(b.page, () => globalThis.quantscope.state().selected?.startsWith('imported-'));
  assert.ok(await b.page.isVisible('#ids'), 'the ids box replaces the text box');
  assert.ok(!(await b.page.isVisible('#text')));
  assert.match(await b.page.textContent('#ids-help'), /no tokenizer/);
  const expected = JSON.parse(await readFile(join(golden, 'expected.json'), 'utf8'));
  const idsText = expected.input_ids.join(' ');
  await b.page.fill('#ids', idsText);
  await analysed(b.page, { ids: idsText });
  const s = await state(b.page);
  const shown = await outlierTable(b.page);
  const model = await loadModel(golden);
  const r = await model.forward(expected.input_ids, { delimiters: new Array(expected.input_ids.length).fill(0), capture: [s.point] });
  for (const p of r.points.filter((x) => x.point === s.point)) {
    assert.equal(shown[s.selected][p.layer].maxAbs, String(p.maxAbs), `layer ${p.layer}`);
  }
  await model.dispose();
  await shot('import-golden-bert');
  // Ids outside the vocabulary: a specific message; the model stays.
  await b.page.fill('#ids', `${idsText} 999`);
  await until(b.page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'input'));
  assert.ok((await messages(b.page)).some((m) => /Token id 999 is outside this model's vocabulary \(0 to 299\)/.test(m.text)));
  await b.page.fill('#ids', 'one two');
  await until(b.page, () => globalThis.quantscope.state().messages.some((m) => m.source === 'input' && /not a token id/.test(m.text)));
  await b.page.fill('#ids', idsText);
  await analysed(b.page, { ids: idsText });
  // Its quantization view works without a tokenizer (no perplexity, said so).
  await b.page.click('#tab-quant');
  await quantised(b.page);
  await pplDone(b.page);
  assert.match(await b.page.textContent('#ppl'), /no tokenizer/);
  await shot('import-golden-bert-quant');
  await b.page.click('#tab-outliers');
  // The golden OPT too (causal, pre-LN): its input ids and outlier view.
  const opt = join(ROOT, 'tests/golden/opt');
  await importFiles([join(opt, 'config.json'), join(opt, 'model.safetensors')]);
  await until(b.page, () => globalThis.quantscope.state().selected === 'imported-2');
  const optIds = JSON.parse(await readFile(join(opt, 'expected.json'), 'utf8')).input_ids.join(' ');
  await b.page.fill('#ids', optIds);
  await analysed(b.page, { ids: optIds, model: 'imported-2' });
  const optShown = await outlierTable(b.page);
  assert.equal(Object.keys(optShown['imported-2']).length, 2);
  await b.page.selectOption('#model', (await state(b.page)).models[0].id);
});

test('train in the tab: steps, curves, pause and resume, download, open', { skip }, async () => {
  const s0 = await state(b.page);
  if (!s0.corpus.train) {
    assert.ok(await b.page.isDisabled('#train-start'));
    return;
  }
  await b.page.click('#tab-train');
  // Run 1: long enough (200 steps of a small model) to be paused while it runs.
  const setNumber = (sel, v) => setNum(b.page, sel, v);
  await b.page.selectOption('#train-variant', 'vanilla');
  await setNumber('#train-layers', 2);
  await b.page.selectOption('#train-hidden', '64');
  await setNumber('#train-batch', 8);
  await setNumber('#train-steps', 200);
  const t0 = Date.now();
  await b.page.click('#train-start');
  await until(b.page, () => (globalThis.quantscope.state().train.runs[0]?.step ?? 0) >= 2, null, 60000);
  // Pause: the step count stops.
  await b.page.click('.run[data-run=run-1] button >> text=Pause');
  await until(b.page, () => globalThis.quantscope.state().train.runs[0].status === 'paused');
  const paused = (await state(b.page)).train.runs[0].step;
  assert.ok(paused < 200, 'paused before the end');
  await b.page.waitForTimeout(400);
  assert.equal((await state(b.page)).train.runs[0].step, paused);
  // Run 2: a small gated model trains alongside (they take turns).
  await b.page.selectOption('#train-variant', 'gated');
  await setNumber('#train-layers', 1);
  await b.page.selectOption('#train-hidden', '32');
  await b.page.selectOption('#train-seq', '32');
  await setNumber('#train-batch', 4);
  await setNumber('#train-steps', 60);
  await b.page.click('#train-start');
  await b.page.click('.run[data-run=run-1] button >> text=Resume');
  await until(b.page, () => globalThis.quantscope.state().train.runs.every((r) => r.status === 'done'), null, 240000);
  const runs = (await state(b.page)).train.runs;
  timings.training = { steps: runs.map((r) => r.step), tokensPerS: runs.map((r) => Math.round(r.tokensPerS)),
    wallS: (Date.now() - t0) / 1000 };
  assert.deepEqual(runs.map((r) => r.step), [200, 60]);
  for (const r of runs) {
    assert.ok(r.evals.step.length >= 3, 'evaluations for the curves');
    assert.ok(r.curve.loss.at(-1) < r.curve.loss[0], `${r.label}: the loss went down`);
  }
  assert.ok(await b.page.locator('#view-train .linechart canvas').count() >= 3);
  // The loss chart draws the context-free baseline the trainer reported (one slice, one value).
  assert.ok(Number.isFinite(runs[0].unigramLoss) && runs[0].unigramLoss === runs[1].unigramLoss);
  assert.equal(await b.page.locator('#view-train .u-legend >> text=context-free baseline (byte counts)').count(), 1);
  // Download: config.json + model.safetensors that load in Node.
  const downloads = [];
  b.page.on('download', (d) => downloads.push(d));
  await b.page.click('.run[data-run=run-1] button >> text=Download');
  await until(b.page, () => true);
  for (let i = 0; i < 50 && downloads.length < 2; i++) await b.page.waitForTimeout(100);
  assert.deepEqual(downloads.map((d) => d.suggestedFilename()).sort(), ['config.json', 'model.safetensors']);
  const dir = join(RESULTS, 'trained');
  await rm(dir, { recursive: true, force: true });
  for (const d of downloads) await d.saveAs(join(dir, d.suggestedFilename()));
  const m = await loadModel(dir);
  assert.equal(m.config.nLayers, 2);
  assert.equal(m.config.hiddenSize, 64);
  await m.dispose();
  // Open in the viewer.
  await b.page.click('.run[data-run=run-2] button >> text=Open in viewer');
  await until(b.page, () => globalThis.quantscope.state().selected?.startsWith('trained-'));
  await analysed(b.page);
  assert.equal(await b.page.getAttribute('.chip[data-variant=gated]', 'aria-pressed'), 'true');
  await shot('trained-in-viewer');
});

test('train in the tab with the defaults: vanilla\'s max ||x||inf ends above gated attention\'s', { skip }, async () => {
  const s0 = await state(b.page);
  if (!s0.corpus.train) return;
  await b.page.click('#tab-train');
  // Back to the page's defaults (the test above changed the form), then one
  // vanilla and one gated run of the default recipe, taking turns.
  const d = TRAIN_DEFAULTS;
  await setNum(b.page, '#train-layers', d.layers);
  await b.page.selectOption('#train-hidden', String(d.hidden));
  await b.page.selectOption('#train-heads', String(d.heads));
  await b.page.selectOption('#train-seq', String(d.seqLen));
  await setNum(b.page, '#train-batch', d.batch);
  await setNum(b.page, '#train-steps', d.steps);
  await setNum(b.page, '#train-lr', d.lr);
  const { variant, ...form } = (await state(b.page)).train.form;
  assert.deepEqual({ ...form, variant: d.variant }, { ...d });
  const first = (await state(b.page)).train.runs.length;
  const t0 = Date.now();
  for (const variant of ['vanilla', 'gated']) {
    await b.page.selectOption('#train-variant', variant);
    await b.page.click('#train-start');
  }
  await until(b.page, (n) => {
    const runs = globalThis.quantscope.state().train.runs.slice(n);
    return runs.length === 2 && runs.every((r) => r.status === 'done');
  }, first, 540000);
  const [v, g] = (await state(b.page)).train.runs.slice(first);
  const lastMax = (r) => r.evals.maxInf.at(-1);
  timings.trainDefaults = {
    wallS: (Date.now() - t0) / 1000, steps: [v.step, g.step], tokensPerS: [Math.round(v.tokensPerS), Math.round(g.tokensPerS)],
    maxInfNorm: { vanilla: lastMax(v), gated: lastMax(g) }, kurtosis: { vanilla: v.evals.kurt.at(-1), gated: g.evals.kurt.at(-1) },
    valLoss: { vanilla: v.evals.valLoss.at(-1), gated: g.evals.valLoss.at(-1) }, unigramLoss: v.unigramLoss,
  };
  // The ordering, not a time: vanilla's LayerNorm input ends above the gated model's.
  assert.ok(lastMax(v) > lastMax(g), `vanilla max ||x||inf ${lastMax(v)} vs gated ${lastMax(g)}`);
  await shot('train', { readme: true });
});

test('keyboard: tabs and controls are reachable and labelled', { skip }, async () => {
  await b.page.focus('#tab-outliers');
  await b.page.keyboard.press('ArrowRight');
  assert.equal((await state(b.page)).view, 'attention');
  await b.page.keyboard.press('ArrowLeft');
  assert.equal((await state(b.page)).view, 'outliers');
  const unlabelled = await b.page.$$eval('input, select, textarea', (els) => els
    .filter((e) => e.type !== 'hidden' && !e.closest('[hidden]'))
    .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')))
    .map((e) => e.id || e.outerHTML.slice(0, 60)));
  assert.deepEqual(unlabelled, []);
});

test('no console errors, failed requests or CSP violations', { skip }, async () => {
  await painted(b.page);
  assert.deepEqual(b.errors, []);
});
