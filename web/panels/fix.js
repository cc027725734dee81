// web/panels/fix.js: the Quantization view's post-hoc fix: the control (none,
// SmoothQuant with α, rotation, LLM.int8() with its threshold, GPTQ with the weight
// bits), its progress while calibrating, a heatmap of the activation as the
// quantizer sees it, and the table of every shipped model under every fix.
import { h, fill, caption } from '../dom.js';
import * as act from '../actions.js';
import { FIX_KINDS, fixLabel, fixSpec, requestFixTable, setFix } from '../fixes.js';
import { Heatmap } from '../charts/heatmap.js';
import { heat, modelColor } from '../charts/colors.js';
import { later } from '../charts/frames.js';
import { num, fixed, change } from '../format.js';
import { LINEAR_INPUTS } from '../needs.js'; // the points whose values the linears read

/**
 * LLM.int8()'s threshold slider spans the models shown: from 0.5 to the
 * largest |x| at a linear's input (small models have smaller outliers than
 * the 6 of the paper's 6.7B-parameter ones, so a fixed scale would be empty).
 */
function thresholdMax(s, models) {
  let max = 0;
  for (const m of models) {
    for (const p of s.analysis?.byModel?.[m.id]?.points ?? []) {
      if (LINEAR_INPUTS.includes(p.point) && Number.isFinite(p.maxAbs)) max = Math.max(max, p.maxAbs);
    }
  }
  return max > 1 ? Math.ceil(max) : 16;
}

function paramSlider(id, label, { min, max, step }, onCommit) {
  // editing: between a keystroke (or drag) and its commit the render leaves the
  // inputs alone; after it they show the fix in use, so a refused value goes back.
  const c = { editing: false };
  const commit = (e) => { c.editing = false; onCommit(Number(e.target.value)); };
  const range = h('input', { id, type: 'range', min: String(min), max: String(max), step: String(step),
    on: { input: (e) => { c.editing = true; number.value = e.target.value; }, change: commit } });
  // Typed values go to C as they are: a value it refuses comes back as its message.
  const number = h('input', { id: `${id}-num`, type: 'number', step: String(step), 'aria-label': `${label} (typed)`,
    on: { input: () => { c.editing = true; }, change: commit } });
  c.el = h('div.field.slider.fix-param', {}, h('label', { for: id }, label), range, number);
  return Object.assign(c, { range, number });
}

/** The control; show(s, models) sets it from the state. */
export function fixControl() {
  const radios = FIX_KINDS.map((f) => h('input', { type: 'radio', name: 'posthoc-fix', id: `fix-${f.kind}`, value: f.kind,
    on: { change: () => setFix({ kind: f.kind }) } }));
  const choices = h('div.fix-kinds', { role: 'radiogroup', 'aria-label': 'post-hoc fix' }, FIX_KINDS.map((f, i) =>
    h('label.check', { title: f.cite ?? 'no fix' }, radios[i], f.label)));
  const alpha = paramSlider('fix-alpha', 'α (migration strength)', { min: 0, max: 1, step: 0.05 }, (v) => setFix({ alpha: v }));
  const threshold = paramSlider('fix-threshold', 'threshold |x|', { min: 0.5, max: 16, step: 0.1 }, (v) => setFix({ threshold: v }));
  const gptqBits = h('input#fix-gptq-bits', { type: 'range', min: '2', max: '8', step: '1',
    on: { change: (e) => act.setQuant({ weightBits: Number(e.target.value) }) } });
  const gptqOut = h('output', { for: 'fix-gptq-bits' });
  const gptq = h('div.field.slider.fix-param', {}, h('label', { for: 'fix-gptq-bits' }, 'GPTQ bits (= weight bits)'),
    gptqBits, gptqOut);
  const rotateNote = h('p.help.fix-param', {}, 'A fixed randomized Walsh–Hadamard Q (seed 1): x → xQ, W → WQ, exact in float.');
  const progress = h('progress#fix-progress', { 'aria-label': 'calibrating the fix' });
  const status = h('p.help#fix-status', { 'aria-live': 'polite' });
  const el = h('fieldset.fix-controls#fix-controls', {}, h('legend', {}, 'Post-hoc fix, applied to every model shown'),
    h('div.row', {}, choices, alpha.el, threshold.el, gptq, rotateNote), h('div.fix-state', {}, progress, status));

  const show = (s, models) => {
    const want = s.fixPending?.fix ?? s.postHocFix;
    for (const r of radios) r.checked = r.value === want.kind;
    alpha.el.hidden = want.kind !== 'smoothquant';
    threshold.el.hidden = want.kind !== 'int8split';
    gptq.hidden = want.kind !== 'gptq';
    rotateNote.hidden = want.kind !== 'rotate';
    const tmax = thresholdMax(s, models);
    threshold.range.max = String(tmax);
    for (const [c, v] of [[alpha, s.postHocFix.alpha], [threshold, s.postHocFix.threshold]]) {
      if (c.editing) continue;
      c.range.value = String(v);
      c.number.value = String(v);
    }
    gptqBits.value = String(s.quant.weightBits);
    gptqOut.textContent = String(s.quant.weightBits);
    // Calibrating: the fix was just chosen, or a quantized pass needs a copy the
    // worker has not made yet (GPTQ at new weight bits, another model shown).
    const spec = fixSpec(s.postHocFix, s.quant);
    const qr = s.quantResult;
    const stale = spec && qr?.pending && models.some((m) => qr.byModel?.[m.id] && qr.byModel[m.id].fix !== spec);
    const busy = !!s.fixPending || stale;
    progress.hidden = !busy;
    el.dataset.applied = spec ?? 'none';
    el.dataset.busy = String(busy);
    if (busy) {
      const what = fixLabel(want.kind);
      status.textContent = want.kind === 'none' ? 'Back to the models as trained…'
        : ['smoothquant', 'gptq'].includes(want.kind)
          ? `Calibrating ${what} on windows of the training slice, for ${models.length} model${models.length > 1 ? 's' : ''}…`
          : `Applying ${what}…`;
    } else if (!spec) {
      status.textContent = 'The models as trained: the architectural fixes alone (chips above).';
    } else {
      const r = qr?.byModel?.[models[0]?.id];
      const rep = r?.fix === spec ? r.fixes?.[r.fixes.length - 1] : null;
      const calib = rep?.calibrationWindows ? ` Calibrated on ${rep.calibrationWindows} windows of the training slice.` : '';
      status.textContent = rep ? `${rep.fix} covers ${rep.covers}.${calib}${rep.errorRatio != null
        ? ` Layer-output error ${num(rep.errorRatio, 3)}× round to nearest's on the calibration windows.` : ''}` : '';
    }
  };
  return { el, show };
}

/** Per model shown, |x| of the histogram's activation (tokens × dims) as the quantizer sees it. */
export function heatFigure(charts, m, i, r, nShown, afterFix) {
  const { fig, title, hm, text } = charts.get(`fixheat:${m.id}`, () => {
    const f = h('figure.fix-heat', { dataset: { model: m.id } });
    const t = h('h4');
    f.append(t);
    const map = new Heatmap(f, {});
    const x = h('figcaption.help');
    f.append(x);
    return { fig: f, title: t, hm: map, text: x };
  });
  const hi = r.hist, x = r.heat;
  fill(title, h('span.dot', {}), `${m.title}: |x| at ${hi.point}, layer ${hi.layer}${afterFix ? ', after the fix' : ''}`);
  title.querySelector('.dot').style.background = modelColor(m, i);
  hm.canvas.hidden = !x;
  if (!x) { text.textContent = 'This model has no such activation.'; return fig; }
  later(`fixheat:${m.id}`, () => hm.draw({ data: x.data, rows: x.rows, cols: x.cols, vmax: x.maxAbs, abs: true, cmap: heat,
    width: nShown > 1 ? 540 : 760, colTitle: 'hidden dimension', rowTitle: 'token', imageH: 160,
    ariaLabel: `|x| of ${hi.point} in layer ${hi.layer}, ${x.rows} tokens × ${x.cols} dimensions`,
    tooltip: (row, col, v) => [`token ${row}, dim ${col}`, `x = ${num(v)}`] }));
  text.textContent = `max |x| ${num(x.maxAbs)}${afterFix ? ': what the quantizer sees at this point (x Q after a rotation, x / s after SmoothQuant; unchanged where the fix does not act here)' : ''}.`;
  text.dataset.maxAbs = String(x.maxAbs);
  return fig;
}

/** Rows the shipped models, columns the fixes, cells perplexity under the quant settings shown. */
export function fixTable(s) {
  const t = s.fixTable;
  if (!t) {
    const n = s.models.filter((m) => m.source === 'shipped' && m.hasTokenizer).length;
    return h('p.help', {}, h('button#fix-table-fill', { type: 'button', on: { click: requestFixTable } }, 'Fill the table'),
      ` every shipped model under every fix at the bits above: ${n * FIX_KINDS.length} evaluations, each fix calibrated `
      + 'on the training slice (seconds each on this page; the sliders wait for the cell in progress).');
  }
  const models = t.models.map((id) => s.models.find((m) => m.id === id)).filter(Boolean);
  const head = t.columns.map((c) => h(c.kind === s.postHocFix.kind ? 'th.chosen' : 'th',
    { scope: 'col', dataset: { kind: c.kind } }, c.spec ?? 'none'));
  const bits = `W${t.quant.weightBits}A${t.quant.actBits}`;
  const rows = models.map((m) => {
    const cells = t.columns.map((c) => t.byColumn[c.kind]?.[m.id]);
    const fp = t.byColumn.none?.[m.id]?.fpPpl;
    const best = Math.min(...cells.map((c) => (Number.isFinite(c?.qPpl) ? c.qPpl : Infinity)));
    return h('tr', { dataset: { model: m.id } }, h('th', { scope: 'row' }, m.title), cells.map((c, k) => {
      const kind = t.columns[k].kind;
      if (!c) return h('td.num.pending', { dataset: { kind } }, t.pending ? '…' : '–');
      if (c.error || c.unavailable) return h('td.off', { dataset: { kind }, title: c.error ?? c.unavailable }, 'n/a');
      return h(c.qPpl === best ? 'td.num.best' : 'td.num', { dataset: { kind, value: String(c.qPpl), fp: String(c.fpPpl) } },
        fixed(c.qPpl, 3), h('span.delta', {}, ` ${change(fp ?? c.fpPpl, c.qPpl)}`));
    }));
  });
  return h('div.table-wrap', {},
    h('table.numbers.fix-table#fix-table', {},
      h('caption', {}, `Held-out perplexity at ${bits} (change against the same model in float); bold: the best per model`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'model'), head)),
      h('tbody', {}, rows)),
    caption(t.error ? `The table stopped: ${t.error}` : t.pending ? 'Filling in, one cell after another, the chosen fix first…'
      : 'Down a column: architectural fixes (the rows) under one post-hoc fix. Along a row: post-hoc fixes on one architecture.'));
}
