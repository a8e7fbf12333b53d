// The type table (type_traits.h). Built once, on first use, from the family providers.
#include "type_traits.h"

#include <array>

#include "quants.h"

namespace flexinfer {

namespace {

// The batched kernels of the first types (matmul_x86_repack*.cc, matmul_x86_q8_0.cc).
template <GgmlType T>
MatmulKernel baseBatch(int64_t m) {
  MatmulKernel k = repackedKernel(T, m);
  if (!k && T == GgmlType::Q8_0) k = batchKernelQ8_0(m);
  return k;
}

template <GgmlType T>
TypeKernels baseKernels() {
  return {scalarKernel(T), simdKernel(T), baseBatch<T>};
}

constexpr int kMaxType = 40;

struct Table {
  std::array<TypeTraits, kMaxType> rows{};
  std::array<bool, kMaxType> present{};
  void add(GgmlType type, const char* name, int blockSize, size_t typeSize, ActKind act, int actCorr, TypeKernels k) {
    rows[static_cast<int>(type)] = {type, name, blockSize, typeSize, act, actCorr, dequantRow(type), k};
    present[static_cast<int>(type)] = true;
  }
};

Table build() {
  using G = GgmlType;
  Table t;
  // type, name, block, bytes per block, vec_dot_type, lane correction, kernels
  t.add(G::F32, "f32", 1, 4, ActKind::F32, 0, baseKernels<G::F32>());
  t.add(G::F16, "f16", 1, 2, ActKind::F16, 0, baseKernels<G::F16>());
  t.add(G::BF16, "bf16", 1, 2, ActKind::BF16, 0, baseKernels<G::BF16>());
  t.add(G::Q4_0, "q4_0", QK4_0, sizeof(BlockQ4_0), ActKind::Q8_0, -1, baseKernels<G::Q4_0>());
  t.add(G::Q4_1, "q4_1", 32, sizeof(BlockQ4_1), ActKind::Q8_1, 0, legacyKernels(G::Q4_1));
  t.add(G::Q5_0, "q5_0", 32, sizeof(BlockQ5_0), ActKind::Q8_0, 0, legacyKernels(G::Q5_0));
  t.add(G::Q5_1, "q5_1", 32, sizeof(BlockQ5_1), ActKind::Q8_1, 0, legacyKernels(G::Q5_1));
  t.add(G::Q8_0, "q8_0", QK8_0, sizeof(BlockQ8_0), ActKind::Q8_0, -16, baseKernels<G::Q8_0>());
  t.add(G::Q2_K, "q2_k", QK_K, sizeof(BlockQ2K), ActKind::Q8_K, 0, k23Kernels(G::Q2_K));
  t.add(G::Q3_K, "q3_k", QK_K, sizeof(BlockQ3K), ActKind::Q8_K, 0, k23Kernels(G::Q3_K));
  t.add(G::Q4_K, "q4_k", QK_K, sizeof(BlockQ4K), ActKind::Q8_K, 0, baseKernels<G::Q4_K>());
  t.add(G::Q5_K, "q5_k", QK_K, sizeof(BlockQ5K), ActKind::Q8_K, 0, baseKernels<G::Q5_K>());
  t.add(G::Q6_K, "q6_k", QK_K, sizeof(BlockQ6K), ActKind::Q8_K, 0, baseKernels<G::Q6_K>());
  // IQ4_NL: table values + 128 enter vpdpbusd unsigned, as Q8_0's q + 128 (matmul_iq4.cc)
  t.add(G::IQ4_NL, "iq4_nl", 32, sizeof(BlockIQ4NL), ActKind::Q8_0, -16, iq4Kernels(G::IQ4_NL));
  t.add(G::IQ4_XS, "iq4_xs", QK_K, sizeof(BlockIQ4XS), ActKind::Q8_K, 0, iq4Kernels(G::IQ4_XS));
  return t;
}

const Table& table() {
  static const Table t = build();
  return t;
}

}  // namespace

const TypeTraits* typeTraits(int type) {
  if (type < 0 || type >= kMaxType || !table().present[type]) return nullptr;
  return &table().rows[type];
}

const char* supportedTypeNames() {
  return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";
}

}  // namespace flexinfer
