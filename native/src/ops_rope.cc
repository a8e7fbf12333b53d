// Rotary position embedding (RoPE), in place, as ggml_rope_ext with ext_factor 0 (what
// llama.cpp uses without YaRN): the first nRot dimensions of every head rotate (partial
// rotary: Phi-4-mini rotates 96 of 128), the rest pass through; cos/sin are multiplied by
// attnFactor (ggml's mscale: phi3's rope.scaling.attn_factor, 1 elsewhere).
//
// Numerics copy ggml's cache construction (ggml-cpu ops.cpp, ggml_rope_cache_init +
// rope_yarn): theta starts at the position (as f32) and is multiplied in f32 by
// theta_scale = powf(freq_base, -2/nRot) once per pair, so pair i sees pos * theta_scale^i
// with i roundings (not pos * base^(-2i/n) computed directly). Each pair's angle is
// freq_scale * (theta / freq_factor[i]); cos/sin are libm cosf/sinf, as in ggml.
//   normal (llama): rotates (x[2i], x[2i+1])          for 2i < nRot
//   neox   (qwen2): rotates (x[i], x[i + nRot/2])      for i < nRot/2
// Every head of a row shares the row's cos/sin table.
#include <cmath>
#include <vector>

#include "ops_common.h"
#include "registry.h"
#include "threadpool.h"

namespace flexinfer {
namespace ops {

enum RopeMode { kRopeNormal = 0, kRopeNeox = 2 };  // ggml's mode ids

// cache[2i] = cos, cache[2i+1] = sin of pair i's angle at position pos.
// (ggml rope_yarn with ext_factor 0: cos/sin times mscale = attnFactor.)
static void ropeCache(float* cache, int64_t nRot, float pos, float freqScale, const float* freqFactors,
                      float thetaScale, float attnFactor) {
  float theta = pos;
  for (int64_t i0 = 0; i0 < nRot; i0 += 2) {
    const float ff = freqFactors ? freqFactors[i0 / 2] : 1.0f;
    const float angle = freqScale * (theta / ff);
    cache[i0] = std::cos(angle) * attnFactor;
    cache[i0 + 1] = std::sin(angle) * attnFactor;
    theta *= thetaScale;
  }
}

// Dimensions [nRot, headDim) of every head are left as they are (ggml copies them).
static void ropeRow(float* x, const float* cache, int64_t numHeads, int64_t headDim, int64_t nRot, int mode) {
  const int64_t half = nRot / 2;
  for (int64_t h = 0; h < numHeads; h++) {
    float* v = x + h * headDim;
    if (mode == kRopeNormal) {
      for (int64_t i0 = 0; i0 < nRot; i0 += 2) {
        const float c = cache[i0], s = cache[i0 + 1];
        const float x0 = v[i0], x1 = v[i0 + 1];
        v[i0] = x0 * c - x1 * s;
        v[i0 + 1] = x0 * s + x1 * c;
      }
    } else {
      for (int64_t i = 0; i < half; i++) {
        const float c = cache[2 * i], s = cache[2 * i + 1];
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
      }
    }
  }
}

// rope(x, m, numHeads, headDim, positions, mode, freqBase, freqScale, freqFactors | null, nRot, attnFactor)
// mode: 0 = normal, 2 = neox (ggml's ids); freqFactors has nRot / 2 values.
static Napi::Value Rope(const Napi::CallbackInfo& info) {
  const char* fn = "rope";
  Napi::Env env = info.Env();
  auto x = argArray<float>(info, 0, fn, "x");
  int64_t m = argInt(info, 1, fn, "m");
  int64_t numHeads = argInt(info, 2, fn, "numHeads", 1 << 20);
  int64_t headDim = argInt(info, 3, fn, "headDim", 1 << 20);
  auto positions = argArray<int32_t>(info, 4, fn, "positions");
  int64_t mode = argInt(info, 5, fn, "mode", 2);
  float freqBase = static_cast<float>(argNumber(info, 6, fn, "freqBase"));
  float freqScale = static_cast<float>(argNumber(info, 7, fn, "freqScale"));
  auto freqFactors = argArrayOrNull<float>(info, 8, fn, "freqFactors");
  int64_t nRot = argInt(info, 9, fn, "nRot", 1 << 20);
  float attnFactor = static_cast<float>(argNumber(info, 10, fn, "attnFactor"));
  if (mode != kRopeNormal && mode != kRopeNeox) throwRange(env, fn, "mode must be 0 (normal) or 2 (neox)");
  if (headDim == 0 || headDim % 2 != 0) throwRange(env, fn, "headDim must be even and positive, got " + std::to_string(headDim));
  if (numHeads == 0) throwRange(env, fn, "numHeads must be at least 1");
  if (nRot == 0 || nRot % 2 != 0 || nRot > headDim) throwRange(env, fn, "nRot must be even, positive and at most headDim, got " + std::to_string(nRot));
  if (!std::isfinite(attnFactor)) throwRange(env, fn, "attnFactor must be finite");
  if (!(freqBase > 0)) throwRange(env, fn, "freqBase must be positive");
  requireLength(env, fn, "x", x, uint64_t(m) * numHeads * headDim, "m * numHeads * headDim");
  requireLength(env, fn, "positions", positions, m, "m");
  if (freqFactors.data) requireLength(env, fn, "freqFactors", freqFactors, nRot / 2, "nRot / 2");
  for (int64_t i = 0; i < m; i++)
    if (positions.data[i] < 0) throwRange(env, fn, "positions[" + std::to_string(i) + "] is negative");

  const float thetaScale = std::pow(freqBase, -2.0f / static_cast<float>(nRot));
  const int64_t rowLen = numHeads * headDim;
  auto work = [&](int64_t b, int64_t e, int) {
    std::vector<float> cache(nRot);
    for (int64_t r = b; r < e; r++) {
      ropeCache(cache.data(), nRot, static_cast<float>(positions.data[r]), freqScale, freqFactors.data, thetaScale, attnFactor);
      ropeRow(x.data + r * rowLen, cache.data(), numHeads, headDim, nRot, static_cast<int>(mode));
    }
  };
  if (m > 1 && m * rowLen >= (1 << 14)) parallelFor(m, 1, work);
  else work(0, m, 0);
  return env.Undefined();
}

}  // namespace ops
}  // namespace flexinfer

FLEXINFER_MODULE(ops_rope) { exports.Set("opsRope", Napi::Function::New(env, flexinfer::ops::Rope, "opsRope")); }
