// web/worker/math.js: small numeric helpers of the worker: top-k of a softmax,
// histograms, and the quantization grid (the JS mirror of qs_qparams_from_range).

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
 * Grid of an affine quantizer for [min, max] at `bits` (docs/science.md §4), as
 * qs_qparams_from_range builds it: the range is widened to include 0;
 * asymmetric s = (max - min) / (2^b - 1), z = round(-min / s), q in [0, 2^b - 1];
 * symmetric s = max|.| / (2^(b-1) - 1), z = 0. Level k is s (q_k - z).
 */
export function grid(min, max, bits, symmetric) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return null;
  const lo = Math.min(min, 0), hi = Math.max(max, 0);
  if (symmetric) {
    const qmax = 2 ** (bits - 1) - 1;
    const scale = Math.max(Math.abs(lo), Math.abs(hi)) / qmax || 1e-8;
    return { scale, zero: 0, qmin: -qmax, qmax, lo: -qmax * scale, hi: qmax * scale };
  }
  const qmax = 2 ** bits - 1;
  const scale = (hi - lo) / qmax || 1e-8;
  const zero = Math.round(-lo / scale);
  return { scale, zero, qmin: 0, qmax, lo: scale * (0 - zero), hi: scale * (qmax - zero) };
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

