// tests/node/corpus.test.mjs: every fuzz seed (tests/fuzz/corpus/<target>/*)
// replayed through the WebAssembly module. The fuzzers run natively, where
// size_t has 64 bits; WebAssembly's has 32, so a size that wraps only there
// (issue "Hardening, round 2") shows up here as a trap. Each target's input
// goes through the JavaScript API the way tests/fuzz/fuzz_<target>.c feeds
// the C library, and every failure must be an Error with a C status code,
// never a trap (which quantscope.mjs reports as QS_ERR_TRAP).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel } from '../../wasm/quantscope.mjs';

const CORPUS = fileURLToPath(new URL('../fuzz/corpus/', import.meta.url));
const C_CODES = new Set(['QS_ERR_ARG', 'QS_ERR_IO', 'QS_ERR_FORMAT', 'QS_ERR_CONFIG', 'QS_ERR_SHAPE',
  'QS_ERR_RANGE', 'QS_ERR_NAN', 'QS_ERR_NOMEM']);

// fuzz_common.h's FUZZ_TINY_BERT: the model the tokenizer, quant and resume targets use.
const TINY_BERT = {
  model_type: 'bert', vocab_size: 260, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 16, max_position_embeddings: 16, tokenizer: 'byte',
};

async function seeds(target) {
  const dir = join(CORPUS, target);
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(dir, name)) })));
}

const tally = { calls: 0, errors: {} };
process.on('exit', () => {
  console.log(`# corpus replay: ${tally.calls} calls, rejected: ${JSON.stringify(tally.errors)}, no trap`);
});

/** Runs fn; a rejection must be a C status, never a trap. Returns what fn gave, or the error. */
async function clean(what, fn) {
  tally.calls++;
  try {
    return { value: await fn() };
  } catch (e) {
    tally.errors[e.code] = (tally.errors[e.code] ?? 0) + 1;
    assert.ok(e instanceof Error, `${what}: threw a non-Error ${e}`);
    assert.notEqual(e.code, 'QS_ERR_TRAP', `${what}: WASM trap: ${e.message}`);
    assert.ok(C_CODES.has(e.code), `${what}: ${e.name} without a QS_ERR_* code: ${e.message}`);
    assert.ok(e.message.length > 0, `${what}: empty message`);
    return { error: e };
  }
}

/** fuzz_model's checks on a loaded model: a forward, W8A8 calibrate + quantized forward, a bad id. */
async function exercise(what, model) {
  const { vocabSize: V, maxPositions, arch, typeVocabSize } = model.config;
  const T = Math.min(maxPositions, 4);
  const ids = Array.from({ length: T }, (_, i) => (i * 7 + 1) % V);
  const tokenTypes = arch === 'bert' ? ids.map((_, i) => i % typeVocabSize) : undefined;
  const f = await clean(`${what}: forward`, () => model.forward(ids, { tokenTypes }));
  if (f.error) assert.equal(f.error.code, 'QS_ERR_NAN', `${what}: forward: ${f.error.message}`);
  await clean(`${what}: calibrate`, () => model.calibrate([{ ids, tokenTypes }]));
  await clean(`${what}: quantized forward`, () => model.forward(ids, { tokenTypes, quant: {} }));
  const bad = await clean(`${what}: bad id`, () => model.forward([...ids.slice(0, -1), V], { tokenTypes }));
  assert.equal(bad.error?.code, 'QS_ERR_RANGE', `${what}: id ${V} accepted`);
  await model.dispose();
}

/** fuzz_config's size limit for creating a model from a fuzzed config. */
function paramEstimate(j) {
  const D = j.hidden_size ?? 0, I = j.intermediate_size ?? j.ffn_dim ?? 0, L = j.num_hidden_layers ?? 0;
  const H = j.num_attention_heads ?? 1, hid = j.attn_gate_mlp_hidden ?? 1;
  return D * ((j.vocab_size ?? 0) + (j.max_position_embeddings ?? 2048) + 2 + (j.type_vocab_size ?? 2) + 8)
    + L * (4 * D * D + 2 * D * I + 8 * D + I + H * hid * (D / H + 2) + H * D);
}

let tinyFiles;
async function tiny() {
  if (!tinyFiles) {
    const m = await createModel(TINY_BERT, { seed: 1 });
    tinyFiles = await m.toFiles();
    await m.dispose();
  }
  return tinyFiles;
}

test('fuzz corpus replayed through WASM: safetensors', async () => {
  const configs = new Map((await seeds('config')).map((s) => [s.name, s.bytes]));
  let loaded = 0;
  for (const { name, bytes } of await seeds('safetensors')) {
    // A seed made from a tiny model has its config beside it in config/.
    const config = configs.get(name) ?? (await tiny()).config;
    const r = await clean(`safetensors/${name}`, () => loadModel({ config, safetensors: bytes }));
    if (r.value) {
      loaded++;
      await exercise(`safetensors/${name}`, r.value);
    }
  }
  assert.ok(loaded >= 12, `only ${loaded} safetensors seeds loaded`);
});

test('fuzz corpus replayed through WASM: config', async () => {
  const weights = new Map((await seeds('safetensors')).map((s) => [s.name, s.bytes]));
  let created = 0;
  for (const { name, bytes } of await seeds('config')) {
    const safetensors = weights.get(name) ?? (await tiny()).safetensors;
    const r = await clean(`config/${name}`, () => loadModel({ config: bytes, safetensors }));
    if (r.value) await exercise(`config/${name}`, r.value);
    let j = null;
    try { j = JSON.parse(bytes.toString('utf8')); } catch { /* C reports it */ }
    // Big configs must be refused by size (QS_ERR_NOMEM) or by the file check,
    // never wrap; creating one that fits is left to the small ones.
    if (j && typeof j === 'object' && paramEstimate(j) > 1 << 18) {
      const big = await clean(`config/${name}: loadModel (big)`, () => loadModel({ config: bytes, safetensors }));
      assert.ok(big.error, `config/${name}: a big config loaded from a tiny file`);
      continue;
    }
    const c = await clean(`config/${name}: createModel`, () => createModel(bytes, { seed: 7 }));
    if (c.value) {
      created++;
      await exercise(`config/${name}: created`, c.value);
    }
  }
  assert.ok(created >= 10, `only ${created} configs created`);
});

test('fuzz corpus replayed through WASM: model (config, NUL, safetensors)', async () => {
  let loaded = 0;
  for (const { name, bytes } of await seeds('model')) {
    const nul = bytes.indexOf(0);
    const config = nul < 0 ? bytes : bytes.subarray(0, nul);
    const safetensors = nul < 0 ? new Uint8Array(0) : bytes.subarray(nul + 1);
    const r = await clean(`model/${name}`, () => loadModel({ config, safetensors }));
    if (r.error) {
      assert.match(r.error.message, /config\.json|model\.safetensors/, `model/${name}: names no file`);
    } else {
      loaded++;
      await exercise(`model/${name}`, r.value);
    }
  }
  assert.ok(loaded >= 12, `only ${loaded} model seeds loaded`);
});

test('fuzz corpus replayed through WASM: wordpiece vocabularies', async () => {
  const golden = fileURLToPath(new URL('../golden/bert/', import.meta.url));
  const gconfig = JSON.parse(await readFile(join(golden, 'config.json'), 'utf8'));
  const safetensors = await readFile(join(golden, 'model.safetensors'));
  const text = '[CLS] Hello, World! café CAFÉ naïve 中文 ctrl [MASK] the unaffable [UNK]s ##ing 3.14 end[SEP]';
  for (const { name, bytes } of await seeds('wordpiece')) {
    const config = { ...gconfig, do_lower_case: !!(bytes[0] & 1) };
    const r = await clean(`wordpiece/${name}`, () => loadModel({ config, safetensors, vocab: bytes.subarray(1) }));
    if (!r.value) continue;
    const m = r.value;
    for (const t of [text, new TextDecoder().decode(bytes.subarray(1))]) {
      const tok = await clean(`wordpiece/${name}: tokenize`, () => m.tokenize(t));
      if (tok.value) await clean(`wordpiece/${name}: detokenize`, () => m.detokenize(tok.value.ids));
    }
    const bad = await clean(`wordpiece/${name}: bad id`, () => m.detokenize([0, 1 << 30]));
    assert.equal(bad.error?.code, 'QS_ERR_RANGE');
    await m.dispose();
  }
});

test('fuzz corpus replayed through WASM: byte tokenizer, resume states, quant settings', async () => {
  const m = await createModel(TINY_BERT, { seed: 1 });
  for (const { name, bytes } of await seeds('byte_tokenizer')) {
    const text = new TextDecoder().decode(bytes);
    const tok = await clean(`byte_tokenizer/${name}`, () => m.tokenize(text));
    const back = await clean(`byte_tokenizer/${name}: detokenize`, () => m.detokenize(tok.value.ids.slice(1, -1)));
    assert.equal(back.value, text, `byte_tokenizer/${name}: round trip`);
    const asIds = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + (bytes.length & ~3)));
    await clean(`byte_tokenizer/${name}: ids`, () => m.detokenize(asIds));
  }
  // The WASM API has no resume; its states still go through the safetensors reader.
  for (const { name, bytes } of await seeds('resume')) {
    const r = await clean(`resume/${name}`, async () => loadModel({ config: (await tiny()).config, safetensors: bytes }));
    if (r.value) await exercise(`resume/${name}`, r.value);
  }
  // fuzz_quant's layout: u8 wbits, u8 abits, u8 flags, u32 points, f32 percentile,
  // then NUL-terminated weight granularity, activation granularity, estimator, points.
  for (const { name, bytes } of await seeds('quant')) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const flags = bytes[2];
    const strs = [];
    let at = 11;
    for (let i = 0; i < 4; i++) {
      const end = bytes.indexOf(0, at);
      strs.push(new TextDecoder().decode(bytes.subarray(at, end < 0 ? bytes.length : end)));
      at = end < 0 ? bytes.length : end + 1;
    }
    const quant = {
      weightBits: dv.getInt8(0), actBits: dv.getInt8(1), weightSymmetric: !!(flags & 1),
      actSymmetric: !!(flags & 2), weightGranularity: strs[0], actGranularity: strs[1], estimator: strs[2],
      percentile: dv.getFloat32(7, true),
    };
    if (strs[3]) quant.points = strs[3].split(',');
    const ids = [4, 40, 80, 120, 160, 200];
    if (flags & 4) await clean(`quant/${name}: calibrate`, () => m.calibrate([ids], { quant }));
    const r = await clean(`quant/${name}: forward`, () => m.forward(ids, { quant }));
    if (r.error) assert.ok(['QS_ERR_RANGE', 'QS_ERR_ARG', 'QS_ERR_NAN'].includes(r.error.code), r.error.message);
  }
  const ok = await m.forward([4, 5, 6]);
  assert.equal(ok.shape[0], 3);
  await m.dispose();
});
