// web/charts/scatter.js: points on two linear axes with hover labels (one point
// per attention head: delimiter mass against output / value norm).
import { setup, hover, ticks, vtext, INK, MUTED, RULE, SMALL, FONT } from './canvas.js';
import { pngButton } from './save.js';

export class Scatter {
  constructor(parent, label = 'scatter plot') {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'scatter';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    parent.append(this.canvas);
    this.pts = [];
    pngButton(parent, () => ({ canvas: this.canvas, title: label }));
    hover(this.canvas, (x, y) => {
      let best = null, bd = 64;
      for (const p of this.pts) {
        const d = (p.x - x) ** 2 + (p.y - y) ** 2;
        if (d < bd) { bd = d; best = p; }
      }
      return best ? best.lines : null;
    });
  }

  /** points: [{x, y, color, lines, strong}]; region: shaded rectangle {x0, x1, y0, y1, label}. */
  draw({ points, xTitle, yTitle, xMax = 1, yMax = null, width = 360, height = 240, region = null, onClick = null }) {
    const ctx = setup(this.canvas, width, height);
    const left = 48, right = 10, top = 10, bottom = 36;
    const pw = width - left - right, ph = height - top - bottom;
    const ym = yMax ?? Math.max(1, ...points.map((p) => p.y)) * 1.05;
    const X = (v) => left + (v / xMax) * pw, Y = (v) => top + ph - (v / ym) * ph;
    if (region) {
      ctx.fillStyle = 'rgba(194, 65, 12, 0.08)';
      ctx.fillRect(X(region.x0), Y(region.y1), X(region.x1) - X(region.x0), Y(region.y0) - Y(region.y1));
      ctx.fillStyle = '#9a3412';
      ctx.font = SMALL;
      ctx.textAlign = 'right';
      ctx.fillText(region.label, X(region.x1) - 4, Y(region.y1) + 10);
    }
    ctx.font = SMALL;
    for (const t of ticks(0, xMax, 5)) {
      ctx.strokeStyle = RULE;
      ctx.beginPath(); ctx.moveTo(Math.round(X(t)) + 0.5, top); ctx.lineTo(Math.round(X(t)) + 0.5, top + ph); ctx.stroke();
      ctx.fillStyle = MUTED; ctx.textAlign = 'center'; ctx.fillText(String(t), X(t), top + ph + 11);
    }
    for (const t of ticks(0, ym, 4)) {
      ctx.strokeStyle = RULE;
      ctx.beginPath(); ctx.moveTo(left, Math.round(Y(t)) + 0.5); ctx.lineTo(left + pw, Math.round(Y(t)) + 0.5); ctx.stroke();
      ctx.fillStyle = MUTED; ctx.textAlign = 'right'; ctx.fillText(String(t), left - 4, Y(t));
    }
    this.pts = points.map((p) => ({ ...p, x: X(p.x), y: Y(Math.min(p.y, ym)) }));
    for (const p of this.pts) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, p.strong ? 6 : 4.5, 0, 2 * Math.PI);
      ctx.fillStyle = p.color;
      ctx.globalAlpha = 0.85;
      ctx.fill();
      ctx.globalAlpha = 1;
      if (p.strong) { ctx.strokeStyle = INK; ctx.lineWidth = 2; ctx.stroke(); ctx.lineWidth = 1; }
    }
    ctx.strokeStyle = '#9a9a9a';
    ctx.strokeRect(left + 0.5, top + 0.5, pw, ph);
    ctx.font = FONT;
    ctx.fillStyle = INK;
    ctx.textAlign = 'center';
    ctx.fillText(xTitle, left + pw / 2, height - 8);
    vtext(ctx, yTitle, 10, top + ph / 2);
    if (onClick && !this.clickBound) {
      this.clickBound = true;
      this.canvas.addEventListener('click', (e) => {
        const r = this.canvas.getBoundingClientRect();
        const x = e.clientX - r.left, y = e.clientY - r.top;
        const hit = this.pts.find((p) => (p.x - x) ** 2 + (p.y - y) ** 2 < 64);
        if (hit) this.onClick?.(hit);
      });
    }
    this.onClick = onClick;
  }
}
