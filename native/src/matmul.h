// Matrix multiplication out[m, n] = x[m, k] · W[n, k]^T over ggml weight types.
//
// How a call runs (matmul.cc):
//   1. x is converted once to the weight type's "vec_dot_type" (as llama.cpp's CPU backend
//      does): f32 stays f32, f16/bf16 round x to f16/bf16, Q4_0/Q8_0 quantize it to Q8_0,
//      the K-quants to Q8_K. The converted rows live in a packed activation buffer (below).
//   2. The n weight rows are split across the thread pool in units of 8 rows; each thread
//      streams its rows once, in panels of ~48 KiB, and dots each panel against all m
//      activation rows, kTileRows at a time, so unpacked weights are reused from registers and
//      cache. Row tiles (one weight row, floats two, against up to 4 activation rows) serve
//      m = 1; quantized types switch to repacked 8-row panels from a few rows on (matmul.cc).
//
// Packed activation rows (our own layout, numerically identical to ggml's blocks): the int8
// quants of a row are contiguous (SIMD loads span blocks), followed by the per-block scales
// as f32 (for Q8_0: the f16-rounded scale, widened) and per-block sums of the quants
// (Q8_0: int32 per 32, pre-scaled into the lane correction of the SIMD kernels, see
// packQ8_0; Q8_K: int16 per 16, ggml's bsums). Each part starts 64-byte aligned.
//
// Row invariance: out[i, r] depends only on x row i and W row r, never on m, on the other rows
// of the batch, or on the thread count (bitwise, within one build and kernel path). Every kernel
// family of a type does the same f32 steps per dot:
//   Q4_0, Q4_K: exact int32 block (super-block) dots, then acc = fma(float(dot), d_w * d_x, acc)
//     over blocks in order (Q4_K: the min term in a second accumulator, subtracted at the end);
//   Q8_0: 8 accumulator lanes, lane l taking the dot of quants 4l..4l+3 of every block, then one
//     horizontal sum ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) ("hsum");
//   Q5_K, Q6_K: per super-block 8 exact int32 lanes, lane l = sum over the 8 groups of 32 quants
//     of sub-block scale * dot(quants 4l..4l+3) (quants unsigned; Q6_K then takes its -32 off
//     lane l as 32 * (sc[2l] * bsums[2l] + sc[2l+1] * bsums[2l+1])), acc_l = fma(d_w * d_x,
//     float(lane l), acc_l), hsum at the end; Q5_K adds a scalar chain
//     summs = fma(-(d_x * dmin_w), float(sum_j m_j * (bsums[2j] + bsums[2j+1])), summs);
//   float weights: even / odd 8-element chunks into two accumulators, hsum of their sum, scalar
//     tail.
// The scalar path is invariant too (one dot function for every m); it is bitwise equal to the
// SIMD path for Q4_0, Q8_0, Q5_K and Q6_K, only in summation order for the others. So a
// sequence gets the same logits alone or batched with others (the engine relies on it for
// sampled generation).
//
// Q4_0, Q8_0, Q5_K, Q6_K and Q4_K (m < 4) are also bitwise equal to llama.cpp's x86 CPU backend
// (REPACK buffer on; src/native/matmul-llamacpp.test.ts): these steps are the ones of its q4_0x8 /
// q4_Kx8 GEMV, of its Q8_0 tinyBLAS / vec_dot, and of ggml_vec_dot_q5_K_q8_K / q6_K_q8_K (AVX2
// path; x86 has no repacked Q5_K / Q6_K, so every m runs them; the Q6_K form is the one with the
// bsums correction per lane, in the libggml node-llama-cpp 3.21.1 ships, and its Q5_K summs
// chain is fused there: both checked against that library). Both engines re-quantize every
// matmul input to 8 bits, so a last-ulp difference flips activation quanta downstream and grows
// to ~1% of the logits over a few layers; equal steps keep quantized models within f32 noise of
// llama.cpp. (llama.cpp's q4_Kx8 GEMM, used for rows in groups of 4, adds in f32 per 64 quants
// and so differs from its own GEMV; we stay batch-invariant and follow the GEMV.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace flexinfer {

// ggml type ids handled by matmul.
enum class GgmlType : int {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

// Activation rows dotted at once against one weight row.
constexpr int kTileRows = 4;

inline size_t alignUp64(size_t v) { return (v + 63) & ~size_t(63); }

// 64-byte aligned buffer that grows on demand and is kept (one per thread as thread_local: a
// forward pass calls matmul hundreds of times with the same few sizes).
class AlignedScratch {
 public:
  uint8_t* get(size_t bytes) {
    if (bytes > capacity_) {
      const size_t cap = alignUp64(bytes > capacity_ + capacity_ / 2 ? bytes : capacity_ + capacity_ / 2);
      data_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, cap)));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
      capacity_ = cap;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t capacity_ = 0;
};

// Where the parts of one packed activation row sit, and its stride.
struct ActLayout {
  size_t qsOff = 0;    // int8 quants [k] (f32 [k] for the float types)
  size_t dOff = 0;     // f32 scale per block
  size_t sumOff = 0;   // Q8_0: int32 lane correction per 32; Q8_K: int16 bsums per 16
  size_t rowBytes = 0; // stride between rows, multiple of 64
};

ActLayout actLayout(GgmlType type, int64_t k);

// One packed activation view: `rows` rows starting at `base`, `stride` bytes apart.
struct ActRows {
  const uint8_t* base;
  size_t stride;
  ActLayout layout;
};

// Converts one row x[k] into a packed row for `type`. One path for both kernel paths: it is
// O(m * k) against the O(m * n * k) dots, and one implementation means the scalar and SIMD
// paths see identical activations. F16 / BF16 rows are stored as f32 values already rounded to
// f16 / bf16 (exact), so kernels widen only the weights.
void packActivations(GgmlType type, const float* x, int64_t k, uint8_t* dst, const ActLayout& l);

// A kernel computes, for weight rows [0, nw) (row r at w + r * wStride) and activation rows
// [0, nx) of `a` (any nx; kernels take kTileRows activation rows per weight row at a time),
//   out[x * ldo + r] = dot(W row r, activation row x).
using MatmulKernel = void (*)(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& a, int64_t nx,
                              int64_t k, float* out, int64_t ldo);

// Kernel for one of the first types (F32..Q6_K; nullptr if none on this path): the providers
// type_traits.cc builds the type table from. The SIMD table may be empty in portable builds
// without AVX2; matmul falls back to the scalar kernel then. Other types: type_traits.h.
MatmulKernel scalarKernel(GgmlType type);
MatmulKernel simdKernel(GgmlType type);
// Kernel for several activation rows (prompt processing, batches) that repacks weight rows
// in panels of 8 (matmul_x86_repack*.cc); nullptr where the build or type has none, or where m
// is below the type's break-even. Break-even measured per type (1 thread, n = 512, k = 2048,
// weights in L2; GFLOP/s row tiles -> repacked): Q4_0 m=2 76 -> 82, m=4 92 -> 127;
// Q4_K m=6 104 -> 103, m=8 110 -> 121. Q5_K / Q6_K (llama.cpp's lane steps, both families at
// 2 multiply ops per dword; 1 thread, n = k = 2048, CPU time, panels with prefetch): Q5_K
// m=8 104-106 -> 104-105, m=16 104-105 -> 120, m=32 103-105 -> 137-140; Q6_K m=16 111-120 ->
// 117-120, m=32 112-119 -> 127-131, m=64 113-121 -> 145-153.
MatmulKernel repackedKernel(GgmlType type, int64_t m);  // Q4_0, IQ4_NL, then the K-quants
MatmulKernel repackedKernelK(GgmlType type, int64_t m);  // the K-quant half
// Q8_0 register tiles of up to 4 weight x 4 activation rows for m >= 2 (matmul_x86_q8_0.cc);
// nullptr below m = 2 or without AVX512-VNNI.
MatmulKernel batchKernelQ8_0(int64_t m);

// The kernel matmul runs for m activation rows of `type` on the current kernel path (the
// batch kernels from their break-even m, else row tiles; scalar on the scalar path).
MatmulKernel selectKernel(GgmlType type, int64_t m);

// ggml_mul_mat_id over experts (moe.cc): pairs [starts[g], starts[g + 1]) multiply x rows
// inRows[p] by ws[g] (n rows of k) into out rows outRows[p] (p when outRows is null).
void matmulId(float* out, const std::vector<const uint8_t*>& ws, GgmlType type, int64_t n, int64_t k, const float* x,
              const int32_t* inRows, const int32_t* outRows, const int32_t* starts);

// Name of the SIMD path compiled in: "avx2+avx512vnni", "avx2", or "none".
const char* simdPathName();

// out[m, n] = x[m, k] · W[n, k]^T, W in ggml layout of `type` (rows of ggmlRowBytes bytes).
// Sizes must be valid (checked by the JS binding); runs on the thread pool.
void matmul(float* out, const uint8_t* w, GgmlType type, int64_t n, int64_t k, const float* x, int64_t m);

// Bytes of one row of k elements of `type` (k a multiple of the block size; type supported).
size_t rowBytes(GgmlType type, int64_t k);

}  // namespace flexinfer
