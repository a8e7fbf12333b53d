/**
 * Helpers shared by the reference quantizers.
 *
 * NOTE on arithmetic: llama.cpp's reference quantizers (ggml-quants.c, compiled into
 * ggml-base without FMA contraction or fast-math) compute in IEEE binary32, one rounding per
 * operation, left to right. JS numbers are binary64, so every intermediate that C keeps in a
 * `float` is passed through `f` (Math.fround) here, in the same order of operations. Rounding
 * a binary64 result of one +, -, *, / or sqrt of binary32 inputs to binary32 gives the same
 * value as the binary32 operation, so this reproduces the C results bit for bit.
 */
import { f16Table32, f32ToF16 } from '../f16.js';

/** Round to binary32 (C `float` semantics for one operation). */
export const f = Math.fround;

/** Elements per K-quant super-block. */
export const QK_K = 256;

/**
 * ggml's nearest_int(): adds 1.5 * 2^23 in float and reads the mantissa, i.e. rounds a float
 * to the nearest integer with ties to even (valid for |v| < 2^22, as in ggml).
 */
export function nearestInt(v: number): number {
  // Same trick as ggml: in binary32, v + 1.5*2^23 has a unit last place, so the addition
  // itself rounds v to an integer, ties to even. (Branch-free: measured 2x faster than
  // Math.round with a tie fix-up in the Q4_K search loop.)
  return Math.fround(v + 12582912) - 12582912;
}

const nearestScratch = new Float32Array(1);
const nearestBits = new Int32Array(nearestScratch.buffer);

/**
 * ggml's nearest_int() bit for bit at any magnitude: the low 23 bits of the f32 v + 1.5 * 2^23,
 * minus 2^22. Equal to nearestInt for |v| < 2^22; beyond that ggml returns a wrapped value
 * (its assert is compiled out), which callers that can see such inputs must reproduce.
 */
export function nearestIntWrapped(v: number): number {
  nearestScratch[0] = v + 12582912;
  return (nearestBits[0]! & 0x7fffff) - 0x400000;
}

/** Writes f16 bits of `x` little-endian at dst[o]. */
export function putF16(dst: Uint8Array, o: number, x: number): void {
  const h = f32ToF16(x);
  dst[o] = h & 0xff;
  dst[o + 1] = h >>> 8;
}

/** Reads the f16 at src[o] (little-endian) as a number. */
export function getF16(src: Uint8Array, o: number, table: Float32Array): number {
  return table[src[o]! | (src[o + 1]! << 8)]!;
}

/** The f16 -> f32 lookup table (re-exported so block code takes it once per call). */
export const f16Table = f16Table32;

/** f16 value that `x` is stored as (GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x))). */
export function viaF16(x: number): number {
  return f16Table32()[f32ToF16(x)]!;
}
