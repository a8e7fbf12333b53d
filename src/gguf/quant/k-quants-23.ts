/**
 * Q2_K and Q3_K: 256-weight super-blocks of 16 sub-blocks of 16 (ggml-common.h):
 *
 *   block_q2_K (84 bytes):  scales u8[16] | qs u8[64] | d f16 | dmin f16
 *     x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4),   q in 0..3
 *   block_q3_K (110 bytes): hmask u8[32] | qs u8[64] | scales u8[12] | d f16
 *     x = d * (sc[j] - 32) * (q - 4),   q = 2 low bits from qs + high bit from hmask, 0..7
 *
 * qs (both): per 128 weights 32 bytes, weight 128h + 32g + l in bits 2g..2g+1 of qs[32h + l].
 * Q3_K hmask: the high bit of weight 32c + l is bit c of hmask[l] (c = 0..7): the 32 hmask bytes
 * are walked once per 128-weight half with the bit moving on, NOT advanced between the halves.
 * Q3_K scales: sixteen 6-bit values, low nibbles of 0..7 in scales[0..7] & 15, of 8..15 in
 * scales[0..7] >> 4, top 2 bits of scale j in bits 2(j/4).. of scales[8 + j%4].
 *
 * Quantizers follow quantize_row_q2_K_ref (make_qkx2_quants with absolute error, weights |x|)
 * and quantize_row_q3_K_ref (make_q3_quants with its rmse refinement), no importance matrix.
 */
import { QK_K, f, f16Table, getF16, nearestInt, nearestIntWrapped, putF16 } from './common.js';
import { makeQkx2Quants, theMin } from './k-quants-45.js';

export const Q2_K_BYTES = 84;
export const Q3_K_BYTES = 110;

const GROUP_MAX_EPS = Math.fround(1e-15);

// Scratch (synchronous code: shared safely between calls).
const L = new Uint8Array(QK_K);
const Li = new Int8Array(QK_K);
const weights = new Float32Array(16);
const scales = new Float32Array(16);
const mins = new Float32Array(16);

/** Packs 4 levels (0..3) of weights 128h + 32g + l, g = 0..3, into qs[32h + l] at y[qo]. */
function pack2(y: Uint8Array, qo: number, levels: ArrayLike<number>): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      y[qo + j / 4 + l] = levels[j + l]! | (levels[j + l + 32]! << 2) | (levels[j + l + 64]! << 4) | (levels[j + l + 96]! << 6);
    }
  }
}

/**
 * Quantizes `nb` super-blocks of x[xo...] into y[yo...] as quantize_row_q2_K_ref; `fast` skips
 * the scale search (min/max fit only; not what llama.cpp writes).
 */
export function quantizeQ2_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q2_K_BYTES) {
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xo + 16 * j + l]!);
      scales[j] = makeQkx2Quants(16, 3, x, xo + 16 * j, weights, L, 16 * j, -0.5, f(0.1), fast ? 0 : 15, true);
      mins[j] = theMin;
      if (scales[j]! > maxScale) maxScale = scales[j]!;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    if (maxScale > 0) {
      const iscale = f(15 / maxScale);
      for (let j = 0; j < 16; j++) y[yo + j] = nearestInt(f(iscale * scales[j]!)) & 0xff;
      putF16(y, yo + 80, f(maxScale / 15));
    } else {
      y.fill(0, yo, yo + 16);
      putF16(y, yo + 80, 0);
    }
    if (maxMin > 0) {
      const iscale = f(15 / maxMin);
      for (let j = 0; j < 16; j++) y[yo + j] = (y[yo + j]! | (nearestInt(f(iscale * mins[j]!)) << 4)) & 0xff;
      putF16(y, yo + 82, f(maxMin / 15));
    } else {
      putF16(y, yo + 82, 0);
    }
    const dAll = getF16(y, yo + 80, t);
    const mAll = getF16(y, yo + 82, t);
    for (let j = 0; j < 16; j++) {
      const d = f(dAll * (y[yo + j]! & 15));
      if (d === 0) continue;
      const dm = f(mAll * (y[yo + j]! >> 4));
      for (let ii = 0; ii < 16; ii++) {
        L[16 * j + ii] = Math.max(0, Math.min(3, nearestInt(f(f(x[xo + 16 * j + ii]! + dm) / d))));
      }
    }
    pack2(y, yo + 16, L);
  }
}

/** Dequantizes `nb` Q2_K super-blocks as dequantize_row_q2_K. */
export function dequantizeQ2_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q2_K_BYTES) {
    const d = getF16(y, yo + 80, t);
    const min = getF16(y, yo + 82, t);
    let is = 0;
    for (let n = 0, q = yo + 16; n < QK_K; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2) {
        for (let half = 0; half < 32; half += 16) {
          const sc = y[yo + is++]!;
          const dl = f(d * (sc & 15));
          const ml = f(min * (sc >> 4));
          for (let l = 0; l < 16; l++) out[oo++] = f(dl * ((y[q + half + l]! >> shift) & 3)) - ml;
        }
      }
    }
  }
}

/**
 * make_q3_quants(n, nmax, x, L, do_rmse): symmetric levels in [-nmax, nmax) for
 * x[xo..xo+n) against the scale of the largest magnitude; with `rmse`, up to 5 passes that
 * move single levels when that improves the x^2-weighted least-squares fit. Writes
 * Li[lo..) = level + nmax and returns the scale.
 */
function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, lo: number, rmse: boolean): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    Li.fill(0, lo, lo + n);
    return 0;
  }
  const iscale = f(-nmax / max);
  if (rmse) {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
      Li[lo + i] = l;
      const w = f(xi * xi);
      sumlx = f(sumlx + f(f(w * xi) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    for (let itry = 0; itry < 5; itry++) {
      let nChanged = 0;
      for (let i = 0; i < n; i++) {
        const xi = x[xo + i]!;
        const w = f(xi * xi);
        const li = Li[lo + i]!;
        let slx = f(sumlx - f(f(w * xi) * li));
        if (slx > 0) {
          let sl2 = f(suml2 - f(f(w * li) * li));
          // x * sl2 / slx is unbounded (slx may be tiny): ggml's nearest_int wraps there
          const newL = Math.max(-nmax, Math.min(nmax - 1, nearestIntWrapped(f(f(xi * sl2) / slx))));
          if (newL !== li) {
            slx = f(slx + f(f(w * xi) * newL));
            sl2 = f(sl2 + f(f(w * newL) * newL));
            if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
              Li[lo + i] = newL;
              sumlx = slx;
              suml2 = sl2;
              nChanged++;
            }
          }
        }
      }
      if (nChanged === 0) break;
    }
    for (let i = 0; i < n; i++) Li[lo + i] += nmax;
    return suml2 > 0 ? f(sumlx / suml2) : 0;
  }
  for (let i = 0; i < n; i++) Li[lo + i] = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[xo + i]!)))) + nmax;
  return f(1 / iscale);
}

/** 6-bit scale j (0..15, before the -32) of the 12 packed Q3_K scale bytes at y[so]. */
export function scaleQ3K(j: number, y: Uint8Array, so: number): number {
  const low = j < 8 ? y[so + j]! & 15 : y[so + j - 8]! >> 4;
  return low | (((y[so + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4);
}

/**
 * Quantizes `nb` super-blocks of x[xo...] into y[yo...] as quantize_row_q3_K_ref; `fast` skips
 * make_q3_quants' refinement (not what llama.cpp writes).
 */
export function quantizeQ3_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q3_K_BYTES) {
    let maxScale = 0;
    let amax = 0;
    for (let j = 0; j < 16; j++) {
      scales[j] = makeQ3Quants(16, 4, x, xo + 16 * j, 16 * j, !fast);
      const a = Math.abs(scales[j]!);
      if (a > amax) {
        amax = a;
        maxScale = scales[j]!;
      }
    }
    const so = yo + 96;
    y.fill(0, so, so + 12);
    if (maxScale !== 0) {
      const iscale = f(-32 / maxScale);
      for (let j = 0; j < 16; j++) {
        // int8_t l = nearest_int(...): the int8 truncation cannot bite (|l| <= 32)
        let l = Math.max(-32, Math.min(31, (nearestInt(f(iscale * scales[j]!)) << 24) >> 24)) + 32;
        if (j < 8) y[so + j] = l & 15;
        else y[so + j - 8] |= (l & 15) << 4;
        l >>= 4;
        y[so + 8 + (j % 4)] |= l << (2 * (j >> 2));
      }
      putF16(y, yo + 108, f(1 / iscale));
    } else {
      putF16(y, yo + 108, 0);
    }
    const dAll = getF16(y, yo + 108, t);
    for (let j = 0; j < 16; j++) {
      const d = f(dAll * (scaleQ3K(j, y, so) - 32));
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        Li[16 * j + ii] = Math.max(-4, Math.min(3, nearestInt(f(x[xo + 16 * j + ii]! / d)))) + 4;
      }
    }
    // High bits: weight j's into bit (j / 32) of hmask[j % 32].
    y.fill(0, yo, yo + 32);
    for (let j = 0; j < QK_K; j++) {
      if (Li[j]! > 3) {
        y[yo + (j & 31)] |= 1 << (j >> 5);
        Li[j] -= 4;
      }
    }
    pack2(y, yo + 32, Li);
  }
}

/** Dequantizes `nb` Q3_K super-blocks as dequantize_row_q3_K. */
export function dequantizeQ3_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q3_K_BYTES) {
    const dAll = getF16(y, yo + 108, t);
    let is = 0;
    let m = 1; // hmask bit: moves on every 32 weights, through both halves
    for (let n = 0, q = yo + 32; n < QK_K; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (let half = 0; half < 32; half += 16) {
          const dl = f(dAll * (scaleQ3K(is++, y, yo + 96) - 32));
          for (let l = 0; l < 16; l++) {
            const q3 = ((y[q + half + l]! >> shift) & 3) - (y[yo + half + l]! & m ? 0 : 4);
            out[oo++] = f(dl * q3);
          }
        }
      }
    }
  }
}
