// wasm/quantscope.d.ts: the types of quantscope.mjs, the JavaScript API shared
// by Node and the page; names mirror include/quantscope/*.h.

/** Stable status names of the C library (status.h), found in `QuantscopeError.code`. */
export type StatusName =
  | 'QS_ERR_ARG' | 'QS_ERR_IO' | 'QS_ERR_FORMAT' | 'QS_ERR_CONFIG' | 'QS_ERR_SHAPE'
  | 'QS_ERR_RANGE' | 'QS_ERR_NAN' | 'QS_ERR_NOMEM';

/**
 * Every failure is an Error whose message is the C library's message word for
 * word (checks done in JavaScript, such as argument types and array lengths,
 * use code 'QS_ERR_ARG' and their own message). Promises reject with it.
 */
export interface QuantscopeError extends Error {
  code: StatusName;
}

/** Named capture points (model.h, qs_point). */
export type PointName =
  | 'embed' | 'attn_in' | 'q' | 'k' | 'v' | 'scores' | 'probs' | 'gate' | 'ctx' | 'attn_out'
  | 'attn_res' | 'ffn_in' | 'ffn_h' | 'ffn_act' | 'ffn_out' | 'ffn_res' | 'layer_out' | 'final';

/** The model's configuration, read back from C (its config.json writer) after parsing. */
export interface ModelConfig {
  arch: 'bert' | 'opt';
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
  /** Attention softmax (RESEARCH.md §2, §6). */
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

/** Fake quantization of a forward pass (RESEARCH.md §4). Omitted fields take the C defaults (see defaultQuant()). */
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
  /** For 'percentile', in (50, 100]. Default 99.999. */
  percentile?: number;
  /** Points whose activations are quantized. Default: all. */
  points?: PointName[];
}

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
   * in use. Omitted or null: a float pass.
   */
  quant?: QuantConfig | null;
  /** Points whose full tensors are returned in `captures`. */
  capture?: PointName[];
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
  /**
   * captures[name][layer]: the full tensor ([rows][cols] as in the point's
   * stats); global points have one entry. null where the model lacks the point.
   */
  captures: Partial<Record<PointName, (Float32Array | null)[]>>;
}

/** A calibration batch: one sequence of ids, or one with BERT token types. */
export type CalibrationBatch = ArrayLike<number> | { ids: ArrayLike<number>; tokenTypes?: ArrayLike<number> };

export interface EvaluateOptions {
  /** Window length in tokens including specials; 0 = min(128, maxPositions). */
  seqLen?: number;
  /** 0 = every full window of the stream. */
  maxWindows?: number;
  /** BERT: seed of the masked positions (integer in [0, 2^53)). Default 0. */
  maskSeed?: number;
  /** BERT: fraction of positions masked (80/10/10); 0 = 0.15. */
  maskProb?: number;
  /** Also score with this quant config (calibrated on the first windows). */
  quant?: QuantConfig | null;
  /** Windows used for calibration; 0 = 4. */
  calibWindows?: number;
  /**
   * Special ids for the windows; by default the tokenizer's ([CLS], [SEP],
   * [MASK]; OPT: [CLS] as BOS). Needed for BERT models without a tokenizer.
   * bos: -1 = no BOS.
   */
  specials?: { cls?: number; sep?: number; mask?: number; bos?: number };
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
  detokenize(ids: ArrayLike<number>): Promise<string>;
  specialTokens(): Promise<SpecialTokens>;
  /** Runs the model on token ids (1 .. maxPositions of them). */
  forward(ids: ArrayLike<number>, options?: ForwardOptions): Promise<ForwardResult>;
  /**
   * Installs `quant` afresh (default: the C defaults) and feeds each batch to
   * the range observers: later forwards with the same quant config use these
   * static ranges. Resolves to the number of batches seen.
   */
  calibrate(batches: CalibrationBatch[], options?: { quant?: QuantConfig }): Promise<{ batches: number }>;
  /** Drops the installed quant config (float weights remain untouched anyway). */
  clearQuant(): Promise<void>;
  /**
   * Perplexity over a token stream in consecutive windows, float and (with
   * `quant`) quantized; text is tokenized without specials first.
   * Replaces the installed quant config when `quant` is given.
   */
  evaluate(idsOrText: ArrayLike<number> | string, options?: EvaluateOptions): Promise<EvaluateResult>;
  /** Frees the model after queued calls finish. Idempotent; later calls reject. */
  dispose(): Promise<void>;
}

/** A model given as its files' contents. */
export interface ModelFiles {
  /** config.json as an object, JSON text, or bytes. */
  config: object | string | ArrayBuffer | ArrayBufferView;
  /** model.safetensors bytes. */
  safetensors: ArrayBuffer | ArrayBufferView;
  /** vocab.txt (WordPiece) as text or bytes. */
  vocab?: string | ArrayBuffer | ArrayBufferView | null;
}

/** Anything with name and arrayBuffer(), such as File. */
export interface NamedBlob {
  readonly name: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * Loads a model from
 * - a folder: a path (or file: URL) in Node; a URL (relative to the page) in
 *   the browser or an http(s) URL in Node. config.json and model.safetensors
 *   are required, vocab.txt optional.
 * - the files' contents ({config, safetensors, vocab?});
 * - a FileList or array of File: picked by name (config.json,
 *   model.safetensors or the one *.safetensors, vocab.txt).
 */
export declare function loadModel(
  source: string | URL | ModelFiles | ArrayLike<NamedBlob>): Promise<Model>;

/** The capture points in C enum order; global ones exist once per model. */
export declare function pointNames(): Promise<{ name: PointName; global: boolean }[]>;

/** The C library's default quant config (W8A8 per-tensor, the paper's setting). */
export declare function defaultQuant(): Promise<Required<QuantConfig>>;

/** Bytes of WebAssembly memory held by the shared instance (it grows, never shrinks). */
export declare function memoryBytes(): Promise<number>;
