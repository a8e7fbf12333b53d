// Shared pieces of the non-matmul kernels (ops_*.cc): argument checking for typed arrays,
// f16 conversions over arrays, and a vectorized exp.
//
// Every kernel validates what JS hands it (types, lengths, ranges) and throws a
// Napi::TypeError / Napi::RangeError that names the function and the argument.
#pragma once

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12 warns "__Y is used uninitialized" inside its own AVX-512 intrinsics (the
// _mm512_undefined_* placeholders) at -O3; a known false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "kernel_path.h"
#include "quants.h"

// The AVX-512 paths need AVX512F (zmm cvtph/cvtps_ph are AVX512F) and AVX512BW (masked
// 16-bit loads in attention).
#if defined(__AVX512F__) && defined(__AVX512BW__)
#define FLEXINFER_OPS_AVX512 1
#else
#define FLEXINFER_OPS_AVX512 0
#endif

namespace flexinfer {
namespace ops {

// ggml type ids (ggml.h) of the types the ops kernels read.
enum GgmlTypeId : int64_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ8_0 = 8,
  kGgmlQ4_K = 12,
  kGgmlQ5_K = 13,
  kGgmlQ6_K = 14,
  kGgmlBF16 = 30,
};

// ---- argument checking ----

template <typename T>
struct Span {
  T* data;
  size_t length;
};

[[noreturn]] inline void throwType(const Napi::Env& env, const char* fn, const std::string& msg) {
  throw Napi::TypeError::New(env, std::string(fn) + ": " + msg);
}
[[noreturn]] inline void throwRange(const Napi::Env& env, const char* fn, const std::string& msg) {
  throw Napi::RangeError::New(env, std::string(fn) + ": " + msg);
}

template <typename T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<float> {
  static constexpr napi_typedarray_type kind = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayKind<uint16_t> {
  static constexpr napi_typedarray_type kind = napi_uint16_array;
  static constexpr const char* name = "Uint16Array";
};
template <>
struct TypedArrayKind<int32_t> {
  static constexpr napi_typedarray_type kind = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct TypedArrayKind<uint8_t> {
  static constexpr napi_typedarray_type kind = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};

// The typed array at argument i (of element type T), as pointer + element count.
template <typename T>
Span<T> argArray(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray())
    throwType(env, fn, std::string(name) + " must be a " + TypedArrayKind<T>::name);
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != TypedArrayKind<T>::kind)
    throwType(env, fn, std::string(name) + " must be a " + TypedArrayKind<T>::name);
  Napi::TypedArrayOf<T> a = info[i].As<Napi::TypedArrayOf<T>>();
  return Span<T>{a.Data(), a.ElementLength()};
}

// Like argArray but null/undefined give {nullptr, 0}.
template <typename T>
Span<T> argArrayOrNull(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return Span<T>{nullptr, 0};
  return argArray<T>(info, i, fn, name);
}

// A non-negative integer argument (at most maxValue).
inline int64_t argInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
                      int64_t maxValue = (int64_t{1} << 40)) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throwType(env, fn, std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > static_cast<double>(maxValue))
    throwRange(env, fn, std::string(name) + " must be an integer in [0, " + std::to_string(maxValue) + "], got " +
                            std::to_string(v));
  return static_cast<int64_t>(v);
}

// A finite number argument.
inline double argNumber(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throwType(env, fn, std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v)) throwRange(env, fn, std::string(name) + " must be finite");
  return v;
}

// Throws unless the array holds at least `need` elements.
template <typename T>
void requireLength(const Napi::Env& env, const char* fn, const char* name, const Span<T>& a, uint64_t need,
                   const char* shape) {
  if (a.length < need)
    throwRange(env, fn, std::string(name) + " holds " + std::to_string(a.length) + " elements, needs " +
                            std::to_string(need) + " (" + shape + ")");
}

// ---- f16 over arrays ----

// dst[i] = f32(src[i]) (exact).
inline void f16ToF32Row(float* dst, const uint16_t* src, int64_t n, bool scalar) {
  int64_t i = 0;
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
#endif
  for (; i < n; i++) dst[i] = f16ToF32(src[i]);
}

// dst[i] = f16(src[i]), round to nearest even (as F16C and ggml's scalar fallback).
inline void f32ToF16Row(uint16_t* dst, const float* src, int64_t n, bool scalar) {
  int64_t i = 0;
#if FLEXINFER_OPS_AVX512
  if (!scalar) {
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                          _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  for (; i < n; i++) dst[i] = f32ToF16(src[i]);
}

// In-place softmax of one row as ggml_compute_forward_soft_max_f32 without mask and scale
// (ops_misc.cc; also the router of MoE layers, moe.cc).
void softmaxRow(float* x, int64_t n, bool scalar);

// ---- exp ----

#if FLEXINFER_OPS_AVX512
// exp(x) for 16 lanes with the exact steps of ggml's AVX-512 ggml_v_expf (ggml-cpu/vec.h, the
// exp of llama.cpp's softmax and silu), so silu / swiglu and the softmax exponentials are
// bitwise llama.cpp's (within ~1.5 ulp of expf). Bit-exactness matters because both engines
// re-quantize activations to 8 bits: an ulp here flips a quantum of the next matmul input
// (measured: a 1-ulp silu difference alone moved quantized-model logits by ~1e-2 vs llama.cpp).
// NaN stays NaN; |x / ln2| > 192 saturates to 0 or inf.
inline __m512 expPs(__m512 x) {
  // exp(x) = 2^n * exp(t), n = round(x / ln2) (by the 1.5 * 2^23 shifter), t = x - n * ln2 in
  // two parts, exp(t) by a degree-5 polynomial in Estrin form; |n| > 192 saturates to 0 / inf.
  const __m512 shifter = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shifter);
  const __m512 n = _mm512_sub_ps(z, shifter);
  const __m512 t = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  const __m512 t2 = _mm512_mul_ps(t, t);
  const __m512 hi = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), t, _mm512_set1_ps(0x1.573e2ep-5f)), t2,
                                    _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), t, _mm512_set1_ps(0x1.fffdb6p-2f)));
  const __m512 p = _mm512_fmadd_ps(hi, t2, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), t, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_scalef_ps(p, n);
  if (big == 0) return res;
  const __m512 sat = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                          _mm512_set1_ps(__builtin_inff()), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(big, res, sat);
}
#endif

}  // namespace ops
}  // namespace flexinfer
