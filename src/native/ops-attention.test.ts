// Attention and K/V store against a naive float64 reference that applies llama.cpp's roundings
// (query and probabilities rounded to f16), causal masking, GQA head mapping, bad sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16ToF32Array, f32ToF16, f32ToF16Array } from '../gguf/f16.js';
import { attention, setKernelPath, storeKv } from './ops.js';
import { assertClose, attentionRef, forEachPath, randomArray, rng } from './ops-testing.js';

function randomF16(r: () => number, n: number, scale: number): Uint16Array {
  return f32ToF16Array(randomArray(r, n, scale));
}

test('attention matches the reference over random shapes (GQA, odd head dims, positions not from 0)', () => {
  const r = rng(11);
  const shapes: Array<[number, number, number]> = [
    // [heads, kvHeads, headDim]
    [1, 1, 1], [2, 1, 7], [3, 3, 33], [4, 2, 16], [14, 2, 64], [8, 4, 128], [6, 3, 80], [12, 4, 48], [2, 2, 256],
  ];
  forEachPath((path) => {
    for (const [heads, kvHeads, hd] of shapes) {
      const m = 1 + Math.floor(r() * 13);
      const start = Math.floor(r() * 40);
      const pos = Int32Array.from({ length: m }, (_, i) => start + i);
      const rowsKv = start + m + Math.floor(r() * 3); // arrays may be longer than needed
      const kvDim = kvHeads * hd;
      const q = randomArray(r, m * heads * hd, 1.5);
      const k = randomF16(r, rowsKv * kvDim, 1.5);
      const v = randomF16(r, rowsKv * kvDim, 1);
      const scale = 1 / Math.sqrt(hd);
      const out = new Float32Array(m * heads * hd);
      attention(out, q, k, v, m, pos, heads, kvHeads, hd, scale);
      const want = attentionRef(q, k, v, m, pos, heads, kvHeads, hd, scale);
      // p is rounded to f16 on both sides, so a near-tie can round differently: allow 2^-11 of |v|
      assertClose(out, want, 5e-4, `attention ${path} heads ${heads}/${kvHeads} hd ${hd} m ${m}`);
    }
  });
});

test('attention matches the reference past several key blocks (positions 130..142, 7 heads per kv head)', () => {
  const r = rng(16);
  forEachPath((path) => {
    for (const [heads, kvHeads, hd] of [[14, 2, 64], [8, 8, 128], [4, 1, 48]] as const) {
      const m = 13, start = 130;
      const pos = Int32Array.from({ length: m }, (_, i) => start + i);
      const kvDim = kvHeads * hd;
      const q = randomArray(r, m * heads * hd, 1.5);
      const k = randomF16(r, (start + m) * kvDim, 1.5);
      const v = randomF16(r, (start + m) * kvDim, 1);
      const out = new Float32Array(m * heads * hd);
      attention(out, q, k, v, m, pos, heads, kvHeads, hd, 1 / Math.sqrt(hd));
      const want = attentionRef(q, k, v, m, pos, heads, kvHeads, hd, 1 / Math.sqrt(hd));
      assertClose(out, want, 5e-4, `attention ${path} heads ${heads}/${kvHeads} hd ${hd} at ${start}`);
    }
  });
});

test('attention: SIMD and scalar paths agree closely at a 300-token context', () => {
  const r = rng(12);
  const [heads, kvHeads, hd, m] = [8, 2, 64, 5];
  const pos = Int32Array.from({ length: m }, (_, i) => 295 + i);
  const q = randomArray(r, m * heads * hd, 2);
  const k = randomF16(r, 300 * kvHeads * hd, 2);
  const v = randomF16(r, 300 * kvHeads * hd, 1);
  const outs: Float32Array[] = [];
  forEachPath(() => {
    const out = new Float32Array(m * heads * hd);
    attention(out, q, k, v, m, pos, heads, kvHeads, hd, 0.125);
    outs.push(out);
  });
  assertClose(outs[0]!, outs[1]!, 2e-5, 'auto vs scalar');
});

test('attention is causal: K/V rows after a query position never matter', () => {
  const r = rng(13);
  forEachPath((path) => {
    for (const hd of [64, 20]) {
      const [heads, kvHeads, m, start] = [4, 2, 6, 3];
      const kvDim = kvHeads * hd, qDim = heads * hd;
      const total = start + m;
      const q = randomArray(r, m * qDim);
      const k = randomF16(r, total * kvDim, 1);
      const v = randomF16(r, total * kvDim, 1);
      const pos = Int32Array.from({ length: m }, (_, i) => start + i);
      const batch = new Float32Array(m * qDim);
      attention(batch, q, k, v, m, pos, heads, kvHeads, hd, 0.2);
      for (let i = 0; i < m; i++) {
        const p = start + i;
        // poison every row after p: NaN keys, huge values
        const kp = Uint16Array.from(k), vp = Uint16Array.from(v);
        for (let j = (p + 1) * kvDim; j < total * kvDim; j++) {
          kp[j] = 0x7e00; // NaN
          vp[j] = 0x7bff; // 65504
        }
        const one = new Float32Array(qDim);
        attention(one, q.subarray(i * qDim, (i + 1) * qDim), kp, vp, 1, new Int32Array([p]), heads, kvHeads, hd, 0.2);
        assert.deepEqual(one, batch.subarray(i * qDim, (i + 1) * qDim), `${path} hd ${hd} row ${i}: batch row = single row over poisoned tail`);
        assert.ok(one.every(Number.isFinite));
      }
    }
  });
});

test('attention maps query heads to kv heads in groups (head h uses kv head h / group)', () => {
  const [heads, kvHeads, hd] = [6, 3, 16];
  const kvDim = kvHeads * hd;
  const n = 4;
  // every value row of kv head g is the constant 10 * (g + 1); keys random
  const r = rng(14);
  const k = randomF16(r, n * kvDim, 1);
  const v = new Uint16Array(n * kvDim);
  for (let j = 0; j < n; j++) for (let g = 0; g < kvHeads; g++) v.fill(f32ToF16(10 * (g + 1)), j * kvDim + g * hd, j * kvDim + (g + 1) * hd);
  forEachPath((path) => {
    const out = new Float32Array(heads * hd);
    attention(out, randomArray(r, heads * hd), k, v, 1, new Int32Array([n - 1]), heads, kvHeads, hd, 0.25);
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      // probabilities are f16-rounded, so they sum to 1 within a few 2^-11
      for (let d = 0; d < hd; d++) assert.ok(Math.abs(out[h * hd + d]! - 10 * (g + 1)) < 10 * (g + 1) * 4e-3, `${path} head ${h} -> kv head ${g}`);
    }
  });
});

test('storeKv writes f16 rows at the given positions and nothing else', () => {
  const r = rng(15);
  forEachPath((path) => {
    for (const kvDim of [1, 7, 33, 256]) {
      const cache = new Uint16Array(10 * kvDim).fill(0x1234);
      const m = 3;
      const src = randomArray(r, m * kvDim, 100);
      const pos = new Int32Array([7, 2, 9]);
      storeKv(cache, src, m, kvDim, pos);
      const want = new Uint16Array(10 * kvDim).fill(0x1234);
      for (let i = 0; i < m; i++) want.set(f32ToF16Array(src.subarray(i * kvDim, (i + 1) * kvDim)), pos[i]! * kvDim);
      assert.deepEqual(cache, want, `storeKv ${path} kvDim ${kvDim}`);
    }
  });
});

test('attention and storeKv reject bad sizes', () => {
  setKernelPath('auto');
  const q = new Float32Array(2 * 4 * 8), out = new Float32Array(2 * 4 * 8);
  const kv = new Uint16Array(5 * 2 * 8);
  const pos = new Int32Array([3, 4]);
  assert.doesNotThrow(() => attention(out, q, kv, kv, 2, pos, 4, 2, 8, 0.3));
  assert.throws(() => attention(out, q, kv, kv, 2, pos, 4, 3, 8, 0.3), /multiple of numKvHeads/);
  assert.throws(() => attention(out, q, kv, kv, 2, new Int32Array([3, 5]), 4, 2, 8, 0.3), /k holds 80 elements, needs 96/);
  assert.throws(() => attention(out, q, kv, kv, 2, new Int32Array([3]), 4, 2, 8, 0.3), /positions holds 1/);
  assert.throws(() => attention(out, q, kv, kv, 2, new Int32Array([-1, 0]), 4, 2, 8, 0.3), /negative/);
  assert.throws(() => attention(out, q.subarray(1), kv, kv, 2, pos, 4, 2, 8, 0.3), /q holds 63/);
  assert.throws(() => attention(out.subarray(8), q, kv, kv, 2, pos, 4, 2, 8, 0.3), /out holds 56/);
  assert.throws(() => attention(out, q, kv, kv.subarray(1), 2, pos, 4, 2, 8, 0.3), /v holds 79/);
  assert.throws(() => attention(out, q, kv, kv, 2, pos, 0, 1, 8, 0.3), /at least 1/);
  assert.throws(() => attention(q, q, kv, kv, 2, pos, 4, 2, 8, 0.3), /alias/);
  assert.throws(() => attention(out, q, new Float32Array(80) as unknown as Uint16Array, kv, 2, pos, 4, 2, 8, 0.3), /k must be a Uint16Array/);
  assert.throws(() => storeKv(kv, new Float32Array(32), 2, 16, new Int32Array([0, 5])), /positions\[1\] = 5 is outside the cache \(5 rows of 16\)/);
  assert.throws(() => storeKv(kv, new Float32Array(31), 2, 16, new Int32Array([0, 1])), /src holds 31/);
});
