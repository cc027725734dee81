// web/panels/quant.js: the quantization view: bit-width sliders and settings, a
// post-hoc fix (panels/fix.js), then live per-layer SQNR, one activation's histogram
// under its quantization grid and its heatmap, FP vs quantized perplexity on held-out
// text beside every shipped model under every fix, and top-5 predictions FP vs quantized.
import { h, fill, select, caption } from '../dom.js';
import * as act from '../actions.js';
import { shownModels, update, getState } from '../state.js';
import { Histogram } from '../charts/histogram.js';
import { pool } from '../charts/pool.js';
import { later, drawn } from '../charts/frames.js';
import { LineChart } from '../charts/line.js';
import { modelColor, quality, css, ink } from '../charts/colors.js';
import { OUTLIER_POINTS, pointLabel } from './outliers.js';
import { tokenStrip } from './tokens.js';
import { num, db, change, piece, pct, ms } from '../format.js';
import { fixControl, fixTable, heatFigure } from './fix.js';

const ESTIMATORS = [
  { value: 'minmax', label: 'min-max' }, { value: 'running_minmax', label: 'running min-max (EMA)' },
  { value: 'percentile', label: 'percentile' }, { value: 'mse', label: 'MSE-optimal' }];
const PRESETS = [['W8A8 (paper)', 8, 8], ['W8A6', 8, 6], ['W8A4', 8, 4], ['W4A8', 4, 8], ['W16A16', 16, 16]];

function slider(id, label, value, onInput) {
  const out = h('output', { for: id, id: `${id}-out` }, String(value));
  const input = h('input', { id, type: 'range', min: '2', max: '16', step: '1', value: String(value),
    'aria-valuetext': `${value} bits`,
    on: { input: (e) => { out.textContent = e.target.value; onInput(Number(e.target.value)); } } });
  return { el: h('div.field.slider', {}, h('label', { for: id }, label), input, out, h('span.unit', {}, 'bits')), input, out };
}

export function mount(root) {
  const controls = quantControls();
  const fixCtl = fixControl();
  const pplBox = h('div.ppl-cards#ppl');
  const fixTableBox = h('div#fix-table-box');
  const hists = h('div.models');
  const heats = h('div.models');
  const sqnrFig = h('figure.chart.wide');
  const sqnrTable = h('div.table-wrap');
  const top5 = h('div.models');
  const results = h('div#quant-results', { 'aria-live': 'polite' });
  fill(results,
    h('h3', {}, 'Perplexity on held-out text, float vs quantized'), pplBox,
    h('h3', {}, 'Architectural against post-hoc fixes'), fixTableBox,
    h('h3', {}, 'One activation and its quantization grid'),
    caption('Blue lines: the levels of the quantization grid, which spans the shaded range between the red clip '
      + 'lines. An outlier stretches the range, so nearly all values fall into a handful of levels around zero; '
      + 'the other levels are wasted.'),
    controls.histTools, hists,
    caption('The same activation as tokens × hidden dimensions, colour |x|: with a post-hoc fix, what the quantizer '
      + 'sees there. A rotation spreads an outlier column over every dimension; SmoothQuant divides it down.'),
    heats,
    h('h3', {}, 'Signal-to-quantization-noise ratio per layer'),
    caption('SQNR = 10·log10(‖x‖² / ‖x − x̂‖²) of the chosen activation; every 6 dB is one bit of precision left. '
      + 'Outliers cost vanilla most where they live.'),
    h('div.sqnr-row', {}, sqnrFig, sqnrTable),
    h('h3', {}, 'Top-5 predictions, float vs quantized'),
    caption('Click a token to mask it (BERT) and see whether the quantized model still guesses it.'),
    top5);
  fill(root, controls.form, fixCtl.el, results);
  const sqnrChart = new LineChart(sqnrFig, { xTitle: 'layer', yTitle: 'SQNR (dB)', height: 220, integerX: true,
    format: (v) => num(v, 3), label: 'SQNR per layer' });
  sqnrFig.append(h('figcaption', {}, 'Higher is better; the legend and tooltip give exact values.'));
  let lastRendered = null;
  let lastFixT0 = null;
  const last = {}; // what was drawn: redraw only when it changed
  const charts = pool(); // canvases kept between renders

  return (s, prev) => {
    if (s.view !== 'quant' || !s.quant) return;
    const models = shownModels(s);
    const L = Math.max(1, ...models.map((m) => m.config.nLayers));
    controls.show(s, L);
    fixCtl.show(s, models);
    if (s.fixTable !== last.ft || s.postHocFix !== last.fx) {
      Object.assign(last, { ft: s.fixTable, fx: s.postHocFix });
      fill(fixTableBox, fixTable(s));
    }

    // Perplexity cards (their own request: they arrive after the rest).
    const p = s.ppl;
    if (p?.byModel !== last.p || p?.pending !== last.pp || s.models !== last.pm) {
      Object.assign(last, { p: p?.byModel, pp: p?.pending, pm: s.models });
      fill(pplBox, models.map((m, i) => pplCard(m, i, p)));
      // From choosing a fix until its perplexities are on screen.
      if (p?.byModel && !p.pending && p.fixT0 && p.fixT0 !== lastFixT0) {
        const t0 = lastFixT0 = p.fixT0;
        drawn().then(() => {
          const dt = performance.now() - t0;
          pplBox.dataset.fixMs = String(dt);
          update((st) => ({ timing: { ...st.timing, fixPplMs: dt } }));
        });
      }
    }

    const qr = s.quantResult;
    if (!qr?.byModel || (qr.byModel === last.qr && s.models === last.qm && s.analysis?.byModel === last.qa)) return;
    Object.assign(last, { qr: qr.byModel, qm: s.models, qa: s.analysis?.byModel });
    const shown = models.filter((m) => qr.byModel[m.id]);

    fill(hists, shown.map((m, i) => histogramFigure(charts, m, i, qr, shown.length)));
    hists.classList.toggle('two', shown.length > 1);
    fill(heats, shown.map((m, i) => heatFigure(charts, m, i, qr.byModel[m.id], shown.length, !!qr.byModel[m.id].fix)));
    heats.classList.toggle('two', shown.length > 1);
    charts.sweep();

    // SQNR per layer at the histogram's point, then every point as a table.
    const point = shown[0] ? qr.byModel[shown[0].id].hist.point : s.hist.point;
    const layers = Array.from({ length: L }, (_, l) => l);
    const sq = (m, pt, l) => qr.byModel[m.id].points.find((x) => x.point === pt && x.layer === l);
    sqnrChart.set(shown.map((m, i) => ({ label: m.title, color: modelColor(m, i) })),
      [layers, ...shown.map((m) => layers.map((l) => {
        const v = sq(m, point, l);
        return v?.quantized && Number.isFinite(v.quantSqnrDb) ? v.quantSqnrDb : null;
      }))], { points: true });
    fill(sqnrTable, sqnrTableOf(shown, s.pointNames, layers, sq));

    fill(top5, shown.map((m, i) => top5Column(m, i, qr, s.analysis?.byModel?.[m.id])));
    top5.classList.toggle('two', shown.length > 1);

    // How long this update took, from the slider move (or input) until its charts are drawn.
    if (qr.t0 !== lastRendered) {
      lastRendered = qr.t0;
      const t0 = qr.t0;
      const workerMs = Math.max(...shown.map((m) => qr.byModel[m.id].ms));
      drawn().then(() => {
        const dt = performance.now() - t0;
        results.dataset.updateMs = String(dt);
        results.dataset.rendered = String((Number(results.dataset.rendered) || 0) + 1);
        update((st) => ({ timing: { ...st.timing, quantUpdateMs: dt, quantModelMs: workerMs } }));
      });
    }
  };
}

/**
 * The settings form (bit sliders, presets, granularities, estimator,
 * ranges, the quantized points) and the histogram's point and layer; show(s, L)
 * sets every control from the state.
 */
function quantControls() {
  const wb = slider('wbits', 'Weight bits', 8, (v) => act.setQuant({ weightBits: v }));
  const ab = slider('abits', 'Activation bits', 8, (v) => act.setQuant({ actBits: v }));
  const settings = h('div.settings');
  const pointsBox = h('fieldset.points');
  const presets = h('div.presets', { role: 'group', 'aria-label': 'presets' }, PRESETS.map(([name, w, a]) =>
    h('button', { type: 'button', on: { click: () => act.setQuant({ weightBits: w, actBits: a }) } }, name)));
  const form = h('form.quant-controls', { on: { submit: (e) => e.preventDefault() } },
    h('div.row', {}, wb.el, ab.el, presets), settings, pointsBox);
  const c = {
    wgran: select('wgran', [{ value: 'tensor', label: 'per tensor' }, { value: 'channel', label: 'per output channel' }],
      'tensor', (v) => act.setQuant({ weightGranularity: v })),
    agran: select('agran', [{ value: 'tensor', label: 'per tensor' }, { value: 'token', label: 'per token (dynamic)' }],
      'tensor', (v) => act.setQuant({ actGranularity: v })),
    estimator: select('estimator', ESTIMATORS, 'running_minmax', (v) => act.setQuant({ estimator: v })),
    percentile: h('input#percentile', { type: 'number', min: '50', max: '100', step: '0.001',
      on: { change: (e) => {
        const v = Number(e.target.value);
        if (!(v >= 50 && v <= 100)) { act.message('error', `Percentile ${e.target.value} must be in [50, 100].`, 'quant'); return; }
        act.setQuant({ percentile: v });
      } } }),
    ranges: select('ranges', [{ value: 'static', label: 'calibrated on held-out text (static)' },
      { value: 'dynamic', label: 'from this input (dynamic)' }], 'static', (v) => act.setRanges(v)),
    histPoint: select('hist-point', OUTLIER_POINTS, 'ffn_res', (v) => act.setHist({ point: v })),
    histLayer: select('hist-layer', [], '0', (v) => act.setHist({ layer: Number(v) })),
  };
  c.percentileBox = h('div.field', { hidden: true }, h('label', { for: 'percentile' }, 'Percentile'), c.percentile);
  fill(settings,
    h('div.field', {}, h('label', { for: 'wgran' }, 'Weights'), c.wgran),
    h('div.field', {}, h('label', { for: 'agran' }, 'Activations'), c.agran),
    h('div.field', {}, h('label', { for: 'estimator' }, 'Range estimator'), c.estimator),
    c.percentileBox,
    h('div.field', {}, h('label', { for: 'ranges' }, 'Activation ranges'), c.ranges));
  // One checkbox per capture point the library has (filled once it is known).
  const fillPoints = (names) => fill(pointsBox, h('legend', {}, 'Quantized activations'),
    h('button', { type: 'button', on: { click: () => act.setQuant({ points: getState().pointNames }) } }, 'all'),
    h('button', { type: 'button', on: { click: () => act.setQuant({ points: [] }) } }, 'none (weights only)'),
    names.map((p) => h('label.check', {}, h('input', { type: 'checkbox', value: p,
      on: { change: (e) => {
        const cur = getState().quant.points;
        act.setQuant({ points: e.target.checked ? [...new Set([...cur, p])] : cur.filter((x) => x !== p) });
      } } }), p)));
  let pointsShown = null;
  const histTools = h('div.toolbar', {},
    h('div.field', {}, h('label', { for: 'hist-point' }, 'Activation'), c.histPoint),
    h('div.field', {}, h('label', { for: 'hist-layer' }, 'Layer'), c.histLayer));

  const show = (s, L) => {
    const q = s.quant;
    if (s.pointNames !== pointsShown) fillPoints(pointsShown = s.pointNames);
    wb.input.value = String(q.weightBits); wb.out.textContent = String(q.weightBits);
    ab.input.value = String(q.actBits); ab.out.textContent = String(q.actBits);
    wb.input.setAttribute('aria-valuetext', `${q.weightBits} bits`);
    ab.input.setAttribute('aria-valuetext', `${q.actBits} bits`);
    c.wgran.value = q.weightGranularity;
    c.agran.value = q.actGranularity;
    c.estimator.value = q.estimator;
    c.percentileBox.hidden = q.estimator !== 'percentile';
    if (document.activeElement !== c.percentile) c.percentile.value = String(q.percentile);
    c.ranges.value = s.ranges;
    for (const box of pointsBox.querySelectorAll('input[type=checkbox]')) box.checked = q.points.includes(box.value);
    c.histPoint.value = s.hist.point;
    if (c.histLayer.options.length !== L) {
      fill(c.histLayer, Array.from({ length: L }, (_, l) => h('option', { value: String(l) }, `layer ${l}`)));
    }
    c.histLayer.value = String(Math.min(s.hist.layer ?? L - 1, L - 1));
  };
  return { form, histTools, show };
}

/** One model's perplexity card: float and quantized, or why there is none yet. */
function pplCard(m, i, p) {
  const r = p?.byModel?.[m.id];
  const card = h('div.card', { dataset: { model: m.id } });
  card.style.borderTopColor = modelColor(m, i);
  card.append(h('div.card-title', {}, m.title));
  if (r?.unavailable) card.append(h('p.help', {}, `Perplexity unavailable: ${r.unavailable}.`));
  else if (r) {
    card.append(h('div.ppl-line', {}, h('span', {}, 'float '), h('strong.fp-ppl', { dataset: { value: String(r.fpPpl) } }, num(r.fpPpl))),
      h('div.ppl-line', {}, h('span', {}, `W${p.quant.weightBits}A${p.quant.actBits}${p.fix ? ` + ${p.fix}` : ''} `),
        h('strong.q-ppl', { dataset: { value: String(r.qPpl) } }, num(r.qPpl)),
        h('span.delta', {}, ` ${change(r.fpPpl, r.qPpl)}`)),
      h('p.help', {}, `${r.nPredicted} masked tokens in ${r.nWindows} windows of ${r.seqLen}; ${ms(r.ms)}`));
  } else card.append(h('p.help', {}, 'computing…'));
  if (p?.pending) card.classList.add('pending');
  return card;
}

/** One model's histogram of the chosen activation under its grid, with what the grid does to it in words. */
function histogramFigure(charts, m, i, qr, nShown) {
  const r = qr.byModel[m.id];
  const hi = r.hist;
  const { fig, title, chart, text } = charts.get(`hist:${m.id}`, () => {
    const f = h('figure.hist', { dataset: { model: m.id } });
    const t = h('h4');
    f.append(t);
    const c = new Histogram(f);
    const x = h('figcaption.hist-text');
    f.append(x);
    return { fig: f, title: t, chart: c, text: x };
  });
  fill(title, h('span.dot', {}), `${m.title}: ${pointLabel(hi.point)}, layer ${hi.layer}`);
  title.querySelector('.dot').style.background = modelColor(m, i);
  chart.canvas.hidden = !!hi.missing;
  if (hi.missing) { text.textContent = 'This model has no such activation.'; return fig; }
  chart.canvas.setAttribute('aria-label', `histogram of ${hi.point} in layer ${hi.layer} with its quantization grid`);
  const total = hi.grid ? hi.grid.qmax - hi.grid.qmin + 1 : 0;
  later(`hist:${m.id}`, () => chart.draw({ h: hi, color: modelColor(m, i), width: nShown > 1 ? 540 : 760,
    xTitle: `${hi.point} value` }));
  const lines = [];
  if (!hi.quantized) lines.push('Not quantized: this point is unchecked above, or activations are float.');
  else if (hi.perToken) lines.push(`Per-token quantization: each token has its own ${hi.bits}-bit grid (not drawn). ${hi.levelsUsed} distinct values.`);
  else {
    lines.push(`Range [${num(hi.grid.lo)}, ${num(hi.grid.hi)}], step ${num(hi.grid.scale)}: `
      + `the values use ${hi.levelsUsed} of ${total} levels (${pct(hi.levelsUsed / total)}).`);
    if (hi.clipped) lines.push(`${hi.clipped} of ${hi.n} values lie outside the range and are clipped.`);
  }
  lines.push(`SQNR ${db(hi.sqnr)}, data range [${num(hi.min)}, ${num(hi.max)}], ${hi.n} values.`);
  if (hi.quantized && !hi.perToken && qr.ranges === 'static' && !r.calibrated) {
    lines.push('Ranges from this input: there is no held-out text for this model to calibrate on.');
  } else if (hi.quantized && !hi.perToken && r.calibrated) {
    lines.push(`Static ranges calibrated on ${r.calibrated} held-out windows.`);
  }
  text.textContent = lines.join(' ');
  text.dataset.levels = String(hi.levelsUsed ?? '');
  text.dataset.sqnr = String(hi.sqnr);
  return fig;
}

/** SQNR at every quantized point (the library's points, less embed and final) and layer, coloured. */
function sqnrTableOf(shown, pointNames, layers, sq) {
  const tablePoints = pointNames.filter((pt) => !['embed', 'final'].includes(pt));
  return h('table.numbers.sqnr#sqnr-table', {},
    h('caption', {}, 'SQNR (dB) at every quantized point; colour from red (< 10 dB) to green (> 40 dB)'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'model'), h('th', { scope: 'col' }, 'point'),
      layers.map((l) => h('th', { scope: 'col' }, `L${l}`)))),
    h('tbody', {}, shown.flatMap((m) => tablePoints.map((pt) => {
      const cells = layers.map((l) => {
        const v = sq(m, pt, l);
        if (!v?.quantized) return h('td.num.off', {}, '–');
        const c = quality((Math.min(40, Math.max(10, v.quantSqnrDb)) - 10) / 30);
        const td = h('td.num', { dataset: { key: 'sqnr', value: String(v.quantSqnrDb), point: pt, layer: String(l) } }, db(v.quantSqnrDb));
        td.style.background = css(c);
        td.style.color = ink(c);
        return td;
      });
      if (cells.every((c) => c.classList.contains('off'))) return null;
      return h('tr', { dataset: { model: m.id } }, h('td', {}, m.title), h('td', {}, pt), cells);
    }))));
}

/** One model's top-5 predictions, float and quantized; BERT also gets the token strip to pick the masked one. */
function top5Column(m, i, qr, analysis) {
  const t = qr.byModel[m.id].top5;
  const col = h('section.model-col.top5', { dataset: { model: m.id } });
  const title = h('h4', {}, h('span.dot', {}), m.title);
  title.querySelector('.dot').style.background = modelColor(m, i);
  col.append(title);
  if (analysis && m.config.arch === 'bert') {
    const strip = h('div.strip', { role: 'group' });
    tokenStrip(strip, { tokens: analysis.tokens, label: 'pick the token to mask', onPick: (k) => act.setMaskPos(k), picked: t.pos });
    col.append(strip);
  }
  col.append(h('p.help', {}, t.next ? `Next token after position ${t.pos}.`
    : `${t.masked ? 'Masked' : 'Unmasked (no [MASK] id without a tokenizer)'} position ${t.pos}; the true token is “${piece(t.truePiece)}”.`));
  const list = (name, items) => h('div.toplist', {}, h('div.toplist-title', {}, name),
    h('ol', {}, items.map((it) => {
      const bar = h('span.pbar', {});
      bar.style.width = `${Math.round(100 * it.p)}%`;
      bar.style.background = modelColor(m, i);
      return h('li', { className: null, dataset: { id: String(it.id), p: String(it.p) } },
        h('span.tokname', {}, `“${piece(it.piece)}”`), h('span.pwrap', {}, bar), h('span.pval', {}, pct(it.p)),
        it.id === t.trueId ? h('span.ok', { title: 'the true token' }, '✓') : null);
    })));
  col.append(h('div.toplists', {}, list('float', t.fp), list(`W${qr.quant.weightBits}A${qr.quant.actBits}`, t.q)));
  return col;
}
