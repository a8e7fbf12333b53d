import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from './ggml-type.js';
import { dequantize, quantize, quantizeRows, quantizedBytes } from './quant.js';
import { ggmlDequantize, ggmlQuantize, ggmlQuantizeActivations, ggmlVecDot } from './quant/ggml-oracle.js';
import { gaussian, oracleInputs } from './quant/testing.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);

// ---- hand-computed block bytes -------------------------------------------------------------

test('Q8_0 hand vector: d = amax/127, roundf (ties away from zero)', () => {
  const x = new Float32Array(32);
  x[0] = 127; // amax 127 -> d = 1 (f16 0x3c00), id = 1
  x[1] = -127;
  x[2] = 63.5; // roundf -> 64 (ties away), RNE would give 64 too
  x[3] = 62.5; // roundf -> 63 (RNE would give 62)
  x[4] = -62.5; // -> -63
  x[5] = 0.49; // -> 0
  x[6] = -3.2; // -> -3
  const y = quantize(GgmlType.Q8_0, x);
  assert.equal(y.length, 34);
  assert.equal(u16(y, 0), 0x3c00);
  const qs = [...new Int8Array(y.buffer, 2, 7)];
  assert.deepEqual(qs, [127, -127, 64, 63, -63, 0, -3]);
  assert.ok(y.subarray(9).every((b) => b === 0));
  const back = dequantize(GgmlType.Q8_0, y, 32);
  assert.deepEqual([...back.subarray(0, 7)], [127, -127, 64, 63, -63, 0, -3]);
});

test('Q4_0 hand vector: d = max/-8 with the sign of the largest magnitude, trunc(x/d + 8.5)', () => {
  const x = new Float32Array(32);
  for (let j = 0; j < 16; j++) x[j] = j - 8; // -8..7; max = -8 -> d = 1, id = 1 (f16 0x3c00)
  x[16] = 7.9; // trunc(16.4) = 16 -> capped at 15
  x[17] = 0.4; // trunc(8.9) = 8
  x[18] = 0.5; // trunc(9.0) = 9
  x[19] = -7.6; // trunc(0.9) = 0
  const y = quantize(GgmlType.Q4_0, x);
  assert.equal(y.length, 18);
  assert.equal(u16(y, 0), 0x3c00);
  // low nibble: element j (= j, since x = j - 8 -> q = j); high nibble: element j + 16
  const hi = [15, 8, 9, 0, ...Array(12).fill(8)];
  for (let j = 0; j < 16; j++) assert.equal(y[2 + j], j | (hi[j]! << 4), `byte ${j}`);
  // positive max: d = 8 / -8 = -1 (f16 0xbc00), q = trunc(-x + 8.5)
  const z = new Float32Array(32);
  z[0] = 8;
  z[1] = 3;
  const w = quantize(GgmlType.Q4_0, z);
  assert.equal(u16(w, 0), 0xbc00);
  assert.equal(w[2], 0 | (8 << 4)); // -8 + 8.5 -> 0; element 16 is 0 -> 8
  assert.equal(w[3], 5 | (8 << 4)); // -3 + 8.5 = 5.5 -> 5
  assert.deepEqual([...dequantize(GgmlType.Q4_0, w, 32).subarray(0, 2)], [8, 3]);
});

test('Q4_K hand vector: exact ramps give scale 1 per sub-block, 6-bit scales packed', () => {
  // sub-block j (32 weights) = (j + 1) * (l % 16): make_qkx2_quants fits it exactly
  // (scale j + 1, min 0). max_scale = 8: ls_j = nearest(63/8 * (j+1)) = 8,16,24,32(31.5 tie->even),39,47,55,63;
  // d = f16(8/63) = 0x3010 (1.015625/8), dmin = 0.
  const x = new Float32Array(256);
  for (let i = 0; i < 256; i++) x[i] = ((i >> 5) + 1) * (i % 16);
  const y = quantize(GgmlType.Q4_K, x);
  assert.equal(y.length, 144);
  assert.equal(u16(y, 0), 0x3010);
  assert.equal(u16(y, 2), 0x0000);
  // scales: [0..3] = ls 0..3 | top bits of ls 4..7 << 6; [4..7] = lm (0); [8..11] = low nibbles of ls 4..7
  assert.deepEqual([...y.subarray(4, 16)], [8 | 128, 16 | 128, 24 | 192, 32 | 192, 0, 0, 0, 0, 7, 15, 7, 15]);
  // re-quantized levels are l % 16 again; each byte holds weight l (low) and l + 32 (high)
  for (let b = 0; b < 128; b++) assert.equal(y[16 + b], 0x11 * (b % 16), `qs ${b}`);

  // with mins: x = l % 16 - 8 in every sub-block -> scale 1, min 8; ls = lm = 63 everywhere,
  // so every scales byte is 0xff; d = f16(1/63) = 0x2410, dmin = f16(8/63) = 0x3010
  const x2 = new Float32Array(256);
  for (let i = 0; i < 256; i++) x2[i] = (i % 16) - 8;
  const y2 = quantize(GgmlType.Q4_K, x2);
  assert.equal(u16(y2, 0), 0x2410);
  assert.equal(u16(y2, 2), 0x3010);
  assert.ok(y2.subarray(4, 16).every((b) => b === 0xff));
  for (let b = 0; b < 128; b++) assert.equal(y2[16 + b], 0x11 * (b % 16));
  // dequantized: d*63*q - dmin*63 = 0.999755859375 q - 7.998046875
  const back = dequantize(GgmlType.Q4_K, y2, 256);
  assert.equal(back[0], Math.fround(-7.998046875));
  assert.equal(back[15], Math.fround(Math.fround(0.999755859375 * 15) - 7.998046875));
});

test('Q5_K hand vector: 0..31 ramps, fifth bits in qh', () => {
  const x = new Float32Array(256);
  for (let i = 0; i < 256; i++) x[i] = ((i >> 5) + 1) * (i % 32);
  const y = quantize(GgmlType.Q5_K, x);
  assert.equal(y.length, 176);
  assert.equal(u16(y, 0), 0x3010); // same max scale 8 as the Q4_K ramp
  assert.equal(u16(y, 2), 0);
  assert.deepEqual([...y.subarray(4, 16)], [8 | 128, 16 | 128, 24 | 192, 32 | 192, 0, 0, 0, 0, 7, 15, 7, 15]);
  // qh[l]: bits 2k and 2k+1 set when weight l of the sub-block pair k is >= 16, i.e. l >= 16
  for (let l = 0; l < 32; l++) assert.equal(y[16 + l], l >= 16 ? 0xff : 0x00, `qh ${l}`);
  for (let b = 0; b < 128; b++) assert.equal(y[48 + b], 0x11 * (b % 16), `qs ${b}`);
});

test('Q6_K hand vector: x = l%16 - 8 -> scale 1/4 per sub-block, d = -1/512, scales -128', () => {
  // make_qx_quants(nmax 32): max = -8 -> iscale 4, levels 4x are exactly proportional, so the
  // weighted fit gives scale 1/4 and no other candidate beats it. Then iscale = -128/0.25 = -512:
  // d = f16(-1/512) = 0x9800, every int8 scale = -128 (0x80), levels 4x+32 = 4*(l%16).
  const x = new Float32Array(256);
  for (let i = 0; i < 256; i++) x[i] = (i % 16) - 8;
  const y = quantize(GgmlType.Q6_K, x);
  assert.equal(y.length, 210);
  assert.equal(u16(y, 208), 0x9800);
  assert.ok(y.subarray(192, 208).every((b) => b === 0x80));
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const L = 4 * (l % 16);
      const lo = (L & 0xf) | ((L & 0xf) << 4);
      assert.equal(y[64 * h + l], lo);
      assert.equal(y[64 * h + l + 32], lo);
      assert.equal(y[128 + 32 * h + l], (L >> 4) * 0x55);
    }
  }
  assert.deepEqual([...dequantize(GgmlType.Q6_K, y, 256)], [...x]);
});

test('Q8_K hand vector: d = max/-127 as f32, RNE levels, bsums', () => {
  const x = new Float32Array(256);
  for (let j = 0; j < 256; j++) x[j] = j - 128; // max magnitude -128 -> iscale 127/128
  const y = quantize(GgmlType.Q8_K, x);
  assert.equal(y.length, 292);
  const d = new DataView(y.buffer).getFloat32(0, true);
  assert.equal(d, Math.fround(128 / 127));
  // expected levels: x * 127 / 128 rounded to nearest, ties to even, with integer arithmetic
  const q = new Int8Array(y.buffer, 4, 256);
  for (let j = 0; j < 256; j++) {
    const num = (j - 128) * 127;
    let r = Math.floor(num / 128);
    const rem = num - r * 128;
    if (rem > 64 || (rem === 64 && r % 2 !== 0)) r++;
    assert.equal(q[j], r, `x=${j - 128}`);
  }
  assert.equal(q[192], 64); // 64*127/128 = 63.5 -> 64 (even)
  assert.equal(q[64], -64); // -63.5 -> -64
  const dv = new DataView(y.buffer);
  for (let g = 0; g < 16; g++) {
    let s = 0;
    for (let i = 0; i < 16; i++) s += q[16 * g + i]!;
    assert.equal(dv.getInt16(260 + 2 * g, true), s);
  }
});

// ---- llama.cpp itself as the reference -----------------------------------------------------

const ORACLE_TYPES = [GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K];

test('quantize is bit-exact with llama.cpp quantize_row_*_ref (libggml-base from node-llama-cpp)', () => {
  const x = oracleInputs();
  for (const type of ORACLE_TYPES) {
    if (type === GgmlType.Q8_K) continue; // compared separately: ggml leaves bsums of zero blocks unwritten
    const ours = quantize(type, x);
    const theirs = ggmlQuantize(type, x);
    assert.equal(ours.length, theirs.length);
    let first = -1;
    for (let i = 0; i < ours.length && first < 0; i++) if (ours[i] !== theirs[i]) first = i;
    assert.equal(first, -1, `type ${GgmlType[type]}: first differing byte ${first}`);
  }
});

test('Q8_K matches llama.cpp on blocks that are not all zero', () => {
  const x = oracleInputs().subarray(0, 25 * 256); // the first 25 blocks have no zero block
  assert.equal(hex(quantize(GgmlType.Q8_K, x)), hex(ggmlQuantize(GgmlType.Q8_K, x)));
});

test('dequantize is bit-exact with llama.cpp dequantize_row_*', () => {
  const x = oracleInputs();
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K]) {
    const q = ggmlQuantize(type, x);
    if (type === GgmlType.Q8_K) q.set(quantize(type, x)); // defined bsums for zero blocks
    const ours = dequantize(type, q, x.length);
    const theirs = ggmlDequantize(type, q, x.length);
    for (let i = 0; i < x.length; i++) {
      if (!Object.is(ours[i], theirs[i])) assert.fail(`${GgmlType[type]}[${i}]: ${ours[i]} vs ${theirs[i]}`);
    }
  }
});

test('ggml-cpu activation quantizers match ours; its quantized dot products match a float64 dot of our dequantizations', () => {
  const n = 2048;
  const w = gaussian(n, 77);
  const a = gaussian(n, 78, 3);
  for (const at of [GgmlType.Q8_0, GgmlType.Q8_K] as const) {
    assert.equal(hex(ggmlQuantizeActivations(at, a)), hex(quantize(at, a)), `${GgmlType[at]} activations`);
  }
  const pairs: Array<[GgmlType, GgmlType]> = [
    [GgmlType.Q4_0, GgmlType.Q8_0], [GgmlType.Q8_0, GgmlType.Q8_0],
    [GgmlType.Q4_K, GgmlType.Q8_K], [GgmlType.Q5_K, GgmlType.Q8_K], [GgmlType.Q6_K, GgmlType.Q8_K],
  ];
  for (const [wt, at] of pairs) {
    const wq = quantize(wt, w);
    const aq = quantize(at, a);
    const wd = dequantize(wt, wq, n);
    const ad = dequantize(at, aq, n);
    let dot = 0;
    let mag = 0;
    for (let i = 0; i < n; i++) {
      dot += wd[i]! * ad[i]!;
      mag += Math.abs(wd[i]! * ad[i]!);
    }
    for (const generic of [false, true]) {
      const got = ggmlVecDot(wt, wq, aq, n, generic);
      assert.ok(Math.abs(got - dot) <= 2e-6 * mag, `${GgmlType[wt]} (generic ${generic}): ggml ${got}, float64 ${dot}`);
    }
  }
});

test('fast K-quants (no scale search): exact fits give the hand-computed bytes, random data a bounded error', () => {
  // The ramps above are fitted exactly by the first (min/max or absmax) scale, so skipping the
  // search changes nothing there.
  const ramp = new Float32Array(256);
  for (let i = 0; i < 256; i++) ramp[i] = ((i >> 5) + 1) * (i % 16);
  assert.equal(hex(quantize(GgmlType.Q4_K, ramp, { fast: true })), hex(quantize(GgmlType.Q4_K, ramp)));
  const sym = new Float32Array(256);
  for (let i = 0; i < 256; i++) sym[i] = (i % 16) - 8;
  assert.equal(hex(quantize(GgmlType.Q6_K, sym, { fast: true })), hex(quantize(GgmlType.Q6_K, sym)));
  // measured on this input (fast vs reference): q4_k 7.59% vs 6.87%, q5_k 3.69% vs 3.47%, q6_k 1.81% vs 1.70%
  const x = gaussian(1 << 16, 5);
  let ss = 0;
  for (const v of x) ss += v * v;
  for (const [type, bound] of [[GgmlType.Q4_K, 0.087], [GgmlType.Q5_K, 0.043], [GgmlType.Q6_K, 0.021]] as const) {
    const q = quantize(type, x, { fast: true });
    assert.notEqual(hex(q), hex(quantize(type, x)), 'fast mode should differ from the search on random data');
    const back = dequantize(type, q, x.length);
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (back[i]! - x[i]!) ** 2;
    assert.ok(Math.sqrt(se / ss) < bound, `${GgmlType[type]} fast: ${Math.sqrt(se / ss)}`);
  }
});

// ---- error bounds (measured on N(0,1) data, 64k values) -------------------------------------

test('round-trip relative RMS error per type', () => {
  const x = gaussian(1 << 16, 42);
  // measured on this input: f16 0.021%, bf16 0.166%, q8_0 0.506%, q4_0 8.18%, q4_k 6.88%,
  // q5_k 3.48%, q6_k 1.70%, q8_k 0.622% (one scale per 256 values); bounds leave ~15% headroom
  const bounds: Array<[GgmlType, number]> = [
    [GgmlType.F16, 0.00025],
    [GgmlType.BF16, 0.0019],
    [GgmlType.Q8_0, 0.0058],
    [GgmlType.Q4_0, 0.094],
    [GgmlType.Q4_K, 0.079],
    [GgmlType.Q5_K, 0.04],
    [GgmlType.Q6_K, 0.0195],
    [GgmlType.Q8_K, 0.0072],
  ];
  let ss = 0;
  for (const v of x) ss += v * v;
  for (const [type, bound] of bounds) {
    const back = dequantize(type, quantize(type, x), x.length);
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (back[i]! - x[i]!) ** 2;
    const rel = Math.sqrt(se / ss);
    assert.ok(rel < bound, `${GgmlType[type]}: relative RMS error ${rel.toFixed(4)} >= ${bound}`);
    assert.ok(rel > 0 || type === GgmlType.F32, `${GgmlType[type]}: zero error is suspicious`);
  }
  assert.deepEqual(dequantize(GgmlType.F32, quantize(GgmlType.F32, x), x.length), x);
});

test('lengths that are not whole blocks are rejected; unsupported types too', () => {
  assert.throws(() => quantize(GgmlType.Q8_0, new Float32Array(33)), /not a whole number of q8_0 blocks of 32/);
  assert.throws(() => quantize(GgmlType.Q4_K, new Float32Array(255)), /q4_k blocks of 256/);
  assert.throws(() => dequantize(GgmlType.Q6_K, new Uint8Array(210), 128), /q6_k blocks of 256/);
  assert.throws(() => dequantize(GgmlType.Q6_K, new Uint8Array(209), 256), /209 bytes, 210 needed/);
  assert.throws(() => quantize(GgmlType.IQ2_XXS, new Float32Array(256)), /not supported/);
  assert.throws(() => quantizeRows(GgmlType.Q4_0, new Float32Array(96), 48), /q4_0 blocks of 32/);
  assert.equal(quantizedBytes(GgmlType.Q4_K, 4096), 16 * 144);
  // rows: the same bytes as quantizing the whole buffer when rows are whole blocks
  const x = gaussian(4 * 256, 3);
  assert.equal(hex(quantizeRows(GgmlType.Q5_K, x, 512)), hex(quantize(GgmlType.Q5_K, x)));
});
