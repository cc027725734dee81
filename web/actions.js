// web/actions.js: the intents panels send. Each changes the state, then ensure()
// asks the worker for whatever the visible view needs and is out of date.
import { getState, update, shownModels } from './state.js';
import { connect as connectFixes, ensureFixTable, fixSpec } from './fixes.js';
import { download } from './save.js';
import { covers, union, viewNeeds } from './needs.js';

// What the intents keep between calls that nothing renders, in one place: the
// worker connection, the keys of the last requests (so a request is sent once
// per change), the debounce timer of perplexity, and two counters.
const session = { client: null, sent: { analysis: null, needs: null, quant: null, ppl: null }, pplTimer: 0, msgId: 0,
  runCount: 0, restore: null, restarts: [] };

// ---------------------------------------------------------------- messages

/** Shows a message; one per source, so a later success can clear an earlier error. */
export function message(kind, text, source = 'page') {
  const id = ++session.msgId;
  update((s) => ({ messages: [...s.messages.filter((m) => m.source !== source), { id, kind, text, source }] }));
  if (kind === 'info') setTimeout(() => dismiss(id), 8000);
}

export function dismiss(id) {
  update((s) => ({ messages: s.messages.filter((m) => m.id !== id) }));
}

export function clear(source) {
  update((s) => (s.messages.some((m) => m.source === source)
    ? { messages: s.messages.filter((m) => m.source !== source) } : null));
}

// ------------------------------------------------------------------- boot

/** Threads the page asks for: ?threads=N (the pthreads build), else 1. */
function requestedThreads() {
  const n = Number(new URLSearchParams(location.search).get('threads') ?? 1);
  return Number.isInteger(n) && n >= 1 && n <= 16 ? n : 1;
}

/** Starts the page on client c; restore() then sets the controls (url.js: from the address). */
export async function boot(c, { restore = null } = {}) {
  session.client = c;
  session.restore = restore;
  connectFixes(c);
  try {
    const { value } = await session.client.request('control', 'init', { threads: requestedThreads() });
    const models = value.models;
    if (!models.length) throw new Error(`no model could be loaded${value.failed.length ? `: ${value.failed.join('; ')}` : ''}`);
    const first = models.find((m) => m.variant === 'vanilla') ?? models[0];
    update({ phase: 'ready', models, selected: first.id, corpus: value.corpus, memory: value.memory,
      runtime: value.runtime, quant: value.defaults.quant, pointNames: value.defaults.points });
    session.restore?.();
    if (value.runtime.fallback) {
      message('info', `Running on one thread: ${value.runtime.fallback}`, 'threads');
    }
    if (value.failed.length) message('error', `Some models failed to load: ${value.failed.join('; ')}`, 'boot');
    if (!value.corpus.heldOut) {
      message('info', 'The corpus slice is missing (build/web/): perplexities and training are off. '
        + 'Make it with: scripts/kjv.sh && node scripts/web-corpus.mjs', 'corpus');
    }
    ensure();
  } catch (e) {
    update({ phase: 'failed' });
    message('error', `The page could not start: ${e.message}`, 'boot');
  }
}

export function onWorkerEvent(ev) {
  if (ev.event === 'crash') { message('error', ev.message, 'worker'); return; }
  if (ev.event === 'died') { recover(ev.message); return; }
  if (ev.event === 'train') trainEvent(ev);
}

/**
 * The worker is gone (client.js noticed): a fresh one loads the shipped models
 * again and restore() brings back the model and settings. What lived only in
 * the old worker (imported and trained models, runs in progress) is lost.
 */
async function recover(why) {
  const now = performance.now();
  session.restarts = [...session.restarts.filter((t) => now - t < 60000), now];
  session.sent = { analysis: null, needs: null, quant: null, ppl: null };
  const live = (r) => ['starting', 'running', 'paused'].includes(r.status);
  update((s) => ({ phase: 'loading', train: { ...s.train,
    runs: s.train.runs.map((r) => (live(r) ? { ...r, status: 'failed', error: 'the worker stopped' } : r)) } }));
  if (session.restarts.length > 3) {
    update({ phase: 'failed' });
    message('error', `The worker stopped (${why}) for the fourth time in a minute: reload the page.`, 'worker');
    return;
  }
  const lost = getState().models.filter((m) => m.source !== 'shipped').map((m) => m.title);
  message('error', `The worker stopped (${why}): restarting it with the same model and settings…`, 'worker');
  session.client.restart();
  await boot(session.client, { restore: session.restore });
  if (getState().phase !== 'ready') return;
  message('info', `The worker stopped (${why}) and was restarted with the same model and settings`
    + `${lost.length ? `; lost with it: ${lost.join(', ')} (import or train them again)` : ''}.`, 'worker');
}

// ------------------------------------------------------------- computing

const inputOf = (s) => ({ text: s.text, idsText: s.idsText });

/** Requests what the visible view needs and has not been asked for yet. */
export function ensure() {
  const s = getState();
  if (s.phase !== 'ready') return;
  const models = shownModels(s).map((m) => m.id);
  if (!models.length) return;
  if (s.view !== 'train') {
    // The analysis forward computes what the visible view draws (needs.js). A
    // view switch on the same input adds what the new view needs to what was
    // asked before, so that going back costs nothing; new input asks afresh.
    const key = JSON.stringify([models, inputOf(s), s.point]);
    const need = viewNeeds(s.view, s.point);
    const same = key === session.sent.analysis;
    if (!same || !covers(session.sent.needs, need)) {
      session.sent.analysis = key;
      session.sent.needs = same ? union(session.sent.needs, need) : need;
      analyze(models, s, session.sent.needs);
    }
  }
  if (s.view === 'quant') {
    const qk = JSON.stringify([models, inputOf(s), s.quant, s.ranges, s.hist, s.maskPos, s.postHocFix]);
    if (qk !== session.sent.quant) { session.sent.quant = qk; quantize(models, s); }
    const pk = JSON.stringify([models, s.quant, s.postHocFix]);
    if (pk !== session.sent.ppl) {
      session.sent.ppl = pk;
      update({ ppl: { ...s.ppl, pending: true } });
      clearTimeout(session.pplTimer);
      // Perplexity takes many windows: start it when the sliders rest (a fix
      // just applied is no slider: at once).
      const fixJustApplied = s.fixIntentT0 !== null && s.ppl?.fixT0 !== s.fixIntentT0;
      session.pplTimer = setTimeout(() => perplexity(models, getState()), fixJustApplied ? 0 : 200);
    }
    ensureFixTable(s);
  }
}

function analyze(models, s, needs) {
  const t0 = performance.now();
  update({ analysis: { ...s.analysis, pending: true } });
  session.client.request('analyze', 'analyze', { models, input: inputOf(s), point: s.point, needs }).then((r) => {
    if (r.superseded) return;
    clear('input');
    const first = r.value[models[0]];
    update((st) => ({
      analysis: { byModel: r.value, models, point: s.point, needs, input: inputOf(s), error: null, pending: false, t0 },
      timing: { ...st.timing, forwardMs: first.ms, forwardT: first.T, analyzeWorkerMs: r.workerMs, analyzeRoundTripMs: r.roundTripMs },
    }));
  }, (e) => {
    update((st) => ({ analysis: { ...st.analysis, pending: false, error: e.message } }));
    message('error', e.message, 'input');
  });
}

function quantize(models, s) {
  const t0 = s.quantIntentT0 ?? performance.now(); // the slider move this answers, when there was one
  update({ quantResult: { ...s.quantResult, pending: true }, quantIntentT0: null });
  session.client.request('quant', 'quant', {
    models, input: inputOf(s), quant: s.quant, ranges: s.ranges, histPoint: s.hist.point,
    histLayer: s.hist.layer, maskPos: s.maskPos, fix: fixSpec(s.postHocFix, s.quant),
  }).then((r) => {
    if (r.superseded) return;
    clear('quant');
    update((st) => ({
      quantResult: { byModel: r.value, models, input: inputOf(s), error: null, pending: false, t0, quant: s.quant,
        ranges: s.ranges, hist: s.hist },
      timing: { ...st.timing, quantWorkerMs: r.workerMs, quantRoundTripMs: r.roundTripMs },
    }));
  }, (e) => {
    update((st) => ({ quantResult: { ...st.quantResult, pending: false, error: e.message } }));
    message('error', `Quantization failed: ${e.message}`, 'quant');
  });
}

function perplexity(models, s) {
  const t0 = performance.now();
  const fix = fixSpec(s.postHocFix, s.quant);
  session.client.request('ppl', 'ppl', { models, quant: s.quant, fix }).then((r) => {
    if (r.superseded) return;
    // fixT0: when the fix these perplexities answer was chosen (the page times it until they are drawn)
    update((st) => ({ ppl: { byModel: r.value, models, pending: false, error: null, quant: s.quant, fix, fixT0: s.fixIntentT0 },
      timing: { ...st.timing, pplMs: performance.now() - t0 } }));
  }, (e) => {
    update((st) => ({ ppl: { ...st.ppl, pending: false, error: e.message } }));
    message('error', `Perplexity failed: ${e.message}`, 'ppl');
  });
}

// ---------------------------------------------------------------- intents

function set(patch) {
  update(patch);
  ensure();
}

export const setView = (view) => set({ view });
export const setText = (text) => set({ text, maskPos: null });
export const setIdsText = (idsText) => set({ idsText, maskPos: null });
export const setPoint = (point) => set({ point });
export const setScale = (scale) => set({ scale });
export const setCompare = (compare) => set({ compare });
export const setAttn = (patch) => update((s) => ({ attn: { ...s.attn, ...patch } }));
export const setRanges = (ranges) => set({ ranges, quantIntentT0: performance.now() });
export const setHist = (patch) => set({ hist: { ...getState().hist, ...patch }, quantIntentT0: performance.now() });
export const setMaskPos = (maskPos) => set({ maskPos, quantIntentT0: performance.now() });

/** A quant setting changed (slider, select, checkbox): t0 times the update. */
export function setQuant(patch) {
  set({ quant: { ...getState().quant, ...patch }, quantIntentT0: performance.now() });
}

export function selectModel(id) {
  const patch = selectPatch(getState(), id);
  if (patch) set(patch);
}

/** What selecting model id changes in state s (null: no such model); url.js restores through it too. */
export function selectPatch(s, id) {
  const m = s.models.find((x) => x.id === id);
  if (!m) return null;
  const patch = { selected: id, maskPos: null };
  if (!m.hasTokenizer && !s.idsText) {
    // A sample id sequence inside the vocabulary, for models without a tokenizer.
    const V = m.config.vocabSize;
    patch.idsText = Array.from({ length: 16 }, (_, i) => (i * 37 + 5) % V).join(' ');
  }
  const L = m.config.nLayers;
  if (s.attn.layer >= L) patch.attn = { ...s.attn, layer: L - 1 };
  if (s.hist.layer !== null && s.hist.layer >= L) patch.hist = { ...s.hist, layer: null };
  return patch;
}

/** A fix chip: switch to the model trained with that change (again: back to vanilla). */
export function toggleVariant(variant) {
  const s = getState();
  const cur = s.models.find((m) => m.id === s.selected);
  const pick = (v) => s.models.find((m) => m.variant === v && m.source === 'shipped')
    ?? s.models.find((m) => m.variant === v);
  const target = cur?.variant === variant ? pick('vanilla') : pick(variant);
  if (target) selectModel(target.id);
}

export async function importFiles(fileList) {
  const files = Array.from(fileList ?? []);
  if (!files.length) return;
  message('info', `Importing ${files.map((f) => f.name).join(', ')}…`, 'import');
  try {
    const { value } = await session.client.request('control', 'import', { files });
    update((s) => ({ models: [...s.models, value.model], memory: value.memory }));
    selectModel(value.model.id);
    message('info', `Loaded ${value.model.title}.${value.model.note ? ` ${value.model.note}` : ''}`, 'import');
  } catch (e) {
    message('error', e.message, 'import');
  }
}

// ---------------------------------------------------------------- training

export const setTrainForm = (patch) => update((s) => ({ train: { ...s.train, form: { ...s.train.form, ...patch } } }));

function patchRun(runId, fn) {
  update((s) => ({ train: { ...s.train, runs: s.train.runs.map((r) => (r.runId === runId ? { ...r, ...fn(r) } : r)) } }));
}

export async function trainStart() {
  const s = getState();
  const f = s.train.form;
  const runId = `run-${++session.runCount}`;
  const label = `${f.variant} · ${f.optimizer} · ${f.layers}L d${f.hidden} · #${session.runCount}`;
  const run = { runId, label, variant: f.variant, optimizer: f.optimizer, status: 'starting', steps: f.steps, step: 0,
    curve: { step: [], loss: [] }, evals: { step: [], valLoss: [], maxInf: [], kurt: [], rmsKurt: [], corr: [] },
    tokensPerS: 0, unigramLoss: null, warning: null, error: null, t0: performance.now() };
  update((st) => ({ train: { ...st.train, runs: [...st.train.runs, run] } }));
  try {
    await session.client.request('control', 'trainStart', {
      runId, variant: f.variant, label,
      size: { layers: f.layers, hidden: f.hidden, heads: f.heads, seqLen: f.seqLen, batch: f.batch },
      options: { steps: f.steps, lr: f.lr, optimizer: f.optimizer, evalEvery: f.evalEvery, seed: session.runCount },
    });
  } catch (e) {
    patchRun(runId, () => ({ status: 'failed', error: e.message }));
    message('error', e.message, 'train');
  }
}

function trainEvent(ev) {
  patchRun(ev.runId, (r) => {
    const p = {};
    if (ev.status) p.status = ev.status;
    if (ev.warning) p.warning = ev.warning;
    if (ev.optimizer) p.optimizer = ev.optimizer; // the trainer's own word for what it runs
    if (ev.unigramLoss != null) p.unigramLoss = ev.unigramLoss;
    if (ev.error) p.error = ev.error;
    if (ev.step) {
      p.step = ev.step.step;
      p.lr = ev.step.lr;
      p.curve = { step: [...r.curve.step, ev.step.step], loss: [...r.curve.loss, ev.step.loss] };
      p.tokensPerS = ev.tokensPerS;
    }
    if (ev.eval) {
      const e = ev.eval;
      p.evals = { step: [...r.evals.step, e.step], valLoss: [...r.evals.valLoss, e.valLoss],
        maxInf: [...r.evals.maxInf, e.maxInfNorm], kurt: [...r.evals.kurt, e.maxKurtosis],
        rmsKurt: [...r.evals.rmsKurt, e.avgRmsKurtosis], corr: [...r.evals.corr, e.avgInputCorr] };
    }
    return p;
  });
  if (ev.error) message('error', `Training ${ev.runId} stopped: ${ev.error}`, 'train');
}

export async function trainPause(runId, pause) {
  try {
    const { value } = await session.client.request('control', 'trainStatus', { runId, status: pause ? 'paused' : 'running' });
    patchRun(runId, () => ({ status: value }));
  } catch (e) {
    message('error', e.message, 'train');
  }
}

/** Downloads config.json and model.safetensors of a run. */
export async function trainDownload(runId) {
  try {
    const { value } = await session.client.request('control', 'trainFiles', { runId });
    download('config.json', value.config, 'application/json');
    download('model.safetensors', value.safetensors, 'application/octet-stream');
    message('info', 'Downloaded config.json and model.safetensors: drop both back on the page to load them.', 'train');
  } catch (e) {
    message('error', e.message, 'train');
  }
}

/** Puts a copy of the run's model into the model picker and shows it. */
export async function trainOpen(runId) {
  try {
    const { value } = await session.client.request('control', 'trainOpen', { runId });
    update((s) => ({ models: [...s.models, value] }));
    selectModel(value.id);
    setView('outliers');
  } catch (e) {
    message('error', e.message, 'train');
  }
}
