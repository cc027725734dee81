// tests/node/threads.test.mjs: thread options of the ES module in Node, where the
// single-threaded build runs: configure() checks, the pthreads build refused with
// a clear message, per-call threads bounded by the build. The pthreads build
// itself is tested in Chromium (tests/browser/threads.test.mjs). The tests run
// in order: the module's core starts once per process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { configure, runtimeInfo, defaultTrain, loadModel } from '../../wasm/quantscope.mjs';

const OPT = fileURLToPath(new URL('../golden/opt/', import.meta.url));

test('configure rejects thread counts outside [1, 16]', () => {
  for (const bad of [0, -1, 1.5, 17, '2']) {
    assert.throws(() => configure({ threads: bad }), (e) => e.code === 'QS_ERR_ARG'
      && /configure: threads must be an integer in \[1, 16\]/.test(e.message), String(bad));
  }
});

test('threads > 1 in Node: a clear error, and the single-threaded build still starts', async () => {
  configure({ threads: 2 });
  await assert.rejects(runtimeInfo(), (e) => e.code === 'QS_ERR_ARG' && /runs in browsers only/.test(e.message));
  configure({ threads: 1 }); // the failed start left nothing behind
  assert.deepEqual(await runtimeInfo(), { threads: 1, pool: 1, relaxedSimd: false });
  assert.equal((await defaultTrain()).threads, 1);
  assert.throws(() => configure({ threads: 2 }), /already started with 1 thread/);
  configure({ threads: 1 }); // the same setting again is fine
});

test('per-call threads: at most what configure() set', async () => {
  const m = await loadModel(OPT);
  const ids = Array.from({ length: 200 }, (_, i) => 4 + (i * 13) % 250);
  const r = await m.evaluate(ids, { seqLen: 32, threads: 1 });
  assert.ok(Number.isFinite(r.fpPpl));
  await assert.rejects(m.evaluate(ids, { seqLen: 32, threads: 2 }),
    /evaluate: threads must be in \[1, 1\] \(configure\(\{ threads \}\) sets the most\), got 2/);
  await assert.rejects(m.createTrainer('abc', { threads: 0 }), /createTrainer: threads must be in \[1, 1\]/);
  await m.dispose();
});
