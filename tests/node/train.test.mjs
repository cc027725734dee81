// tests/node/train.test.mjs: the module's model making and training API over the
// WASM build (what the page's "train in the tab" uses): createModel, trainers,
// toFiles round trip, textSplit, pieces, and their bad input; the optimisers
// (AdamW, SOAP, Shampoo) against the native qs train on the same model and batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel, textSplit, defaultTrain, runtimeInfo } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A tiny byte-level BERT config.json (variant keys on top). */
const tiny = (extra = {}) => ({
  model_type: 'bert', vocab_size: 260, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 64, max_position_embeddings: 64, type_vocab_size: 2, hidden_act: 'gelu',
  tie_word_embeddings: true, tokenizer: 'byte', ...extra,
});

// 54 KiB of verse-like lines: 4 blocks of 16 KiB, so validation needs val_fraction 0.25 (block 2).
const TEXT = Array.from({ length: 800 }, (_, i) => `And it came to pass on day ${i}, that the people said: let us go up.`).join('\n');

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

test('defaultTrain mirrors qs_train_config_default', async () => {
  const d = await defaultTrain();
  assert.equal(d.batchSize, 64);
  assert.equal(d.seqLen, 128);
  assert.equal(d.lr, 0.001);
  assert.equal(d.maskProb, 0.15);
  assert.equal(d.valFraction, 0.05);
  assert.equal(d.gammaRamp, false);
});

test('createModel is deterministic for a seed and has a byte tokenizer', async () => {
  const a = await createModel(tiny(), { seed: 7 });
  const b = await createModel(JSON.stringify(tiny()), { seed: 7 });
  const c = await createModel(tiny(), { seed: 8 });
  assert.ok(a.hasTokenizer);
  const enc = await a.tokenize('In the beginning');
  const [ra, rb, rc] = await Promise.all([a.forward(enc.ids), b.forward(enc.ids), c.forward(enc.ids)]);
  assert.deepEqual(ra.logits, rb.logits);
  assert.notDeepEqual(ra.logits, rc.logits);
  assert.deepEqual(await a.pieces([1, 3, 4 + 65, 4 + 32]), ['[CLS]', '[MASK]', 'A', ' ']);
  await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
});

test('createModel rejects bad configs with the C message', async () => {
  await rejectsWith(createModel({ ...tiny(), hidden_size: 33 }), 'QS_ERR_CONFIG', /hidden_size|heads/);
  await rejectsWith(createModel({ ...tiny(), bogus_key: 1 }), 'QS_ERR_CONFIG', /bogus_key/);
  await assert.rejects(createModel(tiny(), { seed: -1 }), /seed/);
});

test('a trainer lowers the loss, evaluates, and toFiles round-trips', async () => {
  const model = await createModel(tiny(), { seed: 1 });
  const trainer = await model.createTrainer(TEXT, { batchSize: 4, seqLen: 32, steps: 30, lr: 3e-3, seed: 1, valFraction: 0.25 });
  assert.equal(trainer.warning, null);
  assert.equal(trainer.totalSteps, 30);
  const first = await trainer.step();
  assert.equal(first.step, 1);
  assert.equal(first.tokens, 4 * 32);
  let last = first;
  for (let i = 1; i < 30; i++) last = await trainer.step();
  assert.equal(trainer.stepsDone, 30);
  assert.ok(last.loss < first.loss, `loss ${first.loss} -> ${last.loss}`);
  const ev = await trainer.evaluate({ batches: 2 });
  assert.equal(ev.step, 30);
  for (const k of ['valLoss', 'valPpl', 'maxInfNorm', 'avgKurtosis', 'maxKurtosis', 'avgRmsKurtosis']) {
    assert.ok(Number.isFinite(ev[k]), k);
  }
  // The files load back into the same model.
  const files = await model.toFiles();
  assert.equal(JSON.parse(files.config).hidden_size, 32);
  const copy = await loadModel(files);
  const ids = (await model.tokenize('Let there be light')).ids;
  const [a, b] = await Promise.all([model.forward(ids), copy.forward(ids)]);
  assert.deepEqual(a.logits, b.logits);
  await trainer.dispose();
  await trainer.dispose(); // idempotent
  await assert.rejects(trainer.step(), /disposed/);
  await copy.dispose();
  await model.dispose();
});

test('a quantized forward after training steps quantizes the trained weights, not the old ones', async () => {
  const model = await createModel(tiny(), { seed: 1 });
  const ids = [2, 15, 77, 120, 5, 9, 3];
  const quant = { weightBits: 4 };
  await model.forward(ids, { quant }); // installs quant over the initial weights
  const trainer = await model.createTrainer(TEXT, { batchSize: 2, seqLen: 16, steps: 20, lr: 0.01, valFraction: 0.25 });
  for (let i = 0; i < 5; i++) await trainer.step();
  const after = await model.forward(ids, { quant });
  const copy = await loadModel(await model.toFiles()); // the trained weights, quantized afresh
  assert.deepEqual(after.logits, (await copy.forward(ids, { quant })).logits);
  await copy.dispose();
  await trainer.dispose();
  await model.dispose();
});

test('a trainer is refused for models it cannot train, with the C message', async () => {
  const model = await createModel(tiny(), { seed: 1 });
  await rejectsWith(model.createTrainer(TEXT, { seqLen: 100, valFraction: 0.25 }), 'QS_ERR_RANGE', /seq_len 100/);
  await rejectsWith(model.createTrainer('too short', { seqLen: 32, batchSize: 2, steps: 2 }), 'QS_ERR_RANGE', /.+/);
  await assert.rejects(model.createTrainer(42), /text must be/);
  // The golden BERT has no byte tokenizer.
  const golden = await loadModel(`${GOLDEN}bert`);
  await assert.rejects(golden.createTrainer(TEXT, { seqLen: 32, batchSize: 2, steps: 2 }), /tokenizer|byte/);
  await golden.dispose();
  await model.dispose();
});

test('clipped softmax with a threshold above 1/T warns', async () => {
  const model = await createModel(tiny({ attn_softmax: 'clipped_softmax', clip_alpha: 4, clip_seq_len: 32 }), { seed: 1 });
  const trainer = await model.createTrainer(TEXT, { batchSize: 2, seqLen: 32, steps: 2, valFraction: 0.25 });
  assert.match(trainer.warning ?? '', /1\/T|threshold|gradient/);
  await model.dispose(); // frees the trainer too
  assert.ok(trainer.disposed);
});

test('textSplit cuts the trainer\'s train and validation blocks', async () => {
  const big = Array.from({ length: 4000 }, (_, i) => `line ${i} of the text`).join('\n');
  const opts = { valFraction: 0.25 }; // 5 blocks of 16 KiB: block 2 is validation
  const [train, val] = await Promise.all([textSplit(big, { ...opts, split: 'train' }), textSplit(big, { ...opts, split: 'val' })]);
  assert.equal(train.length + val.length, big.length);
  assert.ok(val.length > 10000 && val.length < big.length / 3, `val ${val.length} of ${big.length}`);
  assert.ok(big.includes(val.slice(0, 200)));
  await assert.rejects(textSplit(big, { split: 'test' }), /split/);
  await assert.rejects(textSplit(big, { valFraction: 0.9 }), (e) => e.code === 'QS_ERR_ARG');
  const golden = await readFile(`${GOLDEN}bert/config.json`, 'utf8');
  assert.equal((await textSplit(golden, { valFraction: 0, split: 'train' })), golden);
});

test('unigramLoss is the held-out bytes\' cross-entropy under the training bytes\' counts', async () => {
  const opts = { valFraction: 0.25 };
  const [train, val] = await Promise.all([textSplit(TEXT, { ...opts, split: 'train' }), textSplit(TEXT, { ...opts, split: 'val' })]);
  const count = new Float64Array(256); // TEXT is ASCII: one byte a character
  for (let i = 0; i < train.length; i++) count[train.charCodeAt(i)]++;
  let ce = 0;
  for (let i = 0; i < val.length; i++) ce -= Math.log((count[val.charCodeAt(i)] + 1) / (train.length + 256));
  ce /= val.length;
  const model = await createModel(tiny(), { seed: 1 });
  const trainer = await model.createTrainer(TEXT, { batchSize: 2, seqLen: 32, steps: 2, ...opts });
  assert.ok(Math.abs(trainer.unigramLoss - ce) < 1e-9 * ce, `${trainer.unigramLoss} against ${ce}`);
  assert.ok(ce > 1 && ce < Math.log(256));
  await trainer.dispose();
  await model.dispose();
});

test('defaultTrain gives each optimiser its C defaults (qs_train_config_for)', async () => {
  const [adamw, soap, shampoo] = await Promise.all(['adamw', 'soap', 'shampoo'].map((o) => defaultTrain(o)));
  assert.deepEqual(await defaultTrain(), adamw);
  assert.equal(adamw.optimizer, 'adamw');
  // soap.py's lr and betas; Shampoo's step length is Adam's (grafted).
  assert.deepEqual([soap.optimizer, soap.lr, soap.beta1, soap.beta2], ['soap', 0.003, 0.95, 0.95]);
  assert.deepEqual([shampoo.lr, shampoo.beta1, shampoo.beta2], [0.001, 0.9, 0.999]);
  assert.deepEqual([soap.shampooBeta, soap.precondEvery, soap.maxPrecondDim, shampoo.precondEps], [0.95, 10, 10000, 1e-6]);
  await rejectsWith(defaultTrain('adam'), 'QS_ERR_ARG', /unknown value 'adam' \(one of: adamw, soap, shampoo\)/);
});

test('createTrainer takes the optimiser and refuses bad settings with a clear message', async () => {
  const model = await createModel(tiny(), { seed: 1 });
  const base = { batchSize: 2, seqLen: 16, steps: 4, valFraction: 0.25 };
  for (const optimizer of ['adamw', 'soap', 'shampoo']) {
    const t = await model.createTrainer(TEXT, { ...base, optimizer });
    assert.equal(t.optimizer, optimizer);
    await t.dispose();
  }
  assert.equal((await model.createTrainer(TEXT, base)).optimizer, 'adamw');
  const bad = [
    [{ optimizer: 'adam' }, 'QS_ERR_ARG', /optimizer: unknown value 'adam' \(one of: adamw, soap, shampoo\)/],
    [{ optimizer: 3 }, 'QS_ERR_ARG', /optimizer: unknown value '3'/],
    [{ optimizer: 'soap', precondEvery: 0 }, 'QS_ERR_RANGE', /soap: precond_every 0 must be at least 1/],
    [{ optimizer: 'shampoo', precondEvery: -2 }, 'QS_ERR_RANGE', /shampoo: precond_every -2 must be at least 1/],
    [{ optimizer: 'soap', maxPrecondDim: 0 }, 'QS_ERR_RANGE', /max_precond_dim 0 must be at least 1/],
    [{ optimizer: 'soap', precondEvery: 2.5 }, 'QS_ERR_ARG', /precondEvery must be an integer/],
    [{ optimizer: 'soap', shampooBeta: 1 }, 'QS_ERR_RANGE', /shampoo_beta 1 outside \[0, 1\)/],
    [{ optimizer: 'soap', shampooBeta: -0.5 }, 'QS_ERR_RANGE', /shampoo_beta -0.5 outside \[0, 1\)/],
    [{ optimizer: 'soap', beta1: 1 }, 'QS_ERR_RANGE', /beta1 1 outside \[0, 1\)/],
    [{ optimizer: 'shampoo', beta2: 1.5 }, 'QS_ERR_RANGE', /beta2 1.5 outside \[0, 1\)/],
    [{ optimizer: 'shampoo', precondEps: 0 }, 'QS_ERR_RANGE', /precond_eps 0 must be finite and > 0/],
    // A setting the chosen optimiser does not read would be silently ignored.
    [{ precondEvery: 5 }, 'QS_ERR_ARG', /precondEvery is a setting of soap and shampoo, not of optimizer 'adamw'/],
    [{ optimizer: 'soap', precondEps: 1e-4 }, 'QS_ERR_ARG', /precondEps is a setting of shampoo, not of optimizer 'soap'/],
    [{ optimizer: 'shampoo', shampooBeta: 0.9 }, 'QS_ERR_ARG', /shampooBeta is a setting of soap, not of optimizer 'shampoo'/],
  ];
  for (const [o, code, pattern] of bad) await rejectsWith(model.createTrainer(TEXT, { ...base, ...o }), code, pattern);
  await model.dispose();
});

test('evaluate() reports He et al.\'s signal propagation beside max ||x||inf and kurtosis', async () => {
  const model = await createModel(tiny(), { seed: 2 });
  const trainer = await model.createTrainer(TEXT, { batchSize: 4, seqLen: 32, steps: 6, optimizer: 'soap', valFraction: 0.25 });
  const evs = [await trainer.evaluate()];
  for (let i = 0; i < 6; i++) await trainer.step();
  evs.push(await trainer.evaluate());
  for (const ev of evs) {
    assert.ok(ev.avgInputCorr >= -1 && ev.avgInputCorr <= 1, `avgInputCorr ${ev.avgInputCorr}`);
    assert.ok(ev.avgInputCorr !== 0, 'measured, not a zero left in the struct');
    assert.ok(Number.isFinite(ev.maxInfNorm) && Number.isFinite(ev.avgRmsKurtosis));
  }
  // forward()'s one-sequence summary has it too (the same qs_outlier_summary).
  const { summary } = await model.forward((await model.tokenize('And God said, Let there be light')).ids);
  assert.ok(summary.avgInputCorr > -1 && summary.avgInputCorr < 1 && summary.avgInputCorr !== 0, `${summary.avgInputCorr}`);
  await model.dispose();
});

// The same model, batches and config through createTrainer (WebAssembly) and
// the native qs train (--init from the JS model's files). build/m32/qs has
// WebAssembly's arithmetic (SSE2 lanes, no FMA, see npx-cli.test.mjs) but
// glibc's libm where WebAssembly has musl's: pow and hypot differ in the last
// bit of a double for some inputs. AdamW uses neither where it matters, and
// trains to the same bits. SOAP's and Shampoo's eigendecompositions (hypot)
// and inverse roots (pow) carry those bits into the update: their curves agree
// as qs train prints them (%.6f) while only the first eigendecomposition has
// been used, not to the last bit of every weight. build/native/qs adds FMA's
// rounding: AdamW and Shampoo stay within 1e-4 nats; SOAP is left out there,
// since Adam in an eigenbasis of a rank-deficient G G^T divides round-off in
// the null space by its own square root (as soap.py does) and moves the loss
// by 2e-3 from the first update.
const M32 = path.join(ROOT, 'build/m32/qs'), NATIVE = path.join(ROOT, 'build/native/qs');
const haveBin = (bin) => existsSync(bin) && spawnSync(bin, ['train', '--help']).stdout?.includes('--optimizer');

async function trainBoth(bin, optimizer, extra, work) {
  const config = tiny({ num_hidden_layers: 2 });
  const steps = 8;
  const model = await createModel(config, { seed: 1 });
  const init = path.join(work, 'init'), out = path.join(work, `out-${optimizer}`);
  rmSync(init, { recursive: true, force: true });
  mkdirSync(init);
  const files = await model.toFiles();
  writeFileSync(path.join(init, 'config.json'), files.config);
  writeFileSync(path.join(init, 'model.safetensors'), files.safetensors);
  // val_fraction 0.05 (qs train's): the corpus needs 20 blocks of 16 KiB.
  const text = path.join(work, 'text.txt');
  if (!existsSync(text)) writeFileSync(text, Array.from({ length: 5200 }, (_, i) => `And it came to pass on day ${i}, that the people said: let us go up.`).join('\n'));
  const trainer = await model.createTrainer(readFileSync(text), { batchSize: 4, seqLen: 32, steps, seed: 3, threads: 1, optimizer, ...extra });
  const js = [];
  for (let i = 0; i < steps; i++) js.push((await trainer.step()).loss);
  const ev = await trainer.evaluate({ batches: 4 });
  const flags = Object.entries(extra).flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(v)]);
  const r = spawnSync(bin, ['train', '--init', init, '--out', out, '--data', text, '--steps', String(steps), '--batch', '4',
    '--seq-len', '32', '--seed', '3', '--threads', '1', '--optimizer', optimizer, '--log-every', '1', '--eval-every', String(steps),
    ...flags], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rows = readFileSync(path.join(out, 'curve.csv'), 'utf8').trim().split('\n');
  const head = rows[0].split(','), cells = rows.slice(1).map((row) => row.split(','));
  const native = cells.map((c) => Number(c[head.indexOf('loss')]));
  const nativeCorr = Number(cells.at(-1)[head.indexOf('avg_input_corr')]);
  const sameWeights = Buffer.compare(Buffer.from((await model.toFiles()).safetensors), readFileSync(path.join(out, 'model.safetensors'))) === 0;
  await model.dispose();
  return { js, native, corr: ev.avgInputCorr, nativeCorr, sameWeights };
}

// tests/node/relaxed.test.mjs reruns this file on the relaxed-SIMD module, whose
// FMA rounds as build/native/qs does rather than as the SSE2 build.
const relaxed = (await runtimeInfo()).relaxedSimd;

test('createTrainer trains as the native qs train does (build/m32/qs: WebAssembly\'s arithmetic)', { skip: (!haveBin(M32) && 'no build/m32/qs with --optimizer') || (relaxed && 'the relaxed-SIMD module rounds as FMA does (the next test)') }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'qs-jstrain-'));
  try {
    const adamw = await trainBoth(M32, 'adamw', {}, work);
    assert.ok(adamw.sameWeights, 'AdamW: the same model.safetensors, byte for byte');
    assert.deepEqual(adamw.js.map((l) => l.toFixed(6)), adamw.native.map((l) => l.toFixed(6)));
    assert.equal(adamw.corr.toFixed(6), adamw.nativeCorr.toFixed(6));
    // SOAP: the eigenbases of step 1 only (precond_every 10 > 8 steps); Shampoo: roots at steps 1, 4, 7.
    for (const [optimizer, extra] of [['soap', {}], ['shampoo', { precondEvery: 3 }]]) {
      const r = await trainBoth(M32, optimizer, extra, work);
      assert.deepEqual(r.js.map((l) => l.toFixed(6)), r.native.map((l) => l.toFixed(6)), optimizer);
      assert.ok(Math.abs(r.corr - r.nativeCorr) < 1e-5, `${optimizer} corr ${r.corr} vs ${r.nativeCorr}`);
      assert.ok(r.js.at(-1) < r.js[0], `${optimizer} trains: ${r.js[0]} -> ${r.js.at(-1)}`);
    }
    // SOAP with refreshed bases (a power step and QR after updates 3 and 6): the curves stay within 1e-3 nats.
    const soap = await trainBoth(M32, 'soap', { precondEvery: 3 }, work);
    const gap = Math.max(...soap.js.map((l, i) => Math.abs(l - soap.native[i])));
    assert.ok(gap < 1e-3, `SOAP with refreshes: max |loss difference| ${gap}`);
    console.log(`# SOAP with refreshes every 3 steps, JS against build/m32/qs: max |loss difference| ${gap.toExponential(2)} over 8 steps`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('createTrainer trains as the native qs train does (build/native/qs: FMA\'s rounding)', { skip: !haveBin(NATIVE) && 'no build/native/qs with --optimizer' }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'qs-jstrain-'));
  try {
    for (const [optimizer, extra] of [['adamw', {}], ['shampoo', { precondEvery: 3 }]]) {
      const r = await trainBoth(NATIVE, optimizer, extra, work);
      const gap = Math.max(...r.js.map((l, i) => Math.abs(l - r.native[i])));
      assert.ok(gap < 1e-4, `${optimizer}: max |loss difference| ${gap}`);
      assert.ok(Math.abs(r.corr - r.nativeCorr) < 1e-4, `${optimizer} corr ${r.corr} vs ${r.nativeCorr}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
