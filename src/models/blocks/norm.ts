/**
 * Normalization blocks. RMSNorm works on rows of the weight's length, so one call normalizes
 * the residual stream ([m, dim], weight [dim]) or every head of q/k on its own ([m * heads,
 * headDim], weight [headDim]: qwen3's and gemma3's attn_q_norm / attn_k_norm).
 */
import type { WeightTensor } from '../../weights/store.js';
import { rmsNorm as rmsNormKernel } from '../../native/index.js';
import { f32 } from './linear.js';

/** out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight for `rows` rows of weight.dims[0]. out may be x. */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: WeightTensor, rows: number, eps: number): void {
  rmsNormKernel(out, x, f32(weight), rows, weight.dims[0]!, eps);
}
