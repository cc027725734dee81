// web/panels/outliers.js: the outlier view: per layer a heatmap of |x| (tokens x
// hidden dims) at one capture point with the outlier dims labelled, per-layer max
// ||x||_inf and kurtosis for each model, the tokens that carry the outliers, and a table.
import { h, fill, select, caption } from '../dom.js';
import * as act from '../actions.js';
import { shownModels } from '../state.js';
import { analysisServes } from '../needs.js';
import { Heatmap, ColorBar } from '../charts/heatmap.js';
import { Bars, legend } from '../charts/bars.js';
import { heat, modelColor } from '../charts/colors.js';
import { pool } from '../charts/pool.js';
import { later } from '../charts/frames.js';
import { tokenStrip } from './tokens.js';
import { num, piece } from '../format.js';

export const OUTLIER_POINTS = [
  { value: 'ffn_res', label: 'FFN input + output (sum entering LayerNorm)' },
  { value: 'ffn_out', label: 'FFN output' },
  { value: 'layer_out', label: 'layer output' },
  { value: 'attn_res', label: 'attention residual sum' },
  { value: 'attn_out', label: 'attention output projection' },
  { value: 'ctx', label: 'attention context (output projection input)' },
  { value: 'ffn_in', label: 'FFN input' },
  { value: 'ffn_act', label: 'FFN hidden, after activation' },
  { value: 'attn_in', label: 'attention input' },
  { value: 'v', label: 'values V' },
];
export const pointLabel = (p) => OUTLIER_POINTS.find((o) => o.value === p)?.label ?? p;

export function mount(root) {
  const pointSel = h('div.field');
  const scaleSel = h('div.field');
  const summary = h('div.bars-row');
  const body = h('div.models');
  const table = h('div.table-wrap');
  fill(root,
    h('div.toolbar', {}, pointSel, scaleSel),
    caption('Rows are tokens, columns hidden dimensions, colour |x|. Look for the few dark columns: '
      + 'outlier dimensions that attention heads doing “nothing” create, mostly on delimiter tokens. '
      + 'They are what an 8-bit per-tensor range has to stretch to cover.'),
    summary, body, table);
  const bars = layerBars(summary);
  const last = {}; // what was drawn: redraw only when it changed
  const charts = pool(); // canvases kept between renders

  return (s, prev) => {
    if (s.view !== 'outliers') return;
    const a = s.analysis;
    if (s.point !== prev?.point || s.scale !== prev?.scale || !pointSel.firstChild) {
      fill(pointSel, h('label', { for: 'point' }, 'Capture point'),
        select('point', OUTLIER_POINTS, s.point, act.setPoint));
      fill(scaleSel, h('label', { for: 'scale' }, 'Colour scale'),
        select('scale', [{ value: 'shared', label: 'shared by the models shown' }, { value: 'own', label: 'each model its own' }],
          s.scale, act.setScale));
    }
    if (a?.byModel && !analysisServes(a, 'outliers')) {
      // Computed for another view (needs.js): nothing from it here; this
      // view's own forward is on its way.
      if (last.r) { fill(body); fill(table); summary.hidden = true; last.r = null; }
      return;
    }
    if (!a?.byModel || (a.byModel === last.r && s.scale === last.scale && s.models === last.models)) return;
    Object.assign(last, { r: a.byModel, scale: s.scale, models: s.models });
    summary.hidden = false;
    const models = shownModels(s).filter((m) => a.byModel[m.id]);
    if (!models.length) return;
    const point = a.point;
    const stats = (id, l) => a.byModel[id].points.find((p) => p.point === point && p.layer === l);
    const layerMax = (id) => Math.max(...a.byModel[id].points.filter((p) => p.point === point).map((p) => p.maxAbs));
    const shared = Math.max(...models.map((m) => layerMax(m.id)));

    bars.draw(models, stats);
    const cols = models.map((m, i) => modelColumn(charts, {
      m, i, r: a.byModel[m.id], point, stats: (l) => stats(m.id, l), nModels: models.length,
      vmax: s.scale === 'shared' ? shared : layerMax(m.id), sharedScale: s.scale === 'shared',
    }));
    fill(body, cols);
    charts.sweep();
    body.classList.toggle('two', cols.length > 1);
    fill(table, outlierTable(models, a, point, stats));
  };
}

/** Max ‖x‖∞ and kurtosis per layer, the models side by side; made on first use. */
function layerBars(summary) {
  let inf = null, kurt = null, names = null;
  return {
    draw(models, stats) {
      if (!inf) {
        const wrap1 = h('figure.chart'), wrap2 = h('figure.chart');
        names = h('div');
        fill(summary, wrap1, wrap2, names);
        inf = new Bars(wrap1, 'max |x| per layer');
        kurt = new Bars(wrap2, 'kurtosis per layer');
        wrap1.append(h('figcaption', {}, 'Max ‖x‖∞ per layer: how far the range must stretch.'));
        wrap2.append(h('figcaption', {}, 'Kurtosis per layer (Pearson, normal = 3, dashed): heavy tails = outliers.'));
      }
      const L = Math.max(...models.map((m) => m.config.nLayers));
      const cats = Array.from({ length: L }, (_, l) => `L${l}`);
      const series = (f) => models.map((m, i) => ({ name: m.title, color: modelColor(m, i),
        values: cats.map((_, l) => stats(m.id, l)?.[f] ?? NaN) }));
      inf.draw({ categories: cats, series: series('maxAbs'), yTitle: `max ‖x‖∞`, xTitle: 'layer', format: (v) => num(v, 3) });
      kurt.draw({ categories: cats, series: series('kurtosis'), yTitle: 'kurtosis', xTitle: 'layer', log: true,
        refLine: 3, format: (v) => num(v, 3) });
      fill(names, legend(models.map((m, i) => ({ name: m.title, color: modelColor(m, i) }))));
    },
  };
}

/** One model's column: its worst outlier in words, the paper's figures, the tokens that carry the
 * outliers, and a heatmap of |x| per layer. */
function modelColumn(charts, { m, i, r, point, stats, vmax, sharedScale, nModels }) {
  const col = h('section.model-col', { 'aria-label': m.title, dataset: { model: m.id } });
  const worst = r.points.filter((p) => p.point === point).reduce((b, p) => (p.maxAbs > (b?.maxAbs ?? -1) ? p : b), null);
  const head = h('h3', {}, h('span.dot', {}), m.title);
  head.querySelector('.dot').style.background = modelColor(m, i);
  col.append(head);
  if (worst) {
    const tok = worst.topTokens[0];
    col.append(h('p.summary', {}, `max ‖x‖∞ = `, h('strong.maxabs', { dataset: { value: String(worst.maxAbs) } }, num(worst.maxAbs)),
      ` in layer ${worst.layer}, dim ${worst.topDims[0]}, token ${tok} “${piece(r.tokens.pieces[tok])}”; `
      + `${worst.nOutliers} outlier dim${worst.nOutliers === 1 ? '' : 's'} (> 6× the median dim).`));
  }
  if (r.summary) {
    // The paper's Table 2 figures for this sentence, defined once in C (qs_outlier_summary).
    const sm = r.summary;
    col.append(h('p.summary.paper', {},
      'Paper’s figures: max ‖x‖∞ at the LayerNorm input ',
      h('strong.paper-maxinf', { dataset: { value: String(sm.maxInfNorm) } }, num(sm.maxInfNorm)),
      ` (layer ${sm.maxInfNormLayer}), avg kurtosis `,
      h('strong.paper-kurt', { dataset: { value: String(sm.avgKurtosis) } }, num(sm.avgKurtosis, 3)), '.'));
  }
  col.append(h('p.strip-title', {}, 'Tokens carrying the outliers (outlined: holds an outlier dim’s maximum)'),
    carrierStrip(m, r, point, stats));
  const cb = charts.get(`cb:${m.id}`, () => {
    const el = h('div.colorbar-wrap');
    return { el, bar: new ColorBar(el) };
  });
  cb.bar.draw({ cmap: heat, vmax, width: 320, title: `|x|${sharedScale && nModels > 1 ? ' (scale shared by both models)' : ''}`, format: (v) => num(v, 3) });
  col.append(cb.el);
  for (let l = 0; l < m.config.nLayers; l++) {
    const st = stats(l), x = r.captures[point]?.[l];
    if (!st || !x) continue;
    const { fig, cap, hm } = charts.get(`heat:${m.id}:${l}`, () => {
      const f = h('figure.heat'), c = h('figcaption');
      f.append(c);
      return { fig: f, cap: c, hm: new Heatmap(f, {}) };
    });
    cap.textContent = `Layer ${l}: max ‖x‖∞ ${num(st.maxAbs)}, kurtosis ${num(st.kurtosis, 3)}`;
    const marks = st.topDims.slice(0, Math.min(6, st.nOutliers)).map((d, k) => ({ col: d, text: `d${d}: ${num(st.topVals[k], 3)}` }));
    later(`heat:${m.id}:${l}`, () => hm.draw({ data: x, rows: st.rows, cols: st.cols, vmax, abs: true, cmap: heat, marks,
      rowLabels: r.tokens.pieces.map(piece), colTitle: 'hidden dimension', rowTitle: 'token',
      imageH: st.rows >= 24 ? (m.config.nLayers > 2 ? 240 : 360) : null,
      width: nModels > 1 ? 540 : 760,
      ariaLabel: `${m.title}, layer ${l}, |x| at ${pointLabel(point)}: max ${num(st.maxAbs)}; outlier dims ${marks.map((mk) => mk.text).join(', ') || 'none'}`,
      tooltip: (row, c, v) => [`token ${row} “${piece(r.tokens.pieces[row])}”, dim ${c}`, `x = ${num(v, 6)}`] }));
    col.append(fig);
  }
  return col;
}

/** The tokens shaded by the largest |x| each carries on the outlier dims of any layer. */
function carrierStrip(m, r, point, stats) {
  const T = r.T;
  const carry = new Float64Array(T);
  const marked = new Set();
  for (let l = 0; l < m.config.nLayers; l++) {
    const st = stats(l), x = r.captures[point]?.[l];
    if (!st || !x) continue;
    const dims = st.topDims.slice(0, Math.max(1, st.nOutliers));
    for (let t = 0; t < T; t++) for (const d of dims) carry[t] = Math.max(carry[t], Math.abs(x[t * st.cols + d]));
    st.topTokens.slice(0, st.nOutliers).forEach((t) => marked.add(t));
  }
  const strip = h('div.strip', { role: 'group' });
  tokenStrip(strip, { tokens: r.tokens, values: Array.from(carry), vmax: Math.max(...carry), marked,
    label: `${m.title}: tokens shaded by the largest |x| they carry on the outlier dimensions`,
    describe: (_, v) => `max |x| on outlier dims ${num(v)}` });
  return strip;
}

/** The numbers per model and layer at the point. */
function outlierTable(models, a, point, stats) {
  return h('table.numbers#outlier-table', {},
    h('caption', {}, `Per layer at ${pointLabel(point)}`),
    h('thead', {}, h('tr', {}, ['model', 'layer', 'max ‖x‖∞', 'kurtosis', 'RMS kurtosis', 'outlier dims', 'top dims (|x| @ token)']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, models.flatMap((m) => Array.from({ length: m.config.nLayers }, (_, l) => {
      const st = stats(m.id, l);
      if (!st) return null;
      const r = a.byModel[m.id];
      return h('tr', { dataset: { model: m.id, layer: String(l) } },
        h('td', {}, m.title), h('td', {}, String(l)),
        h('td.num', { dataset: { key: 'maxAbs', value: String(st.maxAbs) } }, num(st.maxAbs)),
        h('td.num', { dataset: { key: 'kurtosis', value: String(st.kurtosis) } }, num(st.kurtosis)),
        h('td.num', { dataset: { key: 'rmsKurtosis', value: String(st.rmsKurtosis) } }, num(st.rmsKurtosis)),
        h('td.num', { dataset: { key: 'nOutliers', value: String(st.nOutliers) } }, String(st.nOutliers)),
        h('td', {}, st.topDims.slice(0, 4).map((d, k) => `d${d}: ${num(st.topVals[k], 3)} @ “${piece(r.tokens.pieces[st.topTokens[k]])}”`).join(', ')));
    }))));
}
