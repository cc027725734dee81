// web/worker/train.js: training runs in the tab: a fresh model per run, stepped
// a little at a time between the page's requests, with evaluations for the curves.
import { createModel, loadModel } from '../../wasm/quantscope.mjs';
import { addTrained, all, userError } from './registry.js';

const runs = new Map(); // runId -> run
let rr = 0;             // round-robin position over running runs

/** Variant keys on top of a BERT base (used when no shipped model of that variant exists). */
const VARIANT_KEYS = {
  vanilla: { attn_softmax: 'softmax', attn_gate_type: 'none', block_type: 'standard' },
  clipped: { attn_softmax: 'clipped_softmax', clip_alpha: 0.4, clip_zeta: 1, clip_gamma: 0 },
  gated: { attn_gate_type: 'conditional_per_token', attn_gate_init: 0.25 },
  op: { block_type: 'op', op_beta: 0.2 },
  softmax1: { attn_softmax: 'softmax1' },
};

/** config.json for a tiny model of a variant: the shipped variant's keys, the page's sizes. */
async function trainConfig(variant, size) {
  const shipped = all().find((e) => e.source === 'shipped' && e.variant === variant && e.model.config.arch === 'bert');
  const vanilla = all().find((e) => e.source === 'shipped' && e.variant === 'vanilla');
  // The shipped model's config.json as the library writes it, which is the
  // file it was loaded from (the shipped files are written by the library).
  const from = shipped ?? vanilla;
  const base = from ? JSON.parse((await from.model.toFiles()).config) : {
    model_type: 'bert', architectures: ['BertForMaskedLM'], vocab_size: 260, type_vocab_size: 2,
    layer_norm_eps: 1e-12, hidden_act: 'gelu', tie_word_embeddings: true, tokenizer: 'byte',
  };
  if (!shipped) Object.assign(base, VARIANT_KEYS[variant] ?? {});
  const { layers, hidden, heads, seqLen } = size;
  Object.assign(base, {
    hidden_size: hidden, num_hidden_layers: layers, num_attention_heads: heads,
    intermediate_size: 4 * hidden, max_position_embeddings: Math.max(seqLen, 128), clip_seq_len: seqLen,
  });
  delete base.attn_gate_mlp_hidden; // its default follows d_head
  return base;
}

/** Starts a run; progress is posted through emit(event). */
export async function start({ runId, variant, size, options, label }, emit) {
  if (runs.has(runId)) throw userError(`run ${runId} exists`);
  if (!options.text) throw userError('No training text: the corpus slice is missing (run scripts/kjv.sh, then node scripts/web-corpus.mjs).');
  const config = await trainConfig(variant, size);
  const model = await createModel(config, { seed: options.seed ?? 0 });
  let trainer;
  try {
    trainer = await model.createTrainer(options.text, {
      batchSize: size.batch, seqLen: size.seqLen, steps: options.steps, lr: options.lr,
      optimizer: options.optimizer, // its other settings: the library's defaults for it
      seed: options.seed ?? 0, // warmup: the library's default (5 % of the steps)
      gammaRamp: variant === 'clipped',
    });
  } catch (e) {
    await model.dispose();
    throw userError(`Cannot train this configuration: ${e.message}`);
  }
  const run = { runId, variant, label, model, trainer, status: 'running', steps: options.steps,
    evalEvery: options.evalEvery ?? 10, t0: performance.now(), tokens: 0, busyMs: 0, config };
  runs.set(runId, run);
  emit({ runId, status: run.status, warning: trainer.warning, config, optimizer: trainer.optimizer,
    unigramLoss: trainer.unigramLoss });
  // The curve starts at the initialisation.
  emit({ runId, eval: await trainer.evaluate({ batches: 2 }) });
  return { runId, warning: trainer.warning };
}

export function setStatus(runId, status) {
  const run = runs.get(runId);
  if (!run) throw userError(`no run ${runId}`);
  if (run.status === 'done' || run.status === 'failed') return run.status;
  run.status = status;
  return status;
}

export function hasWork() {
  for (const r of runs.values()) if (r.status === 'running') return true;
  return false;
}

/** One optimiser step of the next running run (round robin); evaluations on schedule. */
export async function stepOne(emit) {
  const active = [...runs.values()].filter((r) => r.status === 'running');
  if (!active.length) return;
  const run = active[rr++ % active.length];
  const t0 = performance.now();
  let log;
  try {
    log = await run.trainer.step();
  } catch (e) {
    run.status = 'failed';
    emit({ runId: run.runId, status: 'failed', error: e.message });
    return;
  }
  run.busyMs += performance.now() - t0;
  run.tokens += log.tokens;
  const ev = { runId: run.runId, step: log, tokensPerS: run.tokens / (run.busyMs / 1000) };
  if (log.step % run.evalEvery === 0 || log.step === run.steps) {
    try {
      ev.eval = await run.trainer.evaluate({ batches: 2 });
    } catch (e) {
      ev.error = e.message;
    }
  }
  if (log.step >= run.steps) {
    run.status = 'done';
    ev.status = 'done';
  }
  emit(ev);
}

/** The run's model as files for a download. */
export async function files(runId) {
  const run = runs.get(runId);
  if (!run) throw userError(`no run ${runId}`);
  const f = await run.model.toFiles();
  return { config: f.config, safetensors: f.safetensors, name: run.label };
}

/** A copy of the run's current model in the model picker. */
export async function open(runId) {
  const run = runs.get(runId);
  if (!run) throw userError(`no run ${runId}`);
  const model = await loadModel(await run.model.toFiles());
  return addTrained(model, { title: `Trained: ${run.label} (step ${run.trainer.stepsDone})`, variant: run.variant });
}

export async function remove(runId) {
  const run = runs.get(runId);
  if (!run) return;
  runs.delete(runId);
  await run.trainer.dispose();
  await run.model.dispose();
}
