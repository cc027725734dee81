// tests/node/hardening.test.mjs: the WebAssembly module against the cases of
// issue "Hardening, round 2": sizes that wrapped its 32-bit size_t (and
// trapped), safetensors that break the format, config.json keys given twice
// (items 1-3); the native limits and messages (5); sources and ids (7);
// progress and cancellation (9). Item 4, options, is options.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { createModel, defaultQuant, loadModel, memoryBytes } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const QS = process.env.QS_BIN ?? fileURLToPath(new URL('../../build/native/qs', import.meta.url));

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

// ------------------------------------------------- item 5: native limits

/** A temporary model folder with these files; cleanup() removes it. */
async function folder(files) {
  const dir = await mkdtemp(join(tmpdir(), 'qs-hardening-'));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** What the native `qs` says loading dir (null without a native build). */
function nativeMessage(dir) {
  if (!existsSync(QS)) return null;
  const r = spawnSync(QS, ['stats', '--model', dir, '--ids', '2,15,77'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0, 'the native qs loaded it');
  return r.stderr;
}

/** The golden BERT config.json as text padded with spaces (still valid JSON) to n bytes. */
async function paddedConfig(n) {
  const text = await readFile(join(GOLDEN, 'bert/config.json'), 'utf8');
  return text + ' '.repeat(n - Buffer.byteLength(text));
}

test('a config.json over 1 MiB is refused as natively, with the same message, before it reaches the heap', async () => {
  // The issue's case: a 50 MB string in config.json loaded in JS (215 MB RSS), natively refused.
  const base = JSON.parse(await readFile(join(GOLDEN, 'bert/config.json'), 'utf8'));
  const huge = JSON.stringify({ ...base, note: 'a'.repeat(50e6) });
  const safetensors = await readFile(join(GOLDEN, 'bert/model.safetensors'));
  const { dir, cleanup } = await folder({ 'config.json': huge, 'model.safetensors': safetensors });
  try {
    const msg = `config.json: ${huge.length} bytes exceeds the limit of 1048576`;
    const heap = await memoryBytes();
    await rejectsWith(loadModel(dir), 'QS_ERR_NOMEM', new RegExp(`^${dir}/${msg}$`));
    await rejectsWith(loadModel(pathToFileURL(dir)), 'QS_ERR_NOMEM', new RegExp(`^${dir}/${msg}$`));
    await rejectsWith(loadModel({ config: huge, safetensors }), 'QS_ERR_NOMEM', new RegExp(`^${msg}$`));
    await rejectsWith(createModel(huge), 'QS_ERR_NOMEM', new RegExp(`^${msg}$`));
    await rejectsWith(createModel(Buffer.from(huge)), 'QS_ERR_NOMEM', new RegExp(`^${msg}$`));
    assert.equal(await memoryBytes(), heap, 'the refused file grew the WASM memory');
    const native = nativeMessage(dir);
    if (native !== null) assert.ok(native.includes(`${dir}/${msg}`), `native says: ${native}`);
  } finally {
    await cleanup();
  }
  // The same boundary as C: 1 MiB loads, one byte more does not.
  const m = await loadModel({ config: await paddedConfig(1 << 20), safetensors });
  await m.dispose();
  await rejectsWith(loadModel({ config: await paddedConfig((1 << 20) + 1), safetensors }), 'QS_ERR_NOMEM',
    /^config\.json: 1048577 bytes exceeds the limit of 1048576$/);
  await goldenStillWorks();
});

// ------------------------------------------------- item 7: sources and ids

/** A vocab.txt of n tokens with the specials BERT needs. */
const vocabOf = (n) => ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
  ...Array.from({ length: n - 5 }, (_, i) => `w${i}`)].join('\n') + '\n';

test('errors from a folder name it and the file: a vocab.txt larger than vocab_size names vocab.txt', async () => {
  const config = await readFile(join(GOLDEN, 'bert/config.json'));
  const safetensors = await readFile(join(GOLDEN, 'bert/model.safetensors'));
  const msg = "vocab.txt: 310 tokens, more than config.json's vocab_size 300";
  await rejectsWith(loadModel({ config, safetensors, vocab: vocabOf(310) }), 'QS_ERR_SHAPE', new RegExp(`^${msg}$`));
  const { dir, cleanup } = await folder({ 'config.json': config, 'model.safetensors': safetensors,
    'vocab.txt': vocabOf(310) });
  try {
    await rejectsWith(loadModel(dir), 'QS_ERR_SHAPE', new RegExp(`^${dir}/${msg}$`));
    await rejectsWith(loadModel(`${dir}/`), 'QS_ERR_SHAPE', new RegExp(`^${dir}/${msg}$`));
    const native = nativeMessage(dir);
    if (native !== null) assert.ok(native.includes(`${dir}/${msg}`), `native says: ${native}`);
    // A parse error in vocab.txt, and one in the weights, name the folder too.
    await writeFile(join(dir, 'vocab.txt'), Buffer.from('[UNK]\n\xff\n', 'latin1'));
    await rejectsWith(loadModel(dir), 'QS_ERR_FORMAT', new RegExp(`^${dir}/vocab\\.txt: line 2: invalid UTF-8`));
    await writeFile(join(dir, 'vocab.txt'), vocabOf(300));
    await writeFile(join(dir, 'model.safetensors'), safetensors.subarray(0, 5));
    await rejectsWith(loadModel(dir), 'QS_ERR_FORMAT', new RegExp(`^${dir}/model\\.safetensors: file is 5 bytes`));
    await writeFile(join(dir, 'model.safetensors'), safetensors);
    const m = await loadModel(dir);
    assert.equal((await m.specialTokens()).vocabSize, 300);
    await m.dispose();
  } finally {
    await cleanup();
  }
});

/** The golden BERT ids and token types, and its logits from an Int32Array. */
async function bertReference() {
  const expected = JSON.parse(await readFile(join(GOLDEN, 'bert/expected.json'), 'utf8'));
  const ids = Int32Array.from(expected.input_ids);
  const tokenTypes = Array.from(ids, (_, i) => (i < Math.floor(ids.length / 2) ? 0 : 1));
  return { ids, tokenTypes };
}

test('BigInt64Array ids (transformers.js) are accepted, and range-checked to int32', async () => {
  const { ids, tokenTypes } = await bertReference();
  const m = await loadModel(join(GOLDEN, 'bert'));
  const ref = await m.forward(ids, { tokenTypes });
  const big = BigInt64Array.from(ids, BigInt);
  assert.deepEqual((await m.forward(big, { tokenTypes })).logits, ref.logits);
  assert.deepEqual((await m.forward(BigUint64Array.from(ids, BigInt), { tokenTypes })).logits, ref.logits);
  assert.deepEqual((await m.forward(Array.from(big), { tokenTypes })).logits, ref.logits);
  const stream = BigInt64Array.from({ length: 200 }, (_, i) => BigInt(5 + (i * 37) % 290));
  const eo = { seqLen: 16, specials: { cls: 1, sep: 2, mask: 3 } };
  assert.deepEqual(await m.evaluate(stream, eo), await m.evaluate(Int32Array.from(stream, Number), eo));
  assert.equal((await m.calibrate([big, { ids: big, tokenTypes }])).batches, 2);
  const out = BigInt64Array.from([5n, 2n ** 31n]);
  await rejectsWith(m.forward(out), 'QS_ERR_RANGE', /^forward: ids\[1\] = 2147483648 is outside the 32-bit integer range$/);
  await rejectsWith(m.forward(BigInt64Array.from([-(2n ** 31n) - 1n])), 'QS_ERR_RANGE', /ids\[0\] = -2147483649 is outside/);
  await rejectsWith(m.evaluate(out), 'QS_ERR_RANGE', /^evaluate: ids\[1\] = 2147483648 is outside/);
  await rejectsWith(m.forward([5, 2 ** 40]), 'QS_ERR_RANGE', /ids\[1\] = 1099511627776 is outside/);
  // In int32 but not in the vocabulary: C's own check, as for numbers.
  await rejectsWith(m.forward(BigInt64Array.from([5n, 300n])), 'QS_ERR_RANGE', /token id 300 at position 1 is out of range \[0, 300\)/);
  assert.deepEqual((await m.forward(ids, { tokenTypes })).logits, ref.logits); // still usable
  await m.dispose();
});

test('Blob and SharedArrayBuffer contents load the same model; createModel takes a Blob', async () => {
  const { ids, tokenTypes } = await bertReference();
  const dir = join(GOLDEN, 'bert');
  const [config, safetensors] = await Promise.all([readFile(join(dir, 'config.json')), readFile(join(dir, 'model.safetensors'))]);
  const ref = await loadModel(dir);
  const want = (await ref.forward(ids, { tokenTypes })).logits;
  const shared = (buf) => {
    const sab = new SharedArrayBuffer(buf.length);
    new Uint8Array(sab).set(buf);
    return sab;
  };
  const sources = {
    blobs: { config: new Blob([config]), safetensors: new Blob([safetensors]), vocab: null },
    shared: { config: shared(config), safetensors: shared(safetensors) },
    sharedViews: { config: new Uint8Array(shared(config)), safetensors: new DataView(shared(safetensors)) },
    files: [new File([config], 'config.json'), new File([safetensors], 'model.safetensors')],
  };
  for (const [name, source] of Object.entries(sources)) {
    const m = await loadModel(source);
    assert.deepEqual((await m.forward(ids, { tokenTypes })).logits, want, name);
    await m.dispose();
  }
  const created = await createModel(new Blob([JSON.stringify({ model_type: 'opt', vocab_size: 260, hidden_size: 16,
    num_hidden_layers: 1, num_attention_heads: 2, ffn_dim: 32, max_position_embeddings: 32, tokenizer: 'byte' })]));
  assert.equal(created.config.arch, 'opt');
  await created.dispose();
  await rejectsWith(loadModel(new Blob([config])), 'QS_ERR_ARG', /^loadModel: one file is not a model/);
  await rejectsWith(loadModel({ config: new Blob([config]) }), 'QS_ERR_ARG', /^loadModel: the source has no safetensors$/);
  await rejectsWith(loadModel({ config, safetensors: 42 }), 'QS_ERR_ARG', /^loadModel: safetensors must be .*SharedArrayBuffer.*Blob$/);
  await ref.dispose();
});

test('a file: URL, as a string or a URL object, is a folder in Node', async () => {
  const dir = join(GOLDEN, 'bert');
  for (const source of [pathToFileURL(dir).href, pathToFileURL(dir), pathToFileURL(`${dir}/`).href]) {
    const m = await loadModel(source);
    assert.equal(m.config.vocabSize, 300, String(source));
    await m.dispose();
  }
  // A missing one names the path, as a missing folder path does (it was ENOENT on 'file:...').
  const missing = join(tmpdir(), 'qs-no-such-folder');
  await rejectsWith(loadModel(pathToFileURL(missing).href), 'QS_ERR_IO', new RegExp(`^${missing}/config\\.json: ENOENT`));
});

test('bogus array-likes are QS_ERR_ARG, not a bare RangeError', async () => {
  const m = await loadModel(join(GOLDEN, 'bert'));
  const bogus = [{ length: -1 }, { length: 1.5 }, { length: NaN }, { length: Infinity }, { length: 2 ** 40 }];
  for (const ids of bogus) {
    const len = String(ids.length);
    await rejectsWith(m.forward(ids), 'QS_ERR_ARG', new RegExp(`^forward: ids: length ${len} is not a valid array length`));
    await rejectsWith(m.detokenize(ids), 'QS_ERR_ARG', /^detokenize: ids: length .* is not a valid array length/);
    await rejectsWith(m.evaluate(ids), 'QS_ERR_ARG', /^evaluate: ids: length .* is not a valid array length/);
    await rejectsWith(m.forward([2, 3], { attentionMask: ids }), 'QS_ERR_ARG', /^forward: attentionMask: length .* is not a valid/);
    await rejectsWith(loadModel(ids), 'QS_ERR_ARG', /^loadModel: source: length .* is not a valid array length/);
  }
  // A huge claimed length is refused at its first bad entry, before anything the size of it is allocated.
  await rejectsWith(m.forward({ length: 2 ** 31 - 1 }), 'QS_ERR_ARG', /^forward: ids\[0\] = undefined is not a 32-bit integer$/);
  await rejectsWith(m.forward({ length: 2, 0: 5, 1: 'x' }), 'QS_ERR_ARG', /^forward: ids\[1\] = x is not a 32-bit integer$/);
  assert.equal((await m.forward({ length: 2, 0: 5, 1: 6 })).shape[0], 2); // a true array-like works
  await m.dispose();
});

// ------------------------------------------------- item 9: progress and cancellation

test('loadModel onProgress reports bytes read: folder, file: URL, Blob, HTTP with and without Content-Length', async () => {
  const dir = join(GOLDEN, 'bert');
  const [config, safetensors] = await Promise.all([readFile(join(dir, 'config.json')), readFile(join(dir, 'model.safetensors'))]);
  const size = config.length + safetensors.length;
  const check = (seen, total, what) => {
    assert.ok(seen.length >= 2, `${what}: ${seen.length} calls`);
    seen.forEach((p, i) => {
      assert.deepEqual(Object.keys(p), ['loaded', 'total'], what);
      if (i) assert.ok(p.loaded >= seen[i - 1].loaded, `${what}: loaded went back`);
    });
    assert.deepEqual(seen.at(-1), { loaded: size, total: size }, what);
    if (total !== undefined) assert.ok(seen.every((p) => p.total === total), `${what}: totals ${seen.map((p) => p.total)}`);
  };
  const load = async (source) => {
    const seen = [];
    const m = await loadModel(source, { onProgress: (p) => seen.push(p) });
    await m.dispose();
    return seen;
  };
  check(await load(dir), size, 'folder'); // sizes known before the first byte
  check(await load(pathToFileURL(dir)), size, 'file: URL');
  check(await load({ config: new Blob([config]), safetensors: new Blob([safetensors]) }), undefined, 'Blobs');
  check(await load({ config, safetensors }), undefined, 'bytes');

  // Over HTTP: with Content-Length the total is known; chunked, it is null until the end.
  const server = createServer((req, res) => {
    const [, kind, name, extra] = req.url.split('/');
    const chunked = kind === 'chunked';
    const body = extra === undefined ? { 'config.json': config, 'model.safetensors': safetensors }[name] : null;
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, chunked ? {} : { 'content-length': body.length });
    for (let i = 0; i < body.length; i += 50000) res.write(body.subarray(i, i + 50000));
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    check(await load(`${base}/plain/`), size, 'HTTP');
    const chunked = await load(`${base}/chunked/`);
    assert.ok(chunked.slice(0, -1).some((p) => p.total === null), 'chunked: total should be unknown first');
    check(chunked, undefined, 'HTTP chunked');
    // Errors over HTTP name the folder URL like a folder path.
    await rejectsWith(loadModel(`${base}/plain/sub`), 'QS_ERR_IO', new RegExp(`^${base}/plain/sub/config\\.json: HTTP 404$`));
  } finally {
    server.close();
  }
  await rejectsWith(loadModel(dir, { onProgress: 1 }), 'QS_ERR_ARG', /^loadModel: onProgress must be a function, got number$/);
});

/** A long BERT stream (about 40 windows of 16) and options that make it quantized too. */
const evalStream = BigInt64Array.from({ length: 14 * 40 }, (_, i) => BigInt(5 + (i * 37) % 290));
const sameBits = (a, b) => Object.keys(a).every((k) => Object.is(a[k], b[k]));

test('evaluate with a signal: aborted between windows, AbortError, and the model gives a fresh result after', async () => {
  const m = await loadModel(join(GOLDEN, 'bert'));
  // The golden BERT has no tokenizer: its windows take these ids as [CLS], [SEP], [MASK].
  const opts = { seqLen: 16, quant: await defaultQuant(), calibWindows: 3, specials: { cls: 1, sep: 2, mask: 3 } };
  const ref = await m.evaluate(evalStream, opts);
  assert.equal(ref.nWindows, 40);

  // In steps (a signal or onProgress) the result is the same, bit for bit.
  const steps = [];
  const stepped = await m.evaluate(evalStream, { ...opts, signal: new AbortController().signal, onProgress: (p) => steps.push(p) });
  assert.ok(sameBits(stepped, ref), JSON.stringify([stepped, ref]));
  assert.equal(steps.length, 40 + 3 + 40); // one window a step on one thread
  assert.deepEqual(steps.at(-1), { done: 83, total: 83 });

  // Aborted from the progress callback, inside the float pass, then inside the quantized pass.
  for (const stopAt of [5, 60]) {
    const ac = new AbortController();
    let last = 0;
    await assert.rejects(m.evaluate(evalStream, { ...opts, signal: ac.signal, onProgress: ({ done }) => {
      last = done;
      if (done === stopAt) ac.abort();
    } }), (e) => e instanceof DOMException && e.name === 'AbortError' && e.code === 20);
    assert.equal(last, stopAt, 'windows ran after the abort');
    assert.ok(sameBits(await m.evaluate(evalStream, opts), ref), `after an abort at ${stopAt}`);
  }

  // Aborted from a timer, as a caller does: the event loop runs between windows.
  const ac = new AbortController();
  let done = 0;
  const p = m.evaluate(evalStream, { ...opts, signal: ac.signal, onProgress: (s) => { done = s.done; } });
  setTimeout(() => ac.abort(), 1);
  await assert.rejects(p, { name: 'AbortError' });
  assert.ok(done >= 1 && done < 83, `stopped after ${done} of 83 windows`);

  // Already aborted: nothing runs. A reason given to abort() is what rejects.
  let called = false;
  await assert.rejects(m.evaluate(evalStream, { ...opts, signal: AbortSignal.abort(), onProgress: () => { called = true; } }),
    { name: 'AbortError' });
  assert.equal(called, false);
  const why = new Error('user left the page');
  await assert.rejects(m.evaluate(evalStream, { signal: AbortSignal.abort(why) }), (e) => e === why);
  await rejectsWith(m.evaluate(evalStream, { signal: {} }), 'QS_ERR_ARG', /^evaluate: signal must be an AbortSignal$/);

  // Calls queued behind an aborted one run, and the model gives what it gave.
  const ac2 = new AbortController();
  const aborted = m.evaluate(evalStream, { ...opts, signal: ac2.signal, onProgress: () => ac2.abort() });
  const next = m.evaluate(evalStream, opts);
  await assert.rejects(aborted, { name: 'AbortError' });
  assert.ok(sameBits(await next, ref));
  await m.dispose();
});

test('calibrate with a signal stops between batches and leaves no half-calibrated config', async () => {
  const { ids, tokenTypes } = await bertReference();
  const batches = Array.from({ length: 6 }, (_, k) => Int32Array.from(ids, (id, i) => (i % 5 === k % 5 ? 7 : id)));
  const quant = { actBits: 6 };
  const fresh = await loadModel(join(GOLDEN, 'bert'));
  await fresh.calibrate(batches, { quant });
  const want = (await fresh.forward(ids, { tokenTypes, quant })).logits;
  await fresh.dispose();

  const m = await loadModel(join(GOLDEN, 'bert'));
  const ac = new AbortController();
  const p = m.calibrate(batches, { quant, signal: ac.signal });
  setImmediate(() => ac.abort()); // after the first batch
  await assert.rejects(p, { name: 'AbortError' });
  // A quantized forward now installs the config afresh (dynamic ranges), not the partial ranges.
  const dynamic = await loadModel(join(GOLDEN, 'bert'));
  assert.deepEqual((await m.forward(ids, { tokenTypes, quant })).logits,
    (await dynamic.forward(ids, { tokenTypes, quant })).logits);
  await dynamic.dispose();
  assert.equal((await m.calibrate(batches, { quant, signal: new AbortController().signal })).batches, 6);
  assert.deepEqual((await m.forward(ids, { tokenTypes, quant })).logits, want);
  await m.dispose();
});

test('training steps take a signal: a loop stops between steps, and training goes on after', async () => {
  const model = await createModel({ model_type: 'opt', vocab_size: 260, hidden_size: 16, num_hidden_layers: 1,
    num_attention_heads: 2, ffn_dim: 32, max_position_embeddings: 32, tokenizer: 'byte' }, { seed: 3 });
  const text = 'and it came to pass that the people went up.\n'.repeat(1600);
  const trainer = await model.createTrainer(text, { batchSize: 2, seqLen: 16, steps: 10, valFraction: 0.25 });
  const ac = new AbortController();
  const losses = [];
  await assert.rejects((async () => {
    for (;;) {
      const log = await trainer.step({ signal: ac.signal });
      losses.push(log.loss);
      if (log.step === 3) ac.abort();
    }
  })(), { name: 'AbortError' });
  assert.equal(losses.length, 3);
  assert.equal(trainer.stepsDone, 3);
  await assert.rejects(trainer.evaluate({ batches: 1, signal: ac.signal }), { name: 'AbortError' });
  assert.equal((await trainer.step()).step, 4);
  assert.ok(Number.isFinite((await trainer.evaluate({ batches: 1 })).valLoss));
  await trainer.dispose();
  await model.dispose();
});
