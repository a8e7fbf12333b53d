// Q2_K and Q3_K: the 2- and 3-bit K-quants (256-element super-blocks of 16 sub-blocks of 16).
// The scalar reference dots and the x86 SIMD kernels of both (row dequantizers: ops_dequant.cc).
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
#include "matmul_x86_panels.h"
#include "quants.h"
#include "type_traits.h"

namespace flexinfer {

namespace {

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

// ---- x86 SIMD: the same steps ----

#ifdef FLEXINFER_MATMUL_AVX2

using namespace x86;

// pshufb patterns picking, from 8 int16 scales in both 128-bit halves, scale 2g for the low half
// and 2g + 1 for the high half (the two 16-quant sub-blocks of 32 quants), g = 0..3.
inline __m256i scalePick(int g) {
  const int lo = 4 * g, hi = 4 * g + 2;
  const __m128i l = _mm_set1_epi16(static_cast<short>(lo | ((lo + 1) << 8)));
  const __m128i h = _mm_set1_epi16(static_cast<short>(hi | ((hi + 1) << 8)));
  return _mm256_set_m128i(h, l);
}

// The 16 scales of a block as int16, split in two registers of 8 (each in both halves):
// sc[0] = scales 0..7 (the first 128 quants), sc[1] = 8..15.
inline void scales16(const int8_t* s, bool isUnsigned, __m256i* sc) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
  const __m128i lo = isUnsigned ? _mm_cvtepu8_epi16(v) : _mm_cvtepi8_epi16(v);
  const __m128i hi = isUnsigned ? _mm_cvtepu8_epi16(_mm_srli_si128(v, 8)) : _mm_cvtepi8_epi16(_mm_srli_si128(v, 8));
  sc[0] = _mm256_broadcastsi128_si256(lo);
  sc[1] = _mm256_broadcastsi128_si256(hi);
}

// Q2_K: one block's exact int32 dot as 8 lanes (their sum is sumi; the grouping is free, the
// result an integer) and its mins term as 8 lanes, against activation quants x, bsums bs.
inline void q2Dot(const BlockQ2K& blk, const int8_t* x, const int16_t* bs, __m256i* sumi, __m256i* mins) {
  const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  alignas(16) int8_t sc[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(sc), _mm_and_si128(sm, m4));
  __m256i scv[2];
  scales16(sc, true, scv);
  *mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4)), loadu(bs));
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
  for (int h = 0; h < 2; h++) {
    const __m256i raw = loadu(blk.qs + 32 * h);
    for (int g = 0; g < 4; g += 2) {
      const __m256i q0 = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g), m3);
      const __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g + 2), m3);
      sa = dpwssd(sa, _mm256_maddubs_epi16(q0, loadu(x + 128 * h + 32 * g)), _mm256_shuffle_epi8(scv[h], scalePick(g)));
      sb = dpwssd(sb, _mm256_maddubs_epi16(q1, loadu(x + 128 * h + 32 * g + 32)), _mm256_shuffle_epi8(scv[h], scalePick(g + 1)));
    }
  }
  *sumi = _mm256_add_epi32(sa, sb);
}

template <int NX>
void tileQ2_K(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  const BlockQ2K* wb = reinterpret_cast<const BlockQ2K*>(w);
  float acc[NX], accMin[NX];
  for (int i = 0; i < NX; i++) acc[i] = accMin[i] = 0.0f;
  for (int64_t b = 0; b < k / QK_K; b++) {
    const float dw = h2f(wb[b].d), dminw = h2f(wb[b].dmin);
    for (int i = 0; i < NX; i++) {
      __m256i sumi, mins;
      q2Dot(wb[b], a[i].qs() + b * QK_K, a[i].sums16() + b * 16, &sumi, &mins);
      const float dx = a[i].d()[b];
      acc[i] = std::fma(static_cast<float>(hsumEpi32(sumi)), dw * dx, acc[i]);
      accMin[i] = std::fma(static_cast<float>(hsumEpi32(mins)), dminw * dx, accMin[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = acc[i] - accMin[i];
}

// m = 1, 8 weight rows at a time: the 8 rows' sumi and mins reduced by one transpose-add each,
// the f32 steps done for the 8 rows in the 8 lanes of one vector (bitwise tileQ2_K<1>'s).
void gemv8Q2_K(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  constexpr int kPfLines = (8 * sizeof(BlockQ2K) + 63) / 64;
  __m256 acc = _mm256_setzero_ps(), accMin = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / QK_K; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(BlockQ2K);
    const char* pf = reinterpret_cast<const char*>(next) + b * (8 * sizeof(BlockQ2K));
    for (int l = 0; l < kPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    __m256i s[8], m[8];
    alignas(16) uint16_t dh[8], mh[8];  // f16 d, dmin of row r
    for (int r = 0; r < 8; r++) {
      const BlockQ2K& q = *reinterpret_cast<const BlockQ2K*>(blk + r * wStride);
      q2Dot(q, a.qs() + b * QK_K, a.sums16() + b * 16, &s[r], &m[r]);
      dh[r] = q.d;
      mh[r] = q.dmin;
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dh)));
    const __m256 dminw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(mh)));
    const __m256 dx = _mm256_set1_ps(a.d()[b]);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8Epi32(s)), _mm256_mul_ps(dw, dx), acc);
    accMin = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8Epi32(m)), _mm256_mul_ps(dminw, dx), accMin);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, accMin));
}

// Q3_K: the 8 exact lanes of one block against activation quants x: per group c of 32 quants
// (= 128h + 32g), q3 = 2 low bits + 4 * (bit c of hmask), dot(q3, x) - 4 * sum(x) per int16 pair
// (x4: maddubs(4, x) of the 8 groups, the same for every weight row), times the pair's scale.
inline __m256i q3Lanes(const BlockQ3K& blk, const int8_t* x, const __m256i* x4) {
  alignas(16) int8_t sc[16];
  q3Scales(blk.scales, sc);
  __m256i scv[2];
  scales16(sc, false, scv);
  const __m256i hm = loadu(blk.hmask);
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
  for (int h = 0; h < 2; h++) {
    const __m256i raw = loadu(blk.qs + 32 * h);
    for (int g = 0; g < 4; g++) {
      const int c = 4 * h + g;
      __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g), m3);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
      q = _mm256_mask_add_epi8(q, _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(1 << c))), q,
                               _mm256_set1_epi8(4));
#else
      q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, c), _mm256_set1_epi8(1)), 2));
#endif
      const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, loadu(x + 32 * c)), x4[c]);
      __m256i& acc = (g & 1) ? sb : sa;
      acc = dpwssd(acc, p, _mm256_shuffle_epi8(scv[h], scalePick(g)));
    }
  }
  return _mm256_add_epi32(sa, sb);
}

// maddubs(4, x) for the 8 groups of an activation block.
inline void q3X4(const int8_t* x, __m256i* x4) {
  for (int c = 0; c < 8; c++) x4[c] = _mm256_maddubs_epi16(_mm256_set1_epi8(4), loadu(x + 32 * c));
}

template <int NX>
void tileQ3_K(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  const BlockQ3K* wb = reinterpret_cast<const BlockQ3K*>(w);
  __m256 acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / QK_K; b++) {
    const float dw = h2f(wb[b].d);
    for (int i = 0; i < NX; i++) {
      const int8_t* x = a[i].qs() + b * QK_K;
      __m256i x4[8];
      q3X4(x, x4);
      const __m256i lanes = q3Lanes(wb[b], x, x4);
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(a[i].d()[b] * dw), _mm256_cvtepi32_ps(lanes), acc[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = hsum(acc[i]);
}

// m = 1, 8 weight rows at a time, each its own 8 f32 lanes (bitwise tileQ3_K<1>): the rows share
// the activation loads and maddubs(4, x).
void gemv8Q3_K(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  constexpr int kPfLines = (8 * sizeof(BlockQ3K) + 63) / 64;
  __m256 acc[8];
  for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / QK_K; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(BlockQ3K);
    const char* pf = reinterpret_cast<const char*>(next) + b * (8 * sizeof(BlockQ3K));
    for (int l = 0; l < kPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    const int8_t* x = a.qs() + b * QK_K;
    __m256i x4[8];
    q3X4(x, x4);
    const float dx = a.d()[b];
    for (int r = 0; r < 8; r++) {
      const BlockQ3K& q = *reinterpret_cast<const BlockQ3K*>(blk + r * wStride);
      const __m256i lanes = q3Lanes(q, x, x4);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(q.d)), _mm256_cvtepi32_ps(lanes), acc[r]);
    }
  }
  for (int r = 0; r < 8; r++) out[r] = hsum(acc[r]);
}

#endif  // FLEXINFER_MATMUL_AVX2

}  // namespace

#ifdef FLEXINFER_MATMUL_PANELS
// Batches: the generic repacked panels (matmul_x86_panels.h) with these two types' unpacking.
namespace x86 {

// q[c] = quants 32c..32c+31 (c = 4h + g: bits 2g.. of qs[32h ..]), 0..3.
inline void q2Groups(const uint8_t* qs, __m256i q[8]) {
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; h++) {
    const __m256i raw = loadu(qs + 32 * h);
    for (int g = 0; g < 4; g++) q[4 * h + g] = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * g), m3);
  }
}

template <>
struct Panel<GgmlType::Q2_K> {
  static constexpr int kSubBlocks = 16;
  static constexpr PanelDot kDot = PanelDot::kOneLane;  // llama.cpp's q2_Kx8 GEMV steps
  static constexpr bool kMinsChain = false;
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    const BlockQ2K& blk = reinterpret_cast<const BlockQ2K*>(row)[b];
    q2Groups(blk.qs, q);
    for (int j = 0; j < 16; j++) {
      sc[j] = blk.scales[j] & 0xF;
      mn[j] = blk.scales[j] >> 4;
    }
    *d = h2f(blk.d);
    *dmin = h2f(blk.dmin);
  }
};

template <>
struct Panel<GgmlType::Q3_K> {
  static constexpr int kSubBlocks = 16;
  static constexpr PanelDot kDot = PanelDot::kLanesS;  // quants q - 4, signed
  static constexpr bool kMinsChain = false;
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    const BlockQ3K& blk = reinterpret_cast<const BlockQ3K*>(row)[b];
    q2Groups(blk.qs, q);
    const __m256i hm = loadu(blk.hmask);
    for (int c = 0; c < 8; c++) {
      // + 4 where bit c of the hmask byte is set, then - 4: q - 4 in -4..3
      const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, c), _mm256_set1_epi8(1));
      q[c] = _mm256_sub_epi8(_mm256_or_si256(q[c], _mm256_slli_epi16(hb, 2)), _mm256_set1_epi8(4));
    }
    int8_t s[16];
    q3Scales(blk.scales, s);
    for (int j = 0; j < 16; j++) {
      sc[j] = s[j];
      mn[j] = 0;
    }
    *d = h2f(blk.d);
    *dmin = 0.0f;
  }
};

}  // namespace x86

namespace {
// Break-even (1 thread, tinyllama shapes): see matmul.cc's table.
MatmulKernel batchQ2_K(int64_t m) { return m >= 4 ? x86::runPanels<GgmlType::Q2_K> : nullptr; }
MatmulKernel batchQ3_K(int64_t m) { return m >= 4 ? x86::runPanels<GgmlType::Q3_K> : nullptr; }
}  // namespace
#endif

TypeKernels k23Kernels(GgmlType type) {
  switch (type) {
#if defined(FLEXINFER_MATMUL_PANELS)
    case GgmlType::Q2_K: return {ref::scalarTile<dotQ2K>, FLEXINFER_GEMV8(gemv8Q2_K, tileQ2_K), batchQ2_K};
    case GgmlType::Q3_K: return {ref::scalarTile<dotQ3K>, FLEXINFER_GEMV8(gemv8Q3_K, tileQ3_K), batchQ3_K};
#elif defined(FLEXINFER_MATMUL_AVX2)
    case GgmlType::Q2_K: return {ref::scalarTile<dotQ2K>, FLEXINFER_TILES(tileQ2_K), nullptr};
    case GgmlType::Q3_K: return {ref::scalarTile<dotQ3K>, FLEXINFER_TILES(tileQ3_K), nullptr};
#else
    case GgmlType::Q2_K: return {ref::scalarTile<dotQ2K>, nullptr, nullptr};
    case GgmlType::Q3_K: return {ref::scalarTile<dotQ3K>, nullptr, nullptr};
#endif
    default: return {};
  }
}

}  // namespace flexinfer
