// tests/node/package.test.mjs: the npm package as a user gets it: scripts/pack.sh packs
// the tarball and installs it into a fresh project outside the checkout; the tarball
// holds exactly the module, its types, the CLI and both WASM builds; Node imports it by
// name and runs the golden BERT forward; `npx quantscope` runs from there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const golden = path.join(root, 'tests/golden/bert');
const expected = JSON.parse(readFileSync(path.join(golden, 'expected.json'), 'utf8'));
const ids = expected.input_ids;
const types = ids.map((_, i) => (i < Math.floor(ids.length / 2) ? 0 : 1)); // tests/golden/README.md

// What a user needs and nothing else: no tests, bench, web page, models or sources.
const SHIPPED = [
  'README.md', 'package.json', 'bin/cformat.mjs', 'bin/quantscope.mjs',
  'build/wasm/quantscope_core.mjs', 'build/wasm/quantscope_core.wasm', 'build/wasm/quantscope_core_relaxed.wasm',
  'build/wasm-threads/quantscope_core.mjs', 'build/wasm-threads/quantscope_core.wasm',
  'build/wasm-threads/quantscope_core_relaxed.wasm',
  'build/wasm-threads/quantscope_core.worker.js',
  'wasm/js/abi.mjs', 'wasm/js/checks.mjs', 'wasm/js/errors.mjs', 'wasm/js/fix.mjs', 'wasm/js/heap.mjs', 'wasm/js/model.mjs',
  'wasm/js/runtime.mjs', 'wasm/js/sources.mjs', 'wasm/js/trainer.mjs',
  'wasm/quantscope.d.ts', 'wasm/quantscope.mjs',
];

let dir, consumer, report;

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  assert.equal(r.error, undefined, `${cmd}: ${r.error}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'qs-package-'));
  consumer = path.join(dir, 'consumer');
  run(path.join(root, 'scripts/pack.sh'), [dir], root);
  [report] = JSON.parse(readFileSync(path.join(dir, 'pack.json'), 'utf8'));
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('the tarball holds the module, its types, the CLI and both WASM builds, under 1 MB', () => {
  console.log(`${report.filename}: ${report.size} bytes packed, ${report.unpackedSize} unpacked, `
    + `${report.files.length} files`);
  assert.deepEqual(report.files.map((f) => f.path).sort(), [...SHIPPED].sort());
  assert.ok(report.size < 1 << 20, `${report.size} bytes`);
});

test('package.json: publishable, with license, keywords, version, types and bin', () => {
  const pkg = JSON.parse(readFileSync(path.join(consumer, 'node_modules/quantscope/package.json'), 'utf8'));
  assert.notEqual(pkg.private, true);
  assert.equal(pkg.license, 'MIT');
  // No repository field: the checkout has no public URL to name (no git remote).
  assert.equal(pkg.repository, undefined);
  assert.ok(pkg.keywords.includes('quantization'));
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.deepEqual(pkg.exports['.'], { types: './wasm/quantscope.d.ts', default: './wasm/quantscope.mjs' });
  assert.deepEqual(pkg.bin, { quantscope: 'bin/quantscope.mjs' });
  assert.deepEqual(pkg.dependencies ?? {}, {}, 'installs offline: no dependencies');
  assert.equal(pkg.scripts.prepack, 'scripts/build-wasm.sh && scripts/build-wasm.sh --threads');
});

test('installed elsewhere, import "quantscope" runs the golden BERT forward', () => {
  const script = path.join(consumer, 'forward.mjs');
  writeFileSync(script, `import { loadModel, runtimeInfo } from 'quantscope';
const model = await loadModel(process.argv[2]);
const r = await model.forward(${JSON.stringify(ids)}, { tokenTypes: ${JSON.stringify(types)} });
console.log(JSON.stringify({ from: import.meta.resolve('quantscope'), runtime: await runtimeInfo(),
  shape: r.shape, logits: Array.from(r.logits) }));
`);
  // Plain SIMD128 (Node 20's default), then the relaxed-SIMD module the package also ships.
  for (const relaxedSimd of [false, true]) {
    const flags = relaxedSimd ? ['--experimental-wasm-relaxed-simd'] : [];
    const out = JSON.parse(run(process.execPath, [...flags, script, golden], consumer));
    assert.equal(out.from, `file://${path.join(consumer, 'node_modules/quantscope/wasm/quantscope.mjs')}`);
    assert.deepEqual(out.runtime, { threads: 1, pool: 1, relaxedSimd });
    assert.deepEqual(out.shape, expected.logits_shape);
    let worst = 0;
    out.logits.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - expected.logits[i])); });
    console.log(`installed package${relaxedSimd ? ', relaxed SIMD' : ''}: golden bert logits max |diff| ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4, `max diff ${worst}`);
  }
});

test('npx quantscope in the fresh project prints what the checkout\'s bin/quantscope.mjs prints', () => {
  const args = ['stats', '--model', golden, '--ids', ids.join(','), '--types', types.join(','), '--json'];
  const installed = run('npx', ['--offline', 'quantscope', ...args], consumer);
  assert.equal(installed, run(process.execPath, [path.join(root, 'bin/quantscope.mjs'), ...args], root));
  assert.equal(JSON.parse(installed).tokens, ids.length);
});
