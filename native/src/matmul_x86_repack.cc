// Prompt-processing path (many activation rows) for Q4_0 and IQ4_NL weights with AVX512-VNNI
// (the Q8_0 variant below is kept but not dispatched: see repackedKernel):
// weight rows are repacked, 8 at a time, so that each int32 lane of a vector belongs to one
// weight row.
//
//   panel block b (288 bytes):  W_t (t = 0..7), 32 bytes each: lane r = bytes 4t..4t+3 of
//                               row r's 32 unsigned quants (Q4_0: q, Q8_0: q + 128, IQ4_NL:
//                               its table value + 128)
//                               then 8 f32: the 8 rows' block scales.
//
// A block's dot for 8 rows and one activation row is then 8 vpdpbusd against the activation's
// bytes 4t..4t+3 broadcast to all lanes; the 8 results land in 8 lanes, so the scale multiply
// and accumulation are one vector op for 8 rows and no horizontal sums remain (the idea of
// ggml's repacked q4_0x8 GEMM). Repacking costs one pass over the panel and is shared by all
// activation rows. Numerics are those of the other paths: exact int32 block dots (the offset
// taken back with the activation block sum), then f32 d_w * d_x * dot accumulated.
#include "matmul.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define FLEXINFER_MATMUL_REPACK 1
#include <immintrin.h>
#endif

#include <cstring>

#include "quants.h"
#include "simd.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_REPACK

namespace {

constexpr int kPanelRows = 8;
constexpr size_t kPanelBlockBytes = 8 * 32 + 8 * 4;

thread_local AlignedScratch tlsPanel;

enum class Kind { Q4_0, Q8_0, IQ4_NL };

// kIQ4Values + 128 (unsigned), for vpshufb.
alignas(16) constexpr uint8_t kIQ4Values128[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};

// Repacks rows [0, rows) (rows <= 8) of a Q4_0 / Q8_0 / IQ4_NL matrix into `panel`; missing rows
// are zero (scale 0, so their lanes compute 0 and are not stored).
template <Kind K>
void repack(const uint8_t* w, size_t wStride, int rows, int64_t nb, uint8_t* panel) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; b++) {
    uint8_t* dst = panel + b * kPanelBlockBytes;
    float* dw = reinterpret_cast<float*>(dst + 256);
    __m256i u[kPanelRows];
    for (int r = 0; r < kPanelRows; r++) {
      __m256i v = _mm256_setzero_si256();
      float d = 0.0f;
      if (r < rows) {
        if constexpr (K == Kind::Q8_0) {
          const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(w + r * wStride)[b];
          v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs)),
                               _mm256_set1_epi8(static_cast<char>(0x80)));
          d = _cvtsh_ss(blk.d);
        } else {  // Q4_0 and IQ4_NL share the block layout
          const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(w + r * wStride)[b];
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
          v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), mask);
          if constexpr (K == Kind::IQ4_NL) {
            const __m256i lut = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4Values128)));
            v = _mm256_shuffle_epi8(lut, v);
          }
          d = _cvtsh_ss(blk.d);
        }
      }
      u[r] = v;
      dw[r] = d;
    }
    // 8 x 8 transpose of 32-bit groups: W_t lane r = bytes 4t .. 4t+3 of row r.
    transpose8x8(u);
    for (int t = 0; t < 8; t++) _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 32 * t), u[t]);
  }
}

// out[i * ldo + r] for r < rows, i < NX: the panel (8 weight rows) against NX activation rows.
template <int NX>
void panelTile(const uint8_t* panel, int64_t nb, const uint8_t* const* xq, const float* const* xd,
               const int32_t* const* xcorr, int rows, float* out, int64_t ldo) {
  // f32 steps of llama.cpp's repacked q4_0x8 kernels (matmul.h): one accumulator per output.
  __m256 acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = panel + b * kPanelBlockBytes;
    __m256 (&ac)[NX] = acc;
    __m256i dot[NX];
    // The lane correction of packQ8_0 is per 8 lanes; here one lane holds the whole block dot.
    for (int i = 0; i < NX; i++) dot[i] = _mm256_set1_epi32(xcorr[i][b] * 8);
    for (int t = 0; t < 8; t++) {
      const __m256i wt = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 32 * t));
      for (int i = 0; i < NX; i++) {
        int32_t x4;
        std::memcpy(&x4, xq[i] + b * QK8_0 + 4 * t, 4);
        dot[i] = _mm256_dpbusd_epi32(dot[i], wt, _mm256_set1_epi32(x4));
      }
    }
    const __m256 dw = _mm256_load_ps(reinterpret_cast<const float*>(blk + 256));
    for (int i = 0; i < NX; i++) {
      ac[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[i][b])), ac[i]);
    }
  }
  for (int i = 0; i < NX; i++) {
    const __m256 res = acc[i];
    if (rows == kPanelRows) {
      _mm256_storeu_ps(out + i * ldo, res);
    } else {
      alignas(32) float tmp[kPanelRows];
      _mm256_store_ps(tmp, res);
      for (int r = 0; r < rows; r++) out[i * ldo + r] = tmp[r];
    }
  }
}

template <Kind K>
void runRepacked(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
                 int64_t ldo) {
  const int64_t nb = k / QK8_0;
  uint8_t* panel = tlsPanel.get(static_cast<size_t>(nb) * kPanelBlockBytes);
  for (int64_t r0 = 0; r0 < nw; r0 += kPanelRows) {
    const int rows = static_cast<int>(nw - r0 < kPanelRows ? nw - r0 : kPanelRows);
    repack<K>(w + static_cast<size_t>(r0) * wStride, wStride, rows, nb, panel);
    for (int64_t i = 0; i < nx; i += 4) {
      const int cnt = static_cast<int>(nx - i < 4 ? nx - i : 4);
      const uint8_t* xq[4];
      const float* xd[4];
      const int32_t* xc[4];
      for (int t = 0; t < cnt; t++) {
        const uint8_t* p = a.base + static_cast<size_t>(i + t) * a.stride;
        xq[t] = p + a.layout.qsOff;
        xd[t] = reinterpret_cast<const float*>(p + a.layout.dOff);
        xc[t] = reinterpret_cast<const int32_t*>(p + a.layout.sumOff);
      }
      float* o = out + i * ldo + r0;
      switch (cnt) {
        case 4: panelTile<4>(panel, nb, xq, xd, xc, rows, o, ldo); break;
        case 3: panelTile<3>(panel, nb, xq, xd, xc, rows, o, ldo); break;
        case 2: panelTile<2>(panel, nb, xq, xd, xc, rows, o, ldo); break;
        default: panelTile<1>(panel, nb, xq, xd, xc, rows, o, ldo); break;
      }
    }
  }
}

}  // namespace

MatmulKernel repackedKernel(GgmlType type, int64_t m) {
  switch (type) {
    // From m = 2 (m = 1 streams weights faster through the row tiles: 14 vs 8 GB/s from DRAM);
    // both do the same canonical f32 steps, so rows stay batch-invariant.
    case GgmlType::Q4_0: return m >= 2 ? runRepacked<Kind::Q4_0> : nullptr;
    // IQ4_NL: the same steps (llama.cpp's iq4_nl_8x8 kernels are its q4_0x8 ones with a table)
    case GgmlType::IQ4_NL: return m >= 2 ? runRepacked<Kind::IQ4_NL> : nullptr;
    // Q8_0 keeps the row tiles at every m: llama.cpp's Q8_0 sums 8 lanes per block (see
    // tileQ8_0), which a panel holding one lane per weight row cannot reproduce.
    case GgmlType::Q8_0: return nullptr;
    default: return repackedKernelK(type, m);
  }
}

#else

MatmulKernel repackedKernel(GgmlType type, int64_t m) { return repackedKernelK(type, m); }

#endif

}  // namespace flexinfer
