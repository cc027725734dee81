// wasm/js/abi.mjs: what crosses the C boundary: the quant options as qsw_quant's
// arguments, and the decoders of the numbers the C calls leave in ctx->out.
import { argError } from './errors.mjs';
import { checkOptions, enumOption, intOption, numberOption } from './checks.mjs';

/** A quant option object with defaults filled in, as C arguments plus a key. */
export function resolveQuant(core, q, what) {
  if (q === null || typeof q !== 'object') throw argError(`${what}: quant must be an object`);
  const d = core.quantDefaults;
  checkOptions(q, Object.keys(d), what, 'quant option'); // the keys of C's defaults
  const points = q.points ?? d.points;
  if (!Array.isArray(points)) throw argError(`${what}: quant.points must be an array of point names`);
  const args = [
    intOption(q.weightBits, `${what}: quant.weightBits`, d.weightBits),
    (q.weightSymmetric ?? d.weightSymmetric) ? 1 : 0,
    enumOption(q.weightGranularity, core.granularities, `${what}: quant.weightGranularity`,
               core.granularities.indexOf(d.weightGranularity)),
    intOption(q.actBits, `${what}: quant.actBits`, d.actBits),
    (q.actSymmetric ?? d.actSymmetric) ? 1 : 0,
    enumOption(q.actGranularity, core.granularities, `${what}: quant.actGranularity`,
               core.granularities.indexOf(d.actGranularity)),
    enumOption(q.estimator, core.estimators, `${what}: quant.estimator`,
               core.estimators.indexOf(d.estimator)),
    Math.fround(numberOption(q.percentile, `${what}: quant.percentile`, d.percentile)),
    core.pointMask(points, `${what}: quant.points`),
    (q.int8 ?? d.int8) ? 1 : 0,
  ];
  return { args, key: args.join(',') };
}

/** The config from C's own config.json writer, so enum names are C's spellings. */
export function readConfig(core, ctx, handle) {
  core.check(ctx, core.m._qsw_model_config(ctx, handle));
  const [len, textPtr, eps, nParams] = core.out(ctx, 4);
  const j = JSON.parse(core.bytesToString(textPtr >>> 0, len));
  return {
    arch: j.model_type, vocabSize: j.vocab_size, hiddenSize: j.hidden_size, nLayers: j.num_hidden_layers,
    nHeads: j.num_attention_heads, intermediateSize: j.intermediate_size ?? j.ffn_dim,
    maxPositions: j.max_position_embeddings, typeVocabSize: j.type_vocab_size ?? 0,
    layerNormEps: shortFloat(eps), activation: j.hidden_act ?? j.activation_function,
    softmax: j.attn_softmax, clipGamma: shortFloat(j.clip_gamma), clipZeta: shortFloat(j.clip_zeta),
    clipAlpha: shortFloat(j.clip_alpha),
    clipSeqLen: j.clip_seq_len, gate: j.attn_gate_type, gateMlp: j.attn_gate_mlp,
    gateMlpHidden: j.attn_gate_mlp_hidden, gateAllFeatures: j.attn_gate_linear_all_features,
    gateInit: shortFloat(j.attn_gate_init), block: j.block_type, opBeta: shortFloat(j.op_beta), tokenizer: j.tokenizer,
    doLowerCase: j.do_lower_case, nParams,
  };
}

/** The shortest decimal that is the same float32 (1e-12, not 9.9999999600419720025e-13). */
export function shortFloat(x) {
  const v = Math.fround(x); // JSON's 9-digit text is this float, not the double nearest it
  for (let p = 1; p < 10; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** qsw_point_stats' numbers as an object; null for points the model lacks. */
export function pointStats(v, layer, point) {
  if (!v[0]) return null;
  const k = v.slice(16, 24).filter((d) => d >= 0).length; // valid top entries
  return {
    layer, point, rows: v[1], cols: v[2], maxAbs: v[3], mean: v[4], std: v[5], kurtosis: v[6],
    rmsKurtosis: v[7], min: v[8], max: v[9], quantized: !!v[10], quantMse: v[11], quantSqnrDb: v[12],
    quantMin: v[13], quantMax: v[14], nOutliers: v[15],
    topDims: v.slice(16, 16 + k), topVals: v.slice(24, 24 + k), topTokens: v.slice(32, 32 + k),
  };
}

export function headStats(v) {
  const [delimMass, outNorm, valueNorm, delimValueNorm, entropy, maxProb, noopScore, gateMean] = v;
  return { delimMass, outNorm, valueNorm, delimValueNorm, entropy, maxProb, noopScore, gateMean };
}
