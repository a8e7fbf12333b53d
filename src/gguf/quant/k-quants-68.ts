/**
 * Q6_K (weights) and Q8_K (activations of K-quant dot products), ggml-common.h:
 *
 *   block_q6_K (210 bytes): ql u8[128] | qh u8[64] | scales int8[16] | d f16
 *     16 sub-blocks of 16 weights, x = d * scales[j] * (q - 32) with q in 0..63.
 *     Per 128 weights (ql += 64, qh += 32, scales += 8), for l in 0..31:
 *       q(l)      = (ql[l]      & 15) | ((qh[l] >> 0) & 3) << 4
 *       q(l + 32) = (ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4
 *       q(l + 64) = (ql[l]      >> 4) | ((qh[l] >> 4) & 3) << 4
 *       q(l + 96) = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4
 *   block_q8_K (292 bytes): d f32 | qs int8[256] | bsums int16[16] (sums of 16 qs each)
 *
 * Quantizers follow quantize_row_q6_K_ref (make_qx_quants, rmse_type 1) and
 * quantize_row_q8_K_ref.
 */
import { QK_K, f, f16Table, getF16, nearestInt, putF16 } from './common.js';

export const Q6_K_BYTES = 210;
export const Q8_K_BYTES = 292;

const GROUP_MAX_EPS = Math.fround(1e-15);

// Scratch (synchronous code: shared safely between calls).
const L = new Uint8Array(QK_K); // levels + nmax, i.e. 0..63
const scales = new Float32Array(QK_K / 16);

/**
 * make_qx_quants with rmse_type 1 and no importance weights: symmetric levels in
 * [-nmax, nmax) for x[xo..xo+n), weights w = x^2; tries 19 inverse scales around -nmax/max
 * and keeps the best least-squares fit. Writes L[lo..) = level + nmax, returns the scale.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, lo: number, fast: boolean): number {
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
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = f(-nmax / max);
  if (fast) {
    // rmse_type 0: the levels of the max-based scale, no search
    for (let i = 0; i < n; i++) L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[xo + i]!))));
    return f(1 / iscale);
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
    L[lo + i] = l + nmax;
    const w = f(xi * xi);
    sumlx = f(sumlx + f(f(w * xi) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  let scale = suml2 !== 0 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(f(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
      const w = f(xi * xi);
      sumlx = f(sumlx + f(f(w * xi) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) {
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[xo + i]!))));
      }
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/**
 * Quantizes `nb` super-blocks of x[xo...] into y[yo...] as quantize_row_q6_K_ref; `fast` uses
 * make_qx_quants' rmse_type 0 (no scale search; not what llama.cpp writes).
 */
export function quantizeQ6_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number, fast = false): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q6_K_BYTES) {
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < QK_K / 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xo + 16 * ib, 16 * ib, fast);
      scales[ib] = scale;
      const a = Math.abs(scale);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      y.fill(0, yo, yo + Q6_K_BYTES); // all-zero block, d = +0
      continue;
    }
    const iscale = f(-128 / maxScale);
    putF16(y, yo + 208, f(1 / iscale));
    for (let ib = 0; ib < QK_K / 16; ib++) {
      y[yo + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib]!))) & 0xff;
    }
    const dAll = getF16(y, yo + 208, t);
    for (let j = 0; j < QK_K / 16; j++) {
      const d = f(dAll * ((y[yo + 192 + j]! << 24) >> 24));
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = Math.max(-32, Math.min(31, nearestInt(f(x[xo + 16 * j + ii]! / d))));
        L[16 * j + ii] = l + 32;
      }
    }
    for (let j = 0, ql = yo, qh = yo + 128; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const a = L[j + l]!;
        const b = L[j + l + 32]!;
        const c = L[j + l + 64]!;
        const e = L[j + l + 96]!;
        y[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
        y[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
        y[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
}

/** Dequantizes `nb` Q6_K super-blocks as dequantize_row_q6_K. */
export function dequantizeQ6_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  const t = f16Table();
  for (let i = 0; i < nb; i++, yo += Q6_K_BYTES) {
    const d = getF16(y, yo + 208, t);
    for (let n = 0, ql = yo, qh = yo + 128, sc = yo + 192; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = y[qh + l]!;
        const q1 = ((y[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((y[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((y[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((y[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[oo + n + l] = f(d * ((y[sc + is]! << 24) >> 24)) * q1;
        out[oo + n + l + 32] = f(d * ((y[sc + is + 2]! << 24) >> 24)) * q2;
        out[oo + n + l + 64] = f(d * ((y[sc + is + 4]! << 24) >> 24)) * q3;
        out[oo + n + l + 96] = f(d * ((y[sc + is + 6]! << 24) >> 24)) * q4;
      }
    }
    oo += QK_K;
  }
}

const f32Scratch = new Float32Array(1);
const f32Bytes = new Uint8Array(f32Scratch.buffer);

/**
 * Quantizes `nb` super-blocks as quantize_row_q8_K_ref (d = max / -127 as f32, so the
 * largest-magnitude weight maps to -127). All-zero blocks get d = 0, qs = 0 and bsums = 0
 * (ggml leaves bsums unwritten there; they are never read when d = 0).
 */
export function quantizeQ8_K(x: Float32Array, xo: number, nb: number, y: Uint8Array, yo: number): void {
  for (let i = 0; i < nb; i++, xo += QK_K, yo += Q8_K_BYTES) {
    let max = 0;
    let amax = 0;
    for (let j = 0; j < QK_K; j++) {
      const ax = Math.abs(x[xo + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[xo + j]!;
      }
    }
    if (amax === 0) {
      y.fill(0, yo, yo + Q8_K_BYTES);
      continue;
    }
    const iscale = f(-127 / max);
    for (let j = 0; j < QK_K; j++) {
      y[yo + 4 + j] = Math.min(127, nearestInt(f(iscale * x[xo + j]!))) & 0xff;
    }
    for (let j = 0; j < QK_K / 16; j++) {
      let sum = 0;
      for (let ii = 0; ii < 16; ii++) sum += (y[yo + 4 + 16 * j + ii]! << 24) >> 24;
      y[yo + 260 + 2 * j] = sum & 0xff;
      y[yo + 261 + 2 * j] = (sum >> 8) & 0xff;
    }
    f32Scratch[0] = 1 / iscale;
    y.set(f32Bytes, yo);
  }
}

/** Dequantizes `nb` Q8_K super-blocks (x = d * qs). */
export function dequantizeQ8_K(y: Uint8Array, yo: number, nb: number, out: Float32Array, oo: number): void {
  for (let i = 0; i < nb; i++, yo += Q8_K_BYTES, oo += QK_K) {
    f32Bytes.set(y.subarray(yo, yo + 4));
    const d = f32Scratch[0]!;
    for (let j = 0; j < QK_K; j++) out[oo + j] = d * ((y[yo + 4 + j]! << 24) >> 24);
  }
}
