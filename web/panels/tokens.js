// web/panels/tokens.js: the input as a strip of tokens, each shaded by a value
// (how much of the outliers it carries), with the value as text for readers.
import { h, fill } from '../dom.js';
import { heat, css, ink } from '../charts/colors.js';
import { piece, num } from '../format.js';

/**
 * tokens: {pieces, delimiters}; values: one number per token (or null);
 * marked: Set of token indexes to emphasise; onPick(i) makes tokens buttons.
 */
export function tokenStrip(el, { tokens, values = null, vmax = 1, marked = new Set(), label, onPick = null,
  picked = -1, describe = (i, v) => `${num(v)}` }) {
  fill(el, tokens.pieces.map((p, i) => {
    const v = values ? values[i] : null;
    const tag = onPick ? 'button.tok' : 'span.tok';
    const text = piece(p);
    const t = h(tag, { type: onPick ? 'button' : null, on: onPick ? { click: () => onPick(i) } : null,
      title: `token ${i} “${text}”${tokens.delimiters[i] ? ' (delimiter)' : ''}${v !== null ? `: ${describe(i, v)}` : ''}`,
      'aria-pressed': onPick ? String(i === picked) : null }, text);
    if (v !== null && vmax > 0) {
      const c = heat(Math.abs(v) / vmax);
      t.style.background = css(c);
      t.style.color = ink(c);
    }
    if (marked.has(i)) t.classList.add('marked');
    if (tokens.delimiters[i]) t.classList.add('delim');
    if (i === picked) t.classList.add('picked');
    return t;
  }));
  el.setAttribute('aria-label', label);
}
