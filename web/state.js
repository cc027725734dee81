// web/state.js: the page's one state object. Panels read it and render; intents
// (actions.js) replace parts of it with update(); renders are batched per frame.

export const VIEWS = ['outliers', 'attention', 'quant', 'train'];

export const DEFAULT_TEXT = 'In the beginning God created the heaven and the earth. And the earth was '
  + 'without form, and void.';

// The tab's defaults (models/RECIPES.md, "Training in the tab"): at d 128 and a
// hot rate vanilla's max ||x||inf usually ends above gated's, but both runs are
// still on the unigram plateau (the loss chart's baseline) when they stop.
export const TRAIN_DEFAULTS = Object.freeze({ variant: 'vanilla', optimizer: 'adamw', layers: 2, hidden: 128, heads: 4,
  seqLen: 64, batch: 16, steps: 400, lr: 0.003, evalEvery: 20 });

let state = {
  phase: 'loading',        // loading | ready | failed
  models: [],              // what the worker describes: {id, title, variant, arch, source, hasTokenizer, config}
  corpus: { heldOut: 0, train: 0 },
  selected: null,          // the model in view
  compare: false,          // side by side with the vanilla model
  view: 'outliers',
  text: DEFAULT_TEXT,
  idsText: '',             // token ids, for models without a tokenizer
  point: 'ffn_res',        // capture point of the outlier view
  scale: 'shared',         // heatmap colours: shared between models or per model
  attn: { layer: 0, head: 0 },
  quant: null,             // the installed quant config; the library's defaultQuant() until changed
  pointNames: [],          // the library's capture points in data-flow order (pointNames())
  ranges: 'static',        // activation ranges: calibrated on held-out text, or from this input
  hist: { point: 'ffn_res', layer: null }, // null = last layer
  maskPos: null,           // BERT: the masked position for top-5 (null = automatic)
  analysis: null,          // {byModel, error, pending}
  // The post-hoc fix of the Quantization view, applied to every model shown
  // (web/fixes.js): kind 'none' | 'smoothquant' | 'rotate' | 'int8split' | 'gptq',
  // SmoothQuant's alpha, LLM.int8()'s threshold; GPTQ's bits are quant.weightBits.
  postHocFix: { kind: 'none', alpha: 0.5, threshold: 6 },
  fixPending: null,        // {fix, t0} while the worker applies (calibrates) a fix
  fixIntentT0: null,       // performance.now() of the fix choice the next perplexities answer (timing)
  fixTable: null,          // every shipped model under every fix: {models, columns, quant, byColumn, pending}
  quantResult: null,
  quantIntentT0: null,     // performance.now() of the quant intent the next result answers (timing)
  ppl: null,
  train: { runs: [], form: { ...TRAIN_DEFAULTS } },
  messages: [],            // [{id, kind: 'error' | 'info', text}]
  timing: {},              // forwardMs, analyzeRoundTripMs, quantMs, quantUpdateMs, pplMs, ...
  memory: 0,
  runtime: null,           // { threads, pool, relaxedSimd, fallback }: which WASM build runs
};

const subscribers = new Set();
let frame = 0;
let before = null;

export const getState = () => state;

/** Merges a patch (or patch(state)) into the state and schedules one render. */
export function update(patch) {
  const p = typeof patch === 'function' ? patch(state) : patch;
  if (!p) return;
  before ??= state;
  state = { ...state, ...p };
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const prev = before;
  before = null;
  for (const fn of subscribers) {
    try {
      fn(state, prev);
    } catch (e) {
      console.error(e);
    }
  }
}

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

/** The models shown: the selected one, after the vanilla model in compare mode. */
export function shownModels(s = state) {
  const sel = s.models.find((m) => m.id === s.selected);
  if (!sel) return [];
  if (!s.compare) return [sel];
  const base = s.models.find((m) => m.variant === 'vanilla' && m.source === 'shipped');
  return base && base.id !== sel.id && sel.hasTokenizer ? [base, sel] : [sel];
}

export const modelById = (id, s = state) => s.models.find((m) => m.id === id);
