// web/panels/train.js: train a tiny model from scratch in the worker on the bundled
// corpus slice, one run per variant and optimiser, with loss, max ||x||_inf, kurtosis
// and signal propagation on shared axes.
import { h, fill, select, caption } from '../dom.js';
import * as act from '../actions.js';
import { LineChart, align } from '../charts/line.js';
import { VARIANT_COLORS } from '../charts/colors.js';
import { pool } from '../charts/pool.js';
import { getState } from '../state.js';
import { num, fixed } from '../format.js';

const VARIANTS = [
  { value: 'vanilla', label: 'vanilla softmax' }, { value: 'clipped', label: 'clipped softmax' },
  { value: 'gated', label: 'gated attention' }, { value: 'op', label: 'OP block' }, { value: 'softmax1', label: 'softmax1' }];
const DASHES = [undefined, [6, 4], [2, 3], [8, 3, 2, 3]];
// Values are the library's names (createTrainer's optimizer option).
const OPTIMIZERS = [{ value: 'adamw', label: 'AdamW' }, { value: 'soap', label: 'SOAP' }, { value: 'shampoo', label: 'Shampoo' }];
const OPTIMIZER_HINTS = {
  adamw: 'AdamW: one step size per weight (diagonal).',
  soap: 'SOAP (Vyas et al. 2024): Adam in the eigenbases of GGᵀ and GᵀG of each weight matrix, refreshed every few steps; '
    + 'its first step only builds them. He et al. (2024) find such non-diagonal preconditioning gives far fewer outlier features.',
  shampoo: 'Shampoo: L^(−1/4) G R^(−1/4) from accumulated GGᵀ and GᵀG, with Adam’s step length.',
};
// createTrainer would give SOAP its own default rate, but the form always sends
// the one shown: switching optimiser leaves it as it is.
const LR_HINT = ' The learning rate above is used as given with every optimiser; switching leaves it alone.';

function numberField(id, label, value, { min, max, step = 1 }, onChange) {
  const input = h('input', { id, type: 'number', min: String(min), max: String(max), step: String(step), value: String(value),
    on: { change: (e) => {
      const v = Number(e.target.value);
      if (!(v >= min && v <= max)) {
        act.message('error', `${label} must be between ${min} and ${max}.`, 'train');
        e.target.value = String(value);
        return;
      }
      onChange(v);
    } } });
  return h('div.field', {}, h('label', { for: id }, label), input);
}

export function mount(root) {
  // novalidate: the fields check themselves on change and say what is wrong.
  const form = h('form.train-form', { novalidate: true, on: { submit: (e) => { e.preventDefault(); act.trainStart(); } } });
  const runsBox = h('div.runs');
  const figs = [h('figure.chart'), h('figure.chart'), h('figure.chart'), h('figure.chart#train-corr')];
  const charts = [
    new LineChart(figs[0], { xTitle: 'step', yTitle: 'loss (nats)', height: 230, format: (v) => num(v, 4), label: 'training and validation loss' }),
    new LineChart(figs[1], { xTitle: 'step', yTitle: 'max ‖x‖∞', height: 230, format: (v) => num(v, 4), label: 'max infinity norm during training' }),
    new LineChart(figs[2], { xTitle: 'step', yTitle: 'max kurtosis', height: 230, log: true, format: (v) => num(v, 4), label: 'kurtosis during training' }),
    new LineChart(figs[3], { xTitle: 'step', yTitle: 'avg input-wise correlation', height: 230, yRange: [0, 1], format: (v) => fixed(v, 3),
      label: 'signal propagation (mean input-wise correlation) during training' }),
  ];
  figs[0].append(h('figcaption', {}, 'Loss: training steps (thin) and validation (dotted) on held-out blocks of the slice. '
    + 'Grey: the context-free baseline, held-out bytes predicted from byte counts alone; a run whose validation loss '
    + 'has not dropped below it is still on the unigram plateau.'));
  figs[1].append(h('figcaption', {}, 'Max ‖x‖∞ at the LayerNorm input (x + FFN(x)), max over layers, mean over 16 validation sequences. '
    + 'Large values while the loss sits on the baseline are a residual stream grown on the plateau, not yet the paper’s outlier features.'));
  figs[2].append(h('figcaption', {}, 'Max kurtosis over layers (log): heavy tails appear with the outliers.'));
  figs[3].append(h('figcaption', {}, 'Signal propagation (He et al. 2024): the mean cosine similarity between different tokens’ layer '
    + 'outputs, mean over layers, on the same 16 sequences. Towards 1 the tokens look alike (rank collapse), which goes with outlier features.'));
  const note = h('p.help');
  const optHint = h('p.help#train-optimizer-hint');
  fill(root,
    caption('Trains a tiny byte-level BERT (masked LM) from scratch here in the tab, with the project’s C trainer '
      + 'compiled to WebAssembly (AdamW, SOAP or Shampoo; warmup + cosine). Start several variants or optimisers: they take turns, '
      + 'on the same axes.'),
    form, optHint, note, runsBox, h('div.charts4', {}, figs));

  let built = false;
  let lastRuns = null;
  const rows = pool();
  return (s, prev) => {
    if (s.view !== 'train') return;
    const f = s.train.form;
    if (!built) {
      built = true;
      const set = (k) => (v) => act.setTrainForm({ [k]: v });
      fill(form,
        h('div.field', {}, h('label', { for: 'train-variant' }, 'Variant'), select('train-variant', VARIANTS, f.variant, set('variant'))),
        h('div.field', {}, h('label', { for: 'train-optimizer' }, 'Optimiser'),
          select('train-optimizer', OPTIMIZERS, f.optimizer, set('optimizer'), { 'aria-describedby': 'train-optimizer-hint' })),
        numberField('train-layers', 'Layers', f.layers, { min: 1, max: 4 }, set('layers')),
        h('div.field', {}, h('label', { for: 'train-hidden' }, 'Hidden size'),
          select('train-hidden', ['32', '64', '128'], String(f.hidden), (v) => act.setTrainForm({ hidden: Number(v) }))),
        h('div.field', {}, h('label', { for: 'train-heads' }, 'Heads'),
          select('train-heads', ['1', '2', '4'], String(f.heads), (v) => act.setTrainForm({ heads: Number(v) }))),
        h('div.field', {}, h('label', { for: 'train-seq' }, 'Sequence length'),
          select('train-seq', ['32', '64', '128'], String(f.seqLen), (v) => act.setTrainForm({ seqLen: Number(v) }))),
        numberField('train-batch', 'Batch', f.batch, { min: 1, max: 32 }, set('batch')),
        numberField('train-steps', 'Steps', f.steps, { min: 5, max: 5000 }, set('steps')),
        numberField('train-lr', 'Learning rate', f.lr, { min: 0.00001, max: 0.05, step: 'any' }, set('lr')),
        h('button#train-start.primary', { type: 'submit' }, 'Train'));
    }
    form.querySelector('#train-start').disabled = !s.corpus.train;
    optHint.textContent = OPTIMIZER_HINTS[f.optimizer] + LR_HINT;
    note.textContent = s.corpus.train
      ? `Corpus slice: ${(s.corpus.train / 1024).toFixed(0)} KiB of the King James Bible (training blocks), `
        + 'split again into training and validation blocks by the trainer.'
      : 'The corpus slice is missing: run scripts/kjv.sh && node scripts/web-corpus.mjs, then reload.';
    if (s.train.runs === lastRuns) return;
    lastRuns = s.train.runs;
    const runs = s.train.runs;
    // Rows persist (buttons stay clickable while progress streams in); only their text changes.
    fill(runsBox, runs.map((r) => {
      const row = rows.get(r.runId, () => {
        const dot = h('span.dot', {});
        dot.style.background = VARIANT_COLORS[r.variant];
        const el = h('div.run', { dataset: { run: r.runId } });
        const progress = h('progress', { 'aria-label': `${r.label} progress` });
        const status = h('span.run-status');
        const buttons = h('span.run-buttons');
        const notes = h('div.run-notes');
        el.append(dot, h('strong', {}, r.label), progress, buttons, status, notes); // buttons before the changing text: they never move
        return { el, progress, status, buttons, notes, shownStatus: null };
      });
      row.el.dataset.status = r.status;
      row.progress.max = r.steps;
      row.progress.value = r.step;
      const last = r.evals.step.length - 1;
      row.status.dataset.step = String(r.step);
      row.status.textContent = `${r.status} · step ${r.step}/${r.steps}`
        + (r.curve.loss.length ? ` · loss ${fixed(r.curve.loss.at(-1), 3)}` : '')
        + (last >= 0 ? ` · max ‖x‖∞ ${num(r.evals.maxInf[last], 3)} · corr ${fixed(r.evals.corr[last], 3)}` : '')
        + (r.tokensPerS ? ` · ${Math.round(r.tokensPerS)} tokens/s` : '');
      if (row.shownStatus !== r.status) {
        row.shownStatus = r.status;
        const live = r.status !== 'starting' && r.status !== 'failed';
        fill(row.buttons,
          r.status === 'running' || r.status === 'paused'
            ? h('button', { type: 'button', on: { click: () => act.trainPause(r.runId, getState().train.runs.find((x) => x.runId === r.runId)?.status === 'running') } },
              r.status === 'running' ? 'Pause' : 'Resume') : null,
          live ? h('button', { type: 'button', on: { click: () => act.trainOpen(r.runId) } }, 'Open in viewer') : null,
          live ? h('button', { type: 'button', on: { click: () => act.trainDownload(r.runId) } }, 'Download') : null);
      }
      fill(row.notes, r.warning ? h('p.help.warn', {}, r.warning) : null, r.error ? h('p.help.warn', {}, r.error) : null);
      return row.el;
    }));
    rows.sweep();
    if (!runs.length) return;
    const color = (r) => VARIANT_COLORS[r.variant];
    const dash = (r, i) => DASHES[runs.filter((x, k) => k < i && x.variant === r.variant).length % DASHES.length];
    // Smooth the per-step loss a little so runs can be compared (EMA 0.9), exact values in evals.
    const ema = (ys) => { let m = null; return ys.map((y) => (m = m === null ? y : 0.9 * m + 0.1 * y)); };
    const lossSeries = runs.flatMap((r, i) => [
      { label: `${r.label} train`, color: color(r), dash: dash(r, i) },
      { label: `${r.label} val`, color: color(r), dash: [2, 4] }]);
    const lossData = align(runs.flatMap((r) => [{ x: r.curve.step, y: ema(r.curve.loss) }, { x: r.evals.step, y: r.evals.valLoss }]));
    // Every run reads the same slice, so one baseline serves them all.
    const baseline = runs.find((r) => Number.isFinite(r.unigramLoss))?.unigramLoss;
    if (baseline !== undefined) {
      lossSeries.push({ label: 'context-free baseline (byte counts)', color: '#8a8a8e', dash: [1, 3] });
      lossData.push(lossData[0].map(() => baseline));
    }
    charts[0].set(lossSeries, lossData);
    const ev = (key) => align(runs.map((r) => ({ x: r.evals.step, y: r.evals[key] })));
    const evSeries = runs.map((r, i) => ({ label: r.label, color: color(r), dash: dash(r, i) }));
    charts[1].set(evSeries, ev('maxInf'), { points: true });
    charts[2].set(evSeries, ev('kurt'), { points: true });
    charts[3].set(evSeries, ev('corr'), { points: true });
  };
}
