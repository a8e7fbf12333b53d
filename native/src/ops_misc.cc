// Row-wise and element-wise kernels of the forward pass: RMS norm, SwiGLU gate, residual add,
// bias add, softmax, argmax, f16 <-> f32 array conversion.
//
// Numerics follow llama.cpp's CPU backend (ggml-cpu ops.cpp / vec.cpp) so logits agree:
// - rms_norm: sum of x*x (each product rounded to f32) accumulated in double
//   (ggml_float), mean = (float)(sum / n), scale = 1/sqrtf(mean + eps), y = x * scale; the
//   weight is a separate ggml_mul: out = y * w.
// - swiglu: silu(x) = x / (1 + exp(-x)) in f32, times the up projection.
// - softmax: exp(x - max) with the sum in double, then scaled by (float)(1 / sum).
#include <cmath>
#include <limits>

#include "ops_common.h"
#include "registry.h"
#include "threadpool.h"

namespace flexinfer {
namespace ops {

// Below this many elements a kernel runs on the calling thread: waking the pool costs more.
static constexpr int64_t kParallelMinElements = 1 << 15;

static void runRows(int64_t rows, int64_t rowElements, const std::function<void(int64_t, int64_t)>& fn) {
  if (rows > 1 && rows * rowElements >= kParallelMinElements) {
    parallelFor(rows, 1, [&](int64_t b, int64_t e, int) { fn(b, e); });
  } else {
    fn(0, rows);
  }
}

static void runElements(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n >= 2 * kParallelMinElements) {
    // Chunks are multiples of 64 elements so SIMD bodies see full vectors until the tail.
    int64_t chunks = (n + 4095) / 4096;
    parallelFor(chunks, 1, [&](int64_t b, int64_t e, int) { fn(b * 4096, std::min(n, e * 4096)); });
  } else {
    fn(0, n);
  }
}

// ---- rms norm ----

static void rmsNormRow(float* out, const float* x, const float* w, int64_t dim, float eps, bool scalar) {
  // Sum of squares: one f32 product per element, added in order into a double, exactly as
  // ggml's loop (a lane-parallel double sum would differ in the last bits of the mean now
  // and then; the ordered sum costs ~1 ns per element, negligible next to the matmuls).
  double sum = 0.0;
  for (int64_t i = 0; i < dim; i++) {
    float sq = x[i] * x[i];
    sum += static_cast<double>(sq);
  }
  int64_t i = 0;
  const float mean = static_cast<float>(sum / static_cast<double>(dim));
  const float scale = 1.0f / std::sqrt(mean + eps);
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    __m512 s = _mm512_set1_ps(scale);
    for (; i + 16 <= dim; i += 16)
      _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), s), _mm512_loadu_ps(w + i)));
  }
#endif
  for (; i < dim; i++) {
    float y = x[i] * scale;
    out[i] = y * w[i];
  }
}

// rmsNorm(out, x, weight, m, dim, eps)
static Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  const char* fn = "rmsNorm";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto x = argArray<float>(info, 1, fn, "x");
  auto w = argArray<float>(info, 2, fn, "weight");
  int64_t m = argInt(info, 3, fn, "m");
  int64_t dim = argInt(info, 4, fn, "dim");
  float eps = static_cast<float>(argNumber(info, 5, fn, "eps"));
  if (dim == 0) throwRange(env, fn, "dim must be at least 1");
  if (!(eps >= 0)) throwRange(env, fn, "eps must be >= 0");
  requireLength(env, fn, "x", x, uint64_t(m) * dim, "m * dim");
  requireLength(env, fn, "out", out, uint64_t(m) * dim, "m * dim");
  requireLength(env, fn, "weight", w, uint64_t(dim), "dim");
  const bool scalar = useScalarKernels();
  runRows(m, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) rmsNormRow(out.data + r * dim, x.data + r * dim, w.data, dim, eps, scalar);
  });
  return env.Undefined();
}

// ---- swiglu ----

static void siluMulRange(float* out, const float* g, const float* u, int64_t begin, int64_t end, bool scalar) {
  int64_t i = begin;
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= end; i += 16) {
      __m512 x = _mm512_loadu_ps(g + i);
      __m512 e = expPs(_mm512_sub_ps(_mm512_setzero_ps(), x));
      __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
      _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
  }
#endif
  for (; i < end; i++) {
    float x = g[i];
    float s = x / (1.0f + std::exp(-x));
    out[i] = s * u[i];
  }
}

// Element-wise binary ops (out, a, b, n): checks the arguments, then runs range(out, a, b,
// begin, end, scalar) over [0, n) on the pool.
using BinaryRange = void (*)(float*, const float*, const float*, int64_t, int64_t, bool);
static Napi::Value binaryElementwise(const Napi::CallbackInfo& info, const char* fn, const char* aName, const char* bName, BinaryRange range) {
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto a = argArray<float>(info, 1, fn, aName);
  auto b = argArray<float>(info, 2, fn, bName);
  int64_t n = argInt(info, 3, fn, "n");
  requireLength(env, fn, "out", out, n, "n");
  requireLength(env, fn, aName, a, n, "n");
  requireLength(env, fn, bName, b, n, "n");
  const bool scalar = useScalarKernels();
  runElements(n, [&](int64_t begin, int64_t end) { range(out.data, a.data, b.data, begin, end, scalar); });
  return env.Undefined();
}

// siluMul(out, gate, up, n[, rowLength]): n / rowLength rows. llama.cpp's ggml_vec_swiglu_f32 runs
// its 16-lane body per row and the scalar silu on each row's last rowLength % 16 elements, so
// rows whose length is not a multiple of 16 (a 168-wide FFN) run row by row to match it; the
// other rows are one flat range (every row boundary falls on a 16-element step).
static Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  const char* fn = "siluMul";
  if (info.Length() <= 4 || info[4].IsUndefined()) return binaryElementwise(info, fn, "gate", "up", siluMulRange);
  Napi::Env env = info.Env();
  const int64_t n = argInt(info, 3, fn, "n");
  const int64_t rowLength = argInt(info, 4, fn, "rowLength");
  if (rowLength == 0 || n % rowLength != 0) throwRange(env, fn, "rowLength must be at least 1 and divide n");
  if (rowLength % 16 == 0) return binaryElementwise(info, fn, "gate", "up", siluMulRange);
  auto out = argArray<float>(info, 0, fn, "out");
  auto g = argArray<float>(info, 1, fn, "gate");
  auto u = argArray<float>(info, 2, fn, "up");
  requireLength(env, fn, "out", out, n, "n");
  requireLength(env, fn, "gate", g, n, "n");
  requireLength(env, fn, "up", u, n, "n");
  const bool scalar = useScalarKernels();
  runRows(n / rowLength, rowLength, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const int64_t o = r * rowLength;
      siluMulRange(out.data + o, g.data + o, u.data + o, 0, rowLength, scalar);
    }
  });
  return env.Undefined();
}

// ---- add / addBias ----

static void addRange(float* out, const float* a, const float* b, int64_t begin, int64_t end, bool scalar) {
  int64_t i = begin;
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    for (; i + 16 <= end; i += 16)
      _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  }
#endif
  for (; i < end; i++) out[i] = a[i] + b[i];
}

// add(out, a, b, n)
static Napi::Value Add(const Napi::CallbackInfo& info) { return binaryElementwise(info, "add", "a", "b", addRange); }

// addBias(x, bias, m, n): x[i, :] += bias
static Napi::Value AddBias(const Napi::CallbackInfo& info) {
  const char* fn = "addBias";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  auto bias = argArray<float>(info, 1, fn, "bias");
  int64_t m = argInt(info, 2, fn, "m");
  int64_t n = argInt(info, 3, fn, "n");
  requireLength(env, fn, "x", x, uint64_t(m) * n, "m * n");
  requireLength(env, fn, "bias", bias, n, "n");
  const bool scalar = useScalarKernels();
  runRows(m, n, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) addRange(x.data + r * n, x.data + r * n, bias.data, 0, n, scalar);
  });
  return env.Undefined();
}

// ---- softmax / argmax ----

// In-place softmax of x[0, n) as ggml_compute_forward_soft_max_f32 (without mask and scale).
void softmaxRow(float* x, int64_t n, bool scalar) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; i++) max = std::fmax(max, x[i]);
  double sum = 0.0;
  int64_t i = 0;
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    const __m512 vmax = _mm512_set1_ps(max);
    for (; i + 16 <= n; i += 16) {
      __m512 e = expPs(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
      _mm512_storeu_ps(x + i, e);
      sum += static_cast<double>(_mm512_reduce_add_ps(e));
    }
  }
#endif
  for (; i < n; i++) {
    float e = std::exp(x[i] - max);
    sum += static_cast<double>(e);
    x[i] = e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (i = 0; i < n; i++) x[i] *= inv;
}

static int64_t offsetArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  return argInt(info, i, fn, "offset");
}

// softmax(x, n, offset)
static Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const char* fn = "softmax";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  int64_t n = argInt(info, 1, fn, "n");
  int64_t off = offsetArg(info, 2, fn);
  if (n == 0) throwRange(env, fn, "n must be at least 1");
  requireLength(env, fn, "x", x, uint64_t(off) + n, "offset + n");
  softmaxRow(x.data + off, n, useScalarKernels());
  return env.Undefined();
}

// argmax(x, n, offset): index (relative to offset) of the first largest value; NaN never wins.
static Napi::Value Argmax(const Napi::CallbackInfo& info) {
  const char* fn = "argmax";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  int64_t n = argInt(info, 1, fn, "n");
  int64_t off = offsetArg(info, 2, fn);
  if (n == 0) throwRange(env, fn, "n must be at least 1");
  requireLength(env, fn, "x", x, uint64_t(off) + n, "offset + n");
  const float* p = x.data + off;
  int64_t best = 0;
  float bestValue = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (int64_t i = 0; i < n; i++) {
    if (std::isnan(p[i])) continue;
    if (!found || p[i] > bestValue) {
      bestValue = p[i];
      best = i;
      found = true;
    }
  }
  return Napi::Number::New(env, static_cast<double>(best));
}

// ---- f16 arrays ----

// Array conversion (dst, src, n): checks the arguments, then converts [0, n) on the pool.
template <typename Dst, typename Src>
static Napi::Value convertArray(const Napi::CallbackInfo& info, const char* fn, void (*row)(Dst*, const Src*, int64_t, bool)) {
  Napi::Env env = info.Env();
  auto dst = argArray<Dst>(info, 0, fn, "dst");
  auto src = argArray<Src>(info, 1, fn, "src");
  int64_t n = argInt(info, 2, fn, "n");
  requireLength(env, fn, "dst", dst, n, "n");
  requireLength(env, fn, "src", src, n, "n");
  const bool scalar = useScalarKernels();
  runElements(n, [&](int64_t b, int64_t e) { row(dst.data + b, src.data + b, e - b, scalar); });
  return env.Undefined();
}

static Napi::Value F32ToF16(const Napi::CallbackInfo& info) { return convertArray<uint16_t, float>(info, "f32ToF16", f32ToF16Row); }

static Napi::Value F16ToF32(const Napi::CallbackInfo& info) { return convertArray<float, uint16_t>(info, "f16ToF32", f16ToF32Row); }

}  // namespace ops
}  // namespace flexinfer

FLEXINFER_MODULE(ops_misc) {
  using namespace flexinfer::ops;
  exports.Set("opsRmsNorm", Napi::Function::New(env, RmsNorm, "opsRmsNorm"));
  exports.Set("opsSiluMul", Napi::Function::New(env, SiluMul, "opsSiluMul"));
  exports.Set("opsAdd", Napi::Function::New(env, Add, "opsAdd"));
  exports.Set("opsAddBias", Napi::Function::New(env, AddBias, "opsAddBias"));
  exports.Set("opsSoftmax", Napi::Function::New(env, Softmax, "opsSoftmax"));
  exports.Set("opsArgmax", Napi::Function::New(env, Argmax, "opsArgmax"));
  exports.Set("opsF32ToF16", Napi::Function::New(env, F32ToF16, "opsF32ToF16"));
  exports.Set("opsF16ToF32", Napi::Function::New(env, F16ToF32, "opsF16ToF32"));
}
