// Q4_1, Q5_0, Q5_1: the 32-element legacy blocks beside Q4_0 / Q8_0 (those: matmul_x86*.cc).
// Row dequantizers, the scalar reference dots and the x86 SIMD kernels of the three types.
//
// f32 steps (llama.cpp's x86 CPU backend, zen4 build: ggml_vec_dot_q4_1_q8_1 / q5_0_q8_0 /
// q5_1_q8_1 for every row of any batch, and tinyBLAS for Q5_0 batches, which keeps the same
// lanes): per block 8 exact int32 lanes, lane l = the dot of quants 4l..4l+3 (Q5_0: q - 16;
// Q4_1, Q5_1: q unsigned) with the activation's; acc_l = fma(d_w * d_x, float(lane l), acc_l);
// at the end one horizontal sum in llama.cpp's order (ref::hsumLanes). Q4_1 / Q5_1 add the min
// term of each block as a scalar chain, summs = fma(m_w, s_x, summs) (s_x = f16(d_x * sum(q_x)),
// the Q8_1 activation's), result hsum + summs. Every kernel here does these steps per output, so
// results are row-invariant and bitwise llama.cpp's (src/native/matmul-llamacpp.test.ts).
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

// ---- block decoding ----

// The 32 quants of a block in element order (low nibbles = elements 0..15, high = 16..31),
// with the fifth bit of element j from bit j of qh (Q5_*).
inline void quants32(const uint8_t* qs, const uint8_t* qh, int* q) {
  uint32_t h = 0;
  if (qh) std::memcpy(&h, qh, 4);
  for (int j = 0; j < 16; j++) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((h >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((h >> (j + 16)) & 1) << 4);
  }
}

template <GgmlType T>
struct Legacy;
template <>
struct Legacy<GgmlType::Q4_1> {
  using Block = BlockQ4_1;
  static constexpr int kOffset = 0;
  static const uint8_t* qh(const Block&) { return nullptr; }
};
template <>
struct Legacy<GgmlType::Q5_0> {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static const uint8_t* qh(const Block& b) { return b.qh; }
};
template <>
struct Legacy<GgmlType::Q5_1> {
  using Block = BlockQ5_1;
  static constexpr int kOffset = 0;
  static const uint8_t* qh(const Block& b) { return b.qh; }
};

// ---- row dequantizers (ggml's dequantize_row_q4_1 / q5_0 / q5_1) ----

template <GgmlType T>
void dequant(float* y, const uint8_t* src, int64_t nb) {
  using B = typename Legacy<T>::Block;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    B b;
    std::memcpy(&b, src + i * sizeof(B), sizeof b);
    int q[32];
    quants32(b.qs, Legacy<T>::qh(b), q);
    const float d = f16ToF32(b.d);
    if constexpr (T == GgmlType::Q5_0) {
      for (int j = 0; j < 32; j++) y[j] = static_cast<float>(q[j] - 16) * d;
    } else {
      const float m = f16ToF32(b.m);
      for (int j = 0; j < 32; j++) y[j] = static_cast<float>(q[j]) * d + m;
    }
  }
}

// ---- scalar reference: the steps above, lane by lane ----

template <GgmlType T>
float dot(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  using B = typename Legacy<T>::Block;
  const B* wb = reinterpret_cast<const B*>(w);
  const float* s = static_cast<const float*>(a.sums);  // Q8_1: s per block
  float acc[8] = {}, summs = 0.0f;
  for (int64_t b = 0; b < k / 32; b++) {
    int q[32];
    quants32(wb[b].qs, Legacy<T>::qh(wb[b]), q);
    const int8_t* x = a.qs + b * 32;
    const float d = f16ToF32(wb[b].d) * a.d[b];
    for (int l = 0; l < 8; l++) {
      int lane = 0;
      for (int j = 4 * l; j < 4 * l + 4; j++) lane += (q[j] - Legacy<T>::kOffset) * x[j];
      acc[l] = std::fma(d, static_cast<float>(lane), acc[l]);
    }
    if constexpr (T != GgmlType::Q5_0) summs = std::fma(f16ToF32(wb[b].m), s[b], summs);
  }
  return T == GgmlType::Q5_0 ? ref::hsumLanes(acc) : ref::hsumLanes(acc) + summs;
}

}  // namespace

TypeKernels legacyKernels(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_1:
      return {dequant<GgmlType::Q4_1>, ref::scalarTile<dot<GgmlType::Q4_1>>, nullptr, nullptr};
    case GgmlType::Q5_0:
      return {dequant<GgmlType::Q5_0>, ref::scalarTile<dot<GgmlType::Q5_0>>, nullptr, nullptr};
    case GgmlType::Q5_1:
      return {dequant<GgmlType::Q5_1>, ref::scalarTile<dot<GgmlType::Q5_1>>, nullptr, nullptr};
    default: return {};
  }
}

}  // namespace flexinfer
