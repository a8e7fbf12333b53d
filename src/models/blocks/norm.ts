/**
 * Normalization blocks. RMSNorm works on rows of the weight's length, so one call normalizes
 * the residual stream ([m, dim], weight [dim]) or every head of q/k on its own ([m * heads,
 * headDim], weight [headDim]: qwen3's and gemma3's attn_q_norm / attn_k_norm).
 */
import type { LayerWeights, WeightTensor } from '../../weights/store.js';
import { rmsNorm as rmsNormKernel } from '../../native/index.js';
import { f32 } from './linear.js';

/** out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight for `rows` rows of weight.dims[0]. out may be x. */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: WeightTensor, rows: number, eps: number): void {
  rmsNormKernel(out, x, f32(weight), rows, weight.dims[0]!, eps);
}

/**
 * RMSNorm over every head of q and of k on its own (qwen3, gemma3): q [m * numHeads, headDim]
 * with attn_q_norm, k [m * numKvHeads, headDim] with attn_k_norm, in place.
 */
export function qkHeadNorm(
  q: Float32Array, k: Float32Array, w: LayerWeights, m: number,
  heads: { numHeads: number; numKvHeads: number }, eps: number,
): void {
  rmsNorm(q, q, w.get('attn_q_norm.weight'), m * heads.numHeads, eps);
  rmsNorm(k, k, w.get('attn_k_norm.weight'), m * heads.numKvHeads, eps);
}
