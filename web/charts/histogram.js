// web/charts/histogram.js: the distribution of one activation tensor with the
// quantization grid drawn over it, so the levels that no value uses are visible.
import { setup, hover, ticks, logTicks, vtext, INK, MUTED, RULE, SMALL, FONT } from './canvas.js';
import { num } from '../format.js';
import { pngButton, titleOf } from './save.js';

export class Histogram {
  constructor(parent, label = 'histogram') {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'histogram';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    parent.append(this.canvas);
    this.geom = null;
    pngButton(parent, () => ({ canvas: this.canvas, title: titleOf(parent, this.canvas.getAttribute('aria-label')) }));
    hover(this.canvas, (x) => {
      const g = this.geom;
      if (!g || x < g.left || x > g.left + g.pw) return null;
      const v = g.lo + ((x - g.left) / g.pw) * (g.hi - g.lo);
      const b = Math.min(g.counts.length - 1, Math.max(0, Math.floor(((v - g.lo) / (g.hi - g.lo)) * g.counts.length)));
      const bw = (g.hi - g.lo) / g.counts.length;
      const lines = [`x in [${num(g.lo + b * bw)}, ${num(g.lo + (b + 1) * bw)})`, `${g.counts[b]} values`];
      if (g.grid) {
        const q = Math.min(g.grid.qmax, Math.max(g.grid.qmin, Math.round(v / g.grid.scale) + g.grid.zero));
        lines.push(`nearest level q = ${q}: ${num(g.grid.scale * (q - g.grid.zero))}`, `step ${num(g.grid.scale)}`);
      }
      return lines;
    });
  }

  /** h: {counts, lo, hi, grid: {scale, zero, qmin, qmax, lo, hi} | null}; color: the model's. */
  draw({ h, color, width = 520, height = 220, xTitle = 'activation value' }) {
    const ctx = setup(this.canvas, width, height);
    const left = 52, right = 10, top = 22, bottom = 36;
    const pw = width - left - right, ph = height - top - bottom;
    const { counts, lo, hi, grid } = h;
    const maxC = Math.max(1, ...counts);
    const yl = (c) => (c > 0 ? (Math.log10(c) + 0.3) / (Math.log10(maxC) + 0.3) : 0); // log counts, 1 shows
    const X = (v) => left + ((v - lo) / (hi - lo || 1)) * pw;
    ctx.font = SMALL;
    // y grid (log counts)
    ctx.textAlign = 'right';
    for (const t of logTicks(1, maxC)) {
      const yy = Math.round(top + ph - yl(t) * ph) + 0.5;
      ctx.strokeStyle = RULE;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
      ctx.fillStyle = MUTED;
      ctx.fillText(num(t), left - 4, yy);
    }
    // the histogram itself
    ctx.fillStyle = color;
    const bw = pw / counts.length;
    if (grid) {
      ctx.save();
      ctx.fillStyle = 'rgba(37, 99, 235, 0.07)';
      ctx.fillRect(X(grid.lo), top, X(grid.hi) - X(grid.lo), ph);
      ctx.restore();
    }
    counts.forEach((c, i) => {
      if (!c) return;
      const hgt = Math.max(1, yl(c) * ph);
      ctx.fillRect(left + i * bw, top + ph - hgt, Math.max(1, bw - 0.3), hgt);
    });
    // the quantization grid over it: every level, or every k-th when they crowd
    let every = 0;
    if (grid) {
      const px = (grid.scale / (hi - lo)) * pw;
      every = Math.max(1, Math.ceil(3 / px));
      ctx.strokeStyle = 'rgba(37, 99, 235, 0.6)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let q = grid.qmin; q <= grid.qmax; q += every) {
        const x = Math.round(X(grid.scale * (q - grid.zero))) + 0.5;
        ctx.moveTo(x, top); ctx.lineTo(x, top + ph);
      }
      ctx.stroke();
      ctx.strokeStyle = '#b91c1c';
      ctx.setLineDash([5, 3]);
      ctx.lineWidth = 1.5;
      for (const v of [grid.lo, grid.hi]) {
        const x = Math.round(X(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, top - 4); ctx.lineTo(x, top + ph); ctx.stroke();
      }
      ctx.setLineDash([]);
      ctx.lineWidth = 1;
      ctx.fillStyle = '#b91c1c';
      ctx.textAlign = 'center';
      ctx.font = SMALL;
      ctx.fillText('clip', X(grid.lo), top - 10);
      ctx.fillText('clip', X(grid.hi), top - 10);
      if (every > 1) {
        ctx.fillStyle = '#1e40af';
        ctx.textAlign = 'center';
        ctx.fillText(`grid lines: 1 in ${every} of the ${grid.qmax - grid.qmin + 1} levels`, left + pw / 2, top - 10);
      }
    }
    // x axis
    ctx.strokeStyle = '#9a9a9a';
    ctx.beginPath(); ctx.moveTo(left, top + ph + 0.5); ctx.lineTo(left + pw, top + ph + 0.5); ctx.stroke();
    ctx.fillStyle = MUTED;
    ctx.textAlign = 'center';
    for (const t of ticks(lo, hi, 6)) {
      const x = X(t);
      ctx.fillRect(x - 0.5, top + ph, 1, 4);
      ctx.fillText(num(t, 3), x, top + ph + 12);
    }
    ctx.font = FONT;
    ctx.fillStyle = INK;
    ctx.fillText(xTitle, left + pw / 2, height - 8);
    vtext(ctx, 'count (log)', 10, top + ph / 2);
    this.geom = { left, pw, lo, hi, counts, grid };
    return { every };
  }
}
