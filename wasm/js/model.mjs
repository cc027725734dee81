// wasm/js/model.mjs: Model, a loaded model behind a queue of calls: tokenizing,
// forward passes with their statistics, quantization, calibration, evaluation.
import { argError, qsError, restartedError } from './errors.mjs';
import {
  callbackOption, checkAborted, checkOptions, intOption, nextTask, optionalInt32, signalOption, threadsOption,
  toFlags, toInt32,
} from './checks.mjs';
import { pointStats, readConfig } from './abi.mjs';
import { contentBytes } from './sources.mjs';
import { Trainer, fillTrainConfig } from './trainer.mjs';
import { cString, fixReport, fixSpecs } from './fix.mjs';

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
  #quantKey = null;          // the quant config this model installed in C (its fields as C holds them), null: none
  #hasTokenizer;
  #trainers = new Set();     // live trainers: they hold this model, so they go first
  #vocab;                    // the vocab.txt bytes it was loaded with (null: none), for withFix's copy
  #fixes;                    // withFix()'s reports of the fixes this model carries

  /** @internal Use loadModel(). */
  constructor(core, handle, ctx, { vocab = null, fixes = [] } = {}) {
    this.#core = core;
    this.#handle = handle;
    this.#ctx = ctx;
    this.#vocab = vocab;
    this.#fixes = Object.freeze(fixes);
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

  /** The post-hoc fixes withFix() applied to this model, in order ([] for a model as loaded). */
  get fixes() { return this.#fixes; }

  #has(kind) { return this.#fixes.some((f) => f.fix.split(':')[0] === kind); }

  tokenize(text, options) {
    return this.#enqueue(() => {
      const { addSpecial = true } = checkOptions(options, ['addSpecial'], 'tokenize');
      if (typeof text !== 'string') throw argError('tokenize: text must be a string');
      const c = this.#core;
      const bytes = c.encoder.encode(text);
      c.withHeap([bytes], (p) => this.#call(c.m._qsw_tok_encode(this.#ctx, this.#handle, p, bytes.length,
                                                              addSpecial ? 1 : 0)));
      const enc = c.result(this.#ctx, 'encoding');
      const ids = c.i32(enc.ids, enc.n);
      const offsets = utf16Offsets(text, bytes, c.i32(enc.offsets, enc.n));
      const delimiters = c.u8copy(enc.delimiters, enc.n);
      const pieces = Array.from(ids, (id) => c.str(c.m._qsw_tok_piece(this.#handle, id)));
      return { ids, offsets, pieces, delimiters };
    });
  }

  detokenize(ids) {
    return this.#enqueue(() => {
      const a = toInt32(ids, 'detokenize: ids');
      const c = this.#core;
      c.withHeap([a], (p) => this.#call(c.m._qsw_tok_decode(this.#ctx, this.#handle, p, a.length)));
      const { data, len } = c.result(this.#ctx, 'bytes');
      return c.bytesToString(data, len);
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

  /** 1 for each id the tokenizer counts as a delimiter, as tokenize() marks them. Needs a tokenizer. */
  delimiters(ids) {
    return this.#enqueue(() => {
      const a = toInt32(ids, 'delimiters: ids');
      if (!this.#hasTokenizer) throw qsError('QS_ERR_ARG', 'delimiters: the model has no tokenizer');
      return Uint8Array.from(a, (id) => this.#core.m._qsw_tok_is_delimiter(this.#handle, id));
    });
  }

  specialTokens() {
    return this.#enqueue(() => {
      this.#call(this.#core.m._qsw_tok_specials(this.#ctx, this.#handle));
      return this.#core.result(this.#ctx, 'specials');
    });
  }

  /**
   * Fills the context's quant config (read by qsw_set_quant and
   * qsw_eval_begin) with C's defaults and q's fields, each checked; returns
   * its key, the fields as C now holds them.
   */
  #stageQuant(q, what) {
    return JSON.stringify(this.#core.read('quant_config', this.#fillQuant(q, what)));
  }

  /** #stageQuant's fill; returns the staged struct's address. A string names a setting (fix.h). */
  #fillQuant(q, what) {
    const c = this.#core;
    if (typeof q === 'string') {
      const staged = c.m._qsw_quant_reset(this.#ctx);
      c.withHeap([cString(c, q)], (p) => this.#call(c.m._qsw_setting_quant(this.#ctx, this.#handle, p)));
      // As qs eval --fix runs LLM.int8(): the columns it keeps in float beside
      // the real int8 kernels; GPTQ's weights refuse those kernels.
      if (this.#has('int8split') && !this.#has('gptq')) c.fill('quant_config', staged, { int8: true }, `${what}: `);
      return staged;
    }
    if (q === null || typeof q !== 'object') throw argError(`${what}: quant must be an object or a setting name`);
    checkOptions(q, c.keys('quant_config'), what, 'quant option');
    const staged = c.m._qsw_quant_reset(this.#ctx);
    c.fill('quant_config', staged, q, `${what}: quant.`);
    return staged;
  }

  /**
   * The quant config of a named setting for this model (qs_setting_quant:
   * 'w8a8', 'w8a8-token', 'w4a16', 'w4a8', 'w4a4'), as quant options take it.
   */
  setting(name) {
    return this.#enqueue(() => {
      if (typeof name !== 'string') throw argError('setting: name must be a string');
      return this.#core.settings('quant_config', this.#fillQuant(name, 'setting'));
    });
  }

  /**
   * A copy of this model with post-hoc fixes applied (qs_fix_apply), each
   * calibrated on `calibration` (text, tokenized as evaluate() does, or ids)
   * where it needs to be; this model stays as it is. Fails as a whole, with
   * C's message naming the fix, and then makes nothing.
   */
  withFix(fixes, calibration, options) {
    return this.#enqueue(() => {
      const what = 'withFix';
      const c = this.#core, ctx = this.#ctx;
      const o = checkOptions(options, ['seqLen', 'maxWindows', 'quant'], what);
      // Every spec through C's parser first: a typo costs no copy.
      const specs = fixSpecs(fixes, what).map((spec) => {
        c.withHeap([cString(c, spec)], (p) => this.#call(c.m._qsw_fix_parse(ctx, p)));
        const { data, len } = c.result(ctx, 'bytes');
        return c.bytesToString(data, len);
      });
      if (this.#fixes.length) {
        throw qsError('QS_ERR_CONFIG', `${what}: this model already carries ${this.#fixes.map((f) => f.fix).join(' + ')}; `
          + 'stack fixes in one call on the model as loaded (withFix([...]))');
      }
      const seqLen = intOption(o.seqLen, `${what}: seqLen`), maxWindows = intOption(o.maxWindows, `${what}: maxWindows`);
      if (seqLen < 0 || maxWindows < 0) throw argError(`${what}: seqLen and maxWindows must be >= 0 (0: the default)`);
      const ids = calibration == null ? new Int32Array(0) : this.#streamIds(calibration, `${what}: calibration`);
      const useQuant = o.quant != null;
      if (useQuant) this.#fillQuant(o.quant, what); // the setting GPTQ quantizes for
      const handle = c.withHeap([this.#vocab], (pv) => {
        this.#call(c.m._qsw_model_copy(ctx, this.#handle, pv, this.#vocab?.length ?? 0));
        return c.result(ctx, 'handle').handle;
      });
      const reports = [];
      try {
        c.withHeap([ids.length ? ids : null], (pi) => {
          for (const spec of specs) {
            c.withHeap([cString(c, spec)], (ps) => this.#call(c.m._qsw_fix_apply(ctx, handle, ps, pi, ids.length,
              seqLen, maxWindows, useQuant ? 1 : 0)));
            reports.push(fixReport(c, c.result(ctx, 'fix_report')));
          }
        });
      } catch (e) {
        if (!c.broken) c.m._qsw_model_free(handle);
        throw e;
      }
      return wrapModel(c, handle, { vocab: this.#vocab, fixes: reports });
    });
  }

  /** Installs q unless the same config is installed already. */
  #installQuant(q, what, { fresh = false } = {}) {
    const key = this.#stageQuant(q, what);
    if (!fresh && key === this.#quantKey) return;
    this.#quantKey = null; // a failed install leaves the model unquantized
    this.#call(this.#core.m._qsw_set_quant(this.#ctx, this.#handle));
    this.#quantKey = key;
  }

  /**
   * The calibration batches behind the ranges installed for `quant`: 0 when
   * another config (or none) is installed, or this one without calibrate()
   * since (its ranges then come from each input).
   */
  calibratedBatches(quant) {
    return this.#enqueue(() => {
      const key = this.#stageQuant(quant, 'calibratedBatches');
      return key === this.#quantKey ? this.#core.m._qsw_calibration_batches(this.#handle) : 0;
    });
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
        seen = c.m._qsw_calibration_batches(this.#handle);
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
    const { tokenTypes, attentionMask, delimiters, quant, capture = [], transformed = false, stats } = checkOptions(
      options, ['tokenTypes', 'attentionMask', 'delimiters', 'quant', 'capture', 'transformed', 'stats'], 'forward');
    const c = this.#core;
    const a = toInt32(ids, 'forward: ids');
    const T = a.length;
    const types = optionalInt32(tokenTypes, T, 'forward: tokenTypes');
    const mask = toFlags(attentionMask, T, 'forward: attentionMask');
    const delims = toFlags(delimiters, T, 'forward: delimiters');
    const captureMask = c.pointMask(capture, 'forward: capture');
    const sel = this.#statsSelection(stats);
    const quantize = quant != null;
    if (quantize) this.#installQuant(quant, 'forward');
    // The statistics and captures of the fixed points in the fix's basis
    // (qs_fix_show_transformed), for this call only.
    c.m._qsw_fix_show_transformed(this.#handle, transformed ? 1 : 0);
    try {
      c.withHeap([T ? a : null, types, mask, delims], (pi, pt, pm, pd) =>
        this.#call(c.m._qsw_forward(this.#ctx, this.#handle, pi, T, pt, pm, pd, quantize ? 1 : 0,
                                    captureMask, sel.skip, sel.skipPoints, sel.skipHeads)));
      return this.#results(T, capture, sel);
    } finally {
      if (!c.broken) c.m._qsw_fix_show_transformed(this.#handle, 0);
    }
  }

  /**
   * The forward's `stats` option as C's skip flags (qs_forward_opts): true or
   * omitted, everything; false, nothing (skip_stats); { points, heads }, the
   * points named (omitted: all) and the head statistics unless heads is false.
   */
  #statsSelection(stats) {
    if (stats === undefined || stats === true) return { skip: 0, skipPoints: 0, skipHeads: 0 };
    if (stats === false) return { skip: 1, skipPoints: 0, skipHeads: 1 };
    if (stats === null || typeof stats !== 'object' || Array.isArray(stats)) {
      throw argError('forward: stats must be true, false or an object { points, heads }');
    }
    const { points, heads = true } = checkOptions(stats, ['points', 'heads'], 'forward', 'stats key');
    if (typeof heads !== 'boolean') throw argError(`forward: stats.heads must be a boolean, got ${typeof heads}`);
    const all = (2 ** this.#core.points.length - 1) >>> 0;
    const wanted = points === undefined ? all : this.#core.pointMask(points, 'forward: stats.points');
    return { skip: 0, skipPoints: (all & ~wanted) >>> 0, skipHeads: heads ? 0 : 1 };
  }

  /** Copies everything the last forward left in the model. */
  #results(T, capture, sel) {
    const c = this.#core, m = c.m, h = this.#handle, cfg = this.config;
    const V = cfg.vocabSize, D = cfg.hiddenSize, L = cfg.nLayers;
    const logits = c.f32(m._qsw_logits(h), T * V);
    const hiddenStates = [];
    for (let i = 0; i <= L; i++) hiddenStates.push(c.f32(m._qsw_hidden_state(h, i), T * D));
    const points = [];
    const pointAt = (layer, p) => {
      this.#call(m._qsw_point_stats(this.#ctx, h, Math.max(layer, 0), p));
      const s = pointStats(c.result(this.#ctx, 'point_stats'), layer, c.points[p].name);
      if (s) points.push(s);
    };
    // Data-flow order: global points listed before the per-layer ones in the
    // C enum (embed), every layer's points, then the remaining globals (final).
    const firstLocal = c.points.findIndex((pt) => !pt.global);
    c.points.forEach((pt, p) => { if (pt.global && p < firstLocal) pointAt(-1, p); });
    for (let l = 0; l < L; l++) c.points.forEach((pt, p) => { if (!pt.global) pointAt(l, p); });
    c.points.forEach((pt, p) => { if (pt.global && p > firstLocal) pointAt(-1, p); });
    // null where the stats option left them out.
    let heads = null;
    if (!sel.skipHeads) {
      heads = [];
      for (let l = 0; l < L; l++) {
        const row = [];
        for (let k = 0; k < cfg.nHeads; k++) {
          this.#call(m._qsw_head_stats(this.#ctx, h, l, k));
          row.push(c.result(this.#ctx, 'head_stats'));
        }
        heads.push(row);
      }
    }
    // The paper's summary figures, defined once in C (qs_outlier_summary),
    // when the points it reads have their statistics.
    let summary = null;
    if (!sel.skip && !(sel.skipPoints & m._qsw_summary_points())) {
      this.#call(m._qsw_outlier_summary(this.#ctx, h));
      summary = c.result(this.#ctx, 'outlier_summary');
    }
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
      const ids = this.#streamIds(idsOrText, 'evaluate');
      const threads = threadsOption(c, o.threads, 'evaluate');
      const specials = checkOptions(o.specials, ['cls', 'sep', 'mask', 'bos'], 'evaluate', 'specials key');
      // The options over C's defaults for this model (its tokenizer's special ids).
      const opts = c.m._qsw_eval_reset(ctx, this.#handle);
      c.fill('eval_opts', opts, { seqLen: o.seqLen, maxWindows: o.maxWindows, maskSeed: o.maskSeed,
        maskProb: o.maskProb, calibWindows: o.calibWindows, threads }, 'evaluate: ');
      c.fill('eval_opts', opts, specials, 'evaluate: specials.');
      const quantize = o.quant != null;
      if (quantize) {
        this.#stageQuant(o.quant, 'evaluate');
        // qs_evaluate installs (and calibrates) this config itself: the next
        // quantized forward must install its own again.
        this.#quantKey = null;
      }
      // Without a signal or a progress callback nothing needs control back
      // between windows: one step does them all. Otherwise a step is as many
      // windows as run side by side.
      const stepWindows = signal || onProgress ? threads : 0;
      const idsPtr = ids.length ? c.put(ids) : 0; // the run reads them until it is freed
      const split = quantize && this.#has('int8split');
      if (split) c.m._qsw_fix_split_reset(this.#handle);
      let run = 0;
      try {
        c.guard(() => {
          this.#call(c.m._qsw_eval_begin(ctx, this.#handle, idsPtr, ids.length, quantize ? 1 : 0));
          run = c.result(ctx, 'eval_state').run;
        });
        for (;;) {
          const { finished, done, total } = c.guard(() => {
            this.#call(c.m._qsw_eval_step(ctx, run, stepWindows));
            return c.result(ctx, 'eval_state');
          });
          onProgress?.({ done, total });
          if (finished) break;
          await nextTask();
          checkAborted(signal);
        }
        return c.guard(() => {
          this.#call(c.m._qsw_eval_result(ctx, run));
          const r = c.result(ctx, 'eval_result');
          if (!split) return r;
          // LLM.int8(): the share of linear-input columns kept in float, over the quantized passes.
          this.#call(c.m._qsw_fix_split_counts(ctx, this.#handle));
          const { cols, floatCols } = c.result(ctx, 'split_counts');
          return { ...r, floatColumnShare: cols ? floatCols / cols : 0 };
        });
      } finally {
        // After a trap the heap is not touched again (errors.mjs: traps).
        if (!c.broken) {
          if (run) c.m._qsw_eval_free(run);
          if (idsPtr) c.m._free(idsPtr);
        }
      }
    });
  }

  /** Token ids as given, or text tokenized without specials, as evaluate() scores them. */
  #streamIds(idsOrText, what) {
    if (typeof idsOrText !== 'string') return toInt32(idsOrText, `${what}: ids`);
    const c = this.#core;
    const bytes = c.encoder.encode(idsOrText);
    c.withHeap([bytes], (p) => this.#call(c.m._qsw_tok_encode(this.#ctx, this.#handle, p, bytes.length, 0)));
    const enc = c.result(this.#ctx, 'encoding');
    return c.i32(enc.ids, enc.n);
  }

  /**
   * The outlier summary over the first maxWindows windows (0 = 64) that
   * evaluate() scores with the same options (qs_outlier_windows): the figures
   * qs eval prints beside the perplexities. A float pass, whatever quant
   * config is installed.
   */
  outlierSummary(idsOrText, options) {
    return this.#enqueue(() => {
      const c = this.#core, ctx = this.#ctx;
      const o = checkOptions(options, ['seqLen', 'maxWindows', 'maskSeed', 'maskProb', 'specials'], 'outlierSummary');
      const ids = this.#streamIds(idsOrText, 'outlierSummary');
      const maxWindows = intOption(o.maxWindows, 'outlierSummary: maxWindows');
      const specials = checkOptions(o.specials, ['cls', 'sep', 'mask', 'bos'], 'outlierSummary', 'specials key');
      const opts = c.m._qsw_eval_reset(ctx, this.#handle);
      c.fill('eval_opts', opts, { seqLen: o.seqLen, maskSeed: o.maskSeed, maskProb: o.maskProb }, 'outlierSummary: ');
      c.fill('eval_opts', opts, specials, 'outlierSummary: specials.');
      c.withHeap([ids.length ? ids : null], (p) => this.#call(
        c.m._qsw_outlier_windows(ctx, this.#handle, p, ids.length, maxWindows)));
      return c.result(ctx, 'outlier_summary');
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
      const { data, len } = c.result(this.#ctx, 'bytes');
      const safetensors = c.u8copy(data, len);
      this.#call(c.m._qsw_model_config(this.#ctx, this.#handle));
      const { json, jsonLen } = c.result(this.#ctx, 'config_text');
      return { config: c.bytesToString(json, jsonLen), safetensors };
    });
  }

  /**
   * A trainer for this model (its parameters change in place) over `text`
   * (byte-level models only). Options default to qs_train_config_for(optimizer)
   * (AdamW when none is given), threads to configure()'s.
   */
  createTrainer(text, trainOptions) {
    return this.#enqueue(() => {
      const c = this.#core;
      // The options are the fields of qs_train_config that exports.c's table names.
      const options = checkOptions(trainOptions, c.keys('train_config'), 'createTrainer');
      const bytes = contentBytes(text);
      if (!bytes) throw argError('createTrainer: text must be a string or bytes');
      const threads = threadsOption(c, options.threads, 'createTrainer');
      const { steps, optimizer } = fillTrainConfig(c, this.#ctx, options, threads); // the optimiser's C defaults, then the options
      const made = c.withHeap([bytes], (p) => {
        this.#call(c.m._qsw_trainer_new(this.#ctx, this.#handle, p, bytes.length));
        return c.result(this.#ctx, 'handle');
      });
      const trainer = new Trainer(this, made.handle, c.str(made.warning), {
        enqueue: (fn) => this.#enqueue(fn),
        call: (status) => this.#call(status),
        result: (kind) => c.result(this.#ctx, kind),
        // The installed quant config's weights are a fake-quantized copy of
        // the old parameters: the next quantized forward must install it again.
        paramsChanged: () => { this.#quantKey = null; },
        free: (h) => { if (!c.broken) c.m._qsw_trainer_free(h); this.#trainers.delete(trainer); },
        m: c.m, ctx: this.#ctx, steps, optimizer,
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
export function wrapModel(c, handle, extra) {
  let ctx = 0;
  try {
    ctx = c.newCtx();
    return new Model(c, handle, ctx, extra);
  } catch (e) {
    c.m._qsw_model_free(handle);
    if (ctx) c.m._qsw_ctx_free(ctx);
    throw e;
  }
}
