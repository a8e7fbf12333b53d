// Small x86 SIMD helpers shared by the matmul kernels (compiled only where AVX2 is enabled).
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

namespace flexinfer {

// In place: v[r] holds 8 dwords of row r; afterwards v[c] holds dword c of rows 0..7
// (the classic unpack / shuffle / permute2f128 transpose, 24 shuffles).
inline void transpose8x8(__m256i v[8]) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; i++) r[i] = _mm256_castsi256_ps(v[i]);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // t0 = rows 0,1 interleaved (low dwords), t1 = rows 0,1 (high), t2/t3 = rows 2,3, ...
  for (int g = 0; g < 8; g += 4) {
    r[g + 0] = _mm256_shuffle_ps(t[g + 0], t[g + 2], 0x44);
    r[g + 1] = _mm256_shuffle_ps(t[g + 0], t[g + 2], 0xEE);
    r[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    r[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    v[c] = _mm256_castps_si256(_mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
    v[c + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
  }
}

}  // namespace flexinfer
#endif
