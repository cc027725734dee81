// scripts/wasm-relaxed.mjs: renumbers clang 14's relaxed-SIMD FMA to the
// opcode the standard gave it, so the relaxed build runs in today's engines.
//
//   node scripts/wasm-relaxed.mjs IN.wasm OUT.wasm
//
// clang 14 emits `f32x4.fma` of the relaxed-SIMD prototype as 0xfd 0xaf 0x01;
// the standard (Chromium 114+, V8 11.4+) calls it f32x4.relaxed_madd,
// 0xfd 0x85 0x02, with the same meaning a * b + c (docs/toolchain.md). Both
// are two-byte LEB128 numbers, so the rewrite keeps every offset. It walks
// every instruction of every function body (a byte search could hit an
// immediate), and refuses any other relaxed prototype opcode, any opcode it
// does not know, and a module without a single FMA: the output is either
// right or not written.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const PROTO_FMA = 0xaf;
const RELAXED_MADD = 0x105;
// The gaps of the standard SIMD opcode space below 0x100, where clang 14 put
// the relaxed prototype's other instructions (swizzle, truncations, fms,
// laneselect, min/max): one of them means the build used a relaxed builtin
// this script does not translate.
const SIMD_GAPS = new Set([0x9a, 0xa2, 0xa5, 0xa6, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0,
  0xd2, 0xd3, 0xd4, 0xe2, 0xee]);
// MVP opcodes without immediates: unreachable, nop, else, end, return, drop,
// select, the numeric instructions (sign extension included) and ref.is_null.
const noImmediates = (op) => op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f || op === 0x1a || op === 0x1b
  || (op >= 0x45 && op <= 0xc4) || op === 0xd1;

class Reader {
  constructor(bytes, at, end) { this.b = bytes; this.at = at; this.end = end; }
  byte() {
    if (this.at >= this.end) throw new Error(`truncated at byte ${this.at}`);
    return this.b[this.at++];
  }
  uleb() {
    let v = 0, shift = 0, c;
    do { c = this.byte(); v += (c & 0x7f) * 2 ** shift; shift += 7; } while (c & 0x80);
    return v;
  }
  sleb() { // value not needed: skip the bytes
    let c;
    do c = this.byte(); while (c & 0x80);
  }
  skip(n) {
    if (this.at + n > this.end) throw new Error(`truncated at byte ${this.at}`);
    this.at += n;
  }
  memarg() { this.uleb(); this.uleb(); }
}

/** Skips the immediates of the 0xfd (SIMD) opcode op. */
function simdImmediates(r, op) {
  if (op <= 11 || op === 92 || op === 93) r.memarg(); // loads, store, load*_zero
  else if (op === 12 || op === 13) r.skip(16); // v128.const, i8x16.shuffle
  else if (op >= 21 && op <= 34) r.skip(1); // extract / replace lane
  else if (op >= 84 && op <= 91) { r.memarg(); r.skip(1); } // load / store lane
  else if (op > 0xff || SIMD_GAPS.has(op)) throw new Error(`SIMD opcode 0x${op.toString(16)} at byte ${r.at}: not standard SIMD128`);
}

/** Skips the immediates of the 0xfc opcode op (saturating truncations, bulk memory, tables). */
function miscImmediates(r, op) {
  if (op <= 7) return;
  if (op === 8) { r.uleb(); r.skip(1); } // memory.init
  else if (op === 10) r.skip(2); // memory.copy
  else if (op === 11) r.skip(1); // memory.fill
  else if (op === 12 || op === 14) { r.uleb(); r.uleb(); } // table.init, table.copy
  else if (op === 9 || op === 13 || (op >= 15 && op <= 17)) r.uleb();
  else throw new Error(`unknown opcode 0xfc ${op} at byte ${r.at}`);
}

/** Walks one function body's instructions, rewriting FMAs in place; returns how many. */
function patchBody(bytes, r) {
  let n = 0;
  for (let groups = r.uleb(); groups > 0; groups--) { r.uleb(); r.byte(); } // locals
  while (r.at < r.end) {
    const op = r.byte();
    if (noImmediates(op)) continue;
    if (op === 0x02 || op === 0x03 || op === 0x04) { // block, loop, if: a block type
      const t = r.b[r.at];
      if (t === 0x40 || (t >= 0x7b && t <= 0x7f) || t === 0x70 || t === 0x6f) r.skip(1);
      else r.sleb();
    } else if (op === 0x0c || op === 0x0d || op === 0x10 || (op >= 0x20 && op <= 0x26) || op === 0xd2) {
      r.uleb(); // br, br_if, call, locals, globals, tables, ref.func
    } else if (op === 0x0e) { // br_table: the targets and the default
      for (let k = r.uleb(); k >= 0; k--) r.uleb();
    } else if (op === 0x11) { r.uleb(); r.uleb(); } // call_indirect
    else if (op === 0x1c) { for (let k = r.uleb(); k > 0; k--) r.byte(); } // select t*
    else if (op >= 0x28 && op <= 0x3e) r.memarg();
    else if (op === 0x3f || op === 0x40 || op === 0xd0) r.skip(1); // memory.size/grow, ref.null
    else if (op === 0x41 || op === 0x42) r.sleb();
    else if (op === 0x43) r.skip(4);
    else if (op === 0x44) r.skip(8);
    else if (op === 0xfc) miscImmediates(r, r.uleb());
    else if (op === 0xfd) {
      const at = r.at, sub = r.uleb();
      if (sub === PROTO_FMA && r.at === at + 2) {
        bytes[at] = 0x80 | (RELAXED_MADD & 0x7f);
        bytes[at + 1] = RELAXED_MADD >> 7;
        n++;
      } else simdImmediates(r, sub);
    } else if (op === 0xfe) { // atomics (the threads build): atomic.fence has a byte, the rest a memarg
      if (r.uleb() === 0x03) r.skip(1); else r.memarg();
    } else throw new Error(`unknown opcode 0x${op.toString(16)} at byte ${r.at - 1}`);
  }
  return n;
}

/** The module with every prototype FMA renumbered; throws rather than guess. */
export function relaxedFromPrototype(input) {
  const bytes = Uint8Array.from(input);
  const magic = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  if (!magic.every((b, i) => bytes[i] === b)) throw new Error('not a WebAssembly module (version 1)');
  let fmas = 0;
  const r = new Reader(bytes, 8, bytes.length);
  while (r.at < bytes.length) {
    const id = r.byte(), size = r.uleb(), start = r.at;
    if (id === 10) { // code
      const s = new Reader(bytes, start, start + size);
      for (let f = s.uleb(); f > 0; f--) {
        const len = s.uleb();
        fmas += patchBody(bytes, new Reader(bytes, s.at, s.at + len));
        s.skip(len);
      }
    }
    r.at = start + size;
  }
  if (!fmas) throw new Error('no f32x4.fma found: was the relaxed build compiled with -mrelaxed-simd?');
  return { bytes, fmas };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node scripts/wasm-relaxed.mjs IN.wasm OUT.wasm');
    process.exit(2);
  }
  try {
    const { bytes, fmas } = relaxedFromPrototype(readFileSync(input));
    writeFileSync(output, bytes);
    console.log(`wasm-relaxed: ${output}: ${fmas} f32x4.fma renumbered to f32x4.relaxed_madd`);
  } catch (e) {
    console.error(`wasm-relaxed: ${input}: ${e.message}`);
    process.exit(1);
  }
}
