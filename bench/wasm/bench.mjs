// bench/wasm/bench.mjs: WASM speed in Node: quantscope's GEMM (f32, int8, scalar
// reference) against tfjs-backend-wasm (XNNPACK), model forwards, and heap use.
//
//   node bench/wasm/bench.mjs gemm  [rounds] [min_ms]
//   node bench/wasm/bench.mjs model DIR [rounds] [min_ms]
//   node bench/wasm/bench.mjs mem   DIR
//   node bench/wasm/bench.mjs scale DIR [rounds] [windows]
//   node bench/wasm/bench.mjs profile DIR VARIANT [T] [seconds]
//
// profile: repeats one of the model mode's variants, by name, and nothing else,
// for a profiler: QS_BENCH_PROFILING=1 bench/build.sh keeps the function names,
// then node --cpu-prof bench/wasm/bench.mjs profile models/bert-vanilla f32 64 5
// (QS_BENCH_RELAXED=1 and node --experimental-wasm-relaxed-simd: the relaxed-SIMD module's).
// scale: a large checkpoint (node tests/node/bigmodels.mjs DIR makes random
// BERT-base and OPT-125m ones) through quantscope.mjs in this process: load
// time, WASM memory and RSS after loading, forwards of 128 tokens with
// statistics (rounds, default 3), W8A8 int8 evaluation throughput over
// `windows` windows (default 8); wall and CPU time, since the machine is shared.
// Run with node --expose-gc for exact memory figures.
//
// Contestants alternate within every round (the machine is noisy,
// docs/toolchain.md); a sample repeats a call until min_ms have passed, after a
// warm-up long enough for V8 to tier the code up; tables show medians.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { hasRelaxedSimd } from '../../wasm/js/runtime.mjs';

const ROOT = new URL('../../', import.meta.url);
const BENCH_CORE = new URL('build/bench/bench_core.mjs', ROOT);
const BENCH_WASM = new URL('build/bench/bench_core.wasm', ROOT);
const BENCH_RELAXED_WASM = new URL('build/bench/bench_core_relaxed.wasm', ROOT);
const HEADS = 4;

// ------------------------------------------------------------------ timing

/** Seconds per call: repeats fn until minMs have passed. */
function sample(fn, minMs) {
  let n = 0;
  const t0 = performance.now();
  let t;
  do {
    fn();
    n++;
    t = performance.now() - t0;
  } while (t < minMs);
  return t / 1e3 / n;
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
};

/** Alternating rounds; returns the median seconds per call of each contestant. */
function runRounds(contestants, rounds, minMs) {
  for (const c of contestants) sample(c.fn, Math.max(minMs, 50)); // V8 tier-up, caches
  const secs = contestants.map(() => []);
  for (let r = 0; r < rounds; r++) {
    contestants.forEach((c, i) => secs[i].push(sample(c.fn, minMs)));
  }
  return secs.map(median);
}

const fmt = (x, w = 8, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-').padStart(w);

// ------------------------------------------------------------ bench module

async function loadBenchCore(wasmUrl = BENCH_WASM) {
  const [{ default: factory }, bytes] = await Promise.all([
    import(BENCH_CORE.href).catch((e) => {
      throw new Error(`${BENCH_CORE.pathname} missing (run bench/build.sh): ${e.message}`);
    }),
    readFile(wasmUrl),
  ]);
  const wasmModule = await WebAssembly.compile(bytes);
  const m = await factory({
    instantiateWasm(imports, receive) {
      WebAssembly.instantiate(wasmModule, imports).then((inst) => receive(inst, wasmModule));
      return {};
    },
  });
  const str = (ptr) => {
    const u8 = m.HEAPU8;
    let end = ptr;
    while (u8[end]) end++;
    return new TextDecoder().decode(u8.subarray(ptr, end));
  };
  return {
    m,
    str,
    /** n floats on the heap, filled with uniform values in [-scale, scale). */
    floats(n, scale = 1, seed = 1) {
      const ptr = m._malloc(4 * n);
      if (!ptr) throw new Error(`out of WASM memory for ${n} floats`);
      const v = new Float32Array(m.HEAPU8.buffer, ptr, n);
      let s = (seed * 2654435761 + 1) >>> 0;
      for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        v[i] = scale * ((s >>> 8) / 8388608 - 1);
      }
      return ptr;
    },
    /** A copy of n floats at ptr. */
    read(ptr, n) { return new Float32Array(m.HEAPU8.buffer, ptr, n).slice(); },
    check(status, what) {
      if (status !== 0) throw new Error(`${what}: ${str(m._bw_error())}`);
    },
  };
}

/** The relaxed-SIMD bench module (FMA in the float kernels): { core } or { why } it is not measured. */
async function loadRelaxedCore() {
  if (!hasRelaxedSimd()) return { why: 'this engine has no relaxed SIMD (node --experimental-wasm-relaxed-simd has it)' };
  if (!existsSync(BENCH_RELAXED_WASM)) return { why: `${BENCH_RELAXED_WASM.pathname} is missing (bench/build.sh)` };
  return { core: await loadBenchCore(BENCH_RELAXED_WASM) };
}

/** tfjs-core with the WASM backend, single-threaded, or null (with why). */
async function loadTfjs() {
  try {
    const tf = await import('@tensorflow/tfjs-core');
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Single thread: the non-threaded SIMD binary, as our module is.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    wasm.setThreadsCount(1);
    if (!(await tf.setBackend('wasm'))) throw new Error('setBackend("wasm") failed');
    await tf.ready();
    return {
      tf,
      simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
      threads: wasm.getThreadsCount(),
      version: wasm.version_wasm,
    };
  } catch (e) {
    return { error: e.message };
  }
}

// --------------------------------------------------------------------- GEMM

// The issue's shapes: square 64-512; M = 64/128 tokens x K = 128/256 x
// N = 512/1024; the shipped models' own linears (d 128, ffn 512); the
// attention products of 4 heads of 32 (qk: M = N = T, K = 32; pv: K = T, N = 32).
const SHAPES = [
  ['square', 64, 64, 64], ['square', 128, 128, 128], ['square', 256, 256, 256], ['square', 512, 512, 512],
  ['transformer', 64, 128, 512], ['transformer', 64, 128, 1024], ['transformer', 64, 256, 512],
  ['transformer', 64, 256, 1024], ['transformer', 128, 128, 512], ['transformer', 128, 128, 1024],
  ['transformer', 128, 256, 512], ['transformer', 128, 256, 1024],
  ['model', 64, 128, 128], ['model', 64, 512, 128], ['model', 128, 128, 128], ['model', 128, 512, 128],
  ['qk', 64, 32, 64], ['qk', 128, 32, 128], ['pv', 64, 64, 32], ['pv', 128, 128, 32],
].map(([kind, M, K, N]) => ({ kind, M, K, N }));

/** The linear-layer contestants of one shape: C[M][N] = A[M][K] W^T. */
function linearContestants(b, tfjs, { M, K, N }) {
  const { m } = b;
  const a = b.floats(M * K, 1, 1), w = b.floats(N * K, 0.05, 2), c = b.floats(M * N, 1, 3);
  const p8 = m._bw_int8_new(w, N, K, M, 1.0, 0);
  if (!p8) throw new Error(`int8 setup: ${b.str(m._bw_error())}`);
  b.check(m._bw_int8_quantize(p8, a, M), 'int8 quantize');
  const list = [
    { name: 'ours', fn: () => m._bw_linear(c, a, w, M, K, N) },
    { name: 'scalar', fn: () => m._bw_linear_ref(c, a, w, M, K, N) },
    { name: 'int8', fn: () => m._bw_int8_matmul(p8, c) },
    { name: 'int8+q', fn: () => m._bw_int8_linear(p8, c, a, M) },
  ];
  const free = [() => m._bw_int8_free(p8), ...[a, w, c].map((p) => () => m._free(p))];
  if (tfjs.tf) {
    // tfjs gets its fast layout: W as [K][N] (tf dense layers' kernel layout;
    // matMul with transposeB is not routed to XNNPACK and runs ~10x slower).
    const { tf } = tfjs;
    const ta = tf.tensor2d(b.read(a, M * K), [M, K]);
    const wNK = b.read(w, N * K), wKN = new Float32Array(K * N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wKN[k * N + n] = wNK[n * K + k];
    const twKN = tf.tensor2d(wKN, [K, N]);
    list.splice(1, 0, { name: 'xnnpack', fn: () => tf.matMul(ta, twKN).dispose() });
    free.push(() => { ta.dispose(); twKN.dispose(); });
  }
  return { list, free: () => free.forEach((f) => f()) };
}

/** Attention products of HEADS heads, laid out as the forward has them. */
function attentionContestants(b, tfjs, { kind, M: T, K, N }) {
  const { m } = b;
  const dh = kind === 'qk' ? K : N, D = HEADS * dh;
  const list = [];
  const free = [];
  if (kind === 'qk') {
    const q = b.floats(T * D, 1, 1), k = b.floats(T * D, 1, 2), s = b.floats(HEADS * T * T, 1, 3);
    list.push({ name: 'ours', fn: () => m._bw_qk(s, q, k, T, HEADS, dh) });
    free.push(...[q, k, s].map((p) => () => m._free(p)));
    if (tfjs.tf) {
      const { tf } = tfjs;
      const tq = tf.randomNormal([HEADS, T, dh]), tk = tf.randomNormal([HEADS, T, dh]);
      // Per head with K^T made once: tfjs's fastest path (its batched matMul is not XNNPACK).
      const heads = Array.from({ length: HEADS }, (_, h) => [
        tf.randomNormal([T, dh]), tf.randomNormal([dh, T])]);
      list.splice(1, 0, { name: 'xnnpack', fn: () => heads.forEach(([x, y]) => tf.matMul(x, y).dispose()) });
      list.push({ name: 'tf batched', fn: () => tf.matMul(tq, tk, false, true).dispose() });
      free.push(() => { tq.dispose(); tk.dispose(); heads.flat().forEach((t) => t.dispose()); });
    }
  } else {
    const p = b.floats(HEADS * T * T, 1, 1), v = b.floats(T * D, 1, 2), c = b.floats(T * D, 1, 3);
    list.push({ name: 'ours', fn: () => m._bw_pv(c, p, v, T, HEADS, dh) });
    free.push(...[p, v, c].map((x) => () => m._free(x)));
    if (tfjs.tf) {
      const { tf } = tfjs;
      const tp = tf.randomNormal([HEADS, T, T]), tv = tf.randomNormal([HEADS, T, dh]);
      const heads = Array.from({ length: HEADS }, () => [tf.randomNormal([T, T]), tf.randomNormal([T, dh])]);
      list.splice(1, 0, { name: 'xnnpack', fn: () => heads.forEach(([x, y]) => tf.matMul(x, y).dispose()) });
      list.push({ name: 'tf batched', fn: () => tf.matMul(tp, tv).dispose() });
      free.push(() => { tp.dispose(); tv.dispose(); heads.flat().forEach((t) => t.dispose()); });
    }
  }
  return { list, free: () => free.forEach((f) => f()) };
}

async function benchGemm(rounds, minMs) {
  const b = await loadBenchCore();
  const relaxed = await loadRelaxedCore();
  const rc = relaxed.core;
  const tfjs = await loadTfjs();
  const isa = b.str(b.m._bw_int8_isa());
  console.log(`WASM GEMM in Node ${process.versions.node} (V8 ${process.versions.v8}), single thread: `
              + `GFLOP/s (int8: GOP/s), median of ${rounds} alternating rounds, ${minMs} ms samples; int8 kernel: ${isa}`);
  console.log(tfjs.tf
    ? `peer: @tensorflow/tfjs-backend-wasm ${tfjs.version} (XNNPACK), SIMD ${tfjs.simd}, threads ${tfjs.threads}; `
      + 'linear: ours x W^T (W [N][K]) vs tf.matMul(x, W) with W [K][N] (its XNNPACK layout)'
    : `peer: tfjs-backend-wasm not available (${tfjs.error}); run npm install`);
  console.log(rc ? '"relaxed": ours in the relaxed-SIMD module (f32x4.relaxed_madd, what Chromium runs), '
    + 'beside the plain SIMD128 one ("ours")' : `(relaxed: not measured: ${relaxed.why})`);
  console.log(`qk/pv: ${HEADS} heads; "xnnpack" = tf.matMul per head with the operand pre-transposed, `
              + '"tf batched" = one batched tf.matMul (not XNNPACK in tfjs 4)');
  console.log(`${'shape'.padEnd(12)} ${'M'.padStart(5)} ${'K'.padStart(5)} ${'N'.padStart(5)} | `
              + `${'ours'.padStart(8)} ${'relaxed'.padStart(8)} ${'xnnpack'.padStart(8)} ${'scalar'.padStart(8)} | `
              + `${'int8'.padStart(8)} ${'int8+q'.padStart(8)} | ${'ours/xnn'.padStart(8)} ${'rlx/xnn'.padStart(8)} `
              + `${'simd/sc'.padStart(7)} ${'i8/f32'.padStart(7)} ${'i8q/f32'.padStart(7)}`);
  const logs = { xnn: [], rlx: [], i8: [], rates: { ours: [], relaxed: [], xnnpack: [] } };
  for (const sh of SHAPES) {
    const attention = sh.kind === 'qk' || sh.kind === 'pv';
    const contestants = (core, peer) => (attention ? attentionContestants(core, peer, sh) : linearContestants(core, peer, sh));
    const { list, free } = contestants(b, tfjs);
    // The relaxed module's own heap holds its own copies of the same operands.
    const other = rc ? contestants(rc, {}) : null;
    if (other) list.splice(1, 0, { ...other.list.find((c) => c.name === 'ours'), name: 'relaxed' });
    const flops = 2 * sh.M * sh.K * sh.N * (attention ? HEADS : 1);
    const secs = runRounds(list, rounds, minMs);
    const rate = Object.fromEntries(list.map((c, i) => [c.name, flops / secs[i] / 1e9]));
    free();
    other?.free();
    const r = (a, bb) => (rate[a] && rate[bb] ? rate[a] / rate[bb] : NaN);
    let line = `${sh.kind.padEnd(12)} ${String(sh.M).padStart(5)} ${String(sh.K).padStart(5)} ${String(sh.N).padStart(5)} | `
      + `${fmt(rate.ours)} ${fmt(rate.relaxed)} ${fmt(rate.xnnpack)} ${fmt(rate.scalar)} | ${fmt(rate.int8)} `
      + `${fmt(rate['int8+q'])} | ${fmt(r('ours', 'xnnpack'))} ${fmt(r('relaxed', 'xnnpack'))} `
      + `${fmt(r('ours', 'scalar'), 7)} ${fmt(r('int8', 'ours'), 7)} ${fmt(r('int8+q', 'ours'), 7)}`;
    if (rate['tf batched']) line += `   (tf batched ${rate['tf batched'].toFixed(2)})`;
    console.log(line);
    if (sh.kind === 'transformer') {
      if (rate.xnnpack) logs.xnn.push(Math.log(r('ours', 'xnnpack')));
      if (rate.xnnpack && rate.relaxed) logs.rlx.push(Math.log(r('relaxed', 'xnnpack')));
      for (const name of ['ours', 'relaxed', 'xnnpack']) if (rate[name]) logs.rates[name].push(rate[name]);
      logs.i8.push(Math.log(r('int8+q', 'ours')));
    }
  }
  const gm = (v) => (v.length ? Math.exp(v.reduce((s, x) => s + x, 0) / v.length) : NaN);
  const gmRate = (name) => gm(logs.rates[name].map(Math.log));
  console.log(`geometric mean over the ${logs.i8.length} transformer shapes: ours/xnnpack ${fmt(gm(logs.xnn), 0)} `
              + `(goal >= 1.5), int8 (incl. quantizing x)/ours f32 ${fmt(gm(logs.i8), 0)} (target >= 1.5)`);
  if (rc) {
    console.log(`geometric mean over the ${logs.rlx.length} transformer shapes: relaxed/xnnpack ${fmt(gm(logs.rlx), 0)} `
                + `(goal >= 1.5), relaxed/ours ${fmt(gmRate('relaxed') / gmRate('ours'), 0)}`);
  }
  // What any f32 GEMM can reach here: the goal above is only reachable if
  // 1.5 x the peer's rate is below this ceiling.
  const steps = 1 << 20;
  const peakOf = (core) => (steps * 12 * 8) / median(Array.from({ length: rounds }, () =>
    sample(() => core.m._bw_mul_add_ceiling(steps), minMs))) / 1e9;
  const peak = peakOf(b);
  console.log(`ceiling: f32x4 multiply + add (no FMA in SIMD128), 12 independent chains: ${peak.toFixed(1)} GFLOP/s; `
              + `transformer shapes, geometric mean: ours ${fmt(gmRate('ours'), 0)} (${(100 * gmRate('ours') / peak).toFixed(0)} %), `
              + `xnnpack ${fmt(gmRate('xnnpack'), 0)} (${(100 * gmRate('xnnpack') / peak).toFixed(0)} %); `
              + `1.5 x xnnpack would be ${(100 * 1.5 * gmRate('xnnpack') / peak).toFixed(0)} % of it`);
  if (rc) {
    const fmaPeak = peakOf(rc);
    console.log(`ceiling: f32x4.relaxed_madd, 12 independent chains: ${fmaPeak.toFixed(1)} GFLOP/s; relaxed `
                + `${fmt(gmRate('relaxed'), 0)} (${(100 * gmRate('relaxed') / fmaPeak).toFixed(0)} %); `
                + `1.5 x xnnpack would be ${(100 * 1.5 * gmRate('xnnpack') / fmaPeak).toFixed(0)} % of it`);
  }
}

// ------------------------------------------------------------------- models

/** Ids of a fixed English sentence for the byte tokenizer (id = 4 + byte). */
function sentenceIds(T, vocab) {
  const text = new TextEncoder().encode('In the beginning God created the heaven and the earth. ');
  return Int32Array.from({ length: T }, (_, t) => Math.min(4 + text[t % text.length], vocab - 1));
}

async function readModel(dir) {
  const [config, st] = await Promise.all([readFile(join(dir, 'config.json')), readFile(join(dir, 'model.safetensors'))]);
  return { config, st, vocab: JSON.parse(config).vocab_size };
}

/** Loads a model into the bench module's heap (inputs freed afterwards). */
function loadInto(b, files) {
  const { m } = b;
  const pc = m._malloc(files.config.length), ps = m._malloc(files.st.length);
  m.HEAPU8.set(files.config, pc);
  m.HEAPU8.set(files.st, ps);
  const model = m._bw_model_load(pc, files.config.length, ps, files.st.length);
  m._free(pc);
  m._free(ps);
  if (!model) throw new Error(`load: ${b.str(m._bw_error())}`);
  return model;
}

// [name, variant for bw_model_variant]; 3 is f32 without statistics, 4 with only
// what the page's Outliers view draws (bw_model_forward mode 3).
const VARIANTS = [['f32', 0], ['f32 no statistics', 3], ['f32 outlier view', 4], ['w8a8 fake-quant', 1],
  ['w8a8 int8', 2]];
const forwardMode = (v) => ({ 3: 2, 4: 3 })[v] ?? (v ? 1 : 0);

async function benchModel(dir, rounds, minMs) {
  const b = await loadBenchCore();
  const { m } = b;
  const files = await readModel(dir);
  const model = loadInto(b, files);
  const cfg = JSON.parse(files.config);
  console.log(`WASM forward of ${dir} (${cfg.num_hidden_layers ?? cfg.n_layers} layers, d ${cfg.hidden_size}, `
              + `ffn ${cfg.intermediate_size ?? cfg.ffn_dim}) in Node: ms per forward, median of ${rounds} rounds`);
  const variants = VARIANTS.filter(([name, v]) => {
    const ok = m._bw_model_variant(model, v) === 0;
    if (!ok) console.log(`(${name}: not measured: ${b.str(m._bw_error())})`);
    return ok;
  }).map(([name, v]) => ({ name, v, core: b, model }));
  // The relaxed-SIMD module's forwards with and without statistics, in its own heap.
  const relaxed = await loadRelaxedCore();
  const rModel = relaxed.core ? loadInto(relaxed.core, files) : 0;
  if (relaxed.core) {
    variants.push({ name: 'f32 relaxed SIMD', v: 0, core: relaxed.core, model: rModel },
      { name: 'f32 relaxed SIMD no statistics', v: 3, core: relaxed.core, model: rModel });
  } else console.log(`(f32 relaxed SIMD: not measured: ${relaxed.why})`);
  // The public JS API on the same model: what a user of quantscope.mjs waits for
  // (the forward plus copying logits, hidden states and statistics out).
  let api = null;
  try {
    const qs = await import(new URL('wasm/quantscope.mjs', ROOT).href);
    const apiModel = await qs.loadModel(dir);
    const quant = await qs.defaultQuant();
    api = { qs, model: apiModel, quant, int8: 'int8' in quant, relaxed: (await qs.runtimeInfo()).relaxedSimd };
  } catch (e) {
    console.log(`(quantscope.mjs: not measured: ${e.message})`);
  }
  const maxT = m._bw_model_max_positions(model);
  for (const T0 of [64, 128]) {
    const T = Math.min(T0, maxT);
    const ids = sentenceIds(T, files.vocab);
    const cores = [...new Set(variants.map((x) => x.core))];
    const pids = new Map(cores.map((c) => {
      const p = c.m._malloc(4 * T);
      new Int32Array(c.m.HEAPU8.buffer, p, T).set(ids);
      return [c, p];
    }));
    // Installing a quant config re-quantizes the weights, so each variant is
    // installed before its samples and only forwards are timed.
    const secs = variants.map(() => []);
    for (let r = -1; r < rounds; r++) {
      variants.forEach(({ name, v, core: c, model: mo }, i) => {
        c.check(c.m._bw_model_variant(mo, v), name);
        const p = pids.get(c);
        const s = sample(() => c.check(c.m._bw_model_forward(mo, p, T, forwardMode(v)), 'forward'), minMs);
        if (r >= 0) secs[i].push(s);
      });
    }
    const base = median(secs[0]);
    variants.forEach(({ name }, i) => {
      const ms = 1e3 * median(secs[i]);
      console.log(`  T = ${String(T).padStart(3)}  ${`${name} (C API)`.padEnd(44)} ${fmt(ms, 8, 3)} ms  `
                  + `(${(median(secs[i]) / base).toFixed(2)} x f32)`);
    });
    const at = (name) => variants.findIndex((x) => x.name === name);
    const [off, view, int8] = [at('f32 no statistics'), at('f32 outlier view'), at('w8a8 int8')];
    if (off >= 0) {
      console.log(`  T = ${String(T).padStart(3)}  statistics on / off: ${(base / median(secs[off])).toFixed(2)} x (goal <= 1.3)`
                  + (view >= 0 ? `; outlier view's only / off: ${(median(secs[view]) / median(secs[off])).toFixed(2)} x` : '')
                  + (int8 >= 0 ? `; f32 / int8 w8a8, both with statistics: ${(base / median(secs[int8])).toFixed(2)} x (goal >= 1.5)` : ''));
    }
    const [rOn, rOff] = [at('f32 relaxed SIMD'), at('f32 relaxed SIMD no statistics')];
    if (rOn >= 0) {
      console.log(`  T = ${String(T).padStart(3)}  relaxed SIMD: statistics on / off ${(median(secs[rOn]) / median(secs[rOff])).toFixed(2)} x; `
                  + `plain / relaxed, both with statistics: ${(base / median(secs[rOn])).toFixed(2)} x`);
    }
    if (api) {
      const apiVariants = [['f32', undefined], ['w8a8 fake-quant', api.quant]];
      if (api.int8) apiVariants.push(['w8a8 int8', { ...api.quant, int8: true }]);
      const apiSecs = apiVariants.map(() => []);
      for (let r = -1; r < rounds; r++) {
        for (const [i, [, quant]] of apiVariants.entries()) {
          // forward() is async (a queue); time sequential awaited calls.
          let n = 0;
          const t0 = performance.now();
          do {
            await api.model.forward(ids, quant ? { quant } : {});
            n++;
          } while (performance.now() - t0 < minMs);
          if (r >= 0) apiSecs[i].push((performance.now() - t0) / 1e3 / n);
        }
      }
      apiVariants.forEach(([name], i) => {
        console.log(`  T = ${String(T).padStart(3)}  ${`${name} (quantscope.mjs${api.relaxed ? ', relaxed SIMD' : ''})`.padEnd(44)} `
                    + `${fmt(1e3 * median(apiSecs[i]), 8, 3)} ms`);
      });
    }
    for (const [c, p] of pids) c.m._free(p);
  }
  if (api) api.model.dispose();
  if (relaxed.core) relaxed.core.m._bw_model_free(rModel);
  m._bw_model_free(model);
}

async function benchMem(dir) {
  const b = await loadBenchCore();
  const { m } = b;
  const MiB = (x) => (x / 1048576).toFixed(1);
  const before = m._bw_heap_top();
  const files = await readModel(dir);
  const model = loadInto(b, files);
  const afterLoad = m._bw_heap_top(), inUseLoad = m._bw_heap_in_use();
  const maxT = m._bw_model_max_positions(model);
  for (const [, v] of VARIANTS) {
    if (m._bw_model_variant(model, v) !== 0) continue;
    for (const T0 of [64, 128]) {
      const T = Math.min(T0, maxT);
      const pids = m._malloc(4 * T);
      new Int32Array(m.HEAPU8.buffer, pids, T).set(sentenceIds(T, files.vocab));
      b.check(m._bw_model_forward(model, pids, T, forwardMode(v)), 'forward');
      m._free(pids);
    }
  }
  const top = m._bw_heap_top();
  console.log(`${dir}: WASM heap high-water mark ${MiB(before)} MiB at start (static data and stack), `
              + `+${MiB(afterLoad - before)} MiB after loading (in use ${MiB(inUseLoad)}), `
              + `+${MiB(top - before)} MiB after forwards of every variant on 64 and 128 tokens `
              + `(in use ${MiB(m._bw_heap_in_use())}); WASM memory ${MiB(m.HEAPU8.buffer.byteLength)} MiB`);
  m._bw_model_free(model);
}

// -------------------------------------------------------- large checkpoints

/** Ids in [1000, vocab) (past BERT's specials and unused rows), fixed. */
function spreadIds(n, vocab, seed = 7) {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1000 + (s % Math.max(vocab - 1000, 1));
  });
}

/**
 * A checkpoint of the size people bring (BERT-base, OPT-125m: make random ones
 * with tests/node/bigmodels.mjs) through the public module, in a fresh
 * process: load time, WASM memory and process RSS after loading, a forward of
 * 128 tokens with statistics, and W8A8 (int8 kernels) evaluation throughput.
 */
async function benchScale(dir, rounds, windows) {
  const qs = await import(new URL('wasm/quantscope.mjs', ROOT).href);
  const MiB = (x) => `${(x / 1048576).toFixed(0)} MiB`;
  const rss = () => process.memoryUsage().rss;
  const peakRss = () => process.resourceUsage().maxRSS * 1024; // KiB in Node
  await qs.memoryUsage(); // the instance started: its memory before the model
  const [mem0, rss0] = [(await qs.memoryUsage()).heapBytes, rss()];
  const t0 = performance.now(), c0 = process.cpuUsage();
  const model = await qs.loadModel(dir);
  const loadMs = performance.now() - t0, c1 = process.cpuUsage(c0);
  const cpuS = (c) => `${((c.user + c.system) / 1e6).toFixed(2)} s CPU`;
  globalThis.gc?.();
  const mem1 = await qs.memoryUsage();
  const [rss1, peak1] = [rss(), peakRss()];
  const cfg = model.config;
  const T = Math.min(128, cfg.maxPositions);
  const ids = spreadIds(T, cfg.vocabSize);
  const fwd = [], fwdCpu = [];
  for (let r = rounds ? -1 : 0; r < rounds; r++) {
    const t = performance.now(), c = process.cpuUsage();
    const res = await model.forward(ids);
    const cu = process.cpuUsage(c);
    if (r >= 0) fwd.push(performance.now() - t), fwdCpu.push((cu.user + cu.system) / 1e3);
    if (!res.logits.every(Number.isFinite)) throw new Error(`${dir}: non-finite logits`);
  }
  const mem2 = await qs.memoryUsage();
  // Evaluation: the float pass, 4 calibration windows, then the W8A8 pass, one
  // thread; the quantized pass is timed from the progress reports.
  const bert = cfg.arch === 'bert';
  const specials = bert ? { cls: 101, sep: 102, mask: 103 } : { bos: 2 };
  const stream = spreadIds(windows * T + 8, cfg.vocabSize, 11);
  const quant = { ...(await qs.defaultQuant()), int8: true };
  let qStart = null;
  const floatWindows = windows, calib = 4;
  const t2 = performance.now(), c2 = process.cpuUsage();
  let qCpu = null;
  const ev = !windows ? null : await model.evaluate(stream, {
    seqLen: T, maxWindows: windows, quant, calibWindows: calib, threads: 1, specials,
    onProgress: ({ done }) => {
      if (done === floatWindows + calib && qStart === null) [qStart, qCpu] = [performance.now(), process.cpuUsage()];
    },
  });
  const t3 = performance.now(), c3 = process.cpuUsage(c2), q3 = qCpu && process.cpuUsage(qCpu);
  const qSec = (t3 - (qStart ?? t2)) / 1e3, allSec = (t3 - t2) / 1e3;
  const mem3 = await qs.memoryUsage();
  const peak3 = peakRss();
  const st = await import('node:fs').then((fs) => fs.statSync(join(dir, 'model.safetensors')).size);
  console.log(`${dir}: ${cfg.arch} ${cfg.nLayers} layers d ${cfg.hiddenSize} ffn ${cfg.intermediateSize} vocab ${cfg.vocabSize}, `
    + `model.safetensors ${MiB(st)}; Node ${process.versions.node}, quantscope.mjs (single-threaded build)`);
  console.log(`  load            ${(loadMs / 1e3).toFixed(2)} s (${cpuS(c1)})   WASM memory ${MiB(mem0)} -> ${MiB(mem1.heapBytes)} `
    + `(${(mem1.heapBytes / st).toFixed(2)} x the file; malloc'd ${MiB(mem1.usedBytes)})   `
    + `RSS ${MiB(rss0)} -> ${MiB(rss1)} (peak ${MiB(peak1)})`);
  if (rounds) {
    console.log(`  forward T=${T}   ${median(fwd).toFixed(0)} ms with statistics (median of ${rounds}; `
      + `min ${Math.min(...fwd).toFixed(0)}; CPU ${median(fwdCpu).toFixed(0)} ms)   WASM memory after ${MiB(mem2.heapBytes)}`);
  }
  if (ev) {
    const qTok = windows * T, qCpuS = q3 ? (q3.user + q3.system) / 1e6 : NaN;
    console.log(`  evaluate        ${windows} windows of ${T}: W8A8 int8 pass ${(qTok / qSec).toFixed(0)} tokens/s `
      + `(${qSec.toFixed(2)} s; ${(qTok / qCpuS).toFixed(0)} tokens per CPU second), whole call ${allSec.toFixed(2)} s `
      + `(${cpuS(c3)}: float + ${calib} calibration + W8A8), ppl fp ${ev.fpPpl.toPrecision(5)} w8a8 ${ev.qPpl.toPrecision(5)}`);
  }
  console.log(`  memory at the end: WASM ${MiB(mem3.heapBytes)}, RSS ${MiB(rss())} (peak ${MiB(peak3)})`);
  await model.dispose();
}

async function benchProfile(dir, name, T0, seconds) {
  const variant = VARIANTS.find(([n]) => n === name);
  if (!variant) throw new Error(`unknown variant '${name}': expected ${VARIANTS.map(([n]) => n).join(', ')}`);
  const b = await loadBenchCore(process.env.QS_BENCH_RELAXED === '1' ? BENCH_RELAXED_WASM : BENCH_WASM);
  const { m } = b;
  const files = await readModel(dir);
  const model = loadInto(b, files);
  b.check(m._bw_model_variant(model, variant[1]), name);
  const T = Math.min(T0, m._bw_model_max_positions(model));
  const pids = m._malloc(4 * T);
  new Int32Array(m.HEAPU8.buffer, pids, T).set(sentenceIds(T, files.vocab));
  const s = sample(() => b.check(m._bw_model_forward(model, pids, T, forwardMode(variant[1])), 'forward'),
    1e3 * seconds);
  console.log(`${dir} ${name} T = ${T}: ${(1e3 * s).toFixed(3)} ms per forward over ${seconds} s`);
  m._free(pids);
  m._bw_model_free(model);
}

// --------------------------------------------------------------------- main

const [mode = 'gemm', ...rest] = process.argv.slice(2);
const modelMode = ['model', 'mem', 'scale', 'profile'].includes(mode);
const dir = modelMode ? rest.shift() : null;
const rounds = Math.min(Math.max(parseInt(rest[0] ?? '5', 10) || 5, 1), 101);
const minMs = parseFloat(rest[1] ?? '100') || 100;
if (modelMode && !dir) {
  console.error('usage: node bench/wasm/bench.mjs gemm|model DIR|mem DIR [rounds] [min_ms] | scale DIR [rounds] [windows]'
                + ' | profile DIR VARIANT [T] [seconds]');
  process.exit(2);
}
if (mode === 'gemm') await benchGemm(rounds, minMs);
else if (mode === 'model') await benchModel(dir, rounds, minMs);
else if (mode === 'mem') await benchMem(dir);
else if (mode === 'profile') await benchProfile(dir, rest[0] ?? 'f32', parseInt(rest[1] ?? '64', 10) || 64, parseFloat(rest[2] ?? '5') || 5);
else if (mode === 'scale') await benchScale(dir, parseInt(rest[0] ?? '3', 10) || 0, Math.max(parseInt(rest[1] ?? '8', 10), 0) || 0);
else {
  console.error(`unknown mode ${mode}: expected gemm, model, mem, scale or profile`);
  process.exit(2);
}
