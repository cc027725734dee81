// web/worker/math.js: small numeric helpers of the worker: top-k of a softmax,
// and histograms (the quantization grid comes from C: quantGrid in quantscope.mjs).

/** Top k entries of softmax(row): [{id, p, logit}], descending. */
export function topK(logits, row, V, k = 5) {
  const off = row * V;
  let max = -Infinity;
  for (let j = 0; j < V; j++) max = Math.max(max, logits[off + j]);
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(logits[off + j] - max);
  const best = [];
  for (let j = 0; j < V; j++) {
    const v = logits[off + j];
    if (best.length < k || v > best[best.length - 1].logit) {
      best.push({ id: j, logit: v });
      best.sort((a, b) => b.logit - a.logit);
      if (best.length > k) best.pop();
    }
  }
  return best.map((b) => ({ ...b, p: Math.exp(b.logit - max) / sum }));
}

/**
 * Histogram of values over [lo, hi] in nBins bins, plus how many values fell
 * outside (those a quantizer with this range clips).
 */
export function histogram(values, lo, hi, nBins) {
  const counts = new Float64Array(nBins);
  const w = (hi - lo) / nBins || 1;
  let below = 0, above = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) below++;
    else if (v > hi) above++;
    else counts[Math.min(nBins - 1, Math.floor((v - lo) / w))]++;
  }
  return { lo, hi, counts: Array.from(counts), below, above };
}

/** Distinct values of a (quantized) tensor: the grid levels it actually uses. */
export function distinctCount(values) {
  return new Set(values).size;
}

