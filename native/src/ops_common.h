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

// ---- exp ----

#if FLEXINFER_OPS_AVX512
// exp(x) for 16 lanes, within ~1 ulp of expf (Cody-Waite range reduction, degree-6
// polynomial, scaling by 2^n with vscalefps). x below -104 gives 0, above 88.7 gives inf;
// NaN stays NaN. ggml's softmax and silu use their own vectorized exp (ggml_v_expf) of
// similar accuracy, so results agree with llama.cpp to an ulp or so, not bit for bit.
inline __m512 expPs(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2lo = _mm512_set1_ps(-2.12194440e-4f);
  __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.8f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2hi, xc);
  r = _mm512_fnmadd_ps(n, ln2lo, r);
  // exp(r) on |r| <= ln2/2: Taylor-like minimax coefficients (Cephes expf).
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512 y = _mm512_scalef_ps(p, n);
  // Keep NaN inputs NaN (the clamp above turned them into a number).
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}
#endif

}  // namespace ops
}  // namespace flexinfer
