// Element-wise kernels of the Gemma family: GEGLU (GELU-tanh gate), soft-capping and scaling.
//
// Numerics follow llama.cpp's CPU backend (ggml-cpu vec.h, ops.cpp):
// - gelu: ggml is built with GGML_GELU_FP16, so gelu(x) for -10 < x < 10 is a lookup in a
//   table of 65536 f16 values, table[h] = f16(gelu_f32(f32(h))), indexed by the f16 bits of x;
//   x <= -10 gives 0 and x >= 10 gives x. gelu_f32(x) = 0.5x(1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))).
//   geglu(gate, up) = gelu(gate) * up, the product in f32 (ggml_vec_geglu_f32).
// - softcap (gemma2 attention logits, gemma final logits): three ggml ops, ggml_scale by
//   1.0f / cap, ggml_tanh (tanhf) and ggml_scale by cap: y = tanhf(x * (1/cap)) * cap.
// - scale: y = x * s (ggml_scale: gemma's sqrt(n_embd) embedding scale and the query scale).
#include <cmath>
#include <mutex>
#include <vector>

#include "ops_common.h"
#include "registry.h"
#include "threadpool.h"

namespace flexinfer {
namespace ops {

static constexpr int64_t kActParallelMin = 1 << 16;

static void runChunks(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n >= kActParallelMin) {
    const int64_t chunks = (n + 4095) / 4096;
    parallelFor(chunks, 1, [&](int64_t b, int64_t e, int) { fn(b * 4096, std::min(n, e * 4096)); });
  } else {
    fn(0, n);
  }
}

// gelu_f32 as ggml writes it. GCC contracts `1.0f + GELU_COEF_A*x*x` into one fma when it
// builds ggml for an FMA target (ggml's C is compiled in GNU mode: -ffp-contract=fast), so the
// table llama.cpp computes at init holds fma's roundings; checked bit for bit against libggml's
// geglu in ops-gemma-llamacpp.test.ts.
static float geluTanhF32(float x) {
  const float kCoefA = 0.044715f;
  const float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  const float inner = std::fma(kCoefA * x, x, 1.0f);
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * inner));
}

static const uint16_t* geluTable() {
  static std::vector<uint16_t> table;
  static std::once_flag once;
  std::call_once(once, [] {
    table.resize(65536);
    for (uint32_t h = 0; h < 65536; h++) table[h] = f32ToF16(geluTanhF32(f16ToF32(static_cast<uint16_t>(h))));
  });
  return table.data();
}

// gelu(x) as ggml_vec_gelu_f32 with GGML_GELU_FP16.
static inline float geluLookup(float x, const uint16_t* table) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return f16ToF32(table[f32ToF16(x)]);
}

static void geluMulRange(float* out, const float* g, const float* u, int64_t begin, int64_t end) {
  const uint16_t* table = geluTable();
  for (int64_t i = begin; i < end; i++) {
    const float x = g[i];
    // ggml: x >= 10 gives x * up (not gelu(x) * up: the same for x >= 10 up to rounding of gelu)
    out[i] = x <= -10.0f ? 0.0f : (x >= 10.0f ? x * u[i] : geluLookup(x, table) * u[i]);
  }
}

// geluMul(out, gate, up, n): out = gelu_tanh(gate) * up
static Napi::Value GeluMul(const Napi::CallbackInfo& info) {
  const char* fn = "geluMul";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto g = argArray<float>(info, 1, fn, "gate");
  auto u = argArray<float>(info, 2, fn, "up");
  int64_t n = argInt(info, 3, fn, "n");
  requireLength(env, fn, "out", out, n, "n");
  requireLength(env, fn, "gate", g, n, "n");
  requireLength(env, fn, "up", u, n, "n");
  runChunks(n, [&](int64_t b, int64_t e) { geluMulRange(out.data, g.data, u.data, b, e); });
  return env.Undefined();
}

// softcap(x, n, cap): x = tanhf(x * (1.0f / cap)) * cap, in place
static Napi::Value Softcap(const Napi::CallbackInfo& info) {
  const char* fn = "softcap";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  int64_t n = argInt(info, 1, fn, "n");
  const float cap = static_cast<float>(argNumber(info, 2, fn, "cap"));
  if (!(cap > 0)) throwRange(env, fn, "cap must be positive");
  requireLength(env, fn, "x", x, n, "n");
  const float inv = 1.0f / cap;
  runChunks(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) x.data[i] = std::tanh(x.data[i] * inv) * cap;
  });
  return env.Undefined();
}

// scale(x, n, s): x *= s, in place
static Napi::Value Scale(const Napi::CallbackInfo& info) {
  const char* fn = "scale";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  int64_t n = argInt(info, 1, fn, "n");
  const float s = static_cast<float>(argNumber(info, 2, fn, "s"));
  requireLength(env, fn, "x", x, n, "n");
  runChunks(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) x.data[i] *= s;
  });
  return env.Undefined();
}

}  // namespace ops
}  // namespace flexinfer

FLEXINFER_MODULE(ops_act) {
  exports.Set("opsGeluMul", Napi::Function::New(env, flexinfer::ops::GeluMul, "opsGeluMul"));
  exports.Set("opsSoftcap", Napi::Function::New(env, flexinfer::ops::Softcap, "opsSoftcap"));
  exports.Set("opsScale", Napi::Function::New(env, flexinfer::ops::Scale, "opsScale"));
}
