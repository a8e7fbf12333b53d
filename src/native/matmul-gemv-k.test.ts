/**
 * The m = 1 (token generation) Q4_K kernel (Q6_K, Q5_K: see the last tests): 8 weight rows at a time (gemv8Q4_K in
 * native/src/matmul_x86.cc, VNNI builds), the remaining n % 8 rows on the row tile. Checked
 *   - bit for bit against the same rows computed inside m = 2 and m = 7 batches (row tiles:
 *     Q4_K's repacked panels start at m = 8), i.e. row invariance;
 *   - bit for bit against a TypeScript emulation of the canonical Q4_K f32 steps (matmul.h):
 *     per super-block exact integers sumi and mins from the raw block bytes, then
 *     acc = fma(float(sumi), d_w * d_x, acc), accMin = fma(float(mins), dmin_w * d_x, accMin),
 *     out = acc - accMin, with the activation quantized to Q8_K by src/gguf/quant.ts;
 *   - against the scalar kernel path (other f32 steps) and a float64 dot of the weights
 *     dequantized by src/gguf/quant.ts, within a tolerance.
 * n is 8, 13, 64, 71 (multiples of 8 and ragged tails), k 256, 512, 2048.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { dequantize, quantize } from '../gguf/quant.js';
import { f16ToF32, f32ToF16 } from '../gguf/f16.js';
import { matmul, setKernelPath } from './matmul.js';
import { rng } from './ops-testing.js';

const QK_K = 256;
const Q4K_BYTES = 144; // d, dmin (f16), 12 scale bytes, 128 bytes of nibbles
const Q8K_BYTES = 292; // d (f32), 256 int8, 16 int16 bsums

function randomArray(n: number, next: () => number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (next() * 2 - 1) * scale;
  return a;
}

/**
 * Weights [n, k] of a K-quant type: quantized from random floats, or random bytes (every scale
 * value and bit pattern) with small random f16 scales written at `f16` offsets of each block
 * ([offset, signed]: d may be negative, dmin not).
 */
function kWeights(type: GgmlType, blockBytes: number, f16: Array<[number, boolean]>, n: number, k: number, next: () => number, rawBytes: boolean): Uint8Array {
  if (!rawBytes) return quantize(type, randomArray(n * k, next, 0.5));
  const w = new Uint8Array(ggmlRowBytes(type, k) * n);
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(next() * 256);
  const dv = new DataView(w.buffer);
  for (let o = 0; o < w.length; o += blockBytes) {
    for (const [at, signed] of f16) dv.setUint16(o + at, f32ToF16((signed ? next() * 2 - 1 : next()) * 0.01), true);
  }
  return w;
}

/** Q4_K weights (d, dmin at the start of each 144-byte block). */
const weights = (n: number, k: number, next: () => number, rawBytes: boolean): Uint8Array =>
  kWeights(GgmlType.Q4_K, Q4K_BYTES, [[0, true], [2, false]], n, k, next, rawBytes);

/** Scale and min of sub-block j from the 12 packed bytes at s (ggml's get_scale_min_k4). */
function scaleMin(w: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [w[s + j]! & 63, w[s + j + 4]! & 63];
  return [(w[s + j + 4]! & 0xf) | ((w[s + j - 4]! >> 6) << 4), (w[s + j + 4]! >> 4) | ((w[s + j]! >> 6) << 4)];
}

/** fma(a, b, c) of f32 values: the product is exact in float64 (24 + 24 bits), one more
 * rounding of the sum in float64 before the f32 rounding (a double rounding that could differ
 * from a true fma only when the float64 sum lands exactly on an f32 tie). */
const fmaF32 = (a: number, b: number, c: number): number => Math.fround(a * b + c);

/** The canonical Q4_K f32 steps (matmul.h) for weight row `r` against one Q8_K activation row. */
function emulateRow(w: Uint8Array, r: number, k: number, xq: Uint8Array): number {
  const nb = k / QK_K;
  const wv = new DataView(w.buffer, w.byteOffset);
  const xv = new DataView(xq.buffer, xq.byteOffset);
  let acc = 0;
  let accMin = 0;
  for (let b = 0; b < nb; b++) {
    const o = (r * nb + b) * Q4K_BYTES;
    const xo = b * Q8K_BYTES;
    let sumi = 0;
    let mins = 0;
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMin(w, o + 4, j);
      let dot = 0;
      for (let l = 0; l < 32; l++) {
        const byte = w[o + 16 + 32 * (j >> 1) + l]!;
        const q = j & 1 ? byte >> 4 : byte & 0xf;
        dot += q * xv.getInt8(xo + 4 + 32 * j + l);
      }
      sumi += sc * dot;
      mins += m * (xv.getInt16(xo + 260 + 4 * j, true) + xv.getInt16(xo + 262 + 4 * j, true));
    }
    const dx = xv.getFloat32(xo, true);
    const dw = f16ToF32(wv.getUint16(o, true));
    const dminw = f16ToF32(wv.getUint16(o + 2, true));
    acc = fmaF32(Math.fround(sumi), Math.fround(dw * dx), acc);
    accMin = fmaF32(Math.fround(mins), Math.fround(dminw * dx), accMin);
  }
  return Math.fround(acc - accMin);
}

function run(w: Uint8Array, n: number, k: number, x: Float32Array, m: number): Float32Array {
  const out = new Float32Array(m * n).fill(NaN);
  matmul(out, w, GgmlType.Q4_K, n, k, x, m);
  return out;
}

const NS = [8, 13, 64, 71];
const KS = [256, 512, 2048];

test('Q4_K m = 1 kernel: bitwise equal to the row tiles in m = 2 and 7 batches and to the emulated f32 steps', () => {
  setKernelPath('auto');
  let seed = 4242;
  for (const rawBytes of [false, true]) {
    for (const n of NS) {
      for (const k of KS) {
        const next = rng(seed++);
        const w = weights(n, k, next, rawBytes);
        const x = randomArray(7 * k, next, 2);
        x.fill(0, 3 * k, 4 * k); // an all-zero activation row (d_x = 0)
        const batch7 = run(w, n, k, x, 7);
        const batch2 = run(w, n, k, x, 2);
        for (let i = 0; i < 7; i++) {
          const xi = x.subarray(i * k, (i + 1) * k);
          const one = run(w, n, k, xi, 1);
          const what = `${rawBytes ? 'raw' : 'quantized'} n=${n} k=${k} row ${i}`;
          assert.deepEqual(one, batch7.subarray(i * n, (i + 1) * n), `${what}: m = 1 vs m = 7`);
          if (i < 2) assert.deepEqual(one, batch2.subarray(i * n, (i + 1) * n), `${what}: m = 1 vs m = 2`);
          const xq = quantize(GgmlType.Q8_K, xi);
          for (let r = 0; r < n; r++) {
            const e = emulateRow(w, r, k, xq);
            if (!Object.is(one[r], e)) assert.fail(`${what}: out[${r}] = ${one[r]} but emulated steps give ${e}`);
          }
        }
      }
    }
  }
});

test('Q4_K m = 1 kernel: close to the scalar path and to a float64 reference', () => {
  let seed = 777;
  try {
    for (const n of NS) {
      for (const k of KS) {
        const next = rng(seed++);
        const w = weights(n, k, next, false);
        const x = randomArray(k, next, 2);
        setKernelPath('auto');
        const auto = run(w, n, k, x, 1);
        setKernelPath('scalar');
        const scalar = run(w, n, k, x, 1);
        setKernelPath('auto');
        const wd = dequantize(GgmlType.Q4_K, w, n * k);
        const xd = dequantize(GgmlType.Q8_K, quantize(GgmlType.Q8_K, x), k);
        for (let r = 0; r < n; r++) {
          let s = 0;
          let mag = 0;
          for (let j = 0; j < k; j++) {
            const p = wd[r * k + j]! * xd[j]!;
            s += p;
            mag += Math.abs(p);
          }
          const what = `n=${n} k=${k} out[${r}] = ${auto[r]}`;
          assert.ok(Math.abs(auto[r]! - s) <= 1e-5 * mag, `${what}, float64 reference ${s} (sum|w*x| ${mag})`);
          assert.ok(Math.abs(auto[r]! - scalar[r]!) <= 1e-5 * mag, `${what}, scalar path ${scalar[r]}`);
        }
      }
    }
  } finally {
    setKernelPath('auto');
  }
});

// Q6_K at m = 1 (gemv8Q6_K, VNNI builds: 8 rows at a time, each row keeping its own 8 f32
// lanes): bitwise equal to the row tiles inside m = 2 and 7 batches and to the scalar path
// (which does the same steps: llama.cpp's ggml_vec_dot_q6_K_q8_K), close to a float64 dot.
const Q6K_BYTES = 210; // ql[128], qh[64], int8 scales[16], d (f16)

/**
 * m = 1 outputs of `type` bit for bit equal to the same rows inside m = 2 and m = 7 batches and
 * to the scalar path (which does llama.cpp's steps for Q5_K and Q6_K), and close to float64.
 */
function checkGemv8(type: GgmlType, seed: number, makeWeights: (n: number, k: number, next: () => number, rawBytes: boolean) => Uint8Array): void {
  try {
    for (const rawBytes of [false, true]) {
      for (const n of NS) {
        for (const k of KS) {
          const next = rng(seed++);
          const w = makeWeights(n, k, next, rawBytes);
          const x = randomArray(7 * k, next, 2);
          x.fill(0, 3 * k, 4 * k);
          const runOne = (xs: Float32Array, m: number): Float32Array => {
            const out = new Float32Array(m * n).fill(NaN);
            matmul(out, w, type, n, k, xs, m);
            return out;
          };
          setKernelPath('auto');
          const batch7 = runOne(x, 7);
          const batch2 = runOne(x, 2);
          const wd = rawBytes ? undefined : dequantize(type, w, n * k);
          for (let i = 0; i < 7; i++) {
            const xi = x.subarray(i * k, (i + 1) * k);
            setKernelPath('auto');
            const one = runOne(xi, 1);
            setKernelPath('scalar');
            const scalar = runOne(xi, 1);
            const what = `${GgmlType[type]} ${rawBytes ? 'raw' : 'quantized'} n=${n} k=${k} row ${i}`;
            assert.deepEqual(one, batch7.subarray(i * n, (i + 1) * n), `${what}: m = 1 vs m = 7`);
            if (i < 2) assert.deepEqual(one, batch2.subarray(i * n, (i + 1) * n), `${what}: m = 1 vs m = 2`);
            assert.deepEqual(one, scalar, `${what}: SIMD vs scalar path`);
            if (wd && i === 0) {
              const xd = dequantize(GgmlType.Q8_K, quantize(GgmlType.Q8_K, xi), k);
              for (let r = 0; r < n; r++) {
                let s = 0;
                let mag = 0;
                for (let j = 0; j < k; j++) {
                  const p = wd[r * k + j]! * xd[j]!;
                  s += p;
                  mag += Math.abs(p);
                }
                assert.ok(Math.abs(one[r]! - s) <= 1e-5 * mag, `${what}: out[${r}] = ${one[r]}, float64 ${s}`);
              }
            }
          }
        }
      }
    }
  } finally {
    setKernelPath('auto');
  }
}

test('Q6_K m = 1 kernel: bitwise equal to the row tiles in batches and to the scalar path; close to float64', () => {
  checkGemv8(GgmlType.Q6_K, 6060, (n, k, next, raw) => kWeights(GgmlType.Q6_K, Q6K_BYTES, [[208, true]], n, k, next, raw));
});

// Q5_K at m = 1 (gemv8Q5_K, VNNI builds: 8 rows at a time, each row keeping llama.cpp's
// ggml_vec_dot_q5_K_q8_K steps: its own 8 f32 lanes and scalar summs chain): the same checks.
const Q5K_BYTES = 176; // d, dmin (f16), 12 scale bytes, qh[32], qs[128]

test('Q5_K m = 1 kernel: bitwise equal to the row tiles in batches and to the scalar path; close to float64', () => {
  checkGemv8(GgmlType.Q5_K, 5050, (n, k, next, raw) => kWeights(GgmlType.Q5_K, Q5K_BYTES, [[0, true], [2, false]], n, k, next, raw));
});
