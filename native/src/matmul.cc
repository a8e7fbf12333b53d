// matmul driver (see matmul.h): activation packing into a per-thread scratch, splitting of
// the weight rows across the thread pool, cache blocking, and the JS binding with its checks.
//
// Kernel families (x86, -march=native build on the Zen 4 EPYC of this project):
//   m = 1 (generation)  row tiles (matmul_x86.cc): one weight row against the activation row;
//                       memory-bound. Q4_0, Q4_K, Q6_K (VNNI builds): 8 weight rows at a
//                       time (gemv8Q4_0 / gemv8Q4_K / gemv8Q6_K), next 8 rows prefetched to L2.
//   m >= 2 / 8 / 16 / 32 repacked 8-row panels (matmul_x86_repack*.cc): Q4_0 from m = 2, Q4_K
//                       from 8, Q5_K from 16, Q6_K from 32; row tiles of 1-2 weight rows x 4
//                       activation rows below that and for float weights. Q8_0 from m = 2:
//                       register tiles of 4 weight x 4 activation rows (matmul_x86_q8_0.cc).
// All families do the same f32 steps per dot, so results are row-invariant (matmul.h).
// Measured with scripts/bench-matmul.js (tinyllama-1.1b shapes; 1 thread, process CPU time,
// best of 5 ms trials, because the machine was shared with other jobs at load 10-15):
//   m = 1, GB/s of weights from DRAM, per core: f32 ~20, f16 ~19, bf16 ~19, q8_0 18-22,
//          q4_0 ~14 (row tiles; 8-row kernel 15-18, H13), q4_k ~16 (8-row
//          kernel ~22-24), q5_k ~15, q6_k ~18 (8-row ~19-21)
//   m = 128, GFLOP/s per core: q4_0 ~210, q8_0 ~140 (~88 before its 4x4 tiles), q4_k ~215, q5_k ~160 and q6_k ~155 (m = 64, with llama.cpp's
//          8-lane steps: matmul_x86_repack_k.cc),
//          f32 ~40, f16 ~70, bf16 ~72
//   whole tinyllama forward pass, matmuls only (--token, 1 thread, CPU time): Q4_0 21 tokens/s
//          at m = 1 (12.4 GB/s), 92 tokens/s at m = 128 (output matmul for all 128 rows included);
//          with the 8-row Q4_0 kernel the whole decode (all ops, 1 thread) takes ~40 ms CPU per
//          token (~25 tokens/s; llama.cpp ~42 ms incl. an 8-token prompt, H13);
//          Q4_K 21 and 97.
// (2 threads, wall time, same shared machine: q4_k m = 1 19 GB/s, q4_0 m = 128 up to 220; not
// representative while other jobs hold the cores.) llama.cpp on this machine for reference
// (figures given to us, not re-measured here): tinyllama Q4_0, 2 threads, 26 tokens/s
// generation (~16 GB/s of weights) and 163 tokens/s prompt (~2 * 1.03e9 * 163 = 340 GFLOP/s,
// ~170 per core, attention included).
#include "matmul.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "kernel_path.h"
#include "quants.h"
#include "registry.h"
#include "threadpool.h"
#include "type_traits.h"

namespace flexinfer {

namespace {

thread_local AlignedScratch tlsScratch;  // packed activations

// Cache blocking (bytes). A thread's chunk of weight rows is cut into panels of about
// kWeightPanelBytes, each dotted against the activations in blocks of about kActBlockBytes:
// both stay in the 1 MiB L2 of a Zen 4 core while the panel is reused across all m rows.
constexpr size_t kWeightPanelBytes = 48 * 1024;
constexpr size_t kActBlockBytes = 384 * 1024;
// Below this much work a call runs on the calling thread only (waking the pool costs ~us).
constexpr double kMinParallelBytes = 256 * 1024;
constexpr int64_t kRowUnit = 8;

}  // namespace

size_t rowBytes(GgmlType type, int64_t k) {
  const TypeTraits* t = typeTraits(static_cast<int>(type));
  return static_cast<size_t>(k / t->blockSize) * t->typeSize;
}

MatmulKernel selectKernel(GgmlType type, int64_t m) {
  const TypeTraits& traits = *typeTraits(static_cast<int>(type));
  MatmulKernel kernel = nullptr;
  if (!useScalarKernels()) {
    if (traits.k.batch) kernel = traits.k.batch(m);
    if (!kernel) kernel = traits.k.simd;
  }
  return kernel ? kernel : traits.k.scalar;
}

void matmul(float* out, const uint8_t* w, GgmlType type, int64_t n, int64_t k, const float* x, int64_t m) {
  if (n <= 0 || m <= 0) return;
  if (k <= 0) {
    std::fill(out, out + m * n, 0.0f);
    return;
  }
  const MatmulKernel kernel = selectKernel(type, m);

  // 1. Activations -> vec_dot_type, once per call.
  const ActLayout layout = actLayout(type, k);
  uint8_t* acts = tlsScratch.get(layout.rowBytes * static_cast<size_t>(m));
  if (m >= 8 && m * k >= (1 << 16)) {
    parallelFor(m, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; i++) packActivations(type, x + i * k, k, acts + i * layout.rowBytes, layout);
    });
  } else {
    for (int64_t i = 0; i < m; i++) packActivations(type, x + i * k, k, acts + i * layout.rowBytes, layout);
  }

  // 2. Weight rows across the pool, in units of kRowUnit rows (the repacked kernel's panel
  // height, so no thread gets a ragged panel in the middle of the matrix).
  const size_t wRow = rowBytes(type, k);
  const int64_t panelRows =
      std::max<int64_t>(1, static_cast<int64_t>(kWeightPanelBytes / wRow) / kRowUnit) * kRowUnit;
  const int64_t actRows =
      std::max<int64_t>(kTileRows, static_cast<int64_t>(kActBlockBytes / layout.rowBytes) / kTileRows * kTileRows);
  const double work = static_cast<double>(wRow) * static_cast<double>(n) * static_cast<double>(m);
  const int64_t units = (n + kRowUnit - 1) / kRowUnit;
  const int64_t grain = work < kMinParallelBytes ? units : std::max<int64_t>(1, panelRows / kRowUnit);

  parallelFor(units, grain, [&](int64_t ubegin, int64_t uend, int) {
    const int64_t begin = ubegin * kRowUnit;
    const int64_t end = std::min(n, uend * kRowUnit);
    for (int64_t p = begin; p < end; p += panelRows) {
      const int64_t rows = std::min(panelRows, end - p);
      for (int64_t xb = 0; xb < m; xb += actRows) {
        const ActRows a{acts + static_cast<size_t>(xb) * layout.rowBytes, layout.rowBytes, layout};
        kernel(w + static_cast<size_t>(p) * wRow, wRow, rows, a, std::min(actRows, m - xb), k, out + xb * n + p, n);
      }
    }
  });
}

}  // namespace flexinfer

// ---- JS binding ----

namespace {

using flexinfer::GgmlType;

// A non-negative integer argument (JS number), else TypeError / RangeError naming it.
int64_t intArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(env, std::string("matmul: ") + name + " must be a number");
  }
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw Napi::RangeError::New(env, std::string("matmul: ") + name + " must be a non-negative integer, got " +
                                         std::to_string(v));
  }
  return static_cast<int64_t>(v);
}

template <typename T>
Napi::TypedArrayOf<T> typedArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(info.Env(), std::string("matmul: ") + what);
  }
  return info[i].As<Napi::TypedArrayOf<T>>();
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = typedArg<float>(info, 0, napi_float32_array, "out must be a Float32Array");
  auto w = typedArg<uint8_t>(info, 1, napi_uint8_array, "w must be a Uint8Array (or Buffer)");
  const int64_t type = intArg(info, 2, "type");
  const int64_t n = intArg(info, 3, "n");
  const int64_t k = intArg(info, 4, "k");
  auto x = typedArg<float>(info, 5, napi_float32_array, "x must be a Float32Array");
  const int64_t m = intArg(info, 6, "m");

  const flexinfer::TypeTraits* traits = flexinfer::typeTraits(static_cast<int>(std::min<int64_t>(type, 1 << 20)));
  if (!traits) {
    throw Napi::TypeError::New(env, "matmul: weight type " + std::to_string(type) + " is not supported (supported: " +
                                        flexinfer::supportedTypeNames() + ")");
  }
  const int bs = traits->blockSize;
  const int64_t kLimit = int64_t(1) << 31;
  if (n >= kLimit || m >= kLimit) {
    throw Napi::RangeError::New(env, "matmul: n and m must each be below 2^31");
  }
  // Row length bound: keeps the per-thread weight panels of the repacked kernels (~12 bytes per
  // k) small enough that the pool threads never fail to allocate them (no model comes close).
  if (k > (int64_t(1) << 20)) {
    throw Napi::RangeError::New(env, "matmul: k = " + std::to_string(k) + " exceeds the supported row length 2^20");
  }
  if (k % bs != 0) {
    throw Napi::RangeError::New(env, "matmul: k = " + std::to_string(k) + " is not a multiple of the block size " +
                                         std::to_string(bs) + " of weight type " + std::to_string(type));
  }
  const size_t row = flexinfer::rowBytes(static_cast<GgmlType>(type), k);
  // n, k, m < 2^31 and row < 2^33: the products below fit in 64 bits (< 2^64 / 2).
  const double needW = static_cast<double>(row) * static_cast<double>(n);
  if (needW > static_cast<double>(w.ByteLength())) {
    throw Napi::RangeError::New(env, "matmul: w holds " + std::to_string(w.ByteLength()) + " bytes, but n = " +
                                         std::to_string(n) + " rows of " + std::to_string(row) + " bytes need " +
                                         std::to_string(static_cast<uint64_t>(needW)));
  }
  if (static_cast<double>(m) * static_cast<double>(k) > static_cast<double>(x.ElementLength())) {
    throw Napi::RangeError::New(env, "matmul: x has " + std::to_string(x.ElementLength()) + " elements, need m * k = " +
                                         std::to_string(m * k));
  }
  if (static_cast<double>(m) * static_cast<double>(n) > static_cast<double>(out.ElementLength())) {
    throw Napi::RangeError::New(env, "matmul: out has " + std::to_string(out.ElementLength()) +
                                         " elements, need m * n = " + std::to_string(m * n));
  }
  try {
    flexinfer::matmul(out.Data(), w.Data(), static_cast<GgmlType>(type), n, k, x.Data(), m);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "matmul: out of memory for the activation scratch (m * k too large?)");
  }
  return env.Undefined();
}

}  // namespace

FLEXINFER_MODULE(matmul) {
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("matmulSimdPath", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::String::New(info.Env(), flexinfer::simdPathName());
              }));
}
