// Q8_0 weights against several activation rows (prompt processing, batches), AVX512-VNNI:
// register tiles of R weight rows x C activation rows (up to 4 x 4), 8 f32 lanes per output.
//
// The f32 steps per output are those of tileQ8_0 (matmul_x86.cc) and of llama.cpp's Q8_0 paths
// (matmul.h): lane l of block b holds the exact int32 dot of bytes 4l..4l+3,
//   acc_l = fma(d_w * d_x, float(dot_l), acc_l)   over the blocks in order,
// then one horizontal sum ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Only the integer
// dots (exact) and the way d_w * d_x (one f32 product) is formed differ, so every output is
// bitwise the row tile's, whatever m, R or C (row invariance).
//
// What makes it faster than tileQ8_0 (1 weight row x 4 activation rows):
// - Integer dots without the sign trick: vpdpbusd takes the activation as unsigned (x + 128,
//   one xor per activation row and block, shared by R weight rows) and the weight as signed;
//   each lane starts from the weight row's correction -128 * (sum of its 4 quants), one vpdpbusd
//   per weight row and block shared by C activation rows. sum((x + 128) q) - 128 sum(q) =
//   sum(x q) exactly (|lane| < 2^17). tileQ8_0 spends two vpsignb per output instead.
// - The R x C scale products d_w * d_x come from C 4-wide multiplies and are broadcast from
//   memory into the FMA, where tileQ8_0 does a scalar multiply and a register broadcast per
//   output. So an output costs one vpdpbusd, one vcvtdq2ps and one FMA per block.
// - R weight rows share each activation load: 4 + 4 vector loads feed 16 outputs.
// - The scale products of a chunk of blocks are formed before its dots (see tile).
// - The next R weight rows are prefetched while a tile runs: the four interleaved row streams
//   of a tile defeat the hardware prefetcher, which the one-row tiles did not (see tile).
// What bounds it: per output and block one vpdpbusd and one FMA, both on Zen 4's two FP0/FP1
// pipes (measured: mixed vpdpbusd + FMA issue at 2 per cycle in all), plus 4 correction
// vpdpbusd per 16 outputs: ~1.25 cycles per output and block; the kernel runs at ~1.45
// (standalone, taking the clock as ~3.5 GHz: a dependent add loop ran at 0.3 ns per step).
// Tried and dropped: 4 x 5 tiles (+3% standalone, none in matmul), lane broadcasts of the
// scales by vpermps instead of broadcast loads (-17%), 2 x 6 / 3 x 4 / 4 x 3 tiles (slower).
//
// Measured (scripts/bench-q8_0.js, --root a build of the commit before for "before"; 1 thread,
// process CPU time, median of 7; the machine was shared with another helper's builds and
// benchmarks, so +-5%, more in single runs), GFLOP/s:
//                       m = 8   m = 64   m = 128   (m = 1: row tiles, unchanged, ~56 = 30 GB/s)
//   2048 x 2048 before     87       88        87
//               after     137      141       140
//   5632 x 2048 before     82       88        88
//               after     137      136       139
// With the weights from DRAM (8 rotated copies of 5632 x 2048, ~96 MB), the small batches of
// several decoding sequences:
//                       m = 2    m = 4    m = 8    m = 16
//               before  52-61    69-74    71-77    78-83
//   no prefetch            32       54       78      101
//   next R rows, T0     55-63    66-88   98-103  107-119
//   next R rows, T1     58-63   98-100  113-117  122-128   (kept; 2 tiles ahead was worse)
// Whole tinyllama-1.1b forward pass, matmuls only (scripts/bench-matmul.js --token --types q8_0
// --threads 1 --cpu), m = 128: 42.1 -> 67.0 tokens/s. End to end (node bin/flexinfer.js bench
// on a synth tinyllama-1.1b Q8_0, 2 threads, 128-token prompt, median of 3, two alternating
// before/after rounds on a quiet moment of the machine): prompt 83.4 / 82.6 -> 130.1 / 122.0
// tokens/s, llama.cpp in the same runs 97.5-103.8: 0.81-0.85x -> 1.20-1.25x (a third round
// after the prefetch below: 84.5 / 83.1 -> 115.1 / 120.2). 512-token prompt, one round:
// 81.3 -> 121.1 tokens/s, 0.88x -> 1.32x llama.cpp (91.5-92.9).
// (Q4_0's repacked panels: ~235 at m = 128; they need one int32 lane per weight row, which the
// Q8_0 steps, 8 lanes per output, do not allow.)
#include "matmul.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define FLEXINFER_MATMUL_Q8_0_TILES 1
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

#include "quants.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_Q8_0_TILES

namespace {

constexpr int kR = 4;  // weight rows per tile
constexpr int kC = 4;  // activation rows per tile

inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// The horizontal sum of tileQ8_0 / llama.cpp's hsum_float_8, same order.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Blocks per chunk: the scales of a chunk are formed first, then its dots (see tile).
constexpr int kChunk = 32;

// out[i * ldo + r] for weight rows r < R (row r at w + r * wStride) and activation rows i < C.
template <int R, int C>
void tile(const uint8_t* w, size_t wStride, const int8_t* const* xq, const float* const* xd, int64_t nb, float* out,
          int64_t ldo) {
  __m256 acc[R][C];
  for (int r = 0; r < R; r++)
    for (int i = 0; i < C; i++) acc[r][i] = _mm256_setzero_ps();
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i bias = _mm256_set1_epi32(4 * 128 * 128);
  // The rows after this tile's, for prefetches only (may lie past the matrix: never read).
  const char* next = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(w) + R * wStride);
  alignas(64) float s[kChunk][C][4];  // s[c][i][r] = d_w(r) * d_x(i) of block b0 + c, f32 as in tileQ8_0
  for (int64_t b0 = 0; b0 < nb; b0 += kChunk) {
    const int nc = static_cast<int>(nb - b0 < kChunk ? nb - b0 : kChunk);
    // 1. The chunk's scale products, ahead of its dots. Formed inside the block loop, their
    // chain (f16 loads, widening, multiply, store, broadcast load) apparently held the FMAs
    // back: standalone 4 x 4 tile on cached data, 1 thread, 130 -> 154 GFLOP/s with chunks
    // (16 to 64 blocks per chunk within 1%).
    for (int c = 0; c < nc; c++) {
      const int64_t b = b0 + c;
      uint64_t dh = 0;  // the R f16 weight scales (rows past R: 0)
      for (int r = 0; r < R; r++) {
        uint16_t h;
        std::memcpy(&h, w + static_cast<size_t>(r) * wStride + static_cast<size_t>(b) * sizeof(BlockQ8_0), 2);
        dh |= static_cast<uint64_t>(h) << (16 * r);
      }
      const __m128 dw = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(dh)));
      for (int i = 0; i < C; i++) _mm_store_ps(s[c][i], _mm_mul_ps(dw, _mm_set1_ps(xd[i][b])));
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
        q[r] = loadu(w + static_cast<size_t>(r) * wStride + static_cast<size_t>(b) * sizeof(BlockQ8_0) + 2);
        // In a register: vpdpbusd with its weight operand from memory (GCC's choice when
        // it may) measured slower, also with the weights repacked aligned (standalone 4 x 4
        // tile: 109-121 vs 132-154 GFLOP/s).
        asm("" : "+v"(q[r]));
        // (q + 128) * -128 summed per lane, + 4 * 128 * 128 = -128 * sum(q): exact. Loading it
        // instead from a table made once per call (or interleaved with the quants in a repacked
        // panel) was no faster, standalone 149-155 vs 153 GFLOP/s; without any correction work
        // the tile would run at ~168, so this is the one overhead left that would pay to remove.
        corr[r] = _mm256_dpbusd_epi32(bias, _mm256_xor_si256(q[r], flip), flip);
      }
      {
        // The next R rows (contiguous, R * wStride bytes) over this tile's nb blocks, 3 lines
        // per block: kR * 34 = 136 bytes, into L2 (better than L1, table above). Only the
        // first activation tile needs it (then the lines are cached), but skipping it for the
        // others measured no faster. Prefetching the same rows a chunk or more ahead instead
        // did not help (m = 2 from DRAM: 32 GFLOP/s either way).
        const char* pf = next + static_cast<size_t>(b) * kR * sizeof(BlockQ8_0);
        _mm_prefetch(pf, _MM_HINT_T1);
        _mm_prefetch(pf + 64, _MM_HINT_T1);
        _mm_prefetch(pf + 128, _MM_HINT_T1);
      }
      for (int i = 0; i < C; i++) {
        const __m256i xu = _mm256_xor_si256(loadu(xq[i] + b * QK8_0), flip);  // x + 128, unsigned
        for (int r = 0; r < R; r++) {
          const __m256i lanes = _mm256_dpbusd_epi32(corr[r], xu, q[r]);
          acc[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(sp[4 * i + r]), _mm256_cvtepi32_ps(lanes), acc[r][i]);
        }
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int i = 0; i < C; i++) out[i * ldo + r] = hsum(acc[r][i]);
}

using TileFn = void (*)(const uint8_t*, size_t, const int8_t* const*, const float* const*, int64_t, float*, int64_t);

template <int R>
constexpr TileFn kRow[kC] = {tile<R, 1>, tile<R, 2>, tile<R, 3>, tile<R, 4>};
const TileFn* const kTiles[kR] = {kRow<1>, kRow<2>, kRow<3>, kRow<4>};

// Activation tiles outer (C rows, ~9 KiB at k = 2048, stay in L1), weight rows inner.
void kernelQ8_0Tiles(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx, int64_t k,
                     float* out, int64_t ldo) {
  const int64_t nb = k / QK8_0;
  for (int64_t i = 0; i < nx; i += kC) {
    const int cnt = static_cast<int>(nx - i < kC ? nx - i : kC);
    const int8_t* xq[kC];
    const float* xd[kC];
    for (int t = 0; t < cnt; t++) {
      const uint8_t* p = a.base + static_cast<size_t>(i + t) * a.stride;
      xq[t] = reinterpret_cast<const int8_t*>(p + a.layout.qsOff);
      xd[t] = reinterpret_cast<const float*>(p + a.layout.dOff);
    }
    for (int64_t r = 0; r < nw; r += kR) {
      const int rows = static_cast<int>(nw - r < kR ? nw - r : kR);
      kTiles[rows - 1][cnt - 1](w + static_cast<size_t>(r) * wStride, wStride, xq, xd, nb, out + i * ldo + r, ldo);
    }
  }
}

}  // namespace

MatmulKernel batchKernelQ8_0(int64_t m) { return m >= 2 ? kernelQ8_0Tiles : nullptr; }

#else

MatmulKernel batchKernelQ8_0(int64_t) { return nullptr; }

#endif

}  // namespace flexinfer
