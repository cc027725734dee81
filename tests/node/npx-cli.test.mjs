// tests/node/npx-cli.test.mjs: `npx quantscope` (bin/quantscope.mjs over the WASM module)
// prints what the native qs prints for the same model and input: logits, stats, quant
// and eval, text and --json, on the golden models and models/bert-vanilla, and the
// same refusals with the same exit codes.
//
// Two references. build/m32/qs (gcc -m32 -msse2: four float lanes, no FMA, the
// arithmetic of WebAssembly SIMD128) must match byte for byte. build/native/qs
// (x86-64 with -march=native: AVX2/AVX-512 lanes and FMA, so other rounding in
// every dot product) must match in everything but the last bits of the numbers:
// FLOAT below for float figures; QUANTIZED for perplexities after activations
// were rounded to a grid, where a value one ulp either side of a grid boundary
// lands on another level and the difference grows through the layers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'bin/quantscope.mjs');
const native = path.join(root, 'build/native/qs');
const m32 = path.join(root, 'build/m32/qs');
const golden = (name) => path.join(root, 'tests/golden', name);
const vanilla = path.join(root, 'models/bert-vanilla');

// Native and WASM sum in different orders (16 AVX-512 lanes with K in chunks of 256
// against 4 SIMD128 lanes), which moves logits near zero by about 1e-5: the bound is
// three times that, ten times inside the golden test's 1e-4 against transformers.
const FLOAT = { abs: 3e-5, rel: 2e-4 };
const QUANTIZED = { abs: 1e-5, rel: 2e-2 };

const work = mkdtempSync(path.join(tmpdir(), 'qs-npx-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const GENESIS = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; '
  + 'and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. '
  + 'And God said, Let there be light: and there was light. And God saw the light, that it was good: and God '
  + 'divided the light from the darkness. And God called the light Day, and the darkness he called Night. '
  + 'And the evening and the morning were the first day.\n';
const passage = path.join(work, 'genesis.txt');
writeFileSync(passage, GENESIS.repeat(3));
const long = path.join(work, 'long.txt'); // 21 blocks of 16 KiB: one of them is the validation split
writeFileSync(long, GENESIS.repeat(Math.ceil((21 * 16384) / GENESIS.length)));
const empty = path.join(work, 'empty.txt');
writeFileSync(empty, '');
// A model folder whose name JSON must escape and whose width counts UTF-8 bytes.
const oddName = path.join(work, 'mödel "x"');
symlinkSync(golden('opt'), oddName);

const ids300 = Array.from({ length: 300 }, (_, i) => 4 + ((i * 13) % 250)).join(',');
const OUTPUT_CASES = [
  [['logits', '--model', golden('bert'), '--ids', '2,15,77,120,5,33', '--types', '0,0,0,1,1,1'], FLOAT],
  [['logits', '--model', golden('opt'), '--ids', '2,15,77,120,5,299,31,8'], FLOAT],
  [['stats', '--model', golden('bert'), '--ids', '2,15,77,120,5,33', '--types', '0,0,0,1,1,1'], FLOAT],
  [['stats', '--model', golden('opt'), '--ids', '2,15,77,120,5,299,31,8'], FLOAT],
  [['quant', '--model', golden('bert'), '--ids', '2,15,77,120,5,33'], FLOAT],
  [['quant', '--model', golden('opt'), '--ids', '2,15,77,120,5,299,31,8', '--wbits', '4', '--abits', '4'], FLOAT],
  [['eval', '--model', golden('opt'), '--ids', ids300, '--seq-len', '32'], QUANTIZED],
  [['eval', '--model', oddName, '--ids', ids300, '--seq-len', '32', '--wbits', '6', '--abits', '0'], FLOAT],
  [['logits', '--model', vanilla, '--text', 'Let there be light.'], FLOAT],
  [['stats', '--model', vanilla, '--text', 'In the beginning God created the heaven and the earth.'], FLOAT],
  [['stats', '--model', vanilla, '--ids', '1,80,108,105,36,4,50,2'], FLOAT], // delimiters of given ids
  [['quant', '--model', vanilla, '--text', 'Let there be light: and there was light.', '--wbits', '8', '--abits', '6',
    '--agran', 'token', '--points', 'q,k,v'], FLOAT],
  [['eval', '--model', vanilla, '--text-file', passage, '--seq-len', '64', '--windows', '8'], QUANTIZED],
  [['eval', '--model', vanilla, '--data', long, '--windows', '4', '--abits', '8', '--sym-acts'], QUANTIZED],
];

// Bit for bit against m32 only: per-tensor activations of a trained model at
// these widths move perplexities by up to 3 % and the max |logit error| by
// 16 % between m32 and native (grid flips, see above).
const EXACT_ONLY_CASES = [
  ['quant', '--model', vanilla, '--text', 'Let there be light: and there was light.'],
  ['quant', '--model', path.join(root, 'models/bert-gated'), '--text', 'And God saw the light.', '--abits', '6',
    '--estimator', 'mse'],
  ['eval', '--model', vanilla, '--model', path.join(root, 'models/bert-gated'), '--data', long, '--split', 'train',
    '--windows', '6'],
];

const REFUSAL_CASES = [
  [], ['frob'], ['stats', '--model', golden('bert'), '--bogus'], ['logits', '--model', golden('opt'), '--data', passage],
  ['stats', '--model', golden('opt'), '--model', golden('bert'), '--ids', '1'], ['eval', '--ids', '1'],
  ['stats', '--model', golden('opt'), '--ids', '1', '--text', 'a'], ['stats', '--model', golden('opt'), '--types', '0'],
  ['eval', '--model', golden('opt'), '--ids', '1', '--split', 'all'], ['stats', '--model', golden('opt'), '--ids'],
  ['quant', '--model', golden('opt'), '--ids', '1', '--wbits', 'x8'], ['eval', '--model', golden('opt'), '--calib', '0'],
  ['quant', '--model', golden('opt'), '--ids', '1', '--points', 'q,zz'],
  ['quant', '--model', golden('opt'), '--ids', '1', '--percentile', '0'],
  ['quant', '--model', golden('opt'), '--ids', '1', '--estimator', 'max'],
  ['quant', '--model', golden('opt'), '--ids', '1', '--wgran', 'row'],
  ['eval', '--model', golden('opt'), '--ids', '1', '--threads', '17'],
  ['eval', '--model', golden('opt'), '--data', passage, '--split', 'some'],
  // the library's refusals
  ['quant', '--model', golden('opt'), '--ids', '1,2', '--wbits', '1'],
  ['quant', '--model', golden('opt'), '--ids', '1,2', '--agran', 'channel'],
  ['logits', '--model', golden('opt'), '--ids', '1,2,300'],
  ['logits', '--model', path.join(work, 'missing')],
  ['stats', '--model', golden('opt'), '--ids', '1,2', '--types', '0,0'],
  ['eval', '--model', golden('bert'), '--ids', ids300, '--json'],
  // the inputs
  ['stats', '--model', golden('opt'), '--ids', '1,x'], ['stats', '--model', golden('opt'), '--ids', '1;2'],
  ['stats', '--model', golden('opt'), '--ids', '1,99999999999'],
  ['stats', '--model', golden('bert'), '--ids', '1,2', '--types', '0'],
  ['stats', '--model', golden('bert'), '--text', 'no tokenizer'], ['stats', '--model', vanilla, '--text', ''],
  ['stats', '--model', vanilla, '--text-file', empty], ['stats', '--model', vanilla, '--text-file', path.join(work, 'none')],
  ['stats', '--model', vanilla, '--text-file', work], ['logits', '--model', vanilla, '--text', GENESIS],
  ['eval', '--model', vanilla, '--data', passage], ['eval', '--model', vanilla, '--data', empty, '--json'],
  ['eval', '--model', path.join(work, 'missing'), '--model', golden('opt'), '--ids', ids300, '--json'],
  ['eval', '--model', golden('opt'), '--text', 'no tokenizer', '--json'],
];

function run(bin, args) {
  const r = spawnSync(bin, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.error, undefined, `${bin}: ${r.error}`);
  // The same messages under the other program name.
  const err = r.stderr.replaceAll(/^quantscope:/gm, 'qs:').replaceAll(/\b(to|only|with) quantscope /g, '$1 qs ');
  return { code: r.status, out: r.stdout, err };
}

const close = (a, b, { abs, rel }) => Math.abs(a - b) <= abs + rel * Math.max(Math.abs(a), Math.abs(b));

/** The same JSON value: same keys and order, same strings, numbers close by tol. */
function sameJson(got, want, tol, where = '') {
  if (typeof want === 'number' && typeof got === 'number') {
    assert.ok(close(got, want, tol), `${where}: ${got} vs native ${want}`);
  } else if (want !== null && typeof want === 'object') {
    assert.equal(typeof got, 'object', where);
    assert.deepEqual(Object.keys(got), Object.keys(want), where);
    for (const k of Object.keys(want)) sameJson(got[k], want[k], tol, `${where}.${k}`);
  } else {
    assert.equal(got, want, where);
  }
}

const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:e[+-]\d+)?|-?nan|-?inf/g;

/** The same text with every number close by tol, or within one unit of its last printed digit. */
function sameText(got, want, tol) {
  assert.equal(got.replaceAll(NUMBER, '#'), want.replaceAll(NUMBER, '#'));
  const a = got.match(NUMBER) ?? [], b = want.match(NUMBER) ?? [];
  b.forEach((w, i) => {
    if (a[i] === w) return;
    const [digits, exp = '0'] = w.split('e');
    const unit = /[.e]/.test(w) ? 10 ** (Number(exp) - (digits.split('.')[1]?.length ?? 0)) : 0;
    assert.ok(close(Number(a[i]), Number(w), tol) || Math.abs(Number(a[i]) - Number(w)) <= unit * 1.001,
      `number ${i}: ${a[i]} vs native ${w}`);
  });
}

const haveM32 = existsSync(m32);
const noM32 = haveM32 ? false : `${m32} is missing (cmake --preset native-m32 && cmake --build build/m32)`;
const label = (args) => args.map((a) => a.replace(`${root}/`, '').replace(work, '$TMP')).join(' ').slice(0, 110);

test('the binaries exist', () => {
  assert.ok(existsSync(native), `${native} is missing: build the native preset first`);
});

for (const [args, tol] of OUTPUT_CASES) {
  for (const json of [true, false]) {
    const argv = json ? [...args, '--json'] : args;
    test(`npx quantscope ${label(argv)}: as native qs`, () => {
      const got = run(cli, argv), want = run(native, argv);
      assert.equal(got.err, want.err);
      assert.equal(got.code, want.code);
      assert.equal(want.code, 0, want.err);
      if (json) sameJson(JSON.parse(got.out), JSON.parse(want.out), tol);
      else sameText(got.out, want.out, tol);
    });
  }
}

for (const args of [...OUTPUT_CASES.map(([a]) => a), ...EXACT_ONLY_CASES]) {
  for (const json of [true, false]) {
    const argv = json ? [...args, '--json'] : args;
    test(`npx quantscope ${label(argv)}: byte for byte as qs -m32`, { skip: noM32 }, () => {
      const got = run(cli, argv), want = run(m32, argv);
      assert.equal(want.code, 0, want.err);
      assert.deepEqual(got, want);
    });
  }
}

// The one wording that differs: the module reads a model folder with Node's
// fs, whose message for a missing file is not strerror's.
const nodeWording = (s) => s.replaceAll(/ENOENT: no such file or directory, stat '[^']*'/g,
  'cannot open: No such file or directory');

for (const args of REFUSAL_CASES) {
  test(`npx quantscope ${label(args)}: refused as native qs refuses`, () => {
    const r = run(cli, args), want = run(native, args);
    const got = { ...r, out: nodeWording(r.out), err: nodeWording(r.err) };
    assert.notEqual(want.code, 0);
    assert.equal(got.code, want.code);
    sameText(got.out, want.out, QUANTIZED); // eval goes on with the next model
    if (want.code === 2) {
      // the message, then the usage (whose options part says what the WASM build does not)
      assert.equal(got.err.split('usage:')[0], want.err.split('usage:')[0]);
      assert.match(got.err, /^(.*\n)?usage: quantscope <command> --model DIR \[options\]\n/);
    } else {
      assert.equal(got.err, want.err);
    }
  });
}

test('npx quantscope --help; train, fix and eval --fix need the native qs', () => {
  const help = run(cli, ['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /^usage: quantscope <command>/);
  for (const cmd of ['logits', 'stats', 'quant', 'eval']) assert.match(help.out, new RegExp(`\\n  ${cmd} `));
  for (const args of [['train', '--out', work], ['fix', '--model', golden('opt'), '--fix', 'rotate', '--out', work],
    ['eval', '--model', golden('opt'), '--ids', '1,2', '--fix', 'rotate']]) {
    const r = run(cli, args);
    assert.equal(r.code, 2);
    assert.match(r.err, new RegExp(`^qs: ${args[0] === 'eval' ? 'eval --fix' : args[0]} needs the native qs `));
  }
});
