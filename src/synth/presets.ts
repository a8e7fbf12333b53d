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
export type SynthArch = 'llama' | 'qwen2' | 'qwen3' | 'smollm3' | 'gemma2' | 'gemma3';

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
  /** Parameter count the model publishes (for plausibility checks). */
  publishedParams: number;
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
