// Pieces shared by the scalar (portable, reference) matmul kernels of every family file:
// access to one packed activation row, the row-tile driver, and llama.cpp's horizontal sum.
#pragma once

#include <cstddef>
#include <cstdint>

#include "matmul.h"

namespace flexinfer {
namespace ref {

struct ActRow {
  const int8_t* qs;
  const float* d;
  const void* sums;
  const void* raw;
};

inline ActRow actRow(const ActRows& a, int64_t i) {
  const uint8_t* p = a.base + static_cast<size_t>(i) * a.stride;
  return {reinterpret_cast<const int8_t*>(p + a.layout.qsOff), reinterpret_cast<const float*>(p + a.layout.dOff),
          p + a.layout.sumOff, p};
}

// llama.cpp's hsum_float_8 order over 8 f32 lanes: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float hsumLanes(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

using RowDot = float (*)(const uint8_t* w, const ActRow& a, int64_t k);

template <RowDot Dot>
void scalarTile(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
                int64_t ldo) {
  for (int64_t r = 0; r < nw; r++) {
    const uint8_t* wr = w + static_cast<size_t>(r) * wStride;
    for (int64_t i = 0; i < nx; i++) out[i * ldo + r] = Dot(wr, actRow(a, i), k);
  }
}

}  // namespace ref
}  // namespace flexinfer
