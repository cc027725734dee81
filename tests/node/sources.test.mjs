// tests/node/sources.test.mjs: which files the module takes from a list
// (pickModelFiles, as loadModel(list) and the page's import do), and C's size
// limits checked before a File is read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, pickModelFiles } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));

test('pickModelFiles: config.json, model.safetensors before any other *.safetensors, vocab.txt; null where absent', () => {
  const file = (name) => new File(['x'], name);
  const [config, other, st, vocab, notes] = ['config.json', 'a.safetensors', 'model.safetensors', 'vocab.txt',
    'notes.txt'].map(file);
  const all = pickModelFiles([notes, other, vocab, st, config]);
  assert.equal(all.config, config);
  assert.equal(all.safetensors, st);
  assert.equal(all.vocab, vocab);
  assert.equal(pickModelFiles([other, config]).safetensors, other, 'the one *.safetensors');
  assert.deepEqual(pickModelFiles([notes]), { config: null, safetensors: null, vocab: null });
  assert.deepEqual(pickModelFiles([]), { config: null, safetensors: null, vocab: null });
  assert.throws(() => pickModelFiles(null), (e) => e.code === 'QS_ERR_ARG'
    && e.message === 'pickModelFiles: files must be an array of files');
});

test('a File over C\'s limit is refused with the native message before it is read', async () => {
  const safetensors = await readFile(join(GOLDEN, 'bert/model.safetensors'));
  let reads = 0;
  // A NamedBlob whose contents must never be asked for.
  const unread = (name, size) => ({ name, size, arrayBuffer: async () => { reads++; return new ArrayBuffer(size); } });
  await assert.rejects(loadModel([unread('config.json', (1 << 20) + 1), new File([safetensors], 'model.safetensors')]),
    (e) => e.code === 'QS_ERR_NOMEM' && e.message === 'config.json: 1048577 bytes exceeds the limit of 1048576');
  assert.equal(reads, 0, 'a file was read before its size was checked');
  // Without a size (a NamedBlob may have none) it is read, then checked.
  const config = await readFile(join(GOLDEN, 'bert/config.json'));
  const sizeless = { name: 'config.json', arrayBuffer: async () => config.buffer.slice(config.byteOffset,
    config.byteOffset + config.length) };
  const m = await loadModel([sizeless, new File([safetensors], 'model.safetensors')]);
  assert.equal(m.config.arch, 'bert');
  await m.dispose();
});
