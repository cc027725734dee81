// web/panels/status.js: messages (errors stay until dismissed or fixed) and the
// measured timings, as text: forward + statistics, quantization update, perplexity.
import { h, fill } from '../dom.js';
import * as act from '../actions.js';
import { ms } from '../format.js';
import { linkWith } from '../url.js';

export function mountMessages(root) {
  return (s, prev) => {
    if (s.messages === prev?.messages) return;
    fill(root, s.messages.map((m) => h(`div.msg.${m.kind}`, { dataset: { source: m.source }, role: m.kind === 'error' ? 'alert' : 'status' },
      h('span.msg-text', {}, m.text),
      h('button.close', { type: 'button', 'aria-label': 'dismiss', on: { click: () => act.dismiss(m.id) } }, '×'))));
  };
}

export function mountStatus(root) {
  const phase = h('span#phase');
  const fwd = h('span#t-forward');
  const q = h('span#t-quant');
  const p = h('span#t-ppl');
  const mem = h('span#t-mem');
  const threads = h('span#t-threads');
  fill(root, phase, fwd, q, p, mem, threads);
  return (s, prev) => {
    if (s.timing === prev?.timing && s.phase === prev?.phase && s.memory === prev?.memory
      && s.runtime === prev?.runtime) return;
    phase.textContent = s.phase === 'loading' ? 'Loading models…' : s.phase === 'failed' ? 'Failed to start' : 'Ready';
    phase.dataset.phase = s.phase;
    const t = s.timing;
    if (t.forwardMs !== undefined) {
      fwd.textContent = `forward + stats (${t.forwardT} tokens): ${ms(t.forwardMs)} worker, `
        + `${ms(t.analyzeRoundTripMs)} to page${t.analyzeScreenMs ? `, ${ms(t.analyzeScreenMs)} drawn` : ''}`;
      fwd.dataset.forwardMs = String(t.forwardMs);
      fwd.dataset.roundTripMs = String(t.analyzeRoundTripMs);
      fwd.dataset.tokens = String(t.forwardT);
    }
    if (t.quantUpdateMs !== undefined) {
      q.textContent = `quantization update: ${ms(t.quantUpdateMs)} to screen`;
      q.dataset.updateMs = String(t.quantUpdateMs);
    }
    if (t.pplMs !== undefined) p.textContent = `perplexity: ${ms(t.pplMs)}`;
    if (s.memory) mem.textContent = `WASM ${(s.memory / 2 ** 20).toFixed(0)} MiB`;
    if (s.runtime) renderThreads(threads, s.runtime);
  };
}

/** "1 thread" or "N threads (pthreads)", with "relaxed SIMD" when that module runs (FMA), and a link to the other build. */
function renderThreads(el, rt) {
  if (el.dataset.threads === String(rt.threads)) return;
  el.dataset.threads = String(rt.threads);
  // At most the pthreads build's pool of 4 workers (QS_WASM_THREAD_POOL).
  const other = rt.threads > 1 ? 1 : Math.min(4, Math.max(2, navigator.hardwareConcurrency || 2));
  const threads = other > 1 ? other : null;
  const canSwitch = other === 1 || globalThis.crossOriginIsolated;
  const label = (rt.threads > 1 ? `${rt.threads} threads (pthreads)` : '1 thread')
    + (rt.relaxedSimd ? ', relaxed SIMD' : '');
  el.title = rt.relaxedSimd ? 'the WebAssembly module with fused multiply-adds (this browser has relaxed SIMD)'
    : 'the plain SIMD128 WebAssembly module';
  fill(el, canSwitch ? `${label} · ` : label,
    // The link is made when followed: it keeps the page's settings of that moment (url.js).
    canSwitch ? h('a#threads-switch', { href: linkWith({ threads }), title: 'reloads the page with the other WebAssembly build',
      on: { click: (e) => { e.currentTarget.href = linkWith({ threads }); } } },
      other > 1 ? `use ${other} threads` : 'use 1 thread') : null);
}
