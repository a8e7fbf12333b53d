// Q8_0 weights against several activation rows (prompt processing, batches), AVX512-VNNI:
// register tiles of R weight rows x C activation rows (up to 4 x 4), 8 f32 lanes per output.
// The tile itself is generic over the 8-lane block types (matmul_x86_tiles8.h; Q5_0, Q4_1,
// Q5_1 use it too); what follows is its design and the measurements made on Q8_0.
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

#include "matmul_x86_tiles8.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_TILES8

namespace {

struct WQ8_0 {
  using Block = BlockQ8_0;
  static constexpr bool kMin = false;
  static __m256i quants(const Block& b) { return x86::loadu(b.qs); }
};

}  // namespace

MatmulKernel batchKernelQ8_0(int64_t m) { return m >= 2 ? x86::tiles8Kernel<WQ8_0> : nullptr; }

#else

MatmulKernel batchKernelQ8_0(int64_t) { return nullptr; }

#endif

}  // namespace flexinfer
