// wasm/js/sources.mjs: the files of a model from wherever they are: a folder in
// Node, a folder URL, File objects or Blobs, contents in memory; with byte progress.
import { argError, qsError } from './errors.mjs';
import { arrayLength, checkOptions } from './checks.mjs';
import { IS_NODE } from './runtime.mjs';

/** Runs check, a C check whose message names the file ("vocab.txt: ...");
 * from a folder the message names the folder too, as qs_model_load_dir's do. */
export function inFolder(folder, check) {
  try {
    check();
  } catch (e) {
    if (folder && e.code !== 'QS_ERR_TRAP') e.message = `${folder}/${e.message}`;
    throw e;
  }
}

const utf8 = new TextEncoder();
export const isBlob = (v) => typeof Blob === 'function' && v instanceof Blob;
const isShared = (v) => typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer;

/**
 * File contents given as text or bytes (ArrayBuffer, SharedArrayBuffer, a
 * typed array or DataView) as a Uint8Array; with json an object too (as its
 * JSON text). null for anything else.
 */
export function contentBytes(v, json = false) {
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
export class ByteProgress {
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
export async function readBlob(b, progress) {
  const size = Number.isSafeInteger(b.size) ? b.size : null;
  const counter = progress.file(size);
  if (typeof b.stream === 'function') return collect(streamChunks(b.stream()), size, counter);
  return collect(oneChunk(await b.arrayBuffer()), size, counter);
}

/**
 * model.safetensors as loadModel feeds it to the C loader, which needs its
 * size first and then takes it in pieces: {size, next, cancel}. next() gives
 * the next chunk (a Uint8Array; null at the end), counted as read; cancel()
 * stops reading (closes the file or the stream). Only a file whose size is
 * unknown (an HTTP body without Content-Length) is read whole first.
 */
function fileStream(size, next, counter, cancel = async () => {}) {
  let ended = false;
  return {
    size,
    async next() {
      if (ended) return null;
      const chunk = await next();
      if (chunk === null) {
        ended = true;
        counter.end();
        return null;
      }
      counter.add(chunk.length);
      return chunk;
    },
    async cancel() {
      if (ended) return;
      ended = true;
      await cancel();
    },
  };
}

/** Bytes already in memory as a fileStream (counted as read: they were). */
function bytesStream(bytes) {
  let chunk = bytes;
  return {
    size: bytes.length,
    async next() {
      const c = chunk;
      chunk = null;
      return c;
    },
    async cancel() {},
  };
}

/** A web ReadableStream as a fileStream; wrap turns a reading error into ours. */
function webStream(stream, size, counter, wrap = (e) => e) {
  const reader = stream.getReader();
  return fileStream(size, async () => {
    try {
      const { done, value } = await reader.read();
      return done ? null : value;
    } catch (e) {
      throw wrap(e);
    }
  }, counter, () => reader.cancel().catch(() => {}));
}

/** A Blob's bytes as a fileStream (its size is known). */
async function blobStream(b, progress) {
  if (typeof b.stream !== 'function' || !Number.isSafeInteger(b.size)) return bytesStream(await readBlob(b, progress));
  return webStream(b.stream(), b.size, progress.file(b.size));
}

/**
 * The files of a model source: {config, safetensors, vocab (null if none),
 * folder (the folder C's messages are prefixed with, null if none)}: config
 * and vocab as Uint8Arrays, read whole; safetensors as a fileStream, not
 * read yet (its size known: checkSizes has passed where it could be asked).
 */
export async function readSource(source, progress, checkSizes) {
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
    const read = async (v, what, json, stream = false) => {
      if (isBlob(v)) return stream ? blobStream(v, progress) : readBlob(v, progress);
      const bytes = contentBytes(v, json);
      if (!bytes) {
        throw argError(`loadModel: ${what} must be ${json ? 'an object, ' : ''}a string, ArrayBuffer, `
          + 'SharedArrayBuffer, typed array or Blob');
      }
      progress.file(bytes.length).add(bytes.length);
      return stream ? bytesStream(bytes) : bytes;
    };
    const [config, safetensors, vocab] = await filesInOrder([read(source.config, 'config', true),
      read(source.safetensors, 'safetensors', false, true),
      source.vocab == null ? null : read(source.vocab, 'vocab')]);
    return { config, safetensors, vocab, folder: null };
  }
  if (source !== null && typeof source === 'object' && typeof source.length === 'number') {
    return readFiles(source, progress, checkSizes);
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

/** allInOrder of [config, safetensors (a fileStream), vocab]: when another
 * file fails, the safetensors stream already opened is closed. */
async function filesInOrder(promises) {
  const settled = await Promise.allSettled(promises);
  if (settled.some((r) => r.status === 'rejected') && settled[1].status === 'fulfilled') {
    await settled[1].value.cancel();
  }
  return allInOrder(promises);
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
  // The counters in file order, so onProgress's total holds all three from the start.
  const counters = sizes.map((size) => (size === null ? null : progress.file(size)));
  const open = (i) => {
    const path = join(dir, names[i]);
    const iter = createReadStream(path, { highWaterMark: 4 << 20 })[Symbol.asyncIterator]();
    const next = async () => {
      try {
        const { done, value } = await iter.next();
        return done ? null : value;
      } catch (e) {
        throw ioError(path, e);
      }
    };
    return { next, close: async () => { await iter.return?.(); } };
  };
  const [config, vocab] = await allInOrder([0, 2].map(async (i) => {
    if (sizes[i] === null) return null;
    return collect(open(i).next, sizes[i], counters[i]);
  }));
  const st = open(1);
  return { config, safetensors: fileStream(sizes[1], st.next, counters[1], st.close), vocab, folder };
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
  const [cres, sres] = await allInOrder([get('config.json'), get('model.safetensors')]);
  // model.safetensors streams into the loader when its size is known; else it is read whole here.
  const streaming = sres.size !== null && sres.res.body;
  let config, whole, vocab = null;
  try {
    [config, whole] = await allInOrder([body(cres), streaming ? null : body(sres)]);
    /* Only WordPiece models have a vocab.txt: asking for it otherwise logs a
     * 404 in the browser console for every byte-level model. */
    let wordpiece = true;
    try {
      const cfg = JSON.parse(new TextDecoder().decode(config));
      wordpiece = cfg.tokenizer === 'wordpiece' || (cfg.model_type === 'bert' && cfg.tokenizer === undefined);
    } catch { /* the C parser reports a bad config.json */ }
    const vres = wordpiece ? await get('vocab.txt', true) : null;
    vocab = vres ? await body(vres) : null;
  } catch (e) {
    if (streaming) await sres.res.body.cancel().catch(() => {});
    throw e;
  }
  const safetensors = streaming
    ? webStream(sres.res.body, sres.size, sres.counter, (e) => qsError('QS_ERR_IO', `${sres.u}: ${e.message}`))
    : bytesStream(whole);
  return { config, safetensors, vocab, folder: base.href.replace(/\/$/, '') };
}

/**
 * The files of a model among a list (a FileList, File objects): config.json,
 * model.safetensors or else the first *.safetensors, and vocab.txt; null
 * where there is none. loadModel(list) loads these.
 */
export function pickFiles(files) {
  const byName = (test) => files.find((f) => test(f?.name ?? '')) ?? null;
  return {
    config: byName((name) => name === 'config.json'),
    safetensors: byName((name) => name === 'model.safetensors') ?? byName((name) => name.endsWith('.safetensors')),
    vocab: byName((name) => name === 'vocab.txt'),
  };
}

/** Reads the files pickFiles finds, C's size limits checked first when the sizes are known (File, Blob). */
async function readFiles(list, progress, checkSizes) {
  const n = arrayLength(list, 'loadModel: source', 'files');
  const files = Array.from({ length: n }, (_, i) => list[i]);
  const { config, safetensors: st, vocab } = pickFiles(files);
  const names = files.map((f) => f?.name).join(', ');
  if (!config) throw argError(`loadModel: no config.json among the files (${names})`);
  if (!st) throw argError(`loadModel: no .safetensors file among the files (${names})`);
  const sizes = [config, st, vocab].map((f) => (f && Number.isSafeInteger(f.size) ? f.size : null));
  if (sizes[0] !== null && sizes[1] !== null && (sizes[2] !== null || !vocab)) checkSizes(...sizes);
  // config, safetensors, vocab: the counters in that order, as the files are listed.
  const [c, s, v] = await filesInOrder([readBlob(config, progress), blobStream(st, progress),
    vocab ? readBlob(vocab, progress) : null]);
  return { config: c, safetensors: s, vocab: v, folder: null };
}
