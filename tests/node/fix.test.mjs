// tests/node/fix.test.mjs: the post-hoc fixes (issue 14) in the native CLI:
// `qs eval --fix` tables (text and --json), `qs fix` checkpoints that load like
// any other model, and a clear refusal for each kind of bad input; and in the JS
// API: model.withFix() and settings by name, against the CLI's numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { loadModel } from '../../wasm/quantscope.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qs = process.env.QS_BIN ?? path.join(root, 'build/native/qs');
const golden = (name) => path.join(root, 'tests/golden', name);
const shipped = path.join(root, 'models/bert-vanilla');

function run(args) {
  const r = spawnSync(qs, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// A corpus of ~400 KB (the trainer's validation split needs > 176 KiB) and
// two models trained for one step: a byte-level OPT for `qs fix`, and a BERT
// whose sizes are not powers of two, which rotation refuses.
const dir = mkdtempSync(path.join(tmpdir(), 'qs-fix-'));
const corpus = path.join(dir, 'corpus.txt');
const words = ['and', 'the', 'lord', 'said', 'unto', 'moses', 'light', 'was', 'good'];
let text = '';
for (let i = 0; text.length < 400000; i++) text += words[(i * 7 + (i >> 3)) % words.length] + (i % 11 ? ' ' : '\n');
writeFileSync(corpus, text);
const small = path.join(dir, 'small.txt');
writeFileSync(small, text.slice(0, 6000));
function train(name, extra) {
  const out = path.join(dir, name);
  const r = run(['train', '--out', out, '--data', corpus, '--layers', '2', '--heads', '2', '--max-pos', '32',
    '--seq-len', '32', '--batch', '2', '--steps', '1', '--warmup', '1', '--eval-every', '0', '--save-every', '0',
    '--log-every', '0', ...extra]);
  assert.equal(r.code, 0, r.err);
  return out;
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

// The text the shipped model was trained on (KJV Genesis 1, 1,400 bytes): on the
// synthetic word salad above 4-bit round to nearest scores within noise of float
// (2.292 against 2.300), so perplexity cannot tell GPTQ from it; here it can
// (w4a16: GPTQ 1.645 against round to nearest 1.715).
const genesis = fileURLToPath(new URL('fixtures/genesis-1.txt', import.meta.url));

test('qs eval --fix --json: rows none + each fix, columns the settings; exact fixes keep FP', () => {
  const r = run(['eval', '--model', shipped, '--text-file', genesis, '--windows', '4', '--calib', '2',
    '--fix-calib', '4', '--fix', 'smoothquant', '--fix', 'rotate', '--fix', 'int8split', '--fix', 'gptq',
    '--fix', 'gptq:bits=4', '--fix', 'smoothquant:alpha=0.8+rotate', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.models.length, 1);
  const t = j.models[0];
  assert.deepEqual(t.settings, ['w8a8', 'w8a8-token', 'w4a16', 'w4a8', 'w4a4']);
  assert.deepEqual(t.rows.map((x) => x.fix), ['none', 'smoothquant', 'rotate', 'int8split', 'gptq',
    'gptq:bits=4', 'smoothquant:alpha=0.8+rotate']);
  const none = t.rows[0];
  for (const row of t.rows) {
    assert.ok(!row.error, `${row.fix}: ${JSON.stringify(row.error)}`);
    // every fix is exact in float: the same perplexity up to rounding
    assert.ok(Math.abs(row.fp_ppl / none.fp_ppl - 1) < 1e-4, `${row.fix}: FP ${row.fp_ppl} vs ${none.fp_ppl}`);
    assert.equal(row.ppl.length, 5);
  }
  assert.ok(none.ppl.every((p) => p > none.fp_ppl * 0.9 && Number.isFinite(p)));
  const split = t.rows[3];
  assert.equal(split.ppl[2], null); // w4a16: float activations, nothing to split
  assert.equal(split.skipped[2], 'float activations');
  assert.ok(split.float_column_share[0] >= 0 && split.float_column_share[0] < 0.1);
  const gptq = t.rows[4];
  assert.ok(gptq.gptq_error_ratio.every((x) => x > 0 && x < 1), `GPTQ beats round to nearest: ${gptq.gptq_error_ratio}`);
  assert.ok(gptq.ppl[2] < none.ppl[2], `w4a16: GPTQ ${gptq.ppl[2]} vs RTN ${none.ppl[2]}`);
  const gptq4 = t.rows[5]; // made for 4-bit weights: the 8-bit settings are not its
  assert.deepEqual(gptq4.ppl.map((p) => p === null), [true, true, false, false, false]);
  assert.equal(gptq4.skipped[0], 'GPTQ at other bits');
  assert.match(t.rows[1].covers.smoothquant, /run time/);
  assert.match(t.rows[6].covers.rotate, /online rotation/);
});

test('qs eval --fix: one text table per model, the settings named', () => {
  const r = run(['eval', '--model', shipped, '--model', golden('bert'), '--text-file', small, '--windows', '2',
    '--fix-calib', '2', '--fix', 'rotate', '--settings', 'w8a8,w4a8']);
  assert.equal(r.code, 1, 'the golden model has no tokenizer: its table fails, the other stands');
  assert.match(r.out, /models\/bert-vanilla: perplexity/);
  assert.match(r.out, /^fix +FP +w8a8 +w4a8$/m);
  assert.match(r.out, /^none +\d+\.\d{3} +\d+\.\d{3} +\d+\.\d{3}$/m);
  assert.match(r.out, /^rotate +\d+\.\d{3}/m);
  assert.match(r.out, /w4a8 = the rotations'/);
  assert.match(r.err, /no tokenizer/);
});

test('qs fix: SmoothQuant on OPT is saved in the weights and loads like any other model', () => {
  const opt = train('opt', ['--arch', 'opt', '--hidden', '32', '--ffn', '64']);
  const out = path.join(dir, 'opt-smooth');
  const r = run(['fix', '--model', opt, '--out', out, '--fix', 'smoothquant:alpha=0.6', '--text-file', small,
    '--fix-calib', '8', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.match(j.fixes.smoothquant.covers, /folded/);
  assert.equal(j.fixes.smoothquant.calibration_windows, 8);
  const ids = '5,70,80,90,100,36,40,50,60,12,3';
  const a = JSON.parse(run(['logits', '--model', opt, '--ids', ids, '--json']).out).logits;
  const b = run(['logits', '--model', out, '--ids', ids, '--json']);
  assert.equal(b.code, 0, b.err);
  const lb = JSON.parse(b.out).logits;
  let worst = 0;
  a.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - lb[i])); });
  assert.ok(worst < 1e-4, `max |logit change| ${worst}`);
  // the weights did move: the quantized model differs
  const qa = JSON.parse(run(['quant', '--model', opt, '--ids', ids, '--abits', '4', '--agran', 'token', '--json']).out);
  const qb = JSON.parse(run(['quant', '--model', out, '--ids', ids, '--abits', '4', '--agran', 'token', '--json']).out);
  assert.notEqual(qa.max_logit_error, qb.max_logit_error);
  // a golden (Hugging Face) OPT without a tokenizer, calibrated on ids
  const g = run(['fix', '--model', golden('opt'), '--out', path.join(dir, 'golden-smooth'), '--fix', 'smoothquant',
    '--ids', '2,15,77,120,5,299,31,8,44,45,46,47,48,49,50,51']);
  assert.equal(g.code, 0, g.err);
  assert.match(g.out, /saved with smoothquant \(folded/);
});

test('qs fix refuses fixes that act at run time, and writes nothing', () => {
  const out = path.join(dir, 'refused');
  for (const fix of ['smoothquant', 'rotate', 'int8split', 'gptq:bits=4']) {
    const r = run(['fix', '--model', shipped, '--out', out, '--fix', fix, '--text-file', small, '--fix-calib', '2']);
    assert.equal(r.code, 1, `${fix}: ${r.err}`);
    assert.match(r.err, /acts at run time.*qs eval --fix/s);
    assert.ok(!existsSync(out) || readdirSync(out).length === 0, `${fix} wrote ${out}`);
  }
});

test('bad input: each a clear error', () => {
  const base = ['eval', '--model', shipped, '--text-file', small, '--windows', '1', '--fix-calib', '1'];
  const cases = [
    [[...base, '--fix', 'smoothqant'], 2, /unknown fix 'smoothqant'/],
    [[...base, '--fix', 'smoothquant:beta=1'], 2, /unknown parameter 'beta' \(smoothquant takes alpha\)/],
    [[...base, '--fix', 'smoothquant:alpha=1.5'], 2, /alpha = 1.5 outside \[0, 1\]/],
    [[...base, '--fix', 'smoothquant:alpha=-0.2'], 2, /outside \[0, 1\]/],
    [[...base, '--fix', 'gptq:bits=1'], 2, /bits = 1 outside 2..16/],
    [[...base, '--fix', 'gptq:bits=17'], 2, /bits = 17 outside 2..16/],
    [[...base, '--fix', 'int8split:threshold=0'], 2, /threshold = 0/],
    [[...base, '--fix', 'rotate+'], 2, /empty fix/],
    [[...base, '--fix', 'rotate', '--settings', 'w3a3'], 2, /unknown setting 'w3a3'/],
    [[...base, '--fix', 'rotate', '--wbits', '4'], 2, /compare named settings/],
    [[...base, '--fix', 'rotate+rotate'], 1, /already applied/],
    [[...base, '--fix', 'gptq+rotate'], 1, /apply it last/],
    [[...base, '--fix', 'rotate+smoothquant'], 1, /apply it before rotate/],
    [['eval', '--model', shipped, '--text-file', small, '--fix-calib', '2'], 2, /--fix-calib goes with --fix/],
    [['fix', '--model', shipped, '--fix', 'rotate', '--text-file', small], 2, /needs --fix SPEC and --out DIR/],
    [['fix', '--model', shipped, '--fix', 'rotate', '--out', path.join(dir, 'x')], 2, /needs calibration text/],
    [['fix', '--model', shipped, '--fix', 'rotate', '--out', path.join(dir, 'x'), '--text', ''], 1, /is empty/],
    [['fix', '--model', shipped, '--out', path.join(dir, 'x'), '--fix', 'rotate', '--windows', '3', '--text', 'a'], 2,
      /--windows does not apply to qs fix/],
    [['logits', '--model', shipped, '--text', 'a', '--fix', 'rotate'], 2, /--fix does not apply to qs logits/],
  ];
  for (const [args, code, msg] of cases) {
    const r = run(args);
    assert.equal(r.code, code, `${args.join(' ')}: exit ${r.code}, ${r.err}`);
    assert.match(r.err, msg, args.join(' '));
  }
});

test('a fix that does not apply to the architecture: rotation needs powers of two', () => {
  const odd = train('odd', ['--arch', 'bert', '--hidden', '48', '--ffn', '96']);
  const r = run(['eval', '--model', odd, '--text-file', small, '--windows', '1', '--fix-calib', '1',
    '--fix', 'rotate', '--fix', 'smoothquant', '--settings', 'w8a8', '--json']);
  assert.equal(r.code, 1);
  const rows = JSON.parse(r.out).models[0].rows;
  assert.equal(rows[1].error.code, 'QS_ERR_CONFIG');
  assert.match(rows[1].error.message, /hidden_size 48 is not a power of two/);
  assert.ok(!rows[2].error && rows[2].ppl[0] > 1, 'the other rows are scored');
  const f = run(['fix', '--model', odd, '--out', path.join(dir, 'odd-rot'), '--fix', 'rotate', '--text', 'and the']);
  assert.equal(f.code, 1);
  assert.match(f.err, /not a power of two/);
});

// ---- the JS API: model.withFix() and settings by name over the WebAssembly module ----
//
// build/m32/qs (SSE2, no FMA: WebAssembly's arithmetic) prints what the module
// computes digit for digit; build/native/qs (AVX, FMA) differs in the last bits,
// which grow after activations are rounded to a grid (npx-cli.test.mjs): up to
// 3 % here for GPTQ's weights at W4A8, so against native only FP is held tight.
const m32 = path.join(root, 'build/m32/qs');
const wasmBuilt = existsSync(path.join(root, 'build/wasm/quantscope_core.wasm'));
const sig9 = (v) => (v == null ? null : Number(v.toPrecision(9))); // qs --json prints %.9g

const JS_FIXES = ['none', 'smoothquant', 'rotate', 'int8split', 'gptq:bits=4', 'smoothquant:alpha=0.8+rotate'];
const JS_SETTINGS = ['w8a8', 'w8a8-token', 'w4a8'];

/** What qs eval --fix --json computes, through the JS API: rows of {fix, fp, ppl[], share[]}. */
async function jsFixTable(model, textPath) {
  const input = readFileSync(textPath, 'utf8');
  const rows = [];
  for (const spec of JS_FIXES) {
    const fixed = spec === 'none' ? model : await model.withFix(spec, input, { maxWindows: 4 });
    const row = { fix: spec, fp: null, ppl: [], share: [] };
    for (const s of JS_SETTINGS) {
      if (spec.startsWith('gptq') && s !== 'w4a8') { // made for 4-bit weights: refused on an 8-bit grid
        await assert.rejects(fixed.evaluate(input, { maxWindows: 4, quant: s }),
          (e) => e.code === 'QS_ERR_CONFIG' && /quantized by GPTQ at 4 bits/.test(e.message));
        row.ppl.push(null);
        row.share.push(null);
        continue;
      }
      const r = await fixed.evaluate(input, { maxWindows: 4, calibWindows: 2, quant: s });
      row.fp = r.fpPpl;
      row.ppl.push(r.qPpl);
      row.share.push(r.floatColumnShare ?? null);
    }
    rows.push(row);
    if (fixed !== model) await fixed.dispose();
  }
  return rows;
}

function cliFixTable(bin) {
  const r = spawnSync(bin, ['eval', '--model', shipped, '--text-file', small, '--windows', '4', '--calib', '2',
    '--fix-calib', '4', ...JS_FIXES.slice(1).flatMap((f) => ['--fix', f]), '--settings', JS_SETTINGS.join(','),
    '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).models[0].rows;
}

test('JS: withFix + evaluate by setting name give the numbers of qs eval --fix', { skip: !wasmBuilt && 'no WASM build' }, async () => {
  const model = await loadModel(shipped);
  const js = await jsFixTable(model, small);
  await model.dispose();
  const refs = [['native', qs]];
  if (existsSync(m32)) refs.unshift(['m32', m32]);
  else console.log('# build/m32/qs missing (cmake --preset native-m32): compared with the native qs only');
  for (const [name, bin] of refs) {
    const cli = cliFixTable(bin);
    assert.deepEqual(cli.map((r) => r.fix), JS_FIXES);
    cli.forEach((c, i) => {
      const j = js[i];
      if (name === 'm32') {
        assert.equal(sig9(j.fp), c.fp_ppl, `${c.fix} FP`);
        assert.deepEqual(j.ppl.map(sig9), c.ppl, `${c.fix}: JS ${j.ppl} vs m32 ${c.ppl}`);
        assert.deepEqual(j.share.map(sig9), c.float_column_share, `${c.fix} float columns`);
      } else {
        assert.ok(Math.abs(j.fp / c.fp_ppl - 1) < 1e-5, `${c.fix} FP: JS ${j.fp} vs native ${c.fp_ppl}`);
        c.ppl.forEach((p, k) => {
          assert.equal(p === null, j.ppl[k] === null, `${c.fix} ${JS_SETTINGS[k]}: skipped in one only`);
          if (p !== null) assert.ok(Math.abs(j.ppl[k] / p - 1) < 0.05, `${c.fix} ${JS_SETTINGS[k]}: JS ${j.ppl[k]} vs native ${p}`);
        });
      }
    });
    console.log(`# JS against ${name} qs eval --fix: ${cli.length} rows x ${JS_SETTINGS.length} settings`);
  }
});

/** The largest |a - b| of two logit arrays. */
const maxDiff = (a, b) => a.reduce((w, v, i) => Math.max(w, Math.abs(v - b[i])), 0);

test('JS: withFix returns a fixed copy, leaves the model as it was, and exact fixes keep the logits', { skip: !wasmBuilt && 'no WASM build' }, async () => {
  const input = text.slice(0, 3000);
  const optDir = train('opt-js', ['--arch', 'opt', '--hidden', '32', '--ffn', '64']);
  for (const dir of [shipped, optDir]) {
    const model = await loadModel(dir);
    const { ids, delimiters } = await model.tokenize('the lord said unto moses');
    const before = await model.forward(ids);
    const q = { weightBits: 4, actBits: 4, actGranularity: 'token', weightGranularity: 'channel' };
    const beforeQ = await model.forward(ids, { quant: q });
    for (const spec of ['smoothquant', 'smoothquant:alpha=0.75', 'rotate', 'int8split:threshold=1', 'gptq:bits=4',
      [{ name: 'smoothquant', alpha: 0.6 }, 'rotate']]) {
      const fixed = await model.withFix(spec, input, { maxWindows: 4, seqLen: 32 });
      const f = await fixed.forward(ids);
      // GPTQ's weights are quantized copies: the float weights stay as they were
      assert.ok(maxDiff(before.logits, f.logits) < 1e-4, `${dir} ${JSON.stringify(spec)}: max |logit change| ${maxDiff(before.logits, f.logits)}`);
      assert.notEqual(maxDiff(beforeQ.logits, (await fixed.forward(ids, { quant: q })).logits), 0,
        `${JSON.stringify(spec)} changes what the quantizer sees`);
      assert.equal(fixed.fixes.length, Array.isArray(spec) ? 2 : 1);
      assert.ok(fixed.fixes.every((r) => r.covers.length > 20 && typeof r.runtime === 'boolean'));
      await fixed.dispose();
    }
    assert.deepEqual(model.fixes, []);
    assert.equal(maxDiff(before.logits, (await model.forward(ids)).logits), 0, 'the original is untouched');
    assert.equal(maxDiff(beforeQ.logits, (await model.forward(ids, { quant: q })).logits), 0);
    // What the quantizer sees after a rotation: x Q, the same row norms with
    // the outliers spread over every dimension (transformed: true).
    if (dir === shipped) {
      const rot = await model.withFix('rotate');
      const x = (await rot.forward(ids, { delimiters, capture: ['layer_out'] })).captures.layer_out[1];
      const xq = (await rot.forward(ids, { delimiters, capture: ['layer_out'], transformed: true })).captures.layer_out[1];
      const D = model.config.hiddenSize;
      const rowNorm = (a, t) => Math.hypot(...a.subarray(t * D, (t + 1) * D));
      const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let t = 0; t < ids.length; t++) assert.ok(Math.abs(rowNorm(xq, t) / rowNorm(x, t) - 1) < 1e-4);
      // layer 1's output of the shipped vanilla model: 5.79 -> 3.49 as measured
      assert.ok(maxAbs(xq) < 0.8 * maxAbs(x), `rotated max |x| ${maxAbs(xq)} vs ${maxAbs(x)}`);
      await rot.dispose();
    }
    // The setting by name is the model's: OPT's linears read other points than BERT's.
    const w4a8 = await model.setting('w4a8');
    assert.equal(w4a8.weightBits, 4);
    assert.equal(w4a8.actGranularity, 'token');
    await model.dispose();
  }
});

test('JS: bad fixes and settings are refused with a code and a clear message, the model unchanged', { skip: !wasmBuilt && 'no WASM build' }, async () => {
  const input = text.slice(0, 3000);
  const model = await loadModel(shipped);
  const { ids } = await model.tokenize('the lord said');
  const before = (await model.forward(ids)).logits;
  const odd = await loadModel(train('odd-js', ['--arch', 'bert', '--hidden', '48', '--ffn', '96']));
  const fixed = await model.withFix('rotate');
  const gptq = await model.withFix('gptq:bits=4', input, { maxWindows: 2 });
  const cases = [
    [() => model.withFix('smoothqant', input), 'QS_ERR_CONFIG', /unknown fix 'smoothqant' \(expected smoothquant, rotate/],
    [() => model.withFix('smoothquant:beta=1', input), 'QS_ERR_CONFIG', /unknown parameter 'beta' \(smoothquant takes alpha\)/],
    [() => model.withFix({ name: 'smoothquant', alpha: 1.5 }, input), 'QS_ERR_RANGE', /alpha = 1.5 outside \[0, 1\]/],
    [() => model.withFix('smoothquant:alpha=-0.1', input), 'QS_ERR_RANGE', /alpha = -0.1 outside \[0, 1\]/],
    [() => model.withFix({ name: 'gptq', bits: 1 }, input), 'QS_ERR_RANGE', /bits = 1 outside 2..16/],
    [() => model.withFix('gptq:bits=17', input), 'QS_ERR_RANGE', /bits = 17 outside 2..16/],
    [() => model.withFix('int8split:threshold=0'), 'QS_ERR_RANGE', /threshold = 0/],
    [() => model.withFix({ name: 'smoothquant', alpha: '0.5' }, input), 'QS_ERR_ARG', /alpha must be a finite number, got "0.5"/],
    [() => model.withFix({ name: 'smoothquant', 'alpha=0.1,x': 1 }, input), 'QS_ERR_ARG', /is not a word/],
    [() => model.withFix({ alpha: 0.5 }, input), 'QS_ERR_ARG', /needs name/],
    [() => model.withFix('rotate+', input), 'QS_ERR_ARG', /empty fix in 'rotate\+'/],
    [() => model.withFix([], input), 'QS_ERR_ARG', /no fix given/],
    [() => model.withFix(42), 'QS_ERR_ARG', /spec string or an object/],
    [() => model.withFix('smoothquant', ''), 'QS_ERR_RANGE', /calibration: the text has no tokens/],
    [() => model.withFix('gptq', input), 'QS_ERR_CONFIG', /no bit width/],
    [() => model.withFix('rotate', null, { windows: 3 }), 'QS_ERR_ARG', /unknown option 'windows'/],
    [() => model.withFix('smoothquant', input, { maxWindows: -1 }), 'QS_ERR_ARG', /must be >= 0/],
    [() => model.withFix('rotate+rotate'), 'QS_ERR_CONFIG', /already applied/],
    [() => model.withFix('rotate+smoothquant', input), 'QS_ERR_CONFIG', /apply it before rotate/],
    [() => model.withFix('gptq:bits=4+rotate', input), 'QS_ERR_CONFIG', /apply it last/],
    [() => fixed.withFix('int8split'), 'QS_ERR_CONFIG', /already carries rotate; stack fixes in one call/],
    [() => odd.withFix('rotate'), 'QS_ERR_CONFIG', /hidden_size 48 is not a power of two/],
    [() => model.evaluate(input, { quant: 'w3a3' }), 'QS_ERR_CONFIG', /setting 'w3a3': unknown \(expected w8a8, w8a8-token/],
    [() => model.forward(ids, { quant: 'W8A8' }), 'QS_ERR_CONFIG', /setting 'W8A8': unknown/],
    [() => gptq.evaluate(input, { quant: 'w8a8', maxWindows: 1 }), 'QS_ERR_CONFIG', /quantized by GPTQ at 4 bits/],
  ];
  for (const [call, code, msg] of cases) {
    await assert.rejects(call, (e) => {
      assert.equal(e.code, code, `${msg}: ${e.code} ${e.message}`);
      assert.match(e.message, msg);
      return true;
    });
  }
  assert.deepEqual(model.fixes, []);
  assert.equal(maxDiff(before, (await model.forward(ids)).logits), 0, 'the model is as it was');
  assert.deepEqual(fixed.fixes.map((f) => f.fix), ['rotate']);
  // and it still takes a good fix
  const ok = await model.withFix({ name: 'smoothquant', alpha: 0.5 }, input, { maxWindows: 2 });
  assert.equal(ok.fixes[0].calibrationWindows, 2);
  await Promise.all([ok, fixed, gptq, odd, model].map((m) => m.dispose()));
});
