/**
 * Q4_1, Q5_0, Q5_1, Q8_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS reference codecs against llama.cpp's own
 * (libggml from node-llama-cpp, through the driver of ggml-oracle.ts) and hand-computed blocks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType, ggmlTypeInfo } from '../ggml-type.js';
import { dequantize, quantize } from '../quant.js';
import { ggmlDequantize, ggmlQuantize, ggmlQuantizeActivations, ggmlQuantizeChunk, ggmlVecDot } from './ggml-oracle.js';
import { IQ4_VALUES, quantizeIQ4_NL } from './iq4.js';
import { gaussian, oracleInputs } from './testing.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const NEW_TYPES = [GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS];

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

test('quantize is bit-exact with llama.cpp quantize_row_*_ref for the new types and Q8_1', () => {
  const x = oracleInputs();
  for (const type of [...NEW_TYPES, GgmlType.Q8_1]) {
    const ours = quantize(type, x);
    const theirs = ggmlQuantize(type, x);
    const at = firstDiff(ours, theirs);
    assert.equal(at, -1, `${GgmlType[type]}: first differing byte ${at} (block ${Math.floor(at / ggmlTypeInfo(type)!.typeSize)})`);
  }
});

test("quantize matches what llama_model_quantize writes (ggml_quantize_chunk), IQ4_NL's scale search included", () => {
  const x = oracleInputs();
  for (const type of NEW_TYPES) {
    const rows = x.length / 1024;
    const theirs = ggmlQuantizeChunk(type, x, rows);
    const ours = type === GgmlType.IQ4_NL ? new Uint8Array(theirs.length) : quantize(type, x);
    if (type === GgmlType.IQ4_NL) quantizeIQ4_NL(x, 0, x.length / 32, ours, 0, true);
    const at = firstDiff(ours, theirs);
    assert.equal(at, -1, `${GgmlType[type]}: first differing byte ${at}`);
  }
});

test('dequantize is bit-exact with llama.cpp dequantize_row_* for the new types', () => {
  const x = oracleInputs();
  for (const type of NEW_TYPES) {
    const q = ggmlQuantize(type, x);
    const ours = dequantize(type, q, x.length);
    const theirs = ggmlDequantize(type, q, x.length);
    for (let i = 0; i < x.length; i++) {
      if (!Object.is(ours[i], theirs[i])) assert.fail(`${GgmlType[type]}[${i}]: ${ours[i]} vs ${theirs[i]}`);
    }
  }
});

test("ggml-cpu's Q8_1 activations and the new types' dot products agree with our codecs", () => {
  const n = 2048;
  const w = gaussian(n, 91);
  const a = gaussian(n, 92, 3);
  // ggml-cpu's quantize_row_q8_1 rounds x / d half to even (the _ref rounds half away): compare
  // on data without exact halves by checking the dequantized values against the reference.
  const q81 = ggmlQuantizeActivations(GgmlType.Q8_1, a);
  assert.equal(hex(q81), hex(quantize(GgmlType.Q8_1, a)));
  const act = (t: GgmlType): GgmlType => {
    const info = ggmlTypeInfo(t)!;
    if (info.blockSize === 256) return GgmlType.Q8_K;
    return t === GgmlType.Q4_1 || t === GgmlType.Q5_1 ? GgmlType.Q8_1 : GgmlType.Q8_0;
  };
  for (const wt of NEW_TYPES) {
    const at = act(wt);
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
    // Q4_1 / Q5_1: the min term uses s = f16(d * sum(q)), one f16 rounding per block
    const tol = at === GgmlType.Q8_1 ? 2e-4 : 2e-6;
    for (const generic of [false, true]) {
      const got = ggmlVecDot(wt, wq, aq, n, generic);
      assert.ok(Math.abs(got - dot) <= tol * mag, `${GgmlType[wt]} (generic ${generic}): ggml ${got}, float64 ${dot}`);
    }
  }
});

// ---- hand-computed blocks -------------------------------------------------------------------

test('Q4_1 / Q5_1 hand vectors: d = (max - min) / (2^b - 1), m = min, trunc(+0.5) levels', () => {
  const x = new Float32Array(32);
  for (let j = 0; j < 32; j++) x[j] = 2 + (j % 16); // min 2, max 17: Q4_1 d = 1, levels j % 16
  const y = quantize(GgmlType.Q4_1, x);
  assert.equal(y.length, 20);
  assert.equal(u16(y, 0), 0x3c00); // d = 1
  assert.equal(u16(y, 2), 0x4000); // m = 2
  for (let j = 0; j < 16; j++) assert.equal(y[4 + j], j | (j << 4));
  assert.deepEqual([...dequantize(GgmlType.Q4_1, y, 32)], [...x]);
  // Q5_1: x = j - 10 (min -10, max 21): d = 1, levels j, fifth bits of elements 16..31 set
  for (let j = 0; j < 32; j++) x[j] = j - 10;
  const z = quantize(GgmlType.Q5_1, x);
  assert.equal(z.length, 24);
  assert.equal(u16(z, 0), 0x3c00);
  assert.equal(u16(z, 2), 0xc900); // -10
  assert.deepEqual([...z.subarray(4, 8)], [0, 0, 0xff, 0xff]); // qh: bits 16..31
  for (let j = 0; j < 16; j++) assert.equal(z[8 + j], j | (j << 4));
  assert.deepEqual([...dequantize(GgmlType.Q5_1, z, 32)], [...x]);
});

test('Q5_0 hand vector: d = max / -16 with the sign of the largest magnitude, trunc(x/d + 16.5)', () => {
  const x = new Float32Array(32);
  for (let j = 0; j < 32; j++) x[j] = j - 16; // max magnitude -16 -> d = 1, q = j (16.5 - 16 + j)
  const y = quantize(GgmlType.Q5_0, x);
  assert.equal(y.length, 22);
  assert.equal(u16(y, 0), 0x3c00);
  assert.deepEqual([...y.subarray(2, 6)], [0, 0, 0xff, 0xff]);
  for (let j = 0; j < 16; j++) assert.equal(y[6 + j], j | (j << 4));
  assert.deepEqual([...dequantize(GgmlType.Q5_0, y, 32)], [...x]);
});

test('IQ4_NL hand vector: the table values themselves, at d = 1 and d = -1/2', () => {
  assert.deepEqual(IQ4_VALUES, [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);
  // Block = the 16 table values twice: the first fit (max = -127 -> d = 1) is exact.
  const x = new Float32Array(32);
  for (let j = 0; j < 32; j++) x[j] = IQ4_VALUES[j % 16]!;
  const y = quantize(GgmlType.IQ4_NL, x);
  assert.equal(u16(y, 0), 0x3c00);
  for (let j = 0; j < 16; j++) assert.equal(y[2 + j], j | (j << 4));
  assert.deepEqual([...dequantize(GgmlType.IQ4_NL, y, 32)], [...x]);
  // Negated and halved: largest magnitude 63.5 (positive) -> d = 63.5 / -127 = -0.5 (f16 0xb800)
  for (let j = 0; j < 32; j++) x[j] = -IQ4_VALUES[j % 16]! / 2;
  const z = quantize(GgmlType.IQ4_NL, x);
  assert.equal(u16(z, 0), 0xb800);
  assert.deepEqual([...dequantize(GgmlType.IQ4_NL, z, 32)], [...x]);
});

test('IQ4_XS hand vector: 6-bit block scales (low nibbles in scales_l, top bits in scales_h)', () => {
  // Block ib = (ib + 1) * table (in order, twice). Each block's first fit is exact (scale ib + 1,
  // sign taken from -max / -127: +); max_scale = 8 -> d = -8/32 = -0.25, block scales
  // l = nearest(-4 * (ib + 1)) = -4(ib + 1), stored as l + 32 = 28, 24, ..., 0.
  const x = new Float32Array(256);
  for (let i = 0; i < 256; i++) x[i] = ((i >> 5) + 1) * IQ4_VALUES[i % 16]!;
  const y = quantize(GgmlType.IQ4_XS, x);
  assert.equal(y.length, 136);
  assert.equal(u16(y, 0), 0xb400); // -0.25
  const ls = [28, 24, 20, 16, 12, 8, 4, 0];
  const sh = ls.reduce((a, l, ib) => a | ((l >> 4) << (2 * ib)), 0);
  assert.equal(u16(y, 2), sh);
  for (let i = 0; i < 4; i++) assert.equal(y[4 + i], (ls[2 * i]! & 15) | ((ls[2 * i + 1]! & 15) << 4));
  for (let b = 0; b < 128; b++) assert.equal(y[8 + b], (b % 16) * 0x11);
  assert.deepEqual([...dequantize(GgmlType.IQ4_XS, y, 256)], [...x]);
});

test('Q3_K hand vector: the hmask walk keeps the same 32 bytes for both 128-weight halves', () => {
  // Sub-block j (16 weights) = (level - 4) * (j + 1), level = (i % 8 + (i >> 5)) % 8: every
  // sub-block holds all 8 levels, its largest magnitude is -4 (j + 1), so make_q3_quants fits
  // scale j + 1 exactly; max scale 16 -> iscale -2, 6-bit scales -2 (j + 1) + 32 = 30 - 2j,
  // d = f16(-1/2). Stored levels are `level` again; the high bit (level >= 4) of weight i must
  // sit in bit (i >> 5) of hmask[i % 32].
  const level = (i: number) => ((i % 8) + (i >> 5)) % 8;
  const x = new Float32Array(256);
  for (let i = 0; i < 256; i++) x[i] = (level(i) - 4) * ((i >> 4) + 1);
  const y = quantize(GgmlType.Q3_K, x);
  assert.equal(y.length, 110);
  assert.equal(u16(y, 108), 0xb800);
  for (let l = 0; l < 32; l++) {
    let want = 0;
    for (let c = 0; c < 8; c++) if (level(32 * c + l) >= 4) want |= 1 << c;
    assert.equal(y[l], want, `hmask[${l}]`);
  }
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      let want = 0;
      for (let g = 0; g < 4; g++) want |= (level(128 * h + 32 * g + l) & 3) << (2 * g);
      assert.equal(y[32 + 32 * h + l], want, `qs[${32 * h + l}]`);
    }
  }
  for (let j = 0; j < 16; j++) {
    const sc = 30 - 2 * j;
    const low = j < 8 ? y[96 + j]! & 15 : y[96 + j - 8]! >> 4;
    const high = (y[104 + (j % 4)]! >> (2 * (j >> 2))) & 3;
    assert.equal(low | (high << 4), sc, `scale ${j}`);
  }
  // A walk that moves the hmask pointer on by 32 for the second half (as one public port does)
  // would read qs there: our dequantizer and llama.cpp's give the exact input back.
  assert.deepEqual([...dequantize(GgmlType.Q3_K, y, 256)], [...x]);
  assert.deepEqual([...ggmlDequantize(GgmlType.Q3_K, y, 256)], [...x]);
});

test('round-trip relative RMS error of the new types (N(0,1), 64k values)', () => {
  const x = gaussian(1 << 16, 42);
  let ss = 0;
  for (const v of x) ss += v * v;
  // measured on this input: q4_1 7.57%, q5_0 4.04%, q5_1 3.65%, q2_k 28.8%, q3_k 14.6%,
  // iq4_nl 7.62%, iq4_xs 7.42%; bounds leave ~10-15% headroom
  const bounds: Array<[GgmlType, number]> = [
    [GgmlType.Q4_1, 0.086],
    [GgmlType.Q5_0, 0.046],
    [GgmlType.Q5_1, 0.042],
    [GgmlType.Q2_K, 0.32],
    [GgmlType.Q3_K, 0.165],
    [GgmlType.IQ4_NL, 0.086],
    [GgmlType.IQ4_XS, 0.084],
  ];
  for (const [type, bound] of bounds) {
    const back = dequantize(type, quantize(type, x), x.length);
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (back[i]! - x[i]!) ** 2;
    const rel = Math.sqrt(se / ss);
    assert.ok(rel < bound && rel > 0, `${GgmlType[type]}: relative RMS error ${rel.toFixed(4)} (bound ${bound})`);
  }
});

test('fast Q2_K / Q3_K / IQ4_XS (no scale search): same layout, bounded error', () => {
  const x = gaussian(1 << 14, 5);
  let ss = 0;
  for (const v of x) ss += v * v;
  for (const [type, bound] of [[GgmlType.Q2_K, 0.4], [GgmlType.Q3_K, 0.2], [GgmlType.IQ4_XS, 0.1]] as const) {
    const q = quantize(type, x, { fast: true });
    assert.notEqual(hex(q), hex(quantize(type, x)), 'fast mode should differ from the search on random data');
    const back = dequantize(type, q, x.length);
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (back[i]! - x[i]!) ** 2;
    assert.ok(Math.sqrt(se / ss) < bound, `${GgmlType[type]} fast: ${Math.sqrt(se / ss)}`);
  }
});
