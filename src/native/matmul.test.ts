import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlRowBytes, ggmlTypeInfo } from '../gguf/ggml-type.js';
import { dequantize, quantize } from '../gguf/quant.js';
import { bf16ToF32Array, f16ToF32, f16ToF32Array, f32ToBf16Array, f32ToF16, f32ToF16Array } from '../gguf/f16.js';
import { getKernelPath, getThreads, matmul, MATMUL_TYPES, setKernelPath, setThreads } from './matmul.js';
import { q8_0RoundTrip, rng, roundEven } from './ops-testing.js';

// Independent reference: W dequantized by the TypeScript reference codecs (src/gguf/quant.ts),
// x converted to the weight type's vec_dot_type in TypeScript, dots in float64. The native
// kernels accumulate in f32 (in another order), so they agree to ~1e-6 of sum |w * x|.

function randomArray(n: number, next: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (next() * 2 - 1) * scale;
  return a;
}

/** One activation row as the kernels see it after conversion to the vec_dot_type. */
function activationRow(type: GgmlType, x: Float32Array): Float32Array {
  switch (ggmlTypeInfo(type)!.vecDotType) {
    case GgmlType.F32:
      return x;
    case GgmlType.F16:
      return f16ToF32Array(f32ToF16Array(x));
    case GgmlType.BF16:
      return bf16ToF32Array(f32ToBf16Array(x));
    case GgmlType.Q8_0:
    case GgmlType.Q8_1: // the same quants as Q8_0 (ggml-cpu's rounding), plus a sum
      return q8_0RoundTrip(x);
    default:
      return dequantize(GgmlType.Q8_K, quantize(GgmlType.Q8_K, x), x.length);
  }
}

interface Case {
  w: Uint8Array;
  x: Float32Array;
  ref: Float64Array; // [m, n]
  mag: Float64Array; // [m, n] sum |w * x|
}

/**
 * Q8_1 activations (Q4_1, Q5_1 weights): ggml takes a block's min term m_w * sum(x) as m_w * s
 * with s = f16(d_x * sum(q_x)) (d_x unrounded). Per block of row x, s - sum(x as quantized),
 * for the reference to add m_w times it.
 */
function q8_1SumErrors(x: Float32Array): Float64Array {
  const out = new Float64Array(x.length / 32);
  for (let b = 0; b < out.length; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]!));
    const d = Math.fround(amax / 127);
    const id = amax !== 0 ? Math.fround(127 / amax) : 0;
    let qsum = 0;
    for (let j = 0; j < 32; j++) qsum += roundEven(Math.fround(x[32 * b + j]! * id));
    out[b] = f16ToF32(f32ToF16(Math.fround(d * qsum))) - f16ToF32(f32ToF16(d)) * qsum;
  }
  return out;
}

function makeCase(type: GgmlType, n: number, k: number, m: number, seed: number): Case {
  const next = rng(seed);
  const w = quantize(type, randomArray(n * k, next, 0.5));
  const wd = dequantize(type, w, n * k);
  const x = randomArray(m * k, next, 2);
  if (m > 2) x.fill(0, k, 2 * k); // an all-zero row (zero scales)
  const q8_1 = ggmlTypeInfo(type)!.vecDotType === GgmlType.Q8_1;
  const typeSize = ggmlTypeInfo(type)!.typeSize;
  const ref = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const xa = activationRow(type, x.subarray(i * k, (i + 1) * k));
    const sumErr = q8_1 ? q8_1SumErrors(x.subarray(i * k, (i + 1) * k)) : undefined;
    for (let r = 0; r < n; r++) {
      let s = 0;
      let a = 0;
      for (let j = 0; j < k; j++) {
        const p = wd[r * k + j]! * xa[j]!;
        s += p;
        a += Math.abs(p);
      }
      // Q4_1 / Q5_1: the block min m_w (f16 at bytes 2..3) times the s rounding
      for (let b = 0; sumErr && b < k / 32; b++) s += f16ToF32(w[(r * k) / 32 * typeSize + b * typeSize + 2]! | (w[(r * k) / 32 * typeSize + b * typeSize + 3]! << 8)) * sumErr[b]!;
      ref[i * n + r] = s;
      mag[i * n + r] = a;
    }
  }
  return { w, x, ref, mag };
}

function run(type: GgmlType, c: Case, n: number, k: number, m: number): Float32Array {
  const out = new Float32Array(m * n).fill(NaN);
  matmul(out, c.w, type, n, k, c.x, m);
  return out;
}

function assertClose(out: Float32Array, c: Case, tol: number, what: string): void {
  for (let i = 0; i < out.length; i++) {
    const err = Math.abs(out[i]! - c.ref[i]!);
    if (!(err <= tol * c.mag[i]! + 1e-30)) {
      assert.fail(`${what}: out[${i}] = ${out[i]} but reference ${c.ref[i]} (|err| ${err}, sum|w*x| ${c.mag[i]})`);
    }
  }
}

const name = (t: GgmlType): string => ggmlTypeInfo(t)!.name;

// [n, k, m]; every k is a multiple of 256 so each shape is valid for every type.
const SHAPES: Array<[number, number, number]> = [
  [1, 256, 1],
  [3, 256, 2],
  [17, 768, 5],
  [67, 2816, 13],
  [257, 512, 1],
  [5, 1024, 4],
  [19, 512, 17], // repacked panels for every quantized type, ragged last panel
];
// Extra k for types with 32-element blocks, and odd k (tails) for the float types.
const SHAPES_32: Array<[number, number, number]> = [
  [3, 32, 1],
  [17, 96, 2],
  [67, 160, 5],
];
const SHAPES_1: Array<[number, number, number]> = [
  [3, 1, 1],
  [17, 13, 3],
  [5, 37, 5],
  [67, 257, 2],
];

for (const type of MATMUL_TYPES) {
  test(`matmul ${name(type)} matches a float64 reference over shapes with tails`, () => {
    setKernelPath('auto');
    const bs = ggmlTypeInfo(type)!.blockSize;
    const shapes = [...SHAPES, ...(bs <= 32 ? SHAPES_32 : []), ...(bs === 1 ? SHAPES_1 : [])];
    let seed = 1000 + type;
    for (const [n, k, m] of shapes) {
      const c = makeCase(type, n, k, m, seed++);
      for (const path of ['auto', 'scalar'] as const) {
        setKernelPath(path);
        assertClose(run(type, c, n, k, m), c, 1e-5, `${name(type)} ${path} n=${n} k=${k} m=${m}`);
      }
    }
    setKernelPath('auto');
  });
}

test('auto and scalar paths agree up to summation order', () => {
  // m = 1 and 6 take the row-tile kernels (except Q4_0/Q8_0 at 6), m = 21 the repacked 8-row
  // panels of every quantized type.
  const shapes = [[33, 1024, 1], [33, 1024, 6], [33, 1024, 21]] as const;
  for (const [type, [n, k, m]] of MATMUL_TYPES.flatMap((t) => shapes.map((s) => [t, s] as const))) {
    const c = makeCase(type, n, k, m, 77 + type);
    setKernelPath('scalar');
    assert.equal(getKernelPath(), 'scalar');
    const s = run(type, c, n, k, m);
    setKernelPath('auto');
    assert.equal(getKernelPath(), 'auto');
    const a = run(type, c, n, k, m);
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i]! - s[i]!) <= 1e-6 * c.mag[i]! + 1e-30, `${name(type)} out[${i}]: auto ${a[i]} scalar ${s[i]}`);
    }
  }
});

test('row invariance: a row gives bitwise the same result alone or in any batch', () => {
  const [n, k] = [19, 768];
  for (const type of MATMUL_TYPES) {
    // m = 33 reaches every type's repacked panels (Q6_K's start at m = 32), the sub-batches row tiles.
    const c = makeCase(type, n, k, 33, 31 + type);
    const batch = run(type, c, n, k, 33);
    for (const m of [1, 6, 9, 17]) {
      // The first m rows as their own batch (m = 1: row 0 alone), and row m - 1 alone.
      const sub = { ...c, x: c.x.subarray(0, m * k) };
      assert.deepEqual(run(type, sub, n, k, m), batch.subarray(0, m * n), `${name(type)} m=${m}`);
      const one = { ...c, x: c.x.subarray((m - 1) * k, m * k) };
      assert.deepEqual(run(type, one, n, k, 1), batch.subarray((m - 1) * n, m * n), `${name(type)} row ${m - 1}`);
    }
  }
});

test('1 and 2 threads give identical results, also across activation blocks', () => {
  const before = getThreads();
  try {
    // m = 200 rows of k = 2048 span more than one activation block (384 KiB) per weight panel.
    for (const type of [GgmlType.Q4_0, GgmlType.Q6_K, GgmlType.F16]) {
      const [n, k, m] = [41, 2048, 200];
      const c = makeCase(type, n, k, m, 5 + type);
      setThreads(1);
      assert.equal(getThreads(), 1);
      const one = run(type, c, n, k, m);
      setThreads(2);
      assert.equal(getThreads(), 2);
      const two = run(type, c, n, k, m);
      assert.deepEqual(two, one, `${name(type)}: thread count changed the result`);
      assertClose(two, c, 1e-5, `${name(type)} n=${n} k=${k} m=${m}`);
    }
  } finally {
    setThreads(before);
  }
});

test('matmul rejects bad sizes and types with clear errors', () => {
  const k = 64;
  const n = 3;
  const m = 2;
  const w = new Uint8Array(ggmlRowBytes(GgmlType.Q8_0, k) * n);
  const x = new Float32Array(m * k);
  const out = new Float32Array(m * n);
  matmul(out, w, GgmlType.Q8_0, n, k, x, m); // valid
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, n, 48, x, m), { name: 'RangeError', message: /multiple of the block size 32/ });
  assert.throws(() => matmul(out, w, GgmlType.Q4_K, 1, k, x, 1), { name: 'RangeError', message: /block size 256/ });
  assert.throws(() => matmul(out, w.subarray(1), GgmlType.Q8_0, n, k, x, m), { name: 'RangeError', message: /w holds/ });
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, n, k, x.subarray(1), m), { name: 'RangeError', message: /x has/ });
  assert.throws(() => matmul(out.subarray(1), w, GgmlType.Q8_0, n, k, x, m), { name: 'RangeError', message: /out has/ });
  assert.throws(() => matmul(out, w, GgmlType.IQ2_XXS, n, k, x, m), { name: 'TypeError', message: /not supported/ });
  assert.throws(() => matmul(out, w, GgmlType.Q8_K, n, k, x, m), { name: 'TypeError', message: /not supported/ });
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, -1, k, x, m), { name: 'RangeError', message: /non-negative integer/ });
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, n, k, x, 1.5), { name: 'RangeError', message: /non-negative integer/ });
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, n, Number.NaN, x, m), { name: 'RangeError' });
  assert.throws(() => matmul(out, w, GgmlType.Q8_0, 0, 2 ** 21, x, 0), { name: 'RangeError', message: /row length/ });
  const f64 = new Float64Array(m * n) as unknown as Float32Array;
  assert.throws(() => matmul(f64, w, GgmlType.Q8_0, n, k, x, m), { name: 'TypeError', message: /Float32Array/ });
  const wf = new Float32Array(w.length / 4) as unknown as Uint8Array;
  assert.throws(() => matmul(out, wf, GgmlType.Q8_0, n, k, x, m), { name: 'TypeError', message: /Uint8Array/ });
  // Zero rows or zero columns is a no-op, not an error.
  matmul(new Float32Array(0), w, GgmlType.Q8_0, 0, k, x, m);
  matmul(new Float32Array(0), w, GgmlType.Q8_0, n, k, x, 0);
});

test('a Uint8Array view at an odd byte offset works (weights are read unaligned)', () => {
  const [n, k, m] = [5, 256, 3];
  for (const type of [GgmlType.Q4_K, GgmlType.F16, GgmlType.F32]) {
    const c = makeCase(type, n, k, m, 9 + type);
    const shifted = new Uint8Array(c.w.length + 1).subarray(1);
    shifted.set(c.w);
    const out = new Float32Array(m * n);
    matmul(out, shifted, type, n, k, c.x, m);
    assertClose(out, c, 1e-5, `${name(type)} unaligned`);
  }
});
