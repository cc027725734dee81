// web/worker/jobs.js: the computations behind each view, one function per request:
// analyze (outliers + attention), quant (fake-quantized pass, histogram, top-5), ppl.
import { get, heldOutIds, specials, userError } from './registry.js';
import { quantGrid } from '../../wasm/quantscope.mjs';
import { distinctCount, histogram, topK } from './math.js';
import { modelFor } from './fix.js';

const MAX_IDS_TEXT = 4096; // characters of a token-id list

/** Token ids (and how to show them) for one model from the page's input. */
export async function encode(e, input) {
  const { model } = e;
  const cfg = model.config;
  if (model.hasTokenizer) {
    const text = typeof input.text === 'string' ? input.text : '';
    const enc = await model.tokenize(text);
    const special = (i) => enc.offsets[i] < 0;
    const content = enc.ids.length - [...enc.ids.keys()].filter(special).length;
    if (content === 0) throw userError('The text has no tokens: type at least one character.');
    let { ids, pieces, offsets, delimiters } = enc;
    const n = ids.length;
    let truncated = 0;
    if (n > cfg.maxPositions) {
      // Keep [CLS] + the first tokens and end with the last token ([SEP] for BERT).
      const keep = cfg.maxPositions - 1;
      const last = n - 1;
      const pick = (a) => (Array.isArray(a) ? [...a.slice(0, keep), a[last]] : Int32Array.from([...a.slice(0, keep), a[last]]));
      ids = pick(ids); offsets = pick(offsets); pieces = pick(pieces);
      delimiters = Uint8Array.from([...delimiters.slice(0, keep), delimiters[last]]);
      truncated = n - cfg.maxPositions;
    }
    return { ids, pieces, offsets: Array.from(offsets), delimiters, truncated, byIds: false };
  }
  const raw = String(input.idsText ?? '').trim();
  if (raw.length > MAX_IDS_TEXT) throw userError(`The id list is longer than ${MAX_IDS_TEXT} characters.`);
  const parts = raw.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) throw userError('This model has no tokenizer: enter at least one token id (e.g. 1 17 42 2).');
  const ids = parts.map((p) => {
    if (!/^\d+$/.test(p)) throw userError(`"${p.slice(0, 20)}" is not a token id: use whole numbers from 0 to ${cfg.vocabSize - 1}.`);
    const v = Number(p);
    if (v >= cfg.vocabSize) throw userError(`Token id ${v} is outside this model's vocabulary (0 to ${cfg.vocabSize - 1}).`);
    return v;
  });
  if (ids.length > cfg.maxPositions) {
    throw userError(`${ids.length} token ids: this model reads at most ${cfg.maxPositions} (max_position_embeddings).`);
  }
  return {
    ids: Int32Array.from(ids), pieces: ids.map((i) => `#${i}`), offsets: ids.map(() => -1),
    delimiters: new Uint8Array(ids.length), truncated: 0, byIds: true,
  };
}

/**
 * The FP forward behind the outlier, attention and quantization views, with
 * the statistics and captures `needs` names (web/needs.js: what the views
 * shown draw); without needs, every statistic and the point, probs and gates.
 */
export async function analyze({ models, input, point, needs = null }) {
  const out = {};
  for (const id of models) {
    const e = get(id);
    const enc = await encode(e, input);
    const gated = e.model.config.gate !== 'none';
    const capture = (needs ? needs.capture : [point, 'probs', 'gate']).filter((p) => gated || p !== 'gate');
    const stats = needs ? { points: needs.points, heads: needs.heads } : true;
    const t0 = performance.now();
    const r = await e.model.forward(enc.ids, { delimiters: enc.delimiters, capture, stats });
    const ms = performance.now() - t0;
    out[id] = {
      tokens: enc, T: enc.ids.length, points: r.points, heads: r.heads, summary: r.summary, captures: r.captures, ms,
    };
  }
  return out;
}

/** Calibration batches: the first windows of the held-out text, framed like model inputs. */
async function calibBatches(e, heldOut, n) {
  const sp = await specials(e);
  const cfg = e.model.config;
  const T = Math.min(64, cfg.maxPositions);
  const bert = cfg.arch === 'bert';
  const body = T - (bert ? 2 : 1);
  const out = [];
  for (let k = 0; k < n && (k + 1) * body <= heldOut.length; k++) {
    const slice = Array.from(heldOut.subarray(k * body, (k + 1) * body));
    out.push(bert ? [sp.cls, ...slice, sp.sep] : [sp.cls, ...slice]);
  }
  return out;
}

/** Where the top-5 predictions are read: a masked token (BERT) or the next token (OPT). */
async function predictionInput(e, enc, maskPos) {
  const cfg = e.model.config;
  const T = enc.ids.length;
  if (cfg.arch === 'opt') return { ids: enc.ids, pos: T - 1, masked: false, next: true };
  const sp = await specials(e);
  let pos = Number.isInteger(maskPos) && maskPos > 0 && maskPos < T - 1 ? maskPos : -1;
  if (pos < 0) {
    // Default: the content token nearest the middle that is not a delimiter.
    const mid = Math.floor(T / 2);
    for (let d = 0; d < T && pos < 0; d++) {
      for (const i of [mid + d, mid - d]) {
        if (i > 0 && i < T - 1 && !enc.delimiters[i] && enc.offsets[i] >= 0) { pos = i; break; }
      }
    }
    if (pos < 0) pos = Math.min(1, T - 1);
  }
  if (!sp || sp.mask < 0) return { ids: enc.ids, pos, masked: false, next: false };
  const ids = Int32Array.from(enc.ids);
  ids[pos] = sp.mask;
  return { ids, pos, masked: true, next: false };
}

async function pieces(e, list) {
  if (!e.model.hasTokenizer) return list.map((t) => ({ ...t, piece: `#${t.id}` }));
  const names = await e.model.pieces(list.map((t) => t.id));
  return list.map((t, i) => ({ ...t, piece: names[i] ?? `#${t.id}` }));
}

/**
 * The quantized pass over the page's input: per-point SQNR, the histogram of
 * one activation with its quantization grid, and top-5 predictions FP vs quantized.
 */
export async function quant({ models, input, quant: q, ranges, histPoint, histLayer, maskPos, heldOutText, fix = null,
  trainText }) {
  const out = {};
  for (const id of models) {
    const e = get(id);
    // With a post-hoc fix: its copy, whose captures show what the quantizer sees (x Q, x / s).
    const { model } = await modelFor(e, fix, q, trainText);
    const transformed = !!fix;
    const cfg = model.config;
    const enc = await encode(e, input);
    const t0 = performance.now();
    const held = await heldOutIds(e, heldOutText);
    let calibrated = 0;
    if (ranges === 'static' && q.actGranularity !== 'token' && held) {
      // Static ranges depend on the model and settings, not on the text:
      // typing reuses them. The model knows which config it has installed.
      calibrated = await model.calibratedBatches(q);
      if (!calibrated) {
        const batches = await calibBatches(e, held, 2);
        if (batches.length) calibrated = (await model.calibrate(batches, { quant: q })).batches;
      }
    }
    if (!calibrated) await model.clearQuant(); // the next forward installs q afresh: ranges from this input
    const layer = Math.min(Math.max(histLayer ?? cfg.nLayers - 1, 0), cfg.nLayers - 1);
    const pred = await predictionInput(e, enc, maskPos);
    // The float passes do not depend on the quant settings: a slider move reuses them.
    const fpKey = JSON.stringify([Array.from(enc.ids), histPoint, pred.pos, pred.masked, fix]);
    let fpc = e.cache.get('fp');
    if (fpc?.key !== fpKey) {
      // The float pass feeds the heatmap and histogram of one point; the
      // prediction passes only their logits.
      const fp = await model.forward(enc.ids, { delimiters: enc.delimiters, capture: [histPoint], transformed,
        stats: { points: [histPoint], heads: false } });
      const fpP = pred.ids === enc.ids ? fp : await model.forward(pred.ids, { stats: false });
      fpc = { key: fpKey, fp, fpP };
      e.cache.set('fp', fpc);
    }
    const { fp, fpP } = fpc;
    // Every point's quantization error for the SQNR table: all point statistics, no heads.
    const qr = await model.forward(enc.ids, { delimiters: enc.delimiters, capture: [histPoint], quant: q, transformed,
      stats: { heads: false } });
    const qP = pred.ids === enc.ids ? qr : await model.forward(pred.ids, { quant: q, stats: false });
    const V = cfg.vocabSize;
    const top5 = {
      pos: pred.pos, masked: pred.masked, next: pred.next,
      trueId: pred.next ? null : enc.ids[pred.pos], truePiece: pred.next ? null : enc.pieces[pred.pos],
      fp: await pieces(e, topK(fpP.logits, pred.pos, V)),
      q: await pieces(e, topK(qP.logits, pred.pos, V)),
    };
    const ms = performance.now() - t0;
    out[id] = { T: enc.ids.length, points: qr.points, calibrated, top5, ms, fix, fixes: model.fixes,
      hist: await histogramOf(fp, qr, histPoint, layer, q), heat: heatOf(fp, histPoint, layer) };
  }
  return out;
}

/** The float tensor the histogram counts, as a tokens x dims matrix for the heatmap. */
function heatOf(fp, point, layer) {
  const st = fp.points.find((p) => p.point === point && (p.layer === layer || p.layer === -1));
  const caps = fp.captures[point];
  const x = caps && (caps.length === 1 ? caps[0] : caps[layer]);
  return st && x ? { data: x.slice(), rows: st.rows, cols: st.cols, maxAbs: st.maxAbs } : null;
}

async function histogramOf(fp, qr, point, layer, q) {
  const pick = (r) => {
    const caps = r.captures[point];
    if (!caps) return null;
    return caps.length === 1 ? caps[0] : caps[layer];
  };
  const x = pick(fp), xq = pick(qr);
  if (!x) return { point, layer, missing: true };
  const st = qr.points.find((p) => p.point === point && (p.layer === layer || p.layer === -1));
  let lo = Infinity, hi = -Infinity;
  for (const v of x) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const quantized = !!st?.quantized;
  const perToken = quantized && !Number.isFinite(st.quantMin);
  // The grid the C quantizer used for this range (one definition: qs_qparams_from_range).
  const g = quantized && !perToken ? await quantGrid(st.quantMin, st.quantMax, q.actBits, !!q.actSymmetric) : null;
  const hlo = g ? Math.min(lo, g.lo) : lo, hhi = g ? Math.max(hi, g.hi) : hi;
  const pad = (hhi - hlo) * 0.02 || 1;
  const h = histogram(x, hlo - pad, hhi + pad, 160);
  // Values the grid clips: outside [grid.lo, grid.hi].
  let clipped = 0;
  if (g) for (const v of x) if (v < g.lo - g.scale / 2 || v > g.hi + g.scale / 2) clipped++;
  return {
    point, layer: st?.layer ?? layer, n: x.length, min: lo, max: hi, ...h, grid: g, perToken, quantized,
    bits: q.actBits, levelsUsed: quantized ? distinctCount(xq) : null, clipped,
    sqnr: st?.quantSqnrDb ?? null, mse: st?.quantMse ?? null, quantMin: st?.quantMin, quantMax: st?.quantMax,
  };
}

/** FP vs quantized perplexity on the held-out text (qs_evaluate). */
export async function ppl({ models, quant: q, heldOutText, windows = 6, calibWindows = 2, fix = null, trainText,
  keep = true }) {
  const out = {};
  for (const id of models) {
    const e = get(id);
    const held = await heldOutIds(e, heldOutText);
    if (!held) {
      out[id] = { unavailable: e.model.hasTokenizer
        ? 'no held-out text: run scripts/kjv.sh and node scripts/web-corpus.mjs'
        : 'this model has no tokenizer, so the held-out text cannot be encoded' };
      continue;
    }
    const seqLen = Math.min(128, e.model.config.maxPositions);
    const t0 = performance.now();
    const { model, temporary } = await modelFor(e, fix, q, trainText, { keep });
    try {
      const r = await model.evaluate(held, { seqLen, maxWindows: windows, calibWindows, quant: q });
      out[id] = { ...r, seqLen, fix, ms: performance.now() - t0 };
    } finally {
      if (temporary) await model.dispose();
    }
  }
  return out;
}
