// scripts/model-cards.mjs: evaluates the shipped models with `qs eval` and
// writes each models/<id>/card.md (command, wall time, hardware, table row)
// plus models/index.json; prints the results table in Markdown.
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
const ids = readdirSync('models').filter((d) => existsSync(`models/${d}/model.safetensors`)).sort((a, b) =>
  Object.keys(titles).indexOf(a.split('-')[1]) - Object.keys(titles).indexOf(b.split('-')[1]));
const evalArgs = ['eval', '--data', 'data/kjv.txt', '--windows', '400', '--json', ...ids.flatMap((id) => ['--model', `models/${id}`])];
const evalCmd = `build/native/qs ${evalArgs.filter((a) => a !== '--json').join(' ')}`;
const table = JSON.parse(execFileSync('build/native/qs', evalArgs, { encoding: 'utf8', maxBuffer: 1 << 26 }));

const cpu = (os.cpus()[0]?.model ?? 'unknown CPU').trim();
const hardware = `${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`;
const head = '| model | FP ppl | max ‖x‖∞ | avg kurtosis | avg RMS kurtosis | W8A8 | W8A6 | W8A4 | W6A8 | W4A8 |';
const rule = '|---|---|---|---|---|---|---|---|---|---|';
const row = (r) => `| ${r.model.replace('models/', '')} | ${r.fp_ppl.toFixed(3)} | ${r.max_inf_norm.toFixed(2)} | ` +
  `${r.avg_kurtosis.toFixed(2)} | ${r.avg_rms_kurtosis.toFixed(2)} | ` +
  r.quantized.map((q) => q.ppl.toFixed(3)).join(' | ') + ' |';

const index = [];
for (const r of table.models) {
  const id = r.model.replace('models/', '');
  const dir = `models/${id}`;
  const variant = id.split('-')[1];
  const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
  const command = existsSync(`${dir}/command.txt`) ? readFileSync(`${dir}/command.txt`, 'utf8').trim() : '(not recorded)';
  const planned = Number((command.match(/--steps (\d+)/) ?? [])[1]);
  const wall = existsSync(`${dir}/wall_s.txt`) ? Number(readFileSync(`${dir}/wall_s.txt`, 'utf8')) : NaN;
  const curve = readFileSync(`${dir}/curve.csv`, 'utf8').trim().split('\n');
  const last = curve.at(-1).split(',');
  const cols = curve[0].split(',');
  const at = (name) => last[cols.indexOf(name)];
  /* the last evaluated row: training may have been stopped between evaluations */
  const lastEval = curve.slice(1).reverse().map((l) => l.split(',')).find((r) => r[cols.indexOf('val_ppl')] !== '');
  const evalAt = (name) => lastEval?.[cols.indexOf(name)];
  const stepsDone = Number(at('step'));
  const stopped = Number.isFinite(planned) && stepsDone < planned
    ? `\n- stopped at step ${stepsDone} of the ${planned}-step schedule (the session's time ran out; this is the checkpoint of step ${stepsDone}, the learning rate had not finished its cosine decay)`
    : '';
  index.push({ id, title: titles[variant] ?? id, variant, arch: cfg.model_type });
  writeFileSync(`${dir}/card.md`, `# ${titles[variant] ?? id} (${id})

Byte-level BERT-style masked LM (post-LN, GELU, tied MLM head) trained by
quantscope's own trainer on the King James Bible (Debian \`bible-kjv\`,
\`scripts/kjv.sh\`), validation = every 20th 16 KiB block.

- model: ${cfg.num_hidden_layers} layers, d ${cfg.hidden_size}, ${cfg.num_attention_heads} heads, FFN ${cfg.intermediate_size}, T ≤ ${cfg.max_position_embeddings}, vocab ${cfg.vocab_size} (bytes + 4 specials)
- variant keys: \`attn_softmax\` ${cfg.attn_softmax}, \`clip_alpha\` ${cfg.clip_alpha}, \`attn_gate_type\` ${cfg.attn_gate_type}, \`attn_gate_init\` ${cfg.attn_gate_init}, \`block_type\` ${cfg.block_type}
- command: \`${command}\`
- wall time: ${Number.isFinite(wall) ? `${wall} s (${(wall / 60).toFixed(1)} min)` : 'not recorded'} on ${hardware}; the four variants trained at the same time, one thread each, on a machine shared with other jobs, so a run alone is faster
- curve: [curve.csv](curve.csv) (loss, lr, gradient norm; every eval: validation perplexity, max ‖x‖∞, kurtosis)
- steps done: ${stepsDone}${stopped}
- last evaluation (step ${evalAt('step')}): validation perplexity ${Number(evalAt('val_ppl')).toFixed(3)}, max ‖x‖∞ ${Number(evalAt('max_inf_norm')).toFixed(2)}, max FFN output ‖x‖∞ ${Number(evalAt('max_ffn_out_inf_norm')).toFixed(2)}, kurtosis ${Number(evalAt('avg_kurtosis')).toFixed(2)}

Row of the results table (\`${evalCmd}\`):

${head}
${rule}
${row(r)}
`);
}
writeFileSync('models/index.json', JSON.stringify({ models: index }, null, 2) + '\n');
console.log(`\`${evalCmd}\`\n\n${head}\n${rule}\n${table.models.map(row).join('\n')}`);
