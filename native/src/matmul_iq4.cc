// IQ4_NL and IQ4_XS: 4-bit indices into the non-linear table kIQ4Values. The scalar reference
// dots and the x86 SIMD kernels of both (row dequantizers: ops_dequant.cc).
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
#include "matmul_x86_nib.h"
#include "matmul_x86_panels.h"
#include "quants.h"
#include "type_traits.h"

namespace flexinfer {

namespace {

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

// ---- x86 SIMD: the same steps ----

#ifdef FLEXINFER_MATMUL_AVX2

using namespace x86;

inline __m256i lut(const void* table) {
  return _mm256_broadcastsi128_si256(_mm_load_si128(static_cast<const __m128i*>(table)));
}

alignas(16) constexpr uint8_t kValues128[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};
alignas(16) constexpr uint8_t kAbsValues[16] = {127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113};

// IQ4_NL as a nibble type for matmul_x86_nib.h (the Q4_0 kernels with a table).
struct NibIQ4NL {
  using Block = BlockIQ4NL;
  static __m256i lanes(__m256i nib, __m256i x, __m256i corr) {
#ifdef FLEXINFER_VNNI
    // value + 128 unsigned; corr = -16 * sum(x) per lane (packQ8_0 with actCorr -16)
    return _mm256_dpbusd_epi32(corr, _mm256_shuffle_epi8(lut(kValues128), nib), x);
#else
    (void)corr;  // vpmaddubsw would saturate on value + 128: ggml's sign trick
    const __m256i t = _mm256_shuffle_epi8(lut(kIQ4Values), nib);
    const __m256i p = _mm256_maddubs_epi16(_mm256_shuffle_epi8(lut(kAbsValues), nib), _mm256_sign_epi8(x, t));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
  }
};

template <int NX>
void tileIQ4NL(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileNib<NibIQ4NL, NX>(w, a, k, out, ldo);
}

MatmulKernel batchIQ4NL(int64_t m) { return repackedKernel(GgmlType::IQ4_NL, m); }

// IQ4_XS: one super-block's 8 exact lanes against activation quants x, lane l = sum over the 8
// blocks ib of (ls_ib - 32) * dot(values 4l..4l+3): |value| and sign moved onto x (values are
// signed, |value| <= 127, so vpmaddubsw's pairs stay below 2 * 127 * 127), then the int16 pairs
// times the block scale by vpdpwssd. `xv`: the 8 activation vectors of the super-block.
inline __m256i iq4xsLanes(const BlockIQ4XS& blk, const __m256i* xv) {
  const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i tv = lut(kIQ4Values), av = lut(kAbsValues);
  __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
  for (int ib = 0; ib < 8; ib++) {
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 16 * ib)));
    const __m256i nib = _mm256_and_si256(_mm256_srlv_epi32(raw, shift), mask);
    const __m256i p = _mm256_maddubs_epi16(_mm256_shuffle_epi8(av, nib), _mm256_sign_epi8(xv[ib], _mm256_shuffle_epi8(tv, nib)));
    __m256i& acc = (ib & 1) ? sb : sa;
    acc = dpwssd(acc, p, _mm256_set1_epi16(static_cast<short>(iq4xsScale(blk, ib))));
  }
  return _mm256_add_epi32(sa, sb);
}

template <int NX>
void tileIQ4XS(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  const BlockIQ4XS* wb = reinterpret_cast<const BlockIQ4XS*>(w);
  __m256 acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / QK_K; b++) {
    const float dw = h2f(wb[b].d);
    for (int i = 0; i < NX; i++) {
      __m256i xv[8];
      for (int ib = 0; ib < 8; ib++) xv[ib] = loadu(a[i].qs() + b * QK_K + 32 * ib);
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d()[b]), _mm256_cvtepi32_ps(iq4xsLanes(wb[b], xv)), acc[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = hsum(acc[i]);
}

// m = 1, 8 weight rows at a time, each its own 8 f32 lanes (bitwise tileIQ4XS<1>): the rows share
// the activation loads; the next 8 rows are prefetched into L2.
void gemv8IQ4XS(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  constexpr int kPfLines = (8 * sizeof(BlockIQ4XS) + 63) / 64;
  __m256 acc[8];
  for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / QK_K; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(BlockIQ4XS);
    const char* pf = reinterpret_cast<const char*>(next) + b * (8 * sizeof(BlockIQ4XS));
    for (int l = 0; l < kPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    __m256i xv[8];
    for (int ib = 0; ib < 8; ib++) xv[ib] = loadu(a.qs() + b * QK_K + 32 * ib);
    const float dx = a.d()[b];
    for (int r = 0; r < 8; r++) {
      const BlockIQ4XS& q = *reinterpret_cast<const BlockIQ4XS*>(blk + r * wStride);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(q.d) * dx), _mm256_cvtepi32_ps(iq4xsLanes(q, xv)), acc[r]);
    }
  }
  for (int r = 0; r < 8; r++) out[r] = hsum(acc[r]);
}

#endif  // FLEXINFER_MATMUL_AVX2

}  // namespace

#ifdef FLEXINFER_MATMUL_PANELS
// IQ4_XS batches: the generic repacked panels (matmul_x86_panels.h) with its table values.
namespace x86 {
template <>
struct Panel<GgmlType::IQ4_XS> {
  static constexpr int kSubBlocks = 8;
  static constexpr PanelDot kDot = PanelDot::kLanesS32;  // values signed, up to 127
  static constexpr bool kMinsChain = false;
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    const BlockIQ4XS& blk = reinterpret_cast<const BlockIQ4XS*>(row)[b];
    const __m256i tv = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4Values)));
    for (int ib = 0; ib < 8; ib++) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 16 * ib));
      const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
      q[ib] = _mm256_shuffle_epi8(tv, nib);
      sc[ib] = iq4xsScale(blk, ib);
      mn[ib] = 0;
    }
    *d = h2f(blk.d);
    *dmin = 0.0f;
  }
};
}  // namespace x86

namespace {
MatmulKernel batchIQ4XS(int64_t m) { return m >= 4 ? x86::runPanels<GgmlType::IQ4_XS> : nullptr; }
}  // namespace
#endif

TypeKernels iq4Kernels(GgmlType type) {
  switch (type) {
#if defined(FLEXINFER_MATMUL_PANELS)
    case GgmlType::IQ4_NL:
      return {ref::scalarTile<dotIQ4NL>, FLEXINFER_GEMV8(gemv8Nib<NibIQ4NL>, tileIQ4NL), batchIQ4NL};
    case GgmlType::IQ4_XS:
      return {ref::scalarTile<dotIQ4XS>, FLEXINFER_GEMV8(gemv8IQ4XS, tileIQ4XS), batchIQ4XS};
#elif defined(FLEXINFER_MATMUL_AVX2)
    case GgmlType::IQ4_NL: return {ref::scalarTile<dotIQ4NL>, FLEXINFER_TILES(tileIQ4NL), nullptr};
    case GgmlType::IQ4_XS: return {ref::scalarTile<dotIQ4XS>, FLEXINFER_TILES(tileIQ4XS), nullptr};
#else
    case GgmlType::IQ4_NL: return {ref::scalarTile<dotIQ4NL>, nullptr, nullptr};
    case GgmlType::IQ4_XS: return {ref::scalarTile<dotIQ4XS>, nullptr, nullptr};
#endif
    default: return {};
  }
}

}  // namespace flexinfer
