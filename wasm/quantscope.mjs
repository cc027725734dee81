// wasm/quantscope.mjs: the one JavaScript API of quantscope for Node and browsers:
// loading models, tokenizing, forward passes with statistics, quantization, evaluation.
// The parts live in wasm/js/ (runtime, heap, checks, abi, sources, model, trainer);
// this module is what callers import, and all they need.
import { argError } from './js/errors.mjs';
import { arrayLength, callbackOption, checkOptions, enumOption, numberOption, seedOption } from './js/checks.mjs';
import { configure, core } from './js/runtime.mjs';
import { ByteProgress, contentBytes, inFolder, isBlob, pickFiles, readBlob, readSource } from './js/sources.mjs';
import { Model, wrapModel } from './js/model.mjs';
import { Trainer } from './js/trainer.mjs';
import { settingList } from './js/fix.mjs';

export { configure, Model, Trainer };

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
  // model.safetensors goes to the C loader in pieces through one heap buffer
  // (qs_model_loader): the heap, which never shrinks, holds the parameters and
  // that buffer, never the whole file, and JS holds no copy of a file it reads.
  let loader = 0, buf = 0;
  const bufLen = Math.max(Math.min(st.size, LOAD_PIECE), 1);
  try {
    c.guard(() => {
      // C's limits (qs_model_check_sizes) first: a refused file must not grow the WASM memory.
      inFolder(folder, () => checkSizes(config.length, st.size, vocab?.length));
      loader = c.withHeap([config, vocab], (pc, pv) => {
        inFolder(folder, () => c.check(c.ctx, c.m._qsw_loader_new(c.ctx, pc, config.length, st.size,
                                                                 pv, vocab ? vocab.length : 0)));
        return c.result(c.ctx, 'handle').handle;
      });
      buf = c.alloc(bufLen);
    });
    for (let chunk; (chunk = await st.next()) !== null;) {
      c.guard(() => {
        for (let k = 0; k < chunk.length; k += bufLen) {
          const piece = chunk.subarray(k, k + bufLen);
          c.u8.set(piece, buf);
          inFolder(folder, () => c.check(c.ctx, c.m._qsw_loader_feed(c.ctx, loader, buf, piece.length)));
        }
      });
    }
    progress.end();
    return c.guard(() => {
      inFolder(folder, () => c.check(c.ctx, c.m._qsw_loader_finish(c.ctx, loader)));
      const handle = c.result(c.ctx, 'handle').handle;
      // withFix() loads copies with the same vocab.txt (a copy: the caller's bytes may change).
      return wrapModel(c, handle, { vocab: vocab ? vocab.slice() : null });
    });
  } catch (e) {
    await st.cancel();
    throw e;
  } finally {
    // After a trap the heap is not touched again (heap.mjs withHeap).
    if (!c.broken) {
      if (buf) c.m._free(buf);
      if (loader) c.m._qsw_loader_free(loader);
    }
  }
}

/** Bytes of model.safetensors fed to the C loader at a time. */
const LOAD_PIECE = 4 << 20;

/**
 * The files loadModel(files) takes from a list (a FileList, File objects):
 * {config, safetensors, vocab}, each the File or null. For callers that
 * check the choice before loading (the page names what is missing).
 */
export function pickModelFiles(files) {
  const n = arrayLength(files, 'pickModelFiles: files', 'files');
  return pickFiles(Array.from({ length: n }, (_, i) => files[i]));
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
  const s = seedOption(seed, 'createModel: seed');
  return c.guard(() => {
    c.check(c.ctx, c.m._qsw_check_sizes(c.ctx, json.length, 0, 0)); // config.json's limit, before the copy
    const handle = c.withHeap([json], (p) => {
      c.check(c.ctx, c.m._qsw_model_create(c.ctx, p, json.length, s));
      return c.result(c.ctx, 'handle').handle;
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
  const valFraction = o.valFraction ?? c.trainDefaults.adamw.valFraction; // the trainer's own share
  const bytes = contentBytes(text);
  if (!bytes) throw argError('textSplit: text must be a string or bytes');
  if (split !== 'train' && split !== 'val') throw argError(`textSplit: split must be 'train' or 'val', got ${split}`);
  return c.guard(() => c.withHeap([bytes], (p) => {
    c.check(c.ctx, c.m._qsw_text_split(c.ctx, p, bytes.length, numberOption(valFraction, 'textSplit: valFraction'),
                                       split === 'val' ? 1 : 0));
    const { data, len } = c.result(c.ctx, 'bytes');
    return c.bytesToString(data, len);
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
    const { scale, zero, qmin, qmax } = c.result(c.ctx, 'qparams');
    return { scale, zero, qmin, qmax, lo: scale * (qmin - zero), hi: scale * (qmax - zero) };
  });
}

/**
 * The trainer's defaults for an optimiser, 'adamw' (the default), 'soap' or
 * 'shampoo': what createTrainer uses for the options it is not given
 * (qs_train_config_for; threads: configure()'s).
 */
export async function defaultTrain(optimizer = 'adamw') {
  const c = await core();
  const defaults = c.trainDefaults[c.names.optimizer[enumOption(optimizer, c.names.optimizer, 'defaultTrain: optimizer', 0)]];
  const { seed, ...rest } = defaults; // a seed is no default: createTrainer takes 0
  return { ...rest, threads: c.threads };
}

/**
 * Which WebAssembly build runs: { threads, pool, relaxedSimd } (pool: its
 * pthread workers, 1 = the single-threaded build; relaxedSimd: the module
 * with fused multiply-adds, where the engine has relaxed SIMD).
 */
export async function runtimeInfo() {
  const c = await core();
  return { threads: c.threads, pool: c.m._qsw_thread_pool(), relaxedSimd: c.m._qsw_relaxed_simd() === 1 };
}

/** The point names in data-flow order, with whether each is global (one per model). */
export async function pointNames() {
  const c = await core();
  return c.points.map((p) => ({ ...p }));
}

/**
 * The named evaluation settings of the post-hoc fixes' papers (fix.h):
 * [{name, description}] for 'w8a8', 'w8a8-token', 'w4a16', 'w4a8', 'w4a4'.
 * Pass a name as any quant option; model.setting(name) gives its config.
 */
export async function settings() {
  return settingList(await core());
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

/**
 * The shared instance's memory: heapBytes its size (memoryBytes()), usedBytes
 * what malloc has handed out and not had back; a leak shows in the second.
 */
export async function memoryUsage() {
  const c = await core();
  return { heapBytes: c.u8.buffer.byteLength, usedBytes: c.m._qsw_heap_used() >>> 0 };
}
