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
