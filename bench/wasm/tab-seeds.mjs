// bench/wasm/tab-seeds.mjs: the page's default training recipe (Train in the
// tab, TRAIN_DEFAULTS in web/state.js) for vanilla and gated attention over
// several seeds, through quantscope.mjs in Node: how much the tab's
// "vanilla grows above gated" depends on the seed and on the module.
//
//   node [--experimental-wasm-relaxed-simd] bench/wasm/tab-seeds.mjs SEED...
//
// Configs as web/worker/train.js makes them (the shipped model's config.json
// at the page's sizes); corpus build/web/kjv-train.txt (node scripts/web-corpus.mjs);
// max ||x||inf from the trainer's 2-batch evaluation after the last step.
import { readFileSync } from 'node:fs';

import { createModel, runtimeInfo } from '../../wasm/quantscope.mjs';
import { TRAIN_DEFAULTS as D } from '../../web/state.js';

const ROOT = new URL('../../', import.meta.url);
const seeds = process.argv.slice(2).map(Number);
if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) {
  console.error('usage: node bench/wasm/tab-seeds.mjs SEED...');
  process.exit(2);
}
const text = readFileSync(new URL('build/web/kjv-train.txt', ROOT));

function configOf(variant) {
  const c = JSON.parse(readFileSync(new URL(`models/bert-${variant}/config.json`, ROOT), 'utf8'));
  Object.assign(c, { hidden_size: D.hidden, num_hidden_layers: D.layers, num_attention_heads: D.heads,
    intermediate_size: 4 * D.hidden, max_position_embeddings: Math.max(D.seqLen, 128), clip_seq_len: D.seqLen });
  delete c.attn_gate_mlp_hidden;
  return c;
}

const { relaxedSimd } = await runtimeInfo();
console.log(`tab defaults (${D.layers} layers, d ${D.hidden}, T ${D.seqLen}, batch ${D.batch}, ${D.steps} steps, `
  + `lr ${D.lr}), ${relaxedSimd ? 'relaxed-SIMD' : 'SIMD128'} module: max ||x||inf at the last step`);
for (const seed of seeds) {
  const max = {};
  for (const variant of ['vanilla', 'gated']) {
    const model = await createModel(configOf(variant), { seed });
    const trainer = await model.createTrainer(text, { batchSize: D.batch, seqLen: D.seqLen, steps: D.steps, lr: D.lr,
      optimizer: D.optimizer, seed });
    for (let i = 0; i < D.steps; i++) await trainer.step();
    max[variant] = (await trainer.evaluate({ batches: 2 })).maxInfNorm;
    await trainer.dispose();
    await model.dispose();
  }
  console.log(`  seed ${seed}: vanilla ${max.vanilla.toFixed(1)}, gated ${max.gated.toFixed(1)}, `
    + `vanilla / gated ${(max.vanilla / max.gated).toFixed(2)}`);
}
