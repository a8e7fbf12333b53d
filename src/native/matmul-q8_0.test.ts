import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { dequantize, quantize } from '../gguf/quant.js';
import { f16ToF32, f32ToF16 } from '../gguf/f16.js';
import { getThreads, matmul, setKernelPath, setThreads } from './matmul.js';
import { q8_0RoundTrip, rng } from './ops-testing.js';

// Q8_0 batches (m >= 2) run the register-tiled kernel of native/src/matmul_x86_q8_0.cc (up to 4
// weight x 4 activation rows per tile) on AVX512-VNNI builds, m = 1 the one-row tiles of
// matmul_x86.cc. Both must do the same f32 steps per output, so:
//   - every row of a batch equals, bit for bit, the same row computed alone (m = 1);
//   - the batch equals the scalar path bit for bit (matmul_scalar.cc dotQ8_0 does llama.cpp's
//     Q8_0 steps in plain C++: another implementation of the same arithmetic);
//   - and it matches a float64 reference (TypeScript dequantization) to f32 rounding.
// Shapes leave ragged tiles on both sides (n and m not multiples of 4).

function randomArray(n: number, next: () => number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (next() * 2 - 1) * scale;
  return a;
}

/**
 * Q8_0 weights [n, k]: quantized from random values, or (raw) random quant bytes, -128
 * included, which the quantizer never writes but a file may hold, with finite f16 scales.
 */
function weights(n: number, k: number, next: () => number, raw: boolean): Uint8Array {
  if (!raw) return quantize(GgmlType.Q8_0, randomArray(n * k, next, 0.5));
  const w = new Uint8Array(ggmlRowBytes(GgmlType.Q8_0, k) * n);
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(next() * 256);
  for (let b = 0; b < w.length; b += 34) {
    w[b] = Math.floor(next() * 256);
    w[b + 1] = (next() < 0.5 ? 0x80 : 0) | (0x10 + Math.floor(next() * 0x10)); // f16 +-2^-11..2^-8
    if (b === 34) w.fill(0x80, b + 2, b + 34); // one block of all -128
  }
  return w;
}

function run(w: Uint8Array, n: number, k: number, x: Float32Array, m: number): Float32Array {
  const out = new Float32Array(m * n).fill(NaN);
  matmul(out, w, GgmlType.Q8_0, n, k, x, m);
  return out;
}

// [n, k, m]: m = 2, 3, 5, 6, 63 and 150 (more than one activation block of 148 rows at
// k = 2048); n leaves 1, 2 and 3 weight rows in the last tile (and n - 1 below).
const SHAPES: Array<[number, number, number]> = [
  [5, 64, 2],
  [7, 32, 3],
  [11, 64, 6],
  [37, 96, 5],
  [69, 256, 63],
  [21, 2048, 150],
];

for (const raw of [false, true]) {
  test(`Q8_0 batches equal each row alone and the scalar path bit for bit (${raw ? 'raw bytes' : 'quantized'})`, () => {
    setKernelPath('auto');
    let seed = raw ? 900 : 800;
    for (const [n, k, m] of SHAPES) {
      const next = rng(seed++);
      const w = weights(n, k, next, raw);
      const x = randomArray(m * k, next, 2);
      x.fill(0, 0, 32); // an all-zero block (scale 0)
      const batch = run(w, n, k, x, m);
      for (let i = 0; i < m; i++) {
        const one = run(w, n, k, x.subarray(i * k, (i + 1) * k), 1);
        assert.deepEqual(one, batch.subarray(i * n, (i + 1) * n), `n=${n} k=${k} m=${m}: row ${i} alone`);
      }
      setKernelPath('scalar');
      try {
        assert.deepEqual(run(w, n, k, x, m), batch, `n=${n} k=${k} m=${m}: scalar path`);
      } finally {
        setKernelPath('auto');
      }
      // Prefixes of the batch tile differently (m = 2, 3, 5 rows against 4-row tiles).
      for (const p of [2, 3, 5]) {
        if (p >= m) continue;
        assert.deepEqual(run(w, n, k, x.subarray(0, p * k), p), batch.subarray(0, p * n), `n=${n} m=${m}: first ${p} rows`);
      }
      // Weight-row offsets change the weight tiles (rows 1..n-1 as their own matrix).
      const rb = ggmlRowBytes(GgmlType.Q8_0, k);
      const shifted = run(w.subarray(rb), n - 1, k, x, m);
      for (let i = 0; i < m; i++) {
        assert.deepEqual(shifted.subarray(i * (n - 1), (i + 1) * (n - 1)), batch.subarray(i * n + 1, (i + 1) * n), `n=${n} m=${m}: row ${i}, weights from row 1`);
      }
    }
  });
}

test('Q8_0 batches match a float64 reference', () => {
  setKernelPath('auto');
  let seed = 700;
  for (const raw of [false, true]) {
    for (const [n, k, m] of SHAPES) {
      const next = rng(seed++);
      const w = weights(n, k, next, raw);
      const wd = dequantize(GgmlType.Q8_0, w, n * k);
      const x = randomArray(m * k, next, 2);
      const out = run(w, n, k, x, m);
      for (let i = 0; i < m; i++) {
        const xa = q8_0RoundTrip(x.subarray(i * k, (i + 1) * k));
        for (let r = 0; r < n; r++) {
          let s = 0;
          let mag = 0;
          for (let j = 0; j < k; j++) {
            const p = wd[r * k + j]! * xa[j]!;
            s += p;
            mag += Math.abs(p);
          }
          const got = out[i * n + r]!;
          assert.ok(Math.abs(got - s) <= 1e-5 * mag + 1e-30, `raw=${raw} n=${n} k=${k} m=${m} out[${i}, ${r}] = ${got}, reference ${s}`);
        }
      }
    }
  }
});

test('Q8_0 batches: 1 and 2 threads give identical results', () => {
  const before = getThreads();
  try {
    const [n, k, m] = [69, 512, 64];
    const next = rng(42);
    const w = weights(n, k, next, false);
    const x = randomArray(m * k, next, 1);
    setThreads(1);
    const one = run(w, n, k, x, m);
    setThreads(2);
    assert.deepEqual(run(w, n, k, x, m), one);
  } finally {
    setThreads(before);
  }
});
