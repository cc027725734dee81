// wasm/js/trainer.mjs: Trainer, training a model in place one optimiser step at a
// time (the page's train-in-the-tab), with validation and outlier statistics.
import { argError, qsError } from './errors.mjs';
import { checkAborted, checkOptions, enumOption, intOption, signalOption } from './checks.mjs';

// The settings only some optimisers read (qs_train_config's comments, as qs
// train refuses their flags): given with another optimiser they would be
// silently ignored, so they are refused.
const OPTIMIZER_ONLY = {
  shampooBeta: ['soap'], precondEvery: ['soap', 'shampoo'], maxPrecondDim: ['soap', 'shampoo'],
  precondEps: ['shampoo'],
};

/**
 * Fills the context's qs_train_config for createTrainer(options): the chosen
 * optimiser's C defaults (qs_train_config_for: SOAP's lr and betas are its
 * own), then the options, each checked; warmup by the library's rule when not
 * given. Ranges are C's to check (qs_trainer_new). Returns the config's address,
 * its steps and the optimiser's name.
 */
export function fillTrainConfig(c, ctx, options, threads) {
  const what = 'createTrainer: ';
  const index = enumOption(options.optimizer, c.names.optimizer, `${what}optimizer`, 0);
  const optimizer = c.names.optimizer[index];
  for (const [key, users] of Object.entries(OPTIMIZER_ONLY)) {
    if (options[key] != null && !users.includes(optimizer)) {
      throw argError(`${what}${key} is a setting of ${users.join(' and ')}, not of optimizer '${optimizer}'`);
    }
  }
  const config = c.m._qsw_train_reset(ctx, index);
  c.fill('train_config', config, { ...options, threads }, what);
  const { steps } = c.read('train_config', config);
  if (options.warmupSteps == null) c.fill('train_config', config, { warmupSteps: c.m._qsw_train_default_warmup(steps) }, what);
  return { config, steps, optimizer };
}

/**
 * Trains its model in place, one optimiser step per step() call; calls share
 * the model's queue, so forwards in between see the parameters of that moment.
 */
export class Trainer {
  #model;
  #handle;
  #h; // the model's queue and context, and how to read a call's result
  #stepsDone = 0;

  /** @internal Use model.createTrainer(). */
  constructor(model, handle, warning, helpers) {
    this.#model = model;
    this.#handle = handle;
    this.#h = helpers;
    this.warning = warning;
    this.totalSteps = helpers.steps;
    this.optimizer = helpers.optimizer; // 'adamw', 'soap' or 'shampoo'
    // The context-free baseline for valLoss (qs_trainer_unigram_loss): at or
    // above it the model has learned nothing from context.
    this.unigramLoss = helpers.m._qsw_trainer_unigram_loss(handle);
  }

  get model() { return this.#model; }
  get stepsDone() { return this.#stepsDone; }
  get disposed() { return this.#handle === 0; }

  #live() {
    if (!this.#handle) throw qsError('QS_ERR_ARG', 'quantscope: the trainer was disposed');
    return this.#handle;
  }

  /**
   * One optimiser step: {step, loss, gradNorm, lr, tokens}. With a signal
   * that is aborted by the time the step's turn comes, it rejects instead
   * (a step itself is one call into the instance: it runs to its end).
   */
  step(options) {
    return this.#h.enqueue(() => {
      checkAborted(signalOption(checkOptions(options, ['signal'], 'trainer.step').signal, 'trainer.step'));
      this.#h.paramsChanged();
      this.#h.call(this.#h.m._qsw_trainer_step(this.#h.ctx, this.#live()));
      const log = this.#h.result('step_log');
      this.#stepsDone = log.step;
      return log;
    });
  }

  /**
   * Validation loss on fixed batches and the outlier statistics of the first
   * QS_TRAIN_STAT_SEQS validation sequences: max ||x||inf, kurtosis and He et
   * al.'s signal propagation (avgInputCorr).
   */
  evaluate(options) {
    return this.#h.enqueue(() => {
      const { batches = 2, signal } = checkOptions(options, ['batches', 'signal'], 'trainer.evaluate');
      checkAborted(signalOption(signal, 'trainer.evaluate'));
      const n = intOption(batches, 'trainer.evaluate: batches');
      this.#h.call(this.#h.m._qsw_trainer_eval(this.#h.ctx, this.#live(), n));
      return { step: this.#h.m._qsw_trainer_steps_done(this.#handle), ...this.#h.result('eval_log') };
    });
  }

  /** @internal Frees the C trainer now (inside the model's queue). */
  _free() {
    if (!this.#handle) return;
    const h = this.#handle;
    this.#handle = 0;
    this.#h.free(h);
  }

  /** Frees the trainer after queued calls; the model stays. Idempotent. */
  dispose() {
    if (!this.#handle) return Promise.resolve();
    return this.#h.enqueue(() => this._free()).catch(() => this._free());
  }
}

