// tests/fuzz/wasm/targets.mjs: the fuzz targets of tests/fuzz/fuzz_<target>.c
// as drivers of the WebAssembly module: each feeds one input to the
// JavaScript API the way the C target feeds the library, and checks what the
// C target checks. The rule: every failure is an Error with a C status code,
// never a trap (which quantscope.mjs reports as QS_ERR_TRAP) or a bare
// exception. tests/node/corpus.test.mjs replays the committed seeds through
// these; tests/fuzz/wasm/fuzz.mjs mutates them for the long run.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel } from '../../../wasm/quantscope.mjs';

export const C_CODES = new Set(['QS_ERR_ARG', 'QS_ERR_IO', 'QS_ERR_FORMAT', 'QS_ERR_CONFIG', 'QS_ERR_SHAPE',
  'QS_ERR_RANGE', 'QS_ERR_NAN', 'QS_ERR_NOMEM']);

// fuzz_common.h's FUZZ_TINY_BERT: the model the tokenizer, quant and resume targets use.
export const TINY_BERT = {
  model_type: 'bert', vocab_size: 260, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 16, max_position_embeddings: 16, tokenizer: 'byte',
};

/** Calls made and rejections by code, for the run's summary line. */
export const tally = { calls: 0, errors: {} };

/** Runs fn; a rejection must be a C status, never a trap. Returns what fn gave, or the error. */
export async function clean(what, fn) {
  tally.calls++;
  try {
    return { value: await fn() };
  } catch (e) {
    tally.errors[e?.code] = (tally.errors[e?.code] ?? 0) + 1;
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
/** config.json and model.safetensors of the tiny model (made once). */
export async function tiny() {
  if (!tinyFiles) {
    const m = await createModel(TINY_BERT, { seed: 1 });
    tinyFiles = await m.toFiles();
    await m.dispose();
  }
  return tinyFiles;
}

let tinyModel;
async function tinyLoaded() {
  tinyModel ??= await createModel(TINY_BERT, { seed: 1 });
  return tinyModel;
}

let goldenBert;
async function golden() {
  if (!goldenBert) {
    const dir = fileURLToPath(new URL('../../golden/bert/', import.meta.url));
    goldenBert = { config: JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')),
      safetensors: await readFile(join(dir, 'model.safetensors')) };
  }
  return goldenBert;
}

const WORDPIECE_TEXT = '[CLS] Hello, World! café CAFÉ naïve 中文 ctrl [MASK] the unaffable [UNK]s ##ing 3.14 end[SEP]';

/**
 * The targets. Each run(bytes, pair) takes one input (pair: the input of the
 * same name in the paired corpus, when the seed was made with one, e.g. a
 * safetensors seed and its config) and returns what happened ({loaded} or
 * {created}) for the replay's counts. A failed check throws.
 */
export const targets = {
  async safetensors(bytes, pair) {
    const config = pair ?? (await tiny()).config;
    const r = await clean('safetensors', () => loadModel({ config, safetensors: bytes }));
    if (r.value) await exercise('safetensors', r.value);
    return { loaded: !!r.value };
  },

  async config(bytes, pair) {
    const safetensors = pair ?? (await tiny()).safetensors;
    const r = await clean('config', () => loadModel({ config: bytes, safetensors }));
    if (r.value) await exercise('config', r.value);
    let j = null;
    try { j = JSON.parse(new TextDecoder().decode(bytes)); } catch { /* C reports it */ }
    // Big configs must be refused by size (QS_ERR_NOMEM) or by the file check,
    // never wrap; creating one that fits is left to the small ones.
    if (j && typeof j === 'object' && paramEstimate(j) > 1 << 18) {
      const big = await clean('config: loadModel (big)', () => loadModel({ config: bytes, safetensors }));
      assert.ok(big.error, 'config: a big config loaded from a tiny file');
      return { created: false };
    }
    const c = await clean('config: createModel', () => createModel(bytes, { seed: 7 }));
    if (c.value) await exercise('config: created', c.value);
    return { created: !!c.value };
  },

  // fuzz_model's layout: config, a NUL, safetensors.
  async model(bytes) {
    const nul = bytes.indexOf(0);
    const config = nul < 0 ? bytes : bytes.subarray(0, nul);
    const safetensors = nul < 0 ? new Uint8Array(0) : bytes.subarray(nul + 1);
    const r = await clean('model', () => loadModel({ config, safetensors }));
    if (r.error) assert.match(r.error.message, /config\.json|model\.safetensors/, 'model: the message names no file');
    else await exercise('model', r.value);
    return { loaded: !!r.value };
  },

  // fuzz_wordpiece's layout: a flag byte (bit 0: lower case), then vocab.txt.
  async wordpiece(bytes) {
    const { config: gconfig, safetensors } = await golden();
    const config = { ...gconfig, do_lower_case: !!(bytes[0] & 1) };
    const r = await clean('wordpiece', () => loadModel({ config, safetensors, vocab: bytes.subarray(1) }));
    if (!r.value) return { loaded: false };
    const m = r.value;
    for (const t of [WORDPIECE_TEXT, new TextDecoder().decode(bytes.subarray(1))]) {
      const tok = await clean('wordpiece: tokenize', () => m.tokenize(t));
      if (tok.value) await clean('wordpiece: detokenize', () => m.detokenize(tok.value.ids));
    }
    const bad = await clean('wordpiece: bad id', () => m.detokenize([0, 1 << 30]));
    assert.equal(bad.error?.code, 'QS_ERR_RANGE');
    await m.dispose();
    return { loaded: true };
  },

  async byte_tokenizer(bytes) {
    const m = await tinyLoaded();
    const text = new TextDecoder().decode(bytes);
    const tok = await clean('byte_tokenizer', () => m.tokenize(text));
    if (tok.value) {
      const back = await clean('byte_tokenizer: detokenize', () => m.detokenize(tok.value.ids.slice(1, -1)));
      assert.equal(back.value, text, 'byte_tokenizer: round trip');
    }
    const asIds = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + (bytes.length & ~3)));
    await clean('byte_tokenizer: ids', () => m.detokenize(asIds));
    return {};
  },

  // The WASM API has no resume; its states still go through the safetensors reader.
  async resume(bytes) {
    const r = await clean('resume', async () => loadModel({ config: (await tiny()).config, safetensors: bytes }));
    if (r.value) await exercise('resume', r.value);
    return { loaded: !!r.value };
  },

  // fuzz_quant's layout: u8 wbits, u8 abits, u8 flags, u32 points, f32 percentile,
  // then NUL-terminated weight granularity, activation granularity, estimator, points.
  async quant(bytes) {
    const m = await tinyLoaded();
    if (bytes.length < 11) return {};
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
    if (flags & 4) await clean('quant: calibrate', () => m.calibrate([ids], { quant }));
    const r = await clean('quant: forward', () => m.forward(ids, { quant }));
    if (r.error) assert.ok(['QS_ERR_RANGE', 'QS_ERR_ARG', 'QS_ERR_NAN'].includes(r.error.code), r.error.message);
    // The shared model must stay usable whatever the input did.
    const ok = await m.forward([4, 5, 6]);
    assert.equal(ok.shape[0], 3);
    return {};
  },
};

/** Which corpus a target's seeds pair with (a seed of the same name there). */
export const pairedCorpus = { safetensors: 'config', config: 'safetensors' };

/** Releases what the targets keep between inputs. */
export async function disposeTargets() {
  if (tinyModel) await tinyModel.dispose();
  tinyModel = undefined;
}
