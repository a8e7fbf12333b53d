// Mixture-of-Experts kernels: llama.cpp's build_moe_ffn on the CPU, step by step.
//
//   moeRoute    router logits [m, E] -> softmax over all experts (ggml_soft_max), the k largest
//               (ggml_argsort_top_k: std::sort descending with ggml's comparator, so ties break
//               as in llama.cpp), their probabilities (ggml_get_rows) and, when normalizing,
//               w / max(sum w, 2^-14) with the sum taken in double (ggml_sum_rows, ggml_clamp,
//               ggml_div).
//   matmulId    ggml_mul_mat_id: rows of x routed to an expert multiplied by that expert's
//               matrix, one call for every expert of a step. Group g (one expert) has weight
//               matrix ws[g] (n rows of k in `type`) and pairs [starts[g], starts[g + 1]);
//               pair p takes input row inRows[p] and writes output row outRows[p] (or p):
//                   out[outRows[p], :] = x[inRows[p], :] · ws[g]^T
//               Each expert is one contiguous byte range of the stacked ffn_*_exps tensor (or a
//               cache slot), so a group's weights are a plain matrix. The kernels are matmul's
//               (same selection by the group's row count, same activation packing), and they
//               are row-invariant: a pair's result is the same bits as a lone matmul of that
//               row, whatever else the step routed (batch invariance of MoE layers).
//   moeCombine  out[i] = sum over j < k, in order, of f32(pairOut[i * k + j] * w[i * k + j])
//               (ggml_mul by the weights, then ggml_add of the k views: ((p0 + p1) + p2) ...).
//
// Work split of matmulId: every group's n weight rows in units of 8 rows; units of all groups
// form one parallelFor (one wake-up of the pool per projection, not one per expert), each
// unit dotting its weight panel against the group's packed activation rows.
// ggml computes the weighted sum with separate roundings (ggml_mul, then ggml_add): no FMA.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_path.h"
#include "matmul.h"
#include "ops_common.h"
#include "registry.h"
#include "threadpool.h"
#include "type_traits.h"

namespace flexinfer {

namespace {

thread_local AlignedScratch tlsActs;  // packed activation rows of every pair
thread_local AlignedScratch tlsOut;   // pair-ordered outputs before the scatter to outRows

constexpr int64_t kUnitRows = 8;
constexpr size_t kPanelBytes = 48 * 1024;
constexpr size_t kActBlockBytes = 384 * 1024;

struct Group {
  const uint8_t* w;
  int64_t start;  // first pair
  int64_t count;  // pairs
  MatmulKernel kernel;
};

}  // namespace

void matmulId(float* out, const std::vector<const uint8_t*>& ws, GgmlType type, int64_t n, int64_t k, const float* x,
              const int32_t* inRows, const int32_t* outRows, const int32_t* starts) {
  const int64_t numGroups = static_cast<int64_t>(ws.size());
  const int64_t numPairs = starts[numGroups];
  if (numPairs <= 0 || n <= 0) return;
  std::vector<Group> groups;
  groups.reserve(numGroups);
  for (int64_t g = 0; g < numGroups; g++) {
    const int64_t count = starts[g + 1] - starts[g];
    if (count > 0) groups.push_back({ws[g], starts[g], count, selectKernel(type, count)});
  }

  // 1. Activations of every pair -> the weight type's vec_dot_type.
  const ActLayout layout = actLayout(type, k);
  uint8_t* acts = tlsActs.get(layout.rowBytes * static_cast<size_t>(numPairs));
  auto pack = [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; p++) packActivations(type, x + static_cast<int64_t>(inRows[p]) * k, k, acts + p * layout.rowBytes, layout);
  };
  if (numPairs >= 8 && numPairs * k >= (1 << 16)) parallelFor(numPairs, 1, pack);
  else pack(0, numPairs, 0);

  // 2. Weight rows of every group across the pool, in units of kUnitRows.
  float* dst = outRows ? reinterpret_cast<float*>(tlsOut.get(sizeof(float) * static_cast<size_t>(numPairs * n))) : out;
  const size_t wRow = rowBytes(type, k);
  const int64_t unitsPerGroup = (n + kUnitRows - 1) / kUnitRows;
  const int64_t panelRows = std::max<int64_t>(1, static_cast<int64_t>(kPanelBytes / wRow) / kUnitRows) * kUnitRows;
  const int64_t actRows = std::max<int64_t>(kTileRows, static_cast<int64_t>(kActBlockBytes / layout.rowBytes) / kTileRows * kTileRows);
  const int64_t numUnits = unitsPerGroup * static_cast<int64_t>(groups.size());
  const double work = static_cast<double>(wRow) * static_cast<double>(n) * static_cast<double>(numPairs);
  const int64_t grain = work < 256 * 1024 ? numUnits : std::max<int64_t>(1, panelRows / kUnitRows);
  parallelFor(numUnits, grain, [&](int64_t ub, int64_t ue, int) {
    for (int64_t u = ub; u < ue;) {
      const Group& g = groups[u / unitsPerGroup];
      const int64_t uEnd = std::min(ue, (u / unitsPerGroup + 1) * unitsPerGroup);  // stay in the group
      const int64_t begin = (u % unitsPerGroup) * kUnitRows;
      const int64_t end = std::min(n, (begin / kUnitRows + (uEnd - u)) * kUnitRows);
      for (int64_t r = begin; r < end; r += panelRows) {
        const int64_t rows = std::min(panelRows, end - r);
        for (int64_t xb = 0; xb < g.count; xb += actRows) {
          const ActRows a{acts + static_cast<size_t>(g.start + xb) * layout.rowBytes, layout.rowBytes, layout};
          g.kernel(g.w + static_cast<size_t>(r) * wRow, wRow, rows, a, std::min(actRows, g.count - xb), k,
                   dst + (g.start + xb) * n + r, n);
        }
      }
      u = uEnd;
    }
  });

  // 3. Scatter pair p's row to out[outRows[p]].
  if (outRows) {
    for (int64_t p = 0; p < numPairs; p++) std::memcpy(out + static_cast<int64_t>(outRows[p]) * n, dst + p * n, sizeof(float) * n);
  }
}

void moeRoute(float* probs, int64_t m, int64_t numExperts, int64_t k, int32_t* ids, float* weights, bool normalize,
              bool scalar) {
  std::vector<int32_t> order(numExperts);
  for (int64_t i = 0; i < m; i++) {
    float* p = probs + i * numExperts;
    ops::softmaxRow(p, numExperts, scalar);
    for (int64_t e = 0; e < numExperts; e++) order[e] = static_cast<int32_t>(e);
    // ggml_compute_forward_argsort_f32 (GGML_SORT_ORDER_DESC): the same std::sort call.
    std::sort(order.begin(), order.end(), [p](int32_t a, int32_t b) { return p[a] > p[b]; });
    int32_t* id = ids + i * k;
    float* w = weights + i * k;
    for (int64_t j = 0; j < k; j++) {
      id[j] = order[j];
      w[j] = p[order[j]];
    }
    if (!normalize) continue;
    double sum = 0.0;  // ggml_vec_sum_f32
    for (int64_t j = 0; j < k; j++) sum += static_cast<double>(w[j]);
    const float s = std::max(static_cast<float>(sum), 6.103515625e-5f);  // ggml_clamp(sum, 2^-14, inf)
    for (int64_t j = 0; j < k; j++) w[j] = w[j] / s;
  }
}

void moeCombine(float* out, const float* pairOut, const float* weights, int64_t m, int64_t k, int64_t dim) {
  parallelFor(m, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, dim * k)), [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; i++) {
      float* o = out + i * dim;
      const float* w = weights + i * k;
      const float* e0 = pairOut + i * k * dim;
      for (int64_t d = 0; d < dim; d++) o[d] = e0[d] * w[0];
      for (int64_t j = 1; j < k; j++) {
        const float* ej = e0 + j * dim;
        const float wj = w[j];
        for (int64_t d = 0; d < dim; d++) o[d] = o[d] + ej[d] * wj;
      }
    }
  });
}

}  // namespace flexinfer

// ---- JS bindings ----

namespace {

using flexinfer::GgmlType;
using flexinfer::ops::argArray;
using flexinfer::ops::argArrayOrNull;
using flexinfer::ops::argInt;
using flexinfer::ops::requireLength;
using flexinfer::ops::throwRange;
using flexinfer::ops::throwType;

// matmulId(out, ws, type, n, k, x, inRows, outRows | null, starts)
Napi::Value MatmulId(const Napi::CallbackInfo& info) {
  const char* fn = "matmulId";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  if (info.Length() < 2 || !info[1].IsArray()) throwType(env, fn, "ws must be an array of Uint8Array (one weight matrix per expert)");
  Napi::Array wsArr = info[1].As<Napi::Array>();
  const int64_t type = argInt(info, 2, fn, "type", 1 << 20);
  const int64_t n = argInt(info, 3, fn, "n", (int64_t{1} << 31) - 1);
  const int64_t k = argInt(info, 4, fn, "k", int64_t{1} << 20);
  auto x = argArray<float>(info, 5, fn, "x");
  auto inRows = argArray<int32_t>(info, 6, fn, "inRows");
  auto outRows = argArrayOrNull<int32_t>(info, 7, fn, "outRows");
  auto starts = argArray<int32_t>(info, 8, fn, "starts");

  const flexinfer::TypeTraits* traits = flexinfer::typeTraits(static_cast<int>(type));
  if (!traits) throwType(env, fn, "weight type " + std::to_string(type) + " is not supported (supported: " + flexinfer::supportedTypeNames() + ")");
  const int bs = traits->blockSize;
  if (k == 0 || k % bs != 0) throwRange(env, fn, "k = " + std::to_string(k) + " is not a positive multiple of the block size " + std::to_string(bs));
  const size_t wBytes = flexinfer::rowBytes(static_cast<GgmlType>(type), k) * static_cast<size_t>(n);
  const uint32_t numGroups = wsArr.Length();
  if (starts.length != static_cast<size_t>(numGroups) + 1) {
    throwRange(env, fn, "starts has " + std::to_string(starts.length) + " entries, needs ws.length + 1 = " + std::to_string(numGroups + 1));
  }
  std::vector<const uint8_t*> ws(numGroups);
  if (starts.data[0] != 0) throwRange(env, fn, "starts[0] must be 0");
  for (uint32_t g = 0; g < numGroups; g++) {
    if (starts.data[g + 1] < starts.data[g]) throwRange(env, fn, "starts must be non-decreasing");
    Napi::Value v = wsArr.Get(g);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throwType(env, fn, "ws[" + std::to_string(g) + "] must be a Uint8Array");
    }
    Napi::Uint8Array w = v.As<Napi::Uint8Array>();
    if (w.ByteLength() < wBytes) {
      throwRange(env, fn, "ws[" + std::to_string(g) + "] holds " + std::to_string(w.ByteLength()) + " bytes, needs n rows of k = " + std::to_string(wBytes));
    }
    ws[g] = w.Data();
  }
  const int64_t numPairs = starts.data[numGroups];
  requireLength(env, fn, "inRows", inRows, numPairs, "[numPairs]");
  const int64_t xRows = static_cast<int64_t>(x.length) / k;
  for (int64_t p = 0; p < numPairs; p++) {
    if (inRows.data[p] < 0 || inRows.data[p] >= xRows) throwRange(env, fn, "inRows[" + std::to_string(p) + "] = " + std::to_string(inRows.data[p]) + " is outside the " + std::to_string(xRows) + " rows of x");
  }
  const int64_t outCap = static_cast<int64_t>(out.length) / std::max<int64_t>(1, n);
  if (outRows.data) {
    requireLength(env, fn, "outRows", outRows, numPairs, "[numPairs]");
    for (int64_t p = 0; p < numPairs; p++) {
      if (outRows.data[p] < 0 || outRows.data[p] >= outCap) throwRange(env, fn, "outRows[" + std::to_string(p) + "] = " + std::to_string(outRows.data[p]) + " is outside the " + std::to_string(outCap) + " rows of out");
    }
  } else if (numPairs > outCap) {
    throwRange(env, fn, "out holds " + std::to_string(outCap) + " rows of n, needs numPairs = " + std::to_string(numPairs));
  }
  try {
    flexinfer::matmulId(out.data, ws, static_cast<GgmlType>(type), n, k, x.data, inRows.data, outRows.data, starts.data);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "matmulId: out of memory for the activation scratch");
  }
  return env.Undefined();
}

// moeRoute(probs, m, numExperts, k, ids, weights, normalize)
Napi::Value MoeRoute(const Napi::CallbackInfo& info) {
  const char* fn = "moeRoute";
  Napi::Env env = info.Env();
  auto probs = argArray<float>(info, 0, fn, "probs");
  const int64_t m = argInt(info, 1, fn, "m");
  const int64_t e = argInt(info, 2, fn, "numExperts", 1 << 20);
  const int64_t k = argInt(info, 3, fn, "k", 1 << 20);
  auto ids = argArray<int32_t>(info, 4, fn, "ids");
  auto weights = argArray<float>(info, 5, fn, "weights");
  if (info.Length() < 7 || !info[6].IsBoolean()) throwType(env, fn, "normalize must be a boolean");
  if (e < 1 || k < 1 || k > e) throwRange(env, fn, "need 1 <= k <= numExperts, got k = " + std::to_string(k) + ", numExperts = " + std::to_string(e));
  requireLength(env, fn, "probs", probs, static_cast<uint64_t>(m * e), "[m, numExperts]");
  requireLength(env, fn, "ids", ids, static_cast<uint64_t>(m * k), "[m, k]");
  requireLength(env, fn, "weights", weights, static_cast<uint64_t>(m * k), "[m, k]");
  flexinfer::moeRoute(probs.data, m, e, k, ids.data, weights.data, info[6].As<Napi::Boolean>().Value(), flexinfer::useScalarKernels());
  return env.Undefined();
}

// moeCombine(out, pairOut, weights, m, k, dim)
Napi::Value MoeCombine(const Napi::CallbackInfo& info) {
  const char* fn = "moeCombine";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto pairOut = argArray<float>(info, 1, fn, "pairOut");
  auto weights = argArray<float>(info, 2, fn, "weights");
  const int64_t m = argInt(info, 3, fn, "m");
  const int64_t k = argInt(info, 4, fn, "k", 1 << 20);
  const int64_t dim = argInt(info, 5, fn, "dim", int64_t{1} << 30);
  if (k < 1) throwRange(env, fn, "k must be >= 1");
  requireLength(env, fn, "out", out, static_cast<uint64_t>(m * dim), "[m, dim]");
  requireLength(env, fn, "pairOut", pairOut, static_cast<uint64_t>(m * k * dim), "[m * k, dim]");
  requireLength(env, fn, "weights", weights, static_cast<uint64_t>(m * k), "[m, k]");
  flexinfer::moeCombine(out.data, pairOut.data, weights.data, m, k, dim);
  return env.Undefined();
}

}  // namespace

FLEXINFER_MODULE(moe) {
  exports.Set("matmulId", Napi::Function::New(env, MatmulId, "matmulId"));
  exports.Set("moeRoute", Napi::Function::New(env, MoeRoute, "moeRoute"));
  exports.Set("moeCombine", Napi::Function::New(env, MoeCombine, "moeCombine"));
}
