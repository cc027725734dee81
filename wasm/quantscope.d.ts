// wasm/quantscope.d.ts: the types of quantscope.mjs, the JavaScript API shared
// by Node and the page; names mirror include/quantscope/*.h.

/**
 * Stable status names of the C library (status.h), found in `QuantscopeError.code`,
 * plus 'QS_ERR_TRAP', which only this module produces (see QuantscopeError).
 */
export type StatusName =
  | 'QS_ERR_ARG' | 'QS_ERR_IO' | 'QS_ERR_FORMAT' | 'QS_ERR_CONFIG' | 'QS_ERR_SHAPE'
  | 'QS_ERR_RANGE' | 'QS_ERR_NAN' | 'QS_ERR_NOMEM' | 'QS_ERR_TRAP';

/**
 * Every failure is an Error whose message is the C library's message word for
 * word (checks done in JavaScript, such as argument types and array lengths,
 * use code 'QS_ERR_ARG' and their own message). Promises reject with it.
 * Loading from a folder, the message starts with the folder, as the native
 * qs_model_load_dir's do ("models/x/vocab.txt: 30522 tokens, more than
 * config.json's vocab_size 300"); files are held to the native limits
 * (config.json 1 MiB, model.safetensors and vocab.txt 2 GiB in this 32-bit
 * build) with the native message.
 *
 * Options objects are checked: a key the call does not take (a misspelling
 * such as `{ captures: [...] }` or `quant: { actbits: 4 }`) is 'QS_ERR_ARG'
 * naming it and the valid keys, e.g. "forward: unknown quant option
 * 'actbits' (valid: weightBits, ...)", rather than being ignored.
 *
 * Token ids outside the 32-bit integer range (numbers or BigInts) are
 * 'QS_ERR_RANGE'; an array-like whose length is not a count
 * (`{ length: -1 }`) is 'QS_ERR_ARG'.
 *
 * A call given an aborted AbortSignal (`signal` option) rejects with the
 * signal's reason: a DOMException named 'AbortError' (code 20, ABORT_ERR)
 * unless abort(reason) gave another. The model stays usable.
 *
 * Sizes that do not fit WebAssembly's 32-bit address space (attention scores
 * of heads x tokens x tokens, a wide model's parameters) reject with
 * 'QS_ERR_NOMEM' naming the size, e.g. "forward: attention scores need 16 x
 * 8192 x 8192 floats (heads x tokens x tokens), more than this build's
 * 32-bit address space"; the model stays usable.
 *
 * 'QS_ERR_TRAP': the WebAssembly instance that all models share trapped (an
 * access outside its memory, `unreachable`, a stack overflow), which means a
 * bug in quantscope (please report it with the input). The call rejects with
 * this code, the original RuntimeError in `cause`; the instance is then
 * treated as broken and dropped, because a call aborted midway can leave
 * its heap corrupt and every model in it with wrong results. The next
 * loadModel() / createModel() starts a fresh instance. Every Model and
 * Trainer of the dropped instance rejects from then on with code
 * 'QS_ERR_TRAP' and the message "quantscope: the WASM instance was restarted
 * after a trap; load the model again"; dispose() on them resolves and frees
 * nothing (the memory went with the instance).
 */
export interface QuantscopeError extends Error {
  code: StatusName;
  /** For 'QS_ERR_TRAP': the WebAssembly.RuntimeError (or RangeError) of the trap. */
  cause?: unknown;
}

/** Named capture points (model.h, qs_point). */
export type PointName =
  | 'embed' | 'attn_in' | 'q' | 'k' | 'v' | 'scores' | 'probs' | 'gate' | 'ctx' | 'attn_out'
  | 'attn_res' | 'ffn_in' | 'ffn_h' | 'ffn_act' | 'ffn_out' | 'ffn_res' | 'layer_out' | 'final';

/** The model's configuration, read back from C (its config.json writer) after parsing. */
export interface ModelConfig {
  arch: 'bert' | 'opt';
  /** Trainable parameters as the library counts them (qs_model_num_params: biases, gains and gates included, the tied head once). */
  nParams: number;
  vocabSize: number;
  hiddenSize: number;
  nLayers: number;
  nHeads: number;
  intermediateSize: number;
  /** Longest input in tokens. */
  maxPositions: number;
  /** BERT token types (0 for OPT). */
  typeVocabSize: number;
  layerNormEps: number;
  activation: 'gelu' | 'gelu_new' | 'relu';
  /** Attention softmax (docs/science.md §2, §6). */
  softmax: 'softmax' | 'clipped_softmax' | 'softmax1';
  /** Clipped softmax: clip((zeta - gamma) softmax(x) + gamma, 0, 1). */
  clipGamma: number;
  clipZeta: number;
  /** > 0: gamma = -alpha / clipSeqLen. */
  clipAlpha: number;
  clipSeqLen: number;
  /** Gated attention variant, spelled as config.json's attn_gate_type. */
  gate: 'none' | 'unconditional_per_head' | 'conditional_per_token';
  /** conditional_per_token with a hidden layer (d_head -> gateMlpHidden -> ReLU -> 1). */
  gateMlp: boolean;
  gateMlpHidden: number;
  /** conditional_per_token gates computed from all features (d_model -> n_heads). */
  gateAllFeatures: boolean;
  /** pi_init: the gate bias starts at logit(gateInit). */
  gateInit: number;
  /** Transformer block: the architecture's own, or the Outlier Protected block (He et al. 2024). */
  block: 'standard' | 'op';
  /** OP block residual branch gain. */
  opBeta: number;
  /** Tokenizer kind declared by config.json ('wordpiece' needs a vocab.txt to exist). */
  tokenizer: 'none' | 'byte' | 'wordpiece';
  doLowerCase: boolean;
}

/** Fake quantization of a forward pass (docs/science.md §4). Omitted fields take the C defaults (see defaultQuant()). */
export interface QuantConfig {
  /** 0 keeps weights float, else 2..16. Default 8. */
  weightBits?: number;
  /** Default 8; 0 keeps activations float. */
  actBits?: number;
  /** Default true. */
  weightSymmetric?: boolean;
  /** Default false. */
  actSymmetric?: boolean;
  /** Default 'tensor'. */
  weightGranularity?: 'tensor' | 'channel';
  /** 'tensor': one range per tensor (static after calibrate()); 'token': one per row. Default 'tensor'. */
  actGranularity?: 'tensor' | 'token';
  /** Range estimator for per-tensor activations. Default 'running_minmax'. */
  estimator?: 'minmax' | 'running_minmax' | 'percentile' | 'mse';
  /** For 'percentile', in [50, 100]. Default 99.999. */
  percentile?: number;
  /** Points whose activations are quantized. Default: all. */
  points?: PointName[];
  /**
   * Run the linear layers with real int8 arithmetic (int32 sums of the same
   * integers fake quantization uses; results equal up to float rounding).
   * Needs symmetric weights and weights and activations of at most 8 bits. Default false.
   */
  int8?: boolean;
}

/**
 * Token ids: numbers, or BigInts as in the BigInt64Array that transformers.js
 * tokenizers return; each must fit a 32-bit integer.
 */
export type TokenIds = ArrayLike<number> | ArrayLike<bigint>;

/** Output of Model.tokenize. */
export interface Encoding {
  ids: Int32Array;
  /** Start of each token in the input string (UTF-16 index, as String.prototype.slice takes); -1 for added specials. */
  offsets: Int32Array;
  /** Display text of each token ("[CLS]", "##ing", "\\n" for byte 10). */
  pieces: string[];
  /** 1 for delimiter tokens ([CLS], [SEP], whitespace, punctuation), where no-op heads park. */
  delimiters: Uint8Array;
}

/** Summary of one activation tensor of the last forward pass (qs_point_stats). */
export interface PointStats {
  /** Layer index; -1 for the global points 'embed' and 'final'. */
  layer: number;
  point: PointName;
  /** The forward computed this point's statistics (ForwardOptions.stats); false: see UnmeasuredPoint. */
  hasStats: true;
  /** Shape of the tensor: [T, hidden] mostly, [heads*T, T] for scores/probs, [T, heads] for gate. */
  rows: number;
  cols: number;
  /** Infinity norm ||X||_inf. */
  maxAbs: number;
  mean: number;
  /** Population standard deviation. */
  std: number;
  min: number;
  max: number;
  /** Pearson kurtosis of the flattened tensor (normal = 3). */
  kurtosis: number;
  /** RMS kurtosis over neurons (1 when all neurons have equal RMS). */
  rmsKurtosis: number;
  /** Whether fake quantization was applied here. */
  quantized: boolean;
  /** Mean squared error of the fake quantization. */
  quantMse: number;
  /** 10 log10(||x||^2 / ||x - x_hat||^2) in dB (Infinity when exact). */
  quantSqnrDb: number;
  /** The per-tensor range used (NaN for per-token quantization, 0 when not quantized). */
  quantMin: number;
  quantMax: number;
  /** Columns whose max |x| exceeds 6x the median column max. */
  nOutliers: number;
  /** Up to 8 columns with the largest max |x|, descending. */
  topDims: number[];
  /** Their max |x|. */
  topVals: number[];
  /** The row (token) holding each. */
  topTokens: number[];
}

/**
 * A point whose statistics the forward's `stats` option left out: its shape
 * and quantization range hold; every measure is null and the top lists are
 * empty (C: qs_point_stats.has_stats 0).
 */
export interface UnmeasuredPoint {
  layer: number;
  point: PointName;
  hasStats: false;
  rows: number;
  cols: number;
  quantized: boolean;
  quantMin: number;
  quantMax: number;
  maxAbs: null;
  mean: null;
  std: null;
  min: null;
  max: null;
  kurtosis: null;
  rmsKurtosis: null;
  quantMse: null;
  quantSqnrDb: null;
  nOutliers: null;
  topDims: [];
  topVals: [];
  topTokens: [];
}

/** One attention head seen as a possible no-op (qs_head_stats). */
export interface HeadStats {
  /** Mean over queries of the probability on delimiter keys. */
  delimMass: number;
  /** Mean over queries of the head output norm. */
  outNorm: number;
  /** Mean over keys of ||v_j||. */
  valueNorm: number;
  /** Mean ||v_j|| over delimiter keys (0 if none). */
  delimValueNorm: number;
  /** Mean attention entropy in nats. */
  entropy: number;
  /** Mean over queries of the largest probability. */
  maxProb: number;
  /** delimMass * (1 - outNorm / valueNorm), clamped to [0, 1]. */
  noopScore: number;
  /** Mean gate value; 1 without gating. */
  gateMean: number;
}

/**
 * A named evaluation setting of the post-hoc fixes' papers (settings(); C:
 * qs_setting_quant), made for the model it is used with (its linears' input
 * points). Every `quant` option takes one instead of a QuantConfig:
 * - 'w8a8': the paper's, W8A8 per tensor, static ranges, every point;
 * - 'w8a8-token': SmoothQuant's, per-channel weights, per-token dynamic
 *   activations at the linears' inputs and q, k, v;
 * - 'w4a16': GPTQ's, 4-bit per-channel weights, float activations;
 * - 'w4a8', 'w4a4': the rotations', 4-bit weights, 8- or 4-bit per-token
 *   activations at the linears' inputs.
 * On a model carrying LLM.int8() (and no GPTQ) a setting runs the real int8
 * kernels beside the float columns, as `qs eval --fix` does.
 */
export type SettingName = 'w8a8' | 'w8a8-token' | 'w4a16' | 'w4a8' | 'w4a4';

/**
 * A post-hoc fix as `qs eval --fix` takes it: 'smoothquant[:alpha=0.5]',
 * 'rotate[:seed=1]', 'int8split[:threshold=6]',
 * 'gptq[:bits=4,group=0,damp=0.01,block=128]' or 'none'; 'A+B' stacks fixes.
 * Or an object with the same names: { name: 'smoothquant', alpha: 0.5 }.
 * C parses and checks them (qs_fix_parse): alpha in [0, 1], bits 2..16,
 * threshold > 0, damp in [0, 1], group >= 0, block >= 1.
 */
export type FixSpec =
  | string
  | { name: 'smoothquant'; alpha?: number }
  | { name: 'rotate'; seed?: number }
  | { name: 'int8split'; threshold?: number }
  | { name: 'gptq'; bits?: number; group?: number; damp?: number; block?: number }
  | { name: 'none' };

export interface WithFixOptions {
  /** Calibration window length in tokens including specials; 0 = min(128, maxPositions). */
  seqLen?: number;
  /** Calibration windows at most; 0 = 32 (qs eval --fix-calib's default). */
  maxWindows?: number;
  /**
   * The setting the fixes are made for: GPTQ quantizes on its weight grid
   * (bits, granularity, symmetry; `bits=` in the spec must agree). The other
   * fixes serve every setting and ignore it. GPTQ needs bits= or this.
   */
  quant?: QuantConfig | SettingName;
}

/** What withFix() did for one fix (C: qs_fix_report). */
export interface FixReport {
  /** The fix's canonical spec: only the parameters that differ from its defaults ('smoothquant:alpha=0.8'). */
  fix: string;
  /** Which points and linears it acts on, in words. */
  covers: string;
  /** Calibration windows it measured (0 for rotate and int8split, which need none). */
  calibrationWindows: number;
  /** Part of it acts at run time (toFiles() then refuses: no checkpoint holds it). */
  runtime: boolean;
  /** GPTQ only: input columns never active (their weights set to 0, as the official code does). */
  deadColumns?: number;
  /** GPTQ only: Σ over linears of ‖XWᵀ − XW_qᵀ‖² on the calibration inputs, and the same for round to nearest. */
  gptqError?: number;
  rtnError?: number;
  /** gptqError / rtnError (below 1: GPTQ did better). */
  errorRatio?: number | null;
}

export interface ForwardOptions {
  /** BERT token type per token (default all 0); OPT models reject them. */
  tokenTypes?: ArrayLike<number>;
  /** Per token 1 = may be attended to (BERT padding); default all. */
  attentionMask?: ArrayLike<number | boolean>;
  /** Per token 1 if delimiter, for the head statistics (Encoding.delimiters). */
  delimiters?: ArrayLike<number | boolean>;
  /**
   * Quantize this pass with this config. It is installed only when it differs
   * from the installed one, so ranges from calibrate() with the same config stay
   * in use; after a trainer step it is installed again, over the new weights.
   * Omitted or null: a float pass. A SettingName stands for its config.
   */
  quant?: QuantConfig | SettingName | null;
  /** Points whose full tensors are returned in `captures`. */
  capture?: PointName[];
  /**
   * On a model from withFix(): the statistics and captures of the points a
   * fix quantizes in another basis (BERT's SmoothQuant scales, online
   * rotations) describe what the quantizer sees there, x / s or x Q, instead
   * of x (C: qs_fix_show_transformed). OPT's rotated stream is rotated in the
   * model itself either way. Default false.
   */
  transformed?: boolean;
  /**
   * Which statistics this pass computes (C: qs_forward_opts skip_stats,
   * skip_point_stats, skip_head_stats); the numbers computed are the same as
   * in a pass with all of them. true or omitted: every point, the heads and
   * the summary. false: none (points are UnmeasuredPoint, heads and summary
   * null; only the logits are checked for NaN). An object: the points listed
   * in `points` (omitted: all) and the head statistics unless `heads` is
   * false; `summary` is null unless ffn_out, ffn_res and layer_out are
   * among the points. Every point is still checked for NaN and inf.
   */
  stats?: boolean | StatsSelection;
}

/** ForwardOptions.stats as an object. */
export interface StatsSelection {
  /** Points whose statistics (and quantization error) are computed; default all. */
  points?: PointName[];
  /** Per-head attention statistics; default true. */
  heads?: boolean;
}

export interface ForwardResult {
  /** [T][vocab] row-major. */
  logits: Float32Array;
  /** [T, vocabSize]. */
  shape: [number, number];
  /**
   * nLayers + 1 arrays of [T][hidden]: the embeddings, then each layer's
   * output (OPT: the last one after the final LayerNorm), as Hugging Face's
   * output_hidden_states.
   */
  hiddenStates: Float32Array[];
  /** Every point the model has, in data-flow order (embed, layer 0 ..., final). */
  points: PointStats[];
  /** heads[layer][head]. */
  heads: HeadStats[][];
  /** The paper's outlier figures for this sequence, as `qs eval` defines them. */
  summary: OutlierSummary;
  /**
   * captures[name][layer]: the full tensor ([rows][cols] as in the point's
   * stats); global points have one entry. null where the model lacks the point.
   */
  captures: Partial<Record<PointName, (Float32Array | null)[]>>;
}

/** The result of a forward with a `stats` option other than true: what it left out is null. */
export interface SelectedForwardResult extends Omit<ForwardResult, 'points' | 'heads' | 'summary'> {
  points: (PointStats | UnmeasuredPoint)[];
  /** null when the head statistics were left out. */
  heads: HeadStats[][] | null;
  /** null unless the statistics of ffn_out, ffn_res and layer_out were computed. */
  summary: OutlierSummary | null;
}

/**
 * The outlier figures of the paper's Table 2, measured where the official
 * validation scripts measure them (C: qs_outlier_summary): per sequence, then
 * the maximum or mean over layers.
 */
export interface OutlierSummary {
  /** Sequences the figures are averaged over: 1 for forward(), the windows for outlierSummary(). */
  nSeqs: number;
  /** max over layers of ‖x‖∞ at the LayerNorm input x + FFN(x) (point 'ffn_res'). */
  maxInfNorm: number;
  /** the layer holding maxInfNorm. */
  maxInfNormLayer: number;
  /** max over layers of ‖x‖∞ at the FFN output ('ffn_out'). */
  maxFfnOutInfNorm: number;
  /** max over layers of ‖x‖∞ at the layer output ('layer_out'; BERT: after the LayerNorm). */
  maxLnOutInfNorm: number;
  /** Pearson kurtosis at 'ffn_out' and 'layer_out', mean and max over the 2 × layers values. */
  avgKurtosis: number;
  maxKurtosis: number;
  /** He et al.'s kurtosis of neuron RMS at 'layer_out', mean over layers. */
  avgRmsKurtosis: number;
  /**
   * He et al.'s signal propagation at 'layer_out': the mean input-wise
   * correlation (off-diagonal mean of the tokens' Gram matrix, each token
   * centred across its width, over their common RMS; qs_input_correlation),
   * pooled over the tokens, mean over layers. In [−1, 1]; near 1 when all
   * tokens look alike (rank collapse, which goes with outlier features).
   */
  avgInputCorr: number;
}

/** A calibration batch: one sequence of ids, or one with BERT token types. */
export type CalibrationBatch = TokenIds | { ids: TokenIds; tokenTypes?: ArrayLike<number> };

export interface CalibrateOptions {
  /** The config to calibrate (default: the C defaults), or a setting's. */
  quant?: QuantConfig | SettingName;
  /**
   * Checked between batches: once aborted the call rejects (see
   * QuantscopeError) and no quant config is left installed, so ranges from
   * part of the batches never pass for calibrated ones.
   */
  signal?: AbortSignal;
}

/** What evaluate() reports between its steps: windows scored so far and in all, over the float pass, the calibration and the quantized pass. */
export interface EvaluateProgress {
  done: number;
  total: number;
}

export interface EvaluateOptions {
  /** Window length in tokens including specials; 0 = min(128, maxPositions). */
  seqLen?: number;
  /** 0 = every full window of the stream. */
  maxWindows?: number;
  /** BERT: seed of the masked positions (integer in [0, 2^53)). Default 0. */
  maskSeed?: number;
  /** BERT: fraction of positions masked (80/10/10); 0 = 0.15. */
  maskProb?: number;
  /** Also score with this quant config, or a setting's (calibrated on the first windows). */
  quant?: QuantConfig | SettingName | null;
  /** Windows used for calibration; 0 = 4. */
  calibWindows?: number;
  /**
   * Windows scored side by side, 1..configure()'s threads (the default). The
   * results are the same bit for bit whatever the number.
   */
  threads?: number;
  /**
   * Special ids for the windows; by default the tokenizer's ([CLS], [SEP],
   * [MASK]; OPT: [CLS] as BOS). Needed for BERT models without a tokenizer.
   * bos: -1 = no BOS.
   */
  specials?: { cls?: number; sep?: number; mask?: number; bos?: number };
  /**
   * Checked between windows (the call runs in steps of `threads` windows and
   * lets the event loop run between them): once aborted the call rejects
   * (see QuantscopeError). The model stays usable; a later evaluate() gives
   * what a fresh one gives.
   */
  signal?: AbortSignal;
  /** Called after every step (as with `signal`, evaluation then runs in steps), last with done === total. */
  onProgress?: (progress: EvaluateProgress) => void;
}

export interface EvaluateResult {
  /** Mean negative log-likelihood in nats, float model. */
  fpNll: number;
  /** exp(fpNll). */
  fpPpl: number;
  /** The same quantized (NaN without `quant`). */
  qNll: number;
  qPpl: number;
  /** Tokens scored. */
  nPredicted: number;
  nWindows: number;
  /**
   * On a model carrying LLM.int8() and with `quant`: the share of the
   * linears' input columns kept in float over the quantized pass (qs eval
   * --fix's float_column_share).
   */
  floatColumnShare?: number;
}

/** The tokenizer's special ids (-1 when absent) and its vocabulary size. */
export interface SpecialTokens {
  pad: number;
  cls: number;
  sep: number;
  mask: number;
  unk: number;
  vocabSize: number;
}

/**
 * A loaded model. Calls are queued: each runs after the previous one on the
 * same model has finished, so concurrent callers get the results of serial
 * calls. Results are copies and stay valid after later calls.
 */
export declare class Model {
  private constructor();
  readonly config: ModelConfig;
  /** Whether the model has a tokenizer (byte-level from config, or WordPiece from vocab.txt). */
  readonly hasTokenizer: boolean;
  /** True once dispose() was called. */
  readonly disposed: boolean;
  /** Encodes UTF-8 text; addSpecial (default true) wraps it in [CLS] ... [SEP]. */
  tokenize(text: string, options?: { addSpecial?: boolean }): Promise<Encoding>;
  /** Decodes ids into text (invalid UTF-8 from byte-level ids becomes U+FFFD). */
  detokenize(ids: TokenIds): Promise<string>;
  specialTokens(): Promise<SpecialTokens>;
  /** 1 for each id the tokenizer counts as a delimiter, as tokenize() marks them (for ForwardOptions.delimiters). Needs a tokenizer. */
  delimiters(ids: TokenIds): Promise<Uint8Array>;
  /** The display text of each id ("[MASK]", "##ing", "\\n" for byte 10); null for ids out of range. Needs a tokenizer. */
  pieces(ids: TokenIds): Promise<(string | null)[]>;
  /** Runs the model on token ids (1 .. maxPositions of them). */
  forward(ids: TokenIds, options?: ForwardOptions & { stats?: true }): Promise<ForwardResult>;
  /** The same with a choice of statistics (ForwardOptions.stats). */
  forward(ids: TokenIds, options: ForwardOptions): Promise<SelectedForwardResult>;
  /**
   * Installs `quant` afresh (default: the C defaults) and feeds each batch to
   * the range observers: later forwards with the same quant config use these
   * static ranges. Resolves to the number of batches seen.
   */
  calibrate(batches: CalibrationBatch[], options?: CalibrateOptions): Promise<{ batches: number }>;
  /** Drops the installed quant config (float weights remain untouched anyway). */
  clearQuant(): Promise<void>;
  /**
   * How many calibration batches the ranges installed for `quant` come from:
   * 0 when another config (or none) is installed, or this one was installed
   * by a forward without calibrate() since (its ranges then come from each
   * input), or evaluate() replaced it. Lets a caller calibrate only when the
   * config changed.
   */
  calibratedBatches(quant: QuantConfig | SettingName): Promise<number>;
  /**
   * Perplexity over a token stream in consecutive windows, float and (with
   * `quant`) quantized; text is tokenized without specials first.
   * Replaces the installed quant config when `quant` is given.
   */
  evaluate(idsOrText: TokenIds | string, options?: EvaluateOptions): Promise<EvaluateResult>;
  /**
   * The outlier figures over the first `maxWindows` windows (0 = 64) that
   * evaluate() scores with the same options (BERT windows masked as for
   * perplexity; C: qs_outlier_windows): what `qs eval` prints beside the
   * perplexities. A float pass, whatever quant config is installed.
   */
  outlierSummary(idsOrText: TokenIds | string, options?: Pick<EvaluateOptions, 'seqLen' | 'maxWindows' | 'maskSeed' | 'maskProb' | 'specials'>): Promise<OutlierSummary>;
  /**
   * The model's files as qs_model_save_dir writes them (Hugging Face tensor
   * names, tied head stored once): config.json text and model.safetensors bytes,
   * ready for loadModel() or a download.
   */
  toFiles(): Promise<{ config: string; safetensors: Uint8Array }>;
  /**
   * A trainer that changes this model's parameters in place, over `text`
   * (byte-level models only; qs_trainer_new). Its calls share the model's queue.
   * Fails with the C message on configs the model cannot train and on text
   * shorter than one sample.
   */
  createTrainer(text: string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView, options?: TrainOptions): Promise<Trainer>;
  /** Frees the model (and its trainers) after queued calls finish. Idempotent; later calls reject. */
  dispose(): Promise<void>;
  /**
   * A new model: a copy of this one with post-hoc fixes applied in order
   * (C: qs_fix_apply, as `qs eval --fix`), each calibrated where it needs to
   * be (SmoothQuant's activation maxima, GPTQ's Hessians) on `calibration`:
   * text, tokenized without specials as evaluate() does, or ids, cut into
   * windows as evaluate() cuts them. rotate and int8split need none (null).
   * This model is left as it was (fixes change weights in place, so they
   * change the copy); dispose() the copy when done. Fixes stack in one call
   * (smoothquant before rotate, gptq last, each once); a model from
   * withFix() takes no more. Bad input rejects with C's message naming the
   * fix and parameter (QS_ERR_CONFIG: unknown fix, parameter or setting, a
   * fix that does not apply to the architecture or does not stack;
   * QS_ERR_RANGE: alpha outside [0, 1], bits outside 2..16, calibration with
   * no tokens) and makes nothing.
   */
  withFix(fixes: FixSpec | FixSpec[], calibration?: TokenIds | string | null, options?: WithFixOptions): Promise<Model>;
  /** The fixes withFix() applied to this model, in order; [] for a model as loaded. */
  readonly fixes: readonly FixReport[];
  /** The QuantConfig a setting stands for on this model. */
  setting(name: SettingName): Promise<Required<QuantConfig>>;
}

/** Training settings (qs_train_config); omitted fields take the C defaults (see defaultTrain()). */
export interface TrainOptions {
  /** Sequences per step. Default 64. */
  batchSize?: number;
  /** Tokens per sequence, at most maxPositions. Default 128. */
  seqLen?: number;
  /** Length of the schedule. Default 2000. */
  steps?: number;
  /** Linear warmup steps; default 5 % of steps, rounded down (the library's qs_train_default_warmup). */
  warmupSteps?: number;
  lr?: number;
  /** The cosine decays to minLrRatio * lr. */
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Global gradient norm clip; 0 = off. */
  gradClip?: number;
  /** Masked-LM rate (BERT). Default 0.15. */
  maskProb?: number;
  /** Held-out share of the text, in blocks (qs_text_split). Default 0.05. */
  valFraction?: number;
  /** Clipped softmax: ramp gamma from 0 over the warmup. Default false. */
  gammaRamp?: boolean;
  /** Integer seed in [0, 2^53). Default 0. */
  seed?: number;
  /** Threads sharing each step's sequences, 1..configure()'s threads (the default). */
  threads?: number;
  /**
   * 'adamw' (the default), 'soap' (Vyas et al. 2024, as soap.py: Adam in the
   * eigenbases of L = E[G Gᵀ] and R = E[Gᵀ G]) or 'shampoo' (L^(−1/4) G
   * R^(−1/4), grafted onto Adam's step length). The other options default to
   * that optimiser's own (qs_train_config_for: SOAP lr 3e-3, betas 0.95,
   * 0.95; see defaultTrain(optimizer)). Unknown names are QS_ERR_ARG.
   */
  optimizer?: Optimizer;
  /** SOAP only: the moving-average rate of L and R, in [0, 1). Default 0.95. */
  shampooBeta?: number;
  /**
   * SOAP and Shampoo: SOAP refreshes its eigenbases (one power step and QR)
   * every this many updates, Shampoo recomputes its inverse roots every this
   * many steps; at least 1. Default 10.
   */
  precondEvery?: number;
  /** SOAP and Shampoo: a tensor side longer than this is not preconditioned; at least 1. Default 10000. */
  maxPrecondDim?: number;
  /** Shampoo only: ε I added to L and R before the inverse root, > 0. Default 1e-6. */
  precondEps?: number;
  // A setting of another optimiser than the chosen one is refused (QS_ERR_ARG),
  // as qs train refuses its flag: it would be silently ignored. Out-of-range
  // values are QS_ERR_RANGE naming the setting (beta1 1 outside [0, 1)).
}

/** The trainer's optimisers (qs_optimizer_name). */
export type Optimizer = 'adamw' | 'soap' | 'shampoo';

/** One optimiser step's log (qs_step_log). */
export interface StepLog {
  /** Steps done after this one. */
  step: number;
  /** Mean cross-entropy of the step's scored tokens (nats). */
  loss: number;
  /** Global L2 norm before clipping. */
  gradNorm: number;
  lr: number;
  /** Tokens processed in the step. */
  tokens: number;
}

/** Validation loss and outlier statistics (qs_eval_log). */
export interface TrainEval {
  step: number;
  valLoss: number;
  valPpl: number;
  /**
   * OutlierSummary's figures over the first 16 validation sequences: ‖x‖∞ at
   * the LayerNorm input x + FFN(x) and at the FFN output, Pearson kurtosis at
   * the FFN and layer outputs, RMS kurtosis at the layer output, and He et
   * al.'s signal propagation (OutlierSummary.avgInputCorr, in [−1, 1]).
   */
  maxInfNorm: number;
  maxFfnOutInfNorm: number;
  avgKurtosis: number;
  maxKurtosis: number;
  avgRmsKurtosis: number;
  avgInputCorr: number;
}

/** Trains its model in place (model.createTrainer), on options.threads threads. */
export declare class Trainer {
  private constructor();
  readonly model: Model;
  /** The clipped softmax warning of qs_trainer_new (threshold above 1/T), or null. */
  readonly warning: string | null;
  readonly totalSteps: number;
  /** The optimiser it trains with. */
  readonly optimizer: Optimizer;
  /**
   * The context-free baseline for TrainEval.valLoss, in nats: the validation
   * text's bytes under the training text's byte frequencies (add-one). A model
   * at or above it predicts no better than byte counts (the unigram plateau).
   */
  readonly unigramLoss: number;
  readonly stepsDone: number;
  readonly disposed: boolean;
  /**
   * One optimiser step. A non-finite loss rejects with QS_ERR_NAN; the
   * parameters stay the last good ones. `signal` is checked when the step's
   * turn in the model's queue comes (a step runs to its end once begun), so
   * a loop of steps stops between two steps.
   */
  step(options?: { signal?: AbortSignal }): Promise<StepLog>;
  /** Loss on `batches` fixed validation batches (default 2) and statistics of the first validation sequence; `signal` as in step(). */
  evaluate(options?: { batches?: number; signal?: AbortSignal }): Promise<TrainEval>;
  /** Frees the trainer; the model stays. Idempotent. */
  dispose(): Promise<void>;
}

/** A freshly initialised model (BERT/OPT init, deterministic for the seed) from config.json (object, text, bytes or Blob). */
export declare function createModel(
  config: object | string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Blob,
  options?: { seed?: number }): Promise<Model>;

/** The training or validation blocks of a text, cut exactly as the trainer cuts them (qs_text_split). */
export declare function textSplit(
  text: string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView,
  options?: { valFraction?: number; split?: 'train' | 'val' }): Promise<string>;

/** The grid the C quantizer builds for [min, max] (qs_qparams_from_range): x̂ = scale (q − zero), q in [qmin, qmax]. */
export interface QuantGrid { scale: number; zero: number; qmin: number; qmax: number; lo: number; hi: number }
export declare function quantGrid(min: number, max: number, bits: number, symmetric?: boolean): Promise<QuantGrid>;

/**
 * The defaults createTrainer uses with an optimiser ('adamw' when none is
 * given; qs_train_config_for: SOAP has its own lr and betas; threads:
 * configure()'s).
 */
export declare function defaultTrain(optimizer?: Optimizer): Promise<Required<Omit<TrainOptions, 'seed'>>>;

/** A model given as its files' contents (bytes may be in a SharedArrayBuffer; a Blob is read). */
export interface ModelFiles {
  /** config.json as an object, JSON text, bytes or Blob. */
  config: object | string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Blob;
  /** model.safetensors bytes. */
  safetensors: ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Blob;
  /** vocab.txt (WordPiece) as text, bytes or Blob. */
  vocab?: string | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Blob | null;
}

/** What loadModel's onProgress receives. */
export interface LoadProgress {
  /** Bytes read so far, over every file of the source. */
  loaded: number;
  /**
   * Bytes of the files found so far: it grows when a file is found later
   * (vocab.txt, fetched after config.json says it is needed), and is null
   * while a size is unknown (an HTTP response without Content-Length, or a
   * compressed one).
   */
  total: number | null;
}

export interface LoadOptions {
  /**
   * Called as bytes arrive (files are read in chunks, a Node folder's after
   * their sizes are known, so the first call has the total) and once more
   * after the last, with loaded === total then. Contents given in memory
   * count as read at once.
   */
  onProgress?: (progress: LoadProgress) => void;
}

/** Anything with name and arrayBuffer(), such as File. */
export interface NamedBlob {
  readonly name: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * Loads a model from
 * - a folder: a path, or a file: URL (string or URL object) in Node; a URL
 *   (relative to the page) in the browser or an http(s) URL in Node.
 *   config.json and model.safetensors are required, vocab.txt optional.
 * - the files' contents ({config, safetensors, vocab?});
 * - a FileList or array of File: picked by name as pickModelFiles does
 *   (C's size limits are checked before a File is read).
 * model.safetensors streams into the parameters (C's qs_model_loader, in
 * pieces of 4 MiB; F16 and BF16 converted to float32 as they arrive): the
 * WASM memory after loading holds the parameters once, and neither it nor
 * JS holds the file whole, except an HTTP body without Content-Length,
 * which is read whole first (the loader needs the size).
 */
export declare function loadModel(
  source: string | URL | ModelFiles | ArrayLike<NamedBlob>, options?: LoadOptions): Promise<Model>;

/**
 * The files loadModel(files) takes from a list (FileList, array of File):
 * config.json, model.safetensors (else the first *.safetensors) and
 * vocab.txt, each null when absent; for callers that check the choice first.
 */
export declare function pickModelFiles<T extends NamedBlob>(files: ArrayLike<T>):
  { config: T | null; safetensors: T | null; vocab: T | null };

/** The capture points in C enum order; global ones exist once per model. */
export declare function pointNames(): Promise<{ name: PointName; global: boolean }[]>;

/** The C library's default quant config (W8A8 per-tensor, the paper's setting). */
export declare function defaultQuant(): Promise<Required<QuantConfig>>;

/** The named evaluation settings (SettingName), in C's order, each with its one-line description. */
export declare function settings(): Promise<{ name: SettingName; description: string }[]>;

/** Bytes of WebAssembly memory held by the shared instance (it grows, never shrinks). */
export declare function memoryBytes(): Promise<number>;

/** heapBytes: the memory's size (memoryBytes()); usedBytes: what malloc has handed out and not had back. */
export declare function memoryUsage(): Promise<{ heapBytes: number; usedBytes: number }>;

/**
 * Chooses the WebAssembly build; call it before anything that starts the core.
 * threads > 1 loads the pthreads build (scripts/build-wasm.sh --threads), on
 * which evaluate() and createTrainer() use that many threads by default. It
 * needs a cross-origin isolated page (COOP/COEP) and a browser; the first call
 * that starts the core rejects with QS_ERR_ARG otherwise, after which
 * configure({ threads: 1 }) may be called. Throws QS_ERR_ARG for a count
 * outside [1, 16] or a change after the core started. relaxedSimd (default
 * true) lets the build run its relaxed-SIMD module (fused multiply-adds)
 * where the engine has relaxed SIMD; false keeps plain SIMD128.
 */
export declare function configure(options?: { threads?: number; relaxedSimd?: boolean }): void;

/**
 * The build that runs: threads configured, the pthread pool (1 = the
 * single-threaded build), and whether it is the relaxed-SIMD module.
 */
export declare function runtimeInfo(): Promise<{ threads: number; pool: number; relaxedSimd: boolean }>;
