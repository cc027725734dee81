// wasm/js/abi.mjs: the C structs JavaScript reads and fills, by field name, from
// the field tables exports.c describes them with; and the decoders built on them.
import { argError, qsError } from './errors.mjs';
import { enumOption, intOption, numberOption, seedOption } from './checks.mjs';

/** Bytes of one element of each field type of exports.c's tables. */
const TYPE_BYTES = { i32: 4, u32: 4, f32: 4, f64: 8, u64: 8, ptr: 4, bool: 4, granularity: 4, estimator: 4,
  optimizer: 4, points: 4 };

/** C's snake_case as JavaScript's camelCase: max_abs -> maxAbs. */
const camelCase = (name) => name.replace(/_([a-z0-9])/g, (_, ch) => ch.toUpperCase());

/**
 * exports.c's field tables, read once when an instance starts:
 * {record: [{key, type, offset, count, bytes}]}. A type that does not fit
 * its field's size means this file and exports.c disagree: refused here
 * rather than read wrong later.
 */
export function readLayouts(m, str) {
  const layouts = {};
  for (let r = 0; r < m._qsw_records(); r++) {
    const record = str(m._qsw_record_name(r));
    layouts[record] = [];
    for (let f = 0; f < m._qsw_record_fields(r); f++) {
      const name = str(m._qsw_field_name(r, f)), type = str(m._qsw_field_type(r, f));
      const size = m._qsw_field_size(r, f), bytes = TYPE_BYTES[type];
      if (!bytes || !size || size % bytes) {
        throw qsError('QS_ERR_FORMAT', `quantscope: exports.c's field ${record}.${name} of ${size} bytes `
          + `cannot be read as ${type}`);
      }
      layouts[record].push({ key: camelCase(name), type, offset: m._qsw_field_offset(r, f), count: size / bytes, bytes });
    }
  }
  return layouts;
}

/** The list of point names in a QS_PT_BIT mask, and back. */
const maskPoints = (mask, points) => points.filter((_, i) => (mask >>> i) & 1);

export function pointMask(points, names, what) {
  if (!Array.isArray(names)) throw argError(`${what} must be an array of point names`);
  let mask = 0;
  for (const name of names) {
    const i = points.indexOf(name);
    if (i < 0) throw argError(`${what}: unknown point '${name}' (one of: ${points.join(', ')})`);
    mask |= 1 << i;
  }
  return mask >>> 0;
}

/** One element at `at`; `names` gives what enums and masks read as. */
function readValue(view, at, type, names) {
  switch (type) {
    case 'i32': return view.getInt32(at, true);
    case 'u32': case 'ptr': return view.getUint32(at, true);
    case 'f32': return view.getFloat32(at, true);
    case 'f64': return view.getFloat64(at, true);
    case 'u64': return Number(view.getBigUint64(at, true));
    case 'bool': return view.getInt32(at, true) !== 0;
    case 'points': return maskPoints(view.getUint32(at, true), names.points);
    default: return names[type][view.getInt32(at, true)]; // an enum, by its name
  }
}

/** The struct at ptr as an object keyed by its fields' names, arrays for array fields. */
export function readRecord(fields, view, ptr, names) {
  const out = {};
  for (const f of fields) {
    const at = ptr + f.offset;
    if (f.count === 1) {
      out[f.key] = readValue(view, at, f.type, names);
      continue;
    }
    const a = new Array(f.count);
    for (let i = 0; i < f.count; i++) a[i] = readValue(view, at + i * f.bytes, f.type, names);
    out[f.key] = a;
  }
  return out;
}

/** v checked as the field's type takes it, as the number C stores ('what' names it in the message). */
function checkValue(type, v, what, names) {
  switch (type) {
    case 'i32': case 'u32': return intOption(v, what);
    case 'u64': return seedOption(v, what);
    case 'f32': case 'f64': return numberOption(v, what);
    case 'bool': return v ? 1 : 0;
    case 'points': return pointMask(names.points, v, what);
    case 'granularity': case 'estimator': case 'optimizer': return enumOption(v, names[type], what);
    default: throw argError(`${what}: a ${type} field is not set from JavaScript`);
  }
}

function writeValue(view, at, type, n) {
  switch (type) {
    case 'u32': case 'points': view.setUint32(at, n, true); break;
    case 'f32': view.setFloat32(at, n, true); break;
    case 'f64': view.setFloat64(at, n, true); break;
    case 'u64': view.setBigUint64(at, BigInt(n), true); break;
    default: view.setInt32(at, n, true); // i32, bool, an enum's index
  }
}

/**
 * Sets the fields `values` names (camelCase keys of the record) in the
 * struct at ptr, each checked first; null and undefined leave the value C
 * put there (its default). `what` starts each message ("createTrainer: ").
 */
export function fillRecord(fields, view, ptr, values, what, names) {
  for (const [key, v] of Object.entries(values)) {
    if (v == null) continue;
    const f = fields.find((x) => x.key === key);
    if (!f || f.count !== 1) throw argError(`${what}${key}: no such setting in exports.c's table`);
    writeValue(view, ptr + f.offset, f.type, checkValue(f.type, v, `${what}${key}`, names));
  }
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

/** Settings as a person writes them: each float32 field as its shortest decimal (percentile 99.999). */
export function shortFloats(fields, values) {
  for (const f of fields) if (f.type === 'f32') values[f.key] = shortFloat(values[f.key]);
  return values;
}

// ------------------------------------------------------------ decoders

// What a point without statistics still reports (the forward's stats option
// left the measures out): its shape and quantization range.
const KEPT_WITHOUT_STATS = new Set(['rows', 'cols', 'quantized', 'quantMin', 'quantMax']);
const NOT_MEASURES = new Set(['present', 'hasStats', 'topDims', 'topVals', 'topTokens']);

/** A point_stats record as the API gives it; null for points the model lacks. */
export function pointStats(s, layer, point) {
  if (!s.present) return null;
  // One loop, no rest or spread: the page reads ~75 of these per forward.
  const has = s.hasStats;
  const out = { layer, point, hasStats: has };
  for (const key in s) {
    if (!NOT_MEASURES.has(key)) out[key] = has || KEPT_WITHOUT_STATS.has(key) ? s[key] : null;
  }
  let k = 0; // valid top entries (C pads with -1)
  if (has) while (k < s.topDims.length && s.topDims[k] >= 0) k++;
  out.topDims = s.topDims.slice(0, k);
  out.topVals = s.topVals.slice(0, k);
  out.topTokens = s.topTokens.slice(0, k);
  return out;
}

/** The config from C's own config.json writer, so enum names are C's spellings. */
export function readConfig(core, ctx, handle) {
  core.check(ctx, core.m._qsw_model_config(ctx, handle));
  const { json, jsonLen, layerNormEps, nParams } = core.result(ctx, 'config_text');
  const j = JSON.parse(core.bytesToString(json, jsonLen));
  return {
    arch: j.model_type, vocabSize: j.vocab_size, hiddenSize: j.hidden_size, nLayers: j.num_hidden_layers,
    nHeads: j.num_attention_heads, intermediateSize: j.intermediate_size ?? j.ffn_dim,
    maxPositions: j.max_position_embeddings, typeVocabSize: j.type_vocab_size ?? 0,
    layerNormEps: shortFloat(layerNormEps), activation: j.hidden_act ?? j.activation_function,
    softmax: j.attn_softmax, clipGamma: shortFloat(j.clip_gamma), clipZeta: shortFloat(j.clip_zeta),
    clipAlpha: shortFloat(j.clip_alpha),
    clipSeqLen: j.clip_seq_len, gate: j.attn_gate_type, gateMlp: j.attn_gate_mlp,
    gateMlpHidden: j.attn_gate_mlp_hidden, gateAllFeatures: j.attn_gate_linear_all_features,
    gateInit: shortFloat(j.attn_gate_init), block: j.block_type, opBeta: shortFloat(j.op_beta), tokenizer: j.tokenizer,
    doLowerCase: j.do_lower_case, nParams,
  };
}
