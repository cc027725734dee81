// web/main.js: boots the page: the worker client, the panels, the tabs, the export
// bars and the address (url.js). Panels render the state on every change (once per
// frame); intents live in actions.js.
import { createClient } from './client.js';
import { getState, subscribe, update, shownModels, VIEWS } from './state.js';
import * as act from './actions.js';
import * as controls from './panels/controls.js';
import * as outliers from './panels/outliers.js';
import * as attention from './panels/attention.js';
import * as quant from './panels/quant.js';
import * as train from './panels/train.js';
import { mountMessages, mountStatus } from './panels/status.js';
import * as exportBar from './panels/exports.js';
import * as url from './url.js';
import { drawn, pendingDraws } from './charts/frames.js';

const $ = (sel) => document.querySelector(sel);

function mountTabs() {
  const tabs = VIEWS.map((v) => $(`#tab-${v}`));
  tabs.forEach((t, i) => {
    t.addEventListener('click', () => act.setView(VIEWS[i]));
    t.addEventListener('keydown', (e) => {
      const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!d) return;
      e.preventDefault();
      const k = (i + d + VIEWS.length) % VIEWS.length;
      tabs[k].focus();
      act.setView(VIEWS[k]);
    });
  });
  return (s, prev) => {
    if (s.view === prev?.view && prev) return;
    VIEWS.forEach((v, i) => {
      const on = v === s.view;
      tabs[i].setAttribute('aria-selected', String(on));
      tabs[i].tabIndex = on ? 0 : -1;
      $(`#view-${v}`).hidden = !on;
    });
  };
}

const renders = [
  mountMessages($('#messages')),
  mountTabs(),
  controls.mount($('#controls')),
  outliers.mount($('#view-outliers')),
  attention.mount($('#view-attention')),
  quant.mount($('#view-quant')),
  train.mount($('#view-train')),
  mountStatus($('#status')),
];
// Render time per frame, by panel: shown in the status line, read by the tests.
const renderMs = { last: 0, byPanel: [] };
subscribe((s, prev) => {
  const t0 = performance.now();
  renders.forEach((r, i) => {
    const t = performance.now();
    r(s, prev);
    renderMs.byPanel[i] = performance.now() - t;
  });
  renderMs.last = performance.now() - t0;
  // Input to screen: from the request until the analysis' charts are drawn.
  const a = s.analysis;
  if (a?.t0 && a.t0 !== prev?.analysis?.t0 && (s.view === 'outliers' || s.view === 'attention')) {
    drawn().then(() => update((st) => ({ timing: { ...st.timing, analyzeScreenMs: performance.now() - a.t0 } })));
  }
});
for (const v of VIEWS) exportBar.mount($(`#view-${v}`), v);
url.mount();
// First paint, then start the worker; the controls come from the address once the models are in.
update({});
for (const r of renders) r(getState(), null);
const client = createClient(act.onWorkerEvent);
act.boot(client, { restore: url.restore });
// For the console and the browser tests: read-only views of the state and request counts, and
// memory(): the worker's WASM memory (heapBytes) and malloc'd bytes in it (usedBytes), and the
// page's JS heap where Chromium tells it (pageJsHeap; the soak test asks CDP instead).
globalThis.quantscope = Object.freeze({ state: getState, requests: () => structuredClone(client.counts),
  renderMs: () => structuredClone(renderMs), drawn, pendingDraws, shown: () => shownModels().map((m) => m.id),
  memory: async () => ({ ...(await client.request('control', 'memory')).value,
    pageJsHeap: performance.memory?.usedJSHeapSize ?? null }) });
