// Prompt-processing path for the 256-element types (Q2_K .. Q6_K) with AVX512-VNNI:
// 8 weight rows repacked so that int32 lane r belongs to row r (see matmul_x86_repack.cc for the
// idea). Generic over the type: each family file specializes Panel<T> (its unpack and how its
// dots run) and instantiates runPanels<T> (matmul_x86_repack_k.cc: Q4_K/Q5_K/Q6_K; matmul_k23.cc:
// Q2_K/Q3_K). IQ4_XS has its own panels of int16 pre-scaled weights (matmul_iq4.cc).
//
// Per super-block of 256, the panel holds (8 rows each):
//   W_t, t = 0..63   32 bytes: lane r = quants 4t..4t+3 of row r (element order; unsigned, or
//                    signed for kLanesS, see PanelDot)
//   SC_j, j < NS     8 x int32 sub-block scales (NS = 8 sub-blocks of 32 or 16 of 16); for the
//                    vpdpwssd kinds the scale twice, as an int16 pair
//   MN_p, p < 8      8 x int16 pairs: the offsets of the two 16-quant halves 2p, 2p+1 of the
//                    super-block (Q4_K/Q5_K: min m[p] twice; Q2_K: m[2p], m[2p+1]; Q6_K:
//                    32 * scale[2p], 32 * scale[2p+1]); kLanesS: 8 x int32, lane p's
//                    weight-side correction C_p (below)
//   D, DMIN          8 x f32: d and dmin (Q6_K, Q3_K: dmin unused)
//
// Dot kinds and their f32 steps (each the steps of the type's row kernels and of llama.cpp):
//   kOneLane  (Q4_K, Q2_K): the super-block's dot summed to one exact int32 per row:
//             dot = D * dx * sum_j SC_j * dot_j(q, x) - DMIN * dx * sum_h MN_h * bsums_h(x), the
//             second sum 8 vpdpwssd against the bsums pairs broadcast; acc = fma(sumi, D * dx,
//             acc), accMin = fma(mins, DMIN * dx, accMin), out = acc - accMin.
//   kLanesU   (Q5_K, Q6_K): llama.cpp's vec_dot lanes, 8 int32 per row kept apart, lane l = sum
//             over the 8 groups c of 32 quants of sc * dot(quants 4l..4l+3 of group c); quants
//             4t..4t+3 (t = 8c + l) enter as vpmaddubsw (weights unsigned) against the broadcast
//             activation dword, scaled by vpdpwssd with the (sc, sc) pairs (see panelTileLanes).
//   kLanesS   (Q3_K): as kLanesU with signed weights (q - 4): the activation enters unsigned
//             (x + 128) and the weights signed; sum((x + 128) w) - 128 sum(w) = sum(x w), the
//             weight side C_l = sum_c sc * 128 * sum(w) of each lane precomputed at repack.
// Speed of Q5_K / Q6_K's lane steps (1 thread, n = k = 2048, process CPU time, median of 11 runs
// x 3 rounds on a quiet machine, against the earlier one-lane steps):
//   m = 64, GFLOP/s   Q5_K 216 -> 157 (-27%), Q6_K 195 -> 153 (-21%)
// The prompt-side loss is the price of llama.cpp's lanes: every 4-quant dot must be scaled before
// it joins its lane, 2 multiply ops per dword (vpmaddubsw + vpdpwssd) where the one-lane steps
// need one vpdpbusd per dword and one vpmulld per sub-block of 8 rows.
#pragma once

#include "matmul_x86.h"

#if defined(FLEXINFER_MATMUL_AVX2) && defined(FLEXINFER_VNNI)
#define FLEXINFER_MATMUL_PANELS 1

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "quants.h"
#include "simd.h"

namespace flexinfer {
namespace x86 {

constexpr int kPanelRows = 8;

enum class PanelDot { kOneLane, kLanesU, kLanesS };

// Specialized per type (family files):
//   static constexpr int kSubBlocks;      // 8 (of 32) or 16 (of 16)
//   static constexpr PanelDot kDot;
//   static constexpr bool kMinsChain;     // kLanesU: Q5_K's summs chain from MN (Q6_K: bsums corr.)
//   static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t sc[16], int32_t mn[16],
//                      float* d, float* dmin);  // q[c]: quants 32c..32c+31 of super-block b
template <GgmlType T>
struct Panel;

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

inline int32_t scalePair(int32_t v) {
  const uint32_t h = static_cast<uint16_t>(static_cast<int16_t>(v));
  return static_cast<int32_t>(h | (h << 16));
}

// Repacks super-blocks [0, nb) of rows [0, rows) (rows <= 8) into `panel`; missing rows are zero.
template <GgmlType T>
void repackPanel(const uint8_t* w, size_t wStride, int rows, int64_t nb, const KPanel& kp, uint8_t* panel) {
  using P = Panel<T>;
  constexpr bool kPairs = P::kDot == PanelDot::kLanesU || P::kDot == PanelDot::kLanesS;
  constexpr bool kWeightCorr = P::kDot == PanelDot::kLanesS;
  for (int64_t b = 0; b < nb; b++) {
    uint8_t* dst = panel + b * kp.blockBytes;
    __m256i q[kPanelRows][8];
    int32_t* sc = reinterpret_cast<int32_t*>(dst + kp.scOff);
    int16_t* mn = reinterpret_cast<int16_t*>(dst + kp.mnOff);    // [pair p][row r][2]
    int32_t* corr = reinterpret_cast<int32_t*>(dst + kp.mnOff);  // [lane l][row r] (kLanesS*)
    float* d = reinterpret_cast<float*>(dst + kp.dOff);
    for (int r = 0; r < kPanelRows; r++) {
      int32_t s[16], m[16];
      float dr = 0.0f, dminr = 0.0f;
      if (r < rows) {
        P::unpack(w + r * wStride, b, q[r], s, m, &dr, &dminr);
      } else {
        for (int c = 0; c < 8; c++) q[r][c] = _mm256_setzero_si256();
        for (int j = 0; j < 16; j++) s[j] = m[j] = 0;
      }
      for (int j = 0; j < kp.ns; j++) sc[j * 8 + r] = kPairs ? scalePair(s[j]) : s[j];
      if constexpr (kWeightCorr) {
        // C_l = 128 * sum over the groups c of sc(c, l) * (sum of the 4 weights of dword 8c + l)
        __m256i cl = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
          const __m256i sum4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q[r][c]), _mm256_set1_epi16(1));
          const __m256i scv = kp.ns == 8 ? _mm256_set1_epi32(s[c])
                                         : _mm256_setr_epi32(s[2 * c], s[2 * c], s[2 * c], s[2 * c], s[2 * c + 1],
                                                             s[2 * c + 1], s[2 * c + 1], s[2 * c + 1]);
          cl = _mm256_add_epi32(cl, _mm256_mullo_epi32(sum4, scv));
        }
        alignas(32) int32_t cv[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(cv), _mm256_slli_epi32(cl, 7));
        for (int l = 0; l < 8; l++) corr[l * 8 + r] = cv[l];
      } else {
        for (int p = 0; p < 8; p++) {
          // Offsets of halves 2p and 2p+1 (Q4_K/Q5_K: both halves of sub-block p share its min).
          mn[(p * 8 + r) * 2] = static_cast<int16_t>(kp.ns == 8 ? m[p] : m[2 * p]);
          mn[(p * 8 + r) * 2 + 1] = static_cast<int16_t>(kp.ns == 8 ? m[p] : m[2 * p + 1]);
        }
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

inline void storePanelRows(__m256 res, int rows, float* out) {
  if (rows == kPanelRows) {
    _mm256_storeu_ps(out, res);
  } else {
    alignas(32) float tmp[kPanelRows];
    _mm256_store_ps(tmp, res);
    for (int r = 0; r < rows; r++) out[r] = tmp[r];
  }
}

// kOneLane (Q4_K, Q2_K).
template <GgmlType T, int NX>
void panelTileK(const uint8_t* panel, int64_t nb, const KPanel& kp, const int8_t* const* xq, const float* const* xd,
                const int16_t* const* xbs, int rows, float* out, int64_t ldo) {
  constexpr int NS = Panel<T>::kSubBlocks;
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
  for (int i = 0; i < NX; i++) storePanelRows(_mm256_sub_ps(acc[i], accMin[i]), rows, out + i * ldo);
}

// The lane kinds (Q5_K, Q6_K, Q3_K): llama.cpp's vec_dot steps, per row 8 exact int32
// lanes per super-block, acc_l = fma(d_w * d_x, float(lane l), acc_l), then hsum over l in
// llama.cpp's order (Q5_K: + the summs chain). Here the vector lanes are the 8 weight rows, so
// lane l of every row is one vector S_l. No horizontal sums: the final hsum over l adds whole
// vectors.
template <GgmlType T, int NX>
void panelTileLanes(const uint8_t* panel, int64_t nb, const KPanel& kp, const int8_t* const* xq,
                    const float* const* xd, const int16_t* const* xbs, int rows, float* out, int64_t ldo) {
  using P = Panel<T>;
  constexpr PanelDot kDot = P::kDot;
  constexpr bool k16 = P::kSubBlocks == 16;  // sub-blocks of 16: lanes 0..3 and 4..7 of a group differ
  constexpr bool kSigned = kDot == PanelDot::kLanesS;
  constexpr int LG = 2;  // lanes l per pass: 4 * NX independent chains
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
    if constexpr (P::kMinsChain) {
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
        const int l = l0 + u;
        if constexpr (kSigned) {
          // -C_l: takes back the activation's + 128 (weight side, made at repack)
          const __m256i cl = _mm256_sub_epi32(_mm256_setzero_si256(),
                                              _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.mnOff + 32 * l)));
          for (int i = 0; i < NX; i++) S[u][i] = cl;
        } else {
          for (int i = 0; i < NX; i++) S[u][i] = _mm256_setzero_si256();
          if constexpr (!P::kMinsChain) {  // Q6_K: its -32 off lane l with the bsums
            const __m256i mnl = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.mnOff + 32 * l));
            for (int i = 0; i < NX; i++) {
              int32_t pair;  // bsums 2l, 2l+1
              std::memcpy(&pair, xbs[i] + b * 16 + 2 * l, 4);
              S[u][i] = _mm256_sub_epi32(S[u][i], _mm256_madd_epi16(mnl, _mm256_set1_epi32(pair)));
            }
          }
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; c++) {
        // Sub-blocks of 32: sub-block c for all lanes; of 16: 2c for lanes 0..3, 2c + 1 for 4..7.
        const int j = k16 ? 2 * c + (l0 >= 4 ? 1 : 0) : c;
        const __m256i scp = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kp.scOff + 32 * j));
        for (int u = 0; u < LG; u++) {
          const int t = 8 * c + l0 + u;
          const __m256i wt = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + 32 * t));
          for (int i = 0; i < NX; i++) {
            int32_t x4;
            std::memcpy(&x4, xq[i] + b * QK_K + 4 * t, 4);
            if constexpr (kDot == PanelDot::kLanesU) {
              S[u][i] = _mm256_dpwssd_epi32(S[u][i], _mm256_maddubs_epi16(wt, _mm256_set1_epi32(x4)), scp);
            } else {  // kLanesS
              const __m256i xu = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(x4) ^ 0x80808080u));
              S[u][i] = _mm256_dpwssd_epi32(S[u][i], _mm256_maddubs_epi16(xu, wt), scp);
            }
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
    storePanelRows(P::kMinsChain ? _mm256_add_ps(h, summs[i]) : h, rows, out + i * ldo);
  }
}

thread_local inline AlignedScratch tlsPanelK;

template <GgmlType T>
void runPanels(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
               int64_t ldo) {
  const KPanel kp(Panel<T>::kSubBlocks);
  const int64_t nb = k / QK_K;
  uint8_t* panel = tlsPanelK.get(static_cast<size_t>(nb) * kp.blockBytes);
  for (int64_t r0 = 0; r0 < nw; r0 += kPanelRows) {
    const int rows = static_cast<int>(nw - r0 < kPanelRows ? nw - r0 : kPanelRows);
    repackPanel<T>(w + static_cast<size_t>(r0) * wStride, wStride, rows, nb, kp, panel);
    // The next 8 rows (contiguous, possibly past this call's rows: prefetches never fault) into
    // L2, spread over the activation tiles: repackPanel reads 8 rows at once, which the hardware
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
      if constexpr (Panel<T>::kDot == PanelDot::kOneLane) {
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

}  // namespace x86
}  // namespace flexinfer

#endif
