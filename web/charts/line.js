// web/charts/line.js: line charts on uPlot (small, fast, canvas; from npm, served
// from node_modules): labelled axes, a legend, exact values in a tooltip.
import uPlot from '../../node_modules/uplot/dist/uPlot.esm.js';
import { show, hide } from './tooltip.js';
import { pngButton } from './save.js';

/** Tooltip with every series' exact value at the cursor. */
function tooltipPlugin(xTitle, format) {
  return {
    hooks: {
      setCursor: (u) => {
        const i = u.cursor.idx;
        if (i === null || i === undefined || u.cursor.left < 0) { hide(); return; }
        const lines = [`${xTitle} ${u.data[0][i]}`];
        u.series.forEach((s, k) => {
          if (k === 0 || !s.show) return;
          const v = u.data[k][i];
          if (v !== null && v !== undefined) lines.push(`${s.label}: ${format(v)}`);
        });
        if (lines.length === 1) { hide(); return; }
        const r = u.over.getBoundingClientRect();
        show(r.left + u.cursor.left, r.top + u.cursor.top, lines);
      },
    },
  };
}

/** Aligns [{x: [], y: []}] on the union of their x values (null where a series has none). */
export function align(curves) {
  const xs = [...new Set(curves.flatMap((c) => c.x))].sort((a, b) => a - b);
  const pos = new Map(xs.map((x, i) => [x, i]));
  const ys = curves.map((c) => {
    const y = new Array(xs.length).fill(null);
    c.x.forEach((x, i) => { y[pos.get(x)] = c.y[i]; });
    return y;
  });
  return [xs, ...ys];
}

export class LineChart {
  /** xTitle / yTitle with units; log: log-scaled y; yRange: [lo, hi] the y axis always spans (widened for data outside). */
  constructor(parent, { xTitle, yTitle, log = false, height = 220, format = (v) => String(v), label, integerX = false, yRange = null }) {
    this.parent = parent;
    this.opts = { xTitle, yTitle, log, height, format, integerX, yRange };
    this.key = null;
    this.plot = null;
    this.box = document.createElement('div');
    this.box.className = 'linechart';
    this.box.setAttribute('role', 'img');
    this.box.setAttribute('aria-label', label ?? `${yTitle} against ${xTitle}`);
    parent.append(this.box);
    this.series = [];
    pngButton(parent, () => ({ canvas: this.plot?.ctx.canvas, title: this.box.getAttribute('aria-label'),
      legend: this.series.map((s) => ({ name: s.label, color: s.color })) }));
  }

  /** series: [{label, color, dash?}], data: [xs, ys...] aligned (see align()). */
  set(series, data, { points = false } = {}) {
    const key = JSON.stringify(series.map((s) => [s.label, s.color, s.dash])) + points;
    this.series = series;
    const width = Math.max(240, this.box.clientWidth || this.parent.clientWidth || 400);
    if (this.plot && key === this.key && Math.abs(this.plot.width - width) < 2) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.key = key;
    const { xTitle, yTitle, log, height, format, integerX, yRange } = this.opts;
    const axis = (label) => ({ label, stroke: '#1d1d1f', grid: { stroke: '#e5e5e5', width: 1 },
      ticks: { stroke: '#c8c8c8', width: 1 }, font: '11px system-ui, sans-serif',
      labelFont: '12px system-ui, sans-serif' });
    this.plot = new uPlot({
      width, height,
      scales: { x: integerX ? { time: false, range: (u, lo, hi) => [lo - 0.25, hi + 0.25] } : { time: false },
        y: log ? { distr: 3 } : yRange ? { range: (u, lo, hi) => [Math.min(yRange[0], lo ?? yRange[0]), Math.max(yRange[1], hi ?? yRange[1])] } : {} },
      axes: [{ ...axis(xTitle), ...(integerX ? { incrs: [1, 2, 5, 10, 20, 50, 100] } : {}) },
        { ...axis(yTitle), size: 60, labelSize: 20, values: (u, vals) => vals.map((v) => (v === null ? '' : format(v))) }],
      series: [{ label: xTitle, value: (u, v) => (v === null ? '–' : String(v)) },
        ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: true,
          points: { show: points, size: 6, fill: s.color }, value: (u, v) => (v === null ? '–' : format(v)) }))],
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      legend: { show: true, live: false },
      plugins: [tooltipPlugin(xTitle, format)],
    }, data, this.box);
  }
}
