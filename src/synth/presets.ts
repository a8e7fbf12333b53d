/**
 * Shapes of public models, as llama.cpp's converter describes them in GGUF (architecture
 * names, hyperparameters, vocabularies). `flexinfer synth` writes random weights in these
 * shapes so that memory, streaming and speed can be measured on true sizes without
 * downloading the models.
 */
import type { VocabSourceName } from '../tokenizer/vocab-sources.js';

/** Llama 3 rope scaling (rope_scaling.rope_type = "llama3" in the HF config). */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  /** original_max_position_embeddings */
  originalContext: number;
}

/** Architectures flexinfer can synthesize (each has its tensor list in arch-tensors.ts). */
export type SynthArch = 'llama' | 'qwen2' | 'qwen3' | 'qwen3moe' | 'smollm3' | 'gemma2' | 'gemma3' | 'phi3';

/**
 * Phi-3's "longrope" (su) scaling: per-pair frequency divisors for short and long contexts
 * (rope_factors_short / rope_factors_long tensors), chosen by the context against
 * originalContext, and cos/sin scaled by sqrt(1 + ln(context / originalContext) / ln(originalContext)).
 */
export interface LongRopeScaling {
  /** rope_scaling.original_max_position_embeddings */
  originalContext: number;
}

/** Hyperparameters of one public model. */
export interface SynthPreset {
  /** Preset name (`--preset`). */
  name: string;
  /** general.name written to the file. */
  modelName: string;
  /** llama.cpp architecture name (general.architecture). */
  arch: SynthArch;
  vocab: VocabSourceName;
  /** Rows of token_embd (and output): the model's vocab_size, which may exceed the tokenizer's. */
  nVocab: number;
  /** embedding_length */
  dim: number;
  /** block_count */
  nLayers: number;
  /** attention.head_count */
  nHeads: number;
  /** attention.head_count_kv */
  nKvHeads: number;
  /** attention.key_length (= value_length) when it is not dim / nHeads (qwen3, gemma). */
  headDim?: number;
  /** feed_forward_length */
  ffn: number;
  /** context_length */
  context: number;
  /** rope.freq_base */
  ropeBase: number;
  /** attention.layer_norm_rms_epsilon */
  rmsEps: number;
  /** Output projection shares token_embd (no output.weight tensor). */
  tiedOutput: boolean;
  /** blk.N.attn_{q,k,v}.bias tensors (Qwen2). */
  qkvBias: boolean;
  /** Linear RoPE scaling factor (rope.scaling.type 'linear'); gemma3 applies it to global layers. */
  ropeLinearScale?: number;
  /** attention.sliding_window of the local layers (gemma). */
  slidingWindow?: number;
  /** attn_logit_softcapping (gemma2). */
  attnSoftcap?: number;
  /** final_logit_softcapping (gemma2). */
  finalSoftcap?: number;
  /** Llama 3 frequency scaling, written as the rope_freqs.weight tensor. */
  ropeScaling?: Llama3RopeScaling;
  /** rope.dimension_count when it is not the head dimension (partial rotary). */
  ropeDim?: number;
  /** Phi-3 longrope scaling (rope_factors_long/short tensors, rope.scaling.attn_factor). */
  longRope?: LongRopeScaling;
  /** Mixture-of-Experts blocks: a router and stacked experts in place of the FFN. */
  moe?: SynthMoe;
  /** Parameter count the model publishes (for plausibility checks). */
  publishedParams: number;
}

/** The MoE part of a preset. */
export interface SynthMoe {
  /** expert_count */
  experts: number;
  /** expert_used_count (k) */
  used: number;
  /** Width of one expert's FFN (written as expert_feed_forward_length when `ffnKey`). */
  ffn: number;
  /** Write {arch}.expert_feed_forward_length (qwen3moe); Mixtral files carry the width in feed_forward_length. */
  ffnKey: boolean;
  /** Zipf-like skew of the routers (arch-tensors.ts routerRowScale); 0 / absent: uniform routing. */
  routerSkew?: number;
}

/** All presets by name. */
export const SYNTH_PRESETS: Readonly<Record<string, SynthPreset>> = {
  // karpathy/llama2.c stories15M, as converted to GGUF: Llama 2 vocabulary, tied embeddings.
  'tiny-15m': {
    name: 'tiny-15m', modelName: 'stories15M (synthetic)', arch: 'llama', vocab: 'llama2', nVocab: 32000,
    dim: 288, nLayers: 6, nHeads: 6, nKvHeads: 6, ffn: 768, context: 256, ropeBase: 10000, rmsEps: 1e-5,
    tiedOutput: true, qkvBias: false, publishedParams: 15.2e6,
  },
  'tinyllama-1.1b': {
    name: 'tinyllama-1.1b', modelName: 'TinyLlama-1.1B (synthetic)', arch: 'llama', vocab: 'llama2', nVocab: 32000,
    dim: 2048, nLayers: 22, nHeads: 32, nKvHeads: 4, ffn: 5632, context: 2048, ropeBase: 10000, rmsEps: 1e-5,
    tiedOutput: false, qkvBias: false, publishedParams: 1.1e9,
  },
  'llama-3.2-1b': {
    name: 'llama-3.2-1b', modelName: 'Llama-3.2-1B (synthetic)', arch: 'llama', vocab: 'llama3', nVocab: 128256,
    dim: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, ffn: 8192, context: 131072, ropeBase: 500000, rmsEps: 1e-5,
    tiedOutput: true, qkvBias: false, publishedParams: 1.24e9,
    ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 },
  },
  'qwen2.5-0.5b': {
    name: 'qwen2.5-0.5b', modelName: 'Qwen2.5-0.5B (synthetic)', arch: 'qwen2', vocab: 'qwen2', nVocab: 151936,
    dim: 896, nLayers: 24, nHeads: 14, nKvHeads: 2, ffn: 4864, context: 32768, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: true, publishedParams: 0.49e9,
  },
  // Qwen/Qwen3-0.6B: head_dim 128 (q is 2048 wide on a 1024 residual), q/k norms, tied output.
  'qwen3-0.6b': {
    name: 'qwen3-0.6b', modelName: 'Qwen3-0.6B (synthetic)', arch: 'qwen3', vocab: 'qwen3', nVocab: 151936,
    dim: 1024, nLayers: 28, nHeads: 16, nKvHeads: 8, headDim: 128, ffn: 3072, context: 40960, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, publishedParams: 0.6e9,
  },
  // Qwen/Qwen3-4B
  'qwen3-4b': {
    name: 'qwen3-4b', modelName: 'Qwen3-4B (synthetic)', arch: 'qwen3', vocab: 'qwen3', nVocab: 151936,
    dim: 2560, nLayers: 36, nHeads: 32, nKvHeads: 8, headDim: 128, ffn: 9728, context: 40960, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, publishedParams: 4.0e9,
  },
  // HuggingFaceTB/SmolLM3-3B: llama shapes, no RoPE in every 4th layer, tied output.
  'smollm3-3b': {
    name: 'smollm3-3b', modelName: 'SmolLM3-3B (synthetic)', arch: 'smollm3', vocab: 'smollm3', nVocab: 128256,
    dim: 2048, nLayers: 36, nHeads: 16, nKvHeads: 4, ffn: 11008, context: 65536, ropeBase: 5000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, publishedParams: 3.08e9,
  },
  // google/gemma-2-2b: post-norms, GEGLU, softcaps 50 / 30, even layers local (window 4096).
  'gemma-2-2b': {
    name: 'gemma-2-2b', modelName: 'Gemma-2-2B (synthetic)', arch: 'gemma2', vocab: 'gemma2', nVocab: 256000,
    dim: 2304, nLayers: 26, nHeads: 8, nKvHeads: 4, headDim: 256, ffn: 9216, context: 8192, ropeBase: 10000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, slidingWindow: 4096, attnSoftcap: 50, finalSoftcap: 30, publishedParams: 2.61e9,
  },
  // google/gemma-3-1b: q/k norms, 5 local layers (window 512, base 10000) to 1 global (base 1e6).
  'gemma-3-1b': {
    name: 'gemma-3-1b', modelName: 'Gemma-3-1B (synthetic)', arch: 'gemma3', vocab: 'gemma3', nVocab: 262144,
    dim: 1152, nLayers: 26, nHeads: 4, nKvHeads: 1, headDim: 256, ffn: 6912, context: 32768, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, slidingWindow: 512, publishedParams: 1.0e9,
  },
  // google/gemma-3-4b (text part): window 1024, global layers with linear rope scaling 8.
  'gemma-3-4b': {
    name: 'gemma-3-4b', modelName: 'Gemma-3-4B (synthetic)', arch: 'gemma3', vocab: 'gemma3-mm', nVocab: 262208,
    dim: 2560, nLayers: 34, nHeads: 8, nKvHeads: 4, headDim: 256, ffn: 10240, context: 131072, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, slidingWindow: 1024, ropeLinearScale: 8, publishedParams: 3.88e9,
  },
  // microsoft/Phi-3.5-mini-instruct: fused attn_qkv and gate+up, 128k context by longrope
  // (original 4096), head dim 96, no GQA. config.json's sliding_window 262144 is written as the
  // converter does; llama.cpp ignores it for phi3. The name is written as the converter writes
  // it ("Phi 3.5 Mini Instruct"): llama.cpp gives special tokens rstrip only when general.name
  // contains "phi-3" or "phi3", which flexinfer's tokenizer does not do.
  'phi-3.5-mini': {
    name: 'phi-3.5-mini', modelName: 'Phi 3.5 Mini Instruct (synthetic)', arch: 'phi3', vocab: 'phi3', nVocab: 32064,
    dim: 3072, nLayers: 32, nHeads: 32, nKvHeads: 32, ffn: 8192, context: 131072, ropeBase: 10000, rmsEps: 1e-5,
    tiedOutput: false, qkvBias: false, slidingWindow: 262144, longRope: { originalContext: 4096 }, publishedParams: 3.82e9,
  },
  // Qwen/Qwen3-30B-A3B: 48 blocks of qwen3 attention (32 heads of 128, 4 KV heads) and 128
  // experts 768 wide, 8 per token; untied output. 30.53e9 parameters, 3.3e9 active per token.
  'qwen3-30b-a3b': {
    name: 'qwen3-30b-a3b', modelName: 'Qwen3-30B-A3B (synthetic)', arch: 'qwen3moe', vocab: 'qwen3', nVocab: 151936,
    dim: 2048, nLayers: 48, nHeads: 32, nKvHeads: 4, headDim: 128, ffn: 6144, context: 40960, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: false, qkvBias: false, publishedParams: 30.53e9,
    moe: { experts: 128, used: 8, ffn: 768, ffnKey: true },
  },
  // qwen3moe for tests: qwen3 vocabulary and attention (q 512 wide on a 256 residual), 16 experts, 4 per token.
  'tiny-qwen3moe': {
    name: 'tiny-qwen3moe', modelName: 'tiny Qwen3-MoE (synthetic)', arch: 'qwen3moe', vocab: 'qwen3', nVocab: 151936,
    dim: 256, nLayers: 4, nHeads: 4, nKvHeads: 2, headDim: 128, ffn: 768, context: 512, ropeBase: 1000000, rmsEps: 1e-6,
    tiedOutput: true, qkvBias: false, publishedParams: 53.07e6,
    moe: { experts: 16, used: 4, ffn: 256, ffnKey: true },
  },
  // A Mixtral-style llama file for tests: 8 experts, 2 per token, K-quant-sized rows (256).
  'tiny-mixtral': {
    name: 'tiny-mixtral', modelName: 'tiny Mixtral-style MoE (synthetic)', arch: 'llama', vocab: 'llama2', nVocab: 32000,
    dim: 256, nLayers: 4, nHeads: 8, nKvHeads: 4, ffn: 256, context: 512, ropeBase: 10000, rmsEps: 1e-5,
    tiedOutput: true, qkvBias: false, publishedParams: 15.28e6,
    moe: { experts: 8, used: 2, ffn: 256, ffnKey: false },
  },
  'llama-2-7b': {
    name: 'llama-2-7b', modelName: 'Llama-2-7B (synthetic)', arch: 'llama', vocab: 'llama2', nVocab: 32000,
    dim: 4096, nLayers: 32, nHeads: 32, nKvHeads: 32, ffn: 11008, context: 4096, ropeBase: 10000, rmsEps: 1e-5,
    tiedOutput: false, qkvBias: false, publishedParams: 6.74e9,
  },
};

/** Preset names, in the order above. */
export const SYNTH_PRESET_NAMES: readonly string[] = Object.keys(SYNTH_PRESETS);

/**
 * Llama 3 rope frequency factors (one per rotated pair, headDim/2 values), computed as
 * llama.cpp's convert_hf_to_gguf.py does for rope_type "llama3": frequencies whose wavelength
 * is shorter than originalContext/highFreqFactor keep factor 1, those longer than
 * originalContext/lowFreqFactor get `factor`, and the band between is interpolated smoothly.
 * (The converter computes the base frequencies in float32 torch; here in float64, so the
 * stored values may differ from a converted file in the last bit.)
 */
export function llama3RopeFactors(headDim: number, ropeBase: number, s: Llama3RopeScaling): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowFreqWavelen = s.originalContext / s.lowFreqFactor;
  const highFreqWavelen = s.originalContext / s.highFreqFactor;
  for (let i = 0; i < headDim / 2; i++) {
    const freq = 1 / ropeBase ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highFreqWavelen) out[i] = 1;
    else if (wavelen > lowFreqWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalContext / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

/**
 * Stand-ins for Phi-3.5's rope_scaling.short_factor / long_factor ([ropeDim / 2] each): the
 * published arrays are data of the model (not in any package here), so a synthetic file uses
 * values of the same form: short factors rising from 1 to about 2, long factors from 1 to about
 * 50 over the pairs (low frequencies stretched most). Numerics do not depend on the values.
 */
export function longRopeFactors(ropeDim: number): { short: Float32Array; long: Float32Array } {
  const n = ropeDim / 2;
  const short = new Float32Array(n);
  const long = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = n > 1 ? i / (n - 1) : 0;
    short[i] = 1 + t * t;
    long[i] = 1 + 49 * t * t * t;
  }
  return { short, long };
}

/** rope.scaling.attn_factor of longrope: sqrt(1 + ln(scale) / ln(originalContext)), 1 if scale <= 1 (the converter's formula). */
export function longRopeAttnFactor(context: number, originalContext: number): number {
  const scale = context / originalContext;
  return scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(originalContext)) : 1;
}
