// web/fixes.js: the post-hoc fix of the Quantization view (model.withFix in the
// worker): its spec text, the intent that applies it, and the comparison table of
// every shipped model under every fix, filled one column at a time.
import { getState, update, shownModels } from './state.js';
import { clear, ensure, message } from './actions.js';

/** The fixes the control offers, in the table's column order. */
export const FIX_KINDS = [
  { kind: 'none', label: 'none' },
  { kind: 'smoothquant', label: 'SmoothQuant', cite: 'Xiao et al. 2023: s_j = max|X_j|^α / max|W_j|^(1−α)' },
  { kind: 'rotate', label: 'rotation', cite: 'randomized Hadamard, QuaRot / SpinQuant style' },
  { kind: 'int8split', label: 'LLM.int8()', cite: 'Dettmers et al. 2022: columns with |x| ≥ threshold stay float' },
  { kind: 'gptq', label: 'GPTQ', cite: 'Frantar et al. 2023: weights column by column, error spread by H⁻¹' },
];

/**
 * The spec model.withFix() takes for a fix setting (null for none). GPTQ
 * quantizes for the weight bits of the quant settings: its weights are only
 * valid on that grid, so its bits are the weight slider's.
 */
export function fixSpec(fix, quant) {
  switch (fix.kind) {
    case 'smoothquant': return `smoothquant:alpha=${fix.alpha}`;
    case 'rotate': return 'rotate';
    case 'int8split': return `int8split:threshold=${fix.threshold}`;
    case 'gptq': return `gptq:bits=${quant.weightBits}`;
    default: return null;
  }
}

export const fixLabel = (kind) => FIX_KINDS.find((f) => f.kind === kind)?.label ?? kind;

// The worker connection (actions.js hands it over) and the table's progress.
// The table is filled once asked for (tableWanted): its 25 evaluations run on
// the worker that answers the sliders, and a cell in progress would stand
// between a slider move and its result.
const session = { client: null, tableKey: null, tableRun: 0, tableWanted: false };

/** actions.js, on (re)start: the worker client; a new worker has no table yet. */
export function connect(client) {
  session.client = client;
  session.tableKey = null;
}

/** The table's button: fill it now, and again whenever the settings change. */
export function requestFixTable() {
  session.tableWanted = true;
  session.tableKey = null;
  ensureFixTable(getState());
}

/**
 * Applies a fix setting (patch over the current one) to the models shown. The
 * state's postHocFix changes only once the worker has applied it: a refused
 * parameter shows C's message and leaves the fix, the controls and the
 * results as they were. fixPending drives the progress indicator.
 */
export async function setFix(patch) {
  const s = getState();
  const want = { ...(s.fixPending?.fix ?? s.postHocFix), ...patch };
  const t0 = performance.now();
  const models = shownModels(s).map((m) => m.id);
  update({ fixPending: { fix: want, t0 } });
  try {
    const r = await session.client.request('fix', 'applyFix', { models, fix: fixSpec(want, s.quant), quant: s.quant });
    if (r.superseded) return;
    update({ postHocFix: want, fixPending: null, fixIntentT0: t0, quantIntentT0: t0 });
    clear('fix'); // a success clears an earlier refusal
    ensure();
  } catch (e) {
    update({ fixPending: null });
    message('error', `Post-hoc fix not applied: ${e.message}`, 'fix');
  }
}

/**
 * The comparison table for the shown quant settings: rows the shipped
 * models, columns the fixes with the control's parameters. Cells are
 * requested one after another, the chosen fix's column first; a change of
 * settings starts over (the worker keeps every cell it computed).
 */
export function ensureFixTable(s) {
  if (!session.client || !session.tableWanted) return;
  const models = s.models.filter((m) => m.source === 'shipped' && m.hasTokenizer).map((m) => m.id);
  const fix = s.postHocFix;
  const columns = FIX_KINDS.map((f) => ({ kind: f.kind, spec: fixSpec({ ...fix, kind: f.kind }, s.quant) }));
  const key = JSON.stringify([models, s.quant, columns]);
  if (key === session.tableKey) return;
  session.tableKey = key;
  const run = ++session.tableRun;
  const order = [...columns].sort((a, b) => (b.kind === fix.kind) - (a.kind === fix.kind));
  update({ fixTable: { models, columns, quant: s.quant, byColumn: {}, pending: true, error: null } });
  (async () => {
    // One cell per request, and none while the views wait for theirs: the
    // table must not stand between a slider move and its result.
    const busy = () => { const st = getState(); return st.fixPending || st.quantResult?.pending || st.ppl?.pending; };
    for (const col of order) {
      for (const id of models) {
        while (busy() && run === session.tableRun) await new Promise((r) => { setTimeout(r, 100); });
        if (run !== session.tableRun) return;
        let r;
        try {
          r = await session.client.request('fixTable', 'fixColumn', { models: [id], fix: col.spec, quant: s.quant });
        } catch (e) {
          update((st) => ({ fixTable: { ...st.fixTable, pending: false, error: e.message } }));
          return;
        }
        if (r.superseded || run !== session.tableRun) return;
        update((st) => ({ fixTable: { ...st.fixTable,
          byColumn: { ...st.fixTable.byColumn, [col.kind]: { ...st.fixTable.byColumn[col.kind], ...r.value } } } }));
      }
    }
    if (run === session.tableRun) update((st) => ({ fixTable: { ...st.fixTable, pending: false } }));
  })();
}
