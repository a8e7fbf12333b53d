// Register tiles of R weight rows x C activation rows (up to 4 x 4) for the 32-element block
// types whose dots keep llama.cpp's 8 f32 lanes per output (Q8_0, Q5_0, Q4_1, Q5_1): the batched
// kernel of each (matmul_x86_q8_0.cc, matmul_legacy.cc). AVX512-VNNI builds only.
//
// The f32 steps per output are those of the row tiles and of llama.cpp (matmul.h): lane l of
// block b holds the exact int32 dot of quants 4l..4l+3 (as signed values: Q5_0's q - 16),
//   acc_l = fma(d_w * d_x, float(dot_l), acc_l)   over the blocks in order,
// then one horizontal sum ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)); Q4_1 / Q5_1 add their
// min chain summs = fma(m_w, s_x, summs) per block. Only the integer dots (exact) and the way
// d_w * d_x (one f32 product) is formed differ, so every output is bitwise the row tile's,
// whatever m, R or C (row invariance).
//
// What makes it fast (see matmul_x86_q8_0.cc for the measurements, made on Q8_0):
// - Integer dots without the sign trick: vpdpbusd takes the activation as unsigned (x + 128,
//   one xor per activation row and block, shared by R weight rows) and the weight as signed;
//   each lane starts from the weight row's correction -128 * (sum of its 4 quants), one vpdpbusd
//   per weight row and block shared by C activation rows. sum((x + 128) q) - 128 sum(q) =
//   sum(x q) exactly (|lane| < 2^17).
// - The R x C scale products d_w * d_x come from C 4-wide multiplies and are broadcast from
//   memory into the FMA. So an output costs one vpdpbusd, one vcvtdq2ps and one FMA per block
//   (Q4_1 / Q5_1: plus a quarter of a 4-wide FMA for the min chains of the R rows).
// - R weight rows share each activation load: 4 + 4 vector loads feed 16 outputs.
// - The next R weight rows are prefetched while a tile runs.
#pragma once

#include "matmul_x86.h"

#if defined(FLEXINFER_MATMUL_AVX2) && defined(FLEXINFER_VNNI)
#define FLEXINFER_MATMUL_TILES8 1

#include <cstdint>
#include <cstring>

#include "quants.h"

namespace flexinfer {
namespace x86 {

constexpr int kTile8R = 4;  // weight rows per tile
constexpr int kTile8C = 4;  // activation rows per tile
// Blocks per chunk: the scales of a chunk are formed first, then its dots (see tile8).
constexpr int kTile8Chunk = 32;

// A weight type for tile8: `Block` its ggml block, `quants` its 32 quants as signed bytes in
// element order, `kMin`: whether it has an f16 min `m` after d (then the activation is Q8_1 and
// its f32 s per block sits at the layout's sumOff).
//   struct W { using Block = ...; static constexpr bool kMin; static __m256i quants(const Block&); };

// out[i * ldo + r] for weight rows r < R (row r at w + r * wStride) and activation rows i < C.
template <class W, int R, int C>
void tile8(const uint8_t* w, size_t wStride, const int8_t* const* xq, const float* const* xd, const float* const* xs,
           int64_t nb, float* out, int64_t ldo) {
  using Block = typename W::Block;
  __m256 acc[R][C];
  for (int r = 0; r < R; r++)
    for (int i = 0; i < C; i++) acc[r][i] = _mm256_setzero_ps();
  __m128 summs[C];  // lane r: weight row r's min chain (Q4_1 / Q5_1)
  for (int i = 0; i < C; i++) summs[i] = _mm_setzero_ps();
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i bias = _mm256_set1_epi32(4 * 128 * 128);
  // The rows after this tile's, for prefetches only (may lie past the matrix: never read).
  const char* next = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(w) + R * wStride);
  alignas(64) float s[kTile8Chunk][C][4];  // s[c][i][r] = d_w(r) * d_x(i) of block b0 + c
  alignas(64) float ms[kTile8Chunk][4];    // ms[c][r] = m_w(r) (Q4_1 / Q5_1)
  for (int64_t b0 = 0; b0 < nb; b0 += kTile8Chunk) {
    const int nc = static_cast<int>(nb - b0 < kTile8Chunk ? nb - b0 : kTile8Chunk);
    // 1. The chunk's scale products, ahead of its dots. Formed inside the block loop, their
    // chain (f16 loads, widening, multiply, store, broadcast load) held the FMAs back: Q8_0
    // standalone 4 x 4 tile on cached data, 1 thread, 130 -> 154 GFLOP/s with chunks.
    for (int c = 0; c < nc; c++) {
      const int64_t b = b0 + c;
      uint64_t dh = 0, mh = 0;  // the R f16 weight scales / mins (rows past R: 0)
      for (int r = 0; r < R; r++) {
        const uint8_t* blk = w + static_cast<size_t>(r) * wStride + static_cast<size_t>(b) * sizeof(Block);
        uint16_t h;
        std::memcpy(&h, blk, 2);
        dh |= static_cast<uint64_t>(h) << (16 * r);
        if constexpr (W::kMin) {
          std::memcpy(&h, blk + 2, 2);
          mh |= static_cast<uint64_t>(h) << (16 * r);
        }
      }
      const __m128 dw = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(dh)));
      for (int i = 0; i < C; i++) _mm_store_ps(s[c][i], _mm_mul_ps(dw, _mm_set1_ps(xd[i][b])));
      if constexpr (W::kMin) _mm_store_ps(ms[c], _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(mh))));
    }
    // Read back through a pointer the compiler cannot trace to s: the FMAs then broadcast
    // s[c][i][r] by their load ({1to8}), where GCC would otherwise pick lane r out of a
    // register with two shuffles per output.
    const float* sp = &s[0][0][0];
    asm("" : "+r"(sp));
    // 2. The dots.
    for (int c = 0; c < nc; c++, sp += C * 4) {
      const int64_t b = b0 + c;
      __m256i q[R], corr[R];
      for (int r = 0; r < R; r++) {
        const Block& blk = *reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * wStride + static_cast<size_t>(b) * sizeof(Block));
        q[r] = W::quants(blk);
        // In a register: vpdpbusd with its weight operand from memory (GCC's choice when it may)
        // measured slower for Q8_0 (standalone 4 x 4 tile: 109-121 vs 132-154 GFLOP/s).
        asm("" : "+v"(q[r]));
        // (q + 128) * -128 summed per lane, + 4 * 128 * 128 = -128 * sum(q): exact.
        corr[r] = _mm256_dpbusd_epi32(bias, _mm256_xor_si256(q[r], flip), flip);
      }
      {
        // The next R rows (contiguous, R * wStride bytes) over this tile's nb blocks, into L2
        // (see matmul_x86_q8_0.cc).
        const char* pf = next + static_cast<size_t>(b) * R * sizeof(Block);
        for (size_t l = 0; l < (R * sizeof(Block) + 63) / 64; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
      }
      for (int i = 0; i < C; i++) {
        const __m256i xu = _mm256_xor_si256(loadu(xq[i] + b * 32), flip);  // x + 128, unsigned
        for (int r = 0; r < R; r++) {
          const __m256i lanes = _mm256_dpbusd_epi32(corr[r], xu, q[r]);
          acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(sp[4 * i + r]), _mm256_cvtepi32_ps(lanes), acc[r][i]);
        }
        if constexpr (W::kMin) summs[i] = _mm_fmadd_ps(_mm_load_ps(ms[c]), _mm_set1_ps(xs[i][b]), summs[i]);
      }
    }
  }
  for (int i = 0; i < C; i++) {
    alignas(16) float sm[4];
    _mm_store_ps(sm, summs[i]);
    for (int r = 0; r < R; r++) out[i * ldo + r] = W::kMin ? hsum(acc[r][i]) + sm[r] : hsum(acc[r][i]);
  }
}

// A block decoded to signed bytes (with its f16 scale and min kept as they are), for weight
// types whose quants take work to unpack (Q5_0, Q4_1, Q5_1): decodeRows turns a panel of rows
// into these once, and the tiles of every activation tile then read them as Q8_0-like blocks.
struct DecodedBlock {
  uint16_t d;
  uint16_t m;
  int8_t qs[32];
};

template <bool Min>
struct WDecoded {
  using Block = DecodedBlock;
  static constexpr bool kMin = Min;
  static __m256i quants(const Block& b) { return loadu(b.qs); }
};

thread_local inline AlignedScratch tlsDecoded;

// Activation tiles outer (C rows, ~9 KiB at k = 2048, stay in L1), weight rows inner.
template <class W>
void tiles8Kernel(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
                  int64_t ldo);

// Decodes rows [0, nw) once (W::quants per block), then runs the tiles over the decoded rows.
// Measured (Q5_0, 1 thread, n = 5632, k = 2048, m = 128, loaded machine, CPU time): ~97 GFLOP/s
// decoding inside every tile -> see matmul_legacy.cc for the figure with this.
template <class W>
void decodedTilesKernel(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k,
                        float* out, int64_t ldo) {
  using Block = typename W::Block;
  const int64_t nb = k / 32;
  const size_t stride = static_cast<size_t>(nb) * sizeof(DecodedBlock);
  uint8_t* dec = tlsDecoded.get(stride * static_cast<size_t>(nw));
  for (int64_t r = 0; r < nw; r++) {
    const Block* src = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * wStride);
    DecodedBlock* dst = reinterpret_cast<DecodedBlock*>(dec + static_cast<size_t>(r) * stride);
    for (int64_t b = 0; b < nb; b++) {
      std::memcpy(&dst[b].d, &src[b], W::kMin ? 4 : 2);  // d (and m) lead every legacy block
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[b].qs), W::quants(src[b]));
    }
  }
  tiles8Kernel<WDecoded<W::kMin>>(dec, stride, nw, a, nx, k, out, ldo);
}

template <class W>
void tiles8Kernel(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k, float* out,
                  int64_t ldo) {
  using TileFn = void (*)(const uint8_t*, size_t, const int8_t* const*, const float* const*, const float* const*, int64_t,
                          float*, int64_t);
  static constexpr TileFn kTiles[kTile8R][kTile8C] = {
      {tile8<W, 1, 1>, tile8<W, 1, 2>, tile8<W, 1, 3>, tile8<W, 1, 4>},
      {tile8<W, 2, 1>, tile8<W, 2, 2>, tile8<W, 2, 3>, tile8<W, 2, 4>},
      {tile8<W, 3, 1>, tile8<W, 3, 2>, tile8<W, 3, 3>, tile8<W, 3, 4>},
      {tile8<W, 4, 1>, tile8<W, 4, 2>, tile8<W, 4, 3>, tile8<W, 4, 4>},
  };
  const int64_t nb = k / 32;
  for (int64_t i = 0; i < nx; i += kTile8C) {
    const int cnt = static_cast<int>(nx - i < kTile8C ? nx - i : kTile8C);
    const int8_t* xq[kTile8C];
    const float* xd[kTile8C];
    const float* xs[kTile8C];
    for (int t = 0; t < cnt; t++) {
      const uint8_t* p = a.base + static_cast<size_t>(i + t) * a.stride;
      xq[t] = reinterpret_cast<const int8_t*>(p + a.layout.qsOff);
      xd[t] = reinterpret_cast<const float*>(p + a.layout.dOff);
      xs[t] = reinterpret_cast<const float*>(p + a.layout.sumOff);
    }
    for (int64_t r = 0; r < nw; r += kTile8R) {
      const int rows = static_cast<int>(nw - r < kTile8R ? nw - r : kTile8R);
      kTiles[rows - 1][cnt - 1](w + static_cast<size_t>(r) * wStride, wStride, xq, xd, xs, nb, out + i * ldo + r, ldo);
    }
  }
}

}  // namespace x86
}  // namespace flexinfer

#endif
