/**
 * Q8_0 and Q4_0: 32 weights per block, one f16 scale (ggml-common.h block_q8_0, block_q4_0),
 * quantized as quantize_row_q8_0_ref / quantize_row_q4_0_ref do.
 *
 *   block_q8_0 (34 bytes): d f16 | qs int8[32]            x[j] = d * qs[j]
 *   block_q4_0 (18 bytes): d f16 | qs u8[16]              x[j] = d * ((qs[j] & 15) - 8),
 *                                                          x[j + 16] = d * ((qs[j] >> 4) - 8)
 */
import { f, f16Table, getF16, putF16 } from './common.js';

export const QK8_0 = 32;
export const Q8_0_BYTES = 34;
export const QK4_0 = 32;
export const Q4_0_BYTES = 18;

/** Quantizes `nb` blocks of x[xo...] into y[yo...] as quantize_row_q8_0_ref. */
export function quantizeQ8_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += QK8_0, yo += Q8_0_BYTES) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) {
      const a = Math.abs(x[xo + j]!);
      if (a > amax) amax = a; // MAX(amax, fabsf(v)): NaN-free inputs assumed, as in ggml
    }
    const d = f(amax / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    for (let j = 0; j < QK8_0; j++) {
      // roundf: ties away from zero. v +- 0.5 is exact in binary64 for |v| <= 128, so
      // truncating it is roundf. (Inline: 3x faster than a Math.round-based helper.)
      const v = f(x[xo + j]! * id);
      y[yo + 2 + j] = Math.trunc(v < 0 ? v - 0.5 : v + 0.5) & 0xff;
    }
  }
}

/** Dequantizes `nb` Q8_0 blocks of y[yo...] into out[oo...] as dequantize_row_q8_0. */
export function dequantizeQ8_0(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q8_0_BYTES, oo += QK8_0) {
    const d = getF16(y, yo, t);
    for (let j = 0; j < QK8_0; j++) out[oo + j] = ((y[yo + 2 + j]! << 24) >> 24) * d;
  }
}

/** Quantizes `nb` blocks as quantize_row_q4_0_ref (scale from the signed max, d = max / -8). */
export function quantizeQ4_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += QK4_0, yo += Q4_0_BYTES) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = x[xo + j]!;
      const a = Math.abs(v);
      if (amax < a) {
        amax = a;
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    for (let j = 0; j < 16; j++) {
      // (int8_t)(x*id + 8.5f) truncates toward zero; MIN(15, .) caps the +8 edge
      const q0 = Math.min(15, Math.trunc(f(f(x[xo + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(f(f(x[xo + 16 + j]! * id) + 8.5)));
      y[yo + 2 + j] = q0 | (q1 << 4);
    }
  }
}

/** Dequantizes `nb` Q4_0 blocks as dequantize_row_q4_0. */
export function dequantizeQ4_0(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q4_0_BYTES, oo += QK4_0) {
    const d = getF16(y, yo, t);
    for (let j = 0; j < 16; j++) {
      const q = y[yo + 2 + j]!;
      out[oo + j] = ((q & 15) - 8) * d;
      out[oo + 16 + j] = ((q >> 4) - 8) * d;
    }
  }
}

// ---- Q4_1, Q5_0, Q5_1 (weights) and Q8_1 (activations of Q4_1 / Q5_1 dot products) ----------
//
//   block_q4_1 (20 bytes): d f16 | m f16 | qs u8[16]            x[j] = d * q + m, q in 0..15
//   block_q5_0 (22 bytes): d f16 | qh u32 | qs u8[16]           x[j] = d * (q - 16), q in 0..31
//   block_q5_1 (24 bytes): d f16 | m f16 | qh u32 | qs u8[16]   x[j] = d * q + m, q in 0..31
//   block_q8_1 (36 bytes): d f16 | s f16 | qs int8[32]          x[j] = d * qs[j], s = d * sum(qs)
// Nibbles as Q4_0 (element j low, j + 16 high); the fifth bit of element j is bit j of qh.

export const Q4_1_BYTES = 20;
export const Q5_0_BYTES = 22;
export const Q5_1_BYTES = 24;
export const Q8_1_BYTES = 36;

/** min and max of x[xo .. xo + 32) (FLT_MAX-initialized as in ggml), into `mm`. */
function minMax32(x: Float32Array, xo: number, mm: Float64Array): void {
  let min = 3.4028234663852886e38;
  let max = -3.4028234663852886e38;
  for (let j = 0; j < 32; j++) {
    const v = x[xo + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  mm[0] = min;
  mm[1] = max;
}

const mmScratch = new Float64Array(2);

function putU32(y: Uint8Array, o: number, v: number): void {
  y[o] = v & 0xff;
  y[o + 1] = (v >>> 8) & 0xff;
  y[o + 2] = (v >>> 16) & 0xff;
  y[o + 3] = (v >>> 24) & 0xff;
}

function getU32(y: Uint8Array, o: number): number {
  return (y[o]! | (y[o + 1]! << 8) | (y[o + 2]! << 16) | (y[o + 3]! << 24)) >>> 0;
}

/** Quantizes `nb` blocks as quantize_row_q4_1_ref: d = (max - min) / 15, q = trunc((x - min) / d + 0.5). */
export function quantizeQ4_1(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += 32, yo += Q4_1_BYTES) {
    minMax32(x, xo, mmScratch);
    const min = mmScratch[0]!;
    const d = f(f(mmScratch[1]! - min) / 15);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    putF16(y, yo + 2, min);
    for (let j = 0; j < 16; j++) {
      // (int8_t)(v + 0.5f) truncates toward zero; v >= 0 here
      const q0 = Math.min(15, Math.trunc(f(f(f(x[xo + j]! - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(f(f(f(x[xo + 16 + j]! - min) * id) + 0.5)));
      y[yo + 4 + j] = q0 | (q1 << 4);
    }
  }
}

/** Dequantizes `nb` Q4_1 blocks as dequantize_row_q4_1 (x = q * d + m, two roundings). */
export function dequantizeQ4_1(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q4_1_BYTES, oo += 32) {
    const d = getF16(y, yo, t);
    const m = getF16(y, yo + 2, t);
    for (let j = 0; j < 16; j++) {
      const q = y[yo + 4 + j]!;
      out[oo + j] = f((q & 15) * d) + m;
      out[oo + 16 + j] = f((q >> 4) * d) + m;
    }
  }
}

/** Quantizes `nb` blocks as quantize_row_q5_0_ref (d = max / -16 with the sign of the largest magnitude). */
export function quantizeQ5_0(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += 32, yo += Q5_0_BYTES) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[xo + j]!;
      const a = Math.abs(v);
      if (amax < a) {
        amax = a;
        max = v;
      }
    }
    const d = f(max / -16);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(31, Math.trunc(f(f(x[xo + j]! * id) + 16.5)));
      const q1 = Math.min(31, Math.trunc(f(f(x[xo + 16 + j]! * id) + 16.5)));
      y[yo + 6 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
    }
    putU32(y, yo + 2, qh);
  }
}

/** Dequantizes `nb` Q5_0 blocks as dequantize_row_q5_0. */
export function dequantizeQ5_0(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q5_0_BYTES, oo += 32) {
    const d = getF16(y, yo, t);
    const qh = getU32(y, yo + 2);
    for (let j = 0; j < 16; j++) {
      const q = y[yo + 6 + j]!;
      out[oo + j] = (((q & 15) | (((qh >>> j) & 1) << 4)) - 16) * d;
      out[oo + 16 + j] = (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
    }
  }
}

/** Quantizes `nb` blocks as quantize_row_q5_1_ref: d = (max - min) / 31, q = trunc((x - min) / d + 0.5). */
export function quantizeQ5_1(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += 32, yo += Q5_1_BYTES) {
    minMax32(x, xo, mmScratch);
    const min = mmScratch[0]!;
    const d = f(f(mmScratch[1]! - min) / 31);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    putF16(y, yo + 2, min);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // (uint8_t)(v + 0.5f): no cap in ggml (v <= 31 + rounding)
      const q0 = Math.trunc(f(f(f(x[xo + j]! - min) * id) + 0.5)) & 0xff;
      const q1 = Math.trunc(f(f(f(x[xo + 16 + j]! - min) * id) + 0.5)) & 0xff;
      y[yo + 8 + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= (((q0 & 0x10) >> 4) << j) | (((q1 & 0x10) >> 4) << (j + 16));
    }
    putU32(y, yo + 4, qh);
  }
}

/** Dequantizes `nb` Q5_1 blocks as dequantize_row_q5_1. */
export function dequantizeQ5_1(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q5_1_BYTES, oo += 32) {
    const d = getF16(y, yo, t);
    const m = getF16(y, yo + 2, t);
    const qh = getU32(y, yo + 4);
    for (let j = 0; j < 16; j++) {
      const q = y[yo + 8 + j]!;
      out[oo + j] = f(((q & 15) | (((qh >>> j) & 1) << 4)) * d) + m;
      out[oo + 16 + j] = f(((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d) + m;
    }
  }
}

/** Quantizes `nb` blocks as quantize_row_q8_1_ref (Q8_0's levels plus s = f16(d * sum(q))). */
export function quantizeQ8_1(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += 32, yo += Q8_1_BYTES) {
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[xo + j]!);
      if (a > amax) amax = a;
    }
    const d = f(amax / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    putF16(y, yo, d);
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const v = f(x[xo + j]! * id);
      const q = Math.trunc(v < 0 ? v - 0.5 : v + 0.5); // roundf
      y[yo + 4 + j] = q & 0xff;
      sum += q;
    }
    putF16(y, yo + 2, f(sum * d));
  }
}

/** Dequantizes `nb` Q8_1 blocks (x = d * qs; s is not needed). */
export function dequantizeQ8_1(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q8_1_BYTES, oo += 32) {
    const d = getF16(y, yo, t);
    for (let j = 0; j < 32; j++) out[oo + j] = ((y[yo + 4 + j]! << 24) >> 24) * d;
  }
}
