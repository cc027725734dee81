// tests/node/train.test.mjs: the module's model making and training API over the
// WASM build (what the page's "train in the tab" uses): createModel, trainers,
// toFiles round trip, textSplit, pieces, and their bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel, textSplit, defaultTrain } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));

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
