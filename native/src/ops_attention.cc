// Causal grouped-query attention over one sequence's contiguous f16 K/V, and the K/V store.
//
// Numerics mimic llama.cpp's CPU graph without flash attention (llama-graph.cpp
// build_attn_mha: kq = mul_mat(k, q); soft_max_ext(kq, mask, scale); kqv = mul_mat(v, kq)):
// - K is f16, so ggml converts Q to f16 first (f16's vec_dot_type is f16); each score is an
//   f32-accumulated dot of f16 values.
// - soft_max_ext: s * scale in f32, masked positions (> pos) are -inf, exp(s - max) with the
//   sum in double, probabilities = e * (float)(1 / sum).
// - V is f16, so the probabilities are converted to f16 before the weighted sum (again f32
//   accumulation).
// Checked against the llama.cpp source node-llama-cpp 3.21.1 bundles (ggml v0.4.0;
// `git clone node_modules/node-llama-cpp/llama/gitRelease.bundle`): its llamafile sgemm takes
// F16 x F16 only on AVX-512/AVX2, so both f16 roundings above really happen on this machine
// (in llama.cpp versions whose sgemm accepts F16 x F32 they would not: re-check on upgrade).
// The AVX-512 grouped path (headDim 16..128 in steps of 16) also takes ggml's f32 steps, so its
// output is bitwise llama.cpp's prompt-batch attention (the batch path: llamafile tinyBLAS F16
// GEMMs, ggml_vec_soft_max_f32, ggml_v_expf): each score is a 16-lane fma dot then
// _mm512_reduce_add_ps; the softmax sums exp per 16 keys (keys padded with -inf, as ggml's
// KV view is padded to 256) by reduce_add into a double; each output is a 16-lane fma sum over
// keys (lane = key mod 16) then reduce_add. This matters for quantized models: an ulp here
// flips activation quanta of the next matmul (measured on synthetic tiny-15m Q4_0: logits
// moved from rel 1.5e-2 to bit-exact). llama.cpp's single-token decode uses ggml_vec_dot_f16
// instead (other lane splits, double tails), so decode rows can differ from it by ulps; we keep
// one order for every m (row invariance). The generic / scalar paths are not bitwise.
//
// Work is split with parallelFor over (query row, kv head, sub-group of <= 4 query heads);
// per head: scores over kv positions [0, pos], softmax, weighted sum of V rows. The heads
// of a sub-group share each f16 -> f32 conversion of K and V. The kernels themselves are in
// attention_kernels.h, shared with the paged layout (ops_attention_paged.cc).
#include <vector>

#include "attention_kernels.h"
#include "registry.h"

namespace flexinfer {
namespace ops {

// attention(out, q, k, v, m, positions, numHeads, numKvHeads, headDim, scale[, softcap[, window]])
static Napi::Value Attention(const Napi::CallbackInfo& info) {
  const char* fn = "attention";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto q = argArray<float>(info, 1, fn, "q");
  auto k = argArray<uint16_t>(info, 2, fn, "k");
  auto v = argArray<uint16_t>(info, 3, fn, "v");
  int64_t m = argInt(info, 4, fn, "m");
  auto positions = argArray<int32_t>(info, 5, fn, "positions");
  const int64_t numHeads = argInt(info, 6, fn, "numHeads", 1 << 16);
  const int64_t numKvHeads = argInt(info, 7, fn, "numKvHeads", 1 << 16);
  const int64_t headDim = argInt(info, 8, fn, "headDim", 1 << 16);
  AttnShape s = attnShapeFrom(env, fn, numHeads, numKvHeads, headDim, argNumber(info, 9, fn, "scale"));
  attnOptionsFrom(info, 10, fn, &s);
  requireLength(env, fn, "q", q, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "out", out, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "positions", positions, m, "m");
  int64_t maxPos = -1;
  for (int64_t i = 0; i < m; i++) {
    if (positions.data[i] < 0) throwRange(env, fn, "positions[" + std::to_string(i) + "] is negative");
    maxPos = std::max<int64_t>(maxPos, positions.data[i]);
  }
  if (m == 0) return env.Undefined();
  // (with a window, the keys before a row's window are never read, but the view must still span them)
  requireLength(env, fn, "k", k, uint64_t(maxPos + 1) * s.kvDim, "(max position + 1) * numKvHeads * headDim");
  requireLength(env, fn, "v", v, uint64_t(maxPos + 1) * s.kvDim, "(max position + 1) * numKvHeads * headDim");
  if (out.data == q.data) throwRange(env, fn, "out must not alias q");

  runAttention<DenseRows>(out.data, q.data, m, positions.data, maxPos, s,
                          [&](int64_t, int64_t kvHead, DenseRows* kr, DenseRows* vr) {
                            *kr = DenseRows{k.data + kvHead * s.headDim, s.kvDim};
                            *vr = DenseRows{v.data + kvHead * s.headDim, s.kvDim};
                          });
  return env.Undefined();
}

// The typed arrays of a JS array argument (one per sequence).
static std::vector<Span<uint16_t>> argArrayList(const Napi::CallbackInfo& info, size_t i, const char* fn,
                                                const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsArray()) throwType(env, fn, std::string(name) + " must be an array of Uint16Array");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<Span<uint16_t>> out;
  for (uint32_t j = 0; j < a.Length(); j++) {
    Napi::Value v = a.Get(j);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
      throwType(env, fn, std::string(name) + "[" + std::to_string(j) + "] must be a Uint16Array");
    Napi::Uint16Array t = v.As<Napi::Uint16Array>();
    out.push_back(Span<uint16_t>{t.Data(), t.ElementLength()});
  }
  return out;
}

// attentionBatch(out, q, ks, vs, m, positions, rowSeqs, numHeads, numKvHeads, headDim, scale[, softcap[, window]]):
// attention() for the rows of several sequences in one call; row i reads ks[rowSeqs[i]] and
// vs[rowSeqs[i]]. The batch entry of the dense layouts, as pagedAttention is the paged one.
static Napi::Value AttentionBatch(const Napi::CallbackInfo& info) {
  const char* fn = "attentionBatch";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto q = argArray<float>(info, 1, fn, "q");
  const std::vector<Span<uint16_t>> ks = argArrayList(info, 2, fn, "ks");
  const std::vector<Span<uint16_t>> vs = argArrayList(info, 3, fn, "vs");
  const int64_t m = argInt(info, 4, fn, "m");
  auto positions = argArray<int32_t>(info, 5, fn, "positions");
  auto rowSeqs = argArray<int32_t>(info, 6, fn, "rowSeqs");
  const int64_t numHeads = argInt(info, 7, fn, "numHeads", 1 << 16);
  const int64_t numKvHeads = argInt(info, 8, fn, "numKvHeads", 1 << 16);
  const int64_t headDim = argInt(info, 9, fn, "headDim", 1 << 16);
  AttnShape s = attnShapeFrom(env, fn, numHeads, numKvHeads, headDim, argNumber(info, 10, fn, "scale"));
  attnOptionsFrom(info, 11, fn, &s);
  requireLength(env, fn, "q", q, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "out", out, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "positions", positions, m, "m");
  requireLength(env, fn, "rowSeqs", rowSeqs, m, "m");
  if (vs.size() != ks.size())
    throwRange(env, fn, "ks has " + std::to_string(ks.size()) + " sequences, vs " + std::to_string(vs.size()));
  if (out.data == q.data) throwRange(env, fn, "out must not alias q");
  int64_t maxPos = -1;
  for (int64_t i = 0; i < m; i++) {
    const int64_t p = positions.data[i], seq = rowSeqs.data[i];
    if (p < 0) throwRange(env, fn, "positions[" + std::to_string(i) + "] is negative");
    if (seq < 0 || seq >= static_cast<int64_t>(ks.size()))
      throwRange(env, fn, "rowSeqs[" + std::to_string(i) + "] = " + std::to_string(seq) + " is not a sequence (there are " +
                              std::to_string(ks.size()) + ")");
    for (const auto* kv : {&ks[seq], &vs[seq]})
      if (kv->length < uint64_t(p + 1) * s.kvDim)
        throwRange(env, fn, std::string(kv == &ks[seq] ? "ks[" : "vs[") + std::to_string(seq) + "] holds " +
                                std::to_string(kv->length) + " elements, row " + std::to_string(i) + " needs " +
                                std::to_string(uint64_t(p + 1) * s.kvDim) + " ((position + 1) * numKvHeads * headDim)");
    maxPos = std::max(maxPos, p);
  }
  if (m == 0) return env.Undefined();
  runAttention<DenseRows>(out.data, q.data, m, positions.data, maxPos, s,
                          [&](int64_t row, int64_t kvHead, DenseRows* kr, DenseRows* vr) {
                            const int64_t seq = rowSeqs.data[row];
                            *kr = DenseRows{ks[seq].data + kvHead * s.headDim, s.kvDim};
                            *vr = DenseRows{vs[seq].data + kvHead * s.headDim, s.kvDim};
                          });
  return env.Undefined();
}

// storeKv(cache, src, m, kvDim, positions): cache[positions[i] * kvDim + j] = f16(src[i * kvDim + j])
static Napi::Value StoreKv(const Napi::CallbackInfo& info) {
  const char* fn = "storeKv";
  Napi::Env env = info.Env();
  auto cache = argArray<uint16_t>(info, 0, fn, "cache");
  auto src = argArray<float>(info, 1, fn, "src");
  int64_t m = argInt(info, 2, fn, "m");
  int64_t kvDim = argInt(info, 3, fn, "kvDim");
  auto positions = argArray<int32_t>(info, 4, fn, "positions");
  requireLength(env, fn, "src", src, uint64_t(m) * kvDim, "m * kvDim");
  requireLength(env, fn, "positions", positions, m, "m");
  for (int64_t i = 0; i < m; i++) {
    const int64_t p = positions.data[i];
    if (p < 0 || uint64_t(p + 1) * kvDim > cache.length)
      throwRange(env, fn, "positions[" + std::to_string(i) + "] = " + std::to_string(p) +
                              " is outside the cache (" + std::to_string(kvDim ? cache.length / kvDim : 0) + " rows of " +
                              std::to_string(kvDim) + ")");
  }
  const bool scalar = useScalarKernels();
  for (int64_t i = 0; i < m; i++)
    f32ToF16Row(cache.data + int64_t(positions.data[i]) * kvDim, src.data + i * kvDim, kvDim, scalar);
  return env.Undefined();
}

}  // namespace ops
}  // namespace flexinfer

FLEXINFER_MODULE(ops_attention) {
  exports.Set("opsAttention", Napi::Function::New(env, flexinfer::ops::Attention, "opsAttention"));
  exports.Set("opsAttentionBatch", Napi::Function::New(env, flexinfer::ops::AttentionBatch, "opsAttentionBatch"));
  exports.Set("opsStoreKv", Napi::Function::New(env, flexinfer::ops::StoreKv, "opsStoreKv"));
}
