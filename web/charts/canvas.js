// web/charts/canvas.js: what every hand-drawn chart shares: a crisp canvas at the
// device pixel ratio, axis text, nice ticks, and hover tooltips.
import { show, hide } from './tooltip.js';

export const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
export const SMALL = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
export const INK = '#1d1d1f';
export const MUTED = '#5f6368';
export const RULE = '#d0d0d0';

/** Sizes the canvas to cssW x cssH CSS pixels; returns a context in CSS pixels. */
export function setup(canvas, cssW, cssH) {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssW * dpr)), h = Math.max(1, Math.round(cssH * dpr));
  // Resizing reallocates the backing store: only when the size really changes.
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = FONT;
  ctx.textBaseline = 'middle';
  return ctx;
}

/** About n round tick values covering [lo, hi]. */
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Powers of ten in [lo, hi] (lo > 0) for log axes. */
export function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const v = 10 ** e;
    if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
  }
  return out.length ? out : [lo, hi];
}

/** Text rotated -90 degrees, centred at (x, y): vertical axis titles. */
export function vtext(ctx, text, x, y) {
  ctx.save();
  ctx.translate(x, y);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'center';
  ctx.fillText(text, 0, 0);
  ctx.restore();
}

/**
 * Calls lines(x, y) with the pointer position in CSS pixels on hover and shows
 * the tooltip lines it returns (null hides it).
 */
export function hover(canvas, lines) {
  canvas.addEventListener('mousemove', (e) => {
    const r = canvas.getBoundingClientRect();
    const l = lines(e.clientX - r.left, e.clientY - r.top);
    if (l) show(e.clientX, e.clientY, l);
    else hide();
  });
  canvas.addEventListener('mouseleave', hide);
}
