// wasm/js/heap.mjs: one started WebAssembly instance: its heap (copies in and
// out, strings, the structs of exports.c's field tables), the C status check,
// trap containment, and the C name tables.
import { isTrap, qsError, restartedError, trapError } from './errors.mjs';
import { fillRecord, pointMask, readLayouts, readRecord, shortFloats } from './abi.mjs';

/** Heap access and the name tables, over one Emscripten module instance. */
export class Core {
  broken = null; // the QS_ERR_TRAP error once this instance trapped

  constructor(mod, threads, onBroken) {
    this.onBroken = onBroken; // called once, when this instance traps
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
    this.layouts = readLayouts(m, (p) => this.str(p));
    // What enum and point-mask fields read as (abi.mjs).
    this.names = {
      granularity: namesUntilUnknown((i) => this.str(m._qsw_granularity_name(i))),
      estimator: namesUntilUnknown((i) => this.str(m._qsw_estimator_name(i))),
      optimizer: namesUntilUnknown((i) => this.str(m._qsw_optimizer_name(i))),
      points: this.points.map((p) => p.name),
    };
    // A context for the calls that have no model yet (loading, defaults).
    this.ctx = this.newCtx();
    this.quantDefaults = this.settings('quant_config', m._qsw_quant_reset(this.ctx));
    // Each optimiser's (qs_train_config_for: SOAP has its own lr and betas).
    this.trainDefaults = Object.fromEntries(this.names.optimizer.map(
      (name, i) => [name, this.settings('train_config', m._qsw_train_reset(this.ctx, i))]));
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
   * instance broken and drops it (errors.mjs: traps) and becomes a
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
      this.onBroken(this);
    }
    return this.broken;
  }

  /** Throws the context's error when status is not QS_OK. */
  check(ctx, status) {
    if (status === 0) return;
    const e = qsError(this.str(this.m._qsw_status_name(status)), this.str(this.m._qsw_ctx_message(ctx)));
    throw e;
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

  /** A QS_PT_BIT mask of point names (`what` names the list in messages). */
  pointMask(names, what) { return pointMask(this.names.points, names, what); }

  // ---- the structs of exports.c's field tables (abi.mjs), by field name

  /** The keys of a record: the options of a settings struct. */
  keys(kind) { return this.layouts[kind].map((f) => f.key); }

  /** The struct of kind `kind` at ptr, as an object. */
  read(kind, ptr) {
    return readRecord(this.layouts[kind], new DataView(this.u8.buffer), ptr >>> 0, this.names);
  }

  /** What the last call on ctx handed back (exports.c: "Result: kind"). */
  result(ctx, kind) { return this.read(kind, this.m._qsw_ctx_out(ctx)); }

  /** A settings struct as a person writes it (shortest floats: percentile 99.999). */
  settings(kind, ptr) { return shortFloats(this.layouts[kind], this.read(kind, ptr)); }

  /** Sets the given fields of the settings struct at ptr, each checked (abi.mjs fillRecord). */
  fill(kind, ptr, values, what) {
    fillRecord(this.layouts[kind], new DataView(this.u8.buffer), ptr >>> 0, values, what, this.names);
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

