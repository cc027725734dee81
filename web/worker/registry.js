// web/worker/registry.js: the models the worker owns (shipped, imported, trained)
// and what it caches per model: special ids, the held-out text as ids.
import { loadModel, pickModelFiles } from '../../wasm/quantscope.mjs';

/** An Error whose message is shown to the user as it is. */
export function userError(message) {
  const e = new Error(message);
  e.user = true;
  return e;
}

const entries = new Map(); // id -> entry
let importCount = 0;

/** What the page may know about a model (no handles). */
export function describe(e) {
  const c = e.model.config;
  return {
    id: e.id, title: e.title, variant: e.variant, arch: c.arch, source: e.source,
    hasTokenizer: e.model.hasTokenizer, note: e.note ?? null,
    config: { ...c },
    params: e.params,
  };
}

export function get(id) {
  const e = entries.get(id);
  if (!e) throw userError(`unknown model '${id}'`);
  return e;
}

export function all() { return [...entries.values()]; }

/** The variant a config describes, as the page's chips name them. */
export function variantOf(c) {
  if (c.block === 'op') return 'op';
  if (c.gate !== 'none') return 'gated';
  if (c.softmax === 'clipped_softmax') return 'clipped';
  if (c.softmax === 'softmax1') return 'softmax1';
  return 'vanilla';
}

function add(model, { id, title, variant, source, note }) {
  const e = { id, title, variant: variant ?? variantOf(model.config), source, note, model,
    params: model.config.nParams, cache: new Map() };
  entries.set(id, e);
  return e;
}

/** Loads models/index.json and every model in it; failures become notes, not a dead page. */
export async function loadShipped(base) {
  const res = await fetch(new URL('models/index.json', base));
  if (!res.ok) throw userError(`models/index.json: HTTP ${res.status} (is the server run from the repository?)`);
  const index = await res.json();
  const failed = [];
  await Promise.all((index.models ?? []).map(async (m) => {
    try {
      // The module fetches the folder; it asks for vocab.txt only when
      // config.json names a WordPiece tokenizer, so our byte-level models
      // cost no 404s.
      const model = await loadModel(new URL(`models/${m.id}/`, base));
      add(model, { id: m.id, title: m.title ?? m.id, variant: m.variant, source: 'shipped' });
    } catch (e) {
      failed.push(`${m.id}: ${e.message}`);
    }
  }));
  // Keep index.json's order.
  const order = (index.models ?? []).map((m) => m.id);
  const sorted = [...entries.values()].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  entries.clear();
  for (const e of sorted) entries.set(e.id, e);
  return { failed };
}

/** A model from dropped / picked files (File objects). */
export async function importFiles(files, limitBytes) {
  const list = Array.from(files);
  const names = list.map((f) => f.name).join(', ') || 'nothing';
  // The files loadModel(list) will take, so that the messages say what is missing
  // (C's size limits, config.json's 1 MiB included, come from loadModel).
  const { config, safetensors: st } = pickModelFiles(list);
  if (!config && !st) {
    throw userError(`Not a model: expected config.json and model.safetensors (and optionally vocab.txt), got ${names}.`);
  }
  if (!config) throw userError(`No config.json among the files (${names}): drop it together with the .safetensors file.`);
  if (!st) throw userError(`No .safetensors file among the files (${names}): drop it together with config.json.`);
  // The file and the float32 weights both have to fit the 2 GiB WASM memory.
  if (st.size > limitBytes) {
    throw userError(`${st.name} is ${fmtBytes(st.size)}: larger than this page can hold `
      + `(WASM memory is limited to 2 GiB and needs the file plus its float32 weights; at most ${fmtBytes(limitBytes)}).`);
  }
  let model;
  try {
    model = await loadModel(list);
  } catch (e) {
    throw userError(`Could not import ${names}: ${e.message}`);
  }
  importCount++;
  const id = `imported-${importCount}`;
  const c = model.config;
  const title = `Imported ${c.arch.toUpperCase()} #${importCount} (${c.nLayers}L, d ${c.hiddenSize})`;
  const note = model.hasTokenizer ? null
    : 'This checkpoint has no tokenizer (no vocab.txt was given): enter token ids instead of text.';
  return describe(add(model, { id, title, source: 'imported', note }));
}

/** Registers a model made in the page (a trained one). */
export function addTrained(model, { title, variant }) {
  importCount++;
  const id = `trained-${importCount}`;
  return describe(add(model, { id, title, variant, source: 'trained' }));
}

export function fmtBytes(n) {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** The model's special ids, cached. */
export async function specials(e) {
  if (!e.model.hasTokenizer) return null;
  if (!e.cache.has('specials')) e.cache.set('specials', await e.model.specialTokens());
  return e.cache.get('specials');
}

/** The held-out text as this model's ids (no specials), cached; null without tokenizer or text. */
export async function heldOutIds(e, text) {
  if (!text || !e.model.hasTokenizer) return null;
  if (!e.cache.has('heldout')) {
    const enc = await e.model.tokenize(text, { addSpecial: false });
    e.cache.set('heldout', enc.ids);
  }
  return e.cache.get('heldout');
}
