/**
 * Q4_K and Q5_K: 256-weight super-blocks of 8 sub-blocks of 32, each sub-block with a 6-bit
 * scale and a 6-bit min, both scaled by f16 super-block factors (ggml-common.h):
 *
 *   block_q4_K (144 bytes): d f16 | dmin f16 | scales u8[12] | qs u8[128]
 *   block_q5_K (176 bytes): d f16 | dmin f16 | scales u8[12] | qh u8[32] | qs u8[128]
 *
 *   x = d * sc[j] * q - dmin * m[j]      (q in 0..15 or 0..31)
 *
 * scales[12] packs eight (sc, m) 6-bit pairs (get_scale_min_k4): for j < 4, sc = s[j] & 63
 * and m = s[j+4] & 63; for j >= 4 the low 4 bits sit in s[j+4] (sc low nibble, m high nibble)
 * and the top 2 bits in bits 6-7 of s[j-4] (sc) and s[j] (m).
 * qs: 64 weights per 32 bytes, the first 32 in the low nibbles, the next 32 in the high ones.
 * Q5_K qh: bit 2k of qh[l] is the fifth bit of weight 64k + l, bit 2k+1 that of 64k + 32 + l.
 *
 * The quantizers follow quantize_row_q4_K_ref / quantize_row_q5_K_ref (no importance matrix):
 * make_qkx2_quants per sub-block, then scales and mins quantized to 6 bits against their maxima,
 * then the weights re-quantized against the stored (rounded) scales.
 */
import { QK_K, f, f16Table, getF16, nearestInt, putF16 } from './common.js';

export const Q4_K_BYTES = 144;
export const Q5_K_BYTES = 176;

// Scratch buffers reused by every call (the quantizers are synchronous, so sharing is safe).
const L = new Uint8Array(QK_K);
const Laux = new Uint8Array(32);
const weights = new Float32Array(32);
const scales = new Float32Array(QK_K / 32);
const mins = new Float32Array(QK_K / 32);
/** Second result of makeQkx2Quants (the negated min), to avoid allocating a pair. */
export let theMin = 0;

/** x - min per element (as float), refreshed when min moves. */
const xm = new Float32Array(32);
/** f(f(scale * l) + min) for every level l of the candidate being scored. */
const levelValue = new Float64Array(32);

/**
 * make_qkx2_quants: fits x[xo..xo+n) ~ scale * L + min (min <= 0) with L in [0, nmax], trying
 * nstep+1 candidate inverse scales around nmax / (max - min) and keeping the one with the
 * smallest weighted error (squared, or absolute with `useMad`: Q2_K). Writes L[lo..lo+n), sets
 * theMin = -min and returns the scale. (n <= 32.) Same float operations as ggml, in the same
 * order; two values ggml recomputes per element, x - min and scale * l + min, are tabulated
 * (same bits, fewer operations).
 */
export function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number,
  rmin: number, rdelta: number, nstep: number, useMad = false,
): number {
  let min = x[xo]!;
  let max = min;
  let sumW = w[0]!;
  let sumX = f(sumW * min);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const wi = w[i]!;
    sumW = f(sumW + wi);
    sumX = f(sumX + f(wi * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    theMin = -min;
    return 0;
  }
  let range = f(max - min);
  for (let i = 0; i < n; i++) xm[i] = x[xo + i]! - min; // Float32Array store rounds: f(x - min)
  let iscale = f(nmax / range);
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * xm[i]!))));
    L[lo + i] = l;
    const diff = f(f(f(scale * l) + min) - x[xo + i]!);
    bestError = f(bestError + f(w[i]! * (useMad ? Math.abs(diff) : f(diff * diff))));
  }
  if (nstep < 1) {
    theMin = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    // NOTE: min is the best fit so far (updated below), so the candidate grid moves with it
    iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / range);
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    let changed = is === 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * xm[i]!))));
      if (Laux[i] !== l) changed = true;
      Laux[i] = l;
      const wl = f(w[i]! * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[xo + i]!));
    }
    // Same levels as the previous candidate: same fit and error, so the same (negative)
    // decision; skipping the error pass keeps the result identical and saves ~1/3 of the work.
    if (!changed) continue;
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      for (let l = 0; l <= nmax; l++) levelValue[l] = f(f(thisScale * l) + thisMin);
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = f(levelValue[Laux[i]!]! - x[xo + i]!);
        curError = f(curError + f(w[i]! * (useMad ? Math.abs(diff) : f(diff * diff))));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        if (thisMin !== min) {
          min = thisMin;
          range = f(max - min);
          for (let i = 0; i < n; i++) xm[i] = x[xo + i]! - min;
        }
      }
    }
  }
  theMin = -min;
  return scale;
}

/** Packs eight 6-bit (scale, min) pairs into 12 bytes at y[so] (inverse of get_scale_min_k4). */
function packScalesK4(y: Uint8Array, so: number, ls: Uint8Array, lm: Uint8Array): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      y[so + j] = ls[j]!;
      y[so + j + 4] = lm[j]!;
    } else {
      y[so + j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
      y[so + j - 4] |= (ls[j]! >> 4) << 6;
      y[so + j] |= (lm[j]! >> 4) << 6;
    }
  }
}

/** get_scale_min_k4: 6-bit scale of sub-block j from the 12 packed bytes at q[so]. */
export function scaleK4(j: number, q: Uint8Array, so: number): number {
  return j < 4 ? q[so + j]! & 63 : (q[so + j + 4]! & 0xf) | ((q[so + j - 4]! >> 6) << 4);
}

/** get_scale_min_k4: 6-bit min of sub-block j. */
export function minK4(j: number, q: Uint8Array, so: number): number {
  return j < 4 ? q[so + j + 4]! & 63 : (q[so + j + 4]! >> 4) | ((q[so + j]! >> 6) << 4);
}

const ls8 = new Uint8Array(8);
const lm8 = new Uint8Array(8);

/**
 * Shared first half of the Q4_K / Q5_K reference quantizers for one super-block at x[xo]:
 * fills L[0..256) with levels in [0, nmax] and writes d, dmin and scales at y[yo].
 */
function quantizeSuperBlockK(
  x: Float32Array, xo: number, y: Uint8Array, yo: number, nmax: number, rmin: number, nstep: number,
): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < QK_K / 32; j++) {
    const bo = xo + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(x[bo + l]! * x[bo + l]!));
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = avX + Math.abs(x[bo + l]!); // stored as float: one rounding
    scales[j] = makeQkx2Quants(32, nmax, x, bo, weights, L, 32 * j, rmin, f(0.1), nstep);
    mins[j] = theMin;
    if (scales[j]! > maxScale) maxScale = scales[j]!;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  for (let j = 0; j < QK_K / 32; j++) {
    // uint8_t ls = nearest_int(...): C truncates to 8 bits before MIN(63, .)
    ls8[j] = Math.min(63, nearestInt(f(invScale * scales[j]!)) & 0xff);
    lm8[j] = Math.min(63, nearestInt(f(invMin * mins[j]!)) & 0xff);
  }
  y.fill(0, yo + 4, yo + 16);
  packScalesK4(y, yo + 4, ls8, lm8);
  putF16(y, yo, f(maxScale / 63));
  putF16(y, yo + 2, f(maxMin / 63));

  // Re-quantize against the scales as stored (f16 super-scales times 6-bit sub-scales).
  const t = f16Table();
  const dAll = getF16(y, yo, t);
  const mAll = getF16(y, yo + 2, t);
  for (let j = 0; j < QK_K / 32; j++) {
    const d = f(dAll * ls8[j]!);
    if (d === 0) continue; // keeps the levels make_qkx2_quants chose, as ggml does
    const dm = f(mAll * lm8[j]!);
    const bo = xo + 32 * j;
    for (let ii = 0; ii < 32; ii++) {
      L[32 * j + ii] = Math.max(0, Math.min(nmax, nearestInt(f(f(x[bo + ii]! + dm) / d))));
    }
  }
}

/**
 * Quantizes `nb` super-blocks of x[xo...] into y[yo...] as quantize_row_q4_K_ref; `fast`
 * skips the scale search (make_qkx2_quants with nstep 0: min/max fit only, ~10x faster,
 * same layout, slightly larger error; not what llama.cpp writes).
 */
export function quantizeQ4_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q4_K_BYTES) {
    quantizeSuperBlockK(x, xo, y, yo, 15, -1, fast ? 0 : 20);
    const qo = yo + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) y[qo + j / 2 + l] = L[j + l]! | (L[j + l + 32]! << 4);
    }
  }
}

/** Quantizes `nb` super-blocks as quantize_row_q5_K_ref (`fast`: see quantizeQ4_K). */
export function quantizeQ5_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q5_K_BYTES) {
    quantizeSuperBlockK(x, xo, y, yo, 31, -0.5, fast ? 0 : 15);
    const ho = yo + 16; // qh[32]
    const qo = yo + 48; // qs[128]
    y.fill(0, ho, ho + 32);
    let m1 = 1;
    let m2 = 2;
    for (let n = 0; n < QK_K; n += 64) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j]!;
        if (l1 > 15) {
          l1 -= 16;
          y[ho + j] |= m1;
        }
        let l2 = L[n + j + 32]!;
        if (l2 > 15) {
          l2 -= 16;
          y[ho + j] |= m2;
        }
        y[qo + n / 2 + j] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
    }
  }
}

/** Dequantizes `nb` Q4_K super-blocks as dequantize_row_q4_K. */
export function dequantizeQ4_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q4_K_BYTES) {
    const d = getF16(y, yo, t);
    const min = getF16(y, yo + 2, t);
    let q = yo + 16;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      const d1 = f(d * scaleK4(is, y, yo + 4));
      const m1 = f(min * minK4(is, y, yo + 4));
      const d2 = f(d * scaleK4(is + 1, y, yo + 4));
      const m2 = f(min * minK4(is + 1, y, yo + 4));
      for (let l = 0; l < 32; l++) out[oo++] = f(d1 * (y[q + l]! & 0xf)) - m1;
      for (let l = 0; l < 32; l++) out[oo++] = f(d2 * (y[q + l]! >> 4)) - m2;
    }
  }
}

/** Dequantizes `nb` Q5_K super-blocks as dequantize_row_q5_K. */
export function dequantizeQ5_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q5_K_BYTES) {
    const d = getF16(y, yo, t);
    const min = getF16(y, yo + 2, t);
    const qh = yo + 16;
    let ql = yo + 48;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      const d1 = f(d * scaleK4(is, y, yo + 4));
      const m1 = f(min * minK4(is, y, yo + 4));
      const d2 = f(d * scaleK4(is + 1, y, yo + 4));
      const m2 = f(min * minK4(is + 1, y, yo + 4));
      for (let l = 0; l < 32; l++) out[oo++] = f(d1 * ((y[ql + l]! & 0xf) + (y[qh + l]! & u1 ? 16 : 0))) - m1;
      for (let l = 0; l < 32; l++) out[oo++] = f(d2 * ((y[ql + l]! >> 4) + (y[qh + l]! & u2 ? 16 : 0))) - m2;
    }
  }
}
