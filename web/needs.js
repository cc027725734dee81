// web/needs.js: what each view reads of the analysis forward, so that the worker
// computes only that (forward's `stats` and `capture` options) and a panel
// draws only an analysis that holds it.

// The points whose values the linears read (qs_linear_input_points: BERT's
// embeddings, layer outputs, context, FFN input and hidden; OPT's LayerNorm
// outputs): the post-hoc fix's threshold slider reads their max |x|.
export const LINEAR_INPUTS = ['embed', 'attn_in', 'ctx', 'ffn_in', 'ffn_act', 'layer_out'];
// The points the paper's summary reads (C: QS_PT_SUMMARY).
const SUMMARY_POINTS = ['ffn_out', 'ffn_res', 'layer_out'];

/**
 * {points, heads, capture} the view draws from an analysis at capture point
 * `point` (the outlier view's); null for a view that draws none (train).
 * Outliers: that point's statistics and tensor, and the summary's points;
 * attention: the head statistics and the probabilities (and gates);
 * quantization: the linears' inputs (the fix's threshold) and the tokens.
 * The worker leaves out 'gate' for a model without gates.
 */
export function viewNeeds(view, point) {
  if (view === 'outliers') return { points: [...new Set([point, ...SUMMARY_POINTS])], heads: false, capture: [point] };
  if (view === 'attention') return { points: [], heads: true, capture: ['probs', 'gate'] };
  if (view === 'quant') return { points: [...LINEAR_INPUTS], heads: false, capture: [] };
  return null;
}

/** The union of two needs (null: nothing). */
export function union(a, b) {
  if (!a) return b;
  if (!b) return a;
  return { points: [...new Set([...a.points, ...b.points])], heads: a.heads || b.heads,
    capture: [...new Set([...a.capture, ...b.capture])] };
}

/** Whether what `have` computed holds everything `need` asks for. */
export function covers(have, need) {
  if (!need) return true;
  if (!have) return false;
  return need.points.every((p) => have.points.includes(p)) && (!need.heads || have.heads)
    && need.capture.every((p) => have.capture.includes(p));
}

/** Whether analysis `a` (state.analysis) holds what `view` draws. */
export const analysisServes = (a, view) => !!a?.byModel && covers(a.needs, viewNeeds(view, a.point));
