/**
 * IQ4_NL and IQ4_XS: 4-bit indices into a fixed non-linear table of 16 int8 values
 * (ggml-common.h kvalues_iq4nl), scaled per block of 32:
 *
 *   block_iq4_nl (18 bytes):  d f16 | qs u8[16]                          x = d * T[q]
 *   block_iq4_xs (136 bytes): d f16 | scales_h u16 | scales_l u8[4] | qs u8[128]
 *     256 weights in 8 blocks of 32; block ib: ls = (scales_l[ib/2] >> 4(ib%2)) & 15
 *     | ((scales_h >> 2ib) & 3) << 4, a 6-bit scale, x = d * (ls - 32) * T[q]
 * Nibbles as Q4_0: in each block of 32, weight j in the low nibble of byte j, j + 16 in the high.
 *
 * Quantizers follow quantize_row_iq4_nl_impl without an importance matrix: per block of 32,
 * weights x^2, the scale of the largest magnitude refined by least squares over the table, then
 * (IQ4_XS) 6-bit block scales against an f16 super-block scale and a re-quantization.
 */
import { QK_K, f, f16Table, getF16, nearestInt, putF16 } from './common.js';

export const IQ4_NL_BYTES = 18;
export const IQ4_XS_BYTES = 136;

/** kvalues_iq4nl: the 16 levels of IQ4_NL / IQ4_XS (ascending). */
export const IQ4_VALUES: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
const VALUES = Int8Array.from(IQ4_VALUES);

const GROUP_MAX_EPS = Math.fround(1e-15);

/** best_index_int8(16, values, x): index of the table value nearest to x (ties to the lower). */
function bestIndex(x: number): number {
  if (x <= VALUES[0]!) return 0;
  if (x >= VALUES[15]!) return 15;
  let ml = 0;
  let mu = 15;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (x < VALUES[mav]!) mu = mav;
    else ml = mav;
  }
  return f(x - VALUES[mu - 1]!) < f(VALUES[mu]! - x) ? mu - 1 : mu;
}

// Scratch (synchronous code: shared safely between calls).
const L = new Uint8Array(QK_K);
const weight = new Float32Array(32);
const scales = new Float32Array(QK_K / 32);

/**
 * quantize_row_iq4_nl_impl(superBlock, 32, x, ..., values = kvalues_iq4nl, no quant weights,
 * ntry) for one super-block of `superBlock` weights at x[xo]: fills L and `scales`, returns the
 * f16 super-block scale as written (IQ4_NL: the block scale itself). ntry > 0 searches 2 ntry + 1
 * inverse scales per block; ntry = -1 (quantize_row_iq4_nl_ref) takes the first fit.
 */
function quantizeSuperBlock(x: Float32Array, xo: number, superBlock: number, ntry: number, y: Uint8Array, dOff: number, xsOff: number): void {
  let maxScale = 0;
  let amaxScale = 0;
  const nblocks = superBlock / 32;
  for (let ib = 0; ib < nblocks; ib++) {
    const bo = xo + 32 * ib;
    for (let j = 0; j < 32; j++) weight[j] = x[bo + j]! * x[bo + j]!; // Float32Array: one rounding
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const ax = Math.abs(x[bo + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[bo + j]!;
      }
    }
    if (amax < GROUP_MAX_EPS) {
      scales[ib] = 0;
      continue;
    }
    let d = ntry > 0 ? f(-max / VALUES[0]!) : f(max / VALUES[0]!);
    let id = f(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < 32; j++) {
      const xj = x[bo + j]!;
      const l = bestIndex(f(id * xj));
      L[32 * ib + j] = l;
      const q = VALUES[l]!;
      const w = weight[j]!;
      sumqx = f(sumqx + f(f(w * q) * xj));
      sumq2 = f(sumq2 + f(f(w * q) * q));
    }
    d = sumq2 > 0 ? f(sumqx / sumq2) : 0;
    let best = f(d * sumqx);
    for (let itry = -ntry; itry <= ntry; itry++) {
      id = f((itry + VALUES[0]!) / max);
      sumqx = 0;
      sumq2 = 0;
      for (let j = 0; j < 32; j++) {
        const xj = x[bo + j]!;
        const q = VALUES[bestIndex(f(id * xj))]!;
        const w = weight[j]!;
        sumqx = f(sumqx + f(f(w * q) * xj));
        sumq2 = f(sumq2 + f(f(w * q) * q));
      }
      if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
        d = f(sumqx / sumq2);
        best = f(d * sumqx);
      }
    }
    scales[ib] = d;
    const absD = Math.abs(d);
    if (absD > amaxScale) {
      amaxScale = absD;
      maxScale = d;
    }
  }

  if (nblocks > 1) {
    // IQ4_XS: 6-bit block scales l in [-32, 31] against d = -max_scale / 32
    y[xsOff] = 0;
    y[xsOff + 1] = 0;
    const d = f(-maxScale / 32);
    putF16(y, dOff, d);
    const id = d !== 0 ? f(1 / d) : 0;
    for (let ib = 0; ib < nblocks; ib++) {
      let l = Math.max(-32, Math.min(31, nearestInt(f(id * scales[ib]!))));
      const dl = f(d * l);
      const idl = dl !== 0 ? f(1 / dl) : 0;
      const bo = xo + 32 * ib;
      for (let j = 0; j < 32; j++) L[32 * ib + j] = bestIndex(f(idl * x[bo + j]!));
      l += 32;
      const lo = l & 15;
      const hi = l >> 4;
      if (ib % 2 === 0) y[xsOff + 2 + (ib >> 1)] = lo;
      else y[xsOff + 2 + (ib >> 1)] |= lo << 4;
      y[xsOff + (ib >> 2)] |= hi << (2 * (ib % 4)); // scales_h, little-endian u16: bits 2ib.. of the pair
    }
  } else {
    putF16(y, dOff, scales[0]!);
    if (ntry > 0) {
      const id = scales[0] !== 0 ? f(1 / scales[0]!) : 0;
      for (let j = 0; j < superBlock; j++) L[j] = bestIndex(f(id * x[xo + j]!));
    }
  }
}

/** Packs L (levels of `n` weights) as nibbles into y[qo]: weight 32i + j low, 32i + 16 + j high. */
function packNibbles(y: Uint8Array, qo: number, n: number): void {
  for (let i = 0; i < n / 32; i++) {
    for (let j = 0; j < 16; j++) y[qo + 16 * i + j] = L[32 * i + j]! | (L[32 * i + 16 + j]! << 4);
  }
}

/**
 * Quantizes `nb` blocks of x[xo...] into y[yo...]: as quantize_row_iq4_nl_ref (no scale search)
 * by default, as quantize_iq4_nl (what llama.cpp's quantizer writes: 15 candidate scales per
 * block) with `search`.
 */
export function quantizeIQ4_NL(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, search = false): void {
  for (let i = 0; i < nb; i++, xo += 32, yo += IQ4_NL_BYTES) {
    y.fill(0, yo, yo + IQ4_NL_BYTES);
    quantizeSuperBlock(x, xo, 32, search ? 7 : -1, y, yo, -1);
    // NOTE: a block below GROUP_MAX_EPS gets d = 0 and, without the search, the levels of the
    // block before it (ggml reuses its level buffer), as here; they decode to 0 either way.
    packNibbles(y, yo + 2, 32);
  }
}

/**
 * Quantizes `nb` super-blocks as quantize_row_iq4_xs_ref (= quantize_iq4_xs, 15 candidate scales
 * per block); `fast` takes each block's first fit (ntry -1), not what llama.cpp writes.
 */
export function quantizeIQ4_XS(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  for (let i = 0; i < nb; i++, xo += QK_K, yo += IQ4_XS_BYTES) {
    y.fill(0, yo, yo + IQ4_XS_BYTES);
    quantizeSuperBlock(x, xo, QK_K, fast ? -1 : 7, y, yo, yo + 2);
    packNibbles(y, yo + 8, QK_K);
  }
}

/** Dequantizes `nb` IQ4_NL blocks as dequantize_row_iq4_nl. */
export function dequantizeIQ4_NL(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += IQ4_NL_BYTES, oo += 32) {
    const d = getF16(y, yo, t);
    for (let j = 0; j < 16; j++) {
      const q = y[yo + 2 + j]!;
      out[oo + j] = d * VALUES[q & 15]!;
      out[oo + 16 + j] = d * VALUES[q >> 4]!;
    }
  }
}

/** 6-bit scale (before the -32) of block ib of the IQ4_XS super-block at y[yo]. */
export function scaleIQ4XS(ib: number, y: Uint8Array, yo: number): number {
  const sh = y[yo + 2]! | (y[yo + 3]! << 8);
  return ((y[yo + 4 + (ib >> 1)]! >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
}

/** Dequantizes `nb` IQ4_XS super-blocks as dequantize_row_iq4_xs. */
export function dequantizeIQ4_XS(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += IQ4_XS_BYTES) {
    const d = getF16(y, yo, t);
    for (let ib = 0; ib < 8; ib++, oo += 32) {
      const dl = f(d * (scaleIQ4XS(ib, y, yo) - 32));
      const qo = yo + 8 + 16 * ib;
      for (let j = 0; j < 16; j++) {
        out[oo + j] = dl * VALUES[y[qo + j]! & 15]!;
        out[oo + 16 + j] = dl * VALUES[y[qo + j]! >> 4]!;
      }
    }
  }
}
