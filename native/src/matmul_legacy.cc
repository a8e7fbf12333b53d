// Q4_1, Q5_0, Q5_1: the 32-element legacy blocks beside Q4_0 / Q8_0 (those: matmul_x86*.cc).
// The scalar reference dots and the x86 SIMD kernels of the three types (their row
// dequantizers: ops_dequant.cc).
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
#include "matmul_x86_tiles8.h"
#include "quants.h"
#include "type_traits.h"

namespace flexinfer {

namespace {

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

// ---- scalar reference: the steps above, lane by lane ----

template <GgmlType T>
float dot(const uint8_t* w, const ref::ActRow& a, int64_t k) {
  using B = typename Legacy<T>::Block;
  const B* wb = reinterpret_cast<const B*>(w);
  const float* s = static_cast<const float*>(a.sums);  // Q8_1: s per block
  float acc[8] = {}, summs = 0.0f;
  for (int64_t b = 0; b < k / 32; b++) {
    int q[32];
    legacyQuants32(wb[b].qs, Legacy<T>::qh(wb[b]), q);
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

// ---- x86 SIMD: the same steps ----

#ifdef FLEXINFER_MATMUL_AVX2

using namespace x86;

// The 32 quants of a block as unsigned bytes in element order: nibbles, + 16 where the fifth
// bit is set (Q5_*).
template <GgmlType T>
inline __m256i uquants(const typename Legacy<T>::Block& b) {
  // the 16 bytes in both halves (one broadcast load), the high half shifted down by 4 (as Q4_0's
  // gemv8Nib: one op fewer than a shift and an insert)
  const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)));
  __m256i u = _mm256_and_si256(_mm256_srlv_epi32(raw, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
  if constexpr (T != GgmlType::Q4_1) {
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    u = _mm256_mask_add_epi8(u, static_cast<__mmask32>(qh), u, _mm256_set1_epi8(16));
#else
    // bit p of qh -> byte p (0xFF / 0), as ggml's bytes_from_bits_32
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), shuf);
    bits = _mm256_cmpeq_epi8(_mm256_or_si256(bits, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    u = _mm256_or_si256(u, _mm256_and_si256(bits, _mm256_set1_epi8(16)));
#endif
  }
  return u;
}

// The 8 exact lanes of one block: dot(u, x) per 4 quants, minus 16 * (sum of the 4 x) for Q5_0
// (`c16`, the same for every weight row: computed once per activation block).
inline __m256i c16Of(__m256i x) { return dpbusd(_mm256_setzero_si256(), _mm256_set1_epi8(16), x); }

template <GgmlType T>
inline __m256i lanes(__m256i u, __m256i x, __m256i c16) {
  const __m256i d = dpbusd(_mm256_setzero_si256(), u, x);
  return T == GgmlType::Q5_0 ? _mm256_sub_epi32(d, c16) : d;
}

// One weight row against NX activation rows (m > 1 without VNNI; the rows an 8-row kernel leaves).
template <GgmlType T, int NX>
void tileLegacy(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  using B = typename Legacy<T>::Block;
  const B* wb = reinterpret_cast<const B*>(w);
  __m256 acc[NX];
  float summs[NX];
  for (int i = 0; i < NX; i++) {
    acc[i] = _mm256_setzero_ps();
    summs[i] = 0.0f;
  }
  for (int64_t b = 0; b < k / 32; b++) {
    const __m256i u = uquants<T>(wb[b]);
    const float dw = h2f(wb[b].d);
    for (int i = 0; i < NX; i++) {
      const __m256i x = loadu(a[i].qs() + 32 * b);
      const __m256i c16 = T == GgmlType::Q5_0 ? c16Of(x) : _mm256_setzero_si256();
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d()[b]), _mm256_cvtepi32_ps(lanes<T>(u, x, c16)), acc[i]);
      if constexpr (T != GgmlType::Q5_0) summs[i] = std::fma(h2f(wb[b].m), a[i].sumsF()[b], summs[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = T == GgmlType::Q5_0 ? hsum(acc[i]) : hsum(acc[i]) + summs[i];
}

// m = 1: eight weight rows at a time, each with its own 8 f32 lanes and the steps above; the rows
// share the activation loads (and Q5_0's c16), their f16 scales (and mins) are widened together,
// and the next 8 rows are prefetched into L2 (as gemv8Q4_0 in matmul_x86.cc).
template <GgmlType T>
void gemv8Legacy(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  using B = typename Legacy<T>::Block;
  constexpr int kPfLines = (8 * sizeof(B) + 63) / 64;
  __m256 acc[8];
  for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
  __m256 summs = _mm256_setzero_ps();  // lane r: row r's min chain (Q4_1 / Q5_1)
  for (int64_t b = 0; b < k / 32; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(B);
    const char* pf = reinterpret_cast<const char*>(next) + b * (8 * sizeof(B));
    for (int l = 0; l < kPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    // words 0 (d) and 1 (m) of the 8 rows' blocks -> [d0..d7], [m0..m7]
    __m128i head[8];
    for (int r = 0; r < 8; r++) head[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + r * wStride));
    const __m128i h01 = _mm_unpacklo_epi16(head[0], head[1]), h23 = _mm_unpacklo_epi16(head[2], head[3]);
    const __m128i h45 = _mm_unpacklo_epi16(head[4], head[5]), h67 = _mm_unpacklo_epi16(head[6], head[7]);
    const __m128i h0123 = _mm_unpacklo_epi32(h01, h23), h4567 = _mm_unpacklo_epi32(h45, h67);
    alignas(32) float dd[8];
    _mm256_store_ps(dd, _mm256_mul_ps(_mm256_cvtph_ps(_mm_unpacklo_epi64(h0123, h4567)), _mm256_set1_ps(a.d()[b])));
    if constexpr (T != GgmlType::Q5_0) {
      const __m256 mw = _mm256_cvtph_ps(_mm_unpackhi_epi64(h0123, h4567));
      summs = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.sumsF()[b]), summs);
    }
    const __m256i x = loadu(a.qs() + 32 * b);
    // Q5_0: the lanes start from -16 * (sum of the 4 x) instead of subtracting it per row (the
    // same exact int32 lanes; one op per block instead of one per row and block)
    const __m256i start = T == GgmlType::Q5_0 ? _mm256_sub_epi32(_mm256_setzero_si256(), c16Of(x)) : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
      const __m256i u = uquants<T>(*reinterpret_cast<const B*>(blk + r * wStride));
      acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[r]), _mm256_cvtepi32_ps(dpbusd(start, u, x)), acc[r]);
    }
  }
  alignas(32) float sm[8];
  _mm256_store_ps(sm, summs);
  for (int r = 0; r < 8; r++) out[r] = T == GgmlType::Q5_0 ? hsum(acc[r]) : hsum(acc[r]) + sm[r];
}

template <int NX>
void tileQ4_1(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileLegacy<GgmlType::Q4_1, NX>(w, a, k, out, ldo);
}
template <int NX>
void tileQ5_0(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileLegacy<GgmlType::Q5_0, NX>(w, a, k, out, ldo);
}
template <int NX>
void tileQ5_1(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileLegacy<GgmlType::Q5_1, NX>(w, a, k, out, ldo);
}

#ifdef FLEXINFER_MATMUL_TILES8
// The register tiles of matmul_x86_tiles8.h take the quants as signed bytes: Q5_0's q - 16.
template <GgmlType T>
struct Tile8W {
  using Block = typename Legacy<T>::Block;
  static constexpr bool kMin = T != GgmlType::Q5_0;
  static __m256i quants(const Block& b) {
    const __m256i u = uquants<T>(b);
    return T == GgmlType::Q5_0 ? _mm256_sub_epi8(u, _mm256_set1_epi8(16)) : u;
  }
};
template <GgmlType T>
MatmulKernel batchLegacy(int64_t m) {
  return m >= 2 ? decodedTilesKernel<Tile8W<T>> : nullptr;
}
#endif

#endif  // FLEXINFER_MATMUL_AVX2

template <GgmlType T, MatmulKernel Simd, BatchKernelFn Batch>
TypeKernels kernels() {
  return {ref::scalarTile<dot<T>>, Simd, Batch};
}

}  // namespace

TypeKernels legacyKernels(GgmlType type) {
  using G = GgmlType;
#if defined(FLEXINFER_MATMUL_AVX2) && defined(FLEXINFER_MATMUL_TILES8)
  switch (type) {  // VNNI: 8 rows at a time for m = 1, register tiles from m = 2
    case G::Q4_1: return kernels<G::Q4_1, FLEXINFER_GEMV8(gemv8Legacy<G::Q4_1>, tileQ4_1), batchLegacy<G::Q4_1>>();
    case G::Q5_0: return kernels<G::Q5_0, FLEXINFER_GEMV8(gemv8Legacy<G::Q5_0>, tileQ5_0), batchLegacy<G::Q5_0>>();
    case G::Q5_1: return kernels<G::Q5_1, FLEXINFER_GEMV8(gemv8Legacy<G::Q5_1>, tileQ5_1), batchLegacy<G::Q5_1>>();
    default: return {};
  }
#elif defined(FLEXINFER_MATMUL_AVX2)
  switch (type) {  // AVX2: row tiles
    case G::Q4_1: return kernels<G::Q4_1, FLEXINFER_TILES(tileQ4_1), nullptr>();
    case G::Q5_0: return kernels<G::Q5_0, FLEXINFER_TILES(tileQ5_0), nullptr>();
    case G::Q5_1: return kernels<G::Q5_1, FLEXINFER_TILES(tileQ5_1), nullptr>();
    default: return {};
  }
#else
  switch (type) {
    case G::Q4_1: return kernels<G::Q4_1, nullptr, nullptr>();
    case G::Q5_0: return kernels<G::Q5_0, nullptr, nullptr>();
    case G::Q5_1: return kernels<G::Q5_1, nullptr, nullptr>();
    default: return {};
  }
#endif
}

}  // namespace flexinfer
