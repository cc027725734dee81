#!/usr/bin/env node
// bin/quantscope.mjs: `npx quantscope`, the read-only subcommands of the native qs
// (logits, stats, quant, eval) over the WebAssembly module, for people without a C
// compiler: the flags, messages, tables and --json of src/cli/qs.c, function by function.
import { readFileSync } from 'node:fs';

import { defaultQuant, defaultTrain, loadModel, pointNames, textSplit } from '../wasm/quantscope.mjs';
import { sprintf } from './cformat.mjs';

const PROG = 'quantscope';
const MAX_THREADS = 16; // QS_MAX_THREADS in src/core/threads.h
const TEXT_BLOCK_KIB = 16; // QS_TEXT_BLOCK_BYTES / 1024 in include/quantscope/train.h
// qs_granularity_parse and qs_estimator_parse's names (src/quant/quant.c)
const GRANULARITIES = ['tensor', 'channel', 'token'];
const ESTIMATORS = ['minmax', 'running_minmax', 'percentile', 'mse'];

const print = (...a) => process.stdout.write(sprintf(...a));
const printErr = (...a) => process.stderr.write(sprintf(...a));

/**
 * A refusal in qs's words (the program name goes in front; an empty message:
 * said already); main exits 2 while parsing, else 1.
 */
class Refusal extends Error {}
const refuse = (message) => { throw new Refusal(message); };

function usage(write) {
  write(`usage: ${PROG} <command> --model DIR [options]
commands:
  logits  (--ids 2,15,77 [--types 0,0,1] | --text STR | --text-file F)  logits of one sequence
  stats   (--ids ... | --text STR | --text-file F)  outlier statistics per layer and point
  quant   (--ids ... | --text STR | --text-file F)  fake-quant error per point, FP vs quantized
  eval    (--data FILE | --text STR | --text-file F | --ids ...)  perplexity FP and W8A8
          (or as set)
  (eval --fix, fix and train: the native qs; qs --help)
options:
  --json                   machine-readable output
  --model DIR              a folder with config.json + model.safetensors (eval: repeatable)
  --wbits N --abits N      quant, eval: weight / activation bits (2..16, 0 = float)
  --wgran tensor|channel   --agran tensor|token
  --estimator minmax|running_minmax|percentile|mse   --percentile P (in (0, 100])
  --asym-weights --sym-acts  --points embed,q,k,...   quantized capture points
  --seq-len N --windows N --calib N   eval: window length, windows scored (default: all),
                           calibration windows (default 4)
  --split val|train|all    eval --data: which part of the file is scored (default val:
                           the trainer's validation split, one 16 KiB block in 20)
  --threads N              eval: accepted as qs takes it; this WebAssembly build scores on
                           one thread (the figures do not depend on it)
`);
}

// ------------------------------------------------------------ arguments

// The subcommands a flag applies to: any other use is refused, so nothing
// given on the command line is silently dropped.
const LOGITS = 1, STATS = 2, QUANT = 4, EVAL = 8, FIX = 16, ANY = 31;
const COMMANDS = new Map(Object.entries({ logits: LOGITS, stats: STATS, quant: QUANT, eval: EVAL }));
const FLAGS = new Map(Object.entries({
  '--json': [0, ANY], '--model': [1, ANY], '--ids': [1, ANY], '--text': [1, ANY], '--text-file': [1, ANY],
  '--types': [1, LOGITS | STATS | QUANT], '--data': [1, EVAL | FIX], '--split': [1, EVAL], '--seq-len': [1, EVAL | FIX],
  '--windows': [1, EVAL], '--calib': [1, EVAL], '--threads': [1, EVAL], '--wbits': [1, QUANT | EVAL],
  '--abits': [1, QUANT | EVAL], '--wgran': [1, QUANT | EVAL], '--agran': [1, QUANT | EVAL],
  '--estimator': [1, QUANT | EVAL], '--percentile': [1, QUANT | EVAL], '--points': [1, QUANT | EVAL],
  '--asym-weights': [0, QUANT | EVAL], '--sym-acts': [0, QUANT | EVAL],
  '--fix': [1, EVAL | FIX], '--settings': [1, EVAL], '--fix-calib': [1, EVAL | FIX], '--out': [1, FIX],
}));
// qs's commands and flags that this build does not have: they need src/fix, or write files.
const NATIVE_ONLY = new Set(['train', 'fix', '--fix', '--settings', '--fix-calib']);
const nativeOnly = (what) => `${what} needs the native qs (post-hoc fixes, training and saving are not in `
  + 'the WebAssembly module; scripts/build.sh builds build/native/qs)';

// What strtol and strtod read: leading white space, a sign, digits.
const INTEGER = /[ \t\n\v\f\r]*[+-]?\d+/y;
const DECIMAL = /^[ \t\n\v\f\r]*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** The integer strtol reads at s[at..], or null. */
function integerAt(s, at) {
  INTEGER.lastIndex = at;
  return INTEGER.exec(s)?.[0] ?? null;
}

/** strtol's reading of a whole argument, at least lo. */
function parseInteger(s, flag, lo) {
  const v = integerAt(s, 0)?.length === s.length ? Number(s) : NaN;
  if (!Number.isSafeInteger(v) || Math.abs(v) > 2147483647) refuse(`${flag} expects an integer, got '${s}'`);
  if (v < lo) refuse(`${flag} ${v} is below ${lo}`);
  return v;
}

function parsePercentile(s) {
  const v = DECIMAL.test(s) ? Number(s.trim()) : NaN;
  if (!(v > 0 && v <= 100)) refuse(`--percentile expects a number in (0, 100], got '${s}'`);
  return v;
}

/** A comma-separated list of capture point names, or "all"; any length. */
function parsePoints(list, names) {
  const points = new Set();
  for (const name of list.split(',')) {
    if (name === 'all') names.forEach((n) => points.add(n));
    else if (names.includes(name)) points.add(name);
    else refuse(`unknown capture point '${name}'`);
  }
  return [...points];
}

async function parseArgs(argv) {
  const a = { cmd: argv[0], models: [], json: false, seqLen: 0, windows: 0, calib: 4, split: 'val',
    quant: {}, haveQuant: false };
  if (!argv.length) refuse(''); // usage alone
  const cmd = COMMANDS.get(a.cmd);
  if (!cmd) refuse(`unknown command '${a.cmd}'`);
  const given = new Set();
  for (let i = 1; i < argv.length; i++) {
    const f = argv[i];
    if (!FLAGS.has(f)) refuse(`unknown option '${f}'`);
    const [takesValue, commands] = FLAGS.get(f);
    if (!(commands & cmd)) refuse(`${f} does not apply to ${PROG} ${a.cmd}`);
    if (NATIVE_ONLY.has(f)) refuse(nativeOnly(`eval ${f}`));
    if (given.has(f) && !(cmd === EVAL && f === '--model')) {
      refuse(`${f} given twice${f === '--model' ? ` (only ${PROG} eval compares several models)` : ''}`);
    }
    given.add(f);
    let v;
    if (takesValue) {
      if (i + 1 >= argv.length) refuse(`${f} needs a value`);
      v = argv[++i];
    }
    const q = a.quant;
    switch (f) {
      case '--json': a.json = true; break;
      case '--asym-weights': q.weightSymmetric = false; break;
      case '--sym-acts': q.actSymmetric = true; break;
      case '--model':
        if (a.models.length === 16) refuse('at most 16 models');
        a.models.push(v);
        break;
      case '--ids': a.ids = v; break;
      case '--types': a.types = v; break;
      case '--text': a.text = v; break;
      case '--text-file': a.textFile = v; break;
      case '--data': a.data = v; break;
      case '--split':
        if (!['val', 'train', 'all'].includes(v)) refuse(`--split expects val, train or all, got '${v}'`);
        a.split = v;
        break;
      case '--seq-len': a.seqLen = parseInteger(v, f, 1); break;
      case '--windows': a.windows = parseInteger(v, f, 1); break;
      case '--calib': a.calib = parseInteger(v, f, 1); break;
      case '--threads': a.threads = parseInteger(v, f, 1); break;
      case '--wbits': q.weightBits = parseInteger(v, f, 0); break;
      case '--abits': q.actBits = parseInteger(v, f, 0); break;
      case '--percentile': q.percentile = parsePercentile(v); break;
      case '--wgran': case '--agran':
        if (!GRANULARITIES.includes(v)) refuse(`unknown granularity '${v}'`);
        q[f === '--wgran' ? 'weightGranularity' : 'actGranularity'] = v;
        break;
      case '--estimator':
        if (!ESTIMATORS.includes(v)) refuse(`unknown estimator '${v}'`);
        q.estimator = v;
        break;
      case '--points': q.points = parsePoints(v, (await pointNames()).map((p) => p.name)); break;
    }
    if (commands === (QUANT | EVAL)) a.haveQuant = true;
  }
  if (!a.models.length) refuse('--model DIR is required');
  const sources = [a.ids, a.text, a.textFile, a.data].filter((s) => s !== undefined).length;
  if (sources > 1) refuse(`give one input: --ids, --text, --text-file${cmd === EVAL ? ' or --data' : ''}`);
  if (a.types !== undefined && a.ids === undefined) refuse('--types goes with --ids');
  if (given.has('--split') && a.data === undefined) refuse('--split goes with --data');
  if (a.threads > MAX_THREADS) refuse(`--threads ${a.threads} outside [1, ${MAX_THREADS}]`);
  // The quant config as C holds it: the library's defaults with the flags over them.
  a.quant = { ...await defaultQuant(), ...a.quant };
  return a;
}

// ------------------------------------------------------------ inputs

/** A comma-separated list of integers (strtol's reading of each), as many as given. */
function parseIdList(s, what) {
  const out = [];
  let p = 0;
  while (p < s.length) {
    const m = integerAt(s, p);
    if (m === null || Math.abs(Number(m)) > 2147483647) refuse(`${what}: bad integer at '${s.slice(p)}'`);
    out.push(Number(m));
    p += m.length;
    if (s[p] === ',') p++;
    else if (p < s.length) refuse(`${what}: expected ',' at '${s.slice(p)}'`);
  }
  return Int32Array.from(out);
}

// strerror's words for what Node reports as a code
const STRERROR = { ENOENT: 'No such file or directory', EACCES: 'Permission denied',
  ENOTDIR: 'Not a directory', ELOOP: 'Too many levels of symbolic links', ENAMETOOLONG: 'File name too long' };

/** The whole file as bytes. */
function readFile(path) {
  try {
    return readFileSync(path);
  } catch (e) {
    if (e.code === 'EISDIR') refuse(`${path}: read error`); // fopen opens a folder; fread fails
    refuse(`${path}: cannot open: ${STRERROR[e.code] ?? e.message}`);
  }
}

const utf8 = new TextDecoder();

/** The text of --text or --text-file; empty text is refused as empty input is everywhere. */
function inputText(a) {
  const bytes = a.textFile !== undefined ? readFile(a.textFile) : Buffer.from(a.text);
  if (!bytes.length) {
    refuse(`${a.textFile ?? '--text'} is empty: give at least one character (QS_ERR_RANGE)`);
  }
  return utf8.decode(bytes);
}

/** ids from --ids, or text through the model's tokenizer (BERT: [CLS] .. [SEP]), at most the model's position limit. */
async function readInput(a, model) {
  let ids;
  if (a.ids !== undefined) {
    ids = parseIdList(a.ids, '--ids');
  } else if (a.text !== undefined || a.textFile !== undefined) {
    if (!model.hasTokenizer) {
      refuse('this model has no tokenizer (no vocab.txt, config tokenizer is not "byte"): use --ids');
    }
    const text = inputText(a);
    ids = (await model.tokenize(text, { addSpecial: model.config.arch === 'bert' })).ids;
  } else {
    refuse(`${a.cmd} needs --ids, --text or --text-file`);
  }
  const maxPos = model.config.maxPositions;
  if (ids.length > maxPos) {
    refuse(`the input is ${ids.length} tokens; ${a.models[0]} takes at most ${maxPos} `
      + `(max_position_embeddings in its config.json)${a.ids !== undefined ? ''
        : `: shorten the text, or score a long text with ${PROG} eval`}`);
  }
  const delimiters = model.hasTokenizer ? await model.delimiters(ids) : new Uint8Array(ids.length);
  let types;
  if (a.types !== undefined) {
    types = parseIdList(a.types, '--types');
    if (types.length !== ids.length) refuse(`--types has ${types.length} values, --ids has ${ids.length}`);
  }
  return { ids, types, delimiters };
}

// ------------------------------------------------------------ JSON as qs writes it

/** JSON numbers cannot be NaN or infinite. */
const jnum = (v) => (Number.isFinite(v) ? sprintf('%.9g', v) : 'null');

/** A JSON string: quotes, backslashes and control characters escaped. */
const jstr = (s) => `"${s.replace(/["\\\x00-\x1f]/g,
  (c) => (c < ' ' ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : `\\${c}`))}"`;

function jsonPoints(points) {
  return `"points":[${points.map((ps) => {
    let s = `{"layer":${ps.layer},"point":"${ps.point}","rows":${ps.rows},"cols":${ps.cols},`
      + `"max_abs":${jnum(ps.maxAbs)},"mean":${jnum(ps.mean)},"std":${jnum(ps.std)},`
      + `"kurtosis":${jnum(ps.kurtosis)},"rms_kurtosis":${jnum(ps.rmsKurtosis)},`
      + `"n_outliers":${ps.nOutliers},"quantized":${ps.quantized}`;
    if (ps.quantized) {
      s += `,"quant_mse":${jnum(ps.quantMse)},"quant_sqnr_db":${jnum(ps.quantSqnrDb)},`
        + `"quant_min":${jnum(ps.quantMin)},"quant_max":${jnum(ps.quantMax)}`;
    }
    const top = ps.topDims.map((d, k) => `{"dim":${d},"max_abs":${jnum(ps.topVals[k])},"token":${ps.topTokens[k]}}`);
    return `${s},"top":[${top.join(',')}]}`;
  }).join(',')}]`;
}

function jsonHeads(heads) {
  return `"heads":[${heads.flatMap((row, l) => row.map((h, k) => `{"layer":${l},"head":${k},`
    + `"delim_mass":${jnum(h.delimMass)},"out_norm":${jnum(h.outNorm)},"value_norm":${jnum(h.valueNorm)},`
    + `"entropy":${jnum(h.entropy)},"max_prob":${jnum(h.maxProb)},"noop_score":${jnum(h.noopScore)},`
    + `"gate_mean":${jnum(h.gateMean)}}`)).join(',')}]`;
}

/** The summary's figures as JSON members, the same keys for stats and eval. */
const jsonSummary = (s) => sprintf('"max_inf_norm":%.9g,"max_inf_norm_layer":%d,"max_ffn_out_inf_norm":%.9g,'
  + '"max_ln_out_inf_norm":%.9g,"avg_kurtosis":%.9g,"max_kurtosis":%.9g,"avg_rms_kurtosis":%.9g,"avg_input_corr":%.9g',
s.maxInfNorm, s.maxInfNormLayer, s.maxFfnOutInfNorm, s.maxLnOutInfNorm, s.avgKurtosis, s.maxKurtosis,
s.avgRmsKurtosis, s.avgInputCorr);

// ------------------------------------------------------------ logits, stats, quant

async function cmdLogits(a, model) {
  const { ids, types } = await readInput(a, model);
  const r = await model.forward(ids, { tokenTypes: types });
  const V = model.config.vocabSize;
  if (a.json) {
    const values = Array.from(r.logits, (v) => sprintf('%.9g', v));
    print('{"shape":[%d,%d],"logits":[%s]}\n', ids.length, V, values.join(','));
    return;
  }
  for (let t = 0; t < ids.length; t++) {
    const row = r.logits.subarray(t * V, (t + 1) * V);
    let best = 0;
    for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
    print('token %3d id %6d  argmax %6d  logit %.4f\n', t, ids[t], best, row[best]);
  }
}

/** Per layer per point: the stats table (and quant error when quantized). */
function printPoints(points, withQuant) {
  print('%-5s %-9s %10s %9s %9s %8s  %s\n', 'layer', 'point', 'max|x|', 'kurtosis', 'rms-kurt',
    withQuant ? 'SQNR dB' : 'outliers', 'top dims (dim:max@token)');
  for (const ps of points) {
    const q = withQuant ? (ps.quantized ? sprintf('%8.2f', ps.quantSqnrDb) : '-') : sprintf('%8d', ps.nOutliers);
    print('%-5s %-9s %10.4g %9.3f %9.3f %8s  ', ps.layer < 0 ? '-' : String(ps.layer), ps.point, ps.maxAbs,
      ps.kurtosis, ps.rmsKurtosis, q);
    for (let k = 0; k < 3 && k < ps.topDims.length; k++) {
      print('%d:%.3g@%d ', ps.topDims[k], ps.topVals[k], ps.topTokens[k]);
    }
    print('\n');
  }
}

async function cmdStatsOrQuant(a, model, quant) {
  const { ids, types, delimiters } = await readInput(a, model);
  const o = { tokenTypes: types, delimiters };
  let r = await model.forward(ids, o);
  let logitErr = 0, agree = 0;
  if (quant) {
    // float reference first, then calibrate on this input and quantize
    const fp = r.logits;
    if (a.quant.actGranularity === 'tensor') await model.calibrate([{ ids, tokenTypes: types }], { quant: a.quant });
    r = await model.forward(ids, { ...o, quant: a.quant });
    const V = model.config.vocabSize, l = r.logits;
    for (let t = 0; t < ids.length; t++) {
      let b0 = 0, b1 = 0;
      for (let j = 0; j < V; j++) {
        const i = t * V + j;
        logitErr = Math.max(logitErr, Math.abs(Math.fround(l[i] - fp[i]))); // a float difference, as in C
        if (fp[i] > fp[t * V + b0]) b0 = j;
        if (l[i] > l[t * V + b1]) b1 = j;
      }
      if (b0 === b1) agree++;
    }
  }
  const s = r.summary, n = ids.length;
  if (a.json) {
    const pieces = model.hasTokenizer ? await model.pieces(ids) : Array.from(ids, () => null);
    let out = `{"model":${jstr(a.models[0])},"tokens":${n},"ids":[${ids.join(',')}],`
      + `"pieces":[${pieces.map((p) => (p === null ? 'null' : jstr(p))).join(',')}],`;
    if (quant) {
      out += sprintf('"weight_bits":%d,"act_bits":%d,"max_logit_error":%.9g,"top1_agreement":%.6f,',
        a.quant.weightBits, a.quant.actBits, logitErr, agree / n);
    }
    print('%s"summary":{%s},%s,%s}\n', out, jsonSummary(s), jsonPoints(r.points), jsonHeads(r.heads));
    return;
  }
  print('%s: %d tokens\n', a.models[0], n);
  print('max ||x||_inf (FFN input + output, layer %d) %.4g | FFN output %.4g | layer output %.4g | '
    + 'avg kurtosis %.3f | max kurtosis %.3f | avg RMS kurtosis %.3f | avg input corr %.3f\n', s.maxInfNormLayer,
  s.maxInfNorm, s.maxFfnOutInfNorm, s.maxLnOutInfNorm, s.avgKurtosis, s.maxKurtosis, s.avgRmsKurtosis, s.avgInputCorr);
  if (quant) {
    print('W%dA%d: max |logit error| %.4g, top-1 agreement %.1f%%\n', a.quant.weightBits, a.quant.actBits,
      logitErr, (100 * agree) / n);
  }
  printPoints(r.points, quant);
}

// ------------------------------------------------------------ eval

/**
 * Token stream to score: --ids, or text (--text, --text-file, or --data FILE:
 * its validation split, cut exactly as the trainer cuts it, unless --split
 * says otherwise), which evaluate() tokenizes without specials.
 */
async function readStream(a, model) {
  if (a.ids !== undefined) return parseIdList(a.ids, '--ids');
  let text;
  if (a.data !== undefined) {
    const all = readFile(a.data);
    text = a.split === 'all' ? utf8.decode(all) : await textSplit(all, { split: a.split });
    if (a.split !== 'all' && !text.length) {
      const { valFraction } = await defaultTrain();
      const val = a.split === 'val';
      refuse(`${a.data}: its ${val ? 'validation' : 'training'} split is empty: the trainer's split gives `
        + `validation one block of ${TEXT_BLOCK_KIB} KiB in ${Math.trunc(1 / Math.fround(valFraction) + 0.5)}, `
        + `and this file has ${all.length} bytes; score it all with --split all`
        + `${val ? ', or its training part with --split train' : ''}`);
    }
  } else if (a.text !== undefined || a.textFile !== undefined) {
    text = inputText(a);
  } else {
    refuse('eval needs --data FILE, --text, --text-file or --ids');
  }
  if (!model.hasTokenizer) refuse('this model has no tokenizer: use --ids');
  return text;
}

// The paper's Table 2 columns: FP perplexity, outlier statistics, and the
// perplexity under W8A8 and the lower bit widths of the issue.
const EVAL_BITS = [[8, 8], [8, 6], [8, 4], [6, 8], [4, 8]];

/** eval's progress line on stderr, redrawn in place; only on a terminal. */
function progressLine(model, pass) {
  if (!process.stderr.isTTY) return undefined;
  let last = -1;
  return ({ done, total }) => {
    const percent = total ? Math.trunc((100 * done) / total) : 100;
    if (percent === last) return;
    printErr('\r%s %s: %3d%% of %ld windows', model, pass, percent, total);
    if (done === total) printErr('\r\x1b[K');
    last = percent;
  };
}

/** One model's row of the table: {fp, quantized, summary}, or a Refusal / the library's error. */
async function evalModel(a, path, configs) {
  const model = await loadModel(path);
  try {
    // qs's read_stream reports its own failures, the library's too; eval --json then names the input
    const stream = await readStream(a, model).catch((e) => {
      reportError(e);
      refuse('');
    });
    const o = { seqLen: a.seqLen, maxWindows: a.windows, calibWindows: a.calib };
    const fp = await model.evaluate(stream, { ...o, onProgress: progressLine(path, 'float') });
    const quantized = [];
    for (const quant of configs) {
      const pass = `W${quant.weightBits}A${quant.actBits}`;
      quantized.push((await model.evaluate(stream, { ...o, quant, onProgress: progressLine(path, pass) })).qPpl);
    }
    const windows = a.windows > 0 && a.windows < 64 ? a.windows : 64;
    const summary = await model.outlierSummary(stream, { seqLen: a.seqLen, maxWindows: windows });
    return { fp, quantized, summary };
  } finally {
    await model.dispose();
  }
}

async function cmdEval(a) {
  const configs = a.haveQuant ? [a.quant]
    : EVAL_BITS.map(([weightBits, actBits]) => ({ ...a.quant, weightBits, actBits }));
  let status = 0;
  const rows = [];
  if (!a.json) {
    print('%-24s %8s %9s %9s %9s %9s', 'model', 'FP ppl', 'max|x|inf', 'avg kurt', 'rms kurt', 'in corr');
    for (const q of configs) print(' %8s', `W${q.weightBits}A${q.actBits}`);
    print('\n');
  }
  for (const path of a.models) {
    let row;
    try {
      row = await evalModel(a, path, configs);
    } catch (e) {
      // what readStream refused is on stderr only
      const error = e instanceof Refusal ? { code: 'QS_ERR_ARG', message: 'the input could not be read (see stderr)' }
        : { code: e.code, message: e.message };
      reportError(e);
      status = 1;
      if (a.json) rows.push(`{"model":${jstr(path)},"error":{"code":"${error.code}","message":${jstr(error.message)}}}`);
      continue;
    }
    const { fp, quantized, summary: s } = row;
    if (a.json) {
      const q = configs.map((c, k) => sprintf('{"weight_bits":%d,"act_bits":%d,"ppl":%s}', c.weightBits,
        c.actBits, jnum(quantized[k])));
      rows.push(sprintf('{"model":%s,"fp_ppl":%s,"n_predicted":%ld,"n_windows":%d,"n_stat_windows":%ld,%s,'
        + '"quantized":[%s]}', jstr(path), jnum(fp.fpPpl), fp.nPredicted, fp.nWindows, s.nSeqs,
      jsonSummary(s), q.join(',')));
    } else {
      print('%-24s %8.3f %9.2f %9.2f %9.2f %9.3f', path, fp.fpPpl, s.maxInfNorm, s.avgKurtosis, s.avgRmsKurtosis,
        s.avgInputCorr);
      for (const q of quantized) print(' %8.3f', q);
      print('\n');
    }
  }
  if (a.json) {
    print('{"models":[%s]}\n', rows.join(','));
  } else {
    const over = a.data === undefined ? 'the input' : a.split === 'all' ? 'the whole file'
      : a.split === 'val' ? "the file's validation split" : "the file's training split";
    print('perplexity over %s; max|x|inf (at the LayerNorm input x + FFN(x)) and kurtosis (at the FFN and layer '
      + 'outputs): per sequence, averaged over up to 64 windows, max / mean over layers; in corr: mean input-wise '
      + 'correlation at the layer outputs (He et al.\'s signal propagation), mean over layers; activations %s %s, '
      + 'weights %s %s\n', over, a.quant.actGranularity, a.quant.estimator, a.quant.weightGranularity,
    a.quant.weightSymmetric ? 'symmetric' : 'asymmetric');
  }
  return status;
}

// ------------------------------------------------------------ main

/** qs's report of a failure: its own words, or the library's message and status name. */
function reportError(e) {
  if (e instanceof Refusal) {
    if (e.message) printErr('%s: %s\n', PROG, e.message);
  }
  else if (typeof e?.code === 'string' && e.code.startsWith('QS_')) printErr('%s: %s (%s)\n', PROG, e.message, e.code);
  else throw e; // a bug here, not bad input: the stack says where
}

async function main(argv) {
  if (argv[0] === '--help' || argv[0] === '-h') {
    usage((s) => process.stdout.write(s));
    return 0;
  }
  if (NATIVE_ONLY.has(argv[0])) {
    printErr('%s: %s\n', PROG, nativeOnly(argv[0]));
    return 2;
  }
  let a;
  try {
    a = await parseArgs(argv);
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    if (e.message) printErr('%s: %s\n', PROG, e.message);
    usage((s) => process.stderr.write(s));
    return 2;
  }
  if (a.cmd === 'eval') return cmdEval(a);
  try {
    const model = await loadModel(a.models[0]);
    try {
      if (a.cmd === 'logits') await cmdLogits(a, model);
      else await cmdStatsOrQuant(a, model, a.cmd === 'quant');
    } finally {
      await model.dispose();
    }
    return 0;
  } catch (e) {
    reportError(e);
    return 1;
  }
}

// A reader that stops early (| head) ends the program as SIGPIPE ends qs: quietly, status 141.
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE') throw e;
  process.exit(128 + 13);
});
process.exitCode = await main(process.argv.slice(2));
