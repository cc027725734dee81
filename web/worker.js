// web/worker.js: the module Web Worker that owns every WASM model and does all the
// computation; the page only sends requests and renders what comes back.
//
// Requests carry a channel. 'control' requests (init, import, training commands)
// run in order. On the other channels only the newest request counts: one that
// is still waiting when a newer one arrives is answered {superseded: true}, so
// typing fast computes only the latest text. Between jobs the worker yields to
// its message queue; training steps run only when nothing else is waiting.
import { configure, defaultQuant, memoryBytes, memoryUsage, pointNames, runtimeInfo } from '../wasm/quantscope.mjs';
import * as registry from './worker/registry.js';
import * as jobs from './worker/jobs.js';
import * as train from './worker/train.js';
import * as fixes from './worker/fix.js';

const BASE = new URL('../', import.meta.url); // the server's root: models/, build/web/
const CHANNELS = ['control', 'analyze', 'fix', 'quant', 'ppl', 'fixTable']; // priority order
const pending = { control: [], analyze: null, fix: null, quant: null, ppl: null, fixTable: null };
const corpus = { heldOut: null, train: null };
// A model must fit the 2 GiB WASM memory twice over (file bytes + float32 weights).
const IMPORT_LIMIT = 640 * 2 ** 20;

const post = (msg, transfer = []) => self.postMessage(msg, transfer);
const emitTrain = (ev) => post({ event: 'train', ...ev });

// Held until this worker is gone: the page waits on the same lock to learn that (client.js).
if (self.name && self.navigator?.locks) {
  navigator.locks.request(self.name, () => {
    post({ event: 'alive', lock: self.name });
    return new Promise(() => {});
  });
}

self.onmessage = (e) => {
  const msg = e.data;
  if (msg.channel === 'control') {
    pending.control.push(msg);
  } else if (CHANNELS.includes(msg.channel)) {
    const old = pending[msg.channel];
    if (old) post({ id: old.id, channel: old.channel, superseded: true });
    pending[msg.channel] = msg;
  } else {
    post({ id: msg.id, ok: false, error: `unknown channel ${msg.channel}` });
    return;
  }
  kick();
};

// Yielding through a MessageChannel lets queued messages in without timer clamping.
const tick = new MessageChannel();
let wake = null;
tick.port1.onmessage = () => { const w = wake; wake = null; w?.(); };
const yieldNow = () => new Promise((r) => { wake = r; tick.port2.postMessage(0); });

let running = false;
function kick() {
  if (running) return;
  running = true;
  pump().finally(() => { running = false; });
}

function next() {
  if (pending.control.length) return pending.control.shift();
  for (const ch of CHANNELS.slice(1)) {
    const m = pending[ch];
    if (m) { pending[ch] = null; return m; }
  }
  return null;
}

async function pump() {
  for (;;) {
    const msg = next();
    if (msg) {
      await handle(msg);
    } else if (train.hasWork()) {
      await train.stepOne(emitTrain);
    } else {
      return;
    }
    await yieldNow();
  }
}

async function handle(msg) {
  const t0 = performance.now();
  try {
    const value = await HANDLERS[msg.kind](msg.args ?? {});
    const transfer = [];
    collectBuffers(value, transfer);
    post({ id: msg.id, channel: msg.channel, ok: true, value, workerMs: performance.now() - t0 }, transfer);
  } catch (e) {
    post({ id: msg.id, channel: msg.channel, ok: false, error: e.message ?? String(e),
      user: !!e.user, code: e.code ?? null });
  }
}

/** Typed arrays in a result travel as transfers, not copies. */
function collectBuffers(v, out, seen = new Set()) {
  if (!v || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (ArrayBuffer.isView(v)) {
    if (!out.includes(v.buffer) && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) out.push(v.buffer);
    return;
  }
  for (const k of Object.keys(v)) collectBuffers(v[k], out, seen);
}

async function fetchText(path) {
  try {
    const r = await fetch(new URL(path, BASE));
    return r.ok ? await r.text() : null;
  } catch {
    return null;
  }
}

/**
 * Starts the WASM core: the pthreads build when the page asks for threads and
 * can have them, else the single-threaded build, which always works.
 */
async function startRuntime(threads) {
  let fallback = null;
  if (threads > 1) {
    try {
      configure({ threads });
      await runtimeInfo();
    } catch (e) {
      configure({ threads: 1 }); // the failed start left the core unstarted
      fallback = e.message;
    }
  }
  return { ...await runtimeInfo(), fallback };
}

const HANDLERS = {
  async init({ threads = 1 } = {}) {
    const runtime = await startRuntime(threads);
    const [{ failed }, heldOut, trainText] = await Promise.all([
      registry.loadShipped(BASE), fetchText('build/web/kjv-heldout.txt'), fetchText('build/web/kjv-train.txt')]);
    corpus.heldOut = heldOut;
    corpus.train = trainText;
    return {
      models: registry.all().map(registry.describe), failed,
      corpus: { heldOut: heldOut?.length ?? 0, train: trainText?.length ?? 0 },
      memory: await memoryBytes(), runtime,
      // The library owns these defaults; the page starts from them.
      defaults: { quant: await defaultQuant(), points: (await pointNames()).map((p) => p.name) },
    };
  },
  analyze: (a) => jobs.analyze(a),
  quant: (a) => jobs.quant({ ...a, heldOutText: corpus.heldOut, trainText: corpus.train }),
  ppl: (a) => jobs.ppl({ ...a, heldOutText: corpus.heldOut, trainText: corpus.train }),
  applyFix: (a) => fixes.applyFix({ ...a, trainText: corpus.train }),
  fixColumn: (a) => fixes.fixColumn({ ...a,
    ppl: (p) => jobs.ppl({ ...p, heldOutText: corpus.heldOut, trainText: corpus.train }) }),
  async import({ files }) {
    const model = await registry.importFiles(files, IMPORT_LIMIT);
    return { model, memory: await memoryBytes() };
  },
  // The WASM memory's size and what malloc holds in it (the soak test reads them).
  memory: () => memoryUsage(),
  trainStart: (a) => train.start({ ...a, options: { ...a.options, text: corpus.train } }, emitTrain),
  trainStatus: ({ runId, status }) => train.setStatus(runId, status),
  trainFiles: ({ runId }) => train.files(runId),
  trainOpen: ({ runId }) => train.open(runId),
  trainRemove: ({ runId }) => train.remove(runId),
};
