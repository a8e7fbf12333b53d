// Portable scalar path of matmul: activation packing (ggml's quantize_row_q8_0 / q8_K math)
// and plain C++ dot products (ggml's vec_dot_*_generic math). It is the reference the SIMD
// path is tested against, and the path of builds without AVX2.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "matmul.h"
#include "quants.h"
#include "matmul_ref.h"
#include "type_traits.h"

namespace flexinfer {

ActLayout actLayout(GgmlType type, int64_t k) {
  ActLayout l;
  const size_t uk = static_cast<size_t>(k);
  switch (typeTraits(static_cast<int>(type))->act) {
    case ActKind::F32:
    case ActKind::F16:
    case ActKind::BF16: l.rowBytes = alignUp64(uk * 4); break;
    case ActKind::Q8_0:
    case ActKind::Q8_1: {  // Q8_0: int32 lane correction per block; Q8_1: f32 s per block
      const size_t nb = uk / QK8_0;
      l.dOff = alignUp64(uk);
      l.sumOff = alignUp64(l.dOff + nb * 4);
      l.rowBytes = alignUp64(l.sumOff + nb * 4);
      break;
    }
    case ActKind::Q8_K: {
      const size_t nb = uk / QK_K;
      l.dOff = alignUp64(uk);
      l.sumOff = alignUp64(l.dOff + nb * 4);
      l.rowBytes = alignUp64(l.sumOff + (uk / 16) * 2);
      break;
    }
  }
  return l;
}

// Q8_0 as ggml's x86 quantize_row_q8_0: d = amax / 127 stored as f16; q = round-half-even(x *
// (127 / amax)) (the multiplier is 127/amax, not 1/d).
// Also stores, per block, laneCorr = corrMul * sum(q): the SIMD kernels start each block's
// 8 int32 dot lanes at laneCorr, which takes back the unsigned offset of the weights
// (Q4_0: q - 8 -> -8 * sum / 8 lanes = -sum; Q8_0 via q + 128: -128 * sum / 8 = -16 * sum).
// Q8_1 (ggml's x86 quantize_row_q8_1): the same quants and d, and s = f16(d * sum(q)) with the
// unrounded d, stored as f32 in place of the lane correction.
static void packQ8_0(const float* x, int64_t k, uint8_t* dst, const ActLayout& l, int corrMul, bool q8_1) {
  int8_t* qs = reinterpret_cast<int8_t*>(dst + l.qsOff);
  float* ds = reinterpret_cast<float*>(dst + l.dOff);
  int32_t* sums = reinterpret_cast<int32_t*>(dst + l.sumOff);
  float* ss = reinterpret_cast<float*>(dst + l.sumOff);
  for (int64_t b = 0; b < k / QK8_0; b++) {
    const float* xb = x + b * QK8_0;
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < QK8_0; j++) {
      const float v = std::nearbyint(xb[j] * id);
      const int q = static_cast<int>(std::max(-128.0f, std::min(127.0f, v)));
      qs[b * QK8_0 + j] = static_cast<int8_t>(q);
      sum += q;
    }
    ds[b] = f16ToF32(f32ToF16(d));
    if (q8_1) ss[b] = f16ToF32(f32ToF16(d * static_cast<float>(sum)));
    else sums[b] = corrMul * sum;
  }
}

// Q8_K as ggml's quantize_row_q8_K_ref: the scale takes the sign of the element of largest
// magnitude (iscale = -127 / max, so that element maps to -127); q = min(127, round(iscale * x)),
// d = 1 / iscale; bsums per 16.
static void packQ8_K(const float* x, int64_t k, uint8_t* dst, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(dst + l.qsOff);
  float* ds = reinterpret_cast<float*>(dst + l.dOff);
  int16_t* bsums = reinterpret_cast<int16_t*>(dst + l.sumOff);
  for (int64_t b = 0; b < k / QK_K; b++) {
    const float* xb = x + b * QK_K;
    int8_t* q = qs + b * QK_K;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; j++) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax == 0.0f) {
      ds[b] = 0.0f;
      std::memset(q, 0, QK_K);
      for (int j = 0; j < QK_K / 16; j++) bsums[b * 16 + j] = 0;
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; j++) {
      const int v = static_cast<int>(std::nearbyint(iscale * xb[j]));
      q[j] = static_cast<int8_t>(std::min(127, v));
    }
    for (int j = 0; j < QK_K / 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += q[16 * j + i];
      bsums[b * 16 + j] = static_cast<int16_t>(sum);
    }
    ds[b] = 1.0f / iscale;
  }
}

void packActivations(GgmlType type, const float* x, int64_t k, uint8_t* dst, const ActLayout& l) {
  float* f = reinterpret_cast<float*>(dst);
  const TypeTraits& t = *typeTraits(static_cast<int>(type));
  switch (t.act) {
    case ActKind::F32: std::memcpy(dst, x, static_cast<size_t>(k) * 4); break;
    case ActKind::F16:
      for (int64_t i = 0; i < k; i++) f[i] = f16ToF32(f32ToF16(x[i]));
      break;
    case ActKind::BF16:
      for (int64_t i = 0; i < k; i++) f[i] = bf16ToF32(f32ToBf16(x[i]));
      break;
    case ActKind::Q8_0: packQ8_0(x, k, dst, l, t.actCorr, false); break;
    case ActKind::Q8_1: packQ8_0(x, k, dst, l, 0, true); break;
    case ActKind::Q8_K: packQ8_K(x, k, dst, l); break;
  }
}

// ---- scalar dot products: one weight row · one packed activation row ----

namespace {

using namespace ref;

// Float weights: w[i] converted to f32 times the (already rounded) activation, summed in double.
template <typename W, float (*toF32)(W)>
static float dotFloat(const uint8_t* w, const ActRow& a, int64_t k) {
  const W* wv = reinterpret_cast<const W*>(w);
  const float* xf = reinterpret_cast<const float*>(a.raw);
  double s = 0;
  for (int64_t i = 0; i < k; i++) s += static_cast<double>(toF32(wv[i])) * xf[i];
  return static_cast<float>(s);
}

static float identityF32(float x) { return x; }

float dotF32(const uint8_t* w, const ActRow& a, int64_t k) { return dotFloat<float, identityF32>(w, a, k); }
float dotF16(const uint8_t* w, const ActRow& a, int64_t k) { return dotFloat<uint16_t, f16ToF32>(w, a, k); }
float dotBF16(const uint8_t* w, const ActRow& a, int64_t k) { return dotFloat<uint16_t, bf16ToF32>(w, a, k); }

float dotQ4_0(const uint8_t* w, const ActRow& a, int64_t k) {
  const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(w);
  float sumf = 0;
  for (int64_t b = 0; b < k / QK8_0; b++) {
    const int8_t* x = a.qs + b * QK8_0;
    int sumi = 0;
    for (int j = 0; j < QK4_0 / 2; j++) {
      sumi += ((wb[b].qs[j] & 0xF) - 8) * x[j];
      sumi += ((wb[b].qs[j] >> 4) - 8) * x[j + 16];
    }
    sumf = std::fma(static_cast<float>(sumi), f16ToF32(wb[b].d) * a.d[b], sumf);
  }
  return sumf;
}

float dotQ8_0(const uint8_t* w, const ActRow& a, int64_t k) {
  // llama.cpp's steps (see tileQ8_0 in matmul_x86.cc): 8 lanes of 4 quants, then its hsum.
  const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w);
  float lane[8] = {};
  for (int64_t b = 0; b < k / QK8_0; b++) {
    const int8_t* x = a.qs + b * QK8_0;
    const float d = f16ToF32(wb[b].d) * a.d[b];
    for (int l = 0; l < 8; l++) {
      int sumi = 0;
      for (int j = 4 * l; j < 4 * l + 4; j++) sumi += wb[b].qs[j] * x[j];
      lane[l] = std::fma(d, static_cast<float>(sumi), lane[l]);
    }
  }
  float h[4];
  for (int l = 0; l < 4; l++) h[l] = lane[l] + lane[l + 4];
  return (h[0] + h[2]) + (h[1] + h[3]);
}

// Sum over the 8 sub-blocks of mins[j] * (sum of the activation quants of sub-block j).
inline int minsDot(const uint8_t* mins, const int16_t* bsums) {
  int s = 0;
  for (int j = 0; j < 8; j++) s += mins[j] * (bsums[2 * j] + bsums[2 * j + 1]);
  return s;
}

float dotQ4_K(const uint8_t* w, const ActRow& a, int64_t k) {
  const BlockQ4K* wb = reinterpret_cast<const BlockQ4K*>(w);
  const int16_t* bsums = static_cast<const int16_t*>(a.sums);
  float sumf = 0;
  for (int64_t b = 0; b < k / QK_K; b++) {
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) scaleMinK4(j, wb[b].scales, &sc[j], &mn[j]);
    const int8_t* x = a.qs + b * QK_K;
    int sumi = 0;
    for (int c = 0; c < 4; c++) {
      const uint8_t* q = wb[b].qs + 32 * c;
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; l++) {
        lo += (q[l] & 0xF) * x[64 * c + l];
        hi += (q[l] >> 4) * x[64 * c + 32 + l];
      }
      sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    const int sumMins = minsDot(mn, bsums + b * 16);
    const float d = a.d[b] * f16ToF32(wb[b].d);
    const float dmin = a.d[b] * f16ToF32(wb[b].dmin);
    sumf += d * static_cast<float>(sumi) - dmin * static_cast<float>(sumMins);
  }
  return sumf;
}

// Q5_K and Q6_K: llama.cpp's x86 steps (ggml_vec_dot_q5_K_q8_K / q6_K_q8_K, AVX2 path; x86 has
// no repacked layout for them), which the SIMD kernels share (matmul.h): per super-block 8 exact
// int32 lanes, lane l = sum over the 8 groups of 32 quants of scale * dot(quants 4l..4l+3);
// then acc_l = fma(d_w * d_x, float(lane l), acc_l) and one hsumLanes at the end.
// The Q5_K min term as llama.cpp's scalar chain: summs = fma(-(d_x * dmin_w), float(mins), summs).
inline float minsStep(float summs, float dx, uint16_t dminw, int mins) {
  return std::fma(-(dx * f16ToF32(dminw)), static_cast<float>(mins), summs);
}

float dotQ5_K(const uint8_t* w, const ActRow& a, int64_t k) {
  const BlockQ5K* wb = reinterpret_cast<const BlockQ5K*>(w);
  const int16_t* bsums = static_cast<const int16_t*>(a.sums);
  float acc[8] = {}, summs = 0.0f;
  for (int64_t b = 0; b < k / QK_K; b++) {
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) scaleMinK4(j, wb[b].scales, &sc[j], &mn[j]);
    const int8_t* x = a.qs + b * QK_K;
    const uint8_t* qh = wb[b].qh;
    int lane[8] = {};
    for (int j = 0; j < 8; j++) {  // sub-block j: elements [32j, +32), nibbles of qs[32 * (j / 2) ..]
      const uint8_t* q = wb[b].qs + 32 * (j / 2);
      for (int l = 0; l < 32; l++) {
        const int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) + (((qh[l] >> j) & 1) << 4);
        lane[l / 4] += sc[j] * v * x[32 * j + l];
      }
    }
    const float d = a.d[b] * f16ToF32(wb[b].d);
    for (int l = 0; l < 8; l++) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
    summs = minsStep(summs, a.d[b], wb[b].dmin, minsDot(mn, bsums + b * 16));
  }
  return hsumLanes(acc) + summs;
}

// Q6_K (llama.cpp since its Q6_K AVX2 rewrite, the version node-llama-cpp 3.21.1 ships): quants
// taken unsigned (0..63) into the lanes; the -32 offset comes off per lane afterwards, lane l
// losing 32 * (sc[2l] * bsums[2l] + sc[2l+1] * bsums[2l+1]) (a madd of the 16 bsums with the
// 16 scales), so lane l's correction belongs to elements [32l, +32), not to its own quants.
// The integer lane values differ from the older m32s form, the f32 steps are the same.
float dotQ6_K(const uint8_t* w, const ActRow& a, int64_t k) {
  const BlockQ6K* wb = reinterpret_cast<const BlockQ6K*>(w);
  const int16_t* bsums = static_cast<const int16_t*>(a.sums);
  float acc[8] = {};
  for (int64_t b = 0; b < k / QK_K; b++) {
    const int8_t* x = a.qs + b * QK_K;
    const int8_t* sc = wb[b].scales;
    const int16_t* bs = bsums + b * 16;
    int lane[8] = {};
    for (int h = 0; h < 2; h++) {
      const uint8_t* ql = wb[b].ql + 64 * h;
      const uint8_t* qh = wb[b].qh + 32 * h;
      for (int l = 0; l < 32; l++) {
        // Elements 128h + 32g + l, g = 0..3; element e has scale e / 16, lane (e % 32) / 4.
        const int q[4] = {(ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4), (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                          (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)};
        for (int g = 0; g < 4; g++) {
          const int e = 128 * h + 32 * g + l;
          lane[l / 4] += sc[e / 16] * q[g] * x[e];
        }
      }
    }
    for (int l = 0; l < 8; l++) lane[l] -= 32 * (sc[2 * l] * bs[2 * l] + sc[2 * l + 1] * bs[2 * l + 1]);
    const float d = a.d[b] * f16ToF32(wb[b].d);
    for (int l = 0; l < 8; l++) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
  }
  return hsumLanes(acc);
}

}  // namespace

MatmulKernel scalarKernel(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return scalarTile<dotF32>;
    case GgmlType::F16: return scalarTile<dotF16>;
    case GgmlType::BF16: return scalarTile<dotBF16>;
    case GgmlType::Q4_0: return scalarTile<dotQ4_0>;
    case GgmlType::Q8_0: return scalarTile<dotQ8_0>;
    case GgmlType::Q4_K: return scalarTile<dotQ4_K>;
    case GgmlType::Q5_K: return scalarTile<dotQ5_K>;
    case GgmlType::Q6_K: return scalarTile<dotQ6_K>;
    default: return nullptr;
  }
}

}  // namespace flexinfer
