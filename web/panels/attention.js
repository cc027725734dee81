// web/panels/attention.js: the attention view: every head's attention map, its
// no-op statistics (delimiter mass, output vs value norm, gate), one head large
// with token labels and its gate per token, and all numbers in a table.
import { h, fill, caption } from '../dom.js';
import * as act from '../actions.js';
import { shownModels } from '../state.js';
import { analysisServes } from '../needs.js';
import { Heatmap, ColorBar } from '../charts/heatmap.js';
import { Scatter } from '../charts/scatter.js';
import { legend } from '../charts/bars.js';
import { blues, greens, modelColor } from '../charts/colors.js';
import { pool } from '../charts/pool.js';
import { later } from '../charts/frames.js';
import { num, pct, piece } from '../format.js';

/** Rows of head h from probs [H*T][T]. */
const headMap = (probs, hd, T) => probs.subarray(hd * T * T, (hd + 1) * T * T);
const ratio = (st) => (st.valueNorm > 0 ? st.outNorm / st.valueNorm : 0);
const maxOf = (a) => { let m = 0; for (const v of a) if (v > m) m = v; return m || 1; };

export function mount(root) {
  const scatterBox = h('figure.chart.scatter-fig');
  const scatterLegend = h('div');
  const grid = h('div.models');
  const detail = h('div.models');
  const table = h('div.table-wrap');
  fill(root,
    caption('A head that “does nothing” puts most of its attention on delimiters ([CLS], [SEP], spaces, '
      + 'punctuation) whose values are tiny, so its output is small: high delimiter mass, low ‖out‖/‖v‖. '
      + 'Softmax can only get there with huge logits; a gate can simply close instead. '
      + 'Each map is shaded from 0 to its own largest probability.'),
    h('div.bars-row', {}, scatterBox, scatterLegend), grid, detail, table);
  const scatter = new Scatter(scatterBox, 'heads: delimiter mass against output norm over value norm');
  const last = {}; // what was drawn: redraw only when it changed
  const charts = pool(); // canvases kept between renders
  scatterBox.append(h('figcaption', {}, 'One dot per head. Bottom right (shaded): no-op heads. Click a dot or a map to enlarge it.'));

  return (s, prev) => {
    if (s.view !== 'attention') return;
    const a = s.analysis;
    if (!a?.byModel) return;
    if (!analysisServes(a, 'attention')) {
      // Computed for another view (needs.js): this view's own forward is on its way.
      if (last.r) { fill(grid); fill(detail); fill(table); fill(scatterLegend); scatterBox.hidden = true; last.r = null; }
      return;
    }
    if (a.byModel === last.r && s.attn === last.attn && s.models === last.models) return;
    Object.assign(last, { r: a.byModel, attn: s.attn, models: s.models });
    scatterBox.hidden = false;
    const models = shownModels(s).filter((m) => a.byModel[m.id]);
    if (!models.length) return;
    const sel = s.attn;

    drawScatter(scatter, models, a, sel);
    fill(scatterLegend, legend(models.map((m, i) => ({ name: m.title, color: modelColor(m, i) }))));
    fill(grid, models.map((m, i) => headGrid(charts, m, i, a.byModel[m.id], sel)));
    grid.classList.toggle('two', models.length > 1);
    fill(detail, models.map((m, i) => headDetail(charts, m, i, a.byModel[m.id], sel, models.length)));
    detail.classList.toggle('two', models.length > 1);
    charts.sweep();
    fill(table, headTable(models, a));
  };
}

/** Every head of every model as a dot: delimiter mass against ‖out‖/‖v‖; the selected one stands out. */
function drawScatter(scatter, models, a, sel) {
  const pts = [];
  models.forEach((m, i) => a.byModel[m.id].heads.forEach((row, l) => row.forEach((st, hd) => pts.push({
    x: st.delimMass, y: ratio(st), color: modelColor(m, i), strong: l === sel.layer && hd === sel.head,
    layer: l, head: hd,
    lines: [`${m.title}: layer ${l}, head ${hd}`, `delimiter mass ${pct(st.delimMass)}`,
      `‖out‖/‖v‖ ${num(ratio(st), 3)}`, `no-op score ${num(st.noopScore, 3)}`,
      ...(m.config.gate !== 'none' ? [`mean gate ${num(st.gateMean, 3)}`] : [])],
  }))));
  scatter.draw({ points: pts, xTitle: 'attention mass on delimiters', yTitle: '‖head output‖ / ‖values‖',
    region: { x0: 0.5, x1: 1, y0: 0, y1: 0.5, label: 'no-op heads' }, yMax: Math.max(1.2, ...pts.map((p) => p.y * 1.05)),
    onClick: (p) => act.setAttn({ layer: p.layer, head: p.head }) });
}

/** One model's small maps, a row of heads per layer, each a button that selects the head. */
function headGrid(charts, m, i, r, sel) {
  const T = r.T;
  const col = h('section.model-col', { 'aria-label': `${m.title}: attention heads` });
  const title = h('h3', {}, h('span.dot', {}), m.title);
  title.querySelector('.dot').style.background = modelColor(m, i);
  col.append(title);
  r.heads.forEach((row, l) => {
    const line = h('div.head-row', {}, h('span.layer-label', {}, `L${l}`));
    row.forEach((st, hd) => {
      const on = l === sel.layer && hd === sel.head;
      const { btn, hm, s1, s2, s3 } = charts.get(`mini:${m.id}:${l}:${hd}`, () => {
        const b = h('button.head', { type: 'button', on: { click: () => act.setAttn({ layer: l, head: hd }) } });
        const map = new Heatmap(b, { className: 'mini' });
        const t1 = h('span.head-stats'), t2 = h('span.head-stats'), t3 = h('span.head-stats');
        b.append(t1, t2, t3);
        return { btn: b, hm: map, s1: t1, s2: t2, s3: t3 };
      });
      btn.setAttribute('aria-pressed', String(on));
      btn.setAttribute('aria-label', `layer ${l} head ${hd}: delimiter mass ${pct(st.delimMass)}, no-op score ${num(st.noopScore, 2)}`);
      const map = headMap(r.captures.probs[l], hd, T);
      later(`mini:${m.id}:${l}:${hd}`, () => hm.draw({ data: map, rows: T, cols: T,
        vmax: maxOf(map), cmap: blues, imageW: 96, imageH: 96, colTicks: [],
        tooltip: (q, k, v) => [`L${l} H${hd}: “${piece(r.tokens.pieces[q])}” → “${piece(r.tokens.pieces[k])}”`, `p = ${num(v, 4)}`] }));
      s1.textContent = `H${hd} · delim ${pct(st.delimMass, 0)}`;
      s2.textContent = `no-op ${num(st.noopScore, 2)}`;
      s3.textContent = m.config.gate !== 'none' ? `gate ${num(st.gateMean, 2)}` : '';
      s3.hidden = m.config.gate === 'none';
      btn.classList.toggle('noop', st.noopScore > 0.5);
      line.append(btn);
    });
    col.append(line);
  });
  return col;
}

/** The selected head of one model, large, with token labels, and its gate per query token. */
function headDetail(charts, m, i, r, sel, nModels) {
  const T = r.T;
  const l = Math.min(sel.layer, m.config.nLayers - 1), hd = Math.min(sel.head, m.config.nHeads - 1);
  const st = r.heads[l][hd];
  const size = nModels > 1 ? 440 : 560;
  const col = h('section.model-col');
  const title = h('h3', {}, h('span.dot', {}), `${m.title}: layer ${l}, head ${hd}`);
  title.querySelector('.dot').style.background = modelColor(m, i);
  col.append(title, h('p.summary', {}, `delimiter mass ${pct(st.delimMass)}, ‖out‖ ${num(st.outNorm, 3)} vs ‖v‖ ${num(st.valueNorm, 3)}`
    + ` (delimiters ${num(st.delimValueNorm, 3)}), entropy ${num(st.entropy, 3)} nats, no-op score ${num(st.noopScore, 3)}`
    + (m.config.gate !== 'none' ? `, mean gate ${num(st.gateMean, 3)}` : '')));
  const { fig, hm } = charts.get(`detail:${m.id}`, () => {
    const f = h('figure.heat');
    return { fig: f, hm: new Heatmap(f, {}) };
  });
  const labels = r.tokens.pieces.map(piece);
  const map = headMap(r.captures.probs[l], hd, T);
  const pmax = maxOf(map);
  later(`detail:${m.id}`, () => hm.draw({ data: map, rows: T, cols: T, vmax: pmax, cmap: blues,
    rowLabels: labels, colLabels: labels, rowTitle: 'query token', colTitle: 'key token (attended to)',
    imageW: size, imageH: size,
    ariaLabel: `${m.title} layer ${l} head ${hd} attention map`,
    tooltip: (q, k, v) => [`“${piece(r.tokens.pieces[q])}” (${q}) → “${piece(r.tokens.pieces[k])}” (${k})`, `p = ${num(v, 5)}`] }));
  const cb = charts.get(`cb-probs:${m.id}`, () => {
    const el = h('div.colorbar-wrap');
    return { el, bar: new ColorBar(el) };
  });
  cb.bar.draw({ cmap: blues, vmax: pmax, title: 'attention probability (scale: 0 to this head’s largest)', width: 320,
    format: (v) => num(v, 2) });
  col.append(fig, cb.el);
  const gate = r.captures.gate?.[l];
  if (gate) {
    const H = m.config.nHeads;
    const g = Float32Array.from({ length: T }, (_, t) => gate[t * H + hd]);
    const { gfig, gcap, ghm } = charts.get(`gate:${m.id}`, () => {
      const f = h('figure.heat'), c = h('figcaption');
      f.append(c);
      return { gfig: f, gcap: c, ghm: new Heatmap(f, {}) };
    });
    gcap.textContent = `Gate sigmoid(G(x)) of head ${hd} per token: light = closed (output scaled towards 0)`;
    later(`gate:${m.id}`, () => ghm.draw({ data: g, rows: 1, cols: T, vmax: 1, cmap: greens, colLabels: labels, cellH: 18,
      imageW: size, rowLabels: ['gate'], rowTitle: ' ',
      ariaLabel: `gate values of head ${hd}: mean ${num(st.gateMean, 3)}`,
      tooltip: (_, t, v) => [`token ${t} “${piece(r.tokens.pieces[t])}”`, `gate = ${num(v, 4)}`] }));
    const gcb = charts.get(`cb-gate:${m.id}`, () => {
      const el = h('div.colorbar-wrap');
      new ColorBar(el).draw({ cmap: greens, vmax: 1, title: 'gate value', format: (v) => num(v, 2) });
      return el;
    });
    col.append(gfig, gcb);
  }
  return col;
}

/** Every head's numbers. */
function headTable(models, a) {
  return h('table.numbers#head-table', {},
    h('caption', {}, 'Every head (means over query tokens)'),
    h('thead', {}, h('tr', {}, ['model', 'layer', 'head', 'delimiter mass', '‖out‖', '‖v‖', '‖v‖ delimiters',
      'entropy (nats)', 'max p', 'no-op score', 'gate'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, models.flatMap((m) => a.byModel[m.id].heads.flatMap((row, l) => row.map((st, hd) =>
      h('tr', { dataset: { model: m.id, layer: String(l), head: String(hd) } },
        h('td', {}, m.title), h('td', {}, String(l)), h('td', {}, String(hd)),
        ...['delimMass', 'outNorm', 'valueNorm', 'delimValueNorm', 'entropy', 'maxProb', 'noopScore', 'gateMean']
          .map((k) => h('td.num', { dataset: { key: k, value: String(st[k]) } }, num(st[k], 3)))))))));
}
