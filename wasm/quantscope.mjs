// wasm/quantscope.mjs: the one JavaScript API of quantscope for Node and browsers:
// loading models, tokenizing, forward passes with statistics, quantization, evaluation.

// The Emscripten artefacts: the default single-threaded build, and the optional
// pthreads build (scripts/build-wasm.sh --threads), each in its own folder.
const BUILD_DIRS = {
  single: new URL('../build/wasm/', import.meta.url),
  threads: new URL('../build/wasm-threads/', import.meta.url),
};
const MAX_THREADS = 16; // QS_MAX_THREADS in src/core/threads.h

const IS_NODE = typeof process === 'object' && typeof process.versions?.node === 'string';

const SPECIALS = ['pad', 'cls', 'sep', 'mask', 'unk']; // qs_special order
const DEFAULT_ID = -2; // QSW_DEFAULT_ID in exports.c: keep the library's default

/** An Error carrying a quantscope status name in `code`. */
function qsError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

const argError = (message) => qsError('QS_ERR_ARG', message);

// ---------------------------------------------------------------- options
//
// config.json refuses unknown keys; options objects do too, with one check:
// a misspelt key ({captures: [...]}, quant: {actbits: 4}) would otherwise be
// ignored, and the call would run with the default without a word.

/**
 * `value` as the options object of a call, every key checked against the
 * `keys` it takes (undefined: no options). `noun` names the object in the
 * message ("option", "quant option").
 */
function checkOptions(value, keys, what, noun = 'option') {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    throw argError(`${what}: ${noun}s must be an object, got ${got}`);
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw argError(`${what}: unknown ${noun} '${key}' (valid: ${keys.join(', ')})`);
  }
  return value;
}

function callbackOption(f, what) {
  if (f == null) return null;
  if (typeof f !== 'function') throw argError(`${what} must be a function, got ${typeof f}`);
  return f;
}

// ------------------------------------------------------------ cancellation
//
// A call into WebAssembly runs to its end: JavaScript, an AbortSignal's
// abort() included, cannot run meanwhile. Long calls (evaluate, calibrate)
// are therefore made in steps, and between two steps the event loop runs
// and the signal is checked.

function signalOption(signal, what) {
  if (signal == null) return null;
  if (typeof AbortSignal !== 'function' || !(signal instanceof AbortSignal)) {
    throw argError(`${what}: signal must be an AbortSignal`);
  }
  return signal;
}

/** Throws the signal's reason once it is aborted: a DOMException named
 * 'AbortError' unless abort() was given another, as fetch() rejects. */
function checkAborted(signal) {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * Resolves after the event loop has run once: a task, not a microtask,
 * because timers and messages (where an abort() usually comes from) are
 * tasks. setImmediate in Node; a MessageChannel in browsers, where
 * setTimeout(0) waits 4 ms once nested.
 */
const nextTask = typeof setImmediate === 'function'
  ? () => new Promise((resolve) => { setImmediate(resolve); })
  : () => new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });

// ---------------------------------------------------------------- traps
//
// A WebAssembly trap (an access outside linear memory, `unreachable`, a
// stack overflow) aborts the C call midway: a heap that was being written
// may be corrupt and its locks or lists half-updated, so nothing in that
// instance can be trusted any more, including the other models living in
// it. The C code refuses every size it cannot hold (core/size.h), so a trap
// is a bug; if one escapes anyway it becomes an Error with code
// 'QS_ERR_TRAP', the instance is dropped, and the next call starts a fresh
// one. Models of the dropped instance reject with restartedError().

const isTrap = (e) => e instanceof WebAssembly.RuntimeError
  || (e instanceof RangeError && /call stack size/i.test(e.message));

const trapError = (e) => {
  const err = qsError('QS_ERR_TRAP', `quantscope: the WebAssembly instance trapped (${e.message}); `
    + 'it was dropped and the next call starts a fresh one: models loaded before must be loaded again');
  err.cause = e;
  return err;
};

const restartedError = () => qsError('QS_ERR_TRAP',
  'quantscope: the WASM instance was restarted after a trap; load the model again');

// ---------------------------------------------------------------- the core

let corePromise = null;
let currentCore = null; // what corePromise resolved to, until a trap drops it
let wantThreads = 1; // set by configure() before the core starts

/**
 * Chooses the WebAssembly build; call it before anything that starts the core.
 * `threads` > 1 loads the pthreads build: evaluation windows and training
 * sequences then run on that many threads (Web Workers started with the
 * module). That needs SharedArrayBuffer, so a cross-origin isolated page
 * (COOP/COEP headers, as scripts/serve.mjs sends) and a browser: this build's
 * threads do not run in Node, where the native `qs` has threads instead.
 * Blocking joins are fine in a Worker; on a page's main thread they stall it.
 */
export function configure(options) {
  const { threads = 1 } = checkOptions(options, ['threads'], 'configure');
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw argError(`configure: threads must be an integer in [1, ${MAX_THREADS}], got ${threads}`);
  }
  if (corePromise && threads !== wantThreads) {
    throw argError(`configure: the WebAssembly core already started with ${wantThreads} thread(s)`);
  }
  wantThreads = threads;
}

/** The WASM instance shared by all models, started on first use. */
function core() {
  corePromise ??= startCore(wantThreads).then((c) => {
    currentCore = c;
    return c;
  }, (e) => {
    corePromise = null; // let a later call retry (e.g. after a network error)
    throw e;
  });
  return corePromise;
}

/** After a trap: the next core() call starts a fresh instance. */
function dropCore(c) {
  if (currentCore !== c) return;
  currentCore = null;
  corePromise = null;
}

async function compileWasm(url) {
  if (IS_NODE) {
    // 3.1.6's glue would fetch() the file path, which Node 20 refuses (docs/toolchain.md).
    const { readFile } = await import('node:fs/promises');
    return WebAssembly.compile(await readFile(url));
  }
  const res = await fetch(url);
  if (!res.ok) throw qsError('QS_ERR_IO', `${url}: HTTP ${res.status}`);
  // Streaming compilation needs the application/wasm MIME type.
  if (res.headers.get('content-type')?.startsWith('application/wasm')) {
    return WebAssembly.compileStreaming(res);
  }
  return WebAssembly.compile(await res.arrayBuffer());
}

function checkThreadsPossible() {
  if (IS_NODE) {
    throw argError('configure: the pthreads build runs in browsers only; in Node use threads: 1 '
      + '(or the native qs eval --threads)');
  }
  if (typeof SharedArrayBuffer !== 'function' || globalThis.crossOriginIsolated === false) {
    throw argError('configure: threads need a cross-origin isolated page (headers '
      + 'Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)');
  }
}

// The glue and the compiled module of each build, kept so that a restart
// after a trap only instantiates (fresh memory) instead of compiling again.
const compiled = new Map();

function loadBuild(threads) {
  const key = threads > 1 ? 'threads' : 'single';
  if (!compiled.has(key)) {
    const dir = BUILD_DIRS[key];
    const coreUrl = new URL('quantscope_core.mjs', dir);
    const build = threads > 1 ? 'npm run build:wasm -- --threads' : 'npm run build:wasm';
    const p = Promise.all([
      import(coreUrl.href).catch((e) => {
        throw qsError('QS_ERR_IO', `quantscope: cannot load ${coreUrl} (run ${build}): ${e.message}`);
      }),
      compileWasm(new URL('quantscope_core.wasm', dir)),
    ]).then(([glue, wasmModule]) => ({ factory: glue.default, wasmModule, dir, coreUrl }));
    p.catch(() => compiled.delete(key)); // a failed fetch or compile may be retried
    compiled.set(key, p);
  }
  return compiled.get(key);
}

async function startCore(threads) {
  if (threads > 1) checkThreadsPossible();
  const { factory, wasmModule, dir, coreUrl } = await loadBuild(threads);
  // The glue's ready promise never settles when instantiateWasm fails, so a
  // failure rejects this one instead.
  let failed;
  const failure = new Promise((_, reject) => { failed = reject; });
  const mod = await Promise.race([
    factory({
      instantiateWasm(imports, receive) {
        // The compiled module also goes to the pthread workers (threaded build).
        WebAssembly.instantiate(wasmModule, imports).then((inst) => receive(inst, wasmModule), failed);
        return {};
      },
      // Inside a module Worker the glue cannot tell its own folder: the pthread
      // workers' script and the glue they import live next to coreUrl.
      locateFile: (path) => new URL(path, dir).href,
      mainScriptUrlOrBlob: coreUrl.href,
    }),
    failure,
  ]);
  const pool = mod._qsw_thread_pool();
  if (threads > pool) {
    throw argError(`configure: threads ${threads} exceeds the ${pool} workers of this build's pthread pool `
      + '(QS_WASM_THREAD_POOL in CMakeLists.txt)');
  }
  return new Core(mod, threads);
}

/** Heap access and the name tables, over one Emscripten module instance. */
class Core {
  broken = null; // the QS_ERR_TRAP error once this instance trapped

  constructor(mod, threads) {
    this.m = mod;
    this.threads = threads; // the default of evaluate() and createTrainer()
    this.decoder = new TextDecoder();
    this.encoder = new TextEncoder();
    const m = mod;
    this.points = [];
    for (let p = 0; p < m._qsw_num_points(); p++) {
      this.points.push({ name: this.str(m._qsw_point_name(p)), global: !!m._qsw_point_is_global(p) });
    }
    this.pointIndex = new Map(this.points.map((p, i) => [p.name, i]));
    this.estimators = namesUntilUnknown((i) => this.str(m._qsw_estimator_name(i)));
    this.granularities = namesUntilUnknown((i) => this.str(m._qsw_granularity_name(i)));
    // A context for the calls that have no model yet (loading, defaults).
    this.ctx = this.newCtx();
    this.check(this.ctx, m._qsw_quant_default(this.ctx));
    const d = this.out(this.ctx, 10);
    this.quantDefaults = {
      weightBits: d[0], weightSymmetric: !!d[1], weightGranularity: this.granularities[d[2]],
      actBits: d[3], actSymmetric: !!d[4], actGranularity: this.granularities[d[5]],
      estimator: this.estimators[d[6]], percentile: shortFloat(d[7]),
      points: this.points.filter((_, i) => d[8] & (1 << i)).map((p) => p.name),
      int8: !!d[9],
    };
    this.check(this.ctx, m._qsw_train_default(this.ctx));
    const t = this.out(this.ctx, TRAIN_KEYS.length);
    this.trainDefaults = Object.fromEntries(TRAIN_KEYS.map((k, i) => [k, k === 'gammaRamp' ? !!t[i] : shortFloat(t[i])]));
  }

  // Views are taken fresh on every use: memory growth replaces the buffer.
  // In the threaded build a pthread may grow the shared memory, and the glue's
  // HEAPU8 follows only when the glue runs here: read the memory itself.
  get u8() {
    const mem = this.m.wasmMemory;
    return mem ? new Uint8Array(mem.buffer) : this.m.HEAPU8;
  }

  // TextDecoder refuses views of shared memory (threaded build): decode a copy.
  decode(view) { return this.decoder.decode(view.buffer instanceof ArrayBuffer ? view : view.slice()); }

  newCtx() {
    const ctx = this.m._qsw_ctx_new();
    if (!ctx) throw qsError('QS_ERR_NOMEM', 'out of WASM memory allocating a context');
    return ctx;
  }

  /**
   * Runs fn, which calls into this instance. A trap inside marks the
   * instance broken and drops it (see "traps" above) and becomes a
   * QS_ERR_TRAP error; on a broken instance fn does not run.
   */
  guard(fn) {
    if (this.broken) throw restartedError();
    try {
      return fn();
    } catch (e) {
      throw this.trapped(e);
    }
  }

  /** e, or for a trap the QS_ERR_TRAP error that replaces it. */
  trapped(e) {
    if (!isTrap(e)) return e;
    if (!this.broken) {
      this.broken = trapError(e);
      dropCore(this);
    }
    return this.broken;
  }

  /** Throws the context's error when status is not QS_OK. */
  check(ctx, status) {
    if (status === 0) return;
    const e = qsError(this.str(this.m._qsw_status_name(status)), this.str(this.m._qsw_ctx_message(ctx)));
    throw e;
  }

  /** The first n numbers a call left in ctx->out. */
  out(ctx, n) {
    const ptr = this.m._qsw_ctx_out(ctx) >>> 0;
    return Array.from(new Float64Array(this.u8.buffer, ptr, n));
  }

  alloc(bytes) {
    const p = this.m._malloc(Math.max(bytes, 1)) >>> 0;
    if (!p) throw qsError('QS_ERR_NOMEM', `out of WASM memory allocating ${bytes} bytes`);
    return p;
  }

  /** Copies a typed array (or null -> pointer 0) into fresh heap memory. */
  put(arr) {
    if (arr == null) return 0;
    const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
    const p = this.alloc(bytes.length);
    this.u8.set(bytes, p);
    return p;
  }

  /** Runs fn with the arrays copied into the heap, freeing them afterwards. */
  withHeap(arrays, fn) {
    const ptrs = [];
    try {
      for (const a of arrays) ptrs.push(this.put(a));
      return fn(...ptrs);
    } catch (e) {
      throw this.trapped(e);
    } finally {
      // After a trap the heap is not touched again: free() could trap too.
      if (!this.broken) for (const p of ptrs) if (p) this.m._free(p);
    }
  }

  str(ptr) {
    ptr >>>= 0;
    if (!ptr) return null;
    const u8 = this.u8;
    let end = ptr;
    while (u8[end] !== 0) end++;
    return this.decode(u8.subarray(ptr, end));
  }

  bytesToString(ptr, n) { return this.decode(this.u8.subarray(ptr, ptr + n)); }

  /** Copies n floats out of the heap: results never alias WASM memory. */
  f32(ptr, n) { return new Float32Array(this.u8.buffer, ptr >>> 0, n).slice(); }
  i32(ptr, n) { return new Int32Array(this.u8.buffer, ptr >>> 0, n).slice(); }
  u8copy(ptr, n) { return this.u8.slice(ptr >>> 0, (ptr >>> 0) + n); }

  pointMask(names, what) {
    let mask = 0;
    for (const name of names) {
      const i = this.pointIndex.get(name);
      if (i === undefined) {
        throw argError(`${what}: unknown point '${name}' (one of: ${[...this.pointIndex.keys()].join(', ')})`);
      }
      mask |= 1 << i;
    }
    return mask >>> 0;
  }
}

/** Names from a C name function that answers "unknown" past the last one. */
function namesUntilUnknown(nameOf) {
  const names = [];
  for (let i = 0; i < 64; i++) {
    const n = nameOf(i);
    if (!n || n === 'unknown') break;
    names.push(n);
  }
  return names;
}

// ------------------------------------------------------- argument checking

const INT32_MAX = 0x7fffffff; // the C side counts tokens in an int

/** The length of an array-like, refused unless a count C can take: a bogus
 * one ({length: -1}) would otherwise become a RangeError without a code. */
function arrayLength(values, what, kind) {
  if (values == null || typeof values !== 'object' || typeof values.length !== 'number') {
    throw argError(`${what} must be an array of ${kind}`);
  }
  const n = values.length;
  if (!Number.isInteger(n) || n < 0 || n > INT32_MAX) {
    throw argError(`${what}: length ${n} is not a valid array length (an integer in [0, ${INT32_MAX}])`);
  }
  return n;
}

/**
 * Int32Array of an array-like of integers: numbers, or BigInts as in the
 * BigInt64Array of transformers.js tokenizers. Values outside int32 are
 * QS_ERR_RANGE; the vocabulary range is C's check.
 */
function toInt32(values, what) {
  if (values instanceof Int32Array) return values;
  const n = arrayLength(values, what, 'integers');
  // Checked before anything is allocated: an array-like can claim any length.
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const int = typeof v === 'bigint' || Number.isInteger(v);
    if (!int) throw argError(`${what}[${i}] = ${v} is not a 32-bit integer`);
    if (v < -0x80000000 || v > INT32_MAX) {
      throw qsError('QS_ERR_RANGE', `${what}[${i}] = ${v} is outside the 32-bit integer range`);
    }
  }
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Number(values[i]);
  return out;
}

/** Uint8Array of 0/1 flags (numbers or booleans), length T. */
function toFlags(values, T, what) {
  if (values == null) return null;
  const n = arrayLength(values, what, '0/1 flags');
  if (n !== T) throw argError(`${what} has ${n} entries but ids has ${T}`);
  const out = new Uint8Array(T);
  for (let i = 0; i < T; i++) {
    const v = values[i];
    if (v !== 0 && v !== 1 && v !== true && v !== false) {
      throw argError(`${what}[${i}] = ${v} is not 0/1`);
    }
    out[i] = v ? 1 : 0;
  }
  return out;
}

function optionalInt32(values, T, what) {
  if (values == null) return null;
  const out = toInt32(values, what);
  if (out.length !== T) throw argError(`${what} has ${out.length} entries but ids has ${T}`);
  return out;
}

function intOption(v, what, dflt = 0) {
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v)) throw argError(`${what} must be an integer, got ${v}`);
  return v;
}

/** Threads for one call: configure()'s by default, never more (a thread beyond
 * the pthread pool would wait for a worker that cannot start while we block). */
function threadsOption(c, v, what) {
  const n = intOption(v, `${what}: threads`, c.threads);
  if (n < 1 || n > c.threads) {
    throw argError(`${what}: threads must be in [1, ${c.threads}] (configure({ threads }) sets the most), got ${n}`);
  }
  return n;
}

function numberOption(v, what, dflt = 0) {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number') throw argError(`${what} must be a number, got ${v}`);
  return v;
}

function enumOption(v, names, what, dflt) {
  if (v === undefined || v === null) return dflt;
  const i = names.indexOf(v);
  if (i < 0) throw argError(`${what}: unknown value '${v}' (one of: ${names.join(', ')})`);
  return i;
}

/** A quant option object with defaults filled in, as C arguments plus a key. */
function resolveQuant(core, q, what) {
  if (q === null || typeof q !== 'object') throw argError(`${what}: quant must be an object`);
  const d = core.quantDefaults;
  checkOptions(q, Object.keys(d), what, 'quant option'); // the keys of C's defaults
  const points = q.points ?? d.points;
  if (!Array.isArray(points)) throw argError(`${what}: quant.points must be an array of point names`);
  const args = [
    intOption(q.weightBits, `${what}: quant.weightBits`, d.weightBits),
    (q.weightSymmetric ?? d.weightSymmetric) ? 1 : 0,
    enumOption(q.weightGranularity, core.granularities, `${what}: quant.weightGranularity`,
               core.granularities.indexOf(d.weightGranularity)),
    intOption(q.actBits, `${what}: quant.actBits`, d.actBits),
    (q.actSymmetric ?? d.actSymmetric) ? 1 : 0,
    enumOption(q.actGranularity, core.granularities, `${what}: quant.actGranularity`,
               core.granularities.indexOf(d.actGranularity)),
    enumOption(q.estimator, core.estimators, `${what}: quant.estimator`,
               core.estimators.indexOf(d.estimator)),
    Math.fround(numberOption(q.percentile, `${what}: quant.percentile`, d.percentile)),
    core.pointMask(points, `${what}: quant.points`),
    (q.int8 ?? d.int8) ? 1 : 0,
  ];
  return { args, key: args.join(',') };
}

// -------------------------------------------------------------- the model

// Frees models that were dropped without dispose().
const finalizer = typeof FinalizationRegistry === 'function'
  ? new FinalizationRegistry(({ core, handle, ctx }) => {
    if (core.broken) return; // the instance and its memory are gone
    core.m._qsw_model_free(handle);
    core.m._qsw_ctx_free(ctx);
  })
  : null;

const disposedError = () => qsError('QS_ERR_ARG', 'quantscope: the model was disposed');

export class Model {
  #core;
  #handle;
  #ctx;
  #tail = Promise.resolve(); // the queue: every call runs after the previous one
  #disposed = null;          // the promise of dispose(), once called
  #quantKey = null;          // the quant config installed in C, as resolveQuant's key
  #hasTokenizer;
  #trainers = new Set();     // live trainers: they hold this model, so they go first

  /** @internal Use loadModel(). */
  constructor(core, handle, ctx) {
    this.#core = core;
    this.#handle = handle;
    this.#ctx = ctx;
    this.config = Object.freeze(readConfig(core, ctx, handle)); // a copy: editing it changes nothing
    this.#hasTokenizer = !!core.m._qsw_tok_has(handle);
    finalizer?.register(this, { core, handle, ctx }, this);
  }

  /**
   * Runs fn after every earlier call on this model. fn may be async (the
   * calls made in steps): the next call waits for it all, and after each of
   * its awaits it must enter the instance through core.guard() again, since
   * another model may have trapped it meanwhile.
   */
  #enqueue(fn) {
    if (this.#disposed) return Promise.reject(disposedError());
    const c = this.#core;
    const run = this.#tail.then(async () => {
      if (c.broken) throw restartedError();
      try {
        return await fn();
      } catch (e) {
        throw c.trapped(e);
      }
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  #call(status) { this.#core.check(this.#ctx, status); }

  get hasTokenizer() { return this.#hasTokenizer; }

  tokenize(text, options) {
    return this.#enqueue(() => {
      const { addSpecial = true } = checkOptions(options, ['addSpecial'], 'tokenize');
      if (typeof text !== 'string') throw argError('tokenize: text must be a string');
      const c = this.#core;
      const bytes = c.encoder.encode(text);
      c.withHeap([bytes], (p) => this.#call(c.m._qsw_tok_encode(this.#ctx, this.#handle, p, bytes.length,
                                                              addSpecial ? 1 : 0)));
      const [n, idsPtr, offPtr, delimPtr] = c.out(this.#ctx, 4);
      const ids = c.i32(idsPtr, n);
      const offsets = utf16Offsets(text, bytes, c.i32(offPtr, n));
      const delimiters = c.u8copy(delimPtr, n);
      const pieces = Array.from(ids, (id) => c.str(c.m._qsw_tok_piece(this.#handle, id)));
      return { ids, offsets, pieces, delimiters };
    });
  }

  detokenize(ids) {
    return this.#enqueue(() => {
      const a = toInt32(ids, 'detokenize: ids');
      const c = this.#core;
      c.withHeap([a], (p) => this.#call(c.m._qsw_tok_decode(this.#ctx, this.#handle, p, a.length)));
      const [len, textPtr] = c.out(this.#ctx, 2);
      return c.bytesToString(textPtr >>> 0, len);
    });
  }

  /** The display text of each id ("[MASK]", "##ing", "\\n" for byte 10); null for ids out of range. */
  pieces(ids) {
    return this.#enqueue(() => {
      const a = toInt32(ids, 'pieces: ids');
      const c = this.#core;
      if (!this.#hasTokenizer) throw qsError('QS_ERR_ARG', 'pieces: the model has no tokenizer');
      return Array.from(a, (id) => c.str(c.m._qsw_tok_piece(this.#handle, id)));
    });
  }

  specialTokens() {
    return this.#enqueue(() => {
      this.#call(this.#core.m._qsw_tok_specials(this.#ctx, this.#handle));
      const v = this.#core.out(this.#ctx, SPECIALS.length + 1);
      const out = { vocabSize: v[SPECIALS.length] };
      SPECIALS.forEach((name, i) => { out[name] = v[i]; });
      return out;
    });
  }

  /** Installs q unless the same config is installed already. */
  #installQuant(q, what, { fresh = false } = {}) {
    const { args, key } = resolveQuant(this.#core, q, what);
    if (!fresh && key === this.#quantKey) return args;
    this.#quantKey = null; // a failed install leaves the model unquantized
    this.#core.m._qsw_quant(this.#ctx, ...args);
    this.#call(this.#core.m._qsw_set_quant(this.#ctx, this.#handle));
    this.#quantKey = key;
    return args;
  }

  clearQuant() {
    return this.#enqueue(() => {
      this.#call(this.#core.m._qsw_clear_quant(this.#ctx, this.#handle));
      this.#quantKey = null;
    });
  }

  calibrate(batches, options) {
    return this.#enqueue(async () => {
      const { quant = {}, signal: s } = checkOptions(options, ['quant', 'signal'], 'calibrate');
      const signal = signalOption(s, 'calibrate');
      checkAborted(signal);
      if (!Array.isArray(batches)) throw argError('calibrate: batches must be an array of id arrays');
      const inputs = batches.map((b, i) => {
        const what = `calibrate: batches[${i}]`;
        const isObject = b !== null && typeof b === 'object' && typeof b.length !== 'number';
        if (isObject) checkOptions(b, ['ids', 'tokenTypes'], 'calibrate', `batches[${i}] key`);
        const ids = toInt32(isObject ? b.ids : b, what);
        return { ids, types: optionalInt32(isObject ? b.tokenTypes : null, ids.length, `${what}.tokenTypes`) };
      });
      const c = this.#core;
      // Calibration starts from fresh observers, so results do not depend on history.
      this.#installQuant(quant, 'calibrate', { fresh: true });
      let seen = 0;
      for (const [i, { ids, types }] of inputs.entries()) {
        c.guard(() => c.withHeap([ids, types], (pi, pt) => this.#call(
          c.m._qsw_calibrate(this.#ctx, this.#handle, pi, pt, ids.length))));
        [seen] = c.out(this.#ctx, 1);
        if (!signal || i === inputs.length - 1) continue;
        await nextTask();
        if (signal.aborted) {
          // Ranges from part of the batches must not pass for calibrated ones.
          c.guard(() => this.#call(c.m._qsw_clear_quant(this.#ctx, this.#handle)));
          this.#quantKey = null;
          checkAborted(signal);
        }
      }
      return { batches: seen };
    });
  }

  forward(ids, options) {
    return this.#enqueue(() => this.#forward(ids, options));
  }

  #forward(ids, options) {
    const { tokenTypes, attentionMask, delimiters, quant, capture = [] } = checkOptions(options,
      ['tokenTypes', 'attentionMask', 'delimiters', 'quant', 'capture'], 'forward');
    const c = this.#core;
    const a = toInt32(ids, 'forward: ids');
    const T = a.length;
    const types = optionalInt32(tokenTypes, T, 'forward: tokenTypes');
    const mask = toFlags(attentionMask, T, 'forward: attentionMask');
    const delims = toFlags(delimiters, T, 'forward: delimiters');
    if (!Array.isArray(capture)) throw argError('forward: capture must be an array of point names');
    const captureMask = c.pointMask(capture, 'forward: capture');
    const quantize = quant != null;
    if (quantize) this.#installQuant(quant, 'forward');
    c.withHeap([T ? a : null, types, mask, delims], (pi, pt, pm, pd) =>
      this.#call(c.m._qsw_forward(this.#ctx, this.#handle, pi, T, pt, pm, pd, quantize ? 1 : 0,
                                  captureMask)));
    return this.#results(T, capture);
  }

  /** Copies everything the last forward left in the model. */
  #results(T, capture) {
    const c = this.#core, m = c.m, h = this.#handle, cfg = this.config;
    const V = cfg.vocabSize, D = cfg.hiddenSize, L = cfg.nLayers;
    const logits = c.f32(m._qsw_logits(h), T * V);
    const hiddenStates = [];
    for (let i = 0; i <= L; i++) hiddenStates.push(c.f32(m._qsw_hidden_state(h, i), T * D));
    const points = [];
    const pointAt = (layer, p) => {
      this.#call(m._qsw_point_stats(this.#ctx, h, Math.max(layer, 0), p));
      const s = pointStats(c.out(this.#ctx, 40), layer, c.points[p].name);
      if (s) points.push(s);
    };
    // Data-flow order: global points listed before the per-layer ones in the
    // C enum (embed), every layer's points, then the remaining globals (final).
    const firstLocal = c.points.findIndex((pt) => !pt.global);
    c.points.forEach((pt, p) => { if (pt.global && p < firstLocal) pointAt(-1, p); });
    for (let l = 0; l < L; l++) c.points.forEach((pt, p) => { if (!pt.global) pointAt(l, p); });
    c.points.forEach((pt, p) => { if (pt.global && p > firstLocal) pointAt(-1, p); });
    const heads = [];
    for (let l = 0; l < L; l++) {
      const row = [];
      for (let k = 0; k < cfg.nHeads; k++) {
        this.#call(m._qsw_head_stats(this.#ctx, h, l, k));
        row.push(headStats(c.out(this.#ctx, 8)));
      }
      heads.push(row);
    }
    // The paper's summary figures, defined once in C (qs_outlier_summary).
    this.#call(m._qsw_outlier_summary(this.#ctx, h));
    const [maxInfNorm, maxInfNormLayer, maxFfnOutInfNorm, maxLnOutInfNorm, avgKurtosis, maxKurtosis,
      avgRmsKurtosis] = c.out(this.#ctx, 7);
    const summary = { maxInfNorm, maxInfNormLayer, maxFfnOutInfNorm, maxLnOutInfNorm, avgKurtosis,
      maxKurtosis, avgRmsKurtosis };
    const captures = {};
    for (const name of new Set(capture)) {
      const p = c.pointIndex.get(name);
      const layers = c.points[p].global ? [0] : [...Array(L).keys()];
      captures[name] = [];
      for (const l of layers) {
        const st = points.find((s) => s.point === name && s.layer === (c.points[p].global ? -1 : l));
        const ptr = m._qsw_capture(h, l, p);
        captures[name].push(st && ptr ? c.f32(ptr, st.rows * st.cols) : null);
      }
    }
    return { logits, shape: [T, V], hiddenStates, points, heads, summary, captures };
  }

  evaluate(idsOrText, options) {
    return this.#enqueue(async () => {
      const c = this.#core, ctx = this.#ctx;
      const o = checkOptions(options, EVALUATE_KEYS, 'evaluate');
      const signal = signalOption(o.signal, 'evaluate');
      const onProgress = callbackOption(o.onProgress, 'evaluate: onProgress');
      checkAborted(signal);
      let ids;
      if (typeof idsOrText === 'string') {
        const bytes = c.encoder.encode(idsOrText);
        c.withHeap([bytes], (p) => this.#call(c.m._qsw_tok_encode(ctx, this.#handle, p, bytes.length, 0)));
        const [n, idsPtr] = c.out(ctx, 2);
        ids = c.i32(idsPtr, n);
      } else {
        ids = toInt32(idsOrText, 'evaluate: ids');
      }
      const threads = threadsOption(c, o.threads, 'evaluate');
      const seed = intOption(o.maskSeed, 'evaluate: maskSeed');
      if (seed < 0 || seed > Number.MAX_SAFE_INTEGER) throw argError(`evaluate: maskSeed ${seed} must be in [0, 2^53)`);
      const specials = checkOptions(o.specials, ['cls', 'sep', 'mask', 'bos'], 'evaluate', 'specials key');
      const sp = (name) => intOption(specials[name], `evaluate: specials.${name}`, DEFAULT_ID);
      const args = [intOption(o.seqLen, 'evaluate: seqLen'), intOption(o.maxWindows, 'evaluate: maxWindows'), seed,
        numberOption(o.maskProb, 'evaluate: maskProb'), o.quant != null ? 1 : 0,
        intOption(o.calibWindows, 'evaluate: calibWindows'), sp('cls'), sp('sep'), sp('mask'), sp('bos'), threads];
      if (o.quant != null) {
        c.m._qsw_quant(ctx, ...resolveQuant(c, o.quant, 'evaluate').args);
        // qs_evaluate installs (and calibrates) this config itself: the next
        // quantized forward must install its own again.
        this.#quantKey = null;
      }
      // Without a signal or a progress callback nothing needs control back
      // between windows: one step does them all. Otherwise a step is as many
      // windows as run side by side.
      const stepWindows = signal || onProgress ? threads : 0;
      const idsPtr = ids.length ? c.put(ids) : 0; // the run reads them until it is freed
      let run = 0;
      try {
        c.guard(() => {
          this.#call(c.m._qsw_eval_begin(ctx, this.#handle, idsPtr, ids.length, ...args));
          run = c.out(ctx, 1)[0] >>> 0;
        });
        for (;;) {
          const [finished, done, total] = c.guard(() => {
            this.#call(c.m._qsw_eval_step(ctx, run, stepWindows));
            return c.out(ctx, 3);
          });
          onProgress?.({ done, total });
          if (finished) break;
          await nextTask();
          checkAborted(signal);
        }
        return c.guard(() => {
          this.#call(c.m._qsw_eval_result(ctx, run));
          const [fpNll, fpPpl, qNll, qPpl, nPredicted, nWindows] = c.out(ctx, 6);
          return { fpNll, fpPpl, qNll, qPpl, nPredicted, nWindows };
        });
      } finally {
        // After a trap the heap is not touched again (see "traps").
        if (!c.broken) {
          if (run) c.m._qsw_eval_free(run);
          if (idsPtr) c.m._free(idsPtr);
        }
      }
    });
  }

  /**
   * The model's files as qs_model_save_dir writes them: config.json text and
   * model.safetensors bytes (Hugging Face names), ready for loadModel or a download.
   */
  toFiles() {
    return this.#enqueue(() => {
      const c = this.#core;
      this.#call(c.m._qsw_model_safetensors(this.#ctx, this.#handle));
      const [len, ptr] = c.out(this.#ctx, 2);
      const safetensors = c.u8copy(ptr, len);
      this.#call(c.m._qsw_model_config(this.#ctx, this.#handle));
      const [clen, cptr] = c.out(this.#ctx, 2);
      return { config: c.bytesToString(cptr >>> 0, clen), safetensors };
    });
  }

  /**
   * A trainer for this model (its parameters change in place) over `text`
   * (byte-level models only). Options default to qs_train_config_default(),
   * threads to configure()'s.
   */
  createTrainer(text, trainOptions) {
    return this.#enqueue(() => {
      const c = this.#core;
      const options = checkOptions(trainOptions, TRAINER_KEYS, 'createTrainer');
      const bytes = contentBytes(text);
      if (!bytes) throw argError('createTrainer: text must be a string or bytes');
      const d = c.trainDefaults;
      const o = (k, what = `createTrainer: ${k}`) => numberOption(options[k], what, d[k]);
      const int = (k) => intOption(options[k], `createTrainer: ${k}`, d[k]);
      const seed = intOption(options.seed, 'createTrainer: seed', 0);
      if (seed < 0 || seed > Number.MAX_SAFE_INTEGER) throw argError(`createTrainer: seed ${seed} must be in [0, 2^53)`);
      const threads = threadsOption(c, options.threads, 'createTrainer');
      const steps = int('steps');
      const warmupSteps = options.warmupSteps ?? c.m._qsw_train_default_warmup(steps);
      const handle = c.withHeap([bytes], (p) => {
        this.#call(c.m._qsw_trainer_new(
          this.#ctx, this.#handle, p, bytes.length, int('batchSize'), int('seqLen'), steps,
          intOption(warmupSteps, 'createTrainer: warmupSteps'), o('lr'), o('minLrRatio'), o('weightDecay'),
          o('beta1'), o('beta2'), o('eps'), o('gradClip'), o('maskProb'), o('valFraction'),
          (options.gammaRamp ?? d.gammaRamp) ? 1 : 0, seed, threads));
        return c.out(this.#ctx, 2);
      });
      const trainer = new Trainer(this, handle[0] >>> 0, c.str(handle[1]), {
        enqueue: (fn) => this.#enqueue(fn),
        call: (status) => this.#call(status),
        out: (n) => c.out(this.#ctx, n),
        free: (h) => { if (!c.broken) c.m._qsw_trainer_free(h); this.#trainers.delete(trainer); },
        m: c.m, ctx: this.#ctx, steps,
      });
      this.#trainers.add(trainer);
      return trainer;
    });
  }

  /** Frees the model once queued calls finish; later calls reject. Idempotent. */
  dispose() {
    if (this.#disposed) return this.#disposed;
    finalizer?.unregister(this);
    const c = this.#core, handle = this.#handle, ctx = this.#ctx;
    const trainers = this.#trainers;
    this.#disposed = this.#tail.then(() => {
      for (const t of [...trainers]) t._free();
      if (c.broken) return; // trapped: the instance and its memory are gone
      c.m._qsw_model_free(handle);
      c.m._qsw_ctx_free(ctx);
    });
    return this.#disposed;
  }

  /**
   * @internal Test-only (tests/node/trap.test.mjs): traps inside the WASM
   * instance on purpose (exports.c qsw_test_trap; kind 1: a store past the
   * end of memory, else `unreachable`), to check the recovery.
   */
  _trapForTest(kind = 0) {
    return this.#enqueue(() => this.#core.m._qsw_test_trap(kind));
  }

  get disposed() { return this.#disposed !== null; }
}

const TRAIN_KEYS = ['batchSize', 'seqLen', 'steps', 'warmupSteps', 'lr', 'minLrRatio', 'weightDecay',
  'beta1', 'beta2', 'eps', 'gradClip', 'maskProb', 'valFraction', 'gammaRamp']; // qsw_train_default order
const TRAINER_KEYS = [...TRAIN_KEYS, 'seed', 'threads'];
const EVALUATE_KEYS = ['seqLen', 'maxWindows', 'maskSeed', 'maskProb', 'quant', 'calibWindows', 'threads',
  'specials', 'signal', 'onProgress'];

/**
 * Trains its model in place, one optimiser step per step() call; calls share
 * the model's queue, so forwards in between see the parameters of that moment.
 */
export class Trainer {
  #model;
  #handle;
  #h; // the model's queue and context
  #stepsDone = 0;

  /** @internal Use model.createTrainer(). */
  constructor(model, handle, warning, helpers) {
    this.#model = model;
    this.#handle = handle;
    this.#h = helpers;
    this.warning = warning;
    this.totalSteps = helpers.steps;
  }

  get model() { return this.#model; }
  get stepsDone() { return this.#stepsDone; }
  get disposed() { return this.#handle === 0; }

  #live() {
    if (!this.#handle) throw qsError('QS_ERR_ARG', 'quantscope: the trainer was disposed');
    return this.#handle;
  }

  /**
   * One optimiser step: {step, loss, gradNorm, lr, tokens}. With a signal
   * that is aborted by the time the step's turn comes, it rejects instead
   * (a step itself is one call into the instance: it runs to its end).
   */
  step(options) {
    return this.#h.enqueue(() => {
      checkAborted(signalOption(checkOptions(options, ['signal'], 'trainer.step').signal, 'trainer.step'));
      this.#h.call(this.#h.m._qsw_trainer_step(this.#h.ctx, this.#live()));
      const [step, loss, gradNorm, lr, tokens] = this.#h.out(5);
      this.#stepsDone = step;
      return { step, loss, gradNorm, lr, tokens };
    });
  }

  /** Validation loss on fixed batches and outlier statistics of the first validation sequence. */
  evaluate(options) {
    return this.#h.enqueue(() => {
      const { batches = 2, signal } = checkOptions(options, ['batches', 'signal'], 'trainer.evaluate');
      checkAborted(signalOption(signal, 'trainer.evaluate'));
      const n = intOption(batches, 'trainer.evaluate: batches');
      this.#h.call(this.#h.m._qsw_trainer_eval(this.#h.ctx, this.#live(), n));
      const [valLoss, valPpl, maxInfNorm, maxFfnOutInfNorm, avgKurtosis, maxKurtosis, avgRmsKurtosis, step]
        = this.#h.out(8);
      return { step, valLoss, valPpl, maxInfNorm, maxFfnOutInfNorm, avgKurtosis, maxKurtosis, avgRmsKurtosis };
    });
  }

  /** @internal Frees the C trainer now (inside the model's queue). */
  _free() {
    if (!this.#handle) return;
    const h = this.#handle;
    this.#handle = 0;
    this.#h.free(h);
  }

  /** Frees the trainer after queued calls; the model stays. Idempotent. */
  dispose() {
    if (!this.#handle) return Promise.resolve();
    return this.#h.enqueue(() => this._free()).catch(() => this._free());
  }
}

/** The config from C's own config.json writer, so enum names are C's spellings. */
function readConfig(core, ctx, handle) {
  core.check(ctx, core.m._qsw_model_config(ctx, handle));
  const [len, textPtr, eps, nParams] = core.out(ctx, 4);
  const j = JSON.parse(core.bytesToString(textPtr >>> 0, len));
  return {
    arch: j.model_type, vocabSize: j.vocab_size, hiddenSize: j.hidden_size, nLayers: j.num_hidden_layers,
    nHeads: j.num_attention_heads, intermediateSize: j.intermediate_size ?? j.ffn_dim,
    maxPositions: j.max_position_embeddings, typeVocabSize: j.type_vocab_size ?? 0,
    layerNormEps: shortFloat(eps), activation: j.hidden_act ?? j.activation_function,
    softmax: j.attn_softmax, clipGamma: shortFloat(j.clip_gamma), clipZeta: shortFloat(j.clip_zeta),
    clipAlpha: shortFloat(j.clip_alpha),
    clipSeqLen: j.clip_seq_len, gate: j.attn_gate_type, gateMlp: j.attn_gate_mlp,
    gateMlpHidden: j.attn_gate_mlp_hidden, gateAllFeatures: j.attn_gate_linear_all_features,
    gateInit: shortFloat(j.attn_gate_init), block: j.block_type, opBeta: shortFloat(j.op_beta), tokenizer: j.tokenizer,
    doLowerCase: j.do_lower_case, nParams,
  };
}

/** The shortest decimal that is the same float32 (1e-12, not 9.9999999600419720025e-13). */
function shortFloat(x) {
  const v = Math.fround(x); // JSON's 9-digit text is this float, not the double nearest it
  for (let p = 1; p < 10; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** qsw_point_stats' numbers as an object; null for points the model lacks. */
function pointStats(v, layer, point) {
  if (!v[0]) return null;
  const k = v.slice(16, 24).filter((d) => d >= 0).length; // valid top entries
  return {
    layer, point, rows: v[1], cols: v[2], maxAbs: v[3], mean: v[4], std: v[5], kurtosis: v[6],
    rmsKurtosis: v[7], min: v[8], max: v[9], quantized: !!v[10], quantMse: v[11], quantSqnrDb: v[12],
    quantMin: v[13], quantMax: v[14], nOutliers: v[15],
    topDims: v.slice(16, 16 + k), topVals: v.slice(24, 24 + k), topTokens: v.slice(32, 32 + k),
  };
}

function headStats(v) {
  const [delimMass, outNorm, valueNorm, delimValueNorm, entropy, maxProb, noopScore, gateMean] = v;
  return { delimMass, outNorm, valueNorm, delimValueNorm, entropy, maxProb, noopScore, gateMean };
}

/** UTF-8 byte offsets -> indices into the JS string (-1 stays -1). */
function utf16Offsets(text, bytes, byteOffsets) {
  const map = new Int32Array(bytes.length + 1);
  let b = 0;
  for (let i = 0; i < text.length; i++) {
    const cp = text.codePointAt(i);
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let k = 0; k < n; k++) map[b + k] = i;
    b += n;
    if (cp > 0xffff) i++; // surrogate pair: one code point, two string indices
  }
  map[b] = text.length;
  return byteOffsets.map((o) => (o < 0 ? -1 : map[o]));
}

// ---------------------------------------------------------------- loading

/* A Model around a C handle with its own context; the handle is freed if the
 * context cannot be made. */
function wrapModel(c, handle) {
  let ctx = 0;
  try {
    ctx = c.newCtx();
    return new Model(c, handle, ctx);
  } catch (e) {
    c.m._qsw_model_free(handle);
    if (ctx) c.m._qsw_ctx_free(ctx);
    throw e;
  }
}

/**
 * Loads a model: a folder path or file: URL (Node), a folder URL, an object
 * {config, safetensors, vocab?}, or a FileList / array of File.
 * onProgress({loaded, total}) follows the bytes read.
 */
export async function loadModel(source, options) {
  const o = checkOptions(options, ['onProgress'], 'loadModel');
  const progress = new ByteProgress(callbackOption(o.onProgress, 'loadModel: onProgress'));
  const c = await core();
  const checkSizes = (config, st, vocab) => c.check(c.ctx, c.m._qsw_check_sizes(c.ctx, config, st, vocab ?? 0));
  const { config, safetensors: st, vocab, folder } = await readSource(source, progress, checkSizes);
  progress.end();
  return c.guard(() => {
    // C's limits (qs_model_check_sizes) before the copy: a refused file
    // must not grow the WASM memory, which never shrinks.
    inFolder(folder, () => checkSizes(config.length, st.length, vocab?.length));
    const handle = c.withHeap([config, st, vocab], (pc, ps, pv) => {
      inFolder(folder, () => c.check(c.ctx, c.m._qsw_model_load(c.ctx, pc, config.length, ps, st.length,
                                                               pv, vocab ? vocab.length : 0)));
      return c.out(c.ctx, 1)[0] >>> 0;
    });
    return wrapModel(c, handle);
  });
}

/** Runs check, a C check whose message names the file ("vocab.txt: ...");
 * from a folder the message names the folder too, as qs_model_load_dir's do. */
function inFolder(folder, check) {
  try {
    check();
  } catch (e) {
    if (folder && e.code !== 'QS_ERR_TRAP') e.message = `${folder}/${e.message}`;
    throw e;
  }
}

const utf8 = new TextEncoder();
const isBlob = (v) => typeof Blob === 'function' && v instanceof Blob;
const isShared = (v) => typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer;

/**
 * File contents given as text or bytes (ArrayBuffer, SharedArrayBuffer, a
 * typed array or DataView) as a Uint8Array; with json an object too (as its
 * JSON text). null for anything else.
 */
function contentBytes(v, json = false) {
  if (typeof v === 'string') return utf8.encode(v);
  if (v instanceof ArrayBuffer || isShared(v)) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (json && v !== null && typeof v === 'object' && !isBlob(v)) return utf8.encode(JSON.stringify(v));
  return null;
}

/**
 * Bytes read so far over all files of a source, for loadModel's onProgress:
 * {loaded, total}, total being the size of the files found so far (it grows
 * when one is found later, such as vocab.txt over HTTP) or null while a
 * size is unknown (an HTTP response without Content-Length).
 */
class ByteProgress {
  #onProgress;
  #files = [];
  #last = null;

  constructor(onProgress) { this.#onProgress = onProgress; }

  /** The counter of one more file of `size` bytes (null: unknown until it is read). */
  file(size) {
    const f = { size, loaded: 0 };
    this.#files.push(f);
    const report = () => this.#report();
    return {
      add(n) {
        f.loaded += n;
        report();
      },
      end() {
        f.size ??= f.loaded;
        report();
      },
    };
  }

  /** Once everything is read: the last figures, if not reported yet. */
  end() { this.#report(); }

  #report() {
    if (!this.#onProgress) return;
    let loaded = 0, total = 0;
    for (const f of this.#files) {
      loaded += f.loaded;
      total = total === null || f.size === null ? null : total + f.size;
    }
    if (this.#last && this.#last.loaded === loaded && this.#last.total === total) return;
    this.#last = { loaded, total };
    this.#onProgress({ loaded, total });
  }
}

/**
 * Every chunk next() gives (a Uint8Array, null at the end) in one array,
 * counted as it arrives; with the size known, that array is made once.
 */
async function collect(next, size, counter) {
  let out = new Uint8Array(size ?? 1 << 16), n = 0;
  for (let chunk; (chunk = await next()) !== null;) {
    if (n + chunk.length > out.length) {
      const grown = new Uint8Array(Math.max(2 * out.length, n + chunk.length));
      grown.set(out.subarray(0, n));
      out = grown;
    }
    out.set(chunk, n);
    n += chunk.length;
    counter.add(chunk.length);
  }
  counter.end();
  return n === out.length ? out : out.subarray(0, n);
}

/** Bytes read at once as collect's next(). */
function oneChunk(buffer) {
  let chunk = new Uint8Array(buffer);
  return async () => {
    const c = chunk;
    chunk = null;
    return c;
  };
}

/** A web ReadableStream (a fetch body, Blob.stream()) as collect's next(). */
function streamChunks(stream) {
  const reader = stream.getReader();
  return async () => {
    const { done, value } = await reader.read();
    return done ? null : value;
  };
}

/** A Blob (or a File) read with progress; a NamedBlob without stream() at once. */
async function readBlob(b, progress) {
  const size = Number.isSafeInteger(b.size) ? b.size : null;
  const counter = progress.file(size);
  if (typeof b.stream === 'function') return collect(streamChunks(b.stream()), size, counter);
  return collect(oneChunk(await b.arrayBuffer()), size, counter);
}

/**
 * The files of a model source: {config, safetensors, vocab (null if none),
 * folder (the folder C's messages are prefixed with, null if none)}, each
 * file a Uint8Array.
 */
async function readSource(source, progress, checkSizes) {
  if (typeof source === 'string' || source instanceof URL) {
    const href = String(source);
    if (IS_NODE && /^file:/i.test(href)) {
      const { fileURLToPath } = await import('node:url');
      return readFolder(fileURLToPath(href), progress, checkSizes);
    }
    // In Node every other string is a path; URLs are fetched.
    if (IS_NODE && typeof source === 'string' && !/^https?:/i.test(source)) {
      return readFolder(source, progress, checkSizes);
    }
    return fetchFolder(source, progress);
  }
  if (isBlob(source)) {
    throw argError('loadModel: one file is not a model: give the list of files (config.json, '
      + 'model.safetensors, vocab.txt) or {config, safetensors, vocab?}');
  }
  if (source !== null && typeof source === 'object' && typeof source.length !== 'number') {
    checkOptions(source, ['config', 'safetensors', 'vocab'], 'loadModel', 'source key');
    for (const key of ['config', 'safetensors']) {
      if (source[key] == null) throw argError(`loadModel: the source has no ${key}`);
    }
    const read = async (v, what, json) => {
      if (isBlob(v)) return readBlob(v, progress);
      const bytes = contentBytes(v, json);
      if (!bytes) {
        throw argError(`loadModel: ${what} must be ${json ? 'an object, ' : ''}a string, ArrayBuffer, `
          + 'SharedArrayBuffer, typed array or Blob');
      }
      progress.file(bytes.length).add(bytes.length);
      return bytes;
    };
    const [config, safetensors, vocab] = await allInOrder([read(source.config, 'config', true),
      read(source.safetensors, 'safetensors'), source.vocab == null ? null : read(source.vocab, 'vocab')]);
    return { config, safetensors, vocab, folder: null };
  }
  if (source !== null && typeof source === 'object' && typeof source.length === 'number') {
    return readFiles(source, progress);
  }
  throw argError('loadModel: source must be a folder path or URL, {config, safetensors, vocab?}, '
                 + 'or a list of files');
}

/** Promise.all whose failure is the first in list order, not the first in time,
 * so a folder missing every file always names config.json. */
async function allInOrder(promises) {
  const settled = await Promise.allSettled(promises);
  const bad = settled.find((r) => r.status === 'rejected');
  if (bad) throw bad.reason;
  return settled.map((r) => r.value);
}

async function readFolder(dir, progress, checkSizes) {
  const { stat } = await import('node:fs/promises');
  const { createReadStream } = await import('node:fs');
  const { join } = await import('node:path');
  const folder = dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
  const names = ['config.json', 'model.safetensors', 'vocab.txt'];
  const ioError = (path, e) => qsError('QS_ERR_IO', `${path}: ${e.message}`);
  // Sizes first: C's limits refuse a file before it is read, as natively,
  // and onProgress knows the total from its first call.
  const sizes = await allInOrder(names.map(async (name, i) => {
    const path = join(dir, name);
    try {
      return (await stat(path)).size;
    } catch (e) {
      if (i === 2 && e.code === 'ENOENT') return null; // vocab.txt is optional
      throw ioError(path, e);
    }
  }));
  inFolder(folder, () => checkSizes(...sizes));
  const [config, safetensors, vocab] = await allInOrder(names.map(async (name, i) => {
    if (sizes[i] === null) return null;
    const path = join(dir, name);
    const iter = createReadStream(path)[Symbol.asyncIterator]();
    try {
      return await collect(async () => {
        const { done, value } = await iter.next();
        return done ? null : value;
      }, sizes[i], progress.file(sizes[i]));
    } catch (e) {
      throw ioError(path, e);
    }
  }));
  return { config, safetensors, vocab, folder };
}

async function fetchFolder(url, progress) {
  const base = new URL(String(url).replace(/\/?$/, '/'), globalThis.location?.href);
  const get = async (name, optional) => {
    const u = new URL(name, base);
    let res;
    try {
      res = await fetch(u);
    } catch (e) {
      throw qsError('QS_ERR_IO', `${u}: ${e.message}`);
    }
    if (optional && res.status === 404) return null;
    if (!res.ok) throw qsError('QS_ERR_IO', `${u}: HTTP ${res.status}`);
    // Content-Length counts the encoded bytes when the body is compressed.
    const length = res.headers.get('content-length');
    const size = length !== null && !res.headers.get('content-encoding') && /^\d+$/.test(length)
      ? Number(length) : null;
    return { u, res, counter: progress.file(size), size };
  };
  const body = async ({ u, res, counter, size }) => {
    try {
      const next = res.body ? streamChunks(res.body) : oneChunk(await res.arrayBuffer());
      return await collect(next, size, counter);
    } catch (e) {
      throw qsError('QS_ERR_IO', `${u}: ${e.message}`);
    }
  };
  // Both responses before either body, so that onProgress starts with the total.
  const responses = await allInOrder([get('config.json'), get('model.safetensors')]);
  const [config, safetensors] = await allInOrder(responses.map(body));
  /* Only WordPiece models have a vocab.txt: asking for it otherwise logs a
   * 404 in the browser console for every byte-level model. */
  let wordpiece = true;
  try {
    const cfg = JSON.parse(new TextDecoder().decode(config));
    wordpiece = cfg.tokenizer === 'wordpiece' || (cfg.model_type === 'bert' && cfg.tokenizer === undefined);
  } catch { /* the C parser reports a bad config.json */ }
  const vres = wordpiece ? await get('vocab.txt', true) : null;
  const vocab = vres ? await body(vres) : null;
  return { config, safetensors, vocab, folder: base.href.replace(/\/$/, '') };
}

/** Picks config.json, the .safetensors file and vocab.txt from File objects. */
async function readFiles(list, progress) {
  const n = arrayLength(list, 'loadModel: source', 'files');
  const files = Array.from({ length: n }, (_, i) => list[i]);
  const byName = (test) => files.find((f) => test(f?.name ?? ''));
  const config = byName((name) => name === 'config.json');
  const st = byName((name) => name === 'model.safetensors') ?? byName((name) => name.endsWith('.safetensors'));
  const vocab = byName((name) => name === 'vocab.txt');
  const names = files.map((f) => f?.name).join(', ');
  if (!config) throw argError(`loadModel: no config.json among the files (${names})`);
  if (!st) throw argError(`loadModel: no .safetensors file among the files (${names})`);
  const [c, s, v] = await Promise.all([readBlob(config, progress), readBlob(st, progress),
    vocab ? readBlob(vocab, progress) : null]);
  return { config: c, safetensors: s, vocab: v, folder: null };
}

/**
 * A freshly initialised model (BERT/OPT initialisation, deterministic for a
 * seed) from a config.json object, text, bytes or Blob, e.g. for training in the page.
 */
export async function createModel(config, options) {
  const { seed = 0 } = checkOptions(options, ['seed'], 'createModel');
  const c = await core();
  const json = isBlob(config) ? await readBlob(config, new ByteProgress(null)) : contentBytes(config, true);
  if (!json) {
    throw argError('createModel: config must be an object, a string, ArrayBuffer, SharedArrayBuffer, typed array or Blob');
  }
  const s = intOption(seed, 'createModel: seed');
  if (s < 0 || s > Number.MAX_SAFE_INTEGER) throw argError(`createModel: seed ${s} must be in [0, 2^53)`);
  return c.guard(() => {
    c.check(c.ctx, c.m._qsw_check_sizes(c.ctx, json.length, 0, 0)); // config.json's limit, before the copy
    const handle = c.withHeap([json], (p) => {
      c.check(c.ctx, c.m._qsw_model_create(c.ctx, p, json.length, s));
      return c.out(c.ctx, 1)[0] >>> 0;
    });
    return wrapModel(c, handle);
  });
}

/**
 * The training or validation part of a text, cut into blocks exactly as the
 * trainer does (qs_text_split): split 'train' or 'val'.
 */
export async function textSplit(text, options) {
  const o = checkOptions(options, ['valFraction', 'split'], 'textSplit');
  const c = await core();
  const { split = 'val' } = o;
  const valFraction = o.valFraction ?? c.trainDefaults.valFraction; // the trainer's own share
  const bytes = contentBytes(text);
  if (!bytes) throw argError('textSplit: text must be a string or bytes');
  if (split !== 'train' && split !== 'val') throw argError(`textSplit: split must be 'train' or 'val', got ${split}`);
  return c.guard(() => c.withHeap([bytes], (p) => {
    c.check(c.ctx, c.m._qsw_text_split(c.ctx, p, bytes.length, numberOption(valFraction, 'textSplit: valFraction'),
                                       split === 'val' ? 1 : 0));
    const [len, ptr] = c.out(c.ctx, 2);
    return c.bytesToString(ptr >>> 0, len);
  }));
}

/**
 * The grid of an affine quantizer for [min, max] at `bits`, as the C quantizer
 * builds it (qs_qparams_from_range: range widened to include 0, scale floored
 * at FLT_MIN, zero point rounded half to even): x_hat = scale (q - zero) for q
 * in [qmin, qmax]; lo and hi are the first and last levels.
 */
export async function quantGrid(min, max, bits, symmetric = false) {
  const c = await core();
  return c.guard(() => {
    c.check(c.ctx, c.m._qsw_qparams(c.ctx, numberOption(min, 'quantGrid: min'), numberOption(max, 'quantGrid: max'),
      numberOption(bits, 'quantGrid: bits'), symmetric ? 1 : 0));
    const [scale, zero, qmin, qmax] = c.out(c.ctx, 4);
    return { scale, zero, qmin, qmax, lo: scale * (qmin - zero), hi: scale * (qmax - zero) };
  });
}

/** The trainer's defaults (qs_train_config_default; threads: configure()'s). */
export async function defaultTrain() {
  const c = await core();
  return { ...c.trainDefaults, threads: c.threads };
}

/** Which WebAssembly build runs: { threads, pool } (pool: its pthread workers, 1 = the single-threaded build). */
export async function runtimeInfo() {
  const c = await core();
  return { threads: c.threads, pool: c.m._qsw_thread_pool() };
}

/** The point names in data-flow order, with whether each is global (one per model). */
export async function pointNames() {
  const c = await core();
  return c.points.map((p) => ({ ...p }));
}

/** The quant config the C library uses by default (W8A8, the paper's setting). */
export async function defaultQuant() {
  const c = await core();
  return { ...c.quantDefaults, points: [...c.quantDefaults.points] };
}

/** Bytes of WASM memory in use by the shared instance (grows, never shrinks). */
export async function memoryBytes() {
  const c = await core();
  return c.u8.buffer.byteLength;
}
