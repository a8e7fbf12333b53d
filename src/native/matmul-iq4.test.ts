/**
 * The batched IQ4_XS / IQ4_NL kernels (native/src/matmul_iq4.cc) against the scalar reference
 * kernels, bit for bit. Both scalar dots follow llama.cpp's vec_dot steps (matmul-llamacpp.test.ts
 * checks them against libggml), and the batched kernels promise the same f32 steps: IQ4_XS in
 * panels of 16 rows (zmm) with a last panel of <= 8 rows (ymm), weights pre-scaled to int16;
 * IQ4_NL in Q4_0's repacked 8-row panels.
 *
 * Shapes: n covers whole 16-row panels, an 8-row tail, a masked 16-row panel (12 rows), ragged
 * rows; m from the batched kernel's first size (4) through partial activation tiles; k = 2048
 * with n = 88 splits into several calls per thread (48 KiB of weight rows per call). Weights are
 * random bytes (every block scale, every nibble, small signed f16 d) so the int16 products reach
 * their largest magnitude (scale -32 times value -127, activation quant -128).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlRowBytes } from '../gguf/ggml-type.js';
import { f32ToF16 } from '../gguf/f16.js';
import { quantize } from '../gguf/quant.js';
import { getThreads, matmul, setKernelPath, setThreads, matmulSimdPath } from './matmul.js';
import { rng } from './ops-testing.js';

const SHAPES: Array<[number, number, number]> = [
  [16, 256, 4], [8, 512, 5], [24, 256, 9], [19, 768, 13], [44, 256, 8], [57, 512, 6], [88, 2048, 6], [40, 256, 33],
];

/** Random bytes with a random small signed f16 scale at the start of each block. */
function rawWeights(type: GgmlType, n: number, k: number, next: () => number): Uint8Array {
  const w = new Uint8Array(ggmlRowBytes(type, k) * n);
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(next() * 256);
  const blockBytes = type === GgmlType.IQ4_XS ? 136 : 18;
  const dv = new DataView(w.buffer);
  for (let o = 0; o < w.length; o += blockBytes) dv.setUint16(o, f32ToF16((next() * 2 - 1) * 0.01), true);
  return w;
}

function run(type: GgmlType, w: Uint8Array, n: number, k: number, x: Float32Array, m: number, path: 'auto' | 'scalar'): Float32Array {
  setKernelPath(path);
  const out = new Float32Array(m * n);
  matmul(out, w, type, n, k, x, m);
  return out;
}

for (const type of [GgmlType.IQ4_XS, GgmlType.IQ4_NL]) {
  test(`batched ${GgmlType[type]} kernel equals the scalar reference bit for bit (1 and 2 threads)`, (t) => {
    if (matmulSimdPath() === 'none') {
      t.skip('portable build without the SIMD kernels');
      return;
    }
    const threads = getThreads();
    try {
      for (const [n, k, m] of SHAPES) {
        const next = rng(n * 131 + k * 7 + m);
        for (const raw of [true, false]) {
          const w = raw ? rawWeights(type, n, k, next) : quantize(type, Float32Array.from({ length: n * k }, () => (next() * 2 - 1) * 0.5));
          const x = Float32Array.from({ length: m * k }, () => (next() * 2 - 1) * 3);
          for (let i = 0; i < m; i++) x[i * k + ((i * 37) % k)] = i % 2 ? 40 : -40; // a quant of -128 / 127 per row
          setThreads(1);
          const ref = run(type, w, n, k, x, m, 'scalar');
          for (const th of [1, 2]) {
            setThreads(th);
            const ours = run(type, w, n, k, x, m, 'auto');
            const bad = ours.findIndex((v, i) => !Object.is(v, ref[i]));
            assert.equal(bad, -1, `n=${n} k=${k} m=${m} ${raw ? 'raw' : 'quantized'} weights, ${th} threads: out[${bad}] = ${ours[bad]}, scalar ${ref[bad]}`);
          }
        }
      }
    } finally {
      setKernelPath('auto');
      setThreads(threads);
    }
  });
}
