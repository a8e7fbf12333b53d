// Q2_K and Q3_K: the 2- and 3-bit K-quants (256-element super-blocks of 16 sub-blocks of 16).
// Row dequantizers, the scalar reference dots and the x86 SIMD kernels of both.
//
// f32 steps, llama.cpp's x86 CPU backend (zen4 build), which differ between the two:
//   Q2_K  (REPACK buffer, q2_Kx8 GEMV): the super-block's dot summed to one exact int32,
//         sumi = sum_j sc_j * dot_j(q, x), mins = sum_j m_j * bsums_j(x);
//         acc = fma(float(sumi), d_w * d_x, acc), accMin = fma(float(mins), dmin_w * d_x, accMin),
//         result acc - accMin (Q4_K's steps). llama.cpp's GEMM (rows in groups of 4) adds in f32
//         per 128 quants and so differs from its own GEMV; we follow the GEMV at every m.
//   Q3_K  (ggml_vec_dot_q3_K_q8_K, every row of any batch): per super-block 8 exact int32 lanes,
//         lane l = sum over the 8 groups g of 32 quants of sc * dot(quants 4l..4l+3 of g, minus 4),
//         the scale that of the quants' sub-block (2g for lanes 0..3, 2g + 1 for 4..7);
//         acc_l = fma(d_x * d_w, float(lane l), acc_l), one horizontal sum at the end.
#include <cmath>
#include <cstring>

#include "matmul.h"
#include "matmul_ref.h"
#include "matmul_x86.h"
#include "quants.h"
#include "type_traits.h"

// One rounding per operation in the dequantizers, as ggml-base's dequantize_row_* (see
// ops_dequant.cc); the kernels below state their fmas explicitly.
#pragma GCC optimize("fp-contract=off")

namespace flexinfer {

namespace {

// Quant of element e (0..255) of a Q2_K / Q3_K block's 2-bit field: element 128h + 32g + l sits
// in bits 2g.. of qs[32h + l].
inline int q2At(const uint8_t* qs, int e) { return (qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3; }

// Q3_K: the high bit of element e is bit e / 32 of hmask[e % 32]; without it the quant is q - 4.
inline int q3At(const BlockQ3K& b, int e) { return q2At(b.qs, e) - ((b.hmask[e & 31] >> (e >> 5)) & 1 ? 0 : 4); }

// ---- row dequantizers (ggml's dequantize_row_q2_K / q3_K) ----

void dequantQ2K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ2K b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d), min = f16ToF32(b.dmin);
    for (int e = 0; e < QK_K; e += 16) {
      const uint8_t sc = b.scales[e >> 4];  // ggml walks the sub-blocks in element order
      const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; l++) *y++ = dl * static_cast<float>(q2At(b.qs, e + l)) - ml;
    }
  }
}

void dequantQ3K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ3K b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    int8_t sc[16];
    q3Scales(b.scales, sc);
    const float d = f16ToF32(b.d);
    for (int e = 0; e < QK_K; e += 16) {
      // ggml walks the sub-blocks in element order: is = e / 16
      const float dl = d * static_cast<float>(sc[e >> 4]);
      for (int l = 0; l < 16; l++) *y++ = dl * static_cast<float>(q3At(b, e + l));
    }
  }
}

// ---- scalar reference dots ----

// bsums (Q8_K: sum of each 16 activation quants) of super-block b.
inline const int16_t* bsumsOf(const ref::ActRow& a, int64_t b) { return static_cast<const int16_t*>(a.sums) + b * 16; }

float dotQ2K(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  const BlockQ2K* wb = reinterpret_cast<const BlockQ2K*>(w);
  float acc = 0.0f, accMin = 0.0f;
  for (int64_t b = 0; b < k / QK_K; b++) {
    const int8_t* x = a.qs + b * QK_K;
    const int16_t* bs = bsumsOf(a, b);
    int sumi = 0, mins = 0;
    for (int j = 0; j < 16; j++) {
      // sub-block j: elements 16j .. 16j + 15, scale byte scales[j]
      int dj = 0;
      for (int l = 0; l < 16; l++) dj += q2At(wb[b].qs, 16 * j + l) * x[16 * j + l];
      sumi += (wb[b].scales[j] & 0xF) * dj;
      mins += (wb[b].scales[j] >> 4) * bs[j];
    }
    const float dx = a.d[b];
    acc = std::fma(static_cast<float>(sumi), f16ToF32(wb[b].d) * dx, acc);
    accMin = std::fma(static_cast<float>(mins), f16ToF32(wb[b].dmin) * dx, accMin);
  }
  return acc - accMin;
}

float dotQ3K(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  const BlockQ3K* wb = reinterpret_cast<const BlockQ3K*>(w);
  float acc[8] = {};
  for (int64_t b = 0; b < k / QK_K; b++) {
    const int8_t* x = a.qs + b * QK_K;
    int8_t sc[16];
    q3Scales(wb[b].scales, sc);
    int lane[8] = {};
    for (int e = 0; e < QK_K; e++) lane[(e & 31) >> 2] += sc[e >> 4] * q3At(wb[b], e) * x[e];
    const float d = a.d[b] * f16ToF32(wb[b].d);
    for (int l = 0; l < 8; l++) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
  }
  return ref::hsumLanes(acc);
}

}  // namespace

TypeKernels k23Kernels(GgmlType type) {
  switch (type) {
    case GgmlType::Q2_K: return {dequantQ2K, ref::scalarTile<dotQ2K>, nullptr, nullptr};
    case GgmlType::Q3_K: return {dequantQ3K, ref::scalarTile<dotQ3K>, nullptr, nullptr};
    default: return {};
  }
}

}  // namespace flexinfer
