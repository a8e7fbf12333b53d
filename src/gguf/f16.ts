/**
 * Half-precision conversions: IEEE 754 binary16 (ggml F16) and bfloat16 (ggml BF16).
 *
 * f32 -> f16 rounds to nearest, ties to even, with gradual underflow to subnormals and overflow
 * to infinity: what x86 F16C (`_cvtss_sh`, which ggml uses on this machine) and ggml's scalar
 * fallback produce. NaN stays NaN (quiet bit set, sign and top payload bits kept).
 *
 * f32 -> bf16 follows ggml's GGML_FP32_TO_BF16: round to nearest even on the upper 16 bits,
 * NaN forced quiet (bit 6 of the bf16 pattern set).
 */

// Scratch views for the scalar forms (reinterpreting a float's bits without allocation).
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** binary16 bits of one f32 bit pattern (the core of every f16 conversion here). */
function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) {
    // inf keeps an empty mantissa; NaN keeps its top payload bits and is made quiet.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // rebias
  if (e >= 31) return sign | 0x7c00; // |x| >= 65536: beyond rounding range, infinity
  if (e <= 0) {
    // Result is subnormal (or zero). Below 2^-25 everything rounds to (signed) zero.
    if (e < -10) return sign;
    const m = mant | 0x800000; // with the implicit bit: value = m * 2^(exp-150)
    const shift = 14 - e; // units of the f16 subnormal step 2^-24: m >> (14 - e)
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++; // may carry into the smallest normal: correct
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // carry may reach 0x7c00 = inf: correct
  return sign | h;
}

/** f32 value of one binary16 bit pattern. */
function f16BitsToF32Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero or subnormal
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** binary16 bits (0..0xffff) of `x` rounded to nearest even. */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16(scratchU32[0]!);
}

/** Value of binary16 bits `h` (exact; NaN payloads are not preserved in a JS number). */
export function f16ToF32(h: number): number {
  return f16BitsToF32Value(h & 0xffff);
}

let f16Table: Float32Array | undefined;

/** All 65536 f16 values as f32, built on first use (256 KiB): array decoding is one lookup. */
export function f16Table32(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    const bits = new Uint32Array(f16Table.buffer);
    for (let h = 0; h < 65536; h++) {
      const exp = (h >>> 10) & 0x1f;
      if (exp === 31 && (h & 0x3ff) !== 0) {
        // keep sign and payload for NaN (f32 NaN with the f16 mantissa in its top bits)
        bits[h] = ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13);
      } else {
        f16Table[h] = f16BitsToF32Value(h);
      }
    }
  }
  return f16Table;
}

function u32View(src: Float32Array): Uint32Array {
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

/** Converts `src` to f16 bits into `dst` (allocated if absent) and returns `dst`. */
export function f32ToF16Array(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ?? new Uint16Array(src.length);
  if (out.length < src.length) throw new RangeError(`f32ToF16Array: dst holds ${out.length} values, src has ${src.length}`);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

/** Converts f16 bits in `src` to f32 into `dst` (allocated if absent) and returns `dst`. */
export function f16ToF32Array(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ?? new Float32Array(src.length);
  if (out.length < src.length) throw new RangeError(`f16ToF32Array: dst holds ${out.length} values, src has ${src.length}`);
  const table = f16Table32();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** bf16 bits of one f32 bit pattern, as GGML_FP32_TO_BF16. */
function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) >>> 0 > 0x7f800000) return ((b >>> 16) | 64) & 0xffff; // NaN: force quiet
  return ((b + (0x7fff + ((b >>> 16) & 1))) >>> 16) & 0xffff;
}

/** bf16 bits (0..0xffff) of `x`, rounded to nearest even as ggml does. */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16(scratchU32[0]!);
}

/** Value of bf16 bits `h` (exact: bf16 is the top half of an f32). */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

/** Converts `src` to bf16 bits into `dst` (allocated if absent) and returns `dst`. */
export function f32ToBf16Array(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ?? new Uint16Array(src.length);
  if (out.length < src.length) throw new RangeError(`f32ToBf16Array: dst holds ${out.length} values, src has ${src.length}`);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]!);
  return out;
}

/** Converts bf16 bits in `src` to f32 into `dst` (allocated if absent) and returns `dst`. */
export function bf16ToF32Array(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ?? new Float32Array(src.length);
  if (out.length < src.length) throw new RangeError(`bf16ToF32Array: dst holds ${out.length} values, src has ${src.length}`);
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}
