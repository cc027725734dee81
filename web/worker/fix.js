// web/worker/fix.js: the post-hoc fixes of the Quantization view: per model the
// fixed copies model.withFix() makes (calibrated on the training slice, kept
// while in use), and the comparison table's cells.
import { get } from './registry.js';

// Calibration: the first 4 windows of 128 tokens of the training slice (qs
// eval --fix calibrates on the training split too; the perplexities are on
// held-out text). GPTQ's cost grows with them: 4 rather than 8 halves its time.
export const CALIB_CHARS = 16384;
export const CALIB_WINDOWS = 4;
const KEEP = 2; // fixed copies kept per model: the one shown and the one before it

const needsCalibration = (spec) => /^(smoothquant|gptq)/.test(spec);

/** The options withFix() gets for model and spec on the page. */
export function fixOptions(model, spec, quant) {
  return { seqLen: Math.min(128, model.config.maxPositions), maxWindows: CALIB_WINDOWS,
    quant: spec.startsWith('gptq') ? quant : undefined };
}

// GPTQ's weights hold for one grid: the weight settings are part of its key.
const keyOf = (spec, quant) => (spec.startsWith('gptq')
  ? `${spec}|${quant.weightGranularity}|${quant.weightSymmetric}` : spec);

/**
 * Entry e's model with fix `spec` applied (none: the model itself), and
 * whether the caller must dispose it. keep: cache it (the models shown);
 * otherwise a copy not cached already is made for one use (the table).
 */
export async function modelFor(e, spec, quant, trainText, { keep = true } = {}) {
  if (!spec) return { model: e.model, temporary: false };
  if (!e.cache.has('fixed')) e.cache.set('fixed', new Map());
  const cache = e.cache.get('fixed');
  const key = keyOf(spec, quant);
  const make = () => e.model.withFix(spec, needsCalibration(spec) ? (trainText ?? '').slice(0, CALIB_CHARS) : null,
    fixOptions(e.model, spec, quant));
  if (cache.has(key)) {
    const hit = cache.get(key);
    cache.delete(key); // most recently used last
    cache.set(key, hit);
    return { model: await hit, temporary: false };
  }
  if (!keep) return { model: await make(), temporary: true };
  const made = make();
  cache.set(key, made);
  made.catch(() => cache.delete(key)); // a refused fix is not kept
  for (const [k, p] of cache) {
    if (cache.size <= KEEP) break;
    cache.delete(k);
    p.then((m) => m.dispose(), () => {});
  }
  return { model: await made, temporary: false };
}

/** Applies the page's fix to each model shown (calibrating it): what the quantization jobs use next. */
export async function applyFix({ models, fix, quant, trainText }) {
  const out = {};
  for (const id of models) {
    const t0 = performance.now();
    const { model } = await modelFor(get(id), fix, quant, trainText);
    out[id] = { fixes: model.fixes, ms: performance.now() - t0 };
  }
  return out;
}

/**
 * One column of the comparison table: each model's perplexity under `fix`
 * (ppl, the cards' own computation), each cell computed once per settings.
 * A fix that does not apply to a model is that cell's message, not a failure.
 */
export async function fixColumn({ models, fix, quant, ppl }) {
  const out = {};
  for (const id of models) {
    const e = get(id);
    if (!e.cache.has('fixcells')) e.cache.set('fixcells', new Map());
    const cells = e.cache.get('fixcells');
    const key = JSON.stringify([fix, quant]);
    if (!cells.has(key)) {
      try {
        cells.set(key, (await ppl({ models: [id], quant, fix, keep: false }))[id]);
      } catch (err) {
        cells.set(key, { error: err.message });
      }
    }
    out[id] = cells.get(key);
  }
  return out;
}
