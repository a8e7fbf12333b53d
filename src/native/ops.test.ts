// Element-wise, norm, rope, dequantization kernels against naive TypeScript references.
// Attention and the K/V store are in ops-attention.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16ToF32Array, f32ToF16Array } from '../gguf/f16.js';
import { MATMUL_TYPES } from './matmul.js';
import { GgmlType } from '../gguf/ggml-type.js';
import { dequantize, quantizeRows, quantizedBytes } from '../gguf/quant.js';
import {
  add,
  addBias,
  argmax,
  dequantizeRow,
  f16ToF32,
  f32ToF16,
  getRows,
  rmsNorm,
  rope,
  setKernelPath,
  siluMul,
  softmax,
  type KernelPath,
} from './ops.js';
import { assertClose, forEachPath, randomArray, rng } from './ops-testing.js';

const f = Math.fround;

const DIMS = [1, 7, 33, 288, 2048];

test('rmsNorm matches ggml numerics (double sum of f32 squares), in place too', () => {
  const r = rng(1);
  forEachPath((path) => {
    for (const dim of DIMS) {
      for (const m of [1, 3, 13]) {
        const x = randomArray(r, m * dim, 3);
        const w = randomArray(r, dim);
        const eps = 1e-5;
        const want = new Float32Array(m * dim);
        for (let i = 0; i < m; i++) {
          let sum = 0;
          for (let j = 0; j < dim; j++) sum += f(x[i * dim + j]! * x[i * dim + j]!);
          const mean = f(sum / dim);
          const scale = f(1 / f(Math.sqrt(f(mean + eps))));
          for (let j = 0; j < dim; j++) want[i * dim + j] = f(f(x[i * dim + j]! * scale) * w[j]!);
        }
        const out = new Float32Array(m * dim);
        rmsNorm(out, x, w, m, dim, eps);
        // same operation order as ggml on both paths: bit exact
        assert.deepEqual(out, want, `rmsNorm ${path} dim ${dim} m ${m}`);
        rmsNorm(x, x, w, m, dim, eps);
        assert.deepEqual(x, out, 'in place gives the same');
      }
    }
  });
});

test('siluMul, add, addBias against references, odd sizes', () => {
  const r = rng(2);
  forEachPath((path) => {
    for (const n of [1, 7, 33, 288, 2048, 70001]) {
      const g = randomArray(r, n, 12);
      const u = randomArray(r, n, 2);
      const out = new Float32Array(n);
      siluMul(out, g, u, n);
      const want = Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]!);
      assertClose(out, want, 2e-6, `siluMul ${path} n ${n}`);
      const s = new Float32Array(n);
      add(s, g, u, n);
      assert.deepEqual(s, Float32Array.from(g, (x, i) => x + u[i]!), `add ${path} n ${n}`);
    }
    // extremes stay finite and sensible
    const g = new Float32Array([-200, -90, -20, 0, 20, 90, 200]);
    const out = new Float32Array(7);
    siluMul(out, g, new Float32Array(7).fill(1), 7);
    assertClose(out, [0, 0, -20 / (1 + Math.exp(20)), 0, 20 / (1 + Math.exp(-20)), 90, 200], 1e-6, `silu extremes ${path}`);
    for (const [m, n] of [[1, 1], [3, 7], [13, 33], [5, 896]] as const) {
      const x = randomArray(r, m * n);
      const b = randomArray(r, n);
      const want = Float32Array.from(x, (v, i) => v + b[i % n]!);
      addBias(x, b, m, n);
      assert.deepEqual(x, want, `addBias ${path} ${m}x${n}`);
    }
  });
});

test('rope: hand-computed values for pos 1, headDim 4, base 10000 (normal and neox)', () => {
  // theta_scale = 10000^(-2/4) = 0.01: pair 0 turns by 1 radian, pair 1 by 0.01 radian.
  const c0 = Math.cos(1), s0 = Math.sin(1), c1 = Math.cos(0.01), s1 = Math.sin(0.01);
  forEachPath((path) => {
    const x = new Float32Array([1, 2, 3, 4]);
    rope(x, 1, 1, 4, new Int32Array([1]), 'normal', 10000, 1, null);
    assertClose(x, [c0 - 2 * s0, s0 + 2 * c0, 3 * c1 - 4 * s1, 3 * s1 + 4 * c1], 1e-6, `normal ${path}`);
    const y = new Float32Array([1, 2, 3, 4]);
    rope(y, 1, 1, 4, new Int32Array([1]), 'neox', 10000, 1, null);
    // neox pairs (0, 2) and (1, 3)
    assertClose(y, [c0 - 3 * s0, 2 * c1 - 4 * s1, s0 + 3 * c0, 2 * s1 + 4 * c1], 1e-6, `neox ${path}`);
    const z = new Float32Array([1, 2, 3, 4]);
    rope(z, 1, 1, 4, new Int32Array([0]), 'normal', 10000, 1, null);
    assert.deepEqual(z, new Float32Array([1, 2, 3, 4]), 'position 0 is the identity');
  });
});

/**
 * ggml's rope: theta iterated in f32 (theta_scale from nRot), angle = freqScale * (theta / ff),
 * cos/sin times attnFactor, rotation in double; dimensions [nRot, hd) of each head unchanged.
 */
function ropeRef(
  x: Float32Array, m: number, heads: number, hd: number, pos: Int32Array,
  mode: 'normal' | 'neox', base: number, fs: number, ff: Float32Array | null, nRot = hd, attnFactor = 1,
): Float32Array {
  const out = Float32Array.from(x);
  const thetaScale = f(Math.pow(f(base), f(-2 / nRot)));
  for (let i = 0; i < m; i++) {
    let theta = f(pos[i]!);
    for (let p = 0; p < nRot / 2; p++) {
      const angle = f(f(fs) * f(theta / (ff ? ff[p]! : 1)));
      const c = f(Math.cos(angle)) * f(attnFactor), s = f(Math.sin(angle)) * f(attnFactor);
      for (let h = 0; h < heads; h++) {
        const o = i * heads * hd + h * hd;
        const [a, b] = mode === 'normal' ? [o + 2 * p, o + 2 * p + 1] : [o + p, o + p + nRot / 2];
        out[a] = x[a]! * c - x[b]! * s;
        out[b] = x[a]! * s + x[b]! * c;
      }
      theta = f(theta * thetaScale);
    }
  }
  return out;
}

test('rope: random shapes, positions, freq factors and scale against a reference', () => {
  const r = rng(3);
  forEachPath((path) => {
    for (const [heads, hd] of [[1, 2], [3, 8], [14, 64], [4, 128]] as const) {
      for (const mode of ['normal', 'neox'] as const) {
        const m = 1 + Math.floor(r() * 13);
        const start = Math.floor(r() * 3000);
        const pos = Int32Array.from({ length: m }, (_, i) => start + i);
        const ff = r() < 0.5 ? null : Float32Array.from({ length: hd / 2 }, () => 1 + r() * 7);
        const fs = r() < 0.5 ? 1 : 0.25;
        const base = r() < 0.5 ? 10000 : 1000000;
        const x = randomArray(r, m * heads * hd);
        const want = ropeRef(x, m, heads, hd, pos, mode, base, fs, ff);
        rope(x, m, heads, hd, pos, mode, base, fs, ff);
        // angles are identical f32 values; cosf/sinf vs double cos/sin and the rotation's
        // roundings leave a few ulps
        assertClose(x, want, 2e-6, `rope ${path} ${mode} heads ${heads} hd ${hd}`);
      }
    }
  });
});

test('rope: partial rotary (nRot < headDim) leaves the tail of each head as it is; attnFactor scales cos and sin', () => {
  const r = rng(31);
  forEachPath((path) => {
    // Phi-4-mini rotates 96 of 128 dimensions; phi-3.5's attn_factor is about 1.19.
    for (const [heads, hd, nRot] of [[3, 128, 96], [2, 16, 4], [5, 96, 96]] as const) {
      for (const mode of ['normal', 'neox'] as const) {
        const m = 1 + Math.floor(r() * 9);
        const pos = Int32Array.from({ length: m }, () => Math.floor(r() * 5000));
        const ff = r() < 0.5 ? null : Float32Array.from({ length: nRot / 2 }, () => 1 + r() * 7);
        const attnFactor = r() < 0.5 ? 1 : 1.1902380714238083;
        const x = randomArray(r, m * heads * hd);
        const want = ropeRef(x, m, heads, hd, pos, mode, 10000, 1, ff, nRot, attnFactor);
        const before = Float32Array.from(x);
        rope(x, m, heads, hd, pos, mode, 10000, 1, ff, nRot, attnFactor);
        assertClose(x, want, 3e-6, `rope ${path} ${mode} hd ${hd} nRot ${nRot} attnFactor ${attnFactor}`);
        for (let i = 0; i < m * heads; i++) {
          for (let d = nRot; d < hd; d++) assert.equal(x[i * hd + d], before[i * hd + d], `dimension ${d} past nRot changed`);
        }
      }
    }
  });
  const x = new Float32Array(8);
  assert.throws(() => rope(x, 1, 1, 8, new Int32Array([0]), 'neox', 10000, 1, null, 10, 1), /nRot/);
  assert.throws(() => rope(x, 1, 1, 8, new Int32Array([0]), 'neox', 10000, 1, new Float32Array(1), 4, 1), /freqFactors/);
});

test('getRows and dequantizeRow agree bit for bit with the reference dequantizer for every type', () => {
  const r = rng(4);
  const types = MATMUL_TYPES; // every supported type
  forEachPath((path) => {
    for (const type of types) {
      for (const rowLen of [256, 512]) {
        const numRows = 9;
        const src = randomArray(r, numRows * rowLen, 2);
        const table = quantizeRows(type, src, rowLen);
        const rowBytes = quantizedBytes(type, rowLen);
        const rows = new Int32Array([3, 0, 3, 8, 5]);
        const out = new Float32Array(rows.length * rowLen);
        getRows(out, table, type, rowLen, numRows, rows);
        for (let i = 0; i < rows.length; i++) {
          const want = dequantize(type, table.subarray(rows[i]! * rowBytes, (rows[i]! + 1) * rowBytes), rowLen);
          assert.deepEqual(out.subarray(i * rowLen, (i + 1) * rowLen), want, `getRows ${path} type ${type} row ${rows[i]}`);
        }
        // dequantizeRow from an unaligned byte offset (streamed rows land anywhere in a buffer)
        const shifted = new Uint8Array(rowBytes + 1);
        shifted.set(table.subarray(2 * rowBytes, 3 * rowBytes), 1);
        const one = new Float32Array(rowLen);
        dequantizeRow(one, shifted.subarray(1), type, rowLen);
        assert.deepEqual(one, dequantize(type, table.subarray(2 * rowBytes, 3 * rowBytes), rowLen), `dequantizeRow ${type}`);
      }
    }
  });
  // small rows for the 32-element block types
  const t = quantizeRows(GgmlType.Q8_0, randomArray(r, 4 * 32), 32);
  const out = new Float32Array(32);
  getRows(out, t, GgmlType.Q8_0, 32, 4, new Int32Array([1]));
  assert.deepEqual(out, dequantize(GgmlType.Q8_0, t.subarray(34, 68), 32));
});

test('getRows / dequantizeRow reject bad types, sizes and ids', () => {
  const table = new Uint8Array(4 * 34);
  const out = new Float32Array(64);
  assert.throws(() => getRows(out, table, GgmlType.Q8_0, 32, 4, new Int32Array([4])), /rows\[0\] = 4 is outside \[0, 4\)/);
  assert.throws(() => getRows(out, table, GgmlType.Q8_0, 32, 4, new Int32Array([-1])), RangeError);
  assert.throws(() => getRows(out, table, GgmlType.Q8_0, 32, 5, new Int32Array([0])), /table holds 136/);
  assert.throws(() => getRows(out, table, GgmlType.Q8_0, 33, 1, new Int32Array([0])), /block size 32/);
  assert.throws(() => getRows(out, table, GgmlType.IQ2_XXS, 256, 0, new Int32Array([])), /cannot be dequantized/);
  assert.throws(() => getRows(new Float32Array(31), table, GgmlType.Q8_0, 32, 4, new Int32Array([0])), /out holds 31/);
  assert.throws(() => dequantizeRow(out, table.subarray(0, 33), GgmlType.Q8_0, 32), /src holds 33/);
  assert.throws(() => getRows(out, new Uint16Array(8) as unknown as Uint8Array, GgmlType.F16, 4, 1, new Int32Array([0])), TypeError);
});

test('softmax and argmax against references, with offsets', () => {
  const r = rng(5);
  forEachPath((path) => {
    for (const n of [1, 7, 33, 288, 32000]) {
      const off = Math.floor(r() * 5);
      const x = randomArray(r, n + off + 3, 20);
      const before = Float32Array.from(x);
      const i = argmax(x, n, off);
      let best = 0;
      for (let j = 1; j < n; j++) if (x[off + j]! > x[off + best]!) best = j;
      assert.equal(i, best, `argmax n ${n}`);
      softmax(x, n, off);
      let max = -Infinity;
      for (let j = 0; j < n; j++) max = Math.max(max, before[off + j]!);
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(before[off + j]! - max);
      const want = Array.from(before.subarray(off, off + n), (v) => Math.exp(v - max) / sum);
      assertClose(Array.from(x.subarray(off, off + n), (v) => v * n), want.map((v) => v * n), 1e-5, `softmax ${path} n ${n}`);
      assert.deepEqual(x.subarray(0, off), before.subarray(0, off), 'softmax leaves elements before offset');
      assert.deepEqual(x.subarray(off + n), before.subarray(off + n), 'softmax leaves elements after the range');
    }
  });
  assert.equal(argmax(new Float32Array([1, 5, 5, 2]), 4), 1, 'first of equal maxima');
  assert.equal(argmax(new Float32Array([NaN, 1, 3, NaN]), 4), 2, 'NaN never wins');
  assert.equal(argmax(new Float32Array([9, 1, 3]), 2, 1), 1, 'index is relative to offset');
  assert.throws(() => argmax(new Float32Array(3), 3, 1), /offset \+ n/);
  assert.throws(() => softmax(new Float32Array(3), 0), RangeError);
});

test('f32ToF16 / f16ToF32 match the TypeScript conversions, tails and specials included', () => {
  const r = rng(6);
  forEachPath((path) => {
    for (const n of [1, 7, 33, 288, 2048, 100003]) {
      const x = randomArray(r, n, 70000);
      // specials and rounding edge cases: subnormals, ties, overflow, NaN, inf, signed zero
      const specials = [0, -0, 65504, 65519.99, 65520, 1e-8, 5.960464477539063e-8, 2.98e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, -Infinity, NaN];
      for (let i = 0; i < Math.min(n, specials.length); i++) x[i] = specials[i]!;
      const h = new Uint16Array(n);
      f32ToF16(h, x, n);
      assert.deepEqual(h, f32ToF16Array(x), `f32ToF16 ${path} n ${n}`);
      const back = new Float32Array(n);
      f16ToF32(back, h, n);
      assert.deepEqual(back, f16ToF32Array(h), `f16ToF32 ${path} n ${n}`);
    }
  });
});

test('bad sizes and types throw clear errors', () => {
  const a = new Float32Array(10);
  assert.throws(() => rmsNorm(a, a, new Float32Array(4), 2, 5, 1e-5), /weight holds 4 elements, needs 5/);
  assert.throws(() => rmsNorm(a, a, a, 3, 5, 1e-5), /x holds 10 elements, needs 15/);
  assert.throws(() => rmsNorm(a, a, a, 1, 0, 1e-5), /dim must be at least 1/);
  assert.throws(() => rmsNorm(a, a, a, 1, 5, -1), /eps must be >= 0/);
  assert.throws(() => rmsNorm(a, a, a, 1.5, 5, 1e-5), /m must be an integer/);
  assert.throws(() => rmsNorm(a, a, a, -1, 5, 1e-5), RangeError);
  assert.throws(() => rmsNorm(a, new Float64Array(10) as unknown as Float32Array, a, 1, 5, 1e-5), /x must be a Float32Array/);
  assert.throws(() => siluMul(a, a, new Float32Array(3), 10), /up holds 3/);
  assert.throws(() => siluMul(a, a, a, 10, 3), /rowLength must be at least 1 and divide n/);
  assert.throws(() => siluMul(a, a, a, 10, 0), /rowLength must be at least 1 and divide n/);
  assert.throws(() => siluMul(a, a, new Float32Array(3), 10, 5), /up holds 3/);
  assert.throws(() => add(new Float32Array(9), a, a, 10), /out holds 9/);
  assert.throws(() => addBias(a, new Float32Array(4), 2, 5), /bias holds 4/);
  assert.throws(() => rope(a, 1, 1, 5, new Int32Array([0]), 'normal', 1e4, 1, null), /headDim must be even/);
  assert.throws(() => rope(a, 1, 2, 6, new Int32Array([0]), 'normal', 1e4, 1, null), /x holds 10/);
  assert.throws(() => rope(a, 2, 1, 4, new Int32Array([0]), 'normal', 1e4, 1, null), /positions holds 1/);
  assert.throws(() => rope(a, 1, 1, 4, new Int32Array([-3]), 'normal', 1e4, 1, null), /negative/);
  assert.throws(() => rope(a, 1, 1, 4, new Int32Array([0]), 'normal', 1e4, 1, new Float32Array(1)), /freqFactors holds 1/);
  assert.throws(() => rope(a, 1, 1, 4, new Int32Array([0]), 'glm' as 'normal', 1e4, 1, null), /mode/);
  assert.throws(() => rope(a, 1, 1, 4, new Int32Array([0]), 'normal', NaN, 1, null), /freqBase must be finite/);
  assert.throws(() => f16ToF32(a, new Uint16Array(3), 4), /src holds 3/);
  assert.throws(() => setKernelPath('fast' as KernelPath), /unknown path 'fast'/);
});
