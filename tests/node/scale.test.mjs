// tests/node/scale.test.mjs: the checkpoints people bring, at their real shapes:
// random BERT-base (bert-base-uncased names, post-LN, 110M parameters) and
// OPT-125m (pre-LN, 125M) in F32 and F16 safetensors, made here
// (bigmodels.mjs, seeded; nothing downloaded), each loaded through loadModel
// and run on 128 tokens with statistics, and loaded by the native qs too.
// Loading streams (qs_model_loader): the WASM memory after a load holds the
// parameters once, not the file beside them.
//
// The four checkpoints (1.4 GB) go to a fresh temporary folder, removed at
// the end; QS_SCALE_DIR=DIR makes them there once and keeps them (the benches
// take those folders: node bench/wasm/bench.mjs scale DIR/bert-F32).
// Lines starting with '#' report the timings and memory seen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, memoryUsage } from '../../wasm/quantscope.mjs';
import { SHAPES, writeCheckpoints } from './bigmodels.mjs';

const QS = process.env.QS_BIN ?? fileURLToPath(new URL('../../build/native/qs', import.meta.url));
const MiB = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const secs = (ms) => `${(ms / 1e3).toFixed(2)} s`;
const cpuMs = (c) => (c.user + c.system) / 1e3;
const peakRss = () => process.resourceUsage().maxRSS * 1024;

/** Ids in [1000, vocab): past BERT's specials and unused rows. */
function spreadIds(n, vocab) {
  let s = 7;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1000 + (s % (vocab - 1000));
  });
}

const keep = process.env.QS_SCALE_DIR;
let root;

test('random BERT-base and OPT-125m checkpoints, F32 and F16: load, 128 tokens with statistics, native qs', async (t) => {
  const t0 = performance.now();
  root = keep ?? await mkdtemp(join(tmpdir(), 'quantscope-scale-'));
  try {
    const gen = performance.now(), genCpu = process.cpuUsage();
    for (const arch of ['bert', 'opt']) {
      const dirs = { F32: join(root, `${arch}-F32`), F16: join(root, `${arch}-F16`) };
      if (keep && Object.values(dirs).every((d) => existsSync(join(d, 'model.safetensors')))) continue;
      writeCheckpoints(arch, dirs, { seed: 1 });
    }
    console.log(`# made the checkpoints in ${root}: ${secs(performance.now() - gen)} `
      + `(${secs(cpuMs(process.cpuUsage(genCpu)))} CPU)`);

    for (const arch of ['bert', 'opt']) {
      const s = SHAPES[arch];
      for (const dtype of ['F32', 'F16']) {
        await t.test(`${arch} ${dtype}`, async () => {
          const dir = join(root, `${arch}-${dtype}`);
          const fileBytes = statSync(join(dir, 'model.safetensors')).size;
          globalThis.gc?.();
          const before = await memoryUsage();
          const l0 = performance.now(), lc = process.cpuUsage();
          const model = await loadModel(dir);
          const loadMs = performance.now() - l0, loadCpu = cpuMs(process.cpuUsage(lc));
          const after = await memoryUsage();
          const rss = process.memoryUsage().rss;
          try {
            const c = model.config;
            assert.equal(c.arch, arch);
            assert.deepEqual([c.nLayers, c.hiddenSize, c.nHeads, c.intermediateSize, c.maxPositions, c.vocabSize],
              [s.layers, s.hidden, s.heads, s.ffn, s.positions, s.vocab]);
            // The parameters once, as float32, in the heap; no copy of the file
            // beside them (a whole F32 file would double it).
            const paramBytes = 4 * c.nParams;
            assert.ok(after.usedBytes < 1.05 * paramBytes + 16 * 2 ** 20,
              `malloc'd ${MiB(after.usedBytes)} after loading ${MiB(paramBytes)} of parameters`);
            assert.ok(after.heapBytes - before.heapBytes < 1.1 * paramBytes + 64 * 2 ** 20,
              `WASM memory grew by ${MiB(after.heapBytes - before.heapBytes)} for ${MiB(paramBytes)} of parameters`);

            const T = 128;
            const ids = spreadIds(T, c.vocabSize);
            const f0 = performance.now(), fc = process.cpuUsage();
            const r = await model.forward(ids);
            const fwdMs = performance.now() - f0, fwdCpu = cpuMs(process.cpuUsage(fc));
            assert.deepEqual(r.shape, [T, s.vocab]);
            assert.equal(r.logits.length, T * s.vocab);
            assert.ok(r.logits.every(Number.isFinite), 'non-finite logits');
            assert.equal(r.hiddenStates.length, s.layers + 1);
            for (const h of r.hiddenStates) {
              assert.equal(h.length, T * s.hidden);
              assert.ok(h.every(Number.isFinite), 'non-finite hidden state');
            }
            // Statistics of every layer's points, finite; the heads' too.
            assert.ok(r.points.length > s.layers * 10, `${r.points.length} points`);
            for (const p of r.points) {
              assert.ok(Number.isFinite(p.maxAbs) && Number.isFinite(p.kurtosis), `${p.point} of layer ${p.layer}`);
            }
            assert.equal(r.heads.length, s.layers);
            assert.ok(r.heads.every((hs) => hs.length === s.heads));
            const afterFwd = await memoryUsage();
            console.log(`# ${arch} ${dtype}: file ${MiB(fileBytes)}, ${c.nParams} parameters; load ${secs(loadMs)} `
              + `(${secs(loadCpu)} CPU); WASM memory ${MiB(before.heapBytes)} -> ${MiB(after.heapBytes)} `
              + `(malloc'd ${MiB(after.usedBytes)}), RSS ${MiB(rss)} (peak so far ${MiB(peakRss())}); forward `
              + `${T} tokens with statistics ${fwdMs.toFixed(0)} ms (${fwdCpu.toFixed(0)} ms CPU), WASM memory `
              + `after ${MiB(afterFwd.heapBytes)}`);
          } finally {
            await model.dispose();
          }

          // The native CLI loads the same folder (qs_model_load_dir, streaming too).
          const q0 = performance.now();
          const out = spawnSync(QS, ['stats', '--model', dir, '--ids', Array.from(spreadIds(16, s.vocab)).join(','),
            '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
          assert.equal(out.status, 0, `qs stats: ${out.stderr}`);
          const j = JSON.parse(out.stdout);
          assert.equal(j.tokens, 16);
          assert.ok(Number.isFinite(j.summary.max_inf_norm), 'qs stats: max_inf_norm');
          console.log(`# ${arch} ${dtype}: native qs stats (load + 16 tokens) ${secs(performance.now() - q0)}`);
        });
      }
    }
  } finally {
    if (!keep) await rm(root, { recursive: true, force: true });
  }
  const all = process.cpuUsage();
  console.log(`# scale test: ${secs(performance.now() - t0)} wall, ${secs(cpuMs(all))} CPU in this process, `
    + `peak RSS ${MiB(peakRss())}`);
});
