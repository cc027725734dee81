// wasm/js/runtime.mjs: which WebAssembly build runs (configure), starting the one
// instance all models share, and starting a fresh one after a trap dropped it.
import { argError, qsError } from './errors.mjs';
import { checkOptions } from './checks.mjs';
import { Core } from './heap.mjs';

// The Emscripten artefacts: the default single-threaded build and the optional
// pthreads build (scripts/build-wasm.sh --threads), each in its own folder, each
// with a plain SIMD128 module and beside it a relaxed-SIMD one (FMA, CMakeLists.txt).
const BUILD_DIRS = {
  single: new URL('../../build/wasm/', import.meta.url),
  threads: new URL('../../build/wasm-threads/', import.meta.url),
};

// The smallest module that uses f32x4.relaxed_madd: (v128, v128, v128) -> v128.
const RELAXED_PROBE = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type section
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b]); // code

/** Whether this engine runs relaxed SIMD (Chromium 114+; Node 20 only with --experimental-wasm-relaxed-simd). */
export const hasRelaxedSimd = () => WebAssembly.validate(RELAXED_PROBE);

const MAX_THREADS = 16; // QS_MAX_THREADS in src/core/threads.h

export const IS_NODE = typeof process === 'object' && typeof process.versions?.node === 'string';

// ---------------------------------------------------------------- the core

let corePromise = null;
let currentCore = null; // what corePromise resolved to, until a trap drops it
let wantThreads = 1; // set by configure() before the core starts
let wantRelaxed = true; // use the relaxed-SIMD module where the engine has it

/**
 * Chooses the WebAssembly build; call it before anything that starts the core.
 * `threads` > 1 loads the pthreads build: evaluation windows and training
 * sequences then run on that many threads (Web Workers started with the
 * module). That needs SharedArrayBuffer, so a cross-origin isolated page
 * (COOP/COEP headers, as scripts/serve.mjs sends) and a browser: this build's
 * threads do not run in Node, where the native `qs` has threads instead.
 * Blocking joins are fine in a Worker; on a page's main thread they stall it.
 * `relaxedSimd` (default true): the build runs its relaxed-SIMD module, with
 * fused multiply-adds, where the engine has relaxed SIMD; false keeps plain
 * SIMD128 (bit for bit what every engine computes).
 */
export function configure(options) {
  const { threads = 1, relaxedSimd = true } = checkOptions(options, ['threads', 'relaxedSimd'], 'configure');
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw argError(`configure: threads must be an integer in [1, ${MAX_THREADS}], got ${threads}`);
  }
  if (typeof relaxedSimd !== 'boolean') {
    throw argError(`configure: relaxedSimd must be a boolean, got ${typeof relaxedSimd}`);
  }
  if (corePromise && (threads !== wantThreads || relaxedSimd !== wantRelaxed)) {
    throw argError(`configure: the WebAssembly core already started with ${wantThreads} thread(s)`
      + `${wantRelaxed ? '' : ', relaxedSimd false'}`);
  }
  wantThreads = threads;
  wantRelaxed = relaxedSimd;
}

/** The WASM instance shared by all models, started on first use. */
export function core() {
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

function loadBuild(threads, relaxed) {
  const key = `${threads > 1 ? 'threads' : 'single'}${relaxed ? ' relaxed' : ''}`;
  if (!compiled.has(key)) {
    const dir = BUILD_DIRS[threads > 1 ? 'threads' : 'single'];
    const coreUrl = new URL('quantscope_core.mjs', dir);
    const build = threads > 1 ? 'npm run build:wasm -- --threads' : 'npm run build:wasm';
    const plain = new URL('quantscope_core.wasm', dir);
    // A build folder without the relaxed module (an older build) runs the plain one.
    const wasm = relaxed ? compileWasm(new URL('quantscope_core_relaxed.wasm', dir)).catch(() => compileWasm(plain))
      : compileWasm(plain);
    const p = Promise.all([
      import(coreUrl.href).catch((e) => {
        throw qsError('QS_ERR_IO', `quantscope: cannot load ${coreUrl} (run ${build}): ${e.message}`);
      }),
      wasm,
    ]).then(([glue, wasmModule]) => ({ factory: glue.default, wasmModule, dir, coreUrl }));
    p.catch(() => compiled.delete(key)); // a failed fetch or compile may be retried
    compiled.set(key, p);
  }
  return compiled.get(key);
}

async function startCore(threads) {
  if (threads > 1) checkThreadsPossible();
  const { factory, wasmModule, dir, coreUrl } = await loadBuild(threads, wantRelaxed && hasRelaxedSimd());
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
  return new Core(mod, threads, dropCore);
}

