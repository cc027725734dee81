// wasm/js/fix.mjs: the post-hoc fixes from JavaScript (include/quantscope/fix.h):
// fix specs as text or objects, checked by C's own parser, and their reports.
import { argError } from './errors.mjs';

/** s as a NUL-terminated UTF-8 string for withHeap. */
export const cString = (c, s) => c.encoder.encode(`${s}\0`);

// What would change a spec's meaning on its way into C's text: a name or key
// holding ':', ',', '=' or '+' would smuggle in another parameter or fix.
const WORD = /^[A-Za-z0-9_-]+$/;

/** One fix given as an object, { name: 'smoothquant', alpha: 0.5 }, as spec text. */
function objectSpec(f, what) {
  const { name, ...params } = f;
  if (typeof name !== 'string' || !WORD.test(name)) {
    throw argError(`${what}: a fix object needs name: 'smoothquant' | 'rotate' | 'int8split' | 'gptq' | 'none', got ${JSON.stringify(name)}`);
  }
  const parts = Object.entries(params).map(([key, v]) => {
    if (!WORD.test(key)) throw argError(`${what}: fix '${name}': parameter name ${JSON.stringify(key)} is not a word`);
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw argError(`${what}: fix '${name}': ${key} must be a finite number, got ${typeof v === 'string' ? JSON.stringify(v) : v}`);
    }
    return `${key}=${v}`;
  });
  return parts.length ? `${name}:${parts.join(',')}` : name;
}

/**
 * The fixes of withFix() as spec texts in the order they are applied: a
 * string ('smoothquant:alpha=0.5', 'rotate+gptq:bits=4' stacks two), an
 * object ({ name: 'smoothquant', alpha: 0.5 }), or an array of either. The
 * names, keys and ranges are C's to check (qs_fix_parse); this only refuses
 * what could not reach that parser intact.
 */
export function fixSpecs(fixes, what) {
  const list = Array.isArray(fixes) ? fixes : [fixes];
  if (!list.length) throw argError(`${what}: no fix given`);
  return list.flatMap((f) => {
    if (typeof f === 'string') {
      const parts = f.split('+');
      if (parts.some((p) => !p)) throw argError(`${what}: empty fix in '${f}' (stack fixes as 'smoothquant+rotate')`);
      return parts;
    }
    if (f !== null && typeof f === 'object' && !Array.isArray(f)) return [objectSpec(f, what)];
    throw argError(`${what}: a fix is a spec string or an object { name, ...parameters }, got ${f === null ? 'null' : typeof f}`);
  });
}

/** A fix_report record as withFix() reports it; GPTQ's figures only for GPTQ. */
export function fixReport(c, r) {
  const spec = c.str(r.spec);
  const out = { fix: spec, covers: c.str(r.covers), calibrationWindows: r.calibrationWindows, runtime: r.runtime };
  if (spec.startsWith('gptq')) {
    Object.assign(out, { deadColumns: r.deadColumns, gptqError: r.gptqError, rtnError: r.rtnError,
      errorRatio: r.rtnError > 0 ? r.gptqError / r.rtnError : null });
  }
  return Object.freeze(out);
}

/** The named evaluation settings (qs_setting_name, qs_setting_describe), in C's order. */
export function settingList(c) {
  return Array.from({ length: c.m._qsw_setting_count() }, (_, i) => ({
    name: c.str(c.m._qsw_setting_name(i)), description: c.str(c.m._qsw_setting_describe(i)),
  }));
}
