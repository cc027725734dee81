// bench/browser/page.mjs: forwards of a model in the page, through the same ES
// module API the demo uses; bench/browser/run.mjs calls globalThis.runBench.
import { loadModel, defaultQuant } from '../../wasm/quantscope.mjs';

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
globalThis.runBench = async ({ modelUrl, rounds, minMs }) => {
  const model = await loadModel(modelUrl);
  const quant = await defaultQuant();
  const variants = [['f32', undefined], ['w8a8 fake-quant', quant]];
  if ('int8' in quant) variants.push(['w8a8 int8', { ...quant, int8: true }]);
  const out = { variants: variants.map(([n]) => n), rows: [] };
  for (const T0 of [64, 128]) {
    const T = Math.min(T0, model.config.maxPositions ?? T0);
    const ids = sentenceIds(T, model.config.vocabSize);
    const secs = variants.map(() => []);
    for (let r = -1; r < rounds; r++) { // round -1: warm-up (V8 tier-up)
      for (const [i, [, q]] of variants.entries()) {
        let n = 0;
        const t0 = performance.now();
        do {
          await model.forward(ids, q ? { quant: q } : {});
          n++;
        } while (performance.now() - t0 < minMs);
        if (r >= 0) secs[i].push((performance.now() - t0) / n);
      }
    }
    out.rows.push({ T, ms: secs.map(median) });
  }
  model.dispose();
  return out;
};
globalThis.benchReady = true;
