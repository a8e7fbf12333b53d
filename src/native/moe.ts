/**
 * Typed surface of the Mixture-of-Experts kernels (native/src/moe.cc): routing, the grouped
 * matmul over the rows routed to each expert (ggml_mul_mat_id), and the weighted sum of the
 * experts' outputs, each with llama.cpp's build_moe_ffn numerics.
 */
import { addon } from './addon.js';
import type { GgmlType } from '../gguf/ggml-type.js';

/**
 * Routes m rows: `probs` holds the router logits [m, numExperts] and receives the softmax over
 * all experts; ids[i * k + j] is row i's j-th largest expert (descending, llama.cpp's argsort
 * order) and weights[i * k + j] its probability, divided by the sum of the k (at least 2^-14)
 * when `normalize`.
 */
export function moeRoute(
  probs: Float32Array, // [m, numExperts] logits in, probabilities out
  m: number,
  numExperts: number,
  k: number,
  ids: Int32Array, // [m, k]
  weights: Float32Array, // [m, k]
  normalize: boolean,
): void {
  addon.moeRoute(probs, m, numExperts, k, ids, weights, normalize);
}

/**
 * Grouped matmul: for group g (one expert, weights ws[g]: n rows of k in `type`) and each pair
 * p in [starts[g], starts[g + 1]): out[outRows[p], :] = x[inRows[p], :] · ws[g]^T, or out[p, :]
 * when outRows is null. One call runs every expert of a step on the thread pool; each pair's
 * result equals a lone matmul of its row (row-invariant kernels).
 */
export function matmulId(
  out: Float32Array, // [numPairs or more, n]
  ws: readonly Uint8Array[], // [numGroups] each [n, rowBytes(k)]
  type: GgmlType,
  n: number,
  k: number,
  x: Float32Array, // [rows, k]
  inRows: Int32Array, // [numPairs]
  outRows: Int32Array | null, // [numPairs]
  starts: Int32Array, // [numGroups + 1]
): void {
  addon.matmulId(out, ws, type, n, k, x, inRows, outRows, starts);
}

/** out[i, :] = sum over j < k, in order, of pairOut[i * k + j, :] * weights[i * k + j] (f32 steps). */
export function moeCombine(
  out: Float32Array, // [m, dim]
  pairOut: Float32Array, // [m * k, dim]
  weights: Float32Array, // [m, k]
  m: number,
  k: number,
  dim: number,
): void {
  addon.moeCombine(out, pairOut, weights, m, k, dim);
}
