// tests/node/cli.test.mjs: the native `qs` command as a script user sees it:
// the fixed `logits --json` form against the golden data, and clear failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qs = process.env.QS_BIN ?? path.join(root, 'build/native/qs');
const golden = (name) => path.join(root, 'tests/golden', name);

function run(args) {
  const r = spawnSync(qs, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('qs binary exists (build/native/qs)', () => {
  assert.ok(existsSync(qs), `${qs} is missing: build the native preset first`);
});

for (const name of ['bert', 'opt']) {
  test(`qs logits --json matches transformers for golden ${name}`, () => {
    const exp = JSON.parse(readFileSync(path.join(golden(name), 'expected.json'), 'utf8'));
    const ids = exp.input_ids;
    const args = ['logits', '--model', golden(name), '--ids', ids.join(','), '--json'];
    if (name === 'bert') {
      const half = Math.floor(ids.length / 2);
      args.push('--types', ids.map((_, i) => (i < half ? 0 : 1)).join(','));
    }
    const r = run(args);
    assert.equal(r.code, 0, r.err);
    const got = JSON.parse(r.out);
    assert.deepEqual(got.shape, exp.logits_shape);
    let worst = 0;
    got.logits.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - exp.logits[i])); });
    console.log(`${name}: qs logits max |diff| ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4, `max diff ${worst}`);
  });
}

test('qs stats --json reports every point and head', () => {
  const r = run(['stats', '--model', golden('bert'), '--ids', '2,15,77,120,5', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.tokens, 5);
  assert.equal(j.heads.length, 2 * 4);
  const names = new Set(j.points.map((p) => p.point));
  for (const p of ['embed', 'q', 'scores', 'probs', 'ffn_out', 'ffn_res', 'layer_out', 'final']) assert.ok(names.has(p), p);
  assert.ok(!names.has('gate'), 'no gate points without gating');
  const ffn = j.points.find((p) => p.point === 'ffn_res' && p.layer === 1);
  assert.ok(ffn.max_abs > 0 && ffn.kurtosis > 1 && ffn.rms_kurtosis >= 1);
  // one sequence: the summary's headline is the largest LayerNorm input (ffn_res) over layers
  const res = j.points.filter((p) => p.point === 'ffn_res');
  assert.ok(Math.abs(j.summary.max_inf_norm - Math.max(...res.map((p) => p.max_abs))) < 1e-5);
  assert.equal(j.summary.max_inf_norm, res[j.summary.max_inf_norm_layer].max_abs);
  const kurt = j.points.filter((p) => p.point === 'ffn_out' || p.point === 'layer_out').map((p) => p.kurtosis);
  assert.ok(Math.abs(j.summary.avg_kurtosis - kurt.reduce((a, b) => a + b) / kurt.length) < 1e-4);
});

test('the outlier summary is one definition: qs stats (native) and forward().summary (WASM) agree', async () => {
  const { loadModel } = await import('../../wasm/quantscope.mjs');
  const ids = [2, 15, 77, 120, 5, 33, 64, 9];
  for (const name of ['bert', 'opt']) {
    const cli = JSON.parse(run(['stats', '--model', golden(name), '--ids', ids.join(','), '--json']).out).summary;
    const model = await loadModel(golden(name));
    const js = (await model.forward(ids)).summary;
    await model.dispose();
    const pairs = [['max_inf_norm', 'maxInfNorm'], ['max_ffn_out_inf_norm', 'maxFfnOutInfNorm'],
      ['max_ln_out_inf_norm', 'maxLnOutInfNorm'], ['avg_kurtosis', 'avgKurtosis'],
      ['max_kurtosis', 'maxKurtosis'], ['avg_rms_kurtosis', 'avgRmsKurtosis'], ['avg_input_corr', 'avgInputCorr']];
    for (const [c, j] of pairs) assert.ok(Math.abs(cli[c] - js[j]) <= 1e-4 * Math.abs(cli[c]), `${name} ${c}: ${cli[c]} vs ${js[j]}`);
    assert.equal(cli.max_inf_norm_layer, js.maxInfNormLayer);
  }
});

test('qs quant --json: lower bits give lower SQNR and larger logit error', () => {
  const go = (bits) => JSON.parse(run(['quant', '--model', golden('opt'), '--ids', '2,15,77,120,5,299,31,8',
    '--wbits', String(bits), '--abits', String(bits), '--json']).out);
  const q8 = go(8), q4 = go(4);
  assert.ok(q4.max_logit_error > q8.max_logit_error);
  const s = (j) => j.points.find((p) => p.point === 'ffn_out' && p.layer === 0).quant_sqnr_db;
  assert.ok(s(q8) > s(q4) + 15, `${s(q8)} vs ${s(q4)}`);
});

test('qs eval prints the paper-style table: FP, outlier stats, five bit widths', () => {
  const ids = Array.from({ length: 300 }, (_, i) => 4 + (i * 13) % 250);
  const r = run(['eval', '--model', golden('opt'), '--ids', ids.join(','), '--seq-len', '32', '--json']);
  assert.equal(r.code, 0, r.err);
  const m = JSON.parse(r.out).models[0];
  assert.ok(m.fp_ppl > 1 && m.n_windows === 9 && m.max_inf_norm > 0 && m.avg_kurtosis > 0);
  assert.deepEqual(m.quantized.map((q) => `W${q.weight_bits}A${q.act_bits}`), ['W8A8', 'W8A6', 'W8A4', 'W6A8', 'W4A8']);
  for (const q of m.quantized) assert.ok(Number.isFinite(q.ppl), JSON.stringify(q));
  assert.ok(Math.abs(m.quantized[0].ppl - m.fp_ppl) / m.fp_ppl < 0.01, 'W8A8 stays close to float');
  assert.notEqual(m.quantized[2].ppl, m.fp_ppl, 'W8A4 changes the result');
  const one = JSON.parse(run(['eval', '--model', golden('opt'), '--ids', ids.join(','), '--seq-len', '32',
    '--abits', '6', '--json']).out).models[0];
  assert.equal(one.quantized.length, 1);
  assert.equal(one.quantized[0].act_bits, 6);
});

test('qs stats and qs eval print He et al.\'s signal propagation beside kurtosis, text and --json', () => {
  const ids = Array.from({ length: 300 }, (_, i) => 4 + (i * 13) % 250).join(',');
  for (const name of ['bert', 'opt']) {
    const stats = ['stats', '--model', golden(name), '--ids', ids.split(',').slice(0, 40).join(',')];
    const j = JSON.parse(run([...stats, '--json']).out).summary;
    assert.ok(j.avg_input_corr > -1 && j.avg_input_corr < 1 && j.avg_input_corr !== 0, `${name} ${j.avg_input_corr}`);
    assert.match(run(stats).out, new RegExp(`avg RMS kurtosis ${j.avg_rms_kurtosis.toFixed(3)} \\| avg input corr ${j.avg_input_corr.toFixed(3)}\n`));
  }
  // eval: the golden BERT has no tokenizer for masked-LM scoring; the shipped one has
  const text = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; '
    + 'and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.';
  for (const [name, input] of [['opt', ['--model', golden('opt'), '--ids', ids]],
    ['bert', ['--model', path.join(root, 'models/bert-vanilla'), '--text', text]]]) {
    const evalArgs = ['eval', ...input, '--seq-len', '32'];
    const m = JSON.parse(run([...evalArgs, '--json']).out).models[0];
    assert.ok(m.avg_input_corr > -1 && m.avg_input_corr < 1 && m.avg_input_corr !== 0, `${name} eval ${m.avg_input_corr}`);
    const [head, row, note] = run(evalArgs).out.split('\n');
    assert.match(head, /avg kurt +rms kurt +in corr +W8A8/);
    assert.equal(row.trim().split(/ +/)[5], m.avg_input_corr.toFixed(3));
    assert.match(note, /in corr: mean input-wise correlation at the layer outputs/);
  }
});

test('qs eval --threads: the same table from 1, 2 and 5 threads', () => {
  const ids = Array.from({ length: 300 }, (_, i) => 4 + (i * 13) % 250);
  const out = (t) => {
    const r = run(['eval', '--model', golden('opt'), '--ids', ids.join(','), '--seq-len', '32', '--threads', t, '--json']);
    assert.equal(r.code, 0, r.err);
    return r.out;
  };
  const one = out('1');
  assert.equal(out('2'), one);
  assert.equal(out('5'), one);
  const bad = run(['eval', '--model', golden('opt'), '--ids', '1,2,3', '--threads', '17']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /--threads 17 outside \[1, 16\]/);
});

test('bad input gives a clear message and a non-zero exit', () => {
  const cases = [
    [['logits', '--model', golden('opt'), '--ids', '1,2,300'], 'token id 300 at position 2 is out of range [0, 300)'],
    [['logits', '--model', golden('opt'), '--ids', ''], 'empty input'],
    [['logits', '--model', golden('opt'), '--ids', '1,x'], "--ids: bad integer at 'x'"],
    [['logits', '--model', '/nonexistent'], '/nonexistent/config.json: cannot open'],
    [['logits', '--model', golden('bert'), '--ids', '1,2', '--types', '0'], '--types has 1 values, --ids has 2'],
    [['quant', '--model', golden('opt'), '--ids', '1,2', '--abits', '1'], 'act_bits = 1'],
    [['stats', '--model', golden('opt'), '--text', 'hi'], 'no tokenizer'],
    [['frobnicate', '--model', golden('opt')], "unknown command 'frobnicate'"],
  ];
  for (const [args, msg] of cases) {
    const r = run(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.ok(r.err.includes(msg), `${args.join(' ')}: "${r.err}" lacks "${msg}"`);
  }
  const long = Array.from({ length: 65 }, () => 5).join(',');
  const r = run(['logits', '--model', golden('opt'), '--ids', long]);
  assert.ok(r.err.includes('the input is 65 tokens; ' + golden('opt') + ' takes at most 64 (max_position_embeddings'), r.err);
});

// What the CLI gets but would not use is refused, not dropped: each case once
// went through silently or with a misleading message.
test('qs refuses flags it would ignore, and names the limits it applies', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qs-cli-'));
  const bert = path.join(root, 'models/bert-vanilla');
  const small = path.join(dir, 'small.txt');
  writeFileSync(small, 'In the beginning God created the heaven and the earth.\n'.repeat(400)); // 22 KB
  const longText = path.join(dir, 'long.txt');
  writeFileSync(longText, 'a'.repeat(70000));
  const points = Array.from({ length: 200 }, () => 'q').join(',') + ',zz';
  const cases = [
    [['stats', '--model', bert, '--text', 'hi', '--wbits', '4'], '--wbits does not apply to qs stats'],
    [['logits', '--model', bert, '--model', bert, '--text', 'hi'], '--model given twice (only qs eval compares several models)'],
    [['stats', '--model', bert, '--ids', '1,2', '--text', 'hi'], 'give one input: --ids, --text, --text-file'],
    [['eval', '--model', bert, '--data', small, '--text', 'hi'], 'give one input: --ids, --text, --text-file or --data'],
    [['stats', '--model', bert, '--text', 'hi', '--windows', '3'], '--windows does not apply to qs stats'],
    [['stats', '--model', bert, '--text', 'hi', '--bogus'], "unknown option '--bogus'"],
    [['stats', '--model', bert, '--text'], '--text needs a value'],
    [['eval', '--model', bert, '--text', 'hi', '--windows', '0'], '--windows 0 is below 1'],
    [['eval', '--model', bert, '--text', 'hi', '--windows', '-5'], '--windows -5 is below 1'],
    [['eval', '--model', bert, '--text', 'hi', '--calib', '-1'], '--calib -1 is below 1'],
    [['eval', '--model', bert, '--text', 'hi', '--percentile', 'x'], '--percentile expects a number in (0, 100]'],
    [['quant', '--model', bert, '--text', 'hi', '--points', points], "unknown capture point 'zz'"],
    [['stats', '--model', bert, '--text', ''], '--text is empty: give at least one character (QS_ERR_RANGE)'],
    [['stats', '--model', bert, '--text-file', longText], 'the input is 70002 tokens; ' + bert + ' takes at most 128 (max_position_embeddings'],
    [['eval', '--model', bert, '--data', small], 'its validation split is empty: the trainer\'s split gives validation one block of 16 KiB in 20, and this file has 22000 bytes; score it all with --split all, or its training part with --split train'],
    [['eval', '--model', bert, '--data', small, '--split', 'some'], "--split expects val, train or all, got 'some'"],
    [['eval', '--model', bert, '--text', 'hi', '--split', 'all'], '--split goes with --data'],
    [['stats', '--model', bert, '--text', 'hi', '--types', '0'], '--types goes with --ids'],
  ];
  for (const [args, msg] of cases) {
    const r = run(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.ok(r.err.includes(msg), `${args.slice(0, 6).join(' ')}: "${r.err.split('\n')[0]}" lacks "${msg}"`);
  }
  // the long text is scored by eval (windows), and a text file goes where --text goes
  const ok = run(['eval', '--model', bert, '--text-file', longText, '--windows', '2', '--abits', '8', '--json']);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(JSON.parse(ok.out).models[0].n_windows, 2);
  const whole = run(['eval', '--model', bert, '--data', small, '--split', 'all', '--windows', '2', '--abits', '8', '--json']);
  assert.equal(whole.code, 0, whole.err);
  assert.equal(JSON.parse(whole.out).models[0].n_windows, 2);
  // a model that fails is reported in the JSON, next to the ones that worked
  const mixed = run(['eval', '--model', bert, '--model', path.join(dir, 'none'), '--text', 'In the beginning', '--abits', '8', '--json']);
  assert.notEqual(mixed.code, 0);
  const models = JSON.parse(mixed.out).models;
  assert.equal(models.length, 2);
  assert.ok(models[0].fp_ppl > 1);
  assert.equal(models[1].error.code, 'QS_ERR_IO');
  assert.match(models[1].error.message, /none\/config\.json: cannot open/);
  // long work shows progress on stderr when it is a terminal (script(1) gives one), not otherwise
  const plain = run(['eval', '--model', bert, '--text-file', longText, '--windows', '12', '--abits', '8']);
  assert.doesNotMatch(plain.err, /windows/);
  const tty = spawnSync('script', ['-qec', `${qs} eval --model ${bert} --text-file ${longText} --windows 12 --abits 8`, '/dev/null'], { encoding: 'utf8' });
  if (tty.error) console.log(`script(1) missing (${tty.error.code}): progress on a terminal not checked`);
  else {
    assert.match(tty.stdout, /bert-vanilla float: +100% of 12 windows/);
    assert.match(tty.stdout, /bert-vanilla W8A8: 100% of 16 windows/); // calibration windows count too
  }
  // stats --json lists the ids and their pieces, so dropped bytes are visible
  const st = JSON.parse(run(['stats', '--model', bert, '--text', 'a.', '--json']).out);
  assert.deepEqual(st.ids, [1, 4 + 97, 4 + 46, 2]);
  assert.deepEqual(st.pieces, ['[CLS]', 'a', '.', '[SEP]']);
  rmSync(dir, { recursive: true });
});

test('qs train: trains, logs the curve, checkpoints, resumes; clear corpus errors', async () => {
  const { mkdtempSync, writeFileSync, readFileSync: read, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(path.join(tmpdir(), 'qs-train-'));
  const words = ['and', 'the', 'lord', 'said', 'unto', 'moses', 'light', 'was', 'good'];
  let text = '';
  for (let i = 0; text.length < 400000; i++) text += words[(i * 7 + (i >> 3)) % words.length] + (i % 11 ? ' ' : '\n');
  writeFileSync(path.join(dir, 'corpus.txt'), text);
  const common = ['--data', path.join(dir, 'corpus.txt'), '--layers', '1', '--hidden', '32', '--heads', '2',
    '--ffn', '64', '--max-pos', '32', '--seq-len', '32', '--batch', '4', '--steps', '6', '--warmup', '1',
    '--eval-every', '3', '--eval-batches', '1', '--log-every', '1'];
  let r = run(['train', '--out', path.join(dir, 'm'), ...common, '--variant', 'gated', '--save-every', '3']);
  assert.equal(r.code, 0, r.err);
  const curve = read(path.join(dir, 'm', 'curve.csv'), 'utf8').trim().split('\n');
  assert.match(curve[0], /^step,loss,lr,grad_norm,val_loss,val_ppl,max_inf_norm/);
  assert.equal(curve.length, 7);
  const cfg = JSON.parse(read(path.join(dir, 'm', 'config.json'), 'utf8'));
  assert.equal(cfg.attn_gate_type, 'conditional_per_token');
  // the saved model loads and answers
  const l = run(['stats', '--model', path.join(dir, 'm'), '--text', 'and the lord said', '--json']);
  assert.equal(l.code, 0, l.err);
  // --stop-at ends a run part way through its schedule, saved there; --resume
  // finishes it with the same bits as the run that was never stopped
  r = run(['train', '--out', path.join(dir, 'cut'), ...common, '--variant', 'gated', '--save-every', '3', '--stop-at', '4']);
  assert.equal(r.code, 0, r.err);
  assert.equal(read(path.join(dir, 'cut', 'curve.csv'), 'utf8').trim().split('\n').length, 5);
  assert.match(r.err, /4 steps, .* saved to/);
  r = run(['train', '--out', path.join(dir, 'cut'), ...common, '--variant', 'gated', '--save-every', '3', '--resume']);
  assert.equal(r.code, 0, r.err);
  assert.ok(read(path.join(dir, 'cut', 'model.safetensors')).equals(read(path.join(dir, 'm', 'model.safetensors'))),
    'stopped at step 4 and resumed: the model of the uninterrupted run');
  r = run(['train', '--out', path.join(dir, 'cut2'), ...common, '--stop-at', '7']);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /--stop-at 7 is outside the schedule of --steps 6/);
  // resuming a finished run with another learning rate is refused with the reason
  r = run(['train', '--out', path.join(dir, 'm'), ...common, '--variant', 'gated', '--lr', '0.01', '--resume']);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /another model or training config/);
  r = run(['train', '--out', path.join(dir, 'x'), ...common, '--data', path.join(dir, 'missing', 'kjv.txt')]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /cannot open corpus .*kjv\.txt.*\n.*scripts\/kjv\.sh.*apt-get install -y bible-kjv/s);
  writeFileSync(path.join(dir, 'tiny.txt'), 'too small');
  r = run(['train', '--out', path.join(dir, 'y'), ...common, '--data', path.join(dir, 'tiny.txt')]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /QS_ERR_RANGE/);
  // --init: a second phase from the trained model with another training config;
  // the model (variant included) is the folder's, so model flags are refused
  const trainOnly = common.filter((a, i) => !['--layers', '--hidden', '--heads', '--ffn', '--max-pos']
    .some((f) => a === f || common[i - 1] === f));
  r = run(['train', '--out', path.join(dir, 'hot'), '--init', path.join(dir, 'm'), ...trainOnly, '--lr', '0.003']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /bert model from .*, 1 layers, d 32/);
  assert.deepEqual(JSON.parse(read(path.join(dir, 'hot', 'config.json'), 'utf8')), cfg);
  const firstLoss = (d) => Number(read(path.join(dir, d, 'curve.csv'), 'utf8').split('\n')[1].split(',')[1]);
  assert.ok(firstLoss('hot') < firstLoss('m'), 'the second phase starts from the trained weights');
  r = run(['train', '--out', path.join(dir, 'z'), '--init', path.join(dir, 'm'), ...common]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /--init takes the model and its variant from .*; drop --max-pos/);
  r = run(['train', '--out', path.join(dir, 'm'), '--init', path.join(dir, 'm'), ...trainOnly]);
  assert.match(r.err, /--init and --out are the same folder/);
  rmSync(dir, { recursive: true, force: true });
});
