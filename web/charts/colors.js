// web/charts/colors.js: colour maps (sequential, for magnitudes on a light page)
// and the colour of each model variant, shared by every chart.

/** Piecewise-linear colour map through stops [t, [r, g, b]]. */
function ramp(stops) {
  return (t) => {
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
    let i = 1;
    while (i < stops.length - 1 && stops[i][0] < x) i++;
    const [t0, c0] = stops[i - 1], [t1, c1] = stops[i];
    const f = (x - t0) / (t1 - t0 || 1);
    return [0, 1, 2].map((k) => Math.round(c0[k] + f * (c1[k] - c0[k])));
  };
}

// |activation|: near-white for most values, dark red-brown for outliers (inferno reversed).
export const heat = ramp([[0, [255, 255, 255]], [0.12, [252, 236, 164]], [0.3, [250, 180, 70]],
  [0.5, [232, 104, 40]], [0.72, [180, 40, 60]], [1, [60, 10, 70]]]);
// Probabilities 0..1: white to dark blue.
export const blues = ramp([[0, [255, 255, 255]], [0.25, [198, 219, 239]], [0.6, [66, 146, 198]], [1, [8, 48, 107]]]);
// Gate values 0..1: white to dark green.
export const greens = ramp([[0, [255, 255, 255]], [0.5, [116, 196, 118]], [1, [0, 90, 50]]]);
// Quality (SQNR): red (bad) through pale yellow to green (good).
export const quality = ramp([[0, [215, 48, 39]], [0.5, [254, 240, 170]], [1, [26, 152, 80]]]);

export const css = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;
/** Black or white text, whichever reads on this background. */
export const ink = ([r, g, b]) => (0.299 * r + 0.587 * g + 0.114 * b > 140 ? '#1d1d1f' : '#ffffff');

export const VARIANT_COLORS = {
  vanilla: '#c2410c', clipped: '#2563eb', gated: '#059669', op: '#7c3aed', softmax1: '#b45309',
};
const EXTRA = ['#0e7490', '#be185d', '#4d7c0f', '#6b7280'];

/** A stable colour per model: by variant for ours, from a spare palette for imports. */
export function modelColor(model, index = 0) {
  if (model?.source === 'shipped' && VARIANT_COLORS[model.variant]) return VARIANT_COLORS[model.variant];
  if (model?.source === 'trained' && VARIANT_COLORS[model.variant]) return VARIANT_COLORS[model.variant];
  return EXTRA[index % EXTRA.length];
}
