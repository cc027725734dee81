// bench/browser/page.mjs: forwards of a model in the page, through the same ES
// module API the demo uses; bench/browser/run.mjs calls globalThis.runBench.
import { loadModel, defaultQuant, configure, createModel, runtimeInfo } from '../../wasm/quantscope.mjs';

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
};

/** Ids of a fixed English sentence for the byte tokenizer (id = 4 + byte). */
function sentenceIds(T, vocab) {
  const text = new TextEncoder().encode('In the beginning God created the heaven and the earth. ');
  return Int32Array.from({ length: T }, (_, t) => Math.min(4 + text[t % text.length], vocab - 1));
}

/** ms per forward for each variant and length: {T: {variant: ms}}. */
/** Median ms of fn over rounds, contestants alternating within each round. */
async function alternate(fns, rounds, minMs, warmUp = true) {
  const secs = fns.map(() => []);
  for (let r = warmUp ? -1 : 0; r < rounds; r++) { // round -1: warm-up (V8 tier-up)
    for (const [i, fn] of fns.entries()) {
      let n = 0;
      const t0 = performance.now();
      do {
        await fn();
        n++;
      } while (performance.now() - t0 < minMs);
      if (r >= 0) secs[i].push((performance.now() - t0) / n);
    }
  }
  return secs.map(median);
}

// The model stays loaded between calls, so run.mjs can alternate rounds
// between two pages (the relaxed-SIMD module and plain SIMD128).
let loaded = null;

globalThis.runBench = async ({ modelUrl, rounds, minMs, relaxedSimd = true }) => {
  const warmUp = !loaded;
  if (!loaded) {
    configure({ relaxedSimd });
    loaded = { model: await loadModel(modelUrl), quant: await defaultQuant(), info: await runtimeInfo() };
  }
  const { model, quant, info } = loaded;
  const variants = [['f32', undefined], ['w8a8 fake-quant', quant]];
  if ('int8' in quant) variants.push(['w8a8 int8', { ...quant, int8: true }]);
  const out = { variants: variants.map(([n]) => n), rows: [], relaxedSimd: info.relaxedSimd };
  for (const T0 of [64, 128]) {
    const T = Math.min(T0, model.config.maxPositions ?? T0);
    const ids = sentenceIds(T, model.config.vocabSize);
    const ms = await alternate(variants.map(([, q]) => () => model.forward(ids, q ? { quant: q } : {})),
      rounds, minMs, warmUp);
    out.rows.push({ T, ms });
  }
  return out;
};

/**
 * The pthreads build (configure must come before anything else on this page):
 * ms per batch evaluation (32 windows of 128 tokens) and per training step,
 * on 1 and 2 threads.
 */
globalThis.runThreadsBench = async ({ modelUrl, rounds, minMs }) => {
  configure({ threads: 2 });
  const model = await loadModel(modelUrl);
  const quant = { ...(await defaultQuant()), int8: true };
  const T = Math.min(128, model.config.maxPositions);
  const windows = 32;
  const ids = sentenceIds(windows * (T - 2), model.config.vocabSize);
  const evals = [];
  // With quant, evaluate scores float and W8A8 (int8 kernels): two passes.
  for (const [name, q] of [['f32', null], ['f32 + w8a8', quant]]) {
    const run = (threads) => () => model.evaluate(ids, { seqLen: T, maxWindows: windows, quant: q, threads });
    evals.push({ name, ms: await alternate([run(1), run(2)], rounds, minMs) });
  }
  const config = await (await fetch(`${modelUrl}config.json`)).json();
  const text = 'In the beginning God created the heaven and the earth. And the earth was without form. '.repeat(400);
  const trainers = [];
  for (const threads of [1, 2]) {
    const m = await createModel(config, { seed: 1 });
    trainers.push(await m.createTrainer(text, { batchSize: 16, seqLen: T, steps: 100000, valFraction: 0, threads }));
  }
  const train = await alternate(trainers.map((t) => () => t.step()), rounds, minMs);
  for (const t of trainers) { const m = t.model; await t.dispose(); await m.dispose(); }
  await model.dispose();
  return { T, windows, evals, train: { ms: train, tokens: 16 * T }, relaxedSimd: (await runtimeInfo()).relaxedSimd };
};
globalThis.benchReady = true;
