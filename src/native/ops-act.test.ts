// GEGLU, soft-capping and scaling against naive float64 references, and the attention options
// of the gemma family (soft-capped scores, sliding window) against a naive reference, on both
// kernel paths. The window test poisons the K/V rows before every window with NaN: a kernel
// that read them would return NaN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16ToF32Array, f32ToF16, f32ToF16Array } from '../gguf/f16.js';
import { attention, geluMul, scale, softcap } from './ops.js';
import { forEachPath, randomArray, rng } from './ops-testing.js';

const f16Round = (x: number): number => f16ToF32Array(new Uint16Array([f32ToF16(x)]))[0]!;
const geluRef = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * x * (1 + 0.044715 * x * x)));

test('geluMul: gelu_tanh(gate) * up within the f16 lookup error; 0 below -10, gate * up above 10', () => {
  const r = rng(5);
  const n = 5000;
  const gate = randomArray(r, n, 12);
  const up = randomArray(r, n, 2);
  gate[0] = -10; gate[1] = 10; gate[2] = -30; gate[3] = 25; gate[4] = 0;
  forEachPath(() => {
    const out = new Float32Array(n);
    geluMul(out, gate, up, n);
    for (let i = 0; i < n; i++) {
      const x = gate[i]!;
      if (x <= -10) assert.equal(out[i], 0, `x = ${x}`);
      else if (x >= 10) assert.equal(out[i], Math.fround(x * up[i]!), `x = ${x}`);
      else {
        // x is rounded to f16 (relative 2^-11), gelu(x) stored as f16 (relative 2^-11)
        const want = geluRef(x) * up[i]!;
        const tol = (Math.abs(geluRef(x)) * 2 ** -10 + Math.abs(x) * 2 ** -10 * 1.2) * Math.abs(up[i]!) + 1e-7;
        assert.ok(Math.abs(out[i]! - want) <= tol, `gelu(${x}) * ${up[i]}: ${out[i]} vs ${want}`);
      }
    }
  });
  assert.throws(() => geluMul(new Float32Array(2), gate, up, 3), RangeError);
});

test('softcap: tanh(x / cap) * cap; scale: f32 products', () => {
  const r = rng(6);
  const x = randomArray(r, 3000, 200);
  const y = x.slice();
  softcap(y, y.length, 30);
  for (let i = 0; i < x.length; i++) {
    const want = Math.tanh(x[i]! / 30) * 30;
    assert.ok(Math.abs(y[i]! - want) <= 30 * 4e-7, `${x[i]}: ${y[i]} vs ${want}`);
    assert.ok(Math.abs(y[i]!) <= 30);
  }
  const z = x.slice();
  scale(z, z.length, 0.0625);
  for (let i = 0; i < x.length; i++) assert.equal(z[i], Math.fround(x[i]! * 0.0625));
  assert.throws(() => softcap(y, 10, 0), RangeError);
  assert.throws(() => scale(y, y.length + 1, 2), RangeError);
});

/** Naive attention with soft-capping and a sliding window (float64, llama.cpp's f16 roundings). */
function attentionRef(
  q: Float32Array, k: Uint16Array, v: Uint16Array, m: number, pos: Int32Array,
  heads: number, kvHeads: number, hd: number, scaleQk: number, cap: number, window: number,
): Float64Array {
  const kf = f16ToF32Array(k), vf = f16ToF32Array(v);
  const kvDim = kvHeads * hd, qDim = heads * hd, group = heads / kvHeads;
  const out = new Float64Array(m * qDim);
  for (let i = 0; i < m; i++) {
    const n = pos[i]! + 1;
    const start = window > 0 ? Math.max(0, n - window) : 0;
    for (let h = 0; h < heads; h++) {
      const qo = i * qDim + h * hd, ko = Math.floor(h / group) * hd;
      const s: number[] = [];
      for (let j = start; j < n; j++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += f16Round(q[qo + d]!) * kf[j * kvDim + ko + d]!;
        const capped = cap > 0 ? Math.tanh(dot / cap) * cap : dot;
        s.push(capped * scaleQk);
      }
      const max = Math.max(...s);
      const e = s.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      e.forEach((x, jj) => {
        const p = f16Round(x / sum);
        for (let d = 0; d < hd; d++) out[qo + d] += p * vf[(start + jj) * kvDim + ko + d]!;
      });
    }
  }
  return out;
}

test('attention with soft-capping and a sliding window matches the reference and never reads keys before the window', () => {
  const r = rng(21);
  // [heads, kvHeads, headDim, window, softcap]
  const cases: Array<[number, number, number, number, number]> = [
    [4, 2, 64, 8, 50], [8, 4, 128, 17, 0], [2, 1, 256, 40, 30], [3, 3, 33, 5, 0], [4, 1, 256, 16, 0], [8, 8, 32, 1, 20],
  ];
  forEachPath((path) => {
    for (const [heads, kvHeads, hd, window, cap] of cases) {
      const m = 1 + Math.floor(r() * 9);
      const first = 20 + Math.floor(r() * 60);
      const pos = Int32Array.from({ length: m }, (_, i) => first + i);
      const kvDim = kvHeads * hd;
      const rows = first + m;
      const q = randomArray(r, m * heads * hd, 2);
      const k = f32ToF16Array(randomArray(r, rows * kvDim, 2));
      const v = f32ToF16Array(randomArray(r, rows * kvDim, 1));
      const scaleQk = cap > 0 ? 1 : 1 / Math.sqrt(hd);
      const ref = attentionRef(q, k, v, m, pos, heads, kvHeads, hd, scaleQk, cap, window);
      // keys no row's window reaches: NaN
      const poisoned = (a: Uint16Array) => {
        const b = a.slice();
        b.fill(0x7e00, 0, Math.max(0, first + 1 - window) * kvDim);
        return b;
      };
      const out = new Float32Array(m * heads * hd);
      attention(out, q, poisoned(k), poisoned(v), m, pos, heads, kvHeads, hd, Math.fround(scaleQk), cap, window);
      for (let i = 0; i < out.length; i++) {
        assert.ok(Math.abs(out[i]! - ref[i]!) <= 2e-3, `${path} ${heads}/${kvHeads}x${hd} window ${window} cap ${cap}: out[${i}] ${out[i]} vs ${ref[i]}`);
      }
    }
  });
  assert.throws(() => attention(new Float32Array(4), new Float32Array(4), new Uint16Array(4), new Uint16Array(4), 1, new Int32Array(1), 1, 1, 4, 1, -1, 0), RangeError);
});
