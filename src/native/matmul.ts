/**
 * Typed surface of the native matmul (native/src/matmul*.cc): out = x · W^T over ggml weight
 * types, with llama.cpp's CPU numerics (activations converted to the weight type's
 * vec_dot_type: f32, f16, bf16, Q8_0 or Q8_K, then per-block integer dots).
 */
import { addon } from './addon.js';
import { GgmlType, supportedGgmlTypes } from '../gguf/ggml-type.js';
import { kernelPath, setKernelPath } from './ops.js';

export { setKernelPath };

/** Weight types matmul computes with (ggml-type.ts: the supported ones). */
export const MATMUL_TYPES: readonly GgmlType[] = supportedGgmlTypes().map((t) => t.type);

/**
 * out[m, n] = x[m, k] · W[n, k]^T. `w` holds n rows of k elements in ggml layout of `type`
 * (row bytes = ggmlRowBytes(type, k)). x, out row-major f32. Runs on the native thread pool.
 * Throws TypeError for an unsupported type or wrong array kinds, RangeError for sizes that do
 * not fit (k not whole blocks, arrays too short).
 */
export function matmul(
  out: Float32Array, // [m, n]
  w: Uint8Array, // [n, rowBytes]
  type: GgmlType,
  n: number,
  k: number,
  x: Float32Array, // [m, k]
  m: number,
): void {
  addon.matmul(out, w, type, n, k, x, m);
}

/** The kernel path in effect ('auto' = best SIMD path of this build, 'scalar' = portable). */
export function getKernelPath(): 'auto' | 'scalar' {
  return kernelPath();
}

/** SIMD path the matmul kernels were compiled with: 'avx2+avx512vnni', 'avx2' or 'none'. */
export function matmulSimdPath(): string {
  return addon.matmulSimdPath() as string;
}

/** Threads of the native compute pool (counting the caller); 0 = one per core. */
export function setThreads(n: number): void {
  addon.setThreads(n);
}

/** Threads the native compute pool runs a kernel on. */
export function getThreads(): number {
  return addon.getThreads() as number;
}
