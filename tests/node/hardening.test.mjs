// tests/node/hardening.test.mjs: the WebAssembly module against the cases of
// issue "Hardening, round 2" items 1-3: sizes that wrapped its 32-bit size_t
// (and trapped), safetensors that break the format, config.json keys given twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));

/** Asserts a rejection with this code and a message matching re. */
async function rejectsWith(promise, codes, re) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Error, 'not an Error');
    assert.ok([].concat(codes).includes(e.code), `code ${e.code} of: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

const ramp = (n) => Int32Array.from({ length: n }, (_, i) => 4 + (i % 256));

/** The golden BERT answers as before: the instance was not corrupted. */
async function goldenStillWorks() {
  const expected = JSON.parse(await readFile(join(GOLDEN, 'bert/expected.json'), 'utf8'));
  const m = await loadModel(join(GOLDEN, 'bert'));
  const ids = expected.input_ids;
  const r = await m.forward(ids, { tokenTypes: ids.map((_, i) => (i < Math.floor(ids.length / 2) ? 0 : 1)) });
  let err = 0;
  for (let i = 0; i < r.logits.length; i++) err = Math.max(err, Math.abs(r.logits[i] - expected.logits[i]));
  assert.ok(err < 1e-4, `golden logits off by ${err}`);
  await m.dispose();
}

// ------------------------------------------------- item 1: 32-bit sizes

test('16 heads at 8192 tokens: QS_ERR_NOMEM naming the scores, no trap, model usable', async () => {
  // The issue's 2.2 MB model: 16 x 8192 x 8192 x 4 bytes is 2^32, which
  // wrapped to 0 and trapped ("memory access out of bounds") in forward/evaluate.
  const m = await createModel({
    model_type: 'bert', vocab_size: 260, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 16,
    intermediate_size: 64, max_position_embeddings: 8192, tokenizer: 'byte',
  });
  const msg = 'forward: attention scores need 16 x 8192 x 8192 floats (heads x tokens x tokens), '
    + "more than this build's 32-bit address space";
  const ids = ramp(8192);
  await rejectsWith(m.forward(ids), 'QS_ERR_NOMEM', new RegExp(`^${msg.replace(/[()]/g, '\\$&')}$`));
  await rejectsWith(m.forward(ids, { capture: ['scores'], quant: {} }), 'QS_ERR_NOMEM', /16 x 8192 x 8192 floats/);
  await rejectsWith(m.evaluate(ids, { seqLen: 8192 }), 'QS_ERR_NOMEM', /attention scores need 16 x 8192 x 8192/);
  const ok = await m.forward(ids.subarray(0, 64), { capture: ['scores'] });
  assert.equal(ok.shape[0], 64);
  assert.equal(ok.captures.scores[0].length, 16 * 64 * 64);
  await m.dispose();
  await goldenStillWorks();
});

test('createModel with hidden 65536 and ffn 32768: the true parameter count, refused', async () => {
  // The count wrapped to 877,068,288 in 32 bits, the allocation succeeded, then it trapped.
  const cfg = {
    model_type: 'bert', vocab_size: 260, hidden_size: 65536, num_hidden_layers: 2, num_attention_heads: 16,
    intermediate_size: 32768, max_position_embeddings: 512, tokenizer: 'byte',
  };
  await rejectsWith(createModel(cfg), ['QS_ERR_NOMEM', 'QS_ERR_RANGE'],
    /^config: the parameters need 47296938244 floats \(189\.2 GB\), more than this build's 32-bit address space$/);
  // Loading it against a small file names the same count (64-bit on every build).
  const tiny = await createModel({ ...cfg, hidden_size: 8, num_attention_heads: 2, intermediate_size: 16 });
  const { safetensors } = await tiny.toFiles();
  await rejectsWith(loadModel({ config: cfg, safetensors }), 'QS_ERR_SHAPE',
    /config\.json describes 47296938244 parameters \(at least 94593876488 bytes\)/);
  // The module keeps working for other models.
  const r = await tiny.forward([4, 5, 6, 7]);
  assert.equal(r.shape[0], 4);
  await tiny.dispose();
  await goldenStillWorks();
});

// ------------------------------------------------- item 2: safetensors format

/** The golden BERT file with its header edited by fn (offsets kept as given). */
async function editedGolden(fn) {
  const buf = await readFile(join(GOLDEN, 'bert/model.safetensors'));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = fn(header) ?? header;
  const h = Buffer.from(JSON.stringify(out));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, buf.subarray(8 + n)]);
}

test('safetensors: tensors on the same or shifted bytes, holes, trailing bytes are refused', async () => {
  const config = await readFile(join(GOLDEN, 'bert/config.json'));
  const q = 'bert.encoder.layer.0.attention.self.query.weight', k = 'bert.encoder.layer.0.attention.self.key.weight';
  let qOff;
  const same = await editedGolden((h) => { qOff = h[q].data_offsets; h[k].data_offsets = [...qOff]; });
  await rejectsWith(loadModel({ config, safetensors: same }), 'QS_ERR_FORMAT', new RegExp(
    `^model\\.safetensors: tensors '${k}' \\(bytes \\[${qOff[0]}, ${qOff[1]}\\)\\) and '${q}' `
    + `\\(bytes \\[${qOff[0]}, ${qOff[1]}\\)\\) overlap in the data section`));
  const shifted = await editedGolden((h) => {
    const o = h['bert.embeddings.LayerNorm.weight'].data_offsets;
    h['bert.embeddings.LayerNorm.weight'].data_offsets = [o[0] - 4, o[1] - 4];
  });
  await rejectsWith(loadModel({ config, safetensors: shifted }), 'QS_ERR_FORMAT',
    /tensors 'bert\.embeddings\.LayerNorm\.bias' \(bytes \[0, 256\)\) and 'bert\.embeddings\.LayerNorm\.weight' \(bytes \[252, 508\)\) overlap/);
  const whole = await editedGolden(() => {});
  const trailing = Buffer.concat([whole, Buffer.alloc(4)]);
  await rejectsWith(loadModel({ config, safetensors: trailing }), 'QS_ERR_FORMAT',
    /after the last tensor '.*', belong to no tensor \(the format allows no trailing bytes\)/);
  // The unedited file still loads.
  const m = await loadModel({ config, safetensors: whole });
  await m.dispose();
});

test('safetensors: a tensor name given twice is refused, naming it', async () => {
  const config = await readFile(join(GOLDEN, 'bert/config.json'));
  const buf = await readFile(join(GOLDEN, 'bert/model.safetensors'));
  // Same-length rename inside the header: the offsets stay valid.
  const text = buf.toString('latin1').replace('bert.encoder.layer.1.output.dense.weight',
    'bert.encoder.layer.0.output.dense.weight');
  await rejectsWith(loadModel({ config, safetensors: Buffer.from(text, 'latin1') }), 'QS_ERR_FORMAT',
    /^model\.safetensors: duplicate tensor 'bert\.encoder\.layer\.0\.output\.dense\.weight' \(JSON readers disagree/);
});

// ------------------------------------------------- item 3: config.json keys

test('config.json with a key twice is refused, naming the key', async () => {
  const dir = join(GOLDEN, 'bert');
  const text = (await readFile(join(dir, 'config.json'), 'utf8')).replace(/\}\s*$/, ',\n  "hidden_size": 32\n}\n');
  const safetensors = await readFile(join(dir, 'model.safetensors'));
  await rejectsWith(loadModel({ config: text, safetensors }), 'QS_ERR_FORMAT',
    /^config\.json: duplicate key 'hidden_size' \(JSON readers disagree on which value counts: Python's json keeps the last\)$/);
  await rejectsWith(createModel('{"model_type": "opt", "vocab_size": 50, "vocab_size": 60}'), 'QS_ERR_FORMAT',
    /duplicate key 'vocab_size'/);
  await rejectsWith(createModel('{"model_type": "bert", "id2label": {"0": "A", "0": "B"}}'), 'QS_ERR_FORMAT',
    /duplicate key '0' inside 'id2label'/);
  await goldenStillWorks();
});
