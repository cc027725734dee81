// tests/node/quantscope.test.mjs: the ES module API over the WASM build: golden
// parity, loading routes, C errors as thrown Errors, copies, queueing, quantization.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, memoryBytes, pointNames, defaultQuant, quantGrid } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const TOL = 1e-4; // tests/golden/README.md: a float32 implementation matches to about 1e-4

// ---------------------------------------------------------------- helpers

async function golden(name) {
  const dir = join(GOLDEN, name);
  const expected = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8'));
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  const safetensors = await readFile(join(dir, 'model.safetensors'));
  return { dir, expected, config, safetensors };
}

/** BERT golden inputs: token type 0 for the first floor(n/2) tokens, 1 after. */
const bertTypes = (n) => Array.from({ length: n }, (_, i) => (i < Math.floor(n / 2) ? 0 : 1));

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** ||a - b|| / ||b||: how much quantization moved the logits. */
function relErr(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Max error of logits and every hidden state against expected.json. */
function goldenError(result, expected) {
  let err = maxAbsDiff(result.logits, expected.logits);
  assert.equal(result.hiddenStates.length, expected.hidden_states.length);
  result.hiddenStates.forEach((h, i) => { err = Math.max(err, maxAbsDiff(h, expected.hidden_states[i])); });
  return err;
}

function parseSafetensors(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

/** A safetensors file from the tensors of `buf`, with some replaced: {name: {shape, values}}. */
function rebuildSafetensors(buf, replace = {}) {
  const { header, data } = parseSafetensors(buf);
  const out = { __metadata__: header.__metadata__ ?? {} };
  const chunks = [];
  let offset = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const r = replace[name];
    const bytes = r
      ? Buffer.from(new Float32Array(r.values).buffer)
      : data.subarray(t.data_offsets[0], t.data_offsets[1]);
    out[name] = { dtype: t.dtype, shape: r ? r.shape : t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  const h = Buffer.from(JSON.stringify(out));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, ...chunks]);
}

function tensorValues(buf, name) {
  const { header, data } = parseSafetensors(buf);
  const [b, e] = header[name].data_offsets;
  const copy = Buffer.from(data.subarray(b, e));
  return new Float32Array(copy.buffer, copy.byteOffset, (e - b) / 4);
}

/** A temporary model folder with the given files; removed by the returned cleanup. */
async function modelDir(files) {
  const dir = await mkdtemp(join(tmpdir(), 'quantscope-test-'));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Asserts that promise rejects with exactly this C status and message (string or RegExp). */
async function rejectsWith(promise, code, message) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Error, 'not an Error');
    assert.equal(e.code, code, `code of: ${e.message}`);
    if (message instanceof RegExp) assert.match(e.message, message);
    else assert.equal(e.message, message);
    return true;
  });
}

/** A deterministic id stream for evaluation. */
const stream = (n, vocab) => Array.from({ length: n }, (_, i) => (i * 37 + 11) % vocab);

// ---------------------------------------------------------------- golden parity

test('golden BERT: logits and every hidden state match transformers', async () => {
  const { dir, expected } = await golden('bert');
  const model = await loadModel(dir);
  const ids = expected.input_ids;
  const r = await model.forward(ids, { tokenTypes: bertTypes(ids.length) });
  assert.deepEqual(r.shape, expected.logits_shape);
  const err = goldenError(r, expected);
  console.log(`golden bert (wasm): max abs error ${err.toExponential(2)}`);
  assert.ok(err < TOL, `max error ${err}`);
  await model.dispose();
});

test('golden OPT: logits and every hidden state match transformers', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  const r = await model.forward(expected.input_ids);
  assert.deepEqual(r.shape, expected.logits_shape);
  const err = goldenError(r, expected);
  console.log(`golden opt (wasm): max abs error ${err.toExponential(2)}`);
  assert.ok(err < TOL, `max error ${err}`);
  await model.dispose();
});

test('config, points, heads and captures describe the forward pass', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  assert.deepEqual(
    { arch: model.config.arch, vocabSize: model.config.vocabSize, hiddenSize: model.config.hiddenSize,
      nLayers: model.config.nLayers, nHeads: model.config.nHeads, maxPositions: model.config.maxPositions,
      softmax: model.config.softmax, gate: model.config.gate, tokenizer: model.config.tokenizer },
    { arch: 'opt', vocabSize: 300, hiddenSize: 64, nLayers: 2, nHeads: 4, maxPositions: 64,
      softmax: 'softmax', gate: 'none', tokenizer: 'none' });
  assert.equal(model.config.layerNormEps, 1e-5);
  assert.equal(model.config.block, 'standard');
  // The library's count: every tensor of the file (the head is tied: stored once).
  const { safetensors } = await golden('opt');
  const header = JSON.parse(safetensors.subarray(8, 8 + Number(safetensors.readBigUInt64LE(0))).toString());
  const numel = Object.entries(header).filter(([k]) => k !== '__metadata__')
    .reduce((n, [, t]) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(model.config.nParams, numel);
  const T = expected.input_ids.length;
  const r = await model.forward(expected.input_ids, { capture: ['probs', 'layer_out', 'embed'] });
  const names = (await pointNames()).map((p) => p.name);
  // Every point but the gate (ungated model): 2 globals + 15 per layer.
  assert.equal(r.points.length, 2 + 2 * (names.length - 3));
  assert.equal(r.points[0].point, 'embed');
  assert.equal(r.points[0].layer, -1);
  assert.equal(r.points.at(-1).point, 'final');
  assert.ok(!r.points.some((p) => p.point === 'gate'));
  const probs = r.points.find((p) => p.point === 'probs' && p.layer === 1);
  assert.deepEqual([probs.rows, probs.cols], [4 * T, T]);
  for (const p of r.points) {
    assert.ok(Number.isFinite(p.maxAbs) && Number.isFinite(p.kurtosis), `${p.layer}:${p.point}`);
    assert.equal(p.quantized, false);
    assert.ok(p.topDims.length === Math.min(8, p.cols));
  }
  assert.equal(r.heads.length, 2);
  assert.equal(r.heads[0].length, 4);
  assert.equal(r.heads[0][0].gateMean, 1);
  assert.equal(r.captures.probs.length, 2);
  assert.equal(r.captures.embed.length, 1);
  assert.equal(r.captures.probs[1].length, 4 * T * T);
  // The last layer output captured before the final LayerNorm, embed = hidden state 0.
  assert.deepEqual(r.captures.embed[0], r.hiddenStates[0]);
  // Causal attention rows sum to 1.
  const row0 = r.captures.probs[0].subarray(T, 2 * T).reduce((s, v) => s + v, 0);
  assert.ok(Math.abs(row0 - 1) < 1e-5);
  await model.dispose();
});

test('attention variants from config.json show in config and change the forward pass', async () => {
  const { config, safetensors, expected } = await golden('opt');
  const vanilla = await loadModel({ config, safetensors });
  const clipped = await loadModel({
    config: { ...config, attn_softmax: 'clipped_softmax', clip_gamma: -0.03 }, safetensors });
  assert.equal(clipped.config.softmax, 'clipped_softmax');
  assert.equal(clipped.config.clipGamma, -0.03);
  const a = await vanilla.forward(expected.input_ids);
  const b = await clipped.forward(expected.input_ids);
  const d = maxAbsDiff(a.logits, b.logits);
  assert.ok(d > 1e-4, `clipped softmax changed nothing (${d})`);
  await Promise.all([vanilla.dispose(), clipped.dispose()]);
});

// ---------------------------------------------------------------- loading routes

test('loads from {config, safetensors}, from File objects and with a WordPiece vocab', async () => {
  const { config, safetensors, expected } = await golden('bert');
  const words = ['the', 'quick', 'brown', 'fox', 'jump', '##s', '##ed', 'over', 'lazy', 'dog', ',', '.', '!'];
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...words].join('\n') + '\n';

  const fromObject = await loadModel({ config, safetensors: new Uint8Array(safetensors), vocab });
  const fromFiles = await loadModel([
    new File([vocab], 'vocab.txt'),
    new File([JSON.stringify(config)], 'config.json'),
    new File([safetensors], 'model.safetensors')]);
  for (const model of [fromObject, fromFiles]) {
    assert.equal(model.hasTokenizer, true);
    const ids = expected.input_ids;
    const r = await model.forward(ids, { tokenTypes: bertTypes(ids.length) });
    assert.ok(goldenError(r, expected) < TOL);
    const text = 'The quick fox jumped, over the dog!';
    const enc = await model.tokenize(text);
    assert.deepEqual(enc.pieces, ['[CLS]', 'the', 'quick', 'fox', 'jump', '##ed', ',', 'over', 'the', 'dog', '!', '[SEP]']);
    assert.deepEqual(Array.from(enc.ids), [2, 5, 6, 8, 9, 11, 15, 12, 5, 14, 17, 3]);
    assert.equal(enc.offsets[0], -1);
    assert.equal(text.slice(enc.offsets[3]).startsWith('fox'), true);
    assert.deepEqual(Array.from(enc.delimiters), [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]);
    assert.equal(await model.detokenize(enc.ids), '[CLS] the quick fox jumped , over the dog ! [SEP]');
    const plain = await model.tokenize(text, { addSpecial: false });
    assert.equal(plain.ids.length, enc.ids.length - 2);
    assert.deepEqual(await model.specialTokens(), { pad: 0, cls: 2, sep: 3, mask: 4, unk: 1, vocabSize: 18 });
    await rejectsWith(model.detokenize([1, 999]), 'QS_ERR_RANGE',
      'decode: id 999 at position 1 is out of range [0, 18)');
    // Text is tokenized with the model's tokenizer, specials from it.
    const ev = await model.evaluate('the quick brown fox jumps over the lazy dog. '.repeat(20),
      { seqLen: 16, maskSeed: 1 });
    assert.ok(Number.isFinite(ev.fpPpl) && ev.nPredicted > 0);
    await model.dispose();
  }
});

test('tokenize on a model without a tokenizer throws the C message', async () => {
  const model = await loadModel((await golden('opt')).dir);
  assert.equal(model.hasTokenizer, false);
  await rejectsWith(model.tokenize('hello'), 'QS_ERR_ARG',
    'the model has no tokenizer (config "tokenizer" is "none" and no vocab.txt was given)');
  await model.dispose();
});

test('a missing folder is an IO error', async () => {
  await rejectsWith(loadModel(join(tmpdir(), 'quantscope-no-such-folder')), 'QS_ERR_IO', /config\.json: ENOENT/);
});

// ---------------------------------------------------------------- bad input

test('truncated safetensors', async () => {
  const { config, safetensors } = await golden('opt');
  const { dir, cleanup } = await modelDir({
    'config.json': JSON.stringify(config), 'model.safetensors': safetensors.subarray(0, 100000) });
  try {
    // From a folder the message names it, as qs_model_load_dir's do.
    await rejectsWith(loadModel(dir), 'QS_ERR_FORMAT', new RegExp(`^${dir}/`
      + /model\.safetensors: tensor '[\w.]+': data_offsets \[\d+, \d+\] outside the data section of \d+ bytes \(file truncated or corrupt\)$/.source));
  } finally {
    await cleanup();
  }
});

test('safetensors header larger than the file', async () => {
  const { config, safetensors } = await golden('opt');
  const bad = Buffer.from(safetensors);
  bad.writeBigUInt64LE(1000000n, 0);
  const { dir, cleanup } = await modelDir({ 'config.json': JSON.stringify(config), 'model.safetensors': bad });
  try {
    await rejectsWith(loadModel(dir), 'QS_ERR_FORMAT',
      `${dir}/model.safetensors: header length 1000000 is larger than the ${bad.length - 8} bytes after it ` +
      '(truncated or not a safetensors file)');
  } finally {
    await cleanup();
  }
});

test('corrupt JSON config', async () => {
  const { safetensors } = await golden('opt');
  await rejectsWith(loadModel({ config: '{"model_type": "opt", "hidden_size": 64,', safetensors }),
    'QS_ERR_FORMAT', /^config\.json: invalid JSON at byte \d+: /);
});

test('unknown config key', async () => {
  const { config, safetensors } = await golden('opt');
  await rejectsWith(loadModel({ config: { ...config, rotary_dim: 16 }, safetensors }), 'QS_ERR_CONFIG',
    'config.json: unknown config key \'rotary_dim\' for model_type "opt"');
});

test('NaN in the weights', async () => {
  const { config, safetensors } = await golden('opt');
  const name = 'model.decoder.layers.0.fc1.weight';
  const values = tensorValues(safetensors, name);
  values[5] = NaN;
  const { dir, cleanup } = await modelDir({
    'config.json': JSON.stringify(config),
    'model.safetensors': rebuildSafetensors(safetensors, { [name]: { shape: [128, 64], values } }) });
  try {
    await rejectsWith(loadModel(dir), 'QS_ERR_NAN',
      `${dir}/model.safetensors: tensor '${name}' holds a non-finite value (nan) at flat index 5`);
  } finally {
    await cleanup();
  }
});

test('bad forward inputs throw the C message and leave the model usable', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  const ok = async () => assert.ok(goldenError(await model.forward(expected.input_ids), expected) < TOL);
  await ok();
  await rejectsWith(model.forward([5, 300, 7]), 'QS_ERR_RANGE',
    'forward: token id 300 at position 1 is out of range [0, 300)');
  await ok();
  await rejectsWith(model.forward(new Array(65).fill(3)), 'QS_ERR_RANGE',
    "forward: 65 tokens is longer than the model's max_position_embeddings 64");
  await ok();
  await rejectsWith(model.forward([]), 'QS_ERR_RANGE', 'forward: empty input (0 tokens)');
  await ok();
  await rejectsWith(model.forward([1, 2], { tokenTypes: [0, 0] }), 'QS_ERR_ARG',
    'forward: token types given but OPT models have none');
  await rejectsWith(model.forward(expected.input_ids, { quant: { weightBits: 1 } }), 'QS_ERR_RANGE',
    'quant: weight_bits = 1, expected 0 (float) or 2..16');
  await ok();
  // Checked in JavaScript: types and lengths C cannot see.
  await rejectsWith(model.forward([1, 2.5]), 'QS_ERR_ARG', 'forward: ids[1] = 2.5 is not a 32-bit integer');
  await rejectsWith(model.forward('hello'), 'QS_ERR_ARG', 'forward: ids must be an array of integers');
  await rejectsWith(model.forward([1, 2], { delimiters: [1] }), 'QS_ERR_ARG',
    'forward: delimiters has 1 entries but ids has 2');
  await rejectsWith(model.forward([1, 2], { capture: ['nope'] }), 'QS_ERR_ARG', /^forward: capture: unknown point 'nope'/);
  await ok();

  const bert = await loadModel((await golden('bert')).dir);
  await rejectsWith(bert.forward([1, 2, 3], { tokenTypes: [0, 2, 0] }), 'QS_ERR_RANGE',
    'forward: token type 2 at position 1 is out of range [0, 2)');
  await Promise.all([model.dispose(), bert.dispose()]);
});

// ---------------------------------------------------------------- memory, queue

test('results are copies that survive WASM memory growth', async () => {
  const { config, safetensors, expected } = await golden('opt');
  // The golden model with 1024 positions: a 1024-token forward needs far more
  // than the 32 MiB the instance starts with (scores + probs alone: 32 MiB).
  const name = 'model.decoder.embed_positions.weight';
  const old = tensorValues(safetensors, name);
  const positions = new Float32Array(1026 * 64);
  positions.set(old);
  for (let i = old.length; i < positions.length; i++) positions[i] = Math.sin(i) * 0.02;
  const model = await loadModel({
    config: { ...config, max_position_embeddings: 1024 },
    safetensors: rebuildSafetensors(safetensors, { [name]: { shape: [1026, 64], values: positions } }) });
  const small = await model.forward(expected.input_ids, { capture: ['probs'] });
  const before = await memoryBytes();
  const big = await model.forward(stream(1024, 300), { capture: ['probs', 'scores', 'ffn_h'] });
  const after = await memoryBytes();
  console.log(`wasm memory ${before >> 20} MiB -> ${after >> 20} MiB`);
  assert.ok(after > before, 'the heap did not grow: the test proves nothing');
  assert.ok(goldenError(small, expected) < TOL, 'old results changed after growth');
  assert.equal(small.captures.probs[0].length, 4 * 12 * 12);
  assert.equal(big.logits.length, 1024 * 300);
  assert.ok(big.logits.every(Number.isFinite));
  await model.dispose();
});

test('concurrent calls give the results of serial calls', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  const ids = expected.input_ids;
  const calls = [
    () => model.forward(ids),
    () => model.forward(ids, { quant: { weightBits: 4, actBits: 4 } }),
    () => model.forward(ids.slice(0, 5)),
    () => model.forward(ids, { quant: { weightBits: 8, actBits: 8, actGranularity: 'token' } }),
    () => model.forward(ids, { quant: { weightBits: 4, actBits: 4 } }),
    () => model.forward([1, 2, 3, 4], { capture: ['v'] }),
    () => model.evaluate(stream(200, 300), { seqLen: 32, quant: { actBits: 6 } }),
    () => model.forward(ids, { quant: { weightBits: 8, actBits: 8, actGranularity: 'token' } }),
  ];
  const concurrent = await Promise.all(calls.map((f) => f()));
  const serial = [];
  for (const f of calls) serial.push(await f());
  assert.deepEqual(concurrent, serial);
  // A failing call in the middle of a burst does not disturb the others.
  const burst = await Promise.allSettled([model.forward(ids), model.forward([999]), model.forward(ids)]);
  assert.deepEqual(burst.map((b) => b.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.deepEqual(burst[0].value.logits, burst[2].value.logits);
  await model.dispose();
});

// ---------------------------------------------------------------- quantization

test('quantized forward: 8 bits moves logits a little, 16 bits almost not at all', async () => {
  for (const name of ['bert', 'opt']) {
    const { dir, expected } = await golden(name);
    const model = await loadModel(dir);
    const ids = expected.input_ids;
    const tokenTypes = name === 'bert' ? bertTypes(ids.length) : undefined;
    const fp = await model.forward(ids, { tokenTypes });
    const q8 = await model.forward(ids, { tokenTypes, quant: { weightBits: 8, actBits: 8 } });
    const q16 = await model.forward(ids, { tokenTypes, quant: { weightBits: 16, actBits: 16 } });
    const e8 = relErr(q8.logits, fp.logits), e16 = relErr(q16.logits, fp.logits);
    console.log(`${name}: relative logit error W8A8 ${e8.toExponential(2)}, W16A16 ${e16.toExponential(2)}`);
    assert.ok(e8 > 1e-4 && e8 < 0.1, `W8A8 ${e8}`);
    assert.ok(e16 < 1e-3 && e16 < e8 / 50, `W16A16 ${e16}`);
    const quantized = q8.points.filter((p) => p.quantized);
    assert.ok(quantized.length > 0);
    for (const p of quantized) assert.ok(p.quantSqnrDb > 20, `${p.layer}:${p.point} ${p.quantSqnrDb} dB`);
    // Float again after a quantized pass: the float weights were untouched.
    assert.deepEqual((await model.forward(ids, { tokenTypes })).logits, fp.logits);
    // Only the listed points are quantized.
    const some = await model.forward(ids, { tokenTypes, quant: { points: ['ffn_act'] } });
    assert.deepEqual([...new Set(some.points.filter((p) => p.quantized).map((p) => p.point))], ['ffn_act']);
    await model.dispose();
  }
});

test('calibration gives static ranges that later forwards use', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  const quant = { weightBits: 8, actBits: 8, estimator: 'minmax' };
  const dynamic = await model.forward(expected.input_ids, { quant });
  const { batches } = await model.calibrate([stream(40, 300), stream(30, 300).reverse()], { quant });
  assert.equal(batches, 2);
  const calibrated = await model.forward(expected.input_ids, { quant });
  assert.notDeepEqual(calibrated.logits, dynamic.logits);
  const p = calibrated.points.find((s) => s.point === 'ffn_act' && s.layer === 0);
  assert.ok(p.quantized && p.quantMax > 0);
  await rejectsWith(model.calibrate([[1, 2]], { quant: { estimator: 'magic' } }), 'QS_ERR_ARG',
    /^calibrate: quant\.estimator: unknown value 'magic'/);
  assert.deepEqual((await defaultQuant()).estimator, 'running_minmax');
  await model.dispose();
});

test('calibratedBatches: the batches behind the installed ranges, 0 once the config is another', async () => {
  const { dir, expected } = await golden('opt');
  const model = await loadModel(dir);
  const quant = { actBits: 6, estimator: 'minmax' };
  const ids = expected.input_ids;
  assert.equal(await model.calibratedBatches(quant), 0, 'nothing installed');
  await model.calibrate([stream(40, 300), stream(30, 300)], { quant });
  assert.equal(await model.calibratedBatches(quant), 2);
  // The same config spelt out with its defaults is the same config.
  assert.equal(await model.calibratedBatches({ ...await defaultQuant(), ...quant }), 2);
  await model.forward(ids, { quant }); // the calibrated ranges stay in use
  assert.equal(await model.calibratedBatches(quant), 2);
  assert.equal(await model.calibratedBatches({ ...quant, actBits: 8 }), 0, 'another config');
  await model.forward(ids, { quant: { ...quant, actBits: 8 } }); // installs it: ranges from this input
  assert.equal(await model.calibratedBatches(quant), 0);
  assert.equal(await model.calibratedBatches({ ...quant, actBits: 8 }), 0, 'installed, not calibrated');
  await model.calibrate([stream(40, 300)], { quant });
  assert.equal(await model.calibratedBatches(quant), 1);
  await model.evaluate(stream(200, 300), { seqLen: 32, maxWindows: 2, quant }); // installs its own
  assert.equal(await model.calibratedBatches(quant), 0);
  await model.calibrate([stream(40, 300)], { quant });
  await model.clearQuant();
  assert.equal(await model.calibratedBatches(quant), 0);
  await rejectsWith(model.calibratedBatches({ actbits: 4 }), 'QS_ERR_ARG',
    /^calibratedBatches: unknown quant option 'actbits' \(valid: weightBits, /);
  await model.dispose();
});

test('evaluate: finite perplexities, float and quantized', async () => {
  for (const name of ['opt', 'bert']) {
    const model = await loadModel((await golden(name)).dir);
    // The golden BERT has no tokenizer: name its specials.
    const specials = name === 'bert' ? { cls: 2, sep: 3, mask: 4 } : {};
    const r = await model.evaluate(stream(600, 300), { seqLen: 32, maxWindows: 10, quant: {}, specials });
    console.log(`${name}: ppl fp ${r.fpPpl.toFixed(2)}, W8A8 ${r.qPpl.toFixed(2)} over ${r.nPredicted} tokens`);
    for (const k of ['fpNll', 'fpPpl', 'qNll', 'qPpl']) assert.ok(Number.isFinite(r[k]), `${name} ${k}`);
    assert.equal(r.nWindows, 10);
    assert.ok(r.nPredicted > 0);
    assert.ok(Math.abs(r.fpNll - r.qNll) < 0.5);
    const fpOnly = await model.evaluate(stream(600, 300), { seqLen: 32, maxWindows: 10, specials });
    assert.equal(fpOnly.fpNll, r.fpNll);
    assert.ok(Number.isNaN(fpOnly.qPpl));
    await rejectsWith(model.evaluate(stream(100, 300), { seqLen: 65, specials }), 'QS_ERR_RANGE',
      'evaluate: seq_len 65 exceeds max_position_embeddings 64');
    await model.dispose();
  }
});

// ---------------------------------------------------------------- dispose

test('dispose is idempotent and later calls throw', async () => {
  const model = await loadModel((await golden('opt')).dir);
  const pending = model.forward([1, 2, 3]); // queued before dispose: still runs
  const d1 = model.dispose();
  const d2 = model.dispose();
  assert.equal(d1, d2);
  assert.equal((await pending).logits.length, 3 * 300);
  await d1;
  assert.equal(model.disposed, true);
  await rejectsWith(model.forward([1, 2, 3]), 'QS_ERR_ARG', 'quantscope: the model was disposed');
  await rejectsWith(model.evaluate([1, 2, 3]), 'QS_ERR_ARG', 'quantscope: the model was disposed');
  await rejectsWith(model.tokenize('x'), 'QS_ERR_ARG', 'quantscope: the model was disposed');
});

test('quantGrid is the C quantizer\'s grid: half-to-even zero point, FLT_MIN floor, symmetric, errors', async () => {
  // -min / scale = 0.5 exactly: C rounds half to even (0), Math.round would give 1.
  assert.deepEqual(await quantGrid(-0.5, 254.5, 8), { scale: 1, zero: 0, qmin: 0, qmax: 255, lo: 0, hi: 255 });
  const flat = await quantGrid(0, 0, 8);
  assert.equal(flat.scale, 1.1754943508222875e-38); // FLT_MIN, not a JS stand-in
  const sym = await quantGrid(-3, 2, 4, true);
  assert.deepEqual([sym.zero, sym.qmin, sym.qmax], [0, -7, 7]);
  assert.ok(Math.abs(sym.scale - 3 / 7) < 1e-7);
  await assert.rejects(quantGrid(0, 1, 40), (e) => e.code === 'QS_ERR_RANGE');
  await assert.rejects(quantGrid('a', 1, 8), /must be a number/);
});
