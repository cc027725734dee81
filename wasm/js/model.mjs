// wasm/js/model.mjs: Model, a loaded model behind a queue of calls: tokenizing,
// forward passes with their statistics, quantization, calibration, evaluation.
import { argError, qsError, restartedError } from './errors.mjs';
import {
  callbackOption, checkAborted, checkOptions, intOption, nextTask, numberOption, optionalInt32, signalOption,
  threadsOption, toFlags, toInt32,
} from './checks.mjs';
import { headStats, pointStats, readConfig, resolveQuant } from './abi.mjs';
import { contentBytes } from './sources.mjs';
import { Trainer, TRAINER_KEYS } from './trainer.mjs';

const SPECIALS = ['pad', 'cls', 'sep', 'mask', 'unk']; // qs_special order
const DEFAULT_ID = -2; // QSW_DEFAULT_ID in exports.c: keep the library's default

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

const EVALUATE_KEYS = ['seqLen', 'maxWindows', 'maskSeed', 'maskProb', 'quant', 'calibWindows', 'threads',
  'specials', 'signal', 'onProgress'];

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

/** A Model around a C handle with its own context; the handle is freed if the
 * context cannot be made. */
export function wrapModel(c, handle) {
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
