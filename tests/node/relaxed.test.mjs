// tests/node/relaxed.test.mjs: the relaxed-SIMD module (FMA in the float
// kernels): scripts/wasm-relaxed.mjs's renumbering, which engines accept the
// module, and the module API's tests run again on it, in a Node started with
// relaxed SIMD on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { relaxedFromPrototype } from '../../scripts/wasm-relaxed.mjs';
import { hasRelaxedSimd } from '../../wasm/js/runtime.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RELAXED = `${ROOT}build/wasm/quantscope_core_relaxed.wasm`;
const FLAG = '--experimental-wasm-relaxed-simd';

/** A module of one function (v128, v128, v128) -> v128 with the given body instructions. */
function moduleWith(body) {
  const code = [0x00, ...body, 0x0b];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b,
    0x03, 0x02, 0x01, 0x00,
    0x0a, code.length + 2, 0x01, code.length, ...code]);
}
const ARGS = [0x20, 0x00, 0x20, 0x01, 0x20, 0x02]; // local.get 0, 1, 2
const PROTO_FMA = [0xfd, 0xaf, 0x01]; // clang 14's f32x4.fma
const RELAXED_MADD = [0xfd, 0x85, 0x02]; // the standard f32x4.relaxed_madd

test('wasm-relaxed renumbers the prototype FMA and nothing else', () => {
  // i32.const 22525 is encoded 41 fd af 01: the FMA's bytes as an immediate, left alone.
  const body = [0x41, 0xfd, 0xaf, 0x01, 0x1a, ...ARGS, ...PROTO_FMA];
  const { bytes, fmas } = relaxedFromPrototype(moduleWith(body));
  assert.equal(fmas, 1);
  assert.deepEqual([...bytes], [...moduleWith([0x41, 0xfd, 0xaf, 0x01, 0x1a, ...ARGS, ...RELAXED_MADD])]);
  assert.equal(WebAssembly.validate(moduleWith(body)), false, 'the prototype opcode is not standard');
});

test('wasm-relaxed refuses what it cannot translate', () => {
  assert.throws(() => relaxedFromPrototype(moduleWith([...ARGS, 0xfd, 0xb0, 0x01])), /0xb0.*only f32x4\.fma|not standard/);
  assert.throws(() => relaxedFromPrototype(moduleWith([...ARGS, 0x1a, 0x1a])), /no f32x4\.fma found/);
  assert.throws(() => relaxedFromPrototype(moduleWith([...ARGS, 0x06, ...PROTO_FMA])), /unknown opcode 0x6/);
  assert.throws(() => relaxedFromPrototype(moduleWith([...ARGS, 0xfd])), /truncated/);
  assert.throws(() => relaxedFromPrototype(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /not a WebAssembly module/);
});

const built = existsSync(RELAXED);
const skipBuild = built ? false : 'build/wasm/quantscope_core_relaxed.wasm is missing (scripts/build-wasm.sh)';

test('the relaxed module validates only where the engine has relaxed SIMD', { skip: skipBuild }, () => {
  assert.equal(WebAssembly.validate(readFileSync(RELAXED)), hasRelaxedSimd());
  const probe = `import { readFileSync } from 'node:fs';
    import { hasRelaxedSimd } from '${ROOT}wasm/js/runtime.mjs';
    console.log(JSON.stringify([hasRelaxedSimd(), WebAssembly.validate(readFileSync('${RELAXED}'))]));`;
  const run = spawnSync(process.execPath, [FLAG, '--input-type=module', '-e', probe], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), [true, true]);
});

test('with relaxed SIMD on, quantscope.mjs runs the relaxed module and its tests pass there', { skip: skipBuild }, () => {
  const info = spawnSync(process.execPath, [FLAG, '--input-type=module', '-e',
    `import { runtimeInfo } from '${ROOT}wasm/quantscope.mjs'; console.log(JSON.stringify(await runtimeInfo()));`],
  { encoding: 'utf8' });
  assert.equal(info.status, 0, info.stderr);
  assert.deepEqual(JSON.parse(info.stdout), { threads: 1, pool: 1, relaxedSimd: true });
  // Golden parity, statistics, quantization and int8 on the FMA kernels.
  const files = ['quantscope.test.mjs', 'forward-stats.test.mjs', 'int8.test.mjs', 'train.test.mjs']
    .map((f) => `${ROOT}tests/node/${f}`);
  // Without NODE_TEST_CONTEXT the child is a test run of its own, not this run's subprocess.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const run = spawnSync(process.execPath, [FLAG, '--test', '--test-reporter=tap', ...files],
    { encoding: 'utf8', timeout: 600000, env });
  const count = (what) => Number(run.stdout.match(new RegExp(`^# ${what} (\\d+)`, 'm'))?.[1] ?? NaN);
  console.log(`relaxed module: ${count('tests')} tests, ${count('pass')} pass, ${count('fail')} fail`);
  assert.equal(run.status, 0, `${run.stdout.slice(-4000)}\n${run.stderr.slice(-2000)}`);
  assert.ok(count('pass') > 20 && count('fail') === 0, 'the module tests did not run');
});

test('configure({ relaxedSimd }) is checked', async () => {
  const { configure } = await import('../../wasm/quantscope.mjs');
  assert.throws(() => configure({ relaxedSimd: 'yes' }), (e) => e.code === 'QS_ERR_ARG' && /relaxedSimd must be a boolean/.test(e.message));
  const off = spawnSync(process.execPath, [FLAG, '--input-type=module', '-e',
    `import { configure, runtimeInfo } from '${ROOT}wasm/quantscope.mjs';
     configure({ relaxedSimd: false }); console.log(JSON.stringify(await runtimeInfo()));`], { encoding: 'utf8' });
  assert.equal(off.status, 0, off.stderr);
  assert.equal(JSON.parse(off.stdout).relaxedSimd, false);
});
