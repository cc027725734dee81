// web/charts/heatmap.js: a matrix as coloured cells (tokens x hidden dims, or
// queries x keys), with labelled axes, marked columns and a hover tooltip.
import { setup, hover, ticks, vtext, INK, MUTED, SMALL, FONT } from './canvas.js';
import { css } from './colors.js';
import { pngButton, titleOf } from './save.js';

const tables = new Map();

/** 256 packed RGBA colours of a colour map (little-endian: alpha in the top byte). */
function colorTable(cmap) {
  if (!tables.has(cmap)) {
    const t = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      const [r, g, b] = cmap(i / 255);
      t[i] = (255 << 24 | b << 16 | g << 8 | r) >>> 0;
    }
    tables.set(cmap, t);
  }
  return tables.get(cmap);
}

export class Heatmap {
  constructor(parent, { label = 'heatmap', className = 'heatmap' } = {}) {
    this.canvas = document.createElement('canvas');
    this.canvas.className = className;
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    parent.append(this.canvas);
    // The small maps are buttons that pick a head: the enlarged head has the button.
    if (className !== 'mini') pngButton(parent, () => ({ canvas: this.canvas, title: titleOf(parent, this.canvas.getAttribute('aria-label')) }));
    this.geom = null;
    hover(this.canvas, (x, y) => {
      const g = this.geom;
      if (!g) return null;
      const c = Math.floor((x - g.left) / g.cellW), r = Math.floor((y - g.top) / g.cellH);
      if (c < 0 || r < 0 || c >= g.cols || r >= g.rows) return null;
      return g.tooltip ? g.tooltip(r, c, g.data[r * g.cols + c]) : [`row ${r}, col ${c}`, String(g.data[r * g.cols + c])];
    });
  }

  /**
   * data: rows*cols values (row-major). vmax: the value drawn darkest; abs: colour |v|.
   * rowLabels: one string per row (drawn when rows are tall enough).
   * marks: [{col, text}] labelled above their column. onClick(r, c) optional.
   */
  draw({ data, rows, cols, vmax, cmap, abs = false, rowLabels = null, colTitle = '', rowTitle = '',
    marks = [], width = 600, cellH: wantH, imageW = null, imageH = null, tooltip = null, colTicks = null, ariaLabel,
    colLabels = null }) {
    if (ariaLabel) this.canvas.setAttribute('aria-label', ariaLabel);
    const labelW = rowLabels ? 64 : 0;
    const left = labelW + (rowTitle ? 18 : 4), right = 6;
    const top = marks.length ? 34 : 6;
    // Cells may be fractional: a fixed image size keeps the canvas from being
    // reallocated on every keystroke (the row count changes, the size does not).
    const cellW = imageW ? imageW / cols : Math.max(1, Math.min(10, Math.floor((width - left - right) / cols)));
    const cellH = wantH ?? (imageH ? imageH / rows : rows >= 30 ? 400 / rows : 14);
    const noTicks = Array.isArray(colTicks) && !colTicks.length;
    const bottom = colTitle ? (colLabels ? 62 : 34) : colLabels ? 44 : noTicks ? 4 : 20;
    const w = Math.ceil(left + cols * cellW + right), h = Math.ceil(top + rows * cellH + bottom);
    const ctx = setup(this.canvas, w, h);
    // Cells straight into device pixels through a 256-entry colour table: no
    // offscreen canvas to allocate, no scaling pass (this runs on every keystroke).
    const dpr = globalThis.devicePixelRatio || 1;
    const pw = Math.round(cols * cellW * dpr), ph = Math.round(rows * cellH * dpr);
    if (!this.img || this.img.width !== pw || this.img.height !== ph) this.img = ctx.createImageData(pw, ph);
    const px = new Uint32Array(this.img.data.buffer);
    const lut = colorTable(cmap);
    const scale = vmax > 0 ? 255 / vmax : 0;
    const cell = new Uint32Array(rows * cols);
    for (let i = 0; i < rows * cols; i++) {
      const v = abs ? Math.abs(data[i]) : data[i];
      cell[i] = lut[Math.min(255, Math.max(0, Math.round(v * scale))) || 0];
    }
    const colOf = new Int32Array(pw);
    for (let x = 0; x < pw; x++) colOf[x] = Math.min(cols - 1, Math.floor((x * cols) / pw));
    for (let y = 0; y < ph; y++) {
      const base = Math.min(rows - 1, Math.floor((y * rows) / ph)) * cols, o = y * pw;
      for (let x = 0; x < pw; x++) px[o + x] = cell[base + colOf[x]];
    }
    ctx.putImageData(this.img, Math.round(left * dpr), Math.round(top * dpr));
    ctx.strokeStyle = '#9a9a9a';
    ctx.lineWidth = 1;
    ctx.strokeRect(left - 0.5, top - 0.5, cols * cellW + 1, rows * cellH + 1);
    // Row labels (tokens).
    ctx.fillStyle = INK;
    ctx.font = SMALL;
    if (rowLabels) {
      const every = Math.max(1, Math.ceil(11 / cellH));
      ctx.textAlign = 'right';
      for (let r = 0; r < rows; r += every) ctx.fillText(rowLabels[r], left - 4, top + (r + 0.5) * cellH);
    }
    // Column ticks or labels.
    ctx.fillStyle = MUTED;
    const yb = top + rows * cellH;
    if (colLabels) {
      const every = Math.max(1, Math.ceil(11 / cellW));
      for (let c = 0; c < cols; c += every) {
        ctx.save();
        ctx.translate(left + (c + 0.5) * cellW, yb + 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = 'right';
        ctx.fillStyle = INK;
        ctx.fillText(colLabels[c], 0, 0);
        ctx.restore();
      }
    } else {
      ctx.textAlign = 'center';
      for (const t of colTicks ?? ticks(0, cols - 1, Math.max(2, Math.floor((cols * cellW) / 70)))) {
        const x = left + (t + 0.5) * cellW;
        ctx.fillRect(x - 0.5, yb, 1, 4);
        ctx.fillText(String(t), x, yb + 11);
      }
    }
    ctx.font = FONT;
    ctx.fillStyle = INK;
    ctx.textAlign = 'center';
    if (colTitle) ctx.fillText(colTitle, left + (cols * cellW) / 2, h - 9);
    if (rowTitle) vtext(ctx, rowTitle, 8, top + (rows * cellH) / 2);
    // Marked columns (outlier dims): a tick and a label, staggered on two lines.
    ctx.font = SMALL;
    marks.forEach((m, i) => {
      const x = left + (m.col + 0.5) * cellW;
      ctx.fillStyle = '#7f1d1d';
      ctx.fillRect(x - 0.5, top - 6, 1, 6);
      ctx.textAlign = x < left + 40 ? 'left' : x > w - 40 ? 'right' : 'center';
      ctx.fillText(m.text, x, i % 2 ? 9 : 21);
    });
    this.geom = { left, top, cellW, cellH, rows, cols, data, tooltip };
  }
}

/** A horizontal colour bar from 0 to vmax with ticks and a title. */
export class ColorBar {
  constructor(parent, label = 'colour scale') {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'colorbar';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    parent.append(this.canvas);
  }

  draw({ cmap, vmax, vmin = 0, title, width = 260, format = (v) => String(v) }) {
    const h = 42, pad = 10, barH = 10;
    const ctx = setup(this.canvas, width, h);
    const bw = width - 2 * pad;
    for (let i = 0; i < bw; i++) {
      ctx.fillStyle = css(cmap(i / (bw - 1)));
      ctx.fillRect(pad + i, 16, 1, barH);
    }
    ctx.strokeStyle = '#9a9a9a';
    ctx.strokeRect(pad - 0.5, 15.5, bw + 1, barH + 1);
    ctx.font = SMALL;
    ctx.fillStyle = INK;
    ctx.textAlign = 'left';
    ctx.fillText(title, pad, 7);
    ctx.textAlign = 'center';
    ctx.fillStyle = MUTED;
    for (const t of ticks(vmin, vmax, 4)) {
      const x = pad + ((t - vmin) / (vmax - vmin || 1)) * bw;
      ctx.fillRect(x - 0.5, 16 + barH, 1, 3);
      ctx.fillText(format(t), Math.min(Math.max(x, pad + 8), width - pad - 8), 16 + barH + 10);
    }
    this.canvas.setAttribute('aria-label', `${title}: colour scale from ${format(vmin)} (light) to ${format(vmax)} (dark)`);
  }
}
