// Q4_0 and IQ4_NL row kernels (x86): 32 nibbles and one f16 scale per block (the same layout),
// each block's dot summed to one exact int32. The two differ only in what a nibble means
// (q - 8, or kIQ4Values[q]): the `Nib` parameter turns a block's nibbles into its 8 dot lanes.
//
// f32 steps: llama.cpp's x86 backend runs both through its repacked q4_0x8 / iq4_nl_8x8 GEMV and
// GEMM (REPACK buffer): per output one f32 accumulator, acc = fma(float(block dot), d_w * d_x,
// acc) over the blocks in order. We do the same steps, so the results are bitwise llama.cpp's.
//
// Q4_0 weights enter vpdpbusd unsigned as 0..15 (q - 8 wanted); each block's 8 dot lanes start
// from the activation row's lane correction (packQ8_0: -sum(x) per lane), which takes the offset
// back exactly, and the lanes are summed to the exact int32 block dot. IQ4_NL's table values
// enter as value + 128 (1..241), with the correction -16 * sum(x) per lane (VNNI builds; without
// VNNI, vpmaddubsw would saturate there: ggml's sign trick instead).
// (Tiles of 2 weight rows x 4 activation rows measured slower than 1 x 4: 89 vs 157 GFLOP/s at
// m = 128, 12 vs 21 GB/s at m = 1 from L2. With VNNI the tile serves m = 1 only; m >= 2 takes the
// repacked panels, which at m = 1 streamed only 8 GB/s from DRAM against 14 here.)
#pragma once

#include "matmul_x86.h"

#ifdef FLEXINFER_MATMUL_AVX2

#include <cmath>
#include <cstdint>

#include "quants.h"

namespace flexinfer {
namespace x86 {

// A nibble type: struct N { using Block; static __m256i lanes(nib, x, corr); } where nib holds
// the block's 32 nibbles (0..15) in element order, x the activation quants, corr the activation
// block's lane correction broadcast; the lanes' sum is the exact block dot.
struct NibQ4_0 {
  using Block = BlockQ4_0;
  static __m256i lanes(__m256i nib, __m256i x, __m256i corr) { return dpbusd(corr, nib, x); }
};

// The 32 nibbles of block b (element order: low nibbles, then high).
template <class N>
inline __m256i nibbles(const uint8_t* w, int64_t b, float* dw) {
  const typename N::Block& blk = reinterpret_cast<const typename N::Block*>(w)[b];
  *dw = h2f(blk.d);
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

// Lane sums of four int32 vectors: [sum(d0), sum(d1), sum(d2), sum(d3)] (exact).
inline __m128i hsum4Epi32(__m256i d0, __m256i d1, __m256i d2, __m256i d3) {
  const __m256i s0 = _mm256_add_epi32(_mm256_unpacklo_epi32(d0, d1), _mm256_unpackhi_epi32(d0, d1));
  const __m256i s1 = _mm256_add_epi32(_mm256_unpacklo_epi32(d2, d3), _mm256_unpackhi_epi32(d2, d3));
  const __m256i v = _mm256_add_epi32(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
  return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

// One weight row against NX activation rows.
template <class N, int NX>
void tileNib(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  float acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = 0.0f;
  const int64_t nb = k / 32;
  int64_t b = 0;
  const auto blockLanes = [&](__m256i q, const Act& ai, int64_t bb) {
    return N::lanes(q, loadu(ai.qs() + bb * 32), _mm256_set1_epi32(ai.sums32()[bb]));
  };
  // Four blocks at a time: four lane sums in one reduction, then four FMAs in block order.
  for (; b + 4 <= nb; b += 4) {
    float dw[4];
    __m256i q[4];
    for (int t = 0; t < 4; t++) q[t] = nibbles<N>(w, b + t, &dw[t]);
    const __m128 dw4 = _mm_loadu_ps(dw);
    for (int i = 0; i < NX; i++) {
      __m256i d[4];
      for (int t = 0; t < 4; t++) d[t] = blockLanes(q[t], a[i], b + t);
      alignas(16) float f[4], sc[4];
      _mm_store_ps(f, _mm_cvtepi32_ps(hsum4Epi32(d[0], d[1], d[2], d[3])));
      _mm_store_ps(sc, _mm_mul_ps(dw4, _mm_loadu_ps(a[i].d() + b)));
      float ac = acc[i];
      for (int t = 0; t < 4; t++) ac = std::fma(f[t], sc[t], ac);
      acc[i] = ac;
    }
  }
  for (; b < nb; b++) {
    float dwt;
    const __m256i qt = nibbles<N>(w, b, &dwt);
    for (int i = 0; i < NX; i++) {
      const float v = static_cast<float>(hsumEpi32(blockLanes(qt, a[i], b)));
      acc[i] = std::fma(v, dwt * a[i].d()[b], acc[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = acc[i];
}

// m = 1: eight weight rows at a time, one f32 lane per row.
// tileNib<N, 1> spends most of its ops per block on one row's horizontal reduction, the f16
// scale (scalar convert, store, reload) and scalar FMAs. Here 8 consecutive weight rows share
// each activation block load; their 8 lane vectors are reduced together by a transpose-add
// (lane r = row r's exact block dot), the 8 row scales are widened by one vcvtph2ps, and one
// 8-lane FMA per block does every row's step acc = fma(float(dot), d_w * d_x, acc) in block
// order, so the result is bitwise that of tileNib<N, 1> (and llama.cpp's).
// Measured (Q4_0, H13, 1 thread, process CPU time, loaded machine; 5632x2048, m = 1):
//   weights in L2: the row tile 12.4 GB/s, this kernel 21 GB/s;
//   from DRAM (40 rotated copies): the row tile 11.7-11.9, this kernel without software
//   prefetch 7.0, with the next 8 rows prefetched to L2 15.6 (T0 hint: 10.7).
//   Whole tinyllama Q4_0 decode, 1 thread: 49 -> 40-41 ms CPU per token.
template <class N>
void gemv8Nib(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  using Block = typename N::Block;
  __m256 acc = _mm256_setzero_ps();  // lane r = weight row r
  const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const int64_t nb = k / 32;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(Block);
    // The next 8 rows (8 * 18 * nb bytes = 2.25 cache lines per block) into L2, 3 lines per
    // block: the hardware prefetcher does not follow 8 interleaved row streams well.
    const char* pf = reinterpret_cast<const char*>(next) + b * 192;
    _mm_prefetch(pf, _MM_HINT_T1);
    _mm_prefetch(pf + 64, _MM_HINT_T1);
    _mm_prefetch(pf + 128, _MM_HINT_T1);
    const __m256i xv = loadu(a.qs() + b * 32);
    const __m256i corr = _mm256_set1_epi32(a.sums32()[b]);
    __m256i d[8];
    __m128i head[8];  // the first 16 bytes of each row's block: f16 scale in word 0
    for (int r = 0; r < 8; r++) {
      const uint8_t* q = blk + r * wStride;
      head[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
      // nibbles 0..15: both 128-bit halves hold the 16 bytes, the high half shifted down by 4
      const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2)));
      d[r] = N::lanes(_mm256_and_si256(_mm256_srlv_epi32(raw, shift), mask), xv, corr);
    }
    const __m256 f = _mm256_cvtepi32_ps(hsum8Epi32(d));
    // word 0 of the 8 heads -> [d0, ..., d7] in 7 unpacks. Against 8 scalar loads + vpinsrw
    // (same binary, alternating runs): L2 18.0 -> 19.5 GB/s, DRAM 13.3-14.2 -> 13.7-15.0.
    const __m128i h01 = _mm_unpacklo_epi16(head[0], head[1]), h23 = _mm_unpacklo_epi16(head[2], head[3]);
    const __m128i h45 = _mm_unpacklo_epi16(head[4], head[5]), h67 = _mm_unpacklo_epi16(head[6], head[7]);
    const __m128i h0123 = _mm_unpacklo_epi32(h01, h23), h4567 = _mm_unpacklo_epi32(h45, h67);
    const __m256 dw = _mm256_cvtph_ps(_mm_unpacklo_epi64(h0123, h4567));
    acc = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, _mm256_set1_ps(a.d()[b])), acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace x86
}  // namespace flexinfer

#endif
