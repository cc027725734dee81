// tests/browser/threads.test.mjs: the optional pthreads build in headless Chromium
// (the page is cross-origin isolated by scripts/serve.mjs): the page with
// ?threads=2 runs on it, its perplexities equal the single-threaded Node API's,
// training runs on two threads; the API's thread options and their errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { loadModel } from '../../wasm/quantscope.mjs';
import { ROOT, MODELS, missing, open, state, until, painted, pplDone, setNumber as setNum } from './helpers.mjs';

const skip = missing()
  ?? (existsSync(join(ROOT, 'build/wasm-threads/quantscope_core.worker.js')) ? false
    : 'the pthreads build is missing (scripts/build-wasm.sh --threads)');
let b;

before(async () => {
  if (skip) return;
  b = await open();
  await b.page.goto(`${b.url}web/?threads=2`);
  await until(b.page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);
});

after(async () => { await b?.close(); });

test('?threads=2 runs the pthreads build; perplexities equal the single-threaded API', { skip }, async () => {
  const s = await state(b.page);
  assert.deepEqual(s.runtime, { threads: 2, pool: 4, relaxedSimd: true, fallback: null });
  assert.match(await b.page.textContent('#t-threads'), /^2 threads \(pthreads\), relaxed SIMD · use 1 thread$/);
  assert.ok(await b.page.evaluate(() => crossOriginIsolated));
  if (!s.corpus.heldOut) return;
  await b.page.click('#tab-quant');
  await pplDone(b.page);
  const id = (await state(b.page)).selected;
  const quant = (await state(b.page)).quant;
  const model = await loadModel(join(MODELS, id)); // Node: the single-threaded build
  const held = await readFile(join(ROOT, 'build/web/kjv-heldout.txt'), 'utf8');
  const ids = (await model.tokenize(held, { addSpecial: false })).ids;
  const ev = await model.evaluate(ids, { seqLen: Math.min(128, model.config.maxPositions), maxWindows: 6,
    calibWindows: 2, quant });
  await model.dispose();
  assert.equal(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .fp-ppl`, 'data-value'), String(ev.fpPpl));
  assert.equal(await b.page.getAttribute(`#ppl .card[data-model="${id}"] .q-ppl`, 'data-value'), String(ev.qPpl));
});

test('training in the tab runs on two threads', { skip }, async () => {
  if (!(await state(b.page)).corpus.train) return;
  await b.page.click('#tab-train');
  const setNumber = (sel, v) => setNum(b.page, sel, v);
  await b.page.selectOption('#train-variant', 'clipped');
  await setNumber('#train-layers', 1);
  await b.page.selectOption('#train-hidden', '32');
  await b.page.selectOption('#train-seq', '32');
  await setNumber('#train-batch', 8);
  await setNumber('#train-steps', 40);
  await b.page.click('#train-start');
  await until(b.page, () => globalThis.quantscope.state().train.runs[0]?.status === 'done', null, 120000);
  const run = (await state(b.page)).train.runs[0];
  assert.equal(run.step, 40);
  assert.ok(run.curve.loss.at(-1) < run.curve.loss[0], 'the loss went down');
});

test('the API: threads per call, bit-identical results, clear errors', { skip }, async () => {
  // A second instance of the module in the page itself (the worker has its own).
  const r = await b.page.evaluate(async () => {
    const q = await import('/wasm/quantscope.mjs');
    const caught = (fn) => { try { fn(); return null; } catch (e) { return `${e.code}: ${e.message}`; } };
    const badConfig = caught(() => q.configure({ threads: 0 }));
    q.configure({ threads: 2 });
    const info = await q.runtimeInfo();
    const late = caught(() => q.configure({ threads: 1 }));
    const m = await q.loadModel('/models/bert-gated/');
    const text = 'And God said, Let there be light: and there was light. '.repeat(60);
    const opts = { seqLen: 64, quant: { actBits: 6 } };
    const one = await m.evaluate(text, { ...opts, threads: 1 });
    const two = await m.evaluate(text, { ...opts, threads: 2 });
    const tooMany = await m.evaluate(text, { threads: 3 }).then(() => null, (e) => `${e.code}: ${e.message}`);
    const trained = await q.createModel({ model_type: 'bert', vocab_size: 260, hidden_size: 32,
      num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32,
      tokenizer: 'byte' }, { seed: 1 });
    const trainer = await trained.createTrainer(text, { batchSize: 4, seqLen: 32, steps: 3, threads: 2, valFraction: 0 });
    const steps = [];
    for (let i = 0; i < 3; i++) steps.push((await trainer.step()).loss);
    await trainer.dispose();
    await trained.dispose();
    await m.dispose();
    return { badConfig, info, late, one, two, tooMany, steps, defaults: (await q.defaultTrain()).threads };
  });
  assert.match(r.badConfig, /^QS_ERR_ARG: configure: threads must be an integer in \[1, 16\], got 0$/);
  assert.deepEqual(r.info, { threads: 2, pool: 4, relaxedSimd: true });
  assert.match(r.late, /already started with 2 thread/);
  assert.ok(r.one.nWindows > 4 && Number.isFinite(r.one.qPpl));
  assert.deepEqual(r.two, r.one);
  assert.match(r.tooMany, /^QS_ERR_ARG: evaluate: threads must be in \[1, 2\]/);
  assert.equal(r.steps.length, 3);
  for (const l of r.steps) assert.ok(Number.isFinite(l) && l > 0);
  assert.equal(r.defaults, 2);
});

test('the switch link reloads on the single-threaded build', { skip }, async () => {
  await b.page.click('#threads-switch');
  await until(b.page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);
  const s = await state(b.page);
  assert.deepEqual(s.runtime, { threads: 1, pool: 1, relaxedSimd: true, fallback: null });
  assert.match(await b.page.textContent('#t-threads'), /^1 thread, relaxed SIMD · use \d+ threads$/);
  await painted(b.page);
  // Navigation aborts the old page's worker requests; nothing else may fail.
  assert.deepEqual(b.errors.filter((e) => !/ERR_ABORTED/.test(e)), []);
});
