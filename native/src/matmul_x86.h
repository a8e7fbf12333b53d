// Helpers shared by the x86 matmul kernel files (matmul_x86*.cc and the per-family files
// matmul_legacy.cc, matmul_k23.cc, matmul_iq4.cc): AVX2 + FMA + F16C, with AVX512-VNNI
// (256-bit vpdpbusd / vpdpwssd, AVX512VL) where the build has it. Include only inside
// `#ifdef FLEXINFER_MATMUL_AVX2`.
#pragma once

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define FLEXINFER_MATMUL_AVX2 1
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "matmul.h"

namespace flexinfer {
namespace x86 {

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define FLEXINFER_VNNI 1
// sum of u8 * s8 in groups of 4, added to acc (int32 lanes).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
// sum of s16 * s16 pairs, added to acc.
inline __m256i dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
#else
// maddubs saturates at 16 bits: callers only pass u <= 63 (2 * 63 * 128 < 32767).
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
inline __m256i dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#endif

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline int32_t hsumEpi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// v in int32 lane 0, zeros elsewhere.
inline __m256i lane0(int32_t v) { return _mm256_zextsi128_si256(_mm_cvtsi32_si128(v)); }

inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Pointers into activation row `i` of a packed view.
struct Act {
  const uint8_t* p;
  const ActLayout* l;
  const int8_t* qs() const { return reinterpret_cast<const int8_t*>(p + l->qsOff); }
  const float* f() const { return reinterpret_cast<const float*>(p); }
  const float* d() const { return reinterpret_cast<const float*>(p + l->dOff); }
  const int32_t* sums32() const { return reinterpret_cast<const int32_t*>(p + l->sumOff); }
  const int16_t* sums16() const { return reinterpret_cast<const int16_t*>(p + l->sumOff); }
  const float* sumsF() const { return reinterpret_cast<const float*>(p + l->sumOff); }  // Q8_1: s per block
};


// [sum(v0), ..., sum(v7)]: exact int32 lane sums of 8 vectors.
inline __m256i hsum8Epi32(const __m256i* v) {
  const __m256i s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
  const __m256i s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
  const __m256i s45 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[4], v[5]), _mm256_unpackhi_epi32(v[4], v[5]));
  const __m256i s67 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[6], v[7]), _mm256_unpackhi_epi32(v[6], v[7]));
  // per 128-bit half: partial sums of rows [0, 1, 2, 3] resp. [4, 5, 6, 7]
  const __m256i s0123 = _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
  const __m256i s4567 = _mm256_add_epi32(_mm256_unpacklo_epi64(s45, s67), _mm256_unpackhi_epi64(s45, s67));
  // low halves + high halves: [r0..r3 | r4..r7]
  return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20), _mm256_permute2x128_si256(s0123, s4567, 0x31));
}


// ---- driver: activation rows in tiles of kTileRows (outer), weight rows (inner) ----
// The activation tile (4 rows) stays in L1 while the weight panel streams from L2: measured
// 157 GFLOP/s for Q4_0 at m = 128 against 73 with weight rows outer (4 activation rows per
// weight row then came from L2).
using TileFn = void (*)(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo);

template <TileFn T1, TileFn T2, TileFn T3, TileFn T4>
void runTiles(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& rows, int64_t nx, int64_t k, float* out,
              int64_t ldo) {
  static_assert(kTileRows == 4, "tile functions below are for 4 rows");
  for (int64_t i = 0; i < nx; i += 4) {
    Act a[4];
    const int cnt = static_cast<int>(nx - i < 4 ? nx - i : 4);
    for (int t = 0; t < cnt; t++) a[t] = {rows.base + static_cast<size_t>(i + t) * rows.stride, &rows.layout};
    const TileFn tile = cnt == 4 ? T4 : cnt == 3 ? T3 : cnt == 2 ? T2 : T1;
    for (int64_t r = 0; r < nw; r++) tile(w + static_cast<size_t>(r) * wStride, a, k, out + i * ldo + r, ldo);
  }
}

#define FLEXINFER_TILES(F) runTiles<F<1>, F<2>, F<3>, F<4>>

// Q4_0, Q4_K, Q5_K, Q6_K at m = 1 (VNNI builds): 8 weight rows at a time (G8, bitwise the
// one-row tile's steps), the rows left over one by one (T1); m > 1 and other builds: row tiles.
using Gemv8Fn = void (*)(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next);

template <Gemv8Fn G8, TileFn T1, TileFn T2, TileFn T3, TileFn T4>
void gemv8Kernel(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& rows, int64_t nx, int64_t k, float* out,
                 int64_t ldo) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  if (nx == 1) {
    const Act a[1] = {{rows.base, &rows.layout}};
    int64_t r = 0;
    for (; r + 8 <= nw; r += 8) {
      const uint8_t* g = w + static_cast<size_t>(r) * wStride;
      // prefetches past the panel (or the matrix) are harmless hints: they never fault
      G8(g, wStride, a[0], k, out + r, g + 8 * wStride);
    }
    for (; r < nw; r++) T1(w + static_cast<size_t>(r) * wStride, a, k, out + r, ldo);
    return;
  }
#endif
  runTiles<T1, T2, T3, T4>(w, wStride, nw, rows, nx, k, out, ldo);
}

#define FLEXINFER_GEMV8(G, F) gemv8Kernel<G, F<1>, F<2>, F<3>, F<4>>

}  // namespace x86
}  // namespace flexinfer

#endif
