// wasm/js/trainer.mjs: Trainer, training a model in place one optimiser step at a
// time (the page's train-in-the-tab), with validation and outlier statistics.
import { qsError } from './errors.mjs';
import { checkAborted, checkOptions, intOption, signalOption } from './checks.mjs';

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

  /** Validation loss on fixed batches and outlier statistics of the first validation sequence. */
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

