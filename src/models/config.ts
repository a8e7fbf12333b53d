/**
 * Model hyperparameters from GGUF metadata (llama.cpp's `{arch}.*` keys), validated once at
 * load so the forward pass can trust them.
 */
import { ggmlTypeInfo } from '../gguf/ggml-type.js';
import { InvalidModelError, UnsupportedTensorTypeError } from '../errors.js';

/** What the forward pass needs to know about a model, read from its GGUF metadata. */
export interface ModelConfig {
  /** general.architecture ("llama", "qwen2", ...). */
  architecture: string;
  /** Residual stream width (n_embd). */
  dim: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Hidden width of the SwiGLU FFN (n_ff). */
  ffnDim: number;
  vocabSize: number;
  /** Context length the model was trained for. */
  contextLength: number;
  rmsEps: number;
  ropeFreqBase: number;
  /** Linear RoPE scaling factor (positions are divided by it); 1 = none. */
  ropeScale: number;
  /** True when the file has no output.weight: the output matmul uses token_embd (tied). */
  tiedOutput: boolean;
  /** True when the file has rope_freqs.weight (llama3 rope scaling as frequency factors). */
  hasRopeFreqs: boolean;
  /** Rotated dimensions of each head (rope.dimension_count); headDim unless the architecture allows partial rotary. */
  ropeDim: number;
  /** Mixture-of-Experts layers (models/moe-config.ts); absent for dense models. */
  moe?: MoeConfig;
  /** Per layer: the sliding window of a local layer, 0 for a global one; absent = all global (the KV cache's KvShape.layerWindows). */
  layerWindows?: number[];
}

/** The MoE part of a config: every block's FFN is a routed mixture of SwiGLU experts. */
export interface MoeConfig {
  /** {arch}.expert_count */
  numExperts: number;
  /** {arch}.expert_used_count (k) */
  numExpertsUsed: number;
  /** Hidden width of one expert (ffn_*_exps dims). */
  expertFfnDim: number;
  /** {arch}.expert_weights_scale: factor on the routing weights; 0 or 1 = none. */
  weightsScale: number;
}

/** What an architecture accepts beyond the common config. */
export interface ReadConfigOptions {
  /** rope.dimension_count may be below the head dimension (phi3: Phi-4-mini rotates 96 of 128). */
  partialRotary?: boolean;
}

/** The part of a parsed GGUF file the config reader looks at (H1's GgufFile fits). */
export interface GgufMetadataSource {
  get(key: string): unknown;
  readonly tensors: ReadonlyArray<{ name: string; type: number; dims: readonly number[] }>;
}

function num(file: GgufMetadataSource, key: string, fallback?: number): number {
  const v = file.get(key);
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new InvalidModelError(`metadata key '${key}' is missing`);
  }
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) {
    throw new InvalidModelError(`metadata key '${key}' should be a number, got ${typeof v}`);
  }
  return n;
}

function positiveInt(file: GgufMetadataSource, key: string, fallback?: number): number {
  const n = num(file, key, fallback);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidModelError(`metadata key '${key}' should be a positive integer, got ${n}`);
  }
  return n;
}

/**
 * Reads and validates the config of a decoder-only transformer in llama.cpp's key scheme.
 * Throws InvalidModelError (missing/inconsistent keys or tensors) or UnsupportedTensorTypeError.
 */
export function readModelConfig(file: GgufMetadataSource, arch: string, options: ReadConfigOptions = {}): ModelConfig {
  const tensors = new Map(file.tensors.map((t) => [t.name, t]));
  const embd = tensors.get('token_embd.weight');
  if (!embd) throw new InvalidModelError(`tensor 'token_embd.weight' is missing`);

  const dim = positiveInt(file, `${arch}.embedding_length`);
  const numLayers = positiveInt(file, `${arch}.block_count`);
  const numHeads = positiveInt(file, `${arch}.attention.head_count`);
  // head_count_kv may be absent (no GQA) and, in some files, a per-layer array: take layer 0.
  const kvRaw = file.get(`${arch}.attention.head_count_kv`);
  const numKvHeads = Array.isArray(kvRaw) ? Number(kvRaw[0]) : kvRaw === undefined ? numHeads : positiveInt(file, `${arch}.attention.head_count_kv`);
  const headDim = positiveInt(file, `${arch}.attention.key_length`, dim / numHeads);
  const ffnDim = positiveInt(file, `${arch}.feed_forward_length`);
  const vocabSize = positiveInt(file, `${arch}.vocab_size`, embd.dims[1]);
  const contextLength = positiveInt(file, `${arch}.context_length`, 2048);
  const rmsEps = num(file, `${arch}.attention.layer_norm_rms_epsilon`, 1e-5);
  const ropeFreqBase = num(file, `${arch}.rope.freq_base`, 10000);
  const ropeDim = positiveInt(file, `${arch}.rope.dimension_count`, headDim);
  const scalingType = file.get(`${arch}.rope.scaling.type`);
  const scalingFactor = num(file, `${arch}.rope.scaling.factor`, 0);
  const ropeScale = scalingType === 'linear' && scalingFactor > 0 ? scalingFactor : 1;

  if (!Number.isSafeInteger(numKvHeads) || numKvHeads <= 0 || numHeads % numKvHeads !== 0) {
    throw new InvalidModelError(`head_count ${numHeads} is not a multiple of head_count_kv ${numKvHeads}`);
  }
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new InvalidModelError(`head dimension ${headDim} must be an even integer`);
  }
  if (ropeDim > headDim || ropeDim % 2 !== 0 || (ropeDim !== headDim && !options.partialRotary)) {
    throw new InvalidModelError(`rope.dimension_count ${ropeDim} with head dim ${headDim} is not supported by '${arch}' (${options.partialRotary ? 'an even count up to the head dim' : 'it rotates whole heads'})`);
  }
  if (embd.dims[0] !== dim || embd.dims[1] !== vocabSize) {
    throw new InvalidModelError(`token_embd.weight has dims [${embd.dims.join(', ')}], expected [${dim}, ${vocabSize}]`);
  }
  if (scalingType !== undefined && scalingType !== 'none' && scalingType !== 'linear' && !tensors.has('rope_freqs.weight')) {
    throw new InvalidModelError(`rope scaling type '${String(scalingType)}' is not supported (supported: none, linear, llama3 rope_freqs)`);
  }

  // Every tensor must be of a type the kernels compute with; say which one is not.
  for (const t of file.tensors) {
    const info = ggmlTypeInfo(t.type);
    if (!info || !info.supported) throw new UnsupportedTensorTypeError(t.name, info?.name ?? `type id ${t.type}`);
  }

  return {
    architecture: arch,
    dim,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    ffnDim,
    vocabSize,
    contextLength,
    rmsEps,
    ropeFreqBase,
    ropeScale,
    tiedOutput: !tensors.has('output.weight'),
    hasRopeFreqs: tensors.has('rope_freqs.weight'),
    ropeDim,
  };
}

/** Number of elements of K (or V) per token per layer. */
export function kvDimOf(c: ModelConfig): number {
  return c.numKvHeads * c.headDim;
}
