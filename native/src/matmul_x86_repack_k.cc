// Prompt-processing path for the K-quants (Q4_K, Q5_K, Q6_K) with AVX512-VNNI: 8 weight rows
// repacked so that int32 lane r belongs to row r (see matmul_x86_repack.cc for the idea).
//
// Per super-block of 256, the panel holds (8 rows each):
//   W_t, t = 0..63   32 bytes: lane r = unsigned quants 4t..4t+3 of row r
//                    (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 before its -32)
//   SC_j, j < NS     8 x int32 sub-block scales (NS = 8 sub-blocks of 32 for Q4_K/Q5_K,
//                    16 of 16 for Q6_K); Q5_K / Q6_K: the scale twice, as an int16 pair
//   MN_p, p < 8      8 x int16 pairs: the offsets of the two 16-quant halves 2p, 2p+1 of the
//                    super-block (Q4_K/Q5_K: min m[p] twice; Q6_K: 32 * scale[2p], 32 * scale[2p+1])
//   D, DMIN          8 x f32: d and dmin (Q6_K: dmin = d)
// Q4_K (panelTileK): dot = D * dx * sum_j SC_j * dot_j(q, x) - DMIN * dx * sum_h MN_h * bsums_h(x)
// over the 16 halves h (ggml's bsums per 16 quants), the second sum being 8 vpdpwssd against
// the bsums pairs broadcast: exact int32 per super-block, then f32, the steps of llama.cpp's
// q4_Kx8 GEMV. (vpdpwssd for the offsets instead of a vpmulld per sub-block took Q6_K at
// m = 128 from ~165 to ~180 GFLOP/s per core, when Q6_K still ran that way.)
// Q5_K / Q6_K (panelTileLanes): llama.cpp's vec_dot steps, 8 int32 lanes per row kept apart
// (see there).
// Speed of the change to llama.cpp's steps (1 thread, n = k = 2048, process CPU time, median of
// 11 runs x 3 rounds on a quiet machine, old and new addon alternating):
//   m = 64, GFLOP/s   Q5_K 216 -> 157 (-27%), Q6_K 195 -> 153 (-21%)
//   m = 1,  GB/s      Q5_K 17.7 -> 19.8, Q6_K 20.6 -> 25.5 (row tiles: no horizontal sums)
// The prompt-side loss is the price of llama.cpp's lanes: every 4-quant dot must be scaled before
// it joins its lane, 2 multiply ops per dword (vpmaddubsw + vpdpwssd; vpdpbusd + vpdpwssd with
// the dot as the low half of a pair costs the same) where the old steps needed one vpdpbusd per
// dword and one vpmulld per sub-block of 8 rows. llama.cpp itself runs 2 per 32 quants per row.
#include "matmul.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define FLEXINFER_MATMUL_REPACK_K 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>

#include "quants.h"
#include "simd.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_REPACK_K

namespace {

constexpr int kPanelRows = 8;

struct KPanel {
  int ns;             // sub-blocks per super-block
  size_t scOff;       // offsets inside one super-block's panel
  size_t mnOff;
  size_t dOff;
  size_t blockBytes;  // stride between super-blocks
  explicit KPanel(int subBlocks) : ns(subBlocks) {
    scOff = 64 * 32;
    mnOff = scOff + static_cast<size_t>(ns) * 32;
    dOff = mnOff + 8 * 32;
    blockBytes = dOff + 64;
  }
};

thread_local AlignedScratch tlsPanelK;

inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Unpacks super-block b of one row into 8 vectors of 32 unsigned quants (element order) and
// its scales, offsets and f32 scales.
template <GgmlType T>
void unpackRow(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  if constexpr (T == GgmlType::Q6_K) {
    const BlockQ6K& blk = reinterpret_cast<const BlockQ6K*>(row)[b];
    const __m256i m2 = _mm256_set1_epi8(0x03);
    for (int h = 0; h < 2; h++) {
      const __m256i l0 = loadu(blk.ql + 64 * h), l1 = loadu(blk.ql + 64 * h + 32);
      const __m256i hb = loadu(blk.qh + 32 * h);
      q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
      q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
      q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
      q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
    }
    for (int j = 0; j < 16; j++) {
      sc[j] = blk.scales[j];
      mn[j] = 32 * blk.scales[j];
    }
    *d = *dmin = _cvtsh_ss(blk.d);
  } else {
    const uint8_t* qs;
    const uint8_t* scales;
    uint16_t dh, dminh;
    if constexpr (T == GgmlType::Q5_K) {
      const BlockQ5K& blk = reinterpret_cast<const BlockQ5K*>(row)[b];
      qs = blk.qs, scales = blk.scales, dh = blk.d, dminh = blk.dmin;
    } else {
      const BlockQ4K& blk = reinterpret_cast<const BlockQ4K*>(row)[b];
      qs = blk.qs, scales = blk.scales, dh = blk.d, dminh = blk.dmin;
    }
    for (int c = 0; c < 4; c++) {
      const __m256i raw = loadu(qs + 32 * c);
      q[2 * c] = _mm256_and_si256(raw, m4);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    }
    if constexpr (T == GgmlType::Q5_K) {
      const __m256i hbits = loadu(reinterpret_cast<const BlockQ5K*>(row)[b].qh);
      const __m256i one = _mm256_set1_epi8(1);
      for (int j = 0; j < 8; j++) {
        q[j] = _mm256_or_si256(q[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, j), one), 4));
      }
    }
    // The bit moves of scaleMinK4, four sub-blocks per 32-bit word.
    constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
    uint32_t u[3], r[4];
    std::memcpy(u, scales, 12);
    r[0] = u[0] & kLow6;
    r[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
    r[2] = u[1] & kLow6;
    r[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
    const uint8_t* sm = reinterpret_cast<const uint8_t*>(r);  // [sc 0..7, m 0..7]
    for (int j = 0; j < 8; j++) {
      sc[j] = sm[j];
      mn[j] = sm[8 + j];
    }
    *d = _cvtsh_ss(dh);
    *dmin = _cvtsh_ss(dminh);
  }
}

inline int32_t scalePair(int32_t v) {
  const uint32_t h = static_cast<uint16_t>(static_cast<int16_t>(v));
  return static_cast<int32_t>(h | (h << 16));
}

template <GgmlType T>
void repackK(const uint8_t* w, size_t wStride, int rows, int64_t nb, const KPanel& kp, uint8_t* panel) {
  for (int64_t b = 0; b < nb; b++) {
    uint8_t* dst = panel + b * kp.blockBytes;
    __m256i q[kPanelRows][8];
    int32_t* sc = reinterpret_cast<int32_t*>(dst + kp.scOff);
    int16_t* mn = reinterpret_cast<int16_t*>(dst + kp.mnOff);  // [pair p][row r][2]
    float* d = reinterpret_cast<float*>(dst + kp.dOff);
    for (int r = 0; r < kPanelRows; r++) {
      int32_t s[16], m[16];
      float dr = 0.0f, dminr = 0.0f;
      if (r < rows) {
        unpackRow<T>(w + r * wStride, b, q[r], s, m, &dr, &dminr);
      } else {
        for (int c = 0; c < 8; c++) q[r][c] = _mm256_setzero_si256();
        for (int j = 0; j < 16; j++) s[j] = m[j] = 0;
      }
      // Q4_K: int32 scales (vpmulld); Q5_K / Q6_K: the scale twice as an int16 pair (vpdpwssd).
      for (int j = 0; j < kp.ns; j++) sc[j * 8 + r] = T == GgmlType::Q4_K ? s[j] : scalePair(s[j]);
      for (int p = 0; p < 8; p++) {
        // Offsets of halves 2p and 2p+1 (Q4_K/Q5_K: both halves of sub-block p share its min).
        mn[(p * 8 + r) * 2] = static_cast<int16_t>(kp.ns == 8 ? m[p] : m[2 * p]);
        mn[(p * 8 + r) * 2 + 1] = static_cast<int16_t>(kp.ns == 8 ? m[p] : m[2 * p + 1]);
      }
      d[r] = dr;
      d[8 + r] = dminr;
    }
    // Chunk c (32 quants = 8 dwords) of the 8 rows -> W_{8c} .. W_{8c+7}.
    for (int c = 0; c < 8; c++) {
      __m256i v[8];
      for (int r = 0; r < kPanelRows; r++) v[r] = q[r][c];
      transpose8x8(v);
      for (int t = 0; t < 8; t++) _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 32 * (8 * c + t)), v[t]);
    }
  }
}

template <GgmlType T, int NX>
void panelTileK(const uint8_t* panel, int64_t nb, const KPanel& kp, const int8_t* const* xq, const float* const* xd,
                const int16_t* const* xbs, int rows, float* out, int64_t ldo) {
  constexpr int NS = T == GgmlType::Q6_K ? 16 : 8;
  constexpr int GS = 64 / NS;  // dword groups per sub-block
  __m256 acc[NX], accMin[NX];
  for (int i = 0; i < NX; i++) acc[i] = accMin[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = panel + b * kp.blockBytes;
    __m256i sumi[NX], summ[NX];
    for (int i = 0; i < NX; i++) sumi[i] = summ[i] = _mm256_setzero_si256();
    for (int j = 0; j < NS; j++) {
      __m256i dot[NX];
      for (int i = 0; i < NX; i++) dot[i] = _mm256_setzero_si256();
      for (int g = 0; g < GS; g++) {
        const int t = j * GS + g;
        const __m256i wt = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 32 * t));
        for (int i = 0; i < NX; i++) {
          int32_t x4;
          std::memcpy(&x4, xq[i] + b * QK_K + 4 * t, 4);
          dot[i] = _mm256_dpbusd_epi32(dot[i], wt, _mm256_set1_epi32(x4));
        }
      }
      const __m256i scj = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.scOff + 32 * j));
      for (int i = 0; i < NX; i++) sumi[i] = _mm256_add_epi32(sumi[i], _mm256_mullo_epi32(dot[i], scj));
    }
    for (int p = 0; p < 8; p++) {
      const __m256i mnp = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.mnOff + 32 * p));
      for (int i = 0; i < NX; i++) {
        int32_t pair;  // bsums 2p, 2p+1 of this super-block
        std::memcpy(&pair, xbs[i] + b * 16 + 2 * p, 4);
        summ[i] = _mm256_dpwssd_epi32(summ[i], mnp, _mm256_set1_epi32(pair));
      }
    }
    const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(blk + kp.dOff));
    const __m256 dmin = _mm256_load_ps(reinterpret_cast<const float*>(blk + kp.dOff + 32));
    for (int i = 0; i < NX; i++) {
      const __m256 dx = _mm256_set1_ps(xd[i][b]);
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[i]), _mm256_mul_ps(d, dx), acc[i]);
      accMin[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(summ[i]), _mm256_mul_ps(dmin, dx), accMin[i]);
    }
  }
  for (int i = 0; i < NX; i++) {
    const __m256 res = _mm256_sub_ps(acc[i], accMin[i]);
    if (rows == kPanelRows) {
      _mm256_storeu_ps(out + i * ldo, res);
    } else {
      alignas(32) float tmp[kPanelRows];
      _mm256_store_ps(tmp, res);
      for (int r = 0; r < rows; r++) out[i * ldo + r] = tmp[r];
    }
  }
}

// Q5_K / Q6_K: llama.cpp's ggml_vec_dot_q{5,6}_K_q8_K steps (see tileQK45 / tileQ6_K in
// matmul_x86.cc), per row: 8 exact int32 lanes per super-block, lane l = sum over the 8 groups c
// of 32 quants of sc * dot(quants 4l..4l+3 of group c) (Q6_K: minus its bsums correction
// 32 * (sc[2l] * bsums[2l] + sc[2l+1] * bsums[2l+1]), the MN_l pair), acc_l = fma(d_w * d_x,
// float(lane l), acc_l), then hsum over l in llama.cpp's order (Q5_K: + the summs chain). Here
// the vector lanes are the 8 weight rows, so lane l of every row is one vector S_l: quants 4t..4t+3
// (t = 8c + l) enter as vpmaddubsw against the broadcast activation dword, scaled by vpdpwssd with
// the (sc, sc) pairs: two ops per dword instead of one vpdpbusd plus a vpmulld per sub-block,
// which sums the lanes before scaling and so cannot give llama.cpp's lanes. No horizontal sums:
// the final hsum over l adds whole vectors.
template <GgmlType T, int NX>
void panelTileLanes(const uint8_t* panel, int64_t nb, const KPanel& kp, const int8_t* const* xq,
                    const float* const* xd, const int16_t* const* xbs, int rows, float* out, int64_t ldo) {
  constexpr bool Q6 = T == GgmlType::Q6_K;
  constexpr int LG = 2;  // lanes l per pass: 4 * NX independent vpdpwssd chains
  __m256 acc[8][NX], summs[NX];
  for (int i = 0; i < NX; i++) {
    summs[i] = _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) acc[l][i] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = panel + b * kp.blockBytes;
    const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(blk + kp.dOff));
    __m256 dd[NX];
    for (int i = 0; i < NX; i++) dd[i] = _mm256_mul_ps(d, _mm256_set1_ps(xd[i][b]));
    if constexpr (!Q6) {
      // summs = fma(-(d_x * dmin_w), float(mins), summs), mins = sum_p m[p] * (bsums 2p + 2p+1)
      const __m256 dmin = _mm256_load_ps(reinterpret_cast<const float*>(blk + kp.dOff + 32));
      for (int i = 0; i < NX; i++) {
        __m256i mins = _mm256_setzero_si256();
        for (int p = 0; p < 8; p++) {
          int32_t pair;
          std::memcpy(&pair, xbs[i] + b * 16 + 2 * p, 4);
          const __m256i mnp = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.mnOff + 32 * p));
          mins = _mm256_dpwssd_epi32(mins, mnp, _mm256_set1_epi32(pair));
        }
        summs[i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(-xd[i][b]), dmin), _mm256_cvtepi32_ps(mins), summs[i]);
      }
    }
    for (int l0 = 0; l0 < 8; l0 += LG) {
      __m256i S[LG][NX];
      for (int u = 0; u < LG; u++) {
        for (int i = 0; i < NX; i++) S[u][i] = _mm256_setzero_si256();
        if constexpr (Q6) {
          const int l = l0 + u;
          const __m256i mnl = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.mnOff + 32 * l));
          for (int i = 0; i < NX; i++) {
            int32_t pair;  // bsums 2l, 2l+1
            std::memcpy(&pair, xbs[i] + b * 16 + 2 * l, 4);
            S[u][i] = _mm256_sub_epi32(S[u][i], _mm256_madd_epi16(mnl, _mm256_set1_epi32(pair)));
          }
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; c++) {
        // Q5_K: sub-block c for all lanes; Q6_K: 2c for lanes 0..3, 2c + 1 for lanes 4..7.
        const int j = Q6 ? 2 * c + (l0 >= 4 ? 1 : 0) : c;
        const __m256i scp = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.scOff + 32 * j));
        for (int u = 0; u < LG; u++) {
          const int t = 8 * c + l0 + u;
          const __m256i wt = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 32 * t));
          for (int i = 0; i < NX; i++) {
            int32_t x4;
            std::memcpy(&x4, xq[i] + b * QK_K + 4 * t, 4);
            S[u][i] = _mm256_dpwssd_epi32(S[u][i], _mm256_maddubs_epi16(wt, _mm256_set1_epi32(x4)), scp);
          }
        }
      }
      for (int u = 0; u < LG; u++)
        for (int i = 0; i < NX; i++) acc[l0 + u][i] = _mm256_fmadd_ps(dd[i], _mm256_cvtepi32_ps(S[u][i]), acc[l0 + u][i]);
    }
  }
  for (int i = 0; i < NX; i++) {
    // llama.cpp's hsum_float_8 order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
    const __m256 h = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0][i], acc[4][i]), _mm256_add_ps(acc[2][i], acc[6][i])),
                                   _mm256_add_ps(_mm256_add_ps(acc[1][i], acc[5][i]), _mm256_add_ps(acc[3][i], acc[7][i])));
    const __m256 res = Q6 ? h : _mm256_add_ps(h, summs[i]);
    if (rows == kPanelRows) {
      _mm256_storeu_ps(out + i * ldo, res);
    } else {
      alignas(32) float tmp[kPanelRows];
      _mm256_store_ps(tmp, res);
      for (int r = 0; r < rows; r++) out[i * ldo + r] = tmp[r];
    }
  }
}

template <GgmlType T>
void runRepackedK(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
                  int64_t ldo) {
  const KPanel kp(T == GgmlType::Q6_K ? 16 : 8);
  const int64_t nb = k / QK_K;
  uint8_t* panel = tlsPanelK.get(static_cast<size_t>(nb) * kp.blockBytes);
  for (int64_t r0 = 0; r0 < nw; r0 += kPanelRows) {
    const int rows = static_cast<int>(nw - r0 < kPanelRows ? nw - r0 : kPanelRows);
    repackK<T>(w + static_cast<size_t>(r0) * wStride, wStride, rows, nb, kp, panel);
    // The next 8 rows (contiguous, possibly past this call's rows: prefetches never fault) into
    // L2, spread over the activation tiles: repackK reads 8 rows at once, which the hardware
    // prefetcher does not follow, and stalled on them (perf: a quarter of Q6_K's time at m = 64).
    const char* next = reinterpret_cast<const char*>(w + static_cast<size_t>(r0 + kPanelRows) * wStride);
    const int64_t lines = static_cast<int64_t>(kPanelRows * wStride + 63) / 64;
    const int64_t tiles = (nx + 3) / 4, perTile = (lines + tiles - 1) / tiles;
    for (int64_t i = 0; i < nx; i += 4) {
      const int cnt = static_cast<int>(nx - i < 4 ? nx - i : 4);
      for (int64_t ln = (i / 4) * perTile, end = std::min(lines, ln + perTile); ln < end; ln++)
        _mm_prefetch(next + 64 * ln, _MM_HINT_T1);
      const int8_t* xq[4];
      const float* xd[4];
      const int16_t* xb[4];
      for (int t = 0; t < cnt; t++) {
        const uint8_t* p = a.base + static_cast<size_t>(i + t) * a.stride;
        xq[t] = reinterpret_cast<const int8_t*>(p + a.layout.qsOff);
        xd[t] = reinterpret_cast<const float*>(p + a.layout.dOff);
        xb[t] = reinterpret_cast<const int16_t*>(p + a.layout.sumOff);
      }
      float* o = out + i * ldo + r0;
      if constexpr (T == GgmlType::Q4_K) {
        switch (cnt) {
          case 4: panelTileK<T, 4>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          case 3: panelTileK<T, 3>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          case 2: panelTileK<T, 2>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          default: panelTileK<T, 1>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
        }
      } else {
        switch (cnt) {
          case 4: panelTileLanes<T, 4>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          case 3: panelTileLanes<T, 3>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          case 2: panelTileLanes<T, 2>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
          default: panelTileLanes<T, 1>(panel, nb, kp, xq, xd, xb, rows, o, ldo); break;
        }
      }
    }
  }
}

}  // namespace

MatmulKernel repackedKernelK(GgmlType type, int64_t m) {
  switch (type) {
    case GgmlType::Q4_K: return m >= 8 ? runRepackedK<GgmlType::Q4_K> : nullptr;
    case GgmlType::Q5_K: return m >= 16 ? runRepackedK<GgmlType::Q5_K> : nullptr;
    case GgmlType::Q6_K: return m >= 32 ? runRepackedK<GgmlType::Q6_K> : nullptr;
    default: return nullptr;
  }
}

#else

MatmulKernel repackedKernelK(GgmlType, int64_t) { return nullptr; }

#endif

}  // namespace flexinfer
