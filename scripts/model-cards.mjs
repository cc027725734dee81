// scripts/model-cards.mjs: evaluates the shipped models with `qs eval` (one call
// per architecture, so each table compares the variants of one recipe) and
// writes each models/<id>/card.md (command, tokens, wall time, hardware, curve,
// table row) plus models/index.json; prints the results tables in Markdown.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';

const titles = {
  vanilla: 'Vanilla softmax',
  clipped: 'Clipped softmax',
  gated: 'Gated attention',
  op: 'Outlier Protected block',
  softmax1: 'softmax1 (off by one)',
};
const archText = {
  bert: 'Byte-level BERT-style masked LM (post-LN, GELU, tied MLM head)',
  opt: 'Byte-level OPT-style causal LM (pre-LN, ReLU, tied head)',
};
// An id is <arch>-<variant>[-<optimizer>] (AdamW when absent): bert-vanilla-soap is
// vanilla trained with SOAP, listed after the AdamW models so that the page's
// variant chips and its comparison baseline stay on the AdamW ones.
const optimizerNames = { adamw: 'AdamW', soap: 'SOAP', shampoo: 'Shampoo' };
const optimizerOf = (id) => id.split('-')[2] ?? 'adamw';
const titleOf = (id) => {
  const t = titles[id.split('-')[1]] ?? id;
  return optimizerOf(id) === 'adamw' ? t : `${t}, ${optimizerNames[optimizerOf(id)] ?? optimizerOf(id)}`;
};
const order = (id) => ['bert', 'opt'].indexOf(id.split('-')[0]) * 100 + Object.keys(titles).indexOf(id.split('-')[1]) +
  (optimizerOf(id) === 'adamw' ? 0 : 10 * (1 + Object.keys(optimizerNames).indexOf(optimizerOf(id))));
const ids = readdirSync('models').filter((d) => existsSync(`models/${d}/model.safetensors`))
  .sort((a, b) => order(a) - order(b));

const cpu = (os.cpus()[0]?.model ?? 'unknown CPU').trim();
const hardware = `${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`;
const head = '| model | FP ppl | max ‖x‖∞ | FFN-out ‖x‖∞ | avg kurtosis | RMS kurtosis | W8A8 | Δ W8A8 | W8A6 | W8A4 | W6A8 | W4A8 |';
const rule = '|---|---|---|---|---|---|---|---|---|---|---|---|';
const pct = (q, fp) => `${q >= fp ? '+' : ''}${(100 * (q / fp - 1)).toFixed(1)} %`;
const row = (r) => `| ${r.model.replace('models/', '')} | ${r.fp_ppl.toFixed(3)} | ${r.max_inf_norm.toFixed(2)} | ` +
  `${r.max_ffn_out_inf_norm.toFixed(2)} | ${r.avg_kurtosis.toFixed(2)} | ${r.avg_rms_kurtosis.toFixed(2)} | ` +
  `${r.quantized[0].ppl.toFixed(3)} | ${pct(r.quantized[0].ppl, r.fp_ppl)} | ` +
  r.quantized.slice(1).map((q) => q.ppl.toFixed(3)).join(' | ') + ' |';

const index = [];
const tables = [];
for (const arch of ['bert', 'opt']) {
  const mine = ids.filter((id) => id.startsWith(`${arch}-`));
  if (!mine.length) continue;
  const evalArgs = ['eval', '--data', 'data/kjv.txt', '--windows', '400', '--json', ...mine.flatMap((id) => ['--model', `models/${id}`])];
  const evalCmd = `build/native/qs ${evalArgs.filter((a) => a !== '--json').join(' ')}`;
  const table = JSON.parse(execFileSync('build/native/qs', evalArgs, { encoding: 'utf8', maxBuffer: 1 << 26 }));
  tables.push(`\`${evalCmd}\`\n\n${head}\n${rule}\n${table.models.map(row).join('\n')}`);
  for (const r of table.models) {
    const id = r.model.replace('models/', '');
    const dir = `models/${id}`;
    const variant = id.split('-')[1];
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
    // One line per training phase (BERT: a second phase from the first one's model).
    const commands = existsSync(`${dir}/command.txt`) ? readFileSync(`${dir}/command.txt`, 'utf8').trim().split('\n') : [];
    const command = commands.length ? commands.join(' ; then ') : '(not recorded)';
    const flagOf = (cmd, name) => Number((cmd.match(new RegExp(`--${name} (\\S+)`)) ?? [])[1]);
    // A phase cut short by --stop-at ends there, not at the end of its schedule.
    const phases = commands.map((c) => ({ steps: flagOf(c, 'stop-at') || flagOf(c, 'steps'), tokensPerStep: flagOf(c, 'batch') * flagOf(c, 'seq-len') }));
    const wall = existsSync(`${dir}/wall_s.txt`) ? Number(readFileSync(`${dir}/wall_s.txt`, 'utf8')) : NaN;
    const curve = readFileSync(`${dir}/curve.csv`, 'utf8').trim().split('\n');
    const cols = curve[0].split(',');
    const rows = curve.slice(1).map((l) => l.split(','));
    const stepsDone = Math.max(...rows.map((c) => Number(c[0])));
    /* the last evaluated row: training may have been stopped between evaluations */
    const lastEval = rows.slice().reverse().find((c) => c[cols.indexOf('val_ppl')] !== '');
    const evalAt = (name) => lastEval?.[cols.indexOf(name)];
    const planned = phases.reduce((a, p) => a + p.steps, 0);
    // The tokens of every phase done; the last one may have stopped early.
    let left = stepsDone, tokens = 0;
    for (const p of phases) { const k = Math.min(left, p.steps); tokens += k * p.tokensPerStep; left -= k; }
    const tokenText = phases.map((p) => `${p.steps} × ${p.tokensPerStep}`).join(' + ');
    const stopped = Number.isFinite(planned) && stepsDone < planned
      ? `\n- stopped at step ${stepsDone} of the ${planned}-step schedule${phases.length > 1 ? ' (all phases)' : ''}: the learning rate had not finished its cosine decay`
      : '';
    const optimizer = optimizerOf(id);
    index.push({ id, title: titleOf(id), variant, arch: cfg.model_type, optimizer });
    const ffn = cfg.intermediate_size ?? cfg.ffn_dim;
    // Anything about the run the figures alone do not say (models/<id>/note.txt).
    const note = existsSync(`${dir}/note.txt`) ? `\n- note: ${readFileSync(`${dir}/note.txt`, 'utf8').trim()}` : '';
    writeFileSync(`${dir}/card.md`, `# ${titleOf(id)} (${id})

${archText[cfg.model_type] ?? cfg.model_type} trained by quantscope's own trainer
on the King James Bible (Debian \`bible-kjv\`, \`scripts/kjv.sh\`), validation =
every 20th 16 KiB block. Recipe and the pilots behind it: [models/RECIPES.md](../RECIPES.md).

- model: ${cfg.num_hidden_layers} layers, d ${cfg.hidden_size}, ${cfg.num_attention_heads} heads, FFN ${ffn}, T ≤ ${cfg.max_position_embeddings}, vocab ${cfg.vocab_size} (bytes + 4 specials)
- variant keys: \`attn_softmax\` ${cfg.attn_softmax}, \`clip_alpha\` ${cfg.clip_alpha}, \`attn_gate_type\` ${cfg.attn_gate_type}, \`attn_gate_init\` ${cfg.attn_gate_init}, \`block_type\` ${cfg.block_type}
- optimizer: ${optimizerNames[optimizer] ?? optimizer}${optimizer === 'adamw' ? '' : ` (\`--optimizer ${optimizer}\`: its own betas, the recipe's rate)`}, no weight decay on biases and LayerNorm gains
- command (\`scripts/train-models.sh ${id}\`; the run folder's config, weights, curve and log are copied here): \`${command}\`
- tokens seen: ${Number.isFinite(tokens) && tokens > 0 ? `${(tokens / 1e6).toFixed(1)} M (${stepsDone} steps: ${tokenText} tokens per step)` : 'unknown'}
- wall time: ${Number.isFinite(wall) ? `${wall} s (${(wall / 60).toFixed(1)} min)` : 'not recorded'} on ${hardware}, one thread, sharing the 2 cores with the other runs (two or three at a time)
- curve: [curve.csv](curve.csv) (loss, lr, gradient norm; every 100 steps: validation perplexity and the outlier summary)
- steps done: ${stepsDone}${stopped}${note}
- last evaluation (step ${evalAt('step')}): validation perplexity ${Number(evalAt('val_ppl')).toFixed(3)}, max ‖x‖∞ ${Number(evalAt('max_inf_norm')).toFixed(2)} (LayerNorm input), max FFN output ‖x‖∞ ${Number(evalAt('max_ffn_out_inf_norm')).toFixed(2)}, avg kurtosis ${Number(evalAt('avg_kurtosis')).toFixed(2)}

Row of the results table (\`${evalCmd}\`; max ‖x‖∞ at the LayerNorm input x + FFN(x), kurtosis at the FFN and layer outputs, per sequence over 64 windows then max / mean over layers; W8A8 = per-tensor, running min-max, every capture point):

${head}
${rule}
${row(r)}
`);
  }
}
writeFileSync('models/index.json', JSON.stringify({ models: index }, null, 2) + '\n');
console.log(tables.join('\n\n'));
