// web/format.js: how numbers and tokens are written on the page (one place, so
// tables, tooltips and captions agree).

/** A number with `digits` significant digits, without exponent for ordinary sizes. */
export function num(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v === Infinity) return '∞';
  if (v === -Infinity) return '−∞';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(Math.max(0, digits - 1)).replace('-', '−');
  const s = Number(v.toPrecision(digits)).toString();
  return s.replace('-', '−');
}

export const fixed = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d).replace('-', '−') : num(v));
export const pct = (v, d = 1) => (Number.isFinite(v) ? `${(100 * v).toFixed(d)} %` : '–');
export const ms = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : '–');
export const db = (v) => (v === Infinity ? '∞ dB' : Number.isFinite(v) ? `${v.toFixed(1)} dB` : '–');

/** A token as shown in strips and axes: visible whitespace, clipped length. */
export function piece(p) {
  if (p === null || p === undefined) return '?';
  const s = String(p).replace(/ /g, '␣').replace(/\n/g, '⏎').replace(/\t/g, '⇥');
  return s.length > 12 ? `${s.slice(0, 11)}…` : s;
}

/** Relative change a -> b as "+12.3 %". */
export function change(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b) || a === 0) return '–';
  const r = (b - a) / a;
  return `${r >= 0 ? '+' : '−'}${Math.abs(100 * r).toFixed(1)} %`;
}
