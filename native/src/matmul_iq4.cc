// IQ4_NL and IQ4_XS: 4-bit indices into the non-linear table kIQ4Values. Row dequantizers, the
// scalar reference dots and the x86 SIMD kernels of both.
//
// f32 steps, llama.cpp's x86 CPU backend (zen4 build):
//   IQ4_NL (REPACK buffer, iq4_nl_8x8 GEMV / GEMM, Q4_0's kernels with a table): per block the
//          exact int32 dot of the table values with the activation quants, acc = fma(float(dot),
//          d_w * d_x, acc) over the blocks in order (Q4_0's steps).
//   IQ4_XS (ggml_vec_dot_iq4_xs_q8_K; batches of 8 or more rows take its IQ panel GEMM, which
//          sums otherwise: we follow the vec_dot at every m): per super-block 8 exact int32
//          lanes, lane l = sum over the 8 blocks ib of (ls_ib - 32) * dot(values 4l..4l+3 of ib);
//          acc_l = fma(d_w * d_x, float(lane l), acc_l), one horizontal sum at the end.
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

// Table value of element j (0..31) of a block's 16 nibble bytes.
inline int iq4At(const uint8_t* qs, int j) { return kIQ4Values[j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4]; }

// ---- row dequantizers (ggml's dequantize_row_iq4_nl / iq4_xs) ----

void dequantIQ4NL(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    BlockIQ4NL b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d);
    for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(iq4At(b.qs, j));
  }
}

void dequantIQ4XS(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockIQ4XS b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
      const float dl = d * static_cast<float>(iq4xsScale(b, ib));
      for (int j = 0; j < 32; j++) y[j] = dl * static_cast<float>(iq4At(b.qs + 16 * ib, j));
    }
  }
}

// ---- scalar reference dots ----

float dotIQ4NL(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  const BlockIQ4NL* wb = reinterpret_cast<const BlockIQ4NL*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < k / 32; b++) {
    const int8_t* x = a.qs + b * 32;
    int sumi = 0;
    for (int j = 0; j < 32; j++) sumi += iq4At(wb[b].qs, j) * x[j];
    acc = std::fma(static_cast<float>(sumi), f16ToF32(wb[b].d) * a.d[b], acc);
  }
  return acc;
}

float dotIQ4XS(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  const BlockIQ4XS* wb = reinterpret_cast<const BlockIQ4XS*>(w);
  float acc[8] = {};
  for (int64_t b = 0; b < k / QK_K; b++) {
    const int8_t* x = a.qs + b * QK_K;
    int lane[8] = {};
    for (int ib = 0; ib < 8; ib++) {
      const int ls = iq4xsScale(wb[b], ib);
      for (int l = 0; l < 8; l++) {
        int s = 0;
        for (int j = 4 * l; j < 4 * l + 4; j++) s += iq4At(wb[b].qs + 16 * ib, j) * x[32 * ib + j];
        lane[l] += ls * s;
      }
    }
    const float d = f16ToF32(wb[b].d) * a.d[b];
    for (int l = 0; l < 8; l++) acc[l] = std::fma(d, static_cast<float>(lane[l]), acc[l]);
  }
  return ref::hsumLanes(acc);
}

}  // namespace

TypeKernels iq4Kernels(GgmlType type) {
  switch (type) {
    case GgmlType::IQ4_NL: return {dequantIQ4NL, ref::scalarTile<dotIQ4NL>, nullptr, nullptr};
    case GgmlType::IQ4_XS: return {dequantIQ4XS, ref::scalarTile<dotIQ4XS>, nullptr, nullptr};
    default: return {};
  }
}

}  // namespace flexinfer
