// web/panels/status.js: messages (errors stay until dismissed or fixed) and the
// measured timings, as text: forward + statistics, quantization update, perplexity.
import { h, fill } from '../dom.js';
import * as act from '../actions.js';
import { ms } from '../format.js';

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
  fill(root, phase, fwd, q, p, mem);
  return (s, prev) => {
    if (s.timing === prev?.timing && s.phase === prev?.phase && s.memory === prev?.memory) return;
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
  };
}
