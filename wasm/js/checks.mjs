// wasm/js/checks.mjs: the checkers of what callers pass in: options objects
// (unknown keys refused), callbacks and AbortSignals, token ids and flags, numbers.
import { argError, qsError } from './errors.mjs';

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
export function checkOptions(value, keys, what, noun = 'option') {
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

export function callbackOption(f, what) {
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

export function signalOption(signal, what) {
  if (signal == null) return null;
  if (typeof AbortSignal !== 'function' || !(signal instanceof AbortSignal)) {
    throw argError(`${what}: signal must be an AbortSignal`);
  }
  return signal;
}

/** Throws the signal's reason once it is aborted: a DOMException named
 * 'AbortError' unless abort() was given another, as fetch() rejects. */
export function checkAborted(signal) {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * Resolves after the event loop has run once: a task, not a microtask,
 * because timers and messages (where an abort() usually comes from) are
 * tasks. setImmediate in Node; a MessageChannel in browsers, where
 * setTimeout(0) waits 4 ms once nested.
 */
export const nextTask = typeof setImmediate === 'function'
  ? () => new Promise((resolve) => { setImmediate(resolve); })
  : () => new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });

// ------------------------------------------------------- argument checking

const INT32_MAX = 0x7fffffff; // the C side counts tokens in an int

/** The length of an array-like, refused unless a count C can take: a bogus
 * one ({length: -1}) would otherwise become a RangeError without a code. */
export function arrayLength(values, what, kind) {
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
export function toInt32(values, what) {
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
export function toFlags(values, T, what) {
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

export function optionalInt32(values, T, what) {
  if (values == null) return null;
  const out = toInt32(values, what);
  if (out.length !== T) throw argError(`${what} has ${out.length} entries but ids has ${T}`);
  return out;
}

export function intOption(v, what, dflt = 0) {
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v)) throw argError(`${what} must be an integer, got ${v}`);
  return v;
}

/** Threads for one call: configure()'s by default, never more (a thread beyond
 * the pthread pool would wait for a worker that cannot start while we block). */
export function threadsOption(c, v, what) {
  const n = intOption(v, `${what}: threads`, c.threads);
  if (n < 1 || n > c.threads) {
    throw argError(`${what}: threads must be in [1, ${c.threads}] (configure({ threads }) sets the most), got ${n}`);
  }
  return n;
}

export function numberOption(v, what, dflt = 0) {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number') throw argError(`${what} must be a number, got ${v}`);
  return v;
}

export function enumOption(v, names, what, dflt) {
  if (v === undefined || v === null) return dflt;
  const i = names.indexOf(v);
  if (i < 0) throw argError(`${what}: unknown value '${v}' (one of: ${names.join(', ')})`);
  return i;
}


/** A seed: an integer in [0, 2^53), which C takes as a uint64_t. */
export function seedOption(v, what, dflt = 0) {
  const n = intOption(v, what, dflt);
  if (n < 0 || n > Number.MAX_SAFE_INTEGER) throw argError(`${what} ${n} must be in [0, 2^53)`);
  return n;
}
