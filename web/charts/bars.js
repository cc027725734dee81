// web/charts/bars.js: grouped bars (one group per layer, one bar per model) on a
// linear or log axis, with a legend and exact values on hover.
import { setup, hover, ticks, logTicks, vtext, INK, MUTED, RULE, SMALL, FONT } from './canvas.js';
import { pngButton } from './save.js';

export class Bars {
  constructor(parent, label = 'bar chart') {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'bars';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    parent.append(this.canvas);
    this.hit = [];
    this.series = [];
    pngButton(parent, () => ({ canvas: this.canvas, title: label,
      legend: this.series.map((s) => ({ name: s.name, color: s.color })) }));
    hover(this.canvas, (x, y) => {
      const b = this.hit.find((r) => x >= r.x && x <= r.x + r.w && y >= r.y0 && y <= r.y1);
      return b ? b.lines : null;
    });
  }

  /**
   * categories: x labels; series: [{name, color, values}]; log: log y axis.
   * format(v) writes values in tooltips and the aria summary.
   */
  draw({ categories, series, yTitle, xTitle = '', log = false, width = 360, height = 200,
    format = (v) => String(v), refLine = null }) {
    const ctx = setup(this.canvas, width, height);
    this.series = series;
    const left = 52, right = 8, top = 10, bottom = xTitle ? 36 : 22;
    const pw = width - left - right, ph = height - top - bottom;
    const vals = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
    let lo = log ? Math.min(...vals.filter((v) => v > 0), refLine ?? Infinity) : 0;
    let hi = Math.max(...vals, refLine ?? -Infinity, log ? 1e-9 : 0);
    if (!Number.isFinite(lo) || lo <= 0) lo = 1e-3;
    if (log) { lo = 10 ** Math.floor(Math.log10(lo)); hi = 10 ** Math.ceil(Math.log10(hi * 1.001)); }
    else hi = hi > 0 ? hi * 1.08 : 1;
    const y = (v) => top + ph - (log ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
      : (v - lo) / (hi - lo)) * ph;
    ctx.font = SMALL;
    ctx.textAlign = 'right';
    for (const t of log ? logTicks(lo, hi) : ticks(lo, hi, 4)) {
      const yy = Math.round(y(t)) + 0.5;
      ctx.strokeStyle = RULE;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.fillStyle = MUTED;
      ctx.fillText(format(t), left - 4, yy);
    }
    if (refLine !== null) {
      const yy = Math.round(y(refLine)) + 0.5;
      ctx.strokeStyle = '#6b7280';
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.setLineDash([]);
    }
    this.hit = [];
    const gw = pw / categories.length, bw = Math.min(28, (gw * 0.8) / series.length);
    categories.forEach((cat, i) => {
      const gx = left + i * gw + (gw - bw * series.length) / 2;
      series.forEach((s, k) => {
        const v = s.values[i];
        if (!Number.isFinite(v)) return;
        const x = gx + k * bw, y0 = y(v), y1 = top + ph;
        ctx.fillStyle = s.color;
        ctx.fillRect(x + 1, y0, bw - 2, y1 - y0);
        this.hit.push({ x, w: bw, y0: top, y1, lines: [`${s.name}, ${cat}`, `${yTitle}: ${format(v)}`] });
      });
      ctx.fillStyle = INK;
      ctx.textAlign = 'center';
      ctx.fillText(cat, left + (i + 0.5) * gw, top + ph + 10);
    });
    ctx.strokeStyle = '#9a9a9a';
    ctx.beginPath(); ctx.moveTo(left + 0.5, top); ctx.lineTo(left + 0.5, top + ph + 0.5); ctx.lineTo(left + pw, top + ph + 0.5); ctx.stroke();
    ctx.font = FONT;
    ctx.fillStyle = INK;
    vtext(ctx, yTitle + (log ? ' (log)' : ''), 10, top + ph / 2);
    if (xTitle) { ctx.textAlign = 'center'; ctx.fillText(xTitle, left + pw / 2, height - 8); }
    this.canvas.setAttribute('aria-label', `${yTitle} by ${xTitle || 'category'}: ` + series.map((s) =>
      `${s.name}: ${s.values.map((v, i) => `${categories[i]} ${format(v)}`).join(', ')}`).join('; '));
  }
}

/** A legend of coloured swatches as HTML (readable, selectable text). */
export function legend(items) {
  const ul = document.createElement('ul');
  ul.className = 'legend';
  for (const { name, color, dash } of items) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = dash ? 'swatch dash' : 'swatch';
    sw.style.background = dash ? 'transparent' : color;
    sw.style.borderColor = color;
    li.append(sw, document.createTextNode(name));
    ul.append(li);
  }
  return ul;
}
