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
#include <algorithm>
#include <cmath>
#include <cstring>

#include "matmul.h"
#include "matmul_ref.h"
#include "matmul_x86.h"
#include "matmul_x86_nib.h"
#include "matmul_x86_panels.h"
#include "simd.h"
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

#if defined(FLEXINFER_MATMUL_PANELS) && defined(__AVX512BW__)
#define FLEXINFER_IQ4XS_WIDE 1
// IQ4_XS batches (m >= 4): vec_dot's 8 lanes per super-block (header), for R = 16 weight rows at
// once (zmm; R = 8 in ymm for a call's last 8 rows), with the block scale folded into the weights.
//
// A lane adds 4 quants of each of the 8 blocks, each times its own block scale, so on int8 weights
// every 4-quant dot needs its own scale multiply (the generic panels' kLanesS32 steps: xor,
// vpdpbusd, vpmulld, vpaddd per dword and row group). Here the repack stores w = (ls - 32) * value
// as int16 (|w| <= 32 * 127 = 4064) and the activation quants are widened to int16 once per call,
// so a dword (4 quants) of R rows is 2 vpdpwssd against the activation's int16 pairs broadcast
// (embedded broadcast, no shuffles) and nothing else. The integers are exact (|lane| <= 32 *
// 4064 * 128 < 2^31), so the lanes and everything after them are vec_dot's, bit for bit.
//
// Panel of super-block b (R rows): P_j, j = 0..127, R int32: lane r = int16 pair j (elements 2j,
// 2j+1 in element order) of row r's scaled weights; then R f32 d. Lane l of the super-block is
// the pairs j = 2t, 2t+1 of the dwords t = 8c + l, c = 0..7.
// Speed, 1 thread, m = 128, the four matmul shapes of a tinyllama-1.1b layer (n x k = 2048 x 2048,
// 5632 x 2048, 2048 x 5632, 256 x 2048), sum of medians of 7 in a quiet machine: int8 panels with
// vpmulld (before) 62.5 ms, these 34.9 ms (4 activation rows per tile) / 33.7 ms (8), Q4_0's
// panels 28.6 ms. That is ~1 zmm vpdpwssd per cycle, this core's VNNI rate; what remains is
// the repack (~7% of the time, perf) and the per-call int16 widening (~10%).
namespace {

using namespace x86;

// The R-lane vector ops of the kernel: 16 rows in zmm, 8 rows in ymm.
template <int R>
struct V;
template <>
struct V<16> {
  using I = __m512i;
  using F = __m512;
  static I zero() { return _mm512_setzero_si512(); }
  static I load(const uint8_t* p) { return _mm512_load_si512(p); }
  static I dp(I acc, I w, const int32_t* pair) { return _mm512_dpwssd_epi32(acc, w, _mm512_set1_epi32(*pair)); }
  static F fzero() { return _mm512_setzero_ps(); }
  static F loadf(const uint8_t* p) { return _mm512_load_ps(p); }
  static F mul(F a, float b) { return _mm512_mul_ps(a, _mm512_set1_ps(b)); }
  static F fma(F a, I b, F c) { return _mm512_fmadd_ps(a, _mm512_maskz_cvtepi32_ps(0xFFFF, b), c); }  // maskz: gcc 12 warns on cvtepi32_ps
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static void store(float* out, F v, int rows) { _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1u << rows) - 1), v); }
};
template <>
struct V<8> {
  using I = __m256i;
  using F = __m256;
  static I zero() { return _mm256_setzero_si256(); }
  static I load(const uint8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static I dp(I acc, I w, const int32_t* pair) { return _mm256_dpwssd_epi32(acc, w, _mm256_set1_epi32(*pair)); }
  static F fzero() { return _mm256_setzero_ps(); }
  static F loadf(const uint8_t* p) { return _mm256_load_ps(reinterpret_cast<const float*>(p)); }
  static F mul(F a, float b) { return _mm256_mul_ps(a, _mm256_set1_ps(b)); }
  static F fma(F a, I b, F c) { return _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(b), c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static void store(float* out, F v, int rows) { _mm256_mask_storeu_ps(out, static_cast<__mmask8>((1u << rows) - 1), v); }
};

constexpr size_t xsBlockBytes(int R) { return 128 * 4 * static_cast<size_t>(R) + 64; }  // P_0..P_127, d (padded)

// Repacks super-blocks [0, nb) of rows [0, rows) (rows <= R) into `panel`; missing rows are zero.
template <int R>
void repackXS(const uint8_t* w, size_t wStride, int rows, int64_t nb, uint8_t* panel) {
  const __m256i tv = lut(kIQ4Values);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  alignas(64) int16_t tmp[R][QK_K];  // row r's scaled weights in element order
  for (int64_t b = 0; b < nb; b++) {
    uint8_t* dst = panel + b * xsBlockBytes(R);
    float* d = reinterpret_cast<float*>(dst + 128 * 4 * R);
    for (int r = 0; r < R; r++) {
      if (r >= rows) {
        std::memset(tmp[r], 0, sizeof(tmp[r]));
        d[r] = 0.0f;
        continue;
      }
      const BlockIQ4XS& blk = reinterpret_cast<const BlockIQ4XS*>(w + r * wStride)[b];
      for (int ib = 0; ib < 8; ib++) {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 16 * ib));
        const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), mask);
        const __m512i v = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(tv, nib));
        _mm512_store_si512(tmp[r] + 32 * ib, _mm512_mullo_epi16(v, _mm512_set1_epi16(static_cast<short>(iq4xsScale(blk, ib)))));
      }
      d[r] = h2f(blk.d);
    }
    // tmp as R rows of 128 dwords -> P_j lane r; 8 rows x 8 dwords per transpose.
    for (int h = 0; h < R; h += 8) {
      for (int j0 = 0; j0 < 128; j0 += 8) {
        __m256i v[8];
        for (int q = 0; q < 8; q++) v[q] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp[h + q] + 2 * j0));
        transpose8x8(v);
        for (int t = 0; t < 8; t++) _mm256_store_si256(reinterpret_cast<__m256i*>(dst + (j0 + t) * 4 * R + 4 * h), v[t]);
      }
    }
  }
}

// NX activation rows against one panel: xs[i] the int16 quants of row i, xd[i] its scales.
template <int R, int NX>
void tileXS(const uint8_t* panel, int64_t nb, const int16_t* const* xs, const float* const* xd, int rows, float* out,
            int64_t ldo) {
  using Vr = V<R>;
  constexpr int LG = 2;  // lanes per pass: 2 * NX independent vpdpwssd chains
  typename Vr::F acc[8][NX];
  for (int l = 0; l < 8; l++)
    for (int i = 0; i < NX; i++) acc[l][i] = Vr::fzero();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = panel + b * xsBlockBytes(R);
    const typename Vr::F d = Vr::loadf(blk + 128 * 4 * R);
    const int32_t* xp[NX];
    for (int i = 0; i < NX; i++) xp[i] = reinterpret_cast<const int32_t*>(xs[i] + b * QK_K);
    for (int l0 = 0; l0 < 8; l0 += LG) {
      typename Vr::I S[LG][NX];
      for (int u = 0; u < LG; u++)
        for (int i = 0; i < NX; i++) S[u][i] = Vr::zero();
#pragma GCC unroll 8
      for (int c = 0; c < 8; c++) {
        for (int u = 0; u < LG; u++) {
          const int j = 2 * (8 * c + l0 + u);
          const typename Vr::I wa = Vr::load(blk + j * 4 * R), wb = Vr::load(blk + (j + 1) * 4 * R);
          for (int i = 0; i < NX; i++) S[u][i] = Vr::dp(Vr::dp(S[u][i], wa, xp[i] + j), wb, xp[i] + j + 1);
        }
      }
      for (int u = 0; u < LG; u++)
        for (int i = 0; i < NX; i++) acc[l0 + u][i] = Vr::fma(Vr::mul(d, xd[i][b]), S[u][i], acc[l0 + u][i]);
    }
  }
  for (int i = 0; i < NX; i++) {
    // llama.cpp's hsum_float_8 order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
    const typename Vr::F h = Vr::add(Vr::add(Vr::add(acc[0][i], acc[4][i]), Vr::add(acc[2][i], acc[6][i])),
                                     Vr::add(Vr::add(acc[1][i], acc[5][i]), Vr::add(acc[3][i], acc[7][i])));
    Vr::store(out + i * ldo, h, rows);
  }
}

constexpr int kXSTile = 8;  // activation rows per tile (one pair of weight loads feeds 16 vpdpwssd)

template <int R>
void tilesXS(const uint8_t* panel, int64_t nb, const int16_t* const* xs, const float* const* xd, int cnt, int rows,
             float* out, int64_t ldo) {
  switch (cnt) {
    case 8: tileXS<R, 8>(panel, nb, xs, xd, rows, out, ldo); break;
    case 7: tileXS<R, 7>(panel, nb, xs, xd, rows, out, ldo); break;
    case 6: tileXS<R, 6>(panel, nb, xs, xd, rows, out, ldo); break;
    case 5: tileXS<R, 5>(panel, nb, xs, xd, rows, out, ldo); break;
    case 4: tileXS<R, 4>(panel, nb, xs, xd, rows, out, ldo); break;
    case 3: tileXS<R, 3>(panel, nb, xs, xd, rows, out, ldo); break;
    case 2: tileXS<R, 2>(panel, nb, xs, xd, rows, out, ldo); break;
    default: tileXS<R, 1>(panel, nb, xs, xd, rows, out, ldo); break;
  }
}

thread_local AlignedScratch tlsPanelXS, tlsActXS;

void runXS(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
           int64_t ldo) {
  const int64_t nb = k / QK_K;
  // 1. Every panel of this call's rows: 16 rows per panel, a last one of <= 8 rows in ymm.
  const int64_t n16 = nw / 16 + (nw % 16 > 8 ? 1 : 0);
  const int64_t nPanels = n16 + (nw - 16 * n16 > 0 ? 1 : 0);
  const size_t bytes16 = static_cast<size_t>(nb) * xsBlockBytes(16);
  uint8_t* panels = tlsPanelXS.get(static_cast<size_t>(nPanels) * bytes16);
  for (int64_t p = 0; p < nPanels; p++) {
    const int64_t r0 = 16 * p;
    const int rows = static_cast<int>(std::min<int64_t>(16, nw - r0));
    if (p < n16) {
      repackXS<16>(w + r0 * wStride, wStride, rows, nb, panels + p * bytes16);
    } else {
      repackXS<8>(w + r0 * wStride, wStride, rows, nb, panels + p * bytes16);
    }
  }
  // 2. Per tile of activation rows: the quants widened to int16 once, then every panel.
  int16_t* xs16 = reinterpret_cast<int16_t*>(tlsActXS.get(static_cast<size_t>(kXSTile) * k * sizeof(int16_t)));
  for (int64_t i0 = 0; i0 < nx; i0 += kXSTile) {
    const int cnt = static_cast<int>(std::min<int64_t>(kXSTile, nx - i0));
    const int16_t* xs[kXSTile];
    const float* xd[kXSTile];
    for (int t = 0; t < cnt; t++) {
      const uint8_t* row = a.base + static_cast<size_t>(i0 + t) * a.stride;
      const int8_t* q = reinterpret_cast<const int8_t*>(row + a.layout.qsOff);
      int16_t* dst = xs16 + static_cast<size_t>(t) * k;
      for (int64_t e = 0; e < k; e += 32)
        _mm512_store_si512(dst + e, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + e))));
      xs[t] = dst;
      xd[t] = reinterpret_cast<const float*>(row + a.layout.dOff);
    }
    for (int64_t p = 0; p < nPanels; p++) {
      const int64_t r0 = 16 * p;
      const int rows = static_cast<int>(std::min<int64_t>(16, nw - r0));
      float* o = out + i0 * ldo + r0;
      if (p < n16) {
        tilesXS<16>(panels + p * bytes16, nb, xs, xd, cnt, rows, o, ldo);
      } else {
        tilesXS<8>(panels + p * bytes16, nb, xs, xd, cnt, rows, o, ldo);
      }
    }
  }
}

MatmulKernel batchIQ4XS(int64_t m) { return m >= 4 ? runXS : nullptr; }

}  // namespace
#elif defined(FLEXINFER_MATMUL_PANELS)
namespace {
MatmulKernel batchIQ4XS(int64_t) { return nullptr; }  // gemv8 / row tiles
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
