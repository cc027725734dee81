// tests/node/trap.test.mjs: a WebAssembly trap that escapes the C checks
// becomes an Error with code QS_ERR_TRAP; the shared instance is dropped, its
// models reject with a clear message, and fresh loads work in a new instance.
// The trap is provoked through the test-only export qsw_test_trap. Its own
// file: node --test runs each file in its own process, so the dropped
// instance never touches the other suites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createModel, loadModel, memoryBytes } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const RESTARTED = 'quantscope: the WASM instance was restarted after a trap; load the model again';
const BYTE = {
  model_type: 'opt', vocab_size: 260, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
  ffn_dim: 32, max_position_embeddings: 32, tokenizer: 'byte',
};

async function rejectsTrap(promise, re) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'QS_ERR_TRAP', e.message);
    assert.match(e.message, re);
    return true;
  });
}

for (const [kind, what, re] of [[1, 'a store past the end of memory', /memory access out of bounds/],
  [0, 'unreachable', /unreachable/]]) {
  test(`a trap (${what}) is QS_ERR_TRAP; the instance is replaced and its models refuse`, async () => {
    const a = await loadModel(join(GOLDEN, 'opt'));
    const b = await createModel(BYTE, { seed: 3 });
    const trainer = await b.createTrainer('In the beginning God created the heaven and the earth. '.repeat(20),
      { batchSize: 2, seqLen: 16, steps: 4, valFraction: 0 });
    const before = await a.forward([2, 15, 77, 120]);
    const bBefore = await b.forward([4, 5, 6]);

    // Queued behind the trap, calls of the same model reject too.
    const trapped = a._trapForTest(kind);
    const queued = a.forward([2, 15, 77, 120]);
    await assert.rejects(trapped, (e) => {
      assert.equal(e.code, 'QS_ERR_TRAP');
      assert.match(e.message, /^quantscope: the WebAssembly instance trapped \(/);
      assert.match(e.message, re);
      assert.match(e.message, /models loaded before must be loaded again$/);
      assert.ok(e.cause instanceof WebAssembly.RuntimeError, 'cause is the RuntimeError');
      return true;
    });
    await rejectsTrap(queued, new RegExp(`^${RESTARTED}$`));
    // Every model and trainer of the dropped instance refuses, with the message.
    await rejectsTrap(b.forward([4, 5, 6]), new RegExp(`^${RESTARTED}$`));
    await rejectsTrap(b.tokenize('abc'), /restarted after a trap/);
    await rejectsTrap(trainer.step(), /restarted after a trap/);
    // dispose() frees nothing in the dead instance and resolves.
    await trainer.dispose();
    await a.dispose();
    await b.dispose();
    assert.ok(a.disposed && b.disposed);

    // A fresh instance: the same results as before the trap, fresh memory.
    const a2 = await loadModel(join(GOLDEN, 'opt'));
    const after = await a2.forward([2, 15, 77, 120]);
    assert.deepEqual(after.logits, before.logits);
    const b2 = await createModel(BYTE, { seed: 3 });
    assert.deepEqual((await b2.forward([4, 5, 6])).logits, bBefore.logits);
    assert.ok((await memoryBytes()) > 0);
    await a2.dispose();
    await b2.dispose();
  });
}

test('an ordinary C error is not a trap: the instance and other models stay', async () => {
  const a = await createModel(BYTE, { seed: 1 });
  const b = await createModel(BYTE, { seed: 2 });
  await assert.rejects(a.forward([4, 999]), (e) => e.code === 'QS_ERR_RANGE');
  await assert.rejects(a.forward(Array(33).fill(4)), (e) => e.code === 'QS_ERR_RANGE');
  const r = await b.forward([4, 5]);
  assert.equal(r.shape[0], 2);
  assert.equal((await a.forward([4, 5])).shape[0], 2);
  await a.dispose();
  await b.dispose();
});
