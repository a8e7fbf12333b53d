// Prompt-processing path for the K-quants Q4_K, Q5_K, Q6_K with AVX512-VNNI: 8 weight rows
// repacked so that int32 lane r belongs to row r, the generic panels of matmul_x86_panels.h
// (which Q2_K, Q3_K and IQ4_XS use too, with the layout and design notes there); here the three
// types' unpacking.
//
// (vpdpwssd for the offsets instead of a vpmulld per sub-block took Q6_K at m = 128 from ~165 to
// ~180 GFLOP/s per core, when Q6_K still ran the one-lane steps.)
// Speed of the change to llama.cpp's steps (1 thread, n = k = 2048, process CPU time, median of
// 11 runs x 3 rounds on a quiet machine, old and new addon alternating):
//   m = 64, GFLOP/s   Q5_K 216 -> 157 (-27%), Q6_K 195 -> 153 (-21%)
//   m = 1,  GB/s      Q5_K 17.7 -> 19.8, Q6_K 20.6 -> 25.5 (row tiles: no horizontal sums)
// The prompt-side loss is the price of llama.cpp's lanes: every 4-quant dot must be scaled before
// it joins its lane, 2 multiply ops per dword (vpmaddubsw + vpdpwssd; vpdpbusd + vpdpwssd with
// the dot as the low half of a pair costs the same) where the old steps needed one vpdpbusd per
// dword and one vpmulld per sub-block of 8 rows. llama.cpp itself runs 2 per 32 quants per row.
#include "matmul.h"

#include "matmul_x86_panels.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_PANELS

namespace x86 {

namespace {

// Unpacks super-block b of one row into 8 vectors of 32 unsigned quants (element order) and
// its scales, offsets and f32 scales.
template <GgmlType T>
inline void unpackRow(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
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

}  // namespace

template <>
struct Panel<GgmlType::Q4_K> {
  static constexpr int kSubBlocks = 8;
  static constexpr PanelDot kDot = PanelDot::kOneLane;
  static constexpr bool kMinsChain = false;
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    unpackRow<GgmlType::Q4_K>(row, b, q, sc, mn, d, dmin);
  }
};
template <>
struct Panel<GgmlType::Q5_K> {
  static constexpr int kSubBlocks = 8;
  static constexpr PanelDot kDot = PanelDot::kLanesU;
  static constexpr bool kMinsChain = true;
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    unpackRow<GgmlType::Q5_K>(row, b, q, sc, mn, d, dmin);
  }
};
template <>
struct Panel<GgmlType::Q6_K> {
  static constexpr int kSubBlocks = 16;
  static constexpr PanelDot kDot = PanelDot::kLanesU;
  static constexpr bool kMinsChain = false;  // its -32 comes off each lane with the bsums (MN)
  static void unpack(const uint8_t* row, int64_t b, __m256i q[8], int32_t* sc, int32_t* mn, float* d, float* dmin) {
    unpackRow<GgmlType::Q6_K>(row, b, q, sc, mn, d, dmin);
  }
};

}  // namespace x86

MatmulKernel repackedKernelK(GgmlType type, int64_t m) {
  switch (type) {
    case GgmlType::Q4_K: return m >= 8 ? x86::runPanels<GgmlType::Q4_K> : nullptr;
    case GgmlType::Q5_K: return m >= 16 ? x86::runPanels<GgmlType::Q5_K> : nullptr;
    case GgmlType::Q6_K: return m >= 32 ? x86::runPanels<GgmlType::Q6_K> : nullptr;
    default: return nullptr;
  }
}

#else

MatmulKernel repackedKernelK(GgmlType, int64_t) { return nullptr; }

#endif

}  // namespace flexinfer
