// web/url.js: the page's controls in its address, one row per control, so that a
// copied link shows the same view and reload, back and forward restore it.
//
// A row: key (the query parameter); field (the top-level state key it sets);
// get(s) the control's value in the state (null: this row does not describe it);
// text(v) the value as written; read(str, w) the value parsed from the address
// and clamped to what w (the state being restored) allows, as {value, note?},
// or {note} when it is ignored; put(v, w) the state patch; max the longest
// value read (MAX_VALUE unless said). Values equal to the
// page's defaults (or the row's own `initial`) are left out, so the plain
// address means the plain page.
// Allowed values come from the controls themselves (a <select>'s options, a
// slider's min and max), so a row cannot drift from its control.
import { getState, update, subscribe, shownModels, VIEWS } from './state.js';
import { ensure, message, clear, selectPatch } from './actions.js';

const MAX_TEXT = 4000; // characters of input text kept from an address
const MAX_IDS = 4096; // characters of a token-id list (the worker's limit too)
const MAX_VALUE = 64; // characters of any other value
// LLM.int8()'s threshold: its slider ends at the largest |x| of the models shown,
// which is not known when an address is read; no activation here comes near this.
const MAX_THRESHOLD = 1000;
const COALESCE_MS = 1000; // changes of the same controls closer than this share one history entry
const MIN_WRITE_MS = 100; // at most ten address writes a second (Chromium throttles faster ones)

const short = (v) => (v.length > 24 ? `${v.slice(0, 23)}…` : v);
const q = (v) => `“${short(v)}”`;

// --------------------------------------------------------------- readers

function integer(str, lo, hi, what) {
  if (!/^[+-]?\d+$/.test(str)) return { note: `${what} ${q(str)} is not a whole number: ignored` };
  const v = Number(str); // a very long digit string is Infinity: clamped like any other
  if (v < lo) return { value: lo, note: `${what} ${q(str)} is below ${lo}: using ${lo}` };
  if (v > hi) return { value: hi, note: `${what} ${q(str)} is above ${hi}: using ${hi}` };
  return { value: v };
}

function decimal(str, lo, hi, what) {
  const v = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(str) ? Number(str) : NaN;
  if (Number.isNaN(v)) return { note: `${what} ${q(str)} is not a number: ignored` };
  if (v < lo) return { value: lo, note: `${what} ${q(str)} is below ${lo}: using ${lo}` };
  if (v > hi) return { value: hi, note: `${what} ${q(str)} is above ${hi}: using ${hi}` };
  return { value: v };
}

function oneOf(str, values, what) {
  return values.includes(str) ? { value: str }
    : { note: `${what} ${q(str)} is not one of ${values.join(', ')}: ignored` };
}

/** The values a <select> offers. */
const optionsOf = (id) => [...(document.getElementById(id)?.options ?? [])].filter((o) => !o.disabled).map((o) => o.value);

/** The values of a group of radio buttons. */
const radiosOf = (name) => [...document.querySelectorAll(`input[type=radio][name="${name}"]`)].map((r) => r.value);

/** A numeric input's [min, max]. */
const rangeOf = (id) => {
  const el = document.getElementById(id);
  return [Number(el?.min), Number(el?.max)];
};

const choice = (selectId, what) => (str) => oneOf(str, optionsOf(selectId), what);
const bitsRow = (key, sliderId, field, what) => ({
  key, field: 'quant', get: (s) => s.quant?.[field], text: String,
  read: (str) => integer(str, ...rangeOf(sliderId), what),
  put: (v, w) => ({ quant: { ...w.quant, [field]: v } }),
});
const quantChoice = (key, selectId, field, what) => ({
  key, field: 'quant', get: (s) => s.quant?.[field], text: String, read: choice(selectId, what),
  put: (v, w) => ({ quant: { ...w.quant, [field]: v } }),
});

// ---------------------------------------------------------------- models

/** The model a fix chip selects: the shipped one trained with that change (actions.toggleVariant). */
const chipModel = (s, v) => s.models.find((m) => m.variant === v && m.source === 'shipped')
  ?? s.models.find((m) => m.variant === v);
/** The selected model's chip, when the chip's model is the one selected; else null. */
function chipOf(s) {
  const m = s.models.find((x) => x.id === s.selected);
  return m && chipModel(s, m.variant)?.id === m.id ? m.variant : null;
}
const selected = (w) => w.models.find((m) => m.id === w.selected);
/** Layers of the models shown: the histogram's layer list, as the quantization view makes it. */
const shownLayers = (w) => Math.max(1, ...shownModels(w).map((m) => m.config.nLayers));

// ------------------------------------------------------------------ rows

const ROWS = [
  { key: 'variant', field: 'selected', get: chipOf, text: String,
    read: (str, w) => {
      const variants = [...new Set(w.models.map((m) => m.variant))];
      const r = oneOf(str, variants, 'fix');
      return r.note ? r : { value: chipModel(w, str).id };
    },
    put: (id, w) => selectPatch(w, id) },
  { key: 'model', field: 'selected', get: (s) => (chipOf(s) ? null : s.selected), text: String,
    read: (str, w) => (w.models.some((m) => m.id === str) ? { value: str }
      : { note: `model ${q(str)} is not loaded on this page (imported and trained models live only in the tab that made them): showing ${selected(w)?.title}` }),
    put: (id, w) => selectPatch(w, id) },
  { key: 'compare', field: 'compare', get: (s) => s.compare, text: (v) => (v ? '1' : '0'),
    read: (str) => (str === '1' || str === '0' ? { value: str === '1' } : { note: `compare ${q(str)} is not 0 or 1: ignored` }),
    put: (v) => ({ compare: v }) },
  { key: 'text', field: 'text', max: Infinity, get: (s) => s.text, text: String,
    read: (str) => (str.length > MAX_TEXT
      ? { value: str.slice(0, MAX_TEXT), note: `the text is ${str.length} characters: kept the first ${MAX_TEXT}` } : { value: str }),
    put: (text) => ({ text }) },
  { key: 'ids', field: 'idsText', max: MAX_IDS, get: (s) => s.idsText, text: String, read: (str) => ({ value: str }),
    put: (idsText) => ({ idsText }) },
  { key: 'view', field: 'view', get: (s) => s.view, text: String, read: (str) => oneOf(str, VIEWS, 'view'),
    put: (view) => ({ view }) },
  { key: 'point', field: 'point', get: (s) => s.point, text: String, read: choice('point', 'capture point'),
    put: (point) => ({ point }) },
  { key: 'scale', field: 'scale', get: (s) => s.scale, text: String, read: choice('scale', 'colour scale'),
    put: (scale) => ({ scale }) },
  { key: 'layer', field: 'attn', get: (s) => s.attn.layer, text: String,
    read: (str, w) => integer(str, 0, (selected(w)?.config.nLayers ?? 1) - 1, 'attention layer'),
    put: (layer, w) => ({ attn: { ...w.attn, layer } }) },
  { key: 'head', field: 'attn', get: (s) => s.attn.head, text: String,
    read: (str, w) => integer(str, 0, (selected(w)?.config.nHeads ?? 1) - 1, 'attention head'),
    put: (head, w) => ({ attn: { ...w.attn, head } }) },
  bitsRow('wbits', 'wbits', 'weightBits', 'weight bits'),
  bitsRow('abits', 'abits', 'actBits', 'activation bits'),
  quantChoice('wgran', 'wgran', 'weightGranularity', 'weight granularity'),
  quantChoice('agran', 'agran', 'actGranularity', 'activation granularity'),
  quantChoice('est', 'estimator', 'estimator', 'range estimator'),
  { key: 'pct', field: 'quant', get: (s) => s.quant?.percentile, text: (v) => String(Math.round(v * 1e6) / 1e6),
    read: (str) => decimal(str, ...rangeOf('percentile'), 'percentile'),
    put: (percentile, w) => ({ quant: { ...w.quant, percentile } }) },
  { key: 'points', field: 'quant', max: 1024, get: (s) => s.quant?.points,
    // In the library's order, so that the same set is always written the same way.
    text: (v) => (v.length ? getState().pointNames.filter((p) => v.includes(p)).join(',') : 'none'),
    read: (str, w) => {
      if (str === 'none') return { value: [] };
      const names = str.split(',').filter(Boolean);
      const bad = names.filter((p) => !w.pointNames.includes(p));
      const value = w.pointNames.filter((p) => names.includes(p));
      return bad.length ? { value, note: `unknown quantized point${bad.length > 1 ? 's' : ''} ${bad.map(q).join(', ')}: left out` } : { value };
    },
    put: (points, w) => ({ quant: { ...w.quant, points } }) },
  { key: 'ranges', field: 'ranges', get: (s) => s.ranges, text: String, read: choice('ranges', 'activation ranges'),
    put: (ranges) => ({ ranges }) },
  { key: 'hpoint', field: 'hist', get: (s) => s.hist.point, text: String, read: choice('hist-point', 'histogram activation'),
    put: (point, w) => ({ hist: { ...w.hist, point } }) },
  { key: 'hlayer', field: 'hist', get: (s) => s.hist.layer, text: String,
    read: (str, w) => integer(str, 0, shownLayers(w) - 1, 'histogram layer'),
    put: (layer, w) => ({ hist: { ...w.hist, layer } }) },
  { key: 'mask', field: 'maskPos', get: (s) => s.maskPos, text: String,
    // Position 0 is [CLS]; the worker picks the default position for one past the text.
    read: (str, w) => integer(str, 1, (selected(w)?.config.maxPositions ?? 2) - 2, 'masked position'),
    put: (maskPos) => ({ maskPos }) },
  // The post-hoc fix (web/fixes.js): the quant and perplexity requests carry it and the worker applies it.
  { key: 'fix', field: 'postHocFix', get: (s) => s.postHocFix?.kind, text: String,
    read: (str) => oneOf(str, radiosOf('posthoc-fix'), 'post-hoc fix'),
    put: (kind, w) => ({ postHocFix: { ...w.postHocFix, kind } }) },
  { key: 'alpha', field: 'postHocFix', get: (s) => s.postHocFix?.alpha, text: String,
    read: (str) => decimal(str, ...rangeOf('fix-alpha'), 'SmoothQuant α'),
    put: (alpha, w) => ({ postHocFix: { ...w.postHocFix, alpha } }) },
  { key: 'threshold', field: 'postHocFix', get: (s) => s.postHocFix?.threshold, text: String,
    read: (str) => decimal(str, rangeOf('fix-threshold')[0], MAX_THRESHOLD, 'LLM.int8() threshold'),
    put: (threshold, w) => ({ postHocFix: { ...w.postHocFix, threshold } }) },
  // Read once at start (actions.requestedThreads): the address keeps the build that runs.
  { key: 'threads', field: null, initial: 1, get: (s) => s.runtime?.threads ?? 1, text: String,
    read: (str) => integer(str, 1, 16, 'threads'), put: () => ({}) },
];
const KEYS = new Set(ROWS.map((r) => r.key));
const FIELDS = [...new Set(ROWS.map((r) => r.field).filter(Boolean))];

// ------------------------------------------------------- reading, writing

let defaults = null; // the controls as the page starts, before any address is read

/** The address for state s: every control that differs from the page's defaults. */
export function serialise(s = getState()) {
  const p = new URLSearchParams();
  for (const r of ROWS) {
    const v = r.get(s);
    if (v === null || v === undefined) continue;
    const d = 'initial' in r ? r.initial : defaults ? r.get(defaults) : null;
    if (d !== null && d !== undefined && r.text(v) === r.text(d)) continue;
    p.set(r.key, r.text(v));
  }
  const str = p.toString();
  return str ? `?${str}` : '';
}

/** The state patch an address asks for, starting from the defaults, and notes on what was changed or ignored. */
export function parse(search, s = getState()) {
  const params = new URLSearchParams(search);
  const notes = [];
  const unknown = [...new Set(params.keys())].filter((k) => !KEYS.has(k));
  if (unknown.length) {
    notes.push(`unknown setting${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 5).map(q).join(', ')}`
      + `${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''} ignored`);
  }
  let w = { ...s };
  for (const f of FIELDS) w[f] = (defaults ?? s)[f];
  for (const r of ROWS) {
    const str = params.get(r.key);
    if (str === null) continue;
    const limit = r.max ?? MAX_VALUE;
    const got = str.length > limit ? { note: `${r.key} is longer than ${limit} characters: ignored` } : r.read(str, w);
    if (got.note) notes.push(got.note);
    if ('value' in got) w = { ...w, ...r.put(got.value, w) };
  }
  const patch = {};
  for (const f of FIELDS) patch[f] = w[f];
  return { patch, notes };
}

/** Applies the address to the page; the message says what it could not use. */
function apply(search) {
  const { patch, notes } = parse(search);
  update(patch);
  if (notes.length) message('error', `This link’s settings were adjusted: ${notes.join('; ')}.`, 'url');
  else clear('url');
  ensure();
}

/**
 * Called by actions.boot once the models are known (at start and after a worker
 * restart): the controls from the address. The address is then rewritten in its
 * canonical form (clamped values, unknown keys gone) without a history entry.
 */
export function restore() {
  defaults ??= structuredClone(Object.fromEntries(FIELDS.map((f) => [f, getState()[f]]).concat(
    [['models', getState().models], ['runtime', getState().runtime], ['pointNames', getState().pointNames]])));
  apply(location.search);
  written.search = serialise();
  history.replaceState(null, '', here(written.search));
}

const here = (search) => `${location.pathname}${search}${location.hash}`;

/** This page's address with some parameters changed (null removes one): for links that reload. */
export function linkWith(changes) {
  const p = new URLSearchParams(serialise());
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) p.delete(k);
    else p.set(k, String(v));
  }
  const str = p.toString();
  return here(str ? `?${str}` : '');
}

// The last write: its address, the keys it changed and when, for coalescing.
const written = { search: null, keys: '', t: 0, timer: 0 };

function changedKeys(a, b) {
  const pa = new URLSearchParams(a), pb = new URLSearchParams(b);
  return [...new Set([...pa.keys(), ...pb.keys()])].filter((k) => pa.get(k) !== pb.get(k)).sort().join();
}

function write() {
  written.timer = 0;
  const s = getState();
  if (s.phase !== 'ready' || !defaults) return;
  const search = serialise(s);
  if (search === location.search || (search === '' && location.search === '?')) return;
  const now = performance.now();
  if (now - written.t < MIN_WRITE_MS) {
    written.timer = setTimeout(write, MIN_WRITE_MS - (now - written.t));
    return;
  }
  const keys = changedKeys(location.search, search);
  // A slider drag or a typed word changes the same keys again and again: one entry.
  if (keys === written.keys && now - written.t < COALESCE_MS) history.replaceState(null, '', here(search));
  else history.pushState(null, '', here(search));
  Object.assign(written, { search, keys, t: now });
}

/** Keeps the address in step with the state, and the state with back and forward. */
export function mount() {
  subscribe(() => { if (!written.timer) write(); });
  addEventListener('popstate', () => {
    if (getState().phase !== 'ready' || !defaults) return;
    clearTimeout(written.timer);
    written.timer = 0;
    written.keys = '';
    apply(location.search);
  });
}
