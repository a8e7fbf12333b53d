/**
 * Helpers shared by the ops kernel tests (seeded random data, running under both kernel
 * paths, tolerance comparisons). @internal
 */
import assert from 'node:assert/strict';
import { kernelPath, setKernelPath, type KernelPath } from './ops.js';
import { f16ToF32, f16ToF32Array, f32ToF16 } from '../gguf/f16.js';

const PATHS: KernelPath[] = ['auto', 'scalar'];

/** Deterministic PRNG (mulberry32), under the name these tests use. */
export { mulberry32 as rng } from '../kv/random.js';

export function randomArray(r: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** Runs fn under each kernel path, restoring 'auto' afterwards. */
export function forEachPath(fn: (path: KernelPath) => void): void {
  try {
    for (const p of PATHS) {
      setKernelPath(p);
      assert.equal(kernelPath(), p);
      fn(p);
    }
  } finally {
    setKernelPath('auto');
  }
}

/** Asserts |a - b| <= tol * max(1, |b|) elementwise. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= tol * Math.max(1, Math.abs(b[i]!)))) {
      assert.fail(`${what}: element ${i}: got ${a[i]}, expected ${b[i]} (tolerance ${tol})`);
    }
  }
}

/** Round half to even, as _mm256_round_ps(_MM_ROUND_NEAREST). */
export function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * x -> Q8_0 -> f32 as llama.cpp's x86 quantize_row_q8_0 (the CPU backend's activation path):
 * d = amax / 127 stored as f16, q = round-half-even(x * (127 / amax)) in f32.
 */
export function q8_0RoundTrip(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    const d = f16ToF32(f32ToF16(Math.fround(amax / 127)));
    const id = amax !== 0 ? Math.fround(127 / amax) : 0;
    for (let j = 0; j < 32; j++) out[b + j] = d * roundEven(Math.fround(x[b + j]! * id));
  }
  return out;
}

const f16Round = (x: number): number => f16ToF32(f32ToF16(x));

/** Naive attention: per (row, head) scores over [0, pos], softmax in float64, weighted V sum. */
export function attentionRef(
  q: Float32Array, k: Uint16Array, v: Uint16Array, m: number, pos: Int32Array,
  heads: number, kvHeads: number, hd: number, scale: number,
): Float64Array {
  const kf = f16ToF32Array(k), vf = f16ToF32Array(v);
  const kvDim = kvHeads * hd, qDim = heads * hd, group = heads / kvHeads;
  const out = new Float64Array(m * qDim);
  for (let i = 0; i < m; i++) {
    for (let h = 0; h < heads; h++) {
      const qo = i * qDim + h * hd, ko = Math.floor(h / group) * hd;
      const n = pos[i]! + 1;
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += f16Round(q[qo + d]!) * kf[j * kvDim + ko + d]!;
        s[j] = Math.fround(dot) * scale;
      }
      let max = -Infinity;
      for (const x of s) max = Math.max(max, x);
      let sum = 0;
      for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j]! - max));
      for (let j = 0; j < n; j++) {
        const p = f16Round(s[j]! / sum);
        for (let d = 0; d < hd; d++) out[qo + d] += p * vf[j * kvDim + ko + d]!;
      }
    }
  }
  return out;
}

