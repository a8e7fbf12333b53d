/**
 * Typed surface of the forward-pass kernels other than matmul (native/src/ops_*.cc):
 * RMS norm, RoPE, K/V store, causal GQA attention, SwiGLU, residual and bias adds,
 * embedding row dequantization, softmax, argmax, f16 conversion.
 *
 * Kernels compute in place into caller-owned arrays (output first, as llama2.c); native code
 * checks every length, count and index and throws RangeError / TypeError naming the argument.
 * Numerics follow llama.cpp's CPU backend (see the comments at the top of each .cc file).
 */
import { addon } from './addon.js';
import type { GgmlType } from '../gguf/ggml-type.js';

/** Which implementation the kernels run: the build's SIMD paths, or the portable scalar ones. */
export type KernelPath = 'auto' | 'scalar';

/** Selects SIMD ('auto', the default) or scalar kernels for every native kernel (ops and matmul). */
export function setKernelPath(path: KernelPath): void {
  addon.setKernelPath(path);
}

/** The kernel path in effect. */
export function kernelPath(): KernelPath {
  return addon.kernelPath() as KernelPath;
}

/** out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * weight  (m rows of dim). out may be x. */
export function rmsNorm(
  out: Float32Array, // [m, dim]
  x: Float32Array, // [m, dim]
  weight: Float32Array, // [dim]
  m: number,
  dim: number,
  eps: number,
): void {
  addon.opsRmsNorm(out, x, weight, m, dim, eps);
}

/**
 * In-place rotary embedding on x [m, numHeads * headDim] at positions[m].
 * 'normal' (llama) rotates pairs (2i, 2i+1); 'neox' (qwen2) rotates (i, i + headDim/2).
 * Pair i's angle is freqScale * pos * freqBase^(-2i/headDim) / freqFactors[i], computed as
 * ggml does (iterated f32 products); freqFactors is rope_freqs.weight (llama3 scaling) or null.
 */
export function rope(
  x: Float32Array, // [m, numHeads * headDim]
  m: number,
  numHeads: number,
  headDim: number,
  positions: Int32Array, // [m]
  mode: 'normal' | 'neox',
  freqBase: number,
  freqScale: number,
  freqFactors: Float32Array | null, // [nRot / 2]
  nRot = headDim, // rotated dimensions of each head (partial rotary: fewer; the rest pass through)
  attnFactor = 1, // cos and sin are multiplied by it (ggml's mscale; phi3's rope.scaling.attn_factor)
): void {
  let modeId: number;
  if (mode === 'normal') modeId = 0;
  else if (mode === 'neox') modeId = 2;
  else throw new RangeError(`rope: mode must be 'normal' or 'neox', got '${String(mode)}'`);
  addon.opsRope(x, m, numHeads, headDim, positions, modeId, freqBase, freqScale, freqFactors, nRot, attnFactor);
}

/** Writes rows of K or V into an f16 cache: cache[positions[i] * kvDim + j] = f16(src[i * kvDim + j]). */
export function storeKv(
  cache: Uint16Array, // [>= maxPos + 1, kvDim] f16 bits
  src: Float32Array, // [m, kvDim]
  m: number,
  kvDim: number,
  positions: Int32Array, // [m]
): void {
  addon.opsStoreKv(cache, src, m, kvDim, positions);
}

/**
 * Causal grouped-query attention for m query rows of ONE sequence over its contiguous f16 K/V.
 * Query row i attends to kv positions [0, positions[i]] (with `window` > 0, only the last
 * `window` of them: [positions[i] - window + 1, positions[i]]; K/V before that is never read, so
 * it may be unmapped); head h reads kv head h / (numHeads / numKvHeads). Each score q·k is
 * soft-capped first when `softcap` > 0 (tanh(s / cap) * cap, gemma2), then multiplied by `scale`
 * (usually 1 / sqrt(headDim)). out must not alias q.
 */
export function attention(
  out: Float32Array, // [m, numHeads * headDim]
  q: Float32Array, // [m, numHeads * headDim]
  k: Uint16Array, // [>= maxPos + 1, numKvHeads * headDim] f16 bits
  v: Uint16Array, // [>= maxPos + 1, numKvHeads * headDim] f16 bits
  m: number,
  positions: Int32Array, // [m]
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  scale: number,
  softcap = 0,
  window = 0,
): void {
  addon.opsAttention(out, q, k, v, m, positions, numHeads, numKvHeads, headDim, scale, softcap, window);
}

/**
 * attention() for the rows of several sequences in one call (the batch entry of the dense KV
 * layouts): row i attends kv positions [0, positions[i]] of ks[rowSeqs[i]] / vs[rowSeqs[i]].
 * Bitwise the same results as one attention() call per sequence.
 */
export function attentionBatch(
  out: Float32Array, // [m, numHeads * headDim]
  q: Float32Array, // [m, numHeads * headDim]
  ks: Uint16Array[], // per sequence [>= its max position + 1, numKvHeads * headDim] f16 bits
  vs: Uint16Array[],
  m: number,
  positions: Int32Array, // [m]
  rowSeqs: Int32Array, // [m] index into ks / vs
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  scale: number,
  softcap = 0, // as attention()
  window = 0, // as attention()
): void {
  addon.opsAttentionBatch(out, q, ks, vs, m, positions, rowSeqs, numHeads, numKvHeads, headDim, scale, softcap, window);
}

/** Tokens per block of the paged KV layout (vLLM's default block size). */
export const PAGED_BLOCK_TOKENS = 16;

/**
 * Writes rows of K or V into a paged pool (vLLM's reshape_and_cache): row i goes to block
 * slots[i] / 16, token slots[i] % 16. The pool is [numBlocks, numKvHeads, 16, headDim] f16.
 */
export function pagedStoreKv(
  pool: Uint16Array, // [numBlocks, numKvHeads, 16, headDim] f16 bits
  src: Float32Array, // [m, numKvHeads * headDim]
  m: number,
  numKvHeads: number,
  headDim: number,
  slots: Int32Array, // [m] block * 16 + offset
): void {
  addon.opsPagedStoreKv(pool, src, m, numKvHeads, headDim, slots);
}

/**
 * Causal grouped-query attention for m query rows of any number of sequences whose K/V live in
 * paged pools: row i attends kv positions [0, positions[i]] of the sequence whose block table is
 * tables[rowTables[i] * tableStride, ... + tableStride). Same numerics as attention(): the
 * results are bitwise equal to attention() over the same K/V stored contiguously.
 */
export function pagedAttention(
  out: Float32Array, // [m, numHeads * headDim]
  q: Float32Array, // [m, numHeads * headDim]
  kPool: Uint16Array, // [numBlocks, numKvHeads, 16, headDim] f16 bits
  vPool: Uint16Array, // [numBlocks, numKvHeads, 16, headDim] f16 bits
  m: number,
  positions: Int32Array, // [m]
  rowTables: Int32Array, // [m] which table each row reads
  tables: Int32Array, // [numTables, tableStride] block ids
  tableStride: number,
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  scale: number,
  softcap = 0, // as attention()
  window = 0, // as attention(); table entries wholly before every row's window are never read (may be -1)
): void {
  addon.opsPagedAttention(
    out, q, kPool, vPool, m, positions, rowTables, tables, tableStride, numHeads, numKvHeads, headDim, scale, softcap, window,
  );
}

/**
 * out[i] = silu(gate[i]) * up[i] (SwiGLU). out may be gate or up. rowLength (the FFN width;
 * default n): llama.cpp computes each row's last rowLength % 16 elements another way, and so do we.
 */
export function siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number, rowLength?: number): void {
  addon.opsSiluMul(out, gate, up, n, rowLength);
}

/**
 * out[i] = gelu(gate[i]) * up[i] (GEGLU, GELU with the tanh approximation, looked up through
 * f16 as llama.cpp's CPU backend does). out may be gate or up.
 */
export function geluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  addon.opsGeluMul(out, gate, up, n);
}

/** In place: x[i] = tanh(x[i] / cap) * cap (soft-capping of logits), for i < n. */
export function softcap(x: Float32Array, n: number, cap: number): void {
  addon.opsSoftcap(x, n, cap);
}

/** In place: x[i] *= s for i < n (f32 products). */
export function scale(x: Float32Array, n: number, s: number): void {
  addon.opsScale(x, n, s);
}

/** out[i] = a[i] + b[i] (residual). out may be a or b. */
export function add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  addon.opsAdd(out, a, b, n);
}

/** x[i, :] += bias for m rows (qwen2 q/k/v biases). */
export function addBias(x: Float32Array /* [m, n] */, bias: Float32Array /* [n] */, m: number, n: number): void {
  addon.opsAddBias(x, bias, m, n);
}

/**
 * Dequantizes the given rows (token ids) of a [numRows, rowLen] ggml tensor into
 * out [rows.length, rowLen] (token embeddings). Types: f32, f16, bf16, q4_0, q8_0, q4_k, q5_k, q6_k.
 */
export function getRows(
  out: Float32Array, // [rows.length, rowLen]
  table: Uint8Array, // [numRows, rowLen] in `type`
  type: GgmlType,
  rowLen: number,
  numRows: number,
  rows: Int32Array,
): void {
  addon.opsGetRows(out, table, type, rowLen, numRows, rows);
}

/** Dequantizes n elements (whole blocks) of `type` from src (used when the embedding table is streamed row by row). */
export function dequantizeRow(out: Float32Array, src: Uint8Array, type: GgmlType, n: number): void {
  addon.opsDequantizeRow(out, src, type, n);
}

/** In-place softmax of x[offset, offset + n): exp(x - max) / sum, the sum taken in double. */
export function softmax(x: Float32Array, n: number, offset = 0): void {
  addon.opsSoftmax(x, n, offset);
}

/** Index (relative to offset) of the first largest value in x[offset, offset + n); NaNs are skipped. */
export function argmax(x: Float32Array, n: number, offset = 0): number {
  return addon.opsArgmax(x, n, offset) as number;
}

/** dst[i] = f16 bits of src[i] (round to nearest even) for i < n. */
export function f32ToF16(dst: Uint16Array, src: Float32Array, n: number): void {
  addon.opsF32ToF16(dst, src, n);
}

/** dst[i] = f32 value of the f16 bits src[i] for i < n. */
export function f16ToF32(dst: Float32Array, src: Uint16Array, n: number): void {
  addon.opsF16ToF32(dst, src, n);
}
