// tests/node/load.test.mjs: the ES module under load: thousands of load/forward/
// dispose cycles without heap growth, and many async callers on several models.
//
// QS_LOAD_CYCLES sets the cycle count (default 10000, the figure: about 20 s
// on this 2-core machine under load; QS_LOAD_CYCLES=2000 for a quick run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setImmediate as tick } from 'node:timers/promises';

import { loadModel, memoryBytes } from '../../wasm/quantscope.mjs';

const GOLDEN = fileURLToPath(new URL('../golden/', import.meta.url));
const CYCLES = Number(process.env.QS_LOAD_CYCLES ?? 10000);
const WARMUP = 50;

async function golden(name) {
  const [config, safetensors, expected] = await Promise.all([
    readFile(`${GOLDEN}${name}/config.json`, 'utf8'),
    readFile(`${GOLDEN}${name}/model.safetensors`),
    readFile(`${GOLDEN}${name}/expected.json`, 'utf8').then(JSON.parse),
  ]);
  return { config, safetensors, ids: expected.input_ids };
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const gc = () => globalThis.gc?.(); // with node --expose-gc the JS figures are exact

/** Bitwise equality of two Float32Arrays (NaN-safe, -0 != 0). */
function sameBits(a, b) {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

test(`${CYCLES} load/forward/dispose cycles leave the WASM heap as it was`, async () => {
  const bert = await golden('bert');
  const half = Math.floor(bert.ids.length / 2);
  const tokenTypes = bert.ids.map((_, i) => (i < half ? 0 : 1));
  const source = { config: bert.config, safetensors: bert.safetensors };
  // One cycle: load from bytes, a forward (every 10th quantized, with a
  // capture, so the shadow weights, observers and capture buffers are made
  // and freed too), dispose.
  let first = null;
  const cycle = async (i) => {
    const model = await loadModel(source);
    const opts = i % 10 === 9
      ? { tokenTypes, quant: { weightBits: 4, actBits: 8 }, capture: ['probs', 'ffn_h'] }
      : { tokenTypes };
    const r = await model.forward(bert.ids, opts);
    if (i === 0) first = r.logits;
    else if (i % 10 !== 9 && i % 97 === 0) assert.ok(sameBits(r.logits, first), `cycle ${i} differs`);
    await model.dispose();
  };
  for (let i = 0; i < WARMUP; i++) await cycle(i);

  // Ballast: models kept alive so that little free room is left in the heap;
  // a leak then makes it grow after a few hundred cycles instead of never.
  // Loading until the heap grows once (Emscripten adds about 20 %), then
  // filling the new room but for about four models (a cycle's peak: the
  // file's copy, a model, its quantized shadow, captures).
  const size = bert.safetensors.length;
  const ballast = [];
  const m0 = await memoryBytes();
  while (ballast.length < 1000 && (await memoryBytes()) === m0) ballast.push(await loadModel(source));
  const m1 = await memoryBytes();
  for (let n = Math.floor((m1 - m0) / (1.05 * size)) - 4; n > 0; n--) ballast.push(await loadModel(source));
  for (let i = 0; i < 20; i++) await cycle(WARMUP + i); // settle the allocator around the ballast
  gc();
  const wasm0 = await memoryBytes(), js0 = process.memoryUsage();
  const t0 = performance.now();
  for (let i = WARMUP + 20; i < CYCLES; i++) await cycle(i);
  const seconds = (performance.now() - t0) / 1000;
  gc();
  const wasm1 = await memoryBytes(), js1 = process.memoryUsage();

  // The free room that was left: models that still fit before the heap grows.
  const kept = [];
  while (kept.length < 400 && (await memoryBytes()) === wasm1) kept.push(await loadModel(source));
  // the last one made it grow; each holds about its file's size (F32 weights)
  const fits = Math.max(kept.length - 1, 0), room = fits * size;
  await Promise.all([...kept, ...ballast].map((m) => m.dispose()));
  const measured = Math.max(CYCLES - WARMUP - 20, 1), perCycle = (room + size) / measured;

  console.log(`load test: ${CYCLES} cycles (${measured} measured after ${WARMUP + 20} warm-up), ` +
              `${(seconds * 1000 / measured).toFixed(2)} ms per cycle, ${seconds.toFixed(1)} s`);
  console.log(`  WASM memory ${mib(wasm0)} -> ${mib(wasm1)} with ${ballast.length} ballast models; free room ` +
              `left after the cycles under ${mib(room + size)} (${fits} more models fit), so a leak of ` +
              `${Math.ceil(perCycle)} bytes or more per cycle would have grown the heap`);
  console.log(`  JS heapUsed ${mib(js0.heapUsed)} -> ${mib(js1.heapUsed)}, external ${mib(js0.external)} -> ` +
              `${mib(js1.external)}, rss ${mib(js0.rss)} -> ${mib(js1.rss)}${globalThis.gc ? '' : ' (no --expose-gc: JS figures approximate)'}`);
  assert.equal(wasm1, wasm0, 'the WASM memory grew during the cycles');
  // The JS side holds copies only; with GC run it must not keep the cycles'
  // results (several MB each 1000 cycles if it did).
  if (globalThis.gc) assert.ok(js1.heapUsed - js0.heapUsed < 8 * 2 ** 20, 'JS heap grew');
});

test('concurrent forwards from several async callers on several models match serial calls', async () => {
  const [bert, opt] = await Promise.all([golden('bert'), golden('opt')]);
  const models = await Promise.all([
    loadModel({ config: bert.config, safetensors: bert.safetensors }),
    loadModel({ config: opt.config, safetensors: opt.safetensors }),
    loadModel({ config: opt.config, safetensors: opt.safetensors }),
  ]);
  const idsOf = (k) => (k === 0 ? bert.ids : opt.ids);
  // Each caller makes its own sequence of calls; several callers share a model.
  const plan = (caller) => Array.from({ length: 6 }, (_, j) => {
    const k = (caller + j) % 3, ids = idsOf(k);
    switch ((caller * 7 + j) % 5) {
      case 0: return [k, ids, {}];
      case 1: return [k, ids.slice(0, 5), { capture: ['v'] }];
      case 2: return [k, ids, { quant: { weightBits: 4, actBits: 4 } }];
      case 3: return [k, ids, { quant: { weightBits: 8, actBits: 8, actGranularity: 'token' } }];
      default: return [k, [...ids].reverse(), { quant: { actBits: 6, estimator: 'minmax' } }];
    }
  });
  const callers = Array.from({ length: 8 }, (_, c) => plan(c));
  const run = ([k, ids, opts]) => models[k].forward(ids, opts);

  const serial = [];
  for (const calls of callers) {
    const out = [];
    for (const call of calls) out.push(await run(call));
    serial.push(out);
  }
  // All callers at once, each yielding to the event loop between its calls,
  // while a fourth model is loaded, used and disposed in the middle.
  const extra = (async () => {
    await tick();
    const m = await loadModel({ config: opt.config, safetensors: opt.safetensors });
    const r = await m.forward(opt.ids);
    await m.dispose();
    return r;
  })();
  const concurrent = await Promise.all(callers.map(async (calls) => {
    const out = [];
    for (const call of calls) {
      out.push(await run(call));
      await tick();
    }
    return out;
  }));
  // Every call issued at once, without awaiting in between.
  const burst = await Promise.all(callers.flat().map(run));
  const extraResult = await extra;

  let n = 0;
  for (let c = 0; c < callers.length; c++) {
    for (let j = 0; j < callers[c].length; j++, n++) {
      assert.ok(sameBits(concurrent[c][j].logits, serial[c][j].logits), `caller ${c} call ${j}`);
      assert.ok(sameBits(burst[n].logits, serial[c][j].logits), `burst call ${n}`);
      assert.deepEqual(concurrent[c][j].points, serial[c][j].points);
    }
  }
  assert.ok(sameBits(extraResult.logits, (await models[1].forward(opt.ids)).logits), 'model loaded meanwhile');
  console.log(`concurrency: ${n} calls from ${callers.length} callers on ${models.length} models ` +
              'match serial calls bit for bit (interleaved and all at once)');
  await Promise.all(models.map((m) => m.dispose()));
});
