// wasm/js/errors.mjs: the Errors the module throws: a quantscope status name in
// `code` (the C library's, or QS_ERR_TRAP for a trapped WebAssembly instance).

/** An Error carrying a quantscope status name in `code`. */
export function qsError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

export const argError = (message) => qsError('QS_ERR_ARG', message);

// ---------------------------------------------------------------- traps
//
// A WebAssembly trap (an access outside linear memory, `unreachable`, a
// stack overflow) aborts the C call midway: a heap that was being written
// may be corrupt and its locks or lists half-updated, so nothing in that
// instance can be trusted any more, including the other models living in
// it. The C code refuses every size it cannot hold (core/size.h), so a trap
// is a bug; if one escapes anyway it becomes an Error with code
// 'QS_ERR_TRAP', the instance is dropped (heap.mjs, runtime.mjs), and the
// next call starts a fresh one. Models of the dropped instance reject with
// restartedError().

export const isTrap = (e) => e instanceof WebAssembly.RuntimeError
  || (e instanceof RangeError && /call stack size/i.test(e.message));

export const trapError = (e) => {
  const err = qsError('QS_ERR_TRAP', `quantscope: the WebAssembly instance trapped (${e.message}); `
    + 'it was dropped and the next call starts a fresh one: models loaded before must be loaded again');
  err.cause = e;
  return err;
};

export const restartedError = () => qsError('QS_ERR_TRAP',
  'quantscope: the WASM instance was restarted after a trap; load the model again');
