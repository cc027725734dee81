// tests/fuzz/wasm/fuzz.mjs: a mutation fuzzer over the WebAssembly module,
// for the long local run (issue "Hardening, round 2"): starting from the
// committed seeds, each execution mutates one seed the way libFuzzer's default
// mutators do (bit flips, interesting bytes and integers, inserted, erased
// and repeated chunks, cross-over with another seed) and runs it through the
// target's driver in targets.mjs, whose checks are the oracle. Deterministic
// for a seed. An input that fails a check is written to
// build/fuzz/wasm-artifacts/ and the run stops with exit code 1.
//
//   node tests/fuzz/wasm/fuzz.mjs [--runs N] [--seconds S] [--seed X] [TARGET...]
//   (default: 10,000 runs per target, every target; the long run: --runs 1000000)
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { targets, pairedCorpus, disposeTargets } from './targets.mjs';

const CORPUS = fileURLToPath(new URL('../corpus/', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../../../build/fuzz/wasm-artifacts/', import.meta.url));
const MAX_LEN = 1 << 16; // libFuzzer's -max_len for these targets is of this order

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(args.splice(i, 2)[1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} expects a number`);
  return v;
};
const runs = opt('--runs', 10_000), seconds = opt('--seconds', 0), seed0 = opt('--seed', 1);
const names = args.length ? args : Object.keys(targets);
for (const n of names) if (!targets[n]) throw new Error(`unknown target ${n} (one of ${Object.keys(targets).join(', ')})`);

// xorshift64*: small, seedable, the same sequence on every machine.
function rng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed) * 0x9E3779B97F4A7C15n + 1n);
  return (n) => {
    s ^= s >> 12n; s ^= BigInt.asUintN(64, s << 25n); s ^= s >> 27n;
    const x = BigInt.asUintN(64, s * 0x2545F4914F6CDD1Dn);
    return Number(x >> 11n) % n;
  };
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 16, 32, 64, 100, 1000];

function mutate(input, other, r) {
  let b = Uint8Array.from(input);
  const rounds = 1 + r(4);
  for (let k = 0; k < rounds; k++) {
    const at = b.length ? r(b.length) : 0;
    switch (r(8)) {
      case 0: if (b.length) b[at] ^= 1 << r(8); break; // bit flip
      case 1: if (b.length) b[at] = INTERESTING[r(5)]; break; // interesting byte
      case 2: { // interesting little-endian integer of 2 or 4 bytes
        const w = r(2) ? 4 : 2, v = INTERESTING[r(INTERESTING.length)];
        for (let i = 0; i < w && at + i < b.length; i++) b[at + i] = (v >>> (8 * i)) & 0xff;
        break;
      }
      case 3: { // ASCII digit run (numbers in JSON headers)
        const digits = String(INTERESTING[r(INTERESTING.length)] * (r(2) ? 1 : 1000003));
        b = Uint8Array.from([...b.subarray(0, at), ...new TextEncoder().encode(digits), ...b.subarray(at + r(4))]);
        break;
      }
      case 4: { // erase a chunk
        const n = 1 + r(Math.max(1, Math.min(64, b.length - at)));
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + n)]);
        break;
      }
      case 5: { // insert random bytes
        const n = 1 + r(16), ins = Array.from({ length: n }, () => r(256));
        b = Uint8Array.from([...b.subarray(0, at), ...ins, ...b.subarray(at)]);
        break;
      }
      case 6: { // repeat a chunk
        const n = 1 + r(Math.max(1, Math.min(256, b.length - at)));
        b = Uint8Array.from([...b.subarray(0, at + n), ...b.subarray(at, at + n), ...b.subarray(at + n)]);
        break;
      }
      default: { // cross-over: our head, another seed's tail
        const cut = other.length ? r(other.length) : 0;
        b = Uint8Array.from([...b.subarray(0, at), ...other.subarray(cut)]);
      }
    }
  }
  return b.length > MAX_LEN ? b.subarray(0, MAX_LEN) : b;
}

async function seedsOf(target) {
  const dir = join(CORPUS, target);
  const files = (await readdir(dir)).sort();
  return Promise.all(files.map(async (name) => ({ name, bytes: new Uint8Array(await readFile(join(dir, name))) })));
}

let failed = false;
for (const target of names) {
  const seeds = await seedsOf(target);
  const pairs = pairedCorpus[target] ? new Map((await seedsOf(pairedCorpus[target])).map((s) => [s.name, s.bytes])) : new Map();
  const r = rng(seed0 * 1000 + names.indexOf(target));
  const t0 = performance.now();
  let n = 0;
  for (; n < runs || (seconds && performance.now() - t0 < seconds * 1000); n++) {
    if (seconds && !runs && performance.now() - t0 >= seconds * 1000) break;
    const s = seeds[r(seeds.length)], other = seeds[r(seeds.length)].bytes;
    const input = mutate(s.bytes, other, r);
    try {
      await targets[target](input, pairs.get(s.name));
    } catch (e) {
      const hash = createHash('sha1').update(input).digest('hex').slice(0, 12);
      await mkdir(ARTIFACTS, { recursive: true });
      const file = join(ARTIFACTS, `${target}-${hash}`);
      await writeFile(file, input);
      console.log(`${target}: FINDING after ${n} runs (from seed ${s.name}): ${e.message}\n  input: ${file}`);
      failed = true;
      break;
    }
  }
  const secs = (performance.now() - t0) / 1000;
  if (!failed) console.log(`${target}: ${n} runs in ${secs.toFixed(1)} s (${Math.round(n / secs)} exec/s), no finding`);
  if (failed) break;
}
await disposeTargets();
process.exit(failed ? 1 : 0);
