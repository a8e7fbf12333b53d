import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bf16ToF32,
  bf16ToF32Array,
  f16ToF32,
  f16ToF32Array,
  f32ToBf16,
  f32ToBf16Array,
  f32ToF16,
  f32ToF16Array,
} from './f16.js';

// Expected bit patterns below are computed by hand from the binary16 layout
// (1 sign, 5 exponent bits biased by 15, 10 mantissa bits).
test('f32ToF16: exact values and specials', () => {
  assert.equal(f32ToF16(1.0), 0x3c00);
  assert.equal(f32ToF16(-2.0), 0xc000);
  assert.equal(f32ToF16(0.5), 0x3800);
  assert.equal(f32ToF16(65504), 0x7bff); // largest finite
  assert.equal(f32ToF16(2 ** -14), 0x0400); // smallest normal
  assert.equal(f32ToF16(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(f32ToF16(1023 * 2 ** -24), 0x03ff); // largest subnormal
  assert.equal(f32ToF16(0), 0x0000);
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(Infinity), 0x7c00);
  assert.equal(f32ToF16(-Infinity), 0xfc00);
  assert.equal(f32ToF16(NaN), 0x7e00);
  assert.equal(f32ToF16(1e-8), 0); // far below half the smallest subnormal
  assert.equal(f32ToF16(-1e-8), 0x8000);
  assert.equal(f32ToF16(1e6), 0x7c00); // overflow
});

test('f32ToF16: rounding to nearest, ties to even', () => {
  // 0.1 = 1.6 * 2^-4 -> exponent 11 (0x2c00), mantissa 0.6*1024 = 614.4 -> 614 = 0x266
  assert.equal(f32ToF16(0.1), 0x2e66);
  // 1/3 = 1.333 * 2^-2 -> exponent 13 (0x3400), mantissa 341.33 -> 341 = 0x155
  assert.equal(f32ToF16(1 / 3), 0x3555);
  // 1 + 2^-11 is halfway between 0x3c00 and 0x3c01: tie goes to the even 0x3c00
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00);
  // 1 + 3*2^-11 is halfway between 0x3c01 and 0x3c02: tie goes to the even 0x3c02
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02);
  // just above the tie rounds up
  assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // 65520 is halfway between 65504 (0x7bff, odd) and 65536 (inf): rounds to inf
  assert.equal(f32ToF16(65520), 0x7c00);
  assert.equal(f32ToF16(65519), 0x7bff);
  // subnormal ties: 2^-25 is halfway between 0 and 2^-24 -> 0; 3*2^-25 between 1 and 2 -> 2
  assert.equal(f32ToF16(2 ** -25), 0x0000);
  assert.equal(f32ToF16(2 ** -25 * 1.5), 0x0001);
  assert.equal(f32ToF16(3 * 2 ** -25), 0x0002);
  // the largest subnormal plus half a step rounds (to even) into the smallest normal
  assert.equal(f32ToF16(1023.5 * 2 ** -24), 0x0400);
});

test('f16ToF32: hand values and every finite pattern round-trips', () => {
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
  assert.equal(f16ToF32(0xc000), -2);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.equal(f16ToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  const all = new Uint16Array(65536);
  for (let h = 0; h < 65536; h++) all[h] = h;
  const f = f16ToF32Array(all);
  const back = f32ToF16Array(f);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) {
      assert.ok(Number.isNaN(f[h]!), `0x${h.toString(16)} should decode to NaN`);
      assert.equal(back[h]! & 0x7e00, 0x7e00, 'NaN stays a quiet NaN');
    } else {
      assert.equal(back[h], h, `0x${h.toString(16)} round trip`);
      assert.equal(f[h], f16ToF32(h));
    }
  }
});

test('f32ToF16Array agrees with the scalar form and with an exact rational rounding', () => {
  // independent check: round x*2^24 (subnormal units) or the scaled mantissa with Math-based RNE
  const n = 20000;
  const src = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    src[i] = (s / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 26);
  }
  const out = f32ToF16Array(src);
  for (let i = 0; i < n; i++) {
    const x = src[i]!;
    assert.equal(out[i], f32ToF16(x));
    // the result is the f16 nearest to x: no other f16 neighbour is strictly closer
    const y = f16ToF32(out[i]!);
    const up = f16ToF32((out[i]! & 0x7fff) + 1) * Math.sign(y || x);
    const down = (out[i]! & 0x7fff) === 0 ? 0 : f16ToF32((out[i]! & 0x7fff) - 1) * Math.sign(y || x);
    assert.ok(Math.abs(x - y) <= Math.abs(x - up), `x=${x}`);
    assert.ok(Math.abs(x - y) <= Math.abs(x - down), `x=${x}`);
  }
});

test('bf16: rounding like GGML_FP32_TO_BF16', () => {
  assert.equal(f32ToBf16(1.0), 0x3f80);
  assert.equal(f32ToBf16(-2.0), 0xc000);
  assert.equal(f32ToBf16(Math.PI), 0x4049); // 0x40490fdb: low half 0x0fdb < 0x8000
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (0x3f81 is odd)
  assert.equal(f32ToBf16(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(f32ToBf16(-0), 0x8000);
  assert.equal(f32ToBf16(Infinity), 0x7f80);
  assert.equal(f32ToBf16(NaN), 0x7fc0);
  // a signalling NaN (0x7f800001) keeps its upper bits and gets bit 6 set: 0x7f80 | 0x40
  const sn = new Float32Array(new Uint32Array([0x7f800001]).buffer);
  assert.equal(f32ToBf16Array(sn)[0], 0x7fc0);
  // the largest finite f32 rounds up to infinity
  const big = new Float32Array(new Uint32Array([0x7f7fffff]).buffer);
  assert.equal(f32ToBf16Array(big)[0], 0x7f80);
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(bf16ToF32(0x4049), 3.140625);
  const arr = bf16ToF32Array(new Uint16Array([0x3f80, 0xc000, 0x0001]));
  assert.deepEqual([...arr], [1, -2, 2 ** -133]);
});

test('array forms reject a short destination', () => {
  assert.throws(() => f32ToF16Array(new Float32Array(4), new Uint16Array(3)), RangeError);
  assert.throws(() => f32ToBf16Array(new Float32Array(4), new Uint16Array(3)), RangeError);
});
