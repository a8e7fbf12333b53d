/**
 * Helpers shared by the ops kernel tests (seeded random data, running under both kernel
 * paths, tolerance comparisons). @internal
 */
import assert from 'node:assert/strict';
import { kernelPath, setKernelPath, type KernelPath } from './ops.js';

const PATHS: KernelPath[] = ['auto', 'scalar'];

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

