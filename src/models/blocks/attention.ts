/**
 * Attention blocks: rotary position embedding with its options, and causal attention of a
 * sequence's query rows over its K/V in the cache.
 *
 * NOTE (where the KV layout meets the model): attention() (and attendSequence() for one run)
 * is the ONE place the forward pass touches the KV cache. It writes the runs' new K/V rows at
 * their positions and runs the attention kernel over each sequence's K/V: one call for the
 * whole batch, through contiguous K/V (vtensor, contiguous) or block tables (paged; see
 * batch-attention.ts). Architectures never see the cache.
 */
import type { KvCache } from '../../kv/cache.js';
import type { SeqRun } from '../transformer.js';
import { rope as ropeKernel } from '../../native/index.js';
import { attentionOverBatch } from './batch-attention.js';

/** RoPE layout: 'normal' rotates pairs (2i, 2i+1) (llama); 'neox' rotates (i, i + d/2) (qwen2 and later). */
export type RopeMode = 'normal' | 'neox';

/** How one layer rotates q and k. */
export interface RopeOptions {
  mode: RopeMode;
  /** rope.freq_base */
  freqBase: number;
  /** Positions are multiplied by it: 1 / linear scaling factor; 1 = none. */
  freqScale: number;
  /** Per-pair frequency divisors (llama3's rope_freqs.weight, phi3's rope_factors_long/short), [dims / 2], or null. */
  freqFactors: Float32Array | null;
  /** Rotated dimensions of each head (rope.dimension_count; partial rotary when < headDim). Default headDim. */
  dims?: number;
  /** cos and sin are multiplied by it (phi3's rope.scaling.attn_factor). Default 1. */
  attnFactor?: number;
}

/** Head geometry and score scale of one layer's attention. */
export interface AttentionOptions {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Factor on q·k before the softmax. */
  scale: number;
  /** Attention-logit soft-capping: s = tanh(s / cap) * cap before the scale (gemma2); absent = off. */
  softcap?: number;
  /** Sliding window: a query at position p sees keys [p - window + 1, p] (gemma local layers); absent = all. */
  window?: number;
}

/**
 * llama.cpp's default kq_scale = 1.0f / sqrtf(headDim), rounded in f32 at each step
 * (1 / Math.sqrt in double differs by an ulp for 242 of headDim 1..1024, e.g. 96 and 112).
 */
export function defaultAttentionScale(headDim: number): number {
  return Math.fround(1 / Math.fround(Math.sqrt(headDim)));
}

/** In-place rotary embedding of x [m, numHeads * headDim], each row at its own position. */
export function rope(x: Float32Array, m: number, numHeads: number, headDim: number, positions: Int32Array, r: RopeOptions): void {
  ropeKernel(x, m, numHeads, headDim, positions, r.mode, r.freqBase, r.freqScale, r.freqFactors, r.dims ?? headDim, r.attnFactor ?? 1);
}

/**
 * One sequence's rows of one layer: appends their k, v to the sequence's cache at their
 * positions, then causal attention of each query row over kv positions [0, pos] (the last
 * `window` of them with a sliding window) into run.att.
 */
export function attendSequence(kv: KvCache, layer: number, run: SeqRun, a: AttentionOptions): void {
  attentionOverBatch(kv, layer, [run], a);
}

/**
 * attendSequence() for every run of the batch (runs cover the batch's rows in order), as one
 * kernel call for the layer: bitwise the same results, any KV layout (batch-attention.ts).
 */
export function attention(kv: KvCache, layer: number, runs: readonly SeqRun[], a: AttentionOptions): void {
  attentionOverBatch(kv, layer, runs, a);
}
