// web/charts/save.js: a "PNG" button on every chart: the chart's canvas at its
// device resolution on white, with its title above and its legend below drawn in,
// so the saved image says what it shows without the page around it.
import { FONT, INK } from './canvas.js';
import { download, slug } from '../save.js';

const PAD = 8; // CSS pixels around the image's parts

/** Wraps text to lines no wider than w in ctx's font. */
function wrap(ctx, text, w) {
  const lines = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > w) { lines.push(line); line = word; } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

/**
 * The image of a chart as a PNG Blob: title lines, the canvas, legend entries
 * ([{name, color}]) in rows, all at the canvas's device pixel ratio.
 */
export function chartPng(canvas, { title = '', legend = [] } = {}) {
  const cssW = canvas.clientWidth || parseFloat(canvas.style.width) || canvas.width;
  const dpr = canvas.width / cssW;
  const out = document.createElement('canvas');
  const ctx = out.getContext('2d');
  ctx.font = FONT;
  const inner = cssW; // the image is as wide as the chart; text wraps to it
  const titleLines = title ? wrap(ctx, title, inner).slice(0, 4) : [];
  const lh = 16;
  const legendRows = [];
  let row = [], x = 0;
  for (const it of legend) {
    const w = 18 + ctx.measureText(it.name).width + 14;
    if (row.length && x + w > inner) { legendRows.push(row); row = []; x = 0; }
    row.push({ ...it, x });
    x += w;
  }
  if (row.length) legendRows.push(row);
  const top = titleLines.length ? PAD + titleLines.length * lh : 0;
  const bottom = legendRows.length ? PAD + legendRows.length * lh : 0;
  const cssH = canvas.height / dpr;
  out.width = Math.round((cssW + 2 * PAD) * dpr);
  out.height = Math.round((PAD + top + cssH + bottom + PAD) * dpr);
  ctx.scale(dpr, dpr);
  ctx.fillStyle = '#fff'; // charts draw on a transparent canvas over the page's white panels
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.font = FONT;
  ctx.textBaseline = 'middle';
  ctx.fillStyle = INK;
  titleLines.forEach((l, i) => ctx.fillText(l, PAD, PAD + i * lh + lh / 2));
  ctx.drawImage(canvas, PAD, PAD + top, cssW, cssH);
  legendRows.forEach((r, i) => r.forEach((it) => {
    const y = PAD + top + cssH + PAD + i * lh + lh / 2;
    ctx.fillStyle = it.color;
    ctx.fillRect(PAD + it.x, y - 5, 12, 10);
    ctx.fillStyle = INK;
    ctx.fillText(it.name, PAD + it.x + 18, y);
  }));
  return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error('the canvas gave no PNG'))), 'image/png'));
}

/** The chart's title for its image: the heading of its figure, if any, and its label. */
export function titleOf(parent, label) {
  const head = parent.querySelector(':scope > h3, :scope > h4')?.textContent.trim();
  return [head, label].filter(Boolean).join(': ');
}

/**
 * Adds a "PNG" button to a chart's figure. of() gives {canvas, title, legend}
 * when clicked: what the chart shows then. The file is named after the title.
 */
export function pngButton(parent, of) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'save-png';
  b.textContent = 'PNG';
  b.title = 'save this chart as a PNG image';
  b.addEventListener('click', async (e) => {
    e.stopPropagation(); // the chart may sit in something clickable
    const { canvas, title, legend } = of();
    if (!canvas?.width) return;
    download(`${slug(title)}.png`, await chartPng(canvas, { title, legend }));
  });
  parent.classList.add('has-png');
  parent.append(b);
  return b;
}
