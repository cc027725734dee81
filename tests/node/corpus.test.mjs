// tests/node/corpus.test.mjs: every fuzz seed (tests/fuzz/corpus/<target>/*)
// replayed through the WebAssembly module. The fuzzers run natively, where
// size_t has 64 bits; WebAssembly's has 32, so a size that wraps only there
// (issue "Hardening, round 2") shows up here as a trap. The drivers and their
// checks are tests/fuzz/wasm/targets.mjs (also behind the long mutation run,
// tests/fuzz/wasm/fuzz.mjs): every failure must be an Error with a C status
// code, never a trap.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { targets, pairedCorpus, tally, disposeTargets } from '../fuzz/wasm/targets.mjs';

const CORPUS = fileURLToPath(new URL('../fuzz/corpus/', import.meta.url));

async function seeds(target) {
  const dir = join(CORPUS, target);
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(dir, name)) })));
}

process.on('exit', () => {
  console.log(`# corpus replay: ${tally.calls} calls, rejected: ${JSON.stringify(tally.errors)}, no trap`);
});
after(disposeTargets);

// At least this many seeds of a target must load (or, for config, create a
// model): the seeds are there to reach past the parsers.
const MIN_OK = { safetensors: ['loaded', 12], config: ['created', 10], model: ['loaded', 12] };

for (const target of Object.keys(targets)) {
  test(`fuzz corpus replayed through WASM: ${target}`, async () => {
    const pairs = pairedCorpus[target]
      ? new Map((await seeds(pairedCorpus[target])).map((s) => [s.name, s.bytes])) : new Map();
    let ok = 0;
    for (const { name, bytes } of await seeds(target)) {
      let r;
      try {
        r = await targets[target](bytes, pairs.get(name));
      } catch (e) {
        e.message = `${target}/${name}: ${e.message}`;
        throw e;
      }
      if (MIN_OK[target] && r[MIN_OK[target][0]]) ok++;
    }
    if (MIN_OK[target]) assert.ok(ok >= MIN_OK[target][1], `only ${ok} ${target} seeds ${MIN_OK[target][0]}`);
  });
}
