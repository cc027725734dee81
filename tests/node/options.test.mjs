// tests/node/options.test.mjs: every options object of the ES module is checked
// (issue "Hardening, round 2" item 4): an unknown or misspelt key is QS_ERR_ARG
// naming it and the valid keys, instead of being ignored while the call runs
// with the default; the keys listed are the ones the .d.ts documents.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { configure, createModel, defaultQuant, loadModel, textSplit } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const DTS = fileURLToPath(new URL('../../wasm/quantscope.d.ts', import.meta.url));

const BYTE_BERT = {
  model_type: 'bert', vocab_size: 260, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 32, max_position_embeddings: 32, tokenizer: 'byte',
};
const TEXT = 'and the lord said unto moses, behold the light was good.\n'.repeat(1500); // 4 blocks

/** Asserts QS_ERR_ARG naming `key` and listing exactly `valid`; returns the listed keys. */
function isUnknownKey(e, where, key, valid) {
  assert.ok(e instanceof Error, 'not an Error');
  assert.equal(e.code, 'QS_ERR_ARG', e.message);
  assert.ok(e.message.startsWith(`${where}: unknown `), e.message);
  assert.ok(e.message.includes(` '${key}' `), `${e.message} does not name '${key}'`);
  assert.ok(e.message.endsWith(`(valid: ${valid.join(', ')})`), `${e.message} does not list ${valid}`);
  return true;
}

async function fixtures() {
  const dir = join(GOLDEN, 'bert');
  const config = await readFile(join(dir, 'config.json'), 'utf8');
  const safetensors = await readFile(join(dir, 'model.safetensors'));
  const model = await loadModel({ config, safetensors });
  const byteModel = await createModel(BYTE_BERT, { seed: 1 });
  const trainer = await byteModel.createTrainer(TEXT, { batchSize: 2, seqLen: 16, steps: 3, valFraction: 0.25 });
  return { dir, config, safetensors, model, byteModel, trainer };
}

test('every function and method taking options refuses an unknown key, naming the valid ones', async (t) => {
  const f = await fixtures();
  const ids = [2, 15, 77, 120, 5, 9, 3];
  const quantKeys = Object.keys(await defaultQuant());
  const cases = [
    // [call, where, bad key, valid keys]
    [() => loadModel(f.dir, { onprogress() {} }), 'loadModel', 'onprogress', ['onProgress']],
    [() => loadModel({ config: f.config, safetensors: f.safetensors, vocabulary: 'x' }), 'loadModel', 'vocabulary',
      ['config', 'safetensors', 'vocab']],
    [() => createModel(BYTE_BERT, { sead: 1 }), 'createModel', 'sead', ['seed']],
    [() => textSplit(TEXT, { valfraction: 0.5 }), 'textSplit', 'valfraction', ['valFraction', 'split']],
    [() => f.model.tokenize('x', { add_special: false }), 'tokenize', 'add_special', ['addSpecial']],
    [() => f.model.forward(ids, { captures: ['probs'] }), 'forward', 'captures',
      ['tokenTypes', 'attentionMask', 'delimiters', 'quant', 'capture', 'transformed', 'stats']],
    [() => f.model.forward(ids, { stats: { point: ['ffn_res'] } }), 'forward', 'point', ['points', 'heads']],
    [() => f.model.withFix('rotate', null, { windows: 2 }), 'withFix', 'windows', ['seqLen', 'maxWindows', 'quant']],
    [() => f.model.forward(ids, { quant: { actbits: 4 } }), 'forward', 'actbits', quantKeys],
    [() => f.model.calibrate([ids], { quant: {}, signals: null }), 'calibrate', 'signals', ['quant', 'signal']],
    [() => f.model.calibrate([ids], { quant: { weightbits: 4 } }), 'calibrate', 'weightbits', quantKeys],
    [() => f.model.calibrate([{ input_ids: ids }]), 'calibrate', 'input_ids', ['ids', 'tokenTypes']],
    [() => f.model.evaluate(ids, { maxwindows: 1 }), 'evaluate', 'maxwindows',
      ['seqLen', 'maxWindows', 'maskSeed', 'maskProb', 'quant', 'calibWindows', 'threads', 'specials', 'signal',
        'onProgress']],
    [() => f.model.evaluate(ids, { quant: { actBits: 8, points: ['ffn_h'], estimater: 'mse' } }), 'evaluate',
      'estimater', quantKeys],
    [() => f.model.evaluate(ids, { specials: { pad: 0 } }), 'evaluate', 'pad', ['cls', 'sep', 'mask', 'bos']],
    [() => f.byteModel.createTrainer(TEXT, { batch: 2 }), 'createTrainer', 'batch',
      ['batchSize', 'seqLen', 'steps', 'warmupSteps', 'lr', 'minLrRatio', 'weightDecay', 'beta1', 'beta2', 'eps',
        'gradClip', 'maskProb', 'valFraction', 'gammaRamp', 'seed', 'threads', 'optimizer', 'shampooBeta', 'precondEvery',
        'maxPrecondDim', 'precondEps']],
    [() => f.trainer.step({ abort: null }), 'trainer.step', 'abort', ['signal']],
    [() => f.trainer.evaluate({ batch: 2 }), 'trainer.evaluate', 'batch', ['batches', 'signal']],
  ];
  const dts = await readFile(DTS, 'utf8');
  for (const [call, where, key, valid] of cases) {
    await t.test(`${where}: '${key}'`, async () => {
      await assert.rejects(call(), (e) => isUnknownKey(e, where, key, valid));
      // The keys the message offers are the ones the .d.ts documents.
      for (const k of valid) assert.match(dts, new RegExp(`\\b${k}\\??: `), `quantscope.d.ts lacks '${k}'`);
    });
  }
  // configure() is synchronous: it throws.
  assert.throws(() => configure({ thread: 2 }), (e) => isUnknownKey(e, 'configure', 'thread', ['threads', 'relaxedSimd']));

  // The models and the trainer still work after all those refusals.
  assert.equal((await f.model.forward(ids)).shape[0], ids.length);
  assert.equal((await f.trainer.step()).step, 1);
  await f.trainer.dispose();
  await f.byteModel.dispose();
  await f.model.dispose();
});

test("the issue's case: quant {actbits: 4} was W8A8; now refused, and {actBits: 4} is A4", async () => {
  const f = await fixtures();
  const ids = [2, 15, 77, 120, 5, 9, 3, 44, 61, 8];
  await assert.rejects(f.model.forward(ids, { quant: { actbits: 4 } }),
    /^Error: forward: unknown quant option 'actbits' \(valid: weightBits, /);
  const w8a8 = await f.model.forward(ids, { quant: {}, capture: ['ffn_h'] });
  const a4 = await f.model.forward(ids, { quant: { actBits: 4 }, capture: ['ffn_h'] });
  const sqnr = (r) => r.points.find((p) => p.point === 'ffn_h' && p.layer === 0).quantSqnrDb;
  assert.ok(sqnr(a4) < sqnr(w8a8) - 10, `A4 SQNR ${sqnr(a4)} dB vs A8 ${sqnr(w8a8)} dB`);
  await f.trainer.dispose();
  await f.byteModel.dispose();
  await f.model.dispose();
});

test('options that are not objects are QS_ERR_ARG; omitted options and every valid key still work', async () => {
  const f = await fixtures();
  const ids = [2, 15, 77, 120, 5];
  for (const bad of [null, 5, 'x', [1]]) {
    await assert.rejects(f.model.forward(ids, bad),
      (e) => e.code === 'QS_ERR_ARG' && /^forward: options must be an object, got /.test(e.message), String(bad));
  }
  await assert.rejects(f.model.forward(ids, { quant: 8 }), { code: 'QS_ERR_ARG', message: 'forward: quant must be an object or a setting name' });
  await assert.rejects(f.model.evaluate(ids, { specials: [] }),
    { code: 'QS_ERR_ARG', message: 'evaluate: specials keys must be an object, got an array' });
  assert.throws(() => configure(null), { code: 'QS_ERR_ARG', message: 'configure: options must be an object, got null' });

  // Every documented key at once is accepted.
  const ac = new AbortController();
  const r = await f.model.evaluate(Array.from({ length: 60 }, (_, i) => 5 + (i % 200)), {
    seqLen: 16, maxWindows: 3, maskSeed: 2, maskProb: 0.2, quant: { ...(await defaultQuant()) }, calibWindows: 1,
    threads: 1, specials: { cls: 2, sep: 3, mask: 4, bos: -1 }, signal: ac.signal, onProgress: () => {},
  });
  assert.equal(r.nWindows, 3);
  assert.ok(Number.isFinite(r.qPpl));
  const enc = await f.byteModel.tokenize('hello', { addSpecial: false });
  assert.equal(enc.ids.length, 5);
  assert.equal((await f.trainer.evaluate({ batches: 1, signal: ac.signal })).step, 0);
  await f.trainer.dispose();
  await f.byteModel.dispose();
  await f.model.dispose();
});
